"""How healthy the target is, and whether a fix made it better: pure scoring and comparison.

Pure on purpose: no I/O, no clock, no randomness.  The score is computed from what a
``HealthChecked`` event carries (tool results with their counts), so a reader can recompute it.

Inputs.  Each :class:`~airfix.events.schema.ToolResult` belongs to a phase (``tool_phases``, else
:data:`DEFAULT_TOOL_PHASES`, else ``lint``).  A static tool's findings are ``counts["error"]`` (else ``errors``, else ``issues``);
warnings and infos (``counts["warning"]``, ``counts["info"]``) are reported by the tool but neither
scored nor gated, because they are not what the fixer is asked to fix (the original counted them
and made its gate unpassable).  A tool with status ``failed`` but no error count counts
as one error: a failing build with nothing parsed is not clean.  Test counts come from ``tests``,
else from the counts of the test-phase tools (``passed``, ``failed``, ``errors``, ``skipped``).
``coverage`` is a fraction in [0, 1].

The formula (n = error count)::

    build    = 10 / (10 + n_build)          1.0 clean, 0.5 at 10 errors, never 0
    lint     = 50 / (50 + n_lint)           1.0 clean, 0.5 at 50 errors, never 0
    test     = passed / (passed + failed + errors)      0.0 when no test ran
    coverage = coverage                     only when given

    static   = (0.4 build + 0.2 lint) / (weights of the static parts present)   1.0 if none
    score    = (0.4 build + 0.2 lint + 0.3 test + 0.1 coverage) / (weights of the parts present)

A part is present when at least one of its tools ran (status other than ``skipped``) or, for test
and coverage, when a value was given.  Rules that fix the original's defects:

* The decay is hyperbolic, not clamped: fixing any error raises the score, so progress on a
  project with 2,000 errors is visible (a clamp at 0 would report "no progress" and stop the run).
* A ``tool_error`` is not "0 findings": its phase's part is 0.0, the report lists it in
  ``tool_errors``, and the report is never healthy.
* 0 tests run is a test part of 0.0 and an unhealthy report, never "passed".
* Tiered checks: when the static score is below ``static_pass_threshold`` and no test results
  were given, dynamic checks were skipped: the test part is 0.0 (unmeasured earns no credit,
  so starting the dynamic checks can only raise the score) and the report is not healthy.
  (The original multiplied a static-only score by 0.7 and used constant placeholders, D21.)
* Nothing measured at all scores 0.0 and is not healthy.  No static tool at all leaves the
  static score at 1.0: nothing static is broken, so the gate lets the dynamic checks run.

Healthy (:func:`is_healthy`, from ``completion_criteria``): no tool error; something was measured;
dynamic checks not skipped; if ``build_passes``, no build errors; lint errors <=
``max_lint_errors``; if tests were measured, pass rate >= ``min_test_pass_rate``.  A project
without a build or test tool is judged on the tools it has.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import msgspec

from airfix.events.schema import Phase, ToolResult

__all__ = [
    "BUILD_SCALE",
    "DEFAULT_TOOL_PHASES",
    "LINT_SCALE",
    "STATIC_PARTS",
    "WEIGHTS",
    "HealthReport",
    "TestCounts",
    "health_score",
    "is_healthy",
    "should_run_dynamic",
    "unhealthy_reasons",
]

WEIGHTS: dict[str, float] = {"build": 0.4, "test": 0.3, "lint": 0.2, "coverage": 0.1}
STATIC_PARTS: tuple[str, ...] = ("build", "lint")
BUILD_SCALE = 10.0  # build errors at which the build part is 0.5
LINT_SCALE = 50.0  # lint errors at which the lint part is 0.5

DEFAULT_TOOL_PHASES: dict[str, Phase] = {
    # build: compilers and type checkers
    "build": "build",
    "compileall": "build",
    "py_compile": "build",
    "mypy": "build",
    "dmypy": "build",
    "pyright": "build",
    "pytype": "build",
    "tsc": "build",
    "go build": "build",
    "go vet": "build",
    "go_vet": "build",
    "dart_analyze": "build",
    "js_test": "test",
    "go_test": "test",
    "flutter_test": "test",
    "dart_test": "test",
    "gofmt": "lint",
    "cargo check": "build",
    "flutter analyze": "build",
    "dart analyze": "build",
    # test: test runners
    "pytest": "test",
    "unittest": "test",
    "jest": "test",
    "vitest": "test",
    "go test": "test",
    "cargo test": "test",
    "flutter test": "test",
    # lint: linters and formatters
    "ruff": "lint",
    "ruff format": "lint",
    "flake8": "lint",
    "pylint": "lint",
    "black": "lint",
    "isort": "lint",
    "eslint": "lint",
    "prettier": "lint",
    "golangci-lint": "lint",
    "staticcheck": "lint",
    "clippy": "lint",
}


class Criteria(Protocol):
    """When a check counts as healthy (``completion_criteria`` in the config has this shape)."""

    @property
    def build_passes(self) -> bool: ...

    @property
    def min_test_pass_rate(self) -> float: ...

    @property
    def max_lint_errors(self) -> int: ...


class DefaultCriteria(msgspec.Struct, frozen=True, kw_only=True):
    """The criteria of the shipped configuration, for callers that give none."""

    build_passes: bool = True
    min_test_pass_rate: float = 0.95
    max_lint_errors: int = 0


class TestCounts(msgspec.Struct, frozen=True, kw_only=True):
    """A test run's outcome.  ``errors`` are tests that errored (setup, collection) not failed."""

    __test__ = False  # not a pytest test class

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        """Tests that ran: passed + failed + errors (skipped did not run)."""
        return self.passed + self.failed + self.errors

    @property
    def failing(self) -> int:
        return self.failed + self.errors

    @property
    def pass_rate(self) -> float | None:
        """passed / total, or None when no test ran."""
        return self.passed / self.total if self.total else None

    @classmethod
    def from_counts(cls, counts: Mapping[str, int]) -> TestCounts:
        return cls(
            passed=int(counts.get("passed", 0)),
            failed=int(counts.get("failed", 0)),
            errors=int(counts.get("errors", 0)),
            skipped=int(counts.get("skipped", 0)),
        )

    def __add__(self, other: TestCounts) -> TestCounts:
        return TestCounts(
            passed=self.passed + other.passed,
            failed=self.failed + other.failed,
            errors=self.errors + other.errors,
            skipped=self.skipped + other.skipped,
        )


