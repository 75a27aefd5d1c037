"""Section 6a: an ``autofix`` run (``request_run`` + ``run_inline``, fresh embedded store)
against a hand script doing the same with the same tools on an identical copy, and where
airfix's time goes (from its events' ``recorded_at``).
"""

from __future__ import annotations

import gc
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from airfix.config import load_config
from airfix.events.keys import Keys
from airfix.events.schema import (
    BatchPlanned,
    Committed,
    Event,
    FixApplied,
    FixFailed,
    FixRolledBack,
    FixStarted,
    HealthChecked,
    IssuesDiscovered,
    RunRequested,
)
from airfix.events.storage.backend import connect
from airfix.events.storage.store import EventStore
from airfix.services.process import find_executable
from airfix.services.runtime.app import App
from scripts.bench.common import (
    Metric,
    Results,
    median,
)
from scripts.bench.planning import bench_planning
from scripts.bench.sample import make_sample, ruff_issues, tool_env
from scripts.bench.static_tier import bench_static_tier

HAND_SCRIPT = "ruff check --fix . && ruff format . && git add -A && git commit -qm fix"


def healthy_after_hand(root: Path, scratch: Path) -> dict[str, Any]:
    """What the hand script does not check: are types and tests still fine?  (Not timed.)"""
    out: dict[str, Any] = {}
    env = {**tool_env(), "PYTHONDONTWRITEBYTECODE": "1"}
    for name, argv in (
        ("mypy", [find_executable("mypy") or "mypy", "--cache-dir", str(scratch / "mypy-hand")]),
        ("pytest", [find_executable("pytest") or "pytest", "-q", "-p", "no:cacheprovider"]),
    ):
        proc = subprocess.run(argv, cwd=root, capture_output=True, text=True, env=env, check=False)
        out[name] = "passed" if proc.returncode == 0 else f"exit {proc.returncode}"
    return out


#: Which step of the pipeline produced an event (the first event of each append carries the gap
#: since the previous append: the step's own time plus the consumer's pick-up latency).
STEP_OF: dict[str, str] = {
    "RunStarted": "start",
    "HealthChecked": "check",
    "IssuesDiscovered": "check",
    "BatchPlanned": "plan",
    "FixStarted": "claim",
    "FixApplied": "fixer",
    "FixFailed": "fixer",
    "Committed": "verify",
    "FixRolledBack": "verify",
    "IterationCompleted": "close",
}


def attribute_run(events: list[Event], t_begin: float, t_end: float) -> dict[str, float]:
    """Seconds per step from the events' ``recorded_at`` (epoch clock, like t_begin/t_end)."""
    steps: dict[str, float] = {}
    prev = t_begin
    for ev in events:
        at = ev.recorded_at.timestamp()
        step = (
            "request" if isinstance(ev, RunRequested) else STEP_OF.get(type(ev).__name__, "other")
        )
        if step == "check" and steps.get("close") is not None:
            step = "close"  # the closing check's HealthChecked rides with IterationCompleted
        steps[step] = steps.get(step, 0.0) + max(0.0, at - prev)
        prev = at
    steps["finish"] = max(0.0, t_end - prev)
    return steps


