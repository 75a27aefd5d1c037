"""What a kept batch's commit says: subject, body and trailers, from the diff and its measurements."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from airfix.events.core.planning import PlannedBatch

__all__ = ["commit_message"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


_FILE_COUNT = re.compile(r"\d+ files?\)$")


def commit_message(
    batch: PlannedBatch,
    counts_before: Mapping[str, int],
    counts_after: Mapping[str, int],
    fixer: str,
    run_id: str,
    *,
    files: Sequence[str] | None = None,
    fixed: int | None = None,
    verified: str = "",
) -> str:
    """The commit message of a verified batch: subject, body, trailers.

    The subject is ``batch.description`` (``chore: remove all unused imports (30 files)``) with
    the file count of the diff itself (``files``); the body names the batch, its rules, how many
    of its issues it fixed, the counts before (the parent commit's measurement) and after (this
    commit's) per tool, how the tests judged it (``verified``) and the fixer; the trailers
    ``Airfix-Batch`` and ``Airfix-Run`` make ``git log --grep`` find a run's commits.
    """
    n_files = len(files) if files is not None else len(batch.files)
    subject = _FILE_COUNT.sub(f"{_plural(n_files, 'file')})", batch.description)
    n_issues = len(batch.issue_ids) if fixed is None else fixed
    lines = [
        subject,
        "",
        f"Batch: {batch.batch_id} ({batch.kind}, {batch.phase} phase, {batch.mode} mode)",
        f"Issues: {n_issues} in {_plural(n_files, 'file')}",
        f"Rules: {', '.join(batch.rules) if batch.rules else '(none)'}",
    ]
    keys = sorted(set(counts_before) | set(counts_after))
    if keys:
        lines.append("Counts (before -> after):")
        for key in keys:
            before = counts_before.get(key)
            after = counts_after.get(key)
            lines.append(
                f"  {key}: {'?' if before is None else before} -> {'?' if after is None else after}"
            )
    if verified:
        lines.append(f"Verified: {verified}")
    lines += [
        f"Fixer: {fixer or '(unknown)'}",
        "",
        f"Airfix-Batch: {batch.batch_id}",
        f"Airfix-Run: {run_id}",
    ]
    return "\n".join(lines)
