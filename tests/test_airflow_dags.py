"""The three DAGs end to end in a real Airflow 3.3 (isolated ``AIRFLOW_HOME``, ``airflow dags test``),
against the real Redis with ``airfix worker`` processes, and inline (no workers, no Redis).

Targets are fresh git copies of the bundled sample project.  Real fixes use one iteration; runs
that only prove plumbing are simulations.  Each test checks the DAG run's state, its task states,
its XComs, the task log's progress lines, and that what airfix reports is what git shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airfix.services.pipeline.requests import fresh_sample_repo
from tests.airflow_harness import (
    DAGS,
    OUR_DAGS,
    ROOT,
    AirflowHome,
    DagRun,
    Workers,
    airfix_status,
    dags_test,
    make_home,
)
from tests.conftest import REAL_URL, real_client
from tests.pipeline_harness import commits_since, head, make_repo

pytestmark = pytest.mark.slow

PROGRESS = (
    "run requested on",
    "started from ",
    "health check (full, iteration 1)",
    "issue(s) found",
    "planned (priority",
    "run finished:",
)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    return make_home(tmp_path_factory.mktemp("airflow"))


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own on the real server, deleted afterwards."""
    name = f"airfix_af_{uuid.uuid4().hex[:10]}"
    yield name
    client = real_client()
    for key in client.scan_iter(match=f"*{name}*", count=1000):
        client.delete(key)


@pytest.fixture
def workers(tmp_path: Path, prefix: str) -> Iterator[Workers]:
    with Workers(tmp_path, prefix).running() as w:
        yield w


@pytest.fixture
def sample() -> Iterator[Path]:
    repo = fresh_sample_repo()
    yield repo
    subprocess.run(["rm", "-rf", str(repo.parent)], check=False)


def on_workers(home: AirflowHome, prefix: str, **extra: str) -> dict[str, str]:
    return home.env(AIRFIX_REDIS_URL=REAL_URL, AIRFIX__STORE__PREFIX=prefix, **extra)


def inline_env(home: AirflowHome, tmp_path: Path) -> dict[str, str]:
    """No Redis URL at all: an inline run lives on the embedded store and its journal."""
    return home.env(AIRFIX__STORE__JOURNAL=str(tmp_path / "journal.jsonl"))


def assert_committed_as_reported(
    repo: Path, base: str, run: DagRun, summary: dict[str, Any], env: dict[str, str]
) -> None:
    """The commits airfix reports are the commits in git, and `airfix status --json` agrees."""
    commits = commits_since(repo, base, summary["branch"])
    assert commits and summary["commits"] == len(commits), (summary, commits)
    status = airfix_status(summary["run_id"], env)
    assert status["status"] == summary["status"] and len(status["commits"]) == len(commits)
    assert (status["issues_initial"], status["issues_open"]) == (
        summary["issues_before"],
        summary["issues_after"],
    )
    for c in commits:  # every commit shows up in the task log as it was made
        assert any(f"committed {c['sha'][:10]} {c['subject']}" in line for line in run.lines()), c


def succeeded(
    home: AirflowHome, dag_id: str, conf: dict[str, Any], env: dict[str, str], tmp_path: Path
) -> DagRun:
    run = dags_test(home, dag_id, conf, env, tmp_path)
    assert run.exit == 0 and run.state == "success", run.explain()
    return run


def assert_progress(run: DagRun) -> None:
    text = "\n".join(run.lines())
    for phrase in PROGRESS:
        assert phrase in text, f"no progress line with {phrase!r}:\n{run.explain()}"


# ------------------------------------------------------------------ the DAG files


