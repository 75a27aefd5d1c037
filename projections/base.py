"""Projections on Redis: a pure fold (``projections/core``) bound to a client, and the handler that
applies it exactly once.

:class:`ProjectionHandler` loads the states of the runs a batch touches, folds the batch and
applies the ops *and* advances the projection's checkpoint in one Lua call (``apply.lua``),
skipping entries at or below the checkpoint; the consumer group's ack comes after and is only
delivery bookkeeping.  So a crash anywhere (before apply, after apply and before ack) leaves the
view exactly as one clean pass would.

Every key one projection writes lives in its view key's hash slot, and the checkpoint sits in that
slot too (``{autonomous_fix:task_queue}:checkpoint``), so each script is cluster-safe.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

import redis

from airfix.events.keys import Keys
from airfix.events.storage.backend import is_cluster
from airfix.events.storage.store import STREAM_IDS_LUA, EventStore, LogEntry, id_key
from airfix.events.storage.store import as_str as _s
from airfix.projections.core.fold import Fold, fold_entries
from airfix.projections.core.ops import HashField, KeyRef, Op, SetMembers, StateRead, position

__all__ = [
    "Projection",
    "ProjectionHandler",
    "ProjectorHandler",
    "by_stream",
    "id_key",
    "id_newer",
    "position",
    "rebuild",
    "wait_for",
]

_APPLY_LUA = (
    STREAM_IDS_LUA + resources.files("airfix.projections").joinpath("apply.lua").read_text()
)


def id_newer(a: str, b: str) -> bool:
    return id_key(a) > id_key(b)


class Projection:
    """A fold bound to a Redis client: where its view and checkpoint are, and how to read or drop
    the whole view.  Subclasses set ``fold`` and implement ``dump``/``clear``."""

    fold: Fold[Any]

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    @property
    def name(self) -> str:
        return self.fold.name

    def view_key(self) -> str:
        return self.fold.view_key()

    def dump(self) -> Any:
        """The whole view as plain data, for rebuild comparisons."""
        raise NotImplementedError

    def clear(self) -> None:
        """Delete the view and its checkpoint (used on scratch namespaces)."""
        raise NotImplementedError

    @property
    def checkpoint_key(self) -> str:
        return self.keys.checkpoint(self.view_key())

    def checkpoints(self) -> dict[str, str]:
        raw = self.client.hgetall(self.checkpoint_key)
        return {_s(k): _s(v) for k, v in raw.items()}


def read_states(client: Any, reads: Sequence[StateRead | None]) -> list[Any]:
    """Execute the fold's state reads in one round trip (None reads give None)."""
    pipe = client.pipeline(transaction=False)
    queue_reads(pipe, reads)
    return answers(reads, pipe.execute() if any(r is not None for r in reads) else [])


def queue_reads(pipe: Any, reads: Sequence[StateRead | None]) -> None:
    """Queue the fold's state reads on ``pipe`` (None reads queue nothing)."""
    for r in reads:
        if isinstance(r, HashField):
            pipe.hget(r.key, r.field)
        elif isinstance(r, SetMembers):
            pipe.smembers(r.key)


def answers(reads: Sequence[StateRead | None], replies: Iterable[Any]) -> list[Any]:
    """One answer per read, from the replies :func:`queue_reads` got (None for a None read)."""
    raw = iter(replies)
    return [None if r is None else next(raw) for r in reads]


