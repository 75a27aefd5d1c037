"""ruff's fixes applied to exactly a batch's issues (and what their own edits make necessary),
with the real ruff: lines no issue of the batch is on stay byte for byte."""

from __future__ import annotations

from pathlib import Path

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from airfix.config import FixerConfig
from airfix.events.schema import IssueRecord
from airfix.services.fixers.autofix_ruff import RuffFix, apply_fixes, changed_rows
from airfix.services.tools import RuffAdapter
from airfix.services.tools.ruff import RuffFixData

PYPROJECT = '[tool.ruff.lint]\nselect = ["F", "UP", "RUF", "I"]\n'

SOURCE = """\
from typing import List
import os


def pad(x):
    return "{}".format(str(x))


def keep(x):
    return f"{str(x)}"


def ids(items: List[int]) -> List[int]:
    return items
"""


def project(tmp_path: Path, source: str = SOURCE, newline: str = "\n") -> Path:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    with (tmp_path / "mod.py").open("w", newline=newline) as fh:
        fh.write(source)
    return tmp_path


def rules(root: Path) -> list[str]:
    return sorted(i.rule for i in RuffAdapter().run(root).issues)


def test_only_the_batch_and_what_its_edits_need_are_fixed(tmp_path: Path) -> None:
    root = project(tmp_path)
    before = RuffAdapter().run(root).issues
    assert sorted(i.rule for i in before) == [
        "F401",
        "I001",
        "RUF010",
        "UP006",
        "UP006",
        "UP032",
        "UP035",
    ]
    batch = [i for i in before if i.rule == "UP032"]
    outcome = RuffFix().apply(root, batch, FixerConfig())
    assert outcome.ok, outcome.reason
    text = (root / "mod.py").read_text()
    # UP032's own line, then RUF010 on that same changed line; the old RUF010 elsewhere stays
    assert '    return f"{x!s}"\n' in text and '    return f"{str(x)}"\n' in text
    assert text.replace('    return f"{x!s}"\n', '    return "{}".format(str(x))\n') == SOURCE
    assert rules(root) == ["F401", "I001", "RUF010", "UP006", "UP006", "UP035"]


def test_an_import_the_batch_orphaned_goes_with_it_and_nothing_else_moves(tmp_path: Path) -> None:
    root = project(tmp_path)
    batch = [i for i in RuffAdapter().run(root).issues if i.rule == "UP006"]
    assert RuffFix().apply(root, batch, FixerConfig()).ok
    text = (root / "mod.py").read_text()
    assert (
        "from typing import List" not in text and "def ids(items: list[int]) -> list[int]:" in text
    )
    assert (
        "import os\n" in text and '"{}".format(str(x))' in text
    )  # F401 os and UP032: not the batch's
    assert rules(root) == ["F401", "RUF010", "UP032"]


def test_line_endings_survive_and_rows_report_what_changed(tmp_path: Path) -> None:
    root = project(tmp_path, newline="\r\n")
    batch = [i for i in RuffAdapter().run(root).issues if i.rule == "F401"]
    assert RuffFix().apply(root, batch, FixerConfig()).ok
    raw = (root / "mod.py").read_bytes()
    assert b"import os" not in raw and raw.count(b"\r\n") == raw.count(b"\n")
    assert changed_rows("a\nb\nc\n", "a\nB\nc\nd\n") == {2, 4}


def test_overlapping_fixes_wait_for_the_next_round() -> None:
    fix = {
        "edits": [
            {
                "content": "",
                "location": {"row": 1, "column": 1},
                "end_location": {"row": 2, "column": 1},
            }
        ]
    }
    same = {
        "edits": [
            {
                "content": "",
                "location": {"row": 1, "column": 1},
                "end_location": {"row": 2, "column": 1},
            }
        ]
    }
    fixes = msgspec.convert([fix, same], list[RuffFixData])
    text, applied = apply_fixes("import os, sys\nx = 1\n", fixes)
    assert (text, applied) == ("x = 1\n", 1)


def test_malformed_ruff_output_fails_the_fix_naming_the_path(tmp_path: Path) -> None:
    """A ruff whose JSON has a wrongly typed field is a failed fix that says where, not a crash
    and not "no applicable fix"."""
    root = project(tmp_path)
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text("")
    record = '[{"filename": "mod.py", "code": "F401", "location": {"row": "two", "column": 1}}]'
    (venv / "ruff").write_text(f"#!/bin/sh\necho '{record}'\nexit 1\n")
    (venv / "ruff").chmod(0o755)
    issue = IssueRecord(
        issue_id="x", fingerprint="fp", tool="ruff", rule="F401", phase="lint", file="mod.py",
        line=2, column=8, message="`os` imported but unused", fix="safe",
    )  # fmt: skip
    outcome = RuffFix().apply(
        root,
        [issue],
        FixerConfig(),
        environment={"python": str(venv / "python"), "python_source": "--python"},
    )
    assert not outcome.ok
    assert "ruff: unparsable JSON output" in outcome.reason
    assert "$[0].location.row" in outcome.reason


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["", "x = 1", "return x", "def f():", "pass", "import os"]), max_size=60
    ),
    st.lists(
        st.tuples(
            st.sampled_from(["insert", "delete", "replace"]), st.integers(0, 80), st.integers()
        ),
        max_size=6,
    ),
)
def test_changed_rows_is_a_valid_diff_that_names_every_new_line(
    base: list[str], edits: list[tuple[str, int, int]]
) -> None:
    """Whatever the edits (on text full of repeated lines, where diffs are ambiguous): the rows
    not reported, in order, are lines ``before`` has in that order (so the reported rows are a
    diff), every line ``before`` never had is reported, and equal texts report nothing."""
    after = list(base)
    for op, at, n in edits:
        at = min(at, len(after))
        if op == "insert":
            after.insert(at, f"new {n}")
        elif after and at < len(after):
            if op == "delete":
                del after[at]
            else:
                after[at] = f"changed {n}"
    before_text, after_text = ("".join(f"{line}\n" for line in t) for t in (base, after))
    rows = changed_rows(before_text, after_text)
    assert rows <= set(range(1, len(after) + 1))
    kept = iter(base)
    assert all(line in kept for r, line in enumerate(after, 1) if r not in rows)  # a subsequence
    assert {r for r, line in enumerate(after, 1) if line not in base} <= rows
    assert changed_rows(before_text, before_text) == set()


def test_changed_rows_keeps_unique_lines_matched_around_repeated_ones() -> None:
    before = "def a():\n    return 1\n\n\ndef b():\n    return 1\n"
    after = "def a():\n    return 1\n\n\ndef c():\n    pass\n\n\ndef b():\n    return 1\n"
    assert changed_rows(before, after) == {5, 6, 7, 8}
    lines = [f"{n % 3}" for n in range(30)]  # every line repeated: no anchor at all
    for at in (0, 13, 29):
        edited = [*lines[:at], "x", *lines[at + 1 :]]
        text = "".join(f"{line}\n" for line in lines)
        assert changed_rows(text, "".join(f"{line}\n" for line in edited)) == {at + 1}
