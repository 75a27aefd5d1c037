"""``airfix tail``: one run's (or every run's) events and service log lines, as they happen.

Two feeds give the same items: :class:`RedisFeed` reads a server (the run's stream or the
partition logs, plus the capped log stream) with blocking ``XREAD``; :class:`JournalFeed` reads
the embedded store's journal and its log file, so a second terminal can follow a run that lives
in another process's memory.  Neither writes anything.  Each event is shown with the run's state
after it (the pure fold), so a line says what happened, in which phase, with counts.

``--follow`` with a run id stops once the run has ended (after the log lines that trail its last
event); without a run id it goes on until interrupted.  With a run id, tail starts at the run's
beginning; without one, it starts now (``--from start|now`` overrides either).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import msgspec
import redis

from airfix.events import codec
from airfix.events.core.machine import RunState, evolve, fold, initial_state
from airfix.events.errors import AirfixError, InvalidTransition, UndecodableEntry
from airfix.events.schema import EVENT_TYPES, Event
from airfix.events.storage.backend import xread_across
from airfix.events.storage.store import EventStore, as_str, check_run_id
from airfix.projections.describe import describe
from airfix.projections.status import newest_runs

LEVELS = ("debug", "info", "warning", "error", "critical")
EVENT_LEVEL = "info"  # events are facts, shown at info: ``--level warning`` keeps problems only
_CONTEXT_KEYS = (
    "timestamp",
    "level",
    "logger",
    "event",
    "run_id",
    "event_id",
    "version",
    "correlation_id",
    "causation_id",
    "event_type",
    "stream",
    "entry_id",
)


@dataclass(frozen=True)
class Item:
    """One thing to show: an event of a run, or one service log line."""

    kind: str  # "event" or "log"
    run_id: str
    at: float  # epoch seconds
    level: str
    event: Event | None = None
    log: dict[str, Any] | None = None


@dataclass(frozen=True)
class Filter:
    run_id: str | None = None
    types: frozenset[str] | None = None  # event type names, and "log" for log lines
    min_level: str = "debug"

    def keeps(self, item: Item) -> bool:
        if self.run_id is not None and item.run_id != self.run_id:
            return False
        if self.types is not None:
            name = "log" if item.event is None else type(item.event).__name__
            if name not in self.types:
                return False
        return LEVELS.index(item.level) >= LEVELS.index(self.min_level)


def parse_filter(run_id: str | None, types: str | None, level: str | None) -> Filter:
    """The options as a :class:`Filter`; an unknown type or level is an error naming the option.
    ``run_id`` must already be resolved (not ``latest``)."""
    wanted: frozenset[str] | None = None
    if types:
        by_lower = {name.lower(): name for name in (*EVENT_TYPES, "log")}
        names = [t.strip() for t in types.split(",") if t.strip()]
        unknown = [t for t in names if t.lower() not in by_lower]
        if unknown:
            raise AirfixError(
                f"--type: unknown {', '.join(unknown)}; known: log, {', '.join(sorted(EVENT_TYPES))}"
            )
        wanted = frozenset(by_lower[t.lower()] for t in names)
    lvl = (level or "debug").lower()
    if lvl not in LEVELS:
        raise AirfixError(f"--level: expected one of {', '.join(LEVELS)}, got {level!r}")
    return Filter(run_id=check_run_id(run_id) if run_id else None, types=wanted, min_level=lvl)


def event_item(ev: Event) -> Item:
    return Item("event", ev.run_id, ev.recorded_at.timestamp(), EVENT_LEVEL, event=ev)


def log_item(line: bytes | str, where: str) -> Item:
    """A mirrored log line; one that is not a JSON object is shown as an error, never dropped."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        data = f"not JSON ({exc})"
    if not isinstance(data, dict):
        data = {
            "event": f"unreadable log line at {where}: {data if isinstance(data, str) else 'not an object'}",
            "level": "error",
            "raw": as_str(line)[:200],
        }
    level = str(data.get("level", "info")).lower()
    return Item(
        "log",
        str(data.get("run_id", "")),
        _epoch(data.get("timestamp")),
        level if level in LEVELS else "info",
        log=data,
    )


