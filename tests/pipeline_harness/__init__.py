"""Helpers for the pipeline tests (``tests/test_pipeline*.py``): small git repositories, isolated
stores, an in-process run with a time limit, independent tool counts and tree fingerprints.

Nothing here changes airfix: a test fixer is registered with :func:`registered` and removed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from airfix.config import Config, load_config
from airfix.events.keys import Keys
from airfix.events.storage.backend import connect
from airfix.events.storage.store import EventStore
from airfix.projections.report import RunReport, build_report
from airfix.projections.status import load_status
from airfix.services import fixers
from airfix.services.commands.ops import timeline
from airfix.services.pipeline.requests import finalize, release_lock, request_run, run_inline
from airfix.services.runtime.app import App

GIT_ENV = {
    "GIT_AUTHOR_NAME": "tester",
    "GIT_AUTHOR_EMAIL": "tester@localhost",
    "GIT_COMMITTER_NAME": "tester",
    "GIT_COMMITTER_EMAIL": "tester@localhost",
}

# A tiny project: ruff finds two unused imports (F401, one cleanup batch), an f-string without
# placeholders (F541, its own batch) -- safe fixes -- and an ambiguous name (E741) that no fixer
# repairs, so a run ends partially fixed; mypy is clean; pytest runs 2 passing tests.
MINI_FILES: dict[str, str] = {
    "pyproject.toml": """\
[project]
name = "mini"
version = "0.1.0"
requires-python = ">=3.11"

[tool.ruff]
line-length = 100
target-version = "py311"

[tool.ruff.lint]
select = ["E", "F", "W", "I"]

[tool.mypy]
files = ["mini", "tests"]
python_version = "3.11"

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["."]
""",
    "mini/__init__.py": "",
    "mini/core.py": """\
import os
import sys


def add(a: int, b: int) -> int:
    return a + b


def greet(name: str) -> str:
    prefix = f"hello "
    return prefix + name


def first(items: list[int]) -> int:
    for l in items:
        return l
    return 0
""",
    "tests/__init__.py": "",
    "tests/test_core.py": """\
from mini.core import add, greet


def test_add() -> None:
    assert add(1, 2) == 3


def test_greet() -> None:
    assert greet("x") == "hello x"
