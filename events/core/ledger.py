"""What is open in a run right now, and what earlier attempts taught: pure folds of its events.

Why a fold and not a re-measurement: every commit was verified by a measurement, and the
``Committed`` event records what that measurement found changed (issues resolved, tests that
started to pass, per-tool counts).  So the state a batch is judged against, its parent commit's
measurement, is the iteration's opening check with each commit's changes applied in order, and
any worker can rebuild it from the log alone.

Lessons: a batch that was rolled back or failed is not planned again as it was.  When the
verdict names the issues to blame (``FixRolledBack.culprits``), or the batch held a single kind of
issue, those issues are set aside with the reason; otherwise the batch's issues are planned one
by one next time, so one bad issue cannot sink the others, nor end the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import msgspec

from airfix.events.schema import (
    BatchPlanned,
    Committed,
    Event,
    FixFailed,
    FixRolledBack,
    HealthChecked,
    IssueRecord,
    IssuesDiscovered,
    Remaining,
    StackDropped,
)

__all__ = ["IterationView", "Lessons", "explain_remaining", "iteration_view", "lessons"]

PASSED = "passed"


class IterationView(msgspec.Struct, frozen=True, kw_only=True):
    """The current iteration as the next step must see it."""

    iteration: int
    issues: list[IssueRecord]  # open now: the opening check's minus what commits resolved
    discovered: dict[str, IssueRecord]  # the opening check's issues by id (what batches name)
    batches: dict[str, BatchPlanned]
    outcomes: dict[str, str]  # each test's outcome now (the opening check's, updated by commits)
    counts: dict[str, int]  # issues per tool in the latest measurement (the parent commit's)
    opening_counts: dict[str, int]  # issues per tool at the iteration's start (its base's)
    flaky: list[str]  # every test found flaky so far in the run: never used to judge

    @property
    def tests_measured(self) -> bool:
        return bool(self.outcomes)


def _without(issues: list[IssueRecord], fingerprints: Iterable[str]) -> list[IssueRecord]:
    """``issues`` minus one occurrence per fingerprint given (the first in file order)."""
    out = list(issues)
    for fp in fingerprints:
        for k, issue in enumerate(out):
            if issue.fingerprint == fp:
                del out[k]
                break
    return out


def _issue_counts(ev: HealthChecked) -> dict[str, int]:
    return {
        t.tool: int(t.counts.get("issues", 0))
        for t in ev.tools
        if t.status not in ("tool_error", "skipped")
    }


def iteration_view(events: Sequence[Event], iteration: int) -> IterationView:
    """Fold a run's events into the view of ``iteration`` (its opening check onwards)."""
    issues: list[IssueRecord] = []
    discovered: dict[str, IssueRecord] = {}
    batches: dict[str, BatchPlanned] = {}
    outcomes: dict[str, str] = {}
    counts: dict[str, int] = {}
    opening: dict[str, int] = {}
    flaky: set[str] = set()
    opened = False
    for ev in events:
        if isinstance(ev, HealthChecked | Committed | FixRolledBack):
            flaky.update(ev.flaky)
        if isinstance(ev, HealthChecked) and ev.iteration == iteration and not opened:
            opened = True
            outcomes = dict(ev.test_outcomes)
            counts = opening = _issue_counts(ev)
        elif isinstance(ev, IssuesDiscovered) and ev.iteration == iteration:
            issues = list(ev.issues)
            discovered = {i.issue_id: i for i in ev.issues}
        elif isinstance(ev, BatchPlanned) and ev.iteration == iteration:
            batches[ev.batch_id] = ev
        elif isinstance(ev, Committed) and ev.batch_id in batches:
            issues = _without(issues, ev.resolved)
            counts = {**counts, **ev.counts_after}
            outcomes.update(dict.fromkeys(ev.tests_fixed, PASSED))
    return IterationView(
        iteration=iteration,
        issues=issues,
        discovered=discovered,
        batches=batches,
        outcomes=outcomes,
        counts=counts,
        opening_counts=opening,
        flaky=sorted(flaky),
    )


class Lessons(msgspec.Struct, frozen=True, kw_only=True):
    """What failed attempts taught the planner."""

    set_aside: dict[str, str]  # fingerprint -> why it is no longer planned
    alone: list[str]  # fingerprints to plan one issue per batch


