"""Measure a target's health: detected languages' tools, static tier first (in parallel), then the
dynamic tier (tests, coverage) only when the static score reaches the threshold.

A detected language without adapters, or no detected language at all, is a ``tool_error`` result:
airfix never reports a project healthy because it did not know how to look.
"""

from __future__ import annotations

import contextvars
import hashlib
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from airfix.config import Config
from airfix.events.health import HealthReport, TestCounts, health_score, should_run_dynamic
from airfix.events.schema import IssueRecord, ToolResult
from airfix.services.logs import get_logger
from airfix.services.tools import MypyAdapter, ToolAdapter, ToolRun, adapters_for_target

log = get_logger("airfix.measure")


class Measurement(msgspec.Struct, frozen=True, kw_only=True):
    results: list[ToolResult]
    issues: list[IssueRecord]
    report: HealthReport
    tests: TestCounts | None = None
    coverage: float | None = None
    duration_s: float = 0.0
    static_wall_s: float = 0.0
    static_sum_s: float = 0.0

    def counts_by_tool(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            if r.status != "tool_error" and r.status != "skipped":
                out[r.tool] = sum(1 for i in self.issues if i.tool == r.tool)
        return out


def mypy_cache_dir(target: Path) -> Path:
    """mypy's incremental cache for one target, outside it (re-checks take a second, not eight)."""
    digest = hashlib.sha256(str(target.resolve()).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / "airfix-mypy-cache" / digest
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(adapter: ToolAdapter, target: Path, timeout_s: float) -> ToolRun:
    started = time.monotonic()
    run = adapter.run(target, timeout_s=timeout_s)
    log.info("tool finished", tool=adapter.name, status=run.result.status,
             issues=len(run.issues), duration_s=round(time.monotonic() - started, 3),
             **({"error": run.result.error[:300]} if run.result.error else {}))
    return run


TEST_METRICS = ("tests_total", "tests_passed", "tests_failed", "tests_errors", "tests_skipped")


def _with_test_counts(run: ToolRun) -> ToolRun:
    """Copy a test runner's counts into its ToolResult, so HealthChecked carries them."""
    extra = {k: int(run.metrics[k]) for k in TEST_METRICS if k in run.metrics}
    if not extra:
        return run
    result = msgspec.structs.replace(run.result, counts={**run.result.counts, **extra})
    return msgspec.structs.replace(run, result=result)


def _skipped(adapter: ToolAdapter, why: str) -> ToolRun:
    return ToolRun(result=ToolResult(tool=adapter.name, status="skipped", error=why))


def measure(target: Path, config: Config, *, force_dynamic: bool = False, scope: str = "full") -> Measurement:
    """Measure ``target``.  ``scope="batch"`` (verification) skips coverage, which only the full
    checks that open and close an iteration need; tests still run, so a batch that breaks one is
    caught."""
    started = time.monotonic()
    by_language = adapters_for_target(target)
    results: list[ToolResult] = []
    issues: list[IssueRecord] = []
    if not by_language:
        results.append(ToolResult(tool="language-detection", status="tool_error",
                                  error=f"no supported language detected in {target} "
                                        "(pyproject.toml, package.json, go.mod, pubspec.yaml)"))
    adapters: list[ToolAdapter] = []
    for language, found in by_language.items():
        if not found:
            results.append(ToolResult(tool=f"{language}-tools", status="tool_error",
                                      error=f"{language} detected but airfix has no adapters for it yet"))
        adapters += found
    for a in adapters:
        if isinstance(a, MypyAdapter) and a.cache_dir is None:
            a.cache_dir = mypy_cache_dir(target)
    static = [a for a in adapters if a.tier == "static"]
    dynamic = [a for a in adapters if a.tier != "static" and not (scope == "batch" and a.name == "coverage")]
    hc = config.health_check
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, len(static))) as pool:
        # each thread gets a copy of the caller's context, so tool log lines keep run_id & co.
        futures = [pool.submit(contextvars.copy_context().run, _run, a, target, hc.tool_timeout_s)
                   for a in static]
        static_runs = [f.result() for f in futures]
    static_wall = time.monotonic() - t0
    static_sum = sum(r.result.duration_s for r in static_runs)
    phases = {a.name: a.phase for a in adapters}
    gate = health_score([*results, *(r.result for r in static_runs)], criteria=config.completion_criteria,
                        static_pass_threshold=hc.static_pass_threshold, tool_phases=phases)
    if dynamic and should_run_dynamic(gate.static_score, hc.static_pass_threshold, force=force_dynamic):
        dynamic_runs = [_run(a, target, hc.test_timeout_s) for a in dynamic]
    else:
        why = f"static score {gate.static_score:.2f} below health_check.static_pass_threshold {hc.static_pass_threshold}"
        dynamic_runs = [_skipped(a, why) for a in dynamic]
    runs = [_with_test_counts(r) for r in static_runs + dynamic_runs]
    results += [r.result for r in runs]
    for r in runs:
        issues += r.issues
    tests = coverage = None
    for r in runs:
        if r.result.status in ("skipped", "tool_error"):
            continue
        if r.tests_total is not None and tests is None:
            tests = TestCounts(passed=r.tests_passed or 0, failed=r.tests_failed or 0,
                               errors=int(r.metrics.get("tests_errors", 0)),
                               skipped=int(r.metrics.get("tests_skipped", 0)))
        if r.coverage_percent is not None:
            coverage = r.coverage_percent / 100.0
    report = health_score(results, tests=tests, coverage=coverage, criteria=config.completion_criteria,
                          static_pass_threshold=hc.static_pass_threshold, tool_phases=phases)
    return Measurement(results=results, issues=issues, report=report, tests=tests, coverage=coverage,
                       duration_s=time.monotonic() - started, static_wall_s=static_wall,
                       static_sum_s=static_sum)
