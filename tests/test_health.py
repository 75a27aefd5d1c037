"""Unit and property tests of health scoring and verification (``airfix.events.core.health``)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airfix.config import CompletionCriteriaConfig
from airfix.events.core.health import (
    BUILD_SCALE,
    LINT_SCALE,
    TestCounts,
    health_score,
    is_healthy,
    should_run_dynamic,
    unhealthy_reasons,
)
from airfix.events.core.verdicts import (
    Comparison,
    compare,
    judge_batch,
    regressed,
)
from airfix.events.schema import IssueRecord, ToolResult


def tool(name: str, status: str = "passed", **counts: int) -> ToolResult:
    return ToolResult(tool=name, status=status, counts=counts)  # type: ignore[arg-type]


def clean() -> list[ToolResult]:
    return [tool("mypy"), tool("ruff"), tool("pytest", passed=20)]


def rec(fp: str, *, line: int = 1, file: str = "a.py", n: str = "", rule: str = "F401"):
    return IssueRecord(
        issue_id=n or f"{fp}@{line}",
        fingerprint=fp,
        tool="ruff",
        phase="lint",
        file=file,
        line=line,
        rule=rule,
    )


# ---------------------------------------------------------------- scoring


def test_no_tools_scores_zero_and_is_unhealthy():
    r = health_score([])
    assert r.score == 0.0 and r.parts == {} and not r.healthy
    assert r.reasons == ["nothing was measured"]
    assert r.static_score == 1.0  # no static tool: nothing blocks the dynamic checks


def test_perfect_scores_one_and_is_healthy():
    r = health_score(clean(), coverage=1.0)
    assert r.score == 1.0 and r.static_score == 1.0
    assert r.parts == {"build": 1.0, "lint": 1.0, "test": 1.0, "coverage": 1.0}
    assert r.passed == {"static": True, "build": True, "lint": True, "test": True}
    assert r.healthy and r.reasons == [] and r.tool_errors == []
    assert is_healthy(r, CompletionCriteriaConfig())


def test_tool_error_is_never_healthy():
    r = health_score(
        [
            tool("mypy"),
            ToolResult(tool="ruff", status="tool_error", error="ruff: not found"),
            tool("pytest", passed=5),
        ]
    )
    assert not r.healthy
    assert r.tool_errors == ["ruff: ruff: not found"]
    assert r.parts["lint"] == 0.0 and r.passed["lint"] is False
    assert any("could not measure" in x for x in r.reasons)
    lenient = CompletionCriteriaConfig(
        build_passes=False, min_test_pass_rate=0.0, max_lint_errors=10**6
    )
    assert not is_healthy(r, lenient)


def test_tool_error_in_test_runner_zeroes_test_part():
    r = health_score(
        [tool("mypy"), tool("ruff"), ToolResult(tool="pytest", status="tool_error")],
        tests=TestCounts(passed=10),
    )
    assert r.parts["test"] == 0.0 and r.passed["test"] is False and not r.healthy
    assert r.tool_errors == ["pytest: tool error"]


def test_build_and_lint_decay():
    r = health_score(
        [tool("mypy", "failed", error=10), tool("ruff", "failed", error=50)],
        tests=TestCounts(passed=1),
    )
    assert r.parts["build"] == pytest.approx(0.5) and r.parts["lint"] == pytest.approx(0.5)
    assert r.static_score == pytest.approx(0.5)
    assert r.score == pytest.approx((0.4 * 0.5 + 0.2 * 0.5 + 0.3 * 1.0) / 0.9)
    assert r.build_errors == 10 and r.lint_errors == 50
    assert r.passed["build"] is False and r.passed["lint"] is False


def test_failed_tool_without_counts_counts_one_error():
    r = health_score([tool("mypy", "failed"), tool("ruff")], tests=TestCounts(passed=3))
    assert r.build_errors == 1 and not r.healthy
    assert r.parts["build"] == pytest.approx(BUILD_SCALE / (BUILD_SCALE + 1))


def test_warnings_are_not_scored_or_gated():
    r = health_score([tool("mypy"), tool("ruff", warning=40, info=7)], tests=TestCounts(passed=3))
    assert r.lint_errors == 0 and r.parts["lint"] == 1.0 and r.healthy


def test_zero_tests_is_not_a_pass():
    r = health_score([tool("mypy"), tool("ruff"), tool("pytest", "failed")])
    assert r.tests == TestCounts() and r.parts["test"] == 0.0
    assert r.passed["test"] is False and not r.healthy
    assert "no test ran (0 passed, 0 failed)" in r.reasons


def test_tests_taken_from_tool_counts_and_summed():
    r = health_score(
        [tool("pytest", passed=8, failed=1, errors=1, skipped=3), tool("jest", passed=10)]
    )
    assert r.tests == TestCounts(passed=18, failed=1, errors=1, skipped=3)
    assert r.parts["test"] == pytest.approx(18 / 20)


def test_explicit_tests_win_over_tool_counts():
    r = health_score([tool("pytest", passed=1, failed=9)], tests=TestCounts(passed=10))
    assert r.parts["test"] == 1.0


def test_test_pass_rate_threshold():
    results = [tool("mypy"), tool("ruff")]
    r = health_score(results, tests=TestCounts(passed=94, failed=6))
    assert not r.healthy and "test pass rate 94.0% < min_test_pass_rate 95.0%" in r.reasons[0]
    r = health_score(results, tests=TestCounts(passed=95, failed=5))
    assert r.healthy


def test_dynamic_skipped_when_static_fails_the_gate():
    r = health_score([tool("mypy", "failed", error=40), tool("ruff")], static_pass_threshold=0.6)
    assert r.static_score < 0.6 and r.dynamic_skipped
    assert r.parts["test"] == 0.0 and r.passed["static"] is False and not r.healthy
    assert any("dynamic checks skipped" in x for x in r.reasons)
    assert not should_run_dynamic(r.static_score, 0.6)
    assert should_run_dynamic(r.static_score, 0.6, force=True)


def test_no_test_tool_and_passing_static_is_judged_on_what_it_has():
    r = health_score([tool("mypy"), tool("ruff")])
    assert "test" not in r.parts and not r.dynamic_skipped and r.healthy


def test_skipped_tools_are_not_measurements():
    r = health_score([ToolResult(tool="mypy", status="skipped")])
    assert r.parts == {} and not r.healthy


def test_unknown_tools_are_lint_unless_mapped():
    r = health_score([tool("mytool", error=2)])
    assert r.lint_errors == 2 and "lint" in r.parts
    r = health_score([tool("mytool", error=2)], tool_phases={"mytool": "build"})
    assert r.build_errors == 2 and "build" in r.parts and "lint" not in r.parts


def test_criteria_switches():
    results = [tool("mypy", error=2), tool("ruff", error=3)]
    tests = TestCounts(passed=5, failed=5)
    strict = health_score(results, tests=tests)
    assert len(strict.reasons) == 3 and not strict.healthy
    lenient = CompletionCriteriaConfig(
        build_passes=False, max_lint_errors=3, min_test_pass_rate=0.5
    )
    assert health_score(results, tests=tests, criteria=lenient).healthy
    assert is_healthy(strict, lenient)  # re-judged with other criteria
    assert unhealthy_reasons(strict, lenient) == []


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_coverage_must_be_a_fraction(bad):
    with pytest.raises(ValueError, match="coverage"):
        health_score(clean(), coverage=bad)


def test_coverage_part():
    r = health_score(clean(), coverage=0.5)
    assert r.parts["coverage"] == 0.5 and r.score == pytest.approx(0.95)


def test_should_run_dynamic_gate():
    assert should_run_dynamic(0.6, 0.6) and not should_run_dynamic(0.59, 0.6)
    assert not should_run_dynamic(math.nan, 0.0)


statuses = st.sampled_from(["passed", "failed", "tool_error", "skipped"])
tool_results = st.lists(
    st.builds(
        lambda name, status, err, warn, p, f: ToolResult(
            tool=name,
            status=status,
            counts={"error": err, "warning": warn, "passed": p, "failed": f},
        ),
        st.sampled_from(["mypy", "ruff", "pytest", "eslint", "other"]),
        statuses,
        st.integers(0, 10_000),
        st.integers(0, 100),
        st.integers(0, 100),
        st.integers(0, 100),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(tool_results, st.none() | st.floats(0, 1), st.floats(0, 1))
def test_score_bounds_and_consistency(results, coverage, threshold):
    r = health_score(results, coverage=coverage, static_pass_threshold=threshold)
    assert 0.0 <= r.score <= 1.0 and 0.0 <= r.static_score <= 1.0
    assert all(0.0 <= v <= 1.0 for v in r.parts.values())
    assert r.healthy == (r.reasons == [])
    if any(t.status == "tool_error" for t in results):
        assert not r.healthy and r.tool_errors
    if r.healthy:
        assert r.build_errors == 0 and r.lint_errors == 0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 100_000), st.integers(0, 100_000), st.integers(1, 1000))
def test_fewer_errors_always_score_higher(build, lint, fixed):
    worse = health_score([tool("mypy", error=build + fixed), tool("ruff", error=lint)])
    better = health_score([tool("mypy", error=build), tool("ruff", error=lint)])
    assert better.score > worse.score and better.static_score > worse.static_score
    worse = health_score([tool("mypy", error=build), tool("ruff", error=lint + fixed)])
    assert better.score > worse.score


def test_lint_scale_constant():
    r = health_score([tool("ruff", error=int(LINT_SCALE))])
    assert r.parts["lint"] == pytest.approx(0.5)


# ---------------------------------------------------------------- compare / regressed / judge


def test_compare_ignores_shifted_lines():
    before = [rec("a", line=3), rec("b", line=10), rec("c", line=20)]
    after = [rec("b", line=13), rec("c", line=23), rec("d", line=30, rule="E711")]
    c = compare(before, after)
    assert c.fixed_fingerprints == ["a"]
    assert c.new_fingerprints == ["d"]
    assert [(i.fingerprint, i.line) for i in c.remaining] == [("b", 13), ("c", 23)]


def test_an_issue_whose_message_an_edit_rewrote_is_neither_new_nor_fixed():
    """Merging two typing imports rewrites the deprecated-import issue's message on that line."""
    before = [rec("up035-List", rule="UP035"), rec("i001", rule="I001")]
    after = [rec("up035-List-Dict", rule="UP035")]
    c = compare(before, after)
    assert c.new == [] and c.fixed_fingerprints == ["i001"]
    assert [i.fingerprint for i in c.rewritten] == ["up035-List"]
    own_rewritten = judge_batch([before[0]], before, after)
    assert not own_rewritten.keep and own_rewritten.unfixed == 1  # changed is not fixed
    assert judge_batch([before[1]], before, after).keep


