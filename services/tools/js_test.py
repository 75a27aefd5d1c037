"""js_test: a JavaScript/TypeScript project's test runner (phase ``test``, dynamic tier).

**Which runner, on which files.**  The project's ``scripts.test`` in ``package.json`` is read as
a shell command line (split at ``&&``, ``||``, ``;`` and ``|``).  ``npm test``, ``npm run X``,
``npm run-script X``, ``pnpm run X`` and ``yarn X`` are followed into the named script (the usual
``"test": "npm run tests-only"``).  In each command, environment assignments (``CI=1 ...``) and
wrappers (``nyc``, ``c8``, ``cross-env``, ``npx``, ``env``, ``time`` with their options) are
skipped; what remains names the runner:

* ``vitest``, ``jest``, ``node --test``: as before; their own file discovery (config, defaults).
* ``mocha``/``_mocha`` with its arguments: the spec paths and options of the script are kept (the
  project's ``.mocharc`` too); reporter, watch and parallel options are replaced by airfix's.
* ``tape`` with its arguments: the file globs and options (``-r``, ``-i``, ``--ignore-pattern``)
  are kept; tape expands the globs itself.  ``node FILE`` (``node test``, ``node test/index.js``)
  in a project that depends on ``tape`` is tape on that file (tape's bin only requires its files).
  Several tape commands (``npm run test:a && npm run test:b``) run one after the other.

Commands that run no tests (``eslint``, ``aud``, ``evalmd``, ``npm run lint``) are ignored, and so
are ``pretest``/``posttest``: airfix measures linters itself and never runs audits.  Without a
runner in the script, a ``vitest``, ``jest`` or ``mocha`` dependency decides (mocha with its
defaults); a ``tape`` dependency alone is a ``tool_error`` (tape has no default files); otherwise
Node's built-in runner (``node --test`` with its default file discovery).  A runner airfix cannot
read (ava, jasmine, karma, tap, uvu, playwright, cypress) is a ``tool_error``: running something
else would measure something else.  Runners are taken from the target's ``node_modules/.bin``
first (``node`` itself from ``PATH``).  The tool name is ``js_test`` whichever runner ran; the
command and ``version`` tell which.

**Per-test outcomes.**  Every test that ran is recorded in ``ToolRun.tests`` under a stable id,
``<file relative to target> > <suite titles> > <test title>``; a second test with the same id in
one file gets `` [2]`` (then `` [3]``...) in run order.  A file that fails to load is an id of its
own (``<file>``) with outcome ``error``.  Counts are the tally of these ids (each id once).

Machine output, per runner (each written to the run's temporary directory):

* Node (verified with Node 20.20): ``--test-reporter=junit`` has no file attribute, so a small
  custom reporter module (the documented ``--test-reporter=<module>`` API, Node >= 18.15) prints
  one JSON object per ``test:pass``/``test:fail``/``test:diagnostic`` event, then an end marker; a
  report without Node's totals or without the end marker is a ``tool_error``, and so is one whose
  number of tests differs from Node's ``tests`` total.  ``--test-reporter=spec`` goes to stdout as
  evidence.  Events arrive children-first, which gives each test its suite path.  Outcomes:
  skipped and todo tests are ``skipped``, tests cancelled because their parent failed are
  ``error``, a file that does not load and a suite whose hook or body threw (Node counts neither
  as a test) are ``error`` ids of their own; a parent test whose subtest failed is ``failed``, as
  Node counts it.  Issues: failed tests (``failure``), files that fail to load (``load-error``),
  suites whose hook or body threw (``suite-failure``); parents failing only because a subtest
  failed and cancelled tests are not separate issues.
* jest: ``--ci --json --outputFile=<tmp> --testLocationInResults --cacheDirectory=<tmp>``
  (``--ci``: new snapshots are not written into the target).
* vitest: ``vitest run --reporter=json --outputFile=<tmp> --includeTaskLocation --no-cache``
  (``--no-cache``: the results cache would go to ``node_modules/.vite`` in the target).

  jest and vitest share the JSON shape (``numTotalTests``, ``testResults[].assertionResults[]``
  with ``ancestorTitles``, ``title``, ``status``, ``failureMessages``, ``location``).  ``pending``,
  ``skipped``, ``todo`` and ``disabled`` are ``skipped``.  A test file that failed without a failed
  test in it (it did not load) is a ``load-error`` issue and one ``error`` id, as pytest counts a
  collection error.  Both get ``--passWithNoTests`` so that "no tests" is a readable report.
* mocha: ``--reporter <tmp>/airfix-mocha-reporter.cjs`` (mocha loads a reporter from a path; the
  JSON reporter's ``fullTitle`` joins titles with spaces, which cannot be split back into suites).
  It writes one JSON line per ``pass``/``pending``/``fail`` with ``titlePath()`` and the file, and
  an end marker with mocha's stats; duplicates are numbered by test object.  A failing hook is an
  ``error`` id ``<file> > <suites> > "before all" hook`` (its ``originalTitle``), and a
  ``hook-failure`` issue; tests it kept from running do not run.  Exit codes: mocha exits with the
  number of failures (at most 255), so any exit code is read, but it must be 0 exactly when the
  report has no failure.  A run that crashed before the end marker (a spec file that does not
  load) is a ``tool_error`` naming mocha's message: mocha loads all files before running any and
  does not say which one failed in a form airfix can read.
* tape: tape's own TAP output goes to stdout (evidence, and its ``# tests``/``# pass``/``# fail``
  summary is the completeness check); airfix adds ``-r <tmp>/airfix-tape-hook.cjs`` in front of
  the project's options.  The hook (for tape 4 and 5: it patches ``lib/results.js``'s ``push`` of
  the tape that ``node_modules/.bin/tape`` runs) follows every test object: nesting from
  ``t.test`` (``# subtest`` comments in TAP carry no nesting), its file (the first frame of the
  ``test()`` call outside tape and ``node_modules``: the file that defines the test, also when an
  ``index.js`` requires the others; else the top-level file tape was loading),
  every assertion (``not ok`` with operator, expected, actual and location, as the YAML
  diagnostics of the TAP), skip and todo, and its end.  A test with a failed assertion is
  ``failed`` (todo tests: ``skipped``), one without is ``passed``; tests that never started
  (``only`` elsewhere) are not recorded.  The hook's assertion counts must equal TAP's summary,
  else the report is a ``tool_error``.  A test file that throws while tape loads it stops tape
  before any test ran: that file is an ``error`` id (``load-error`` issue) and nothing else ran.
  A test that crashes the process mid-run (an uncaught exception) leaves the running test as an
  ``error`` (``crash`` issue); tests after it did not run.

Exit codes: 0 passed, 1 failures (mocha: the failure count); anything else, a missing or
unreadable report, or a report that contradicts the exit code is a ``tool_error``.  A run with
zero tests is ``failed`` with ``tests_total = 0`` and no issues (as pytest's exit 5: a test phase
without tests is not a pass).

The environment has ``CI=true`` (runners then never write snapshots or start watch mode),
``NO_COLOR``/``FORCE_COLOR=0``.  Scoped runs pass only test files (Node/vitest/tape/mocha: as
paths, replacing the script's globs or specs; jest: ``--runTestsByPath``); a change to a source
file can break any test, so without a test file among the requested ones the whole suite runs.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airfix.services.tools.base import (
    Finding,
    ProcessResult,
    RunContext,
    TestOutcome,
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

RUNNERS = ("node", "jest", "vitest", "mocha", "tape")
UNSUPPORTED_RUNNERS = (
    "ava", "jasmine", "karma", "tap", "uvu", "playwright", "cypress",
)  # fmt: skip
WRAPPERS = ("nyc", "c8", "cross-env", "npx", "env", "time", "dotenv", "nodemon")
MESSAGE_LIMIT = 4000
END_MARKER = "airfix:end"
REPORTER_FILE = "airfix-node-reporter.mjs"
NODE_EVENTS_FILE = "node-test.jsonl"
MOCHA_REPORTER_FILE = "airfix-mocha-reporter.cjs"
MOCHA_EVENTS_FILE = "mocha.jsonl"
TAPE_HOOK_FILE = "airfix-tape-hook.cjs"
TAPE_EVENTS_FILE = "tape.jsonl"
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

MOCHA_REPORTER_SOURCE = """'use strict';
// Written by airfix into its temporary directory: mocha's test outcomes as JSON Lines.
const fs = require('fs');
const path = require('path');

