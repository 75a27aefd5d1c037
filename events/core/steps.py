"""Who acts next on a run: a pure function of its state.

Every role (manager, checker, planner, fixer, verifier) consumes the whole log, folds each run's
state, and acts only when (1) the event it is handling is the run's latest one and (2)
:func:`next_action` names one of its actions.  A redelivered or stale event is therefore a no-op
(the run has moved on), a step whose result was appended is never repeated, and a step whose
worker died before appending is redone by whoever gets the event next.

=============  ==========================================  ==========  ==========================
state          condition                                   action      role
=============  ==========================================  ==========  ==========================
requested      --                                          start       manager
checking       --                                          check       checker
planning       no batch planned this iteration, issues     plan        planner
planning       a batch pending, not a simulation           fix         fixer (appends FixStarted)
planning       otherwise (all batches done, or simulation) close       checker (closing check)
fixing         --                                          run_fix     fixer (runs the fixer)
verifying      --                                          verify      verifier
new/completed  --                                          none        --
=============  ==========================================  ==========  ==========================
"""

from __future__ import annotations

from typing import Literal

from airfix.events.core.machine import RunState

Action = Literal["start", "check", "plan", "fix", "run_fix", "verify", "close", "none"]
Role = Literal["manager", "checker", "planner", "fixer", "verifier"]

ROLES: tuple[Role, ...] = ("manager", "checker", "planner", "fixer", "verifier")
ROLE_OF: dict[Action, Role] = {
    "start": "manager",
    "check": "checker",
    "close": "checker",
    "plan": "planner",
    "fix": "fixer",
    "run_fix": "fixer",
    "verify": "verifier",
}


def next_action(state: RunState) -> Action:
    s = state.state
    if s == "requested":
        return "start"
    if s == "checking":
        return "check"
    if s == "planning":
        if not state.planned and state.issues_open > 0:
            return "plan"
        if state.pending and not state.simulation:
            return "fix"
        return "close"
    if s == "fixing":
        return "run_fix"
    if s == "verifying":
        return "verify"
    return "none"


def next_batch(state: RunState, priorities: dict[str, int]) -> str:
    """The pending batch to fix next: the most urgent priority (lowest score), then plan order."""
    order = {b: i for i, b in enumerate(state.planned)}
    return min(state.pending, key=lambda b: (priorities.get(b, 1 << 30), order.get(b, 0)))
