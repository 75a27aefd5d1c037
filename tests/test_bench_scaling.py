"""Smoke test of the benchmark's scaling section (``scripts/bench/scaling.py``) with tiny numbers:
two runs on ``git daemon`` targets, hosted by one and then two pipeline workers beside a projector
process, then by two workers with every role, each with a workspace of its own.  Speed is reported by the benchmark, never asserted here: what is
checked is that every run ended with its commit and every figure is there."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_scaling_section_runs_end_to_end(tmp_path: Path) -> None:
    for tool in ("redis-server", "git"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} must be installed for the scaling section", pytrace=False)
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.bench", "--only", "scaling", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    data = json.loads(out.read_text())
    rows = data["tables"]["scaling"]
    assert [(r["layout"], r["workers"]) for r in rows] == [
        ("split", 1),
        ("split", 2),
        ("shared", 2),
    ]
    for row in rows:
        assert row["runs"] == 2 and row["runs_with_commits"] == 2, row
        assert row["statuses"] == ["succeeded"], row
        assert row["entries"] > 0 and row["timed_out"] == 0, row
    for n in (1, 2):
        for figure in ("total_s", "speedup", "vs_ideal", "cpu_s", "latency_p99_ms", "floor_p99_ms"):
            m = data["metrics"][f"scaling_w{n}_{figure}"]
            assert math.isfinite(m["value"]) and m["value"] > 0, m
    for figure in ("total_s", "latency_p99_ms"):
        m = data["metrics"][f"scaling_shared_w2_{figure}"]
        assert math.isfinite(m["value"]) and m["value"] > 0, m
    assert data["metrics"]["scaling_w1_speedup"]["value"] == 1.0
    assert "11. scaling" in proc.stdout
