"""The ``command`` fixer (any agent CLI from a template) and the streaming process runner that it
and the ``claude`` fixer share.

``fixer.command`` is an argv template, e.g. ``["aider", "--yes", "--message-file",
"{prompt_file}", "{files}"]``.  Placeholders are substituted per argument, never through a shell:

* ``{prompt_file}``: a temporary file holding the rendered prompt (outside the target, so it
  never dirties the tree airfix commits);
* ``{files_file}``: a temporary file listing the batch's files, one per line;
* ``{files}``: only as a whole argument; expands to one argument per file (a path starting with
  ``-`` is passed as ``./-name`` so no agent takes it for an option);
* ``{target}``, ``{batch_id}``, ``{run_id}``, ``{phase}``; ``{{`` and ``}}`` are literal braces.

Substitution is a single pass: a value containing ``{target}`` or ``$(rm -rf ~)`` stays those
characters.  An unknown placeholder is a failed fix naming it, not a silently wrong command.
The same values are also in the environment (``AIRFIX_PROMPT_FILE``, ``AIRFIX_FILES_FILE``,
``AIRFIX_TARGET``, ``AIRFIX_BATCH_ID``, ``AIRFIX_RUN_ID``, ``AIRFIX_PHASE``) for wrapper scripts.

A generic agent has no structured result, so exit 0 means the fixer finished and anything else
is a failure with the stderr tail; the verifier judges the edits either way.

:func:`stream_process` runs a fixer in its own process group, hands every stdout line to a
callback as it arrives (so progress is logged while the agent works, not after it exits), and
kills the whole group on the overall timeout (``fixer.timeout_s``), on the idle-output timeout
(``fixer.idle_timeout_s``: no stdout line for that long) and after the process ends (stray
children).  Agents are known to hang silently and to hang after their final output (seed
research A.8); both are stopped here with the reason in the result.
"""

from __future__ import annotations

import collections
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from airfix.config import FixerConfig
from airfix.events.schema import IssueRecord
from airfix.services.fixers import FixOutcome, FixRequest
from airfix.services.runtime.cancel import cancelled
from airfix.services.runtime.logs import get_logger
from airfix.services.secrets import scrubbed_env

__all__ = [
    "KILL_GRACE_S",
    "PLACEHOLDERS",
    "CommandFixer",
    "StreamResult",
    "expand_command",
    "stream_process",
]

log = get_logger("airfix.fixers.command")

KILL_GRACE_S = 2.0  # SIGTERM to SIGKILL
STDERR_TAIL_CHARS = 4000
LOG_TEXT_CHARS = 300
PLACEHOLDERS = ("prompt_file", "files_file", "files", "target", "batch_id", "run_id", "phase")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_EOF = object()


# ---------------------------------------------------------------- the streaming runner


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