class HealthReport(msgspec.Struct, frozen=True, kw_only=True):
    """One health check's verdict; ``score``/``parts``/``healthy`` go into ``HealthChecked``."""

    score: float  # 0..1, weighted mean of the parts present
    static_score: float  # 0..1, weighted mean of the static parts present (build, lint)
    parts: dict[str, float]  # build, lint, test, coverage: those present
    passed: dict[str, bool]  # per measured part (build, lint, test) and "static" (the gate)
    healthy: bool
    tool_errors: list[str] = []  # "tool: error" for every tool with status tool_error
    reasons: list[str] = []  # why it is not healthy; empty when healthy
    build_errors: int = 0
    lint_errors: int = 0
    tests: TestCounts | None = None
    coverage: float | None = None
    dynamic_skipped: bool = False


# ---------------------------------------------------------------- scoring


def _decay(n: int, scale: float) -> float:
    return scale / (scale + n) if n > 0 else 1.0


def _weighted(parts: Mapping[str, float], names: Iterable[str], empty: float) -> float:
    total = weight = 0.0
    for name in names:
        if name in parts:
            total += WEIGHTS[name] * parts[name]
            weight += WEIGHTS[name]
    return total / weight if weight else empty


def _phase_of(tool: str, tool_phases: Mapping[str, Phase] | None) -> Phase:
    if tool_phases and tool in tool_phases:
        return tool_phases[tool]
    return DEFAULT_TOOL_PHASES.get(tool, "lint")


ERROR_KEYS = ("error", "errors", "issues")


def _errors(result: ToolResult) -> int:
    """A static tool's error count: ``error``, else ``errors`` (ESLint: warnings are apart), else
    ``issues`` (ruff, mypy, go vet report only what fails); a failed tool counts at least 1."""
    key = next((k for k in ERROR_KEYS if k in result.counts), None)
    n = max(0, int(result.counts[key])) if key else 0
    return max(n, 1) if result.status == "failed" else n


class _Tally(msgspec.Struct):
    """What the tools of one check said, per phase."""

    ran: dict[str, bool]
    broken: set[str]
    errors: dict[str, int]
    tests: TestCounts | None
    tool_errors: list[str]


def _tally(tool_results: Sequence[ToolResult], tool_phases: Mapping[str, Phase] | None) -> _Tally:
    t = _Tally(
        ran={"build": False, "lint": False, "test": False},
        broken=set(),
        errors={"build": 0, "lint": 0},
        tests=None,
        tool_errors=[],
    )
    for r in sorted(tool_results, key=lambda r: r.tool):
        if r.status == "skipped":
            continue
        phase = _phase_of(r.tool, tool_phases)
        t.ran[phase] = True
        if r.status == "tool_error":
            t.broken.add(phase)
            t.tool_errors.append(f"{r.tool}: {r.error or 'tool error'}")
        elif phase == "test":
            counted = TestCounts.from_counts(r.counts)
            t.tests = counted if t.tests is None else t.tests + counted
        else:
            t.errors[phase] += _errors(r)
    return t


