"""go test: Go's test runner (phase ``test``).

``go test -json -count=1 ./...`` prints test2json events, one JSON object per line (``go doc
cmd/test2json``): ``{"Time","Action","Package","Test"?,"Elapsed"?,"Output"?,
"OutputType"?,"FailedBuild"?,"ImportPath"?}`` with actions ``start, run, pause, cont, pass, bench,
fail, output, skip`` and, since Go 1.24, ``build-output``/``build-fail`` (keyed by
``ImportPath``).  An event with ``Test`` is about that test (subtests are ``TestX/case``); one
without is about the package.  Exit 0 = everything passed, 1 = a test or a build failed.

Counts (metrics ``tests_total``/``tests_passed``/``tests_failed``/``tests_skipped``) cover every
test with a result, subtests included (what ``--- PASS/FAIL/SKIP`` lines of ``go test -v`` count).
A test that started but never reported a result (the binary died) counts as failed.

Issues:

* each failed test whose subtests did not fail (a parent failing only because a subtest did is
  not a second problem), rule ``failure``; fingerprinted by ``<import path>::<test name>`` (not by
  its changing output), located at the ``func TestX(`` declaration; the message is the id and
  the tail of the test's own output;
* each compiler line of a package that failed to build (``build-output`` events, or on older Go
  the ``file:line:col: msg`` lines on stderr), phase ``build``, rule ``build-error``,
  deduplicated across the package and its test variant; ``go test`` also runs a subset of vet
  checks, and their findings fail the build the same way;
* a package that failed with no failed test and no build failure (``TestMain`` exiting non-zero,
  a panic in ``init``), rule ``package-failed``, with the package's output tail.

A package whose ``go test`` reports ``[setup failed]`` without a ``file:line:col`` line (the
pattern matches no module, a directory does not exist) was never loaded: that is the go command
failing, a ``tool_error``; with positions (an import no module provides) it is a build issue.

Decisions (as for pytest): no tests at all is ``failed`` with ``tests_total = 0`` and no issues
(a test phase without tests is not a pass); exit 1 with nothing failed, exit 0 with something
failed, output without test2json events, or any other exit is a ``tool_error``.  ``-count=1``:
cached results are not a measurement of this tree.  Scoped runs pass only the packages of touched
``_test.go`` files; any other change can break any package's tests, so it runs ``./...``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from airfix.events.schema import Phase
from airfix.services.tools.adapter import RunContext, ToolFailure, check_exit
from airfix.services.tools.fingerprints import Finding, to_issues
from airfix.services.tools.go_toolchain import (
    NO_PACKAGES,
    GoToolAdapter,
    compile_finding,
    go_scope,
    package_patterns,
)
from airfix.services.tools.results import TESTS_TOTAL, TestTally, ToolRun

MESSAGE_LIMIT = 4000
NO_TESTS = (
    "no tests ran (go test found no test functions): a test phase without tests is not a pass"
)
_FRAME = re.compile(r"^\s*(?:=== (?:RUN|PAUSE|CONT|NAME)\b|--- (?:PASS|FAIL|SKIP):)")
_MODULE = re.compile(r"^\s*module\s+\"?([^\s\"]+)\"?", re.MULTILINE)


@dataclass
class _Test:
    package: str
    name: str
    result: str = ""  # pass / fail / skip; "" = no result
    output: list[str] = field(default_factory=list)


@dataclass
class GoTestReport(TestTally):
    packages: int = 0
    failed_packages: int = 0
    build_failures: int = 0  # packages whose build failed (FailedBuild / build-fail)
    events: int = 0
    other_lines: list[str] = field(default_factory=list)
    setup_errors: list[str] = field(default_factory=list)  # "[setup failed]" without a position

    def counts(self) -> dict[str, int]:
        return {
            **{k: v for k, v in super().counts().items() if k != "errors"},
            "packages": self.packages,
            "failed_packages": self.failed_packages,
            "build_failures": self.build_failures,
        }

    @property
    def anything_failed(self) -> bool:
        return bool(self.failed or self.failed_packages or self.build_failures or self.findings)


# ---------------------------------------------------------------- packages and test locations


def module_path(target: Path) -> str:
    try:
        m = _MODULE.search((target / "go.mod").read_text(encoding="utf-8"))
    except OSError:
        return ""
    return m.group(1) if m else ""


def package_dir(import_path: str, module: str, target: Path) -> str:
    """The package's directory relative to ``target`` ("." for the root), "" if unknown."""
    if not module:
        return ""
    if import_path == module:
        return "."
    if import_path.startswith(module + "/"):
        rel = import_path[len(module) + 1 :]
        return rel if (target / rel).is_dir() else ""
    return ""


