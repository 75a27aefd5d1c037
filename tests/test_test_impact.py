"""Test impact: a batch verified by batch runs the tests that executed the lines it changed (plus
those not passing), the closing check's full suite catches what that missed, bisects it and
reverts the culprit.  Selection rules are pure and tested alone; the runs use real git, ruff,
mypy, pytest and coverage on a small project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from airfix.events.core.impact import (
    TestImpact,
    changed_lines,
    hunks,
    select_tests,
    selected,
    to_baseline,
    within,
)
from airfix.events.schema import Committed, FixRolledBack, RunCompleted
from airfix.services.pipeline.imports import importing_tests
from airfix.services.tools.pytest import is_test_path
from tests.pipeline_harness import (
    MINI_FILES,
    embedded_app,
    events_of,
    git,
    make_config,
    make_repo,
    run_to_end,
)

IMPACT = TestImpact(
    tests=["tests/test_a.py::test_one[1]", "tests/test_a.py::test_two", "tests/test_b.py::test_b"],
    files={"pkg/a.py": {5: [0, 1], 6: [1]}, "pkg/b.py": {3: [2]}},
)


def choose(changed: list[str], lines: dict[str, list[int]], baseline: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return select_tests(changed, IMPACT, baseline or {}, is_test_file=is_test_path, lines=lines)


def test_a_change_inside_tested_lines_selects_the_tests_that_ran_them() -> None:
    s = choose(["pkg/a.py"], {"pkg/a.py": [5]})
    assert s.tests == ["tests/test_a.py::test_one", "tests/test_a.py::test_two"]
    assert "2 test(s)" in s.reason


def test_tests_not_passing_at_the_start_always_run() -> None:
    s = choose(
        ["pkg/b.py"], {"pkg/b.py": [3]}, {"tests/test_c.py::test_x": "failed", "t.py::ok": "passed"}
    )
    assert s.tests == ["tests/test_b.py::test_b", "tests/test_c.py::test_x"]
    assert "not passing" in s.reason


def test_what_the_map_cannot_speak_for_runs_the_whole_suite() -> None:
    cases = {
        "line run at import": (["pkg/a.py"], {"pkg/a.py": [1]}),
        "insertion at the top": (["pkg/a.py"], {"pkg/a.py": [0]}),
        "no line information": (["pkg/a.py"], {}),
        "file no test ran": (["pkg/c.py"], {"pkg/c.py": [1]}),
        "not python": (["data.json"], {}),
        "fixtures": (["tests/conftest.py"], {}),
    }
    for what, (changed, lines) in cases.items():
        s = choose(changed, lines)
        assert s.tests is None and s.reason, what
    assert select_tests(["pkg/a.py"], None, {}, is_test_file=is_test_path).tests is None


def test_a_changed_test_file_runs_whole() -> None:
    s = choose(["tests/test_a.py", "pkg/a.py"], {"pkg/a.py": [6]})
    assert s.tests == ["tests/test_a.py"]
    assert choose(["pkg/a.py"], {"pkg/a.py": [6]}).tests == ["tests/test_a.py::test_two"]


def test_old_side_lines_of_a_unified_zero_diff() -> None:
    diff = (
        "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -3 +3 @@\n-a\n+b\n"
        "@@ -10,2 +9,0 @@\n-c\n-d\n@@ -20,0 +19 @@\n+e\n"
        "diff --git a/n.py b/n.py\nnew file mode 100644\n--- /dev/null\n+++ b/n.py\n@@ -0,0 +1 @@\n+x\n"
    )
    assert changed_lines(diff) == {"x.py": [3, 10, 11, 20]}


def test_outcomes_within_a_selection() -> None:
    outcomes = {"t.py::a[1]": "passed", "t.py::b": "passed", "u.py::c": "failed"}
    assert within(outcomes, None) == outcomes
    assert within(outcomes, ["t.py::a"]) == {"t.py::a[1]": "passed"}
    assert within(outcomes, ["u.py"]) == {"u.py::c": "failed"}
    assert selected("t.py::b", ["t.py::b"]) and not selected("t.py::b", ["t.py::a"])


# -- end to end ---------------------------------------------------------------------------------

MORE_TESTS = (
    MINI_FILES["tests/test_core.py"]
    + """

def test_first() -> None:
    from mini.core import first

    assert first([4]) == 4
"""
)


def _batch_run(tmp_path: Path, files: dict[str, str]):  # type: ignore[no-untyped-def]
    repo = make_repo(tmp_path, files)
    app = embedded_app(make_config(**{"fixer.verify": "batch"}))
    run_id, report = run_to_end(app, repo, batching="individual", max_iterations=1)
    return repo, app, run_id, report


def test_a_batch_inside_a_function_runs_only_the_tests_that_execute_it(tmp_path: Path) -> None:
    """F541 sits in greet's body, which test_greet alone executes: that test judges the batch; the
    unused imports run at import, so their batches run the test files importing the module."""
    repo, app, run_id, report = _batch_run(
        tmp_path, dict(MINI_FILES, **{"tests/test_core.py": MORE_TESTS})
    )
    commits = [e for e in events_of(app, run_id) if isinstance(e, Committed)]
    by_rule = {c.message.splitlines()[0]: c for c in commits}
    f541 = next(c for title, c in by_rule.items() if "F541" in title)
    assert "test impact chose" in f541.verified_by and "1 test(s)" in f541.verified_by, (
        f541.verified_by
    )
    assert "(1 run)" in f541.verified_by
    others = [c for c in commits if c is not f541]  # unused imports: lines run at import
    assert others and all("import mini/core.py" in c.verified_by for c in others), [
        c.verified_by for c in others
    ]
    # independently: every test passes on the run's tip
    git(repo, "checkout", "-q", report.branch)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "3 passed" in done.stdout, done.stdout


SOURCE_TEST = (
    MINI_FILES["tests/test_core.py"]
    + """

