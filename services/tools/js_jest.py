"""jest's ``--json`` and vitest's ``--reporter=json`` reports, which share one shape."""

from __future__ import annotations

import json
from pathlib import Path

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


def parse_jest_json(text: str, target: Path) -> TestReport:
    """Counts, findings and outcomes from a jest ``--json`` or vitest ``--reporter=json``
    report; ``ValueError``/``TypeError``/``KeyError`` when it is not one or does not add up."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("testResults"), list):
        raise TypeError("not a jest/vitest JSON report (no testResults list)")
    if not isinstance(data.get("numTotalTests"), int):
        raise TypeError("not a jest/vitest JSON report (no numTotalTests)")
    report = TestReport()
    cases = 0
    for suite in data["testResults"]:
        file = relative_path(str(suite.get("name") or ""), target)
        failed_here = False
        for case in suite.get("assertionResults") or []:
            cases += 1
            status = str(case.get("status"))
            titles = [str(t) for t in case.get("ancestorTitles") or []]
            test_id = report.add(
                " > ".join([file, *titles, str(case.get("title") or "")]), _JEST_OUTCOMES[status]
            )
            if status != "failed":
                continue
            failed_here = True
            text_ = clean_text("\n".join(str(m) for m in case.get("failureMessages") or []), target)
            location = case.get("location") if isinstance(case.get("location"), dict) else {}
            report.findings.append(
                failure_finding(
                    file, int((location or {}).get("line") or 0), "failure", "test",
                    test_id, text_,
                )
            )  # fmt: skip
        if suite.get("status") == "failed" and not failed_here:
            text_ = clean_text(
                str(suite.get("message") or suite.get("failureMessage") or ""), target
            )
            report.add(file, "error")
            report.findings.append(failure_finding(file, 0, "load-error", "load", file, text_))
    if cases != data["numTotalTests"]:
        raise ValueError(f"the report lists {cases} tests but counts {data['numTotalTests']}")
    return report
