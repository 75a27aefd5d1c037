"""The run's state and how each event changes it: pure ``evolve`` and ``fold``.

Pure on purpose: no I/O, no clock, no randomness.  Time only arrives inside commands (``now``, epoch
seconds) and events (``recorded_at``), so replaying a log always rebuilds the same state and every
policy decision can be unit-tested without Redis.  :class:`RunState` doubles as the per-run status
read model, so it stays msgspec-encodable (lists and dicts, never sets).

The legal transitions and their guards live in :mod:`airfix.events.core.transitions`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable

import msgspec

from airfix.events.core.transitions import (
    STATES,
    TERMINAL_STATE,
    TRANSITIONS,
    StateName,
    illegal,
)
from airfix.events.errors import InvalidTransition
from airfix.events.schema import (
    BatchingMode,
    BatchPlanned,
    BatchSkipped,
    Committed,
    Event,
    FixApplied,
    FixFailed,
    FixPrepared,
    FixRolledBack,
    FixStarted,
    HealthChecked,
    IssuesDiscovered,
    IterationCompleted,
    Limits,
    Remaining,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunRequested,
    RunStarted,
    StackDropped,
    StackLanded,
    VerifyMode,
)

# ---------------------------------------------------------------- state / read model


class RunState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything known about one run after ``version`` events; also its status read model."""

    run_id: str
    version: int = 0
    state: StateName = "new"
    status: str = ""  # a TERMINAL_STATUSES value once state == "completed"
    reason: str = ""
    # request
    target: str = ""
    batching: BatchingMode = "smart"
    fixer: str = ""
    verify: VerifyMode = "batch"  # per batch, or as a stack (tests once on its tip)
    simulation: bool = False
    limits: Limits = Limits()
    requested_by: str = ""
    python: str = ""  # asked for with --python; "" = detected at the start
    worker: str = ""
    base_sha: str = ""
    branch: str = ""
    base_branch: str = ""
    environment: dict[str, str] = {}
    # time (epoch seconds, from recorded_at)
    requested_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    updated_at: float = 0.0
    # iterations
    iteration: int = 0  # current, 1-based; after an IterationCompleted it names the next one,
    # and once the run has ended, the last one that ran (see last_iteration)
    iterations_completed: int = 0  # IterationCompleted; what a finished run should show
    iterations_without_progress: int = 0
    # health
    score: float = 0.0  # of the last HealthChecked, any scope
    healthy: bool = False
    healthy_streak: int = 0  # consecutive healthy full checks (completion_criteria.stability_runs)
    check_scope: str = ""
    tools_in_error: list[str] = []
    best_score: float | None = None  # best full-check score so far
    issues_initial: int = 0
    issues_open: int = 0
    # batches of the current iteration
    planned: list[str] = []
    bisecting: list[str] = []  # halves of rolled-back batches: their failures break no streak
    pending: list[str] = []  # planned, never started
    retryable: list[str] = []  # failed or rolled back in this iteration; may start again
    attempts: dict[str, int] = {}
    current_batch: str = ""
    candidate: str = ""  # the last FixApplied's candidate commit (what the verifier judges)
    # per-iteration counters (reset by IterationCompleted)
    checks_this_iteration: int = 0
    improved_this_iteration: bool = False
    committed_this_iteration: int = 0
    rolled_back_this_iteration: int = 0
    failed_this_iteration: int = 0
    # run totals
    batches_planned: int = 0
    batches_dropped: int = 0
    batches_skipped: int = 0
    committed: int = 0
    rolled_back: int = 0
    fix_failed: int = 0
    consecutive_failures: int = 0
    last_failure: str = ""  # "rolled_back" or "fix_failed"
    cost_usd: float = 0.0
    turns: int = 0
    commits: list[str] = []  # on the run branch, in order
    stack: list[str] = []  # staged commits of this iteration (tests pending), in order
    stack_batches: list[str] = []  # their batches
    remaining: list[Remaining] = []  # what the finished run left, by tool and rule, and why

    @classmethod
    def initial(cls, run_id: str) -> RunState:
        return cls(run_id=run_id)

    @property
    def terminal(self) -> bool:
        return self.state == TERMINAL_STATE


def last_iteration(s: RunState) -> int:
    """The iteration the run's latest events belong to.  After an ``IterationCompleted`` the
    ``iteration`` names the next one (the steps need it), which a run that ends then never
    starts; a finished run's status, show, replay and tail must not call it max + 1."""
    started = s.checks_this_iteration or s.planned
    if s.iterations_completed and s.iteration > s.iterations_completed and not started:
        return s.iterations_completed
    return s.iteration


