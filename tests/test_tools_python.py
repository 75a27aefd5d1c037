"""The Python tool adapters against the real tools, on temporary git copies of ``sample_project``.

What is pinned: the adapters find exactly what an independent invocation of each tool finds, with
the right file/line/rule/phase; fingerprints survive line shifts; every way a tool can fail to
run (missing, crash, timeout, bad configuration, garbage output) is a ``tool_error`` with no
issues; and the target tree is byte-for-byte untouched afterwards.  Parser tests read real
outputs recorded by ``tests/fixtures/tools/capture.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from airfix.events.schema import IssueRecord
from airfix.services.process import find_executable
from airfix.services.tools import (
    REGISTRY,
    CoverageAdapter,
    MypyAdapter,
    PytestAdapter,
    RuffAdapter,
    ToolAdapter,
    ToolRun,
    adapters_for,
    adapters_for_target,
    detect_languages,
    fingerprint,
    normalise_message,
    python_adapters,
    register,
    run_process,
)
from airfix.services.tools.coverage import parse_coverage_json
from airfix.services.tools.fingerprints import Finding, to_issues
from airfix.services.tools.mypy import parse_mypy_json
from airfix.services.tools.pytest import parse_junit
from airfix.services.tools.ruff import parse_ruff_json

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_project"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tools"
BIN = Path(sys.executable).parent

ADAPTER_CLASSES = [RuffAdapter, MypyAdapter, PytestAdapter, CoverageAdapter]

EXPECTED_MYPY = {
    ("inventory/models.py", "union-attr"),
    ("inventory/models.py", "return-value"),
    ("inventory/report.py", "arg-type"),
}
FAILING_TEST = "tests/test_pricing.py::test_bulk_discount_applies_at_threshold"


def tool(name: str) -> str:
    found = find_executable(name)
    assert found, f"{name} is not installed (pip install -e '.[python-tools]')"
    return found


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return proc.stdout


def copy_sample(dest: Path) -> Path:
    shutil.copytree(SAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", ".*cache*"))
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "sample")
    return dest


def porcelain(target: Path) -> str:
    """Untracked, modified *and ignored* files: a clean tree prints nothing."""
    return git(target, "status", "--porcelain", "--ignored", "--untracked-files=all")


def key(issues: list[IssueRecord]) -> set[tuple[str, int, int, str]]:
    return {(i.file, i.line, i.column, i.rule) for i in issues}


def write_exe(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def assert_tool_error(run: ToolRun, *needles: str) -> None:
    assert run.result.status == "tool_error", run.result
    assert run.issues == []
    assert not run.ok
    for needle in needles:
        assert needle in run.result.error, run.result.error


@pytest.fixture(scope="module")
def sample_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, dict[str, ToolRun]]]:
    """All four adapters once on one copy, with bytecode writing *enabled* in the environment
    so the cleanliness check proves the adapters themselves keep ``__pycache__`` out."""
    target = copy_sample(tmp_path_factory.mktemp("runs") / "sample")
    saved = os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        runs = {a.name: a.run(target) for a in python_adapters()}
    finally:
        if saved is not None:
            os.environ["PYTHONDONTWRITEBYTECODE"] = saved
    yield target, runs


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One warm mypy cache for the module (outside every target): cold runs cost seconds."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.fixture
def mypy(mypy_cache: Path) -> MypyAdapter:
    return MypyAdapter(cache_dir=mypy_cache)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return copy_sample(tmp_path / "sample")


# ---------------------------------------------------------------- the real tools on the sample


def test_ruff_matches_an_independent_ruff_run(sample_runs, tmp_path: Path) -> None:
    _, runs = sample_runs
    run = runs["ruff"]
    mirror = copy_sample(tmp_path / "mirror")
    proc = subprocess.run(
        [tool("ruff"), "check", "--output-format", "json", "--no-cache", "."],
        cwd=mirror, capture_output=True, text=True, check=False,
    )  # fmt: skip
    records = json.loads(proc.stdout)
    expected = {
        (Path(r["filename"]).relative_to(mirror).as_posix(), r["location"]["row"],
         r["location"]["column"], r["code"])
        for r in records
    }  # fmt: skip
    assert run.result.status == "failed"
    assert run.result.exit_status == 1
    assert len(run.issues) == len(records) == 27
    assert key(run.issues) == expected
    assert run.result.counts["issues"] == 27
    assert (
        run.result.counts["fixable"]
        == sum(1 for r in records if (r["fix"] or {}).get("applicability") == "safe")
        == 18
    )
    assert {i.phase for i in run.issues} == {"lint"}
    by_rule = {(i.file, i.rule, i.line) for i in run.issues}
    assert ("inventory/models.py", "F401", 5) in by_rule
    assert ("inventory/models.py", "E741", 49) in by_rule
    assert ("inventory/report.py", "B006", 11) in by_rule
    assert run.result.version == tool_version("ruff")
    assert run.result.duration_s > 0


def tool_version(name: str) -> str:
    out = subprocess.run(
        [tool(name), "--version"], check=False, capture_output=True, text=True
    ).stdout
    return out.split()[1]


def test_ruff_fix_leaves_six_findings_and_tests_unchanged(sample: Path) -> None:
    """The sample's promise: ``ruff check --fix`` fixes 21 of 27 safely; behaviour is unchanged."""
    subprocess.run(
        [tool("ruff"), "check", "--fix", "--no-cache", "-q", "."], cwd=sample, check=False
    )
    after = RuffAdapter().run(sample)
    assert {i.rule for i in after.issues} == {"E741", "E501", "E711", "B006", "B007", "F841"}
    assert len(after.issues) == 6
    tests = PytestAdapter().run(sample)
    assert (tests.tests_total, tests.tests_failed) == (13, 1)


