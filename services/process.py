"""Child processes of tools and fixers: started in their own process group, bounded in time,
stopped as a group (SIGTERM, then SIGKILL) and never left running after the call.

Why a group: pytest and ``coverage run`` start children (xdist workers, subprocesses under
test) and agents start shells; killing only the leader would leave them running and holding the
pipes open.  The group is also killed after a normal exit so stray background children do not
outlive the call.  A step whose turn ended (:func:`~airfix.services.runtime.cancel.cancelled`)
stops its processes within a quarter second.

Two ways to run: :func:`run_process` captures stdout and stderr whole (a health tool's report);
:func:`stream_process` hands each stdout line to a callback as it arrives and keeps only a capped
stderr tail (an agent that works for minutes: progress is logged while it works, and it is
stopped when it hangs silently or lingers after its final output).

Children run at a lower CPU priority than the worker (:func:`set_child_niceness`, from
``consumers.child_niceness``): on a busy machine a test suite or a type checker then waits for
the worker's own threads, which renew leases, fold projections and decide steps, not the other
way round.

The environment is passed through as the caller built it (callers scrub it with
:func:`airfix.services.secrets.scrubbed_env`); ``None`` inherits airfix's own.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from airfix.services.runtime.cancel import cancelled

__all__ = [
    "KILL_GRACE_S",
    "STDERR_TAIL_CHARS",
    "TAIL_CHARS",
    "ProcessResult",
    "StreamResult",
    "exit_description",
    "find_executable",
    "kill_group",
    "run_process",
    "set_child_niceness",
    "stop_group",
    "stream_process",
    "tail",
]

KILL_GRACE_S = 2.0  # SIGTERM to SIGKILL, and SIGKILL to giving up on the process
TAIL_CHARS = 2000
STDERR_TAIL_CHARS = 4000  # what a streamed process keeps of its stderr
POLL_S = 0.25  # how often a waiting call looks at its deadlines and at cancellation
CANCELLED = "stopped: the run was cancelled or moved on"

T = TypeVar("T")

_child_niceness = 0  # added to this process's own niceness for each child (see the docstring)


def set_child_niceness(n: int) -> None:
    """Start every later child ``n`` niceness steps below this process (0: as this process)."""
    global _child_niceness
    _child_niceness = max(0, min(int(n), 19))


# ---------------------------------------------------------------- shared


def find_executable(name: str) -> str | None:
    """``name`` next to ``sys.executable`` first (a venv's own ruff), then on PATH.

    A name containing a path separator is taken as a path and must exist and be executable.
    """
    if os.sep in name or (os.altsep and os.altsep in name):
        p = Path(name)
        return str(p) if p.is_file() and os.access(p, os.X_OK) else None
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    """The last ``limit`` characters, stripped, marked with "…" when cut; "" stays ""."""
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def exit_description(code: int | None) -> str:
    """``exit 2`` or ``killed by signal 9``: how a process ended, for a failure message."""
    return f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"


def kill_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by ``pid``; a group that is gone already is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stop_group(proc: subprocess.Popen[bytes], wait: Callable[[float], T]) -> T | None:
    """SIGTERM the group and ``wait`` up to :data:`KILL_GRACE_S`; then the same with SIGKILL.

    ``wait(seconds)`` raises ``TimeoutExpired`` while the process runs (``proc.wait``, or
    ``proc.communicate`` to keep draining the pipes); ``None`` when even SIGKILL did not end it
    in time (a process in D state, or a child that left the group and holds the pipes)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        kill_group(proc.pid, sig)
        try:
            return wait(KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    return None


class _Held:
    """Ctrl-C and SIGTERM held back while a process is started: raised inside ``Popen`` they
    would leave the new process group running with nobody to kill it.  Only the main thread can
    hold them (and only it receives them)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.got: list[int] = []
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self.previous[s] = signal.signal(s, lambda n, _f: self.got.append(n))

    def release(self) -> None:
        """Put the handlers back and deliver what came meanwhile (call it inside the ``try``
        whose ``finally`` kills the group)."""
        for s, handler in self.previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        self.previous = {}
        for n in self.got:
            signal.raise_signal(n)


def _launch(
    cmd: Sequence[str], cwd: Path, env: Mapping[str, str] | None, stdin: int
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        list(cmd),
        cwd=str(cwd),
        env=dict(env) if env is not None else None,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    if _child_niceness:  # at once: the children it starts later inherit it
        own = os.getpriority(os.PRIO_PROCESS, 0)
        lower = min(own + _child_niceness, 19)
        with contextlib.suppress(ProcessLookupError):  # it has already ended: nothing to lower
            os.setpriority(os.PRIO_PROCESS, proc.pid, lower)
        _lower_autogroup(proc.pid, lower)
    return proc


def _lower_autogroup(pid: int, nice: int) -> None:
    """Give the child's session the child's niceness where the kernel groups by session.

    A new session is a scheduling group of its own on Linux with autogroup on (the default of
    most distributions): the kernel shares the CPU between groups first, and a niceness counts
    only inside its group, so a tool in its own session would get as much CPU as the whole worker
    whatever its niceness.  The group's niceness is what ranks it; raising it needs no privilege.
    """
    with contextlib.suppress(OSError), open(f"/proc/{pid}/autogroup", "w") as f:
        f.write(str(nice))  # no autogroup here (or it ended): OSError, niceness is enough


# ---------------------------------------------------------------- run: output captured


@dataclass
class ProcessResult:
    """A finished (or killed) process: everything needed to judge it and to explain a failure."""

    cmd: list[str]
    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    launch_error: str = ""
    cancelled: bool = False  # the step's turn ended (run cancelled or moved on): group killed


def run_process(
    cmd: Sequence[str],
    cwd: Path,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
) -> ProcessResult:
    """Run ``cmd`` in its own process group; on timeout or cancellation kill the whole group.

    stdout and stderr are read concurrently (``communicate``), so a chatty tool cannot deadlock;
    what it printed before it was killed is kept.
    """
    start = time.monotonic()
    held = _Held()
    try:
        proc = _launch(cmd, cwd, env, subprocess.DEVNULL)
    except OSError as exc:
        held.release()
        return ProcessResult(
            list(cmd), None, "", "", time.monotonic() - start, launch_error=str(exc)
        )
    deadline = start + max(timeout_s, 0.001)
    try:
        held.release()
        output, stopped = _communicate_until(proc, deadline)
        timed_out = output is None and not stopped
        if output is None:
            output = stop_group(proc, lambda t: proc.communicate(timeout=t))
        if output is None:  # a child left the group and holds the pipes
            proc.kill()
            output = (b"", b"")
    finally:
        kill_group(proc.pid, signal.SIGKILL)
    out, err = output
    return ProcessResult(
        cmd=list(cmd),
        exit_code=proc.returncode,
        stdout=(out or b"").decode("utf-8", errors="replace"),
        stderr=(err or b"").decode("utf-8", errors="replace"),
        duration_s=time.monotonic() - start,
        timed_out=timed_out,
        cancelled=stopped,
    )


def _communicate_until(
    proc: subprocess.Popen[bytes], deadline: float
) -> tuple[tuple[bytes, bytes] | None, bool]:
    """The output once the process ends by itself, else ``None``: past the deadline, or
    cancelled (the second value)."""
    while True:  # in slices, so a cancelled step stops its processes promptly
        try:
            left = deadline - time.monotonic()
            return proc.communicate(timeout=max(0.001, min(POLL_S, left))), False
        except subprocess.TimeoutExpired:
            if cancelled():
                return None, True
            if time.monotonic() >= deadline:
                return None, False


# ---------------------------------------------------------------- stream: lines as they come

_EOF = object()


@dataclass
class StreamResult:
    """How a streamed process ended.  ``killed`` is the reason airfix killed it ("" if it was not)."""

    cmd: list[str]
    exit_code: int | None
    stderr_tail: str
    duration_s: float
    lines: int = 0
    killed: str = ""
    launch_error: str = ""
    done_early: bool = False  # the callback said "done" (e.g. a final result event was seen)
    lingered: bool = False  # ... and the process did not exit by itself within the grace period


class _Pipes:
    """The reader (and writer) threads of a streamed process: stdout lines into a queue as they
    arrive, the last :data:`STDERR_TAIL_CHARS` of stderr, ``stdin_text`` written and closed."""

    def __init__(self, proc: subprocess.Popen[bytes], stdin_text: str | None) -> None:
        self.proc = proc
        self.lines: queue.Queue[object] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque()
        self._stderr_size = 0
        self._stdin_text = stdin_text
        self.threads = [
            threading.Thread(target=self._read_stdout, name="fixer-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="fixer-stderr", daemon=True),
        ]
        if stdin_text is not None:
            self.threads.append(
                threading.Thread(target=self._write_stdin, name="fixer-stdin", daemon=True)
            )
        for t in self.threads:
            t.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        try:
            for raw in iter(self.proc.stdout.readline, b""):
                self.lines.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        except (OSError, ValueError):
            pass
        finally:
            self.lines.put(_EOF)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        try:
            fd = self.proc.stderr.fileno()
            for raw in iter(lambda: os.read(fd, 8192), b""):
                chunk = raw.decode("utf-8", errors="replace")
                self._stderr.append(chunk)
                self._stderr_size += len(chunk)
                while self._stderr_size > STDERR_TAIL_CHARS * 2 and len(self._stderr) > 1:
                    self._stderr_size -= len(self._stderr.popleft())
        except (OSError, ValueError):
            pass

    def _write_stdin(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError, ValueError):  # the process stopped reading
            self.proc.stdin.write((self._stdin_text or "").encode("utf-8"))
        with contextlib.suppress(OSError):
            self.proc.stdin.close()

    def stderr_tail(self) -> str:
        return "".join(self._stderr)[-STDERR_TAIL_CHARS:]

    def close(self) -> None:
        for t in self.threads:
            t.join(timeout=KILL_GRACE_S)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@dataclass
class _Stream:
    """One streamed process's clock and how it is ending."""

    proc: subprocess.Popen[bytes]
    pipes: _Pipes
    timeout_s: float
    idle_timeout_s: float
    started: float
    last_output: float = 0.0
    lines: int = 0
    killed: str = ""
    done: bool = False
    lingered: bool = False
    eof: bool = False

    def overall_left(self) -> float:
        return self.started + self.timeout_s - time.monotonic()

    def timed_out(self) -> str:
        return f"timed out after {self.timeout_s:g}s (fixer.timeout_s)"

    def idle(self) -> str:
        return f"no output for {self.idle_timeout_s:g}s (fixer.idle_timeout_s)"

    def why_stop(self) -> str:
        """The reason to kill the process now, "" while it may go on."""
        if self.overall_left() <= 0:
            return self.timed_out()
        if self.last_output + self.idle_timeout_s - time.monotonic() <= 0:
            return self.idle()
        return CANCELLED if cancelled() else ""

    def pump(self, on_line: Callable[[str], bool | None]) -> None:
        """Hand stdout lines to ``on_line`` until it says done, stdout closes, or a limit fires."""
        while not (self.killed or self.done or self.eof):
            self.killed = self.why_stop()
            if self.killed:
                return
            idle_left = self.last_output + self.idle_timeout_s - time.monotonic()
            try:
                item = self.pipes.lines.get(
                    timeout=max(0.01, min(self.overall_left(), idle_left, POLL_S))
                )
            except queue.Empty:
                continue
            if item is _EOF:
                self.eof = True
                return
            self.last_output = time.monotonic()
            self.lines += 1
            self.done = bool(on_line(str(item)))

    def settle(self, done_grace_s: float) -> None:
        """End the process the way ``pump`` left it: killed, given its grace, or waited for."""
        if self.killed:
            self.stop()
        elif self.done:  # the final output was seen: it may exit by itself within the grace
            if not self._exits_within(min(done_grace_s, self.overall_left())):
                self.lingered = True
                self.stop()
        elif self.eof:  # stdout closed: the process should be exiting; silence counts as idle now
            overall_left = self.overall_left()
            if not self._exits_within(min(overall_left, self.idle_timeout_s)):
                reason = self.timed_out() if overall_left <= self.idle_timeout_s else self.idle()
                self.killed = reason + " after closing its output"
                self.stop()

    def _exits_within(self, seconds: float) -> bool:
        try:
            self.proc.wait(timeout=max(0.01, seconds))
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self) -> None:
        stop_group(self.proc, lambda t: self.proc.wait(timeout=t))


def stream_process(
    cmd: Sequence[str],
    cwd: Path,
    *,
    timeout_s: float,
    idle_timeout_s: float,
    on_line: Callable[[str], bool | None],
    env: Mapping[str, str] | None = None,
    stdin_text: str | None = None,
    done_grace_s: float = 5.0,
) -> StreamResult:
    """Run ``cmd`` (cwd = ``cwd``) in a new process group, calling ``on_line`` per stdout line.

    ``on_line`` gets each line without its newline as soon as it is read; returning True means
    "the final output has been seen": the process then gets ``done_grace_s`` to exit by itself
    before its group is killed (``lingered``), which is not a failure.  The group is killed on the
    overall timeout (``timeout_s``), on the idle-output timeout (``idle_timeout_s``: no stdout
    line for that long, also after stdout closed) and on cancellation, with the reason in
    ``killed``.  stderr is drained concurrently and its tail kept.  The process group is always
    killed at the end, so no child of the process outlives the call.  Lines that arrive after
    "done" are not passed on; they are not part of the outcome.
    """
    started = time.monotonic()
    held = _Held()
    try:
        proc = _launch(
            cmd, cwd, env, subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL
        )
    except OSError as exc:
        held.release()
        return StreamResult(list(cmd), None, "", time.monotonic() - started, launch_error=str(exc))
    pipes = _Pipes(proc, stdin_text)
    run = _Stream(proc, pipes, timeout_s, idle_timeout_s, started, last_output=started)
    try:
        held.release()  # a Ctrl-C that came while starting is raised here: the group goes below
        run.pump(on_line)
        run.settle(done_grace_s)
    finally:
        if proc.poll() is None:  # on_line raised: never leave the process running
            run.stop()
        kill_group(proc.pid, signal.SIGKILL)  # stray children of a process that exited
        pipes.close()
    return StreamResult(
        cmd=list(cmd),
        exit_code=proc.returncode,
        stderr_tail=pipes.stderr_tail(),
        duration_s=time.monotonic() - started,
        lines=run.lines,
        killed=run.killed,
        done_early=run.done,
        lingered=run.lingered,
    )
