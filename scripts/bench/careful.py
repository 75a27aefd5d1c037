"""Section 8: airfix against a careful person, on the bundled sample (and corpus projects).

Besides time, the quality each leaves: the share of the safely fixable ruff issues removed and the
tests that passed before and do not after (the careful person trusts ``ruff check --fix``; airfix
verifies), both measured by the corpus judge, independently of airfix.

The yardstick is a careful person: runs the checks once (ruff, mypy, pytest under coverage),
applies ``ruff check --fix``, runs the checks once more, then commits.  airfix is worth running
instead when its ``airfix run --fixer autofix`` (embedded store, hosted in-process as the quick
start does) takes at most 1.5x that person's time.  Both are timed end to end as subprocesses on
identical fresh copies; the issues each removed are counted afterwards, the same way for both.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from airfix.services.process import find_executable
from scripts.bench.common import Metric, Results, console
from scripts.bench.sample import tool_env

#: The target the product sets itself: airfix's wall time over the careful person's.
RATIO_TARGET = 1.5
QUICK_START_ITERATIONS = 3  # `airfix run --sample --max-iterations 3` in the README's quick start
TEST_TIMEOUT_S = 3600  # health_check.test_timeout_s for airfix's runs (the default is 600)
_PYTEST_BAD = re.compile(r"(\d+) (failed|errors?)\b")


def tool(name: str) -> str:
    path = find_executable(name)
    if path is None:
        raise SystemExit(f"{name} is not installed; the careful-person section needs it")
    return path


def _run(argv: list[str], root: Path, env: dict[str, str], ok: tuple[int, ...]) -> str:
    """Run one command in ``root``; its stdout, or SystemExit when it exits outside ``ok``."""
    proc = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, check=False)
    if proc.returncode not in ok:
        raise SystemExit(
            f"{' '.join(argv)} in {root}: exit {proc.returncode}\n{proc.stdout[-1500:]}"
            f"\n{proc.stderr[-1500:]}"
        )
    return proc.stdout


def mypy_argv(root: Path) -> list[str]:
    """``mypy`` as the project configures it (its own ``files``), else over the whole tree."""
    pyproject = root / "pyproject.toml"
    configured = pyproject.is_file() and "[tool.mypy]" in pyproject.read_text()
    return [tool("mypy")] if configured else [tool("mypy"), "."]


def run_checks(
    root: Path, env: dict[str, str], python: str, test_paths: tuple[str, ...] = ()
) -> dict[str, int]:
    """The checks a careful person runs, with what each found: ruff issues, mypy errors, failing
    or erroring tests (pytest under coverage in the project's environment ``python``, then the
    coverage report)."""
    ruff = _run([tool("ruff"), "check", "--output-format", "json", "."], root, env, (0, 1))
    mypy = _run(mypy_argv(root), root, env, (0, 1, 2))  # 2: mypy stopped early, errors say why
    coverage = [python, "-m", "coverage"]
    # 2: the suite no longer collects (a fix removed what a test imports); its errors are counted
    tests = _run([*coverage, "run", "-m", "pytest", "-q", *test_paths], root, env, (0, 1, 2, 5))
    _run([*coverage, "report"], root, env, (0, 2))
    summary = tests.strip().splitlines()[-1] if tests.strip() else ""
    return {
        "ruff": len(json.loads(ruff or "[]")),
        "mypy": sum(1 for line in mypy.splitlines() if ": error:" in line),
        "pytest": sum(int(n) for n, _ in _PYTEST_BAD.findall(summary)),
    }


@dataclass
class CarefulRun:
    seconds: float
    before: dict[str, int]
    after: dict[str, int]
    committed: bool
    steps_s: dict[str, float] = field(default_factory=dict)

    @property
    def removed(self) -> int:
        return sum(self.before.values()) - sum(self.after.values())


def careful_person(
    root: Path, python: str = sys.executable, test_paths: tuple[str, ...] = ()
) -> CarefulRun:
    """Exactly what the careful person does, timed: checks, ``ruff check --fix``, checks again,
    and a commit of the tracked files when the fix changed any."""
    env = tool_env()
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    before = run_checks(root, env, python, test_paths)
    steps["checks_before"] = time.perf_counter() - t0
    t = time.perf_counter()
    _run([tool("ruff"), "check", "--fix", "."], root, env, (0, 1))
    steps["ruff_fix"] = time.perf_counter() - t
    t = time.perf_counter()
    after = run_checks(root, env, python, test_paths)
    steps["checks_after"] = time.perf_counter() - t
    t = time.perf_counter()
    changed = bool(_run(["git", "status", "--porcelain", "--untracked-files=no"], root, env, (0,)))
    if changed:
        _run(["git", "commit", "-qam", "Apply ruff's safe fixes"], root, env, (0,))
    steps["commit"] = time.perf_counter() - t
    return CarefulRun(time.perf_counter() - t0, before, after, changed, steps)


def airfix_run(
    root: Path,
    scratch: Path,
    python: str | None,
    extra: tuple[str, ...] = (),
    journal: str = "journal.jsonl",
    max_iterations: int = QUICK_START_ITERATIONS,
) -> tuple[float, dict[str, Any], str]:
    """``airfix run --fixer autofix`` on ``root`` as a fresh process on the embedded store (no
    Redis; its journal in ``scratch``; ``python``: the project's environment when airfix cannot
    find it in the repository; ``extra``: more options): wall seconds, the JSON summary it
    prints and its stderr."""
    env = {k: v for k, v in tool_env().items() if not k.startswith("AIRFIX")}
    env["AIRFIX__STORE__JOURNAL"] = str(scratch / journal)
    # the careful person's suite has no time limit; a suite of minutes under coverage (mpmath:
    # 12-15 min here) would hit the default 600 s and leave nothing judged, so nothing committed
    env["AIRFIX__HEALTH_CHECK__TEST_TIMEOUT_S"] = str(TEST_TIMEOUT_S)
    argv = [sys.executable, "-m", "airfix.services.commands.cli", "run", "--target", str(root),
            "--fixer", "autofix", "--max-iterations", str(max_iterations), "--json",
            *extra]  # fmt: skip
    if python is not None:
        argv += ["--python", python]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise SystemExit(
            f"airfix run exited {proc.returncode} without a JSON summary:\n{proc.stderr[-3000:]}"
        ) from exc
    report["exit_code"] = proc.returncode
    return seconds, report, proc.stderr


def checks_on_branch(case: Case, report: dict[str, Any]) -> dict[str, int]:
    """The careful person's checks on airfix's result (untimed): its run branch checked out.  A
    run without commits names a branch it never made: its result is the tree as it was."""
    env = tool_env()
    branch = report.get("branch", "") if report.get("commits") else ""
    if branch:
        _run(["git", "checkout", "-q", branch], case.airfix_root, env, (0,))
    return run_checks(case.airfix_root, env, case.python, case.test_paths)


@dataclass
class Case:
    """One project, as two identical fresh repositories: one for each contender."""

    project: str
    careful_root: Path
    airfix_root: Path
    python: str = sys.executable  # the project's environment (pytest runs there)
    test_paths: tuple[str, ...] = ()
    airfix_python: str | None = None  # passed as --python when airfix cannot find it itself
    import_paths: tuple[str, ...] = ()


def judged(case: Case, root: Path) -> Any:
    """The corpus judge's measure of ``root`` as it is (ruff with fix safety, pytest by test id):
    independent of airfix, the same for both contenders (untimed)."""
    from tests.corpus.measure import measure_tree

    return measure_tree(
        root,
        python=Path(case.python),
        test_paths=case.test_paths,
        import_paths=case.import_paths,
        tools=("ruff", "pytest"),
    )


def quality(before: Any, after: Any) -> dict[str, Any]:
    """Of the safely fixable ruff issues at the start, the share gone (per file and rule, so new
    issues elsewhere cannot make up for ones left); and the tests that passed and no longer do."""
    from tests.corpus.hand import removed

    total = before.safe_total
    broken = sorted(t for t in before.passed() if (after.tests or {}).get(t) != "passed")
    return {
        "safe_fixable": total,
        "safe_removed": removed(before, after),
        "safe_removed_pct": 100.0 * removed(before, after) / total if total else 100.0,
        "tests_broken": broken,
    }


def compare(res: Results, case: Case, scratch: Path) -> dict[str, Any]:
    """One row of the table: the careful person and airfix on the two copies of the project."""
    from airfix.services.pipeline.measure import mypy_cache_dir

    baseline = judged(case, case.careful_root)
    careful = careful_person(case.careful_root, case.python, case.test_paths)
    air_s, report, _ = airfix_run(case.airfix_root, scratch, case.airfix_python)
    # airfix keeps mypy's cache for the next run on this target (keyed by its path and python)
    python = report.get("environment", {}).get("python", "")
    shutil.rmtree(mypy_cache_dir(case.airfix_root, python), ignore_errors=True)
    air_after = checks_on_branch(case, report)
    careful_q = quality(baseline, judged(case, case.careful_root))
    airfix_q = quality(baseline, judged(case, case.airfix_root))
    row = {
        "project": case.project,
        "careful_s": careful.seconds,
        "airfix_s": air_s,
        "ratio": air_s / careful.seconds,
        "target_ratio": RATIO_TARGET,
        "airfix_commits": len(report.get("commits", [])),
        "careful_issues_removed": careful.removed,
        "airfix_issues_removed": sum(careful.before.values()) - sum(air_after.values()),
        "issues_before": careful.before,
        "careful_issues_after": careful.after,
        "airfix_issues_after": air_after,
        "careful_committed": careful.committed,
        "careful_steps_s": careful.steps_s,
        "airfix_status": report.get("status"),
        "airfix_exit_code": report.get("exit_code"),
        "airfix_reported_issues": [report.get("issues_before"), report.get("issues_after")],
        "safe_fixable": careful_q["safe_fixable"],
        "careful_safe_removed_pct": careful_q["safe_removed_pct"],
        "airfix_safe_removed_pct": airfix_q["safe_removed_pct"],
        "careful_tests_broken": careful_q["tests_broken"],
        "airfix_tests_broken": airfix_q["tests_broken"],
    }
    res.tables.setdefault("careful_person", []).append(row)
    add_row_metrics(res, row)
    return row


def add_row_metrics(res: Results, row: dict[str, Any]) -> None:
    """The row's figures in the main table too (and so in ``--json``'s metrics)."""
    key = f"careful_{row['project'].replace('-', '_')}"
    steps = ", ".join(f"{k} {v:.2f}" for k, v in row["careful_steps_s"].items())
    before = sum(row["issues_before"].values())
    counted = f"{before} before (ruff issues + mypy errors + failing tests, the same checks)"
    reported = row["airfix_reported_issues"]
    res.add(
        Metric(
            f"{key}_careful_s",
            f"careful person on {row['project']}: check, ruff --fix, check, commit",
            row["careful_s"],
            "s",
            higher_is_better=False,
            note=steps,
        )
    )
    res.add(
        Metric(
            f"{key}_airfix_s",
            "  airfix run --fixer autofix (embedded store)",
            row["airfix_s"],
            "s",
            higher_is_better=False,
            note=f"fresh process, --max-iterations {QUICK_START_ITERATIONS}; "
            f"status {row['airfix_status']}",
        )
    )
    res.add(
        Metric(
            f"{key}_ratio",
            "  airfix / careful person wall time",
            row["ratio"],
            "x",
            RATIO_TARGET,
            higher_is_better=False,
            note="the product's goal: within 1.5x of a careful person",
        )
    )
    res.add(Metric(f"{key}_airfix_commits", "  airfix commits", row["airfix_commits"], "commits"))
    safe = f"of {row['safe_fixable']} safely fixable ruff issues at the start"
    for who in ("careful", "airfix"):
        res.add(
            Metric(
                f"{key}_{who}_safe_removed",
                f"  safely fixable removed by {'the careful person' if who == 'careful' else who}",
                row[f"{who}_safe_removed_pct"],
                "%",
                note=safe,
            )
        )
        broken = row[f"{who}_tests_broken"]
        res.add(
            Metric(
                f"{key}_{who}_tests_broken",
                f"  tests broken by {'the careful person' if who == 'careful' else who}",
                len(broken),
                "tests",
                higher_is_better=False,
                note=", ".join(broken[:3]) or "none: every test that passed still passes",
            )
        )
    res.add(
        Metric(
            f"{key}_careful_removed",
            "  issues removed by the careful person",
            row["careful_issues_removed"],
            "issues",
            note=counted,
        )
    )
    res.add(
        Metric(
            f"{key}_airfix_removed",
            "  issues removed by airfix",
            row["airfix_issues_removed"],
            "issues",
            note=f"airfix's own report: {reported[0]} -> {reported[1]}",
        )
    )


def bench_careful_person(res: Results, scratch: Path, corpus: list[str]) -> None:
    """Section 8 on the bundled sample (the same copy ``airfix run --sample`` makes), then on
    the named projects of the Python corpus."""
    from airfix.services.pipeline.requests import fresh_sample_repo

    res.begin("8. careful person (check, ruff --fix, check, commit) vs airfix autofix")
    roots = [fresh_sample_repo(), fresh_sample_repo()]
    try:
        compare(res, Case("sample", roots[0], roots[1]), scratch)
    finally:
        for root in roots:
            shutil.rmtree(root.parent, ignore_errors=True)
    for name in corpus:
        compare(res, corpus_case(name, scratch), scratch)


def corpus_case(name: str, scratch: Path) -> Case:
    """A released project of the Python corpus (``tests/corpus``), made into two repositories
    the way the corpus test makes one, each with the project's own pinned environment (built
    once, untimed)."""
    from tests.corpus import pypi
    from tests.corpus.manifest import by_name
    from tests.corpus.repo import make_repo

    project = by_name(name)
    src = pypi.fetch_sdist(project)
    roots = [scratch / f"{project.key}-careful", scratch / f"{project.key}-airfix"]
    for root in roots:
        make_repo(src, root, f"{project.name} {project.version} (sdist)")
    pythons = [str(pypi.project_python(project, root)) for root in roots]
    return Case(
        project.key,
        roots[0],
        roots[1],
        python=pythons[0],
        test_paths=project.test_paths,
        airfix_python=pythons[1] if project.venv == "outside" else None,
        import_paths=project.import_paths,
    )


def careful_table(res: Results) -> Table | None:
    rows = res.tables.get("careful_person", [])
    if not rows:
        return None
    table = Table(title="careful person vs airfix run --fixer autofix")
    cols = ("project", "careful s", "airfix s", "ratio", "airfix commits", "issues removed",
            "safe fixes removed", "tests broken")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col == "project" else "right")
    for r in rows:
        mark = "[green]" if r["ratio"] <= r["target_ratio"] else "[red]"
        table.add_row(
            r["project"],
            f"{r['careful_s']:.2f}",
            f"{r['airfix_s']:.2f}",
            f"{mark}{r['ratio']:.2f}x[/] (≤ {r['target_ratio']}x)",
            str(r["airfix_commits"]),
            f"careful {r['careful_issues_removed']} / airfix {r['airfix_issues_removed']}",
            f"careful {r['careful_safe_removed_pct']:.0f}% / airfix {r['airfix_safe_removed_pct']:.0f}%",
            f"careful {len(r['careful_tests_broken'])} / airfix {len(r['airfix_tests_broken'])}",
        )
    console.log(f"careful person vs airfix: {len(rows)} project(s)")
    return table
