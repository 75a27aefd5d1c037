"""flutter test / dart test: Dart's test runners (phase ``test``).

``flutter test --machine`` and ``dart test --reporter json`` print the same package:test JSON
reporter protocol: one event per line, ``start``, ``suite``,
``allSuites``, ``group``, ``testStart{test{id, name, suiteID, groupIDs, line, column, url,
root_line?, root_column?, root_url?}}``, ``print``, ``error{testID, error, stackTrace,
isFailure}``, ``testDone{testID, result: success|failure|error, skipped, hidden}``,
``done{success}``.  The flutter tool may interleave lines that are not JSON (flutter#122814):
they are ignored.

Counting (metrics ``tests_total``/``tests_passed``/``tests_failed``/``tests_skipped``): tests
whose ``testDone`` is not ``hidden`` — hidden are the virtual "loading <file>" tests and
``setUpAll``/``tearDownAll`` when they succeed; the protocol makes them visible when they fail, so
a test file that does not compile is a failed test.  ``skipped: true`` is skipped (its result
says ``success`` for backwards compatibility); an ``error`` event for a test, even one after its
``testDone`` ("failed after it had already completed"), makes it failed; a test without
``testDone`` (the runner died) is failed.

Issues: one per failed test, rule ``failure`` (a ``TestFailure``: an expectation) or ``error``
(anything else), ``load-error`` for a file that failed to load.  Fingerprint: ``<file>::<test
name>`` (like pytest's node id), not the error text.  File and line: ``root_url``/``root_line``
when present (a ``testWidgets`` test's ``url`` points into flutter_test), else ``url``/``line``,
else the suite's path.  Message: the id, then the tail of its prints, errors and stack traces.

Exit status and ``done``: 0 needs ``done.success == true``; 1 needs a failed test (or, for
flutter, its "no test files" message, which like pytest's exit 5 makes the run ``failed`` with
``tests_total = 0``); ``dart test`` exits 79 when no tests ran (same treatment).  No ``done``
event, ``done.success == null`` (runner closed early), contradictions, other exits: ``tool_error``.

Scoped runs pass the touched ``*_test.dart`` files; any other change runs the whole suite.
``flutter test --no-pub`` and the ``.dart_tool/package_config.json`` check keep ``pub get`` from
writing into the target.  ``flutter test`` still writes its own build products under ``build/``
and ``.dart_tool/`` (both in every Flutter project's ``.gitignore``); it has no option to move them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from airfix.services.tools.adapter import BaseToolAdapter, RunContext, ToolFailure, check_exit
from airfix.services.tools.dart_analyze import missing_sdk, require_resolved
from airfix.services.tools.fingerprints import Finding, relative_path, to_issues
from airfix.services.tools.results import TESTS_TOTAL, TestTally, ToolRun

MESSAGE_LIMIT = 4000
NO_TESTS = "no tests ran: a test phase without tests is not a pass"
_NO_TEST_FILES = re.compile(
    r'Test directory "[^"]*" (?:not found|does not appear to contain any test files)'
)
_LOADING = re.compile(r"^(?:loading|compiling) (?P<path>.+)$")


@dataclass
class _DartTest:
    id: int
    name: str
    suite: int
    url: str | None = None
    line: int = 0
    result: str = ""  # testDone result; "" = no testDone
    skipped: bool = False
    hidden: bool = False
    errors: list[tuple[str, str, bool]] = field(default_factory=list)
    prints: list[str] = field(default_factory=list)


@dataclass
class DartTestReport(TestTally):
    events: int = 0
    done: bool = False
    success: bool | None = None
    other_lines: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = super().counts()
        del counts["errors"]
        return counts


def _file_of(url: str | None, target: Path) -> str:
    """A ``file://`` URL or a path as a target-relative path; ``package:`` URLs give ""."""
    if not url:
        return ""
    if url.startswith("file:"):
        return relative_path(unquote(urlparse(url).path), target)
    if ":" in url.split("/", 1)[0]:
        return ""  # package:, dart:, http(s):
    return relative_path(url, target)


def _message(head: str, test: _DartTest, prefix: str) -> str:
    parts = [p.rstrip() for p in test.prints]
    for error, stack, _failure in test.errors:
        parts.append(error.replace(prefix, "").rstrip())
        if stack.strip():
            parts.append(stack.replace(prefix, "").rstrip())
    if not test.result:
        parts.append("(no testDone: the test runner stopped while this test was running)")
    body = "\n".join(p for p in parts if p).strip()
    room = MESSAGE_LIMIT - len(head) - 3
    if len(body) > room:
        body = "…" + body[-(room - 1) :]
    return f"{head}: {body}" if body else head


def _events(stdout: str, report: DartTestReport) -> Iterator[dict[str, Any]]:
    """The reporter's JSON events, one per line; anything else is kept as other output."""
    for raw in stdout.splitlines():
        line = raw.strip()
        event = None
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                event = None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            if line:
                report.other_lines.append(raw)
            continue
        report.events += 1
        yield event


