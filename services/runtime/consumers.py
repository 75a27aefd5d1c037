"""The consumer runtime: consumer groups over the partition logs, one owner per partition.

Why partition ownership: Redis delivers one stream's entries to the consumers of a group in any
order ("1 stream with N consumers is load-balanced ... may be consumed out of order").  A run's
events must be handled in order, so each partition log is *leased* to one consumer of a group at
a time (``SET lease NX PX``, renewed by a heartbeat).  Workers share the load by owning a fair
share of the partitions; when a worker dies its leases expire and another worker takes the
partitions over, first reclaiming the dead worker's pending entries with ``XAUTOCLAIM`` (cursor
followed to ``0-0``), in id order, before it reads anything new.  The bound on takeover time is
``lease_ttl_ms + rebalance_interval_ms``.

Failures: a handler that raises is retried in place; every retry is a real re-delivery (``XCLAIM``)
so the cap is counted by Redis' own delivery counter, which also counts crashes.  At the cap the
entry is copied to the group's dead-letter stream and acknowledged.  For an *ordered* handler the
run is halted instead of skipped: its later entries are parked too (reason ``run halted``) and the
halt is recorded in ``halted:<group>``, so status and logs show it.  Entries that cannot be decoded
(an unknown event type, bad JSON) are parked at once: a consumer never crashes on them.

No busy loop: entries are always fetched by a non-blocking ``XREADGROUP ... COUNT``; only when it
finds nothing does the consumer wait, with a plain ``XREAD BLOCK`` from the last id it has seen.
That wait is only a wake-up: it touches no pending list, so a partition whose lease is lost while
the consumer waits has nothing delivered to it (a blocking ``XREADGROUP`` would deliver entries to
a consumer that no longer owns them).  The same path runs on the server and on fakeredis
(``tests/test_third_party.py`` checks the behaviour it relies on, on both).  On a Redis Cluster
the partition logs sit in different hash slots, so both reads go out once per slot
(:func:`~airfix.events.storage.backend.by_slot`); on a single server each is still one command.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import msgspec
import redis
import structlog

from airfix.events.keys import Keys
from airfix.events.storage.backend import StreamsReply, by_slot, is_cluster, xread_across
from airfix.events.storage.store import EventStore, LogEntry, id_key
from airfix.events.storage.store import as_str as _s
from airfix.services.runtime.logs import bind_event
from airfix.services.runtime.metrics import group_info, group_lag

log = structlog.get_logger("airfix.runtime")

_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Handler(Protocol):
    """What a service gives the runtime.  ``handle`` must be idempotent (delivery is at-least-once)."""

    group: str
    ordered: bool

    def handle(self, entries: Sequence[LogEntry]) -> None: ...


@dataclass(frozen=True)
class RuntimeSettings:
    """The knobs of the runtime (config section ``consumers``); units are in the names."""

    block_ms: int = 1000
    batch_size: int = 200
    lease_ttl_ms: int = 10_000
    rebalance_interval_ms: int = 1000
    delivery_cap: int = 5
    retry_backoff_ms: int = 50
    retry_backoff_max_ms: int = 2000
    shutdown_deadline_s: float = 10.0
    heartbeat_interval_ms: int = 2000

    @classmethod
    def from_config(cls, section: Any) -> RuntimeSettings:
        return cls(
            **{f: getattr(section, f) for f in cls.__dataclass_fields__ if hasattr(section, f)}
        )


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def ensure_group(client: redis.Redis, stream: str, group: str, start_id: str = "0") -> None:
    """Create ``group`` on ``stream`` at ``start_id`` (``0``: see all history); existing is fine."""
    try:
        client.xgroup_create(stream, group, id=start_id, mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


@dataclass
class ConsumerStats:
    handled: int = 0
    retried: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0
    batches: int = 0


class Consumer:
    """One consumer of one group: owns some partitions, reads them, runs the handler, acks."""

    def __init__(
        self,
        store: EventStore,
        handler: Handler,
        settings: RuntimeSettings | None = None,
        *,
        name: str | None = None,
        stop: threading.Event | None = None,
        max_partitions: int | None = None,
    ) -> None:
        self.store = store
        self.client = store.client
        self.keys: Keys = store.keys
        self.handler = handler
        self.group = handler.group
        self.settings = settings or RuntimeSettings()
        self.name = name or consumer_name()
        self.stop_event = stop or threading.Event()
        self.max_partitions = max_partitions
        self.owned: set[int] = set()
        self.last_seen: dict[str, str] = {}
        self._reset_pending = False
        self.polls = 0
        self._halted: set[str] | None = None
        self.stats = ConsumerStats()
        self._renew = self.client.register_script(_RENEW_LUA)
        self._release = self.client.register_script(_RELEASE_LUA)
        self._next_rebalance = 0.0
        self._groups_ready = False
        self._lock = threading.Lock()
        self.log = log.bind(group=self.group, consumer=self.name)

    # ----------------------------------------------------------------------------- ownership
    def ensure_groups(self) -> None:
        self.store.ensure_layout()  # the groups create the partition logs: a write to the store
        start = getattr(self.handler, "start_id", "0")
        for key in self.keys.logs():
            ensure_group(self.client, key, self.group, start)
        self._groups_ready = True

    def heartbeat(self) -> None:
        """Renew this consumer's leases and membership; a lease that cannot be renewed is lost."""
        self.renew_leases(member=True)

    def try_own(self, partition: int) -> bool:
        """Take ``partition``'s lease if nobody holds it (a dead-letter retry outside any worker)."""
        if self.client.set(
            self.keys.lease(self.group, partition),
            self.name,
            nx=True,
            px=self.settings.lease_ttl_ms,
        ):
            with self._lock:
                self.owned.add(partition)
            return True
        return False

    def renew_leases(self, *, member: bool = False) -> None:
        """Every owned lease renewed (and, with ``member``, the membership) in one round trip on
        a single server: the heartbeat thread holds no lock meanwhile, so the consumer thread's
        reads never wait for it, and a rebalance costs a few round trips, not one per partition."""
        with self._lock:
            owned = sorted(self.owned)
        now_ms = int(time.time() * 1000)
        args: list[str | int] = [self.name, self.settings.lease_ttl_ms]
        leases = [self.keys.lease(self.group, p) for p in owned]
        if is_cluster(self.client):  # one slot per lease: one call each
            if member:
                self.client.zadd(self.keys.members(self.group), {self.name: now_ms})
            kept = [self._renew(keys=[k], args=args) for k in leases]
        else:
            pipe = self.client.pipeline(transaction=False)
            if member:
                pipe.zadd(self.keys.members(self.group), {self.name: now_ms})
            for k in leases:
                self._renew(keys=[k], args=args, client=pipe)
            kept = pipe.execute()[1 if member else 0 :]
        with self._lock:
            for p, ok in zip(owned, kept, strict=True):
                if not ok and p in self.owned:  # given back by a rebalance meanwhile: not lost
                    self.log.warning("lease lost", partition=p)
                    self.owned.discard(p)
                    self._reset_pending = True  # the consumer thread resets caches, not us

    def rebalance(self) -> list[int]:
        """Take free partitions up to a fair share, give back extras; returns newly owned ones."""
        if not self._groups_ready:
            self.ensure_groups()
        self.heartbeat()
        now_ms = int(time.time() * 1000)
        members_key = self.keys.members(self.group)
        self.client.zremrangebyscore(members_key, 0, now_ms - self.settings.lease_ttl_ms)
        live = max(1, int(self.client.zcard(members_key)))
        share = math.ceil(self.keys.partitions / live)
        if self.max_partitions is not None:
            share = min(share, self.max_partitions)
        acquired: list[int] = []
        with self._lock:
            for p in sorted(self.owned)[share:]:
                self._release(keys=[self.keys.lease(self.group, p)], args=[self.name])
                self.owned.discard(p)
                self.log.info("partition released", partition=p, share=share)
            for p in range(self.keys.partitions):
                if len(self.owned) >= share:
                    break
                if p in self.owned:
                    continue
                if self.client.set(
                    self.keys.lease(self.group, p),
                    self.name,
                    nx=True,
                    px=self.settings.lease_ttl_ms,
                ):
                    self.owned.add(p)
                    acquired.append(p)
                    self.log.info("partition acquired", partition=p, share=share)
        if acquired:
            self._partitions_changed()
        return acquired

    def _partitions_changed(self) -> None:
        self.last_seen.clear()
        hook = getattr(self.handler, "on_partitions_changed", None)
        if hook is not None:
            hook()

    def release_all(self) -> None:
        with self._lock:
            for p in list(self.owned):
                self._release(keys=[self.keys.lease(self.group, p)], args=[self.name])
            self.owned.clear()
        self.client.zrem(self.keys.members(self.group), self.name)

    # ----------------------------------------------------------------------------- reading
    def recover(self, partition: int) -> int:
        """Claim every pending entry of the partition (a previous owner's), handle them in order."""
        stream = self.keys.log(partition)
        claimed: list[tuple[Any, Any]] = []
        cursor = "0-0"
        while True:
            reply = self.client.xautoclaim(
                stream,
                self.group,
                self.name,
                min_idle_time=0,
                start_id=cursor,
                count=self.settings.batch_size,
            )
            cursor = _s(reply[0])
            claimed.extend(reply[1])
            if cursor == "0-0":
                break
        # our own PEL may hold entries we claimed before (JUSTID-free path keeps counters right)
        if not claimed:
            return 0
        claimed.sort(key=lambda e: id_key(_s(e[0])))
        self.stats.reclaimed += len(claimed)
        self.log.info("reclaimed pending entries", partition=partition, count=len(claimed))
        entries = [self.store.entry(stream, eid, fields) for eid, fields in claimed]
        self.process(stream, entries, reclaimed=True)
        return len(claimed)

    def read(self) -> list[tuple[str, list[LogEntry]]]:
        """Fetch new entries of the owned partitions (never blocks)."""
        with self._lock:
            owned = sorted(self.owned)
        if not owned:
            return []
        reply: StreamsReply = []
        for logs in by_slot(self.client, (self.keys.log(p) for p in owned)):
            streams: dict[Any, Any] = dict.fromkeys(logs, ">")
            got = self.client.xreadgroup(
                self.group, self.name, streams, count=self.settings.batch_size
            )
            reply += cast("StreamsReply", got or [])
        out = []
        for stream, rows in reply:
            key = _s(stream)
            if rows:
                self.last_seen[key] = _s(rows[-1][0])
            out.append((key, [self.store.entry(key, eid, fields) for eid, fields in rows]))
        return out

    def wait_for_entries(self) -> None:
        """Sleep until an owned partition grows (or ``block_ms`` passes, or we are stopped)."""
        with self._lock:
            owned = sorted(self.owned)
        if not owned:
            self.stop_event.wait(self.settings.block_ms / 1000)
            return
        streams: dict[str, str] = {}
        for p in owned:
            key = self.keys.log(p)
            if key not in self.last_seen:
                self.last_seen[key] = self._group_position(key)
            streams[key] = self.last_seen[key]
        for stream, rows in xread_across(self.client, streams, block=self.settings.block_ms):
            if rows:  # seen, whoever gets them: waiting again from here cannot spin
                self.last_seen[_s(stream)] = _s(rows[-1][0])

    def _group_position(self, stream: str) -> str:
        info = group_info(self.client, stream, self.group)
        return _s(info["last-delivered-id"]) if info else "0-0"

    def poll(self, *, block: bool = True) -> int:
        """One round: maybe rebalance, read what is there (blocking only when idle), handle it."""
        if self._reset_pending:
            self._reset_pending = False
            self._partitions_changed()
        now = time.monotonic()
        if now >= self._next_rebalance:
            self._halted = None
            for p in self.rebalance():
                self.recover(p)
            self.serve_retries()
            self._next_rebalance = now + self.settings.rebalance_interval_ms / 1000
        batches = self.read()
        if not batches and block and not self.stop_event.is_set():
            self.wait_for_entries()
            batches = self.read()
        n = 0
        for stream, entries in batches:
            self.process(stream, entries)
            n += len(entries)
        self.polls += 1
        return n

    def serve_retries(self) -> None:
        """Serve the operator's ``airfix dlq retry|discard`` requests for partitions it owns.

        The owner does it, between its own batches, so a retried run's parked entries are handled
        in order with nothing of the same partition racing them; afterwards every cache is dropped
        (the retry wrote to the views) and the halted runs are re-read."""
        if not self.client.hlen(self.keys.dlq_requests(self.group)):
            return
        from airfix.services.runtime.deadletters import serve_requests

        if serve_requests(self):
            self._halted = None
            hook = getattr(self.handler, "on_partitions_changed", None)
            if hook is not None:
                hook()

    def drained(self) -> bool:
        """Nothing is left for this group anywhere: no lag and no pending entry on any partition.

        Burst mode needs this, not "I read nothing": a dead consumer's lease can still hide a
        partition with work in it."""
        for stream in self.keys.logs():
            if not self.client.exists(stream):
                continue
            info = group_info(self.client, stream, self.group)
            if info is None:
                if self.client.xlen(stream):
                    return False
                continue
            if int(info["pending"]) or group_lag(self.client, stream, info, at_most=1):
                return False
        return True

    def run(self, *, burst: bool = False) -> ConsumerStats:
        """Consume until stopped (or, with ``burst``, until nothing is left to read)."""
        self.log.info("consumer started", burst=burst)
        try:
            while not self.stop_event.is_set():
                n = self.poll(block=not burst)
                if burst and n == 0:
                    if self.drained():
                        break
                    # work remains behind another consumer's lease: wait for it to expire
                    self.stop_event.wait(self.settings.rebalance_interval_ms / 1000)
        finally:
            self.release_all()
            self.log.info("consumer stopped", **self.stats.__dict__)
        return self.stats

    # ----------------------------------------------------------------------------- handling
    def process(self, stream: str, entries: list[LogEntry], *, reclaimed: bool = False) -> None:
        if not entries:
            return
        self.stats.batches += 1
        good: list[LogEntry] = []
        counts = self._delivery_counts(stream, entries) if reclaimed else {}
        halted = self._halted_runs() if self.handler.ordered else set()
        for e in entries:
            run = _s(e.fields.get(b"run", b"")) if e.fields else ""
            if e.error is not None:
                self.dead_letter(
                    stream, e, str(e.error), counts.get(e.entry_id, 1), kind="undecodable"
                )
            elif self.handler.ordered and run in halted:
                self.dead_letter(
                    stream,
                    e,
                    f"run {run} is halted in group {self.group}",
                    counts.get(e.entry_id, 1),
                    kind="held",
                )
            elif counts.get(e.entry_id, 1) > self.settings.delivery_cap:
                self._give_up(
                    stream,
                    e,
                    "delivery cap reached before handling (crashed handlers)",
                    counts[e.entry_id],
                    halted,
                )
            else:
                good.append(e)
        if not good:
            return
        try:
            self.handler.handle(good)
        except Exception as exc:  # noqa: BLE001 - a handler failure is data for the retry policy
            self.log.warning(
                "batch failed; retrying entry by entry", error=repr(exc), size=len(good)
            )
            self._one_by_one(stream, good, halted)
            return
        self._ack(stream, [e.entry_id for e in good])
        self.stats.handled += len(good)

    def _one_by_one(self, stream: str, entries: list[LogEntry], halted: set[str]) -> None:
        for e in entries:
            run = e.event.run_id if e.event else ""
            if self.handler.ordered and run in halted:
                self.dead_letter(
                    stream, e, f"run {run} is halted in group {self.group}", 1, kind="held"
                )
                continue
            # the failed batch was one delivery of every entry in it: re-deliver before the solo try
            self.client.xclaim(stream, self.group, self.name, 0, [e.entry_id])
            while True:
                try:
                    with bind_event(e.event, stream=stream, entry_id=e.entry_id, group=self.group):
                        self.handler.handle([e])
                except Exception as exc:  # see process()
                    attempts = self._delivery_counts(stream, [e]).get(e.entry_id, 1)
                    if attempts >= self.settings.delivery_cap:
                        self._give_up(stream, e, repr(exc), attempts, halted)
                        break
                    self.stats.retried += 1
                    delay = min(
                        self.settings.retry_backoff_max_ms,
                        self.settings.retry_backoff_ms * 2 ** (attempts - 1),
                    )
                    self.log.warning(
                        "handler failed; will retry",
                        entry=e.entry_id,
                        run_id=run,
                        attempt=attempts,
                        cap=self.settings.delivery_cap,
                        error=repr(exc),
                        retry_in_ms=delay,
                        exc_info=True,
                    )
                    if self.stop_event.wait(delay / 1000):
                        return  # shutting down: leave it pending for the next owner
                    # a real re-delivery, so Redis counts the attempt
                    self.client.xclaim(stream, self.group, self.name, 0, [e.entry_id])
                    continue
                self._ack(stream, [e.entry_id])
                self.stats.handled += 1
                break

    def _give_up(
        self, stream: str, e: LogEntry, error: str, attempts: int, halted: set[str]
    ) -> None:
        self.dead_letter(stream, e, error, attempts, kind="failed")
        run = e.event.run_id if e.event else _s(e.fields.get(b"run", b""))
        if self.handler.ordered and run:
            halted.add(run)
            self.client.hset(
                self.keys.halted(self.group),
                run,
                msgspec.json.encode(
                    {
                        "entry": e.entry_id,
                        "stream": stream,
                        "error": error,
                        "attempts": attempts,
                        "at": time.time(),
                    }
                ),
            )
            self.log.error(
                "run halted: an ordered handler cannot get past an event",
                run_id=run,
                entry=e.entry_id,
                error=error,
                attempts=attempts,
            )

    def _halted_runs(self) -> set[str]:
        """Runs this group halted; re-read at each rebalance (an operator may have cleared one),
        kept in memory in between (only the partition's owner halts its runs)."""
        if self._halted is None:
            self._halted = {_s(k) for k in self.client.hkeys(self.keys.halted(self.group))}
        return self._halted

    def _delivery_counts(self, stream: str, entries: Sequence[LogEntry]) -> dict[str, int]:
        ids = [e.entry_id for e in entries]
        rows = self.client.xpending_range(
            stream, self.group, min=ids[0], max=ids[-1], count=max(len(ids), 1) * 4
        )
        wanted = set(ids)
        return {
            _s(r["message_id"]): int(r["times_delivered"])
            for r in rows
            if _s(r["message_id"]) in wanted
        }

    def dead_letter(
        self, stream: str, e: LogEntry, error: str, attempts: int, *, kind: str
    ) -> None:
        """Copy the entry, with why it failed, to the group's dead-letter stream; ack it.

        The copy is bounded (:func:`bounded_copy`): ``stream`` and ``entry`` say where the original
        is, so a multi-MB entry parked by several groups is not duplicated once per group."""
        fields: dict[Any, Any] = {
            "kind": kind,
            "group": self.group,
            "stream": stream,
            "entry": e.entry_id,
            "error": error[:2000],
            "attempts": attempts,
            "consumer": self.name,
            "parked_at": f"{time.time():.3f}",
        }
        fields.update(bounded_copy(e.fields or {}))
        extra = getattr(self.handler, "dead_letter_fields", None)
        if extra is not None:  # projections: each view's checkpoint now (what a retry must skip)
            fields.update(extra(stream))
        if is_cluster(self.client):
            # two hash slots, so no MULTI: park first, then ack.  A crash in between leaves the
            # entry pending; its next owner parks it again (a duplicate dead letter, never a lost one)
            self.client.xadd(self.keys.dead_letters(self.group), fields)
            self.client.xack(stream, self.group, e.entry_id)
        else:
            pipe = self.client.pipeline(transaction=True)
            pipe.xadd(self.keys.dead_letters(self.group), fields)
            pipe.xack(stream, self.group, e.entry_id)
            pipe.execute()
        self.stats.dead_lettered += 1
        self.log.error(
            "entry dead-lettered",
            entry=e.entry_id,
            stream=stream,
            kind=kind,
            attempts=attempts,
            error=error[:500],
            run_id=_s((e.fields or {}).get(b"run", b"")),
            event_type=_s((e.fields or {}).get(b"type", b"?")),
        )

    def _ack(self, stream: str, ids: list[str]) -> None:
        if ids:
            self.client.xack(stream, self.group, *ids)


#: Most bytes of the original entry a dead letter copies (field names and values, ``orig.*``).
DEAD_LETTER_COPY_BYTES = 64 * 1024


def bounded_copy(original: Any, limit: int | None = None) -> dict[bytes, bytes]:
    """The ``orig.*`` fields of a dead letter: the original entry's fields, in order, until
    ``limit`` bytes (default :data:`DEAD_LETTER_COPY_BYTES`) are used; the field that crosses it
    keeps its first bytes, later ones are left out.  When anything was cut, ``truncated`` is ``1``;
    ``orig_bytes`` is always the original's size, so readers know what they have."""
    room = DEAD_LETTER_COPY_BYTES if limit is None else limit
    total = 0
    out: dict[bytes, bytes] = {}
    cut = False
    for k, v in original.items():
        key = k if isinstance(k, bytes) else str(k).encode()
        value = v if isinstance(v, bytes) else str(v).encode()
        total += len(key) + len(value)
        if cut:
            continue
        room -= len(key)
        if room < 0:
            cut = True
            continue
        if len(value) > room:
            value, cut = value[:room], True
        room -= len(value)
        out[b"orig." + key] = value
    out[b"orig_bytes"] = str(total).encode()
    if cut:
        out[b"truncated"] = b"1"
    return out
