"""The documented day-to-day workflow, for real: run a fix, follow it with ``airfix tail --follow``
from a second process, answer the everyday questions with redis-cli (every line of the cookbook
in docs/operations.md),
and replay it afterwards; on the real server with a worker process, and on the embedded store.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest

from airfix.events.keys import Keys
from airfix.projections.status import load_status
from tests.conftest import REAL_URL, real_client

ROOT = Path(__file__).resolve().parents[1]
FAST = {"AIRFIX__CONSUMERS__BLOCK_MS": "200", "AIRFIX__CONSUMERS__REBALANCE_INTERVAL_MS": "200"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFIX")}
    return {**env, **FAST, **extra}


def _airfix(*args: str, env: dict[str, str], **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "airfix.services.commands.cli", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )  # type: ignore[call-overload]


def _run_id_from(proc: subprocess.Popen[str], timeout_s: float = 60) -> str:
    """The run id ``airfix run`` announces on stderr before it starts working."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = re.match(r"airfix: run (\S+); follow it", line)
        if found:
            return found.group(1)
        assert line or proc.poll() is None, (
            f"airfix run exited {proc.poll()} without announcing its id"
        )
    raise AssertionError("airfix run did not announce its run id")


@dataclass
class Followed:
    run_id: str
    run_rc: int
    run_stderr: str
    tail_rc: int
    tail_lines: list[dict]  # type: ignore[type-arg]
    tail_stderr: str


def _run_and_follow(env: dict[str, str], *run_args: str) -> Followed:
    """``airfix run --sample`` in one process, ``airfix tail RUN_ID --follow --json`` in another,
    started as soon as the run has an id; tail must stop by itself when the run ends."""
    run = _airfix("run", "--sample", "--max-iterations", "1", *run_args, env=env)
    try:
        run_id = _run_id_from(run)
        tail = _airfix("tail", run_id, "--follow", "--json", *run_args[:2], env=env)
        tail_out, tail_err = tail.communicate(timeout=300)
        _, run_err = run.communicate(timeout=300)
    finally:
        run.kill()
    return Followed(
        run_id,
        run.returncode,
        run_err,
        tail.returncode,
        [json.loads(x) for x in tail_out.splitlines()],
        tail_err,
    )


def _check_followed(f: Followed, versions: int) -> None:
    assert 3 == f.run_rc, f.run_stderr[-3000:]  # partially_fixed: the sample keeps its mypy errors
    assert 0 == f.tail_rc, f.tail_stderr[-3000:]
    events = [x for x in f.tail_lines if x["kind"] == "event"]
    assert list(range(1, versions + 1)) == [
        x["version"] for x in events
    ]  # every event, in order, once
    assert ("completed", "partially_fixed") == (events[-1]["state"], events[-1]["status"])
    assert "Committed" in {x["type"] for x in events}
    logs = [x["log"] for x in f.tail_lines if x["kind"] == "log"]
    tools = {x.get("tool") for x in logs if x.get("event") == "tool finished"}
    assert {"ruff", "mypy", "pytest"} <= tools, logs[:5]
    assert {f.run_id} == {x["run_id"] for x in f.tail_lines}


# ------------------------------------------------------------------------ on the real server


@pytest.fixture(scope="module")
def server_run() -> Iterator[Followed]:
    client = real_client()
    client.flushdb()
    env = _env(AIRFIX_REDIS_URL=REAL_URL)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airfix.services.commands.cli",
            "worker",
            "--roles",
            "all",
            "--log-format",
            "json",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield _run_and_follow(env, "--redis-url", REAL_URL, "--wait-timeout", "240")
    finally:
        worker.terminate()
        worker.wait(30)
        client.flushdb()


def test_tail_follow_on_the_server_shows_the_whole_run_and_stops_when_it_ends(
    server_run: Followed,
) -> None:
    client = real_client()
    keys = Keys()
    versions = int(client.hget(keys.run_index(server_run.run_id), "version"))
    _check_followed(server_run, versions)
    # the log lines came from the worker process (roles), through the capped log stream
    assert any(
        x["log"].get("role") == "verifier" for x in server_run.tail_lines if x["kind"] == "log"
    )


def _cookbook() -> list[tuple[str, str]]:
    """(question, command) for every command line of the cookbook block in docs/operations.md."""
    text = (ROOT / "docs" / "operations.md").read_text()
    block = text.split("<!-- cookbook:start -->", 1)[1].split("<!-- cookbook:end -->", 1)[0]
    out, question = [], ""
    for line in block.splitlines():
        if line.startswith("# "):
            question = line[2:]
        elif line.startswith("redis-cli "):
            out.append((question, line))
    return out


