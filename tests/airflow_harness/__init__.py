"""Helpers for the Airflow tests (``tests/test_airflow*.py``): an isolated ``AIRFLOW_HOME``, DAG runs
through ``airflow dags test`` with their task states and XComs, and ``airfix worker`` processes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog

from airfix.airflow_glue.runs import roles_without_workers
from tests.conftest import REAL_URL
from tests.pipeline_harness import make_config, server_app

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
OUR_DAGS = {"autonomous_fixing", "air_executor_demo", "hybrid_control_flow"}
# short leases so a stopped worker's partitions move quickly (as in tests/test_pipeline_workers.py)
FAST = {
    "AIRFIX__CONSUMERS__LEASE_TTL_MS": "2000",
    "AIRFIX__CONSUMERS__REBALANCE_INTERVAL_MS": "200",
    "AIRFIX__CONSUMERS__BLOCK_MS": "200",
    "AIRFIX__CONSUMERS__HEARTBEAT_INTERVAL_MS": "500",
}


@contextlib.contextmanager
def process_logging_kept() -> Iterator[None]:
    """Importing Airflow configures structlog, the root logger and warnings for the whole process;
    a test module that imports it in the suite's process puts them back right after, so the other
    modules' tests (collected in the same process) see the logging they expect."""
    root = logging.getLogger()
    saved = (
        structlog.get_config(),
        list(root.handlers),
        root.level,
        list(warnings.filters),
        warnings.showwarning,
    )
    try:
        yield
    finally:
        structlog.configure(**saved[0])
        root.handlers[:] = saved[1]
        root.setLevel(saved[2])
        warnings.filters[:] = saved[3]
        warnings.showwarning = saved[4]


def airflow_bin() -> Path:
    """The ``airflow`` of this interpreter's environment; missing is a failure, never a skip."""
    local = Path(sys.executable).parent / "airflow"
    found = local if local.exists() else shutil.which("airflow")
    if found is None:
        pytest.fail(
            'apache-airflow is not installed here: pip install -e ".[test,airflow]" '
            "(scripts/test.sh does)",
            pytrace=False,
        )
    return Path(found)


@dataclass
class AirflowHome:
    """An isolated ``AIRFLOW_HOME`` (SQLite, migrated once) whose DAGs folder is ``dags_folder``."""

    home: Path
    dags_folder: Path

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFIX", "AIRFLOW"))}
        bindir = str(Path(sys.executable).parent)
        return {
            **base,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "PYTHONPATH": str(ROOT),
            "PATH": f"{bindir}{os.pathsep}{base.get('PATH', '')}",
            **FAST,
            **extra,
        }

    def airflow(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 300,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(airflow_bin()), *args],
            env=env or self.env(),
            cwd=ROOT,
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"airflow {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                f"{proc.stderr[-3000:]}",
                pytrace=False,
            )
        return proc


def make_home(root: Path, dags_folder: Path = DAGS) -> AirflowHome:
    home = AirflowHome(root / "airflow_home", dags_folder)
    home.airflow("db", "migrate", check=True)
    return home


def airfix_status(run_id: str, env: dict[str, str]) -> dict[str, Any]:
    """``airfix status RUN_ID --json`` with the environment Airflow's tasks had."""
    url = ["--redis-url", env["AIRFIX_REDIS_URL"]] if "AIRFIX_REDIS_URL" in env else []
    proc = subprocess.run(
        [sys.executable, "-m", "airfix.services.commands.cli", "status", run_id, "--json", *url],
        env=env,
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


@dataclass
class DagRun:
    """One ``airflow dags test`` run: its exit code, log output, state, task states and XComs."""

    exit: int
    output: str
    run_id: str
    state: str | None
    tasks: dict[str, str | None]
    xcom: dict[str, Any]

    def lines(self, marker: str = "[airfix ") -> list[str]:
        return [line for line in self.output.splitlines() if marker in line]

    def explain(self) -> str:
        return f"exit {self.exit}, state {self.state}, tasks {self.tasks}\n{self.output[-6000:]}"


def dags_test(
    home: AirflowHome,
    dag_id: str,
    conf: dict[str, Any],
    env: dict[str, str],
    tmp_path: Path,
    timeout: float = 600,
) -> DagRun:
    """``airflow dags test DAG_ID -c CONF`` (the CLI's code, in ``tests.airflow_harness.dag_test``)."""
    out = tmp_path / f"{dag_id}-{uuid.uuid4().hex[:6]}.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.airflow_harness.dag_test",
            dag_id,
            json.dumps(conf),
            str(out),
        ],
        env=env,
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
    )
    if not out.exists():
        pytest.fail(
            f"dags test {dag_id} wrote no result (exit {proc.returncode}):\n{proc.stdout[-6000:]}",
            pytrace=False,
        )
    result = json.loads(out.read_text())
    return DagRun(
        result["exit"],
        proc.stdout,
        result.get("run_id", ""),
        result["state"],
        result["tasks"],
        result["xcom"],
    )


@dataclass
class Workers:
    """``airfix worker --roles all`` processes on the real server under one key prefix."""

    tmp_path: Path
    prefix: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFIX")}
        return {**base, **FAST, "AIRFIX__STORE__PREFIX": self.prefix, "PYTHONPATH": str(ROOT)}

    @contextlib.contextmanager
    def running(self, n: int = 1) -> Iterator[Workers]:
        """``n`` workers, registered for every role, until the block ends."""
        try:
            self.start(n)
            yield self
        finally:
            self.stop()

    def start(self, n: int = 1) -> None:
        for i in range(n):
            log = open(self.tmp_path / f"worker-{i}.log", "wb")  # noqa: SIM115 - closed with the process
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "airfix.services.commands.cli",
                        "worker",
                        "--redis-url",
                        REAL_URL,
                        "--roles",
                        "all",
                        "--name",
                        f"w{i}-{self.prefix}",
                        "--log-format",
                        "json",
                    ],
                    cwd=ROOT,
                    env=self.env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
        app = server_app(
            REAL_URL,
            make_config(
                **{
                    "store.redis_url": REAL_URL,
                    "store.prefix": self.prefix,
                    "consumers.lease_ttl_ms": 2000,
                    "consumers.rebalance_interval_ms": 200,
                    "consumers.heartbeat_interval_ms": 500,
                }
            ),
        )
        deadline = time.monotonic() + 60
        while roles_without_workers(app):
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                pytest.fail(f"airfix workers did not register:\n{self.logs()}", pytrace=False)
            time.sleep(0.1)

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:]
            for p in sorted(self.tmp_path.glob("worker-*.log"))
        )

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