def test_compare_counts_duplicate_fingerprints():
    before = [rec("e501", line=n) for n in (1, 5, 9)]
    after = [rec("e501", line=n) for n in (2, 6)]
    c = compare(before, after)
    assert [i.line for i in c.fixed] == [9] and c.new == [] and len(c.remaining) == 2
    c = compare(after, before)
    assert [i.line for i in c.new] == [9] and c.fixed == []


fps = st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(1, 50)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(fps)
def test_compare_with_itself_finds_nothing(pairs):
    issues = [rec(fp, line=line, n=f"{k}") for k, (fp, line) in enumerate(pairs)]
    c = compare(issues, issues)
    assert c.fixed == [] and c.new == [] and len(c.remaining) == len(issues)


@settings(max_examples=200, deadline=None)
@given(fps, fps)
def test_compare_accounts_for_every_issue(b, a):
    before = [rec(fp, line=line, n=f"b{k}") for k, (fp, line) in enumerate(b)]
    after = [rec(fp, line=line, n=f"a{k}") for k, (fp, line) in enumerate(a)]
    c = compare(before, after)
    assert len(c.fixed) + len(c.remaining) == len(before)
    assert len(c.new) + len(c.remaining) == len(after)
    assert not (set(c.fixed_fingerprints) & set(c.new_fingerprints))
    assert c == compare(list(reversed(before)), list(reversed(after)))


