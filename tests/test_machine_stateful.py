"""Random command sequences against ``decide`` + ``evolve`` and an independent reference model.

The reference below is written from the documented table, not from ``machine.TRANSITIONS``: it
says which commands are legal and which state each recorded event leads to.  Policy (when a run
ends) is not re-implemented; the invariants only check that the limits are never overrun.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from airfix.events.core.machine import (
    ApplyFix,
    Cancel,
    Command,
    Commit,
    CompleteIteration,
    Fail,
    FailFix,
    PlanBatch,
    RecordHealth,
    RecordIssues,
    RequestRun,
    RollBack,
    StartFix,
    StartRun,
    Tick,
    decide,
    fold,
    initial_state,
)
from airfix.events.errors import InvalidTransition
from airfix.events.schema import TERMINAL_STATUSES, Limits, ToolResult, stamp

RUN = "run-stateful"
T0 = 1_700_000_000.0
LIVE = ("requested", "checking", "planning", "fixing", "verifying")
BATCHES = ("b1", "b2", "b3")

REF: dict[tuple[str, str], str] = {
    ("new", "RunRequested"): "requested",
    ("requested", "RunStarted"): "checking",
    ("checking", "HealthChecked"): "checking",
    ("checking", "IssuesDiscovered"): "planning",
    ("planning", "BatchPlanned"): "planning",
    ("planning", "FixStarted"): "fixing",
    ("fixing", "FixApplied"): "verifying",
    ("fixing", "FixFailed"): "planning",
    ("verifying", "Committed"): "planning",
    ("verifying", "FixRolledBack"): "planning",
    ("planning", "IterationCompleted"): "checking",
}
for _s in LIVE:
    for _t in ("RunCompleted", "RunFailed", "RunCancelled"):
        REF[(_s, _t)] = "completed"

# The event that records each command (Tick records nothing of its own).
PRIMARY = {
    "RequestRun": "RunRequested",
    "StartRun": "RunStarted",
    "RecordHealth": "HealthChecked",
    "RecordIssues": "IssuesDiscovered",
    "PlanBatch": "BatchPlanned",
    "StartFix": "FixStarted",
    "ApplyFix": "FixApplied",
    "FailFix": "FixFailed",
    "RollBack": "FixRolledBack",
    "Commit": "Committed",
    "CompleteIteration": "IterationCompleted",
    "Cancel": "RunCancelled",
    "Fail": "RunFailed",
    "Tick": None,
}

limits_st = st.builds(
    Limits,
    max_iterations=st.integers(0, 3),
    max_consecutive_failures=st.integers(0, 3),
    max_duration_s=st.sampled_from([0.0, 700.0, 20000.0]),
    no_progress_iterations=st.integers(0, 3),
    max_cost_usd=st.sampled_from([0.0, 1.0, 2.5]),
)
batch_st = st.sampled_from(BATCHES)
rare_st = st.integers(0, 5).map(lambda x: x == 0)
tools_st = st.lists(
    st.builds(
        ToolResult,
        tool=st.sampled_from(["ruff", "mypy", "pytest"]),
        status=st.sampled_from(["passed", "failed", "skipped"])
        | rare_st.map(lambda r: "tool_error" if r else "failed"),
    ),
    max_size=2,
)


class RunMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.run = initial_state(RUN)
        self.now = T0
        self.n_events = 0
        # the reference model
        self.ref = "new"
        self.iteration = 0
        self.checked = False
        self.planned: set[str] = set()
        self.pending: set[str] = set()
        self.retry: set[str] = set()
        self.current: str | None = None

    # ------------------------------------------------------------ reference

    def legal(self, c: Command) -> bool:
        r = self.ref
        it_ok = getattr(c, "iteration", None) in (None, self.iteration)
        match c:
            case RequestRun():
                return r == "new" and c.target != ""
            case StartRun():
                return r == "requested"
            case RecordHealth():
                return r == "checking" and it_ok
            case RecordIssues():
                return r == "checking" and it_ok and self.checked
            case PlanBatch():
                return r == "planning" and c.batch_id not in self.planned
            case StartFix():
                return r == "planning" and c.batch_id in self.pending | self.retry
            case ApplyFix() | FailFix():
                return r == "fixing" and c.batch_id == self.current
            case RollBack():
                return r == "verifying" and c.batch_id == self.current
            case Commit():
                return r == "verifying" and c.batch_id == self.current and c.sha != ""
            case CompleteIteration():
                return r == "planning"
            case Fail():
                return r in LIVE and c.status in TERMINAL_STATUSES and c.status != "succeeded"
            case Cancel() | Tick():
                return r in LIVE
        raise AssertionError(c)

    def record(self, c: Command, name: str) -> None:
        self.ref = REF[(self.ref, name)]  # KeyError: the machine recorded an illegal event
        if name == "RunStarted":
            self.iteration = 1
        elif name == "HealthChecked":
            self.checked = True
        elif name == "BatchPlanned":
            self.planned.add(c.batch_id)
            self.pending.add(c.batch_id)
        elif name == "FixStarted":
            self.pending.discard(c.batch_id)
            self.retry.discard(c.batch_id)
            self.current = c.batch_id
        elif name in ("FixFailed", "FixRolledBack"):
            self.retry.add(self.current)
            self.current = None
        elif name == "Committed":
            self.current = None
        elif name == "IterationCompleted":
            self.iteration += 1
            self.checked = False
            self.planned, self.pending, self.retry = set(), set(), set()

    def legal_candidates(self, rare: bool, healthy: bool) -> list[Command]:
        """Commands the reference says are legal, for steps that move the run forward."""
        now, r = self.now, self.ref
        out: list[Command] = []
        if r == "new":
            out.append(RequestRun(target="repo", limits=self.limits))
        elif r == "requested":
            out.append(StartRun(worker="w"))
        elif r == "checking":
            out.append(RecordHealth(now=now, score=now % 7, healthy=healthy))
            if self.checked:
                out.append(RecordIssues())
        elif r == "planning":
            out += [
                PlanBatch(batch_id=b, phase="lint", issue_ids=["i"])
                for b in BATCHES
                if b not in self.planned
            ]
            out += [StartFix(batch_id=b) for b in sorted(self.pending | self.retry)]
            if rare or not out:
                out.append(CompleteIteration(now=now))
        elif r == "fixing":
            out += [
                ApplyFix(batch_id=self.current, cost_usd=0.3),
                FailFix(batch_id=self.current, reason="x", cost_usd=0.1, now=now),
            ]
        elif r == "verifying":
            out += [
                Commit(batch_id=self.current, sha=f"s{len(self.planned)}", now=now),
                RollBack(batch_id=self.current, reason="x", now=now),
            ]
        return out

    # ------------------------------------------------------------ driving

    def send(self, c: Command) -> None:
        legal, before, cname = self.legal(c), self.run, type(c).__name__
        try:
            events = decide(before, c)
        except InvalidTransition as err:
            assert not legal, f"{cname} refused in {self.ref!r} but the reference allows it: {err}"
            assert (err.state, err.command) == (before.state, cname)
            assert cname in str(err) and repr(before.state) in str(err)
            return
        assert legal, f"{cname} accepted in {self.ref!r} but the reference forbids it"
        stored = stamp(
            events,
            run_id=RUN,
            expected_version=before.version,
            now=dt.datetime.fromtimestamp(self.now, dt.UTC),
        )
        after = fold(stored, before)
        names = [type(e).__name__ for e in events]
        assert after.version == before.version + len(events)
        primary = PRIMARY[cname]
        extra = names[1:] if primary else names
        if primary:
            assert names[0] == primary
        assert extra in ([], ["RunCompleted"]), names
        for name in names:
            self.record(c, name)
        assert after.state == self.ref
        if isinstance(c, RecordHealth) and c.scope == "full" and c.healthy:
            assert names[-1] == "RunCompleted"
            assert stored[-1].status in ("succeeded", "tool_error")
        self.run = after
        self.n_events += len(events)

    @initialize(go=st.booleans(), limits=limits_st)
    def start(self, go: bool, limits: Limits) -> None:
        self.limits = limits
        if go:
            self.send(RequestRun(target="repo", limits=limits))
            self.send(StartRun(worker="w"))

    def _forward(self, pick: int, rare: bool, healthy: bool) -> None:
        candidates = self.legal_candidates(rare, healthy and rare)
        if candidates:
            self.send(candidates[pick % len(candidates)])

    # Three identical rules: hypothesis picks rules uniformly, and runs should get far.
    @rule(pick=st.integers(0, 10), rare=rare_st, healthy=rare_st)
    def forward(self, pick: int, rare: bool, healthy: bool) -> None:
        self._forward(pick, rare, healthy)

    @rule(pick=st.integers(0, 10), rare=rare_st, healthy=rare_st)
    def forward_more(self, pick: int, rare: bool, healthy: bool) -> None:
        self._forward(pick, rare, healthy)

    @rule(pick=st.integers(0, 10), rare=rare_st, healthy=rare_st)
    def forward_again(self, pick: int, rare: bool, healthy: bool) -> None:
        self._forward(pick, rare, healthy)

    @rule(seconds=st.sampled_from([1.0, 60.0, 600.0]))
    def clock(self, seconds: float) -> None:
        self.now += seconds

    @rule(target_=st.sampled_from(["repo", ""]), limits=limits_st)
    def request(self, target_: str, limits: Limits) -> None:
        self.send(RequestRun(target=target_, limits=limits))

    @rule()
    def start_run(self) -> None:
        self.send(StartRun())

    @rule(
        healthy=rare_st,
        scope=st.sampled_from(["full", "full", "static"]),
        tools=tools_st,
        score=st.floats(0, 100),
        wrong_iteration=rare_st,
    )
    def health(self, healthy, scope, tools, score, wrong_iteration) -> None:
        it = self.iteration + 1 if wrong_iteration else None
        self.send(
            RecordHealth(
                now=self.now, healthy=healthy, scope=scope, tools=tools, score=score, iteration=it
            )
        )

    @rule(wrong_iteration=rare_st)
    def discover(self, wrong_iteration: bool) -> None:
        self.send(RecordIssues(iteration=self.iteration + 1 if wrong_iteration else None))

    @rule(b=batch_st)
    def plan(self, b: str) -> None:
        self.send(PlanBatch(batch_id=b, phase="test", issue_ids=["i1"]))

    @rule(b=batch_st)
    def start_fix(self, b: str) -> None:
        self.send(StartFix(batch_id=b))

    @rule(b=batch_st, cost=st.sampled_from([0.0, 0.5, 1.5]))
    def apply_fix(self, b: str, cost: float) -> None:
        self.send(ApplyFix(batch_id=b, cost_usd=cost))

    @rule(b=batch_st, cost=st.sampled_from([0.0, 0.5]), timed=st.booleans())
    def fail_fix(self, b: str, cost: float, timed: bool) -> None:
        self.send(FailFix(batch_id=b, reason="x", cost_usd=cost, now=self.now if timed else None))

    @rule(b=batch_st, timed=st.booleans())
    def roll_back(self, b: str, timed: bool) -> None:
        self.send(RollBack(batch_id=b, reason="x", now=self.now if timed else None))

    @rule(b=batch_st, sha=st.sampled_from(["abc", "def", ""]))
    def commit(self, b: str, sha: str) -> None:
        self.send(Commit(batch_id=b, sha=sha, now=self.now))

    @rule(remaining=st.none() | st.integers(0, 5))
    def complete_iteration(self, remaining) -> None:
        self.send(CompleteIteration(now=self.now, issues_remaining=remaining))

    @rule()
    def tick(self) -> None:
        self.send(Tick(now=self.now))

    @rule(
        kind=st.sampled_from(["cancel", "failed", "tool_error", "succeeded", "bogus"]),
        really=rare_st,
    )
    def stop(self, kind: str, really: bool) -> None:
        if really:  # rare, or most runs would end before they get anywhere
            self.send(Cancel(reason="user") if kind == "cancel" else Fail(reason="x", status=kind))

    @rule()
    def terminal_accepts_nothing(self) -> None:
        if self.ref != "completed":
            return
        for c in [
            RequestRun(target="repo"),
            StartRun(),
            RecordHealth(now=self.now),
            RecordIssues(),
            PlanBatch(batch_id="z", phase="lint", issue_ids=[]),
            StartFix(batch_id="b1"),
            ApplyFix(batch_id="b1"),
            FailFix(batch_id="b1", reason="x"),
            RollBack(batch_id="b1", reason="x"),
            Commit(batch_id="b1", sha="s"),
            CompleteIteration(now=self.now),
            Cancel(),
            Fail(reason="x"),
            Tick(now=self.now),
        ]:
            self.send(c)  # the reference forbids all, so send() asserts the refusal

    # ------------------------------------------------------------ invariants

    @invariant()
    def versions_count_events(self) -> None:
        assert self.run.version == self.n_events
        assert self.run.state == self.ref

    @invariant()
    def status_iff_terminal(self) -> None:
        assert self.run.terminal == (self.run.status != "")
        if self.run.terminal:
            assert self.run.status in TERMINAL_STATUSES

    @invariant()
    def limits_are_never_overrun(self) -> None:
        s, lim = self.run, self.run.limits
        if s.terminal:
            return
        if lim.max_consecutive_failures > 0:
            assert s.consecutive_failures < lim.max_consecutive_failures
        if lim.max_iterations > 0:
            assert s.iterations_completed < lim.max_iterations
        if lim.no_progress_iterations > 0:
            assert s.iterations_without_progress < lim.no_progress_iterations
        if lim.max_cost_usd > 0 and s.state != "verifying":
            assert s.cost_usd < lim.max_cost_usd

    @invariant()
    def batch_bookkeeping_matches(self) -> None:
        assert set(self.run.pending) == self.pending
        assert set(self.run.retryable) == self.retry
        assert (self.run.current_batch or None) == self.current
        if not self.run.terminal:  # a finished run names its last iteration that ran
            assert self.run.iteration == self.iteration


RunMachine.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRunMachine = RunMachine.TestCase
