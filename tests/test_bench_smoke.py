"""Smoke test of the benchmark package ``scripts/bench``: it runs end to end and reports every
figure, each with its section, in the ``--json`` file.

Speed is reported by the benchmark, never asserted here: no timing thresholds, no PASS/MISS checks.
The script starts its own private redis-server (its default), so the shared server is untouched.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "scripts.bench"]  # from the repository root, as the README says

#: The figures every run must report (each section of the benchmark contributes some).
EXPECTED = [
    "xadd_ceiling_p1",
    "xadd_ceiling_p16",
    "append_single_events_per_s",
    "append_batch100_events_per_s",
    "append_batch100_entries_per_s",
    "append_batch100_concurrent_events_per_s",
    "replay_events_per_s",
    "replay_read_decode_events_per_s",
    "replay_fold_events_per_s",
    "projector_all_events_per_s",
    "projector_drain_all_events_per_s",
    "latency_all_p50_ms",
    "latency_all_p99_ms",
    "latency_one_projection_p99_ms",
    # section 6, the fix pipeline
    "pipeline_hand_s",
    "pipeline_airfix_s",
    "pipeline_airfix_vs_hand",
    "pipeline_issues_before",
    "pipeline_hand_fixed",
    "pipeline_airfix_fixed",
    "pipeline_airfix_step_check_s",
    "pipeline_airfix_step_verify_s",
    "pipeline_airfix_step_close_s",
    "plan_smart_100k_s",
    "plan_mega_100k_s",
    "plan_individual_100k_s",
    "static_wall_s",
    "static_sum_s",
    "static_wall_over_sum",
    # section 8, the careful person against airfix on the bundled sample
    "careful_sample_careful_s",
    "careful_sample_airfix_s",
    "careful_sample_ratio",
    "careful_sample_airfix_commits",
    "careful_sample_careful_removed",
    "careful_sample_airfix_removed",
    "careful_sample_careful_safe_removed",
    "careful_sample_airfix_safe_removed",
    "careful_sample_careful_tests_broken",
    "careful_sample_airfix_tests_broken",
    # section 9, parallel fixing with a slow fake fixer
    "parallel_p1_s",
    "parallel_p4_s",
    "parallel_p4_vs_p1",
    "parallel_p1_fixing_s",
    "parallel_p1_verify_s",
    "parallel_p4_fixing_s",
    "parallel_p4_verify_s",
    "parallel_fixing_p4_vs_p1",
    "parallel_commits",
    "parallel_commits_identical",
    # section 10, test impact against every test for every batch, on the bundled sample
    "impact_sample_full_s",
    "impact_sample_impact_s",
    "impact_sample_impact_waste",
    "impact_sample_same_verdicts",
    # section 11, scaling out over worker processes
    "scaling_w1_total_s",
    "scaling_w2_speedup",
    "scaling_w2_latency_p99_ms",
]


#: Counts (and step times that may round to nothing) may be 0; every other figure must be > 0.
def _may_be_zero(name: str, unit: str) -> bool:
    return unit in ("issues", "tests", "%") or name.startswith("pipeline_airfix_step_")


@pytest.mark.slow
def test_bench_quick_reports_every_metric(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None:
        pytest.fail(
            "redis-server and redis-benchmark must be installed for the benchmark", pytrace=False
        )
    bindir = Path(sys.executable).parent
    missing_tools = [
        t
        for t in ("ruff", "mypy", "pytest", "coverage", "git")
        if not (bindir / t).exists() and shutil.which(t) is None
    ]
    if missing_tools:
        pytest.fail(f"the fix-pipeline section needs {missing_tools}", pytrace=False)
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [*COMMAND, "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert proc.returncode == 0, (
        f"the benchmark exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    data = json.loads(out.read_text())
    metrics = data["metrics"]
    missing = [name for name in EXPECTED if name not in metrics]
    assert not missing, f"metrics missing from the JSON: {missing}"
    # every projection of the app has its own apply rate and latency row
    assert any(
        k.startswith("projector_") and k.endswith("_events_per_s") and k not in EXPECTED
        for k in metrics
    )
    assert any(k.startswith("fold_long_run_") for k in metrics)
    # the generated sample of the fix-pipeline section is big enough (a count, not a timing)
    assert metrics["pipeline_issues_before"]["value"] >= 300
    for name, m in metrics.items():
        value = m["value"]
        assert isinstance(value, (int, float)) and math.isfinite(value), (name, m)
        assert value > 0 or (value == 0 and _may_be_zero(name, m["unit"])), (name, m)
        assert m["unit"], name
        assert m["status"] in ("PASS", "MISS", "INFO"), (name, m)
        assert m["name"] == name and m["section"], (name, m)
    sections = {m["section"] for m in metrics.values()}
    assert len(sections) == 13, sorted(sections)  # 1-5, 6a-6c, 7, 8, 9, 10, 11
    assert metrics["impact_sample_same_verdicts"]["value"] == 1  # test impact changed no verdict
    # the careful-person table: one row for the sample, the same figures as its metrics
    (row,) = data["tables"]["careful_person"]
    assert row["project"] == "sample"
    assert row["ratio"] == pytest.approx(row["airfix_s"] / row["careful_s"])
    assert row["ratio"] == metrics["careful_sample_ratio"]["value"]
    assert row["careful_committed"] is True  # the sample has safely fixable issues
    assert row["airfix_commits"] >= 1 and row["careful_issues_removed"] > 0
    assert row["airfix_tests_broken"] == []  # airfix verifies: no test that passed fails
    assert 0 < row["airfix_safe_removed_pct"] <= 100 and row["safe_fixable"] > 0
    assert "careful person vs airfix" in proc.stdout
    assert "airfix benchmark" in proc.stdout  # the table was printed


def test_careful_person_checks_fixes_checks_again_and_commits(tmp_path: Path) -> None:
    """The yardstick of section 8 does exactly its four steps on a generated sample whose ruff
    issues all have safe fixes (mypy clean, its test passing)."""
    from scripts.bench.careful import careful_person
    from scripts.bench.sample import make_sample

    root = make_sample(tmp_path / "sample", modules=1)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    base = git("rev-parse", "HEAD")
    run = careful_person(root)
    assert run.before == {"ruff": 26, "mypy": 0, "pytest": 0}
    assert run.after == {"ruff": 0, "mypy": 0, "pytest": 0}
    assert run.removed == 26 and run.committed
    assert git("rev-list", "--count", f"{base}..HEAD") == "1"
    assert git("status", "--porcelain", "--untracked-files=no") == ""
    assert list(run.steps_s) == ["checks_before", "ruff_fix", "checks_after", "commit"]
    assert sum(run.steps_s.values()) <= run.seconds


def test_the_careful_person_finishes_when_the_fix_stops_the_suite_collecting(
    tmp_path: Path,
) -> None:
    """``ruff check --fix`` removes an unused import that a test imports from the module (a
    re-export): the suite no longer collects (pytest exit 2).  The careful person still commits,
    and the checks after count the error instead of stopping the benchmark."""
    from scripts.bench.careful import careful_person
    from tests.corpus.repo import make_repo

    src, root = tmp_path / "src", tmp_path / "reexport"
    src.mkdir()
    (src / "core.py").write_text("from os.path import join\n")
    (src / "test_core.py").write_text(
        "from core import join\n\n\ndef test_join() -> None:\n    assert join('a', 'b')\n"
    )
    make_repo(src, root)

    run = careful_person(root)

    assert run.before == {"ruff": 1, "mypy": 0, "pytest": 0}
    # test_core.py imports what is gone: a collection error, and mypy says so too
    assert run.after == {"ruff": 0, "mypy": 1, "pytest": 1}
    assert run.committed
    assert (root / "core.py").read_text() == ""


def test_a_run_without_commits_is_checked_on_the_tree_it_left(tmp_path: Path) -> None:
    """airfix names its run branch even when it committed nothing (and made no branch): the
    section then checks the tree as it is instead of stopping on a failed checkout."""
    from scripts.bench.careful import Case, checks_on_branch
    from tests.corpus.repo import make_repo

    src, root = tmp_path / "src", tmp_path / "repo"
    src.mkdir()
    (src / "core.py").write_text("import os\n")
    (src / "test_core.py").write_text("def test_nothing() -> None:\n    pass\n")
    make_repo(src, root)
    case = Case("tiny", root, root)

    found = checks_on_branch(case, {"branch": "airfix/run-never-made", "commits": []})

    assert found == {"ruff": 1, "mypy": 0, "pytest": 0}


@pytest.mark.slow
def test_bench_parallel_section_reports_its_figures(tmp_path: Path) -> None:
    """Section 9 alone (``--only parallel --quick``: the fake fixer sleeps half a second): both
    runs committed every batch, with identical contents, and the figures are in the JSON."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [*COMMAND, "--only", "parallel", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    data = json.loads(out.read_text())
    metrics = data["metrics"]
    assert [n for n in EXPECTED if n.startswith("parallel_")] == [
        n for n in metrics if n.startswith("parallel_")
    ]
    assert metrics["parallel_commits"]["value"] == 8
    assert metrics["parallel_commits_identical"]["value"] == 1
    (row,) = data["tables"]["parallel"]
    assert row["ratio"] == pytest.approx(row["parallel_4_s"] / row["parallel_1_s"])
    assert row["identical"] is True and row["fixer_sleep_s"] == 0.5
    assert data["details"]["parallel"]["status"] == {"1": "succeeded", "4": "succeeded"}
    assert data["details"]["parallel"]["fixer_runs"] == {"1": 8, "4": 8}  # none ran twice
    assert "9. parallel fixing" in proc.stdout + proc.stderr