class RunStates:
    """Per-run fold states between batches, staged until the batch is written."""

    def __init__(self, max_runs: int = 10_000) -> None:
        self._max = max_runs
        self._cache: dict[str, Any] = {}
        self._staged: dict[str, Any] = {}

    def load(self, projection: Projection, run_ids: Iterable[str]) -> dict[str, Any]:
        """The states of ``run_ids``: staged, cached, or read from the view."""
        wanted = list(dict.fromkeys(run_ids))
        missing = self.missing(wanted)
        if missing:
            reads = [projection.fold.state_at(r) for r in missing]
            self.fill(projection, missing, read_states(projection.client, reads))
        return {r: self._staged.get(r, self._cache.get(r)) for r in wanted}

    def missing(self, run_ids: Iterable[str]) -> list[str]:
        """Those of ``run_ids`` neither staged nor cached: their states must be read."""
        return [r for r in dict.fromkeys(run_ids) if r not in self._staged and r not in self._cache]

    def fill(self, projection: Projection, run_ids: Sequence[str], raw: Sequence[Any]) -> None:
        """Cache the states of ``run_ids`` read from the view (``raw``: one reply each)."""
        if len(self._cache) + len(run_ids) > self._max:
            self._cache.clear()
        for r, value in zip(run_ids, raw, strict=True):
            self._cache[r] = projection.fold.decode(r, value)

    def stage(self, states: Mapping[str, Any]) -> None:
        self._staged.update(states)

    def commit(self) -> None:
        self._cache.update(self._staged)
        self._staged.clear()

    def clear(self) -> None:
        self._cache.clear()
        self._staged.clear()


class ProjectionHandler:
    """Adapts a :class:`Projection` to the consumer runtime; ordered (a failure halts the run).

    The checkpoint is read once per partition and then tracked in memory (the Lua script checks
    it again on every call, so a stale copy can only cost a wasted call, never a double apply).
    """

    ordered = True
    start_id = "0"  # projections see all history

    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.group = f"projection:{projection.name}"
        self._script = projection.client.register_script(_APPLY_LUA)
        self._checkpoints: dict[str, tuple[int, int]] = {}
        self.states = RunStates()

    def on_partitions_changed(self) -> None:
        """Partitions changed hands: anything cached may be stale."""
        self.states.clear()
        self._checkpoints.clear()

    def handle(self, entries: Sequence[LogEntry]) -> None:
        for stream, rows in by_stream(entries).items():
            self.apply_entries(stream, rows)

    def _checkpoint(self, stream: str) -> tuple[int, int]:
        if stream not in self._checkpoints:
            p = self.projection
            self._checkpoints[stream] = id_key(
                _s(p.client.hget(p.checkpoint_key, stream) or b"0-0")
            )
        return self._checkpoints[stream]

    def prepare(
        self, stream: str, entries: Sequence[LogEntry]
    ) -> tuple[list[str], list[Any], str] | None:
        """The apply.lua call for ``entries`` past the checkpoint (None: nothing to do).

        Stages the folded states; follow with :meth:`done` or :meth:`failed`."""
        ckpt = self._checkpoint(stream)
        fresh = [e for e in entries if e.event is not None and id_key(e.entry_id) > ckpt]
        if not fresh:
            return None
        try:
            keys, args = self._script_args("ckpt", self.projection.checkpoint_key, stream, fresh)
        except BaseException:
            self.failed()
            raise
        return keys, args, fresh[-1].entry_id

    def _script_args(
        self, mode: str, fence_key: str, field: str, entries: Sequence[LogEntry]
    ) -> tuple[list[str], list[Any]]:
        """Fold ``entries`` and stage the states; KEYS and ARGV of one apply.lua call (see its
        header) for their ops."""
        pairs = [(e.entry_id, e.event) for e in entries if e.event is not None]
        states = self.states.load(self.projection, (ev.run_id for _, ev in pairs))
        states, ops = fold_entries(self.projection.fold, states, pairs)
        self.states.stage(states)
        return script_args(mode, fence_key, field, [e for e, _ in pairs], ops)

    def done(self, stream: str, last_entry: str) -> None:
        self.states.commit()
        self._checkpoints[stream] = id_key(last_entry)

    def failed(self) -> None:
        """The write may or may not have happened: forget every cached thing."""
        self.states.clear()
        self._checkpoints.clear()

    def dead_letter_fields(self, stream: str) -> dict[str, str]:
        """Recorded with every entry this group parks: the view's checkpoint on ``stream`` right
        then.  Entries are applied in log order, so a checkpoint at or past a parked entry means the
        view applied it before it was parked (a crash between apply and ack), and a retry must not."""
        p = self.projection
        return {f"ckpt.{p.name}": _s(p.client.hget(p.checkpoint_key, stream) or b"0-0")}

    def redeliver(self, entry: LogEntry, parked: Mapping[str, str]) -> int:
        """Apply one parked entry again, exactly once; returns 1 if it was applied now.

        The checkpoint cannot fence it (later entries of the partition moved it on), so: skip it if
        ``parked`` (the fields :meth:`dead_letter_fields` recorded) says the view had it already;
        else apply.lua in 'once' mode with a marker ``<log>|<entry id>`` in the view's slot, so a
        retry that crashed or runs twice never applies it a second time."""
        p = self.projection
        at_park = parked.get(f"ckpt.{p.name}")
        if at_park is not None and id_key(entry.entry_id) <= id_key(at_park):
            return 0
        if entry.event is None:
            raise entry.error or ValueError(f"entry {entry.entry_id} has no event")
        self.states.clear()  # a retry folds from the view as it is in Redis, not from a cache
        try:
            keys, args = self._script_args(
                "once", p.keys.retried(p.view_key()), f"{entry.stream}|{entry.entry_id}", [entry]
            )
            applied = int(self._script(keys=keys, args=args))
        except BaseException:
            self.failed()
            raise
        self.states.commit()
        return applied

    def apply_entries(self, stream: str, entries: Sequence[LogEntry], *, client: Any = None) -> int:
        """Apply ``entries`` of one partition log; returns how many were past the checkpoint."""
        call = self.prepare(stream, entries)
        if call is None:
            return 0
        keys, args, last = call
        try:
            applied = int(self._script(keys=keys, args=args, client=client))
        except BaseException:
            self.failed()
            raise
        self.done(stream, last)
        return applied


