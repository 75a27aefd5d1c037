"""A run as a whole, from its events alone (what ``airfix show`` tells).

Per iteration: its health checks, and per batch what became of it (committed, staged then landed
or dropped, rolled back, failed, skipped) with the reason; the commits on the run's branch; what
is left by tool and rule; how long each part took.  A pure fold: no Redis, no git.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from airfix.events.core.machine import fold
from airfix.events.schema import (
    BatchPlanned,
    BatchSkipped,
    Committed,
    Event,
    FixApplied,
    FixFailed,
    FixRolledBack,
    FixStarted,
    HealthChecked,
    IssuesDiscovered,
    IterationCompleted,
    Remaining,
    RunCompleted,
    RunRequested,
    StackDropped,
    StackLanded,
)
from airfix.projections.describe import describe
from airfix.projections.report import ToolSummary, build_report, on_branch


class Check(msgspec.Struct, kw_only=True):
    scope: str
    score: float
    healthy: bool
    tools_s: float  # the tools' own run times, summed
    line: str


class Batch(msgspec.Struct, kw_only=True):
    batch_id: str
    phase: str
    description: str
    issues: int
    verdict: str = "planned"  # then fixing, applied, staged, committed, rolled back, ...
    reason: str = ""
    sha: str = ""
    fixer: str = ""
    attempts: int = 0
    fix_s: float = 0.0
    cost_usd: float = 0.0


class Iteration(msgspec.Struct, kw_only=True):
    number: int
    duration_s: float = 0.0
    issues_found: int = 0
    checks: list[Check] = []
    batches: list[Batch] = []
    completed: bool = False
    committed: int = 0
    rolled_back: int = 0
    failed: int = 0
    score: float | None = None


class Commit(msgspec.Struct, kw_only=True):
    batch_id: str
    sha: str
    subject: str
    files: int


class RunDetail(msgspec.Struct, kw_only=True):
    run_id: str
    target: str
    base_branch: str
    base_sha: str
    branch: str
    state: str
    status: str
    reason: str
    simulation: bool
    fixer: str
    batching: str
    issues_before: int
    issues_after: int
    score_before: float | None
    score_after: float | None
    cost_usd: float
    duration_s: float
    tools: list[ToolSummary]
    iterations: list[Iteration]
    commits: list[Commit]
    remaining: list[Remaining]


def run_detail(events: Iterable[Event]) -> RunDetail:
    evs = list(events)
    state, report = fold(evs), build_report(evs)
    request = next((e for e in evs if isinstance(e, RunRequested)), None)
    terminal = next((e for e in reversed(evs) if isinstance(e, RunCompleted)), None)
    return RunDetail(
        run_id=state.run_id,
        target=state.target,
        base_branch=state.base_branch,
        base_sha=state.base_sha,
        branch=state.branch,
        state=state.state,
        status=state.status,
        reason=state.reason,
        simulation=state.simulation,
        fixer=request.fixer if request else "",
        batching=request.batching if request else "",
        issues_before=report.issues_before,
        issues_after=report.issues_after,
        score_before=report.score_before,
        score_after=report.score_after,
        cost_usd=report.cost_usd,
        duration_s=report.duration_s,
        tools=report.tools,
        iterations=_iterations(evs),
        commits=[
            Commit(
                batch_id=c.batch_id,
                sha=c.sha,
                subject=c.message.splitlines()[0] if c.message else "",
                files=len(c.files),
            )
            for c in on_branch(evs)
        ],
        remaining=sorted(terminal.remaining, key=lambda r: (r.tool, r.rule)) if terminal else [],
    )


def _iterations(evs: list[Event]) -> list[Iteration]:
    """Each iteration with what happened in it; it lasts from the event before its first one
    (its check began then) to its last one."""
    iterations: dict[int, Iteration] = {}
    batches: dict[str, tuple[Iteration, Batch]] = {}
    started: dict[int, float] = {}
    previous = evs[0].recorded_at.timestamp() if evs else 0.0
    for ev in evs:
        number = _iteration_of(ev, batches)
        if number is not None:
            it = iterations.setdefault(number, Iteration(number=number))
            started.setdefault(number, previous)
            it.duration_s = ev.recorded_at.timestamp() - started[number]
            _apply(it, ev, batches)
        previous = ev.recorded_at.timestamp()
    return [iterations[n] for n in sorted(iterations)]


def _iteration_of(ev: Event, batches: dict[str, tuple[Iteration, Batch]]) -> int | None:
    number = getattr(ev, "iteration", None)
    if isinstance(number, int):
        return number
    if isinstance(ev, StackLanded):
        found = [batches[c.batch_id][0].number for c in ev.commits if c.batch_id in batches]
        return found[0] if found else None
    batch_id = getattr(ev, "batch_id", None)
    return batches[batch_id][0].number if batch_id in batches else None


def _apply(it: Iteration, ev: Event, batches: dict[str, tuple[Iteration, Batch]]) -> None:
    if isinstance(ev, HealthChecked):
        tools_s = sum(t.duration_s for t in ev.tools)
        it.checks.append(
            Check(
                scope=ev.scope,
                score=ev.score,
                healthy=ev.healthy,
                tools_s=tools_s,
                line=describe(ev),
            )
        )
    elif isinstance(ev, IssuesDiscovered):
        it.issues_found += len(ev.issues)
    elif isinstance(ev, BatchPlanned):
        batch = Batch(
            batch_id=ev.batch_id,
            phase=ev.phase,
            description=ev.description,
            issues=len(ev.issue_ids),
        )
        it.batches.append(batch)
        batches[ev.batch_id] = (it, batch)
    elif isinstance(ev, IterationCompleted):
        it.completed, it.score = True, ev.score
        it.committed, it.rolled_back, it.failed = ev.committed, ev.rolled_back, ev.failed
    elif isinstance(ev, StackLanded):
        for c in ev.commits:
            if c.batch_id in batches:
                _verdict(batches[c.batch_id][1], "committed", ev.verified_by, c.sha)
    elif getattr(ev, "batch_id", None) in batches:
        _batch_event(batches[ev.batch_id][1], ev)  # type: ignore[attr-defined]


def _batch_event(batch: Batch, ev: Event) -> None:
    """What one event of a batch says about it; the last one tells its verdict."""
    if isinstance(ev, FixStarted):
        batch.attempts, batch.fixer = batch.attempts + 1, ev.fixer
        _verdict(batch, "fixing")
    elif isinstance(ev, FixApplied | FixFailed):
        batch.fix_s += ev.duration_s
        batch.cost_usd += ev.cost_usd
        if isinstance(ev, FixFailed):
            _verdict(batch, "failed", ev.reason)
        else:
            _verdict(batch, "applied", f"{len(ev.files_changed)} file(s) changed")
    elif isinstance(ev, Committed):
        _verdict(batch, "staged" if ev.staged else "committed", ev.verified_by, ev.sha)
    elif isinstance(ev, FixRolledBack):
        _verdict(batch, "rolled back", ev.reason)
    elif isinstance(ev, StackDropped):
        _verdict(batch, "narrowed" if ev.narrowed else "dropped", ev.reason)
    elif isinstance(ev, BatchSkipped):
        _verdict(batch, "skipped", ev.reason)


def _verdict(batch: Batch, verdict: str, reason: str = "", sha: str = "") -> None:
    batch.verdict, batch.reason = verdict, reason
    if sha:
        batch.sha = sha