def lessons(events: Sequence[Event]) -> Lessons:
    """Set-aside and one-by-one issues from every rolled-back or failed batch of the run.

    A culprit's commit may have resolved issues of its rule beyond its batch's: one fix can serve
    several diagnostics (ruff removes a whole import statement for each unused name in it).  Those
    are set aside with it: planned alone, each would make the same edit and break the same tests.
    (Other rules' issues it resolved on the way, an import block's order, stay planned.)"""
    fingerprint_of: dict[str, str] = {}
    rule_of: dict[str, tuple[str, str]] = {}
    members: dict[str, list[str]] = {}
    resolved: dict[str, list[str]] = {}  # batch -> what its commit resolved
    aside: dict[str, str] = {}
    alone: set[str] = set()
    for ev in events:
        if isinstance(ev, IssuesDiscovered):
            fingerprint_of.update({i.issue_id: i.fingerprint for i in ev.issues})
            rule_of.update({i.fingerprint: (i.tool, i.rule) for i in ev.issues})
        elif isinstance(ev, BatchPlanned):
            members[ev.batch_id] = [fingerprint_of.get(i, i) for i in ev.issue_ids]
        elif isinstance(ev, Committed):
            resolved[ev.batch_id] = list(ev.resolved)
        elif isinstance(ev, FixRolledBack | FixFailed | StackDropped):
            if isinstance(ev, StackDropped) and not ev.blamed:
                continue  # it merely conflicted with a dropped one: planned again as it was
            fps = members.get(ev.batch_id, [])
            what = {FixRolledBack: "rolled back", FixFailed: "failed"}.get(
                type(ev),
                "narrowed on the stack"
                if getattr(ev, "narrowed", "")
                else "dropped from the stack",
            )
            reason = f"its batch {ev.batch_id} was {what}: {ev.reason}"
            culprits = [fp for fp in getattr(ev, "culprits", []) if fp in fps]
            if culprits:
                aside.update(dict.fromkeys(culprits, reason))
            elif len(set(fps)) <= 1 or all(fp in alone for fp in fps):
                aside.update(dict.fromkeys(fps, reason))
                rules = {rule_of.get(fp) for fp in fps}
                same_edit = [
                    fp
                    for fp in resolved.get(ev.batch_id, [])
                    if fp not in fps and rule_of.get(fp, ("", "?")) in rules
                ]
                aside.update(dict.fromkeys(same_edit, f"{reason} (its fix removed this issue too)"))
            else:
                alone.update(fps)
    return Lessons(set_aside=aside, alone=sorted(alone - aside.keys()))


def explain_remaining(
    issues: Sequence[IssueRecord],
    *,
    fixable: Callable[[IssueRecord], bool],
    set_aside: Mapping[str, str],
    planned: Iterable[str],
    fixer: str,
    limit: str,
) -> list[Remaining]:
    """Why each issue a finished run leaves was left, grouped by tool, rule and reason.

    ``fixable`` says whether the fixer chain can repair an issue at all; ``planned`` are the issue
    ids some batch took on; ``limit`` is why the run stopped (used for issues nothing else
    explains: the run ended before their turn came).
    """
    planned_ids = set(planned)
    groups: dict[tuple[str, str, str], list[IssueRecord]] = {}
    for issue in issues:
        if issue.fingerprint in set_aside:
            reason = set_aside[issue.fingerprint]
        elif not fixable(issue):
            reason = f"no fixer in the chain {fixer!r} can fix it"
        elif issue.issue_id not in planned_ids:
            reason = f"left out of the plan by a cap or by the end of the run ({limit})"
        else:
            reason = f"the run ended before it was fixed ({limit})"
        groups.setdefault((issue.tool, issue.rule or "-", reason), []).append(issue)
    out = []
    for (tool, rule, reason), members in sorted(
        groups.items(), key=lambda kv: (-len(kv[1]), kv[0])
    ):
        files = sorted({i.file for i in members if i.file})
        out.append(
            Remaining(tool=tool, rule=rule, count=len(members), reason=reason, files=files[:3])
        )
    return out
