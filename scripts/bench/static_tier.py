"""Section 6c: the static tier's wall time against the sum of its tools' times: how much
running ruff and mypy side by side saves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airfix.config import load_config
from scripts.bench.common import (
    Metric,
    Results,
    median,
)
from scripts.bench.sample import make_sample


def bench_static_tier(res: Results, quick: bool, scratch: Path) -> None:
    modules = 12 if quick else 24
    reps = 3
    res.begin(f"6c. static tier: wall vs sum of its tools ({modules}-module sample, {reps}x)")
    from airfix.services.pipeline.measure import measure

    root = make_sample(scratch / "static", modules)
    # threshold 1.0: the dynamic tier (tests) is skipped; it runs after the static tier anyway
    config = load_config(overrides={"health_check.static_pass_threshold": 1.0}, env={})
    rows: list[dict[str, Any]] = []
    for _ in range(reps):
        m = measure(root, config)
        tools = {r.tool: r.duration_s for r in m.results if r.tool in ("ruff", "mypy")}
        rows.append(
            {
                "wall_s": m.static_wall_s,
                "sum_s": m.static_sum_s,
                "ratio": m.static_wall_s / m.static_sum_s if m.static_sum_s else float("nan"),
                "bound": max(tools.values()) / m.static_sum_s if m.static_sum_s else float("nan"),
                "tools_s": tools,
            }
        )
    res.details["static_tier"] = rows
    per = "; ".join(
        f"{r['wall_s']:.2f}/{r['sum_s']:.2f} ("
        + ", ".join(f"{k} {v:.2f}" for k, v in r["tools_s"].items())
        + ")"
        for r in rows
    )
    res.add(
        Metric(
            "static_wall_s",
            "static tier wall (ruff || mypy)",
            median([r["wall_s"] for r in rows]),
            "s",
            higher_is_better=False,
            note=f"median of {reps} measure(); run 1 has a cold mypy cache",
        )
    )
    res.add(
        Metric(
            "static_sum_s",
            "static tier, sum of the tools' times",
            median([r["sum_s"] for r in rows]),
            "s",
            higher_is_better=False,
            note=f"wall/sum per run: {per}",
        )
    )
    res.add(
        Metric(
            "static_wall_over_sum",
            "static tier wall / sum of tools",
            median([r["ratio"] for r in rows]),
            "x",
            0.7,
            higher_is_better=False,
            note=f"median of {reps} ratios; {os.cpu_count()} CPUs",
        )
    )
    res.add(
        Metric(
            "static_best_possible",
            "  best possible: slowest tool / sum",
            median([r["bound"] for r in rows]),
            "x",
            higher_is_better=False,
            note="perfect parallelism still waits for the slowest tool",
        )
    )
