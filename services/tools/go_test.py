"""go test: Go's test runner (phase ``test``).

``go test -json -count=1 ./...`` prints test2json events, one JSON object per line (research B.7,
``go doc cmd/test2json``): ``{"Time","Action","Package","Test"?,"Elapsed"?,"Output"?,
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

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airfix.services.tools.base import (
    TESTS_TOTAL,
    Finding,
    RunContext,
    TestTally,
    ToolFailure,
    ToolRun,
    check_exit,
    relative_path,
    to_issues,
)
from airfix.services.tools.go_vet import (
    NO_PACKAGES,
    GoToolAdapter,
    compile_finding,
    go_scope,
    package_patterns,
)

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


def parse_go_test_json(stdout: str, stderr: str, target: Path) -> GoTestReport:
    """Counts and findings from ``go test -json`` output (stdout: events, stderr: text)."""
    report = GoTestReport()
    tests: dict[tuple[str, str], _Test] = {}
    pkg_result: dict[str, str] = {}
    pkg_output: dict[str, list[str]] = {}
    pkg_failed_build: dict[str, str] = {}
    build_lines: dict[str, list[str]] = {}
    build_failed: list[str] = []
    for raw in stdout.splitlines():
        line = raw.strip()
        if not line:
            continue
        event = None
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                event = None
        if not isinstance(event, dict) or not isinstance(event.get("Action"), str):
            report.other_lines.append(raw)
            continue
        report.events += 1
        action = event["Action"]
        output = event.get("Output")
        if action in ("build-output", "build-fail"):
            path = str(event.get("ImportPath") or "")
            if action == "build-output":
                build_lines.setdefault(path, []).append(str(output or ""))
            elif path not in build_failed:
                build_failed.append(path)
            continue
        package = str(event.get("Package") or "")
        name = event.get("Test")
        if name:
            key = (package, str(name))
            test = tests.setdefault(key, _Test(package, str(name)))
            if action == "output" and output is not None:
                test.output.append(str(output))
            elif action in ("pass", "fail", "skip"):
                test.result = action
            continue
        pkg_output.setdefault(package, [])
        if action == "output" and output is not None:
            pkg_output[package].append(str(output))
        elif action in ("pass", "fail", "skip"):
            pkg_result[package] = action
            if event.get("FailedBuild"):
                pkg_failed_build[package] = str(event["FailedBuild"])

    module = module_path(target)
    for test in tests.values():
        if test.result == "pass":
            report.passed += 1
        elif test.result == "skip":
            report.skipped += 1
        else:
            report.failed += 1
    report.total = report.passed + report.failed + report.skipped
    report.packages = len(pkg_result)
    report.failed_packages = sum(1 for r in pkg_result.values() if r == "fail")
    report.build_failures = len(pkg_failed_build)

    failed = [t for t in tests.values() if t.result not in ("pass", "skip")]
    failed_names = {(t.package, t.name) for t in failed}
    for test in failed:
        if any(p == test.package and n.startswith(test.name + "/") for p, n in failed_names):
            continue  # a subtest failed: that is the problem, not a second one
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

    seen: set[tuple[str, int, int, str]] = set()
    explained: set[str] = set()

    def add_compile(path: str, text_lines: Sequence[str]) -> bool:
        found = False
        for text in text_lines:
            for one in text.splitlines():
                if not one.strip() or one.startswith("#"):
                    continue
                finding = compile_finding(one, target, "build-error")
                if finding is None:
                    continue
                found = True
                key = (finding.file, finding.line, finding.column, finding.message)
                if key not in seen:
                    seen.add(key)
                    report.findings.append(finding)
        if found:
            explained.add(path.split(" ", 1)[0])
        return found

    for path in build_failed:
        add_compile(path, build_lines.get(path, []))
    # Go before 1.24: the build output is text on stderr, after "# <import path>" headers.
    current = ""
    stderr_blocks: dict[str, list[str]] = {}
    for one in stderr.splitlines():
        if one.startswith("# "):
            current = one[2:].strip()
            continue
        stderr_blocks.setdefault(current, []).append(one)
    for path, text_lines in stderr_blocks.items():
        add_compile(path, text_lines)

    failed_build_roots = {fb.split(" ", 1)[0] for fb in pkg_failed_build.values()}
    setup_failed = {p for p, out in pkg_output.items() if any("[setup failed]" in o for o in out)}
    for path in [*build_failed, *sorted(failed_build_roots)]:
        root = path.split(" ", 1)[0]
        if root in explained:
            continue
        explained.add(root)
        pkg_dir = package_dir(root, module, target)
        text = build_lines.get(path, []) or stderr_blocks.get(path, [])
        if root in setup_failed or path in setup_failed:
            lines = [t.strip() for t in text if t.strip() and not t.startswith("#")]
            report.setup_errors.append(f"{root}: " + " ".join(lines))
            continue
        report.findings.append(
            Finding(phase="build", file=pkg_dir if pkg_dir not in ("", ".") else "", line=0,
                    column=0, rule="build-failed",
                    message=_tail_message(f"{root}: build failed", text),
                    key_message=f"{root}: build failed")
        )  # fmt: skip

    for package, result in pkg_result.items():
        if result != "fail" or package in pkg_failed_build:
            continue
        if any(t.package == package for t in failed):
            continue
        pkg_dir = package_dir(package, module, target)
        report.findings.append(
            Finding(phase="test", file=pkg_dir if pkg_dir not in ("", ".") else "", line=0,
                    column=0, rule="package-failed",
                    message=_tail_message(f"{package}: package failed", pkg_output[package]),
                    key_message=f"{package}: package failed")
        )  # fmt: skip
    return report


# ---------------------------------------------------------------- the adapter


def is_go_test_file(path: str) -> bool:
    return path.endswith("_test.go")


class GoTestAdapter(GoToolAdapter):
    name = "go_test"
    phase = "test"
    tier = "dynamic"
    default_timeout_s = 900.0

    def _scope(self, target: Path, files: Sequence[str] | None) -> list[str] | None:
        if files is None:
            return None
        scoped = go_scope(target, [relative_path(str(f), target) for f in files])
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
        report = parse_go_test_json(proc.stdout, proc.stderr, ctx.target)
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
