"""js_test: a JavaScript/TypeScript project's test runner (phase ``test``, dynamic tier).

Which runner: ``scripts.test`` in ``package.json`` names it (``vitest``, ``jest`` or
``node --test``); otherwise a ``vitest`` or ``jest`` dependency decides; otherwise Node's built-in
runner (``node --test`` with its default file discovery).  A test script or dependency naming a
runner airfix cannot read (mocha, ava, jasmine, karma, tap, tape, uvu, playwright, cypress) is a
``tool_error``: running ``node --test`` instead would measure something else.  Runners are taken
from the target's ``node_modules/.bin`` first (``node`` itself from ``PATH``).  The tool name is
``js_test`` whichever runner ran; the command and ``version`` tell which.

Machine output, per runner (each written to the run's temporary directory):

* Node (verified with Node 20.20): ``--test-reporter=junit`` exists but its ``<testcase>`` has no
  file attribute, so two files with a test of the same name could not be told apart.  Instead a
  ten-line custom reporter module (the documented ``--test-reporter=<module>`` API, Node >= 18.15)
  is written to the temporary directory; it prints one JSON object per ``test:pass``/``test:fail``
  event (name, nesting, file, line, column, suite or test, skip/todo, failure type, error with its
  cause's stack) and per ``test:diagnostic`` (Node's own totals: ``tests``, ``pass``, ``fail``,
  ``cancelled``, ``skipped``, ``todo``), then an end marker; a report without totals or end marker
  is a ``tool_error``.  ``--test-reporter=spec`` goes to stdout as evidence.  Events arrive
  children-first, which gives each test its suite path (``file > suite > test``, the issue's
  identity).  Issues: failed tests (``failure``), files that fail to load (``load-error``), suites
  whose hook or body threw (``suite-failure``); parents failing only because a subtest failed and
  tests cancelled because their parent failed are not separate issues.  Counts are Node's: tests,
  passed, failed, ``errors`` = cancelled, ``skipped`` = skipped + todo.
* jest: ``--ci --json --outputFile=<tmp> --testLocationInResults --cacheDirectory=<tmp>``
  (``--ci``: new snapshots are not written into the target).
* vitest: ``vitest run --reporter=json --outputFile=<tmp> --includeTaskLocation --no-cache``
  (``--no-cache``: the results cache would go to ``node_modules/.vite`` in the target).

  jest and vitest share the JSON shape (``numTotalTests``, ``testResults[].assertionResults[]``
  with ``ancestorTitles``, ``title``, ``status``, ``failureMessages``, ``location``).  A test file
  that failed without a failed test in it (it did not load) is a ``load-error`` issue and counts as
  one errored test, as pytest counts a collection error.  Both get ``--passWithNoTests`` so that
  "no tests" is a readable report rather than an exit 1.

Exit codes: 0 passed, 1 failures; anything else, a missing or unreadable report, or a report
that contradicts the exit code is a ``tool_error``.  A run with zero tests is ``failed`` with
``tests_total = 0`` and no issues (as pytest's exit 5: a test phase without tests is not a pass).

The environment has ``CI=true`` (runners then never write snapshots or start watch mode),
``NO_COLOR``/``FORCE_COLOR=0``.  Scoped runs pass only test files (Node/vitest: as paths; jest:
``--runTestsByPath``); a change to a source file can break any test, so without a test file among
the requested ones the whole suite runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airfix.services.tools.base import (
    Finding,
    ProcessResult,
    RunContext,
    TestTally,
    ToolFailure,
    ToolRun,
    check_exit,
    relative_path,
    to_issues,
)
from airfix.services.tools.eslint import (
    NodeToolAdapter,
    error_summary,
    read_package_json,
    strip_ansi,
)

RUNNERS = ("node", "jest", "vitest")
UNSUPPORTED_RUNNERS = (
    "mocha", "ava", "jasmine", "karma", "tap", "tape", "uvu", "playwright", "cypress",
)  # fmt: skip
MESSAGE_LIMIT = 4000
END_MARKER = "airfix:end"
REPORTER_FILE = "airfix-node-reporter.mjs"
NODE_EVENTS_FILE = "node-test.jsonl"
REPORTER_SOURCE = """// Written by airfix into its temporary directory: Node test events as JSON Lines.
export default async function* airfixReporter(source) {
  for await (const event of source) {
    const data = event.data || {};
    if (event.type === "test:diagnostic") {
      yield JSON.stringify({ type: event.type, message: String(data.message) }) + "\\n";
      continue;
    }
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    const details = data.details || {};
    const err = details.error;
    let error = null;
    if (err) {
      const cause = err.cause;
      error = {
        failureType: String(err.failureType || ""),
        message: String(err.message || ""),
        cause: cause instanceof Error ? String(cause.stack || cause.message)
          : cause === undefined || cause === null ? "" : String(cause),
      };
    }
    yield JSON.stringify({
      type: event.type, name: String(data.name), nesting: data.nesting || 0,
      file: data.file || "", line: data.line || 0, column: data.column || 0,
      kind: details.type || "test", skip: data.skip !== undefined && data.skip !== false,
      todo: data.todo !== undefined && data.todo !== false, error,
    }) + "\\n";
  }
  yield JSON.stringify({ type: "airfix:end" }) + "\\n";
}
"""

_JS_SUFFIX = re.compile(r"\.[cm]?[jt]sx?$")
_TEST_STEM = re.compile(r"(^test$|^test[-_.]|[._-](test|spec)$)")
TEST_DIRS = {"test", "tests", "__tests__"}


def is_js_test_path(path: str) -> bool:
    """Whether ``path`` is a test file by the default patterns of node --test, jest and vitest."""
    parts = path.replace("\\", "/").split("/")
    m = _JS_SUFFIX.search(parts[-1])
    if not m:
        return False
    stem = parts[-1][: m.start()]
    return bool(_TEST_STEM.search(stem)) or any(p in TEST_DIRS for p in parts[:-1])


class UnsupportedRunner(Exception):
    pass


def _mentions(script: str, name: str) -> bool:
    return re.search(rf"(?<![\w@/.-]){re.escape(name)}(?![\w.-])", script) is not None


def detect_runner(target: Path) -> str:
    """``node``, ``jest`` or ``vitest`` for ``target``; :class:`UnsupportedRunner` otherwise.

    ``ValueError``/``TypeError`` when ``package.json`` is not valid JSON or not an object.
    """
    pkg = read_package_json(target)
    if pkg is None:
        return "node"
    scripts = pkg.get("scripts")
    script = str(scripts.get("test") or "") if isinstance(scripts, dict) else ""
    deps: set[str] = set()
    for key in ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies"):
        value = pkg.get(key)
        if isinstance(value, dict):
            deps |= set(value)
    for name in ("vitest", "jest"):
        if _mentions(script, name):
            return name
    if re.search(r"(?<![\w-])node\b[^&|;]*\s--test\b", script):
        return "node"
    for name in UNSUPPORTED_RUNNERS:
        if _mentions(script, name):
            raise UnsupportedRunner(name)
    for name in ("vitest", "jest"):
        if name in deps:
            return name
    for name in UNSUPPORTED_RUNNERS:
        if name in deps:
            raise UnsupportedRunner(name)
    return "node"


@dataclass
class TestReport(TestTally):
    """Counts and findings from a JS test run."""


def _clean(text: str, target: Path) -> str:
    """ANSI codes and the target's absolute prefix removed (stack traces differ per checkout)."""
    text = strip_ansi(text)
    for root in {str(target), str(target.resolve())}:
        prefix = root.rstrip("/") + "/"
        text = text.replace("file://" + prefix, "").replace(prefix, "")
    return text.strip()


