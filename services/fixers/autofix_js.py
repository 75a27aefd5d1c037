"""ESLint's own fixes as a deterministic fix, limited to the batch's issues.

``eslint --fix`` has no switch that limits fixing to some problems (``--rule`` only adds rules on
top of the configuration, ``--fix-type`` selects by rule type), so on the batch's files it fixes
every fixable problem there and a commit touches lines none of its issues is on.  Instead this
module applies ESLint's fixes as data, the way ESLint applies them itself (ESLint 10.15
``lib/linter/source-code-fixer.js``):

1. Run the project's ESLint (``node_modules/.bin/eslint`` first, as the adapter does: the fix and
   the check that judges it are the same ESLint with the same configuration) with ``-f json
   --no-warn-ignored --no-error-on-unmatched-pattern -- FILES`` on the batch's files (each of
   the two options only when that ESLint knows it, as in the adapter).
2. Take a message's ``fix`` (``{range: [start, end], text}``, offsets into the file's text as
   JavaScript counts them: UTF-16 code units, after a BOM) only when the message is one of the
   batch's issues: the issue id the ESLint adapter gives it (fingerprint and occurrence, computed
   by the adapter's own parser) is the batch's, or its file, rule, line and column are a batch
   issue's.
3. Apply them per file bottom-up; a fix overlapping (or touching) one already taken in the round
   waits for the next round, as in ESLint.  The file is written with its BOM and line endings
   unchanged.
4. Re-run ESLint and repeat for the batch's issues still present (a fix may need several passes,
   or waited for an overlapping one): an issue is still present when a message of its rule starts
   at its position, carried through the edits airfix made (inside a rewritten range it follows
   the text the fix kept).  At most :data:`MAX_ROUNDS` rounds (ESLint's ``MAX_AUTOFIX_PASSES``).
5. Follow-ups: a problem the batch's own fixes made (``no-var`` turns ``var`` into ``let``, and
   ``prefer-const`` then reports it) is fixed in the next round when its message and its whole
   fix lie on lines those fixes changed, as ``eslint --fix``'s next pass would; otherwise a fix
   would leave a new issue behind and verification would rightly reject the batch.  No other
   line is touched.

Every other problem, fixable or not, is left untouched, and so are files outside the batch.
What it takes: issues of tool ``eslint`` whose message carried a ``fix`` (``fix="safe"``).
ESLint's *suggestions* (``no-explicit-any``'s "use unknown") are never applied, nor are parse
errors or unused-directive warnings (removing a disable comment is the anti-cheat guard's
business, not a lint fix).

:class:`EslintFix` is an ``EditFix`` (``services/fixers/autofix.py``): ``AutoFixer`` calls its
:meth:`~EslintFix.apply` with the batch's issues.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path

from airfix.config import FixerConfig
from airfix.events.schema import IssueRecord
from airfix.services.fixers import FixOutcome
from airfix.services.fixers.autofix import register_deterministic
from airfix.services.secrets import scrubbed_env
from airfix.services.tools.base import find_executable, run_process, to_issues
from airfix.services.tools.eslint import (
    EslintFixData,
    EslintMessage,
    error_summary,
    eslint_version,
    parse_eslint_json,
    project_bin,
    scope_flags,
)

MAX_ROUNDS = 10  # ESLint's MAX_AUTOFIX_PASSES
BOM = "\ufeff"


class EslintFailed(Exception):
    pass


@dataclass
class _Tracked:
    """A batch issue being fixed: where its message starts now (UTF-16 offset), its rule."""

    issue: IssueRecord
    offset: int | None = None
    done: bool = False
    applied: int = 0
    follow_up: bool = False


@dataclass
class FixReport:
    """What :func:`fix_batch` did: rounds, applied fixes, issues fixed and left."""

    rounds: int = 0
    applied: int = 0
    files_changed: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)  # issue ids no longer reported
    left: list[str] = field(default_factory=list)  # issue ids still reported after the last round
    missing: list[str] = field(default_factory=list)  # not reported (or without fix) at the start
    follow_ups: list[str] = field(default_factory=list)  # problems the batch's fixes made, fixed
    commands: list[list[str]] = field(default_factory=list)


def eslint_messages(
    eslint: str, target: Path, files: Sequence[str], timeout_s: float, flags: Sequence[str]
) -> tuple[dict[str, list[tuple[IssueRecord, EslintMessage]]], list[str]]:
    """ESLint's messages on ``files``, each with the issue the adapter makes of it, per file;
    ``flags`` are the scoped-run options this ESLint knows (:func:`scope_flags`)."""
    cmd = [eslint, "-f", "json", *flags, "--", *files]
    proc = run_process(
        cmd, target, timeout_s, scrubbed_env(os.environ)
    )  # ESLint runs the target's config
    if proc.launch_error or proc.timed_out or proc.exit_code not in (0, 1):
        why = proc.launch_error or ("timed out" if proc.timed_out else f"exit {proc.exit_code}")
        raise EslintFailed(f"eslint failed ({why}): {error_summary(proc.stderr or proc.stdout)}")
    try:
        report = parse_eslint_json(proc.stdout, target)
    except ValueError as exc:  # msgspec's errors name the path: $[0].messages[2].line
        raise EslintFailed(f"eslint: unparsable JSON output ({exc})") from exc
    raw = report.messages  # one per finding, in the same order
    issues = to_issues("eslint", report.findings)
    found = report.findings
    order = sorted(  # the order of to_issues (a stable sort on the same key)
        range(len(found)),
        key=lambda k: (
            found[k].file,
            found[k].line,
            found[k].column,
            found[k].rule,
            found[k].message,
        ),
    )
    out: dict[str, list[tuple[IssueRecord, EslintMessage]]] = {}
    for issue, k in zip(issues, order, strict=True):
        out.setdefault(issue.file, []).append((issue, raw[k]))
    return out, cmd


def _utf16_index(text: str) -> list[int] | None:
    """Python index of each UTF-16 offset, or ``None`` when they coincide (no astral chars)."""
    if all(ord(c) < 0x10000 for c in text):
        return None
    index: list[int] = []
    for i, c in enumerate(text):
        index.append(i)
        if ord(c) >= 0x10000:
            index.append(i)
    index.append(len(text))
    return index


def _offset(text: str, line: int, column: int) -> int:
    """The UTF-16 offset of 1-based ``line``/``column`` (ESLint's line breaks: \\r\\n, \\r, \\n,
    \\u2028, \\u2029)."""
    pos, current = 0, 1
    units = 0
    while current < line and pos < len(text):
        c = text[pos]
        units += 2 if ord(c) >= 0x10000 else 1
        pos += 1
        if c == "\r" and pos < len(text) and text[pos] == "\n":
            units += 1
            pos += 1
            current += 1
        elif c in "\r\n\u2028\u2029":
            current += 1
    return units + max(column - 1, 0)


def _read(path: Path) -> tuple[str, bool]:
    text = path.read_bytes().decode("utf-8")
    return (text[1:], True) if text.startswith(BOM) else (text, False)


def fix_batch(target: Path, issues: Sequence[IssueRecord], timeout_s: float = 300.0) -> FixReport:
    """Apply ESLint's fixes for exactly ``issues`` (see the module docstring)."""
    target = Path(target)
    eslint = project_bin(target, "eslint") or find_executable("eslint")
    if eslint is None:
        raise EslintFailed("eslint is not installed (npm ci, or npm install --save-dev eslint)")
    env = scrubbed_env(os.environ)
    flags = scope_flags(eslint_version(eslint, env), target, env)
    report = FixReport()
    tracked = [_Tracked(i) for i in issues if i.file]
    touched: dict[str, list[tuple[int, int]]] = {}
    for round_no in range(MAX_ROUNDS):
        open_files = sorted({t.issue.file for t in tracked if not t.done})
        if not open_files:
            break
        messages, cmd = eslint_messages(eslint, target, open_files, timeout_s, flags)
        report.commands.append(cmd)
        report.rounds += 1
        for file in open_files:
            _round(target, file, tracked, messages.get(file, []), round_no == 0, report,
                   touched.setdefault(file, []))  # fmt: skip
    if any(not t.done for t in tracked):  # fixed in the last round, or still there?
        open_files = sorted({t.issue.file for t in tracked if not t.done})
        messages, cmd = eslint_messages(eslint, target, open_files, timeout_s, flags)
        report.commands.append(cmd)
        for t in tracked:
            if not t.done:
                found = _find(t, messages.get(t.issue.file, []), _read(target / t.issue.file)[0],
                              first=False)  # fmt: skip
                if found:
                    report.left.append(t.issue.issue_id)
                elif not t.follow_up:
                    report.fixed.append(t.issue.issue_id)
                t.done = True
    return report


