"""ESLint's own fixer as a deterministic fix: ``eslint --fix`` on the batch's files.

``eslint --fix --fix-type problem,suggestion,layout --no-warn-ignored
--no-error-on-unmatched-pattern -- FILES`` (research A.7, verified with ESLint 10.15), using the
target's own ``node_modules/.bin/eslint`` first, as the ESLint adapter does, so the fix and the
check that judges it are the same ESLint with the same configuration.

What it takes: issues of tool ``eslint`` whose message carried a ``fix`` object (``fix="safe"``):
exactly what ``eslint --fix`` applies.  ESLint's *suggestions* (``no-explicit-any``'s "use
unknown", ``eqeqeq``'s) are never applied by the CLI, so such issues have no ``fix`` and are left
to another fixer; so are parse errors and unused-directive warnings (fix type ``directive`` is not
in ``--fix-type``: removing a disable comment is the anti-cheat guard's business, not a lint fix).

Unlike ruff's ``--select``, ESLint has no switch that limits fixing to some rules (``--rule``
only adds rules on top of the configuration), so every fixable problem *in the batch's files* is
fixed, not just the batch's rules; verification compares issue sets, so extra fixes show up as
fixed issues, and files outside the batch are never touched.  Exit 0 = nothing left, 1 =
unfixable problems remain (both fine), 2 = ESLint failed.  ESLint writes no cache without
``--cache``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from airfix.config import FixerConfig
from airfix.events.schema import IssueRecord
from airfix.services.fixers.autofix import register_deterministic
from airfix.services.tools.base import find_executable
from airfix.services.tools.eslint import project_bin


class EslintFix:
    tool = "eslint"
    FIX_TYPES = "problem,suggestion,layout"

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool:
        return issue.tool == self.tool and issue.fix == "safe" and issue.rule != "invalid-syntax"

    def commands(
        self, target: Path, issues: Sequence[IssueRecord], config: FixerConfig
    ) -> list[list[str]]:
        eslint = project_bin(target, "eslint") or find_executable("eslint")
        files = sorted({i.file for i in issues if i.file})
        if eslint is None or not files:
            return []
        return [
            [
                eslint, "--fix", "--fix-type", self.FIX_TYPES,
                "--no-warn-ignored", "--no-error-on-unmatched-pattern", "--", *files,
            ]
        ]  # fmt: skip

    def ok_exit(self, code: int) -> bool:
        return code in (0, 1)  # 1: unfixable problems remain; 2: ESLint itself failed


register_deterministic(EslintFix())
