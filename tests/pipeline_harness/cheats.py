"""Test fixers that misbehave in ways verification must catch.  Each claims success (``ok=True``)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from airfix.config import FixerConfig
from airfix.events.schema import IssueRecord
from airfix.services.fixers import FixOutcome, FixRequest
from airfix.services.fixers.autofix import AutoFixer


class _RuffOnly:
    name = "cheat"

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool:
        return issue.tool == "ruff" and issue.fix == "safe"  # what autofix takes: the same plan


class WorseFixer(_RuffOnly):
    """Fixes nothing; adds an unused import at the top of the batch's first file."""

    name = "worse"

    def fix(self, request: FixRequest) -> FixOutcome:
        file = min(i.file for i in request.issues if i.file)
        path = request.target / file
        path.write_text("import json\n" + path.read_text())
        return FixOutcome(ok=True, reason="made it worse on purpose")


def _last_test_function_removed(text: str) -> str:
    """``text`` without its last ``def test_...`` function (and the blank lines before it)."""
    starts = [m.start() for m in re.finditer(r"^def test_", text, re.MULTILINE)]
    assert starts, "no test function to delete"
    return text[: starts[-1]].rstrip("\n") + "\n"


class TestDeletingFixer(_RuffOnly):
    """Really fixes the batch (autofix), then deletes a test function from ``tests/test_core.py``."""

    __test__ = False  # not a pytest class
    name = "delete-test"

    def fix(self, request: FixRequest) -> FixOutcome:
        outcome = AutoFixer().fix(request)
        path = request.target / "tests" / "test_core.py"
        path.write_text(_last_test_function_removed(path.read_text()))
        return FixOutcome(ok=True, reason=outcome.reason)


class NoqaFixer(_RuffOnly):
    """ "Fixes" every issue of the batch by appending ``# noqa: <rule>`` to its line."""

    name = "noqa"

    def fix(self, request: FixRequest) -> FixOutcome:
        by_file: dict[str, list[IssueRecord]] = {}
        for i in request.issues:
            by_file.setdefault(i.file, []).append(i)
        for file, issues in by_file.items():
            path: Path = request.target / file
            lines = path.read_text().splitlines()
            for i in issues:
                lines[i.line - 1] = f"{lines[i.line - 1]}  # noqa: {i.rule}"
            path.write_text("\n".join(lines) + "\n")
        return FixOutcome(ok=True)


class SlowFixer:
    """autofix after a pause; the pause is announced through ``on_start`` (a marker, a counter)."""

    name = "slowfix"

    def __init__(self, delay_s: float = 3.0, on_start: object = None) -> None:
        self.delay_s = delay_s
        self.on_start = on_start
        self.inner = AutoFixer()

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool:
        return self.inner.supports(issue, config)

    def fix(self, request: FixRequest) -> FixOutcome:
        if callable(self.on_start):
            self.on_start(request)
        time.sleep(self.delay_s)
        return self.inner.fix(request)
