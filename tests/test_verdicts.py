"""How a batch is judged: guards on what the diff did, tests by id, the ledger of an iteration,
and the lessons the planner takes from failed batches.  Pure functions, no I/O."""

from __future__ import annotations

import datetime as dt

from airfix.events.core.anticheat import GuardPolicy, check_diff
from airfix.events.core.ledger import explain_remaining, iteration_view, lessons
from airfix.events.core.planning import plan_batches
from airfix.events.core.verdicts import judge_batch, regressed_tests
from airfix.events.schema import (
    BatchPlanned,
    Committed,
    FixFailed,
    FixRolledBack,
    HealthChecked,
    IssueRecord,
    IssuesDiscovered,
    StackDropped,
    ToolResult,
)


def issue(
    n: int,
    rule: str = "F401",
    file: str = "a.py",
    tool: str = "ruff",
    fp: str | None = None,
    phase: str = "lint",
) -> IssueRecord:
    return IssueRecord(
        issue_id=f"{fp or rule + str(n)}:0",
        fingerprint=fp or f"{rule}{n}",
        tool=tool,
        phase=phase,
        file=file,
        line=n,
        rule=rule,
    )  # type: ignore[arg-type]


def diff(file: str, removed: list[str], added: list[str]) -> str:
    body = [f"-{line}" for line in removed] + [f"+{line}" for line in added]
    return "\n".join(
        [f"diff --git a/{file} b/{file}", f"--- a/{file}", f"+++ b/{file}", "@@ -1 +1 @@", *body]
    )


# ---------------------------------------------------------------- guards


def test_a_respaced_or_moved_suppression_is_not_new() -> None:
    moved = diff(
        "a.py",
        ["x = compute()  # noqa: E501", "    # pragma: no cover"],
        ["x = compute() # noqa:  E501", "# pragma: no cover"],
    )
    assert check_diff(moved) == []


def test_a_suppression_on_a_line_whose_code_the_fix_changed_is_not_new() -> None:
    changed = diff(
        "a.py",
        ["tags: List[str] = []  # type: ignore[assignment]"],
        ["tags: list[str] = []  # type: ignore[assignment]"],
    )
    assert check_diff(changed) == []


def test_an_added_suppression_is_named_unless_allowed() -> None:
    added = diff("a.py", ["import os"], ["import os  # noqa: F401"])
    assert check_diff(added) == ["adds a suppression in a.py: import os  # noqa: F401"]
    assert check_diff(added, GuardPolicy(allow_suppressions=True)) == []
    twice = diff("a.py", ["x = 1  # noqa: E501"], ["x = 1  # noqa: E501", "y = 2  # noqa: E501"])
    assert len(check_diff(twice)) == 1  # one more of the same comment than before


def test_skip_markers_and_removed_test_functions_are_left_to_the_per_test_verdict() -> None:
    respaced = diff(
        "tests/test_a.py",
        ['@pytest.mark.skipif(sys.version_info < (3, 8), reason="old")'],
        ['@pytest.mark.skipif(sys.version_info<(3, 8), reason="old")'],
    )
    shadowed = diff("tests/test_a.py", ["def test_twice():", "    assert True"], [])
    assert check_diff(respaced) == [] and check_diff(shadowed) == []


def test_config_edits_are_rejected_unless_allowed() -> None:
    edit = diff("pyproject.toml", ["select = ['E']"], ["select = []"])
    assert check_diff(edit) == ["edits lint/type/test configuration pyproject.toml"]
    assert check_diff(edit, GuardPolicy(allow_config_edits=True)) == []


# ---------------------------------------------------------------- tests by id


def test_regressions_are_named_test_by_test() -> None:
    before = {
        "t::a": "passed",
        "t::b": "passed",
        "t::c": "passed",
        "t::d": "failed",
        "t::e": "passed",
    }
    after = {
        "t::a": "failed",
        "t::c": "skipped",
        "t::d": "failed",
        "t::e": "passed",
        "u.py": "error",
    }
    reasons = regressed_tests(before, after)
    assert reasons == [
        "1 test(s) that passed now fail: t::a",
        "1 test(s) that passed no longer run (deleted or not collected): t::b",
        "1 test(s) that passed are now skipped: t::c",
        "1 test file(s) no longer collect: u.py",
    ]
    assert regressed_tests(before, after, flaky={"t::a"}, tests_may_go=True) == [
        "1 test file(s) no longer collect: u.py"
    ]
    assert regressed_tests(before, before) == []