def _find(
    t: _Tracked, present: list[tuple[IssueRecord, EslintMessage]], text: str, *, first: bool
) -> tuple[EslintMessage, int] | None:
    """The message that is ``t``'s issue now: the batch's id or position in the first round,
    then a message of its rule starting where its position was carried to."""
    for issue, msg in present:
        if issue.rule != t.issue.rule:
            continue
        start = _offset(text, msg.line or 0, msg.column or 0)
        if first:
            same = issue.issue_id == t.issue.issue_id or (issue.line, issue.column) == (
                t.issue.line, t.issue.column)  # fmt: skip
        else:
            same = start == t.offset
        if same:
            return msg, start
    return None


def _round(
    target: Path,
    file: str,
    tracked: list[_Tracked],
    present: list[tuple[IssueRecord, EslintMessage]],
    first: bool,
    report: FixReport,
    touched: list[tuple[int, int]],
) -> None:
    """One round on one file: find the batch's open issues, apply their fixes bottom-up."""
    path = target / file
    text, bom = _read(path)
    open_here = [t for t in tracked if t.issue.file == file and not t.done]
    if touched:
        for follow in _follow_ups(text, present, open_here, touched):
            tracked.append(follow)
            open_here.append(follow)
            report.follow_ups.append(follow.issue.issue_id)
    taken = _first_non_overlapping(_choose(open_here, present, text, first, report))
    if not taken:
        return
    text = _apply(text, taken, open_here, touched, report)
    path.write_bytes(((BOM if bom else "") + text).encode("utf-8"))
    if file not in report.files_changed:
        report.files_changed.append(file)


