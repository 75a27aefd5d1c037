"""The run state machine: pure ``decide`` (command -> events) and ``evolve`` (state + event -> state).

Pure on purpose: no I/O, no clock, no randomness.  Time only arrives inside commands (``now``, epoch
seconds) and events (``recorded_at``), so replaying a log always rebuilds the same state and every
policy decision can be unit-tested without Redis.  :class:`RunState` doubles as the per-run status
read model, so it stays msgspec-encodable (lists and dicts, never sets).

Transitions (``TRANSITIONS`` is the machine-readable copy; ``evolve`` rejects everything else):

=========== ===================== =========== ===================================================
state       event                 next        legal when (``_illegal``)
=========== ===================== =========== ===================================================
new         RunRequested          requested   target is not empty
requested   RunStarted            checking    iteration becomes 1; the wall clock starts here
checking    HealthChecked         checking    ``event.iteration`` is the current iteration
checking    IssuesDiscovered      planning    current iteration; at least one HealthChecked in it
planning    BatchPlanned          planning    current iteration; batch id new in this iteration
planning    FixStarted            fixing      batch is pending, or failed/rolled back earlier in
                                              this iteration (a retry: ``attempt`` + 1)
planning    BatchSkipped          planning    batch is pending (its issues are already gone)
fixing      FixApplied            verifying   batch is the one in flight
fixing      FixFailed             planning    batch is the one in flight
verifying   Committed             planning    batch is the one in flight; sha not empty
verifying   FixRolledBack         planning    batch is the one in flight
planning    IterationCompleted    checking    current iteration; pending and retryable batches
                                              are dropped (the next check re-discovers their
                                              issues); iteration + 1
requested,  RunCompleted,         completed   terminal; RunCompleted status is any terminal
checking,   RunFailed,                        status, RunFailed's is any but "succeeded",
planning,   RunCancelled                      RunCancelled's is "cancelled"
fixing,
verifying
completed   (anything)            --          nothing is legal after a terminal event
=========== ===================== =========== ===================================================

Policy in ``decide`` (it appends one ``RunCompleted`` after the command's own events):

* RecordHealth, scope "full": a tool with status "tool_error" -> "tool_error" (a tool that cannot
  measure never passes); else ``healthy`` for ``limits.stability_runs`` full checks in a row ->
  "succeeded".  Other scopes never end the run.
* FailFix / RollBack (of a batch that is not a bisecting half: ``BatchPlanned.split_of``):
  ``consecutive_failures`` reaches ``max_consecutive_failures`` ->
  "partially_fixed" when the run has commits, else "verify_failed" (last failure a rollback) or
  "failed" (last failure the fixer's).  Commit resets the streak.
* FailFix / RollBack / Commit (back in planning, nothing in flight) and CompleteIteration:
  ``max_cost_usd`` > 0 and cost >= it -> "budget_exhausted".  Never right after ApplyFix, so a
  run never stops with an unverified fix on the tree.
* FailFix with ``fatal`` (a failure no retry can cure: the fixer is not logged in, its binary is
  missing) -> "fixer_unavailable" at once, instead of trying it on every batch.
* CompleteIteration of a simulation run -> "simulated" (it plans, fixes nothing, ends).
* CompleteIteration with ``nothing_fixable`` (the planner found nothing its fixer chain can fix)
  -> "partially_fixed" when the run has commits, else "nothing_fixable".
* CompleteIteration: iterations completed >= ``max_iterations`` -> "partially_fixed" with commits,
  else "budget_exhausted"; ``no_progress_iterations`` iterations in a row without progress (no
  commit and no full-check score better than the best before) -> "no_progress".
* Any command carrying ``now`` (Tick always): ``now - started_at > max_duration_s`` ->
  "timed_out", also mid-fix: it is a hard limit.  The clock starts at RunStarted.
* The first verdict wins, in the order listed for the command: health, failure streak,
  max_iterations, no_progress, cost, timeout.  A limit <= 0 is disabled.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Literal

import msgspec

from airfix.events.errors import InvalidTransition
from airfix.events.schema import (
    TERMINAL_STATUSES,
    BatchingMode,
    BatchPlanned,
    BatchSkipped,
    Committed,
    Event,
    FixApplied,
    FixFailed,
    FixRolledBack,
    FixStarted,
    HealthChecked,
    IssueRecord,
    IssuesDiscovered,
    IterationCompleted,
    Limits,
    Phase,
    Remaining,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunRequested,
    RunStarted,
    ToolResult,
)

StateName = Literal["new", "requested", "checking", "planning", "fixing", "verifying", "completed"]
STATES: tuple[str, ...] = StateName.__args__  # type: ignore[attr-defined]
TERMINAL_STATE = "completed"
_LIVE = ("requested", "checking", "planning", "fixing", "verifying")

#: (state, event type) -> next state.  Anything missing is illegal.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("new", "RunRequested"): "requested",
    ("requested", "RunStarted"): "checking",
    ("checking", "HealthChecked"): "checking",
    ("checking", "IssuesDiscovered"): "planning",
    ("planning", "BatchPlanned"): "planning",
    ("planning", "FixStarted"): "fixing",
    ("planning", "BatchSkipped"): "planning",
    ("fixing", "FixApplied"): "verifying",
    ("fixing", "FixFailed"): "planning",
    ("verifying", "Committed"): "planning",
    ("verifying", "FixRolledBack"): "planning",
    ("planning", "IterationCompleted"): "checking",
    **{
        (s, t): TERMINAL_STATE for s in _LIVE for t in ("RunCompleted", "RunFailed", "RunCancelled")
    },
}


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
    iteration: int = 0  # current, 1-based; after an IterationCompleted it names the next one
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
    commits: list[str] = []
    remaining: list[Remaining] = []  # what the finished run left, by tool and rule, and why

    @classmethod
    def initial(cls, run_id: str) -> RunState:
        return cls(run_id=run_id)

    @property
    def terminal(self) -> bool:
        return self.state == TERMINAL_STATE


def initial_state(run_id: str) -> RunState:
    return RunState(run_id=run_id)


# ---------------------------------------------------------------- evolve


def _epoch(at: _dt.datetime) -> float:
    return at.timestamp()


def _illegal(s: RunState, ev: Event) -> str | None:
    """Why ``ev`` is illegal on ``s`` (None when legal); shared by evolve and decide."""
    name = type(ev).__name__
    if s.terminal:
        return (
            f"the run is completed (status {s.status!r}); nothing is legal after a terminal event"
        )
    if (s.state, name) not in TRANSITIONS:
        allowed = [st for (st, t) in TRANSITIONS if t == name]
        where = ", ".join(repr(x) for x in allowed) or "no state"
        return f"{name} is legal only in state {where}"
    it = getattr(ev, "iteration", None)
    if it is not None and it != s.iteration:
        return f"{name} is for iteration {it}, but the run is in iteration {s.iteration}"
    if isinstance(ev, RunRequested) and not ev.target:
        return "the target is empty"
    if isinstance(ev, IssuesDiscovered) and s.checks_this_iteration == 0:
        return f"no HealthChecked yet in iteration {s.iteration}; issues come from a check"
    if isinstance(ev, BatchPlanned):
        if not ev.batch_id:
            return "the batch id is empty"
        if ev.batch_id in s.planned:
            return f"batch {ev.batch_id!r} is already planned in iteration {s.iteration}"
    if isinstance(ev, BatchSkipped) and ev.batch_id not in s.pending:
        return f"batch {ev.batch_id!r} is not pending (pending: {s.pending})"
    if isinstance(ev, FixStarted) and ev.batch_id not in s.pending + s.retryable:
        return (
            f"batch {ev.batch_id!r} is neither pending nor retryable "
            f"(pending: {s.pending}, retryable: {s.retryable})"
        )
    in_flight = (FixApplied, FixFailed, FixRolledBack, Committed)
    if isinstance(ev, in_flight) and ev.batch_id != s.current_batch:
        return f"batch {ev.batch_id!r} is not the one in flight ({s.current_batch!r})"
    if isinstance(ev, Committed) and not ev.sha:
        return "the commit sha is empty"
    if isinstance(ev, RunCompleted) and ev.status not in TERMINAL_STATUSES:
        return f"status {ev.status!r} is not one of {TERMINAL_STATUSES}"
    if isinstance(ev, RunFailed) and (
        ev.status not in TERMINAL_STATUSES or ev.status == "succeeded"
    ):
        return f"status {ev.status!r} is not a failure status"
    return None


def _without(items: list[str], item: str) -> list[str]:
    return [x for x in items if x != item]


def _apply(s: RunState, ev: Event) -> dict[str, object]:
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
        return {"pending": _without(s.pending, ev.batch_id), "batches_skipped": s.batches_skipped + 1}
    if isinstance(ev, FixApplied):
        return {"cost_usd": s.cost_usd + ev.cost_usd, "turns": s.turns + ev.turns, "candidate": ev.candidate}
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
    if isinstance(ev, FixRolledBack):
        return {
            "current_batch": "",
            "retryable": [*s.retryable, ev.batch_id],
            "rolled_back": s.rolled_back + 1,
            "rolled_back_this_iteration": s.rolled_back_this_iteration + 1,
            "consecutive_failures": s.consecutive_failures + (ev.batch_id not in s.bisecting),
            "last_failure": "rolled_back",
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
    if isinstance(ev, IterationCompleted):
        return {
            "iteration": s.iteration + 1,
            "iterations_completed": s.iterations_completed + 1,
            "iterations_without_progress": 0 if ev.progress else s.iterations_without_progress + 1,
            "issues_open": ev.issues_remaining,
            "batches_dropped": s.batches_dropped + len(s.pending) + len(s.retryable),
            "planned": [],
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
            "status": ev.status,
            "reason": ev.reason,
            "issues_open": ev.issues_after,
            "finished_at": at,
            "remaining": ev.remaining,
        }
    if isinstance(ev, RunFailed):
        return {"status": ev.status, "reason": ev.reason, "finished_at": at}
    if isinstance(ev, RunCancelled):
        return {"status": "cancelled", "reason": ev.reason, "finished_at": at}
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
        why = _illegal(state, event)
    if why is not None:  # the message is built only here: evolve runs per event of every replay
        raise InvalidTransition(state.state, name, f"run {state.run_id!r} at version {state.version}: {why}")
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


# ---------------------------------------------------------------- commands


class Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="command", tag=True):
    """Base of every command: an intent that ``decide`` accepts (events) or refuses (raises)."""


class RequestRun(Command, frozen=True, kw_only=True):
    target: str
    batching: BatchingMode = "smart"
    fixer: str = "autofix"
    simulation: bool = False
    limits: Limits = Limits()
    requested_by: str = ""
    config: dict[str, object] = {}
    python: str = ""


class StartRun(Command, frozen=True, kw_only=True):
    worker: str = ""
    base_sha: str = ""
    branch: str = ""
    environment: dict[str, str] = {}
    base_branch: str = ""


class RecordHealth(Command, frozen=True, kw_only=True):
    now: float
    tools: list[ToolResult] = []
    score: float = 0.0
    parts: dict[str, float] = {}
    healthy: bool = False
    scope: Literal["full", "batch", "static"] = "full"
    iteration: int | None = None  # None: the current iteration
    test_outcomes: dict[str, str] = {}
    flaky: list[str] = []


class RecordIssues(Command, frozen=True, kw_only=True):
    issues: list[IssueRecord] = []
    iteration: int | None = None


class PlanBatch(Command, frozen=True, kw_only=True):
    batch_id: str
    phase: Phase
    issue_ids: list[str]
    mode: BatchingMode | None = None  # None: the run's batching mode
    priority: int = 5
    description: str = ""
    files: list[str] = []
    split_of: str = ""


class SkipBatch(Command, frozen=True, kw_only=True):
    batch_id: str
    reason: str = ""


class StartFix(Command, frozen=True, kw_only=True):
    batch_id: str
    fixer: str = ""  # "": the run's fixer
    worker: str = ""


class ApplyFix(Command, frozen=True, kw_only=True):
    batch_id: str
    fixer: str = ""
    files_changed: list[str] = []
    cost_usd: float = 0.0
    turns: int = 0
    duration_s: float = 0.0
    candidate: str = ""


class FailFix(Command, frozen=True, kw_only=True):
    batch_id: str
    reason: str
    fixer: str = ""
    cost_usd: float = 0.0
    turns: int = 0
    duration_s: float = 0.0
    now: float | None = None
    fatal: bool = False


class RollBack(Command, frozen=True, kw_only=True):
    batch_id: str
    reason: str
    reset_to: str = ""
    regressions: list[str] = []
    flaky: list[str] = []
    culprits: list[str] = []
    now: float | None = None


class Commit(Command, frozen=True, kw_only=True):
    batch_id: str
    sha: str
    message: str = ""
    files: list[str] = []
    counts_before: dict[str, int] = {}
    counts_after: dict[str, int] = {}
    resolved: list[str] = []
    tests_fixed: list[str] = []
    flaky: list[str] = []
    verified_by: str = ""
    now: float | None = None


class CompleteIteration(Command, frozen=True, kw_only=True):
    now: float
    issues_remaining: int | None = None  # None: the count from IssuesDiscovered
    score: float | None = None  # the closing full check's score; None: the last check's
    nothing_fixable: bool = False  # the planner found nothing the fixer chain can fix


class Cancel(Command, frozen=True, kw_only=True):
    reason: str = ""
    requested_by: str = ""


class Fail(Command, frozen=True, kw_only=True):
    reason: str
    status: str = "failed"
    failed_tools: list[str] = []


class Tick(Command, frozen=True, kw_only=True):
    """A clock check: ends the run as "timed_out" past ``max_duration_s``, else records nothing."""

    now: float


AnyCommand = (
    RequestRun
    | StartRun
    | RecordHealth
    | RecordIssues
    | PlanBatch
    | SkipBatch
    | StartFix
    | ApplyFix
    | FailFix
    | RollBack
    | Commit
    | CompleteIteration
    | Cancel
    | Fail
    | Tick
)
COMMAND_TYPES: dict[str, type[Command]] = {c.__name__: c for c in AnyCommand.__args__}  # type: ignore[attr-defined]


# ---------------------------------------------------------------- decide


def _events_for(s: RunState, c: Command) -> list[Event]:
    """The events that record the command itself, before any policy verdict."""
    if isinstance(c, RequestRun):
        return [
            RunRequested(
                target=c.target,
                batching=c.batching,
                fixer=c.fixer,
                simulation=c.simulation,
                limits=c.limits,
                requested_by=c.requested_by,
                config=c.config,
                python=c.python,
            )
        ]
    if isinstance(c, StartRun):
        return [RunStarted(worker=c.worker, base_sha=c.base_sha, branch=c.branch,
                           environment=c.environment, base_branch=c.base_branch)]
    if isinstance(c, RecordHealth):
        return [
            HealthChecked(
                iteration=s.iteration if c.iteration is None else c.iteration,
                scope=c.scope,
                tools=c.tools,
                score=c.score,
                parts=c.parts,
                healthy=c.healthy,
                test_outcomes=c.test_outcomes,
                flaky=c.flaky,
            )
        ]
    if isinstance(c, RecordIssues):
        it = s.iteration if c.iteration is None else c.iteration
        return [IssuesDiscovered(iteration=it, issues=c.issues)]
    if isinstance(c, PlanBatch):
        return [
            BatchPlanned(
                iteration=s.iteration,
                batch_id=c.batch_id,
                phase=c.phase,
                mode=c.mode or s.batching,
                issue_ids=c.issue_ids,
                priority=c.priority,
                description=c.description,
                files=c.files,
                split_of=c.split_of,
            )
        ]
    if isinstance(c, SkipBatch):
        return [BatchSkipped(batch_id=c.batch_id, reason=c.reason)]
    if isinstance(c, StartFix):
        return [
            FixStarted(
                batch_id=c.batch_id,
                fixer=c.fixer or s.fixer,
                attempt=s.attempts.get(c.batch_id, 0) + 1,
                worker=c.worker,
            )
        ]
    if isinstance(c, ApplyFix):
        return [
            FixApplied(
                batch_id=c.batch_id,
                fixer=c.fixer or s.fixer,
                files_changed=c.files_changed,
                duration_s=c.duration_s,
                cost_usd=c.cost_usd,
                turns=c.turns,
                candidate=c.candidate,
            )
        ]
    if isinstance(c, FailFix):
        return [
            FixFailed(
                batch_id=c.batch_id,
                fixer=c.fixer or s.fixer,
                reason=c.reason,
                duration_s=c.duration_s,
                cost_usd=c.cost_usd,
                turns=c.turns,
                fatal=c.fatal,
            )
        ]
    if isinstance(c, RollBack):
        return [
            FixRolledBack(
                batch_id=c.batch_id,
                reason=c.reason,
                reset_to=c.reset_to,
                regressions=c.regressions,
                flaky=c.flaky,
                culprits=c.culprits,
            )
        ]
    if isinstance(c, Commit):
        return [
            Committed(
                batch_id=c.batch_id,
                sha=c.sha,
                message=c.message,
                files=c.files,
                counts_before=c.counts_before,
                counts_after=c.counts_after,
                resolved=c.resolved,
                tests_fixed=c.tests_fixed,
                flaky=c.flaky,
                verified_by=c.verified_by,
            )
        ]
    if isinstance(c, CompleteIteration):
        return [
            IterationCompleted(
                iteration=s.iteration,
                committed=s.committed_this_iteration,
                rolled_back=s.rolled_back_this_iteration,
                failed=s.failed_this_iteration,
                score=s.score if c.score is None else c.score,
                issues_remaining=s.issues_open
                if c.issues_remaining is None
                else c.issues_remaining,
                progress=s.committed_this_iteration > 0 or s.improved_this_iteration,
            )
        ]
    if isinstance(c, Cancel):
        return [RunCancelled(reason=c.reason, requested_by=c.requested_by)]
    if isinstance(c, Fail):
        return [RunFailed(reason=c.reason, status=c.status, failed_tools=c.failed_tools)]  # type: ignore[arg-type]
    if isinstance(c, Tick):
        return []
    raise InvalidTransition(s.state, type(c).__name__, "unknown command type")


def _timeout(before: RunState, now: float | None) -> tuple[str, str] | None:
    limit = before.limits.max_duration_s
    if now is None or before.started_at <= 0 or limit <= 0:
        return None
    elapsed = now - before.started_at
    if elapsed > limit:
        return "timed_out", f"max_duration_s={limit:g} exceeded: {elapsed:.0f}s since the start"
    return None


def _cost(after: RunState) -> tuple[str, str] | None:
    limit = after.limits.max_cost_usd
    if limit > 0 and after.cost_usd >= limit:
        return "budget_exhausted", f"max_cost_usd={limit:g} reached: ${after.cost_usd:.2f} spent"
    return None


def _verdict(before: RunState, after: RunState, c: Command) -> tuple[str, str] | None:
    """The terminal (status, reason) the policy reaches after ``c``'s own events, if any."""
    lim = after.limits
    if after.terminal:
        return None
    if isinstance(c, RecordHealth):
        if c.scope == "full":
            broken = [t.tool for t in c.tools if t.status == "tool_error"]
            if broken:
                return "tool_error", f"tools could not measure: {', '.join(broken)}"
            if c.healthy and after.healthy_streak >= max(1, lim.stability_runs):
                runs = f", {after.healthy_streak} full checks in a row" if lim.stability_runs > 1 else ""
                return "succeeded", f"healthy (score {c.score:g}{runs})"
        return _timeout(before, c.now)
    if isinstance(c, FailFix) and c.fatal:
        return "fixer_unavailable", c.reason
    if isinstance(c, (FailFix, RollBack)):
        n = lim.max_consecutive_failures
        if n > 0 and after.consecutive_failures >= n:
            what = "rolled back" if isinstance(c, RollBack) else "failed"
            reason = f"max_consecutive_failures={n} reached: {n} fixes in a row {what}"
            if after.commits:
                return "partially_fixed", reason
            return ("verify_failed" if isinstance(c, RollBack) else "failed"), reason
        return _cost(after) or _timeout(before, c.now)
    if isinstance(c, Commit):
        return _cost(after) or _timeout(before, c.now)
    if isinstance(c, CompleteIteration):
        if after.simulation:
            return "simulated", (f"simulation: {after.batches_planned} batch(es) planned, "
                                 "no fixer ran, nothing was changed")
        if c.nothing_fixable:
            reason = (f"nothing left is fixable by the fixer chain {after.fixer!r}: "
                      f"{after.issues_open} issue(s) remain")
            return ("partially_fixed" if after.commits else "nothing_fixable"), reason
        if lim.max_iterations > 0 and after.iterations_completed >= lim.max_iterations:
            reason = f"max_iterations={lim.max_iterations} reached"
            return ("partially_fixed" if after.commits else "budget_exhausted"), reason
        n = lim.no_progress_iterations
        if n > 0 and after.iterations_without_progress >= n:
            return "no_progress", f"no_progress_iterations={n} reached: no commit, no better score"
        return _cost(after) or _timeout(before, c.now)
    if isinstance(c, Tick):
        return _timeout(before, c.now)
    return None


