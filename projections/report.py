"""A run's summary, computed from its events alone (so it can never claim what did not happen).

Issues before per tool come from the first *full* HealthChecked; after, from the latest
measurement of the tree the run left: the last full check with every later commit's own
measurement applied (a run can end mid-iteration).  Commits, rollbacks, skips and failures come
from their events; the status and what is left (with why) from the terminal event.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from airfix.events.core.ledger import iteration_view
from airfix.events.core.machine import RunState, fold
from airfix.events.schema import (
    BatchPlanned,
    BatchSkipped,
    Committed,
    Event,
    FixFailed,
    FixRolledBack,
    HealthChecked,
    Landed,
    Remaining,
    RunCompleted,
    StackDropped,
    StackLanded,
)


class ToolSummary(msgspec.Struct, kw_only=True):
    tool: str
    status_before: str = ""
    status_after: str = ""
    issues_before: int | None = None
    issues_after: int | None = None
    version: str = ""


class RunReport(msgspec.Struct, kw_only=True):
    run_id: str
    target: str
    state: str
    status: str
    reason: str
    iterations: int
    issues_before: int
    issues_after: int
    score_before: float | None
    score_after: float | None
    batches_planned: int
    commits: list[dict[str, Any]]
    rolled_back: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    tools: list[ToolSummary]
    tool_errors: list[str]
    cost_usd: float
    duration_s: float
    branch: str
    base_sha: str
    simulation: bool
    base_branch: str = ""
    environment: dict[str, str] = {}
    skipped: list[dict[str, Any]] = []
    remaining: list[Remaining] = []
    tests_ran: bool = False  # did any check run the project's tests
    checkout: str = ""  # what the user's checkout is on after the run (set by whoever finalized it)


def on_branch(events: Iterable[Event]) -> list[Committed | Landed]:
    """The run's commits as they are on its branch: those committed there directly, and a stack's
    once it landed (with their final shas and messages), and the commits that reverted one the
    closing check found breaking tests; a staged commit that never landed is not one of them."""
    out: list[Committed | Landed] = []
    for e in events:
        if isinstance(e, Committed) and not e.staged:
            out.append(e)
        elif isinstance(e, StackLanded):
            out.extend(e.commits)
        elif isinstance(e, FixRolledBack) and e.reverted:
            undone = next((c for c in out if c.sha == e.reverted), None)
            files = list(undone.files) if undone else []
            out.append(
                Landed(
                    batch_id=e.batch_id, sha=e.reset_to, message=f"Revert {e.batch_id}", files=files
                )
            )
    return out


def build_report(events: Iterable[Event]) -> RunReport:
    evs = list(events)
    state: RunState = fold(evs)
    full = [e for e in evs if isinstance(e, HealthChecked) and e.scope == "full"]
    first, last = (full[0], full[-1]) if full else (None, None)
    view = iteration_view(evs, last.iteration) if last else None
    tools: dict[str, ToolSummary] = {}
    for check, when in ((first, "before"), (last, "after")):
        for t in check.tools if check else []:
            row = tools.setdefault(t.tool, ToolSummary(tool=t.tool, version=t.version))
            issues = None if t.status == "tool_error" else int(t.counts.get("issues", 0))
            if when == "before":
                row.status_before, row.issues_before = t.status, issues
            else:
                if view is not None and issues is not None and t.tool in view.counts:
                    issues = view.counts[t.tool]  # commits after the last full check measured it
                row.status_after, row.issues_after = t.status, issues
    plans = {e.batch_id: e for e in evs if isinstance(e, BatchPlanned)}
    terminal = next((e for e in reversed(evs) if isinstance(e, RunCompleted)), None)
    end = evs[-1].recorded_at if evs else None
    start = evs[0].recorded_at if evs else None
    return RunReport(
        run_id=state.run_id,
        target=state.target,
        state=state.state,
        status=state.status,
        reason=state.reason,
        iterations=state.iterations_completed,
        issues_before=state.issues_initial,
        issues_after=len(view.issues)
        if view is not None and view.discovered
        else (terminal.issues_after if terminal else state.issues_open),
        score_before=first.score if first else None,
        score_after=last.score if last else None,
        batches_planned=state.batches_planned,
        commits=[
            {
                "batch_id": c.batch_id,
                "sha": c.sha,
                "message": c.message.splitlines()[0] if c.message else "",
                "files": len(c.files),
                "issues": len(plans[c.batch_id].issue_ids) if c.batch_id in plans else 0,
            }
            for c in on_branch(evs)
        ],
        rolled_back=[
            {"batch_id": e.batch_id, "reason": e.reason}
            for e in evs
            if isinstance(e, FixRolledBack | StackDropped)
        ],
        failed=[
            {"batch_id": e.batch_id, "reason": e.reason} for e in evs if isinstance(e, FixFailed)
        ],
        tools=sorted(tools.values(), key=lambda t: t.tool),
        tool_errors=list(state.tools_in_error),
        cost_usd=state.cost_usd,
        duration_s=(end - start).total_seconds() if end and start else 0.0,
        branch=state.branch,
        base_sha=state.base_sha,
        simulation=state.simulation,
        base_branch=state.base_branch,
        environment=dict(state.environment),
        skipped=[
            {"batch_id": e.batch_id, "reason": e.reason} for e in evs if isinstance(e, BatchSkipped)
        ],
        remaining=list(terminal.remaining) if terminal else [],
        tests_ran=any(
            e.test_outcomes or any(t.counts.get("tests_total", 0) for t in e.tools) for e in full
        ),
    )
