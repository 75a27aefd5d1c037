"""Deterministic fixers: each tool's own fixer, on the batch's files only.

One :class:`DeterministicFix` per tool (``ruff`` here; ``eslint``, ``gofmt``, ``dart`` register
theirs with :func:`register_deterministic`).  Issues of a tool without one are refused, never
"fixed"; unsafe fixes only with ``fixer.allow_unsafe_fixes``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from airfix.config import FixerConfig
from airfix.events.schema import IssueRecord
from airfix.services.fixers import FixOutcome, FixRequest
from airfix.services.tools.base import find_executable, run_process, tail


class DeterministicFix(Protocol):
    tool: str

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool: ...

    def commands(self, target: Path, issues: Sequence[IssueRecord], config: FixerConfig) -> list[list[str]]:
        """The commands to run (cwd = target); [] when the tool is not installed."""
        ...

    def ok_exit(self, code: int) -> bool: ...


class RuffFix:
    """``ruff check --fix --select <rules>``, a follow-up for imports its fixes orphaned (UP006
    turns ``List`` into ``list``, leaving ``from typing import List`` unused), ``ruff format``."""

    tool = "ruff"
    FOLLOW_UP = ("F401", "I001")

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool:
        if issue.rule == "invalid-syntax":
            return False
        return issue.fix == "safe" or (issue.fix == "unsafe" and config.allow_unsafe_fixes)

    def commands(self, target: Path, issues: Sequence[IssueRecord], config: FixerConfig) -> list[list[str]]:
        ruff = find_executable("ruff")
        files = sorted({i.file for i in issues if i.file})
        rules = sorted({i.rule for i in issues if i.rule})
        if ruff is None or not files or not rules:
            return []
        check = [ruff, "check", "--fix", "--no-cache", "--select", ",".join(rules)]
        if config.allow_unsafe_fixes:
            check.append("--unsafe-fixes")
        return [
            [*check, "--", *files],
            [ruff, "check", "--fix", "--no-cache", "--select", ",".join(self.FOLLOW_UP), "--", *files],
            [ruff, "format", "--no-cache", "--", *files],
        ]

    def ok_exit(self, code: int) -> bool:
        return code in (0, 1)  # 1: violations remain (other rules); 2: ruff itself failed


DETERMINISTIC: dict[str, DeterministicFix] = {"ruff": RuffFix()}


def register_deterministic(fix: DeterministicFix) -> None:
    DETERMINISTIC[fix.tool] = fix


class AutoFixer:
    name = "autofix"

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
            return FixOutcome(ok=False, reason=f"no deterministic fixer for {', '.join(others)} issues",
                              duration_s=time.monotonic() - started)
        env = {**os.environ, "RUFF_NO_CACHE": "true"}
        ran: list[list[str]] = []
        for tool, issues in sorted(by_tool.items()):
            fixer = DETERMINISTIC[tool]
            commands = fixer.commands(request.target, issues, request.config)
            if not commands:
                return FixOutcome(ok=False, reason=f"{tool}'s fixer is not installed", commands=ran,
                                  duration_s=time.monotonic() - started)
            for cmd in commands:
                ran.append(cmd)
                proc = run_process(cmd, request.target, request.config.timeout_s, env)
                if proc.timed_out or proc.launch_error or proc.exit_code is None or not fixer.ok_exit(proc.exit_code):
                    why = proc.launch_error or ("timed out" if proc.timed_out else f"exit {proc.exit_code}")
                    return FixOutcome(ok=False, reason=f"{' '.join(Path(cmd[0]).name.split() + cmd[1:3])} "
                                      f"failed ({why}): {tail(proc.stderr, 500)}", commands=ran,
                                      duration_s=time.monotonic() - started)
        note = f"{', '.join(others)} issues left for another fixer" if others else ""
        return FixOutcome(ok=True, reason=note, commands=ran, duration_s=time.monotonic() - started)