def test_one_test_fixed_and_another_broken_is_rejected_though_the_counts_are_equal() -> None:
    before = {"t::a": "passed", "t::b": "failed"}
    after = {"t::a": "failed", "t::b": "passed"}
    fix = issue(1)
    verdict = judge_batch([fix], [fix], [], before_outcomes=before, after_outcomes=after)
    assert not verdict.keep and verdict.reasons == ["1 test(s) that passed now fail: t::a"]


def test_a_flaky_test_does_not_judge_a_batch_and_its_issue_is_not_new() -> None:
    fix = issue(1)
    flaky_issue = issue(9, rule="failure", tool="pytest", phase="test", fp="t::a")
    verdict = judge_batch(
        [fix],
        [fix],
        [flaky_issue],
        before_outcomes={"t::a": "passed"},
        after_outcomes={"t::a": "failed"},
        flaky={"t::a"},
    )
    assert verdict.keep, verdict.reasons


# ---------------------------------------------------------------- the ledger

AT = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)


def health(
    iteration: int, outcomes: dict[str, str], counts: dict[str, int], flaky: list[str] = ()
) -> HealthChecked:
    tools = [ToolResult(tool=t, status="failed", counts={"issues": n}) for t, n in counts.items()]
    return HealthChecked(
        iteration=iteration, tools=tools, test_outcomes=outcomes, flaky=list(flaky)
    )


def test_the_view_applies_each_commit_to_the_opening_check() -> None:
    a, b, c = issue(1), issue(2, rule="UP006"), issue(3, rule="UP006", fp="UP006x")
    events = [
        health(1, {"t::x": "failed", "t::y": "passed"}, {"ruff": 3, "pytest": 1}),
        IssuesDiscovered(iteration=1, issues=[a, b, c]),
        BatchPlanned(
            iteration=1, batch_id="b1", phase="lint", mode="smart", issue_ids=[a.issue_id]
        ),
        BatchPlanned(
            iteration=1,
            batch_id="b2",
            phase="lint",
            mode="smart",
            issue_ids=[b.issue_id, c.issue_id],
        ),
        Committed(
            batch_id="b1",
            sha="s1",
            resolved=[a.fingerprint, c.fingerprint],
            tests_fixed=["t::x"],
            counts_after={"ruff": 1, "pytest": 0},
            flaky=["t::z"],
        ),
    ]
    view = iteration_view(events, 1)
    assert view.issues == [b]
    assert view.outcomes == {"t::x": "passed", "t::y": "passed"}
    assert view.counts == {"ruff": 1, "pytest": 0}
    assert view.flaky == ["t::z"] and set(view.batches) == {"b1", "b2"}
    assert iteration_view(events[:2], 1).counts == {"ruff": 3, "pytest": 1}


def test_lessons_set_aside_a_single_kind_of_issue_and_split_a_mixed_batch() -> None:
    a, b, c = issue(1), issue(2, rule="E711"), issue(3, rule="UP006")
    events = [
        IssuesDiscovered(iteration=1, issues=[a, b, c]),
        BatchPlanned(
            iteration=1, batch_id="b1", phase="lint", mode="smart", issue_ids=[a.issue_id]
        ),
        BatchPlanned(
            iteration=1,
            batch_id="b2",
            phase="lint",
            mode="smart",
            issue_ids=[b.issue_id, c.issue_id],
        ),
        FixRolledBack(batch_id="b1", reason="1 test(s) that passed now fail: t::a"),
        FixFailed(batch_id="b2", fixer="autofix", reason="the fixer changed nothing"),
    ]
    learned = lessons(events)
    assert set(learned.set_aside) == {a.fingerprint}
    assert "b1 was rolled back: 1 test(s) that passed now fail" in learned.set_aside[a.fingerprint]
    assert learned.alone == sorted([b.fingerprint, c.fingerprint])
    again = [
        *events,
        IssuesDiscovered(iteration=2, issues=[b, c]),
        BatchPlanned(
            iteration=2, batch_id="b3", phase="lint", mode="individual", issue_ids=[b.issue_id]
        ),
        FixRolledBack(batch_id="b3", reason="new issue", culprits=[]),
    ]
    assert set(lessons(again).set_aside) == {a.fingerprint, b.fingerprint}
    blamed = [*events[:3], FixRolledBack(batch_id="b2", reason="x", culprits=[c.fingerprint])]
    assert set(lessons(blamed).set_aside) == {c.fingerprint} and lessons(blamed).alone == []


