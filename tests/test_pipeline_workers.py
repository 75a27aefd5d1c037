"""The fix pipeline hosted by ``airfix worker`` processes on the real server.

Every test works under a key prefix of its own (``AIRFIX__STORE__PREFIX``) on ``REAL_URL``, so
other tests sharing the database neither see its runs nor disturb them; its keys are deleted
afterwards.  Workers run with a 2 s lease, so a dead worker's partitions move within seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airfix.events.schema import Committed, FixFailed, FixStarted, RunStarted
from airfix.projections.status import load_status
from airfix.services.run import request_run
from tests.conftest import REAL_URL, real_client
from tests.pipeline_harness import (
    branch,
    commits_since,
    events_of,
    git,
    head,
    make_config,
    make_repo,
    registered,
    server_app,
    status_porcelain,
)
from tests.pipeline_harness.cheats import SlowFixer

ROOT = Path(__file__).resolve().parents[1]
FAST = {"AIRFIX__CONSUMERS__LEASE_TTL_MS": "2000", "AIRFIX__CONSUMERS__REBALANCE_INTERVAL_MS": "200",
        "AIRFIX__CONSUMERS__BLOCK_MS": "200", "AIRFIX__CONSUMERS__HEARTBEAT_INTERVAL_MS": "500"}


def _keys_under(client, prefix: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    found: set[bytes] = set()
    for pattern in (f"{prefix}:*", f"{{{prefix}:*", f"harness:{prefix}*"):
        found.update(client.scan_iter(match=pattern, count=1000))
    return sorted(found)


@pytest.fixture
def prefix() -> Iterator[str]:
    client = real_client()
    name = f"airfix_pw_{uuid.uuid4().hex[:10]}"
    yield name
    for key in _keys_under(client, name):
        client.delete(key)
    client.close()


def _env(prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFIX")}
    return {**env, **FAST, "AIRFIX__STORE__PREFIX": prefix, "PYTHONPATH": str(ROOT), **extra}


class Workers:
    """Worker processes of one test, logging to files; whatever is still alive is killed at the end."""

    def __init__(self, tmp_path: Path, prefix: str) -> None:
        self.tmp_path = tmp_path
        self.prefix = prefix
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *, harness: bool = False, **env: str) -> subprocess.Popen[bytes]:
        module = "tests.pipeline_harness.worker" if harness else "airfix.services.cli"
        args = ([] if harness else ["worker"]) + ["--redis-url", REAL_URL, "--roles", "all",
                                                  "--name", name, "--log-format", "json"]
        with open(self.log(name), "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT,
                                    env=_env(self.prefix, **env), stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> Path:
        return self.tmp_path / f"worker-{name}.log"

    def tail(self, name: str, n: int = 3000) -> str:
        path = self.log(name)
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {n}:\n{self.tail(n)}" for n in self.procs)

    def stop(self, name: str, timeout: float = 30) -> int:
        proc = self.procs[name]
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {name} ignored SIGTERM for {timeout}s:\n{self.tail(name)}")

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def workers(tmp_path: Path, prefix: str) -> Iterator[Workers]:
    w = Workers(tmp_path, prefix)
    try:
        yield w
    finally:
        w.kill_all()


def _cli(args: list[str], prefix: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airfix.services.cli", *args], check=False,
                          env=_env(prefix), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _assert_commits_match_events(repo: Path, base: str, run_branch: str, committed: list[Committed]) -> None:
    log = commits_since(repo, base, run_branch)
    assert log, "no commit on the run branch"
    assert len({e.batch_id for e in committed}) == len(committed), "a batch was committed twice"
    assert len(committed) == len(log), ([e.sha for e in committed], [c["sha"] for c in log])
    assert [e.sha for e in committed] == [c["sha"] for c in log]
    batches = [line.split(":", 1)[1].strip() for c in log for line in c["message"].splitlines()
               if line.startswith("Airfix-Batch:")]
    assert batches == [e.batch_id for e in committed]


# 9 -------------------------------------------------------------------------------------------


def test_two_workers_host_a_run_that_the_cli_waits_for(tmp_path: Path, prefix: str, workers: Workers) -> None:
    repo = make_repo(tmp_path)
    base = head(repo)
    for name in ("w1", "w2"):
        workers.start(name)
    proc = _cli(["run", "--redis-url", REAL_URL, "--target", str(repo), "--max-iterations", "1",
                 "--json", "--wait-timeout", "240"], prefix, timeout=300)
    assert proc.returncode == 3, f"{proc.stdout}\n{proc.stderr[-3000:]}\n{workers.logs()}"
    lines = proc.stdout.strip().splitlines()
    assert 1 == len(lines), proc.stdout
    report = json.loads(lines[0])
    run_id = report["run_id"]
    assert ("completed", "partially_fixed") == (report["state"], report["status"]), report["reason"]
    assert 2 == len(report["commits"])

    app = server_app(REAL_URL, make_config(**{"store.redis_url": REAL_URL, "store.prefix": prefix}))
    events = events_of(app, run_id)
    hosts = {e.worker for e in events if isinstance(e, (RunStarted, FixStarted))}
    assert hosts and hosts <= {"w1", "w2"}, hosts  # the workers did the work, not the CLI process
    run_branch = f"airfix/{run_id}"
    assert run_branch == branch(repo) and "" == status_porcelain(repo)
    _assert_commits_match_events(repo, base, run_branch, [e for e in events if isinstance(e, Committed)])
    assert base == git(repo, "rev-parse", "refs/heads/main").strip()

    status = _cli(["status", run_id, "--json", "--redis-url", REAL_URL], prefix, timeout=60)
    assert 0 == status.returncode, status.stderr
    st = json.loads(status.stdout)
    assert (run_id, "completed", "partially_fixed") == (st["run_id"], st["state"], st["status"])
    assert [c["sha"] for c in report["commits"]] == st["commits"] and {} == st["halted"]
    latest = _cli(["status", "--json", "--redis-url", REAL_URL], prefix, timeout=60)  # the latest run
    assert 0 == latest.returncode and run_id == json.loads(latest.stdout)["run_id"]
    runs = _cli(["runs", "--json", "--redis-url", REAL_URL], prefix, timeout=60)
    assert 0 == runs.returncode, runs.stderr
    rows = json.loads(runs.stdout)
    assert [run_id] == [r["run_id"] for r in rows]
    assert "partially_fixed" == rows[0]["status"] and str(repo) == rows[0]["target"]

    for name in ("w1", "w2"):
        assert 0 == workers.stop(name), workers.tail(name)


# 10 ------------------------------------------------------------------------------------------


def _wait(what: str, predicate, timeout: float, workers: Workers):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{workers.logs()}")
        time.sleep(0.05)


def _started(client, key: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(pid, batch id) of every fix slowfix started, in order (the harness's ``<key>:log``)."""
    rows = [r.decode() if isinstance(r, bytes) else str(r) for r in client.lrange(f"{key}:log", 0, -1)]
    return [(pid, batch) for pid, batch in (r.split(" ", 1) for r in rows)]