def _message(test_id: str, text: str) -> str:
    """``<test id>: <failure text>``, cut at :data:`MESSAGE_LIMIT` characters."""
    message = f"{test_id}: {text}" if text else test_id
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 1] + "…"
    return message


# ---------------------------------------------------------------- node --test


@dataclass
class _Node:
    event: dict[str, Any]
    children: list[_Node] = field(default_factory=list)


def parse_node_events(text: str, target: Path) -> TestReport:
    """Counts and findings from the JSON Lines of airfix's Node reporter.

    ``ValueError`` when the report is incomplete (no totals, no end marker).
    """
    events: list[dict[str, Any]] = []
    totals: dict[str, int] = {}
    ended = False
    for line in text.splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        kind = event.get("type")
        if kind == END_MARKER:
            ended = True
        elif kind == "test:diagnostic":
            m = re.fullmatch(r"(\w+) (\d+(?:\.\d+)?)", str(event.get("message", "")).strip())
            if m and m[1] in ("tests", "pass", "fail", "cancelled", "skipped", "todo"):
                totals[m[1]] = int(float(m[2]))
        elif kind in ("test:pass", "test:fail"):
            events.append(event)
    if not ended:
        raise ValueError("the Node test report has no end marker (the run was cut short)")
    if "tests" not in totals:
        raise ValueError("the Node test report has no totals")
    report = TestReport(
        total=totals["tests"],
        passed=totals.get("pass", 0),
        failed=totals.get("fail", 0),
        errors=totals.get("cancelled", 0),
        skipped=totals.get("skipped", 0) + totals.get("todo", 0),
    )
    # Events come children-first (post-order) per file: rebuild the tree to name each test.
    stacks: dict[str, list[_Node]] = {}
    for event in events:
        stack = stacks.setdefault(str(event.get("file") or ""), [])
        node = _Node(event)
        nesting = int(event.get("nesting") or 0)
        while stack and int(stack[-1].event.get("nesting") or 0) > nesting:
            node.children.insert(0, stack.pop())
        stack.append(node)
    cancelled: list[Finding] = []
    for abs_file, roots in stacks.items():
        file = relative_path(abs_file, target)
        for root in roots:
            _node_findings(root, [], file, abs_file, target, report.findings, cancelled)
    if not report.findings:
        report.findings.extend(cancelled)
    return report


