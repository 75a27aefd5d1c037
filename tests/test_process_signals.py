"""Ctrl-C while a process is being started: held until the runner can kill what it started.

Raised inside ``Popen`` (after the child exists, before the runner's ``try``), a KeyboardInterrupt
left the child's process group running: an agent kept editing after ``airfix run`` said the run
was cancelled.  The runner holds SIGINT/SIGTERM while starting and delivers them inside the
``try`` whose ``finally`` kills the group."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from airfix.services import process
from airfix.services.process import _Held, run_process, stream_process


def test_a_held_interrupt_is_delivered_on_release_not_before() -> None:
    held = _Held()
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # a handler runs between bytecodes: had it raised, we would not be here
    assert held.got == [signal.SIGINT]
    with pytest.raises(KeyboardInterrupt):
        held.release()
        time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _interrupt_during_launch(monkeypatch: pytest.MonkeyPatch, pidfile: Path) -> None:
    """Send Ctrl-C to ourselves right after the child exists, as a user's would arrive."""
    real = process._launch

    def launch(*args, **kwargs):  # type: ignore[no-untyped-def]
        proc = real(*args, **kwargs)
        pidfile.write_text(str(proc.pid))
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the signal arrives while we are still "in Popen"
        return proc

    monkeypatch.setattr(process, "_launch", launch)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split()[2] == "Z"


@pytest.mark.parametrize("runner", ["run", "stream"])
def test_ctrl_c_while_starting_kills_what_was_started(
    runner: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pidfile = tmp_path / "pid"
    _interrupt_during_launch(monkeypatch, pidfile)
    cmd = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(KeyboardInterrupt):
        if runner == "run":
            run_process(cmd, tmp_path, timeout_s=60)
        else:
            stream_process(cmd, tmp_path, timeout_s=60, idle_timeout_s=60, on_line=lambda _l: None)
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid), "the process started before Ctrl-C outlived the runner"
