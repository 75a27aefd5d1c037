"""Issue identity: what makes two runs' findings "the same problem".

An issue's id is its fingerprint (tool, rule, relative path and the message with what shifts
between runs removed; never its line) plus its occurrence index among identical fingerprints.
Line shifts, re-indentation and quote style must not turn an old issue into a new one, or the
verifier would take an untouched problem for a regression.

Conventions of the :class:`IssueRecord` values built here: ``file`` is relative to the target, in
POSIX form; ``line`` and ``column`` are 1-based, 0 means unknown.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from airfix.events.schema import IssueRecord, Phase

_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
_SPACE = re.compile(r"\s+")
_CODE_SPAN = re.compile(r"`([^`]*)`")
_QUOTES = str.maketrans({"'": '"', "\u2018": '"', "\u2019": '"', "\u201c": '"', "\u201d": '"'})


def normalise_message(message: str) -> str:
    """The message with what shifts between runs removed, identifiers kept.

    Numbers standing alone (line/column numbers, lengths such as ``(101 > 100)``, argument
    positions) become ``#`` and memory addresses ``0x?``; whitespace collapses.  Identifiers and
    quoted names stay, because they are what tells two issues in one file apart (``os`` vs ``sys``
    imported but unused).  Numbers inside identifiers (``x1``, ``py311``) are kept.

    Tools quote source text in messages (ruff: ``Dictionary key literal `'a'` repeated``), so a
    formatter that only changed quote style or spacing would make an old issue look new: quote
    characters are unified and whitespace inside a quoted code span is dropped.
    """
    text = _CODE_SPAN.sub(lambda m: "`" + _SPACE.sub("", m.group(1)) + "`", message)
    text = text.translate(_QUOTES)
    text = _HEX_ADDRESS.sub("0x?", text)
    text = _NUMBER.sub("#", text)
    return _SPACE.sub(" ", text).strip()


def fingerprint(tool: str, rule: str, file: str, message: str, snippet: str | None = None) -> str:
    """A stable id for "the same problem": tool + rule + relative path + normalised message.

    Line and column are left out, so inserting lines above an issue does not change it.  ``snippet``
    (the offending source line) may be given to separate otherwise identical messages; it is
    whitespace-normalised only, so it survives re-indentation but not edits of that line.
    """
    parts = [tool, rule, file.replace("\\", "/"), normalise_message(message)]
    if snippet is not None:
        parts.append(_SPACE.sub(" ", snippet).strip())
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Finding:
    """An issue before ids are assigned; adapters build these, :func:`to_issues` numbers them.

    ``key_rule``/``key_message`` override what is fingerprinted (pytest fingerprints the test id,
    not its changing assertion text).
    """

    phase: Phase
    file: str
    line: int
    column: int
    rule: str
    message: str
    severity: str = "error"
    key_rule: str | None = None
    key_message: str | None = None
    fix: str = ""  # "safe" / "unsafe" when the tool can fix it itself


def to_issues(tool: str, findings: Sequence[Finding]) -> list[IssueRecord]:
    """IssueRecords in (file, line, column) order with ``issue_id = <fingerprint>:<occurrence>``.

    Identical fingerprints (say two ambiguous names ``l`` in one file) are told apart by their
    occurrence index in line order, which survives line shifts as long as their order does.
    """
    ordered = sorted(findings, key=lambda f: (f.file, f.line, f.column, f.rule, f.message))
    seen: dict[str, int] = {}
    out: list[IssueRecord] = []
    for f in ordered:
        fp = fingerprint(
            tool,
            f.key_rule if f.key_rule is not None else f.rule,
            f.file,
            f.key_message if f.key_message is not None else f.message,
        )
        n = seen.get(fp, 0)
        seen[fp] = n + 1
        out.append(
            IssueRecord(
                issue_id=f"{fp}:{n}",
                fingerprint=fp,
                tool=tool,
                phase=f.phase,
                file=f.file,
                line=max(f.line, 0),
                column=max(f.column, 0),
                severity=f.severity,
                rule=f.rule,
                message=f.message,
                fix=f.fix,
            )
        )
    return out


def relative_path(path: str, target: Path) -> str:
    """``path`` relative to ``target`` in POSIX form; paths outside the target stay absolute."""
    if not path:
        return ""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix().removeprefix("./")
    for root in (target, target.resolve()):
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            pass
    try:
        return p.resolve().relative_to(target.resolve()).as_posix()
    except ValueError:
        return p.as_posix()
