"""The embedded store survives between commands through its journal; a torn tail loses nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline_harness import make_repo


def airfix(journal: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIRFIX__STORE__JOURNAL": str(journal)}
    env.pop("AIRFIX_REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "airfix.services.commands.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.jsonl"


def _run(journal: Path, repo: Path) -> str:
    out = airfix(
        journal, "run", "--target", str(repo), "--simulation", "--max-iterations", "1", "--json"
    )
    assert 0 == out.returncode, out.stderr[-3000:]
    return json.loads(out.stdout)["run_id"]


def test_runs_outlive_the_process_on_the_embedded_store(journal: Path, tmp_path: Path) -> None:
    run_id = _run(journal, make_repo(tmp_path / "a"))
    runs = json.loads(airfix(journal, "runs", "--json").stdout)
    assert [run_id] == [r["run_id"] for r in runs]
    status = json.loads(airfix(journal, "status", run_id, "--json").stdout)
    assert ("completed", "simulated") == (status["state"], status["status"])
    replay = json.loads(airfix(journal, "replay", run_id, "--json").stdout)
    assert status["version"] == replay["state"]["version"]
    second = _run(journal, make_repo(tmp_path / "b"))
    assert [second, run_id] == [
        r["run_id"] for r in json.loads(airfix(journal, "runs", "--json").stdout)
    ]


def test_a_torn_last_line_is_reported_and_everything_before_it_kept(
    journal: Path, tmp_path: Path
) -> None:
    run_id = _run(journal, make_repo(tmp_path / "a"))
    good = journal.read_bytes()
    with journal.open("ab") as fh:
        fh.write(b'{"type":"RunStarted","event_id":"01TORN')  # a crash mid-write
    out = airfix(journal, "status", run_id, "--json")
    assert 0 == out.returncode, out.stderr
    assert "is torn" in out.stderr and "keeping the" in out.stderr
    assert "completed" == json.loads(out.stdout)["state"]
    assert good == journal.read_bytes()  # cut back to the complete lines
    _run(journal, make_repo(tmp_path / "b"))  # and the journal goes on from there
    assert 2 == len(json.loads(airfix(journal, "runs", "--json").stdout))


def test_a_corrupt_line_in_the_middle_is_an_error_naming_it(journal: Path, tmp_path: Path) -> None:
    _run(journal, make_repo(tmp_path / "a"))
    lines = journal.read_bytes().split(b"\n")
    lines[2] = b"not an event"
    journal.write_bytes(b"\n".join(lines))
    out = airfix(journal, "runs", "--json")
    assert 2 == out.returncode
    assert "line 3" in out.stderr and str(journal) in out.stderr


def test_serve_redis_lets_redis_cli_look_at_an_embedded_run(journal: Path, tmp_path: Path) -> None:
    """airfix run --serve-redis PORT: redis-cli reads the run's stream from a server-less machine."""
    import signal
    import time

    from tests.redis_procs import free_port

    port = free_port()
    env = {**os.environ, "AIRFIX__STORE__JOURNAL": str(journal)}
    env.pop("AIRFIX_REDIS_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airfix.services.commands.cli",
            "run",
            "--target",
            str(make_repo(tmp_path / "a")),
            "--simulation",
            "--max-iterations",
            "1",
            "--json",
            "--serve-redis",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        summary = json.loads(proc.stdout.readline())  # the run is over; the store is still served
        deadline = time.monotonic() + 30
        stream = ""
        while time.monotonic() < deadline and not stream:
            keys = subprocess.run(
                ["redis-cli", "-p", str(port), "--scan", "--pattern", "*:run:*"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.split()
            stream = next((k for k in keys if k.endswith(summary["run_id"])), "")
            time.sleep(0.1)
        assert stream, "the run's stream is not visible over TCP"
        xrange = subprocess.run(
            ["redis-cli", "-p", str(port), "XRANGE", stream, "-", "+", "COUNT", "1"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        assert "RunRequested" in xrange and "0-1" in xrange
        status = subprocess.run(
            ["redis-cli", "-p", str(port), "HGET", "autonomous_fix:status", summary["run_id"]],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        assert '"status":"simulated"' in status
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert 0 == proc.returncode  # simulated
