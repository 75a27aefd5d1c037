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
  Several tape or mocha commands (``npm run test:a && npm run test:b``) all run, one after
  the other, into one report (a scoped run is one command with the first one's options).

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
  an end marker with mocha's stats (mocha 3 to 5 keep none unless the reporter derives from
  their base reporter: the reporter's own count of the events then; verified with mocha 3.5.3
  and 10.8.2); duplicates are numbered by test object.  A failing hook is an
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

The parts live apart: :mod:`~airfix.services.tools.js_scripts` reads the test script,
:mod:`~airfix.services.tools.js_report` holds what every parser fills, and each runner has its
module (``js_node``, ``js_jest``, ``js_mocha``, ``js_tape``) with the code airfix gives it and the
parser of what that code writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from airfix.services.tools.base import (
    ProcessResult,
    RunContext,
    ToolFailure,
    ToolRun,
    check_exit,
    to_issues,
)
from airfix.services.tools.eslint import NodeToolAdapter, bin_package_version, error_summary
from airfix.services.tools.js_jest import parse_jest_json
from airfix.services.tools.js_mocha import (
    MOCHA_EVENTS_FILE,
    MOCHA_REPORTER_FILE,
    MOCHA_REPORTER_SOURCE,
    mocha_args,
    parse_mocha_events,
)
from airfix.services.tools.js_node import (
    NODE_EVENTS_FILE,
    REPORTER_FILE,
    REPORTER_SOURCE,
    parse_node_events,
)
from airfix.services.tools.js_report import TestReport
from airfix.services.tools.js_scripts import (
    Invocation,
    UnsupportedRunner,
    detect_runner,
    is_js_test_path,
    runner_invocations,
    split_args,
)
from airfix.services.tools.js_tape import (
    TAPE_EVENTS_FILE,
    TAPE_HOOK_FILE,
    TAPE_HOOK_SOURCE,
    TAPE_VALUE_OPTIONS,
    parse_tape_events,
)

__all__ = [
    "Invocation",
    "JsTestAdapter",
    "TestReport",
    "UnsupportedRunner",
    "detect_runner",
    "is_js_test_path",
    "mocha_args",
    "parse_jest_json",
    "parse_mocha_events",
    "parse_node_events",
    "parse_tape_events",
    "runner_invocations",
]

EXIT_MEANINGS = {9: "invalid option (node)", 13: "unsettled top-level await (node)"}
NO_TESTS = "no tests found: a test phase without tests is not a pass"


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
        if exe is None or exe in self._versions:
            return super().version()
        found = bin_package_version(exe)
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
        """The runner's commands: one, except for tape and mocha scripts with several commands
        of their runner (all run, one after the other, into one report)."""
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
            # mocha 3 knows --no-colors only (later versions know both spellings)
            reporter = ["--reporter", str(workdir / MOCHA_REPORTER_FILE), "--no-colors"]
            if paths:
                options, _ = mocha_args(invocations[0].args)
                return [[exe, *options, *reporter, *self.extra_args, *paths]]
            return [
                [exe, *options, *reporter, *self.extra_args, *specs]
                for options, specs in (mocha_args(inv.args) for inv in invocations)
            ]
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
                path.unlink()  # the next mocha command starts a fresh file
                return parse_mocha_events(text, target, report)
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