def _epoch(stamp: Any) -> float:
    try:
        return _dt.datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return 0.0


class Feed(Protocol):
    def read(self, block_s: float) -> list[Item]:
        """Items recorded since the last read; waits up to ``block_s`` for one (0: no wait)."""

    def history(self, run_id: str, upto: int) -> list[Event]:
        """The run's events up to version ``upto`` (to know its state when tail joins late)."""


class RedisFeed:
    """A server (or the embedded store of this process): run stream or partition logs + log lines."""

    def __init__(self, store: EventStore, run_id: str | None, *, from_start: bool) -> None:
        self.store, self.run_id = store, run_id
        keys, client = store.keys, store.client
        self.log_key = keys.log_lines
        self.positions: dict[str, str] = {}
        if run_id is not None:
            self.positions[keys.run_stream(run_id)] = (
                "0-0" if from_start else f"0-{store.version(run_id)}"
            )
        else:
            self.positions.update(
                {k: "0-0" for k in keys.logs()} if from_start else store.log_ends()
            )
        self.positions[self.log_key] = "0-0" if from_start else _last_id(client, self.log_key)
        self.partition_logs = set(keys.logs())

    def read(self, block_s: float) -> list[Item]:
        block = int(block_s * 1000) if block_s > 0 else None
        reply = xread_across(self.store.client, self.positions, count=1000, block=block)
        items: list[Item] = []
        for stream, entries in reply:
            key = as_str(stream)
            for entry_id, fields in entries:
                self.positions[key] = as_str(entry_id)
                item = self._item(key, as_str(entry_id), fields)
                if item is not None:
                    items.append(item)
        return items

    def _item(self, key: str, entry_id: str, fields: Any) -> Item | None:
        if key == self.log_key:
            run = as_str(fields.get(b"run_id", b""))
            if self.run_id is not None and run != self.run_id:
                return None
            return log_item(fields.get(b"line", b"{}"), f"{key} {entry_id}")
        if key in self.partition_logs:
            entry = EventStore.entry(key, entry_id, fields)
            if entry.event is None:
                return _undecodable(entry.error, key, entry_id)
            return event_item(entry.event)
        try:
            return event_item(codec.from_fields(fields, where=key, entry_id=entry_id))
        except UndecodableEntry as exc:
            return _undecodable(exc, key, entry_id)

    def history(self, run_id: str, upto: int) -> list[Event]:
        return list(self.store.read_run(run_id, 1, upto)) if upto >= 1 else []


def _last_id(client: redis.Redis, key: str) -> str:
    rows = client.xrevrange(key, "+", "-", count=1)
    return as_str(rows[0][0]) if rows else "0-0"


def _undecodable(error: Any, key: str, entry_id: str) -> Item:
    """A log entry that cannot be decoded is shown as an error line, never skipped."""
    reason = getattr(error, "reason", str(error))
    return Item(
        "log",
        "",
        time.time(),
        "error",
        log={"event": f"undecodable entry {key} {entry_id}: {reason}", "level": "error"},
    )


@dataclass
class _FileCursor:
    """Complete lines appended to a file since the last look; survives the file being replaced."""

    path: Path
    offset: int = 0
    lines: int = 0  # complete lines consumed so far (for line numbers in errors)
    inode: int | None = None

    def at_end(self) -> _FileCursor:
        try:
            data = self.path.read_bytes()
            self.inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            return self
        self.offset = data.rfind(b"\n") + 1
        self.lines = data.count(b"\n")
        return self

    def new_lines(self) -> tuple[list[bytes], int]:
        """(new complete lines, number of the first); a replaced file is read from its start."""
        try:
            inode = os.stat(self.path).st_ino
            with self.path.open("rb") as fh:
                if inode != self.inode:
                    self.offset, self.lines, self.inode = 0, 0, inode
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return [], 0
        end = data.rfind(b"\n") + 1  # a line still being written waits for its newline
        lines = data[:end].splitlines()
        first = self.lines + 1
        self.offset += end
        self.lines += len(lines)
        return lines, first