def test_a_culprit_sets_aside_what_its_one_fix_removed_of_its_rule() -> None:
    """ruff fixes each unused name of one import statement by removing the whole statement: the
    dropped commit for one of them resolved the others too.  Planned alone, each would make the
    same edit and break the same test, so they are set aside with it; the import block's order
    (another rule) that the same commit resolved stays planned."""
    utc, ambiguous, exists = (issue(n, file="t.py") for n in (1, 2, 3))
    order = issue(4, rule="I001", file="t.py")
    events = [
        IssuesDiscovered(iteration=2, issues=[utc, ambiguous, exists, order]),
        *(
            BatchPlanned(
                iteration=2,
                batch_id=f"b{k}",
                phase="lint",
                mode="individual",
                issue_ids=[i.issue_id],
            )
            for k, i in enumerate((utc, ambiguous, exists, order), 1)
        ),
        Committed(
            batch_id="b1",
            sha="c1",
            resolved=[
                utc.fingerprint,
                ambiguous.fingerprint,
                exists.fingerprint,
                order.fingerprint,
            ],
            staged=True,
        ),
        StackDropped(batch_id="b1", reason="the tests on the stack's tip broke (t::all)"),
    ]
    learned = lessons(events)
    assert set(learned.set_aside) == {utc.fingerprint, ambiguous.fingerprint, exists.fingerprint}
    assert learned.set_aside[ambiguous.fingerprint].endswith("(its fix removed this issue too)")
    assert "b1 was dropped from the stack" in learned.set_aside[exists.fingerprint]
    unblamed = [*events[:-1], StackDropped(batch_id="b1", reason="conflict", blamed=False)]
    assert lessons(unblamed).set_aside == {}  # taken out without blame: nothing learned


def test_a_narrowed_batch_sets_aside_its_culprits_only() -> None:
    """A batch narrowed on the stack names the issues whose fixes broke the tests: those are
    set aside, its other issues (which landed) are neither set aside nor planned alone."""
    a, b, c = (issue(n, rule="UP006", file=f"{n}.py") for n in (1, 2, 3))
    events = [
        IssuesDiscovered(iteration=1, issues=[a, b, c]),
        BatchPlanned(
            iteration=1,
            batch_id="b1",
            phase="lint",
            mode="smart",
            issue_ids=[a.issue_id, b.issue_id, c.issue_id],
        ),
        Committed(batch_id="b1", sha="c1", resolved=[a.fingerprint, b.fingerprint], staged=True),
        StackDropped(batch_id="b1", reason="t broke", culprits=[b.fingerprint], narrowed="n1"),
    ]
    learned = lessons(events)
    assert set(learned.set_aside) == {b.fingerprint} and learned.alone == []
    assert "b1 was narrowed on the stack: t broke" in learned.set_aside[b.fingerprint]


def test_the_plan_puts_alone_issues_in_batches_of_their_own() -> None:
    issues = [issue(n, rule="UP006") for n in range(1, 5)]
    plan = plan_batches(
        issues,
        mode="smart",
        iteration=1,
        run_id="r",
        max_cleanup_batch_size=50,
        max_location_batch_size=20,
        batches_per_phase={},
        alone={issues[0].fingerprint},
    )
    assert [len(b.issue_ids) for b in plan.batches] == [3, 1]
    assert plan.batches[1].issue_ids == [issues[0].issue_id] and plan.batches[1].kind == "single"


def test_what_is_left_says_why() -> None:
    a, b, c, d = issue(1), issue(2, rule="arg-type", tool="mypy"), issue(3), issue(4)
    left = explain_remaining(
        [a, b, c, d],
        fixable=lambda i: i.tool == "ruff",
        set_aside={a.fingerprint: "its batch b1 was rolled back: x"},
        planned=[c.issue_id],
        fixer="autofix",
        limit="max_iterations=1 reached",
    )
    reasons = {(r.tool, r.reason): r.count for r in left}
    assert reasons == {
        ("ruff", "its batch b1 was rolled back: x"): 1,
        ("mypy", "no fixer in the chain 'autofix' can fix it"): 1,
        ("ruff", "the run ended before it was fixed (max_iterations=1 reached)"): 1,
        (
            "ruff",
            "left out of the plan by a cap or by the end of the run (max_iterations=1 reached)",
        ): 1,
    }
