"""``airfix trim``: what retention removed, for people (the rules and the trimming are
``services/runtime/retention.py``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

from airfix.services.runtime.retention import TrimReport


def render(report: TrimReport, out: IO[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out or sys.stdout, highlight=False, soft_wrap=True)
    verb = "would remove" if report.dry_run else "removed"
    total = sum(report.removed.values())
    console.print(
        f"{'dry run: ' if report.dry_run else ''}{verb} {total} log entr"
        f"{'y' if total == 1 else 'ies'} of {len(report.runs)} finished run(s)"
    )
    if report.removed:
        table = Table()
        table.add_column("stream")
        table.add_column("entries " + verb)
        for stream, n in sorted(report.removed.items()):
            table.add_row(stream, str(n))
        console.print(table)
    if report.archived:
        console.print(
            f"{'would archive' if report.dry_run else 'archived'} {len(report.archived)} "
            f"run(s) to {Path(next(iter(report.archived.values()))).parent} and "
            f"{'would remove' if report.dry_run else 'removed'} their run streams"
        )
    for run, why in sorted(report.refused.items()):
        console.print(f"kept {run}: {why}")
    if report.kept:
        console.print("kept: " + ", ".join(f"{n} {c}" for c, n in sorted(report.kept.items())))
