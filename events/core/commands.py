"""Commands: what a step asks the machine to record, and how a command becomes its events.

Why commands, not events, go into ``decide``: a command carries inputs that are not facts to keep
(the clock, ``now``, which only the policy reads; "the run's own fixer" left empty for the state
to fill in) and leaves out what the machine derives (a retry's ``attempt``, an iteration's
counters).  Everything else is the same field under the same name, so one translation,
:func:`events_for`, takes it over; only the commands whose event the machine computes are
spelled out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal

import msgspec

from airfix.events.core.state import RunState
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
    IssueRecord,
    IssuesDiscovered,
    IterationCompleted,
    Landed,
    Limits,
    Phase,
    RunCancelled,
    RunFailed,
    RunRequested,
    RunStarted,
    StackDropped,
    StackLanded,
    ToolResult,
)


class Command(msgspec.Struct, frozen=True, kw_only=True, tag_field="command", tag=True):
    """Base of every command: an intent that ``decide`` accepts (events) or refuses (raises).

    ``event`` is the event a command records; its fields are taken over by name."""

    event: ClassVar[type[Event] | None] = None


class RequestRun(Command, frozen=True, kw_only=True):
    event: ClassVar[type[Event]] = RunRequested
    target: str
    batching: BatchingMode = "smart"
    fixer: str = "autofix"
    simulation: bool = False
    limits: Limits = Limits()
    requested_by: str = ""
    config: dict[str, object] = {}
    python: str = ""
    verify: Literal["batch", "stack"] = "batch"


class StartRun(Command, frozen=True, kw_only=True):
    event: ClassVar[type[Event]] = RunStarted
    worker: str = ""
    base_sha: str = ""
    branch: str = ""
    environment: dict[str, str] = {}
    base_branch: str = ""


class RecordHealth(Command, frozen=True, kw_only=True):
    event: ClassVar[type[Event]] = HealthChecked
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
    event: ClassVar[type[Event]] = IssuesDiscovered
    issues: list[IssueRecord] = []
    iteration: int | None = None


class PlanBatch(Command, frozen=True, kw_only=True):
    event: ClassVar[type[Event]] = BatchPlanned
    batch_id: str
    phase: Phase
    issue_ids: list[str]
    mode: BatchingMode | None = None  # None: the run's batching mode
    priority: int = 5
    description: str = ""
    files: list[str] = []
    split_of: str = ""
    kind: str = ""


class SkipBatch(Command, frozen=True, kw_only=True):
    event: ClassVar[type[Event]] = BatchSkipped
    batch_id: str
    reason: str = ""


class DropFromStack(Command, frozen=True, kw_only=True):
    event: ClassVar[type[Event]] = StackDropped
    batch_id: str
    reason: str
    blamed: bool = True
    culprits: list[str] = []
    narrowed: str = ""


class LandStack(Command, frozen=True, kw_only=True):
    event: ClassVar[type[Event]] = StackLanded
    commits: list[Landed] = []
    verified_by: str = ""


class StartFix(Command, frozen=True, kw_only=True):
    batch_id: str
    fixer: str = ""  # "": the run's fixer
    worker: str = ""


class ApplyFix(Command, frozen=True, kw_only=True):
    event: ClassVar[type[Event]] = FixApplied
    batch_id: str
    fixer: str = ""
    files_changed: list[str] = []
    cost_usd: float = 0.0
    turns: int = 0
    duration_s: float = 0.0
    candidate: str = ""


class FailFix(Command, frozen=True, kw_only=True):
    event: ClassVar[type[Event]] = FixFailed
    batch_id: str
    reason: str
    fixer: str = ""
    cost_usd: float = 0.0
    turns: int = 0
    duration_s: float = 0.0
    now: float | None = None
    fatal: bool = False


class PrepareFix(Command, frozen=True, kw_only=True):
    """A pending batch fixed alongside the one in flight (``fixer.parallel``)."""

    event: ClassVar[type[Event]] = FixPrepared
    batch_id: str
    attempt: int = 1
    fixer: str = ""
    base: str = ""
    candidate: str = ""
    files_changed: list[str] = []
    reason: str = ""
    fatal: bool = False
    duration_s: float = 0.0
    cost_usd: float = 0.0
    turns: int = 0
    alongside: str = ""


class RollBack(Command, frozen=True, kw_only=True):
    event: ClassVar[type[Event]] = FixRolledBack
    batch_id: str
    reason: str
    reset_to: str = ""
    regressions: list[str] = []
    flaky: list[str] = []
    culprits: list[str] = []
    reverted: str = ""
    now: float | None = None


class Commit(Command, frozen=True, kw_only=True):
    event: ClassVar[type[Event]] = Committed
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
    staged: bool = False
    now: float | None = None


class CompleteIteration(Command, frozen=True, kw_only=True):
    now: float
    issues_remaining: int | None = None  # None: the count from IssuesDiscovered
    score: float | None = None  # the closing full check's score; None: the last check's
    nothing_fixable: bool = False  # the planner found nothing the fixer chain can fix


class Cancel(Command, frozen=True, kw_only=True):
    event: ClassVar[type[Event]] = RunCancelled
    reason: str = ""
    requested_by: str = ""


class Fail(Command, frozen=True, kw_only=True):
    event: ClassVar[type[Event]] = RunFailed
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
    | DropFromStack
    | LandStack
    | StartFix
    | ApplyFix
    | PrepareFix
    | FailFix
    | RollBack
    | Commit
    | CompleteIteration
    | Cancel
    | Fail
    | Tick
)
COMMAND_TYPES: dict[str, type[Command]] = {c.__name__: c for c in AnyCommand.__args__}


#: fields a command may leave empty for the run's own value
_FROM_STATE: dict[str, Callable[[RunState], object]] = {
    "fixer": lambda s: s.fixer,
    "iteration": lambda s: s.iteration,
    "mode": lambda s: s.batching,
}
_COMMAND_ONLY = ("now",)


def events_for(s: RunState, c: Command) -> list[Event]:
    """The events that record the command itself, before any policy verdict."""
    if isinstance(c, Tick):
        return []
    if isinstance(c, StartFix):
        return [
            FixStarted(
                batch_id=c.batch_id,
                fixer=c.fixer or s.fixer,
                worker=c.worker,
                attempt=s.attempts.get(c.batch_id, 0) + 1,
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
    event_type: type[Event] | None = c.event
    if event_type is None:
        raise InvalidTransition(s.state, type(c).__name__, "unknown command type")
    fields = {k: v for k, v in msgspec.structs.asdict(c).items() if k not in _COMMAND_ONLY}
    wanted = {f.name for f in msgspec.structs.fields(event_type)}
    for name, own in _FROM_STATE.items():
        if name in wanted and fields.get(name) in (None, ""):
            fields[name] = own(s)
    return [event_type(**{k: v for k, v in fields.items() if k in wanted})]