function AirfixReporter(runner, options) {
  const out = process.env.AIRFIX_MOCHA_EVENTS;
  const fd = fs.openSync(out, 'w');
  const emit = (o) => fs.writeSync(fd, JSON.stringify(o) + '\\n');
  const cwd = process.cwd();
  const ids = new WeakMap();
  const seen = new Map();
  const fileOf = (r) => {
    for (let x = r; x; x = x.parent) { if (x.file) return x.file; }
    return '';
  };
  const rel = (f) => (f ? path.relative(cwd, f).split(path.sep).join('/') : '');
  const titles = (r) => {
    const parts = [];
    for (let x = r; x; x = x.parent) { if (x.title || x.parent) parts.unshift(String(x.title)); }
    return parts.filter((t, i) => !(i === 0 && t === ''));
  };
  const idOf = (r, hook) => {
    if (ids.has(r)) return ids.get(r);
    let parts;
    if (hook) {
      const own = String(r.originalTitle || r.title).replace(/ (for|in) ".*"$/s, '');
      parts = titles(r.parent).concat([own]);
    } else {
      parts = typeof r.titlePath === 'function' ? r.titlePath() : titles(r);
    }
    const base = [rel(fileOf(r))].concat(parts.map(String)).join(' > ');
    const n = (seen.get(base) || 0) + 1;
    seen.set(base, n);
    const id = n === 1 ? base : base + ' [' + n + ']';
    ids.set(r, id);
    return id;
  };
  const error = (err) => (err ? String(err.stack || err.message || err) : '');
  const line = (err, file) => {
    const text = error(err);
    if (!file) return 0;
    for (const name of [path.resolve(cwd, file), rel(file)]) {  // mocha shortens stacks
      const at = text.indexOf('(' + name + ':');
      const m = at < 0 ? null : /^:(\\d+)/.exec(text.slice(at + 1 + name.length));
      if (m) return Number(m[1]);
    }
    return 0;
  };
  emit({ type: 'airfix:start' });
  runner.on('pass', (t) => emit({ type: 'pass', id: idOf(t, false), file: rel(fileOf(t)) }));
  runner.on('pending', (t) => emit({ type: 'pending', id: idOf(t, false), file: rel(fileOf(t)) }));
  runner.on('fail', (t, err) => {
    const hook = t.type === 'hook';
    const file = fileOf(t);
    emit({ type: 'fail', id: idOf(t, hook), hook, file: rel(file), line: line(err, file),
           error: error(err) });
  });
  runner.once('end', () => emit({ type: 'airfix:end', stats: runner.stats || {} }));
}
module.exports = AirfixReporter;
"""

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

_JS_SUFFIX = re.compile(r"\.[cm]?[jt]sx?$")
_TEST_STEM = re.compile(r"(^test$|^test[-_.]|[._-](test|spec)$)")
TEST_DIRS = {"test", "tests", "__tests__", "spec"}


def is_js_test_path(path: str) -> bool:
    """Whether ``path`` is a test file by the default patterns of node --test, jest, vitest and
    the usual ``test/`` directories of mocha and tape projects."""
    parts = path.replace("\\", "/").split("/")
    m = _JS_SUFFIX.search(parts[-1])
    if not m:
        return False
    stem = parts[-1][: m.start()]
    return bool(_TEST_STEM.search(stem)) or any(p in TEST_DIRS for p in parts[:-1])


class UnsupportedRunner(Exception):
    pass


@dataclass(frozen=True)
class Invocation:
    """One runner command found in the test script: the runner and its own arguments."""

    runner: str
    args: tuple[str, ...] = ()


def _mentions(script: str, name: str) -> bool:
    return re.search(rf"(?<![\w@/.-]){re.escape(name)}(?![\w.-])", script) is not None


def _commands(text: str) -> list[list[str]]:
    """A shell command line split into simple commands (at ``&&``, ``||``, ``;``, ``|``)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    out: list[list[str]] = [[]]
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: read it as plain words
        tokens = text.split()
    for token in tokens:
        if token and set(token) <= set("&|;()<>"):
            if out[-1]:
                out.append([])
        else:
            out[-1].append(token)
    return [c for c in out if c]


