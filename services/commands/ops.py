"""Operator commands over the log: replay a run, export and import it, rebuild the projections.

Replay is a pure fold of stored events: it never touches a target repository, never starts a tool
or a fixer, and never writes to the store (``tests/test_ops.py`` proves it with spies).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec

from airfix.events.codec import decode_data
from airfix.events.core.machine import RunState, evolve, initial_state
from airfix.events.errors import AirfixError, UndecodableEntry
from airfix.events.schema import Event
from airfix.events.storage.store import EventStore
from airfix.projections.base import Projection, rebuild
from airfix.projections.describe import describe

_ENC = msgspec.json.Encoder()


class Step(msgspec.Struct, kw_only=True):
    """One event of a replay and the run's state after it (states are immutable and shared)."""

    version: int
    type: str
    event_id: str
    at: str
    line: str
    transition: str
    state: RunState


def read_jsonl(path: Path) -> Iterator[Event]:
    """Events of an export file; a bad line is an error naming the file and line."""
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                yield decode_data(raw, where=str(path), entry_id=f"line {n}")
            except UndecodableEntry as exc:
                raise AirfixError(f"{path}, line {n}: {exc.reason}") from None


def iter_timeline(events: Iterable[Event], *, at: int | None = None) -> Iterator[Step]:
    """Each event with the state after it, up to version ``at``; the pure fold, step by step,
    produced one at a time (a long run's steps are never all in memory)."""
    state: RunState | None = None
    for ev in events:
        if at is not None and ev.version > at:
            return
        before = state or initial_state(ev.run_id)
        state = evolve(before, ev)
        yield Step(
            version=ev.version,
            type=type(ev).__name__,
            event_id=ev.event_id,
            at=ev.recorded_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            line=describe(ev),
            transition=f"{before.state} -> {state.state}"
            if before.state != state.state
            else state.state,
            state=state,
        )


def timeline(events: Iterable[Event], *, at: int | None = None) -> tuple[list[Step], RunState]:
    """:func:`iter_timeline` as a list, with the final state."""
    steps = list(iter_timeline(events, at=at))
    if not steps:
        raise AirfixError(_nothing(at))
    return steps, steps[-1].state


def _nothing(at: int | None) -> str:
    return "no events to replay" + (f" up to version {at}" if at is not None else "")


def write_timeline(steps: Iterable[Step], out: IO[bytes], *, json: bool = False) -> RunState:
    """Write the timeline as it is produced: three plain lines per event, or with ``json`` one
    object ``{"steps": [...], "state": {...}}``.  In JSON each step's state is the whole state
    except that ``commits`` is a count (the list grows with the run and would be repeated at
    every step); the final ``state`` has the full list.  Returns the final state."""
    final: RunState | None = None
    chunk: list[bytes] = []
    if json:
        out.write(b'{"steps":[')
    for s in steps:
        if json:
            state = msgspec.to_builtins(msgspec.structs.replace(s.state, commits=[]))
            state["commits"] = len(s.state.commits)
            chunk.append(
                (b"," if final is not None else b"")
                + _ENC.encode(
                    {
                        "version": s.version,
                        "type": s.type,
                        "event_id": s.event_id,
                        "at": s.at,
                        "line": s.line,
                        "transition": s.transition,
                        "state": state,
                    }
                )
            )
        else:
            st = s.state
            chunk.append(
                f"v{s.version:<4} {s.at} {s.type} ({s.transition})\n       {s.line}\n"
                f"       iteration {st.iteration}, score {st.score:.2f}, issues {st.issues_initial} "
                f"-> {st.issues_open}, committed {st.committed}, rolled back {st.rolled_back}, "
                f"failed {st.fix_failed}\n".encode()
            )
        final = s.state
        if len(chunk) >= 1000:
            out.write(b"".join(chunk))
            chunk = []
    out.write(b"".join(chunk))
    if final is None:
        raise AirfixError(_nothing(None))
    if json:
        out.write(b'],"state":' + _ENC.encode(final) + b"}\n")
    else:
        out.write(
            (
                f"state at v{final.version}: {final.state}"
                + (f" {final.status} ({final.reason})" if final.status else "")
                + "\n"
            ).encode()
        )
    out.flush()
    return final


