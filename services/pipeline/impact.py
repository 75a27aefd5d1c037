"""Test impact in batch verification: the opening check's map kept in Redis, each batch's tests
chosen from it (``airfix.events.core.impact``), and the closing check's safety net.

Per-test coverage costs time, so only runs verified by batch ask for it (a stack's tests run once
on its tip anyway).  The map lives next to the log, not in it (it can be megabytes): a verifier
that finds none runs the whole suite and says so.  When the closing check's whole suite finds a
test broken that passed at the iteration's start, the iteration's commits are bisected on that
test alone and the culprit is reverted by a new commit (``FixRolledBack.reverted``): the miss is
recorded with the tests it broke, and its issues are set aside like any rolled-back batch's.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence

import msgspec

from airfix.events.core.impact import (
    Selection,
    TestImpact,
    changed_lines,
    hunks,
    select_tests,
    test_of,
    to_baseline,
)
from airfix.events.core.ledger import IterationView
from airfix.events.core.machine import Fail, RollBack, RunState, decide
from airfix.events.schema import Committed, Event
from airfix.services.pipeline.context import Pipeline, landed_tip
from airfix.services.pipeline.git import GitError, Repo
from airfix.services.pipeline.imports import importing_tests
from airfix.services.pipeline.measure import RERUN_LIMIT, Measurement, rerun_tests
from airfix.services.pipeline.stack import first_breaking, regressions
from airfix.services.runtime.logs import get_logger
from airfix.services.tools.pytest import is_test_path

log = get_logger("airfix.impact")

TTL_S = 7 * 86400


def wanted(p: Pipeline, state: RunState) -> bool:
    """Whether this run's full checks should record test impact."""
    return state.verify == "batch" and p.config.fixer.test_impact and not state.simulation


class Baseline(msgspec.Struct, frozen=True):
    """A map and the commit it was measured on (its line numbers are that commit's)."""

    sha: str
    impact: TestImpact


def save(p: Pipeline, state: RunState, iteration: int, sha: str, m: Measurement) -> None:
    """Keep the map of the check that opens ``iteration`` (measured on ``sha``) for its verifiers."""
    if m.impact:
        blob = zlib.compress(msgspec.msgpack.encode(Baseline(sha=sha, impact=m.impact)))
        p.store.client.set(p.store.keys.test_impact(state.run_id, iteration), blob, ex=TTL_S)


def load(p: Pipeline, state: RunState) -> Baseline | None:
    raw = p.store.client.get(p.store.keys.test_impact(state.run_id, state.iteration))
    if not isinstance(raw, bytes):
        return None
    try:
        return msgspec.msgpack.decode(zlib.decompress(raw), type=Baseline)
    except (zlib.error, msgspec.DecodeError) as exc:  # not ours to trust: the whole suite runs
        log.warning("unreadable test impact map; verifying with every test", error=str(exc))
        return None


def selection(
    p: Pipeline, state: RunState, wt: Repo, base: str, candidate: str, view: IterationView
) -> Selection:
    """The tests that verify the change ``base..candidate`` (in the worktree ``wt``)."""
    if not p.config.fixer.test_impact:
        return Selection(tests=None, reason="test impact is off (fixer.test_impact)")
    baseline = load(p, state)
    changed = [f for f in wt.git("diff", "--name-only", base, candidate).splitlines() if f]
    if baseline is None:
        return select_tests(changed, None, view.outcomes, is_test_file=is_test_path)
    lines = changed_lines(wt.diff(base, candidate))
    if baseline.sha != base:  # earlier commits moved lines: number them as the map does
        lines = to_baseline(lines, hunks(wt.diff(baseline.sha, base)))
    test_files = {t.split("::", 1)[0] for t in [*baseline.impact.tests, *view.outcomes]}
    test_files |= {p.relative_to(wt.path).as_posix() for p in wt.path.rglob("conftest.py")}
    return select_tests(
        changed,
        baseline.impact,
        view.outcomes,
        is_test_file=is_test_path,
        lines=lines,
        importers=lambda path: importing_tests(wt.path, path, test_files),
    )