def test_a_worker_killed_mid_fix_is_replaced_and_the_run_completes(tmp_path: Path, prefix: str,
                                                                   workers: Workers) -> None:
    client = real_client()
    repo = make_repo(tmp_path)
    base = head(repo)
    started_key = f"harness:{prefix}:slowfix_started"
    slow = {"HARNESS_SLOWFIX_DELAY_S": "2", "HARNESS_SLOWFIX_KEY": started_key}
    first = workers.start("h1", harness=True, **slow)

    app = server_app(REAL_URL, make_config(**{"store.redis_url": REAL_URL, "store.prefix": prefix}))
    with registered("slowfix", SlowFixer):  # request_run checks the fixer chain here, too
        run_id = request_run(app, app.config, repo, batching="smart", fixer="slowfix",
                             simulation=False, max_iterations=1)

    _wait("slowfix to start in h1", lambda: int(client.get(started_key) or 0) >= 1, 120, workers)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert -signal.SIGKILL == first.returncode
    killed_in = _started(client, started_key)
    assert 1 == len(killed_in) and str(first.pid) == killed_in[0][0]
    killed_batch = killed_in[0][1]
    assert head(repo) == base  # it died before anything was committed

    second = workers.start("h2", harness=True, **slow)

    def finished():  # type: ignore[no-untyped-def]
        status = load_status(app.client, app.keys, run_id)
        if status and status["halted"]:
            pytest.fail(f"run halted: {status['halted']}\n{workers.logs()}")
        return status if status and status["state"] == "completed" else None

    status = _wait("the run to complete on h2", finished, 240, workers)
    assert "partially_fixed" == status["status"], status["reason"]

    starts = _started(client, started_key)
    assert (str(first.pid), killed_batch) == starts[0]
    # the interrupted fix is never paid for twice: h2 records it as failed and goes on
    assert killed_batch not in {b for _, b in starts[1:]}, starts
    assert all(pid == str(second.pid) for pid, _ in starts[1:])

    events = events_of(app, run_id)
    fix_starts = [e for e in events if isinstance(e, FixStarted)]
    assert len({e.batch_id for e in fix_starts}) == len(fix_starts), "a batch was started twice"
    assert next(e for e in fix_starts if e.batch_id == killed_batch).worker == "h1"
    failed = [e for e in events if isinstance(e, FixFailed) and e.batch_id == killed_batch]
    assert 1 == len(failed) and "died while fixing" in failed[0].reason
    committed = [e for e in events if isinstance(e, Committed)]
    assert killed_batch not in {e.batch_id for e in committed}
    assert committed, "the other batches were still fixed and committed"
    run_branch = f"airfix/{run_id}"
    assert run_branch == branch(repo) and "" == status_porcelain(repo)
    _assert_commits_match_events(repo, base, run_branch, committed)
    assert [e.sha for e in committed] == status["commits"]
    assert 0 == workers.stop("h2"), workers.tail("h2")
    with contextlib.suppress(Exception):
        client.close()