_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _script_invocations(
    scripts: dict[str, Any], name: str, deps: set[str], depth: int = 0
) -> list[Invocation]:
    text = scripts.get(name)
    if not isinstance(text, str) or depth > 8:
        return []
    found: list[Invocation] = []
    for words in _commands(text):
        while words and _ENV_ASSIGNMENT.match(words[0]):
            words = words[1:]
        if not words:
            continue
        head = Path(words[0]).name
        if head in ("npm", "pnpm", "yarn"):
            rest = [w for w in words[1:] if not w.startswith("-")]
            if rest[:1] in (["test"], ["t"], ["tst"]):
                found += _script_invocations(scripts, "test", deps, depth + 1)
            elif rest[:1] in (["run"], ["run-script"]) and len(rest) > 1:
                found += _script_invocations(scripts, rest[1], deps, depth + 1)
            elif head == "yarn" and rest and rest[0] in scripts:
                found += _script_invocations(scripts, rest[0], deps, depth + 1)
            continue
        inv = _invocation(words, deps)
        if inv is not None:
            found.append(inv)
    return found


def _invocation(words: list[str], deps: set[str]) -> Invocation | None:
    """The runner a simple command runs, with its arguments; ``None`` for other commands."""
    for i, word in enumerate(words):
        name = Path(word).name
        if i and words[i - 1] in ("-r", "--require", "-i", "--ignore"):
            continue
        if name in ("jest", "vitest"):
            return Invocation(name)
        if name in ("mocha", "_mocha"):
            return Invocation("mocha", tuple(words[i + 1 :]))
        if name == "tape":
            return Invocation("tape", tuple(words[i + 1 :]))
        if name in UNSUPPORTED_RUNNERS:
            raise UnsupportedRunner(name)
        if name == "node":
            rest = words[i + 1 :]
            if "--test" in rest:
                return Invocation("node")
            operands = [w for w in rest if not w.startswith("-")]
            if "tape" in deps and operands:
                return Invocation("tape", (operands[0],))
            return None
        if i == 0 and name not in WRAPPERS:
            return None  # eslint, aud, echo, tsc, ...: not a test runner
    return None


