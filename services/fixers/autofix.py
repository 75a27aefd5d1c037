"""Deterministic fixers: each tool's own fixer, on the batch's issues only.

One deterministic fix per tool, registered with :func:`register_deterministic`: ``ruff`` applies
ruff's fix edits for the batch's diagnostics (``autofix_ruff.py``), ``eslint``, ``gofmt`` and
``dart`` theirs.  A fix is either an :class:`EditFix` (it edits the files itself, so it can take
exactly the batch's issues) or a :class:`CommandFix` (commands run in the target).  Issues of a
tool without one are refused, never "fixed"; unsafe fixes only with ``fixer.allow_unsafe_fixes``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from airfix.config import FixerConfig
from airfix.events.schema import IssueRecord
from airfix.services.fixers import FixOutcome, FixRequest
from airfix.services.process import run_process, tail
from airfix.services.secrets import scrubbed_env


class DeterministicFix(Protocol):
    tool: str

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool: ...


@runtime_checkable
class EditFix(DeterministicFix, Protocol):
    """Edits the target's files itself, for exactly ``issues``."""

    def apply(
        self,
        target: Path,
        issues: Sequence[IssueRecord],
        config: FixerConfig,
        *,
        environment: Mapping[str, str] = ...,
    ) -> FixOutcome:
        """``environment``: what the run's checks use (``RunStarted.environment``), so the fix
        runs the same tool as the check that judges it."""
        ...


@runtime_checkable
class CommandFix(DeterministicFix, Protocol):
    """Runs commands in the target (cwd = target)."""

    def commands(
        self, target: Path, issues: Sequence[IssueRecord], config: FixerConfig
    ) -> list[list[str]]:
        """The commands to run; [] when the tool is not installed."""
        ...

    def ok_exit(self, code: int) -> bool: ...


DETERMINISTIC: dict[str, DeterministicFix] = {}


def register_deterministic(fix: DeterministicFix) -> None:
    DETERMINISTIC[fix.tool] = fix


def _run_commands(
    fixer: CommandFix, request: FixRequest, issues: list[IssueRecord], ran: list[list[str]]
) -> str:
    """Run a command fix; the reason it failed, or "" when it worked."""
    commands = fixer.commands(request.target, issues, request.config)
    if not commands:
        return f"{fixer.tool}'s fixer is not installed"
    env = {**scrubbed_env(os.environ), "RUFF_NO_CACHE": "true"}  # the fixer runs the target's code
    for cmd in commands:
        ran.append(cmd)
        proc = run_process(cmd, request.target, request.config.timeout_s, env)
        if (
            proc.timed_out
            or proc.launch_error
            or proc.exit_code is None
            or not fixer.ok_exit(proc.exit_code)
        ):
            why = proc.launch_error or ("timed out" if proc.timed_out else f"exit {proc.exit_code}")
            return f"{' '.join(Path(cmd[0]).name.split() + cmd[1:3])} failed ({why}): {tail(proc.stderr, 500)}"
    return ""


class AutoFixer:
    name = "autofix"
    deterministic = True  # the same issues always get the same edits: a stack can be rebuilt

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool:
        fix = DETERMINISTIC.get(issue.tool)
        return fix is not None and fix.supports(issue, config)

    def fix(self, request: FixRequest) -> FixOutcome:
        started = time.monotonic()
        by_tool: dict[str, list[IssueRecord]] = {}
        for issue in request.issues:
            if self.supports(issue, request.config):
                by_tool.setdefault(issue.tool, []).append(issue)
        others = sorted({i.tool for i in request.issues if not self.supports(i, request.config)})
        if not by_tool:
            return FixOutcome(
                ok=False,
                reason=f"no deterministic fixer for {', '.join(others)} issues",
                duration_s=time.monotonic() - started,
            )
        ran: list[list[str]] = []
        for tool, issues in sorted(by_tool.items()):
            fixer = DETERMINISTIC[tool]
            if isinstance(fixer, EditFix):
                outcome = fixer.apply(
                    request.target, issues, request.config, environment=request.environment
                )
                ran += outcome.commands
                failure = "" if outcome.ok else outcome.reason
            elif isinstance(fixer, CommandFix):
                failure = _run_commands(fixer, request, issues, ran)
            else:
                failure = f"{tool}'s fixer has neither apply() nor commands()"
            if failure:
                return FixOutcome(
                    ok=False, reason=failure, commands=ran, duration_s=time.monotonic() - started
                )
        note = f"{', '.join(others)} issues left for another fixer" if others else ""
        return FixOutcome(ok=True, reason=note, commands=ran, duration_s=time.monotonic() - started)


def _register_ruff() -> None:
    from airfix.services.fixers.autofix_ruff import RuffFix

    register_deterministic(RuffFix())


_register_ruff()