def bench_pipeline_run(res: Results, quick: bool, scratch: Path) -> None:
    modules = 12 if quick else 24
    res.begin(
        f"6a. fix pipeline: airfix autofix vs a hand script ({modules} modules, "
        f"{26 * modules} ruff issues)"
    )
    from airfix.services.pipeline.measure import measure
    from airfix.services.pipeline.requests import report_for, request_run, run_inline

    hand_runs = 3
    hand_roots = [make_sample(scratch / f"hand{i}", modules) for i in range(hand_runs)]
    air_root = make_sample(scratch / "airfix", modules)
    before = ruff_issues(air_root)
    n_before = len(before)
    if n_before < 300:
        raise SystemExit(f"the generated sample has only {n_before} ruff issues (< 300)")
    by_rule = Counter(str(i.get("code")) for i in before)

    # the hand script, 3 times on identical copies; median
    env = tool_env()
    hand_s: list[float] = []
    hand_rc: list[int] = []
    for root in hand_roots:
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["bash", "-c", HAND_SCRIPT], cwd=root, env=env, capture_output=True, check=False
        )
        hand_s.append(time.perf_counter() - t0)
        hand_rc.append(proc.returncode)
    hand_left = len(ruff_issues(hand_roots[0]))
    hand_health = healthy_after_hand(hand_roots[0], scratch)

    # airfix: one autofix run on a fresh embedded store, timed end to end
    config = load_config(overrides={"store.redis_url": ""}, env={})
    client = connect(fresh_embedded=True)
    keys = Keys(prefix=config.store.prefix, partitions=config.store.partitions)
    app = App(config, client, EventStore(client, keys))
    gc.collect()
    w0 = time.time()
    t0 = time.perf_counter()
    run_id = request_run(
        app, config, air_root, batching="smart", fixer="autofix", simulation=False,
        max_iterations=1,
    )  # fmt: skip
    run_inline(app, run_id)
    air_s = time.perf_counter() - t0
    w1 = time.time()
    events = list(app.store.read_run(run_id))
    report = report_for(app, run_id)
    if report.branch:  # the commits are on the run's branch; the checkout may still be on main
        subprocess.run(["git", "checkout", "-q", report.branch], cwd=air_root, check=True)
    air_left = len(ruff_issues(air_root))
    steps = attribute_run(events, w0, w1)

    checks = [e for e in events if isinstance(e, HealthChecked)]
    planned = [e for e in events if isinstance(e, BatchPlanned)]
    discovered = [e for e in events if isinstance(e, IssuesDiscovered)]
    n_discovered = len(discovered[0].issues) if discovered else 0
    n_planned = sum(len(b.issue_ids) for b in planned)
    fix_s = sum(e.duration_s for e in events if isinstance(e, (FixApplied, FixFailed)))
    n_verify = sum(1 for e in events if isinstance(e, (Committed, FixRolledBack)))
    n_fix = sum(1 for e in events if isinstance(e, FixStarted))

    def tools_of(ev: HealthChecked) -> str:
        return ", ".join(f"{t.tool} {t.duration_s:.2f}s ({t.status})" for t in ev.tools)

    # diagnostics, not timed: one verification's measure() on the fixed tree (warm mypy cache),
    # and what the per-measure() `--version` probes of freshly built adapters cost
    probe = measure(air_root, config, scope="batch")
    probe_tools = {r.tool: r.duration_s for r in probe.results}
    probe_accounted = probe.static_wall_s + sum(
        r.duration_s for r in probe.results if r.tool not in ("ruff", "mypy")
    )
    from airfix.services.tools import adapters_for_target

    t_v = time.perf_counter()
    versions = {
        a.name: a.version() for found in adapters_for_target(air_root).values() for a in found
    }
    version_s = time.perf_counter() - t_v

    res.details["pipeline_run"] = {
        "modules": modules,
        "issues_before": n_before,
        "issues_before_by_rule": dict(by_rule),
        "hand_script": HAND_SCRIPT,
        "hand_s": hand_s,
        "hand_exit_codes": hand_rc,
        "hand_issues_left": hand_left,
        "hand_untimed_health": hand_health,
        "airfix_s": air_s,
        "airfix_status": report.status,
        "airfix_issues_left": air_left,
        "airfix_steps_s": steps,
        "airfix_fixer_s": fix_s,
        "airfix_checks": [
            {t.tool: {"s": t.duration_s, "status": t.status} for t in c.tools} for c in checks
        ],
        "batches_planned": len(planned),
        "batches": [{"description": b.description, "issues": len(b.issue_ids)} for b in planned],
        "issues_discovered": n_discovered,
        "issues_planned": n_planned,
        "commits": len(report.commits),
        "rolled_back": report.rolled_back,
        "failed": report.failed,
        "verification_probe": {
            "wall_s": probe.duration_s,
            "tools_s": probe_tools,
            "unaccounted_s": probe.duration_s - probe_accounted,
        },
        "version_probe_s": version_s,
        "tool_versions": versions,
    }
    hand_med = median(hand_s)
    kinds = Counter(b.description.split(",")[0] for b in planned)  # "part k/n" dropped
    res.notes.append(
        f"airfix run: {len(planned)} batches planned "
        f"({', '.join(f'{n}x {d}' for d, n in kinds.items())}; "
        f"{n_discovered - n_planned} of {n_discovered} issues not planned: batch_sizes.lint_fixes="
        f"{config.batch_sizes.lint_fixes} per iteration, max_cleanup_batch_size="
        f"{config.issue_grouping.max_cleanup_batch_size}); full checks: "
        + " | ".join(tools_of(c) for c in checks)
        + f"; one batch verification (diag., warm mypy cache) {probe.duration_s:.2f} s = "
        + ", ".join(f"{k} {v:.2f}" for k, v in probe_tools.items())
        + f" (ruff || mypy), +{probe.duration_s - probe_accounted:.2f} s outside the tools' runs"
    )
    res.add(
        Metric(
            "pipeline_hand_s",
            "hand script: ruff --fix, format, commit",
            hand_med,
            "s",
            higher_is_better=False,
            note=f"median of {hand_runs} fresh copies ({', '.join(f'{s:.3f}' for s in hand_s)} s); "
            f"exit {hand_rc}",
        )
    )
    res.add(
        Metric(
            "pipeline_airfix_s",
            "airfix autofix run, 1 iteration, verified",
            air_s,
            "s",
            higher_is_better=False,
            note=f"request_run + run_inline, fresh embedded store; status {report.status}",
        )
    )
    res.add(
        Metric(
            "pipeline_airfix_vs_hand",
            "airfix / hand script wall time",
            air_s / hand_med,
            "x",
            1.5,
            higher_is_better=False,
            note="airfix verifies every batch (ruff+mypy+pytest) and runs 2 full checks; the hand "
            "script verifies nothing",
        )
    )
    res.add(
        Metric(
            "pipeline_issues_before",
            "ruff issues in the generated sample",
            n_before,
            "issues",
            note=", ".join(f"{k} {v}" for k, v in sorted(by_rule.items())),
        )
    )
    res.add(
        Metric(
            "pipeline_hand_fixed",
            "  fixed by the hand script",
            n_before - hand_left,
            "issues",
            note=f"{hand_left} left; not timed, checked after: mypy {hand_health['mypy']}, "
            f"pytest {hand_health['pytest']}",
        )
    )
    res.add(
        Metric(
            "pipeline_airfix_fixed",
            "  fixed by airfix",
            n_before - air_left,
            "issues",
            note=f"{air_left} left; {len(planned)} batches ({n_planned} of {n_discovered} issues) "
            f"planned, {len(report.commits)} committed, {len(report.rolled_back)} rolled back, "
            f"{len(report.failed)} failed; batch_sizes.lint_fixes={config.batch_sizes.lint_fixes}",
        )
    )
    labels = {
        "request": ("request_run (validation, RunRequested)", ""),
        "start": ("start (branch checkout)", ""),
        "check": ("first full check", tools_of(checks[0]) if checks else ""),
        "plan": (f"plan ({len(planned)} batches)", ""),
        "claim": ("fix claims (FixStarted)", ""),
        "fixer": (
            f"fixer runs ({n_fix}x ruff --fix, follow-up, format)",
            f"fixer-reported {fix_s:.2f} s",
        ),
        "verify": (
            f"verifications ({n_verify}x measure(scope=batch) + git)",
            f"{steps.get('verify', 0.0) / max(1, n_verify):.2f} s per batch",
        ),
        "close": ("closing full check", tools_of(checks[-1]) if len(checks) > 1 else ""),
        "finish": ("until run_inline returns", "status projection catch-up, release"),
        "other": ("other", ""),
    }
    for step, seconds in steps.items():
        if step == "other" and seconds <= 0:
            continue  # terminal events ride with the closing check's append
        label, note = labels.get(step, (step, ""))
        res.add(
            Metric(
                f"pipeline_airfix_step_{step}_s",
                f"  airfix: {label}",
                seconds,
                "s",
                higher_is_better=False,
                note=note or "gap between the events' recorded_at",
            )
        )
    res.add(
        Metric(
            "pipeline_verify_probe_s",
            "one batch verification's measure() (diag.)",
            probe.duration_s,
            "s",
            higher_is_better=False,
            note=", ".join(f"{k} {v:.2f}" for k, v in probe_tools.items())
            + f"; {probe.duration_s - probe_accounted:.2f} s outside the tools' own runs",
        )
    )
    res.add(
        Metric(
            "pipeline_version_probes_s",
            "tool --version probes of one measure() (diag.)",
            version_s,
            "s",
            higher_is_better=False,
            note="fresh adapters each measure(): "
            + ", ".join(f"{k} {v}" for k, v in versions.items()),
        )
    )


