"""Per-run status: the run's :class:`~airfix.events.core.machine.RunState`, folded by ``evolve``.

``HGET autonomous_fix:status <run_id>`` is the JSON of the state after the run's last event, so
the status a user sees is, by construction, what a replay of the run's events gives.  An event the
machine rejects fails this projection's handler; after the delivery cap the run is halted (see
``services/runtime/consumers.py``) and :func:`load_status` reports the halt next to the last good state.
The fold is :class:`~airfix.projections.core.status.RunStatusFold`; the queries are in
:mod:`airfix.projections.queries`.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec
import redis

from airfix.events.keys import Keys
from airfix.projections.base import Projection, _s
from airfix.projections.core.status import RunStatusFold
from airfix.projections.queries import load_status, newest_runs

__all__ = ["RunStatus", "load_status", "newest_runs"]


class RunStatus(Projection):
    fold: RunStatusFold

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        super().__init__(client, keys)
        self.fold = RunStatusFold(keys)

    def dump(self) -> Any:
        states = {
            _s(k): msgspec.json.decode(v) for k, v in self.client.hgetall(self.keys.status).items()
        }
        rows = cast(
            "list[tuple[bytes, float]]", self.client.zrange(self.keys.runs, 0, -1, withscores=True)
        )
        runs = [(_s(m), s) for m, s in rows]
        return {"states": states, "runs": runs}

    def clear(self) -> None:
        self.client.delete(self.keys.status, self.keys.runs, self.checkpoint_key)