def health_score(
    tool_results: Sequence[ToolResult],
    *,
    tests: TestCounts | None = None,
    coverage: float | None = None,
    criteria: Criteria | None = None,
    static_pass_threshold: float = 0.6,
    tool_phases: Mapping[str, Phase] | None = None,
) -> HealthReport:
    """Score one health check (the formula is in the module docstring).

    Args:
        tool_results: what the tools measured (static and, if they ran, dynamic).
        tests: test counts; None takes them from the test-phase tools' counts, if any ran.
        coverage: line coverage as a fraction in [0, 1], or None when not measured.
        criteria: ``completion_criteria``; None = the defaults.
        static_pass_threshold: ``health_check.static_pass_threshold``, the tiered-check gate.
        tool_phases: tool name -> phase, over :data:`DEFAULT_TOOL_PHASES` (unknown: lint).

    Raises:
        ValueError: coverage outside [0, 1] or not a number.
    """
    if coverage is not None and not (isinstance(coverage, (int, float)) and 0.0 <= coverage <= 1.0):
        raise ValueError(f"coverage must be a fraction in [0, 1], got {coverage!r}")
    criteria = criteria or DefaultCriteria()

    t = _tally(tool_results, tool_phases)
    ran, broken, errors, tool_tests, tool_errors = (
        t.ran,
        t.broken,
        t.errors,
        t.tests,
        t.tool_errors,
    )

    parts: dict[str, float] = {}
    if ran["build"]:
        parts["build"] = 0.0 if "build" in broken else _decay(errors["build"], BUILD_SCALE)
    if ran["lint"]:
        parts["lint"] = 0.0 if "lint" in broken else _decay(errors["lint"], LINT_SCALE)
    static = _weighted(parts, STATIC_PARTS, 1.0)

    if tests is None and "test" not in broken:
        tests = tool_tests
    dynamic_skipped = tests is None and bool(parts) and static < static_pass_threshold
    if "test" in broken:
        parts["test"] = 0.0
    elif tests is not None:
        parts["test"] = tests.pass_rate or 0.0
    elif dynamic_skipped:
        parts["test"] = 0.0
    if coverage is not None:
        parts["coverage"] = float(coverage)
    score = _weighted(parts, WEIGHTS, 0.0)

    passed: dict[str, bool] = {"static": static >= static_pass_threshold}
    if "build" in parts:
        passed["build"] = "build" not in broken and errors["build"] == 0
    if "lint" in parts:
        passed["lint"] = "lint" not in broken and errors["lint"] <= criteria.max_lint_errors
    if "test" in broken or tests is not None:
        rate = None if "test" in broken or tests is None else tests.pass_rate
        passed["test"] = rate is not None and rate >= criteria.min_test_pass_rate

    draft = HealthReport(
        score=score,
        static_score=static,
        parts=parts,
        passed=passed,
        healthy=False,
        tool_errors=tool_errors,
        build_errors=errors["build"],
        lint_errors=errors["lint"],
        tests=tests,
        coverage=None if coverage is None else float(coverage),
        dynamic_skipped=dynamic_skipped,
    )
    reasons = unhealthy_reasons(draft, criteria, static_pass_threshold=static_pass_threshold)
    return msgspec.structs.replace(draft, healthy=not reasons, reasons=reasons)


def unhealthy_reasons(
    report: HealthReport,
    criteria: Criteria,
    *,
    static_pass_threshold: float | None = None,
) -> list[str]:
    """Why ``report`` does not meet ``criteria`` (empty when it does)."""
    reasons: list[str] = []
    if report.tool_errors:
        reasons.append("a tool could not measure: " + "; ".join(report.tool_errors))
    if not report.parts:
        reasons.append("nothing was measured")
    if report.dynamic_skipped:
        limit = "" if static_pass_threshold is None else f" < {static_pass_threshold:.0%}"
        reasons.append(f"dynamic checks skipped (static score {report.static_score:.0%}{limit})")
    if criteria.build_passes and report.build_errors > 0:
        reasons.append(f"build has {report.build_errors} error(s)")
    if report.lint_errors > criteria.max_lint_errors:
        reasons.append(
            f"{report.lint_errors} lint error(s) > max_lint_errors {criteria.max_lint_errors}"
        )
    if report.tests is not None:
        rate = report.tests.pass_rate
        if rate is None:
            if criteria.min_test_pass_rate > 0:
                reasons.append("no test ran (0 passed, 0 failed)")
        elif rate < criteria.min_test_pass_rate:
            reasons.append(
                f"test pass rate {rate:.1%} < min_test_pass_rate {criteria.min_test_pass_rate:.1%}"
                f" ({report.tests.passed}/{report.tests.total} passed)"
            )
    return reasons


def is_healthy(report: HealthReport, criteria: Criteria | None = None) -> bool:
    """Whether ``report`` meets the completion criteria; a tool error anywhere is never healthy."""
    return not unhealthy_reasons(report, criteria or DefaultCriteria())


def should_run_dynamic(
    static_score: float, static_pass_threshold: float, *, force: bool = False
) -> bool:
    """The tiered-check gate: run the (slow) dynamic checks only once the static checks pass.

    ``force`` runs them anyway (the original's ``--force-dynamic``).
    """
    return force or (not math.isnan(static_score) and static_score >= static_pass_threshold)