@dataclass
class JournalFeed:
    """The embedded store's journal (events) and log file, read as they grow; nothing is written,
    and a torn last line (a writer mid-line) is simply waited for, never cut off."""

    journal: Path
    logs: Path
    run_id: str | None
    from_start: bool
    poll_s: float = 0.1
    events: dict[str, list[Event]] = field(default_factory=dict)
    _last_log: str = ""

    def __post_init__(self) -> None:
        self._journal = _FileCursor(self.journal)
        self._logs = _FileCursor(self.logs)
        # everything so far: history for the fold, and (from the start) the first read's items;
        # kept unfiltered so ``run_id`` may still be chosen (``latest``) before that read
        self._backlog: list[Event] = list(self._all_events(*self._journal.new_lines()))
        if not self.from_start:
            self._backlog = []
            self._logs.at_end()

    def exists(self, run_id: str) -> bool:
        return bool(self.events.get(run_id))

    def latest(self) -> str:
        """The run requested last (the journal is in append order)."""
        requested = [run for run, evs in self.events.items() if evs[0].version == 1]
        if not requested:
            raise AirfixError(f"no runs yet in the journal {self.journal}")
        return max(requested, key=lambda run: self.events[run][0].recorded_at)

    def _all_events(self, lines: list[bytes], first: int) -> Iterable[Event]:
        for n, raw in enumerate(lines, first):
            if not raw.strip():
                continue
            try:
                ev = codec.decode_data(raw, where=str(self.journal), entry_id=f"line {n}")
            except UndecodableEntry as exc:
                raise AirfixError(f"journal {self.journal}, line {n}: {exc.reason}") from None
            self.events.setdefault(ev.run_id, []).append(ev)
            yield ev

    def _wanted(self, events: Iterable[Event]) -> list[Item]:
        return [event_item(ev) for ev in events if self.run_id is None or ev.run_id == self.run_id]

    def read(self, block_s: float) -> list[Item]:
        deadline = time.monotonic() + block_s
        while True:
            items, self._backlog = self._wanted(self._backlog), []
            items += self._wanted(self._all_events(*self._journal.new_lines()))
            items += self._log_items()
            if items or time.monotonic() >= deadline:
                return items
            time.sleep(self.poll_s)

    def _log_items(self) -> list[Item]:
        lines, first = self._logs.new_lines()
        out = []
        for n, raw in enumerate(lines, first):
            item = log_item(raw, f"{self.logs} line {n}")
            stamp = str((item.log or {}).get("timestamp", ""))
            if first == 1 and stamp and stamp <= self._last_log:
                continue  # the file was compacted and is read again from its start
            self._last_log = max(self._last_log, stamp)
            if self.run_id is None or item.run_id == self.run_id:
                out.append(item)
        return out

    def history(self, run_id: str, upto: int) -> list[Event]:
        return [ev for ev in self.events.get(run_id, []) if ev.version <= upto]


