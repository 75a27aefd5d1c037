"""Anti-cheat guards on a batch's diff: pure functions of the unified diff text.

A fixer may not make issues disappear by hiding them: adding suppressions, deleting or skipping
tests, or editing lint/type configuration are rejected unless the config allows them
(``guards.allow_suppressions``, ``allow_test_deletion``, ``allow_config_edits``).  Lowering the test
count is caught by comparing test counts (``health.regressed``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SUPPRESSIONS = re.compile(
    r"#\s*noqa\b|#\s*type:\s*ignore|eslint-disable|//\s*nolint|#\s*pragma:\s*no\s*cover|"
    r"@ts-ignore|@ts-nocheck|#\s*pyright:\s*ignore|//\s*ignore:|#\s*ruff:\s*noqa",
    re.IGNORECASE,
)
SKIPS = re.compile(r"@pytest\.mark\.(skip|xfail)|pytest\.skip\(|\.skip\(|\bt\.Skip\(|\bxit\(|\bxdescribe\(")
TEST_DEF = re.compile(r"^\s*(async\s+)?def\s+test_|^\s*func\s+Test|^\s*(it|test|describe)\(")
CONFIG_FILES = re.compile(
    r"(^|/)(pyproject\.toml|setup\.cfg|ruff\.toml|\.ruff\.toml|mypy\.ini|\.mypy\.ini|tox\.ini|"
    r"\.flake8|pytest\.ini|\.coveragerc|tsconfig[^/]*\.json|\.eslintrc[^/]*|eslint\.config\.[cm]?[jt]s|"
    r"\.golangci\.ya?ml|analysis_options\.yaml|\.pre-commit-config\.yaml)$"
)
TEST_FILE = re.compile(r"(^|/)(tests?/|test_[^/]+\.py$|[^/]+_test\.(py|go|dart)$|[^/]+\.(test|spec)\.[jt]sx?$)")


@dataclass(frozen=True)
class GuardPolicy:
    allow_suppressions: bool = False
    allow_test_deletion: bool = False
    allow_config_edits: bool = False


def check_diff(diff: str, policy: GuardPolicy = GuardPolicy()) -> list[str]:
    """Why this diff must be rejected (empty when it passes)."""
    problems: list[str] = []
    file = ""
    deleted_files: list[str] = []
    for line in diff.splitlines():
        if line.startswith("diff --git"):
            file = line.split(" b/", 1)[-1]
            continue
        if line.startswith("deleted file mode"):
            deleted_files.append(file)
            continue
        if line.startswith(("+++", "---")):
            continue
        added, removed = line.startswith("+"), line.startswith("-")
        body = line[1:]
        if added and not policy.allow_suppressions and SUPPRESSIONS.search(body):
            problems.append(f"adds a suppression in {file}: {body.strip()[:120]}")
        if added and not policy.allow_test_deletion and TEST_FILE.search(file) and SKIPS.search(body):
            problems.append(f"skips a test in {file}: {body.strip()[:120]}")
        if removed and not policy.allow_test_deletion and TEST_FILE.search(file) and TEST_DEF.search(body):
            problems.append(f"deletes a test in {file}: {body.strip()[:120]}")
    touched = {m.group(1) for m in re.finditer(r"^diff --git a/(\S+) b/", diff, re.MULTILINE)}
    if not policy.allow_test_deletion:
        problems += [f"deletes test file {f}" for f in deleted_files if TEST_FILE.search(f)]
    if not policy.allow_config_edits:
        problems += [f"edits lint/type/test configuration {f}" for f in sorted(touched) if CONFIG_FILES.search(f)]
    return problems
