"""Whether a batch made the project better: issue sets and test outcomes before and after.

Pure on purpose, like the scoring (``health.py``).  Issues are compared by fingerprint (as a
multiset, so a moved line is neither fixed nor new), then an unmatched new issue of the same tool,
rule and file as an unmatched fixed one is taken for that issue, rewritten; tests are compared by
id when both sides have outcomes, else by counts.  A batch is kept only when its own issues are
gone and nothing regressed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

import msgspec

from airfix.events.core.health import TestCounts
from airfix.events.schema import IssueRecord

__all__ = ["Comparison", "Verdict", "compare", "judge_batch", "regressed", "regressed_tests"]


class Comparison(msgspec.Struct, frozen=True, kw_only=True):
    """Issue sets before and after, matched by fingerprint."""

    fixed: list[IssueRecord]  # in before, not after (records from before)
    new: list[IssueRecord]  # in after, not before (records from after)
    remaining: list[IssueRecord]  # in both (records from after, so current lines)
    rewritten: list[IssueRecord] = []  # before records whose message an edit changed (still there)

    @property
    def fixed_fingerprints(self) -> list[str]:
        return sorted({i.fingerprint for i in self.fixed})

    @property
    def new_fingerprints(self) -> list[str]:
        return sorted({i.fingerprint for i in self.new})


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """Keep or roll back a batch, and why."""

    keep: bool
    reasons: list[str]  # why it is rolled back (empty when kept)
    fixed: int = 0  # of the batch's own issues
    unfixed: int = 0
    new: int = 0  # issues anywhere that were not there before
    comparison: Comparison | None = None


def _by_fingerprint(issues: Iterable[IssueRecord]) -> dict[str, list[IssueRecord]]:
    groups: dict[str, list[IssueRecord]] = {}
    for issue in issues:
        groups.setdefault(issue.fingerprint, []).append(issue)
    for group in groups.values():
        if len(group) > 1:
            group.sort(key=lambda i: (i.file, i.line, i.column, i.issue_id))
    return groups


def compare(
    before_issues: Iterable[IssueRecord], after_issues: Iterable[IssueRecord]
) -> Comparison:
    """Match issues by fingerprint, counting duplicates (a multiset).

    A fingerprint seen b times before and a times after has min(a, b) remaining, b - a fixed
    (when b > a) or a - b new (when a > b); within a fingerprint the first ones in
    (file, line, column, issue_id) order are the ones matched.  Line numbers play no part.

    Then, as code-review tools match issues whose text changed: an unmatched new issue of the
    same tool, rule and file as an unmatched fixed one is that issue, rewritten (merging
    ``from typing import A`` with ``... import B`` changes the message of the deprecated-import
    issue on that statement); it is neither new nor fixed.
    """
    before = _by_fingerprint(before_issues)
    after = _by_fingerprint(after_issues)
    fixed: list[IssueRecord] = []
    new: list[IssueRecord] = []
    remaining: list[IssueRecord] = []
    for fp in sorted(before.keys() | after.keys()):
        b = before.get(fp, [])
        a = after.get(fp, [])
        common = min(len(a), len(b))
        remaining.extend(a[:common])
        fixed.extend(b[common:])
        new.extend(a[common:])
    gone: dict[tuple[str, str, str], list[IssueRecord]] = {}
    for issue in fixed:
        gone.setdefault((issue.tool, issue.rule, issue.file), []).append(issue)
    still_new: list[IssueRecord] = []
    rewritten: list[IssueRecord] = []
    for issue in new:
        pool = gone.get((issue.tool, issue.rule, issue.file))
        if pool:
            rewritten.append(pool.pop(0))
            remaining.append(issue)
        else:
            still_new.append(issue)
    kept = {id(i) for i in rewritten}
    return Comparison(
        fixed=[i for i in fixed if id(i) not in kept],
        new=still_new,
        remaining=remaining,
        rewritten=rewritten,
    )


def regressed(before_tests: TestCounts | None, after_tests: TestCounts | None) -> list[str]:
    """How the tests got worse (empty when they did not).

    Fewer passing tests, more failing (failed + errors), fewer tests run (deleted or no longer
    collected) and more skipped (a test skipped to make it "pass") all count.
    """
    if before_tests is None:
        return []
    if after_tests is None:
        return ["tests were not measured after the fix"]
    b, a = before_tests, after_tests
    out: list[str] = []
    if a.passed < b.passed:
        out.append(f"passing tests dropped from {b.passed} to {a.passed}")
    if a.failing > b.failing:
        out.append(f"failing tests rose from {b.failing} to {a.failing}")
    if a.total < b.total:
        out.append(f"tests run dropped from {b.total} to {a.total}")
    if a.skipped > b.skipped:
        out.append(f"skipped tests rose from {b.skipped} to {a.skipped}")
    return out


def regressed_tests(
    before: Mapping[str, str],
    after: Mapping[str, str],
    *,
    flaky: Collection[str] = (),
    tests_may_go: bool = False,
) -> list[str]:
    """How the tests got worse, judged test by test (empty when they did not).

    A test that passed before and now fails or errors, no longer runs (deleted, renamed or no
    longer collected) or is now skipped is a regression; so is a file that no longer collects.
    Flaky tests (outcomes that change with no change to the code) are never held against a
    change.  Each test counts once, whatever its outcome.  ``tests_may_go``
    (``guards.allow_test_deletion``) lets tests disappear or become skipped.
    """
    ignore = set(flaky)
    broken: list[str] = []
    gone: list[str] = []
    skipped: list[str] = []
    for test, outcome in sorted(before.items()):
        if outcome != "passed" or test in ignore:
            continue
        now = after.get(test)
        if now is None:
            if not tests_may_go:
                gone.append(test)
        elif now in ("failed", "error"):
            broken.append(test)
        elif now == "skipped" and not tests_may_go:
            skipped.append(test)
    uncollected = sorted(
        t
        for t, o in after.items()
        if o == "error" and t not in before and "::" not in t and t not in ignore
    )

    def listed(tests: list[str]) -> str:
        more = f" and {len(tests) - 5} more" if len(tests) > 5 else ""
        return ", ".join(tests[:5]) + more

    out = []
    if broken:
        out.append(f"{len(broken)} test(s) that passed now fail: {listed(broken)}")
    if gone:
        out.append(
            f"{len(gone)} test(s) that passed no longer run (deleted or not collected): "
            f"{listed(gone)}"
        )
    if skipped:
        out.append(f"{len(skipped)} test(s) that passed are now skipped: {listed(skipped)}")
    if uncollected:
        out.append(f"{len(uncollected)} test file(s) no longer collect: {listed(uncollected)}")
    return out


def judge_batch(
    batch_issues: Iterable[IssueRecord],
    before_issues: Iterable[IssueRecord],
    after_issues: Iterable[IssueRecord],
    *,
    before_tests: TestCounts | None = None,
    after_tests: TestCounts | None = None,
    before_outcomes: Mapping[str, str] | None = None,
    after_outcomes: Mapping[str, str] | None = None,
    flaky: Collection[str] = (),
    tests_may_go: bool = False,
    tool_errors: Sequence[str] = (),
    require_all: bool = True,
) -> Verdict:
    """Keep a batch only if its own issues are gone and nothing regressed.

    ``batch_issues`` are the batch's issues (from ``before_issues``).  Its own issues are gone when,
    for each of their fingerprints, the after count is at most the before count minus the batch's
    count.  With ``require_all=False`` a batch that fixed at least one of its issues (and
    regressed nothing) is kept.  Any new issue anywhere, any test regression or a tool error in
    the verifying check rolls the batch back.  Tests are judged by id when both sides have
    outcomes (:func:`regressed_tests`; issues of test runners then carry no extra weight), else
    by counts (:func:`regressed`).
    """
    by_id = bool(before_outcomes) and after_outcomes is not None
    before_list = list(before_issues)
    after_list = list(after_issues)
    comparison = compare(before_list, after_list)
    # judged by id, a failing test is a test regression (or flaky), not a "new issue" twice over
    new = [i for i in comparison.new if not (by_id and i.phase == "test")]
    own = Counter(i.fingerprint for i in batch_issues)
    before_n = Counter(i.fingerprint for i in before_list)
    after_n = Counter(i.fingerprint for i in after_list)

    unfixed = 0
    for fp, k in own.items():
        allowed = max(0, before_n.get(fp, 0) - k)
        unfixed += min(k, max(0, after_n.get(fp, 0) - allowed))
    rewritten_own = Counter(i.fingerprint for i in comparison.rewritten if i.fingerprint in own)
    total = sum(own.values())
    unfixed = min(total, unfixed + sum(rewritten_own.values()))  # changed, not gone
    fixed = total - unfixed

    reasons: list[str] = []
    if tool_errors:
        reasons.append("verification could not measure: " + "; ".join(tool_errors))
    if unfixed and (require_all or fixed == 0):
        reasons.append(f"{unfixed} of the batch's {total} issue(s) remain")
    if new:
        shown = ", ".join(
            f"{i.rule or i.tool} {i.file}:{i.line}" if i.file else (i.rule or i.tool)
            for i in new[:5]
        )
        more = f" and {len(new) - 5} more" if len(new) > 5 else ""
        reasons.append(f"{len(new)} new issue(s): {shown}{more}")
    if by_id:
        reasons.extend(
            regressed_tests(
                before_outcomes or {}, after_outcomes or {}, flaky=flaky, tests_may_go=tests_may_go
            )
        )
    else:
        reasons.extend(regressed(before_tests, after_tests))
    return Verdict(
        keep=not reasons,
        reasons=reasons,
        fixed=fixed,
        unfixed=unfixed,
        new=len(new),
        comparison=comparison,
    )
