"""What happened: the event types of a fix run, one tagged union.

Every event carries the same envelope (``event_id``, ``run_id``, ``version``, ``recorded_at``,
``correlation_id``, ``causation_id``, ``schema``) and a payload that a later reader can use without
re-running anything.  The envelope fields have empty defaults so the pure core (``decide``) can build
payload-only events; :func:`stamp` fills the envelope just before an append.

Schema evolution rules (enforced by ``tests/test_schema_golden.py`` over a checked-in corpus):

1. A new field always has a default, so old entries still decode.
2. Wire names never change: rename a Python attribute with ``msgspec.field(name="old")``.
3. A field's type never changes; add a new field instead.
4. An event type is never renamed or removed; the ``type`` tag is its class name.
5. A breaking change bumps the class's ``schema`` default and adds an upcaster in ``codec.py``.

Unknown fields are ignored on decode (newer writers, older readers); an unknown *type* is parked
in the dead-letter stream by the consumer runtime, never a crash.
"""

from __future__ import annotations

import datetime as _dt
from typing import Literal, Union

import msgspec

from airfix.events.ids import new_event_id

Phase = Literal["build", "test", "lint"]
BatchingMode = Literal["mega", "smart", "individual"]
VerifyMode = Literal["batch", "stack"]  # each batch tested alone, or the stack tested on its tip
ToolStatus = Literal["passed", "failed", "tool_error", "skipped"]
TerminalStatus = Literal[
    "succeeded",
    "partially_fixed",
    "no_progress",
    "budget_exhausted",
    "timed_out",
    "verify_failed",
    "tool_error",
    "cancelled",
    "failed",
    "simulated",
    "nothing_fixable",
    "fixer_unavailable",
]
TERMINAL_STATUSES: tuple[str, ...] = TerminalStatus.__args__  # type: ignore[attr-defined]

EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


# ---------------------------------------------------------------- value objects (payload parts)


class Limits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """The run's budget; the state machine applies it as pure policy on the state."""

    max_iterations: int = 10
    max_consecutive_failures: int = 5
    max_duration_s: float = 4 * 3600.0
    no_progress_iterations: int = 3
    max_cost_usd: float = 0.0  # 0 = no cost limit
    stability_runs: int = 1  # consecutive healthy full checks before a run succeeds


class ToolResult(msgspec.Struct, frozen=True, kw_only=True):
    """One tool's measurement: enough to judge it later without re-running it."""

    tool: str
    status: ToolStatus
    version: str = ""
    command: list[str] = []
    exit_status: int | None = None
    counts: dict[str, int] = {}
    duration_s: float = 0.0
    error: str = ""


class IssueRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One problem found by a tool; ``fingerprint`` survives line shifts."""

    issue_id: str
    fingerprint: str
    tool: str
    phase: Phase
    file: str = ""
    line: int = 0
    column: int = 0
    severity: str = "error"
    rule: str = ""
    message: str = ""
    fix: str = ""  # the tool's own fix: "safe", "unsafe" or "" (none); added after schema 1


class Remaining(msgspec.Struct, frozen=True, kw_only=True):
    """Issues a finished run leaves, one line per tool and rule, with why they were left."""

    tool: str
    rule: str
    count: int
    reason: str
    files: list[str] = []  # up to a few, for the summary


# ---------------------------------------------------------------- the events


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True):
    """Base of every event: the envelope.  Never instantiated on its own."""

    event_id: str = ""
    run_id: str = ""
    version: int = 0
    recorded_at: _dt.datetime = EPOCH
    correlation_id: str = ""
    causation_id: str = ""
    schema: int = 1

    @property
    def type(self) -> str:
        return type(self).__name__


class RunRequested(Event, frozen=True, kw_only=True):
    target: str
    batching: BatchingMode = "smart"
    fixer: str = "autofix"
    simulation: bool = False
    limits: Limits = Limits()
    requested_by: str = ""
    config: dict[str, object] = {}
    python: str = ""  # the target's interpreter asked for (--python); "" = detect it
    verify: VerifyMode = "batch"  # how batches are verified (fixer.verify, resolved)


class RunStarted(Event, frozen=True, kw_only=True):
    worker: str = ""
    base_sha: str = ""
    branch: str = ""
    # what the checks run with: python, python_version, python_source, <tool> versions
    environment: dict[str, str] = {}
    base_branch: str = ""  # the branch the user was on (HEAD's branch at the start)


class HealthChecked(Event, frozen=True, kw_only=True):
    iteration: int
    scope: Literal["full", "batch", "static"] = "full"
    tools: list[ToolResult] = []
    score: float = 0.0
    parts: dict[str, float] = {}
    healthy: bool = False
    # each test's outcome by id (passed / failed / error / skipped): what a change is judged by
    test_outcomes: dict[str, str] = {}
    flaky: list[str] = []  # tests whose outcome changed with no change to the code; never judged


class IssuesDiscovered(Event, frozen=True, kw_only=True):
    iteration: int
    issues: list[IssueRecord] = []


class BatchPlanned(Event, frozen=True, kw_only=True):
    iteration: int
    batch_id: str
    phase: Phase
    mode: BatchingMode
    issue_ids: list[str]
    priority: int = 5
    description: str = ""
    files: list[str] = []
    split_of: str = ""  # half of this rolled-back batch: bisecting for the issue to blame
    kind: str = (
        ""  # how the planner grouped it: cleanup (one rule), location, mega ("" = older airfix)
    )


class FixStarted(Event, frozen=True, kw_only=True):
    batch_id: str
    fixer: str
    attempt: int = 1
    worker: str = ""


class FixApplied(Event, frozen=True, kw_only=True):
    batch_id: str
    fixer: str
    files_changed: list[str] = []
    duration_s: float = 0.0
    cost_usd: float = 0.0
    turns: int = 0
    candidate: str = (
        ""  # the fixed tree as a commit on the run's tip, on no branch: what is verified
    )


class FixFailed(Event, frozen=True, kw_only=True):
    batch_id: str
    fixer: str
    reason: str
    duration_s: float = 0.0
    cost_usd: float = 0.0
    turns: int = 0
    fatal: bool = False  # no retry can cure it (not logged in, missing binary): the run ends


class FixPrepared(Event, frozen=True, kw_only=True):
    """A pending batch fixed ahead of its turn, alongside the one in flight (``fixer.parallel``):
    its candidate on ``base``, or why the fixer failed.  Informational: the state machine ignores
    it; when the batch's turn comes its fix is replayed onto the tip instead of run again."""

    batch_id: str = ""
    attempt: int = 1  # the attempt of the batch it stands for (its next FixStarted's)
    fixer: str = ""
    base: str = ""  # the commit the fixer worked on (the run's tip when it ran)
    candidate: str = ""  # the fixed tree as a commit on ``base``, on no branch; "" = it failed
    files_changed: list[str] = []
    reason: str = ""  # why the fixer failed ("" when it produced a candidate)
    fatal: bool = False
    duration_s: float = 0.0
    cost_usd: float = 0.0
    turns: int = 0
    alongside: str = ""  # the batch in flight whose step fixed it


class FixRolledBack(Event, frozen=True, kw_only=True):
    batch_id: str
    reason: str
    reset_to: str = ""
    regressions: list[str] = []
    flaky: list[str] = []  # tests found flaky while verifying (re-run alone, they passed)
    culprits: list[str] = []  # fingerprints of the batch's issues blamed for the verdict
    # a commit already on the run branch, undone by a revert commit (``reset_to``) because the
    # iteration's closing check found it breaking tests its verification did not run
    reverted: str = ""


class BatchSkipped(Event, frozen=True, kw_only=True):
    """A planned batch with nothing left to do (earlier batches fixed its issues): no failure."""

    batch_id: str
    reason: str = ""