def _node_findings(
    node: _Node,
    path: list[str],
    file: str,
    abs_file: str,
    target: Path,
    out: list[Finding],
    cancelled: list[Finding],
) -> None:
    event = node.event
    name = str(event.get("name") or "")
    here = [*path, name]
    for child in node.children:
        _node_findings(child, here, file, abs_file, target, out, cancelled)
    if event.get("type") != "test:fail":
        return
    error: dict[str, Any] = event.get("error") or {}
    failure_type = str(error.get("failureType") or "")
    if failure_type == "subtestsFailed":
        return
    load = not path and name in (abs_file, file)
    if load:
        rule, key_rule, test_id = "load-error", "load", file
    elif event.get("kind") == "suite":
        rule, key_rule, test_id = "suite-failure", "suite", " > ".join([file, *here])
    else:
        rule, key_rule, test_id = "failure", "test", " > ".join([file, *here])
    # The cause (the assertion error with its stack) repeats the message; a bare message is all
    # there is for Node's own failures ("test failed", hook failures).
    text = _clean(str(error.get("cause") or error.get("message") or ""), target)
    finding = Finding(
        phase="test",
        file=file,
        line=0 if load else int(event.get("line") or 0),
        column=0,
        rule="cancelled" if failure_type == "cancelledByParent" else rule,
        message=_message(test_id, text),
        key_rule=key_rule,
        key_message=test_id,
    )
    (cancelled if failure_type == "cancelledByParent" else out).append(finding)


# ---------------------------------------------------------------- jest / vitest JSON