def initial_state(run_id: str) -> RunState:
    return RunState(run_id=run_id)


# ---------------------------------------------------------------- evolve


def _epoch(at: _dt.datetime) -> float:
    return at.timestamp()


def _without(items: list[str], item: str) -> list[str]:
    return [x for x in items if x != item]


def _apply(s: RunState, ev: Event) -> dict[str, object]:  # noqa: C901 (a branch per event type)
    """The field changes ``ev`` makes; ``ev`` is already known to be legal."""
    at = _epoch(ev.recorded_at)
    if isinstance(ev, RunRequested):
        return {
            "target": ev.target,
            "batching": ev.batching,
            "fixer": ev.fixer,
            "simulation": ev.simulation,
            "limits": ev.limits,
            "requested_by": ev.requested_by,
            "requested_at": at,
            "python": ev.python,
            "verify": ev.verify,
        }
    if isinstance(ev, RunStarted):
        return {
            "worker": ev.worker,
            "base_sha": ev.base_sha,
            "branch": ev.branch,
            "base_branch": ev.base_branch,
            "environment": ev.environment,
            "started_at": at,
            "iteration": 1,
        }
    if isinstance(ev, HealthChecked):
        changes: dict[str, object] = {
            "score": ev.score,
            "healthy": ev.healthy,
            "check_scope": ev.scope,
            "tools_in_error": [t.tool for t in ev.tools if t.status == "tool_error"],
            "checks_this_iteration": s.checks_this_iteration + 1,
        }
        if ev.scope == "full":
            changes["healthy_streak"] = s.healthy_streak + 1 if ev.healthy else 0
            better = s.best_score is not None and ev.score > s.best_score
            changes["improved_this_iteration"] = s.improved_this_iteration or better
            changes["best_score"] = (
                ev.score if s.best_score is None else max(s.best_score, ev.score)
            )
        return changes
    if isinstance(ev, IssuesDiscovered):
        changes = {"issues_open": len(ev.issues)}
        if s.iteration == 1:
            changes["issues_initial"] = len(ev.issues)
        return changes
    if isinstance(ev, BatchPlanned):
        return {
            "planned": [*s.planned, ev.batch_id],
            "pending": [*s.pending, ev.batch_id],
            "batches_planned": s.batches_planned + 1,
            **({"bisecting": [*s.bisecting, ev.batch_id]} if ev.split_of else {}),
        }
    if isinstance(ev, FixStarted):
        return {
            "current_batch": ev.batch_id,
            "pending": _without(s.pending, ev.batch_id),
            "retryable": _without(s.retryable, ev.batch_id),
            "attempts": {**s.attempts, ev.batch_id: s.attempts.get(ev.batch_id, 0) + 1},
        }
    if isinstance(ev, BatchSkipped):
        return {
            "pending": _without(s.pending, ev.batch_id),
            "batches_skipped": s.batches_skipped + 1,
        }
    if isinstance(ev, FixApplied):
        return {
            "cost_usd": s.cost_usd + ev.cost_usd,
            "turns": s.turns + ev.turns,
            "candidate": ev.candidate,
        }
    if isinstance(ev, FixPrepared):
        return {}  # informational: its cost counts when the batch's turn records it
    if isinstance(ev, FixFailed):
        return {
            "cost_usd": s.cost_usd + ev.cost_usd,
            "turns": s.turns + ev.turns,
            "current_batch": "",
            "retryable": [*s.retryable, ev.batch_id],
            "fix_failed": s.fix_failed + 1,
            "failed_this_iteration": s.failed_this_iteration + 1,
            "consecutive_failures": s.consecutive_failures + (ev.batch_id not in s.bisecting),
            "last_failure": "fix_failed",
        }
    if isinstance(ev, FixRolledBack) and ev.reverted:
        return {
            "commits": [*s.commits, ev.reset_to],
            "committed": s.committed - 1,
            "committed_this_iteration": s.committed_this_iteration - 1,
            "rolled_back": s.rolled_back + 1,
            "rolled_back_this_iteration": s.rolled_back_this_iteration + 1,
            "last_failure": "rolled_back",
        }
    if isinstance(ev, FixRolledBack):
        return {
            "current_batch": "",
            "retryable": [*s.retryable, ev.batch_id],
            "rolled_back": s.rolled_back + 1,
            "rolled_back_this_iteration": s.rolled_back_this_iteration + 1,
            "consecutive_failures": s.consecutive_failures + (ev.batch_id not in s.bisecting),
            "last_failure": "rolled_back",
        }
    if isinstance(ev, Committed) and ev.staged:
        return {
            "current_batch": "",
            "consecutive_failures": 0,
            "stack": [*s.stack, ev.sha],
            "stack_batches": [*s.stack_batches, ev.batch_id],
            "issues_open": max(0, s.issues_open - len(ev.resolved)),
        }
    if isinstance(ev, Committed):
        return {
            "current_batch": "",
            "committed": s.committed + 1,
            "committed_this_iteration": s.committed_this_iteration + 1,
            "consecutive_failures": 0,
            "commits": [*s.commits, ev.sha],
            "issues_open": max(0, s.issues_open - len(ev.resolved)),
        }
    if isinstance(ev, StackDropped):
        k = s.stack_batches.index(ev.batch_id)
        if ev.narrowed:  # it stays, as a commit without its culprits' fixes
            return {"stack": [*s.stack[:k], ev.narrowed, *s.stack[k + 1 :]]}
        return {
            "stack": s.stack[:k] + s.stack[k + 1 :],
            "stack_batches": s.stack_batches[:k] + s.stack_batches[k + 1 :],
            "rolled_back": s.rolled_back + 1,
            "rolled_back_this_iteration": s.rolled_back_this_iteration + 1,
        }
    if isinstance(ev, StackLanded):
        return {
            "stack": [],
            "stack_batches": [],
            "commits": [*s.commits, *(c.sha for c in ev.commits)],
            "committed": s.committed + len(ev.commits),
            "committed_this_iteration": s.committed_this_iteration + len(ev.commits),
        }
    if isinstance(ev, IterationCompleted):
        return {
            "iteration": s.iteration + 1,
            "iterations_completed": s.iterations_completed + 1,
            "iterations_without_progress": 0 if ev.progress else s.iterations_without_progress + 1,
            "issues_open": ev.issues_remaining,
            "batches_dropped": s.batches_dropped + len(s.pending) + len(s.retryable),
            "planned": [],
            "stack": [],
            "stack_batches": [],
            "bisecting": [],
            "pending": [],
            "retryable": [],
            "attempts": {},
            "checks_this_iteration": 0,
            "improved_this_iteration": False,
            "committed_this_iteration": 0,
            "rolled_back_this_iteration": 0,
            "failed_this_iteration": 0,
        }
    if isinstance(ev, RunCompleted):
        return {
            "iteration": last_iteration(s),
            "status": ev.status,
            "reason": ev.reason,
            "issues_open": ev.issues_after,
            "finished_at": at,
            "remaining": ev.remaining,
        }
    if isinstance(ev, RunFailed):
        return {
            "iteration": last_iteration(s),
            "status": ev.status,
            "reason": ev.reason,
            "finished_at": at,
        }
    if isinstance(ev, RunCancelled):
        return {
            "iteration": last_iteration(s),
            "status": "cancelled",
            "reason": ev.reason,
            "finished_at": at,
        }
    raise AssertionError(f"unhandled event type {type(ev).__name__}")  # pragma: no cover