def _kill_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group, give it :data:`KILL_GRACE_S`, then SIGKILL the group."""
    _kill_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:  # unkillable (D state); do not hang airfix on it
        pass


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
    before its group is killed (``lingered``), which is not a failure.  stderr is drained
    concurrently and its tail kept.  The process group is always killed at the end, so no child
    of the fixer outlives the call.
    """
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(cmd),
            cwd=str(cwd),
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return StreamResult(list(cmd), None, "", time.monotonic() - started, launch_error=str(exc))

    lines: queue.Queue[object] = queue.Queue()
    err_tail: collections.deque[str] = collections.deque()
    err_size = [0]

    def read_stdout() -> None:
        assert proc.stdout is not None
        try:
            for raw in iter(proc.stdout.readline, b""):
                lines.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        except (OSError, ValueError):
            pass
        finally:
            lines.put(_EOF)

    def read_stderr() -> None:
        assert proc.stderr is not None
        try:
            fd = proc.stderr.fileno()
            for raw in iter(lambda: os.read(fd, 8192), b""):
                chunk = raw.decode("utf-8", errors="replace")
                err_tail.append(chunk)
                err_size[0] += len(chunk)
                while err_size[0] > STDERR_TAIL_CHARS * 2 and len(err_tail) > 1:
                    err_size[0] -= len(err_tail.popleft())
        except (OSError, ValueError):
            pass

    def write_stdin() -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write((stdin_text or "").encode("utf-8"))
        except (BrokenPipeError, OSError, ValueError):
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    threads = [
        threading.Thread(target=read_stdout, name="fixer-stdout", daemon=True),
        threading.Thread(target=read_stderr, name="fixer-stderr", daemon=True),
    ]
    if stdin_text is not None:
        threads.append(threading.Thread(target=write_stdin, name="fixer-stdin", daemon=True))
    for t in threads:
        t.start()

    killed = ""
    done = lingered = eof = False
    count = 0
    last_output = started
    try:
        while True:
            now = time.monotonic()
            overall_left = started + timeout_s - now
            idle_left = last_output + idle_timeout_s - now
            if overall_left <= 0:
                killed = f"timed out after {timeout_s:g}s (fixer.timeout_s)"
                break
            if idle_left <= 0:
                killed = f"no output for {idle_timeout_s:g}s (fixer.idle_timeout_s)"
                break
            if cancelled():
                killed = "stopped: the run was cancelled or moved on"
                break
            try:
                item = lines.get(timeout=max(0.01, min(overall_left, idle_left, 0.25)))
            except queue.Empty:
                continue
            if item is _EOF:
                eof = True
                break
            last_output = time.monotonic()
            count += 1
            if on_line(str(item)):
                done = True
                break
        if killed:
            _terminate(proc)
        elif done:
            try:
                proc.wait(
                    timeout=max(0.01, min(done_grace_s, started + timeout_s - time.monotonic()))
                )
            except subprocess.TimeoutExpired:
                lingered = True
                _terminate(proc)
        elif eof:  # stdout closed: the process should be exiting; silence counts as idle now
            overall_left = started + timeout_s - time.monotonic()
            try:
                proc.wait(timeout=max(0.01, min(overall_left, idle_timeout_s)))
            except subprocess.TimeoutExpired:
                killed = (
                    f"timed out after {timeout_s:g}s (fixer.timeout_s)"
                    if overall_left <= idle_timeout_s
                    else f"no output for {idle_timeout_s:g}s (fixer.idle_timeout_s)"
                )
                killed += " after closing its output"
                _terminate(proc)
    finally:
        if proc.poll() is None:  # on_line raised: never leave the agent running
            _terminate(proc)
        _kill_group(proc.pid, signal.SIGKILL)  # stray children of a process that exited
        for t in threads:
            t.join(timeout=KILL_GRACE_S)
        for pipe in (proc.stdout, proc.stderr):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
    # Lines that arrived after "done" are not passed on; they are not part of the outcome.
    stderr = "".join(err_tail)[-STDERR_TAIL_CHARS:]
    return StreamResult(
        cmd=list(cmd),
        exit_code=proc.returncode,
        stderr_tail=stderr,
        duration_s=time.monotonic() - started,
        lines=count,
        killed=killed,
        launch_error="",
        done_early=done,
        lingered=lingered,
    )


def tail_text(text: str, limit: int = 500) -> str:
    """The last ``limit`` characters, stripped; "" stays ""."""
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


# ---------------------------------------------------------------- the command fixer


class CommandError(ValueError):
    """The command template cannot be expanded (unknown placeholder, misplaced ``{files}``)."""


def _safe_file_arg(path: str) -> str:
    return f"./{path}" if path.startswith("-") else path


def expand_command(
    template: Sequence[str], values: Mapping[str, str], files: Sequence[str]
) -> list[str]:
    """The argv for ``template``: each argument substituted on its own, ``{files}`` expanded.

    Raises :class:`CommandError` for an unknown placeholder or ``{files}`` inside a longer
    argument (it expands to several arguments, which cannot be spliced into one).
    """
    argv: list[str] = []
    for arg in template:
        if arg == "{files}":
            argv += [_safe_file_arg(f) for f in files]
            continue

        def sub(m: re.Match[str], arg: str = arg) -> str:
            token = m.group(0)
            if token == "{{":
                return "{"
            if token == "}}":
                return "}"
            name = m.group(1)
            if name == "files":
                raise CommandError(
                    f"fixer.command: {{files}} must be a whole argument, got {arg!r}; "
                    "use {files_file} inside a longer argument"
                )
            if name not in values:
                raise CommandError(
                    f"fixer.command: unknown placeholder {{{name}}} in {arg!r}; known: "
                    + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                )
            return values[name]

        argv.append(_PLACEHOLDER.sub(sub, arg))
    return argv


