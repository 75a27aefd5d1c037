"""The folds of the operator-facing read models: task queue, run history, phase summaries, and\nthe runs of each target."""

from __future__ import annotations

from typing import Any

import msgspec

from airfix.events.keys import Keys
from airfix.events.schema import (
    BatchPlanned,
    BatchSkipped,
    Committed,
    Event,
    FixFailed,
    FixRolledBack,
    FixStarted,
    HealthChecked,
    IterationCompleted,
    Landed,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunRequested,
    StackLanded,
)
from airfix.projections.core.fold import Fold
from airfix.projections.core.ops import (
    Delete,
    HashField,
    HDel,
    HSet,
    Op,
    RebuildList,
    SAdd,
    SetMembers,
    SetNewer,
    SetValue,
    SRem,
    ZAdd,
    ZRem,
    ZRemRangeByRank,
    dumps,
    position,
)

TERMINAL = (RunCompleted, RunFailed, RunCancelled)

#: a task queue run's state: the batches it has records for
Batches = frozenset[str]
#: a phase summary run's state: the current iteration's counts (None before its first batch)
Accumulator = dict[str, Any] | None


def iso(event: Event) -> str:
    return event.recorded_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TaskQueueFold(Fold[Batches]):
    """``task_queue``: pending batches scored by priority, each with its JSON record.

    A batch leaves the queue when a fixer starts it; its record goes when the batch ends (commit,
    rollback, failure), when its iteration ends, or when the run ends.
    """

    name = "task_queue"

    def view_key(self) -> str:
        return self.keys.task_queue

    def run_set(self, run_id: str) -> str:
        return f"{{{self.keys.task_queue}}}:run:{run_id}"

    def state_at(self, run_id: str) -> SetMembers:
        return SetMembers(self.run_set(run_id))

    def decode(self, run_id: str, raw: Any) -> Batches:
        return frozenset(m.decode() if isinstance(m, bytes) else m for m in raw)

    def apply(self, state: Batches, event: Event, entry_id: str) -> tuple[Batches, list[Op]]:
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
                "planned_at": iso(event),
            }
            return state | {event.batch_id}, [
                ZAdd(q, event.priority, event.batch_id),
                SetValue(self.keys.task(event.batch_id), dumps(record)),
                SAdd(self.run_set(event.run_id), event.batch_id),
            ]
        if isinstance(event, FixStarted):
            return state, [ZRem(q, (event.batch_id,))]
        if isinstance(event, (Committed, FixRolledBack, FixFailed, BatchSkipped)):
            return state - {event.batch_id}, self._drop(event.run_id, [event.batch_id])
        if isinstance(event, (IterationCompleted, *TERMINAL)):
            batches = sorted(state)
            return frozenset(), self._drop(event.run_id, batches) if batches else []
        return state, []

    def _drop(self, run_id: str, batch_ids: list[str]) -> list[Op]:
        ops: list[Op] = [
            ZRem(self.keys.task_queue, tuple(batch_ids)),
            SRem(self.run_set(run_id), tuple(batch_ids)),
        ]
        ops += [Delete(self.keys.task(b)) for b in batch_ids]
        return ops


