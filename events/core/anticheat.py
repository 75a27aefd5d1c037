"""Anti-cheat guards on a batch's diff: pure functions of the unified diff text.

A fixer may not make issues disappear by hiding them: adding suppressions or editing lint/type/test
configuration are rejected unless the config allows them (``guards.allow_suppressions``,
``allow_config_edits``).  Deleting or skipping tests is judged by the tests themselves, by id
(``health.regressed_tests``: a test that ran before no longer runs, or is now skipped), not by
text patterns: a shadowed duplicate ``def test_x`` that pytest never collected may go.

What counts is what the change did.  A suppression that existed before is not new because the
fix moved or re-spaced its line, or changed the code in front of it: suppressions are compared as
normalised comment text, per file, removed against added.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

SUPPRESSIONS = re.compile(
    r"#\s*noqa\b|#\s*type:\s*ignore|eslint-disable|//\s*nolint|#\s*pragma:\s*no\s*cover|"
    r"@ts-ignore|@ts-nocheck|#\s*pyright:\s*ignore|//\s*ignore:|#\s*ruff:\s*noqa",
    re.IGNORECASE,
)
CONFIG_FILES = re.compile(
    r"(^|/)(pyproject\.toml|setup\.cfg|ruff\.toml|\.ruff\.toml|mypy\.ini|\.mypy\.ini|tox\.ini|"
    r"\.flake8|pytest\.ini|\.coveragerc|tsconfig[^/]*\.json|\.eslintrc[^/]*|eslint\.config\.[cm]?[jt]s|"
    r"\.golangci\.ya?ml|analysis_options\.yaml|\.pre-commit-config\.yaml)$"
)
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class GuardPolicy:
    allow_suppressions: bool = False
    allow_test_deletion: bool = False  # applied to the per-test verdict, not here
    allow_config_edits: bool = False


def _suppressions(line: str) -> list[str]:
    """The suppression comments on a line, whitespace-free (``#noqa:E501``)."""
    return [_SPACE.sub("", line[m.start() :]).lower() for m in SUPPRESSIONS.finditer(line)]


def check_diff(diff: str, policy: GuardPolicy = GuardPolicy()) -> list[str]:
    """Why this diff must be rejected (empty when it passes)."""
    problems: list[str] = []
    added: dict[str, Counter[str]] = {}
    removed: dict[str, Counter[str]] = {}
    shown: dict[tuple[str, str], str] = {}
    file = ""
    for line in diff.splitlines():
        if line.startswith("diff --git"):
            file = line.split(" b/", 1)[-1]
            continue
        if line.startswith(("+++", "---")) or not line.startswith(("+", "-")):
            continue
        side = added if line.startswith("+") else removed
        for comment in _suppressions(line[1:]):
            side.setdefault(file, Counter())[comment] += 1
            if line.startswith("+"):
                shown.setdefault((file, comment), line[1:].strip()[:120])
    if not policy.allow_suppressions:
        for f, comments in sorted(added.items()):
            for comment, n in sorted(comments.items()):
                if n > removed.get(f, Counter())[comment]:
                    problems.append(f"adds a suppression in {f}: {shown[(f, comment)]}")
    touched = {m.group(1) for m in re.finditer(r"^diff --git a/(\S+) b/", diff, re.MULTILINE)}
    if not policy.allow_config_edits:
        problems += [
            f"edits lint/type/test configuration {f}"
            for f in sorted(touched)
            if CONFIG_FILES.search(f)
        ]
    return problems
