"""tape: airfix's hook (loaded with tape's ``-r``), tape's TAP summary, and the parser of the
JSON Lines the hook writes (the format is described in :mod:`airfix.services.tools.js_test`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from airfix.services.tools.base import relative_path
from airfix.services.tools.eslint import error_summary
from airfix.services.tools.js_report import TestReport, clean_text, failure_finding

TAPE_HOOK_FILE = "airfix-tape-hook.cjs"
TAPE_EVENTS_FILE = "tape.jsonl"
TAPE_VALUE_OPTIONS = {"-r", "--require", "-i", "--ignore", "--ignore-pattern"}
TAPE_HOOK_SOURCE = """'use strict';
// Written by airfix into its temporary directory and loaded with tape's -r: every tape test's
// start, assertions and end as JSON Lines, with its file and its parents' names.
const fs = require('fs');
const path = require('path');
const Module = require('module');
const util = require('util');

const fd = fs.openSync(process.env.AIRFIX_TAPE_EVENTS, 'a');
const emit = (o) => fs.writeSync(fd, JSON.stringify(o) + '\\n');
const cwd = process.cwd();
const rel = (f) => (f ? path.relative(cwd, f).split(path.sep).join('/') : '');
const tapeDir = path.dirname(path.dirname(fs.realpathSync(process.argv[1])));
const binDir = path.join(tapeDir, 'bin');
let Results;
try {
  Results = require(path.join(tapeDir, 'lib', 'results.js'));
} catch (e) {
  emit({ type: 'hook-error', error: String(e && e.stack) });
}

let loading = null;
const originalLoad = Module._load;
Module._load = function airfixLoad(request, parent, isMain) {
  const fromBin = parent && parent.filename && parent.filename.startsWith(binDir + path.sep);
  if (!fromBin || loading !== null) return originalLoad.apply(this, arguments);
  let file = request;
  try { file = Module._resolveFilename(request, parent, isMain); } catch (e) { /* reported below */ }
  loading = file;
  try {
    return originalLoad.apply(this, arguments);
  } catch (e) {
    emit({ type: 'load-error', file: rel(file), error: String(e && (e.stack || e)) });
    throw e;
  } finally {
    loading = null;
  }
};

function callerFile() {
  const lines = String(new Error().stack).split('\\n').slice(1);
  for (const l of lines) {
    const m = /((?:file:\\/\\/)?\\/[^():]+):\\d+:\\d+\\)?$/.exec(l.trim());
    if (!m) continue;
    const f = m[1].replace(/^file:\\/\\//, '');
    if (f === __filename || f.startsWith(tapeDir + path.sep)) continue;
    if (f.split(path.sep).includes('node_modules')) continue;
    return f;
  }
  return '';
}

const show = (v) => util.inspect(v, { depth: 4, breakLength: Infinity });
const seen = new Map();
function track(t, file, parents) {
  const names = parents.concat([String(t.name)]);
  const base = [rel(file)].concat(names).join(' > ');
  const n = (seen.get(base) || 0) + 1;
  seen.set(base, n);
  const id = n === 1 ? base : base + ' [' + n + ']';
  t.once('prerun', () => emit({ type: 'start', id, file: rel(file), skip: !!t._skip,
                                 todo: !!t._todo }));
  t.on('result', (r) => {
    if (!r || typeof r !== 'object') return;
    const e = r.error;
    emit({ type: 'assert', id, ok: !!r.ok, skip: !!r.skip, todo: !!r.todo,
           name: String(r.name || ''), operator: String(r.operator || ''),
           expected: r.ok ? undefined : show(r.expected), actual: r.ok ? undefined : show(r.actual),
           at: r.ok ? '' : String(r.at || r.file || ''), line: r.line || 0,
           error: r.ok || !e ? '' : String(e.stack || e.message || e) });
  });
  t.on('test', (st) => track(st, file, names));
  t.once('end', () => emit({ type: 'end', id }));
}

if (Results) {
  const push = Results.prototype.push;
  Results.prototype.push = function airfixPush(t) {
    track(t, callerFile() || loading || '', []);
    return push.apply(this, arguments);
  };
  emit({ type: 'hooked', tape: tapeDir });
}
"""


_TAP_TOTAL = re.compile(r"^# (tests|pass|fail|todo|skip)\s+(\d+)\s*$", re.MULTILINE)
_TAP_PLAN = re.compile(r"^1\.\.(\d+)\s*$", re.MULTILINE)


def tap_summary(stdout: str) -> dict[str, int] | None:
    """tape's closing ``# tests/# pass/# fail`` counts (assertions), ``None`` without them."""
    if not _TAP_PLAN.search(stdout):
        return None
    totals = {m[1]: int(m[2]) for m in _TAP_TOTAL.finditer(stdout)}
    if "tests" not in totals:
        return None
    totals.setdefault("pass", 0)
    totals.setdefault("fail", 0)
    return totals


class _TapeEvent(msgspec.Struct, frozen=True, tag_field="type"):
    pass


class TapeHooked(_TapeEvent, frozen=True, tag="hooked"):
    pass


class TapeHookError(_TapeEvent, frozen=True, tag="hook-error"):
    error: str = ""


class TapeLoadError(_TapeEvent, frozen=True, tag="load-error"):
    file: str = ""
    error: str = ""


