"""The fix pipeline end to end, in one process: real git repositories, real tools, real fixers.

Most scenarios use the "mini" project of ``tests/pipeline_harness`` (three safe ruff findings, clean
mypy, two passing tests: a run takes a few seconds); the sample project is run once per module for
what needs issues autofix cannot fix (mypy, a failing test).  Runs in this module use their own
fresh embedded store; the command-line tests use the real server (``tests/conftest.py`` REAL_URL)
under a key prefix of their own, so tests sharing that database cannot disturb them (nor they it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from airfix.events.schema import Committed, FixRolledBack, FixStarted, RunCompleted
from airfix.projections.report import RunReport, on_branch
from airfix.services.commands.run import EXIT_CODES
from airfix.services.fixers import FixOutcome, FixRequest
from airfix.services.fixers.autofix import AutoFixer
from airfix.services.pipeline.git import Repo
from airfix.services.pipeline.requests import fresh_sample_repo
from airfix.services.runtime.app import App
from airfix.services.tools import MypyAdapter
from tests.conftest import REAL_URL, real_client
from tests.pipeline_harness import (
    MINI_FILES,
    MINI_RUFF,
    branch,
    commits_since,
    embedded_app,
    events_of,
    git,
    head,
    make_config,
    make_repo,
    mypy_count,
    pytest_failed,
    refs,
    registered,
    ruff_count,
    run_to_end,
    status_porcelain,
    tree_digest,
)
from tests.pipeline_harness.cheats import NoqaFixer, TestDeletingFixer, WorseFixer

SUBJECT = re.compile(r"^(chore|style|fix|refactor|perf|test|build|docs)(\([\w./-]+\))?: \S.*$")


def trailers(message: str) -> dict[str, list[str]]:
    """The message's git trailers, as git itself parses them."""
    out = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        text=True,
        capture_output=True,
        check=True,
    ).stdout
    parsed: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        parsed.setdefault(key.strip(), []).append(value.strip())
    return parsed


# ------------------------------------------------------------------ the sample project, run once


@dataclass
class SampleRun:
    repo: Path
    base: str
    run_id: str
    report: RunReport
    app: App


@pytest.fixture(scope="module")
def sample_run() -> Iterator[SampleRun]:
    """The bundled sample, fixed by autofix for one iteration (in-process, fresh embedded store)."""
    repo = fresh_sample_repo()
    try:
        base = head(repo)
        app = embedded_app()
        run_id, report = run_to_end(app, repo, fixer="autofix", max_iterations=1)
        yield SampleRun(repo, base, run_id, report, app)
    finally:
        shutil.rmtree(repo.parent, ignore_errors=True)


# 1 -------------------------------------------------------------------------------------------


def test_sample_run_commits_verified_batches_on_its_own_branch(
    sample_run: SampleRun, tmp_path: Path
) -> None:
    s, r = sample_run, sample_run.report
    assert ("completed", "partially_fixed") == (r.state, r.status), r.reason
    # autofix repairs ruff findings only: the type errors and the failing test are still there
    assert r.issues_after > 0
    assert 3 == mypy_count(s.repo, tmp_path / "mypy-cache")
    assert 1 == pytest_failed(s.repo)[0]

    run_branch = f"airfix/{s.run_id}"
    assert run_branch == r.branch == branch(s.repo)
    log = commits_since(s.repo, s.base, run_branch)
    assert len(log) >= 3, log
    # autofix is deterministic: its batches are staged, the tests judge the stack's tip (verify: auto)
    events = events_of(s.app, s.run_id)
    assert all(e.staged for e in events if isinstance(e, Committed))
    committed = on_branch(events)
    assert [c["sha"] for c in log] == [e.sha for e in committed] == [c["sha"] for c in r.commits]
    assert len({e.batch_id for e in committed}) == len(committed), "a batch was committed twice"
    assert (
        git(s.repo, "rev-parse", f"{log[0]['sha']}^").strip() == s.base
    )  # a straight line on base
    for commit, event in zip(log, committed, strict=True):
        assert SUBJECT.match(commit["subject"]), commit["subject"]
        assert len(commit["subject"]) <= 100, commit["subject"]
        assert commit["message"] == event.message.strip()
        body = commit["message"]
        assert f"Batch: {event.batch_id} (" in body
        assert (
            "Fixer: autofix" in body and "Rules: " in body and "Counts (before -> after):" in body
        )
        assert (
            "Verified: as part of a stack of" in body
            and "whose tip passed the full test suite" in body
        )
        t = trailers(body)
        assert [s.run_id] == t.get("Airfix-Run"), body
        assert [event.batch_id] == t.get("Airfix-Batch"), body
        # airfix commits only its fixer's edits: never the project's tests or configuration
        files = git(s.repo, "show", "--name-only", "--format=", commit["sha"]).split()
        assert files and not [f for f in files if f.startswith("tests/") or f == "pyproject.toml"]

    assert s.base == git(s.repo, "rev-parse", "refs/heads/main").strip(), "the base branch moved"
    assert s.base == r.base_sha
    assert head(s.repo) == log[-1]["sha"]
    assert "" == status_porcelain(s.repo), "the run left files behind"