""",
}
MINI_RUFF = 4  # F401 os, F401 sys, F541 (safe fixes), E741 (no fix)


def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(
        ["git", *args],
        check=False,
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def make_repo(root: Path, files: dict[str, str] | None = None, *, name: str = "mini") -> Path:
    """A git repository (branch ``main``, one commit) holding ``files`` (default: the mini project)."""
    repo = root / name
    for rel, text in (MINI_FILES if files is None else files).items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def branch(repo: Path) -> str:
    return git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip()


def refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


def status_porcelain(repo: Path) -> str:
    return git(repo, "status", "--porcelain", "--untracked-files=all", "--ignored")


def tree_digest(repo: Path) -> dict[str, str]:
    """sha256 of every file under ``repo`` except ``.git/`` (untracked and ignored ones included)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(repo):
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) == repo and d == ".git")]
        for f in filenames:
            p = Path(dirpath) / f
            out[p.relative_to(repo).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def commits_since(repo: Path, base: str, ref: str = "HEAD") -> list[dict[str, str]]:
    """Commits in ``base..ref``, oldest first: sha, subject, full message."""
    out = git(repo, "log", "--reverse", "--format=%H%x1f%s%x1f%B%x1e", f"{base}..{ref}")
    rows = []
    for rec in out.split("\x1e"):
        rec = rec.strip("\n")
        if not rec.strip():
            continue
        sha, subject, body = rec.split("\x1f", 2)
        rows.append({"sha": sha, "subject": subject, "message": body.strip()})
    return rows


# ------------------------------------------------------------------------------ stores and runs


def make_config(**overrides: Any) -> Config:
    """Defaults only (the environment is ignored), plus dotted-key overrides."""
    return load_config(overrides=overrides or None, env={})


def embedded_app(config: Config | None = None) -> App:
    """An app on its own fresh embedded store (no other test shares it)."""
    cfg = config or make_config()
    client = connect(fresh_embedded=True)
    keys = Keys(prefix=cfg.store.prefix, partitions=cfg.store.partitions)
    return App(cfg, client, EventStore(client, keys))


def server_app(url: str, config: Config | None = None) -> App:
    cfg = config or make_config(**{"store.redis_url": url})
    client = connect(url)
    keys = Keys(prefix=cfg.store.prefix, partitions=cfg.store.partitions)
    return App(cfg, client, EventStore(client, keys))


class RunTimeout(AssertionError):
    pass


def run_to_end(
    app: App,
    target: Path,
    *,
    fixer: str = "autofix",
    batching: str = "smart",
    simulation: bool = False,
    max_iterations: int = 1,
    timeout_s: float = 240.0,
) -> tuple[str, RunReport]:
    """Request a run and host it in this process until it is terminal (or fail after ``timeout_s``,
    or as soon as a consumer group halts the run)."""
    run_id = request_run(
        app,
        app.config,
        target,
        batching=batching,
        fixer=fixer,
        simulation=simulation,
        max_iterations=max_iterations,
    )
    deadline = time.monotonic() + timeout_s
    last_check = [0.0]

    def progress() -> None:
        now = time.monotonic()
        if now - last_check[0] < 0.5:
            return
        last_check[0] = now
        status = load_status(app.client, app.keys, run_id)
        if status is not None and status.get("halted"):
            raise RunTimeout(f"run {run_id} halted: {status['halted']}")
        if now > deadline:
            raise RunTimeout(f"run {run_id} not finished after {timeout_s}s: {status}")

    try:
        run_inline(app, run_id, progress=progress)
    finally:
        status = load_status(app.client, app.keys, run_id)
        if status is not None and status.get("state") == "completed":
            release_lock(app, status["target"], run_id)
    assert_replay_equals_status(app, run_id)
    report = build_report(app.store.read_run(run_id))
    report.checkout = finalize(report, app.config)  # as airfix run does once a run is over
    return run_id, report


def assert_replay_equals_status(app: App, run_id: str) -> None:
    """``airfix replay``'s final state equals the live status projection (every pipeline run)."""
    _, final = timeline(app.store.read_run(run_id))
    live = load_status(app.client, app.keys, run_id)
    assert live is not None, f"no status for {run_id}"
    live.pop("halted")
    assert msgspec.to_builtins(final) == live, f"replay of {run_id} differs from its live status"


def events_of(app: App, run_id: str) -> list[Any]:
    return list(app.store.read_run(run_id))


def event_types(app: App, run_id: str) -> list[str]:
    return [type(e).__name__ for e in events_of(app, run_id)]


@contextlib.contextmanager
def registered(name: str, factory: Callable[[], Any]) -> Iterator[None]:
    """``fixers.register(name, factory)`` for the duration of a test."""
    previous = fixers.REGISTRY.get(name)
    fixers.register(name, factory)
    try:
        yield
    finally:
        if previous is None:
            fixers.REGISTRY.pop(name, None)
        else:
            fixers.REGISTRY[name] = previous


# ------------------------------------------------------------------------------ independent counts


def tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.is_file() else name


def ruff_count(repo: Path) -> int:
    proc = subprocess.run(
        [tool("ruff"), "check", "--no-cache", "--output-format", "json", "."],
        check=False,
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return len(json.loads(proc.stdout))


def mypy_count(repo: Path, cache_dir: Path) -> int:
    proc = subprocess.run(
        [tool("mypy"), "-O", "json", "--cache-dir", str(cache_dir)],
        check=False,
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return sum(1 for r in records if r.get("severity", "error") == "error")


def pytest_failed(repo: Path) -> tuple[int, int]:
    """(failed + errors, total) of the project's tests, from pytest's own summary line."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--no-header",
        ],
        check=False,
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|errors?|skipped)", summary)}
    bad = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    return bad, bad + counts.get("passed", 0) + counts.get("skipped", 0)
