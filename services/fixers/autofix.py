"""Deterministic fixers: ``ruff check --fix`` (safe fixes only unless allowed) and ``ruff format``
on the batch's files.  Issues from tools without an autofixer are refused, never "fixed"."""

from __future__ import annotations

import time

from airfix.config import FixerConfig
from airfix.events.schema import IssueRecord
from airfix.services.fixers import FixOutcome, FixRequest
from airfix.services.tools.base import find_executable, run_process, tail

ENV = {"RUFF_NO_CACHE": "true"}


# Imports a fix can leave unused (UP006 turns List into list, orphaning "from typing import List"):
# cleaned up in the files the batch touched, so a good fix is not rolled back for its own debris.
FOLLOW_UP = ("F401", "I001")


class AutoFixer:
    name = "autofix"

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool:
        if issue.tool != "ruff" or issue.rule == "invalid-syntax":
            return False
        return issue.fix == "safe" or (issue.fix == "unsafe" and config.allow_unsafe_fixes)

    def fix(self, request: FixRequest) -> FixOutcome:
        started = time.monotonic()
        ruff_issues = [i for i in request.issues if i.tool == "ruff"]
        others = sorted({i.tool for i in request.issues if i.tool != "ruff"})
        if not ruff_issues:
            return FixOutcome(ok=False, reason=f"no deterministic fixer for {', '.join(others)} issues",
                              duration_s=time.monotonic() - started)
        ruff = find_executable("ruff")
        if ruff is None:
            return FixOutcome(ok=False, reason="ruff is not installed (pip install ruff)")
        files = sorted({i.file for i in ruff_issues if i.file})
        rules = sorted({i.rule for i in ruff_issues if i.rule and i.rule != "invalid-syntax"})
        if not files or not rules:
            return FixOutcome(ok=False, reason="ruff issues without file or rule: nothing to fix")
        check = [ruff, "check", "--fix", "--no-cache", "--select", ",".join(rules)]
        if request.config.allow_unsafe_fixes:
            check.append("--unsafe-fixes")
        check += ["--", *files]
        follow = [ruff, "check", "--fix", "--no-cache", "--select", ",".join(FOLLOW_UP), "--", *files]
        fmt = [ruff, "format", "--no-cache", "--", *files]
        import os

        env = {**os.environ, **ENV}
        commands = [check, follow, fmt]
        for cmd in commands:
            proc = run_process(cmd, request.target, request.config.timeout_s, env)
            if proc.timed_out or proc.launch_error or proc.exit_code not in (0, 1):
                why = proc.launch_error or ("timed out" if proc.timed_out else f"exit {proc.exit_code}")
                return FixOutcome(ok=False, reason=f"{' '.join(cmd[:3])} failed ({why}): "
                                  f"{tail(proc.stderr, 500)}", commands=commands,
                                  duration_s=time.monotonic() - started)
        note = f"; {', '.join(others)} issues left for another fixer" if others else ""
        return FixOutcome(ok=True, reason=note.lstrip("; "), commands=commands,
                          duration_s=time.monotonic() - started)