def test_mypy_matches_an_independent_mypy_run(sample_runs, tmp_path: Path) -> None:
    _, runs = sample_runs
    run = runs["mypy"]
    mirror = copy_sample(tmp_path / "mirror")
    proc = subprocess.run(
        [tool("mypy"), "-O", "json", "--cache-dir", str(tmp_path / "cache")],
        cwd=mirror, capture_output=True, text=True, check=False,
    )  # fmt: skip
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    expected = {(r["file"], r["line"], r["column"] + 1, r["code"]) for r in records}  # 0-based
    assert run.result.status == "failed"
    assert key(run.issues) == expected
    assert {(i.file, i.rule) for i in run.issues} == EXPECTED_MYPY
    assert {i.phase for i in run.issues} == {"build"}
    assert run.result.counts == {"issues": 3, "blocking": 0}


def test_pytest_reports_the_failing_test(sample_runs) -> None:
    _, runs = sample_runs
    run = runs["pytest"]
    assert run.result.status == "failed"
    assert run.result.exit_status == 1
    assert (run.tests_total, run.tests_passed, run.tests_failed) == (13, 12, 1)
    assert run.result.counts == {"tests": 13, "passed": 12, "failed": 1, "errors": 0, "skipped": 0}
    [issue] = run.issues
    assert (issue.phase, issue.file, issue.line, issue.rule) == (
        "test",
        "tests/test_pricing.py",
        19,
        "failure",
    )
    assert issue.message.startswith(FAILING_TEST + ": assert 20.0 == 17.0")
    assert "tests/test_pricing.py:21" in issue.message


