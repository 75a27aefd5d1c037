"""Unit and property tests of the pure run state machine (``airfix.events.core.machine``)."""

from __future__ import annotations

import ast
import datetime as dt
import pathlib

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airfix.events.core import machine as m
from airfix.events.core.machine import (
    ApplyFix,
    Cancel,
    Commit,
    CompleteIteration,
    Fail,
    FailFix,
    PlanBatch,
    RecordHealth,
    RecordIssues,
    RequestRun,
    RollBack,
    RunState,
    StartFix,
    StartRun,
    Tick,
    decide,
    evolve,
    fold,
    initial_state,
)
from airfix.events.errors import AirfixError, InvalidTransition
from airfix.events.schema import (
    TERMINAL_STATUSES,
    Committed,
    HealthChecked,
    IssueRecord,
    IssuesDiscovered,
    Landed,
    Limits,
    Remaining,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunStarted,
    ToolResult,
    stamp,
)

RUN = "run-test"
T0 = 1_700_000_000.0

# Written by hand, independently of machine.TRANSITIONS.
EXPECTED = {
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
    ("planning", "FixRolledBack"): "planning",  # a commit reverted by the closing check
    ("planning", "IterationCompleted"): "checking",
}
for _s in ("requested", "checking", "planning", "fixing", "verifying"):
    for _t in ("RunCompleted", "RunFailed", "RunCancelled"):
        EXPECTED[(_s, _t)] = "completed"


