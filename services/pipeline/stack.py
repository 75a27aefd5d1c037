"""Landing an iteration's stack: the tests once on its tip, bisection when they break.

Why a stack (as a merge queue verifies a queue of changes): deterministic fixes are checked one by
one by the static tools, which is cheap, and the project's test suite, which is not, runs once on
the tip of all of them.  When the tip breaks a test that passed at the iteration's start, the stack
is bisected on the broken tests alone to find the first commit that breaks them (and, as the
stack's commits skip the whole-program checkers such as mypy, a tip with issues of theirs the
iteration's start did not have is bisected on those checkers alone), the commit whose batch fixed
issues nearest to the symptom (in the broken test's own file, next to the new issue) probed first.
The tip's suite stops as soon as the tip is condemned (a test that passed fails, or such a checker,
run alongside, found a new issue): the rest of it would judge nothing the bisection needs.  That
batch is narrowed to the issues whose fixes broke them (``narrow.py``: it stays on the stack
without those fixes) or, when it cannot be, dropped; the commits after it are re-applied on its
parent (one that no longer applies is made again or dropped too), and the new tip is tested again.
A re-applied commit that bisection blames later is taken out without blame (it passed where it was
made; the change under it is what moved) and its issues are planned again on the next iteration's
tip.  What lands is a stack whose tip passed the full suite; each kept commit's message is
rewritten to say so, with its counts measured again when re-applying changed its parent
(``landing.py``).  Nothing here moves the run branch: the caller appends the events first and moves
it after.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial

from airfix.events.core.ledger import IterationView
from airfix.events.core.machine import DropFromStack, LandStack, RunState
from airfix.events.core.search import first_showing, likeliest
from airfix.events.core.verdicts import compare
from airfix.events.schema import Committed, Event, IssueRecord
from airfix.services import fixers as fixer_registry
from airfix.services.pipeline.context import Pipeline, deterministic, landed_tip
from airfix.services.pipeline.git import GitError, Repo
from airfix.services.pipeline.landing import Recount, counts_of, rewrite
from airfix.services.pipeline.measure import (
    WHOLE_PROGRAM,
    Measurement,
    rerun_tests,
)
from airfix.services.pipeline.narrow import Narrowed, narrow
from airfix.services.pipeline.symptoms import BrokenTests, NewIssues, Symptom
from airfix.services.runtime.logs import get_logger
from airfix.services.tools.results import ToolRun

log = get_logger("airfix.stack")

FAILING = ("failed", "error")


@dataclass
class Landing:
    """What landing decided: the commands to append, the tip they leave and its measurement."""

    commands: list[DropFromStack | LandStack]
    tip: str
    measurement: Measurement


def regressions(opening: dict[str, str], m: Measurement, flaky: set[str]) -> list[str]:
    """Tests that passed at the iteration's start and do not pass now (missing ones included,
    unless the suite was halted before it reached them)."""
    return sorted(
        t
        for t, o in opening.items()
        if o == "passed"
        and t not in flaky
        and m.outcomes.get(t, "missing") != "passed"
        and m.outcomes.get(t) != "skipped"
        and not (m.halted and t not in m.outcomes)
    )


def _passed(opening: dict[str, str], flaky: set[str]) -> list[str]:
    return [t for t, o in opening.items() if o == "passed" and t not in flaky]


def _condemns(view: IterationView) -> Callable[[ToolRun], str]:
    """Whether a whole-program checker's run on the tip found issues the iteration's start did not
    have: then the tip is bisected on that checker, and its test suite can stop."""

    def new_issues_in(run: ToolRun) -> str:
        added = _new_issues_of(view, {run.result.tool} if run.ok else set(), run.issues)
        return f"{run.result.tool} found {len(added)} new issue(s)" if added else ""

    return new_issues_in


def land(p: Pipeline, state: RunState, view: IterationView, history: Sequence[Event]) -> Landing:
    repo = p.objects(state, *state.stack)
    committed = {e.batch_id: e for e in history if isinstance(e, Committed) and e.staged}
    stack = list(zip(state.stack_batches, state.stack, strict=True))
    base = landed_tip(state)
    flaky = set(view.flaky)
    commands: list[DropFromStack | LandStack] = []
    rebuilt: set[str] = set()
    suspects: list[str] = []  # the tests the last culprit broke: tried alone on the new tip first
    recount: Recount | None = None
    while True:
        at = stack[-1][1] if stack else base
        added: list[IssueRecord] = []
        recount = Recount.of(  # only re-applied commits need counting again
            recount,
            stack if rebuilt else [],
            partial(
                counts_of,
                p,
                state,
                view.opening_counts,
                committed=committed,
                rebuilt=set(rebuilt),
                slot="recount",
            ),
        )
        with p.tree(state, "check", sha=at) as wt:  # one tree serves the suspects and the suite
            broken = still_broken(p, state, wt, suspects) if stack else []
            whole = not broken  # the whole suite (with coverage: it closes the iteration) judges
            if whole:  # stopped as soon as the tip is condemned: its culprit is bisected next
                m = p.measure_tree(
                    state,
                    wt,
                    known=view.outcomes,
                    halt_on=_passed(view.outcomes, flaky) if stack else (),
                    halt_when=_condemns(view) if stack else None,
                )
                flaky |= set(m.flaky)  # a failing test that passed alone is no reason to bisect
                broken = regressions(view.outcomes, m, flaky)
        if whole and m.halted and not broken and not new_whole_program_issues(view, m):
            suspects = []  # what stopped the suite was flaky: the whole suite again, without it
            continue
        if whole:
            unmeasured = [
                r for r in m.results if r.tool in WHOLE_PROGRAM and r.status == "tool_error"
            ]
            if unmeasured and stack:  # the commits skipped it for the tip, which cannot run it
                reason = "verification could not measure: " + "; ".join(
                    f"{r.tool} on the stack's tip ({r.error[:300]})" for r in unmeasured
                )
                commands += [
                    DropFromStack(batch_id=b, blamed=False, reason=reason) for b, _ in stack
                ]
                stack = []
                break
            added = [] if broken else new_whole_program_issues(view, m)
            if not (broken or added) or not stack:
                break
        suspects = broken
        recount = Recount.of(recount, [])  # the stack changes: what it counts is moot
        if broken:
            culprit = first_breaking(p, state, stack, broken, view)
            shown = _shown(broken)
            what, where = (
                f"the tests broke ({shown})",
                f"the tests on the stack's tip broke ({shown})",
            )
        else:
            culprit = first_introducing(p, state, stack, view, added)
            shown = _shown(
                [f"{i.tool} {i.rule or ''} {i.file}:{i.line}".replace("  ", " ") for i in added]
            )
            what = where = f"the stack's tip has new issue(s) ({shown})"
        batch, _ = stack[culprit]
        parent = stack[culprit - 1][1] if culprit else base
        narrowed = None
        if batch in rebuilt:  # it passed where it was made: the re-application is to blame
            commands.append(
                DropFromStack(
                    batch_id=batch,
                    blamed=False,
                    reason=(
                        f"{what} once it was re-applied without a batch taken out before "
                        "it; its issues are planned again"
                    ),
                )
            )
        else:
            symptom = BrokenTests(broken) if broken else new_issues(view, added)
            narrowed = narrow(p, state, view, parent, committed[batch], symptom)
            commands.append(_blamed(batch, where, narrowed))
        log.info("stack bisected", culprit=batch, tests=len(broken), issues=len(added))
        kept = stack[:culprit]
        if narrowed is not None:  # it stays, without the fixes that broke the tests
            kept.append((batch, narrowed.sha))
            rebuilt.add(batch)
            parent = narrowed.sha
        later_ones = stack[culprit + 1 :]
        with ExitStack() as trees:  # one worktree re-applies them all, each on the last
            onto = trees.enter_context(p.tree(state, "verify", sha=parent)) if later_ones else None
            for later, sha in later_ones:
                assert onto is not None
                new, why = _reapply(p, state, view, onto, parent, later, sha)
                if new is None:
                    commands.append(
                        DropFromStack(
                            batch_id=later,
                            blamed=False,
                            reason=(
                                f"{why} once {batch} was taken out of the stack; its issues are "
                                "planned again"
                            ),
                        )
                    )
                    continue
                kept.append((later, new))
                rebuilt.add(later)
                parent = new
        stack = kept
    passed = sum(1 for o in view.outcomes.values() if o == "passed")
    still = sum(
        1 for t, o in view.outcomes.items() if o == "passed" and m.outcomes.get(t) == "passed"
    )
    verified = (
        f"as part of a stack of {len(stack)} commit(s) whose tip passed the full test suite "
        f"({still} of the {passed} tests that passed before pass) with no new issue of the "
        "whole-program checkers"
    )
    counts = recount.take(stack) if recount is not None else None
    if counts is None and stack:
        counts = counts_of(p, state, view.opening_counts, stack, committed, rebuilt, "verify")
    landed = rewrite(repo, base, stack, verified, counts or [])
    if landed:
        commands.append(LandStack(commits=landed, verified_by=verified))
    return Landing(commands=commands, tip=landed[-1].sha if landed else base, measurement=m)


def _shown(items: Sequence[str]) -> str:
    return ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")


def new_whole_program_issues(view: IterationView, m: Measurement) -> list[IssueRecord]:
    """Issues of the whole-program checkers (which the stack's commits skip) at the tip that the
    iteration's opening check did not have."""
    measured = {r.tool for r in m.results if r.status in ("passed", "failed")}
    return _new_issues_of(view, measured, m.issues)


def _new_issues_of(
    view: IterationView, measured: set[str], issues: Sequence[IssueRecord]
) -> list[IssueRecord]:
    tools = {t for t in WHOLE_PROGRAM & measured if t in view.counts}
    before = [i for i in view.discovered.values() if i.tool in tools]
    return compare(before, [i for i in issues if i.tool in tools]).new


def first_introducing(
    p: Pipeline,
    state: RunState,
    stack: list[tuple[str, str]],
    view: IterationView,
    added: list[IssueRecord],
) -> int:
    """The first commit of the stack whose whole-program check has one of ``added``."""
    symptom = new_issues(view, added)
    return _first_where(
        p,
        state,
        stack,
        lambda wt: bool(symptom.shows(p, state, wt)),
        _guesses(p, state, view, stack, symptom),
    )


def _first_where(
    p: Pipeline,
    state: RunState,
    stack: list[tuple[str, str]],
    shows: Callable[[Repo], bool],
    guesses: list[int],
) -> int:
    """Bisection: the first commit of the stack whose tree ``shows`` the symptom (the tip does),
    the ``guesses`` probed first."""
    with ExitStack() as trees:  # one tree, moved from probe to probe
        wt: Repo | None = None

        def probe(k: int) -> bool:
            nonlocal wt
            wt = wt or trees.enter_context(p.tree(state, "check", sha=stack[k][1]))
            wt.move_to(stack[k][1])
            return shows(wt)

        return first_showing(len(stack), probe, guesses)


def _guesses(
    p: Pipeline,
    state: RunState,
    view: IterationView,
    stack: list[tuple[str, str]],
    symptom: Symptom,
) -> list[int]:
    """The commits whose batches fixed issues near where ``symptom`` was seen, likeliest
    first."""
    planned = [view.batches[b].issue_ids if b in view.batches else [] for b, _ in stack]
    groups = [[view.discovered[i] for i in ids if i in view.discovered] for ids in planned]
    start = stack[0][1]  # its parent is where the iteration's issues were measured
    return likeliest(groups, symptom.places(p.objects(state, start), f"{start}^"))


def new_issues(view: IterationView, added: Sequence[IssueRecord]) -> NewIssues:
    tools = {i.tool for i in added}
    return NewIssues(added, [i for i in view.discovered.values() if i.tool in tools])


def _blamed(batch: str, where: str, narrowed: Narrowed | None) -> DropFromStack:
    if narrowed is None:
        return DropFromStack(batch_id=batch, reason=f"{where} and bisection blamed this batch")
    shown = _shown([f"{i.rule or i.tool} {i.file}:{i.line}" for i in narrowed.culprits])
    return DropFromStack(
        batch_id=batch,
        reason=(
            f"{where} and bisection blamed this batch's fix of {len(narrowed.culprits)} of its "
            f"issues ({shown}); it stays on the stack without them, with its other "
            f"{len(narrowed.kept)} issue(s)"
        ),
        culprits=[i.fingerprint for i in narrowed.culprits],
        narrowed=narrowed.sha,
    )


def first_breaking(
    p: Pipeline,
    state: RunState,
    stack: list[tuple[str, str]],
    broken: list[str],
    view: IterationView,
) -> int:
    """The first commit of the stack at which one of ``broken`` no longer passes."""
    symptom = BrokenTests(broken)

    def breaks(wt: Repo) -> bool:
        shows = symptom.shows(p, state, wt)
        if shows is not None:
            return shows
        outcomes = p.measure_tree(state, wt).outcomes  # no runner selects tests by id
        return any(outcomes.get(t, "missing") != "passed" for t in broken)

    return _first_where(p, state, stack, breaks, _guesses(p, state, view, stack, symptom))


def still_broken(p: Pipeline, state: RunState, wt: Repo, suspects: Sequence[str]) -> list[str]:
    """Which of ``suspects`` (tests a dropped commit broke) still fail in ``wt``, run alone: a
    second culprit is then bisected at once, without a whole-suite run in between."""
    if not suspects:
        return []
    again = rerun_tests(wt.path, p.config, suspects, p.python(state))
    return [t for t in suspects if again and again.get(t, "missing") != "passed"]


def _reapply(
    p: Pipeline, state: RunState, view: IterationView, wt: Repo, parent: str, batch: str, sha: str
) -> tuple[str | None, str]:
    """``sha``'s change cherry-picked onto ``parent`` and committed (the project's hooks judge it,
    as ``git.run_hooks`` says) in ``wt``, a private worktree (no ref moved): the new commit, or
    None and why not.  A change that no longer applies (an edit next to the dropped one's) is
    made again by a deterministic chain: its fixes are cheap to make and find their issues by
    fingerprint, not by line."""
    wt.move_to(parent)
    if not wt.succeeds("cherry-pick", "--no-commit", sha):
        wt.git("cherry-pick", "--abort", check=False)
        wt.git("reset", "-q", "--hard", parent, check=False)
        chain = p.chain(state)
        if not deterministic(chain):
            return None, "it no longer applies"
        planned = view.batches[batch]  # its issues as planned: its own commit resolved them
        issues = [view.discovered[i] for i in planned.issue_ids if i in view.discovered]
        outcome = fixer_registry.run_chain(chain, p.fix_request(state, wt, planned, issues))
        if not outcome.ok:
            return None, f"it no longer applies and fixing it again failed ({outcome.reason})"
        wt.stage()
        log.info("stack commit made again on its new parent", batch_id=batch, parent=parent)
    if not wt.changed_files():
        return None, "nothing is left of it"
    message = wt.git("log", "-1", "--format=%B", sha)
    try:
        wt.commit_as(message, sha, run_hooks=p.config.git.run_hooks)
    except GitError as exc:
        return None, f"the project's hooks refuse it ({str(exc)[-200:]})"
    return wt.head(), ""
