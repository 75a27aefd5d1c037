"""The embedded store's memory between commands: an append-only JSON-lines file of events.

fakeredis lives inside one process.  So that ``airfix run`` followed by ``airfix runs``,
``status``, ``replay`` works with no server, every append that reaches the embedded store is also
written to the journal (one line per event, flushed and fsynced, under an exclusive lock), and a
command that opens the embedded store first replays the journal into it.  A torn last line (a
crash mid-write) is reported and cut off; every complete line before it is kept.  Any other bad
line is an error naming the line: the journal is never silently skipped over.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airfix.events.codec import decode_data, encode
from airfix.events.errors import AirfixError, UndecodableEntry
from airfix.events.schema import Event
from airfix.events.storage.store import AppendResult, EventStore


class JournalError(AirfixError):
    """The journal cannot be read (a bad line that is not a torn tail)."""


def load(path: Path, *, warn: bool = True) -> list[Event]:
    """The journal's events in order; a torn last line is reported, cut off and not returned."""
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # the part after the last newline was never finished
    events: list[Event] = []
    good_bytes = 0
    for n, raw in enumerate(complete, 1):
        if raw.strip():
            try:
                events.append(decode_data(raw, where=str(path), entry_id=f"line {n}"))
            except UndecodableEntry as exc:
                if n == len(complete) and not tail:
                    tail = raw  # the last line is bad: a torn write, treated like a missing newline
                    break
                raise JournalError(
                    f"journal {path}, line {n}: {exc.reason}; fix or move the file"
                ) from None
        good_bytes += len(raw) + 1
    if tail.strip():
        if warn:
            print(
                f"airfix: journal {path}: line {len(events) + 1} is torn (a crash while writing it?); "
                f"keeping the {len(events)} complete event(s) before it and cutting it off",
                file=sys.stderr,
            )
        with path.open("r+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.truncate(good_bytes)
    return events


def actions_path(journal: Path) -> Path:
    """``journal.jsonl`` -> ``journal.ops.jsonl``: the operator actions done on this store."""
    return journal.with_name(f"{journal.stem}.ops.jsonl")


def record_action(journal: Path, action: dict[str, object]) -> None:
    """Remember an operator action (a dead-letter retry or discard, a trim) that a replay of the
    journal would not redo by itself; :func:`load_actions` hands them back in order."""
    path = actions_path(journal)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(json.dumps(action, sort_keys=True).encode() + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def load_actions(journal: Path) -> list[dict[str, Any]]:
    """The recorded actions, oldest first; a torn last line (a crash mid-write) is skipped."""
    path = actions_path(journal)
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    lines = path.read_bytes().split(b"\n")
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            out.append(json.loads(raw))
        except ValueError:
            if n == len(lines):  # no newline after it: torn
                break
            raise JournalError(
                f"{path}, line {n}: not a JSON action; fix or move the file"
            ) from None
    return out


class JournaledStore(EventStore):
    """An EventStore whose successful appends also go to the journal file."""

    def __init__(self, *args: object, journal: Path, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.journal = journal

    def replay_journal(self) -> int:
        """Load the journal into this (embedded) store; returns how many events it held."""
        events = load(self.journal)
        i = 0
        while i < len(events):  # contiguous chunks per run keep the log's global order
            j = i
            while j < len(events) and events[j].run_id == events[i].run_id:
                j += 1
            chunk = events[i:j]
            EventStore.append(self, chunk[0].run_id, chunk, chunk[0].version - 1)
            i = j
        return len(events)

    def append(self, run_id: str, events: Sequence[Event], expected_version: int) -> AppendResult:
        result = super().append(run_id, events, expected_version)
        if not result.duplicate:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            blob = b"".join(encode(ev) + b"\n" for ev in events)
            with self.journal.open("ab") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
        return result
