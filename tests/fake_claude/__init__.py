"""A fake Claude Code CLI (``tests/fake_claude/claude``) and helpers for the fixer tests.

The fake speaks the real ``--output-format stream-json --verbose`` protocol; see its docstring
for the modes (``fix``, ``hang``, ``idle``, ``spin``, ``linger``, ``rate_limit``, ``error``,
``max_turns``, ``no_result``, ``crash``) and the ``FAKE_CLAUDE_*`` variables.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

FAKE_CLAUDE = Path(__file__).resolve().parent / "claude"
ENV_VARS = (
    "FAKE_CLAUDE_MODE",
    "FAKE_CLAUDE_DELAY",
    "FAKE_CLAUDE_RECORD",
    "FAKE_CLAUDE_PIDFILE",
    "FAKE_CLAUDE_EDITS",
    "FAKE_CLAUDE_COST",
)


def fake_env(
    mode: str | None = None,
    *,
    delay: float | None = None,
    record: Path | None = None,
    pidfile: Path | None = None,
    edits: list[dict[str, Any]] | None = None,
    cost: float | None = None,
) -> dict[str, str]:
    """``FAKE_CLAUDE_*`` variables for ``monkeypatch.setenv`` (only the ones given)."""
    env: dict[str, str] = {}
    if mode is not None:
        env["FAKE_CLAUDE_MODE"] = mode
    if delay is not None:
        env["FAKE_CLAUDE_DELAY"] = str(delay)
    if record is not None:
        env["FAKE_CLAUDE_RECORD"] = str(record)
    if pidfile is not None:
        env["FAKE_CLAUDE_PIDFILE"] = str(pidfile)
    if edits is not None:
        env["FAKE_CLAUDE_EDITS"] = json.dumps(edits)
    if cost is not None:
        env["FAKE_CLAUDE_COST"] = str(cost)
    return env


def read_record(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def read_pids(path: Path, timeout_s: float = 5.0) -> tuple[int, int]:
    """(fake's pid, its child's pid) from a pidfile the fake writes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            own, child = path.read_text().split()
            return int(own), int(child)
        time.sleep(0.02)
    raise AssertionError(f"the fake claude wrote no pidfile at {path}")


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_dead(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return not alive(pid)
