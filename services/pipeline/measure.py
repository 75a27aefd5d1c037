"""Measure a target's health: detected languages' tools, the static tier in parallel threads and
the tests alongside them, always.

Tests always run: a change is never judged, and a project never called healthy, without its tests
(the static gate used to skip them whenever type errors were plentiful, so fixes were committed
untested).  A detected language without adapters, or no detected language at all, is a
``tool_error`` result: airfix never reports a project healthy because it did not know how to look.

The suite runs once per check: where coverage is measured, around the test runner (pytest's and
coverage's results come from that one process).  Each test runner reports outcomes by test id;
when two runs of a suite happen in one check, a test whose outcomes differ between them is
*flaky*, and a test that failed is re-run alone once: passing then also makes it flaky.  Flaky
tests are recorded and never used to judge a change.
"""

from __future__ import annotations

import contextvars
import hashlib
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from airfix.config import Config
from airfix.events.core.health import HealthReport, TestCounts, health_score
from airfix.events.core.impact import TestImpact
from airfix.events.schema import IssueRecord, ToolResult
from airfix.services.runtime.cancel import scope as cancel_scope
from airfix.services.runtime.logs import get_logger
from airfix.services.tools import (
    MypyAdapter,
    PytestAdapter,
    RuffAdapter,
    ToolAdapter,
    ToolRun,
    adapters_for_target,
)
from airfix.services.tools.adapter import BaseToolAdapter
from airfix.services.tools.coverage import CoverageAdapter, split_test_run
from airfix.services.tools.environment import PythonEnv

log = get_logger("airfix.measure")

PASSING = ("passed",)
#: checkers that re-read the whole program on every run: a stack's commits skip them (unless the
#: batch fixes their issues) and its tip runs them, bisected like the tests when they find more
WHOLE_PROGRAM = frozenset({"mypy", "tsc", "go_vet", "dart_analyze"})
RERUN_LIMIT = 50  # failing tests re-run alone to tell flaky from failing; more is a broken suite


class Measurement(msgspec.Struct, frozen=True, kw_only=True):
    results: list[ToolResult]
    issues: list[IssueRecord]
    report: HealthReport
    tests: TestCounts | None = None
    coverage: float | None = None
    outcomes: dict[str, str] = {}  # test id -> passed / failed / error / skipped
    flaky: list[str] = []  # test ids whose outcome changed without a change to the code
    duration_s: float = 0.0
    static_wall_s: float = 0.0
    static_sum_s: float = 0.0
    impact: TestImpact = TestImpact()  # which tests ran which lines (asked for with impact=True)
    selected: list[str] | None = None  # the tests a batch check ran (None: the whole suite)
    #: why the suite stopped before its end (``halt_on``/``halt_when``): outcomes are partial,
    #: coverage is not measured, and the measurement judges only what it saw
    halted: str = ""

    def counts_by_tool(self) -> dict[str, int]:
        """Issues per tool that measured (a tool in error or skipped has no count)."""
        out: dict[str, int] = {}
        for r in self.results:
            if r.status != "tool_error" and r.status != "skipped":
                out[r.tool] = sum(1 for i in self.issues if i.tool == r.tool)
        return out

    @property
    def tests_ran(self) -> bool:
        return bool(self.outcomes) or (self.tests is not None and self.tests.total > 0)


