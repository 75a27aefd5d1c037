"""The fix pipeline's roles as consumers of the log: manager, checker, planner, fixer, verifier.

Each role is an ordered handler (group ``role:<name>``).  For every event it folds the run's state
and acts only when the event is the run's newest (``store.version``) and ``next_action(state)``
(``events/steps.py``) is one of its actions.  What it does becomes events appended at the version
it read, so two workers racing on one run cannot both win (the loser gets a ConcurrencyError and
drops its result), and a redelivered event finds the run moved on and does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from airfix.config import Config
from airfix.events.errors import AirfixError, ConcurrencyError
from airfix.events.guards import GuardPolicy, check_diff
from airfix.events.health import TestCounts, judge_batch
from airfix.events.machine import (
    ApplyFix,
    Commit,
    CompleteIteration,
    Fail,
    FailFix,
    RecordHealth,
    RecordIssues,
    RollBack,
    RunState,
    StartFix,
    StartRun,
    decide,
    evolve,
    fold,
)
from airfix.events.planning import PlannedBatch, commit_message, phase_caps, plan_batches
from airfix.events.schema import (
    BatchPlanned,
    Committed,
    Event,
    HealthChecked,
    IssueRecord,
    IssuesDiscovered,
    stamp,
)
from airfix.events.steps import ROLE_OF, Action, Role, next_batch
from airfix.events.store import EventStore, LogEntry
from airfix.services import fixers as fixer_registry
from airfix.services.git import GitError, Repo
from airfix.services.logs import bind_event, get_logger
from airfix.services.measure import Measurement, measure

log = get_logger("airfix.roles")


@dataclass
class Pipeline:
    """What every role needs: the store, the config, and who this worker is."""

    store: EventStore
    config: Config
    worker: str = "airfix"
    measure: Callable[..., Measurement] = field(default=measure)

    def advance(self, state: RunState, events: list[Event]) -> RunState:
        """The state after ``events`` (payload-only), as the store will fold them."""
        return fold(stamp(events, run_id=state.run_id, expected_version=state.version), state)

    def iteration_events(self, state: RunState) -> list[Event]:
        """This run's events since the start of the current iteration's check."""
        events = list(self.store.read_run(state.run_id))
        start = 0
        for i, ev in enumerate(events):
            if isinstance(ev, HealthChecked) and ev.iteration == state.iteration and start == 0:
                start = i
        return events[start:]

    def current_issues(self, state: RunState) -> tuple[list[IssueRecord], dict[str, BatchPlanned]]:
        """The open issues of this iteration (discovered minus committed batches') and its batches."""
        events = self.iteration_events(state)
        issues: list[IssueRecord] = []
        batches: dict[str, BatchPlanned] = {}
        committed: set[str] = set()
        for ev in events:
            if isinstance(ev, IssuesDiscovered):
                issues = list(ev.issues)
            elif isinstance(ev, BatchPlanned):
                batches[ev.batch_id] = ev
            elif isinstance(ev, Committed):
                committed.update(batches[ev.batch_id].issue_ids if ev.batch_id in batches else [])
        return [i for i in issues if i.issue_id not in committed], batches

    def last_tests(self, state: RunState) -> TestCounts | None:
        for ev in reversed(self.iteration_events(state)):
            if isinstance(ev, HealthChecked):
                for t in ev.tools:
                    if t.status in ("passed", "failed") and "tests_total" in t.counts:
                        c = t.counts
                        return TestCounts(passed=c.get("tests_passed", 0), failed=c.get("tests_failed", 0),
                                          errors=c.get("tests_errors", 0), skipped=c.get("tests_skipped", 0))
        return None


# ------------------------------------------------------------------------------ the actions


def _health(m: Measurement, scope: str = "full") -> RecordHealth:
    results = [
        msgspec.structs.replace(r, counts={**r.counts, "issues": sum(1 for i in m.issues if i.tool == r.tool)})
        for r in m.results
    ]
    return RecordHealth(now=time.time(), tools=results, score=m.report.score, parts=m.report.parts,
                        healthy=m.report.healthy, scope=scope)  # type: ignore[arg-type]


def act_start(p: Pipeline, state: RunState) -> list[Event]:
    try:
        repo = Repo.open(state.target)
        repo.require_clean()
        base = repo.head()
        if not p.config.git.commit_to_current_branch and not state.simulation:
            repo.checkout_new(f"{p.config.git.branch_prefix}{state.run_id}")
        return decide(state, StartRun(worker=p.worker, base_sha=base, branch=repo.branch()))
    except GitError as exc:
        return decide(state, Fail(reason=str(exc)))


def _check_events(p: Pipeline, state: RunState, m: Measurement) -> list[Event]:
    events = decide(state, _health(m))
    after = p.advance(state, events)
    if not after.terminal:
        events += decide(after, RecordIssues(issues=m.issues))
    return events


def act_check(p: Pipeline, state: RunState) -> list[Event]:
    return _check_events(p, state, p.measure(Path(state.target), p.config))


def act_close(p: Pipeline, state: RunState) -> list[Event]:
    """Close the iteration with a full check; the same measurement opens the next one."""
    m = p.measure(Path(state.target), p.config)
    events = decide(state, CompleteIteration(now=time.time(), issues_remaining=len(m.issues),
                                             score=m.report.score))
    closed, limit = events[:1], events[1:]  # IterationCompleted, then a limit's RunCompleted
    after = p.advance(state, closed)
    # the closing measurement is always recorded; a healthy or broken check outranks the limit
    health = decide(after, _health(m))
    after_health = p.advance(after, health)
    if after_health.terminal:
        return closed + health
    if limit:
        return closed + health + limit
    return closed + health + decide(after_health, RecordIssues(issues=m.issues))


def act_plan(p: Pipeline, state: RunState) -> list[Event]:
    issues, _ = p.current_issues(state)
    cfg = p.config
    try:
        chain = fixer_registry.chain(state.fixer or cfg.fixer.name)
    except AirfixError as exc:
        return decide(state, Fail(reason=str(exc)))
    fixable = [i for i in issues if fixer_registry.supported(chain, i, cfg.fixer)]
    if len(fixable) < len(issues):
        log.info("issues no fixer in the chain can repair are left out of the plan",
                 left_out=len(issues) - len(fixable), fixer=state.fixer)
    plan = plan_batches(fixable, mode=state.batching, iteration=state.iteration, run_id=state.run_id,
                        max_cleanup_batch_size=cfg.issue_grouping.max_cleanup_batch_size,
                        max_location_batch_size=cfg.issue_grouping.max_location_batch_size,
                        batches_per_phase=phase_caps(cfg.batch_sizes))
    events: list[Event] = []
    s = state
    for batch in plan.batches:
        new = decide(s, batch.command())
        s = p.advance(s, new)
        events += new
    if not events:  # nothing plannable: close the iteration rather than stall
        return act_close(p, state)
    return events


def act_fix(p: Pipeline, state: RunState) -> list[Event]:
    _, batches = p.current_issues(state)
    batch = next_batch(state, {b: e.priority for b, e in batches.items()})
    return decide(state, StartFix(batch_id=batch, fixer=state.fixer, worker=p.worker))


def act_run_fix(p: Pipeline, state: RunState) -> list[Event]:
    issues, batches = p.current_issues(state)
    batch = batches[state.current_batch]
    mine = [i for i in issues if i.issue_id in set(batch.issue_ids)]
    repo = Repo.open(state.target)
    before = repo.head()
    try:
        chain = fixer_registry.chain(state.fixer or p.config.fixer.name)
    except AirfixError as exc:
        return decide(state, FailFix(batch_id=batch.batch_id, reason=str(exc), now=time.time()))
    attempt = state.attempts.get(batch.batch_id, 1)
    marker = f"{p.store.keys.prefix}:fix_attempt:{state.run_id}:{batch.batch_id}:{attempt}"
    if not p.store.client.set(marker, p.worker, nx=True, ex=7 * 86400):
        # a worker started this very attempt and died before recording its outcome: the fixer
        # may have been paid for already, so the attempt fails instead of running it again
        previous = p.store.client.get(marker)
        repo.reset_hard(before)
        who = previous.decode() if isinstance(previous, bytes) else str(previous)
        return decide(state, FailFix(batch_id=batch.batch_id, fixer=state.fixer, now=time.time(),
                                     reason=f"worker {who} died while fixing this batch (attempt "
                                            f"{attempt}); not running the fixer twice"))
    request = fixer_registry.FixRequest(run_id=state.run_id, target=repo.path, batch=batch, issues=mine,
                                        config=p.config.fixer)
    outcome = fixer_registry.run_chain(chain, request)
    changed = repo.changed_files()
    if outcome.ok and changed:
        return decide(state, ApplyFix(batch_id=batch.batch_id, fixer=state.fixer, files_changed=changed,
                                      cost_usd=outcome.cost_usd, turns=outcome.turns,
                                      duration_s=outcome.duration_s))
    repo.reset_hard(before)
    reason = outcome.reason if not outcome.ok else "the fixer changed nothing"
    return decide(state, FailFix(batch_id=batch.batch_id, fixer=state.fixer, reason=reason,
                                 cost_usd=outcome.cost_usd, turns=outcome.turns,
                                 duration_s=outcome.duration_s, now=time.time()))


def act_verify(p: Pipeline, state: RunState) -> list[Event]:
    issues, batches = p.current_issues(state)
    batch = batches[state.current_batch]
    ids = set(batch.issue_ids)
    mine = [i for i in issues if i.issue_id in ids]
    repo = Repo.open(state.target)
    head = repo.head()
    if not repo.dirty_files() and f"Airfix-Batch: {batch.batch_id}" in repo.git("log", "-1", "--format=%B"):
        # an earlier verifier committed this batch and died before recording it: record it now
        message = repo.git("log", "-1", "--format=%B").strip()
        files = [f for f in repo.git("show", "--name-only", "--format=", "HEAD").splitlines() if f]
        return decide(state, Commit(batch_id=batch.batch_id, sha=head, message=message, files=files,
                                    now=time.time()))
    g = p.config.guards
    problems = check_diff(repo.diff(), GuardPolicy(g.allow_suppressions, g.allow_test_deletion,
                                                   g.allow_config_edits))
    m = p.measure(repo.path, p.config, scope="batch")
    verdict = judge_batch(mine, issues, m.issues, before_tests=p.last_tests(state), after_tests=m.tests,
                          tool_errors=[r.tool for r in m.results if r.status == "tool_error"])
    reasons = problems + list(verdict.reasons)
    before_counts = _counts(issues)
    after_counts = _counts(m.issues)
    if not reasons:
        planned = PlannedBatch(batch_id=batch.batch_id, phase=batch.phase, mode=batch.mode,
                               issue_ids=list(batch.issue_ids), priority=batch.priority,
                               description=batch.description, files=list(batch.files) or ["."],
                               kind="mega" if batch.mode == "mega" else "location",
                               rules=sorted({i.rule for i in mine if i.rule}) or ["?"])
        message = commit_message(planned, before_counts, after_counts, state.fixer, state.run_id)
        files = repo.changed_files()
        sha = repo.commit_all(message, run_hooks=p.config.git.run_hooks)
        return decide(state, Commit(batch_id=batch.batch_id, sha=sha, message=message, files=files,
                                    counts_before=before_counts, counts_after=after_counts,
                                    now=time.time()))
    repo.reset_hard(head)
    new = sorted({i.fingerprint for i in m.issues} - {i.fingerprint for i in issues})
    return decide(state, RollBack(batch_id=batch.batch_id, reason="; ".join(reasons)[:2000],
                                  reset_to=head, regressions=new[:100], now=time.time()))


def _counts(issues: Sequence[IssueRecord]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in issues:
        out[i.tool] = out.get(i.tool, 0) + 1
    return out


ACTIONS: dict[Action, Callable[[Pipeline, RunState], list[Event]]] = {
    "start": act_start,
    "check": act_check,
    "close": act_close,
    "plan": act_plan,
    "fix": act_fix,
    "run_fix": act_run_fix,
    "verify": act_verify,
}


# ------------------------------------------------------------------------------ the handler


class RoleHandler:
    """One role as a consumer-runtime handler (ordered: a run's steps never overtake each other)."""

    ordered = True
    start_id = "0"

    def __init__(self, pipeline: Pipeline, role: Role, *, only_run: str | None = None) -> None:
        self.pipeline = pipeline
        self.role = role
        self.only_run = only_run
        self.group = f"role:{role}"
        self.states: dict[str, RunState] = {}

    def on_partitions_changed(self) -> None:
        self.states.clear()

    def _state_after(self, event: Event) -> RunState:
        cached = self.states.get(event.run_id)
        if cached is not None and cached.version == event.version - 1:
            state = evolve(cached, event)
        elif cached is not None and cached.version == event.version:
            state = cached
        else:
            state = fold(self.pipeline.store.read_run(event.run_id, to_version=event.version))
        self.states[event.run_id] = state
        return state

    def handle(self, entries: Sequence[LogEntry]) -> None:
        for entry in entries:
            event = entry.event
            if event is None or (self.only_run is not None and event.run_id != self.only_run):
                continue
            state = self._state_after(event)
            action = _action(state)
            if ROLE_OF.get(action) != self.role:
                continue
            if self.pipeline.store.version(event.run_id) != event.version:
                continue  # the run moved on: this step was already taken
            with bind_event(event, stream=entry.stream, entry_id=entry.entry_id, role=self.role,
                            action=action):
                self._act(action, state, event)

    def _act(self, action: Action, state: RunState, cause: Event) -> None:
        started = time.monotonic()
        events = ACTIONS[action](self.pipeline, state)
        if not events:
            return
        stamped = stamp(events, run_id=state.run_id, expected_version=state.version,
                        causation_id=cause.event_id)
        try:
            self.pipeline.store.append(state.run_id, stamped, state.version)
        except ConcurrencyError as exc:
            log.warning("another worker took this step first; dropping our result", error=str(exc))
            return
        log.info("step done", events=[type(e).__name__ for e in events],
                 duration_s=round(time.monotonic() - started, 3))


def _action(state: RunState) -> Action:
    from airfix.events.steps import next_action

    return next_action(state)


def role_handlers(pipeline: Pipeline, roles: Sequence[Role], *,
                  only_run: str | None = None) -> list[RoleHandler]:
    return [RoleHandler(pipeline, r, only_run=only_run) for r in roles]
