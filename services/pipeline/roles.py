"""The fix pipeline's roles as consumers of the log: manager, checker, planner, fixer, verifier.

Each role is an ordered handler (group ``role:<name>``).  For every event it folds the run's state
and acts only when the event is the run's newest (``store.version``) and ``next_action(state)``
(``events/core/steps.py``) is one of its actions.  What it does becomes events appended at the version
it read, so two workers racing on one run cannot both win (the loser gets a ConcurrencyError and
drops its result), and a redelivered event finds the run moved on and does nothing.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from airfix.config import Config
from airfix.events.core.anticheat import GuardPolicy, check_diff
from airfix.events.core.health import TestCounts, judge_batch
from airfix.events.core.ledger import IterationView, explain_remaining, iteration_view, lessons
from airfix.events.core.machine import (
    ApplyFix,
    Commit,
    CompleteIteration,
    Fail,
    FailFix,
    RecordHealth,
    RecordIssues,
    RollBack,
    RunState,
    SkipBatch,
    StartFix,
    StartRun,
    decide,
    evolve,
    fold,
)
from airfix.events.core.planning import (
    PlannedBatch,
    commit_message,
    phase_caps,
    plan_batches,
    split_batch,
)
from airfix.events.core.steps import ROLE_OF, ROLES, Action, Role, next_batch
from airfix.events.errors import AirfixError, ConcurrencyError
from airfix.events.schema import (
    BatchPlanned,
    Event,
    HealthChecked,
    IssueRecord,
    RunCompleted,
    stamp,
)
from airfix.events.storage.store import EventStore, LogEntry
from airfix.services import fixers as fixer_registry
from airfix.services.pipeline.git import ZERO, GitError, Repo, worktree
from airfix.services.pipeline.measure import (
    RERUN_LIMIT,
    Measurement,
    environment_facts,
    measure,
    rerun_tests,
)
from airfix.services.runtime.app import App, register_group_handler
from airfix.services.runtime.cancel import RunWatcher
from airfix.services.runtime.cancel import scope as cancel_scope
from airfix.services.runtime.consumers import consumer_name
from airfix.services.runtime.logs import bind_event, get_logger
from airfix.services.tools.environment import PythonEnv, find_python, python_env_of

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

    def events(self, state: RunState) -> list[Event]:
        return list(self.store.read_run(state.run_id, to_version=state.version))

    def python(self, state: RunState) -> PythonEnv | None:
        return python_env_of(state.environment)

    @contextmanager
    def tree(self, state: RunState, slot: str, sha: str | None = None) -> Iterator[Repo]:
        """A private worktree of the target at ``sha`` (default: the run's tip as the log records
        it), at a path stable per run, step and worker (tools' caches stay warm), removed after.
        The run branch is first brought up to the log (:func:`follow_log`)."""
        repo = Repo.open(state.target)
        follow_log(repo, state)
        root = Path(self.config.git.workspace or Path(tempfile.gettempdir()) / "airfix-worktrees")
        digest = hashlib.sha256(str(repo.path).encode()).hexdigest()[:12]
        where = root.expanduser() / digest / state.run_id / f"{slot}-{_safe(self.worker)}"
        with worktree(repo, sha or tip(state), where) as wt:
            yield wt

    def chain(self, state: RunState) -> list[fixer_registry.Fixer]:
        return fixer_registry.chain(state.fixer or ",".join(self.config.fixer.chain))

    def tests_before(self, events: Sequence[Event], iteration: int) -> TestCounts | None:
        """The opening check's test counts (for runners that report no per-test outcomes)."""
        for ev in events:
            if isinstance(ev, HealthChecked) and ev.iteration == iteration:
                for t in ev.tools:
                    if t.status in ("passed", "failed") and "tests_total" in t.counts:
                        c = t.counts
                        return TestCounts(passed=c.get("tests_passed", 0), failed=c.get("tests_failed", 0),
                                          errors=c.get("tests_errors", 0), skipped=c.get("tests_skipped", 0))
                return None
        return None

    def finish(self, state: RunState, events: list[Event], issues: Sequence[IssueRecord],
               history: Sequence[Event]) -> list[Event]:
        """When ``events`` end the run, say in the final event what is left, and why."""
        if not events or not isinstance(events[-1], RunCompleted):
            return events
        try:
            chain = self.chain(state)
        except AirfixError:
            chain = []
        cfg = self.config.fixer
        learned = lessons(history)
        planned = [i for ev in history if isinstance(ev, BatchPlanned) for i in ev.issue_ids]
        left = explain_remaining(issues, fixable=lambda i: fixer_registry.supported(chain, i, cfg),
                                 set_aside=learned.set_aside, planned=planned,
                                 fixer=state.fixer, limit=events[-1].reason)
        return [*events[:-1], msgspec.structs.replace(events[-1], remaining=left)]


def tip(state: RunState) -> str:
    """The commit the run's branch is at, as the log records it."""
    return state.commits[-1] if state.commits else state.base_sha


class BranchMoved(GitError):
    """The run branch is somewhere the run never put it: someone moved it outside airfix."""


def follow_log(repo: Repo, state: RunState) -> None:
    """Bring the run branch up to the log: a verifier appends ``Committed`` first and moves the
    branch after, so one that died in between leaves the branch one recorded commit behind.  It
    only ever moves forward along the recorded commits, by compare-and-swap."""
    if state.simulation or not state.branch:
        return
    ref, want = f"refs/heads/{state.branch}", tip(state)
    have = repo.ref(ref)
    if have == want:
        return
    recorded = [state.base_sha, *state.commits]
    if have in recorded:
        if not repo.move_ref(ref, want, have) and repo.ref(ref) not in recorded:
            raise BranchMoved(f"the run branch {state.branch} moved while airfix was moving it")
        return
    raise BranchMoved(f"the run branch {state.branch} is at {have or 'nothing (deleted)'}, which "
                      f"the run never recorded (its tip is {want[:12]}): it was changed outside airfix")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


@dataclass
class Step:
    """What an action decided, and the effect outside Redis to take once its events are in the
    log (an effect before the append could be taken by a worker whose turn is already over)."""

    events: list[Event]
    after: Callable[[], object] | None = None


def open_issues_of(batch: BatchPlanned, view: IterationView) -> list[IssueRecord]:
    """The batch's issues that the latest measurement still shows (as many per fingerprint as
    the batch holds, at most as many as are still open)."""
    open_by_id = {i.issue_id: i for i in view.issues}
    out = [open_by_id[i] for i in batch.issue_ids if i in open_by_id]  # the very issues planned
    taken = {i.issue_id for i in out}
    # an id an earlier commit resolved may stand for a same-fingerprint issue still open (which
    # occurrence a fix removed is not knowable): fill up to the batch's count per fingerprint
    wanted = Counter(view.discovered[i].fingerprint for i in batch.issue_ids
                     if i in view.discovered and i not in open_by_id)
    for issue in view.issues:
        if issue.issue_id not in taken and wanted[issue.fingerprint] > 0 \
                and issue.issue_id not in batch.issue_ids:
            wanted[issue.fingerprint] -= 1
            out.append(issue)
    return out


# ------------------------------------------------------------------------------ the actions


def _health(m: Measurement, scope: str = "full") -> RecordHealth:
    results = [
        msgspec.structs.replace(r, counts={**r.counts, "issues": sum(1 for i in m.issues if i.tool == r.tool)})
        for r in m.results
    ]
    return RecordHealth(now=time.time(), tools=results, score=m.report.score, parts=m.report.parts,
                        healthy=m.report.healthy, scope=scope,  # type: ignore[arg-type]
                        test_outcomes=m.outcomes, flaky=m.flaky)


def act_start(p: Pipeline, state: RunState) -> list[Event]:
    """Record where the run starts and create its branch there; the user's checkout is never
    touched (every step works in a worktree of its own)."""
    try:
        repo = Repo.open(state.target)
        repo.require_clean()
        base, base_branch = repo.head(), repo.branch()
        environment = environment_facts(repo.path, find_python(repo.path, state.python))
        branch = "" if state.simulation else f"{p.config.git.branch_prefix}{state.run_id}"
        if branch and not repo.move_ref(f"refs/heads/{branch}", base, ZERO) \
                and repo.ref(f"refs/heads/{branch}") != base:
            raise GitError(f"branch {branch} already exists in {repo.path} at another commit")
        return decide(state, StartRun(worker=p.worker, base_sha=base, branch=branch,
                                      environment=environment, base_branch=base_branch))
    except GitError as exc:
        return decide(state, Fail(reason=str(exc)))


def _check_events(p: Pipeline, state: RunState, m: Measurement) -> list[Event]:
    events = p.finish(state, decide(state, _health(m)), m.issues, p.events(state))
    after = p.advance(state, events)
    if not after.terminal:
        events += decide(after, RecordIssues(issues=m.issues))
    return events


def act_check(p: Pipeline, state: RunState) -> list[Event]:
    with p.tree(state, "check") as wt:
        return _check_events(p, state, p.measure(wt.path, p.config, python=p.python(state)))


def act_close(p: Pipeline, state: RunState) -> list[Event]:
    """Close the iteration with a full check; the same measurement opens the next one.

    An iteration that planned nothing changed nothing: its opening check still stands, and the
    run ends there (nothing left is fixable by the chain)."""
    history = p.events(state)
    if not state.planned and not state.simulation:
        view = iteration_view(history, state.iteration)
        events = decide(state, CompleteIteration(now=time.time(), issues_remaining=len(view.issues),
                                                 score=state.score, nothing_fixable=True))
        return p.finish(state, events, view.issues, history)
    with p.tree(state, "check") as wt:
        m = p.measure(wt.path, p.config, python=p.python(state))
    events = decide(state, CompleteIteration(now=time.time(), issues_remaining=len(m.issues),
                                             score=m.report.score))
    closed, limit = events[:1], events[1:]  # IterationCompleted, then a limit's RunCompleted
    after = p.advance(state, closed)
    # the closing measurement is always recorded; a healthy or broken check outranks the limit
    health = decide(after, _health(m))
    after_health = p.advance(after, health)
    if after_health.terminal:
        return closed + p.finish(state, health, m.issues, history)
    if limit:
        return closed + health + p.finish(state, limit, m.issues, history)
    return closed + health + decide(after_health, RecordIssues(issues=m.issues))


def act_plan(p: Pipeline, state: RunState) -> list[Event]:
    history = p.events(state)
    view = iteration_view(history, state.iteration)
    cfg = p.config
    try:
        chain = p.chain(state)
    except AirfixError as exc:
        return decide(state, Fail(reason=str(exc)))
    learned = lessons(history)
    fixable = [i for i in view.issues if fixer_registry.supported(chain, i, cfg.fixer)
               and i.fingerprint not in learned.set_aside]
    left_out = len(view.issues) - len(fixable)
    if left_out:
        log.info("issues no fixer in the chain can repair, or set aside after failed attempts, are "
                 "left out of the plan", left_out=left_out, fixer=state.fixer)
    plan = plan_batches(fixable, mode=state.batching, iteration=state.iteration, run_id=state.run_id,
                        max_cleanup_batch_size=cfg.issue_grouping.max_cleanup_batch_size,
                        max_location_batch_size=cfg.issue_grouping.max_location_batch_size,
                        batches_per_phase=phase_caps(cfg.batch_sizes), alone=learned.alone)
    events: list[Event] = []
    s = state
    for batch in plan.batches:
        new = decide(s, batch.command())
        s = p.advance(s, new)
        events += new
    if not events:  # nothing the chain can fix: the iteration (and the run) ends here
        return act_close(p, state)
    return events


def act_fix(p: Pipeline, state: RunState) -> list[Event]:
    view = iteration_view(p.events(state), state.iteration)
    batch = next_batch(state, {b: e.priority for b, e in view.batches.items()})
    planned = view.batches[batch]
    if not open_issues_of(planned, view):
        n = len(planned.issue_ids)
        return decide(state, SkipBatch(batch_id=batch, reason=f"already fixed: its {n} issue(s) are gone "
                                                             "since an earlier batch's commit"))
    return decide(state, StartFix(batch_id=batch, fixer=state.fixer, worker=p.worker))


def act_run_fix(p: Pipeline, state: RunState) -> list[Event]:
    """Run the fixer chain in a private worktree at the run's tip; keep what it changed as a
    candidate commit on no branch (objects only: nothing anyone else sees moves)."""
    history = p.events(state)
    view = iteration_view(history, state.iteration)
    batch = view.batches[state.current_batch]
    mine = open_issues_of(batch, view)

    def failed(reason: str, outcome: fixer_registry.FixOutcome | None = None) -> list[Event]:
        o = outcome or fixer_registry.FixOutcome(ok=False)
        events = decide(state, FailFix(batch_id=batch.batch_id, fixer=state.fixer, reason=reason,
                                       cost_usd=o.cost_usd, turns=o.turns, duration_s=o.duration_s,
                                       now=time.time(), fatal=o.fatal))
        return p.finish(state, events, view.issues, history)

    try:
        chain = p.chain(state)
    except AirfixError as exc:
        return failed(str(exc))
    with p.tree(state, "fix") as wt:
        if p.store.version(state.run_id) != state.version:
            return []  # the run moved on while we set up: this step is no longer ours to take
        attempt = state.attempts.get(batch.batch_id, 1)
        marker = f"{p.store.keys.prefix}:fix_attempt:{state.run_id}:{batch.batch_id}:{attempt}"
        if not p.store.client.set(marker, p.worker, nx=True, ex=7 * 86400):
            # a worker started this very attempt and died before recording its outcome: the
            # fixer may have been paid for already, so the attempt fails instead of running again
            previous = p.store.client.get(marker)
            who = previous.decode() if isinstance(previous, bytes) else str(previous)
            return failed(f"worker {who} died while fixing this batch (attempt {attempt}); not "
                          "running the fixer twice")
        request = fixer_registry.FixRequest(run_id=state.run_id, target=wt.path, batch=batch,
                                            issues=mine, config=p.config.fixer,
                                            environment=state.environment)
        outcome = fixer_registry.run_chain(chain, request)
        changed = wt.changed_files()
        if not (outcome.ok and changed):
            return failed(outcome.reason if not outcome.ok else "the fixer changed nothing", outcome)
        candidate = wt.commit_all(f"airfix candidate for {batch.batch_id}", run_hooks=False)
    return decide(state, ApplyFix(batch_id=batch.batch_id, fixer=state.fixer, files_changed=changed,
                                  cost_usd=outcome.cost_usd, turns=outcome.turns,
                                  duration_s=outcome.duration_s, candidate=candidate))


def _verified_by(before: IterationView, m: Measurement, newly_flaky: Sequence[str]) -> str:
    """How the tests judged a kept batch, for the commit body and the event."""
    if not m.tests_ran and not before.tests_measured:
        return "not verified by tests: none found"
    passed = sum(1 for t, o in before.outcomes.items() if o == "passed")
    still = sum(1 for t, o in before.outcomes.items() if o == "passed" and m.outcomes.get(t) == "passed")
    total = len(m.outcomes) or (m.tests.total if m.tests else 0)
    text = f"the full test suite ran: {still} of the {passed} tests that passed before pass ({total} run)"
    flaky = set(before.flaky) | set(m.flaky) | set(newly_flaky)
    if flaky:
        text += f"; {len(flaky)} flaky test(s) not judged"
    return text


def act_verify(p: Pipeline, state: RunState) -> list[Event] | Step:
    """Judge the candidate in a private worktree; keep it as a commit on the run's tip (made in
    that worktree, so the project's hooks run there), appended to the log first and only then
    put on the run branch by compare-and-swap."""
    history = p.events(state)
    view = iteration_view(history, state.iteration)
    batch = view.batches[state.current_batch]
    mine = open_issues_of(batch, view)
    base = tip(state)
    if not state.candidate:
        return p.finish(state, decide(state, RollBack(
            batch_id=batch.batch_id, reason="the fix recorded no candidate commit to verify",
            reset_to=base, now=time.time())), view.issues, history)
    g = p.config.guards
    python = p.python(state)
    with p.tree(state, "verify", sha=state.candidate) as wt:
        problems = check_diff(wt.diff(base, state.candidate),
                              GuardPolicy(g.allow_suppressions, g.allow_test_deletion, g.allow_config_edits))
        m = p.measure(wt.path, p.config, scope="batch", python=python)
        flaky = set(view.flaky) | set(m.flaky)
        suspects = [t for t, o in view.outcomes.items()
                    if o == "passed" and t not in flaky and m.outcomes.get(t) in ("failed", "error")]
        newly_flaky: list[str] = []
        if suspects and len(suspects) <= RERUN_LIMIT:  # fails after the change: again, alone
            again = rerun_tests(wt.path, p.config, suspects, python)
            newly_flaky = sorted(t for t in suspects if again.get(t) == "passed")
        verdict = judge_batch(mine, view.issues, m.issues,
                              before_tests=p.tests_before(history, state.iteration), after_tests=m.tests,
                              before_outcomes=view.outcomes, after_outcomes=m.outcomes,
                              flaky=flaky | set(newly_flaky), tests_may_go=g.allow_test_deletion,
                              tool_errors=[r.tool for r in m.results if r.status == "tool_error"])
        reasons = problems + list(verdict.reasons)

        def rolled_back(reason: str, regressions: Sequence[str] = ()) -> list[Event]:
            events = decide(state, RollBack(batch_id=batch.batch_id, reason=reason[:2000], reset_to=base,
                                            regressions=list(regressions)[:100], flaky=newly_flaky,
                                            now=time.time()))
            after = p.advance(state, events)
            for half in [] if after.terminal else split_batch(batch, mine):  # bisect for the culprit
                new = decide(after, half)
                after = p.advance(after, new)
                events += new
            return p.finish(state, events, view.issues, history)

        if reasons:
            new = sorted({i.fingerprint for i in m.issues} - {i.fingerprint for i in view.issues})
            return rolled_back("; ".join(reasons), new)
        after_counts = m.counts_by_tool()
        before_counts = {t: view.counts[t] for t in after_counts if t in view.counts}
        planned = PlannedBatch(batch_id=batch.batch_id, phase=batch.phase, mode=batch.mode,
                               issue_ids=list(batch.issue_ids), priority=batch.priority,
                               description=batch.description, files=list(batch.files) or ["."],
                               kind="mega" if batch.mode == "mega" else "location",
                               rules=sorted({i.rule for i in mine if i.rule}) or ["?"])
        files = [f for f in wt.git("diff", "--name-only", base, state.candidate).splitlines() if f]
        verified = _verified_by(view, m, newly_flaky)
        message = commit_message(planned, before_counts, after_counts, state.fixer, state.run_id,
                                 files=files, fixed=verdict.fixed, verified=verified)
        wt.git("reset", "-q", "--soft", base)  # HEAD on the tip, the candidate's tree staged
        try:
            sha = wt.commit_all(message, run_hooks=p.config.git.run_hooks)
        except GitError as exc:  # a hook refused it: the batch goes, the run goes on
            return rolled_back(f"the commit was refused: {str(exc)[-1500:]}")
    tests_fixed = sorted(t for t, o in m.outcomes.items()
                         if o == "passed" and view.outcomes.get(t) not in (None, "passed"))
    events = decide(state, Commit(batch_id=batch.batch_id, sha=sha, message=message, files=files,
                                  counts_before=before_counts, counts_after=after_counts,
                                  resolved=[i.fingerprint for i in verdict.comparison.fixed]
                                  if verdict.comparison else [],
                                  tests_fixed=tests_fixed, flaky=newly_flaky, verified_by=verified,
                                  now=time.time()))
    repo = Repo.open(state.target)
    ref = f"refs/heads/{state.branch}"
    return Step(p.finish(state, events, m.issues, history),
                after=lambda: repo.move_ref(ref, sha, base))


ACTIONS: dict[Action, Callable[[Pipeline, RunState], list[Event] | Step]] = {
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
        store = self.pipeline.store
        turn = threading.Event()  # set when the run moves on without us: our processes stop
        try:
            with RunWatcher(store.client, store.keys.run_stream(state.run_id), state.version, turn), \
                    cancel_scope(turn):
                result = ACTIONS[action](self.pipeline, state)
        except BranchMoved as exc:  # nothing can be verified or committed safely any more
            result = decide(state, Fail(reason=str(exc)))
        if turn.is_set():
            log.info("the run moved on during this step; its result is dropped", action=action)
            return
        step = result if isinstance(result, Step) else Step(result)
        if not step.events:
            return
        stamped = stamp(step.events, run_id=state.run_id, expected_version=state.version,
                        causation_id=cause.event_id)
        try:
            self.pipeline.store.append(state.run_id, stamped, state.version)
        except ConcurrencyError as exc:
            log.warning("another worker took this step first; dropping our result", error=str(exc))
            return
        if step.after is not None:
            step.after()  # only now: the log says this step was ours
        log.info("step done", events=[type(e).__name__ for e in step.events],
                 duration_s=round(time.monotonic() - started, 3))


def _action(state: RunState) -> Action:
    from airfix.events.core.steps import next_action

    return next_action(state)


def role_handlers(pipeline: Pipeline, roles: Sequence[Role], *,
                  only_run: str | None = None) -> list[RoleHandler]:
    return [RoleHandler(pipeline, r, only_run=only_run) for r in roles]


def role_handler_for(app: App, group: str) -> RoleHandler | None:
    """The handler of ``role:<name>`` (what retrying a role's dead letter hands its entry to)."""
    role = group.removeprefix("role:")
    if not group.startswith("role:") or role not in ROLES:
        return None
    return RoleHandler(Pipeline(app.store, app.config, worker=consumer_name()), role)  # type: ignore[arg-type]


register_group_handler(role_handler_for)