def tool_cache_dir(tool: str, target: Path | str, python: str = "") -> Path:
    """A tool's incremental cache for one target (and interpreter), outside the target, kept
    between the checks of a run and between runs: a mypy re-check takes a second, not eight.
    ``target`` is a path or, for a run's worktrees (one path per run and step), the target's
    identity, so that every worktree of one project shares the cache.

    The tools validate their own entries (mypy by its version, options and each file's hash, and
    its paths are relative to the worktree; ruff by its version, settings and each file's mtime),
    so a new tool version or configuration never reads a stale result.  Both write their cache
    files whole (a temporary file renamed), so concurrent checks of one project can share it.
    Each tool makes the directory when it first runs: adapters made only to re-run tests or read
    a version leave nothing behind."""
    key = str(target.resolve()) if isinstance(target, Path) else target
    digest = hashlib.sha256(f"{key}\0{python}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"airfix-{tool}-cache" / digest


def mypy_cache_dir(target: Path, python: str = "") -> Path:
    return tool_cache_dir("mypy", target, python)


def _run(
    adapter: ToolAdapter, target: Path, timeout_s: float, files: Sequence[str] | None = None
) -> ToolRun:
    started = time.monotonic()
    # the checks give static tools health_check.tool_timeout_s and test runs test_timeout_s
    limit = "tool_timeout_s" if adapter.tier == "static" else "test_timeout_s"
    adapter.timeout_setting = f"health_check.{limit}"
    log.info("tool started", tool=adapter.name)  # what a terminal's live line shows as running
    run = adapter.run(target, files, timeout_s=timeout_s)
    log.info(
        "tool finished",
        tool=adapter.name,
        status=run.result.status,
        issues=len(run.issues),
        duration_s=round(time.monotonic() - started, 3),
        **({"error": run.result.error[:300]} if run.result.error else {}),
    )
    return run


def _timed(adapter: ToolAdapter, target: Path, timeout_s: float) -> tuple[ToolRun, float]:
    """:func:`_run`, and when it ended (``time.monotonic``)."""
    run = _run(adapter, target, timeout_s)
    return run, time.monotonic()


def _judge(
    run: ToolRun, halt_when: Callable[[ToolRun], str], why: list[str], stop: threading.Event
) -> None:
    """Stop the check's test suite when ``halt_when`` condemns a static tool's ``run``."""
    reason = halt_when(run)
    if reason and not stop.is_set():
        why.append(reason)
        stop.set()


def _stopped(tool: str, why: str) -> ToolRun:
    """A test run :func:`_judge` stopped: skipped (it judged nothing), with the reason."""
    return ToolRun(
        result=ToolResult(tool=tool, status="skipped", error=f"stopped: {why}"), halted=why
    )


def _one_suite_run(adapters: list[ToolAdapter]) -> tuple[list[ToolAdapter], ToolAdapter | None]:
    """pytest and coverage both run the whole suite; one ``coverage run -m pytest`` gives both
    results, so the suite runs once per check.  Returns the adapters to run and the test runner
    the coverage run stands for (None when they do not both run, or coverage is missing)."""
    cov = next((a for a in adapters if isinstance(a, CoverageAdapter)), None)
    tests = next((a for a in adapters if a.name == "pytest"), None)
    if cov is None or tests is None or not cov.available():
        return adapters, None
    cov.test_issues_as = tests.name
    return [a for a in adapters if a is not tests], tests


def _as_reported(
    run: ToolRun, suite_for: ToolAdapter | None, target: Path, timeout_s: float
) -> list[ToolRun]:
    """A coverage run that also stood for the test runner, as the two results; if coverage could
    not measure, the test runner runs on its own so the tests are still judged."""
    if suite_for is None or run.result.tool != "coverage":
        return [run]
    if run.ok:
        return list(split_test_run(run, suite_for.name))
    return [_run(suite_for, target, timeout_s), msgspec.structs.replace(run, issues=[])]


TEST_METRICS = ("tests_total", "tests_passed", "tests_failed", "tests_errors", "tests_skipped")


def _with_test_counts(run: ToolRun) -> ToolRun:
    """Copy a test runner's counts into its ToolResult, so HealthChecked carries them."""
    extra = {k: int(run.metrics[k]) for k in TEST_METRICS if k in run.metrics}
    if not extra:
        return run
    result = msgspec.structs.replace(run.result, counts={**run.result.counts, **extra})
    return msgspec.structs.replace(run, result=result)


def counts_of_tests(run: ToolRun) -> TestCounts:
    """A runner's counts, each test once: ``tests_failed`` excludes errors."""
    m = run.metrics
    return TestCounts(
        passed=int(m.get("tests_passed", 0)),
        failed=int(m.get("tests_failed", 0)),
        errors=int(m.get("tests_errors", 0)),
        skipped=int(m.get("tests_skipped", 0)),
    )


def tool_adapters(
    target: Path, python: PythonEnv | None, caches: str | None = None
) -> tuple[list[ToolAdapter], list[ToolResult]]:
    """The target's adapters (set to the project's interpreter and the caches of ``caches``, a
    project identity, default the target's path), and tool errors for what airfix cannot check."""
    by_language = adapters_for_target(target)
    errors: list[ToolResult] = []
    if not by_language:
        errors.append(
            ToolResult(
                tool="language-detection",
                status="tool_error",
                error=f"no supported language detected in {target} "
                "(pyproject.toml, package.json, go.mod, pubspec.yaml)",
            )
        )
    adapters: list[ToolAdapter] = []
    for language, found in by_language.items():
        if not found:
            errors.append(
                ToolResult(
                    tool=f"{language}-tools",
                    status="tool_error",
                    error=f"{language} detected but airfix has no adapters for it yet",
                )
            )
        adapters += found
    for a in adapters:
        if python is not None and isinstance(a, BaseToolAdapter):
            a.use_python(python)
        if isinstance(a, (MypyAdapter, RuffAdapter)) and a.cache_dir is None:
            a.cache_dir = tool_cache_dir(a.name, caches or target, python.python if python else "")
    return adapters, errors


def measure(
    target: Path,
    config: Config,
    *,
    scope: str = "full",
    python: PythonEnv | None = None,
    impact: bool = False,
    tests: Sequence[str] | None = None,
    known: Mapping[str, str] | None = None,
    skip: Collection[str] = (),
    caches: str | None = None,
    halt_on: Collection[str] = (),
    halt_when: Callable[[ToolRun], str] | None = None,
) -> Measurement:
    """Measure ``target``.  ``scope="batch"`` (verification) skips coverage, which only the full
    checks that open and close an iteration need; ``scope="static"`` (a commit of a stack, whose
    tests run once on the stack's tip) runs only the static tools.  ``impact`` (full checks) also
    records which tests execute which files; ``tests`` (batch checks) runs only those pytest tests
    (none at all when empty): the selection test impact made.  ``known`` (a closing check): the
    outcomes at the iteration's start; a test that failed there and fails again is not re-run
    alone (it is no one's regression, and re-running it only told flaky from failing then).
    ``skip``: static tools not to run (a stacked commit's whole-program checkers).  ``caches``:
    whose tool caches to use (:func:`tool_cache_dir`).

    A tree already condemned needs no more of its test suite (a stack's tip is bisected next):
    ``halt_on``, tests that passed before, stops the suite at the first of them that fails;
    ``halt_when`` is asked about each static tool's run as it ends, and a reason it gives stops
    the suite at once (the tests run meanwhile).  Either way ``Measurement.halted`` says why."""
    started = time.monotonic()
    adapters, results = tool_adapters(target, python, caches)
    static = [a for a in adapters if a.tier == "static" and a.name not in skip]
    dynamic = (
        []
        if scope == "static"
        else [
            a
            for a in adapters
            if a.tier != "static" and not (scope == "batch" and a.name == "coverage")
        ]
    )
    dynamic, suite_for = _one_suite_run(dynamic)
    for a in dynamic:
        if isinstance(a, CoverageAdapter) and scope == "full":
            a.contexts = impact
        if isinstance(a, (CoverageAdapter, PytestAdapter)) and scope == "full":
            a.halt_on = frozenset(halt_on)
    selection = list(tests) if tests is not None and scope == "batch" else None
    if selection == []:  # no test can reach the change: the closing check's full suite judges it
        dynamic = [a for a in dynamic if a.name != "pytest"]
    hc = config.health_check
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, len(static))) as pool:
        # each thread gets a copy of the caller's context, so tool log lines keep run_id & co.
        futures = [
            pool.submit(contextvars.copy_context().run, _timed, a, target, hc.tool_timeout_s)
            for a in static
        ]
        stop, why = threading.Event(), list[str]()
        if halt_when is not None:
            for f in futures:
                f.add_done_callback(lambda f: _judge(f.result()[0], halt_when, why, stop))
        # the tests run meanwhile, not after: the static tools only read the tree (their caches
        # are outside it), and a check's tree is its own, so neither can change what the other
        # sees; a type check and a test suite then take the longer of the two, not the sum
        with cancel_scope(stop):
            dynamic_runs = [
                split
                for a in dynamic
                for split in _as_reported(
                    _run(a, target, hc.test_timeout_s, selection if a.name == "pytest" else None),
                    None if stop.is_set() else suite_for,
                    target,
                    hc.test_timeout_s,
                )
            ]
        timed = [f.result() for f in futures]
    if stop.is_set() and not all(r.ok for r in dynamic_runs):  # cut short, not merely late
        ran = [a.name for a in dynamic] + ([suite_for.name] if suite_for else [])
        dynamic_runs = [_stopped(name, why[0]) for name in ran]
    static_runs = [run for run, _ in timed]
    static_wall = max((end for _, end in timed), default=t0) - t0
    runs = [_with_test_counts(r) for r in static_runs + dynamic_runs]
    results += [r.result for r in runs]
    issues = [i for r in runs for i in r.issues]
    counts: TestCounts | None = None
    coverage = None
    outcome_runs = [r for r in runs if r.ok and r.tests]
    for r in runs:
        if not r.ok:
            continue
        if r.tests_total is not None and counts is None:
            counts = counts_of_tests(r)
        if r.coverage_percent is not None:
            coverage = r.coverage_percent / 100.0
    outcomes: dict[str, str] = dict(outcome_runs[0].tests) if outcome_runs else {}
    flaky = sorted(
        {
            t
            for r in outcome_runs[1:]
            for t, o in r.tests.items()
            if t in outcomes and (o in PASSING) != (outcomes[t] in PASSING)
        }
    )
    rerun = [
        t
        for t, o in outcomes.items()
        if o in ("failed", "error")
        and t not in flaky
        and (known or {}).get(t) not in ("failed", "error")
    ]
    if rerun and scope == "full" and len(rerun) <= RERUN_LIMIT:  # a halting test too
        again = rerun_tests(target, config, rerun, python)
        flaky = sorted({*flaky, *(t for t in rerun if again.get(t) in PASSING)})
    phases = {a.name: a.phase for a in adapters}
    report = health_score(
        results,
        tests=counts,
        coverage=coverage,
        criteria=config.completion_criteria,
        static_pass_threshold=hc.static_pass_threshold,
        tool_phases=phases,
    )
    return Measurement(
        halted=next((r.halted for r in dynamic_runs if r.halted), ""),
        results=results,
        issues=issues,
        report=report,
        tests=counts,
        coverage=coverage,
        outcomes=outcomes,
        flaky=flaky,
        duration_s=time.monotonic() - started,
        static_wall_s=static_wall,
        static_sum_s=sum(r.result.duration_s for r in static_runs),
        impact=next((r.impact for r in runs if r.impact), TestImpact()),
        selected=selection,
    )


