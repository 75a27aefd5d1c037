"""What an airfix commit message claims, parsed from its text (never from airfix's code).

The format checked is the one airfix promises: a ``Rules: R1, R2`` line, and a block

    Counts (before -> after):
      ruff: 74 -> 66
      mypy: 4 -> 4

where *before* must equal the measurement of the commit's parent and *after* that of the commit.
A subject ending in ``(N files)`` and a body line ``Issues: K in N files`` state the number of
files the commit changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_RULES = re.compile(r"^Rules:[ \t]*(?P<rules>.*)$", re.MULTILINE)
_COUNTS_HEAD = "Counts (before -> after):"
_COUNT = re.compile(r"^  (?P<tool>\S+): (?P<before>\S+) -> (?P<after>\S+)$")
_SUBJECT_FILES = re.compile(r"\((?:[^()]*?, )?(?P<n>\d+) files?\)\s*$")
_BODY_FILES = re.compile(r"^Issues: \d+ in (?P<n>\d+) files?$", re.MULTILINE)


@dataclass
class Claims:
    subject: str
    rules: list[str] | None = None  # None: no Rules line at all
    counts: dict[str, tuple[str, str]] | None = None  # tool -> (before, after), as written
    subject_files: int | None = None
    body_files: int | None = None
    problems: list[str] = field(default_factory=list)  # malformed lines


def parse(message: str) -> Claims:
    lines = message.splitlines()
    claims = Claims(subject=lines[0] if lines else "")
    m = _RULES.search(message)
    if m:
        claims.rules = [r.strip() for r in m.group("rules").split(",") if r.strip()]
    if _COUNTS_HEAD in lines:
        claims.counts = {}
        for line in lines[lines.index(_COUNTS_HEAD) + 1 :]:
            if not line.startswith("  "):
                break
            c = _COUNT.match(line)
            if c is None:
                claims.problems.append(f"unreadable count line {line!r}")
                continue
            claims.counts[c.group("tool")] = (c.group("before"), c.group("after"))
    s = _SUBJECT_FILES.search(claims.subject)
    if s:
        claims.subject_files = int(s.group("n"))
    b = _BODY_FILES.search(message)
    if b:
        claims.body_files = int(b.group("n"))
    return claims