# 2 -------------------------------------------------------------------------------------------


def _independent_counts(repo: Path, scratch: Path) -> dict[str, int]:
    return {
        "ruff": ruff_count(repo),
        "mypy": mypy_count(repo, scratch / "mypy-cache"),
        "pytest": pytest_failed(repo)[0],
    }


def test_reported_issues_after_match_an_independent_rerun(
    sample_run: SampleRun, tmp_path: Path
) -> None:
    s, r = sample_run, sample_run.report
    assert (
        "" == status_porcelain(s.repo) and head(s.repo) == r.commits[-1]["sha"]
    )  # the final commit
    counts = _independent_counts(s.repo, tmp_path)
    assert counts["ruff"] < 27, counts  # the run did fix something (the sample starts at 27)
    assert sum(counts.values()) == r.issues_after, (counts, r.issues_after)
    final = [e for e in events_of(s.app, s.run_id) if isinstance(e, RunCompleted)]
    assert 1 == len(final) and sum(counts.values()) == final[0].issues_after


def test_reported_per_tool_after_counts_match_an_independent_rerun(
    sample_run: SampleRun, tmp_path: Path
) -> None:
    s, r = sample_run, sample_run.report
    counts = _independent_counts(s.repo, tmp_path)
    per_tool = {t.tool: t.issues_after for t in r.tools if t.tool in counts}
    assert counts == per_tool, f"independent re-run {counts}, report says {per_tool}"


# 3 -------------------------------------------------------------------------------------------


@dataclass
class SimRun:
    repo: Path
    before_files: dict[str, str]
    before_refs: dict[str, str]
    before_head: str
    before_branch: str
    run_id: str
    report: RunReport
    app: App


@pytest.fixture(scope="module")
def simulation_run(tmp_path_factory: pytest.TempPathFactory) -> SimRun:
    repo = make_repo(tmp_path_factory.mktemp("sim"))
    (repo / "notes.txt").write_text("an untracked file the run must not touch\n")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-q", "-m", "notes")
    (repo / ".git" / "info" / "exclude").write_text("scratch/\n")
    (repo / "scratch").mkdir()
    (repo / "scratch" / "ignored.py").write_text("import os\n")  # ignored: invisible to git status
    before = (tree_digest(repo), refs(repo), head(repo), branch(repo))
    app = embedded_app()
    run_id, report = run_to_end(app, repo, simulation=True, max_iterations=1)
    return SimRun(repo, *before, run_id, report, app)


def test_simulation_changes_no_file_and_commits_nothing(simulation_run: SimRun) -> None:
    s, r = simulation_run, simulation_run.report
    assert ("completed", "simulated") == (r.state, r.status), r.reason
    assert 0 == EXIT_CODES[r.status]
    assert r.simulation and r.batches_planned >= 1 and not r.commits
    types = [type(e).__name__ for e in events_of(s.app, s.run_id)]
    assert not {"FixStarted", "FixApplied", "Committed", "FixRolledBack"} & set(types), types
    assert s.before_files == tree_digest(s.repo), "a file changed, appeared or vanished"
    assert s.before_head == head(s.repo)
    assert s.before_refs["refs/heads/main"] == git(s.repo, "rev-parse", "refs/heads/main").strip()


def test_simulation_leaves_branches_and_head_alone(simulation_run: SimRun) -> None:
    s = simulation_run
    assert s.before_branch == branch(s.repo), "HEAD was switched to another branch"
    assert s.before_refs == refs(s.repo), "a branch was created"


# 4 -------------------------------------------------------------------------------------------


