"""Dead letters: list, show, retry and discard the entries a consumer group parked.

A group parks an entry (``Consumer.dead_letter``) when its handler failed at the delivery cap
(kind ``failed``), when the entry cannot be decoded (``undecodable``), or, for an ordered handler,
because an earlier entry of the same run failed and halted the run (``held``).

**Retry** hands the original entry to the group's handler again.  For a halted run it works through
the run's parked entries oldest first (the failed one, then the held ones), so an ordered view
sees them in log order; the named dead letter must therefore be the run's oldest one.  When none
is left the run's halt is cleared.  Exactly once:

* projections cannot use their partition checkpoint (later entries moved it past the parked one),
  so :meth:`ProjectionHandler.redeliver` skips a view whose checkpoint had reached the entry when it
  was parked (it applied it before a crash) and otherwise applies it in apply.lua's ``once`` mode,
  fenced by a marker in the view's own slot: a crashed or repeated retry cannot apply it twice;
* roles are idempotent by version (they act only on the run's newest event and append at the
  version they read), so re-delivering the entry is handing it to their handler again;
* a dead letter is deleted only after its entry went through, so a retry that fails or crashes
  leaves it where it was.

**Who does it.**  Only the consumer that owns the entry's partition may touch a halted run, or a
worker with a stale halted-run cache could park a new entry behind the retry and then, once it
saw the halt cleared, apply later ones before it.  So an operation is a request in
``dlq_requests:<group>``: a live owner serves it between its own batches
(:meth:`Consumer.serve_retries`); when nobody owns the partition the command takes the lease and
serves it itself.  Discard goes the same way, since discarding a run's last parked entry resumes it.

On the embedded store (journal) every dead letter is re-derived when a command starts: the journal
is replayed and the projections fold it again.  So each successful retry or discard is also
recorded next to the journal (:func:`airfix.events.storage.journal.record_action`) and done again, by event
id, after that replay (:func:`reapply`): a discarded poison event stays discarded.
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Self

import msgspec

from airfix.events.errors import AirfixError, UndecodableEntry
from airfix.events.keys import Keys, partition_of
from airfix.events.storage.store import RUN_ID_RE, EventStore, LogEntry, id_key
from airfix.events.storage.store import as_str as _s
from airfix.services.runtime.consumers import (
    DEAD_LETTER_COPY_BYTES,
    Consumer,
    Handler,
    consumer_name,
)

if TYPE_CHECKING:
    import redis

    from airfix.services.runtime.app import App

_ID = re.compile(r"^\d+-\d+$")
STOPPING = ("failed", "held")  # the kinds that keep an ordered group's run halted


def _int(value: Any) -> int:
    """A count or version field as an int >= 0; anything else (a malformed dead letter) is 0."""
    try:
        return max(0, int(_s(value).strip()))
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        out = float(_s(value).strip())
    except (TypeError, ValueError):
        return 0.0
    return out if math.isfinite(out) and out >= 0 else 0.0


def _entry_key(entry_id: str) -> tuple[float, float]:
    """Log order of an entry id; a malformed one sorts last instead of raising."""
    return id_key(entry_id) if _ID.match(entry_id) else (math.inf, math.inf)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def printable(text: str, *, newlines: bool = True) -> str:
    """``text`` safe for a terminal: control characters (escape sequences of a poison entry) as
    ``\\xNN``; without ``newlines`` line breaks and tabs too."""
    pattern = _CONTROL if newlines else re.compile(r"[\x00-\x1f\x7f]")
    return pattern.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@dataclass(frozen=True)
class DeadLetter:
    """One entry of ``dead_letters:<group>``: where the original entry was, why it was parked.

    Any shape reads: a field that is missing, not a number or not UTF-8 gets a neutral value
    (``?``, 0, U+FFFD), so list, show and discard work on the malformed entries they exist for.
    ``original`` is the bounded copy (``Consumer.dead_letter``); ``truncated`` says it was cut, and
    :meth:`log_entry` then reads the whole original back from where it is."""

    group: str
    id: str
    kind: str
    stream: str
    entry: str
    error: str
    attempts: int
    consumer: str
    parked_at: float
    original: dict[bytes, bytes]
    parked: dict[str, str]  # what the handler recorded at park time (``ckpt.<view>``)
    truncated: bool = False
    original_bytes: int = 0

    @classmethod
    def from_fields(cls, group: str, dl_id: Any, fields: Any) -> DeadLetter:
        raw = {k if isinstance(k, bytes) else str(k).encode(): v for k, v in (fields or {}).items()}
        f = {_s(k): v for k, v in raw.items()}
        original = {
            k[5:]: v if isinstance(v, bytes) else str(v).encode()
            for k, v in raw.items()
            if k.startswith(b"orig.")
        }
        return cls(
            group=group,
            id=_s(dl_id),
            kind=_s(f.get("kind", b"?")) or "?",
            stream=_s(f.get("stream", b"")),
            entry=_s(f.get("entry", b"")),
            error=_s(f.get("error", b"")),
            attempts=_int(f.get("attempts", 0)),
            consumer=_s(f.get("consumer", b"")),
            parked_at=_float(f.get("parked_at", 0)),
            original=original,
            parked={k: _s(v) for k, v in f.items() if k.startswith("ckpt.")},
            truncated=_s(f.get("truncated", b"")) == "1",
            original_bytes=_int(f.get("orig_bytes", 0))
            or sum(len(k) + len(v) for k, v in original.items()),
        )

    def _orig(self, name: str) -> str:
        return _s(self.original.get(name.encode(), b""))

    @property
    def run(self) -> str:
        return self._orig("run")

    @property
    def event_type(self) -> str:
        return self._orig("type") or "?"

    @property
    def version(self) -> int:
        return _int(self._orig("v"))

    @property
    def event_id(self) -> str:
        return self._orig("id")

    def log_entry(self, store: EventStore | None = None) -> LogEntry:
        """The original partition-log entry, decoded (or with the reason it still cannot be).

        A truncated copy is not the entry: with ``store`` the whole original is read back from
        its partition log (``stream``, ``entry``), or from its run's stream by version when the
        log entry was trimmed; without it, or when neither has it, the reason says so."""
        if not self.truncated:
            return EventStore.entry(self.stream, self.entry or "0-0", self.original)
        if store is not None:
            if _ID.match(self.entry) and self.stream:
                rows = store.client.xrange(self.stream, self.entry, self.entry)
                if rows:
                    return EventStore.entry(self.stream, self.entry, rows[0][1])
            if self.run and self.version > 0 and RUN_ID_RE.match(self.run):
                rows = store.client.xrange(
                    store.keys.run_stream(self.run), f"0-{self.version}", f"0-{self.version}"
                )
                if rows and _s((rows[0][1] or {}).get(b"id", b"")) == self.event_id:
                    return EventStore.entry(self.stream, self.entry or "0-0", rows[0][1])
        where = f"entry {self.entry or '?'} of {self.stream or '?'}"
        return LogEntry(
            self.stream,
            self.entry or "0-0",
            self.original,
            None,
            UndecodableEntry(
                self.stream or "?",
                self.entry or "?",
                f"the dead letter keeps only the first {DEAD_LETTER_COPY_BYTES} bytes of the original "
                f"({self.original_bytes} bytes), and {where} is no longer there (nor its run's event "
                f"v{self.version})"
                if store is not None
                else f"the dead letter keeps only the first {DEAD_LETTER_COPY_BYTES} bytes of the original "
                f"({self.original_bytes} bytes); the whole entry is {where}",
            ),
        )

    def to_dict(self, *, event: bool = False, store: EventStore | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "group": self.group,
            "kind": self.kind,
            "run": self.run,
            "version": self.version,
            "type": self.event_type,
            "event_id": self.event_id,
            "stream": self.stream,
            "entry": self.entry,
            "error": self.error,
            "attempts": self.attempts,
            "consumer": self.consumer,
            "parked_at": self.parked_at,
            "truncated": self.truncated,
            "original_bytes": self.original_bytes,
        }
        if event:
            entry = self.log_entry(store)
            out["checkpoints_when_parked"] = {k[5:]: v for k, v in self.parked.items()}
            out["event"] = msgspec.to_builtins(entry.event) if entry.event is not None else None
            out["undecodable"] = str(entry.error) if entry.error is not None else None
            out["fields"] = {_s(k): _s(v) for k, v in self.original.items() if k != b"data"}
        return out


@dataclass
class Outcome:
    """What a retry or discard did (also the JSON a serving worker hands back to the command)."""

    op: str
    group: str
    dead_letter: str
    state: str = "queued"  # queued | done | failed
    run: str = ""
    done: list[str] = field(default_factory=list)  # dead letters retried/discarded, oldest first
    applied: int = 0  # view applications (projection groups)
    failed: str = ""  # the dead letter that failed again
    error: str = ""
    resumed: bool = False  # the run's halt in the group was cleared
    still_parked: int = 0  # the run's failed/held dead letters left in the group
    served_by: str = ""


# --------------------------------------------------------------------------------- reading


def dlq_groups(client: redis.Redis, keys: Keys) -> list[str]:
    """Every group that has a dead-letter stream."""
    head = keys.dead_letters("")
    return sorted(_s(k)[len(head) :] for k in client.scan_iter(match=f"{head}*", count=1000))


def list_dead_letters(
    client: redis.Redis, keys: Keys, group: str | None = None
) -> list[DeadLetter]:
    groups = [group] if group else dlq_groups(client, keys)
    return [
        DeadLetter.from_fields(g, i, f)
        for g in groups
        for i, f in client.xrange(keys.dead_letters(g)) or []
    ]


def _load(client: redis.Redis, keys: Keys, group: str, dl_id: str) -> DeadLetter | None:
    rows = client.xrange(keys.dead_letters(group), dl_id, dl_id)
    return DeadLetter.from_fields(group, rows[0][0], rows[0][1]) if rows else None


def find(client: redis.Redis, keys: Keys, dl_id: str, group: str | None = None) -> DeadLetter:
    """The dead letter ``dl_id`` (of ``group``, or of whichever group has it); bad input raises."""
    if not _ID.match(dl_id) or max(id_key(dl_id)) >= 2**64:
        raise AirfixError(
            f"{dl_id!r} is not a dead-letter id (they look like 1732467240123-0; "
            "see airfix dlq list)"
        )
    groups = [group] if group else dlq_groups(client, keys)
    found = [d for g in groups if (d := _load(client, keys, g, dl_id)) is not None]
    if not found:
        where = (
            f"group {group}"
            if group
            else (
                f"any group ({', '.join(groups)})"
                if groups
                else "any group (there are no dead letters)"
            )
        )
        raise AirfixError(f"no dead letter {dl_id} in {where}; see airfix dlq list")
    if len(found) > 1:
        raise AirfixError(
            f"dead letter {dl_id} exists in groups {', '.join(d.group for d in found)}; "
            "pass --group"
        )
    return found[0]


def backlog(client: redis.Redis, keys: Keys, dl: DeadLetter) -> list[DeadLetter]:
    """The group's failed/held dead letters of ``dl``'s run, oldest (by log position) first."""
    if not dl.run:
        return []
    same = [
        d
        for d in list_dead_letters(client, keys, dl.group)
        if d.run == dl.run and d.kind in STOPPING
    ]
    return sorted(same, key=lambda d: _entry_key(d.entry))


def to_retry(client: redis.Redis, keys: Keys, dl: DeadLetter, ordered: bool) -> list[DeadLetter]:
    """The dead letters a retry of ``dl`` goes through, in order; bad input raises.

    For an ordered group and a run it stopped, that is the run's whole backlog, which must start
    with ``dl``: retrying a later entry first would apply the run's events out of order."""
    if not (ordered and dl.kind in STOPPING and dl.run):
        return [dl]
    todo = backlog(client, keys, dl)
    if todo and todo[0].id != dl.id:
        head = todo[0]
        raise AirfixError(
            f"dead letter {dl.id} (run {dl.run} v{dl.version}) waits behind {head.id} (v{head.version}, "
            f"{head.kind}) in group {dl.group}: a run's parked entries are retried oldest first; "
            f"retry {head.id} (or discard it) first"
        )
    return todo


