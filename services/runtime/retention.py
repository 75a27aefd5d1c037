"""Retention: ``airfix trim --older-than DURATION [--archive DIR] [--dry-run]``.

**What goes.**  A run's partition-log entries, all of them, when the run is finished (its status
state is ``completed``), finished more than DURATION ago, halted in no group, has no dead letter in
any group, and every consumer group on its log has acknowledged every one of its entries: the
group read it (it is at or before the group's last-delivered id) and it is not pending.  Role
groups, the projector group and per-view groups are all just groups on the log, so all count; a
log nobody reads yet is not trimmed at all.  ``events/storage/trim.lua`` checks the groups again and
deletes in one atomic step, so a group that lags or appears meanwhile is never skipped over.

**What stays.**  The run's stream (its events, entry ``0-<version>``), its ledger (versions, event
ids, the log position of each event) and every read model: ``airfix runs``, ``status``,
``inspect`` and ``replay`` see the run as before.  The trim is recorded in ``{pN}:trimmed``, and
a rebuild folds the trimmed runs back in at their original log positions
(``EventStore.iter_history``), so ``projections rebuild --check`` still finds the views equal.

**--archive DIR** first writes each such run to ``DIR/<run_id>.jsonl`` (``write_jsonl``, fsynced,
renamed into place, line count checked against the ledger) and then deletes its stream as well.
The ledger stays, so importing the archive again is recognised as already there (the views are
never folded twice), and ``read_run`` (replay, export, rebuild) reads the archive file instead; a
missing archive file is then an error naming it.

**The embedded store** is rebuilt from its journal by every command, so a trim is also recorded
next to the journal and done again after that replay (:func:`reapply`).  The journal keeps the
events of trimmed and archived runs: it is that store's only copy of their streams.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from airfix.events.errors import AirfixError
from airfix.events.keys import partition_of
from airfix.events.storage.store import STREAM_IDS_LUA, id_key
from airfix.events.storage.store import as_str as _s

if TYPE_CHECKING:
    from airfix.services.runtime.app import App

_TRIM_LUA = (
    STREAM_IDS_LUA + resources.files("airfix.events.storage").joinpath("trim.lua").read_text()
)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+$")


class _Finished(msgspec.Struct):
    state: str = ""
    finished_at: float = 0.0


_STATUS = msgspec.json.Decoder(_Finished)


# --------------------------------------------------------------------------------- pure parts


def parse_duration(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w`` or a sum such as ``1h30m``, in seconds."""
    t = text.strip().lower()
    if not _DURATION.match(t):
        raise AirfixError(
            f"--older-than {text!r} is not a duration: use a number and a unit "
            "(s, m, h, d, w), e.g. 7d, 12h, 30m or 1h30m"
        )
    return sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([smhdw])", t))


@dataclass(frozen=True)
class GroupPosition:
    """How far one consumer group is on one partition log."""

    name: str
    last_delivered: str
    pending: frozenset[str]


def unacknowledged_by(entries: Sequence[str], groups: Sequence[GroupPosition]) -> list[str]:
    """The groups that have not acknowledged every one of ``entries`` (not read yet, or pending)."""
    out = []
    for g in groups:
        last = id_key(g.last_delivered)
        if any(id_key(e) > last or e in g.pending for e in entries):
            out.append(g.name)
    return out


@dataclass(frozen=True)
class RunFacts:
    """What trim needs to know about one run (gathered by :func:`gather`)."""

    run_id: str
    partition: int
    entries: tuple[str, ...]  # its partition-log entry ids, in order
    state: str
    finished_at: float
    halted_in: tuple[str, ...] = ()
    dead_letters_in: tuple[str, ...] = ()
    unacked_by: tuple[str, ...] = ()
    log_read_by_nobody: bool = False


@dataclass(frozen=True)
class Verdict:
    run_id: str
    trim: bool
    why: str  # the reason it stays ("" when it goes)
    category: str  # trimmed | unfinished | too recent | halted | dead letters | unacknowledged | unread log


