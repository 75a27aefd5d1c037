"""Node's built-in runner (``node --test``): airfix's reporter module and the parser of the
JSON Lines it writes (the format is described in :mod:`airfix.services.tools.js_test`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from airfix.services.tools.base import Finding, relative_path
from airfix.services.tools.js_report import (
    END_MARKER,
    TestReport,
    clean_text,
    failure_finding,
)

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


class _NodeEvent(msgspec.Struct, frozen=True, tag_field="type"):
    pass


class NodeEnd(_NodeEvent, frozen=True, tag=END_MARKER):
    pass


class NodeDiagnostic(_NodeEvent, frozen=True, tag="test:diagnostic"):
    """Node's summary lines: ``tests 3``, ``pass 2``, ``duration_ms 12.5``, ..."""

    message: str = ""


class NodeError(msgspec.Struct, frozen=True, rename="camel"):
    """A failed test's error as the reporter condenses it (``cause``: the assertion's stack)."""

    failure_type: str = ""
    message: str = ""
    cause: str = ""


class _NodeTestEvent(_NodeEvent, frozen=True):
    name: str = ""
    nesting: int = 0
    file: str = ""
    line: int = 0
    kind: str = "test"  # or "suite"
    skip: bool = False
    todo: bool = False
    error: NodeError | None = None


class NodeTestPass(_NodeTestEvent, frozen=True, tag="test:pass"):
    pass


class NodeTestFail(_NodeTestEvent, frozen=True, tag="test:fail"):
    pass


NodeEvent = NodeEnd | NodeDiagnostic | NodeTestPass | NodeTestFail


@dataclass
class _Node:
    event: NodeTestPass | NodeTestFail
    children: list[_Node] = field(default_factory=list)


def parse_node_events(text: str, target: Path) -> TestReport:
    """Counts, findings and outcomes from the JSON Lines of airfix's Node reporter.

    ``ValueError`` when the report is incomplete (no totals, no end marker), malformed (msgspec
    names the line's path, e.g. ``$.nesting``) or its tests do not add up to Node's own total.
    """
    events: list[NodeTestPass | NodeTestFail] = []
    totals: dict[str, int] = {}
    ended = False
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = msgspec.json.decode(line, type=NodeEvent)
        except msgspec.DecodeError as exc:
            raise ValueError(f"Node test events line {number}: {exc}") from exc
        if isinstance(event, NodeEnd):
            ended = True
        elif isinstance(event, NodeDiagnostic):
            m = re.fullmatch(r"(\w+) (\d+(?:\.\d+)?)", event.message.strip())
            if m and m[1] in ("tests", "pass", "fail", "cancelled", "skipped", "todo"):
                totals[m[1]] = int(float(m[2]))
        else:
            events.append(event)
    if not ended:
        raise ValueError("the Node test report has no end marker (the run was cut short)")
    if "tests" not in totals:
        raise ValueError("the Node test report has no totals")
    report = TestReport()
    # Events come children-first (post-order) per file: rebuild the tree to name each test.
    stacks: dict[str, list[_Node]] = {}
    for event in events:
        stack = stacks.setdefault(event.file, [])
        node = _Node(event)
        nesting = event.nesting
        while stack and stack[-1].event.nesting > nesting:
            node.children.insert(0, stack.pop())
        stack.append(node)
    cancelled: list[Finding] = []
    counted = [0]
    for abs_file, roots in stacks.items():
        file = relative_path(abs_file, target)
        for root in roots:
            _node_walk(root, [], file, abs_file, target, report, cancelled, counted)
    if counted[0] != totals["tests"]:
        raise ValueError(
            f"the Node test report names {counted[0]} tests, Node counted {totals['tests']}"
        )
    if not report.findings:
        report.findings.extend(cancelled)
    return report


def _node_walk(
    node: _Node,
    path: list[str],
    file: str,
    abs_file: str,
    target: Path,
    report: TestReport,
    cancelled: list[Finding],
    counted: list[int],
) -> None:
    event = node.event
    name = event.name
    here = [*path, name]
    test_id = " > ".join([file, *here])
    for child in node.children:
        _node_walk(child, here, file, abs_file, target, report, cancelled, counted)
    suite = event.kind == "suite"
    failed = isinstance(event, NodeTestFail)
    error = event.error or NodeError()
    failure_type = error.failure_type
    load = failed and not path and name in (abs_file, file)
    if not suite:
        counted[0] += 1
        if load:
            report.add(file, "error")
        elif event.skip or event.todo:
            report.add(test_id, "skipped")
        elif not failed:
            report.add(test_id, "passed")
        else:
            report.add(test_id, "error" if failure_type == "cancelledByParent" else "failed")
    elif failed and failure_type != "subtestsFailed":
        report.add(test_id, "error")  # a hook or the describe body threw: Node counts no test
    if not failed or failure_type == "subtestsFailed" or (event.todo and not suite):
        return
    if load:
        rule, key_rule, test_id = "load-error", "load", file
    elif suite:
        rule, key_rule = "suite-failure", "suite"
    else:
        rule, key_rule = "failure", "test"
    # The cause (the assertion error with its stack) repeats the message; a bare message is all
    # there is for Node's own failures ("test failed", hook failures).
    text = clean_text(error.cause or error.message, target)
    finding = failure_finding(
        file,
        0 if load else event.line,
        "cancelled" if failure_type == "cancelledByParent" else rule,
        key_rule,
        test_id,
        text,
    )
    (cancelled if failure_type == "cancelledByParent" else report.findings).append(finding)