def test_source_keeps_its_fstring() -> None:
    from pathlib import Path

    import mini.core

    assert 'f"hello "' in Path(mini.core.__file__).read_text()
"""
)


def test_a_regression_test_impact_missed_is_bisected_and_reverted(tmp_path: Path) -> None:
    """A test reads core.py's text and executes none of its lines: the F541 batch's tests pass
    without it; the closing check's full suite finds it broken, bisects the iteration's commits
    to that batch, reverts it by a new commit and records the miss."""
    repo, app, run_id, report = _batch_run(
        tmp_path, dict(MINI_FILES, **{"tests/test_core.py": SOURCE_TEST})
    )
    events = events_of(app, run_id)
    commits = {e.batch_id: e for e in events if isinstance(e, Committed)}
    reverts = [e for e in events if isinstance(e, FixRolledBack) and e.reverted]
    assert len(reverts) == 1, [(type(e).__name__, getattr(e, "reason", "")) for e in events]
    undo = reverts[0]
    assert undo.reverted == commits[undo.batch_id].sha and "F541" in commits[undo.batch_id].message
    assert "test impact missed" in undo.reason
    assert undo.regressions == ["tests/test_core.py::test_source_keeps_its_fstring"]
    tip = git(repo, "rev-parse", report.branch).strip()
    assert tip == undo.reset_to
    assert f"This reverts commit {undo.reverted}" in git(repo, "log", "-1", "--format=%B", tip)
    final = next(e for e in events if isinstance(e, RunCompleted))
    on_branch = git(repo, "rev-list", "--count", f"{report.base_sha}..{report.branch}").strip()
    assert final.commits == len(report.commits) == int(on_branch) == len(commits) + 1
    # independently: on the tip every test passes and the f-string is back
    git(repo, "checkout", "-q", report.branch)
    assert 'f"hello "' in (repo / "mini/core.py").read_text()
    assert "import os" not in (repo / "mini/core.py").read_text()  # the other batches stay
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout


def test_lines_numbered_today_map_back_to_the_baseline() -> None:
    """Two imports removed above (lines 1-2) shift line 10 to 8; a line an earlier commit wrote
    maps to -1 (no map holds it)."""
    since = hunks(
        "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1,2 +0,0 @@\n-a\n-b\n@@ -20 +18 @@\n-x\n+y\n"
    )
    assert to_baseline({"m.py": [8, 18, 30]}, since) == {"m.py": [10, -1, 32]}
    assert to_baseline({"other.py": [3]}, since) == {"other.py": [3]}


def test_import_time_lines_select_the_test_files_that_import_the_module(tmp_path: Path) -> None:
    """A signature or an import runs at import: no test's coverage names it, so the test files
    importing the module, directly or through another module, run whole; a conftest.py that
    imports it reaches every test."""
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import g\n\ndef f(): return g()\n",
        "pkg/b.py": "def g(): return 1\n",
        "pkg/c.py": "X = 1\n",
        "tests/test_a.py": "from pkg import a\n",
        "tests/test_b.py": "from ..pkg.b import g\n",
        "tests/test_c.py": "import pkg.c\n",
        "tests/test_none.py": "import os\n",
    }
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    tests = [p for p in files if p.startswith("tests/")]
    assert importing_tests(tmp_path, "pkg/b.py", tests) == {"tests/test_a.py", "tests/test_b.py"}
    assert importing_tests(tmp_path, "pkg/c.py", tests) == {"tests/test_c.py"}
    s = choose(["pkg/a.py"], {"pkg/a.py": [1]})  # line 1 ran at import
    assert s.tests is None
    s = select_tests(
        ["pkg/a.py"], IMPACT, {}, is_test_file=is_test_path, lines={"pkg/a.py": [1, 5]},
        importers=lambda path: {"tests/test_x.py"},
    )  # fmt: skip
    assert s.tests == ["tests/test_a.py::test_one", "tests/test_a.py::test_two", "tests/test_x.py"]
    assert "import pkg/a.py" in s.reason
    s = select_tests(
        ["pkg/new.py"], IMPACT, {}, is_test_file=is_test_path, lines={"pkg/new.py": [1]},
        importers=lambda path: {"tests/conftest.py"},
    )  # fmt: skip
    assert s.tests is None and "conftest.py" in s.reason


def test_a_module_no_test_runs_or_imports_runs_no_test() -> None:
    """docs/conf.py or a script: nothing the tests reach; the static checks judge it and the
    closing check's full suite stands behind them."""
    s = select_tests(
        ["docs/conf.py"], IMPACT, {}, is_test_file=is_test_path, lines={"docs/conf.py": [3]},
        importers=lambda path: set(),
    )  # fmt: skip
    assert s.tests == [] and "import docs/conf.py" in s.reason


def test_an_unreadable_impact_map_means_every_test() -> None:
    """A damaged map in Redis is no reason to fail a step: no map, so the whole suite runs."""
    from types import SimpleNamespace

    from airfix.services.pipeline import impact

    app = embedded_app()
    state = SimpleNamespace(run_id="run-x", iteration=1)
    app.store.client.set(app.store.keys.test_impact("run-x", 1), b"not zlib")
    assert impact.load(SimpleNamespace(store=app.store), state) is None  # type: ignore[arg-type]