class Tail:
    """Shows a feed's items through a filter, one line each (or one JSON object each)."""

    def __init__(
        self, feed: Feed, flt: Filter, *, out: IO[str] | None = None, json_out: bool = False
    ) -> None:
        self.feed, self.filter, self.json_out = feed, flt, json_out
        self.out = out or sys.stdout
        self.states: dict[str, RunState] = {}

    def run(self, *, follow: bool, block_s: float = 1.0) -> int:
        """Show items until the feed is dry (or, following, until the run ends); returns shown."""
        shown, ended = 0, False
        while True:
            items = self.feed.read(block_s if follow else 0)
            if not items and (not follow or ended):
                return shown
            for item in sorted(items, key=lambda i: i.at):
                state = self._advance(item.event) if item.event is not None else None
                if (
                    self.filter.run_id is not None
                    and state is not None
                    and state.terminal
                    and state.run_id == self.filter.run_id
                ):
                    ended = True  # one more read picks up the log lines that trail the last event
                if self.filter.keeps(item):
                    self.show(item, state)
                    shown += 1

    def _advance(self, ev: Event) -> RunState | None:
        state = self.states.get(ev.run_id)
        if state is not None and ev.version <= state.version:
            return state  # already folded (a duplicate delivery)
        try:
            if state is None or state.version != ev.version - 1:
                earlier = self.feed.history(ev.run_id, ev.version - 1)
                state = fold(earlier) if earlier else initial_state(ev.run_id)
            state = evolve(state, ev)
        except InvalidTransition:
            self.states.pop(ev.run_id, None)
            return None  # shown without a state; replay names the broken step
        self.states[ev.run_id] = state
        return state

    def show(self, item: Item, state: RunState | None) -> None:
        self.out.write(render_json(item, state) if self.json_out else self.render(item, state))
        self.out.write("\n")
        self.out.flush()

    def render(self, item: Item, state: RunState | None) -> str:
        clock = _dt.datetime.fromtimestamp(item.at, _dt.UTC).strftime("%H:%M:%S")
        who = "" if self.filter.run_id is not None else f"{item.run_id or '-'}  "
        if item.event is not None:
            phase = state.state if state is not None else "?"
            return f"{clock} {who}{phase:<10} v{item.event.version:<4} {describe(item.event)}"
        log = item.log or {}
        extra = " ".join(f"{k}={_short(v)}" for k, v in log.items() if k not in _CONTEXT_KEYS)
        name = f" {log['logger']}:" if log.get("logger") else ""
        return f"{clock} {who}{'log':<10} [{item.level}]{name} {log.get('event', '')}" + (
            f"  {extra}" if extra else ""
        )


def render_json(item: Item, state: RunState | None) -> str:
    at = _dt.datetime.fromtimestamp(item.at, _dt.UTC).isoformat()
    if item.event is not None:
        ev = item.event
        return json.dumps(
            {
                "kind": "event",
                "run_id": ev.run_id,
                "version": ev.version,
                "type": type(ev).__name__,
                "at": at,
                "state": state.state if state else None,
                "status": state.status if state else None,
                "text": describe(ev),
                "event": msgspec.to_builtins(ev),
            }
        )
    return json.dumps(
        {"kind": "log", "run_id": item.run_id, "level": item.level, "at": at, "log": item.log}
    )


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= 120 else text[:117] + "..."


LATEST = "latest"


def open_feed(
    app_or_none: Any,
    *,
    journal: Path | None,
    logs: Path | None,
    run_id: str | None,
    from_start: bool,
) -> tuple[Feed, str | None]:
    """The server feed when there is a server, the journal feed on the embedded store; and the run
    id, with ``latest`` resolved to the newest run."""
    if app_or_none is not None:
        store: EventStore = app_or_none.store
        if run_id == LATEST:
            newest = newest_runs(store.client, store.keys)
            if not newest:
                raise AirfixError("no runs yet in this store")
            run_id = newest[0]
        if run_id is not None and store.version(run_id) == 0:
            raise AirfixError(f"no run {run_id!r} in this store (see airfix runs)")
        return RedisFeed(store, run_id, from_start=from_start), run_id
    assert journal is not None and logs is not None
    feed = JournalFeed(journal, logs, None if run_id == LATEST else run_id, from_start)
    if run_id == LATEST:  # the journal is read once: the run is chosen before the first read
        run_id = feed.run_id = feed.latest()
    if run_id is not None and not feed.exists(run_id):
        raise AirfixError(f"no run {run_id!r} in the journal {journal} (see airfix runs)")
    return feed, run_id


__all__ = ["Filter", "Item", "JournalFeed", "RedisFeed", "Tail", "open_feed", "parse_filter"]
