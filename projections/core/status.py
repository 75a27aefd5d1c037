"""The per-run status fold: the run's :class:`~airfix.events.core.machine.RunState` by ``evolve``."""

from __future__ import annotations

from typing import Any

import msgspec

from airfix.events.core.machine import RunState, evolve
from airfix.events.schema import Event, RunRequested
from airfix.projections.core.fold import Fold
from airfix.projections.core.ops import HashField, HSet, Op, ZAdd, dumps

_DECODE = msgspec.json.Decoder(RunState)


class RunStatusFold(Fold[RunState]):
    """``HGET status <run_id>`` is the JSON of the run's state after its last event; ``runs``
    orders the run ids by request time."""

    name = "status"

    def view_key(self) -> str:
        return self.keys.status

    def state_at(self, run_id: str) -> HashField:
        return HashField(self.keys.status, run_id)

    def decode(self, run_id: str, raw: Any) -> RunState:
        return _DECODE.decode(raw) if raw else RunState.initial(run_id)

    def apply(self, state: RunState, event: Event, entry_id: str) -> tuple[RunState, list[Op]]:
        if event.version <= state.version:
            return state, []  # already folded (the checkpoint normally filters this out first)
        state = evolve(state, event)
        ops: list[Op] = [HSet(self.keys.status, event.run_id, dumps(state))]
        if isinstance(event, RunRequested):
            ops.append(ZAdd(self.keys.runs, state.requested_at, event.run_id))
        return state, ops
