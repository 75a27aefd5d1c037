"""Fixers edit files to repair one batch; airfix verifies and commits (a fixer never commits).

A fixer is anything with ``name`` and ``fix(request) -> FixOutcome``.  :data:`REGISTRY` maps names
to factories; a run's fixer is a chain (``"autofix,claude"``): deterministic fixers first, the
next fixer works on what the previous ones left.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec

from airfix.config import FixerConfig
from airfix.events.schema import BatchPlanned, IssueRecord


class FixRequest(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    target: Path
    batch: BatchPlanned
    issues: list[IssueRecord]
    config: FixerConfig
    environment: dict[str, str] = {}  # RunStarted.environment: the project's interpreter & tools


class FixOutcome(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    reason: str = ""
    fatal: bool = False  # no retry can cure it: the run ends with the reason (the fix to apply)
    cost_usd: float = 0.0
    turns: int = 0
    duration_s: float = 0.0
    commands: list[list[str]] = []


class Fixer(Protocol):
    name: str

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool:
        """Whether this fixer can repair ``issue`` at all (the planner skips what none can)."""
        ...

    def fix(self, request: FixRequest) -> FixOutcome: ...

    # Optional: ``check(config: FixerConfig) -> str``, what stops the fixer from working at all
    # ("" = ready), asked before a run is recorded (:func:`preflight`).


REGISTRY: dict[str, Callable[[], Fixer]] = {}


def register(name: str, factory: Callable[[], Fixer]) -> None:
    REGISTRY[name] = factory


def chain(spec: str) -> list[Fixer]:
    """Fixers for ``"autofix"`` or ``"autofix,claude"``; unknown or empty names are a clear error."""
    from airfix.events.errors import AirfixError

    names = [n.strip() for n in spec.split(",")]
    empty = [str(i) for i, n in enumerate(names, 1) if not n]
    if empty:
        raise AirfixError(
            f"fixer: empty fixer name at position {', '.join(empty)} of {spec!r}; give "
            f"names separated by single commas, e.g. autofix,claude (known: "
            f"{', '.join(sorted(REGISTRY))})"
        )
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise AirfixError(
            f"fixer: unknown fixer(s) {', '.join(unknown)}; known: {', '.join(sorted(REGISTRY))}"
        )
    return [REGISTRY[n]() for n in names]


def preflight(fixers: list[Fixer], config: FixerConfig) -> None:
    """Refuse a chain that cannot work at all (a missing executable, no command configured) before
    anything is written, saying how to fix it; fixers without a ``check`` are taken as ready."""
    from airfix.events.errors import AirfixError

    problems = [p for f in fixers if (p := getattr(f, "check", lambda c: "")(config))]
    if problems:
        raise AirfixError("; ".join(problems))


def supported(fixers: list[Fixer], issue: IssueRecord, config: FixerConfig) -> bool:
    return any(f.supports(issue, config) for f in fixers)


def run_chain(fixers: list[Fixer], request: FixRequest) -> FixOutcome:
    """Run every fixer in order; the batch fails only if every fixer failed, and the chain is
    unusable (``fatal``) as soon as one of its fixers is."""
    outcomes: list[FixOutcome] = []
    for f in fixers:
        outcomes.append(f.fix(request))
        if outcomes[-1].fatal:
            break

    def said(name: str, reason: str) -> str:
        return reason if reason.startswith(f"{name}:") else f"{name}: {reason}"

    fatal = any(o.fatal for o in outcomes)
    return FixOutcome(
        ok=any(o.ok for o in outcomes) and not fatal,
        fatal=fatal,
        reason="; ".join(
            said(f.name, o.reason) for f, o in zip(fixers, outcomes, strict=True) if o.reason
        ),
        cost_usd=sum(o.cost_usd for o in outcomes),
        turns=sum(o.turns for o in outcomes),
        duration_s=sum(o.duration_s for o in outcomes),
        commands=[c for o in outcomes for c in o.commands],
    )


def _register_builtin() -> None:
    from airfix.services.fixers import (
        autofix_go_dart,  # noqa: F401  (gofmt -w, dart fix)
        autofix_js,  # noqa: F401  (registers eslint --fix)
    )
    from airfix.services.fixers.autofix import AutoFixer
    from airfix.services.fixers.claude import ClaudeFixer
    from airfix.services.fixers.command import CommandFixer

    register("autofix", AutoFixer)
    register("claude", ClaudeFixer)
    register("command", CommandFixer)


_register_builtin()
