"""``airfix run``'s live status line, for real: under a pseudo-terminal it shows the step and the
tool being run with their elapsed times (inline, and waiting for a worker on the Redis server);
in a pipe, or with ``--json``, there is no such line and no control sequence at all."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path

from msgspec.structs import replace

from airfix.events.core.machine import RunState
from airfix.services.commands.live import step_label
from tests.conftest import REAL_URL, real_client

CLI = [sys.executable, "-m", "airfix.services.commands.cli"]
#: a frame of the live line: the step, its elapsed time, and a tool with its own
LIVE = re.compile(
    r"(health check|closing check|verifying)[^\r\n]*· \d+\.\ds · running "
    r"[^\r\n]*\b(ruff|mypy|pytest|coverage) \(\d+\.\ds\)"
)
ESC = "\x1b"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFIX")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    # a journal of its own, the sample's copy under tmp_path; TERM so rich treats the pty as one
    return {**env, "HOME": str(home), "TMPDIR": str(tmp_path), "TERM": "xterm", **extra}


def _under_pty(args: list[str], env: dict[str, str], timeout_s: float = 300) -> tuple[int, str]:
    """Run the CLI with stdin, stdout and stderr on a pseudo-terminal 200 columns wide; return its
    exit code and everything it wrote there."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal's size, then the CLI
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        os.execve(CLI[0], [*CLI, *args], env)
    out = bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal (it exited)
                break
            if not chunk:
                break
            out += chunk
        else:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"airfix {' '.join(args)} did not end: {out[-2000:]!r}")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", errors="replace")


def test_the_step_labels_name_the_step_and_what_it_works_on() -> None:
    base = RunState(run_id="r", fixer="autofix", iteration=2)
    assert "health check (iteration 2)" == step_label(replace(base, state="checking"))
    fixing = replace(base, state="fixing", current_batch="r/2-1")
    assert "fixing r/2-1 with autofix" == step_label(fixing)
    assert "verifying r/2-1" == step_label(replace(fixing, state="verifying"))
    assert "" == step_label(replace(base, state="completed"))


def test_on_a_terminal_a_live_line_shows_the_tool_running_and_in_a_pipe_nothing(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path)
    code, screen = _under_pty(["run", "--sample", "--max-iterations", "1"], env)
    assert code in (0, 3, 11), screen[-3000:]
    assert LIVE.search(screen), screen[-3000:]
    assert "\x1b[2K" in screen  # the line is erased when its step ends, not left behind
    # the progress lines are still there, each whole, the live line no longer below the last
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert re.search(r"\d\d:\d\d:\d\d health check \(full, iteration 1\): score", text)
    last = screen[screen.index("run finished:") :]
    assert "\x1b[36m" not in last and "running " not in last

    piped = subprocess.run(
        [*CLI, "run", "--sample", "--max-iterations", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert piped.returncode in (0, 3, 11), piped.stderr[-3000:]
    assert "health check (full, iteration 1)" in piped.stderr
    assert ESC not in piped.stderr and ESC not in piped.stdout
    assert not LIVE.search(piped.stderr) and "running " not in piped.stderr


def test_json_on_a_terminal_has_no_live_line(tmp_path: Path) -> None:
    code, screen = _under_pty(
        ["run", "--sample", "--max-iterations", "1", "--json"], _env(tmp_path)
    )
    assert code in (0, 3, 11), screen[-3000:]
    assert '"run_id"' in screen and "health check (full, iteration 1)" in screen
    assert not LIVE.search(screen) and "\x1b[2K" not in screen


def test_waiting_for_a_worker_the_live_line_shows_the_workers_tools(tmp_path: Path) -> None:
    """The tools run in the worker's process: the line learns of them from the log stream."""
    prefix = f"airfix_live_{uuid.uuid4().hex[:10]}"
    env = _env(tmp_path, AIRFIX__STORE__PREFIX=prefix, AIRFIX__CONSUMERS__BLOCK_MS="200")
    worker = subprocess.Popen(
        [*CLI, "worker", "--redis-url", REAL_URL, "--roles", "all"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the worker has joined every group
            doctor = subprocess.run(
                [*CLI, "doctor", "--redis-url", REAL_URL],
                env=env,
                capture_output=True,
                timeout=60,
                check=False,
            )
            if doctor.returncode == 0:
                break
            time.sleep(0.5)
        code, screen = _under_pty(
            ["run", "--redis-url", REAL_URL, "--sample", "--max-iterations", "1"], env
        )
        assert code in (0, 3, 11), screen[-3000:]
        assert LIVE.search(screen), screen[-3000:]
    finally:
        worker.terminate()
        worker.wait(30)
        client = real_client()
        for pattern in (f"{prefix}:*", f"{{{prefix}:*"):
            for key in client.scan_iter(match=pattern, count=1000):
                client.delete(key)
