"""pytest: the Python test runner (phase ``test``).

Counts and failures come from a JUnit XML report written to the run's temporary directory
(``-o junit_family=xunit1`` so every ``<testcase>`` carries ``file`` and a 0-based ``line``);
stdout is evidence only.  Exit codes: 0 all passed, 1 some failed, 2 interrupted,
3 internal error, 4 usage error, 5 no tests collected.

Decisions:

* Exit 5 is ``failed`` with ``tests_total = 0`` and no issues: a project whose test phase finds
  no tests has not passed it, but there is nothing to fix in a file either.  The reason is in ``ToolResult.error``.
* Exit 2/3/4, any other code, a missing or unreadable report, or a report that contradicts the
  exit code are ``tool_error``.
* ``--continue-on-collection-errors``: a test module that fails to import is a *finding*
  (rule ``collection-error``) in a run that still runs the other tests, instead of pytest's
  exit 2 which would hide every other result behind a tool error.
* Each failed or errored test is one issue whose fingerprint is the test id (``nodeid``), not the
  assertion text: "test X still fails, with other numbers" is the same issue.

Nothing is written to the target: ``-p no:cacheprovider`` (no ``.pytest_cache``),
``PYTHONDONTWRITEBYTECODE`` (no ``__pycache__`` from assertion rewriting), Hypothesis' database
via ``HYPOTHESIS_STORAGE_DIRECTORY``, and a tiny guard plugin loaded with ``-p`` that points
pytest-benchmark's storage at the temporary directory (it creates ``.benchmarks`` on start-up).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from airfix.services.process import ProcessResult
from airfix.services.tools.adapter import BaseToolAdapter, RunContext, ToolFailure, check_exit
from airfix.services.tools.fingerprints import Finding, relative_path, to_issues
from airfix.services.tools.results import TESTS_TOTAL, TestOutcome, TestTally, ToolRun

GUARD_MODULE = "airfix_pytest_guard"
GUARD_SOURCE = '''"""Loaded into the target's pytest by airfix: keeps plugin artefacts out of the work tree
and records every test's outcome under its exact node id (JUnit XML loses the node id); under
coverage with AIRFIX_TEST_CONTEXTS=1 it names each test's coverage context after its node id.
With AIRFIX_HALT_ON (a file of node ids) the session stops after the first of those tests that
fails, as -x would, and the file "halted" names it."""
import json
import os

import pytest

_OUT = []
_SESSION = []
_HALT_ON = set()


def _write(nodeid, outcome):
    tmp = os.environ.get("AIRFIX_TOOL_TMP")
    if not tmp:
        return
    if not _OUT:
        _OUT.append(open(os.path.join(tmp, "outcomes.jsonl"), "a", encoding="utf-8"))
    _OUT[0].write(json.dumps({"id": nodeid, "outcome": outcome}) + "\\n")
    _OUT[0].flush()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    tmp = os.environ.get("AIRFIX_TOOL_TMP")
    if tmp and hasattr(config.option, "benchmark_storage"):
        config.option.benchmark_storage = "file://" + os.path.join(tmp, "benchmarks")


def pytest_sessionstart(session):
    _SESSION.append(session)
    path = os.environ.get("AIRFIX_HALT_ON")
    if path:
        with open(path, encoding="utf-8") as f:
            _HALT_ON.update(line for line in f.read().splitlines() if line)


def _halt(nodeid):
    tmp = os.environ.get("AIRFIX_TOOL_TMP")
    if tmp:
        with open(os.path.join(tmp, "halted"), "w", encoding="utf-8") as f:
            f.write(nodeid)
    _HALT_ON.clear()
    _SESSION[0].shouldfail = "airfix: " + nodeid + " passed before and fails now"


def pytest_collectreport(report):
    if report.failed:
        _write(report.nodeid or "<collection>", "error")


def pytest_runtest_logreport(report):
    if report.when == "call":
        _write(report.nodeid, "skipped" if report.skipped else report.outcome)
    elif report.failed:
        _write(report.nodeid, "error")
    elif report.skipped:
        _write(report.nodeid, "skipped")
    if report.failed and report.nodeid in _HALT_ON and _SESSION:
        _halt(report.nodeid)


def _coverage():
    if os.environ.get("AIRFIX_TEST_CONTEXTS") != "1":
        return None
    try:
        import coverage
    except ImportError:
        return None
    return coverage.Coverage.current()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    # what each test executes, setup and teardown included, under its node id (test impact)
    cov = _coverage()
    if cov is not None:
        cov.switch_context(item.nodeid)
    yield
    if cov is not None:
        cov.switch_context("")


def pytest_sessionfinish(session):
    _write("", "end")
'''
MESSAGE_LIMIT = 4000


@dataclass
class JunitReport(TestTally):
    """Counts and findings from a pytest JUnit XML report."""


def _file_of(classname: str, target: Path) -> str:
    """``tests.test_x.TestY`` → ``tests/test_x.py`` when that file exists (xunit2 reports)."""
    parts = classname.split(".")
    for n in range(len(parts), 0, -1):
        candidate = "/".join(parts[:n]) + ".py"
        if (target / candidate).is_file():
            return candidate
    return ""


def parse_junit(xml_text: str, target: Path) -> JunitReport:
    """Counts and one finding per failed/errored test from a pytest JUnit XML report."""
    root = ET.fromstring(xml_text)
    report = JunitReport()
    prefix = str(target).rstrip("/") + "/"
    for case in root.iter("testcase"):
        classname = case.get("classname") or ""
        name = case.get("name") or ""
        file = relative_path(case.get("file") or "", target) or _file_of(classname or name, target)
        line_attr = case.get("line")
        line = int(line_attr) + 1 if line_attr not in (None, "") else 0
        failures = case.findall("failure")
        errors = case.findall("error")
        collection = not classname or any(e.get("message") == "collection failure" for e in errors)
        if collection:
            nodeid = file or name
        else:
            module = file[:-3].replace("/", ".") if file.endswith(".py") else ""
            inner = (
                classname[len(module) + 1 :]
                if module and classname.startswith(module + ".")
                else ""
            )
            nodeid = "::".join(p for p in (file or classname, inner.replace(".", "::"), name) if p)
        if failures:
            report.record(nodeid, "failed")
        elif errors:
            report.record(nodeid, "error")
        elif case.find("skipped") is not None:
            report.record(nodeid, "skipped")
        else:
            report.record(nodeid, "passed")
        for element in failures + errors:
            kind = element.tag
            rule = "collection-error" if collection else kind
            head = (element.get("message") or "").replace(prefix, "")
            body = (element.text or "").replace(prefix, "").strip()
            message = f"{nodeid}: {head}" if head else nodeid
            if body:
                message += "\n" + body
            if len(message) > MESSAGE_LIMIT:
                message = message[: MESSAGE_LIMIT - 1] + "…"
            report.findings.append(
                Finding(
                    phase="test",
                    file=file,
                    line=line,
                    column=0,
                    rule=rule,
                    message=message,
                    key_rule="collection" if collection else "test",
                    key_message=nodeid,
                )
            )
    return report


def is_test_path(path: str) -> bool:
    base = path.split("::", 1)[0].rsplit("/", 1)[-1]
    return base.endswith(".py") and (base.startswith("test_") or base.endswith("_test.py"))


def pytest_environment(
    env: dict[str, str], workdir: Path, halt_on: Collection[str] = ()
) -> dict[str, str]:
    """The environment for a pytest process whose artefacts must stay in ``workdir``; with
    ``halt_on``, the session stops at the first of those tests that fails (:func:`halted_at`)."""
    guard_dir = workdir / "pytest_guard"
    guard_dir.mkdir(exist_ok=True)
    (guard_dir / f"{GUARD_MODULE}.py").write_text(GUARD_SOURCE)
    out = dict(env)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(guard_dir), env.get("PYTHONPATH", "")) if p)
    out["AIRFIX_TOOL_TMP"] = str(workdir)
    out["HYPOTHESIS_STORAGE_DIRECTORY"] = str(workdir / "hypothesis")
    out["PYTHONDONTWRITEBYTECODE"] = "1"
    if halt_on:
        (workdir / "halt_on.txt").write_text("".join(f"{t}\n" for t in sorted(halt_on)))
        out["AIRFIX_HALT_ON"] = str(workdir / "halt_on.txt")
    return out


def halted_at(workdir: Path) -> str:
    """The test whose failure stopped the session early ("" when the suite ran to its end)."""
    marker = workdir / "halted"
    return marker.read_text(encoding="utf-8") if marker.is_file() else ""


def pytest_args(target: Path, junit: Path, extra: list[str], files: list[str] | None) -> list[str]:
    return [
        "-p", "no:cacheprovider", "-p", GUARD_MODULE, "-q", "--tb=short",
        "--rootdir", str(target), "-o", "junit_family=xunit1", f"--junitxml={junit}",
        "--continue-on-collection-errors", *extra, *(files or []),
    ]  # fmt: skip


def read_junit(proc: ProcessResult, junit: Path, target: Path, tool: str) -> JunitReport:
    """Findings from the JUnit report; counts and outcomes by exact node id from the guard
    plugin's ``outcomes.jsonl`` when it finished writing (else the JUnit reconstruction)."""
    if not junit.is_file():
        raise ToolFailure(f"{tool}: pytest wrote no JUnit report (it did not run the tests)", proc)
    try:
        report = parse_junit(junit.read_text(encoding="utf-8", errors="replace"), target)
    except ET.ParseError as exc:
        raise ToolFailure(f"{tool}: unreadable JUnit report ({exc})", proc) from exc
    exact = read_outcomes(junit.parent / "outcomes.jsonl")
    if exact is not None:
        report.total = report.passed = report.failed = report.errors = report.skipped = 0
        report.outcomes = {}
        for test_id, outcome in exact:
            report.record(test_id, outcome)
    return report