# --------------------------------------------------------------------------------- serving


def _deliver(handler: Handler, entry: LogEntry, dl: DeadLetter) -> int:
    if entry.error is not None:
        raise entry.error
    redeliver = getattr(handler, "redeliver", None)
    if redeliver is not None:  # projections: past the partition fence, exactly once
        return int(redeliver(entry, dl.parked))
    handler.handle([entry])  # roles and other handlers are idempotent by design
    return 0


def perform(consumer: Consumer, op: str, dl_id: str) -> Outcome:
    """Retry or discard dead letter ``dl_id`` of the consumer's group; the caller owns its partition."""
    client, keys, group = consumer.client, consumer.keys, consumer.group
    out = Outcome(op=op, group=group, dead_letter=dl_id, served_by=consumer.name)
    dl = _load(client, keys, group, dl_id)
    if dl is None:
        out.state, out.error = (
            "failed",
            f"no dead letter {dl_id} in group {group} (already handled?)",
        )
        return out
    out.run = dl.run
    if op == "discard":
        client.xdel(keys.dead_letters(group), dl.id)
        out.done.append(dl.id)
    else:
        try:
            todo = to_retry(client, keys, dl, consumer.handler.ordered)
        except AirfixError as exc:
            out.state, out.error = "failed", str(exc)
            return out
        for d in todo:
            try:
                out.applied += _deliver(consumer.handler, d.log_entry(consumer.store), d)
            except Exception as exc:  # noqa: BLE001 - the handler's failure is what retry reports
                out.failed, out.error = d.id, f"{type(exc).__name__}: {exc}"
                break
            client.xdel(keys.dead_letters(group), d.id)  # only now: a crash above retries it again
            out.done.append(d.id)
    left = backlog(client, keys, dl)
    out.still_parked = len(left)
    if consumer.handler.ordered and dl.run and not left and client.hdel(keys.halted(group), dl.run):
        out.resumed = True
    out.state = "failed" if out.failed else "done"
    return out


