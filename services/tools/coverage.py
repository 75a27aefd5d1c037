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

With ``contexts`` set, the guard plugin names each test's coverage context after its node id and
the report is written with ``--show-contexts``: the run then also says which tests execute each
measured file (``ToolRun.impact``), what a verification needs to run only the tests a change can
reach.

With ``halt_on`` the suite stops at the first of those tests that fails (a stack's tip, already
condemned): the run is ``failed`` with the outcomes so far and no coverage.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec

from airfix.events.core.impact import TestImpact
from airfix.services.tools.adapter import BaseToolAdapter, RunContext, ToolFailure, check_exit
from airfix.services.tools.fingerprints import relative_path, to_issues
from airfix.services.tools.pytest import (
    EXIT_MEANINGS,
    NO_TESTS,
    environment_failure,
    halted,
    halted_at,
    judge_tests,
    pytest_args,
    pytest_environment,
    read_junit,
)
from airfix.services.tools.results import COVERAGE_PERCENT, TESTS_TOTAL, ToolRun


class _FileReport(msgspec.Struct):
    contexts: dict[str, list[str]] = {}  # line -> contexts that executed it


class _ContextReport(msgspec.Struct):
    files: dict[str, _FileReport] = {}


def parse_impact(text: str | bytes, target: Path) -> TestImpact:
    """Which tests executed which lines of the project's files (paths relative to ``target``),
    from ``coverage json --show-contexts``; code run outside any test (imports at collection,
    context ``""``) names no test."""
    report = msgspec.json.decode(text, type=_ContextReport)
    index: dict[str, int] = {}
    files: dict[str, dict[int, list[int]]] = {}
    for path, f in report.files.items():
        where = relative_path(path, target)
        if not where or where.startswith("/"):  # outside the project (airfix's own plugin)
            continue
        ran = {
            int(line): sorted({index.setdefault(c, len(index)) for c in contexts if c})
            for line, contexts in f.contexts.items()
            if any(contexts)
        }
        if ran:
            files[where] = ran
    return TestImpact(tests=list(index), files=files)


class _Totals(msgspec.Struct):
    percent_covered: float
    covered_lines: int
    num_statements: int
    missing_lines: int


class _Report(msgspec.Struct):
    totals: _Totals


def parse_coverage_json(text: str | bytes) -> dict[str, float]:
    """Totals from ``coverage json``: percent covered, covered lines, statements, missing lines."""
    totals = msgspec.json.decode(text, type=_Report).totals
    return {
        COVERAGE_PERCENT: float(totals.percent_covered),
        "covered_lines": float(totals.covered_lines),
        "num_statements": float(totals.num_statements),
        "missing_lines": float(totals.missing_lines),
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
    #: record which tests execute which files (per-test contexts; costs time, so only on demand)
    contexts: bool = False
    #: as :attr:`PytestAdapter.halt_on`; a suite stopped early measures no coverage
    halt_on: frozenset[str] = frozenset()

    def _scope(self, target: Path, files: Sequence[str] | None) -> list[str] | None:
        return None  # always the whole suite

    def _environment(self, workdir: Path) -> dict[str, str]:
        env = pytest_environment(super()._environment(workdir), workdir, self.halt_on)
        if self.contexts:
            env["AIRFIX_TEST_CONTEXTS"] = "1"
            env["COVERAGE_CORE"] = "ctrace"  # the sys.monitoring core records no dynamic contexts
        return env

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
        if halted_at(ctx.workdir):  # part of the suite ran: its coverage means nothing
            run = self.result(
                ctx,
                "failed",
                issues=to_issues(self.test_issues_as, tests.findings)
                if self.test_issues_as
                else [],
                counts=tests.counts(),
                metrics=tests.metrics(),
                tests=tests.outcomes,
            )
            return halted(run, ctx.workdir)
        if not data.exists() and any(ctx.workdir.glob("coverage.data.*")):
            combine = self.spawn(
                ctx, [*self.invocation(ctx.executable), "combine", f"--data-file={data}"]
            )
            check_exit(combine, (0,), "coverage combine")
        out = ctx.workdir / "coverage.json"
        show = ["--show-contexts"] if self.contexts else []
        report = self.spawn(
            ctx,
            [
                *self.invocation(ctx.executable),
                "json",
                f"--data-file={data}",
                "-o",
                str(out),
                *show,
            ],
        )
        json_code = check_exit(
            report, (0, 2), "coverage json"
        )  # 2 = below the project's fail_under
        if not out.is_file():
            raise ToolFailure("coverage: `coverage json` wrote no report", report)
        try:
            metrics = parse_coverage_json(out.read_text())
        except msgspec.DecodeError as exc:
            raise ToolFailure(f"coverage: unreadable JSON report ({exc})", report) from exc
        metrics.update(tests.metrics())
        percent = metrics[COVERAGE_PERCENT]
        issues = to_issues(self.test_issues_as, tests.findings) if self.test_issues_as else []
        impact = TestImpact()
        if self.contexts:
            try:
                impact = parse_impact(out.read_bytes(), ctx.target)
            except msgspec.DecodeError as exc:
                raise ToolFailure(
                    f"coverage: unreadable contexts in the report ({exc})", report
                ) from exc
        run = self.result(
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
        return msgspec.structs.replace(run, impact=impact) if impact else run


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
