"""The operator-facing read models of the original guide: task queue, run history, phase summaries.

With the default prefix these work verbatim::

    redis-cli ZRANGE autonomous_fix:task_queue 0 -1 WITHSCORES
    redis-cli LRANGE autonomous_fix:run_history 0 9
    redis-cli GET autonomous_fix:summary:build

The folds are in :mod:`airfix.projections.core.views`; here they are bound to a client.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec
import redis

from airfix.events.keys import Keys
from airfix.projections.base import Projection, _s
from airfix.projections.core.views import (
    PhaseSummaryFold,
    RunHistoryFold,
    TargetRunsFold,
    TaskQueueFold,
)


class TaskQueue(Projection):
    """``task_queue``: pending batches scored by priority, each with its JSON record."""

    fold: TaskQueueFold

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        super().__init__(client, keys)
        self.fold = TaskQueueFold(keys)

    def dump(self) -> Any:
        q = self.keys.task_queue
        rows = cast("list[tuple[bytes, float]]", self.client.zrange(q, 0, -1, withscores=True))
        items = [(_s(m), s) for m, s in rows]
        records = {}
        for key in self.client.scan_iter(match=f"{{{q}}}:task:*", count=1000):
            records[_s(key).rsplit(":task:", 1)[1]] = msgspec.json.decode(
                self.client.get(key) or b"null"
            )
        runs = {}
        for key in self.client.scan_iter(match=f"{{{q}}}:run:*", count=1000):
            runs[_s(key).rsplit(":run:", 1)[1]] = sorted(_s(m) for m in self.client.smembers(key))
        return {"queue": items, "records": records, "runs": {k: v for k, v in runs.items() if v}}

    def clear(self) -> None:
        q = self.keys.task_queue
        doomed = [q, self.checkpoint_key, *self.client.scan_iter(match=f"{{{q}}}:*", count=1000)]
        self.client.delete(*doomed)


class RunHistory(Projection):
    """``run_history``: finished runs, newest first (by log position), capped at ``length``."""

    fold: RunHistoryFold

    def __init__(self, client: redis.Redis, keys: Keys, length: int = 10) -> None:
        super().__init__(client, keys)
        self.fold = RunHistoryFold(keys, length)

    @property
    def length(self) -> int:
        return self.fold.length

    def dump(self) -> Any:
        return [msgspec.json.decode(x) for x in self.client.lrange(self.keys.run_history, 0, -1)]

    def clear(self) -> None:
        self.client.delete(self.keys.run_history, self.fold.order_key, self.checkpoint_key)


class PhaseSummary(Projection):
    """``summary:<phase>``: the latest fix summary of one phase (one projection per phase)."""

    fold: PhaseSummaryFold

    def __init__(self, client: redis.Redis, keys: Keys, phase: str) -> None:
        super().__init__(client, keys)
        self.fold = PhaseSummaryFold(keys, phase)

    @property
    def phase(self) -> str:
        return self.fold.phase

    def dump(self) -> Any:
        raw = self.client.get(self.view_key())
        acc = {
            _s(k): msgspec.json.decode(v) for k, v in self.client.hgetall(self.fold.acc_key).items()
        }
        return {"summary": msgspec.json.decode(raw) if raw else None, "acc": acc}

    def clear(self) -> None:
        f = self.fold
        self.client.delete(self.view_key(), f.acc_key, f.pos_key, self.checkpoint_key)


class TargetRuns(Projection):
    """``target_runs``: every run's record, and per target its runs by request time."""

    fold: TargetRunsFold

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        super().__init__(client, keys)
        self.fold = TargetRunsFold(keys)

    def dump(self) -> Any:
        records = {
            _s(k): msgspec.json.decode(v)
            for k, v in self.client.hgetall(self.fold.record_key).items()
        }
        targets = {}
        for key in self.client.scan_iter(match=f"{{{self.view_key()}}}:target:*", count=1000):
            target = _s(key).split(":target:", 1)[1]
            targets[target] = [_s(m) for m in self.client.zrange(key, 0, -1)]
        return {"records": records, "targets": targets}

    def clear(self) -> None:
        doomed = [
            self.fold.record_key,
            self.checkpoint_key,
            *self.client.scan_iter(match=f"{{{self.view_key()}}}:target:*", count=1000),
        ]
        self.client.delete(*doomed)
