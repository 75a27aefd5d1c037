"""The operator-facing read models of the original guide: task queue, run history, phase summaries.

With the default prefix these work verbatim::

    redis-cli ZRANGE autonomous_fix:task_queue 0 -1 WITHSCORES
    redis-cli LRANGE autonomous_fix:run_history 0 9
    redis-cli GET autonomous_fix:summary:build
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis

from airfix.events.keys import Keys
from airfix.events.schema import (
    BatchPlanned,
    BatchSkipped,
    Committed,
    Event,
    FixFailed,
    FixRolledBack,
    FixStarted,
    IterationCompleted,
    RunCancelled,
    RunCompleted,
    RunFailed,
)
from airfix.projections.base import KeyRef, Op, Projection, RunCache, _s, dumps, position

TERMINAL = (RunCompleted, RunFailed, RunCancelled)


def _iso(event: Event) -> str:
    return event.recorded_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TaskQueue(Projection):
    """``task_queue``: pending batches scored by priority, each with its JSON record.

    A batch leaves the queue when a fixer starts it; its record goes when the batch ends (commit,
    rollback, failure), when its iteration ends, or when the run ends.
    """

    name = "task_queue"

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        super().__init__(client, keys)
        self.runs = RunCache(self._load)

    def view_key(self) -> str:
        return self.keys.task_queue

    def _run_set(self, run_id: str) -> str:
        return f"{{{self.keys.task_queue}}}:run:{run_id}"

    def _load(self, run_id: str) -> frozenset[str]:
        return frozenset(_s(m) for m in self.client.smembers(self._run_set(run_id)))

    def apply(self, event: Event, entry_id: str) -> list[Op]:
        q = self.keys.task_queue
        if isinstance(event, BatchPlanned):
            record = {
                "batch_id": event.batch_id,
                "run_id": event.run_id,
                "iteration": event.iteration,
                "phase": event.phase,
                "mode": event.mode,
                "priority": event.priority,
                "issue_ids": event.issue_ids,
                "files": event.files,
                "description": event.description,
                "planned_at": _iso(event),
            }
            self.runs.put(event.run_id, self.runs.get(event.run_id) | {event.batch_id})
            return [
                Op("ZADD", q, (event.priority, event.batch_id)),
                Op("SET", self.keys.task(event.batch_id), (dumps(record),)),
                Op("SADD", self._run_set(event.run_id), (event.batch_id,)),
            ]
        if isinstance(event, FixStarted):
            return [Op("ZREM", q, (event.batch_id,))]
        if isinstance(event, (Committed, FixRolledBack, FixFailed, BatchSkipped)):
            self.runs.put(event.run_id, self.runs.get(event.run_id) - {event.batch_id})
            return self._drop(event.run_id, [event.batch_id])
        if isinstance(event, (IterationCompleted, *TERMINAL)):
            batches = sorted(self.runs.get(event.run_id))
            self.runs.put(event.run_id, frozenset())
            return self._drop(event.run_id, batches) if batches else []
        return []

    def _drop(self, run_id: str, batch_ids: list[str]) -> list[Op]:
        ops = [
            Op("ZREM", self.keys.task_queue, tuple(batch_ids)),
            Op("SREM", self._run_set(run_id), tuple(batch_ids)),
        ]
        ops += [Op("DEL", self.keys.task(b)) for b in batch_ids]
        return ops

    def dump(self) -> Any:
        q = self.keys.task_queue
        items = [(_s(m), s) for m, s in self.client.zrange(q, 0, -1, withscores=True)]
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
        self.runs.clear()


class RunHistory(Projection):
    """``run_history``: finished runs, newest first (by log position), capped at ``length``."""

    name = "run_history"

    def __init__(self, client: redis.Redis, keys: Keys, length: int = 10) -> None:
        super().__init__(client, keys)
        self.length = length

    def view_key(self) -> str:
        return self.keys.run_history

    @property
    def order_key(self) -> str:
        return f"{{{self.keys.run_history}}}:order"

    def apply(self, event: Event, entry_id: str) -> list[Op]:
        if not isinstance(event, TERMINAL):
            return []
        record: dict[str, Any] = {
            "run_id": event.run_id,
            "timestamp": _iso(event),
            "event": type(event).__name__,
            "status": getattr(event, "status", "cancelled"),
            "reason": getattr(event, "reason", ""),
        }
        if isinstance(event, RunCompleted):
            record["metrics"] = {
                "issues_before": event.issues_before,
                "issues_after": event.issues_after,
                "commits": event.commits,
            }
        member = position(entry_id).encode() + b"|" + dumps(record)
        return [
            Op("ZADD", self.order_key, (0, member)),
            Op("ZREMRANGEBYRANK", self.order_key, (0, -(self.length + 1))),
            Op("REBUILD_LIST", self.keys.run_history, (KeyRef(self.order_key), self.length)),
        ]

    def dump(self) -> Any:
        return [msgspec.json.decode(x) for x in self.client.lrange(self.keys.run_history, 0, -1)]

    def clear(self) -> None:
        self.client.delete(self.keys.run_history, self.order_key, self.checkpoint_key)


class PhaseSummary(Projection):
    """``summary:<phase>``: the latest fix summary of one phase (one projection per phase)."""

    def __init__(self, client: redis.Redis, keys: Keys, phase: str) -> None:
        super().__init__(client, keys)
        self.phase = phase
        self.name = f"summary:{phase}"
        self.runs = RunCache(self._load)

    def view_key(self) -> str:
        return self.keys.summary(self.phase)

    @property
    def acc_key(self) -> str:
        return f"{{{self.view_key()}}}:acc"

    @property
    def pos_key(self) -> str:
        return f"{{{self.view_key()}}}:pos"

    def _load(self, run_id: str) -> dict[str, Any] | None:
        raw = self.client.hget(self.acc_key, run_id)
        return msgspec.json.decode(raw) if raw else None

    def apply(self, event: Event, entry_id: str) -> list[Op]:
        run = event.run_id
        if isinstance(event, BatchPlanned) and event.phase == self.phase:
            acc = dict(
                self.runs.get(run)
                or {
                    "iteration": event.iteration,
                    "batches": {},
                    "planned": 0,
                    "fixed": 0,
                    "committed": 0,
                    "failed": 0,
                }
            )
            if acc["iteration"] != event.iteration:
                acc = {
                    "iteration": event.iteration,
                    "batches": {},
                    "planned": 0,
                    "fixed": 0,
                    "committed": 0,
                    "failed": 0,
                }
            acc["batches"] = {**acc["batches"], event.batch_id: len(event.issue_ids)}
            acc["planned"] += len(event.issue_ids)
            return self._store(run, acc)
        if isinstance(event, (Committed, FixRolledBack, FixFailed)):
            acc = self.runs.get(run)
            if not acc or event.batch_id not in acc["batches"]:
                return []
            acc = dict(acc)
            if isinstance(event, Committed):
                acc["fixed"] += acc["batches"][event.batch_id]
                acc["committed"] += 1
            else:
                acc["failed"] += 1
            summary = {
                "run_id": run,
                "phase": self.phase,
                "iteration": acc["iteration"],
                "fixed_count": acc["fixed"],
                "total_count": acc["planned"],
                "batches_committed": acc["committed"],
                "batches_failed": acc["failed"],
                "success_rate": round(acc["fixed"] / acc["planned"], 4) if acc["planned"] else 0.0,
                "timestamp": _iso(event),
            }
            return self._store(run, acc) + [
                Op(
                    "SETNEWER",
                    self.view_key(),
                    (KeyRef(self.pos_key), position(entry_id), dumps(summary)),
                ),
            ]
        if isinstance(event, TERMINAL) and self.runs.get(run) is not None:
            self.runs.put(run, None)
            return [Op("HDEL", self.acc_key, (run,))]
        return []

    def _store(self, run: str, acc: dict[str, Any]) -> list[Op]:
        self.runs.put(run, acc)
        return [Op("HSET", self.acc_key, (run, dumps(acc)))]

    def dump(self) -> Any:
        raw = self.client.get(self.view_key())
        acc = {_s(k): msgspec.json.decode(v) for k, v in self.client.hgetall(self.acc_key).items()}
        return {"summary": msgspec.json.decode(raw) if raw else None, "acc": acc}

    def clear(self) -> None:
        self.client.delete(self.view_key(), self.acc_key, self.pos_key, self.checkpoint_key)
        self.runs.clear()
