"""The event store: per-run streams plus partitioned logs on Redis Streams.

``append`` is the only writer.  One Lua script (``append.lua``) checks the run's version and the
idempotency ledger, then adds every event to the run's stream (entry id ``0-<version>``) and to the
run's partition log, all or nothing as far as Redis allows: every check runs before the first write.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import redis

from airfix.events import codec
from airfix.events.errors import (
    ConcurrencyError,
    DuplicateEventError,
    InvalidEventError,
    StoreError,
    StoreLayoutError,
    UndecodableEntry,
)
from airfix.events.keys import Keys, partition_of
from airfix.events.schema import EVENT_TYPES, Event

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_APPEND_LUA = resources.files("airfix.events.storage").joinpath("append.lua").read_text()
#: Lua helpers comparing stream ids; prepended to the scripts that need them.
STREAM_IDS_LUA = resources.files("airfix.events.storage").joinpath("stream_ids.lua").read_text()


@dataclass(frozen=True)
class Position:
    """Where one appended event landed: its run stream entry and its partition log entry."""

    version: int
    run_entry: str
    log_entry: str


@dataclass(frozen=True)
class AppendResult:
    version: int  # the run's version after the append
    positions: list[Position]
    duplicate: bool  # True when every event was already recorded (a retry after a lost reply)


@dataclass(frozen=True)
class LogEntry:
    """One entry of a partition log: the event, or why it could not be decoded."""

    stream: str
    entry_id: str
    fields: dict[bytes, bytes]
    event: Event | None
    error: UndecodableEntry | None


def as_str(value: Any) -> str:
    """A redis-py reply value as str (clients may or may not decode responses).  Bytes that are not
    UTF-8 (a poison entry's fields) become U+FFFD, never an exception: readers of stream entries
    must not crash on what they exist to report."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


_s = as_str


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream id as (ms, seq): compared as numbers, never as strings."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def merge_by_id(
    sources: Sequence[tuple[tuple[int, int], Callable[[], Iterator[LogEntry]]]],
) -> Iterator[LogEntry]:
    """Merge id-ordered entry iterators into one id-ordered stream.  Each source comes with the id
    of its first entry and is opened only when the merge reaches it, so many short sources (the
    trimmed runs of a long log) are never all open at once."""
    waiting = sorted(sources, key=lambda s: s[0], reverse=True)
    heap: list[tuple[tuple[int, int], int, LogEntry, Iterator[LogEntry]]] = []
    opened = 0

    def open_until(limit: tuple[int, int]) -> None:
        nonlocal opened
        while waiting and waiting[-1][0] <= limit:
            it = waiting.pop()[1]()
            first = next(it, None)
            if first is not None:
                opened += 1
                heapq.heappush(heap, (id_key(first.entry_id), opened, first, it))

    while heap or waiting:
        if not heap:
            open_until(waiting[-1][0])
            continue
        open_until(heap[0][0])  # every source that could start before the smallest entry so far
        _, n, entry, it = heapq.heappop(heap)
        yield entry
        nxt = next(it, None)
        if nxt is not None:
            heapq.heappush(heap, (id_key(nxt.entry_id), n, nxt, it))


def read_archive(
    path: Path, run_id: str, from_version: int = 1, to_version: int | None = None
) -> Iterator[Event]:
    """The events of a run archived by ``airfix trim --archive`` (JSON lines, version order)."""
    if not path.is_file():
        raise StoreError(
            f"run {run_id!r} was archived to {path}, which is not there any more; put "
            "the file back (or airfix import it elsewhere) to read the run"
        )
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            ev = codec.decode_data(raw, where=str(path), entry_id=f"line {n}")
            if ev.run_id != run_id:
                raise StoreError(f"{path}, line {n}: an event of run {ev.run_id!r}, not {run_id!r}")
            if ev.version >= from_version and (to_version is None or ev.version <= to_version):
                yield ev


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise InvalidEventError(
            f"run id {run_id!r} is not valid: use 1-128 of A-Z a-z 0-9 . _ : - (no braces or spaces)"
        )
    return run_id