def _partition(keys: Keys, dl: DeadLetter, *, required: bool = True) -> int | None:
    """The partition whose owner handles ``dl``: its stream's, else (a malformed dead letter) its
    run's; None when it names neither, which only a discard accepts (``required=False``)."""
    if dl.stream in keys.logs():
        return keys.logs().index(dl.stream)
    if dl.run and RUN_ID_RE.match(dl.run):
        return partition_of(dl.run, keys.partitions)
    if required:
        raise AirfixError(
            f"dead letter {dl.id} comes from {printable(dl.stream or '(no stream)')}, "
            f"which is no partition log of this store ({keys.prefix}, {keys.partitions} "
            "partitions), and names no run; it can only be discarded"
        )
    return None


def serve_requests(consumer: Consumer) -> int:
    """Serve the queued requests of the consumer's group whose partition it owns; how many."""
    client, keys = consumer.client, consumer.keys
    served = 0
    for raw_id, raw in client.hgetall(keys.dlq_requests(consumer.group)).items():
        req = json.loads(raw)
        dl_id = _s(raw_id)
        if req.get("state") != "queued":
            continue
        dl = _load(client, keys, consumer.group, dl_id)
        if dl is not None and _partition(keys, dl, required=False) not in (None, *consumer.owned):
            continue  # another consumer's partition
        out = perform(consumer, req["op"], dl_id)
        client.hset(keys.dlq_requests(consumer.group), dl_id, json.dumps(asdict(out)))
        served += 1
    return served


