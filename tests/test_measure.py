"""A full check runs the project's test suite once: coverage around pytest gives both results.

The project below logs every pytest session it starts (to a file outside the target, so the tree
stays clean), which is the independent count of how often the suite ran.
"""

from __future__ import annotations

import subprocess
import textwrap
import time
from pathlib import Path

import msgspec

from airfix.config import load_config
from airfix.services.pipeline.measure import (
    environment_facts,
    measure,
    rerun_tests,
    tool_cache_dir,
)
from airfix.services.tools.environment import find_python


def make_project(root: Path, sessions: Path) -> Path:
    target = root / "proj"
    (target / "calc").mkdir(parents=True)
    (target / "tests").mkdir()
    (target / "pyproject.toml").write_text('[project]\nname = "calc"\nversion = "0"\n')
    (target / "calc" / "__init__.py").write_text(
        "def add(a: int, b: int) -> int:\n    return a + b\n\n\n"
        "def sub(a: int, b: int) -> int:\n    return a + b\n"
    )
    (target / "tests" / "test_calc.py").write_text(
        "from calc import add, sub\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\n"
        "def test_sub():\n    assert sub(3, 1) == 2\n"
    )
    (target / "conftest.py").write_text(
        textwrap.dedent(f"""\
            def pytest_collection_finish(session):
                with open({str(sessions)!r}, "a") as f:
                    f.write(str(len(session.items)) + "\\n")
        """)
    )
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *cmd], cwd=target, check=True
        )
    return target


def test_a_full_check_runs_the_suite_once_for_tests_and_coverage(tmp_path: Path) -> None:
    sessions = tmp_path / "sessions.log"
    target = make_project(tmp_path, sessions)

    m = measure(target, load_config(), scope="full")

    # one session for the whole suite (2 tests), then the failing test re-run alone (1 test)
    assert sessions.read_text().split() == ["2", "1"]
    by_tool = {r.tool: r for r in m.results}
    assert by_tool["pytest"].status == "failed"
    assert by_tool["pytest"].counts["passed"] == 1
    assert by_tool["pytest"].counts["failed"] == 1
    assert by_tool["coverage"].status == "passed"
    assert by_tool["pytest"].command == by_tool["coverage"].command  # the same process
    assert m.outcomes == {
        "tests/test_calc.py::test_add": "passed",
        "tests/test_calc.py::test_sub": "failed",
    }
    assert m.coverage is not None and 0 < m.coverage <= 1
    failing = [i for i in m.issues if i.tool == "pytest"]
    assert [i.file for i in failing] == ["tests/test_calc.py"]
    assert not [i for i in m.issues if i.tool == "coverage"]  # a metric, never issues


def test_a_batch_check_runs_pytest_alone_without_coverage(tmp_path: Path) -> None:
    sessions = tmp_path / "sessions.log"
    target = make_project(tmp_path, sessions)

    m = measure(target, load_config(), scope="batch")

    assert sessions.read_text().split() == ["2"]
    tools = {r.tool for r in m.results}
    assert "pytest" in tools and "coverage" not in tools


def test_incremental_caches_are_kept_outside_the_target(tmp_path: Path) -> None:
    target = make_project(tmp_path, tmp_path / "sessions.log")
    config = load_config()

    measure(target, config, scope="static")
    first = measure(target, config, scope="static")

    for tool in ("ruff", "mypy"):
        assert any(tool_cache_dir(tool, target).iterdir()), f"{tool} wrote no cache"
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=target, capture_output=True, text=True
    ).stdout
    assert status == "", status  # no .ruff_cache or .mypy_cache in the target
    assert {r.tool: r.status for r in first.results}["ruff"] in ("passed", "failed")


def test_checkouts_of_one_project_share_its_caches(tmp_path: Path, monkeypatch) -> None:
    """A run's worktrees have paths of their own (per run and step); named by the project's
    identity, they all use one cache, so the next run's checks start warm."""
    target = make_project(tmp_path, tmp_path / "sessions.log")
    other = tmp_path / "worktree-of-another-run"
    subprocess.run(["git", "clone", "-q", str(target), str(other)], check=True)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    config = load_config()

    for checkout in (target, other):
        m = measure(checkout, config, scope="static", caches="file:///projects/calc")
        assert {r.tool: r.status for r in m.results}["mypy"] == "passed"

    for tool in ("ruff", "mypy"):
        dirs = list((tmp_path / "tmp" / f"airfix-{tool}-cache").iterdir())
        assert dirs == [tool_cache_dir(tool, "file:///projects/calc")], dirs
        assert any(dirs[0].iterdir()), f"{tool} wrote no cache"


def test_re_running_tests_or_reading_versions_leaves_no_cache_behind(
    tmp_path: Path, monkeypatch
) -> None:
    """Adapters made only to re-run tests by id or to read tool versions (a run's start) never
    create a static tool's cache directory: each tool makes its own when it first runs."""
    target = make_project(tmp_path, tmp_path / "sessions.log")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    facts = environment_facts(target, find_python(target, None))
    assert facts["tool.ruff"] and facts["tool.mypy"] and facts["tool.pytest"]
    again = rerun_tests(target, load_config(), ["tests/test_calc.py::test_sub"])
    assert again == {"tests/test_calc.py::test_sub": "failed"}
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir() if "cache" in p.name) == []