def _follow_ups(
    text: str,
    present: list[tuple[IssueRecord, EslintMessage]],
    open_here: list[_Tracked],
    touched: list[tuple[int, int]],
) -> list[_Tracked]:
    """Problems our own fixes made: a fixable message whose line and whole fix lie on lines
    those fixes changed, and that is not one of the batch's open issues."""
    lines = _line_starts(text)
    changed = {n for a, b in touched for n in range(_line(lines, a), _line(lines, b) + 1)}
    found: list[_Tracked] = []
    for issue, msg in present:
        fix = msg.fix
        if fix is None or issue.line not in changed:
            continue
        start = _offset(text, issue.line, issue.column)
        if any(t.offset == start and t.issue.rule == issue.rule for t in [*open_here, *found]):
            continue
        span = range(_line(lines, fix.range[0]), _line(lines, fix.range[1]) + 1)
        if set(span) <= changed:
            found.append(_Tracked(issue, offset=start, follow_up=True))
    return found


def _choose(
    open_here: list[_Tracked],
    present: list[tuple[IssueRecord, EslintMessage]],
    text: str,
    first: bool,
    report: FixReport,
) -> list[tuple[_Tracked, EslintFixData]]:
    """The fix for each open issue; an issue without one is settled here."""
    chosen: list[tuple[_Tracked, EslintFixData]] = []
    for t in open_here:
        if t.follow_up and t.applied == 0:
            own = next((m.fix for i, m in present if i.issue_id == t.issue.issue_id
                        and t.offset is not None), None)  # fmt: skip
            if own is not None:
                chosen.append((t, own))
                continue
        found = _find(t, present, text, first=first)
        if found is None or found[0].fix is None:
            _settle(t, report, reported=found is not None, first=first)
            continue
        t.offset = found[1]
        chosen.append((t, found[0].fix))
    return chosen


def _settle(t: _Tracked, report: FixReport, *, reported: bool, first: bool) -> None:
    """``t`` has no fix to apply this round: fixed, left or missing, once and for all."""
    t.done = True
    if t.follow_up:
        if reported:
            report.left.append(t.issue.issue_id)
    elif first:  # not reported (any more), or without a fix: nothing to apply
        report.missing.append(t.issue.issue_id)
    elif not reported:
        report.fixed.append(t.issue.issue_id)
    else:  # still reported, but ESLint offers no fix for it now
        report.left.append(t.issue.issue_id)


def _first_non_overlapping(
    chosen: list[tuple[_Tracked, EslintFixData]],
) -> list[tuple[_Tracked, EslintFixData]]:
    """ESLint's order: by range start; a fix overlapping (or touching) a taken one waits."""
    chosen = sorted(chosen, key=lambda c: c[1].range)
    taken: list[tuple[_Tracked, EslintFixData]] = []
    last_end = -1
    for t, fix in chosen:
        start, end = fix.range
        if start <= last_end or start > end:
            continue
        taken.append((t, fix))
        last_end = end
    return taken


