"""The checker's actions: the full check that opens a run's first iteration, and the one that
closes each iteration (and opens the next).  Closing lands a stack (``stack.py``), or, for batches
verified by the tests test impact chose, reverts what the whole suite finds they broke
(``impact.py``); a run ends here when a verdict or a limit says so."""

from __future__ import annotations

import time

import msgspec

from airfix.events.core.ledger import iteration_view
from airfix.events.core.machine import (
    CompleteIteration,
    RecordHealth,
    RecordIssues,
    RunState,
    decide,
)
from airfix.events.schema import Event
from airfix.services.pipeline import impact, stack
from airfix.services.pipeline.context import Pipeline, Step, landed_tip, tip
from airfix.services.pipeline.measure import Measurement


def _health(m: Measurement, scope: str = "full") -> RecordHealth:
    results = [
        msgspec.structs.replace(
            r, counts={**r.counts, "issues": sum(1 for i in m.issues if i.tool == r.tool)}
        )
        for r in m.results
    ]
    return RecordHealth(
        now=time.time(),
        tools=results,
        score=m.report.score,
        parts=m.report.parts,
        healthy=m.report.healthy,
        scope=scope,  # type: ignore[arg-type]
        test_outcomes=m.outcomes,
        flaky=m.flaky,
    )


def _check_events(p: Pipeline, state: RunState, m: Measurement) -> list[Event]:
    events = p.finish(state, decide(state, _health(m)), m.issues, p.events(state))
    after = p.advance(state, events)
    if not after.terminal:
        events += decide(after, RecordIssues(issues=m.issues))
    return events


def act_check(p: Pipeline, state: RunState) -> list[Event]:
    with p.tree(state, "check") as wt:
        m = p.measure_tree(state, wt, impact=impact.wanted(p, state))
    impact.save(p, state, state.iteration, tip(state), m)
    return _check_events(p, state, m)


def act_close(p: Pipeline, state: RunState) -> list[Event] | Step:
    """Close the iteration with a full check; the same measurement opens the next one.

    An iteration that planned nothing changed nothing: its opening check still stands, and the
    run ends there (nothing left is fixable by the chain)."""
    history = p.events(state)
    if not state.planned and not state.simulation:
        view = iteration_view(history, state.iteration)
        events = decide(
            state,
            CompleteIteration(
                now=time.time(),
                issues_remaining=len(view.issues),
                score=state.score,
                nothing_fixable=True,
            ),
        )
        return p.finish(state, events, view.issues, history)
    if state.stack:  # the tests judge the stack's tip; that measurement closes the iteration
        landing = stack.land(p, state, iteration_view(history, state.iteration), history)
        landed: list[Event] = []
        s = state
        for command in landing.commands:
            new = decide(s, command)
            s, landed = p.advance(s, new), landed + new
        p.publish(state, landing.tip)  # the landed commits, fetchable before the log names them
        repo, ref = p.branch_home(state), f"refs/heads/{state.branch}"
        return Step(
            landed + _closing(p, s, landing.measurement, history),
            after=lambda: repo.move_ref(ref, landing.tip, landed_tip(state)),
        )
    view = iteration_view(history, state.iteration)
    with p.tree(state, "check") as wt:
        m = p.measure_tree(state, wt, impact=impact.wanted(p, state), known=view.outcomes)
    reverted, m = impact.revert_misses(p, state, view, history, m)
    s = p.advance(state, reverted)
    if s.terminal:
        return reverted
    impact.save(p, state, state.iteration + 1, landed_tip(s), m)
    if not reverted:
        return _closing(p, state, m, history)
    p.publish(state, landed_tip(s))  # the revert commits (the worktree published them already)
    repo, ref = p.branch_home(state), f"refs/heads/{state.branch}"
    return Step(
        reverted + _closing(p, s, m, history),
        after=lambda: repo.move_ref(ref, landed_tip(s), landed_tip(state)),
    )


def _closing(p: Pipeline, state: RunState, m: Measurement, history: list[Event]) -> list[Event]:
    """IterationCompleted, the closing measurement as the next iteration's opening check, and the
    run's end when a verdict or a limit says so."""
    events = decide(
        state,
        CompleteIteration(now=time.time(), issues_remaining=len(m.issues), score=m.report.score),
    )
    closed, limit = events[:1], events[1:]  # IterationCompleted, then a limit's RunCompleted
    after = p.advance(state, closed)
    # the closing measurement is always recorded; a healthy or broken check outranks the limit
    health = decide(after, _health(m))
    after_health = p.advance(after, health)
    if after_health.terminal:
        return closed + p.finish(state, health, m.issues, history)
    if limit:
        return closed + health + p.finish(state, limit, m.issues, history)
    return closed + health + decide(after_health, RecordIssues(issues=m.issues))