class EventStore:
    """Append and read events.  Thread-safe as far as the redis client is."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self.client = client
        self.keys = keys or Keys()
        self._append = client.register_script(_APPEND_LUA)
        self._layout_recorded = False
        self._check_layout(record=False)

    def _check_layout(self, *, record: bool) -> None:
        """Compare the store's recorded layout with ours; with ``record``, record it first if the
        store has none.  Opening a store only reads: a command refused for bad input writes nothing
        at all, not even ``meta``; the first write (:meth:`ensure_layout`) records it."""
        if record:
            self.client.hsetnx(self.keys.meta, "partitions", self.keys.partitions)
        raw = self.client.hget(self.keys.meta, "partitions")
        if raw is None:
            return
        try:
            stored = int(as_str(raw))
        except ValueError:
            stored = -1
        if stored != self.keys.partitions:
            raise StoreLayoutError(
                f"{self.keys.meta} says this store has {as_str(raw)} partitions, but this process was "
                f"configured with {self.keys.partitions} (config key store.partitions); runs would be "
                "read from the wrong partition, so nothing was done"
            )
        self._layout_recorded = True

    def ensure_layout(self) -> None:
        """Record the layout (once per store object) before the first write; see _check_layout."""
        if not self._layout_recorded:
            self._check_layout(record=True)

    # ------------------------------------------------------------------------------ writing
    def append(self, run_id: str, events: Sequence[Event], expected_version: int) -> AppendResult:
        """Append ``events`` after version ``expected_version`` of ``run_id``.

        Raises :class:`ConcurrencyError` when the run is elsewhere (nothing written),
        :class:`DuplicateEventError` when an event id is reused with other content, and
        :class:`InvalidEventError` for a malformed batch.  Re-sending an appended batch returns the
        original positions with ``duplicate=True`` and writes nothing.
        """
        args = self._validate(run_id, events, expected_version)
        self.ensure_layout()
        keys = [self.keys.run_stream(run_id), self.keys.run_index(run_id), self.keys.log_of(run_id)]
        reply = self._append(keys=keys, args=args)
        status = _s(reply[0])
        if status == "OK":
            return AppendResult(int(reply[1]), self._positions(events, reply[2:]), False)
        if status == "DUPLICATE":
            return AppendResult(int(reply[1]), self._positions(events, reply[2:]), True)
        if status == "CONFLICT":
            raise ConcurrencyError(run_id, expected_version, int(reply[1]))
        if status == "PARTIAL":
            raise ConcurrencyError(run_id, expected_version, int(reply[1]))
        if status == "DIFFERENT":
            raise DuplicateEventError(run_id, _s(reply[1]))
        raise RuntimeError(f"append.lua answered {reply!r}")  # a bug in the script, not bad input

    @staticmethod
    def _positions(events: Sequence[Event], flat: Sequence[Any]) -> list[Position]:
        return [
            Position(ev.version, _s(flat[2 * i]), _s(flat[2 * i + 1]))
            for i, ev in enumerate(events)
        ]

    def _validate(self, run_id: str, events: Sequence[Event], expected_version: int) -> list[Any]:
        check_run_id(run_id)
        if not isinstance(expected_version, int) or expected_version < 0:
            raise InvalidEventError(f"run {run_id!r}: expected_version must be an int >= 0")
        if not events:
            raise InvalidEventError(f"run {run_id!r}: nothing to append")
        args: list[Any] = [expected_version, len(events)]
        seen: set[str] = set()
        for i, ev in enumerate(events):
            where = f"run {run_id!r}, event #{i + 1}"
            name = type(ev).__name__
            if EVENT_TYPES.get(name) is not type(ev):
                raise InvalidEventError(f"{where}: {name} is not an airfix event type")
            if ev.run_id != run_id:
                raise InvalidEventError(f"{where} ({name}): run_id is {ev.run_id!r}")
            if ev.version != expected_version + 1 + i:
                raise InvalidEventError(
                    f"{where} ({name}): version {ev.version}, expected {expected_version + 1 + i} "
                    "(versions are gapless: use stamp())"
                )
            if not ev.event_id or ev.event_id in seen:
                raise InvalidEventError(
                    f"{where} ({name}): missing or repeated event_id {ev.event_id!r}"
                )
            seen.add(ev.event_id)
            f = codec.to_fields(ev)
            args += [ev.event_id, codec.digest(ev), f["type"], f["at"], f["data"], run_id]
        return args

    # ------------------------------------------------------------------------------ reading
    def version(self, run_id: str) -> int:
        """The run's current version (0 when it has no events)."""
        return int(self.client.hget(self.keys.run_index(check_run_id(run_id)), "version") or 0)

    def read_run(
        self, run_id: str, from_version: int = 1, to_version: int | None = None, *, page: int = 1000
    ) -> Iterator[Event]:
        """The run's events in version order, fetched ``page`` at a time."""
        key = self.keys.run_stream(check_run_id(run_id))
        start = max(1, from_version)
        end = f"0-{to_version}" if to_version is not None else "+"
        first = True
        while True:
            chunk = self.client.xrange(key, f"0-{start}", end, count=page) or []
            if first and not chunk and not self.client.exists(key):
                archive = self.trim_record(run_id).get("archive")
                if archive:  # trim --archive moved the run's stream to a file
                    yield from read_archive(Path(archive), run_id, start, to_version)
                return
            first = False
            for entry_id, fields in chunk:
                yield codec.from_fields(fields, where=key, entry_id=_s(entry_id))
            if len(chunk) < page:
                return
            start = int(_s(chunk[-1][0]).split("-")[1]) + 1

    def read_log(self, partition: int, after: str = "0-0", count: int = 1000) -> list[LogEntry]:
        """One page of a partition log, strictly after ``after``; undecodable entries included."""
        key = self.keys.log(partition)
        chunk = (
            self.client.xrange(
                key, f"({after}" if after not in ("-", "0", "0-0") else "-", "+", count=count
            )
            or []
        )
        return [self.entry(key, entry_id, fields) for entry_id, fields in chunk]

    def iter_log(
        self, partition: int, after: str = "0-0", *, page: int = 1000
    ) -> Iterator[LogEntry]:
        while True:
            chunk = self.read_log(partition, after, page)
            yield from chunk
            if len(chunk) < page:
                return
            after = chunk[-1].entry_id

    def trim_record(self, run_id: str) -> dict[str, Any]:
        """What ``airfix trim`` recorded for the run (``{}``: never trimmed)."""
        raw = self.client.hget(
            self.keys.trimmed(partition_of(run_id, self.keys.partitions)), run_id
        )
        return json.loads(raw) if raw else {}

    def iter_history(self, partition: int, *, page: int = 1000) -> Iterator[LogEntry]:
        """The partition log as it was written: the live entries merged, in entry id order, with
        the entries ``airfix trim`` removed, read back from their runs' streams (or archives) at
        the log positions the runs' ledgers recorded.  What rebuilds fold."""
        trimmed = self.client.hgetall(self.keys.trimmed(partition))
        if not trimmed:
            return self.iter_log(partition, page=page)
        sources: list[tuple[tuple[int, int], Callable[[], Iterator[LogEntry]]]] = [
            ((0, 0), lambda: self.iter_log(partition, page=page))
        ]
        for run, raw in trimmed.items():
            rec = json.loads(raw)
            sources.append(
                (id_key(rec["first"]), partial(self._trimmed_entries, partition, as_str(run)))
            )
        return merge_by_id(sources)

    def _trimmed_entries(self, partition: int, run_id: str) -> Iterator[LogEntry]:
        stream = self.keys.log(partition)
        ledger = self.client.hgetall(self.keys.run_index(run_id))
        for ev in self.read_run(run_id, page=256):
            rec = ledger.get(f"e:{ev.event_id}".encode())
            if rec is None:
                raise StoreError(
                    f"run {run_id!r}: event {ev.event_id} (v{ev.version}) of its stream "
                    "or archive is not in its ledger; the archive is not this run's"
                )
            fields = {
                k.encode(): v if isinstance(v, bytes) else v.encode()
                for k, v in codec.to_fields(ev).items()
            }
            yield LogEntry(stream, as_str(rec).split()[2], fields, ev, None)

    @staticmethod
    def entry(stream: str, entry_id: Any, fields: Any) -> LogEntry:
        eid = _s(entry_id)
        try:
            return LogEntry(
                stream,
                eid,
                fields or {},
                codec.from_fields(fields, where=stream, entry_id=eid),
                None,
            )
        except UndecodableEntry as exc:
            return LogEntry(stream, eid, fields or {}, None, exc)

    def log_ends(self) -> dict[str, str]:
        """The last entry id of every partition log (``0-0`` when empty)."""
        pipe = self.client.pipeline(transaction=False)
        for key in self.keys.logs():
            pipe.xrevrange(key, "+", "-", count=1)
        out = {}
        for key, rows in zip(self.keys.logs(), pipe.execute(), strict=True):
            out[key] = _s(rows[0][0]) if rows else "0-0"
        return out