def _assert_nothing_kept(
    app: App, run_id: str, repo: Path, base: str, files: dict[str, str]
) -> list[FixRolledBack]:
    events = events_of(app, run_id)
    assert not [e for e in events if isinstance(e, Committed)]
    assert head(repo) == base, "a rejected fix was committed"
    assert "" == status_porcelain(repo), "the rollback left the tree dirty"
    assert files == tree_digest(repo), "the rollback did not restore every file"
    rolled = [e for e in events if isinstance(e, FixRolledBack)]
    started = [e for e in events if isinstance(e, FixStarted)]
    assert rolled and len(rolled) == len(started), "every attempted batch must be rolled back"
    assert all(e.reset_to == base for e in rolled)
    return rolled


def test_a_fixer_that_makes_things_worse_is_rolled_back(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    base, files = head(repo), tree_digest(repo)
    with registered("worse", WorseFixer):
        app = embedded_app()
        run_id, report = run_to_end(app, repo, fixer="worse", max_iterations=1)
    rolled = _assert_nothing_kept(app, run_id, repo, base, files)
    for e in rolled:
        assert "1 new issue(s): F401 mini/core.py:1" in e.reason, e.reason  # names the new issue
        assert "remain" in e.reason, e.reason  # and the batch's own issues, still there
        assert 1 == len(e.regressions)
    assert report.status in ("budget_exhausted", "verify_failed"), (report.status, report.reason)
    assert report.status != "succeeded" and not report.commits
    assert "import json" not in (repo / "mini" / "core.py").read_text()


# 5 -------------------------------------------------------------------------------------------


def test_a_fixer_that_deletes_a_test_is_rejected(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    base, files = head(repo), tree_digest(repo)
    with registered("delete-test", TestDeletingFixer):
        app = embedded_app()
        run_id, report = run_to_end(app, repo, fixer="delete-test", max_iterations=1)
    rolled = _assert_nothing_kept(app, run_id, repo, base, files)
    for e in rolled:
        assert (
            "test(s) that passed no longer run (deleted or not collected): "
            "tests/test_core.py::test_" in e.reason
        ), e.reason
    assert (repo / "tests" / "test_core.py").read_text() == MINI_FILES["tests/test_core.py"]
    assert not report.commits and report.status != "succeeded"


def test_a_fixer_that_adds_noqa_is_rejected_as_suppression(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    base, files = head(repo), tree_digest(repo)
    with registered("noqa", NoqaFixer):
        app = embedded_app()
        run_id, report = run_to_end(app, repo, fixer="noqa", max_iterations=1)
    rolled = _assert_nothing_kept(app, run_id, repo, base, files)
    for e in rolled:
        # the noqa comments do make ruff quiet: only the guard stands between them and a commit
        assert e.reason.startswith("adds a suppression in mini/core.py"), e.reason
        assert "remain" not in e.reason and "new issue" not in e.reason, e.reason
    assert "noqa" not in (repo / "mini" / "core.py").read_text()
    assert not report.commits and report.status != "succeeded"


# 6 -------------------------------------------------------------------------------------------

CLEAN_CORE = """\
def add(a: int, b: int) -> int:
    return a + b


def greet(name: str) -> str:
    return "hello " + name
"""


@pytest.mark.parametrize("project", ["clean", "with-issues"])
def test_a_missing_tool_ends_as_tool_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: str
) -> None:
    # find_executable looks next to sys.executable before PATH, so PATH tricks cannot hide the
    # venv's mypy: point the adapter at a path that does not exist instead
    monkeypatch.setattr(MypyAdapter, "executable_name", str(tmp_path / "no-such-dir" / "mypy"))
    files = dict(MINI_FILES, **({"mini/core.py": CLEAN_CORE} if project == "clean" else {}))
    repo = make_repo(tmp_path, files)
    base = head(repo)
    app = embedded_app()
    run_id, report = run_to_end(app, repo, max_iterations=1)
    assert ("completed", "tool_error") == (report.state, report.status), report.reason
    assert "mypy" in report.reason, report.reason
    assert ["mypy"] == report.tool_errors
    mypy_row = next(t for t in report.tools if t.tool == "mypy")
    assert "tool_error" == mypy_row.status_after and mypy_row.issues_after is None  # not "0 issues"
    events = events_of(app, run_id)
    assert not [e for e in events if isinstance(e, RunCompleted) and e.status == "succeeded"]
    assert not [e for e in events if isinstance(e, (FixStarted, Committed))]
    assert head(repo) == base and "" == status_porcelain(repo)
    assert 8 == EXIT_CODES[report.status]


class MypyBreakingFixer(AutoFixer):
    """autofix, which also makes mypy disappear: the tool breaks in the middle of the run."""

    name = "break-mypy"

    def __init__(self, missing: str = "/nonexistent/airfix-test/mypy") -> None:
        self.missing = missing

    def fix(self, request: FixRequest) -> FixOutcome:
        MypyAdapter.executable_name = self.missing
        return super().fix(request)


@pytest.fixture(scope="module")
def mypy_breaks_mid_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, RunReport]:
    repo = make_repo(tmp_path_factory.mktemp("breaks"))
    base = head(repo)
    with pytest.MonkeyPatch.context() as mp, registered("break-mypy", MypyBreakingFixer):
        mp.setattr(MypyAdapter, "executable_name", MypyAdapter.executable_name)  # restored after
        _, report = run_to_end(embedded_app(), repo, fixer="break-mypy", max_iterations=1)
    return repo, base, report


def test_a_tool_that_breaks_mid_run_keeps_nothing_and_never_succeeds(
    mypy_breaks_mid_run: tuple[Path, str, RunReport],
) -> None:
    repo, base, report = mypy_breaks_mid_run
    assert report.rolled_back and not report.commits
    for r in report.rolled_back:
        assert "verification could not measure: mypy" in r["reason"], r["reason"]
    assert report.status != "succeeded" and head(repo) == base and "" == status_porcelain(repo)


def test_a_tool_that_breaks_mid_run_ends_as_tool_error(
    mypy_breaks_mid_run: tuple[Path, str, RunReport],
) -> None:
    _, _, report = mypy_breaks_mid_run
    assert "tool_error" == report.status, (report.status, report.reason)
    assert "mypy" in report.reason and ["mypy"] == report.tool_errors


# crash between "git commit" and the Committed event ------------------------------------------


def test_a_verifier_crash_after_git_commit_does_not_halt_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a handler that raises is redelivered exactly like a dead worker's entry is reclaimed: the
    # deterministic stand-in for SIGKILL between "git commit" and the append
    real_commit_all = Repo.commit_all
    crashed: list[str] = []

    def commit_then_crash(self: Repo, message: str, **kw: object) -> str:
        sha = real_commit_all(self, message, **kw)  # type: ignore[arg-type]
        if not crashed and "Airfix-Batch:" in message:  # the verifier's commit, not a candidate
            crashed.append(sha)
            raise RuntimeError("simulated crash after git commit, before the Committed event")
        return sha

    monkeypatch.setattr(Repo, "commit_all", commit_then_crash)
    repo = make_repo(tmp_path)
    base = head(repo)
    app = embedded_app(make_config(**{"consumers.retry_backoff_ms": 1}))
    run_id, report = run_to_end(app, repo, max_iterations=1, timeout_s=120)
    assert crashed
    assert ("completed", "partially_fixed") == (report.state, report.status), report.reason
    committed = on_branch(events_of(app, run_id))
    log = commits_since(repo, base)
    assert len({e.batch_id for e in committed}) == len(committed)
    assert [e.sha for e in committed] == [c["sha"] for c in log], "a commit no event records"
    # the crashed verifier's commit was made in its private worktree and never reached the branch
    assert crashed[0] not in {e.sha for e in committed}


# 7, 8: the command line -----------------------------------------------------------------------


def _cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFIX")}
    return {**env, **extra}


def _cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airfix.services.commands.cli", *args],
        check=False,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _keys_under(client, prefix: str) -> list[str]:  # type: ignore[no-untyped-def]
    found: set[str] = set()
    for pattern in (f"{prefix}:*", f"{{{prefix}:*"):
        found.update(k.decode() for k in client.scan_iter(match=pattern, count=1000))
    return sorted(found)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own on the real server, deleted before and after."""
    client = real_client()
    name = f"airfix_pt_{uuid.uuid4().hex[:10]}"
    yield name
    for key in _keys_under(client, name):
        client.delete(key)
    client.close()


def _bad_target(case: str, tmp_path: Path) -> tuple[list[str], list[str]]:
    """(command-line arguments, fragments stderr must hold) for one kind of bad input."""
    if case == "missing-path":
        path = tmp_path / "nowhere"
        return ["--target", str(path)], [str(path), "does not exist"]
    if case == "not-a-git-repo":
        path = tmp_path / "plain"
        path.mkdir()
        (path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
        return ["--target", str(path)], [str(path), "is not a git repository"]
    if case == "no-commits":
        path = tmp_path / "empty"
        path.mkdir()
        git(path, "init", "-q")
        return ["--target", str(path)], [str(path), "has no commits yet"]
    repo = make_repo(tmp_path)
    if case == "dirty-tree":
        (repo / "mini" / "core.py").write_text("x = 1\n")
        (repo / "scratch.txt").write_text("untracked\n")
        return ["--target", str(repo)], [
            str(repo),
            "uncommitted changes",
            "mini/core.py",
            "scratch.txt",
        ]
    if case == "unknown-config-key":
        cfg = tmp_path / "airfix.yaml"
        cfg.write_text("store:\n  partitons: 3\n")
        return ["--target", str(repo), "--config", str(cfg)], [
            "store.partitons",
            str(cfg),
            "line 2",
        ]
    if case == "max-iterations-0":
        return ["--target", str(repo), "--max-iterations", "0"], ["--max-iterations", "at least 1"]
    if case == "unknown-fixer":
        return ["--target", str(repo), "--fixer", "autofix,nosuch"], ["unknown fixer", "nosuch"]
    raise AssertionError(case)


BAD_INPUT = [
    "missing-path",
    "not-a-git-repo",
    "no-commits",
    "dirty-tree",
    "unknown-config-key",
    "max-iterations-0",
    "unknown-fixer",
]


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_a_clear_error_and_writes_no_event(
    case: str, tmp_path: Path, prefix: str
) -> None:
    args, expected = _bad_target(case, tmp_path)
    target = Path(args[1])
    before = (
        (tree_digest(target), refs(target))
        if (target / ".git").is_dir() and case != "no-commits"
        else None
    )
    env = _cli_env(AIRFIX__STORE__PREFIX=prefix)
    iterations = [] if case == "max-iterations-0" else ["--max-iterations", "1"]
    # --wait-timeout: should the input wrongly pass, nothing waits for workers that never come
    proc = _cli(
        ["run", "--redis-url", REAL_URL, *args, *iterations, "--json", "--wait-timeout", "5"],
        env,
        tmp_path,
        timeout=120,
    )
    assert 2 == proc.returncode, (proc.stdout, proc.stderr)
    assert "" == proc.stdout
    assert proc.stderr.startswith("airfix: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in expected:
        assert fragment in proc.stderr, (fragment, proc.stderr)
    client = real_client()
    keys = _keys_under(client, prefix)
    assert [] == [k for k in keys if ":run:" in k], keys  # KEYS <prefix>*:run:*
    assert [] == keys  # no event, no log entry, no lock, not even meta: nothing at all
    if before is not None:
        assert before == (tree_digest(target), refs(target)), "bad input changed the target"


def test_run_json_prints_one_object_and_exits_with_the_status_code(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    proc = _cli(
        ["run", "--target", str(repo), "--max-iterations", "1", "--json"], _cli_env(), tmp_path
    )
    lines = proc.stdout.strip().splitlines()
    assert 1 == len(lines), proc.stdout[-3000:]
    report = json.loads(lines[0])
    assert isinstance(report, dict)
    assert report["run_id"].startswith("run-") and "completed" == report["state"]
    assert "partially_fixed" == report["status"], report["reason"]
    assert EXIT_CODES[report["status"]] == proc.returncode == 3, proc.stderr[-3000:]
    assert 2 == len(report["commits"]) and report["issues_before"] == MINI_RUFF
    assert 1 == report["issues_after"]  # E741: no fixer for it
    assert "run requested" in proc.stderr  # the logs went to stderr
    assert report["run_id"] in proc.stderr
    assert f"airfix/{report['run_id']}" == branch(repo) and "" == status_porcelain(repo)


def test_one_active_run_per_target(tmp_path: Path) -> None:
    """A second request on a target with an unfinished run is refused and writes nothing."""
    from airfix.events.errors import AirfixError
    from airfix.services.pipeline.requests import request_run, run_inline

    repo = make_repo(tmp_path)
    app = embedded_app()
    first = request_run(
        app, app.config, repo, batching="smart", fixer="autofix", simulation=True, max_iterations=1
    )
    runs_before = app.client.zcard(app.keys.runs) if app.client.exists(app.keys.runs) else 0
    with pytest.raises(AirfixError, match=f"run {first} is still active"):
        request_run(
            app,
            app.config,
            repo,
            batching="smart",
            fixer="autofix",
            simulation=True,
            max_iterations=1,
        )
    assert runs_before == (
        app.client.zcard(app.keys.runs) if app.client.exists(app.keys.runs) else 0
    )
    run_inline(app, first)  # once it is finished, the target is free again
    second = request_run(
        app, app.config, repo, batching="smart", fixer="autofix", simulation=True, max_iterations=1
    )
    assert second != first
