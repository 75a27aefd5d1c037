""" "No commit touches a line that none of its issues is on", checked from ``git diff -U0``.

Why: a fix for rule R in file F should change the lines R's issues are on, not reformat the file
or tidy up unrelated code (once a 4-line fix became +260/-138 under a formatter).  Judging
is per hunk of ``git diff -U0 parent commit``:

* the hunk's removed (or changed) parent lines must overlap the lines of one of the commit's
  issues at the parent: the ruff (or mypy) issues whose rule the commit's ``Rules:`` line names,
  in the files the commit changes.  An issue's lines are ``[row, end_row]`` as reported, plus the
  rows its own fix edits (ruff reports those at the parent too: the ``r`` of a W605 fix goes on
  the first line of a multi-line string, I001 also rewrites the blank lines after the block);
* or all of them must be lines of an import statement in that file at the parent (removing an
  import that a rule's fix orphaned is what the rule needs);
* a pure addition is judged by the line it follows (0 = the top of the file), and is also fine
  right before the first line of an issue's lines: git shows an import that I001 moves to the top
  of a block as an insertion after the line *before* the block, which is inside the span ruff
  rewrites.

A formatter the project already uses would be exempt (as a separate, labelled step).  No corpus
project uses ruff's formatter (none configures it, none is clean under it at the release), and
the acceptance test asserts that, so this checker has no such exemption yet.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tests.corpus.measure import Measurement

_HUNK = re.compile(r"^@@ -(?P<a>\d+)(?:,(?P<b>\d+))? \+(?P<c>\d+)(?:,(?P<d>\d+))? @@")


@dataclass(frozen=True)
class Hunk:
    file: str  # path at the parent ("" for a file the commit adds)
    new_file: str
    header: str
    old_start: int
    old_count: int
    removed: tuple[str, ...]
    added: tuple[str, ...]

    def judged_lines(self) -> range:
        """Parent lines this hunk is judged by: the removed ones; for an addition, the line it
        follows and the next one (an insertion between them touches a span that starts there)."""
        if self.old_count == 0:
            return range(self.old_start, self.old_start + 2)
        return range(self.old_start, self.old_start + self.old_count)


@dataclass(frozen=True)
class Offence:
    commit: str
    hunk: Hunk
    why: str

    def __str__(self) -> str:
        body = "\n".join(
            [*("-" + r for r in self.hunk.removed[:6]), *("+" + a for a in self.hunk.added[:6])]
        )
        more = " …" if len(self.hunk.removed) > 6 or len(self.hunk.added) > 6 else ""
        return f"{self.commit[:10]} {self.hunk.file or self.hunk.new_file} {self.hunk.header}: {self.why}{more}\n{body}"


def _path(line: str, prefix: str) -> str:
    rest = line[len(prefix) :].rstrip("\n").split("\t", 1)[0]
    if rest == "/dev/null":
        return ""
    return rest[2:] if rest[:2] in ("a/", "b/") else rest


@dataclass
class _Open:
    header: str
    old_start: int
    old_count: int
    removed: list[str]
    added: list[str]


def parse_diff(text: str) -> list[Hunk]:
    """Hunks of a ``git diff -U0`` (binary changes become a hunk with no lines)."""
    hunks: list[Hunk] = []
    old = new = ""
    current: _Open | None = None

    def close() -> None:
        if current is not None:
            hunks.append(Hunk(file=old, new_file=new, header=current.header,
                              old_start=current.old_start, old_count=current.old_count,
                              removed=tuple(current.removed), added=tuple(current.added)))  # fmt: skip

    for line in text.splitlines():
        if line.startswith("diff --git "):
            close()
            current, old, new = None, "", ""
        elif line.startswith("--- ") and current is None:
            old = _path(line, "--- ")
        elif line.startswith("+++ ") and current is None:
            new = _path(line, "+++ ")
        elif line.startswith("Binary files "):
            hunks.append(Hunk(file=old, new_file=new, header="binary", old_start=0, old_count=0,
                              removed=(), added=()))  # fmt: skip
        elif line.startswith("@@ "):
            close()
            m = _HUNK.match(line)
            if m is None:
                raise ValueError(f"unreadable hunk header {line!r}")
            b = m.group("b")
            current = _Open(header=line.split(" @@", 1)[0] + " @@", old_start=int(m.group("a")),
                            old_count=1 if b is None else int(b), removed=[], added=[])  # fmt: skip
        elif current is not None and line.startswith("-"):
            current.removed.append(line[1:])
        elif current is not None and line.startswith("+"):
            current.added.append(line[1:])
    close()
    return hunks


def issue_lines(
    parent: Measurement, rules: Iterable[str], files: Iterable[str]
) -> dict[str, set[int]]:
    """Per file, the parent lines the commit's issues are on (see the module docstring)."""
    wanted, names = set(rules), set(files)
    out: dict[str, set[int]] = {f: set() for f in names}
    for issue in parent.ruff or ():
        if issue.rule in wanted and issue.file in names:
            spans = (
                [(issue.row, issue.end_row), *issue.fix_spans]
                if issue.safe
                else [(issue.row, issue.end_row)]
            )
            for lo, hi in spans:
                out[issue.file].update(range(lo, hi + 1))
    for error in parent.mypy or ():
        if error.code in wanted and error.file in names:
            out[error.file].update(range(error.line, max(error.line, error.end_line) + 1))
    return out


def check_commit(
    sha: str, diff: str, parent: Measurement, rules: Iterable[str], imports: Mapping[str, set[int]]
) -> list[Offence]:
    """Every hunk of ``diff`` (parent → ``sha``) that touches no line of the commit's issues.

    ``imports``: per file, the parent's lines of import statements (``measure.import_lines``).
    """
    hunks = parse_diff(diff)
    files = {h.file or h.new_file for h in hunks}
    lines = issue_lines(parent, rules, files)
    offences = []
    for h in hunks:
        name = h.file or h.new_file
        judged = set(h.judged_lines())
        if h.header == "binary":
            offences.append(Offence(sha, h, "binary change"))
        elif not h.file:
            offences.append(Offence(sha, h, "adds a file no issue is in"))
        elif not (
            judged & lines.get(name, set()) or (h.old_count and judged <= imports.get(name, set()))
        ):
            why = "touches no line of the commit's issues"
            if not lines.get(name):
                why += " (no issue of its rules in this file at the parent)"
            offences.append(Offence(sha, h, why))
    return offences