def runner_invocations(target: Path) -> list[Invocation]:
    """The runner commands of ``target``'s tests (see the module docstring).

    :class:`UnsupportedRunner` for runners airfix cannot read, ``ValueError``/``TypeError`` when
    ``package.json`` is not valid JSON or not an object.
    """
    pkg = read_package_json(target)
    if pkg is None:
        return [Invocation("node")]
    scripts = pkg.get("scripts")
    scripts = scripts if isinstance(scripts, dict) else {}
    script = str(scripts.get("test") or "")
    deps: set[str] = set()
    for key in ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies"):
        value = pkg.get(key)
        if isinstance(value, dict):
            deps |= set(value)
    for name in ("vitest", "jest"):
        if _mentions(script, name):
            return [Invocation(name)]
    found = _script_invocations(scripts, "test", deps)
    runners = {inv.runner for inv in found}
    if len(runners) > 1:
        raise UnsupportedRunner(" and ".join(sorted(runners)) + " in one test script")
    if found:
        return found if runners <= {"tape", "mocha"} else found[:1]
    for name in UNSUPPORTED_RUNNERS:
        if _mentions(script, name):
            raise UnsupportedRunner(name)
    for name in ("vitest", "jest", "mocha"):
        if name in deps:
            return [Invocation(name)]
    if "tape" in deps:
        raise UnsupportedRunner("tape without test files in scripts.test")
    for name in UNSUPPORTED_RUNNERS:
        if name in deps:
            raise UnsupportedRunner(name)
    return [Invocation("node")]


def detect_runner(target: Path) -> str:
    """``node``, ``jest``, ``vitest``, ``mocha`` or ``tape`` for ``target``; see
    :func:`runner_invocations` for the errors."""
    return runner_invocations(target)[0].runner


@dataclass
class TestReport(TestTally):
    """Counts, findings and per-test outcomes from a JS test run."""

    seen: dict[str, int] = field(default_factory=dict)

    def add(self, base_id: str, outcome: TestOutcome) -> str:
        """Record a distinct test: the n-th test with the same id in one run gets `` [n]``."""
        n = self.seen.get(base_id, 0) + 1
        self.seen[base_id] = n
        test_id = base_id if n == 1 else f"{base_id} [{n}]"
        self.record(test_id, outcome)
        return test_id


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


def _test_finding(
    file: str, line: int, rule: str, key_rule: str, test_id: str, text: str
) -> Finding:
    return Finding(
        phase="test",
        file=file,
        line=line,
        column=0,
        rule=rule,
        message=_message(test_id, text),
        key_rule=key_rule,
        key_message=test_id,
    )


# ---------------------------------------------------------------- node --test


@dataclass
class _Node:
    event: dict[str, Any]
    children: list[_Node] = field(default_factory=list)


