"""Per-run status: the run's :class:`~airfix.events.core.machine.RunState`, folded by ``evolve``.

``HGET autonomous_fix:status <run_id>`` is the JSON of the state after the run's last event, so
the status a user sees is, by construction, what a replay of the run's events gives.  An event the
machine rejects fails this projection's handler; after the delivery cap the run is halted (see
``services/runtime/consumers.py``) and :func:`load_status` reports the halt next to the last good state.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis

from airfix.events.core.machine import RunState, evolve
from airfix.events.keys import Keys
from airfix.events.schema import Event, RunRequested
from airfix.projections.base import Op, Projection, RunCache, _s, dumps

_DECODE = msgspec.json.Decoder(RunState)


class RunStatus(Projection):
    name = "status"

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        super().__init__(client, keys)
        self.runs = RunCache(self._load)

    def view_key(self) -> str:
        return self.keys.status

    def _load(self, run_id: str) -> RunState:
        raw = self.client.hget(self.keys.status, run_id)
        return _DECODE.decode(raw) if raw else RunState.initial(run_id)

    def apply(self, event: Event, entry_id: str) -> list[Op]:
        state: RunState = self.runs.get(event.run_id)
        if event.version <= state.version:
            return []  # already folded (the checkpoint normally filters this out first)
        state = evolve(state, event)
        self.runs.put(event.run_id, state)
        ops = [Op("HSET", self.keys.status, (event.run_id, dumps(state)))]
        if isinstance(event, RunRequested):
            ops.append(Op("ZADD", self.keys.runs, (state.requested_at, event.run_id)))
        return ops

    def dump(self) -> Any:
        states = {
            _s(k): msgspec.json.decode(v) for k, v in self.client.hgetall(self.keys.status).items()
        }
        runs = [(_s(m), s) for m, s in self.client.zrange(self.keys.runs, 0, -1, withscores=True)]
        return {"states": states, "runs": runs}

    def clear(self) -> None:
        self.client.delete(self.keys.status, self.keys.runs, self.checkpoint_key)
        self.runs.clear()


def newest_runs(client: redis.Redis, keys: Keys, limit: int = 1) -> list[str]:
    """Run ids, newest request first (``airfix runs``, ``status``, ``tail latest``)."""
    return [
        x.decode() if isinstance(x, bytes) else x for x in client.zrevrange(keys.runs, 0, limit - 1)
    ]


def load_status(client: redis.Redis, keys: Keys, run_id: str) -> dict[str, Any] | None:
    """The run's status as plain data, with ``halted`` naming every consumer group stuck on it."""
    raw = client.hget(keys.status, run_id)
    if raw is None:
        return None
    status: dict[str, Any] = msgspec.json.decode(raw)
    halted = {}
    for key in client.scan_iter(match=f"{keys.prefix}:halted:*", count=1000):
        info = client.hget(key, run_id)
        if info is not None:
            halted[_s(key).split(":halted:", 1)[1]] = msgspec.json.decode(info)
    status["halted"] = halted
    return status