def decide(state: RunState, command: Command) -> list[Event]:
    """The payload-only events ``command`` produces on ``state``; raises InvalidTransition if illegal.

    The command's own events are checked with the same legality rules ``evolve`` uses and the policy reads
    the state *after* them, so ``fold(stamp(decide(s, c)))`` can never disagree with ``decide``.
    """
    cname = type(command).__name__
    if state.terminal:
        why = f"the run is completed (status {state.status!r}); nothing is legal after it"
        raise InvalidTransition(state.state, cname, why)
    if isinstance(command, Tick) and state.state == "new":
        raise InvalidTransition(state.state, cname, "the run has not been requested")
    if isinstance(command, Fail) and (
        command.status not in TERMINAL_STATUSES or command.status == "succeeded"
    ):
        why = f"status {command.status!r} is not a failure status"
        raise InvalidTransition(state.state, cname, why)
    events = _events_for(state, command)
    after = state
    for ev in events:
        why = _illegal(after, ev)
        if why is not None:
            raise InvalidTransition(state.state, cname, why)
        after = evolve(
            after,
            msgspec.structs.replace(ev, run_id=after.run_id, version=after.version + 1),
        )
    verdict = _verdict(state, after, command)
    if verdict is not None:
        status, reason = verdict
        events.append(
            RunCompleted(
                status=status,  # type: ignore[arg-type]
                reason=reason,
                issues_before=after.issues_initial,
                issues_after=after.issues_open,
                commits=len(after.commits),
            )
        )
    return events


__all__ = [
    "COMMAND_TYPES",
    "STATES",
    "TERMINAL_STATE",
    "TRANSITIONS",
    "AnyCommand",
    "ApplyFix",
    "Cancel",
    "Command",
    "Commit",
    "CompleteIteration",
    "Fail",
    "FailFix",
    "PlanBatch",
    "RecordHealth",
    "RecordIssues",
    "RequestRun",
    "RollBack",
    "RunState",
    "SkipBatch",
    "StartFix",
    "StartRun",
    "Tick",
    "decide",
    "evolve",
    "fold",
    "initial_state",
]