def test_a_check_halted_on_a_regression_stops_at_it(tmp_path: Path) -> None:
    """``halt_on`` (tests that passed before) stops the suite at the first of them that fails, as
    ``-x`` would, in the one coverage run: the outcomes so far, no coverage, and the reason.  A
    failing test not in the list does not stop it.  The conftest logs each test that starts."""
    started = tmp_path / "started.log"
    target = make_project(tmp_path, tmp_path / "sessions.log")
    (target / "tests" / "test_more.py").write_text(
        "def test_z():\n    assert True\n"
    )  # after test_calc.py: never reached once test_sub stops the suite
    (target / "conftest.py").write_text(
        "def pytest_runtest_setup(item):\n"
        f"    with open({str(started)!r}, 'a') as f:\n"
        "        f.write(item.nodeid + '\\n')\n"
    )
    config = load_config()

    whole = measure(target, config, scope="full", halt_on=["tests/test_calc.py::test_add"])
    assert not whole.halted and whole.coverage is not None and len(whole.outcomes) == 3
    started.unlink()

    sub = "tests/test_calc.py::test_sub"
    m = measure(target, config, scope="full", halt_on=[sub, "tests/test_more.py::test_z"])

    assert m.halted == f"{sub} failed: it passed before", m.halted
    assert m.outcomes == {"tests/test_calc.py::test_add": "passed", sub: "failed"}
    # the whole suite stopped at test_sub, then test_sub ran alone to tell flaky from failing
    assert started.read_text().split() == ["tests/test_calc.py::test_add", sub, sub]
    assert m.coverage is None
    by_tool = {r.tool: r for r in m.results}
    assert by_tool["pytest"].status == "failed" and by_tool["coverage"].status == "failed"


def test_a_check_stops_its_suite_when_a_static_tool_condemns_the_tree(tmp_path: Path) -> None:
    """``halt_when`` judges each static tool's run as it ends; a reason stops the test suite that
    runs meanwhile (its process group is killed) and the measurement says why.  The project's only
    test would sleep two minutes: its session never reaches its end (logged by the conftest)."""
    log = tmp_path / "session.log"
    target = make_project(tmp_path, tmp_path / "sessions.log")
    (target / "calc" / "__init__.py").write_text('LIMIT: int = "ten"\n')
    (target / "tests" / "test_calc.py").write_text(
        "import time\n\n\ndef test_slow() -> None:\n    time.sleep(120)\n"
    )
    (target / "conftest.py").write_text(
        textwrap.dedent(f"""\
            def pytest_sessionstart(session):
                with open({str(log)!r}, "a") as f:
                    f.write("start\\n")


            def pytest_sessionfinish(session):
                with open({str(log)!r}, "a") as f:
                    f.write("end\\n")
        """)
    )

    def condemns(run):  # type: ignore[no-untyped-def]
        if run.result.tool != "mypy" or not run.issues:
            return ""
        # mypy can end before pytest's session starts; wait for it, so the kill is mid-suite
        deadline = time.monotonic() + 60
        while (
            "start" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        return "mypy found an error"

    m = measure(target, load_config(), scope="full", halt_when=condemns)

    assert m.halted == "mypy found an error"
    by_tool = {r.tool: r for r in m.results}
    assert by_tool["mypy"].status == "failed"
    for tool in ("pytest", "coverage"):
        assert by_tool[tool].status == "skipped", by_tool[tool]
        assert by_tool[tool].error == "stopped: mypy found an error"
    assert m.outcomes == {} and m.coverage is None
    assert log.read_text().split() == ["start"]  # killed mid-suite


def test_a_suite_that_outlasts_its_limit_names_the_setting_to_raise(tmp_path: Path) -> None:
    """A check's test run that times out is a ``tool_error`` whose message names
    ``health_check.test_timeout_s``: the owner of a suite of minutes learns what to raise."""
    target = make_project(tmp_path, tmp_path / "sessions.log")
    (target / "tests" / "test_slow.py").write_text(
        "import time\n\n\ndef test_slow():\n    time.sleep(120)\n"
    )
    config = load_config()
    config = msgspec.structs.replace(
        config, health_check=msgspec.structs.replace(config.health_check, test_timeout_s=3.0)
    )

    m = measure(target, config, scope="full")

    by_tool = {r.tool: r for r in m.results}
    assert by_tool["pytest"].status == "tool_error", by_tool["pytest"]
    assert "timed out after" in by_tool["pytest"].error
    assert "(health_check.test_timeout_s)" in by_tool["pytest"].error
    assert by_tool["ruff"].status != "tool_error"  # the static tools had their own limit


def test_a_doctest_in_a_source_module_is_re_run_alone(tmp_path: Path) -> None:
    """With ``--doctest-modules`` a test's node id can name a source module (a doctest's):
    re-running it (to tell flaky from failing, or a bisection probe) runs that test, not the
    whole suite for want of a test file in the id."""
    sessions = tmp_path / "sessions.log"
    target = make_project(tmp_path, sessions)
    (target / "calc" / "doc.py").write_text(
        'def double(x):\n    """\n    >>> double(2)\n    5\n    """\n    return 2 * x\n'
    )
    with (target / "pyproject.toml").open("a") as f:
        f.write('\n[tool.pytest.ini_options]\naddopts = "--doctest-modules"\n')
    doctest = "calc/doc.py::calc.doc.double"

    again = rerun_tests(target, load_config(), [doctest])

    assert again == {doctest: "failed"}
    assert sessions.read_text().split() == ["1"]  # one test collected: not the whole suite
