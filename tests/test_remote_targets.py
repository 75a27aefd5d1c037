"""Targets as git remotes (services/pipeline/workspace.py), with real git and no mocks.

A run on a ``file://`` remote and on a ``git daemon`` on loopback, hosted in this process with a
workspace of its own and no checkout of the target anywhere: the commits land on
``airfix/<run_id>`` on the remote and an independent clone measures them again.  Then the pieces:
a stale push fails, the clone cache is bounded, a password never reaches the log.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airfix.events.errors import AirfixError
from airfix.events.schema import Committed, RunRequested, StackLanded
from airfix.projections.report import build_report
from airfix.services.pipeline import claims
from airfix.services.pipeline.git import ZERO, GitError
from airfix.services.pipeline.requests import (
    finalize,
    fresh_sample_repo,
    release_lock,
    request_run,
    run_inline,
    target_lock_key,
)
from airfix.services.pipeline.workspace import (
    Workspace,
    is_remote,
    normalise,
    public_url,
    target_identity,
)
from tests.pipeline_harness import embedded_app, git, make_config, ruff_count


def bare_remote(root: Path, name: str = "sample.git") -> tuple[Path, str]:
    """A bare repository holding the bundled sample (the working copy it came from is deleted)."""
    source = fresh_sample_repo()
    remote = root / "remotes" / name
    remote.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(source), str(remote)], check=True)
    shutil.rmtree(source.parent)
    return remote, git(remote, "rev-parse", "HEAD").strip()


def run_remote(tmp_path: Path, url: str, **overrides: object) -> tuple[str, object]:
    """Request and host a run on ``url``, the workspace under ``tmp_path/ws``."""
    cfg = make_config(**{"git.workspace": str(tmp_path / "ws"), **overrides})
    app = embedded_app(cfg)
    run_id = request_run(
        app, cfg, url, batching="smart", fixer="autofix", simulation=False, max_iterations=1
    )
    run_inline(app, run_id)
    release_lock(app, url, run_id)
    report = build_report(app.store.read_run(run_id))
    report.checkout = finalize(report, cfg)
    return run_id, (app, report)


def independent_clone(url: str, branch: str, where: Path) -> Path:
    subprocess.run(["git", "clone", "-q", "--branch", branch, url, str(where)], check=True)
    return where


def check_landed(tmp_path: Path, url: str, base: str, run_id: str, app, report) -> None:  # type: ignore[no-untyped-def]
    assert report.status != "failed", report
    branch = f"airfix/{run_id}"
    assert report.branch == branch
    assert report.checkout == f"the commits are on branch {branch} of {url}"
    events = list(app.store.read_run(run_id))
    shas = [e.sha for e in events if isinstance(e, Committed)]
    shas += [c.sha for e in events if isinstance(e, StackLanded) for c in e.commits]
    assert report.commits, "the sample's ruff issues give the autofix fixer work"
    clone = independent_clone(url, branch, tmp_path / f"check-{run_id}")
    assert git(clone, "rev-parse", "HEAD").strip() == report.commits[-1]["sha"]
    assert report.commits[-1]["sha"] in shas
    assert git(clone, "merge-base", "--is-ancestor", base, "HEAD", check=False) == ""
    # the refs that carried the commits between workers are gone once the branch holds them
    assert not git(clone, "ls-remote", url, f"refs/airfix/{run_id}/*").strip()
    # measured again, independently: fewer ruff issues on the branch than at the base
    before = tmp_path / f"base-{run_id}"
    subprocess.run(["git", "clone", "-q", url, str(before)], check=True)
    assert git(before, "rev-parse", "HEAD").strip() == base
    assert ruff_count(clone) < ruff_count(before)
    # the workspace held the clone; no worktree is left behind
    ws = Workspace.of(make_config(**{"git.workspace": str(tmp_path / "ws")}))
    assert ws.describe()[0] == 1
    assert not [w for c in ws.clones.glob("*.git") for w in (c / "worktrees").glob("*")]


def test_a_run_on_a_file_remote_lands_its_commits_on_the_remote_branch(tmp_path: Path) -> None:
    remote, base = bare_remote(tmp_path)
    url = f"file://{remote}"
    run_id, (app, report) = run_remote(tmp_path, url)
    check_landed(tmp_path, url, base, run_id, app, report)
    first = next(iter(app.store.read_run(run_id)))
    assert isinstance(first, RunRequested) and first.target == url


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """``git daemon`` on loopback serving ``tmp_path/remotes`` (pushes allowed)."""
    if shutil.which("git") is None or subprocess.run(
        ["git", "daemon", "-h"], capture_output=True, check=False
    ).returncode not in (0, 129):
        pytest.skip("git daemon is not available")
    base = tmp_path / "remotes"
    base.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["git", "daemon", f"--base-path={base}", "--export-all", "--enable=receive-pack",
         "--reuseaddr", "--listen=127.0.0.1", f"--port={port}", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield base, port
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_run_on_a_git_daemon_remote(tmp_path: Path, daemon: tuple[Path, int]) -> None:
    root, port = daemon
    remote, base = bare_remote(tmp_path, "served.git")
    assert remote.parent == root
    url = f"git://127.0.0.1:{port}/served.git"
    run_id, (app, report) = run_remote(tmp_path, url)
    check_landed(tmp_path, url, base, run_id, app, report)


def test_a_stale_push_fails(tmp_path: Path) -> None:
    """The run branch moves by --force-with-lease: a worker expecting an old value loses."""
    remote, base = bare_remote(tmp_path)
    url = f"file://{remote}"
    ws = Workspace(tmp_path / "ws")
    mine = ws.remote(url, "r1", [base])
    stale = Workspace(tmp_path / "ws-stale").remote(url, "r1", [base])
    ref = "refs/heads/airfix/r1"
    tree = mine.clone.git("rev-parse", f"{base}^{{tree}}").strip()
    one = mine.clone.git("commit-tree", tree, "-p", base, "-m", "one").strip()
    two = stale.clone.git("commit-tree", tree, "-p", base, "-m", "two").strip()
    assert mine.move_ref(ref, base, ZERO)
    assert not stale.move_ref(ref, two, ZERO)  # must not exist yet: it does
    mine.publish("r1", [one])
    assert mine.move_ref(ref, one, base)
    assert not stale.move_ref(ref, two, base)  # it expected base: the branch is at one now
    assert mine.ref(ref) == one
    stale.ensure("r1", [one])  # the published commit is fetchable by another worker
    assert stale.clone.succeeds("cat-file", "-e", f"{one}^{{commit}}")
    assert mine.move_ref(ref, ZERO, one) and mine.ref(ref) is None
    with pytest.raises(GitError, match="has no commit"):
        stale.ensure("r1", ["f" * 40])


def test_the_clone_cache_evicts_the_least_recently_used(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", max_clones=2)
    urls = []
    for name in ("a.git", "b.git", "c.git"):
        remote, base = bare_remote(tmp_path, name)
        urls.append((f"file://{remote}", base))
    a, b, c = urls
    ws.remote(a[0], "r", [a[1]])
    time.sleep(0.02)
    ws.remote(b[0], "r", [b[1]])
    time.sleep(0.02)
    ws.remote(a[0], "r", [a[1]])  # a used again: b is now the least recently used
    time.sleep(0.02)
    ws.remote(c[0], "r", [c[1]])
    kept = sorted((p / "airfix-url").read_text().strip() for p in ws.clones.glob("*.git"))
    assert kept == sorted([a[0], c[0]])
    count, size = ws.describe()
    assert count == 2 and size > 0


def test_urls_are_told_from_paths_and_normalised(tmp_path: Path) -> None:
    assert is_remote("https://example.com/o/r.git")
    assert is_remote("git@github.com:o/r.git")
    assert is_remote("file:///srv/r.git")
    assert not is_remote(str(tmp_path))
    assert not is_remote("relative/dir")
    same = {
        normalise(u)
        for u in (
            "https://tok:s3cretvalue@GitHub.com/o/r.git",
            "https://github.com/o/r",
            "https://github.com/o/r/",
        )
    }
    assert same == {"https://github.com/o/r"}
    assert normalise("git@github.com:o/r.git") == normalise("ssh://git@github.com/o/r")
    assert public_url("https://tok:s3cretvalue@h/o/r.git") == "https://h/o/r.git"
    assert public_url("https://ghp_abcdefghijklmnopqrstuvwx@h/r") == "https://h/r"
    assert public_url("ssh://git@h/r") == "ssh://git@h/r"
    assert target_identity("https://h/r.git") == target_identity("https://u:p@h/r")


def everything_in(client) -> str:  # type: ignore[no-untyped-def]
    """Every value the store holds (streams, hashes, strings, sets), as one text."""
    out = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "stream":
            out += [repr(fields) for _, fields in client.xrange(key)]
        elif kind == "hash":
            out.append(repr(client.hgetall(key)))
        elif kind == "string":
            out.append(repr(client.get(key)))
        elif kind == "zset":
            out.append(repr(client.zrange(key, 0, -1)))
        elif kind == "set":
            out.append(repr(client.smembers(key)))
        elif kind == "list":
            out.append(repr(client.lrange(key, 0, -1)))
    return "\n".join(out)


def test_a_password_in_the_url_never_reaches_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The requester's URL carries a token; git maps both spellings to the real remote (as a
    credential helper would authenticate the worker), and nothing recorded holds the token."""
    remote, base = bare_remote(tmp_path)
    secret = "s3cret-t0ken-value"
    with_secret = f"https://bot:{secret}@git.example.invalid/team/sample.git"
    recorded = "https://git.example.invalid/team/sample.git"
    gitconfig = tmp_path / "gitconfig"
    for spelling in (with_secret, recorded):
        subprocess.run(
            ["git", "config", "--file", str(gitconfig), "--add",
             f"url.file://{remote}.insteadOf", spelling],
            check=True,
        )  # fmt: skip
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    run_id, (app, report) = run_remote(tmp_path, with_secret)
    assert report.commits and report.target == recorded
    raw = everything_in(app.client)
    assert secret not in raw and "git.example.invalid" in raw
    assert secret not in capsys.readouterr().err
    assert target_lock_key(app, with_secret) == target_lock_key(app, recorded)
    # an unreachable remote: the error names it without the token
    with pytest.raises(AirfixError) as info:
        request_run(
            app, app.config, f"https://bot:{secret}@127.0.0.1:9/nothing.git",
            batching="smart", fixer="autofix", simulation=False, max_iterations=1,
        )  # fmt: skip
    assert secret not in str(info.value) and "not a reachable git remote" in str(info.value)
    assert git(remote, "rev-parse", f"airfix/{run_id}").strip() == report.commits[-1]["sha"]
    assert base != report.commits[-1]["sha"]