def parse_node_events(text: str, target: Path) -> TestReport:
    """Counts, findings and outcomes from the JSON Lines of airfix's Node reporter.

    ``ValueError`` when the report is incomplete (no totals, no end marker) or its tests do not
    add up to Node's own total.
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
    report = TestReport()
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
    name = str(event.get("name") or "")
    here = [*path, name]
    test_id = " > ".join([file, *here])
    for child in node.children:
        _node_walk(child, here, file, abs_file, target, report, cancelled, counted)
    suite = event.get("kind") == "suite"
    failed = event.get("type") == "test:fail"
    error: dict[str, Any] = event.get("error") or {}
    failure_type = str(error.get("failureType") or "")
    load = failed and not path and name in (abs_file, file)
    if not suite:
        counted[0] += 1
        if load:
            report.add(file, "error")
        elif event.get("skip") or event.get("todo"):
            report.add(test_id, "skipped")
        elif not failed:
            report.add(test_id, "passed")
        else:
            report.add(test_id, "error" if failure_type == "cancelledByParent" else "failed")
    elif failed and failure_type != "subtestsFailed":
        report.add(test_id, "error")  # a hook or the describe body threw: Node counts no test
    if not failed or failure_type == "subtestsFailed" or (event.get("todo") and not suite):
        return
    if load:
        rule, key_rule, test_id = "load-error", "load", file
    elif suite:
        rule, key_rule = "suite-failure", "suite"
    else:
        rule, key_rule = "failure", "test"
    # The cause (the assertion error with its stack) repeats the message; a bare message is all
    # there is for Node's own failures ("test failed", hook failures).
    text = _clean(str(error.get("cause") or error.get("message") or ""), target)
    finding = _test_finding(
        file,
        0 if load else int(event.get("line") or 0),
        "cancelled" if failure_type == "cancelledByParent" else rule,
        key_rule,
        test_id,
        text,
    )
    (cancelled if failure_type == "cancelledByParent" else report.findings).append(finding)


# ---------------------------------------------------------------- jest / vitest JSON

_JEST_OUTCOMES: dict[str, TestOutcome] = {
    "passed": "passed",
    "failed": "failed",
    "pending": "skipped",
    "skipped": "skipped",
    "todo": "skipped",
    "disabled": "skipped",
    "focused": "passed",
}


def parse_jest_json(text: str, target: Path) -> TestReport:
    """Counts, findings and outcomes from a jest ``--json`` or vitest ``--reporter=json``
    report; ``ValueError``/``TypeError``/``KeyError`` when it is not one or does not add up."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("testResults"), list):
        raise TypeError("not a jest/vitest JSON report (no testResults list)")
    if not isinstance(data.get("numTotalTests"), int):
        raise TypeError("not a jest/vitest JSON report (no numTotalTests)")
    report = TestReport()
    cases = 0
    for suite in data["testResults"]:
        file = relative_path(str(suite.get("name") or ""), target)
        failed_here = False
        for case in suite.get("assertionResults") or []:
            cases += 1
            status = str(case.get("status"))
            titles = [str(t) for t in case.get("ancestorTitles") or []]
            test_id = report.add(
                " > ".join([file, *titles, str(case.get("title") or "")]), _JEST_OUTCOMES[status]
            )
            if status != "failed":
                continue
            failed_here = True
            text_ = _clean("\n".join(str(m) for m in case.get("failureMessages") or []), target)
            location = case.get("location") if isinstance(case.get("location"), dict) else {}
            report.findings.append(
                _test_finding(
                    file, int((location or {}).get("line") or 0), "failure", "test",
                    test_id, text_,
                )
            )  # fmt: skip
        if suite.get("status") == "failed" and not failed_here:
            text_ = _clean(str(suite.get("message") or suite.get("failureMessage") or ""), target)
            report.add(file, "error")
            report.findings.append(_test_finding(file, 0, "load-error", "load", file, text_))
    if cases != data["numTotalTests"]:
        raise ValueError(f"the report lists {cases} tests but counts {data['numTotalTests']}")
    return report


# ---------------------------------------------------------------- mocha


def parse_mocha_events(text: str, target: Path) -> TestReport:
    """Outcomes and findings from airfix's mocha reporter; ``ValueError`` when it is incomplete
    (no end marker: mocha stopped before or while running) or disagrees with mocha's stats."""
    report = TestReport()
    stats: dict[str, Any] | None = None
    started = False
    fails = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        kind = event.get("type")
        if kind == "airfix:start":
            started = True
        elif kind == END_MARKER:
            stats = event.get("stats") or {}
        elif kind in ("pass", "pending", "fail"):
            test_id = str(event["id"])
            outcome: TestOutcome = {"pass": "passed", "pending": "skipped"}.get(kind, "failed")
            if kind == "fail" and event.get("hook"):
                outcome = "error"
            report.record(test_id, outcome)
            if kind == "fail":
                fails += 1
                hook = bool(event.get("hook"))
                report.findings.append(
                    _test_finding(
                        relative_path(str(event.get("file") or ""), target),
                        int(event.get("line") or 0),
                        "hook-failure" if hook else "failure",
                        "hook" if hook else "test",
                        test_id,
                        _clean(str(event.get("error") or ""), target),
                    )
                )
    if not started:
        raise ValueError("mocha did not start airfix's reporter")
    if stats is None:
        raise ValueError("mocha's report has no end marker (it stopped before the end)")
    if int(stats.get("failures") or 0) != fails:
        raise ValueError(f"mocha counted {stats.get('failures')} failures, the report has {fails}")
    if int(stats.get("passes") or 0) + int(stats.get("pending") or 0) + fails < len(
        report.outcomes
    ):
        raise ValueError("the mocha report names more tests than mocha counted")
    return report