def evolve(state: RunState, event: Event) -> RunState:
    """Apply one stored event; strict, because the log must never hold an illegal transition."""
    name = type(event).__name__
    why = None
    if event.run_id != state.run_id:
        why = f"event belongs to run {event.run_id!r}"
    elif event.version != state.version + 1:
        why = f"event has version {event.version}, expected {state.version + 1}"
    else:
        why = illegal(state, event)
    if why is not None:  # the message is built only here: evolve runs per event of every replay
        raise InvalidTransition(
            state.state, name, f"run {state.run_id!r} at version {state.version}: {why}"
        )
    return msgspec.structs.replace(
        state,
        **_apply(state, event),
        version=event.version,
        state=TRANSITIONS[(state.state, name)],
        updated_at=_epoch(event.recorded_at),
    )


def fold(events: Iterable[Event], state: RunState | None = None) -> RunState:
    """Replay ``events`` onto ``state`` (or onto the initial state of the first event's run)."""
    for ev in events:
        if state is None:
            state = initial_state(ev.run_id)
        state = evolve(state, ev)
    if state is None:
        raise InvalidTransition("new", "fold", "no events and no state: the run id is unknown")
    return state


__all__ = [
    "STATES",
    "TERMINAL_STATE",
    "TRANSITIONS",
    "RunState",
    "StateName",
    "evolve",
    "fold",
    "initial_state",
]
