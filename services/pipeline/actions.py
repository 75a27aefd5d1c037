"""The pipeline's actions: what each role does when ``next_action`` names it (start, check, plan,
fix, run the fixer, verify, close), as events the role then appends.  Effects outside Redis happen
in private worktrees; a commit's branch move waits until its events are in the log (``Step``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from airfix.events.core.anticheat import GuardPolicy, check_diff
from airfix.events.core.impact import Selection, within
from airfix.events.core.ledger import IterationView, iteration_view, lessons
from airfix.events.core.machine import (
    ApplyFix,
    Commit,
    Fail,
    FailFix,
    RollBack,
    RunState,
    SkipBatch,
    StartFix,
    StartRun,
    decide,
)
from airfix.events.core.messages import commit_message
from airfix.events.core.planning import (
    phase_caps,
    plan_batches,
    planned_of,
    split_batch,
)
from airfix.events.core.steps import Action, next_batch
from airfix.events.core.verdicts import judge_batch
from airfix.events.errors import AirfixError
from airfix.events.schema import (
    Event,
)
from airfix.services import fixers as fixer_registry
from airfix.services.pipeline import impact, parallel
from airfix.services.pipeline.checks import act_check, act_close
from airfix.services.pipeline.context import STAGED, Pipeline, Step, open_issues_of, tip
from airfix.services.pipeline.git import ZERO, GitError
from airfix.services.pipeline.measure import (
    RERUN_LIMIT,
    WHOLE_PROGRAM,
    Measurement,
    environment_facts,
    rerun_tests,
)
from airfix.services.runtime.logs import get_logger
from airfix.services.tools.environment import find_python

log = get_logger("airfix.roles")


def act_start(p: Pipeline, state: RunState) -> list[Event]:
    """Record where the run starts and create its branch there; the user's checkout is never
    touched (every step works in a worktree of its own)."""
    try:
        with p.start_point(state) as (repo, home, base, base_branch):
            environment = environment_facts(repo.path, find_python(repo.path, state.python))
        branch = "" if state.simulation else f"{p.config.git.branch_prefix}{state.run_id}"
        if (
            branch
            and not home.move_ref(f"refs/heads/{branch}", base, ZERO)
            and home.ref(f"refs/heads/{branch}") != base
        ):
            raise GitError(f"branch {branch} already exists in {home.path} at another commit")
        return decide(
            state,
            StartRun(
                worker=p.worker,
                base_sha=base,
                branch=branch,
                environment=environment,
                base_branch=base_branch,
            ),
        )
    except GitError as exc:
        return decide(state, Fail(reason=str(exc)))


def act_plan(p: Pipeline, state: RunState) -> list[Event] | Step:
    history = p.events(state)
    view = iteration_view(history, state.iteration)
    cfg = p.config
    try:
        chain = p.chain(state)
    except AirfixError as exc:
        return decide(state, Fail(reason=str(exc)))
    learned = lessons(history)
    fixable = [
        i
        for i in view.issues
        if fixer_registry.supported(chain, i, cfg.fixer) and i.fingerprint not in learned.set_aside
    ]
    left_out = len(view.issues) - len(fixable)
    if left_out:
        log.info(
            "issues no fixer in the chain can repair, or set aside after failed attempts, are "
            "left out of the plan",
            left_out=left_out,
            fixer=state.fixer,
        )
    plan = plan_batches(
        fixable,
        mode=state.batching,
        iteration=state.iteration,
        run_id=state.run_id,
        max_cleanup_batch_size=cfg.issue_grouping.max_cleanup_batch_size,
        max_location_batch_size=cfg.issue_grouping.max_location_batch_size,
        # the caps bound an iteration's fixes by their verification; a stack's batches cost a
        # static check each and share one test run, so a stack takes every batch it can
        batches_per_phase={} if p.stacked(state) else phase_caps(cfg.batch_sizes),
        alone=learned.alone,
    )
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
        return decide(
            state,
            SkipBatch(
                batch_id=batch,
                reason=f"already fixed: its {n} issue(s) are gone since an earlier batch's commit",
            ),
        )
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
        events = decide(
            state,
            FailFix(
                batch_id=batch.batch_id,
                fixer=state.fixer,
                reason=reason,
                cost_usd=o.cost_usd,
                turns=o.turns,
                duration_s=o.duration_s,
                now=time.time(),
                fatal=o.fatal,
            ),
        )
        return p.finish(state, events, view.issues, history)

    try:
        chain = p.chain(state)
    except AirfixError as exc:
        return failed(str(exc))
    with p.tree(state, "fix") as wt:
        if p.store.version(state.run_id) != state.version:
            return []  # the run moved on while we set up: this step is no longer ours to take
        attempt = state.attempts.get(batch.batch_id, 1)
        ahead = parallel.prepared_fix(history, batch.batch_id, attempt)
        if ahead is not None:  # fixed alongside an earlier batch: replayed, not run again
            return parallel.replay(state, wt, ahead, failed)
        marker = parallel.marker_key(p, state, batch.batch_id, attempt)
        if not p.store.client.set(marker, p.worker, nx=True, ex=parallel.MARKER_TTL_S):
            # a worker started this very attempt and died before recording its outcome: the
            # fixer may have been paid for already, so the attempt fails instead of running again
            previous = p.store.client.get(marker)
            who = previous.decode() if isinstance(previous, bytes) else str(previous)
            return failed(
                f"worker {who} died while fixing this batch (attempt {attempt}); not "
                "running the fixer twice"
            )
        request = p.fix_request(state, wt, batch, mine)
        with parallel.alongside(p, state, view, history, batch, chain) as side:
            outcome = fixer_registry.run_chain(chain, request)
        changed = wt.changed_files()
        if not (outcome.ok and changed):
            return side.events + failed(
                outcome.reason if not outcome.ok else "the fixer changed nothing", outcome
            )
        candidate = wt.commit_all(f"airfix candidate for {batch.batch_id}", run_hooks=False)
    return side.events + decide(
        state,
        ApplyFix(
            batch_id=batch.batch_id,
            fixer=state.fixer,
            files_changed=changed,
            cost_usd=outcome.cost_usd,
            turns=outcome.turns,
            duration_s=outcome.duration_s,
            candidate=candidate,
        ),
    )


def _verified_by(
    before: IterationView, m: Measurement, newly_flaky: Sequence[str], chosen: Selection
) -> str:
    """How the tests judged a kept batch, for the commit body and the event."""
    if chosen.tests == []:
        return (
            f"static checks; no test ran ({chosen.reason}): the iteration's closing check runs "
            "the full test suite"
        )
    if not m.tests_ran and not before.tests_measured:
        return "not verified by tests: none found"
    outcomes = within(before.outcomes, chosen.tests)
    passed = sum(1 for o in outcomes.values() if o == "passed")
    still = sum(1 for t, o in outcomes.items() if o == "passed" and m.outcomes.get(t) == "passed")
    total = len(m.outcomes) or (m.tests.total if m.tests else 0)
    if chosen.tests is None:
        why = (
            ""
            if chosen.reason.startswith(("a stack", "test impact is off"))
            else f" ({chosen.reason})"
        )
        text = f"the full test suite ran{why}: {still} of the {passed} tests that passed before pass ({total} run)"
    else:
        text = (
            f"the tests test impact chose ran ({chosen.reason}): {still} of the {passed} of them "
            f"that passed before pass ({total} run); the closing check runs the full suite"
        )
    flaky = set(before.flaky) | set(m.flaky) | set(newly_flaky)
    if flaky:
        text += f"; {len(flaky)} flaky test(s) not judged"
    return text


def act_verify(p: Pipeline, state: RunState) -> list[Event] | Step:
    """Judge the candidate in a private worktree; keep it as a commit on the run's tip (made in
    that worktree, so the project's hooks run there), appended to the log first and only then
    put on the run branch by compare-and-swap.  In stack mode (``Pipeline.stacked``) the static
    checks judge it and it is staged: the tests run once on the stack's tip when the iteration
    closes (``stack.py``), and only then does the run branch move."""
    history = p.events(state)
    view = iteration_view(history, state.iteration)
    batch = view.batches[state.current_batch]
    mine = open_issues_of(batch, view)
    base = tip(state)
    if not state.candidate:
        return p.finish(
            state,
            decide(
                state,
                RollBack(
                    batch_id=batch.batch_id,
                    reason="the fix recorded no candidate commit to verify",
                    reset_to=base,
                    now=time.time(),
                ),
            ),
            view.issues,
            history,
        )
    g = p.config.guards
    python = p.python(state)
    staged = p.stacked(state)
    with p.tree(state, "verify", sha=state.candidate) as wt:
        diff = wt.diff(base, state.candidate)
        problems = check_diff(
            diff,
            GuardPolicy(g.allow_suppressions, g.allow_test_deletion, g.allow_config_edits),
        )
        changed = [
            f for f in wt.git("diff", "--name-only", base, state.candidate).splitlines() if f
        ]
        chosen = (
            Selection(tests=None, reason="a stack: its tests run on its tip")
            if staged
            else impact.selection(p, state, wt, base, state.candidate, view)
        )
        m = p.measure_tree(
            state,
            wt,
            scope="static" if staged else "batch",
            tests=chosen.tests,
            skip=WHOLE_PROGRAM - {i.tool for i in mine} if staged else (),
        )
        measured = {r.tool for r in m.results if r.status in ("passed", "failed")}
        before = [i for i in view.issues if i.tool in measured]  # what this check can judge
        flaky = set(view.flaky) | set(m.flaky)
        suspects = [
            t
            for t, o in view.outcomes.items()
            if o == "passed" and t not in flaky and m.outcomes.get(t) in ("failed", "error")
        ]
        newly_flaky: list[str] = []
        if suspects and len(suspects) <= RERUN_LIMIT:  # fails after the change: again, alone
            again = rerun_tests(wt.path, p.config, suspects, python)
            newly_flaky = sorted(t for t in suspects if again.get(t) == "passed")
        verdict = judge_batch(
            [i for i in mine if i.tool in measured] or mine,
            before,
            m.issues,
            before_tests=None
            if staged or chosen.tests is not None
            else p.tests_before(history, state.iteration),
            after_tests=m.tests,
            before_outcomes=None if staged else within(view.outcomes, chosen.tests),
            after_outcomes=m.outcomes,
            flaky=flaky | set(newly_flaky),
            tests_may_go=g.allow_test_deletion,
            tool_errors=[r.tool for r in m.results if r.status == "tool_error"],
        )
        reasons = problems + list(verdict.reasons)
        if not staged:
            impact.log_verification(p, state, batch.batch_id, changed, chosen, m, wt)

        def rolled_back(reason: str, regressions: Sequence[str] = ()) -> list[Event]:
            events = decide(
                state,
                RollBack(
                    batch_id=batch.batch_id,
                    reason=reason[:2000],
                    reset_to=base,
                    regressions=list(regressions)[:100],
                    flaky=newly_flaky,
                    now=time.time(),
                ),
            )
            after = p.advance(state, events)
            for half in (
                [] if after.terminal else split_batch(batch, mine)
            ):  # bisect for the culprit
                new = decide(after, half)
                after = p.advance(after, new)
                events += new
            return p.finish(state, events, view.issues, history)

        if reasons:
            new = sorted({i.fingerprint for i in m.issues} - {i.fingerprint for i in view.issues})
            return rolled_back("; ".join(reasons), new)
        after_counts = m.counts_by_tool()
        before_counts = {t: view.counts[t] for t in after_counts if t in view.counts}
        planned = planned_of(batch, mine)
        files = changed
        verified = STAGED if staged else _verified_by(view, m, newly_flaky, chosen)
        message = commit_message(
            planned,
            before_counts,
            after_counts,
            state.fixer,
            state.run_id,
            files=files,
            fixed=verdict.fixed,
            verified=verified,
        )
        wt.git("reset", "-q", "--soft", base)  # HEAD on the tip, the candidate's tree staged
        try:
            sha = wt.commit_all(message, run_hooks=p.config.git.run_hooks)
        except GitError as exc:  # a hook refused it: the batch goes, the run goes on
            return rolled_back(f"the commit was refused: {str(exc)[-1500:]}")
    tests_fixed = sorted(
        t
        for t, o in m.outcomes.items()
        if o == "passed" and view.outcomes.get(t) not in (None, "passed")
    )
    events = decide(
        state,
        Commit(
            batch_id=batch.batch_id,
            sha=sha,
            message=message,
            files=files,
            counts_before=before_counts,
            counts_after=after_counts,
            resolved=[i.fingerprint for i in verdict.comparison.fixed]
            if verdict.comparison
            else [],
            tests_fixed=tests_fixed,
            flaky=newly_flaky,
            verified_by=verified,
            staged=staged,
            now=time.time(),
        ),
    )
    if staged:  # on the stack: the run branch moves when the stack's tip has passed the tests
        return p.finish(state, events, m.issues, history)
    repo = p.branch_home(state)
    ref = f"refs/heads/{state.branch}"
    return Step(
        p.finish(state, events, m.issues, history), after=lambda: repo.move_ref(ref, sha, base)
    )


ACTIONS: dict[Action, Callable[[Pipeline, RunState], list[Event] | Step]] = {
    "start": act_start,
    "check": act_check,
    "close": act_close,
    "plan": act_plan,
    "fix": act_fix,
    "run_fix": act_run_fix,
    "verify": act_verify,
}