def _apply(
    text: str,
    taken: list[tuple[_Tracked, EslintFixData]],
    open_here: list[_Tracked],
    touched: list[tuple[int, int]],
    report: FixReport,
) -> str:
    """``text`` with the taken fixes applied bottom-up; open positions and the changed ranges
    carried through the edits."""
    units = _utf16_index(text)
    edits: list[tuple[int, int, str, str]] = []  # (start, end, old text, new text), UTF-16
    for t, fix in reversed(taken):  # bottom-up: earlier offsets stay valid
        start, end = fix.range
        new = fix.text
        a, b = (start, end) if units is None else (units[start], units[end])
        edits.append((start, end, text[a:b], new))
        text = text[:a] + new + text[b:]
        t.applied += 1
        report.applied += 1
    for t in open_here:  # carry the open issues' positions through the edits
        if not t.done and t.offset is not None:
            t.offset = _carry(t.offset, edits)
    touched[:] = [(_carry(a, edits), _carry(b, edits)) for a, b in touched]
    for start, _end, _, new in edits:  # where each new text is now
        others = [e for e in edits if e[1] <= start and e[0] != start]
        begin = _carry(start, others)
        touched.append((begin, begin + len(_units(new))))
    return text


def _line_starts(text: str) -> list[int]:
    """The UTF-16 offset at which each line starts (ESLint's line breaks)."""
    starts, units, i = [0], 0, 0
    while i < len(text):
        c = text[i]
        units += 2 if ord(c) >= 0x10000 else 1
        i += 1
        if c == "\r" and i < len(text) and text[i] == "\n":
            units += 1
            i += 1
            starts.append(units)
        elif c in "\r\n\u2028\u2029":
            starts.append(units)
    return starts


def _line(starts: list[int], offset: int) -> int:
    """The 1-based line of a UTF-16 offset."""
    return bisect_right(starts, offset)


def _units(text: str) -> list[bytes]:
    data = text.encode("utf-16-le")
    return [data[i : i + 2] for i in range(0, len(data), 2)]


def _carry(offset: int, edits: list[tuple[int, int, str, str]]) -> int:
    """Where ``offset`` is after ``edits`` (non-overlapping, any order).  Inside a replaced
    range it follows the text a fix kept (object-shorthand rewrites a whole method, keeping the
    body and the problems in it); elsewhere it shifts by the length changes before it."""
    shift = 0
    for start, end, old, new in edits:
        length = len(new.encode("utf-16-le")) // 2
        if end <= offset and not start == end == offset:
            shift += length - (end - start)
        elif start <= offset < end:
            inside = offset - start
            moved = 0
            matcher = SequenceMatcher(None, _units(old), _units(new), autojunk=False)
            for tag, i1, i2, j1, _ in matcher.get_opcodes():
                if i1 <= inside < i2:
                    moved = j1 + (inside - i1) if tag == "equal" else j1
                    break
            shift += moved - inside
    return offset + shift


class EslintFix:
    tool = "eslint"

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool:
        return issue.tool == self.tool and issue.fix == "safe" and issue.rule != "invalid-syntax"

    def apply(
        self,
        target: Path,
        issues: Sequence[IssueRecord],
        config: FixerConfig,
        *,
        environment: Mapping[str, str] | None = None,
    ) -> FixOutcome:
        """Apply the fixes of exactly ``issues``; ``ok`` when ESLint ran and at least one of them
        was fixed (an issue ESLint no longer reports at the start counts as already fixed)."""
        started = time.monotonic()
        try:
            report = fix_batch(target, issues, config.timeout_s)
        except (EslintFailed, OSError, UnicodeDecodeError, ValueError) as exc:
            return FixOutcome(ok=False, reason=str(exc), duration_s=time.monotonic() - started)
        parts = [
            (
                f"eslint: {len(report.fixed)} of {len(issues)} issues fixed "
                f"({report.applied} fixes in {report.rounds} rounds)"
            )
        ]
        if report.missing:
            parts.append(f"{len(report.missing)} no longer reported with a fix")
        if report.left:
            parts.append(f"{len(report.left)} still reported after {report.rounds} rounds")
        return FixOutcome(
            ok=bool(report.fixed) or (not report.left and bool(report.missing)),
            reason="; ".join(parts),
            duration_s=time.monotonic() - started,
            commands=report.commands,
        )


register_deterministic(EslintFix())
