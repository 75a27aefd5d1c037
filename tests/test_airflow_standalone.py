"""A running Airflow, the way a user runs it: ``airflow standalone`` (api-server, scheduler with
its executor, dag-processor, triggerer) on an isolated ``AIRFLOW_HOME``, the DAGs deployed and
unpaused by ``scripts/sync_dags_to_airflow.sh``, runs triggered through the REST API v2, and the
task logs read from the log files the UI shows.

``airflow dags test`` runs tasks in its own process; here every task runs under Airflow's task
supervisor and the deferred wait in the real triggerer, where log lines travel another way.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from airfix.events.keys import Keys
from airfix.events.storage.store import EventStore
from airfix.services.pipeline.requests import fresh_sample_repo
from tests.airflow_harness import ROOT, AirflowHome, Workers, airfix_status, airflow_bin, make_home
from tests.conftest import REAL_URL, real_client
from tests.pipeline_harness import commits_since, head

pytestmark = pytest.mark.slow
GUARD_S = 300  # only so that a stuck deployment fails instead of hanging


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    home: AirflowHome
    url: str
    token: str
    prefix: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def run_dag(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> str:
        """Trigger through ``POST /api/v2/dags/{dag_id}/dagRuns`` and wait for the run's end."""
        code, body = self.call(
            "POST",
            f"/api/v2/dags/{dag_id}/dagRuns",
            {"logical_date": None, "dag_run_id": run_id, "conf": conf},
        )
        assert code == 200, body
        return self.wait(dag_id, run_id)

    def wait(self, dag_id: str, run_id: str) -> str:
        deadline = time.monotonic() + GUARD_S
        while time.monotonic() < deadline:
            _, run = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return str(run["state"])
            time.sleep(1)
        pytest.fail(f"DAG run {run_id} did not finish:\n{self.logs()}", pytrace=False)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        _, entry = self.call(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
        )
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) and value[:1] in '{["' else value

    def tries(self, dag_id: str, run_id: str) -> dict[str, int]:
        _, tis = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {t["task_id"]: t["try_number"] for t in tis["task_instances"]}

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, pattern: str = "attempt=1.log"
    ) -> list[str]:
        """The ``event`` of every line of a task's log file(s), as the UI shows them."""
        folder = (
            self.home.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        )
        lines = []
        for path in sorted(folder.glob(pattern)):
            for raw in path.read_text().splitlines():
                lines.append(str(json.loads(raw).get("event", "")) if raw.startswith("{") else raw)
        return lines

    def logs(self) -> str:
        return (self.home.home / "standalone.log").read_text(errors="replace")[-6000:]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("airflow_live")
    home = make_home(root, dags_folder=root / "dags")
    prefix = f"airfix_live_{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = home.env(
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
        AIRFIX_REDIS_URL=REAL_URL,
        AIRFIX__STORE__PREFIX=prefix,
        AIRFIX__STORE__JOURNAL=str(root / "journal.jsonl"),
    )
    with open(home.home / "standalone.log", "wb") as out:
        proc = subprocess.Popen(
            [str(airflow_bin()), "standalone"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        password_file = home.home / "simple_auth_manager_passwords.json.generated"
        token, deadline = "", time.monotonic() + GUARD_S
        while not token:
            assert proc.poll() is None and time.monotonic() < deadline, (
                "airflow standalone did not come up"
            )
            time.sleep(1)
            if password_file.exists():
                token = _token(
                    f"http://127.0.0.1:{port}", json.loads(password_file.read_text())["admin"]
                )
        sync = subprocess.run(
            [
                "bash",
                str(ROOT / "scripts" / "sync_dags_to_airflow.sh"),
                "--auto-unpause",
                "--python",
                str(Path(airflow_bin()).parent / "python"),
            ],
            env=env,
            cwd=ROOT,
            text=True,
            capture_output=True,
            timeout=300,
            check=False,
        )
        assert sync.returncode == 0, sync.stdout + sync.stderr
        with Workers(root, prefix).running():
            yield Live(home, f"http://127.0.0.1:{port}", token, prefix)
    finally:
        _stop_tree(proc)
        client = real_client()
        for key in client.scan_iter(match=f"*{prefix}*", count=1000):
            client.delete(key)


def _stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """Stop standalone and every process it started (some components start their own sessions)."""
    parent = psutil.Process(proc.pid)
    family = [*parent.children(recursive=True), parent]
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(family, timeout=30)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=10)


def _token(url: str, password: str) -> str:
    req = urllib.request.Request(
        f"{url}/auth/token",
        method="POST",
        data=json.dumps({"username": "admin", "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return str(json.loads(resp.read())["access_token"])
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return ""  # not up yet


@pytest.fixture
def sample() -> Iterator[Path]:
    repo = fresh_sample_repo()
    yield repo
    subprocess.run(["rm", "-rf", str(repo.parent)], check=False)


def test_the_rest_api_refuses_a_bad_conf_with_the_reason(live: Live) -> None:
    code, body = live.call(
        "POST",
        "/api/v2/dags/autonomous_fixing/dagRuns",
        {"logical_date": None, "conf": {"target_project": "/x", "max_iterations": 0}},
    )
    assert (
        code == 400
        and "Invalid input for param max_iterations: 0 is less than the minimum of 1"
        in body["detail"]
    )
    _, dag = live.call("GET", "/api/v2/dags/autonomous_fixing")
    assert dag["is_paused"] is False  # the sync script unpaused it


def test_the_follow_task_log_shows_each_event_as_the_workers_record_it(
    live: Live, sample: Path
) -> None:
    base = head(sample)
    state = live.run_dag(
        "autonomous_fixing", "rest-follow", {"target_project": str(sample), "max_iterations": 1}
    )
    log = live.task_log("autonomous_fixing", "rest-follow", "run_autonomous_fixing")
    assert state == "success", "\n".join(log[-60:]) + live.logs()
    tries = live.tries("autonomous_fixing", "rest-follow")
    assert tries == {
        "request_fix_run": 1,
        "choose_wait": 1,
        "run_autonomous_fixing": 1,
        "wait_for_run": 0,
    }  # no task died
    events = [line for line in log if line.startswith("[airfix ")]
    assert events[0].endswith(
        f"run requested on {sample}: batching smart, fixer autofix, max 1 iterations"
    )
    assert any("health check (full, iteration 1)" in line for line in events)
    assert any("issue(s) found" in line for line in events) and any(
        "planned (priority" in line for line in events
    )
    assert "run finished: partially_fixed" in events[-1]
    summary = live.xcom("autonomous_fixing", "rest-follow", "run_autonomous_fixing", "summary")
    commits = commits_since(sample, base, summary["branch"])
    assert summary["status"] == "partially_fixed" and summary["commits"] == len(commits) > 0
    assert [line.split()[4] for line in events if "] committed " in line] == [
        c["sha"][:10] for c in commits
    ]
    status = airfix_status(
        summary["run_id"],
        live.home.env(AIRFIX_REDIS_URL=REAL_URL, AIRFIX__STORE__PREFIX=live.prefix),
    )
    assert (status["status"], len(status["commits"])) == (summary["status"], len(commits))
    assert (status["issues_initial"], status["issues_open"]) == (
        summary["issues_before"],
        summary["issues_after"],
    )

    # clear the DAG run's tasks, as a user re-running it would: the same fix run, nothing new in it
    store = EventStore(real_client(), Keys(prefix=live.prefix))
    version = store.version(summary["run_id"])
    code, body = live.call(
        "POST",
        "/api/v2/dags/autonomous_fixing/clearTaskInstances",
        {
            "dry_run": False,
            "dag_run_id": "rest-follow",
            "task_ids": ["request_fix_run"],
            "include_downstream": True,
            "only_failed": False,
            "reset_dag_runs": True,
        },
    )
    assert code == 200, body
    assert live.wait("autonomous_fixing", "rest-follow") == "success"
    assert live.tries("autonomous_fixing", "rest-follow")["request_fix_run"] == 2
    assert (
        live.xcom("autonomous_fixing", "rest-follow", "request_fix_run", "return_value")
        == summary["run_id"]
    )
    assert store.version(summary["run_id"]) == version
    assert commits_since(sample, base, summary["branch"]) == commits


def test_the_deferred_wait_runs_in_the_triggerer(live: Live, sample: Path) -> None:
    conf = {"target_project": str(sample), "max_iterations": 1, "simulation": True, "wait": "defer"}
    state = live.run_dag("autonomous_fixing", "rest-defer", conf)
    sensor = live.task_log("autonomous_fixing", "rest-defer", "wait_for_run")
    trigger = live.task_log(
        "autonomous_fixing", "rest-defer", "wait_for_run", "attempt=1.log.trigger.*.log"
    )
    assert state == "success", "\n".join(sensor[-40:] + trigger[-40:]) + live.logs()
    assert any(line.startswith("deferring until run") for line in sensor)
    assert any(
        line.startswith("[airfix ") and "run finished: simulated" in line for line in trigger
    ), trigger
    _, ti = live.call(
        "GET",
        "/api/v2/dags/autonomous_fixing/dagRuns/rest-defer/taskInstances/run_autonomous_fixing",
    )
    assert ti["state"] == "skipped"