class Committed(Event, frozen=True, kw_only=True):
    batch_id: str
    sha: str
    message: str = ""
    files: list[str] = []
    counts_before: dict[str, int] = {}
    counts_after: dict[str, int] = {}
    resolved: list[str] = []  # fingerprints gone since the parent (one per occurrence)
    tests_fixed: list[str] = []  # tests that did not pass before and pass now
    flaky: list[str] = []
    verified_by: str = ""  # how the tests judged it ("" = by an older airfix)
    staged: bool = (
        False  # on the iteration's stack: statically verified, the tests judge the stack's tip
    )


class Landed(msgspec.Struct, frozen=True, kw_only=True):
    """A stacked batch's commit as it reached the run branch (rewritten: its final message)."""

    batch_id: str
    sha: str
    message: str = ""
    files: list[str] = []
    counts_before: dict[str, int] = {}
    counts_after: dict[str, int] = {}


class StackLanded(Event, frozen=True, kw_only=True):
    """The iteration's stack passed the tests at its tip and is now on the run branch."""

    commits: list[Landed] = []
    verified_by: str = ""


class StackDropped(Event, frozen=True, kw_only=True):
    """A stacked batch taken out: bisection blamed it for a test the stack's tip broke, or it no
    longer applies once an earlier one was taken out.  Or, with ``narrowed``, only some of its
    issues taken out: the fixes of ``culprits`` broke the test, and the batch stays on the stack
    as a commit made again without them."""

    batch_id: str
    reason: str
    blamed: bool = True  # False: taken out only because it no longer applies (not set aside)
    culprits: list[str] = []  # fingerprints of its issues whose fixes broke the tests
    narrowed: str = ""  # the batch's commit made again without the culprits' fixes


class IterationCompleted(Event, frozen=True, kw_only=True):
    iteration: int
    committed: int = 0
    rolled_back: int = 0
    failed: int = 0
    score: float = 0.0
    issues_remaining: int = 0
    progress: bool = False


class RunCompleted(Event, frozen=True, kw_only=True):
    status: TerminalStatus
    reason: str = ""
    issues_before: int = 0
    issues_after: int = 0
    commits: int = 0
    remaining: list[Remaining] = []


class RunFailed(Event, frozen=True, kw_only=True):
    reason: str
    status: TerminalStatus = "failed"
    failed_tools: list[str] = []


class RunCancelled(Event, frozen=True, kw_only=True):
    reason: str = ""
    requested_by: str = ""


AnyEvent = Union[  # noqa: UP007 - a runtime alias msgspec decodes from; kept explicit
    RunRequested,
    RunStarted,
    HealthChecked,
    IssuesDiscovered,
    BatchPlanned,
    FixStarted,
    FixApplied,
    FixFailed,
    FixRolledBack,
    Committed,
    IterationCompleted,
    RunCompleted,
    RunFailed,
    RunCancelled,
    BatchSkipped,
    StackLanded,
    StackDropped,
    FixPrepared,
]
EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in AnyEvent.__args__}  # type: ignore[attr-defined]
TERMINAL_EVENTS = (RunCompleted, RunFailed, RunCancelled)


def stamp(
    events: list[Event],
    *,
    run_id: str,
    expected_version: int,
    correlation_id: str = "",
    causation_id: str = "",
    event_ids: list[str] | None = None,
    now: _dt.datetime | None = None,
) -> list[Event]:
    """Fill the envelope of payload-only events so they follow version ``expected_version``.

    Pass ``event_ids`` derived from the causing event to make a retried handler idempotent: the
    store then recognises the re-sent events and adds nothing.
    """
    at = now or utcnow()
    out: list[Event] = []
    for i, ev in enumerate(events):
        out.append(
            msgspec.structs.replace(
                ev,
                event_id=event_ids[i] if event_ids else (ev.event_id or new_event_id()),
                run_id=run_id,
                version=expected_version + 1 + i,
                recorded_at=at,
                correlation_id=correlation_id or ev.correlation_id or run_id,
                causation_id=causation_id or ev.causation_id,
            )
        )
    return out
