"""The run state machine: pure ``decide`` (command -> events) and ``evolve`` (state + event ->
state), in three parts: the state and its transitions (:mod:`.state`), the commands steps send
(:mod:`.commands`) and the policy that ends a run (:mod:`.decide`).  Import from here.

Pure on purpose: no I/O, no clock, no randomness.  Time only arrives inside commands (``now``,
epoch seconds) and events (``recorded_at``), so replaying a log always rebuilds the same state and
every policy decision can be unit-tested without Redis.
"""

from __future__ import annotations

from airfix.events.core.commands import (
    COMMAND_TYPES,
    AnyCommand,
    ApplyFix,
    Cancel,
    Command,
    Commit,
    CompleteIteration,
    DropFromStack,
    Fail,
    FailFix,
    LandStack,
    PlanBatch,
    PrepareFix,
    RecordHealth,
    RecordIssues,
    RequestRun,
    RollBack,
    SkipBatch,
    StartFix,
    StartRun,
    Tick,
)
from airfix.events.core.decide import decide
from airfix.events.core.state import (
    STATES,
    TERMINAL_STATE,
    TRANSITIONS,
    RunState,
    evolve,
    fold,
    initial_state,
)

__all__ = [
    "COMMAND_TYPES",
    "STATES",
    "TERMINAL_STATE",
    "TRANSITIONS",
    "AnyCommand",
    "ApplyFix",
    "Cancel",
    "Command",
    "Commit",
    "CompleteIteration",
    "DropFromStack",
    "Fail",
    "FailFix",
    "LandStack",
    "PlanBatch",
    "PrepareFix",
    "RecordHealth",
    "RecordIssues",
    "RequestRun",
    "RollBack",
    "RunState",
    "SkipBatch",
    "StartFix",
    "StartRun",
    "Tick",
    "decide",
    "evolve",
    "fold",
    "initial_state",
]