def judge(f: RunFacts, *, now: float, older_than: float) -> Verdict:
    """Whether a run's log entries may go; the first reason to keep them wins."""

    def keep(category: str, why: str) -> Verdict:
        return Verdict(f.run_id, False, why, category)

    if f.state != "completed":
        return keep("unfinished", f"not finished (state {f.state or 'unknown'})")
    age = now - f.finished_at
    if age <= older_than:
        return keep("too recent", f"finished {age:.0f}s ago, not more than {older_than:.0f}s")
    if f.halted_in:
        return keep("halted", f"halted in {', '.join(f.halted_in)}")
    if f.dead_letters_in:
        return keep("dead letters", f"has dead letters in {', '.join(f.dead_letters_in)}")
    if f.log_read_by_nobody:
        return keep("unread log", "no consumer group reads its partition log")
    if f.unacked_by:
        return keep("unacknowledged", f"not acknowledged by {', '.join(f.unacked_by)}")
    return Verdict(f.run_id, True, "", "trimmed")


# --------------------------------------------------------------------------------- gathering


def log_positions(app: App, run_id: str) -> tuple[str, ...]:
    """The run's partition-log entry ids, from its ledger (``e:<event id>`` -> "v run log digest")."""
    ledger = app.client.hgetall(app.keys.run_index(run_id))
    rows = sorted(
        (int(_s(v).split()[0]), _s(v).split()[2])
        for k, v in ledger.items()
        if _s(k).startswith("e:")
    )
    return tuple(pos for _, pos in rows)


def group_positions(app: App, stream: str) -> list[GroupPosition]:
    """Every consumer group on ``stream``: its last-delivered id and its pending entry ids."""
    if not app.client.exists(stream):
        return []
    out = []
    for g in app.client.xinfo_groups(stream):
        name, n = _s(g["name"]), int(g["pending"])
        rows = app.client.xpending_range(stream, name, min="-", max="+", count=n) if n else []
        out.append(
            GroupPosition(
                name, _s(g["last-delivered-id"]), frozenset(_s(r["message_id"]) for r in rows)
            )
        )
    return out


def _runs_by_group(app: App) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """run -> groups that halted it; run -> groups holding a dead letter of it."""
    from airfix.services.runtime.deadletters import list_dead_letters

    halted: dict[str, set[str]] = {}
    head = app.keys.halted("")
    for key in app.client.scan_iter(match=f"{head}*", count=1000):
        for run in app.client.hkeys(key):
            halted.setdefault(_s(run), set()).add(_s(key)[len(head) :])
    dead: dict[str, set[str]] = {}
    for d in list_dead_letters(app.client, app.keys):
        if d.run:
            dead.setdefault(d.run, set()).add(d.group)
    return halted, dead


def gather(app: App, runs: Iterable[str] | None = None) -> list[RunFacts]:
    """Facts about every run of the status view that has not been trimmed (or about ``runs``)."""
    client, keys = app.client, app.keys
    trimmed = {_s(r) for p in range(keys.partitions) for r in client.hkeys(keys.trimmed(p))}
    ids = list(runs) if runs is not None else [_s(r) for r in client.zrange(keys.runs, 0, -1)]
    ids = [r for r in ids if r not in trimmed]
    halted, dead = _runs_by_group(app)
    positions = {p: group_positions(app, keys.log(p)) for p in range(keys.partitions)}
    facts = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for run, raw in zip(chunk, client.hmget(keys.status, chunk) if chunk else [], strict=True):
            st = _STATUS.decode(raw) if raw else _Finished()
            p = partition_of(run, keys.partitions)
            entries = log_positions(app, run) if st.state == "completed" else ()
            facts.append(
                RunFacts(
                    run_id=run,
                    partition=p,
                    entries=entries,
                    state=st.state,
                    finished_at=st.finished_at,
                    halted_in=tuple(sorted(halted.get(run, ()))),
                    dead_letters_in=tuple(sorted(dead.get(run, ()))),
                    unacked_by=tuple(unacknowledged_by(entries, positions[p])),
                    log_read_by_nobody=not positions[p],
                )
            )
    return facts


# --------------------------------------------------------------------------------- trimming


@dataclass
class TrimReport:
    dry_run: bool
    older_than_s: float
    removed: dict[str, int] = field(default_factory=dict)  # partition log -> entries removed
    runs: list[str] = field(default_factory=list)  # runs whose entries went
    archived: dict[str, str] = field(default_factory=dict)  # run -> archive file
    streams_removed: int = 0
    kept: dict[str, int] = field(default_factory=dict)  # category -> runs kept
    refused: dict[str, str] = field(default_factory=dict)  # run -> why the script said no


