"""What a tool run returns: the :class:`ToolRun` (result, issues, metrics, per-test outcomes) and
the :class:`TestTally` every test-runner adapter counts with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import msgspec

from airfix.events.core.impact import TestImpact
from airfix.events.schema import IssueRecord, ToolResult
from airfix.services.tools.fingerprints import Finding

# Keys of ToolRun.metrics (all floats; only the ones a tool measures are present).
TESTS_TOTAL = "tests_total"
TESTS_PASSED = "tests_passed"
TESTS_FAILED = "tests_failed"
TESTS_ERRORS = "tests_errors"
TESTS_SKIPPED = "tests_skipped"
COVERAGE_PERCENT = "coverage_percent"


TestOutcome = Literal["passed", "failed", "error", "skipped"]


class ToolRun(msgspec.Struct, frozen=True, kw_only=True):
    """What one adapter run produced: the measurement, its issues and numeric metrics.

    ``metrics`` keys: ``tests_total``, ``tests_passed``, ``tests_failed``, ``tests_errors``,
    ``tests_skipped``, ``coverage_percent``, ``covered_lines``, ``num_statements``.  Tails of stdout
    and stderr are kept as evidence for the report and for a human reading a ``tool_error``.

    ``tests`` (test runners only): each test's outcome by its stable id (pytest's node id, a JS
    runner's ``file > suite > title``, Go's ``package/TestName``).  A file that failed to load or
    collect is an id of its own with outcome ``error``.  Verification judges a change by these
    ids, never by counts alone: "one test fixed, another broken" keeps the counts equal.
    """

    result: ToolResult
    issues: list[IssueRecord] = []
    metrics: dict[str, float] = {}
    tests: dict[str, TestOutcome] = {}
    #: test impact (a coverage run with per-test contexts): file -> the tests executing it
    impact: TestImpact = TestImpact()
    #: why a test run stopped before the end of its suite (its outcomes are then partial)
    halted: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        """True when the tool ran and its output was understood (passed or failed)."""
        return self.result.status in ("passed", "failed")

    def _metric_int(self, key: str) -> int | None:
        value = self.metrics.get(key)
        return None if value is None else int(value)

    @property
    def tests_total(self) -> int | None:
        return self._metric_int(TESTS_TOTAL)

    @property
    def tests_passed(self) -> int | None:
        return self._metric_int(TESTS_PASSED)

    @property
    def tests_failed(self) -> int | None:
        """Failed plus errored tests: everything that is neither passed nor skipped."""
        failed, errors = self.metrics.get(TESTS_FAILED), self.metrics.get(TESTS_ERRORS)
        if failed is None and errors is None:
            return None
        return int((failed or 0) + (errors or 0))

    @property
    def coverage_percent(self) -> float | None:
        return self.metrics.get(COVERAGE_PERCENT)


@dataclass
class TestTally:
    """What every test-runner adapter counts, as ToolRun metrics and ToolResult counts.

    Runners without a separate "error" outcome (go test, dart test) leave ``errors`` at 0."""

    __test__ = False  # not a pytest test class

    total: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    findings: list[Finding] = field(default_factory=list)
    outcomes: dict[str, TestOutcome] = field(default_factory=dict)

    def record(self, test_id: str, outcome: TestOutcome) -> None:
        """Count one test's outcome under its id; an id seen twice keeps its worst outcome
        (a call failure plus a teardown error is one failed test, counted once)."""
        previous = self.outcomes.get(test_id)
        if previous is not None:
            if _RANK[outcome] > _RANK[previous]:
                self._count(previous, -1)
                self._count(outcome, +1)
                self.outcomes[test_id] = outcome
            return
        self.outcomes[test_id] = outcome
        self.total += 1
        self._count(outcome, +1)

    def _count(self, outcome: TestOutcome, n: int) -> None:
        name = {"passed": "passed", "failed": "failed", "error": "errors", "skipped": "skipped"}[
            outcome
        ]
        setattr(self, name, getattr(self, name) + n)

    def metrics(self) -> dict[str, float]:
        return {
            TESTS_TOTAL: float(self.total),
            TESTS_PASSED: float(self.passed),
            TESTS_FAILED: float(self.failed),
            TESTS_ERRORS: float(self.errors),
            TESTS_SKIPPED: float(self.skipped),
        }

    def counts(self) -> dict[str, int]:
        return {
            "tests": self.total,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
        }


_RANK: dict[str, int] = {"skipped": 0, "passed": 1, "failed": 2, "error": 3}
