"""``airfix dlq list|show``: dead letters for people (the machinery that parks, retries and
discards them is ``services/runtime/deadletters.py``)."""

from __future__ import annotations

import json
import sys
import time
from typing import IO

from airfix.events.storage.store import as_str as _s
from airfix.services.runtime.consumers import DEAD_LETTER_COPY_BYTES
from airfix.services.runtime.deadletters import DeadLetter, Outcome, printable


def _when(ts: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "?"
    except (OverflowError, OSError, ValueError):  # a malformed parked_at far outside the calendar
        return "?"


SHOW_VALUE_CHARS = 2000  # per original field in the text of ``dlq show`` (--json has them whole)


def _shown(value: bytes) -> str:
    text = _s(value)
    if len(text) > SHOW_VALUE_CHARS:
        text = f"{text[:SHOW_VALUE_CHARS]}... ({len(value)} bytes in all)"
    return text


def render_list(dls: list[DeadLetter], out: IO[str] | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=out or sys.stdout)
    if not console.is_terminal:  # piped: room for whole ids rather than 80 columns
        console.width = 200
    if not dls:
        console.print("no dead letters")
        return
    table = Table(title="dead letters")
    for col in ("id", "group", "kind", "run", "v", "type", "attempts", "parked"):
        table.add_column(col, no_wrap=True)  # ids are what people copy into show/retry/discard
    table.add_column("error", overflow="ellipsis", no_wrap=True, max_width=60)
    for d in dls:
        cells = (
            d.id,
            d.group,
            d.kind,
            d.run,
            str(d.version),
            d.event_type,
            str(d.attempts),
            _when(d.parked_at),
            d.error[:80],
        )
        table.add_row(*(escape(printable(c, newlines=False)) for c in cells))
    console.print(table)


def render_show(dl: DeadLetter, out: IO[str] | None = None) -> None:
    info = dl.to_dict(event=True)
    w = out or sys.stdout
    for key in (
        "id",
        "group",
        "kind",
        "run",
        "version",
        "type",
        "event_id",
        "stream",
        "entry",
        "attempts",
        "consumer",
        "error",
    ):
        w.write(f"{key:<9} {printable(str(info[key]))}\n")
    if dl.truncated:
        w.write(
            f"truncated the dead letter keeps the first {DEAD_LETTER_COPY_BYTES} bytes of the "
            f"original ({dl.original_bytes} bytes): entry {printable(dl.entry)} of "
            f"{printable(dl.stream)}\n"
        )
    if info["checkpoints_when_parked"]:
        w.write(
            "checkpoints when parked: "
            + ", ".join(f"{k} {v}" for k, v in info["checkpoints_when_parked"].items())
            + "\n"
        )
    if info["event"] is not None:
        w.write("original event:\n" + json.dumps(info["event"], indent=2) + "\n")
    else:
        w.write(
            f"original entry (undecodable: {printable(info['undecodable'])}):\n"
            + json.dumps({_s(k): _shown(v) for k, v in dl.original.items()}, indent=2)
            + "\n"
        )


def describe(out: Outcome) -> str:
    """One or two lines for people."""
    if out.state == "queued":
        return f"{out.op} of {out.dead_letter} is queued: {out.error}"
    if out.state == "failed" and not out.done:
        again = " again" if out.failed else ""
        return f"{out.op} of {out.dead_letter} (group {out.group}) failed{again}: {out.error}"
    verb = "discarded" if out.op == "discard" else "retried"
    line = f"{verb} {len(out.done)} dead letter(s) of group {out.group}: {', '.join(out.done)}"
    if out.op == "retry":
        line += f" ({out.applied} view application(s))"
    if out.failed:
        line += f"\nthen {out.failed} failed again: {out.error}"
    if out.resumed:
        line += f"\nrun {out.run} is no longer halted in {out.group}"
    elif out.still_parked:
        line += (
            f"\nrun {out.run} stays halted in {out.group}: {out.still_parked} parked entr"
            f"{'y' if out.still_parked == 1 else 'ies'} left (retry the oldest, or discard them)"
        )
    return line