def read_outcomes(path: Path) -> list[tuple[str, TestOutcome]] | None:
    """The guard plugin's records, or None when it did not run to the end of the session."""
    if not path.is_file():
        return None
    records: list[tuple[str, TestOutcome]] = []
    ended = False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = msgspec.json.decode(line, type=_OutcomeRecord)
        except msgspec.DecodeError:
            return None  # a torn record: the JUnit reconstruction stands in
        if rec.outcome == "end":
            ended = True
        elif rec.outcome != "end" and rec.id:
            records.append((rec.id, rec.outcome))
    return records if ended else None


class _OutcomeRecord(msgspec.Struct):
    """One line the guard plugin writes (``GUARD_SOURCE``)."""

    outcome: Literal["passed", "failed", "error", "skipped", "end"]
    id: str = ""


def judge_tests(code: int, report: JunitReport, proc: ProcessResult, tool: str) -> None:
    """Raise when the report contradicts the exit code: then neither can be trusted."""
    bad = report.failed + report.errors
    if code == 0 and bad:
        raise ToolFailure(f"{tool}: exit 0 but {bad} failed/errored tests in the report", proc)
    if code == 1 and not bad:
        raise ToolFailure(f"{tool}: exit 1 but no failed or errored test in the report", proc)


_NO_MODULE = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")


