"""Counting a stack's kept commits alongside its tip's suite: used for the stack it counted,
stopped (its tools with it) when the stack changes or the step's turn ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from airfix.services.pipeline.landing import Counts, Recount, Stack
from airfix.services.runtime.cancel import cancelled
from airfix.services.runtime.cancel import scope as cancel_scope

STACK = [("run/1-1", "a" * 40), ("run/1-2", "b" * 40)]


def counted(stack: Stack) -> list[Counts]:
    return [({"ruff": n + 1}, {"ruff": n}) for n, _ in enumerate(stack)]


def until_stopped(started: threading.Event) -> Callable[[Stack], list[Counts]]:
    def count(stack: Stack) -> list[Counts]:
        started.set()
        deadline = time.monotonic() + 30
        while not cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        return [({"stopped": int(cancelled())}, {})]

    return count


def test_the_counts_are_taken_for_the_stack_they_counted() -> None:
    recount = Recount.of(None, STACK, counted)
    assert recount is not None and Recount.of(recount, list(STACK), counted) is recount
    assert recount.take(list(STACK)) == [({"ruff": 1}, {"ruff": 0}), ({"ruff": 2}, {"ruff": 1})]
    assert Recount.of(None, [], counted) is None  # nothing re-applied: nothing to count


def test_a_changed_stack_stops_the_count_and_throws_it_away() -> None:
    started = threading.Event()
    recount = Recount(STACK, until_stopped(started))
    assert started.wait(10)
    assert recount.take(STACK[:1]) is None
    assert recount.future.result(timeout=10) == [({"stopped": 1}, {})]
    started.clear()
    recount = Recount(STACK, until_stopped(started))
    assert started.wait(10)
    assert Recount.of(recount, []) is None and recount.future.result(timeout=10)[0][0] == {
        "stopped": 1
    }


def test_the_steps_own_turn_ending_stops_it_too() -> None:
    turn, started = threading.Event(), threading.Event()
    with cancel_scope(turn):  # the step's scope, as the role handler opens it
        recount = Recount(STACK, until_stopped(started))
    assert started.wait(10)
    turn.set()
    assert recount.future.result(timeout=10) == [({"stopped": 1}, {})]
    assert not recount.stop.is_set()  # stopped by the step's scope, not its own