PIPELINE_NOTES = [
    (
        f"fix pipeline: the hand script ({HAND_SCRIPT}) verifies nothing: no type check, no "
        "tests, no rollback. airfix runs a full check (ruff || mypy, then pytest and coverage) "
        "before and after the iteration and verifies every batch (ruff || mypy, pytest; any new "
        "issue or test regression rolls it back) before committing it. The hand copy's mypy and "
        "pytest results shown were checked by the benchmark afterwards, untimed."
    ),
    (
        "airfix steps = gaps between consecutive events' recorded_at (the step itself plus the "
        "in-process consumer's pick-up, a few ms); both sides use the same ruff binary (the one "
        "next to sys.executable)."
    ),
    (
        "static tier: measure() with health_check.static_pass_threshold=1.0 so the dynamic tier "
        "is skipped; static_wall_s includes each fresh adapter's `<tool> --version` probe, "
        "static_sum_s (the tools' recorded durations) does not."
    ),
]


def bench_fix_pipeline(res: Results, quick: bool) -> None:
    from airfix.services.pipeline.measure import mypy_cache_dir

    scratch = Path(tempfile.mkdtemp(prefix="airfix-bench-pipeline-"))
    try:
        bench_pipeline_run(res, quick, scratch)
        bench_planning(res, quick)
        bench_static_tier(res, quick, scratch)
    finally:
        # measure() keeps mypy's cache outside the target, keyed by the target's path
        for name in ("airfix", "static"):
            shutil.rmtree(mypy_cache_dir(scratch / name), ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
