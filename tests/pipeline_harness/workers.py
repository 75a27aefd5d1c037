"""Real ``airfix worker`` processes for a test: started under the test's own key prefix on the
real server, logging to files, killed at the end; and the checks every worker test makes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from airfix.events.schema import Committed, Landed
from tests.conftest import REAL_URL, real_client
from tests.pipeline_harness import commits_since

ROOT = Path(__file__).resolve().parents[2]
FAST = {
    "AIRFIX__CONSUMERS__LEASE_TTL_MS": "2000",
    "AIRFIX__CONSUMERS__REBALANCE_INTERVAL_MS": "200",
    "AIRFIX__CONSUMERS__BLOCK_MS": "200",
    "AIRFIX__CONSUMERS__HEARTBEAT_INTERVAL_MS": "500",
}


def keys_under(client, prefix: str) -> list[bytes]:  # type: ignore[no-untyped-def]
    found: set[bytes] = set()
    for pattern in (f"{prefix}:*", f"{{{prefix}:*", f"harness:{prefix}*"):
        found.update(client.scan_iter(match=pattern, count=1000))
    return sorted(found)


def new_prefix() -> Iterator[str]:
    """A key prefix of the test's own; its keys are deleted afterwards."""
    client = real_client()
    name = f"airfix_pw_{uuid.uuid4().hex[:10]}"
    yield name
    for key in keys_under(client, name):
        client.delete(key)
    client.close()


def worker_env(prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFIX")}
    return {**env, **FAST, "AIRFIX__STORE__PREFIX": prefix, "PYTHONPATH": str(ROOT), **extra}


class Workers:
    """Worker processes of one test, logging to files; whatever is still alive is killed at the end."""

    def __init__(self, tmp_path: Path, prefix: str) -> None:
        self.tmp_path = tmp_path
        self.prefix = prefix
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *, harness: bool = False, **env: str) -> subprocess.Popen[bytes]:
        module = "tests.pipeline_harness.worker" if harness else "airfix.services.commands.cli"
        args = ([] if harness else ["worker"]) + [
            "--redis-url",
            REAL_URL,
            "--roles",
            "all",
            "--name",
            name,
            "--log-format",
            "json",
        ]
        # the test's workers share a workspace, as workers on one machine share the default one
        env.setdefault("AIRFIX__GIT__WORKSPACE", str(self.workspace))
        with open(self.log(name), "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=ROOT,
                env=worker_env(self.prefix, **env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        return proc

    @property
    def workspace(self) -> Path:
        return self.tmp_path / "workspace"

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


def worker_pool(tmp_path: Path, prefix: str) -> Iterator[Workers]:
    w = Workers(tmp_path, prefix)
    try:
        yield w
    finally:
        w.kill_all()


def cli(args: list[str], prefix: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airfix.services.commands.cli", *args],
        check=False,
        env=worker_env(prefix),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_commits_match_events(
    repo: Path, base: str, run_branch: str, committed: Sequence[Committed | Landed]
) -> None:
    log = commits_since(repo, base, run_branch)
    assert log, "no commit on the run branch"
    assert len({e.batch_id for e in committed}) == len(committed), "a batch was committed twice"
    assert len(committed) == len(log), ([e.sha for e in committed], [c["sha"] for c in log])
    assert [e.sha for e in committed] == [c["sha"] for c in log]
    batches = [
        line.split(":", 1)[1].strip()
        for c in log
        for line in c["message"].splitlines()
        if line.startswith("Airfix-Batch:")
    ]
    assert batches == [e.batch_id for e in committed]


def wait_for(what: str, predicate, timeout: float, workers: Workers):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{workers.logs()}")
        time.sleep(0.05)


def slowfix_starts(client, key: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(pid, batch id) of every fix slowfix started, in order (the harness's ``<key>:log``)."""
    rows = [
        r.decode() if isinstance(r, bytes) else str(r) for r in client.lrange(f"{key}:log", 0, -1)
    ]
    return [(pid, batch) for pid, batch in (r.split(" ", 1) for r in rows)]
