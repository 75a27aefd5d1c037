"""Cancelling a run: `airfix cancel`, Ctrl-C (inline and while waiting on workers), a stopped
Airflow task, and a fixer that no retry can cure.  Real processes, the real server (or the
embedded store's journal), an agent that sleeps until it is killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airfix.events.schema import FixFailed, FixStarted, RunCancelled
from airfix.projections.status import load_status
from airfix.services.pipeline.requests import cancel_run, request_run
from tests.conftest import REAL_URL
from tests.fake_claude import FAKE_CLAUDE
from tests.pipeline_harness import (
    embedded_app,
    events_of,
    git,
    head,
    make_config,
    make_repo,
    run_to_end,
    server_app,
)
from tests.pipeline_harness.workers import (
    ROOT,
    Workers,
    new_prefix,
    wait_for,
    worker_env,
    worker_pool,
)

RECORDED = Path(__file__).parent / "fixtures" / "claude"


@pytest.fixture
def prefix() -> Iterator[str]:
    yield from new_prefix()


@pytest.fixture
def workers(tmp_path: Path, prefix: str) -> Iterator[Workers]:
    yield from worker_pool(tmp_path, prefix)


def sleeping_agent(tmp_path: Path) -> tuple[Path, Path]:
    """An agent command that records its pid and sleeps until it is killed."""
    pidfile = tmp_path / "agent.pid"
    script = tmp_path / "agent.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 600\n")
    script.chmod(0o755)
    return script, pidfile


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


def agent_env(script: Path, **extra: str) -> dict[str, str]:
    return {
        "AIRFIX__FIXER__COMMAND": json.dumps([str(script)]),
        "AIRFIX__FIXER__CHAIN": "[command]",
        **extra,
    }


def test_airfix_cancel_stops_the_agent_and_the_waiting_run_exits_9(
    tmp_path: Path, prefix: str, workers: Workers
) -> None:
    repo = make_repo(tmp_path)
    base = head(repo)
    script, pidfile = sleeping_agent(tmp_path)
    workers.start("w1", **agent_env(script))
    env = worker_env(prefix, **agent_env(script))
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airfix.services.commands.cli",
            "run",
            "--redis-url",
            REAL_URL,
            "--target",
            str(repo),
            "--max-iterations",
            "1",
            "--fixer",
            "command",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for("the agent to start", pidfile.exists, 120, workers)
    agent = int(pidfile.read_text())
    app = server_app(REAL_URL, make_config(**{"store.redis_url": REAL_URL, "store.prefix": prefix}))
    run_id = load_runs(app)[0]
    cancel = subprocess.run(
        [
            sys.executable,
            "-m",
            "airfix.services.commands.cli",
            "cancel",
            run_id,
            "--reason",
            "changed my mind",
            "--redis-url",
            REAL_URL,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cancel.returncode == 0 and "cancelled (changed my mind)" in cancel.stdout, cancel.stderr
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 9, err
    wait_for("the agent to be killed", lambda: not alive(agent), 15, workers)
    status = load_status(app.client, app.keys, run_id)
    assert (status["status"], status["reason"]) == ("cancelled", "changed my mind")
    assert git(repo, "status", "--porcelain") == "" and head(repo) == base
    wait_for(
        "the worker to drop its worktree",
        lambda: len(git(repo, "worktree", "list").splitlines()) == 1,
        30,
        workers,
    )
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "airfix.services.commands.cli",
            "cancel",
            run_id,
            "--redis-url",
            REAL_URL,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 1 and "already finished: cancelled" in again.stdout
    with_lock_free = request_run(
        app, app.config, repo, batching="smart", fixer="autofix", simulation=True, max_iterations=1
    )
    assert with_lock_free != run_id  # the target's lock went with the cancel


def load_runs(app) -> list[str]:  # type: ignore[no-untyped-def]
    from airfix.projections.status import newest_runs

    return newest_runs(app.client, app.keys, 10)


def test_ctrl_c_in_an_inline_run_cancels_it_in_one_line(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    script, pidfile = sleeping_agent(tmp_path)
    journal = tmp_path / "journal.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFIX")}
    env.update(agent_env(script), AIRFIX__STORE__JOURNAL=str(journal), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airfix.services.commands.cli",
            "run",
            "--target",
            str(repo),
            "--fixer",
            "command",
            "--max-iterations",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not pidfile.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    agent = int(pidfile.read_text())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 9, err
    assert "Traceback" not in err and "cancelled; commits made so far stay on its branch" in err
    assert not alive(agent)
    status = json.loads(
        subprocess.run(
            [sys.executable, "-m", "airfix.services.commands.cli", "status", "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )
    assert status["status"] == "cancelled" and "Ctrl-C" in status["reason"]
    assert git(repo, "status", "--porcelain") == ""


def test_ctrl_c_while_waiting_off_a_terminal_detaches_and_says_how_to_follow(
    tmp_path: Path, prefix: str, workers: Workers
) -> None:
    repo = make_repo(tmp_path)
    script, pidfile = sleeping_agent(tmp_path)
    workers.start("w1", **agent_env(script))
    env = worker_env(prefix, **agent_env(script))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airfix.services.commands.cli",
            "run",
            "--redis-url",
            REAL_URL,
            "--target",
            str(repo),
            "--max-iterations",
            "1",
            "--fixer",
            "command",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    wait_for("the agent to start", pidfile.exists, 120, workers)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "detached from run" in err and "airfix tail" in err and "airfix cancel" in err
    app = server_app(REAL_URL, make_config(**{"store.redis_url": REAL_URL, "store.prefix": prefix}))
    run_id = load_runs(app)[0]
    assert load_status(app.client, app.keys, run_id)["state"] != "completed"  # it goes on
    assert alive(int(pidfile.read_text()))
    cancel_run(app, run_id, reason="test over")
    wait_for("the agent to be killed", lambda: not alive(int(pidfile.read_text())), 15, workers)


def test_stopping_the_airflow_task_cancels_the_run_it_follows(tmp_path: Path) -> None:
    from airfix.airflow_glue.tasks import cancel_on_kill
    from airfix.airflow_glue.trigger import RunFinishedTrigger

    app = embedded_app()
    repo = make_repo(tmp_path)
    run_id = request_run(
        app, app.config, repo, batching="smart", fixer="autofix", simulation=True, max_iterations=1
    )

    class Task:
        def on_kill(self) -> None:  # BaseOperator's: does nothing
            pass

    task = Task()
    cancel_on_kill({"task": task}, app, run_id)
    task.on_kill()  # what the task runner calls on SIGTERM
    last = events_of(app, run_id)[-1]
    assert isinstance(last, RunCancelled) and "Airflow task was stopped" in last.reason
    # the deferred wait: the triggerer calls the trigger's on_kill on a user action
    other = make_repo(tmp_path, name="other")
    server = server_app(REAL_URL, make_config(**{"store.redis_url": REAL_URL}))
    server.client.flushdb()
    deferred = request_run(
        server,
        server.config,
        other,
        batching="smart",
        fixer="autofix",
        simulation=True,
        max_iterations=1,
    )
    trigger = RunFinishedTrigger(
        redis_url=REAL_URL,
        stream=server.keys.run_stream(deferred),
        run_id=deferred,
        prefix=server.keys.prefix,
        partitions=server.keys.partitions,
    )
    asyncio.run(trigger.on_kill())
    assert isinstance(events_of(server, deferred)[-1], RunCancelled)
    server.client.flushdb()


@pytest.mark.parametrize("recording", ["not_logged_in", "unknown_option"])
def test_a_fixer_no_retry_can_cure_ends_the_run_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recording: str
) -> None:
    """Replayed output of the real Claude Code CLI 2.1.197 (tests/fixtures/claude/README.md)."""
    monkeypatch.setenv("FAKE_CLAUDE_REPLAY", str(RECORDED / recording))
    repo = make_repo(tmp_path)
    app = embedded_app(make_config(**{"fixer.claude_executable": str(FAKE_CLAUDE)}))
    run_id, report = run_to_end(app, repo, fixer="claude", batching="individual", max_iterations=2)
    events = events_of(app, run_id)
    assert len([e for e in events if isinstance(e, FixStarted)]) == 1  # tried once, not per batch
    failed = [e for e in events if isinstance(e, FixFailed)]
    assert len(failed) == 1 and failed[0].fatal
    assert (report.status, report.state) == ("fixer_unavailable", "completed")
    expected = {
        "not_logged_in": ["Not logged in", "/login", "ANTHROPIC_API_KEY"],
        "unknown_option": ["unknown option '--bogus-flag'", "claude --help"],
    }[recording]
    assert all(text in report.reason for text in expected), report.reason
    assert not report.reason.startswith("claude: claude:")