def write_archive(app: App, run_id: str, directory: Path) -> Path:
    """The run's events as ``directory/<run_id>.jsonl``, complete and on disk before it returns."""
    from airfix.events.codec import write_jsonl

    directory.mkdir(parents=True, exist_ok=True)
    path = (directory / f"{run_id}.jsonl").resolve()
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        n = write_jsonl(app.store.read_run(run_id), fh)
        fh.flush()
        os.fsync(fh.fileno())
    expected = app.store.version(run_id)
    if n != expected:
        tmp.unlink()
        raise AirfixError(
            f"run {run_id}: wrote {n} events to its archive but its ledger says "
            f"{expected}; nothing was trimmed for it"
        )
    tmp.replace(path)
    return path


def trim_run(
    app: App, run_id: str, entries: Sequence[str], archive: Path | None, *, now: float
) -> tuple[str, int]:
    """Run trim.lua for one run: ("OK", removed) or (why it refused, 0)."""
    keys = app.keys
    p = partition_of(run_id, keys.partitions)
    record = {
        "at": now,
        "first": entries[0] if entries else "0-0",
        "last": entries[-1] if entries else "0-0",
        "entries": len(entries),
        "archive": str(archive) if archive else "",
    }
    script = app.client.register_script(_TRIM_LUA)
    reply = script(
        keys=[keys.log(p), keys.trimmed(p), keys.run_stream(run_id)],
        args=[run_id, msgspec.json.encode(record), "1" if archive else "0", *entries],
    )
    status = _s(reply[0])
    if status == "OK":
        return "OK", int(reply[1])
    if status == "NOGROUP":
        return "no consumer group reads its partition log", 0
    return (
        f"{'not read yet' if status == 'UNREAD' else 'pending'} in group {_s(reply[1])} ({_s(reply[2])})",
        0,
    )


def trim(
    app: App,
    *,
    older_than: float,
    archive: Path | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> TrimReport:
    """Remove what every consumer is done with (see the module docstring); ``dry_run`` writes nothing."""
    now = time.time() if now is None else now
    report = TrimReport(dry_run=dry_run, older_than_s=older_than)
    facts = {f.run_id: f for f in gather(app)}
    verdicts = [judge(f, now=now, older_than=older_than) for f in facts.values()]
    for v in verdicts:
        if not v.trim:
            report.kept[v.category] = report.kept.get(v.category, 0) + 1
    chosen = sorted(
        (facts[v.run_id] for v in verdicts if v.trim),
        key=lambda f: id_key(f.entries[0]) if f.entries else (0, 0),
    )
    for f in chosen:
        stream = app.keys.log(f.partition)
        if dry_run:
            report.runs.append(f.run_id)
            report.removed[stream] = report.removed.get(stream, 0) + len(f.entries)
            if archive is not None:
                report.archived[f.run_id] = str((archive / f"{f.run_id}.jsonl").resolve())
            continue
        path = write_archive(app, f.run_id, archive) if archive is not None else None
        status, removed = trim_run(app, f.run_id, f.entries, path, now=now)
        if status != "OK":
            report.refused[f.run_id] = status
            if path is not None:
                path.unlink()  # not archived after all: its stream stays
            continue
        report.runs.append(f.run_id)
        report.removed[stream] = report.removed.get(stream, 0) + removed
        if path is not None:
            report.archived[f.run_id] = str(path)
            report.streams_removed += 1
        _record(app, f.run_id, path)
    return report


def _record(app: App, run_id: str, archive: Path | None) -> None:
    from airfix.events.storage.journal import JournaledStore, record_action

    if isinstance(app.store, JournaledStore):
        record_action(
            app.store.journal,
            {"op": "trim", "run": run_id, "archive": str(archive) if archive else ""},
        )


def reapply(app: App, action: Mapping[str, Any]) -> None:
    """Trim a run again after the embedded store's journal replay put its entries back."""
    run_id = str(action["run"])
    archive = Path(str(action["archive"])) if action.get("archive") else None
    if archive is not None and not archive.is_file():
        print(
            f"airfix: run {run_id}'s archive {archive} is gone; keeping its stream", file=sys.stderr
        )
        archive = None
    facts = gather(app, [run_id])
    verdict = judge(facts[0], now=float("inf"), older_than=0) if facts else None
    if verdict is None or not verdict.trim:
        print(
            f"airfix: cannot trim run {run_id} again after the journal replay: "
            f"{verdict.why if verdict else 'unknown run'}",
            file=sys.stderr,
        )
        return
    status, _ = trim_run(app, run_id, facts[0].entries, archive, now=time.time())
    if status != "OK":
        print(
            f"airfix: cannot trim run {run_id} again after the journal replay: {status}",
            file=sys.stderr,
        )


# --------------------------------------------------------------------------------- rendering