class RunHistoryFold(Fold[None]):
    """``run_history``: finished runs, newest first (by log position), capped at ``length``."""

    name = "run_history"

    def __init__(self, keys: Keys, length: int = 10) -> None:
        super().__init__(keys)
        self.length = length

    def view_key(self) -> str:
        return self.keys.run_history

    @property
    def order_key(self) -> str:
        return f"{{{self.keys.run_history}}}:order"

    def decode(self, run_id: str, raw: Any) -> None:
        return None

    def apply(self, state: None, event: Event, entry_id: str) -> tuple[None, list[Op]]:
        if not isinstance(event, TERMINAL):
            return None, []
        record: dict[str, Any] = {
            "run_id": event.run_id,
            "timestamp": iso(event),
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
        return None, [
            ZAdd(self.order_key, 0, member),
            ZRemRangeByRank(self.order_key, 0, -(self.length + 1)),
            RebuildList(self.keys.run_history, self.order_key, self.length),
        ]


def fresh_accumulator(iteration: int) -> dict[str, Any]:
    return {"iteration": iteration, "batches": {}, "planned": 0, "fixed": 0, "committed": 0,
            "failed": 0}  # fmt: skip


class PhaseSummaryFold(Fold[Accumulator]):
    """``summary:<phase>``: the latest fix summary of one phase (one projection per phase)."""

    def __init__(self, keys: Keys, phase: str) -> None:
        super().__init__(keys)
        self.phase = phase
        self.name = f"summary:{phase}"

    def view_key(self) -> str:
        return self.keys.summary(self.phase)

    @property
    def acc_key(self) -> str:
        return f"{{{self.view_key()}}}:acc"

    @property
    def pos_key(self) -> str:
        return f"{{{self.view_key()}}}:pos"

    def state_at(self, run_id: str) -> HashField:
        return HashField(self.acc_key, run_id)

    def decode(self, run_id: str, raw: Any) -> Accumulator:
        return msgspec.json.decode(raw) if raw else None

    def apply(
        self, state: Accumulator, event: Event, entry_id: str
    ) -> tuple[Accumulator, list[Op]]:
        run = event.run_id
        if isinstance(event, BatchPlanned) and event.phase == self.phase:
            acc = dict(state or fresh_accumulator(event.iteration))
            if acc["iteration"] != event.iteration:
                acc = fresh_accumulator(event.iteration)
            acc["batches"] = {**acc["batches"], event.batch_id: len(event.issue_ids)}
            acc["planned"] += len(event.issue_ids)
            return acc, [HSet(self.acc_key, run, dumps(acc))]
        if isinstance(event, (Committed, FixRolledBack, FixFailed)):
            if not state or event.batch_id not in state["batches"]:
                return state, []
            acc = dict(state)
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
                "timestamp": iso(event),
            }
            return acc, [
                HSet(self.acc_key, run, dumps(acc)),
                SetNewer(self.view_key(), self.pos_key, position(entry_id), dumps(summary)),
            ]
        if isinstance(event, TERMINAL) and state is not None:
            return None, [HDel(self.acc_key, run)]
        return state, []


class TargetRunsFold(Fold[Accumulator]):
    """``target_runs``: each run's record (``HGET {target_runs}:run <run_id>``) and, per target,
    its runs by request time (``ZREVRANGE {target_runs}:target:<path>``), so ``airfix runs
    --target`` reads one target's history without replaying its runs.

    A record: started (epoch s), status, the first and the last full check's score, commits,
    the issues of the committed batches (fixed), issues before and after, and the duration."""

    name = "target_runs"

    def view_key(self) -> str:
        return f"{self.keys.prefix}:target_runs"

    @property
    def record_key(self) -> str:
        return f"{{{self.view_key()}}}:run"

    def target_key(self, target: str) -> str:
        return f"{{{self.view_key()}}}:target:{target}"  # a key may hold any byte

    def state_at(self, run_id: str) -> HashField:
        return HashField(self.record_key, run_id)

    def decode(self, run_id: str, raw: Any) -> Accumulator:
        return msgspec.json.decode(raw) if raw else None

    def apply(
        self, state: Accumulator, event: Event, entry_id: str
    ) -> tuple[Accumulator, list[Op]]:
        at = event.recorded_at.timestamp()
        if isinstance(event, RunRequested):
            rec: dict[str, Any] = {
                "run_id": event.run_id, "target": event.target, "started": at, "status": "",
                "state": "running", "score_before": None, "score_after": None, "commits": 0,
                "fixed": 0, "issues_before": None, "issues_after": None, "duration_s": 0.0,
                "batches": {},
            }  # fmt: skip
            return rec, [
                HSet(self.record_key, event.run_id, dumps(rec)),
                ZAdd(self.target_key(event.target), at, event.run_id),
            ]
        if state is None:
            return state, []  # a run requested before this view existed: nothing to index by
        rec = dict(state)
        if isinstance(event, HealthChecked) and event.scope == "full":
            if rec["score_before"] is None:
                rec["score_before"] = event.score
            rec["score_after"] = event.score
        elif isinstance(event, BatchPlanned):
            rec["batches"] = {**rec["batches"], event.batch_id: len(event.issue_ids)}
        elif isinstance(event, (Committed, StackLanded)):
            landed: list[Committed | Landed] = (
                [event] if isinstance(event, Committed) and not event.staged else []
            )
            landed += event.commits if isinstance(event, StackLanded) else []
            if not landed:
                return state, []
            rec["commits"] += len(landed)
            rec["fixed"] += sum(rec["batches"].get(c.batch_id, 0) for c in landed)
        elif isinstance(event, TERMINAL):
            rec["state"] = "completed"
            rec["status"] = getattr(event, "status", "cancelled")
            rec["duration_s"] = round(at - rec["started"], 3)
            if isinstance(event, RunCompleted):
                rec["issues_before"], rec["issues_after"] = event.issues_before, event.issues_after
        else:
            return state, []
        return rec, [HSet(self.record_key, event.run_id, dumps(rec))]