# ---------------------------------------------------------------- tape


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


@dataclass
class _TapeTest:
    test_id: str
    file: str
    skip: bool = False
    todo: bool = False
    asserts: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False


def parse_tape_events(
    text: str, stdout: str, target: Path, report: TestReport | None = None, crashed: str = ""
) -> TestReport:
    """Outcomes and findings from airfix's tape hook, checked against tape's TAP summary.

    ``crashed`` is the process's error text when it died without a summary.  ``ValueError``
    when the hook did not run, or the run is neither complete, nor a load error, nor a crash
    inside a test.
    """
    report = report if report is not None else TestReport()
    hooked = False
    tests: dict[str, _TapeTest] = {}
    loads: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        kind = event.get("type")
        if kind == "hooked":
            hooked = True
        elif kind == "hook-error":
            raise ValueError(f"airfix's tape hook failed: {event.get('error')}")
        elif kind == "load-error":
            loads.append(event)
        elif kind == "start":
            tid = str(event["id"])
            tests[tid] = _TapeTest(tid, str(event.get("file") or ""), bool(event.get("skip")),
                                   bool(event.get("todo")))  # fmt: skip
        elif kind == "assert" and str(event.get("id")) in tests:
            test = tests[str(event["id"])]
            test.asserts += 1
            if not event.get("ok") and not event.get("todo"):
                test.failures.append(event)
        elif kind == "end" and str(event.get("id")) in tests:
            tests[str(event["id"])].ended = True
    if not hooked:
        raise ValueError("airfix's tape hook did not load (is tape installed in the project?)")
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
    for test in tests.values():
        file = relative_path(test.file, target)
        if test.skip or test.todo:
            report.add(test.test_id, "skipped")
        elif test.failures:
            report.add(test.test_id, "failed")
            first = test.failures[0]
            report.findings.append(
                _test_finding(file, int(first.get("line") or 0), "failure", "test",
                              test.test_id, _tape_failure_text(test.failures, target))
            )  # fmt: skip
        elif not test.ended:
            report.add(test.test_id, "error")
            report.findings.append(
                _test_finding(file, 0, "crash", "crash", test.test_id,
                              _clean(error_summary(crashed, 1500), target))
            )  # fmt: skip
        else:
            report.add(test.test_id, "passed")
    for load in loads:
        file = relative_path(str(load.get("file") or ""), target)
        report.add(file, "error")
        report.findings.append(
            _test_finding(file, 0, "load-error", "load", file,
                          _clean(str(load.get("error") or ""), target))
        )  # fmt: skip
    return report


def _tape_failure_text(failures: list[dict[str, Any]], target: Path) -> str:
    parts = []
    for f in failures[:5]:
        text = f"not ok {f.get('name') or ''}".rstrip()
        if f.get("operator"):
            text += f"\n  operator: {f['operator']}"
        if f.get("expected") is not None:
            text += f"\n  expected: {f.get('expected')}\n  actual:   {f.get('actual')}"
        if f.get("at"):
            text += f"\n  at: {f['at']}"
        elif f.get("error"):
            text += "\n  " + str(f["error"]).splitlines()[0]
        parts.append(text)
    if len(failures) > 5:
        parts.append(f"... and {len(failures) - 5} more failed assertions")
    return _clean("\n".join(parts), target)


# ---------------------------------------------------------------- the adapter


EXIT_MEANINGS = {9: "invalid option (node)", 13: "unsettled top-level await (node)"}
NO_TESTS = "no tests found: a test phase without tests is not a pass"
MOCHA_VALUE_OPTIONS = {
    "-t", "--timeout", "-s", "--slow", "-r", "--require", "-u", "--ui", "-g", "--grep",
    "-f", "--fgrep", "--config", "--package", "--extension", "--ignore", "--exclude", "--file",
    "--retries", "-n", "--node-option", "--spec", "-R", "--reporter", "-O", "--reporter-option",
    "--reporter-options", "-j", "--jobs",
}  # fmt: skip
MOCHA_DROPPED = {"-R", "--reporter", "-O", "--reporter-option", "--reporter-options", "-j",
                 "--jobs", "-w", "--watch", "-p", "--parallel", "--watch-files",
                 "--watch-ignore", "--forbid-only", "--bail", "-b"}  # fmt: skip