def locate_test(target: Path, pkg_dir: str, test: str) -> tuple[str, int]:
    """``(file, line)`` of ``func TestX(`` for ``TestX/sub`` in the package's test files."""
    if not pkg_dir:
        return "", 0
    top = test.split("/", 1)[0]
    pattern = re.compile(rf"^func\s+{re.escape(top)}\s*\(", re.MULTILINE)
    directory = target / pkg_dir
    for path in sorted(directory.glob("*_test.go")):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        m = pattern.search(text)
        if m:
            return path.relative_to(target).as_posix(), text.count("\n", 0, m.start()) + 1
    return "", 0


def _tail_message(head: str, lines: Sequence[str]) -> str:
    body = "\n".join(line.rstrip("\n") for line in lines if not _FRAME.match(line)).strip("\n")
    lines_out = body.splitlines()
    indent = min((len(s) - len(s.lstrip()) for s in lines_out if s.strip()), default=0)
    body = "\n".join(s[indent:] for s in lines_out).strip()
    room = MESSAGE_LIMIT - len(head) - 3
    if len(body) > room:
        body = "…" + body[-(room - 1) :]
    return f"{head}: {body}" if body else head


# ---------------------------------------------------------------- parsing


class GoTestEvent(msgspec.Struct, frozen=True, rename="pascal"):
    """One test2json event (``go doc cmd/test2json``); ``Time``/``Elapsed`` are ignored."""

    action: str
    package: str = ""
    test: str | None = None
    output: str | None = None
    import_path: str = ""  # build-output / build-fail (Go 1.24+)
    failed_build: str = ""  # the import path whose build failed this package


@dataclass
class _Events:
    """The test2json events of one run, gathered by test, by package and by package build."""

    tests: dict[tuple[str, str], _Test] = field(default_factory=dict)
    pkg_result: dict[str, str] = field(default_factory=dict)
    pkg_output: dict[str, list[str]] = field(default_factory=dict)
    pkg_failed_build: dict[str, str] = field(default_factory=dict)
    build_lines: dict[str, list[str]] = field(default_factory=dict)
    build_failed: list[str] = field(default_factory=list)

    def add(self, event: GoTestEvent) -> None:
        action = event.action
        output = event.output
        if action in ("build-output", "build-fail"):
            path = event.import_path
            if action == "build-output":
                self.build_lines.setdefault(path, []).append(output or "")
            elif path not in self.build_failed:
                self.build_failed.append(path)
            return
        package = event.package
        name = event.test
        if name:
            test = self.tests.setdefault((package, name), _Test(package, name))
            if action == "output" and output is not None:
                test.output.append(output)
            elif action in _RESULTS:
                test.result = action
            return
        self.pkg_output.setdefault(package, [])
        if action == "output" and output is not None:
            self.pkg_output[package].append(output)
        elif action in _RESULTS:
            self.pkg_result[package] = action
            if event.failed_build:
                self.pkg_failed_build[package] = event.failed_build

    def failed_tests(self) -> list[_Test]:
        """Tests that failed or never reported a result (the binary died)."""
        return [t for t in self.tests.values() if t.result not in ("pass", "skip")]


_RESULTS = ("pass", "fail", "skip")


def _event(line: str) -> GoTestEvent | None:
    """The test2json event on ``line``, ``None`` for a line that is not JSON; a JSON line that
    is not an event raises ``msgspec.ValidationError`` (a ``ValueError`` naming the field)."""
    if not line.startswith("{"):
        return None
    try:
        return msgspec.json.decode(line, type=GoTestEvent)
    except msgspec.ValidationError:
        raise
    except msgspec.DecodeError:
        return None


