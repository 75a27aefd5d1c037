"""Which events are legal in which state, and why one is not: the run's transition table and guards.

Pure like the rest of the core; :func:`illegal` is shared by ``evolve`` (which refuses to apply an
illegal stored event) and ``decide`` (which refuses to emit one).

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
planning    StackDropped          planning    batch is on the stack (staged: committed, tests pending)
planning    StackLanded           planning    every batch it names is on the stack, in order
fixing      FixPrepared           fixing      batch is pending (fixed ahead, alongside the one
                                              in flight; informational: changes nothing else)
fixing      FixApplied            verifying   batch is the one in flight
fixing      FixFailed             planning    batch is the one in flight
verifying   Committed             planning    batch is the one in flight; sha not empty
verifying   FixRolledBack         planning    batch is the one in flight
planning    FixRolledBack         planning    ``reverted`` names a commit on the run branch and
                                              ``reset_to`` the revert commit after it (the closing
                                              check found it breaking tests)
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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from airfix.events.schema import (
    TERMINAL_STATUSES,
    BatchPlanned,
    BatchSkipped,
    Committed,
    Event,
    FixApplied,
    FixFailed,
    FixPrepared,
    FixRolledBack,
    FixStarted,
    IssuesDiscovered,
    RunCompleted,
    RunFailed,
    RunRequested,
    StackDropped,
    StackLanded,
)

if TYPE_CHECKING:
    from airfix.events.core.state import RunState

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
    ("planning", "StackDropped"): "planning",
    ("planning", "StackLanded"): "planning",
    ("fixing", "FixPrepared"): "fixing",
    ("fixing", "FixApplied"): "verifying",
    ("fixing", "FixFailed"): "planning",
    ("verifying", "Committed"): "planning",
    ("verifying", "FixRolledBack"): "planning",
    ("planning", "FixRolledBack"): "planning",
    ("planning", "IterationCompleted"): "checking",
    **{
        (s, t): TERMINAL_STATE for s in _LIVE for t in ("RunCompleted", "RunFailed", "RunCancelled")
    },
}


def illegal(s: RunState, ev: Event) -> str | None:  # noqa: C901 (a guard per event type)
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
    if isinstance(ev, FixPrepared) and ev.batch_id not in s.pending:
        return f"batch {ev.batch_id!r} is not pending (pending: {s.pending}); only a pending batch is prepared"
    if isinstance(ev, FixRolledBack) and s.state == "planning":
        if ev.reverted not in s.commits or not ev.reset_to:
            return (
                f"a FixRolledBack outside verification reverts a commit on the run branch: "
                f"{ev.reverted!r} is not one of its commits, or no revert commit is named"
            )
        return None
    in_flight = (FixApplied, FixFailed, FixRolledBack, Committed)
    if isinstance(ev, in_flight) and ev.batch_id != s.current_batch:
        return f"batch {ev.batch_id!r} is not the one in flight ({s.current_batch!r})"
    if isinstance(ev, Committed) and not ev.sha:
        return "the commit sha is empty"
    if isinstance(ev, StackDropped) and ev.batch_id not in s.stack_batches:
        return f"batch {ev.batch_id!r} is not on the stack ({s.stack_batches})"
    if isinstance(ev, StackLanded) and [c.batch_id for c in ev.commits] != [
        b for b in s.stack_batches if b in {c.batch_id for c in ev.commits}
    ]:
        return f"StackLanded must name stacked batches in stack order ({s.stack_batches})"
    if isinstance(ev, RunCompleted) and ev.status not in TERMINAL_STATUSES:
        return f"status {ev.status!r} is not one of {TERMINAL_STATUSES}"
    if isinstance(ev, RunFailed) and (
        ev.status not in TERMINAL_STATUSES or ev.status == "succeeded"
    ):
        return f"status {ev.status!r} is not a failure status"
    return None
