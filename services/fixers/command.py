"""The ``command`` fixer: any agent CLI from an argv template.

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

:func:`airfix.services.process.stream_process` runs the agent in its own process group, logs every
stdout line as it arrives, and kills the whole group on the overall timeout (``fixer.timeout_s``),
on the idle-output timeout (``fixer.idle_timeout_s``: no stdout line for that long) and after the
process ends (stray children).  Agents are known to hang silently and to hang after their final
output; both are stopped with the reason in the outcome.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from airfix.config import FixerConfig
from airfix.events.schema import IssueRecord
from airfix.services.fixers import FixOutcome, FixRequest
from airfix.services.process import exit_description, find_executable, stream_process, tail
from airfix.services.runtime.logs import get_logger
from airfix.services.secrets import scrubbed_env

__all__ = ["PLACEHOLDERS", "CommandFixer", "expand_command"]

log = get_logger("airfix.fixers.command")

LOG_TEXT_CHARS = 300
REASON_TAIL_CHARS = 500  # of the agent's stderr, in a failed fix's reason
PLACEHOLDERS = ("prompt_file", "files_file", "files", "target", "batch_id", "run_id", "phase")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
        stderr = tail(res.stderr_tail, REASON_TAIL_CHARS)
        if res.launch_error:
            reason = f"{name}: could not start: {res.launch_error}"
        elif res.killed:
            reason = f"{name}: {res.killed}; its process group was killed"
        elif res.exit_code != 0:
            how = exit_description(res.exit_code)
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