def _record(
    event: dict[str, Any],
    report: DartTestReport,
    suites: dict[int, str],
    tests: dict[int, _DartTest],
) -> None:
    """Fold one reporter event into the suites, tests and report seen so far."""
    kind = event["type"]
    test = tests.get(int(event.get("testID", -1)))
    if kind == "suite":
        suite = event.get("suite") or {}
        suites[int(suite.get("id", -1))] = str(suite.get("path") or "")
    elif kind == "testStart":
        t = event.get("test") or {}
        url = t.get("root_url") or t.get("url")
        line_no = t.get("root_line") if t.get("root_url") else t.get("line")
        tests[int(t["id"])] = _DartTest(
            id=int(t["id"]), name=str(t.get("name") or ""), suite=int(t.get("suiteID", -1)),
            url=str(url) if url else None, line=int(line_no or 0),
        )  # fmt: skip
    elif kind == "testDone" and test is not None:
        test.result = str(event.get("result") or "")
        test.skipped = bool(event.get("skipped"))
        test.hidden = bool(event.get("hidden"))
    elif kind == "error" and test is not None:
        test.errors.append(
            (str(event.get("error") or ""), str(event.get("stackTrace") or ""),
             bool(event.get("isFailure")))
        )  # fmt: skip
    elif kind == "print" and test is not None and event.get("messageType", "print") == "print":
        test.prints.append(str(event.get("message") or ""))
    elif kind == "done":
        report.done = True
        success = event.get("success")
        report.success = success if isinstance(success, bool) else None


def parse_test_json(stdout: str, target: Path) -> DartTestReport:
    """Counts and one finding per failed test from package:test JSON reporter output."""
    report = DartTestReport()
    suites: dict[int, str] = {}
    tests: dict[int, _DartTest] = {}
    for event in _events(stdout, report):
        _record(event, report, suites, tests)

    prefix = str(target).rstrip("/") + "/"
    for test in tests.values():
        failed = bool(test.errors) or test.result not in ("success",)
        if test.hidden and not failed:
            continue
        report.total += 1
        if failed:
            report.failed += 1
        elif test.skipped:
            report.skipped += 1
            continue
        else:
            report.passed += 1
            continue
        suite_file = _file_of(suites.get(test.suite), target)
        loading = _LOADING.match(test.name) if not test.url else None
        if loading:
            file = suite_file or _file_of(loading.group("path"), target)
            test_id, rule, key_rule = file or test.name, "load-error", "load"
        else:
            file = _file_of(test.url, target) or suite_file
            test_id = f"{file or suite_file}::{test.name}"
            only_failures = test.errors and all(failure for _e, _s, failure in test.errors)
            rule = "failure" if test.result == "failure" or only_failures else "error"
            key_rule = "test"
        report.findings.append(
            Finding(phase="test", file=file, line=test.line if not loading else 0, column=0,
                    rule=rule, message=_message(test_id, test, prefix), key_rule=key_rule,
                    key_message=test_id)
        )  # fmt: skip
    return report


def is_dart_test_file(path: str) -> bool:
    return path.endswith("_test.dart")


class FlutterTestAdapter(BaseToolAdapter):
    """``flutter test --machine --no-pub`` (Flutter projects)."""

    name = "flutter_test"
    language = "flutter"
    phase = "test"
    tier = "dynamic"
    executable_name = "flutter"
    default_timeout_s = 1200.0
    ok_exits: tuple[int, ...] = (0, 1)
    no_tests_exit: int | None = None

    def base_args(self) -> list[str]:
        return ["test", "--machine", "--no-pub"]

    def run(
        self, target: Path, files: Sequence[str] | None = None, *, timeout_s: float | None = None
    ) -> ToolRun:
        return missing_sdk(self) or super().run(target, files, timeout_s=timeout_s)

    def _scope(self, target: Path, files: Sequence[str] | None) -> list[str] | None:
        if files is None:
            return None
        rel = [relative_path(str(f), target) for f in files]
        tests = [f for f in rel if is_dart_test_file(f) and (target / f).is_file()]
        if not tests or len(tests) != len(rel):
            return None  # a source change can break any test
        return tests

    def build_command(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[str]:
        return [exe, *self.base_args(), *self.extra_args, *(files or [])]

    def execute(self, ctx: RunContext) -> ToolRun:
        require_resolved(ctx.target, self.name)
        proc = self.spawn(
            ctx, self.build_command(ctx.executable, ctx.target, ctx.files, ctx.workdir)
        )
        code = check_exit(proc, self.ok_exits, self.name, {64: "usage error", 65: "data error"})
        report = parse_test_json(proc.stdout, ctx.target)
        no_tests = code == self.no_tests_exit or (
            code == 1 and not report.events and _NO_TEST_FILES.search(proc.stdout + proc.stderr)
        )
        if no_tests:
            return self.result(
                ctx, "failed", counts={"tests": 0}, metrics={TESTS_TOTAL: 0.0}, error=NO_TESTS
            )
        if not report.done:
            raise ToolFailure(f"{self.name}: no 'done' event: the test run did not finish", proc)
        if report.success is None:
            raise ToolFailure(f"{self.name}: the runner closed before all tests completed", proc)
        if code == 0 and (report.failed or not report.success):
            raise ToolFailure(f"{self.name}: exit 0 but the JSON reports failures", proc)
        if code != 0 and not report.failed:
            raise ToolFailure(f"{self.name}: exit {code} but no failed test in the JSON", proc)
        if report.success and report.failed:
            raise ToolFailure(f"{self.name}: 'done' says success but tests failed", proc)
        if code == 0 and report.total == 0:
            return self.result(
                ctx, "failed", counts=report.counts(), metrics=report.metrics(), error=NO_TESTS
            )
        issues = to_issues(self.name, report.findings)
        return self.result(
            ctx,
            "failed" if report.failed else "passed",
            issues=issues,
            counts=report.counts(),
            metrics=report.metrics(),
        )


class DartTestAdapter(FlutterTestAdapter):
    """``dart test --reporter json`` (pure Dart packages); exit 79 = no tests ran."""

    name = "dart_test"
    language = "dart"
    executable_name = "dart"
    ok_exits = (0, 1, 79)
    no_tests_exit = 79

    def base_args(self) -> list[str]:
        return ["test", "--reporter", "json"]