class CommandFixer:
    """Runs ``fixer.command`` (any agent CLI) on a batch; exit 0 = done, the verifier judges."""

    name = "command"

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool:
        return True  # a generic agent tries anything; what it cannot fix the verifier rejects

    def check(self, config: FixerConfig) -> str:
        """What stops this fixer from starting at all ("" = nothing): no template, a template that
        does not expand, a program that is not there."""
        from airfix.services.tools.base import find_executable

        if not config.command:
            return (
                "fixer command: fixer.command is empty; set the agent command template, e.g. "
                '["aider", "--yes", "--message-file", "{prompt_file}", "{files}"]'
            )
        try:
            argv = expand_command(config.command, {p: p for p in PLACEHOLDERS}, ["file.py"])
        except CommandError as exc:
            return f"fixer command: {exc}"
        if not argv or find_executable(argv[0]) is None:
            return (
                f"fixer command: executable {(argv or [''])[0]!r} of fixer.command not found (looked "
                "next to the Python interpreter and on PATH); install it or give its full path"
            )
        return ""

    def fix(self, request: FixRequest) -> FixOutcome:
        from airfix.services.fixers.prompts import render_request
        from airfix.services.tools.base import find_executable

        started = time.monotonic()
        cfg = request.config
        batch = request.batch
        if not cfg.command:
            return FixOutcome(
                ok=False,
                reason="fixer.command is empty: set the agent command "
                'template, e.g. ["aider", "--yes", "--message-file", "{prompt_file}", '
                '"{files}"]',
            )
        files = list(dict.fromkeys([*batch.files, *(i.file for i in request.issues if i.file)]))
        try:
            prompt = render_request(request)
        except Exception as exc:  # noqa: BLE001 - a broken prompts file fails this fix, clearly
            return FixOutcome(
                ok=False,
                reason=f"cannot render the prompt: {exc}",
                duration_s=time.monotonic() - started,
            )
        with tempfile.TemporaryDirectory(prefix="airfix-fix-") as tmp:
            prompt_file = Path(tmp) / "prompt.md"
            files_file = Path(tmp) / "files.txt"
            prompt_file.write_text(prompt, encoding="utf-8")
            files_file.write_text("".join(f"{f}\n" for f in files), encoding="utf-8")
            values = {
                "prompt_file": str(prompt_file),
                "files_file": str(files_file),
                "target": str(request.target),
                "batch_id": batch.batch_id,
                "run_id": request.run_id,
                "phase": batch.phase,
            }
            try:
                argv = expand_command(cfg.command, values, files)
            except CommandError as exc:
                return FixOutcome(ok=False, reason=str(exc), duration_s=time.monotonic() - started)
            exe = find_executable(argv[0]) if argv else None
            if exe is None:
                return FixOutcome(
                    ok=False,
                    reason=f"fixer.command: executable {argv[0]!r} not found "
                    "(looked next to the Python interpreter and on PATH)",
                    commands=[argv],
                    duration_s=time.monotonic() - started,
                )
            argv[0] = exe
            # the agent works in the target: airfix's secrets scrubbed, plus what the config names
            env = {
                **scrubbed_env(os.environ, keep=cfg.command_env),
                "AIRFIX_PROMPT_FILE": str(prompt_file),
                "AIRFIX_FILES_FILE": str(files_file),
                "AIRFIX_TARGET": str(request.target),
                "AIRFIX_BATCH_ID": batch.batch_id,
                "AIRFIX_RUN_ID": request.run_id,
                "AIRFIX_PHASE": batch.phase,
            }
            ctx = {"fixer": self.name, "batch_id": batch.batch_id}
            log.info("fixer started", command=argv, cwd=str(request.target), **ctx)

            def on_line(line: str) -> None:
                if line.strip():
                    log.info("fixer progress", kind="output", text=line[:LOG_TEXT_CHARS], **ctx)

            res = stream_process(
                argv,
                request.target,
                timeout_s=cfg.timeout_s,
                idle_timeout_s=cfg.idle_timeout_s,
                on_line=on_line,
                env=env,
            )
        duration = time.monotonic() - started
        name = Path(argv[0]).name
        stderr = tail_text(res.stderr_tail)
        if res.launch_error:
            reason = f"{name}: could not start: {res.launch_error}"
        elif res.killed:
            reason = f"{name}: {res.killed}; its process group was killed"
        elif res.exit_code != 0:
            how = (
                f"killed by signal {-res.exit_code}"
                if res.exit_code is not None and res.exit_code < 0
                else f"exit {res.exit_code}"
            )
            reason = f"{name}: {how}" + (f"; stderr: {stderr}" if stderr else "")
        else:
            reason = ""
        outcome = FixOutcome(ok=not reason, reason=reason, duration_s=duration, commands=[argv])
        log.info(
            "fixer finished",
            ok=outcome.ok,
            reason=reason[:LOG_TEXT_CHARS],
            exit_code=res.exit_code,
            duration_s=round(duration, 3),
            **ctx,
        )
        return outcome