class TapeStart(_TapeEvent, frozen=True, tag="start"):
    id: str
    file: str = ""
    skip: bool = False
    todo: bool = False


class TapeAssert(_TapeEvent, frozen=True, tag="assert"):
    """One assertion; ``expected``/``actual`` (``util.inspect`` text) only when it failed."""

    id: str
    ok: bool = False
    todo: bool = False
    name: str = ""
    operator: str = ""
    expected: str | None = None
    actual: str | None = None
    at: str = ""
    line: int = 0
    error: str = ""


class TapeEnd(_TapeEvent, frozen=True, tag="end"):
    id: str


TapeEvent = TapeHooked | TapeHookError | TapeLoadError | TapeStart | TapeAssert | TapeEnd


@dataclass
class _TapeTest:
    test_id: str
    file: str
    skip: bool = False
    todo: bool = False
    asserts: int = 0
    failures: list[TapeAssert] = field(default_factory=list)
    ended: bool = False


def parse_tape_events(
    text: str, stdout: str, target: Path, report: TestReport | None = None, crashed: str = ""
) -> TestReport:
    """Outcomes and findings from airfix's tape hook, checked against tape's TAP summary.

    ``crashed`` is the process's error text when it died without a summary.  ``ValueError``
    when the hook did not run, or the run is neither complete, nor a load error, nor a crash
    inside a test, or a line of the hook's is malformed (msgspec names its path).
    """
    report = report if report is not None else TestReport()
    tests, loads = _read_hook_events(text)
    _check_complete(tests, loads, stdout, crashed)
    for test in tests.values():
        _record_test(report, test, target, crashed)
    for load in loads:
        file = relative_path(load.file, target)
        report.add(file, "error")
        report.findings.append(
            failure_finding(file, 0, "load-error", "load", file,
                            clean_text(load.error, target))
        )  # fmt: skip
    return report


def _read_hook_events(text: str) -> tuple[dict[str, _TapeTest], list[TapeLoadError]]:
    """The tests the hook followed (by id, in start order) and the files that failed to load."""
    hooked = False
    tests: dict[str, _TapeTest] = {}
    loads: list[TapeLoadError] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = msgspec.json.decode(line, type=TapeEvent)
        except msgspec.DecodeError as exc:
            raise ValueError(f"tape hook events line {number}: {exc}") from exc
        if isinstance(event, TapeHooked):
            hooked = True
        elif isinstance(event, TapeHookError):
            raise ValueError(f"airfix's tape hook failed: {event.error}")
        elif isinstance(event, TapeLoadError):
            loads.append(event)
        elif isinstance(event, TapeStart):
            tests[event.id] = _TapeTest(event.id, event.file, event.skip, event.todo)
        elif isinstance(event, TapeAssert) and (test := tests.get(event.id)) is not None:
            test.asserts += 1
            if not event.ok and not event.todo:
                test.failures.append(event)
        elif isinstance(event, TapeEnd) and (test := tests.get(event.id)) is not None:
            test.ended = True
    if not hooked:
        raise ValueError("airfix's tape hook did not load (is tape installed in the project?)")
    return tests, loads


def _check_complete(
    tests: dict[str, _TapeTest], loads: list[TapeLoadError], stdout: str, crashed: str
) -> None:
    """``ValueError`` unless the hook's assertions add up to TAP's summary, or the run stopped
    for a reason the report names (a file that did not load, a test that crashed)."""
    summary = tap_summary(stdout)
    if summary is not None:
        asserts = sum(t.asserts for t in tests.values())
        fails = sum(len(t.failures) for t in tests.values())
        if asserts != summary["tests"] or fails != summary["fail"]:
            raise ValueError(
                f"tape's summary counts {summary['tests']} assertions ({summary['fail']} failed), "
                f"airfix's hook saw {asserts} ({fails} failed)"
            )
    elif not loads and not (crashed and any(not t.ended for t in tests.values())):
        raise ValueError("tape printed no summary (the run was cut short)")


def _record_test(report: TestReport, test: _TapeTest, target: Path, crashed: str) -> None:
    file = relative_path(test.file, target)
    if test.skip or test.todo:
        report.add(test.test_id, "skipped")
    elif test.failures:
        report.add(test.test_id, "failed")
        first = test.failures[0]
        report.findings.append(
            failure_finding(file, first.line, "failure", "test",
                            test.test_id, _tape_failure_text(test.failures, target))
        )  # fmt: skip
    elif not test.ended:
        report.add(test.test_id, "error")
        report.findings.append(
            failure_finding(file, 0, "crash", "crash", test.test_id,
                            clean_text(error_summary(crashed, 1500), target))
        )  # fmt: skip
    else:
        report.add(test.test_id, "passed")


def _tape_failure_text(failures: list[TapeAssert], target: Path) -> str:
    parts = []
    for f in failures[:5]:
        text = f"not ok {f.name}".rstrip()
        if f.operator:
            text += f"\n  operator: {f.operator}"
        if f.expected is not None:
            text += f"\n  expected: {f.expected}\n  actual:   {f.actual}"
        if f.at:
            text += f"\n  at: {f.at}"
        elif f.error:
            text += "\n  " + f.error.splitlines()[0]
        parts.append(text)
    if len(failures) > 5:
        parts.append(f"... and {len(failures) - 5} more failed assertions")
    return clean_text("\n".join(parts), target)