def import_events(store: EventStore, events: Iterable[Event]) -> dict[str, tuple[int, bool]]:
    """Append each run's events as recorded; importing the same file twice adds nothing.

    Returns run_id -> (version after, whether everything was already there)."""
    by_run: dict[str, list[Event]] = {}
    for ev in events:
        by_run.setdefault(ev.run_id, []).append(ev)
    out: dict[str, tuple[int, bool]] = {}
    for run_id, evs in by_run.items():
        evs.sort(key=lambda e: e.version)
        if evs[0].version != 1:
            raise AirfixError(f"run {run_id}: the export starts at version {evs[0].version}, not 1")
        result = store.append(run_id, evs, 0)
        out[run_id] = (result.version, result.duplicate)
    return out


def rebuild_all(
    store: EventStore, live: list[Projection], scratch: list[Projection], *, check: bool
) -> dict[str, bool]:
    """Rebuild every projection into ``scratch`` and compare with ``live`` (name -> equal).

    Without ``check`` the live views are then rebuilt in place from the log."""
    equal: dict[str, bool] = {}
    for lv, sv in zip(live, scratch, strict=True):
        rebuild(store, sv)
        equal[lv.name] = lv.dump() == sv.dump()
        sv.clear()
        if not check:
            rebuild(store, lv)
    return equal


def inspect_store(app: Any) -> dict[str, Any]:
    """Streams and their lengths, consumer groups with lag/pending/oldest idle, dead letters,
    projection checkpoints and how far behind the log each one is."""
    from airfix.projections.base import id_key
    from airfix.services.runtime.metrics import group_metrics

    client, keys = app.client, app.keys
    logs = {k: int(client.xlen(k)) if client.exists(k) else 0 for k in keys.logs()}
    ends = app.store.log_ends()
    groups: set[str] = set()
    for stream in keys.logs():
        if client.exists(stream):
            groups |= {
                g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
                for g in client.xinfo_groups(stream)
            }
    metrics = [dict(group_metrics(client, keys, g).__dict__) for g in sorted(groups)]
    checkpoints = {}
    for p in app.projections():
        got = p.checkpoints()
        behind = 0
        for stream, end in ends.items():
            if end == "0-0":
                continue
            at = got.get(stream, "0-0")
            if id_key(at) < id_key(end):
                behind += len(client.xrange(stream, f"({at}", "+", count=100_000))
        checkpoints[p.name] = {"checkpoints": got, "entries_behind": behind}
    runs = int(client.zcard(keys.runs)) if client.exists(keys.runs) else 0
    return {
        "prefix": keys.prefix,
        "partitions": keys.partitions,
        "logs": logs,
        "runs": runs,
        "groups": metrics,
        "projections": checkpoints,
    }


def render_inspect(info: dict[str, Any], out: IO[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out or sys.stdout)
    console.print(
        f"prefix {info['prefix']}, {info['partitions']} partitions, {info['runs']} runs, "
        f"{sum(info['logs'].values())} log entries"
    )
    groups = Table(title="consumer groups")
    for col in (
        "group",
        "lag",
        "pending",
        "oldest idle ms",
        "dead letters",
        "consumers",
        "halted runs",
    ):
        groups.add_column(col)
    for g in info["groups"]:
        groups.add_row(
            g["group"],
            str(g["lag"]),
            str(g["pending"]),
            str(g["oldest_pending_idle_ms"]),
            str(g["dead_letters"]),
            str(g["consumers"]),
            str(g["halted_runs"]),
        )
    console.print(groups)
    views = Table(title="projections")
    views.add_column("view")
    views.add_column("entries behind the log")
    for name, v in info["projections"].items():
        views.add_row(name, str(v["entries_behind"]))
    console.print(views)
