"""The generated sample of the fix-pipeline sections: a healthy, typed Python project with a known
number of safely fixable ruff issues, as a fresh git repository.

Why generated: its size scales with ``--quick``, and every copy is identical, so two contenders
(airfix and a script) start from the same tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from airfix.services.process import find_executable

#: The rules of the generated sample: all of them have safe fixes (UP035's imports go away once
#: UP006 has rewritten their uses, so ``ruff check --fix`` fixes everything).
SAMPLE_RULES = ("F401", "F541", "I001", "UP006", "UP035", "W291")
SAMPLE_PYPROJECT = f"""\
[project]
name = "benchsample"
version = "0.1.0"
requires-python = ">=3.11"

[tool.ruff]
line-length = 100
target-version = "py311"

[tool.ruff.lint]
select = [{", ".join(f'"{r}"' for r in SAMPLE_RULES)}]

[tool.ruff.lint.isort]
known-first-party = ["pkg"]

[tool.mypy]
files = ["pkg", "tests"]
python_version = "3.11"
check_untyped_defs = true

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["."]

[tool.coverage.run]
source = ["pkg"]
"""
SAMPLE_TEST = '''"""The sample's one test module: it passes before and after the fixes."""

from pkg.mod00 import index_00, pairs_00, scale_00


def test_helpers() -> None:
    assert scale_00([1, 2], 3) == [3, 6]
    assert index_00(["a"]) == {"idx-a": 0}
    assert pairs_00({"x": [1, 2]}) == [("x/", 3)]
'''
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "airfix-bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "airfix-bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


def sample_module(k: int) -> str:
    """26 ruff issues, mypy-clean: 6 F401, 10 UP006, 3 UP035, 3 F541, 3 W291 (code), 1 I001."""
    ws = "  "  # trailing whitespace after code (W291); kept out of strings, so the fix is safe
    return f'''"""Generated module {k:02d} of the benchmark sample: small typed helpers."""
import sys
import os
import json
from typing import Dict, List, Optional, Tuple
import re
import collections


def scale_{k:02d}(values: List[int], factor: int) -> List[int]:{ws}
    tag = f"scale"
    out: List[int] = []{ws}
    for v in values:
        out.append(v * factor)
    return out if tag else []


def index_{k:02d}(names: List[str]) -> Dict[str, int]:
    prefix = f"idx-"
    result: Dict[str, int] = {{}}{ws}
    for i, n in enumerate(names):
        result[prefix + n] = i
    return result


def pairs_{k:02d}(items: Dict[str, List[int]]) -> List[Tuple[str, int]]:
    sep = f"/"
    return [(key + sep, sum(v)) for key, v in sorted(items.items())]
'''


def make_sample(root: Path, modules: int) -> Path:
    """A healthy project (mypy clean, one passing test) with ``26 * modules`` ruff issues, as a
    git repository with everything committed.  Deterministic: two calls give identical trees."""
    (root / "pkg").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(SAMPLE_PYPROJECT)
    (root / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n.mypy_cache/\n.ruff_cache/\n")
    (root / "pkg" / "__init__.py").write_text('"""Benchmark sample package."""\n')
    for k in range(modules):
        (root / "pkg" / f"mod{k:02d}.py").write_text(sample_module(k))
    (root / "tests" / "__init__.py").write_text("")
    (root / "tests" / "test_pkg.py").write_text(SAMPLE_TEST)
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "--no-verify", "-m", "benchmark sample"],
    ):
        subprocess.run(
            cmd, cwd=root, check=True, capture_output=True, env={**os.environ, **GIT_IDENTITY}
        )
    return root


def tool_env() -> dict[str, str]:
    """PATH with this interpreter's bin directory first: the hand script runs the same ruff that
    airfix finds (``find_executable`` looks next to ``sys.executable`` first), without shims."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, **GIT_IDENTITY, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}


def ruff_issues(root: Path) -> list[dict[str, Any]]:
    ruff = find_executable("ruff")
    if ruff is None:
        raise SystemExit("ruff is not installed; the pipeline benchmark needs ruff, mypy, pytest")
    proc = subprocess.run(
        [ruff, "check", "--output-format", "json", "--no-cache", "."],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise SystemExit(f"ruff check failed in {root} ({proc.returncode}): {proc.stderr[-500:]}")
    return list(json.loads(proc.stdout))