@dataclass
class _BuildErrors:
    """Compiler lines of failed package builds as findings, deduplicated across a package and its
    test variant; ``explained`` holds the packages that got at least one."""

    report: GoTestReport
    target: Path
    seen: set[tuple[str, int, int, str]] = field(default_factory=set)
    explained: set[str] = field(default_factory=set)

    def add(self, path: str, text_lines: Sequence[str]) -> None:
        found = False
        lines = (one for text in text_lines for one in text.splitlines())
        for one in lines:
            finding = (
                None if one.startswith("#") else compile_finding(one, self.target, "build-error")
            )
            if finding is None:
                continue
            found = True
            key = (finding.file, finding.line, finding.column, finding.message)
            if key not in self.seen:
                self.seen.add(key)
                self.report.findings.append(finding)
        if found:
            self.explained.add(path.split(" ", 1)[0])


def _stderr_blocks(stderr: str) -> dict[str, list[str]]:
    """Go before 1.24: the build output is text on stderr, after ``# <import path>`` headers."""
    current = ""
    blocks: dict[str, list[str]] = {}
    for one in stderr.splitlines():
        if one.startswith("# "):
            current = one[2:].strip()
            continue
        blocks.setdefault(current, []).append(one)
    return blocks


def _package_finding(
    phase: Phase, rule: str, head: str, lines: Sequence[str], pkg_dir: str
) -> Finding:
    """A problem of a whole package (no file and line to point at), fingerprinted by ``head``."""
    return Finding(
        phase=phase, file=pkg_dir if pkg_dir not in ("", ".") else "", line=0, column=0,
        rule=rule, message=_tail_message(head, lines), key_message=head,
    )  # fmt: skip


