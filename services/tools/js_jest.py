"""jest's ``--json`` and vitest's ``--reporter=json`` reports, which share one shape."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from airfix.services.tools.base import TestOutcome, relative_path
from airfix.services.tools.js_report import TestReport, clean_text, failure_finding

_JEST_OUTCOMES: dict[str, TestOutcome] = {
    "passed": "passed",
    "failed": "failed",
    "pending": "skipped",
    "skipped": "skipped",
    "todo": "skipped",
    "disabled": "skipped",
    "focused": "passed",
}


class JestLocation(msgspec.Struct, frozen=True):
    line: int | None = None


class JestAssertion(msgspec.Struct, frozen=True, rename="camel"):
    """One test (``assertionResults[]``)."""

    status: Literal["passed", "failed", "pending", "skipped", "todo", "disabled", "focused"]
    title: str = ""
    ancestor_titles: list[str] = []
    failure_messages: list[str] = []
    location: JestLocation | None = None  # jest with --testLocationInResults, vitest


class JestSuite(msgspec.Struct, frozen=True, rename="camel"):
    """One test file (``testResults[]``); a file that failed to load has no assertions."""

    name: str = ""
    status: str = ""
    message: str | None = None
    failure_message: str | None = None
    assertion_results: list[JestAssertion] = []


class JestJsonReport(msgspec.Struct, frozen=True, rename="camel"):
    """The report's top level; the other counts and fields are ignored."""

    test_results: list[JestSuite]
    num_total_tests: int


def parse_jest_json(text: str, target: Path) -> TestReport:
    """Counts, findings and outcomes from a jest ``--json`` or vitest ``--reporter=json``
    report; ``ValueError`` when it is not one (msgspec names the path, e.g.
    ``$.testResults[0].assertionResults[1].status``) or does not add up."""
    data = msgspec.json.decode(text, type=JestJsonReport)
    report = TestReport()
    cases = 0
    for suite in data.test_results:
        file = relative_path(suite.name, target)
        failed_here = False
        for case in suite.assertion_results:
            cases += 1
            test_id = report.add(
                " > ".join([file, *case.ancestor_titles, case.title]), _JEST_OUTCOMES[case.status]
            )
            if case.status != "failed":
                continue
            failed_here = True
            text_ = clean_text("\n".join(case.failure_messages), target)
            line = case.location.line if case.location is not None else None
            report.findings.append(
                failure_finding(file, line or 0, "failure", "test", test_id, text_)
            )
        if suite.status == "failed" and not failed_here:
            text_ = clean_text(suite.message or suite.failure_message or "", target)
            report.add(file, "error")
            report.findings.append(failure_finding(file, 0, "load-error", "load", file, text_))
    if cases != data.num_total_tests:
        raise ValueError(f"the report lists {cases} tests but counts {data.num_total_tests}")
    return report