def at(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


def apply(state: RunState, command: m.Command, t: float = T0) -> tuple[RunState, list]:
    """decide, stamp and fold, as the engine would; returns the new state and the stored events."""
    events = stamp(
        decide(state, command), run_id=state.run_id, expected_version=state.version, now=at(t)
    )
    return fold(events, state), events


def types(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


def issues(n: int) -> list[IssueRecord]:
    return [
        IssueRecord(issue_id=f"i{k}", fingerprint=f"f{k}", tool="ruff", phase="lint")
        for k in range(n)
    ]


def health(
    score: float = 50.0,
    healthy: bool = False,
    scope: str = "full",
    t: float = T0,
    tools: list[ToolResult] | None = None,
) -> RecordHealth:
    return RecordHealth(now=t, score=score, healthy=healthy, scope=scope, tools=tools or [])


def requested(limits: Limits | None = None) -> RunState:
    s, _ = apply(initial_state(RUN), RequestRun(target="repo", limits=limits or Limits()))
    return s


def checking(limits: Limits | None = None) -> RunState:
    s, _ = apply(requested(limits), StartRun(worker="w1", base_sha="abc", branch="airfix/x"))
    return s


def planning(limits: Limits | None = None, n_issues: int = 3, score: float = 50.0) -> RunState:
    s, _ = apply(checking(limits), health(score))
    s, _ = apply(s, RecordIssues(issues=issues(n_issues)))
    return s


def plan(s: RunState, *ids: str) -> RunState:
    for b in ids:
        s, _ = apply(s, PlanBatch(batch_id=b, phase="lint", issue_ids=["i0"]))
    return s


def fixing(limits: Limits | None = None, batch: str = "b1") -> RunState:
    s, _ = apply(plan(planning(limits), batch), StartFix(batch_id=batch))
    return s


def verifying(limits: Limits | None = None, batch: str = "b1", cost: float = 0.0) -> RunState:
    s, _ = apply(fixing(limits, batch), ApplyFix(batch_id=batch, cost_usd=cost))
    return s


def completed() -> RunState:
    s, _ = apply(planning(), Cancel(reason="stop"))
    return s


def fix_cycle(s: RunState, batch: str, outcome: str, cost: float = 0.0, t: float = T0):
    """Plan (if needed) and run one batch to ``outcome``: commit, rollback or fail."""
    if batch not in s.pending and batch not in s.retryable:
        s = plan(s, batch)
    s, _ = apply(s, StartFix(batch_id=batch))
    if outcome == "fail":
        return apply(s, FailFix(batch_id=batch, reason="fixer gave up", cost_usd=cost, now=t))
    s, _ = apply(s, ApplyFix(batch_id=batch, cost_usd=cost))
    if outcome == "commit":
        return apply(s, Commit(batch_id=batch, sha=f"sha-{batch}-{s.version}", now=t))
    return apply(s, RollBack(batch_id=batch, reason="regression", now=t))


def next_iteration(s: RunState, score: float = 50.0, t: float = T0) -> tuple[RunState, list]:
    s, ev = apply(s, CompleteIteration(now=t), t)
    if s.terminal:
        return s, ev
    s, _ = apply(s, health(score, t=t), t)
    s, _ = apply(s, RecordIssues(issues=issues(2)), t)
    return s, ev


# ---------------------------------------------------------------- the table


def test_transition_table_matches_the_independent_reference():
    assert m.TRANSITIONS == EXPECTED
    assert set(m.STATES) == {
        "new",
        "requested",
        "checking",
        "planning",
        "fixing",
        "verifying",
        "completed",
    }


@pytest.mark.parametrize(
    "before, command, expected_types, after",
    [
        (lambda: initial_state(RUN), RequestRun(target="repo"), ["RunRequested"], "requested"),
        (requested, StartRun(worker="w"), ["RunStarted"], "checking"),
        (checking, health(), ["HealthChecked"], "checking"),
        (
            lambda: apply(checking(), health())[0],
            RecordIssues(issues=issues(2)),
            ["IssuesDiscovered"],
            "planning",
        ),
        (
            planning,
            PlanBatch(batch_id="b1", phase="lint", issue_ids=["i0"]),
            ["BatchPlanned"],
            "planning",
        ),
        (lambda: plan(planning(), "b1"), StartFix(batch_id="b1"), ["FixStarted"], "fixing"),
        (fixing, ApplyFix(batch_id="b1"), ["FixApplied"], "verifying"),
        (fixing, FailFix(batch_id="b1", reason="x"), ["FixFailed"], "planning"),
        (verifying, Commit(batch_id="b1", sha="s1"), ["Committed"], "planning"),
        (verifying, RollBack(batch_id="b1", reason="x"), ["FixRolledBack"], "planning"),
        (planning, CompleteIteration(now=T0), ["IterationCompleted"], "checking"),
    ],
)
def test_each_transition(before, command, expected_types, after):
    s0 = before()
    s1, events = apply(s0, command)
    assert types(events) == expected_types
    assert s1.state == after
    assert s1.version == s0.version + 1


@pytest.mark.parametrize("build", [requested, checking, planning, fixing, verifying])
@pytest.mark.parametrize(
    "command, status",
    [
        (Cancel(reason="user"), "cancelled"),
        (Fail(reason="boom"), "failed"),
        (Fail(reason="x", status="tool_error"), "tool_error"),
    ],
)
def test_cancel_and_fail_end_any_live_state(build, command, status):
    s, events = apply(build(), command, T0 + 5)
    assert types(events) == [type(events[0]).__name__]
    assert isinstance(events[0], (RunCancelled, RunFailed))
    assert (s.state, s.status, s.terminal) == ("completed", status, True)
    assert s.finished_at == T0 + 5


@pytest.mark.parametrize("build", [requested, checking, planning, fixing, verifying])
def test_run_completed_is_legal_from_every_live_state(build):
    s = build()
    ev = stamp(
        [RunCompleted(status="failed", reason="x")],
        run_id=RUN,
        expected_version=s.version,
        now=at(T0),
    )[0]
    assert evolve(s, ev).state == "completed"


def test_iteration_completed_starts_the_next_iteration():
    s = planning()
    assert s.iteration == 1
    s, _ = apply(s, CompleteIteration(now=T0))
    assert (s.state, s.iteration, s.iterations_completed, s.checks_this_iteration) == (
        "checking",
        2,
        1,
        0,
    )


# ---------------------------------------------------------------- illegal commands

SAMPLES: dict[str, m.Command] = {
    "RequestRun": RequestRun(target="repo"),
    "StartRun": StartRun(),
    "RecordHealth": health(),
    "RecordIssues": RecordIssues(issues=issues(1)),
    "PlanBatch": PlanBatch(batch_id="b2", phase="lint", issue_ids=["i0"]),
    "StartFix": StartFix(batch_id="b1"),
    "ApplyFix": ApplyFix(batch_id="b1"),
    "FailFix": FailFix(batch_id="b1", reason="x"),
    "RollBack": RollBack(batch_id="b1", reason="x"),
    "Commit": Commit(batch_id="b1", sha="s"),
    "CompleteIteration": CompleteIteration(now=T0),
    "Cancel": Cancel(),
    "Fail": Fail(reason="x"),
    "Tick": Tick(now=T0),
}
LIVE_ANY = {"Cancel", "Fail", "Tick"}
LEGAL = {
    "new": {"RequestRun"},
    "requested": {"StartRun"} | LIVE_ANY,
    "checking": {"RecordHealth", "RecordIssues"} | LIVE_ANY,
    "planning": {"PlanBatch", "StartFix", "CompleteIteration"} | LIVE_ANY,
    "fixing": {"ApplyFix", "FailFix"} | LIVE_ANY,
    "verifying": {"Commit", "RollBack"} | LIVE_ANY,
    "completed": set(),
}
BUILDERS = {
    "new": lambda: initial_state(RUN),
    "requested": requested,
    "checking": lambda: apply(checking(), health())[0],  # one check done: issues may follow
    "planning": lambda: plan(planning(), "b1"),
    "fixing": fixing,
    "verifying": verifying,
    "completed": completed,
}


@pytest.mark.parametrize("state_name", list(BUILDERS))
@pytest.mark.parametrize("command_name", list(SAMPLES))
def test_command_legality_matrix(state_name, command_name):
    s = BUILDERS[state_name]()
    assert s.state == state_name
    command = SAMPLES[command_name]
    if command_name in LEGAL[state_name]:
        s2, _ = apply(s, command)
        assert s2.version >= s.version
    else:
        with pytest.raises(InvalidTransition) as err:
            decide(s, command)
        msg = str(err.value)
        assert command_name in msg and repr(state_name) in msg
        assert err.value.state == state_name and err.value.command == command_name
        assert isinstance(err.value, AirfixError)


def test_nothing_is_legal_after_terminal_and_the_message_says_why():
    s = completed()
    with pytest.raises(InvalidTransition, match="nothing is legal"):
        decide(s, Tick(now=T0))


@pytest.mark.parametrize(
    "build, command, fragment",
    [
        (checking, RecordIssues(issues=[]), "no HealthChecked yet"),
        (planning, StartFix(batch_id="nope"), "neither pending nor retryable"),
        (
            lambda: plan(planning(), "b1"),
            PlanBatch(batch_id="b1", phase="lint", issue_ids=[]),
            "already planned",
        ),
        (planning, PlanBatch(batch_id="", phase="lint", issue_ids=[]), "batch id is empty"),
        (fixing, ApplyFix(batch_id="b2"), "not the one in flight"),
        (fixing, FailFix(batch_id="b2", reason="x"), "not the one in flight"),
        (verifying, Commit(batch_id="b2", sha="s"), "not the one in flight"),
        (verifying, Commit(batch_id="b1", sha=""), "sha is empty"),
        (verifying, RollBack(batch_id="b2", reason="x"), "not the one in flight"),
        (checking, RecordHealth(now=T0, iteration=2), "iteration 2"),
        (lambda: initial_state(RUN), RequestRun(target=""), "target is empty"),
        (lambda: initial_state(RUN), Tick(now=T0), "not been requested"),
        (planning, Fail(reason="x", status="succeeded"), "not a failure status"),
        (planning, Fail(reason="x", status="weird"), "not a failure status"),
    ],
)
def test_guard_violations_raise_with_a_clear_reason(build, command, fragment):
    s = build()
    with pytest.raises(InvalidTransition, match=fragment):
        decide(s, command)


# ---------------------------------------------------------------- evolve strictness


def _started(s: RunState, **env) -> RunStarted:
    ev = stamp([RunStarted()], run_id=RUN, expected_version=s.version, now=at(T0))[0]
    return msgspec.structs.replace(ev, **env)


def test_evolve_rejects_an_event_of_another_run():
    s = requested()
    with pytest.raises(InvalidTransition, match="belongs to run 'other'"):
        evolve(s, _started(s, run_id="other"))


@pytest.mark.parametrize("delta", [0, 2, -1])
def test_evolve_rejects_a_version_that_does_not_follow(delta):
    s = requested()
    with pytest.raises(InvalidTransition, match=f"expected {s.version + 1}"):
        evolve(s, _started(s, version=s.version + delta))


def test_evolve_rejects_illegal_transitions_and_names_run_and_version():
    s = planning()
    bad = stamp([RunStarted()], run_id=RUN, expected_version=s.version, now=at(T0))[0]
    with pytest.raises(InvalidTransition, match=r"run 'run-test' at version 4.*legal only in"):
        evolve(s, bad)


@pytest.mark.parametrize(
    "build, event",
    [
        (checking, IssuesDiscovered(iteration=1)),  # before any check
        (checking, HealthChecked(iteration=7)),
        (planning, Committed(batch_id="b1", sha="s")),
        (planning, RunFailed(reason="x", status="succeeded")),
        (planning, RunCompleted(status="bogus")),  # type: ignore[arg-type]
        (completed, RunCancelled()),
    ],
)
def test_evolve_is_strict(build, event):
    s = build()
    ev = stamp([event], run_id=RUN, expected_version=s.version, now=at(T0))[0]
    with pytest.raises(InvalidTransition):
        evolve(s, ev)


def test_fold_needs_a_run_id():
    with pytest.raises(InvalidTransition, match="run id is unknown"):
        fold([])
    s = planning()
    assert fold([], s) is s


def test_decide_returns_payload_only_events():
    for ev in decide(planning(), CompleteIteration(now=T0)):
        assert (ev.event_id, ev.run_id, ev.version, ev.correlation_id) == ("", "", 0, "")


def test_state_is_a_json_read_model():
    s = verifying()
    s, _ = apply(s, Commit(batch_id="b1", sha="s1"))
    data = msgspec.json.encode(s)
    assert msgspec.json.decode(data, type=RunState) == s
    assert RunState.initial("r") == initial_state("r")


def test_bookkeeping_of_a_run():
    s = checking()
    assert (s.started_at, s.requested_at, s.worker, s.base_sha) == (T0, T0, "w1", "abc")
    s, _ = apply(
        s,
        health(
            40,
            tools=[
                ToolResult(tool="mypy", status="tool_error"),
                ToolResult(tool="ruff", status="failed"),
            ],
            scope="static",
        ),
    )
    assert s.tools_in_error == ["mypy"] and s.check_scope == "static" and s.best_score is None
    s, _ = apply(s, health(42))
    assert (s.score, s.best_score, s.tools_in_error) == (42, 42, [])
    s, _ = apply(s, RecordIssues(issues=issues(5)))
    assert (s.issues_initial, s.issues_open) == (5, 5)
    s, _ = fix_cycle(s, "b1", "commit", cost=0.25)
    s, _ = apply(s, PlanBatch(batch_id="b2", phase="test", issue_ids=["i1"]))
    s, _ = apply(s, StartFix(batch_id="b2"))
    s, _ = apply(s, FailFix(batch_id="b2", reason="x", cost_usd=0.5, turns=3))
    assert (s.committed, s.fix_failed, s.consecutive_failures, s.last_failure) == (
        1,
        1,
        1,
        "fix_failed",
    )
    assert s.cost_usd == pytest.approx(0.75) and s.turns == 3
    assert s.commits == ["sha-b1-8"] and s.retryable == ["b2"] and s.current_batch == ""
    s, ev = apply(s, CompleteIteration(now=T0, issues_remaining=4))
    assert (ev[0].committed, ev[0].failed, ev[0].issues_remaining, ev[0].progress) == (
        1,
        1,
        4,
        True,
    )
    assert (s.issues_open, s.issues_initial, s.iterations_without_progress) == (4, 5, 0)


def test_a_failed_batch_can_be_retried_with_the_next_attempt():
    s, _ = fix_cycle(plan(planning(), "b1"), "b1", "fail")
    assert s.retryable == ["b1"] and s.pending == []
    s, events = apply(s, StartFix(batch_id="b1"))
    assert events[0].attempt == 2 and s.attempts == {"b1": 2}
    s, _ = apply(s, ApplyFix(batch_id="b1"))
    s, _ = apply(s, Commit(batch_id="b1", sha="x"))
    with pytest.raises(InvalidTransition):  # committed batches are done
        decide(s, StartFix(batch_id="b1"))


def test_pending_batches_are_dropped_at_iteration_end():
    s = plan(planning(), "b1", "b2", "b3", "b4")
    s, _ = fix_cycle(s, "b1", "commit")
    s, _ = fix_cycle(s, "b4", "rollback")
    assert (s.pending, s.retryable) == (["b2", "b3"], ["b4"])
    s, _ = next_iteration(s)
    assert (s.pending, s.retryable, s.planned) == ([], [], [])
    assert (s.batches_dropped, s.batches_planned) == (3, 4)
    for b in ("b2", "b4"):
        with pytest.raises(InvalidTransition, match="neither pending nor retryable"):
            decide(s, StartFix(batch_id=b))
    s = plan(s, "b1")  # ids are per iteration: b1 may be planned again
    assert s.pending == ["b1"]


# ---------------------------------------------------------------- policy: health


def test_a_healthy_full_check_succeeds():
    s = planning(n_issues=4)
    s, _ = fix_cycle(s, "b1", "commit")
    s, _ = apply(s, CompleteIteration(now=T0, issues_remaining=0))
    s, events = apply(s, health(100, healthy=True))
    assert types(events) == ["HealthChecked", "RunCompleted"]
    done = events[-1]
    assert (done.status, done.issues_before, done.issues_after, done.commits) == (
        "succeeded",
        4,
        0,
        1,
    )
    assert (s.state, s.status, s.healthy) == ("completed", "succeeded", True)


def test_a_healthy_partial_check_does_not_end_the_run():
    s, events = apply(checking(), health(100, healthy=True, scope="static"))
    assert types(events) == ["HealthChecked"] and s.state == "checking"


def test_a_tool_error_in_a_full_check_never_passes():
    tools = [
        ToolResult(tool="pytest", status="tool_error"),
        ToolResult(tool="ruff", status="passed"),
    ]
    s, events = apply(checking(), health(100, healthy=True, tools=tools))
    assert types(events) == ["HealthChecked", "RunCompleted"]
    assert events[-1].status == "tool_error" and "pytest" in events[-1].reason
    assert s.tools_in_error == ["pytest"]


def test_a_tool_error_in_a_static_check_is_only_recorded():
    tools = [ToolResult(tool="mypy", status="tool_error")]
    s, events = apply(checking(), health(tools=tools, scope="static"))
    assert types(events) == ["HealthChecked"] and s.tools_in_error == ["mypy"]


# ---------------------------------------------------------------- policy: limits


def test_max_iterations_with_commits_is_partially_fixed():
    s = planning(Limits(max_iterations=2, no_progress_iterations=0))
    s, _ = fix_cycle(s, "b1", "commit")
    s, ev = next_iteration(s)
    assert types(ev) == ["IterationCompleted"]
    s, ev = apply(s, CompleteIteration(now=T0))
    assert types(ev) == ["IterationCompleted", "RunCompleted"]
    assert (ev[-1].status, ev[-1].commits) == ("partially_fixed", 1)
    assert "max_iterations=2" in ev[-1].reason
    assert (s.status, s.iterations_completed) == ("partially_fixed", 2)


def test_max_iterations_without_commits_is_budget_exhausted():
    s = planning(Limits(max_iterations=1))
    s, ev = apply(s, CompleteIteration(now=T0))
    assert ev[-1].status == "budget_exhausted" and "max_iterations=1" in ev[-1].reason


def test_zero_disables_a_limit():
    s = planning(Limits(max_iterations=0, no_progress_iterations=0, max_duration_s=0))
    for _ in range(5):
        s, _ = next_iteration(s, t=T0 + 10**9)
    assert not s.terminal and s.iteration == 6


def test_no_progress_for_n_iterations():
    s = planning(Limits(no_progress_iterations=2), score=50)
    s, ev = next_iteration(s, score=50)  # iteration 1: nothing committed, first score
    assert ev[0].progress is False and s.iterations_without_progress == 1
    s, ev = apply(s, CompleteIteration(now=T0))  # iteration 2: score 50 is not better
    assert types(ev) == ["IterationCompleted", "RunCompleted"]
    assert ev[-1].status == "no_progress" and "no_progress_iterations=2" in ev[-1].reason


def test_a_better_score_or_a_commit_is_progress():
    s = planning(Limits(no_progress_iterations=2), score=50)
    s, _ = next_iteration(s, score=60)  # no progress in 1; the check of 2 is better
    assert s.improved_this_iteration
    s, ev = next_iteration(s, score=60)
    assert ev[0].progress and s.iterations_without_progress == 0 and not s.terminal
    s, _ = fix_cycle(s, "b1", "commit")
    s, ev = next_iteration(s, score=10)
    assert ev[0].progress and not s.terminal


def test_cost_limit_at_commit():
    s = planning(Limits(max_cost_usd=1.0))
    s, ev = fix_cycle(s, "b1", "commit", cost=0.6)
    assert types(ev) == ["Committed"]
    s, ev = fix_cycle(s, "b2", "commit", cost=0.4)
    assert types(ev) == ["Committed", "RunCompleted"]
    assert ev[-1].status == "budget_exhausted" and "max_cost_usd=1" in ev[-1].reason


def test_cost_limit_at_fix_failure_and_at_iteration_end():
    s = planning(Limits(max_cost_usd=1.0))
    s, ev = fix_cycle(s, "b1", "fail", cost=2.0)
    assert ev[-1].status == "budget_exhausted"
    s = verifying(Limits(max_cost_usd=1.0), cost=5.0)
    assert not s.terminal  # never stopped with an unverified fix on the tree
    s = planning(Limits(max_cost_usd=1.0))
    s = msgspec.structs.replace(s, cost_usd=1.0)  # e.g. a read model carried over
    _, ev = apply(s, CompleteIteration(now=T0))
    assert types(ev) == ["IterationCompleted", "RunCompleted"]
    assert ev[-1].status == "budget_exhausted"


@pytest.mark.parametrize(
    "outcomes, status",
    [
        (["fail", "fail"], "failed"),
        (["rollback", "rollback"], "verify_failed"),
        (["fail", "rollback"], "verify_failed"),
        (["rollback", "fail"], "failed"),
        (["commit", "fail", "rollback"], "partially_fixed"),
    ],
)
def test_consecutive_failures(outcomes, status):
    s = planning(Limits(max_consecutive_failures=2))
    for k, outcome in enumerate(outcomes):
        s, ev = fix_cycle(s, f"b{k}", outcome)
    assert ev[-1].type == "RunCompleted" and ev[-1].status == status
    assert "max_consecutive_failures=2" in ev[-1].reason
    assert s.consecutive_failures == 2


def test_a_commit_resets_the_failure_streak():
    s = planning(Limits(max_consecutive_failures=2))
    for k, outcome in enumerate(["fail", "commit", "rollback", "commit", "fail"]):
        s, _ = fix_cycle(s, f"b{k}", outcome)
    assert not s.terminal and s.consecutive_failures == 1


def test_tick_times_out_after_max_duration():
    s = planning(Limits(max_duration_s=100))
    assert decide(s, Tick(now=T0 + 100)) == []
    s, ev = apply(s, Tick(now=T0 + 101))
    assert types(ev) == ["RunCompleted"] and ev[0].status == "timed_out"
    assert "max_duration_s=100" in ev[0].reason and s.status == "timed_out"


def test_the_clock_starts_when_the_run_starts():
    assert decide(requested(Limits(max_duration_s=1)), Tick(now=T0 + 10**6)) == []


@pytest.mark.parametrize("build", [checking, planning, fixing, verifying])
def test_timeout_is_a_hard_limit_in_every_live_state(build):
    s = build(Limits(max_duration_s=10))
    s, _ev = apply(s, Tick(now=T0 + 11))
    assert s.status == "timed_out"


def test_commands_with_now_check_the_clock():
    lim = Limits(max_duration_s=10)
    late = T0 + 11
    _, ev = apply(checking(lim), health(t=late))
    assert types(ev) == ["HealthChecked", "RunCompleted"] and ev[-1].status == "timed_out"
    _, ev = apply(planning(lim), CompleteIteration(now=late))
    assert types(ev) == ["IterationCompleted", "RunCompleted"] and ev[-1].status == "timed_out"
    _, ev = fix_cycle(planning(lim), "b1", "commit", t=late)
    assert ev[-1].status == "timed_out"
    _, ev = fix_cycle(planning(lim), "b1", "rollback", t=late)
    assert ev[-1].status == "timed_out"
    _, ev = fix_cycle(planning(lim), "b1", "fail", t=late)
    assert ev[-1].status == "timed_out"


def test_the_command_verdict_wins_over_the_timeout():
    _, ev = apply(checking(Limits(max_duration_s=10)), health(healthy=True, t=T0 + 11))
    assert ev[-1].status == "succeeded"
    _, ev = apply(
        planning(Limits(max_duration_s=10, max_iterations=1)), CompleteIteration(now=T0 + 11)
    )
    assert ev[-1].status == "budget_exhausted"


def test_every_decided_terminal_status_is_known():
    assert {
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
    } == set(TERMINAL_STATUSES)


# ---------------------------------------------------------------- properties


def _menu(now: float, rare: bool) -> list[m.Command]:
    """Every command the driver may send; ``rare`` admits the ones that end a run early."""
    lim = Limits(
        max_iterations=4,
        max_consecutive_failures=3,
        max_duration_s=2000,
        max_cost_usd=4.0,
        no_progress_iterations=3,
    )
    menu: list[m.Command] = [
        RequestRun(target="repo", limits=lim),
        StartRun(),
        health(score=now % 97, healthy=rare, t=now),
        RecordIssues(issues=issues(int(now) % 4)),
        CompleteIteration(now=now),
    ]
    for b in ("b1", "b2", "b3"):
        menu += [
            PlanBatch(batch_id=b, phase="lint", issue_ids=["i0"]),
            StartFix(batch_id=b),
            ApplyFix(batch_id=b, cost_usd=0.3, turns=2),
            FailFix(batch_id=b, reason="x", cost_usd=0.1, now=now),
            RollBack(batch_id=b, reason="x", now=now),
            Commit(batch_id=b, sha=f"s{now}", now=now),
        ]
    if rare:
        menu += [Tick(now=now), Cancel(), Fail(reason="x")]
    return menu


STEPS = st.lists(
    st.tuples(st.integers(0, 1000), st.integers(0, 30), st.integers(0, 40)),
    min_size=10,
    max_size=150,
)


def _legal(s: RunState, command: m.Command) -> bool:
    try:
        decide(s, command)
    except InvalidTransition:
        return False
    return True


def _drive(steps) -> tuple[list, list[RunState]]:
    """Run random legal commands; returns the log and the state after each version."""
    s, log, states, now = initial_state(RUN), [], [initial_state(RUN)], T0
    for pick, rarity, dt_s in steps:
        if s.terminal:
            break
        now += dt_s
        legal = [c for c in _menu(now, rarity == 0) if _legal(s, c)]
        s2, events = apply(s, legal[pick % len(legal)], now)
        for ev in events:  # state after each single event, by evolve alone
            states.append(evolve(states[-1], ev))
        assert s2 == states[-1]
        s = s2
        log.extend(events)
    return log, states


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STEPS)
def test_state_at_version_k_is_the_fold_of_the_first_k_events(steps):
    log, states = _drive(steps)
    for k in range(1, len(log) + 1):
        assert fold(log[:k]) == states[k]
        assert states[k].version == k
    if log:
        mid = len(log) // 2
        snapshot = fold(log[:mid]) if mid else initial_state(RUN)
        assert fold(log[mid:], snapshot) == states[-1]  # snapshot + tail == full replay


@settings(max_examples=60, deadline=None)
@given(STEPS)
def test_replay_is_pure(steps):
    log, states = _drive(steps)
    before = [msgspec.json.encode(e) for e in log]
    assert fold(log, initial_state(RUN)) == fold(log, initial_state(RUN)) == states[-1]
    assert [msgspec.json.encode(e) for e in log] == before  # events untouched
    if states[-1].state not in ("new", "completed"):  # decide is deterministic too
        assert decide(states[-1], Tick(now=T0 + 10**6)) == decide(states[-1], Tick(now=T0 + 10**6))


def test_machine_module_does_no_io():
    from airfix.events.core import commands, decide, state

    source = "\n".join(
        pathlib.Path(mod.__file__).read_text() for mod in (m, state, commands, decide)
    )
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    forbidden = {
        "os",
        "time",
        "random",
        "socket",
        "redis",
        "io",
        "subprocess",
        "uuid",
        "pathlib",
        "logging",
        "structlog",
    }
    assert not imported & forbidden
    for needle in ("utcnow(", ".now(", "open(", "print(", "new_event_id"):
        assert needle not in source


def test_a_simulation_run_ends_simulated_at_iteration_close():
    """Simulation plans and changes nothing: closing its iteration ends it as 'simulated'."""
    s, _ = apply(initial_state(RUN), RequestRun(target="repo", simulation=True))
    s, _ = apply(s, StartRun(worker="w1"))
    s, _ = apply(s, health(40.0))
    s, _ = apply(s, RecordIssues(issues=issues(2)))
    s = plan(s, "b1", "b2")
    s, events = apply(s, CompleteIteration(now=T0 + 5, issues_remaining=2, score=41.0))
    assert ["IterationCompleted", "RunCompleted"] == types(events)
    assert ("simulated", 2, 41.0) == (s.status, events[1].issues_after, events[0].score)
    assert "2 batch(es) planned" in s.reason


def test_complete_iteration_records_the_closing_score():
    s = plan(planning(), "b1")
    s, _ = apply(s, StartFix(batch_id="b1"))
    s, _ = apply(s, ApplyFix(batch_id="b1"))
    s, _ = apply(s, Commit(batch_id="b1", sha="abc"))
    _, events = apply(s, CompleteIteration(now=T0 + 1, issues_remaining=1, score=77.0))
    assert (77.0, 1) == (events[0].score, events[0].issues_remaining)


def test_stability_runs_need_consecutive_healthy_full_checks():
    """completion_criteria.stability_runs: one healthy check is not enough when 2 are required."""
    s = checking(Limits(stability_runs=2))
    s, events = apply(s, health(90.0, healthy=True))
    assert ["HealthChecked"] == types(events) and (1, "checking") == (s.healthy_streak, s.state)
    s, _ = apply(s, RecordIssues(issues=[]))
    s, events = apply(s, CompleteIteration(now=T0 + 1, issues_remaining=0, score=90.0))
    s, events = apply(s, health(90.0, healthy=True))
    assert ["HealthChecked", "RunCompleted"] == types(events)
    assert ("succeeded", 2) == (s.status, s.healthy_streak)


def test_an_unhealthy_check_resets_the_stability_streak():
    s = checking(Limits(stability_runs=2))
    s, _ = apply(s, health(90.0, healthy=True))
    s, _ = apply(s, health(40.0, healthy=False))
    assert 0 == s.healthy_streak


# ---------------------------------------------------------------- skipped batches, nothing fixable


def test_a_batch_whose_issues_are_gone_is_skipped_without_a_failure():
    s = plan(planning(Limits(max_consecutive_failures=1)), "b1", "b2")
    s, ev = apply(s, m.SkipBatch(batch_id="b1", reason="already fixed by an earlier batch"))
    assert types(ev) == ["BatchSkipped"]
    assert s.pending == ["b2"] and s.batches_skipped == 1 and s.consecutive_failures == 0
    assert not s.terminal
    with pytest.raises(InvalidTransition, match="not pending"):
        decide(s, m.SkipBatch(batch_id="b1"))
    s, _ = apply(s, StartFix(batch_id="b2"))
    with pytest.raises(InvalidTransition):
        decide(s, m.SkipBatch(batch_id="b2"))


def test_nothing_fixable_ends_the_run_with_its_own_status_and_what_is_left():
    left = [Remaining(tool="mypy", rule="arg-type", count=3, reason="no fixer in the chain")]
    s, ev = apply(planning(), CompleteIteration(now=T0, nothing_fixable=True))
    assert types(ev) == ["IterationCompleted", "RunCompleted"]
    assert (s.status, s.terminal) == ("nothing_fixable", True)
    assert "nothing left is fixable" in s.reason
    events = decide(planning(), CompleteIteration(now=T0, nothing_fixable=True))
    events[-1] = msgspec.structs.replace(events[-1], remaining=left)  # as the roles fill it in
    after = fold(
        stamp(events, run_id=planning().run_id, expected_version=planning().version), planning()
    )
    assert after.remaining == left


def test_nothing_fixable_after_commits_is_partially_fixed():
    s, _ = fix_cycle(planning(), "b1", "commit")
    s, _ = apply(s, CompleteIteration(now=T0, nothing_fixable=True))
    assert s.status == "partially_fixed" and "nothing left is fixable" in s.reason


def test_a_fatal_fixer_failure_ends_the_run_at_once():
    s, ev = apply(
        fixing(Limits(max_consecutive_failures=5)),
        FailFix(batch_id="b1", reason="claude: not logged in", fatal=True),
    )
    assert types(ev) == ["FixFailed", "RunCompleted"] and ev[0].fatal
    assert (s.status, s.reason) == ("fixer_unavailable", "claude: not logged in")


def test_the_failures_of_bisecting_halves_break_no_streak():
    s = planning(Limits(max_consecutive_failures=1))
    s, _ = apply(s, PlanBatch(batch_id="b1", phase="lint", issue_ids=["i0", "i1"]))
    s, _ = apply(s, StartFix(batch_id="b1"))
    s, _ = apply(s, ApplyFix(batch_id="b1"))
    rolled = decide(s, RollBack(batch_id="b1", reason="a test broke"))
    assert types(rolled) == ["FixRolledBack", "RunCompleted"]  # a planned batch: the streak counts
    s = planning(Limits(max_consecutive_failures=1))
    for k in (1, 2):
        s, _ = apply(
            s, PlanBatch(batch_id=f"b1.{k}", phase="lint", issue_ids=[f"i{k}"], split_of="b1")
        )
    assert s.bisecting == ["b1.1", "b1.2"]
    s, _ = fix_cycle(s, "b1.1", "rollback")
    s, _ = fix_cycle(s, "b1.2", "fail")
    assert not s.terminal and s.consecutive_failures == 0 and s.rolled_back == 1


# ---------------------------------------------------------------- the iteration's stack


def staged_cycle(s: RunState, batch: str) -> RunState:
    s = plan(s, batch)
    s, _ = apply(s, StartFix(batch_id=batch))
    s, _ = apply(s, ApplyFix(batch_id=batch))
    s, ev = apply(s, Commit(batch_id=batch, sha=f"staged-{batch}", staged=True, now=T0))
    assert types(ev) == ["Committed"] and ev[0].staged
    return s


def test_staged_commits_wait_on_the_stack_until_it_lands():
    s = staged_cycle(staged_cycle(planning(), "b1"), "b2")
    assert (s.stack, s.stack_batches) == (["staged-b1", "staged-b2"], ["b1", "b2"])
    assert s.commits == [] and s.committed == 0  # nothing is on the run branch yet
    s, ev = apply(s, m.DropFromStack(batch_id="b1", reason="a test broke"))
    assert types(ev) == ["StackDropped"] and ev[0].blamed
    assert s.stack_batches == ["b2"] and s.rolled_back == 1
    s, ev = apply(
        s, m.LandStack(commits=[Landed(batch_id="b2", sha="landed-b2")], verified_by="tip passed")
    )
    assert types(ev) == ["StackLanded"]
    assert (s.stack, s.commits, s.committed, s.committed_this_iteration) == (
        [],
        ["landed-b2"],
        1,
        1,
    )


def test_a_narrowed_batch_stays_on_the_stack_as_its_new_commit():
    s = staged_cycle(staged_cycle(planning(), "b1"), "b2")
    s, ev = apply(
        s,
        m.DropFromStack(batch_id="b1", reason="t broke", culprits=["fp1"], narrowed="narrow-b1"),
    )
    assert types(ev) == ["StackDropped"] and ev[0].culprits == ["fp1"] and ev[0].blamed
    assert (s.stack, s.stack_batches) == (["narrow-b1", "staged-b2"], ["b1", "b2"])
    assert s.rolled_back == 0  # it lands: only some of its issues are left out
    s, _ = apply(
        s,
        m.LandStack(commits=[Landed(batch_id="b1", sha="l1"), Landed(batch_id="b2", sha="l2")]),
    )
    assert (s.commits, s.committed) == (["l1", "l2"], 2)


def test_the_stack_is_changed_only_as_it_is():
    s = staged_cycle(staged_cycle(planning(), "b1"), "b2")
    with pytest.raises(InvalidTransition, match="not on the stack"):
        decide(s, m.DropFromStack(batch_id="b9", reason="?"))
    with pytest.raises(InvalidTransition, match="stack order"):
        decide(
            s, m.LandStack(commits=[Landed(batch_id="b2", sha="x"), Landed(batch_id="b1", sha="y")])
        )


def test_an_iteration_closes_with_an_empty_stack():
    s = staged_cycle(planning(), "b1")
    s, _ = apply(s, CompleteIteration(now=T0))
    assert s.stack == [] and s.stack_batches == [] and s.commits == []