def parse_go_test_json(stdout: str, stderr: str, target: Path) -> GoTestReport:
    """Counts and findings from ``go test -json`` output (stdout: events, stderr: text);
    ``ValueError`` on a JSON line that is not a test2json event, naming the line and field."""
    report = GoTestReport()
    events = _Events()
    for number, raw in enumerate(stdout.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            event = _event(raw.strip())
        except msgspec.ValidationError as exc:
            raise ValueError(f"stdout line {number}: {exc}") from exc
        if event is None:
            report.other_lines.append(raw)
            continue
        report.events += 1
        events.add(event)
    module = module_path(target)
    _count(report, events)
    _add_test_failures(report, events, target, module)
    _add_build_failures(report, events, stderr, target, module)
    _add_package_failures(report, events, target, module)
    return report


def _count(report: GoTestReport, events: _Events) -> None:
    for test in events.tests.values():
        if test.result == "pass":
            report.passed += 1
        elif test.result == "skip":
            report.skipped += 1
        else:
            report.failed += 1
    report.total = report.passed + report.failed + report.skipped
    report.packages = len(events.pkg_result)
    report.failed_packages = sum(1 for r in events.pkg_result.values() if r == "fail")
    report.build_failures = len(events.pkg_failed_build)


def _add_test_failures(report: GoTestReport, events: _Events, target: Path, module: str) -> None:
    """One finding per failed test whose subtests did not fail (a parent failing only because a
    subtest did is not a second problem), at its ``func TestX(`` declaration."""
    failed = events.failed_tests()
    failed_names = {(t.package, t.name) for t in failed}
    for test in failed:
        if any(p == test.package and n.startswith(test.name + "/") for p, n in failed_names):
            continue
        test_id = f"{test.package}::{test.name}"
        file, def_line = locate_test(target, package_dir(test.package, module, target), test.name)
        lines = test.output or []
        if not test.result:
            lines = [*lines, "(no result: the test binary stopped while this test was running)"]
        report.findings.append(
            Finding(phase="test", file=file, line=def_line, column=0, rule="failure",
                    message=_tail_message(test_id, lines), key_rule="test",
                    key_message=test_id)
        )  # fmt: skip


def _add_build_failures(
    report: GoTestReport, events: _Events, stderr: str, target: Path, module: str
) -> None:
    """Compiler lines of failed builds; a failed build without any is one ``build-failed``
    finding, or a setup error when the package was never loaded (``[setup failed]``)."""
    builds = _BuildErrors(report, target)
    for path in events.build_failed:
        builds.add(path, events.build_lines.get(path, []))
    stderr_blocks = _stderr_blocks(stderr)
    for path, text_lines in stderr_blocks.items():
        builds.add(path, text_lines)
    failed_build_roots = {fb.split(" ", 1)[0] for fb in events.pkg_failed_build.values()}
    setup_failed = {
        p for p, out in events.pkg_output.items() if any("[setup failed]" in o for o in out)
    }
    for path in [*events.build_failed, *sorted(failed_build_roots)]:
        root = path.split(" ", 1)[0]
        if root in builds.explained:
            continue
        builds.explained.add(root)
        text = events.build_lines.get(path, []) or stderr_blocks.get(path, [])
        if root in setup_failed or path in setup_failed:
            lines = [t.strip() for t in text if t.strip() and not t.startswith("#")]
            report.setup_errors.append(f"{root}: " + " ".join(lines))
            continue
        report.findings.append(
            _package_finding("build", "build-failed", f"{root}: build failed", text,
                             package_dir(root, module, target))
        )  # fmt: skip


def _add_package_failures(report: GoTestReport, events: _Events, target: Path, module: str) -> None:
    """A package that failed with no failed test and no build failure (``TestMain`` exiting
    non-zero, a panic in ``init``)."""
    failed_packages = {t.package for t in events.failed_tests()}
    for package, result in events.pkg_result.items():
        if result != "fail" or package in events.pkg_failed_build or package in failed_packages:
            continue
        report.findings.append(
            _package_finding("test", "package-failed", f"{package}: package failed",
                             events.pkg_output[package], package_dir(package, module, target))
        )  # fmt: skip


# ---------------------------------------------------------------- the adapter


def is_go_test_file(path: str) -> bool:
    return path.endswith("_test.go")


class GoTestAdapter(GoToolAdapter):
    name = "go_test"
    phase = "test"
    tier = "dynamic"
    default_timeout_s = 900.0

    def _scope(self, target: Path, files: Sequence[str] | None) -> list[str] | None:
        scoped = go_scope(target, files)
        if scoped is None or not scoped or not all(is_go_test_file(f) for f in scoped):
            return None  # a source change can break any package's tests
        return [f for f in scoped if (target / f).is_file()] or None

    def build_command(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[str]:
        patterns = package_patterns(files) if files else ["./..."]
        return [exe, "test", "-json", "-count=1", *self.extra_args, *patterns]

    def execute_go(self, ctx: RunContext) -> ToolRun:
        proc = self.spawn(
            ctx, self.build_command(ctx.executable, ctx.target, ctx.files, ctx.workdir)
        )
        code = check_exit(proc, (0, 1), "go test", {2: "usage error"})
        try:
            report = parse_go_test_json(proc.stdout, proc.stderr, ctx.target)
        except ValueError as exc:
            raise ToolFailure(f"go test: unparsable test2json output ({exc})", proc) from exc
        if report.setup_errors:  # the go command could not even load the packages
            raise ToolFailure("go test: setup failed: " + "; ".join(report.setup_errors[:5]), proc)
        if code == 1 and not report.anything_failed:
            if NO_PACKAGES in proc.stderr:
                return self.result(
                    ctx, "failed", counts={"tests": 0}, metrics={TESTS_TOTAL: 0.0},
                    error=NO_TESTS + " (" + NO_PACKAGES + ")",
                )  # fmt: skip
            raise ToolFailure("go test: exit 1 but no failed test or build in its output", proc)
        if code == 0 and report.anything_failed:
            raise ToolFailure("go test: exit 0 but its output reports failures", proc)
        if not report.events:
            raise ToolFailure("go test: no test2json events in its output", proc)
        if code == 0 and report.total == 0:
            return self.result(
                ctx, "failed", counts=report.counts(), metrics=report.metrics(), error=NO_TESTS
            )
        issues = to_issues(self.name, report.findings)
        return self.result(
            ctx,
            "failed" if code == 1 else "passed",
            issues=issues,
            counts=report.counts(),
            metrics=report.metrics(),
        )
