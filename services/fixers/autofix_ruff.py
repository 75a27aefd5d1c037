"""ruff's own fixes, applied to the batch's issues and nothing else.

Why not ``ruff check --fix --select RULE FILES``: it fixes every diagnostic of that rule in those
files, batch or not, and the formatter run after it rewrote whole files of projects not formatted
with ruff (a 4-line fix became +260/-138), so commits touched lines none of their issues were on
and reformatted old issues looked new.  Instead ruff reports each diagnostic's fix as data
(``--output-format json``: ``fix.applicability`` and ``fix.edits`` with 1-based row/column
ranges); this module applies the edits of the batch's diagnostics only, bottom-up, all edits of
one fix or none, skipping a fix that overlaps one already taken, then asks ruff again (one fix can
enable the next, as in ruff's own loop), up to :data:`ROUNDS` times.

What a batch's fix makes necessary is part of the batch: an import it left unused (UP006 turns
``List[int]`` into ``list[int]``, orphaning ``from typing import List``) or left unsorted
(:data:`FOLLOW_UP`, anywhere in the file), and any new diagnostic on a line the batch's own edits
changed (UP032 turns ``"{}".format(str(x))`` into ``f"{str(x)}"``, which RUF010 then reports), as
ruff's own next pass would.  Diagnostics that were there before the batch are left alone.  No
formatter runs here: formatting is the project's business.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from airfix.config import FixerConfig
from airfix.events.schema import IssueRecord
from airfix.services.fixers import FixOutcome
from airfix.services.fixers.line_diff import changed_rows
from airfix.services.process import run_process, tail
from airfix.services.tools.environment import python_env_of
from airfix.services.tools.ruff import (
    Diagnostic,
    RuffAdapter,
    RuffFixData,
    RuffLocation,
    diagnostics,
    parse_ruff_json,
)

ROUNDS = 10
FOLLOW_UP = ("F401", "I001")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Edit:
    start: int  # character offsets into the file's text
    end: int
    content: str


def _line_starts(text: str) -> list[int]:
    return [0, *(m.end() for m in _LINE_BREAK.finditer(text))]


def _offset(starts: list[int], text: str, location: RuffLocation) -> int:
    row, column = location.row, location.column
    if row > len(starts):
        return len(text)
    return min(starts[row - 1] + column - 1, len(text))


def fix_edits(text: str, fix: RuffFixData) -> list[Edit]:
    """A ruff fix's edits as character ranges of ``text``."""
    starts = _line_starts(text)
    return [
        Edit(
            _offset(starts, text, e.location),
            _offset(starts, text, e.end_location),
            e.content or "",
        )
        for e in fix.edits
    ]


def apply_fixes(text: str, fixes: Sequence[RuffFixData]) -> tuple[str, int]:
    """``text`` with the given fixes applied (overlapping ones skipped); how many were applied."""
    taken: list[list[Edit]] = []
    for fix in fixes:
        edits = fix_edits(text, fix)
        if not edits:
            continue
        clash = any(
            (e.start < t.end and t.start < e.end) or (e.start == e.end == t.start == t.end)
            for e in edits
            for group in taken
            for t in group
        )
        if not clash:
            taken.append(edits)
    for edit in sorted(
        (e for group in taken for e in group), key=lambda e: (e.start, e.end), reverse=True
    ):
        text = text[: edit.start] + edit.content + text[edit.end :]
    return text, len(taken)


