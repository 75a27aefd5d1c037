"""coverage.py over pytest: statement coverage as a metric (phase ``test``, no issues).

``coverage run --data-file=<tmp> -m pytest …`` then ``coverage json --data-file=<tmp> -o <tmp>``;
``totals.percent_covered`` becomes ``metrics["coverage_percent"]``.  The data file and the report live in the run's temporary directory (no ``.coverage`` in the target); parallel
data files (``[run] parallel = true``) are combined first.

Status reflects the *measurement*: ``passed`` when coverage was measured (and the project's own
``fail_under``, if any, is met: ``coverage json`` exits 2 otherwise → ``failed``).  Failing tests
do not fail this check (the pytest adapter reports them); their counts are in the metrics too.
Exit 5 of pytest (no tests) is ``failed`` without a percentage: nothing was measured.  pytest
not running at all (no JUnit report), ``coverage json`` failing ("No data to report") or an
unreadable report are ``tool_error`` — never 0 %.

Coverage gaps are not issues: they are not defects in a file a fixer could correct, and raising
them would let "write any test" pass for progress.  ``files`` is ignored: coverage is always
measured over the whole suite.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import msgspec

from airfix.services.tools.adapter import BaseToolAdapter, RunContext, ToolFailure, check_exit
from airfix.services.tools.fingerprints import to_issues
from airfix.services.tools.pytest import (
    EXIT_MEANINGS,
    NO_TESTS,
    environment_failure,
    judge_tests,
    pytest_args,
    pytest_environment,
    read_junit,
)
from airfix.services.tools.results import COVERAGE_PERCENT, TESTS_TOTAL, ToolRun


def parse_coverage_json(text: str) -> dict[str, float]:
    """Totals from ``coverage json``: percent covered, covered lines, statements, missing lines."""
    data = json.loads(text)
    totals = data["totals"]
    return {
        COVERAGE_PERCENT: float(totals["percent_covered"]),
        "covered_lines": float(totals["covered_lines"]),
        "num_statements": float(totals["num_statements"]),
        "missing_lines": float(totals["missing_lines"]),
    }


class CoverageAdapter(BaseToolAdapter):
    name = "coverage"
    phase = "test"
    tier = "dynamic"
    executable_name = "coverage"
    module = "coverage"
    default_timeout_s = 1800.0
    #: set when this run also stands for pytest's (one run of the suite per check): failing
    #: tests then become issues of that tool, see :func:`split_test_run`
    test_issues_as: str = ""

    def _scope(self, target: Path, files: Sequence[str] | None) -> list[str] | None:
        return None  # always the whole suite

    def _environment(self, workdir: Path) -> dict[str, str]:
        return pytest_environment(super()._environment(workdir), workdir)

    def build_command(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[str]:
        return [
            *self.invocation(exe), "run", f"--data-file={workdir / 'coverage.data'}", "-m", "pytest",
            *pytest_args(target, workdir / "junit.xml", self.extra_args, None),
        ]  # fmt: skip

    def execute(self, ctx: RunContext) -> ToolRun:
        data = ctx.workdir / "coverage.data"
        proc = self.spawn(ctx, self.build_command(ctx.executable, ctx.target, None, ctx.workdir))
        code = check_exit(proc, (0, 1, 5), "coverage run -m pytest", EXIT_MEANINGS)
        if code == 5:
            return self.result(
                ctx, "failed", counts={"tests": 0}, metrics={TESTS_TOTAL: 0.0}, error=NO_TESTS
            )
        tests = read_junit(proc, ctx.workdir / "junit.xml", ctx.target, "coverage")
        judge_tests(code, tests, proc, "coverage")
        environment_failure(self, tests, ctx.target, proc)
        if not data.exists() and any(ctx.workdir.glob("coverage.data.*")):
            combine = self.spawn(
                ctx, [*self.invocation(ctx.executable), "combine", f"--data-file={data}"]
            )
            check_exit(combine, (0,), "coverage combine")
        out = ctx.workdir / "coverage.json"
        report = self.spawn(
            ctx, [*self.invocation(ctx.executable), "json", f"--data-file={data}", "-o", str(out)]
        )
        json_code = check_exit(
            report, (0, 2), "coverage json"
        )  # 2 = below the project's fail_under
        if not out.is_file():
            raise ToolFailure("coverage: `coverage json` wrote no report", report)
        try:
            metrics = parse_coverage_json(out.read_text())
        except (ValueError, KeyError, TypeError) as exc:
            raise ToolFailure(f"coverage: unreadable JSON report ({exc})", report) from exc
        metrics.update(tests.metrics())
        percent = metrics[COVERAGE_PERCENT]
        issues = to_issues(self.test_issues_as, tests.findings) if self.test_issues_as else []
        return self.result(
            ctx,
            "failed" if json_code == 2 else "passed",
            issues=issues,
            counts={
                "covered_lines": int(metrics["covered_lines"]),
                "num_statements": int(metrics["num_statements"]),
                "missing_lines": int(metrics["missing_lines"]),
                **tests.counts(),
            },
            metrics=metrics,
            tests=tests.outcomes,
            error=f"coverage {percent:.1f}% is below the project's fail_under ({tail_line(report.stdout)})"
            if json_code == 2
            else "",
        )


TEST_COUNTS = ("tests", "passed", "failed", "errors", "skipped")


def split_test_run(run: ToolRun, tool: str) -> tuple[ToolRun, ToolRun]:
    """One ``coverage run -m pytest`` as the two results a check reports: ``tool``'s (pytest: the
    failing tests as issues, counts, outcomes) and coverage's own (the metric, no issues).

    Both describe the same process, so they carry its command, exit status and duration.
    """
    exit_status = run.result.exit_status
    metrics = {k: v for k, v in run.metrics.items() if k.startswith("tests_")}
    tests = msgspec.structs.replace(
        run,
        result=msgspec.structs.replace(
            run.result,
            tool=tool,
            status="failed" if exit_status == 1 else "passed",
            counts={k: v for k, v in run.result.counts.items() if k in TEST_COUNTS},
            error="",
        ),
        metrics=metrics,
    )
    return tests, msgspec.structs.replace(run, issues=[])


def tail_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""