def log_verification(
    p: Pipeline,
    state: RunState,
    batch_id: str,
    changed: Sequence[str],
    chosen: Selection,
    m: Measurement,
    wt: Repo | None = None,
) -> None:
    """One line per batch verification saying what its tests cost and how many of the tests it
    ran reach a changed file (executed it at the baseline, or their file imports it): the others
    could not have changed, the benchmark's measure of what test impact saves."""
    run = list(m.outcomes)
    pytest_s = sum(r.duration_s for r in m.results if r.tool == "pytest")
    baseline = load(p, state)
    reaching: int | None = None
    if baseline is not None and wt is not None:
        files = {t.split("::", 1)[0] for t in run}
        importing = {f for c in changed for f in importing_tests(wt.path, c, files)}
        reach = {
            test_of(baseline.impact.tests[i])
            for f in changed
            for ns in baseline.impact.files.get(f, {}).values()
            for i in ns
        }
        reaching = sum(
            1 for t in run if test_of(t) in reach or t.split("::", 1)[0] in (*changed, *importing)
        )
    log.info(
        "batch verification",
        batch=batch_id,
        tests=("all" if chosen.tests is None else len(chosen.tests)),
        why=chosen.reason,
        tests_run=len(run),
        tests_reaching=reaching,
        pytest_s=round(pytest_s, 3),
        verify_s=round(m.duration_s, 3),
    )


def revert_misses(
    p: Pipeline, state: RunState, view: IterationView, history: Sequence[Event], m: Measurement
) -> tuple[list[Event], Measurement]:
    """Revert the commits of this iteration that the closing check ``m`` finds breaking tests
    (bisected on those tests), measuring again after each; the events and the last measurement."""
    commits = [
        (e.batch_id, e.sha)
        for e in history
        if isinstance(e, Committed) and not e.staged and e.batch_id in view.batches
    ]
    events: list[Event] = []
    s, at = (
        state,
        landed_tip(state),
    )  # worktrees are made from ``state``: nothing moves before the append
    flaky = set(view.flaky) | set(m.flaky)
    python = p.python(state)
    while commits:
        broken = regressions(view.outcomes, m, flaky)
        if broken and len(broken) <= RERUN_LIMIT:  # a flaky test is no reason to revert
            with p.tree(state, "check", sha=at) as wt:
                again = rerun_tests(wt.path, p.config, broken, python)
            flaky |= {t for t in broken if again.get(t) == "passed"}
            broken = [t for t in broken if t not in flaky]
        if not broken:
            break
        k = first_breaking(p, state, commits, broken, view)
        batch, sha = commits[k]
        shown = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
        reason = (
            f"the closing check found {shown} broken by this commit (bisected), a test its "
            "verification did not run: test impact missed it; reverted"
        )
        with p.tree(state, "verify", sha=at) as wt:
            if not wt.succeeds("revert", "--no-commit", sha):
                new = decide(
                    s, Fail(reason=f"{batch} breaks {shown} and cannot be reverted: {reason}")
                )
                return events + new, m
            try:
                revert = wt.commit_all(
                    f"Revert {batch}: it breaks {shown}\n\nThis reverts commit {sha}.\n\n"
                    f"Reason: {reason}\n",
                    run_hooks=p.config.git.run_hooks,
                )
            except GitError as exc:
                new = decide(s, Fail(reason=f"the revert of {batch} was refused: {exc}"))
                return events + new, m
            log.info("test impact missed a regression", batch=batch, tests=len(broken))
            m = p.measure_tree(s, wt, impact=wanted(p, s), known=view.outcomes)
        new = decide(
            s,
            RollBack(
                batch_id=batch,
                reason=reason,
                reset_to=revert,
                regressions=broken[:100],
                reverted=sha,
                now=time.time(),
            ),
        )
        s, at = p.advance(s, new), revert
        events += new
        commits = commits[:k] + commits[k + 1 :]
        if s.terminal:
            break
    return events, m
