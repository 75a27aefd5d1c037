"""mocha: airfix's reporter (loaded from a path with ``--reporter``), the script's options it
keeps, and the parser of the JSON Lines the reporter writes (the format is described in
:mod:`airfix.services.tools.js_test`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec

from airfix.services.tools.base import Finding, TestOutcome, relative_path
from airfix.services.tools.js_report import (
    END_MARKER,
    TestReport,
    clean_text,
    failure_finding,
)
from airfix.services.tools.js_scripts import split_args

MOCHA_REPORTER_FILE = "airfix-mocha-reporter.cjs"
MOCHA_EVENTS_FILE = "mocha.jsonl"
MOCHA_VALUE_OPTIONS = {
    "-t", "--timeout", "-s", "--slow", "-r", "--require", "-u", "--ui", "-g", "--grep",
    "-f", "--fgrep", "--config", "--package", "--extension", "--ignore", "--exclude", "--file",
    "--retries", "-n", "--node-option", "--spec", "-R", "--reporter", "-O", "--reporter-option",
    "--reporter-options", "-j", "--jobs",
}  # fmt: skip
MOCHA_DROPPED = {"-R", "--reporter", "-O", "--reporter-option", "--reporter-options", "-j",
                 "--jobs", "-w", "--watch", "-p", "--parallel", "--watch-files",
                 "--watch-ignore", "--forbid-only", "--bail", "-b"}  # fmt: skip

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
    ids.set(r, { id, base });
    return ids.get(r);
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
  // mocha >= 6 counts in runner.stats; before, the reporter base class did, which this
  // reporter does not use: then the events are counted here, as that class counted them.
  const counted = { passes: 0, pending: 0, failures: 0 };
  emit({ type: 'airfix:start' });
  runner.on('pass', (t) => {
    counted.passes++;
    emit(Object.assign({ type: 'pass', file: rel(fileOf(t)) }, idOf(t, false)));
  });
  runner.on('pending', (t) => {
    counted.pending++;
    emit(Object.assign({ type: 'pending', file: rel(fileOf(t)) }, idOf(t, false)));
  });
  runner.on('fail', (t, err) => {
    counted.failures++;
    const hook = t.type === 'hook';
    const file = fileOf(t);
    emit(Object.assign({ type: 'fail', hook, file: rel(file), line: line(err, file),
                         error: error(err) }, idOf(t, hook)));
  });
  runner.once('end', () => {
    const own = runner.stats && typeof runner.stats.failures === 'number';
    emit({ type: 'airfix:end', stats: own ? runner.stats : counted,
           counter: own ? 'mocha' : 'reporter' });
  });
}
module.exports = AirfixReporter;
"""


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


class MochaStats(msgspec.Struct, frozen=True):
    """mocha's ``runner.stats`` (or the reporter's own count); other counts are ignored."""

    passes: int = 0
    pending: int = 0
    failures: int = 0


class _MochaEvent(msgspec.Struct, frozen=True, tag_field="type"):
    pass


class MochaStart(_MochaEvent, frozen=True, tag="airfix:start"):
    pass


class MochaEnd(_MochaEvent, frozen=True, tag=END_MARKER):
    stats: MochaStats | None = None


class _MochaTestEvent(_MochaEvent, frozen=True):
    """A test's outcome: ``id`` is unique in one mocha run, ``base`` the id before numbering."""

    id: str
    base: str = ""
    file: str = ""
    line: int = 0
    error: str = ""
    hook: bool = False


class MochaPass(_MochaTestEvent, frozen=True, tag="pass"):
    pass


class MochaPending(_MochaTestEvent, frozen=True, tag="pending"):
    pass


class MochaFail(_MochaTestEvent, frozen=True, tag="fail"):
    pass


MochaEvent = MochaStart | MochaEnd | MochaPass | MochaPending | MochaFail
_MOCHA_OUTCOMES: dict[type[_MochaTestEvent], TestOutcome] = {
    MochaPass: "passed",
    MochaPending: "skipped",
    MochaFail: "failed",
}


def parse_mocha_events(text: str, target: Path, report: TestReport | None = None) -> TestReport:
    """Outcomes and findings from airfix's mocha reporter, added to ``report`` (one per run:
    a test script may run mocha several times); ``ValueError`` when it is incomplete (no end
    marker: mocha stopped before or while running), is malformed (msgspec names the line's
    path, e.g. ``$.line``) or disagrees with mocha's stats."""
    report = report if report is not None else TestReport()
    stats: MochaStats | None = None
    started = False
    fails = 0
    ids: dict[str, str] = {}  # the reporter's id of a test -> its id in the run
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = msgspec.json.decode(line, type=MochaEvent)
        except msgspec.DecodeError as exc:
            raise ValueError(f"mocha events line {number}: {exc}") from exc
        if isinstance(event, MochaStart):
            started = True
        elif isinstance(event, MochaEnd):
            stats = event.stats or MochaStats()
        else:
            hook = isinstance(event, MochaFail) and event.hook
            outcome: TestOutcome = "error" if hook else _MOCHA_OUTCOMES[type(event)]
            reporter_id = event.id
            test_id = ids.get(reporter_id)
            if test_id is None:  # numbered again across the run's mocha commands
                test_id = ids[reporter_id] = report.add(event.base or reporter_id, outcome)
            else:
                report.record(test_id, outcome)
            if isinstance(event, MochaFail):
                fails += 1
                report.findings.append(_mocha_finding(event, hook, test_id, target))
    if not started:
        raise ValueError("mocha did not start airfix's reporter")
    if stats is None:
        raise ValueError("mocha's report has no end marker (it stopped before the end)")
    if stats.failures != fails:
        raise ValueError(f"mocha counted {stats.failures} failures, the report has {fails}")
    if stats.passes + stats.pending + fails < len(ids):
        raise ValueError("the mocha report names more tests than mocha counted")
    return report


def _mocha_finding(event: MochaFail, hook: bool, test_id: str, target: Path) -> Finding:
    return failure_finding(
        relative_path(event.file, target),
        event.line,
        "hook-failure" if hook else "failure",
        "hook" if hook else "test",
        test_id,
        clean_text(event.error, target),
    )
