"""An issue that existed before an edit is not new after it: identity from real tool output.

Each test runs the real tool on a file, edits the file the way a formatter or an earlier batch
would (lines moved, whitespace and quoting changed, a neighbouring issue fixed), runs the tool
again, and compares the two issue sets as verification does (``health.compare``): nothing may
look fixed or new except what the edit really fixed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airfix.events.core.verdicts import compare
from airfix.services.tools import MypyAdapter, RuffAdapter

PYPROJECT = """\
[project]
name = "ident"
version = "0"

[tool.ruff.lint]
select = ["E", "F", "UP", "B"]

[tool.mypy]
files = ["pkg"]
"""

RUFF_BEFORE = """\
import os
import sys
from typing import List

CONFIG = {'formula': 1, 'other': 2, 'formula': 3}


def total(values: List[int]) -> int:
    if values == None:
        return 0
    return sum(values) + len(sys.argv)
"""

# what black or ruff format would make of it, plus lines inserted above, plus the F401 for ``os``
# already removed by an earlier batch
RUFF_AFTER = '''\
"""A module docstring added by someone else."""

import sys
from typing import List

CONFIG = {
    "formula": 1,
    "other": 2,
    "formula": 3,
}


def total(values: List[int]) -> int:
    if values  ==  None:
        return 0
    return sum(values) + len(sys.argv)
'''

MYPY_BEFORE = """\
def double(x: int) -> int:
    return x * 2


count: int = "three"
double('4')
label: str = double(2)
"""

MYPY_AFTER = '''\
"""Moved down by a docstring and a helper."""


def helper() -> None:
    pass


def double(x: int) -> int:
    return x * 2


count:int="three"
double("4")
label:  str  =  double(2)
'''


def project(tmp_path: Path, name: str, source: str) -> Path:
    root = tmp_path / name
    (root / "pkg").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "mod.py").write_text(source)
    return root


def test_ruff_issues_keep_their_identity_across_formatting_moves_and_an_earlier_fix(
    tmp_path: Path,
) -> None:
    before = RuffAdapter().run(project(tmp_path, "before", RUFF_BEFORE))
    after = RuffAdapter().run(project(tmp_path, "after", RUFF_AFTER))
    assert before.ok and after.ok, (before.result.error, after.result.error)
    rules = sorted(i.rule for i in before.issues)
    assert rules == ["E711", "F401", "F601", "UP006", "UP035"], rules
    result = compare(before.issues, after.issues)
    assert [(i.rule, i.message) for i in result.fixed] == [("F401", "`os` imported but unused")]
    assert result.new == [], [(i.rule, i.message) for i in result.new]
    moved = {i.issue_id for i in before.issues} & {i.issue_id for i in after.issues}
    assert len(moved) == 4  # the same ids, on other lines
    lines = {i.rule: i.line for i in after.issues}
    assert lines["E711"] != next(i.line for i in before.issues if i.rule == "E711")


def test_mypy_issues_keep_their_identity_across_moves_and_respacing(tmp_path: Path) -> None:
    before = MypyAdapter(cache_dir=tmp_path / "cache1").run(
        project(tmp_path, "before", MYPY_BEFORE)
    )
    after = MypyAdapter(cache_dir=tmp_path / "cache2").run(project(tmp_path, "after", MYPY_AFTER))
    assert before.ok and after.ok, (before.result.error, after.result.error)
    assert sorted(i.rule for i in before.issues) == ["arg-type", "assignment", "assignment"]
    result = compare(before.issues, after.issues)
    assert result.fixed == [] and result.new == [], (result.fixed, result.new)
    assert sorted(i.line for i in after.issues) != sorted(i.line for i in before.issues)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            "Dictionary key literal `'formula'` repeated",
            'Dictionary key literal `"formula"` repeated',
        ),
        ("Use `X | Y` for type annotations", "Use `X|Y` for type annotations"),
        ("Line too long (120 > 100)", "Line too long (131 > 100)"),
    ],
)
def test_messages_that_quote_source_text_normalise_alike(a: str, b: str) -> None:
    from airfix.services.tools.fingerprints import fingerprint

    assert fingerprint("ruff", "R", "f.py", a) == fingerprint("ruff", "R", "f.py", b)