def script_args(
    mode: str, fence_key: str, field: str, entry_ids: Sequence[str], ops: Sequence[list[Op]]
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of one apply.lua call: each entry id with its ops, keys passed by index."""
    keys: dict[str, int] = {fence_key: 1}
    args: list[Any] = [mode, field, len(entry_ids)]
    for entry_id, entry_ops in zip(entry_ids, ops, strict=True):
        args += [entry_id, len(entry_ops)]
        for op in entry_ops:
            name, op_args = op.wire()
            idx = keys.setdefault(op.key, len(keys) + 1)
            wire = [keys.setdefault(a.key, len(keys) + 1) if isinstance(a, KeyRef) else a
                    for a in op_args]  # fmt: skip
            args += [name, idx, len(wire), *wire]
    return list(keys), args


class ProjectorHandler:
    """Every projection behind one consumer group (``projections``): each batch is read and
    decoded once, and the projections' apply.lua calls go to Redis in one pipeline.

    Each call still touches only its own view's slot, so the layout stays cluster-safe; each
    projection keeps its own checkpoint, so a crash between two of them is repaired on redelivery
    (the ones already applied skip).  A failure halts the run for the whole group.
    """

    ordered = True
    start_id = "0"
    group = "projections"

    def __init__(self, projections: Sequence[Projection]) -> None:
        self.handlers = [ProjectionHandler(p) for p in projections]
        self.client = projections[0].client

    def on_partitions_changed(self) -> None:
        for h in self.handlers:
            h.on_partitions_changed()

    def dead_letter_fields(self, stream: str) -> dict[str, str]:
        """Every view's checkpoint on ``stream`` (see :meth:`ProjectionHandler.dead_letter_fields`)."""
        out: dict[str, str] = {}
        for h in self.handlers:
            out.update(h.dead_letter_fields(stream))
        return out

    def redeliver(self, entry: LogEntry, parked: Mapping[str, str]) -> int:
        """Apply a parked entry to every view that does not have it yet, each exactly once; a crash
        between two views is repaired by the next retry (the views done already skip it)."""
        return sum(h.redeliver(entry, parked) for h in self.handlers)

    def handle(self, entries: Sequence[LogEntry]) -> None:
        for stream, rows in by_stream(entries).items():
            calls = []
            try:
                self._prefetch(stream, rows)
                for h in self.handlers:
                    call = h.prepare(stream, rows)
                    if call is not None:
                        calls.append((h, call))
                if not calls:
                    continue
                self._apply(calls)
            except BaseException:
                for h in self.handlers:
                    h.failed()
                raise
            for h, (_, _, last) in calls:
                h.done(stream, last)

    def _prefetch(self, stream: str, rows: Sequence[LogEntry]) -> None:
        """What the views lack for this batch (their checkpoints on ``stream``, the states of its
        runs), read in one round trip: a run's first entry costs one, not two per view."""
        run_ids = [e.event.run_id for e in rows if e.event is not None]
        pipe = self.client.pipeline(transaction=False)
        wanted = []
        for h in self.handlers:
            ckpt = stream not in h._checkpoints
            if ckpt:
                pipe.hget(h.projection.checkpoint_key, stream)
            missing = h.states.missing(run_ids)
            reads = [h.projection.fold.state_at(r) for r in missing]
            queue_reads(pipe, reads)
            wanted.append((h, ckpt, missing, reads))
        if not len(pipe):
            return
        replies = iter(pipe.execute())
        for h, ckpt, missing, reads in wanted:
            if ckpt:
                h._checkpoints[stream] = id_key(_s(next(replies) or b"0-0"))
            n = sum(1 for r in reads if r is not None)
            h.states.fill(h.projection, missing, answers(reads, [next(replies) for _ in range(n)]))

    def _apply(
        self, calls: Sequence[tuple[ProjectionHandler, tuple[list[str], list[Any], str]]]
    ) -> None:
        """The views' apply.lua calls: one pipeline on a single server; one call each on a cluster,
        where redis-py's pipeline cannot load a script a node lacks (after a failover, say) and
        each call goes to its own view's node anyway."""
        if is_cluster(self.client):
            for h, (keys, args, _) in calls:
                h._script(keys=keys, args=args)
            return
        pipe = self.client.pipeline(transaction=False)
        for h, (keys, args, _) in calls:
            h._script(keys=keys, args=args, client=pipe)
        pipe.execute()


def by_stream(entries: Sequence[LogEntry]) -> dict[str, list[LogEntry]]:
    out: dict[str, list[LogEntry]] = {}
    for e in entries:
        out.setdefault(e.stream, []).append(e)
    return out


# ----------------------------------------------------------------------------- catching up


def wait_for(
    projection: Projection,
    stream: str,
    entry_id: str,
    *,
    timeout_s: float = 10.0,
    poll_s: float = 0.0002,
) -> bool:
    """Wait until ``projection`` has applied ``entry_id`` of ``stream`` (read-your-writes).

    Polls from 0.2 ms, doubling up to 20 ms: a quick catch-up is seen quickly, a slow one costs
    few round trips."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = projection.client.hget(projection.checkpoint_key, stream)
        if got is not None and not id_newer(entry_id, _s(got)):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
        poll_s = min(poll_s * 2, 0.02)


def rebuild(store: EventStore, projection: Projection, *, page: int = 1000) -> int:
    """Fold the whole log into ``projection`` (usually bound to a scratch namespace), trimmed
    runs included (``EventStore.iter_history``), so a trim never makes a rebuild differ."""
    projection.clear()
    handler = ProjectionHandler(projection)
    total = 0
    for p in range(store.keys.partitions):
        batch: list[LogEntry] = []
        for entry in store.iter_history(p, page=page):
            batch.append(entry)
            if len(batch) >= page:
                total += handler.apply_entries(store.keys.log(p), batch)
                batch = []
        if batch:
            total += handler.apply_entries(store.keys.log(p), batch)
    return total