def test_coverage_matches_an_independent_coverage_run(sample_runs, tmp_path: Path) -> None:
    _, runs = sample_runs
    run = runs["coverage"]
    mirror = copy_sample(tmp_path / "mirror")
    env = dict(os.environ, COVERAGE_FILE=str(tmp_path / "cov.data"))
    subprocess.run([tool("coverage"), "run", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                   cwd=mirror, env=env, capture_output=True, check=False)  # fmt: skip
    subprocess.run([tool("coverage"), "json", "-o", str(tmp_path / "cov.json")],
                   cwd=mirror, env=env, capture_output=True, check=True)  # fmt: skip
    expected = json.loads((tmp_path / "cov.json").read_text())["totals"]
    assert run.result.status == "passed"  # measured; the failing test is pytest's finding
    assert run.issues == []
    assert run.coverage_percent == pytest.approx(expected["percent_covered"])
    assert 80 < run.coverage_percent < 100
    assert run.metrics["num_statements"] == expected["num_statements"]
    assert (run.tests_total, run.tests_failed) == (13, 1)


def test_no_artifacts_in_the_target_tree(sample_runs) -> None:
    target, runs = sample_runs
    assert {r.result.status for r in runs.values()} <= {"passed", "failed"}
    assert porcelain(target) == ""
    leftovers = [p.name for p in target.rglob("*") if p.name.startswith((".ruff", ".mypy", ".pytest",
                 ".coverage", "__pycache__", ".benchmarks", ".hypothesis", "junit"))]  # fmt: skip
    assert leftovers == []


def test_issue_ids_are_unique(sample_runs) -> None:
    _, runs = sample_runs
    ids = [i.issue_id for r in runs.values() for i in r.issues]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- fingerprints


def test_fingerprints_survive_shifted_lines(sample: Path, mypy: MypyAdapter) -> None:
    adapters = [RuffAdapter(), mypy, PytestAdapter()]
    before = {a.name: a.run(sample) for a in adapters}
    shifted = 0
    for path in [*sample.glob("inventory/*.py"), *sample.glob("tests/*.py")]:
        path.write_text("# shifted\n# shifted\n# shifted\n" + path.read_text())
        shifted += 1
    assert shifted == 8
    after = {a.name: a.run(sample) for a in adapters}
    for name, old_run in before.items():
        old, new = old_run.issues, after[name].issues
        assert [i.issue_id for i in old] == [i.issue_id for i in new], name
        assert [i.fingerprint for i in old] == [i.fingerprint for i in new], name
        assert [i.line + 3 for i in old] == [i.line for i in new], name


def test_fingerprint_normalisation() -> None:
    assert normalise_message("Line too long (101 > 100)") == "Line too long (# > #)"
    assert normalise_message("at 0x7f3a2b  object") == "at 0x? object"
    assert normalise_message("`py311` and x1 stay") == "`py311` and x1 stay"
    a = fingerprint("ruff", "E501", "pkg/a.py", "Line too long (101 > 100)")
    assert a == fingerprint("ruff", "E501", "pkg/a.py", "Line too long (120 > 100)")
    assert a != fingerprint("ruff", "E501", "pkg/b.py", "Line too long (101 > 100)")
    assert fingerprint("ruff", "F401", "a.py", "`os` imported but unused") != fingerprint(
        "ruff", "F401", "a.py", "`sys` imported but unused"
    )
    assert fingerprint("t", "r", "f", "m", snippet="x =  1") == fingerprint(
        "t", "r", "f", "m", snippet=" x = 1"
    )


def test_identical_findings_get_occurrence_ids() -> None:
    findings = [
        Finding(
            phase="lint",
            file="a.py",
            line=line,
            column=1,
            rule="E741",
            message="Ambiguous variable name: `l`",
        )
        for line in (30, 10, 20)
    ]
    issues = to_issues("ruff", findings)
    assert [i.line for i in issues] == [10, 20, 30]
    fp = issues[0].fingerprint
    assert [i.issue_id for i in issues] == [f"{fp}:0", f"{fp}:1", f"{fp}:2"]


# ---------------------------------------------------------------- tool did not run → tool_error


@pytest.mark.parametrize("cls", ADAPTER_CLASSES, ids=lambda c: c.name)
def test_missing_executable_is_a_tool_error(cls, sample: Path) -> None:
    adapter = cls(executable="/nonexistent/bin/" + cls.executable_name)
    assert not adapter.available()
    assert adapter.version() == ""
    run = adapter.run(sample)
    assert_tool_error(run, "not found")
    assert porcelain(sample) == ""


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    project = tmp_path / "hang"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'hang'\nversion = '0'\n")
    (project / "tests" / "test_hang.py").write_text(
        "import os, subprocess, sys, time\n\n"
        "def test_hang():\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "    with open(os.environ['AIRFIX_TEST_PIDFILE'], 'w') as f:\n"
        "        f.write(str(child.pid))\n"
        "    time.sleep(120)\n"
    )
    pidfile = tmp_path / "child.pid"
    adapter = PytestAdapter(env={"AIRFIX_TEST_PIDFILE": str(pidfile)})
    adapter.version()  # cached, so the timing below is the test run alone
    start = time.monotonic()
    adapter.timeout_setting = "health_check.test_timeout_s"  # as the checks set it
    run = adapter.run(project, timeout_s=8)
    assert time.monotonic() - start < 30
    assert_tool_error(run, "timed out", "(health_check.test_timeout_s)", "process group was killed")
    assert pidfile.exists(), "the test never started: the timeout proves nothing"
    assert wait_dead(int(pidfile.read_text()))


def wait_dead(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):  # a zombie waiting for init to reap it is dead
            return True
        time.sleep(0.1)
    return False


def test_run_process_kills_background_children_on_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    proc = run_process(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; sleep 60"], tmp_path, 1.0)
    assert proc.timed_out
    assert proc.duration_s < 10
    assert wait_dead(int(pidfile.read_text()))


def test_run_process_captures_output_and_exit_code(tmp_path: Path) -> None:
    proc = run_process(["sh", "-c", "echo out; echo err >&2; exit 3"], tmp_path, 10)
    assert (proc.exit_code, proc.stdout, proc.stderr, proc.timed_out) == (
        3,
        "out\n",
        "err\n",
        False,
    )
    missing = run_process(["/nonexistent/binary"], tmp_path, 10)
    assert missing.exit_code is None and missing.launch_error


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_broken_ruff_config_is_a_tool_error(sample: Path) -> None:
    replace_in(sample / "pyproject.toml", "[tool.ruff]\n", "[tool.ruff]\nno-such-option = 1\n")
    assert_tool_error(RuffAdapter().run(sample), "unknown field", "exit 2")
    replace_in(sample / "pyproject.toml", "no-such-option = 1", "")
    replace_in(sample / "pyproject.toml", '"UP", "B"]', '"UP", "B", "ZZZ9"]')
    assert_tool_error(RuffAdapter().run(sample), "ZZZ9")


def test_broken_mypy_config_is_a_tool_error(sample: Path, mypy: MypyAdapter) -> None:
    replace_in(sample / "pyproject.toml", 'python_version = "3.11"', 'python_version = "three"')
    assert_tool_error(mypy.run(sample), "configuration error", "python_version")


def test_mypy_exit_2_without_records_is_a_tool_error(sample: Path, mypy: MypyAdapter) -> None:
    replace_in(
        sample / "pyproject.toml", 'files = ["inventory", "tests"]', 'files = ["missing_dir"]'
    )
    assert_tool_error(mypy.run(sample), "exit 2", "missing_dir")


def test_broken_pytest_config_is_a_tool_error(sample: Path) -> None:
    replace_in(
        sample / "pyproject.toml",
        'testpaths = ["tests"]',
        'testpaths = ["tests"]\naddopts = "--no-such-flag"',
    )
    assert_tool_error(PytestAdapter().run(sample), "unexpected exit 4", "--no-such-flag")
    assert_tool_error(CoverageAdapter().run(sample), "coverage")


def test_broken_coverage_config_is_a_tool_error(sample: Path) -> None:
    replace_in(
        sample / "pyproject.toml",
        'source = ["inventory"]',
        'source = ["inventory"]\nbranch = "maybe"',
    )
    assert_tool_error(CoverageAdapter().run(sample), "no JUnit report", "maybe")


def test_crash_and_garbage_output_are_tool_errors(sample: Path, tmp_path: Path) -> None:
    crash = write_exe(tmp_path / "crash", "echo 'Traceback: boom' >&2\nexit 3\n")
    for cls in ADAPTER_CLASSES:
        assert_tool_error(cls(executable=str(crash)).run(sample), "unexpected exit 3", "boom")
    garbage = write_exe(tmp_path / "garbage", "echo 'this is not json'\nexit 1\n")
    assert_tool_error(RuffAdapter(executable=str(garbage)).run(sample), "unparsable")
    assert_tool_error(MypyAdapter(executable=str(garbage)).run(sample), "no error records")
    assert_tool_error(PytestAdapter(executable=str(garbage)).run(sample), "no JUnit report")
    killed = write_exe(tmp_path / "killed", "kill -9 $$\n")
    assert_tool_error(RuffAdapter(executable=str(killed)).run(sample), "killed by signal 9")


def recorded_with(name: str, corrupt: Callable[[list[Any]], None]) -> str:
    """A recorded output with one field made wrong by ``corrupt`` (JSON array or JSON Lines)."""
    text = (FIXTURES / name).read_text()
    lines = name.endswith(".jsonl")
    records = [json.loads(line) for line in text.splitlines()] if lines else json.loads(text)
    corrupt(records)
    return "\n".join(json.dumps(r) for r in records) if lines else json.dumps(records)


def printing(path: Path, text: str, code: int) -> str:
    """An executable that prints ``text`` (kept in a file next to it) and exits ``code``."""
    path.with_suffix(".out").write_text(text + "\n")
    return str(write_exe(path, f'cat "{path.with_suffix(".out")}"\nexit {code}\n'))


def test_wrongly_typed_output_is_a_tool_error_naming_the_field(
    sample: Path, tmp_path: Path
) -> None:
    """A recorded output with one field of the wrong type: the run is a ``tool_error`` that says
    where (msgspec's path), never a run with the record silently dropped or zeroed."""

    def ruff_row(records: list[Any]) -> None:
        records[3]["location"]["row"] = "five"

    def ruff_edits(records: list[Any]) -> None:
        records[0]["fix"]["edits"] = {"content": ""}

    def mypy_line(records: list[Any]) -> None:
        records[1]["line"] = "39"

    ruff = printing(tmp_path / "ruff", recorded_with("ruff_sample.json", ruff_row), 1)
    assert_tool_error(
        RuffAdapter(executable=ruff).run(sample), "ruff: unparsable", "$[3].location.row"
    )
    ruff = printing(tmp_path / "ruff2", recorded_with("ruff_sample.json", ruff_edits), 1)
    assert_tool_error(RuffAdapter(executable=ruff).run(sample), "$[0].fix.edits")
    mypy = printing(tmp_path / "mypy", recorded_with("mypy_sample.jsonl", mypy_line), 1)
    assert_tool_error(
        MypyAdapter(executable=mypy).run(sample), "mypy: unparsable", "line 2", "$.line"
    )


def test_harmless_stderr_does_not_fail_a_good_run(sample: Path, tmp_path: Path) -> None:
    noisy = write_exe(
        tmp_path / "ruff",
        f"echo 'warning: The top-level linter settings are deprecated' >&2\nexec {tool('ruff')} \"$@\"\n",
    )
    run = RuffAdapter(executable=str(noisy)).run(sample)
    assert run.result.status == "failed"
    assert len(run.issues) == 27
    assert "deprecated" in run.stderr_tail


def test_unrecognised_mypy_option_is_tolerated(sample: Path, mypy: MypyAdapter) -> None:
    replace_in(
        sample / "pyproject.toml",
        "check_untyped_defs = true",
        "check_untyped_defs = true\nfuture_option = 1",
    )
    run = mypy.run(sample)
    assert run.result.status == "failed"
    assert len(run.issues) == 3


# ---------------------------------------------------------------- syntax errors, no tests, collection errors


def test_syntax_errors_are_build_issues(sample: Path, mypy: MypyAdapter) -> None:
    (sample / "inventory" / "broken.py").write_text("def f(:\n")
    ruff = RuffAdapter().run(sample)
    syntax = [i for i in ruff.issues if i.rule == "invalid-syntax"]
    assert syntax and {i.phase for i in syntax} == {"build"}
    assert {i.file for i in syntax} == {"inventory/broken.py"}
    assert ruff.result.counts["syntax_errors"] == len(syntax)
    typed = mypy.run(sample)
    assert typed.result.exit_status == 2
    assert typed.result.status == "failed"
    assert typed.result.counts["blocking"] == 1
    assert {(i.file, i.rule, i.phase) for i in typed.issues} == {
        ("inventory/broken.py", "syntax", "build")
    }
    assert "syntax error" in typed.result.error


def test_no_tests_is_a_failed_check_not_a_pass(tmp_path: Path) -> None:
    project = tmp_path / "empty"
    (project / "pkg").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'empty'\nversion = '0'\n")
    (project / "pkg" / "__init__.py").write_text("X = 1\n")
    for adapter in (PytestAdapter(), CoverageAdapter()):
        run = adapter.run(project)
        assert run.result.status == "failed", adapter.name
        assert run.result.exit_status == 5
        assert run.tests_total == 0
        assert run.issues == []
        assert "no tests collected" in run.result.error
    assert sorted(p.name for p in project.rglob("*")) == ["__init__.py", "pkg", "pyproject.toml"]


def test_collection_errors_are_issues_and_other_tests_still_run(sample: Path) -> None:
    """A test module that fails to import because of the project's own code is a defect."""
    (sample / "tests" / "test_broken_import.py").write_text(
        "from inventory.pricing import no_such_name\n"
    )
    run = PytestAdapter().run(sample)
    assert run.result.status == "failed"
    assert (run.tests_total, run.tests_passed) == (14, 12)
    assert run.tests["tests/test_broken_import.py"] == "error"
    assert sum(1 for o in run.tests.values() if o == "passed") == 12
    rules = {(i.file, i.rule) for i in run.issues}
    assert rules == {
        ("tests/test_broken_import.py", "collection-error"),
        ("tests/test_pricing.py", "failure"),
    }
    broken = next(i for i in run.issues if i.rule == "collection-error")
    assert "no_such_name" in broken.message


def test_a_dependency_missing_from_the_environment_is_a_tool_error_naming_the_fix(
    sample: Path,
) -> None:
    """Not an issue for a fixer: the environment lacks a package, no file has a defect."""
    (sample / "tests" / "test_needs_dep.py").write_text("import no_such_module_xyz\n")
    for adapter in (PytestAdapter(), CoverageAdapter()):
        run = adapter.run(sample)
        assert_tool_error(
            run,
            "lacks 'no_such_module_xyz'",
            "tests/test_needs_dep.py",
            "-m pip install",
            "--python",
        )
        assert run.issues == []


# ---------------------------------------------------------------- scoping and commands


def test_scoped_runs(sample: Path, mypy: MypyAdapter) -> None:
    ruff = RuffAdapter().run(sample, ["inventory/pricing.py"])
    assert {i.file for i in ruff.issues} == {"inventory/pricing.py"}
    assert len(ruff.issues) == 6
    assert ruff.result.command[-1] == "inventory/pricing.py"
    skipped = RuffAdapter().run(sample, ["does/not/exist.py"])
    assert skipped.result.status == "skipped" and skipped.issues == []
    assert mypy.run(sample, ["README.md"]).result.status == "skipped"
    typed = mypy.run(sample, ["inventory/report.py"])
    assert ("inventory/report.py", "arg-type") in {(i.file, i.rule) for i in typed.issues}
    only = PytestAdapter().run(sample, ["tests/test_pricing.py"])
    assert only.tests_total == 6
    full = PytestAdapter().run(sample, ["inventory/pricing.py"])  # a source file: whole suite
    assert full.tests_total == 13
    assert porcelain(sample) == ""


def test_commands_keep_artifacts_outside_the_target(sample: Path, tmp_path: Path) -> None:
    ruff = RuffAdapter().command(sample)
    assert ruff[1:] == ["check", "--output-format", "json", "--no-cache", "--force-exclude", "."]
    mypy = MypyAdapter().command(sample)
    assert mypy[1:4] == ["-O", "json", "--cache-dir"] and not mypy[4].startswith(str(sample))
    assert mypy[5:] == []  # [tool.mypy] files decides what is checked
    assert (
        MypyAdapter().command(sample, ["inventory/models.py", "README.md"])[-1]
        == "inventory/models.py"
    )
    inside = MypyAdapter(cache_dir=sample / ".cache").run(sample)
    assert_tool_error(inside, "inside the target")
    assert MypyAdapter(cache_dir=tmp_path / "c").command(sample)[4] == str(tmp_path / "c")
    pytest_cmd = PytestAdapter().command(sample)
    assert "no:cacheprovider" in pytest_cmd and "--continue-on-collection-errors" in pytest_cmd
    junit = next(a for a in pytest_cmd if a.startswith("--junitxml="))
    assert not junit.removeprefix("--junitxml=").startswith(str(sample))
    assert pytest_cmd[:3] == [sys.executable, "-m", "pytest"]  # the project's interpreter
    cov = CoverageAdapter().command(sample)
    assert (
        cov[:4] == [sys.executable, "-m", "coverage", "run"]
        and cov[4].startswith("--data-file=")
        and cov[5:7] == ["-m", "pytest"]
    )


def test_adapter_metadata_and_versions() -> None:
    adapters = python_adapters()
    assert [(a.name, a.phase, a.tier, a.language) for a in adapters] == [
        ("ruff", "lint", "static", "python"),
        ("mypy", "build", "static", "python"),
        ("pytest", "test", "dynamic", "python"),
        ("coverage", "test", "dynamic", "python"),
    ]
    for adapter in adapters:
        assert isinstance(adapter, ToolAdapter)
        assert adapter.available()
        assert adapter.version() and adapter.version()[0].isdigit()


def test_executables_next_to_the_interpreter_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shadow = tmp_path / "path"
    shadow.mkdir()
    write_exe(shadow / "ruff", "exit 0\n")
    monkeypatch.setenv("PATH", f"{shadow}{os.pathsep}{os.environ.get('PATH', '')}")
    if (BIN / "ruff").exists():
        assert find_executable("ruff") == str(BIN / "ruff")
    write_exe(shadow / "airfix-only-on-path", "exit 0\n")
    assert find_executable("airfix-only-on-path") == str(shadow / "airfix-only-on-path")
    assert find_executable(str(tmp_path / "nope")) is None


# ---------------------------------------------------------------- parsers on recorded real outputs


TARGET = Path("/TARGET")


def test_parse_recorded_ruff_output() -> None:
    report = parse_ruff_json((FIXTURES / "ruff_sample.json").read_text(), TARGET)
    assert len(report.findings) == 27
    assert (report.fixable, report.unsafe_fixable) == (18, 4)
    first = next(f for f in report.findings if f.rule == "F401")
    assert (first.file, first.line, first.column, first.phase) == (
        "inventory/models.py",
        5,
        8,
        "lint",
    )
    syntax = parse_ruff_json((FIXTURES / "ruff_syntax.json").read_text(), TARGET)
    assert {(f.file, f.rule, f.phase) for f in syntax.findings} == {
        ("ok.py", "F401", "lint"),
        ("broken.py", "invalid-syntax", "build"),
    }
    with pytest.raises(ValueError):
        parse_ruff_json("ruff failed\n  Cause: nope", TARGET)


def test_parse_recorded_mypy_output() -> None:
    sample = parse_mypy_json((FIXTURES / "mypy_sample.jsonl").read_text(), TARGET)
    assert {(f.file, f.rule) for f in sample.findings} == EXPECTED_MYPY
    union = next(f for f in sample.findings if f.rule == "union-attr")
    assert (union.line, union.column) == (39, 9)  # mypy's JSON column 8 is 0-based
    notes = parse_mypy_json((FIXTURES / "mypy_notes.jsonl").read_text(), TARGET)
    [error] = notes.findings  # the leading note has no error to attach to
    assert error.rule == "arg-type"
    assert "Following member(s)" in error.message  # the hint
    assert error.message.endswith('note: Revealed type is "notes.C"')
    assert error.key_message == 'Argument 1 to "g" has incompatible type "C"; expected "P"'
    syntax = parse_mypy_json((FIXTURES / "mypy_syntax.jsonl").read_text(), TARGET)
    assert syntax.blocking and {f.rule for f in syntax.findings} == {"syntax"}
    assert parse_mypy_json("Found 1 error\n", TARGET).other_lines == ["Found 1 error"]


def test_parse_recorded_junit_reports() -> None:
    sample = parse_junit((FIXTURES / "pytest_sample_junit.xml").read_text(), TARGET)
    assert (sample.total, sample.passed, sample.failed, sample.errors, sample.skipped) == (
        13,
        12,
        1,
        0,
        0,
    )
    mixed = parse_junit((FIXTURES / "pytest_mixed_junit.xml").read_text(), TARGET)
    assert (mixed.total, mixed.passed, mixed.failed, mixed.errors, mixed.skipped) == (5, 1, 1, 2, 1)
    found = {(f.file, f.line, f.rule, f.key_message) for f in mixed.findings}
    assert found == {
        ("tests/test_broken_import.py", 0, "collection-error", "tests/test_broken_import.py"),
        ("tests/test_mixed.py", 13, "error", "tests/test_mixed.py::test_setup_error"),
        ("tests/test_mixed.py", 23, "failure", "tests/test_mixed.py::TestGroup::test_method"),
    }
    assert all("/TARGET" not in f.message for f in mixed.findings)


def test_parse_junit_without_file_attributes(tmp_path: Path) -> None:
    """xunit2 reports (no ``file``/``line``) map the classname to an existing file."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("")
    xml = (
        '<testsuites><testsuite><testcase classname="tests.test_a.TestX" name="test_y">'
        '<failure message="boom">trace</failure></testcase></testsuite></testsuites>'
    )
    [finding] = parse_junit(xml, tmp_path).findings
    assert (finding.file, finding.key_message) == (
        "tests/test_a.py",
        "tests/test_a.py::TestX::test_y",
    )


def test_parse_recorded_coverage_report() -> None:
    metrics = parse_coverage_json((FIXTURES / "coverage_sample.json").read_text())
    raw = json.loads((FIXTURES / "coverage_sample.json").read_text())["totals"]
    assert metrics["coverage_percent"] == raw["percent_covered"]
    assert metrics["num_statements"] == raw["num_statements"]
    with pytest.raises(msgspec.ValidationError, match=r"totals"):
        parse_coverage_json('{"meta": {}}')
    with pytest.raises(msgspec.ValidationError, match=r"\$\.totals\.covered_lines"):
        parse_coverage_json(
            '{"totals": {"percent_covered": 1.0, "covered_lines": "x", '
            '"num_statements": 1, "missing_lines": 0}}'
        )


def test_recorded_fixtures_come_from_the_tools_in_use() -> None:
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    assert manifest["ruff_sample.json"]["exit"] == 1
    assert manifest["mypy_syntax.jsonl"]["exit"] == 2
    assert manifest["pytest_mixed_junit.xml"]["exit"] == 1


# ---------------------------------------------------------------- detection and registry


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"pyproject.toml": ""}, ["python"]),
        ({"setup.py": ""}, ["python"]),
        ({"requirements.txt": "", "package.json": "{}"}, ["python", "javascript"]),
        ({"package.json": '{"devDependencies": {"typescript": "^5"}}'}, ["typescript"]),
        ({"package.json": "{}", "tsconfig.json": "{}"}, ["typescript"]),
        ({"go.mod": "module x\n"}, ["go"]),
        ({"pubspec.yaml": "name: app\ndependencies:\n  flutter:\n    sdk: flutter\n"}, ["flutter"]),
        ({"pubspec.yaml": "name: lib\n"}, ["dart"]),
        ({"setup.cfg": "", "go.mod": "", "pubspec.yaml": "name: x\n"}, ["python", "go", "dart"]),
        ({"README.md": ""}, []),
        ({"sub/pyproject.toml": ""}, []),
    ],
)
def test_detect_languages(tmp_path: Path, files: dict[str, str], expected: list[str]) -> None:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert detect_languages(tmp_path) == expected


def test_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "python", list(REGISTRY["python"]))
    assert [a.name for a in adapters_for("python")] == ["ruff", "mypy", "pytest", "coverage"]
    assert adapters_for("cobol") == []
    (tmp_path / "go.mod").write_text("module x\n")
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.delitem(REGISTRY, "go", raising=False)
    found = adapters_for_target(tmp_path)
    assert list(found) == ["python", "go"] and found["go"] == []
    register("go", RuffAdapter)  # any factory: the registry only stores and calls it
    assert [a.name for a in adapters_for_target(tmp_path)["go"]] == ["ruff"]
    monkeypatch.delitem(REGISTRY, "go")


def test_sample_project_is_not_part_of_the_repo_suite() -> None:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert root["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert "airfix.services.tools" in root["tool"]["setuptools"]["packages"]
    sample = tomllib.loads((SAMPLE / "pyproject.toml").read_text())
    assert sample["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert "ruff" in sample["tool"] and "mypy" in sample["tool"]
