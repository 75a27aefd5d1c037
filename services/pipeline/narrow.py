"""Narrowing a blamed batch of a stack to the issues whose fixes broke the tests.

A batch of many issues (one rule across files) that breaks a test usually does so through one
fix; dropping it whole leaves all its good fixes to the next iteration, which then costs another
round of whole-suite checks.  Deterministic fixes are cheap to make again, so the batch's issues
are bisected on the symptom alone (the broken tests, or the whole-program checker that found new
issues): the fixes of a prefix of them are made on the batch's parent and the symptom looked
for, until the first issue whose fix shows it is found.  The issues nearest to where the symptom
was seen (in the broken test's own file, next to the new issue) come first, and the nearest is
tried alone first (``events/core/search.py``): one probe when it is the one.  Its fix may
resolve others of the batch (ruff removes a whole import statement for each unused name in it):
they go with it.  The rest are fixed again and tried once more; when the symptom is gone, the
batch stays on the stack as that commit and the culprits are set aside like a blamed batch's
issues.  The commit is made in a private worktree and moves no ref.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from airfix.events.core.ledger import IterationView
from airfix.events.core.machine import RunState
from airfix.events.core.messages import commit_message
from airfix.events.core.planning import planned_of
from airfix.events.core.search import distance, first_showing, suspects_first
from airfix.events.schema import BatchPlanned, Committed, IssueRecord
from airfix.services import fixers as fixer_registry
from airfix.services.pipeline.context import STAGED, Pipeline, deterministic, landed_tip
from airfix.services.pipeline.git import GitError, Repo
from airfix.services.pipeline.measure import WHOLE_PROGRAM
from airfix.services.pipeline.symptoms import Symptom
from airfix.services.runtime.logs import get_logger

log = get_logger("airfix.narrow")

MAX_CULPRITS = 3  # groups of culprits sought in one batch before it is dropped whole


@dataclass(frozen=True)
class Narrowed:
    """The batch's commit made again without ``culprits`` (and the issues their fixes resolve)."""

    sha: str
    culprits: list[IssueRecord]
    kept: list[IssueRecord]


class _Trial:
    """Fixes of some of a batch's issues made on its parent in one worktree, then judged by the
    tests they broke, run alone."""

    def __init__(
        self, p: Pipeline, state: RunState, wt: Repo, parent: str, batch: BatchPlanned
    ) -> None:
        self.p, self.state, self.wt, self.parent, self.batch = p, state, wt, parent, batch
        self.chain = p.chain(state)

    def fix(self, issues: Sequence[IssueRecord]) -> bool:
        """The worktree at the parent with only ``issues`` fixed; whether anything changed."""
        self.wt.move_to(self.parent)
        request = self.p.fix_request(self.state, self.wt, self.batch, issues)
        outcome = fixer_registry.run_chain(self.chain, request)
        return outcome.ok and bool(self.wt.changed_files())

    def breaks(self, issues: Sequence[IssueRecord], symptom: Symptom) -> bool | None:
        """Whether the fixes of ``issues`` alone show ``symptom`` (None: cannot tell)."""
        if not self.fix(issues):
            return False
        return symptom.shows(self.p, self.state, self.wt)

    def breaks_as(self, issues: Sequence[IssueRecord], sha: str, symptom: Symptom) -> bool | None:
        """:meth:`breaks`, knowing that bisection saw ``symptom`` at ``sha``: fixes made again
        into exactly ``sha``'s tree show it without looking again."""
        if not self.fix(issues):
            return False
        self.wt.stage()
        if not self.wt.git("diff", "--cached", "--name-only", sha).strip():
            return True
        return symptom.shows(self.p, self.state, self.wt)

    def resolved_with(self, culprit: IssueRecord, among: Sequence[IssueRecord]) -> set[str]:
        """Fingerprints of ``among`` that the culprit's fix alone resolves (itself included)."""
        self.fix([culprit])
        m = self.p.measure_tree(
            self.state, self.wt, scope="static", skip=WHOLE_PROGRAM - {culprit.tool}
        )
        left = {i.fingerprint for i in m.issues}
        return {culprit.fingerprint} | {i.fingerprint for i in among if i.fingerprint not in left}


def narrow(
    p: Pipeline,
    state: RunState,
    view: IterationView,
    parent: str,
    event: Committed,
    symptom: Symptom,
) -> Narrowed | None:
    """``event``'s batch made again on ``parent`` without the fixes that show ``symptom``; None
    when it cannot be (one issue, a fixer that is not deterministic, tests not selectable by id,
    every issue to blame, or more than :data:`MAX_CULPRITS` groups of them)."""
    batch = view.batches[event.batch_id]
    issues = [view.discovered[i] for i in batch.issue_ids if i in view.discovered]
    if len(issues) < 2 or not deterministic(p.chain(state)):
        return None
    with p.tree(state, "narrow", sha=parent) as wt:
        trial = _Trial(p, state, wt, parent, batch)
        if not trial.breaks_as(issues, event.sha, symptom):  # alone on its parent: nothing
            return None
        start = landed_tip(state)  # the iteration's start: where its issues' lines were read
        places = symptom.places(p.objects(state, start), start)
        rest, culprits = suspects_first(issues, places), []  # the nearest tried first
        for _ in range(MAX_CULPRITS):  # the fixes of all of rest show the symptom
            near = [0] if distance(rest[0], places) is not None else []  # a suspect: alone
            first = first_showing(len(rest), partial(_prefix_breaks, trial, rest, symptom), near)
            group = trial.resolved_with(rest[first], rest)
            culprits += [i for i in rest if i.fingerprint in group]
            rest = [i for i in rest if i.fingerprint not in group]
            if not rest:
                return None
            still = trial.breaks(rest, symptom)
            if still is None:
                return None
            if not still:
                rest = [i for i in issues if i in rest]  # in the batch's order again
                sha = _commit(p, state, wt, batch, event, rest)
                if sha is None:
                    return None
                log.info(
                    "stack batch narrowed",
                    batch_id=batch.batch_id,
                    culprits=len(culprits),
                    kept=len(rest),
                )
                return Narrowed(sha=sha, culprits=culprits, kept=rest)
    return None


def _prefix_breaks(trial: _Trial, issues: Sequence[IssueRecord], symptom: Symptom, k: int) -> bool:
    """Whether the fixes of ``issues[: k + 1]`` show ``symptom``."""
    return bool(trial.breaks(issues[: k + 1], symptom))


def _commit(
    p: Pipeline,
    state: RunState,
    wt: Repo,
    batch: BatchPlanned,
    event: Committed,
    kept: Sequence[IssueRecord],
) -> str | None:
    """The worktree's fix of ``kept`` committed on the parent (the project's hooks judge it,
    unless ``git.run_hooks`` is off), its message the batch's own for those issues; its counts
    are measured when it lands."""
    wt.stage()
    files = [f for f in wt.git("diff", "--cached", "--name-only").splitlines() if f]
    message = commit_message(
        planned_of(batch, kept),
        event.counts_before,
        event.counts_after,
        state.fixer,
        state.run_id,
        files=files,
        fixed=len(kept),
        verified=STAGED,
    )
    try:
        wt.commit_as(message, event.sha, run_hooks=p.config.git.run_hooks)
    except GitError as exc:
        log.info("narrowed commit refused", batch_id=batch.batch_id, error=str(exc)[-200:])
        return None
    return wt.head()