TAPE_VALUE_OPTIONS = {"-r", "--require", "-i", "--ignore", "--ignore-pattern"}


def split_args(args: Sequence[str], value_options: set[str]) -> tuple[list[str], list[str]]:
    """A runner's arguments as (options with their values, operands)."""
    options: list[str] = []
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and arg != "-":
            options.append(arg)
            if arg in value_options and i + 1 < len(args):
                options.append(args[i + 1])
                i += 1
        else:
            operands.append(arg)
        i += 1
    return options, operands


def mocha_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """The script's mocha options without reporter/watch/parallel/bail ones, and its specs."""
    options, operands = split_args(args, MOCHA_VALUE_OPTIONS)
    kept: list[str] = []
    i = 0
    while i < len(options):
        opt = options[i]
        name = opt.split("=", 1)[0]
        takes_value = opt in MOCHA_VALUE_OPTIONS and "=" not in opt
        if name in MOCHA_DROPPED:
            i += 2 if takes_value else 1
            continue
        kept.append(opt)
        if takes_value and i + 1 < len(options):
            kept.append(options[i + 1])
            i += 1
        i += 1
    return kept, operands


class JsTestAdapter(NodeToolAdapter):
    name = "js_test"
    phase = "test"
    tier = "dynamic"
    executable_name = "node"
    default_timeout_s = 900.0

    def invocations(self, target: Path) -> list[Invocation]:
        try:
            return runner_invocations(target)
        except (UnsupportedRunner, ValueError, TypeError, OSError):
            return [Invocation("node")]

    def runner(self, target: Path) -> str:
        return self.invocations(target)[0].runner

    def bin_name(self, target: Path) -> str:
        return self.runner(target)

    def version(self) -> str:
        """The runner's version from the ``package.json`` of the package its bin belongs to
        (``tape --version`` runs no option: it prints an empty TAP run); ``--version`` for
        ``node`` and anything outside a ``node_modules``."""
        exe = self.resolve()
        if exe is None or exe in self._versions or "node_modules" not in Path(exe).parts:
            return super().version()
        found = ""
        here = Path(exe).resolve().parent
        for folder in (here, *here.parents):
            manifest = folder / "package.json"
            if manifest.is_file():
                try:
                    data = json.loads(manifest.read_text(encoding="utf-8"))
                    found = str(data.get("version") or "") if isinstance(data, dict) else ""
                except (OSError, ValueError):
                    found = ""
                break
        if not found:
            return super().version()
        self._versions[exe] = found
        self._version = found
        return found

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
            runner_invocations(target)
        except UnsupportedRunner as exc:
            return self._tool_error(
                f"{self.name}: the project's tests use {exc.args[0]}, which airfix cannot run "
                "with a machine-readable report (supported: node --test, jest, vitest, mocha, "
                "tape)",
                [str(exc.args[0]).split()[0]],
            )
        return None

    def scope(self, target: Path, files: list[str]) -> list[str]:
        return [f for f in files if is_js_test_path(f) and (target / f).is_file()]

    def _scope(self, target: Path, files: Sequence[str] | None) -> list[str] | None:
        return super()._scope(target, files) or None  # no test file requested: the whole suite

    def _environment(self, workdir: Path) -> dict[str, str]:
        env = super()._environment(workdir)
        env["CI"] = "true"
        env["AIRFIX_MOCHA_EVENTS"] = str(workdir / MOCHA_EVENTS_FILE)
        env["AIRFIX_TAPE_EVENTS"] = str(workdir / TAPE_EVENTS_FILE)
        env.update(self.extra_env)
        return env

    def build_command(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[str]:
        return self.build_commands(exe, target, files, workdir)[0]

    def build_commands(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[list[str]]:
        """The runner's commands: one, except for tape scripts with several tape commands."""
        invocations = self.invocations(target)
        runner = invocations[0].runner
        paths = list(files or [])
        if runner == "jest":
            return [[
                exe, "--ci", "--json", f"--outputFile={workdir / 'jest.json'}",
                "--testLocationInResults", f"--cacheDirectory={workdir / 'jest-cache'}",
                "--passWithNoTests", *self.extra_args,
                *(["--runTestsByPath", *paths] if paths else []),
            ]]  # fmt: skip
        if runner == "vitest":
            return [[
                exe, "run", "--reporter=json", f"--outputFile={workdir / 'vitest.json'}",
                "--includeTaskLocation", "--no-cache", "--passWithNoTests",
                *self.extra_args, *paths,
            ]]  # fmt: skip
        if runner == "mocha":
            options, specs = mocha_args(invocations[0].args)
            return [[
                exe, *options, "--reporter", str(workdir / MOCHA_REPORTER_FILE),
                "--no-color", *self.extra_args, *(paths or specs),
            ]]  # fmt: skip
        if runner == "tape":
            hook = ["-r", str(workdir / TAPE_HOOK_FILE)]
            if paths:
                options, _ = split_args(invocations[0].args, TAPE_VALUE_OPTIONS)
                return [[exe, *hook, *options, *self.extra_args, *paths]]
            return [[exe, *hook, *inv.args, *self.extra_args] for inv in invocations]
        return [[
            exe, "--test",
            f"--test-reporter={workdir / REPORTER_FILE}",
            f"--test-reporter-destination={workdir / NODE_EVENTS_FILE}",
            "--test-reporter=spec", "--test-reporter-destination=stdout",
            *self.extra_args, *paths,
        ]]  # fmt: skip

    def execute(self, ctx: RunContext) -> ToolRun:
        runner = self.runner(ctx.target)
        sources = {"node": (REPORTER_FILE, REPORTER_SOURCE),
                   "mocha": (MOCHA_REPORTER_FILE, MOCHA_REPORTER_SOURCE),
                   "tape": (TAPE_HOOK_FILE, TAPE_HOOK_SOURCE)}  # fmt: skip
        if runner in sources:
            name, source = sources[runner]
            (ctx.workdir / name).write_text(source, encoding="utf-8")
        commands = self.build_commands(ctx.executable, ctx.target, ctx.files, ctx.workdir)
        report = TestReport()
        failed = False
        for cmd in commands:
            proc = self.spawn(ctx, cmd)
            if runner == "mocha":
                code = check_exit(proc, range(256), f"{self.name} (mocha)", EXIT_MEANINGS)
            else:
                code = check_exit(proc, (0, 1), f"{self.name} ({runner})", EXIT_MEANINGS)
            bad_before = report.failed + report.errors + len(report.findings)
            report = self._read_report(runner, proc, ctx.workdir, ctx.target, report)
            bad = report.failed + report.errors + len(report.findings) - bad_before
            if code == 0 and bad:
                raise ToolFailure(f"{self.name}: exit 0 but failures in the {runner} report", proc)
            if code != 0 and not bad:
                raise ToolFailure(
                    f"{self.name}: {runner} exited {code} but its report has no failed test", proc
                )
            failed = failed or code != 0
        issues = to_issues(self.name, report.findings)
        if report.total == 0 and not issues:
            return self.result(
                ctx, "failed", counts=report.counts(), metrics=report.metrics(), error=NO_TESTS
            )
        return self.result(
            ctx,
            "failed" if failed else "passed",
            issues=issues,
            counts=report.counts(),
            metrics=report.metrics(),
            tests=report.outcomes,
        )

    def _read_report(
        self, runner: str, proc: ProcessResult, workdir: Path, target: Path, report: TestReport
    ) -> TestReport:
        name = {"node": NODE_EVENTS_FILE, "jest": "jest.json", "vitest": "vitest.json",
                "mocha": MOCHA_EVENTS_FILE, "tape": TAPE_EVENTS_FILE}[runner]  # fmt: skip
        path = workdir / name
        if not path.is_file() or not path.stat().st_size:
            why = error_summary(proc.stderr or proc.stdout, 400)
            raise ToolFailure(
                f"{self.name}: {runner} wrote no report (the tests did not run; a configuration "
                "or start-up error?)" + (f": {why}" if why else ""),
                proc,
            )
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            if runner == "node":
                return parse_node_events(text, target)
            if runner == "mocha":
                return parse_mocha_events(text, target)
            if runner == "tape":
                path.unlink()  # the next tape command starts a fresh file
                crashed = proc.stderr if proc.exit_code not in (0, None) else ""
                return parse_tape_events(text, proc.stdout, target, report, crashed)
            return parse_jest_json(text, target)
        except (ValueError, TypeError, KeyError) as exc:
            why = error_summary(proc.stderr, 600) if runner in ("mocha", "tape") else ""
            raise ToolFailure(
                f"{self.name}: unreadable {runner} report ({exc})" + (f": {why}" if why else ""),
                proc,
            ) from exc