def rerun_tests(
    target: Path, config: Config, test_ids: Sequence[str], python: PythonEnv | None = None
) -> dict[str, str]:
    """Run only these tests again (the runner that can select tests by id: pytest) and return
    their outcomes; an empty dict when no runner can."""
    adapters, _ = tool_adapters(target, python)
    runner = next((a for a in adapters if a.name == "pytest"), None)
    ids = [t for t in test_ids if "::" in t]  # node ids of tests, not files that failed to collect
    if runner is None or not ids:
        return {}
    run = _run(runner, target, config.health_check.test_timeout_s, ids)
    return dict(run.tests) if run.ok else {}


def environment_facts(target: Path, python: PythonEnv) -> dict[str, str]:
    """What the run's checks will use, for ``RunStarted.environment`` and the run's first lines:
    the project's interpreter (how it was found) and each tool's version (``tool.<name>``)."""
    facts = {
        "python": python.python,
        "python_version": python.version,
        "python_source": python.source,
    }
    adapters, _ = tool_adapters(target, python)

    def version(a: ToolAdapter) -> str:
        return a.version() if a.available() else "not installed"

    # each probe is a process of its own (pytest's loads every plugin): at once, not in turn
    with ThreadPoolExecutor(max_workers=max(1, len(adapters))) as pool:
        for a, found in zip(adapters, pool.map(version, adapters), strict=True):
            facts[f"tool.{a.name}"] = found
    return facts