def _redis_cli(command: str, run_id: str) -> str:
    url = urlparse(REAL_URL)
    db = (url.path or "/0").lstrip("/") or "0"
    prelude = (
        f"redis-cli() {{ command redis-cli -h {shlex.quote(url.hostname or '127.0.0.1')} "
        f'-p {url.port or 6379} -n {db} "$@"; }}; export -f redis-cli; '
    )
    proc = subprocess.run(
        ["bash", "-c", prelude + command.replace("<run_id>", run_id)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert 0 == proc.returncode and not proc.stderr, f"{command}\n{proc.stderr}"
    return proc.stdout


def test_every_readme_redis_cli_command_answers_its_question_after_a_real_run(
    server_run: Followed,
) -> None:
    client, keys, run_id = real_client(), Keys(), server_run.run_id
    status = load_status(client, keys, run_id)
    assert status is not None
    stream = keys.run_stream(run_id)
    checked = []
    for question, command in _cookbook():
        out = _redis_cli(command, run_id)
        lines = [x for x in out.splitlines() if x]  # an empty reply prints one blank line
        if "ZREVRANGE" in command:
            assert run_id == lines[0]
        elif "HGET autonomous_fix:status" in command:
            state = json.loads(out)
            status.pop("halted")
            assert status == state and "partially_fixed" == state["status"]
        elif command.startswith("redis-cli --scan --pattern 'autonomous_fix:*:run:"):
            assert [stream] == lines
        elif 'XRANGE "$(' in command:
            ids = [x for x in lines if re.fullmatch(r"0-\d+", x)]
            assert [f"0-{v}" for v in range(1, status["version"] + 1)] == ids
            assert "RunRequested" == lines[lines.index("type") + 1]
        elif "task_queue" in command:
            assert [] == lines == client.zrange(keys.task_queue, 0, -1)  # done: nothing queued
        elif "run_history" in command:
            assert run_id == json.loads(lines[0])["run_id"]
        elif "target_runs" in command:
            record = json.loads(out)
            assert (run_id, status["status"], status["target"]) == (
                record["run_id"],
                record["status"],
                record["target"],
            )
            assert len(status["commits"]) == record["commits"] > 0
        elif "summary:lint" in command:
            assert json.loads(out)  # the lint phase's last summary: the sample's ruff fixes
        elif "XINFO GROUPS" in command:
            groups = {lines[i + 1] for i, x in enumerate(lines) if x == "name"}
            assert {"projections", "role:verifier", "role:checker"} <= groups
            assert {"0"} == {lines[i + 1] for i, x in enumerate(lines) if x in ("lag", "pending")}
        elif "XPENDING" in command:
            assert "0" == lines[0]
        elif "dead_letters:*" in command:
            assert [] == lines  # a clean run parks nothing
        elif "XRANGE autonomous_fix:dead_letters" in command:
            assert [] == lines
        elif "autonomous_fix:logs" in command:
            assert run_id in lines and "tool finished" in out
        else:
            raise AssertionError(f"cookbook line without a check here: {command} ({question})")
        checked.append(command)
    assert len(checked) == 13


def test_replay_after_the_run_equals_its_status(server_run: Followed) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "airfix.services.commands.cli",
            "replay",
            server_run.run_id,
            "--redis-url",
            REAL_URL,
            "--json",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == proc.returncode, proc.stderr
    status = load_status(real_client(), Keys(), server_run.run_id)
    assert status is not None
    status.pop("halted")
    assert status == json.loads(proc.stdout)["state"]


# ------------------------------------------------------------------------ on the embedded store


def test_on_the_embedded_store_tail_follows_the_run_from_another_process_and_the_run_outlives_it(
    tmp_path: Path,
) -> None:
    env = _env(AIRFIX__STORE__JOURNAL=str(tmp_path / "journal.jsonl"))
    followed = _run_and_follow(env)
    journal_lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    _check_followed(followed, len(journal_lines))
    assert (tmp_path / "journal.logs.jsonl").stat().st_size > 0

    def airfix(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "airfix.services.commands.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert 0 == proc.returncode, proc.stderr
        return proc.stdout

    assert followed.run_id in airfix("runs")
    status = json.loads(airfix("status", followed.run_id, "--json"))
    replay = json.loads(airfix("replay", followed.run_id, "--json"))["state"]
    status.pop("halted")
    assert status == replay and "partially_fixed" == status["status"]
    # tail afterwards (no --follow) shows the same events again, from the journal
    again = [
        json.loads(x)
        for x in airfix("tail", followed.run_id, "--json", "--type", "Committed").splitlines()
    ]
    assert [x["version"] for x in followed.tail_lines if x.get("type") == "Committed"] == [
        x["version"] for x in again
    ]
