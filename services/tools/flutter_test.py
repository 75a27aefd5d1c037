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

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import msgspec

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


class _Kind(msgspec.Struct, frozen=True):
    """Just an event's ``type``, to pick the Struct for the rest (unknown kinds are skipped)."""

    type: str | None = None


class SuiteInfo(msgspec.Struct, frozen=True):
    id: int = -1
    path: str | None = None


class SuiteEvent(msgspec.Struct, frozen=True):
    suite: SuiteInfo


class TestInfo(msgspec.Struct, frozen=True, rename={"suite_id": "suiteID"}):
    """``testStart.test``; ``root_*`` point at the user's file when ``url`` is in flutter_test."""

    id: int
    name: str = ""
    suite_id: int = -1
    line: int | None = None
    url: str | None = None
    root_line: int | None = None
    root_url: str | None = None


class TestStartEvent(msgspec.Struct, frozen=True):
    test: TestInfo


class TestDoneEvent(msgspec.Struct, frozen=True, rename={"test_id": "testID"}):
    test_id: int = -1
    result: str = ""  # success | failure | error
    skipped: bool = False
    hidden: bool = False


class ErrorEvent(msgspec.Struct, frozen=True, rename="camel"):
    test_id: int = msgspec.field(default=-1, name="testID")
    error: str = ""
    stack_trace: str = ""
    is_failure: bool = False


class PrintEvent(msgspec.Struct, frozen=True, rename="camel"):
    test_id: int = msgspec.field(default=-1, name="testID")
    message: str = ""
    message_type: str = "print"


class DoneEvent(msgspec.Struct, frozen=True):
    success: bool | None = None  # null: the runner closed before all tests completed


DartEvent = SuiteEvent | TestStartEvent | TestDoneEvent | ErrorEvent | PrintEvent | DoneEvent
_EVENT_TYPES: dict[str, type[DartEvent]] = {
    "suite": SuiteEvent,
    "testStart": TestStartEvent,
    "testDone": TestDoneEvent,
    "error": ErrorEvent,
    "print": PrintEvent,
    "done": DoneEvent,
}


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


def _events(stdout: str, report: DartTestReport) -> Iterator[DartEvent | None]:
    """The reporter's JSON events, one per line (``None`` for a kind airfix does not use);
    a line that is not JSON is kept as other output.  A wrongly shaped event is a
    ``ValueError`` naming the line and the path (``$.test.id``)."""
    for number, raw in enumerate(stdout.splitlines(), 1):
        line = raw.strip()
        kind = None
        if line.startswith("{"):
            try:
                kind = msgspec.json.decode(line, type=_Kind).type
            except msgspec.ValidationError as exc:
                raise ValueError(f"stdout line {number}: {exc}") from exc
            except msgspec.DecodeError:
                kind = None
        if kind is None:
            if line:
                report.other_lines.append(raw)
            continue
        report.events += 1
        struct = _EVENT_TYPES.get(kind)
        try:
            event = msgspec.json.decode(line, type=struct) if struct is not None else None
        except msgspec.ValidationError as exc:
            raise ValueError(f"stdout line {number} ({kind}): {exc}") from exc
        yield event


def _record(
    event: DartEvent | None,
    report: DartTestReport,
    suites: dict[int, str],
    tests: dict[int, _DartTest],
) -> None:
    """Fold one reporter event into the suites, tests and report seen so far."""
    if isinstance(event, SuiteEvent):
        suites[event.suite.id] = event.suite.path or ""
    elif isinstance(event, TestStartEvent):
        t = event.test
        url = t.root_url or t.url
        line_no = t.root_line if t.root_url else t.line
        tests[t.id] = _DartTest(
            id=t.id, name=t.name, suite=t.suite_id, url=url or None, line=line_no or 0
        )
    elif isinstance(event, TestDoneEvent):
        test = tests.get(event.test_id)
        if test is not None:
            test.result = event.result
            test.skipped = event.skipped
            test.hidden = event.hidden
    elif isinstance(event, ErrorEvent):
        test = tests.get(event.test_id)
        if test is not None:
            test.errors.append((event.error, event.stack_trace, event.is_failure))
    elif isinstance(event, PrintEvent):
        test = tests.get(event.test_id)
        if test is not None and event.message_type == "print":
            test.prints.append(event.message)
    elif isinstance(event, DoneEvent):
        report.done = True
        report.success = event.success


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
        try:
            report = parse_test_json(proc.stdout, ctx.target)
        except ValueError as exc:
            raise ToolFailure(
                f"{self.name}: unparsable JSON reporter output ({exc})", proc
            ) from exc
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