def test_regressed():
    base = TestCounts(passed=10, failed=2, skipped=1)
    assert regressed(base, base) == []
    assert regressed(base, TestCounts(passed=12, failed=0, skipped=1)) == []
    assert regressed(None, TestCounts()) == []
    assert regressed(base, None) == ["tests were not measured after the fix"]
    got = regressed(base, TestCounts(passed=8, failed=3, errors=0, skipped=2))
    assert got == [
        "passing tests dropped from 10 to 8",
        "failing tests rose from 2 to 3",
        "tests run dropped from 12 to 11",
        "skipped tests rose from 1 to 2",
    ]
    assert regressed(base, TestCounts(passed=10, failed=0)) == ["tests run dropped from 12 to 10"]


def test_judge_keeps_a_batch_whose_issues_are_gone():
    before = [rec("a"), rec("b", line=5), rec("c", line=9)]
    after = [rec("b", line=7), rec("c", line=11)]  # a fixed, lines shifted
    v = judge_batch(
        [before[0]],
        before,
        after,
        before_tests=TestCounts(passed=3),
        after_tests=TestCounts(passed=3),
    )
    assert v.keep and v.reasons == [] and v.fixed == 1 and v.unfixed == 0 and v.new == 0
    assert isinstance(v.comparison, Comparison)