class RuffFix:
    """The batch's ruff issues, fixed by ruff's own edits (see the module docstring)."""

    tool = "ruff"

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool:
        if issue.rule == "invalid-syntax":
            return False
        return issue.fix == "safe" or (issue.fix == "unsafe" and config.allow_unsafe_fixes)

    def _applicable(self, d: Diagnostic, config: FixerConfig) -> bool:
        applicability = d.fix.applicability if d.fix is not None else None
        return applicability == "safe" or (applicability == "unsafe" and config.allow_unsafe_fixes)

    def apply(
        self,
        target: Path,
        issues: Sequence[IssueRecord],
        config: FixerConfig,
        *,
        environment: Mapping[str, str] | None = None,
    ) -> FixOutcome:
        started = time.monotonic()
        ruff = RuffAdapter()
        python = python_env_of(dict(environment or {}))
        if python is not None:
            ruff.use_python(python)
        exe = ruff.resolve()
        files = sorted({i.file for i in issues if i.file})
        if exe is None:
            return FixOutcome(ok=False, reason=ruff.missing())
        cmd = [
            exe,
            "check",
            "--output-format",
            "json",
            "--no-cache",
            "--force-exclude",
            "--",
            *files,
        ]
        wanted = Counter(i.fingerprint for i in issues)
        baseline: Counter[str] | None = None
        originals = {f: _read(target / f) for f in files if (target / f).is_file()}
        changed: dict[str, set[int]] = {}
        applied = 0
        for _ in range(ROUNDS):
            proc = run_process(cmd, target, config.timeout_s)
            if proc.exit_code not in (0, 1):
                why = proc.launch_error or (
                    "timed out" if proc.timed_out else f"exit {proc.exit_code}"
                )
                return FixOutcome(
                    ok=False,
                    reason=f"ruff check failed ({why}): {tail(proc.stderr, 500)}",
                    commands=[cmd],
                    duration_s=time.monotonic() - started,
                )
            try:
                found = diagnostics(parse_ruff_json(proc.stdout, target))
            except ValueError as exc:  # msgspec's errors name the path: $[3].location.row
                return FixOutcome(
                    ok=False,
                    reason=f"ruff: unparsable JSON output ({exc})",
                    commands=[cmd],
                    duration_s=time.monotonic() - started,
                )
            now = Counter(d.issue.fingerprint for d in found)
            baseline = baseline if baseline is not None else now
            chosen = self._choose(
                found,
                wanted,
                baseline,
                now,
                config,
                changed,
                nearest(found, issues) if applied == 0 else set(),
            )
            if not chosen:
                break
            round_applied = 0
            for file, fixes in chosen.items():
                path = target / file
                new, n = apply_fixes(_read(path), fixes)
                if n:
                    with path.open(
                        "w", encoding="utf-8", newline=""
                    ) as fh:  # its line endings kept
                        fh.write(new)
                    round_applied += n
                    changed[file] = changed_rows(originals.get(file, ""), new)
            applied += round_applied
            if not round_applied:
                break
        return FixOutcome(
            ok=applied > 0,
            reason="" if applied else "ruff offers no applicable fix for the batch's issues",
            commands=[cmd],
            duration_s=time.monotonic() - started,
        )

    def _choose(
        self,
        found: list[Diagnostic],
        wanted: Counter[str],
        baseline: Counter[str],
        now: Counter[str],
        config: FixerConfig,
        changed: dict[str, set[int]],
        exact: set[str],
    ) -> dict[str, list[RuffFixData]]:
        """Per file, the fixes to apply this round: the batch's issues still present, and
        follow-up diagnostics that the batch's own edits created (see the module docstring).

        Several occurrences can share a fingerprint (one annotation of a signature in the batch,
        the other not): before any edit the batch's own occurrences (``exact`` ids) go first."""
        todo = Counter({fp: k - max(0, baseline[fp] - now[fp]) for fp, k in wanted.items()})
        extra = Counter({fp: n - baseline[fp] for fp, n in now.items() if n > baseline[fp]})
        chosen: dict[str, list[RuffFixData]] = {}
        own = sorted(found, key=lambda d: d.issue.issue_id not in exact)  # exact ids first
        for d in own:
            fp = d.issue.fingerprint
            if not self._applicable(d, config) or d.fix is None:
                continue
            if todo[fp] > 0 and (
                not exact
                or d.issue.issue_id in exact
                or not any(x.startswith(f"{fp}:") for x in exact)
            ):
                todo[fp] -= 1
            elif (
                extra[fp] > 0
                and fp not in wanted
                and (d.issue.rule in FOLLOW_UP or d.issue.line in changed.get(d.issue.file, ()))
            ):
                extra[fp] -= 1
            else:
                continue
            chosen.setdefault(d.issue.file, []).append(d.fix)
        return chosen


def nearest(found: Sequence[Diagnostic], issues: Sequence[IssueRecord]) -> set[str]:
    """The ids, as numbered now, of the diagnostics that are the batch's issues: for each issue,
    the closest occurrence of its fingerprint by position.  The batch was planned on the
    iteration's opening check; an earlier batch of the same iteration can have renumbered the
    occurrences (fixed one of them) or moved lines since."""
    mine: set[str] = set()
    for issue in sorted(issues, key=lambda i: (i.file, i.line, i.column)):
        candidates = [
            d.issue
            for d in found
            if d.issue.fingerprint == issue.fingerprint and d.issue.issue_id not in mine
        ]
        if candidates:
            best = min(
                candidates,
                key=lambda c: (
                    abs(c.line - issue.line),
                    abs(c.column - issue.column),
                    c.issue_id != issue.issue_id,
                ),
            )
            mine.add(best.issue_id)
    return mine


def _read(path: Path) -> str:
    with path.open(encoding="utf-8", newline="") as fh:  # keep the file's line endings
        return fh.read()