class _Renewer:
    """Keeps a command's borrowed leases alive while it serves (a role's retry may run a fixer)."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dlq-lease", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.consumer.settings.heartbeat_interval_ms / 1000):
            self.consumer.renew_leases()

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.consumer.release_all()


def request(app: App, op: str, dl: DeadLetter, *, wait_s: float = 30.0) -> Outcome:
    """Have ``op`` done on ``dl`` by its partition's owner: a live worker serves it at its next
    rebalance; with no owner this process takes the lease and does it.  ``state`` stays
    ``queued`` when ``wait_s`` passes first (the request stays for the owner)."""
    handler = app.handler_for(dl.group) if op == "retry" else _Discarder(dl.group)
    if op == "retry":
        to_retry(app.client, app.keys, dl, handler.ordered)  # bad input: nothing written
    partition = _partition(app.keys, dl, required=op == "retry")
    if partition is None:  # a malformed dead letter that no partition's run order concerns
        app.client.xdel(app.keys.dead_letters(dl.group), dl.id)
        _record(app, op, dl)
        return Outcome(
            op=op,
            group=dl.group,
            dead_letter=dl.id,
            state="done",
            done=[dl.id],
            served_by="this command",
        )
    consumer = Consumer(app.store, handler, app.settings, name=f"dlq-{consumer_name()}")
    req_key = app.keys.dlq_requests(dl.group)
    app.client.hset(
        req_key,
        dl.id,
        json.dumps({"op": op, "state": "queued", "by": consumer.name, "at": time.time()}),
    )
    deadline = time.monotonic() + wait_s
    while True:
        raw = app.client.hget(req_key, dl.id)
        if raw is None:  # someone else's command took our request's answer
            return Outcome(
                op=op,
                group=dl.group,
                dead_letter=dl.id,
                state="failed",
                error="the request vanished (another airfix dlq command?)",
            )
        answer = json.loads(raw)
        if answer.get("state") != "queued":
            app.client.hdel(req_key, dl.id)
            return Outcome(**answer)
        if consumer.try_own(partition):
            with _Renewer(consumer):
                raw = app.client.hget(req_key, dl.id)  # served just before the lease came free?
                answer = json.loads(raw) if raw else {}
                out = (
                    Outcome(**answer)
                    if answer.get("state") not in (None, "queued")
                    else perform(consumer, op, dl.id)
                )
            app.client.hdel(req_key, dl.id)
            if out.done:
                _record(app, op, dl)
            return out
        if time.monotonic() >= deadline:
            owner = _s(app.client.get(app.keys.lease(dl.group, partition)) or b"?")
            return Outcome(
                op=op,
                group=dl.group,
                dead_letter=dl.id,
                run=dl.run,
                state="queued",
                error=f"partition {partition} of group {dl.group} is owned by {owner}, "
                f"which has not served the request within {wait_s:g}s; it stays "
                "queued for that consumer",
            )
        time.sleep(0.05)


class _Discarder:
    """Stands in for the group's handler when the operation only discards (no handler needed)."""

    ordered = True

    def __init__(self, group: str) -> None:
        self.group = group

    def handle(self, entries: Any) -> None:  # pragma: no cover - discard never delivers
        raise AssertionError("discard delivers nothing")


