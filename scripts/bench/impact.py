"""Section 10: test impact in batch verification (agent fixers' mode): one project fixed twice on
identical copies, each batch verified by the tests test impact chose, and by every test.

Both runs use ``airfix run --fixer autofix`` with ``fixer.verify: batch`` (the mode an agent's
fixes get), differing only in ``fixer.test_impact``.  Reported: wall time of each and their ratio,
the share of batch-verification time spent in tests that execute none of the changed files
(from the verifier's ``batch verification`` log lines; the goal is at most 10%), and whether the
two runs kept the same batches with the same final tree (the verdicts must not change).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from scripts.bench.careful import Case, airfix_run, corpus_case
from scripts.bench.common import Metric, Results

WASTE_TARGET = 0.10  # of batch-verification time, in tests that could not have changed


def batch_run(root: Path, scratch: Path, python: str | None, impact: bool) -> dict[str, Any]:
    """One ``airfix run`` with batch verification; its wall time, summary and verifier lines."""
    config = scratch / f"batch-{'impact' if impact else 'full'}.yaml"
    config.write_text(f"fixer:\n  verify: batch\n  test_impact: {'true' if impact else 'false'}\n")
    seconds, report, stderr = airfix_run(
        root,
        scratch,
        python,
        extra=("--config", str(config), "--log-format", "json", "--log-level", "info"),
        max_iterations=1,
        journal=f"journal-{root.name}.jsonl",
    )
    lines = []
    for line in stderr.splitlines():
        if line.startswith("{") and '"batch verification"' in line:
            lines.append(json.loads(line))
    tree = subprocess.run(["git", "rev-parse", f"{report.get('branch')}^{{tree}}"], cwd=root,
                          capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return {"seconds": seconds, "report": report, "verifications": lines, "tree": tree}


def wasted(verifications: list[dict[str, Any]]) -> float | None:
    """Share of verification time in tests that execute none of the changed files (None when no
    verification knew which tests reach them: a run without a test impact map)."""
    known = [v for v in verifications if v.get("tests_reaching") is not None]
    if not known:
        return None
    total = sum(v["verify_s"] for v in verifications) or 1.0
    waste = sum(
        v["pytest_s"] * (v["tests_run"] - v["tests_reaching"]) / v["tests_run"]
        for v in known
        if v["tests_run"]
    )
    return waste / total


def compare_modes(res: Results, case: Case, scratch: Path) -> dict[str, Any]:
    full = batch_run(case.careful_root, scratch, case.airfix_python, impact=False)
    chosen = batch_run(case.airfix_root, scratch, case.airfix_python, impact=True)
    kept = [  # batch ids without the run id: "<iteration>-<n>", the same plan in both runs
        [str(c.get("batch_id")).rsplit("/", 1)[-1] for c in r["report"].get("commits", [])]
        for r in (full, chosen)
    ]
    same = kept[0] == kept[1] and full["tree"] == chosen["tree"]
    key = f"impact_{case.project.replace('-', '_')}"
    res.add(
        Metric(
            f"{key}_full_s",
            f"{case.project}: every test for every batch",
            full["seconds"],
            "s",
            higher_is_better=False,
        )
    )
    res.add(Metric(f"{key}_impact_s", "  the tests test impact chose", chosen["seconds"], "s", higher_is_better=False,
                   note=f"{chosen['seconds'] / full['seconds']:.2f}x the full-suite run"))  # fmt: skip
    share = wasted(chosen["verifications"])
    res.add(Metric(f"{key}_impact_waste", "  share of verification in tests that cannot have changed",
                   100 * (share or 0.0), "%", 100 * WASTE_TARGET, higher_is_better=False,
                   note=f"{len(chosen['verifications'])} batch verifications"
                   + ("" if share is not None else "; no test impact map was recorded")))  # fmt: skip
    res.add(Metric(f"{key}_same_verdicts", "  same batches kept, same final tree", 1.0 if same else 0.0, "bool", 1.0,
                   note=f"kept {len(kept[1])} vs {len(kept[0])} with every test"))  # fmt: skip
    return {"project": case.project, "full": full, "impact": chosen, "same": same, "kept": kept}


def bench_test_impact(res: Results, scratch: Path, corpus: list[str]) -> None:
    from airfix.services.pipeline.requests import fresh_sample_repo

    res.begin("10. test impact: batch verification by the tests that ran the changed lines")
    roots = [fresh_sample_repo(), fresh_sample_repo()]
    rows = [compare_modes(res, Case("sample", roots[0], roots[1]), scratch)]
    for name in corpus:
        rows.append(compare_modes(res, corpus_case(name, scratch), scratch))
    res.details["test_impact"] = [
        {"project": r["project"], "same": r["same"], "kept": r["kept"],
         **{m: {"seconds": r[m]["seconds"], "tree": r[m]["tree"], "verifications": r[m]["verifications"],
                "rolled_back": r[m]["report"].get("rolled_back")} for m in ("full", "impact")}}
        for r in rows
    ]  # fmt: skip
