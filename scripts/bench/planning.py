"""Section 6b: ``plan_batches`` over 100,000 synthetic issues shaped like a big project's."""

from __future__ import annotations

import gc
import random
import time
from typing import Any

from airfix.config import load_config
from airfix.events.schema import (
    IssueRecord,
)
from scripts.bench.common import (
    Metric,
    Results,
    median,
)
from scripts.bench.sample import SAMPLE_RULES


def synthetic_issues(n: int, seed: int) -> list[IssueRecord]:
    """``n`` issues shaped like a big project's: 75% ruff (lint, cleanup and location rules),
    20% mypy (build), 5% pytest (test); 4,800 files in 240 directories."""
    rng = random.Random(seed)
    ruff_rules = [*SAMPLE_RULES, "E501", "F841", "B006", "E741", "F821", "C901", "B008", "UP007"]
    mypy_rules = ["arg-type", "return-value", "attr-defined", "unused-ignore", "union-attr"]
    out: list[IssueRecord] = []
    for k in range(n):
        r = rng.random()
        directory = f"src/pkg{rng.randrange(60)}/sub{rng.randrange(4)}"
        file = f"{directory}/mod{rng.randrange(20)}.py"
        if r < 0.75:
            tool, phase, rule = "ruff", "lint", rng.choice(ruff_rules)
        elif r < 0.95:
            tool, phase, rule = "mypy", "build", rng.choice(mypy_rules)
        else:
            tool, phase, rule = "pytest", "test", "test-failure"
        fp = f"{k:08x}{rng.getrandbits(32):08x}"
        out.append(
            IssueRecord(
                issue_id=f"{fp}:0",
                fingerprint=fp,
                tool=tool,
                phase=phase,  # type: ignore[arg-type]
                file=file,
                line=1 + rng.randrange(800),
                column=1 + rng.randrange(80),
                rule=rule,
                message=f"{rule}: synthetic finding {k % 97}",
                fix="safe" if tool == "ruff" else "",
            )
        )
    return out


def bench_planning(res: Results, quick: bool) -> None:
    from airfix.events.core.planning import phase_caps, plan_batches

    n = 100_000
    reps = 3
    res.begin(f"6b. planning {n:,} synthetic issues (plan_batches, default caps)")
    issues = synthetic_issues(n, seed=11)
    cfg = load_config(env={})
    caps = phase_caps(cfg.batch_sizes)
    kwargs: dict[str, Any] = {
        "iteration": 1,
        "run_id": "bench-plan",
        "max_cleanup_batch_size": cfg.issue_grouping.max_cleanup_batch_size,
        "max_location_batch_size": cfg.issue_grouping.max_location_batch_size,
        "batches_per_phase": caps,
    }
    plan_batches(issues[:2000], mode="smart", **kwargs)  # warm-up
    detail: dict[str, Any] = {}
    for mode in ("smart", "mega", "individual"):
        times: list[float] = []
        for _ in range(reps):
            gc.collect()
            t0 = time.perf_counter()
            plan = plan_batches(issues, mode=mode, **kwargs)  # type: ignore[arg-type]
            times.append(time.perf_counter() - t0)
        covered = len(plan.issue_ids) + len(plan.deferred_issue_ids)
        if covered != n:
            raise SystemExit(f"plan_batches({mode}) covered {covered} of {n} issues")
        detail[mode] = {
            "s": times,
            "batches": len(plan.batches),
            "deferred_batches": plan.deferred_batches,
            "deferred_issues": len(plan.deferred_issue_ids),
        }
        res.add(
            Metric(
                f"plan_{mode}_100k_s",
                f"plan_batches({mode}), {n // 1000}k issues",
                median(times),
                "s",
                1.0 if mode == "smart" else None,
                higher_is_better=False,
                note=f"median of {reps}; {len(plan.batches)} batches kept, "
                f"{plan.deferred_batches:,} deferred by the per-phase caps {dict(caps)}",
            )
        )
    res.details["planning"] = detail