def test_judge_rolls_back_unfixed_new_and_regressed():
    before = [rec("a"), rec("b", line=5)]
    v = judge_batch([before[0], before[1]], before, [rec("b", line=5)])
    assert not v.keep and v.reasons == ["1 of the batch's 2 issue(s) remain"]
    assert judge_batch([before[0], before[1]], before, [rec("b", line=5)], require_all=False).keep
    v = judge_batch([before[0]], before, [rec("b", line=5), rec("z", line=2, rule="F841")])
    assert not v.keep and v.reasons == ["1 new issue(s): F841 a.py:2"]
    v = judge_batch(
        [before[0]],
        before,
        [rec("b", line=5)],
        before_tests=TestCounts(passed=4),
        after_tests=TestCounts(passed=3, failed=1),
    )
    assert not v.keep and v.reasons == [
        "passing tests dropped from 4 to 3",
        "failing tests rose from 0 to 1",
    ]
    v = judge_batch([before[0]], before, [], tool_errors=["mypy: crashed"])
    assert not v.keep and v.reasons == ["verification could not measure: mypy: crashed"]


def test_judge_with_duplicate_fingerprints_outside_the_batch():
    before = [rec("e501", line=n) for n in (1, 5, 9)]
    batch = [before[0]]
    assert judge_batch(batch, before, before[1:]).keep
    v = judge_batch(batch, before, before)  # nothing changed
    assert not v.keep and v.unfixed == 1


def test_judge_with_no_issues_fixed_at_all():
    before = [rec("a")]
    v = judge_batch(before, before, before, require_all=False)
    assert not v.keep and v.fixed == 0


def test_scores_read_the_counts_the_adapters_really_report() -> None:
    """ruff/mypy report ``issues``, ESLint ``errors`` (warnings apart): fewer of them, higher score."""
    from airfix.events.core.health import health_score
    from airfix.events.schema import ToolResult

    def lint(n: int, key: str = "issues") -> float:
        ruff = ToolResult(tool="ruff", status="failed" if n else "passed", counts={key: n})
        return health_score([ruff]).parts["lint"]

    assert lint(27) < lint(6) < lint(0) == 1.0
    assert lint(6, "errors") == lint(6)
    eslint = ToolResult(
        tool="eslint", status="failed", counts={"errors": 2, "warnings": 40, "issues": 42}
    )
    assert health_score([eslint]).lint_errors == 2