def missing_dependencies(report: JunitReport, target: Path) -> list[tuple[str, str]]:
    """(module, test file) for collection errors caused by a module that is neither installed
    nor part of the project: the environment is incomplete, no file has a defect to fix."""
    out: list[tuple[str, str]] = []
    for f in report.findings:
        if f.rule != "collection-error":
            continue
        for name in _NO_MODULE.findall(f.message):
            top = name.split(".", 1)[0]
            own = any(
                (root / top).is_dir() or (root / f"{top}.py").is_file()
                for root in (target, target / "src")
            )
            if not own and (top, f.file) not in out:
                out.append((top, f.file))
    return out


def environment_failure(
    adapter: BaseToolAdapter, report: JunitReport, target: Path, proc: ProcessResult
) -> None:
    """Raise a ``tool_error`` that names the missing packages and how to install them."""
    missing = missing_dependencies(report, target)
    if not missing:
        return
    env = adapter.python_env
    where = env.describe() if env is not None else "(airfix's own interpreter)"
    python = env.python if env is not None else "python"
    shown = ", ".join(f"'{m}' (imported by {f or 'a test'})" for m, f in missing[:5])
    raise ToolFailure(
        f"{adapter.name}: the project's environment {where} lacks {shown}: install the project's "
        f"dependencies there (e.g. {python} -m pip install -e '.[test]'), or give the project's "
        "interpreter with --python",
        proc,
    )