# --------------------------------------------------------------------------------- the embedded store


def _record(app: App, op: str, dl: DeadLetter) -> None:
    from airfix.events.storage.journal import JournaledStore, record_action

    if isinstance(app.store, JournaledStore) and dl.event_id:
        record_action(
            app.store.journal, {"op": op, "group": dl.group, "event": dl.event_id, "kind": dl.kind}
        )


def reapply(app: App, action: Mapping[str, Any]) -> None:
    """Do a recorded retry/discard again after a journal replay re-derived the dead letters."""
    group, event_id = str(action["group"]), str(action["event"])
    dl = next(
        (
            d
            for d in list_dead_letters(app.client, app.keys, group)
            if d.event_id == event_id and d.kind == action.get("kind", d.kind)
        ),
        None,
    )
    if dl is None:
        return  # not parked this time (the cause went away): nothing to do again
    handler = app.handler_for(group) if action["op"] == "retry" else _Discarder(group)
    consumer = Consumer(app.store, handler, app.settings, name=f"dlq-{consumer_name()}")
    partition = _partition(app.keys, dl, required=False)
    if partition is None:
        app.client.xdel(app.keys.dead_letters(group), dl.id)
        return
    if not consumer.try_own(partition):
        raise AirfixError(
            f"cannot redo the recorded {action['op']} of {event_id}: its partition is owned"
        )
    with _Renewer(consumer):
        out = perform(consumer, str(action["op"]), dl.id)
    if out.state != "done":
        print(
            f"airfix: the recorded {out.op} of event {event_id} in group {group} failed this time: "
            f"{out.error}",
            file=sys.stderr,
        )
