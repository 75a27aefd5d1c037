"""Deterministic fixers for Go and Dart: ``gofmt -w`` and ``dart fix --apply``.

Both register with :func:`~airfix.services.fixers.autofix.register_deterministic` when this
module is imported (``services/fixers/__init__.py`` does).  Like ``RuffFix`` they touch only the
batch's files and only issues their tool marked fixable:

* :class:`GofmtFix` (tool ``gofmt``): ``gofmt -w -- <files>`` for the ``gofmt`` issues ("file is
  not gofmt-formatted", ``fix="safe"``).  Syntax errors (rule ``syntax-error``) are not its to fix.
  Exit 0 only: 2 means a file did not parse and nothing useful happened.
* :class:`DartFix` (tool ``dart_analyze``): one ``dart fix --apply --code=<codes> <file>`` per
  file, with exactly the diagnostic codes of the batch's issues in that file.  The adapter marks
  an issue ``fix="safe"`` only when ``dart fix --dry-run`` listed that code for that file
  (``dart analyze``'s JSON itself says nothing about fixes), so an issue without that mark is
  refused.  ``dart fix`` takes one target (file or directory) per run, hence a command per file.
  Exit 0 only (3: fixes could not be computed, 64: usage).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from airfix.config import FixerConfig
from airfix.events.schema import IssueRecord
from airfix.services.fixers.autofix import register_deterministic
from airfix.services.process import find_executable
from airfix.services.tools.go_toolchain import find_gofmt


class GofmtFix:
    tool = "gofmt"

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool:
        return issue.tool == self.tool and issue.rule == "gofmt" and issue.fix == "safe"

    def commands(
        self, target: Path, issues: Sequence[IssueRecord], config: FixerConfig
    ) -> list[list[str]]:
        gofmt = find_gofmt()
        files = sorted({i.file for i in issues if i.file and i.file.endswith(".go")})
        if gofmt is None or not files:
            return []
        return [[gofmt, "-w", "--", *files]]

    def ok_exit(self, code: int) -> bool:
        return code == 0


class DartFix:
    tool = "dart_analyze"

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool:
        if issue.tool != self.tool or not issue.rule or not issue.file:
            return False
        return issue.fix == "safe" or (issue.fix == "unsafe" and config.allow_unsafe_fixes)

    def commands(
        self, target: Path, issues: Sequence[IssueRecord], config: FixerConfig
    ) -> list[list[str]]:
        dart = find_executable("dart")
        by_file: dict[str, set[str]] = {}
        for issue in issues:
            if issue.file and issue.rule:
                by_file.setdefault(issue.file, set()).add(issue.rule)
        if dart is None or not by_file:
            return []
        return [
            [dart, "fix", "--apply", "--code=" + ",".join(sorted(codes)), file]
            for file, codes in sorted(by_file.items())
        ]

    def ok_exit(self, code: int) -> bool:
        return code == 0


register_deterministic(GofmtFix())
register_deterministic(DartFix())