EXIT_MEANINGS = {2: "interrupted", 3: "internal error", 4: "usage or configuration error"}
NO_TESTS = "no tests collected (pytest exit 5): a test phase without tests is not a pass"


class PytestAdapter(BaseToolAdapter):
    name = "pytest"
    phase = "test"
    tier = "dynamic"
    executable_name = "pytest"
    module = "pytest"
    default_timeout_s = 900.0
    #: tests that passed before the change under check: the suite stops at the first that fails
    #: (a stack's tip whose verdict is known needs no more of it; its culprit is bisected next)
    halt_on: frozenset[str] = frozenset()

    def scope(self, target: Path, files: list[str]) -> list[str]:
        """Only test files and node ids are passed on; if none were touched, run everything.

        A source file given to pytest explicitly would be collected as a test module, and a
        change to a source file can break any test, so "no test files" means the full suite
        (returned as ``[]`` would mean "skip", hence ``None`` via :meth:`_scope`).  A node id
        names a test pytest reported, wherever it lives: a doctest's is in a source module
        (``--doctest-modules``), and dropping it would run the whole suite for one test.
        """
        return [
            f
            for f in files
            if ("::" in f or is_test_path(f)) and (target / f.split("::", 1)[0]).is_file()
        ]

    def _scope(self, target: Path, files: Sequence[str] | None) -> list[str] | None:
        scoped = super()._scope(target, files)
        return scoped or None

    def _environment(self, workdir: Path) -> dict[str, str]:
        return pytest_environment(super()._environment(workdir), workdir, self.halt_on)

    def build_command(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[str]:
        return [
            *self.invocation(exe),
            *pytest_args(target, workdir / "junit.xml", self.extra_args, files),
        ]

    def execute(self, ctx: RunContext) -> ToolRun:
        proc = self.spawn(
            ctx, self.build_command(ctx.executable, ctx.target, ctx.files, ctx.workdir)
        )
        code = check_exit(proc, (0, 1, 5), "pytest", EXIT_MEANINGS)
        if code == 5:
            return self.result(
                ctx, "failed", counts={"tests": 0}, metrics={TESTS_TOTAL: 0.0}, error=NO_TESTS
            )
        report = read_junit(proc, ctx.workdir / "junit.xml", ctx.target, "pytest")
        judge_tests(code, report, proc, "pytest")
        environment_failure(self, report, ctx.target, proc)
        issues = to_issues(self.name, report.findings)
        run = self.result(
            ctx,
            "failed" if code == 1 else "passed",
            issues=issues,
            counts=report.counts(),
            metrics=report.metrics(),
            tests=report.outcomes,
        )
        return halted(run, ctx.workdir)


def halted(run: ToolRun, workdir: Path) -> ToolRun:
    """``run``, marked as stopped early when a test of its ``halt_on`` failed."""
    at = halted_at(workdir)
    return msgspec.structs.replace(run, halted=f"{at} failed: it passed before") if at else run