def parse_jest_json(text: str, target: Path) -> TestReport:
    """Counts and findings from a jest ``--json`` or vitest ``--reporter=json`` report."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("testResults"), list):
        raise TypeError("not a jest/vitest JSON report (no testResults list)")
    if not isinstance(data.get("numTotalTests"), int):
        raise TypeError("not a jest/vitest JSON report (no numTotalTests)")
    report = TestReport(
        total=int(data["numTotalTests"]),
        passed=int(data.get("numPassedTests") or 0),
        failed=int(data.get("numFailedTests") or 0),
        skipped=int(data.get("numPendingTests") or 0) + int(data.get("numTodoTests") or 0),
    )
    for suite in data["testResults"]:
        file = relative_path(str(suite.get("name") or ""), target)
        failed_here = False
        for case in suite.get("assertionResults") or []:
            if case.get("status") != "failed":
                continue
            failed_here = True
            titles = [str(t) for t in case.get("ancestorTitles") or []]
            test_id = " > ".join([file, *titles, str(case.get("title") or "")])
            text_ = _clean("\n".join(str(m) for m in case.get("failureMessages") or []), target)
            location = case.get("location") if isinstance(case.get("location"), dict) else {}
            report.findings.append(
                Finding(
                    phase="test",
                    file=file,
                    line=int((location or {}).get("line") or 0),
                    column=0,
                    rule="failure",
                    message=_message(test_id, text_),
                    key_rule="test",
                    key_message=test_id,
                )
            )
        if suite.get("status") == "failed" and not failed_here:
            text_ = _clean(str(suite.get("message") or suite.get("failureMessage") or ""), target)
            report.errors += 1
            report.total += 1
            report.findings.append(
                Finding(
                    phase="test",
                    file=file,
                    line=0,
                    column=0,
                    rule="load-error",
                    message=_message(file, text_),
                    key_rule="load",
                    key_message=file,
                )
            )
    return report


# ---------------------------------------------------------------- the adapter


EXIT_MEANINGS = {9: "invalid option (node)", 13: "unsettled top-level await (node)"}
NO_TESTS = "no tests found: a test phase without tests is not a pass"


class JsTestAdapter(NodeToolAdapter):
    name = "js_test"
    phase = "test"
    tier = "dynamic"
    executable_name = "node"
    default_timeout_s = 900.0

    def runner(self, target: Path) -> str:
        try:
            return detect_runner(target)
        except (UnsupportedRunner, ValueError, TypeError, OSError):
            return "node"

    def bin_name(self, target: Path) -> str:
        return self.runner(target)

    def missing_reason(self, target: Path) -> str:
        runner = self.runner(target)
        if self._pinned:
            return f"{self.name}: executable {self.executable!r} not found"
        if runner == "node":
            return f"{self.name}: executable 'node' not found on PATH (install Node.js)"
        return (
            f"{self.name}: {runner} not found in {target}/node_modules/.bin, next to the "
            f"interpreter or on PATH; install the project's dependencies (npm ci)"
        )

    def preflight(self, target: Path, files: Sequence[str] | None) -> ToolRun | None:
        try:
            detect_runner(target)
        except UnsupportedRunner as exc:
            return self._tool_error(
                f"{self.name}: the project's tests use {exc.args[0]}, which airfix cannot run "
                "with a machine-readable report (supported: node --test, jest, vitest)",
                [str(exc.args[0])],
            )
        return None

    def scope(self, target: Path, files: list[str]) -> list[str]:
        return [f for f in files if is_js_test_path(f) and (target / f).is_file()]

    def _scope(self, target: Path, files: Sequence[str] | None) -> list[str] | None:
        return super()._scope(target, files) or None  # no test file requested: the whole suite

    def _environment(self, workdir: Path) -> dict[str, str]:
        env = super()._environment(workdir)
        env["CI"] = "true"
        env.update(self.extra_env)
        return env

    def build_command(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[str]:
        runner = self.runner(target)
        paths = list(files or [])
        if runner == "jest":
            return [
                exe, "--ci", "--json", f"--outputFile={workdir / 'jest.json'}",
                "--testLocationInResults", f"--cacheDirectory={workdir / 'jest-cache'}",
                "--passWithNoTests", *self.extra_args,
                *(["--runTestsByPath", *paths] if paths else []),
            ]  # fmt: skip
        if runner == "vitest":
            return [
                exe, "run", "--reporter=json", f"--outputFile={workdir / 'vitest.json'}",
                "--includeTaskLocation", "--no-cache", "--passWithNoTests",
                *self.extra_args, *paths,
            ]  # fmt: skip
        return [
            exe, "--test",
            f"--test-reporter={workdir / REPORTER_FILE}",
            f"--test-reporter-destination={workdir / NODE_EVENTS_FILE}",
            "--test-reporter=spec", "--test-reporter-destination=stdout",
            *self.extra_args, *paths,
        ]  # fmt: skip

    def execute(self, ctx: RunContext) -> ToolRun:
        runner = self.runner(ctx.target)
        if runner == "node":
            (ctx.workdir / REPORTER_FILE).write_text(REPORTER_SOURCE, encoding="utf-8")
        proc = self.spawn(
            ctx, self.build_command(ctx.executable, ctx.target, ctx.files, ctx.workdir)
        )
        code = check_exit(proc, (0, 1), f"{self.name} ({runner})", EXIT_MEANINGS)
        report = self._read_report(runner, proc, ctx.workdir, ctx.target)
        bad = report.failed + report.errors + len(report.findings)
        if code == 0 and bad:
            raise ToolFailure(f"{self.name}: exit 0 but failures in the {runner} report", proc)
        if code == 1 and not bad:
            raise ToolFailure(
                f"{self.name}: {runner} exited 1 but its report has no failed test", proc
            )
        issues = to_issues(self.name, report.findings)
        if report.total == 0 and not issues:
            return self.result(
                ctx, "failed", counts=report.counts(), metrics=report.metrics(), error=NO_TESTS
            )
        return self.result(
            ctx,
            "failed" if code == 1 else "passed",
            issues=issues,
            counts=report.counts(),
            metrics=report.metrics(),
        )

    def _read_report(
        self, runner: str, proc: ProcessResult, workdir: Path, target: Path
    ) -> TestReport:
        name = {"node": NODE_EVENTS_FILE, "jest": "jest.json", "vitest": "vitest.json"}[runner]
        path = workdir / name
        if not path.is_file() or not path.stat().st_size:
            why = error_summary(proc.stderr, 400)
            raise ToolFailure(
                f"{self.name}: {runner} wrote no report (the tests did not run; a configuration "
                "or start-up error?)" + (f": {why}" if why else ""),
                proc,
            )
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            if runner == "node":
                return parse_node_events(text, target)
            return parse_jest_json(text, target)
        except (ValueError, TypeError, KeyError) as exc:
            raise ToolFailure(f"{self.name}: unreadable {runner} report ({exc})", proc) from exc