def test_doctor_shows_the_workspace_and_its_clones(tmp_path: Path) -> None:
    remote, base = bare_remote(tmp_path)
    url = f"file://{remote}"
    Workspace(tmp_path / "ws").remote(url, "r", [base])
    left = tmp_path / "ws" / "0123456789ab" / "run-a" / "fix-w1"  # its lock free: owner gone
    left.mkdir(parents=True)
    claims.lock_path(left).write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFIX")} | {
        "AIRFIX__GIT__WORKSPACE": str(tmp_path / "ws")
    }
    out = subprocess.run(
        [sys.executable, "-m", "airfix.services.commands.cli", "doctor", "--json", "--target", url],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    findings = json.loads(out.stdout)["findings"]
    ws = [f for f in findings if f["section"] == "workspace"]
    assert ws[0]["name"] == "clones" and ws[0]["detail"].startswith(
        f"{tmp_path / 'ws'}: 1 clone(s)"
    )
    assert ws[1]["detail"].startswith(url)
    assert ws[2]["name"] == "writable" and ws[2]["ok"], ws
    assert ws[3]["name"] == "worktrees" and ws[3]["detail"].startswith("1 left by processes")
    assert left.is_dir()  # doctor removes nothing
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a workspace under a file can never be made
    env["AIRFIX__GIT__WORKSPACE"] = str(blocked / "ws")
    out = subprocess.run(
        [sys.executable, "-m", "airfix.services.commands.cli", "doctor", "--json"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    bad = [f for f in json.loads(out.stdout)["findings"] if f["name"] == "writable"]
    assert out.returncode != 0 and not bad[0]["ok"], out.stdout
    assert f"{blocked} is not a directory" in bad[0]["detail"] and not (blocked / "ws").exists()


def test_airfix_run_on_a_remote_hosted_by_two_worker_processes(tmp_path: Path) -> None:
    """``airfix run --target URL`` with two ``airfix worker`` processes, each with a workspace of
    its own; the requester has no checkout: the report names the remote branch, which holds the
    commits the log records."""
    from airfix.events.schema import FixStarted, RunStarted
    from tests.conftest import REAL_URL
    from tests.pipeline_harness import server_app
    from tests.pipeline_harness.workers import new_prefix, worker_env, worker_pool

    remote, base = bare_remote(tmp_path)
    url = f"file://{remote}"
    prefixes = new_prefix()
    prefix = next(prefixes)
    pool = worker_pool(tmp_path, prefix)
    workers = next(pool)
    try:
        for name in ("w1", "w2"):
            workers.start(name, AIRFIX__GIT__WORKSPACE=str(tmp_path / f"ws-{name}"))
        proc = subprocess.run(
            [sys.executable, "-m", "airfix.services.commands.cli", "run", "--redis-url", REAL_URL,
             "--target", url, "--max-iterations", "1", "--json", "--wait-timeout", "400"],
            env=worker_env(prefix, AIRFIX__GIT__WORKSPACE=str(tmp_path / "ws-requester")),
            cwd=tmp_path, capture_output=True, text=True, timeout=500, check=False,
        )  # fmt: skip
        assert proc.stdout.strip(), f"{proc.stderr[-3000:]}\n{workers.logs()}"
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        run_id = report["run_id"]
        assert report["state"] == "completed" and report["commits"], report
        assert report["checkout"] == f"the commits are on branch airfix/{run_id} of {url}"
        tip = git(remote, "rev-parse", f"refs/heads/airfix/{run_id}").strip()
        assert tip == report["commits"][-1]["sha"]
        assert git(remote, "rev-parse", "HEAD").strip() == base  # main is untouched
        app = server_app(
            REAL_URL, make_config(**{"store.redis_url": REAL_URL, "store.prefix": prefix})
        )
        events = list(app.store.read_run(run_id))
        hosts = {e.worker for e in events if isinstance(e, RunStarted | FixStarted)}
        assert hosts and hosts <= {"w1", "w2"}, hosts
        for name in ("w1", "w2"):  # every worker that hosted a step did so from its own clone
            count, _ = Workspace(tmp_path / f"ws-{name}").describe()
            assert count == (1 if name in hosts else count)
        clone = independent_clone(url, f"airfix/{run_id}", tmp_path / "check")
        before = tmp_path / "before"
        subprocess.run(["git", "clone", "-q", url, str(before)], check=True)
        assert ruff_count(clone) < ruff_count(before)
    finally:
        next(pool, None)
        next(prefixes, None)


def test_an_airflow_run_on_a_remote_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DAG's ``target_project`` param takes a URL: the baseline is measured in a worktree of
    a clone, the run is requested and followed, and each commit's facts are read from a clone."""
    from airfix.airflow_glue.runs import FixParams, baseline, commit_facts, follow, submit

    remote, base = bare_remote(tmp_path)
    url = f"file://{remote}"
    monkeypatch.setenv("AIRFIX__GIT__WORKSPACE", str(tmp_path / "ws-airflow"))
    cfg = make_config(**{"git.workspace": str(tmp_path / "ws-airflow")})
    measured = baseline(cfg, url)
    assert measured["target"] == url and measured["head"] == base and measured["issues"] > 0
    fp = FixParams.from_params({"target_project": url, "max_iterations": 1, "execution": "inline"})
    app = embedded_app(cfg)
    run_id = submit(app, fp, "af-remote-1")
    lines: list[str] = []
    report = follow(app, run_id, lines.append, inline=True)
    assert report.commits and report.checkout.endswith(f"airfix/{run_id} of {url}")
    facts = commit_facts(url, run_id, report.commits[0])
    assert facts["files"] >= 1
    assert git(remote, "rev-parse", f"airfix/{run_id}").strip() == report.commits[-1]["sha"]


def test_the_default_workspace_is_the_user_cache_and_a_run_leaves_it_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``git.workspace`` the steps' worktrees live under ``$XDG_CACHE_HOME/airfix``
    (clones are a cache; the temporary directory is RAM or swept by cleaners), and each run's
    directory goes with its last worktree: after a run, nothing of it is left there."""
    from tests.pipeline_harness import MINI_FILES, make_repo, run_to_end

    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    root = cache / "airfix" / "workspace"
    assert Workspace.of(make_config()).root == root
    repo = make_repo(tmp_path, MINI_FILES)
    app = embedded_app(make_config())
    _, report = run_to_end(app, repo, max_iterations=1)
    assert report.commits, report  # steps ran, each in a worktree there
    assert root.is_dir() and [p.parent for p in root.iterdir()] == [root]  # the target's dir
    assert not list(root.glob("*/*")), list(root.rglob("*"))  # no run directory, no tree
    assert len(git(repo, "worktree", "list").splitlines()) == 1