def test_the_dag_folder_imports_with_no_errors(home: AirflowHome) -> None:
    code = (
        "import json; from airflow.dag_processing.dagbag import DagBag; "
        f"b = DagBag(dag_folder={str(DAGS)!r}, safe_mode=False); "
        "print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()}, "
        "'dags': {d: sorted(t.task_id for t in b.dags[d].tasks) for d in b.dags}}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=home.env(),
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    bag = json.loads(proc.stdout.strip().splitlines()[-1])
    assert bag["errors"] == {}
    assert set(bag["dags"]) == OUR_DAGS
    assert bag["dags"]["autonomous_fixing"] == [
        "choose_wait",
        "request_fix_run",
        "run_autonomous_fixing",
        "wait_for_run",
    ]
    assert "post_process" in bag["dags"]["hybrid_control_flow"]


def test_the_dag_files_pass_ruffs_airflow_rules(tmp_path: Path) -> None:
    ruff = [
        sys.executable,
        "-m",
        "ruff",
        "check",
        "--preview",
        "--select",
        "AIR",
        "--no-cache",
        "--output-format",
        "concise",
    ]
    ours = subprocess.run(
        [*ruff, str(DAGS), str(ROOT / "airflow_glue")], text=True, capture_output=True, check=False
    )
    assert ours.returncode == 0, ours.stdout + ours.stderr
    old = tmp_path / "old_style.py"  # the same rules do catch Airflow 2 code
    old.write_text(
        "from airflow import DAG\nfrom airflow.operators.python import PythonOperator\n\n"
        "with DAG('x', schedule_interval=None):\n    PythonOperator(task_id='t', python_callable=print)\n"
    )
    caught = subprocess.run([*ruff, str(old)], text=True, capture_output=True, check=False)
    for rule in (
        "airflow3-removal",
        "airflow3-suggested-to-move-to-provider",
    ):  # AIR301, AIR312 by name
        assert caught.returncode == 1 and rule in caught.stdout, caught.stdout


def test_bad_conf_is_rejected_before_any_task_runs(
    home: AirflowHome, prefix: str, tmp_path: Path
) -> None:
    env = on_workers(home, prefix)
    for conf, message in (
        (
            {"target_project": "/x", "max_iterations": 0},
            "Invalid input for param max_iterations: 0 is less than the minimum of 1",
        ),
        ({"max_iterations": 2}, "Invalid input for param target_project: No value passed"),
    ):
        proc = home.airflow("dags", "test", "autonomous_fixing", "-c", json.dumps(conf), env=env)
        assert proc.returncode == 1 and message in proc.stdout + proc.stderr, proc.stdout[-3000:]
        assert "[DAG TEST] starting task_id" not in proc.stdout
    assert not list(real_client().scan_iter(match=f"*{prefix}*"))  # nothing was requested


# ------------------------------------------------------------------ autonomous_fixing


def test_autonomous_fixing_inline_needs_no_worker_and_no_redis(
    home: AirflowHome, sample: Path, tmp_path: Path
) -> None:
    env = inline_env(home, tmp_path)
    base = head(sample)
    conf = {"target_project": str(sample), "max_iterations": 1, "execution": "inline"}
    run = succeeded(home, "autonomous_fixing", conf, env, tmp_path)
    summary = run.xcom["run_autonomous_fixing:summary"]
    assert summary["status"] == "partially_fixed"
    assert_progress(run)
    assert_committed_as_reported(sample, base, run, summary, env)  # airfix status reads the journal


def test_a_failing_run_fails_the_dag_run_with_its_reason(home: AirflowHome, tmp_path: Path) -> None:
    """A target airfix cannot measure (no supported language) ends tool_error: `airflow dags test`
    exits 1, the task fails once (no retry for a run that ended badly) and says why."""
    repo = make_repo(tmp_path, {"README.md": "nothing to check here\n"}, name="docs")
    conf = {"target_project": str(repo), "max_iterations": 1, "execution": "inline"}
    proc = home.airflow(
        "dags", "test", "autonomous_fixing", "-c", json.dumps(conf), env=inline_env(home, tmp_path)
    )
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "ended tool_error: tools could not measure: language-detection" in proc.stdout
    assert "    language-detection: no supported language detected in" in proc.stdout  # what to fix
    assert proc.stdout.count("[DAG TEST] starting task_id=run_autonomous_fixing") == 1


def test_the_guides_commands_work_verbatim_with_the_target_from_the_config(
    home: AirflowHome, workers: Workers, prefix: str, sample: Path, tmp_path: Path
) -> None:
    """``airflow tasks test autonomous_fixing run_autonomous_fixing DATE`` runs the whole fix in
    that one task (it requests the run itself), and a conf without ``target_project`` fixes the
    configured repository (AIRFIX__TARGET_PROJECT__PATH), as the original DAG did."""
    env = on_workers(home, prefix, AIRFIX__TARGET_PROJECT__PATH=str(sample))
    base = head(sample)
    proc = home.airflow(
        "tasks", "test", "autonomous_fixing", "run_autonomous_fixing", "2026-12-06", env=env
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    branches = subprocess.run(
        ["git", "branch", "--list", "airfix/*", "--format=%(refname:short)"],
        cwd=sample, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert len(branches) == 1, branches
    commits = commits_since(sample, base, branches[0])
    assert commits, out[-3000:]
    for c in commits:  # each commit in the task's log, as it reached the branch
        assert f"committed {c['sha'][:10]} {c['subject']}" in out, c
    assert "run finished: partially_fixed" in out

    conf = {"max_iterations": 1, "simulation": True}  # the guide's conf: no target in it
    run = succeeded(home, "autonomous_fixing", conf, env, tmp_path)
    assert run.xcom["run_autonomous_fixing:summary"]["status"] == "simulated"


# ------------------------------------------------------------------ air_executor_demo


def test_air_executor_demo_on_workers(
    home: AirflowHome, workers: Workers, prefix: str, sample: Path, tmp_path: Path
) -> None:
    run = succeeded(
        home,
        "air_executor_demo",
        {"target_project": str(sample)},
        on_workers(home, prefix),
        tmp_path,
    )
    fix_run = run.xcom["create_fix_run:return_value"]
    result = run.xcom["get_results:return_value"]
    assert (
        result["fix_run"] == fix_run and result["status"] == "simulated"
    )  # a simulation by default
    assert result["batches_planned"] == run.xcom["wait_for_fix_run:summary"]["batches_planned"] > 0
    assert "deferring until run" in run.output


def test_air_executor_demo_inline(home: AirflowHome, sample: Path, tmp_path: Path) -> None:
    conf = {"target_project": str(sample), "execution": "inline"}
    run = succeeded(home, "air_executor_demo", conf, inline_env(home, tmp_path), tmp_path)
    assert run.xcom["get_results:return_value"]["status"] == "simulated"
    assert_progress(run)
    assert "deferring" not in run.output  # the run had ended: the sensor finished at once


# ------------------------------------------------------------------ hybrid_control_flow


def test_hybrid_control_flow_on_workers_maps_over_the_commits(
    home: AirflowHome, workers: Workers, prefix: str, sample: Path, tmp_path: Path
) -> None:
    env = on_workers(home, prefix)
    base = head(sample)
    run = succeeded(
        home,
        "hybrid_control_flow",
        {"target_project": str(sample), "max_iterations": 1},
        env,
        tmp_path,
    )
    before = run.xcom["prepare:return_value"]
    assert before["head"] == base and before["issues"] > 0
    summary = run.xcom["wait_for_airfix:summary"]
    assert_committed_as_reported(sample, base, run, summary, env)
    mapped = sorted(
        (k for k in run.xcom if k.startswith("post_process[")),
        key=lambda k: int(k[13:].split("]")[0]),
    )
    commits = commits_since(sample, base, summary["branch"])
    assert [run.xcom[k]["sha"] for k in mapped] == [
        c["sha"] for c in commits
    ]  # one mapped task per commit
    final = run.xcom["final_report:return_value"]
    assert final == {
        "run_id": summary["run_id"],
        "status": "partially_fixed",
        "baseline_issues": before["issues"],
        "issues_after": summary["issues_after"],
        "commits": len(commits),
    }


def test_hybrid_control_flow_inline_with_nothing_to_map(
    home: AirflowHome, sample: Path, tmp_path: Path
) -> None:
    conf = {
        "target_project": str(sample),
        "max_iterations": 1,
        "simulation": True,
        "execution": "inline",
    }
    run = succeeded(home, "hybrid_control_flow", conf, inline_env(home, tmp_path), tmp_path)
    assert (
        run.tasks["post_process"] == "skipped" and run.tasks["final_report"] == "success"
    )  # zero commits
    assert run.xcom["final_report:return_value"]["commits"] == 0
    assert run.xcom["final_report:return_value"]["status"] == "simulated"
