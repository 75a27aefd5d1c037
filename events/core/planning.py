"""Which issues are fixed together: pure batch planning and commit messages.

Pure on purpose: no I/O, no clock, no randomness.  The same issues give the same plan whatever their
order, so a retried planner emits byte-identical ``BatchPlanned`` events (same batch ids too) and the
store recognises them.

Modes (``issue_grouping.mode``):

``mega``
    One batch per phase with every issue of that phase.  Kind ``mega``.
``individual``
    One batch per issue.  Kind ``single``.
``smart`` (the default)
    *Cleanup* batches, project-wide, one per kind of issue, then *location* batches, one per
    directory, for everything else:

    * An issue is a cleanup candidate when its rule is a mechanical, project-wide kind of fix:
      the rules in :data:`CLEANUP_RULES` (unused imports and variables, f-strings without
      placeholders, import sorting, ``== None`` comparisons, whitespace, long lines, unused
      ``noqa``/``type: ignore`` ...), every pyupgrade rule (``UP*``), and any issue its tool can
      fix itself safely (``fix == "safe"``): such fixes are mechanical, and a rule's fixes often
      belong together (a signature style changed in one file but not in its twin breaks a test
      that compares them).
    * Candidates are grouped by ``(phase, tool, rule)``.  A group with at least
      :data:`CLEANUP_MIN_ISSUES` (2) issues becomes cleanup batches; a lone one is not worth a
      project-wide commit and joins its directory's location batch instead.
    * Everything else is grouped by ``(phase, directory of the file)``; issues without a file
      form the project-root group.  Rules and tools are mixed within a directory.
    * A group larger than its cap (``max_cleanup_batch_size`` / ``max_location_batch_size``)
      is split into ``ceil(n / cap)`` parts of near-equal size, in file/line order.

    This follows the original ``IssueGrouper`` (cleanup categories with >= 2 issues went
    project-wide, location categories went by parent directory) without its defects: categories
    come from rule codes, not regexes over messages; no issue is dropped (the original dropped
    location issues in directories with fewer than 3 and appended uncategorised ones twice).

Order and priority.  Phases run build, then test, then lint.  Within a phase: mega; or cleanup
batches before location batches, each larger group first (ties by rule or directory); or, in
individual mode, issue order (file, line, rule).  ``priority`` is the 1-based rank in that order,
so **lower runs first**: the ``task_queue`` ZSET is scored by priority, and
``ZRANGE autonomous_fix:task_queue 0 -1`` lists the queue in execution order.  The batch id is
``f"{run_id}/{iteration}-{priority}"``.

Caps.  ``batches_per_phase`` (from ``batch_sizes``) bounds how many batches of each phase one
iteration runs; the issues of the rest land in :attr:`Plan.deferred_issue_ids`, and the next
full check rediscovers them.  A phase missing from the mapping is not capped.
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Literal, cast

import msgspec

from airfix.events.core.cleanup import CLEANUP_MIN_ISSUES, cleanup_phrase, is_cleanup_rule
from airfix.events.core.machine import PlanBatch
from airfix.events.schema import BatchingMode, BatchPlanned, IssueRecord, Phase

__all__ = [
    "PHASES",
    "BatchKind",
    "Plan",
    "PlannedBatch",
    "phase_caps",
    "plan_batches",
    "planned_of",
    "split_batch",
]

PHASES: tuple[Phase, ...] = ("build", "test", "lint")
_PHASE_RANK: dict[str, int] = {p: i for i, p in enumerate(PHASES)}
BatchKind = Literal["cleanup", "location", "mega", "single"]

_TYPE_TOOLS = frozenset({"mypy", "pyright", "pyre", "pytype", "tsc", "dmypy"})
_TEST_TOOLS = frozenset(
    {
        "pytest",
        "unittest",
        "jest",
        "vitest",
        "go test",
        "flutter test",
        "js_test",
        "go_test",
        "flutter_test",
        "dart_test",
    }
)
_PHASE_NOUN = {"build": "build errors", "test": "test failures", "lint": "lint issues"}


class PlannedBatch(msgspec.Struct, frozen=True, kw_only=True):
    """One unit of work for the fixer: the payload of a ``PlanBatch`` command, plus its grouping."""

    batch_id: str
    phase: Phase
    mode: BatchingMode
    issue_ids: list[str]
    priority: int  # 1-based rank; lower runs first
    description: str  # the commit subject
    files: list[str]  # sorted, unique, non-empty paths
    kind: BatchKind
    rules: list[str]  # sorted, unique, non-empty rule codes
    scope: str = ""  # the rule (cleanup), directory (location) or file:line (single)

    def command(self) -> PlanBatch:
        """The ``PlanBatch`` command that records this batch."""
        return PlanBatch(
            batch_id=self.batch_id,
            phase=self.phase,
            issue_ids=list(self.issue_ids),
            mode=self.mode,
            priority=self.priority,
            description=self.description,
            files=list(self.files),
            kind=self.kind,
        )


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """An iteration's batches in execution order, and the issues the per-phase caps pushed out.

    ``deferred_batches`` counts the batches that were planned but not kept; their issues are in
    ``deferred_issue_ids`` (in plan order) and come back with the next full check.
    """

    batches: list[PlannedBatch]
    deferred_issue_ids: list[str] = []
    deferred_batches: int = 0

    @property
    def issue_ids(self) -> list[str]:
        return [i for b in self.batches for i in b.issue_ids]


def phase_caps(sizes: object) -> dict[Phase, int]:
    """``batches_per_phase`` from a ``BatchSizesConfig`` (``build_fixes``, ``test_fixes``, ...)."""
    return {p: int(getattr(sizes, f"{p}_fixes")) for p in PHASES}


# ---------------------------------------------------------------- planning


def _check_plan_args(
    mode: BatchingMode,
    max_cleanup_batch_size: int,
    max_location_batch_size: int,
    batches_per_phase: Mapping[Phase, int],
) -> None:
    if mode not in ("mega", "smart", "individual"):
        raise ValueError(f"unknown batching mode {mode!r}; expected mega, smart or individual")
    if max_cleanup_batch_size < 1 or max_location_batch_size < 1:
        raise ValueError(
            "max_cleanup_batch_size and max_location_batch_size must be at least 1, got "
            f"{max_cleanup_batch_size} and {max_location_batch_size}"
        )
    for phase, limit in batches_per_phase.items():
        if phase not in _PHASE_RANK:
            raise ValueError(f"batches_per_phase: unknown phase {phase!r}")
        if limit < 0:
            raise ValueError(f"batches_per_phase[{phase!r}] must be >= 0, got {limit}")


def plan_batches(
    issues: Sequence[IssueRecord],
    *,
    mode: BatchingMode,
    iteration: int,
    run_id: str,
    max_cleanup_batch_size: int,
    max_location_batch_size: int,
    batches_per_phase: Mapping[Phase, int],
    alone: Collection[str] = (),
) -> Plan:
    """Group ``issues`` into batches (see the module docstring for the rules).

    ``alone``: fingerprints whose issues each get a batch of their own, after the phase's other
    batches (their earlier batch failed, and one of its issues is to blame).

    Every issue (de-duplicated by ``issue_id``) is either in exactly one batch of ``batches`` or
    in ``deferred_issue_ids``; no batch is empty; cleanup and location batches respect their caps;
    at most ``batches_per_phase[phase]`` batches of a phase are in ``batches``.

    Raises:
        ValueError: an unknown mode or phase, a cap below 1, or a negative per-phase count.
    """
    _check_plan_args(mode, max_cleanup_batch_size, max_location_batch_size, batches_per_phase)
    by_phase = _sorted_by_phase(issues)
    kept: list[PlannedBatch] = []
    deferred_ids: list[str] = []
    deferred = 0
    for phase in PHASES:
        phase_issues = by_phase[phase]
        if not phase_issues:
            continue
        cap = batches_per_phase.get(phase)
        singles = [i for i in phase_issues if i.fingerprint in alone] if alone else []
        if singles and mode != "individual":
            phase_issues = [i for i in phase_issues if i.fingerprint not in alone]
        if mode == "individual":  # the hot path with many batches: no drafts
            take = phase_issues if cap is None else phase_issues[:cap]
            for issue in take:
                kept.append(_single(issue, len(kept) + 1, phase, iteration, run_id))
            rest = phase_issues[len(take) :]
            deferred += len(rest)
            deferred_ids.extend(i.issue_id for i in rest)
            continue
        if not phase_issues:
            drafts = []
        elif mode == "mega":
            drafts = [_Draft(phase, "mega", "", phase_issues, 1, 1)]
        else:
            drafts = _smart(phase, phase_issues, max_cleanup_batch_size, max_location_batch_size)
        if cap is not None and len(drafts) > cap:
            for d in drafts[cap:]:
                deferred_ids.extend(i.issue_id for i in d.issues)
            deferred += len(drafts) - cap
            drafts = drafts[:cap]
        for d in drafts:
            kept.append(_build(d, len(kept) + 1, mode, iteration, run_id))
        room = len(singles) if cap is None else max(0, cap - len(drafts))
        for issue in singles[:room]:
            kept.append(_single(issue, len(kept) + 1, phase, iteration, run_id))
        deferred += len(singles[room:])
        deferred_ids.extend(i.issue_id for i in singles[room:])
    return Plan(batches=kept, deferred_issue_ids=deferred_ids, deferred_batches=deferred)


class _Draft:
    __slots__ = ("issues", "kind", "part", "parts", "phase", "scope")

    def __init__(
        self,
        phase: Phase,
        kind: BatchKind,
        scope: str,
        issues: list[IssueRecord],
        part: int,
        parts: int,
    ) -> None:
        self.phase = phase
        self.kind = kind
        self.scope = scope
        self.issues = issues
        self.part = part
        self.parts = parts


# Every field, so the order (and so the plan) is independent of the input order.
_sort_key = operator.attrgetter(
    "file", "line", "column", "rule", "tool", "fingerprint", "issue_id", "message", "severity"
)


def _sorted_by_phase(issues: Iterable[IssueRecord]) -> dict[Phase, list[IssueRecord]]:
    by_phase: dict[Phase, list[IssueRecord]] = {p: [] for p in PHASES}
    for issue in issues:
        bucket = by_phase.get(issue.phase)
        if bucket is None:
            raise ValueError(f"issue {issue.issue_id!r} has unknown phase {issue.phase!r}")
        bucket.append(issue)
    for phase in PHASES:
        by_phase[phase].sort(key=_sort_key)
    ids = [i.issue_id for p in PHASES for i in by_phase[p]]
    if len(set(ids)) != len(ids):  # rare: keep the first of each issue_id in (phase, sort) order
        seen: set[str] = set()
        for phase in PHASES:
            unique = []
            for issue in by_phase[phase]:
                if issue.issue_id not in seen:
                    seen.add(issue.issue_id)
                    unique.append(issue)
            by_phase[phase] = unique
    return by_phase


def _directory(path: str) -> str:
    return path.rpartition("/")[0]


def _smart(
    phase: Phase, issues: list[IssueRecord], cleanup_cap: int, location_cap: int
) -> list[_Draft]:
    candidates: dict[tuple[str, str], list[IssueRecord]] = {}
    is_cleanup: dict[str, bool] = {}
    for issue in issues:
        rule = issue.rule
        flag = is_cleanup.get(rule)
        if flag is None:
            flag = is_cleanup[rule] = is_cleanup_rule(rule)
        if flag or issue.fix == "safe":  # a tool's own safe fix is mechanical: one rule, one batch
            candidates.setdefault((issue.tool, rule), []).append(issue)
    cleanup = {k: v for k, v in candidates.items() if len(v) >= CLEANUP_MIN_ISSUES}

    locations: dict[str, list[IssueRecord]] = {}
    dirs: dict[str, str] = {}
    for issue in issues:
        if (issue.tool, issue.rule) in cleanup:
            continue
        d = dirs.get(issue.file)
        if d is None:
            d = dirs[issue.file] = _directory(issue.file)
        locations.setdefault(d, []).append(issue)

    drafts: list[_Draft] = []
    # Larger groups first; ties by rule/tool or directory.  Input lists are already in issue order.
    for (_tool, rule), group in sorted(
        cleanup.items(), key=lambda kv: (-len(kv[1]), kv[0][1], kv[0][0])
    ):
        drafts.extend(_split(phase, "cleanup", rule, group, cleanup_cap))
    for directory, group in sorted(locations.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        drafts.extend(_split(phase, "location", directory, group, location_cap))
    return drafts


def _split(
    phase: Phase, kind: BatchKind, scope: str, group: list[IssueRecord], cap: int
) -> list[_Draft]:
    """``ceil(n / cap)`` consecutive parts whose sizes differ by at most one."""
    n = len(group)
    parts = -(-n // cap)
    base, extra = divmod(n, parts)
    out: list[_Draft] = []
    start = 0
    for k in range(parts):
        size = base + (1 if k < extra else 0)
        out.append(_Draft(phase, kind, scope, group[start : start + size], k + 1, parts))
        start += size
    return out


def _build(d: _Draft, n: int, mode: BatchingMode, iteration: int, run_id: str) -> PlannedBatch:
    issues = d.issues
    files = sorted({i.file for i in issues} - {""})
    return PlannedBatch(
        batch_id=f"{run_id}/{iteration}-{n}",
        phase=d.phase,
        mode=mode,
        issue_ids=[i.issue_id for i in issues],
        priority=n,
        description=_describe(d, len(files)),
        files=files,
        kind=d.kind,
        rules=sorted({i.rule for i in issues} - {""}),
        scope=d.scope,
    )


def _single(issue: IssueRecord, n: int, phase: Phase, iteration: int, run_id: str) -> PlannedBatch:
    where = _where(issue)
    label = issue.rule or issue.tool or "issue"
    return PlannedBatch(
        batch_id=f"{run_id}/{iteration}-{n}",
        phase=phase,
        mode="individual",
        issue_ids=[issue.issue_id],
        priority=n,
        description=f"fix: {label} in {where}"
        if where
        else f"fix: {label} ({issue.tool or phase})",
        files=[issue.file] if issue.file else [],
        kind="single",
        rules=[issue.rule] if issue.rule else [],
        scope=where,
    )


def planned_of(batch: BatchPlanned, issues: Sequence[IssueRecord]) -> PlannedBatch:
    """``batch`` as planned, for a commit message that names the rules of ``issues`` (the batch's
    own, or the part of them a commit fixes)."""
    return PlannedBatch(
        batch_id=batch.batch_id,
        phase=batch.phase,
        mode=batch.mode,
        issue_ids=list(batch.issue_ids),
        priority=batch.priority,
        description=batch.description,
        files=list(batch.files) or ["."],
        kind=cast(BatchKind, batch.kind or ("mega" if batch.mode == "mega" else "location")),
        rules=sorted({i.rule for i in issues if i.rule}) or ["?"],
    )


def split_batch(batch: BatchPlanned, issues: Sequence[IssueRecord]) -> list[PlanBatch]:
    """The two halves of a rolled-back batch, to find the issues to blame by bisection (as a
    merge queue bisects a failed stack): by files while it spans several, else by issues.  A
    batch of one issue is not split: its issue is then set aside (``ledger.lessons``)."""
    if len(issues) < 2:
        return []
    files = sorted({i.file for i in issues})
    if len(files) > 1:
        first = set(files[: len(files) // 2])
        halves = [
            [i for i in issues if i.file in first],
            [i for i in issues if i.file not in first],
        ]
    else:
        ordered = sorted(issues, key=_sort_key)
        halves = [ordered[: len(ordered) // 2], ordered[len(ordered) // 2 :]]
    return [
        PlanBatch(
            batch_id=f"{batch.batch_id}.{k}",
            phase=batch.phase,
            mode=batch.mode,
            issue_ids=[i.issue_id for i in half],
            priority=batch.priority,
            description=batch.description,
            files=sorted({i.file for i in half} - {""}),
            split_of=batch.batch_id,
            kind=batch.kind,
        )
        for k, half in enumerate(halves, 1)
    ]


# ---------------------------------------------------------------- descriptions and commits


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _where(issue: IssueRecord) -> str:
    if not issue.file:
        return ""
    return f"{issue.file}:{issue.line}" if issue.line > 0 else issue.file


def _noun(phase: Phase, issues: list[IssueRecord]) -> str:
    tools = {i.tool for i in issues}
    if len(tools) == 1:
        (tool,) = tools
        if tool in _TYPE_TOOLS:
            return "type errors"
        if tool in _TEST_TOOLS:
            return "test failures"
    return _PHASE_NOUN[phase]


def _describe(d: _Draft, n_files: int) -> str:
    part = f", part {d.part}/{d.parts}" if d.parts > 1 else ""
    n = len(d.issues)
    if d.kind == "cleanup":
        kind, phrase = cleanup_phrase(d.scope, whole=d.parts == 1)
        return f"{kind}: {phrase}{part} ({_plural(n_files, 'file')})"
    if d.kind == "location":
        where = f"{d.scope}/" if d.scope else "the project root"
        return (
            f"fix: {_noun(d.phase, d.issues)} in {where}{part} "
            f"({_plural(n, 'issue')}, {_plural(n_files, 'file')})"
        )
    return f"fix: comprehensive cleanup of {_plural(n, 'issue')}"
