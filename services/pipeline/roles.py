"""The fix pipeline's roles as consumers of the log: manager, checker, planner, fixer, verifier.

Each role is an ordered handler (group ``role:<name>``).  For every event it folds the run's state
and acts only when the event is the run's newest (``store.version``) and ``next_action(state)``
(``events/core/steps.py``) is one of its actions.  What it does becomes events appended at the version
it read, so two workers racing on one run cannot both win (the loser gets a ConcurrencyError and
drops its result), and a redelivered event finds the run moved on and does nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from airfix.events.core.machine import (
    Fail,
    RunState,
    decide,
    evolve,
    fold,
)
from airfix.events.core.steps import ROLE_OF, ROLES, Action, Role
from airfix.events.errors import ConcurrencyError
from airfix.events.schema import (
    Event,
    stamp,
)
from airfix.events.storage.store import LogEntry
from airfix.services.pipeline.actions import ACTIONS
from airfix.services.pipeline.context import BranchMoved, Pipeline, Step
from airfix.services.pipeline.parked import PARKED
from airfix.services.runtime.app import App, register_group_handler
from airfix.services.runtime.cancel import RunWatcher
from airfix.services.runtime.cancel import scope as cancel_scope
from airfix.services.runtime.consumers import consumer_name
from airfix.services.runtime.logs import bind_event, get_logger

log = get_logger("airfix.roles")


class RoleHandler:
    """One role as a consumer-runtime handler (ordered: a run's steps never overtake each other)."""

    ordered = True
    start_id = "0"

    def __init__(self, pipeline: Pipeline, role: Role, *, only_run: str | None = None) -> None:
        self.pipeline = pipeline
        self.role = role
        self.only_run = only_run
        self.group = f"role:{role}"
        self.states: dict[str, RunState] = {}

    def on_partitions_changed(self) -> None:
        self.states.clear()

    def _state_after(self, event: Event) -> RunState:
        cached = self.states.get(event.run_id)
        if cached is not None and cached.version == event.version - 1:
            state = evolve(cached, event)
        elif cached is not None and cached.version == event.version:
            state = cached
        else:
            state = fold(self.pipeline.store.read_run(event.run_id, to_version=event.version))
        self.states[event.run_id] = state
        return state

    def handle(self, entries: Sequence[LogEntry]) -> None:
        for entry in entries:
            event = entry.event
            if event is None or (self.only_run is not None and event.run_id != self.only_run):
                continue
            state = self._state_after(event)
            if state.terminal:  # its trees kept for a next step here have no next step
                PARKED.release_run(state.run_id)
            action = _action(state)
            if ROLE_OF.get(action) != self.role:
                continue
            if self.pipeline.store.version(event.run_id) != event.version:
                continue  # the run moved on: this step was already taken
            with bind_event(
                event, stream=entry.stream, entry_id=entry.entry_id, role=self.role, action=action
            ):
                self._act(action, state, event)

    def _act(self, action: Action, state: RunState, cause: Event) -> None:
        started = time.monotonic()
        store = self.pipeline.store
        turn = threading.Event()  # set when the run moves on without us: our processes stop
        try:
            with (
                RunWatcher(store.client, store.keys.run_stream(state.run_id), state.version, turn),
                cancel_scope(turn),
            ):
                result = ACTIONS[action](self.pipeline, state)
        except BranchMoved as exc:  # nothing can be verified or committed safely any more
            result = decide(state, Fail(reason=str(exc)))
        if turn.is_set():
            log.info("the run moved on during this step; its result is dropped", action=action)
            return
        step = result if isinstance(result, Step) else Step(result)
        if not step.events:
            return
        stamped = stamp(
            step.events,
            run_id=state.run_id,
            expected_version=state.version,
            causation_id=cause.event_id,
        )
        try:
            self.pipeline.store.append(state.run_id, stamped, state.version)
        except ConcurrencyError as exc:
            log.warning("another worker took this step first; dropping our result", error=str(exc))
            return
        if step.after is not None:
            step.after()  # only now: the log says this step was ours
        log.info(
            "step done",
            events=[type(e).__name__ for e in step.events],
            duration_s=round(time.monotonic() - started, 3),
        )


def _action(state: RunState) -> Action:
    from airfix.events.core.steps import next_action

    return next_action(state)


def role_handlers(
    pipeline: Pipeline, roles: Sequence[Role], *, only_run: str | None = None
) -> list[RoleHandler]:
    return [RoleHandler(pipeline, r, only_run=only_run) for r in roles]


def role_handler_for(app: App, group: str) -> RoleHandler | None:
    """The handler of ``role:<name>`` (what retrying a role's dead letter hands its entry to)."""
    role = group.removeprefix("role:")
    if not group.startswith("role:") or role not in ROLES:
        return None
    return RoleHandler(Pipeline(app.store, app.config, worker=consumer_name()), role)


register_group_handler(role_handler_for)
