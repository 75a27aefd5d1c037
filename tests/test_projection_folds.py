"""The projections' folds on their own, with no Redis at all.

A small in-memory model of the Redis commands the ops describe stands in for the server, so the
properties a handler relies on can be checked on many logs: folding a log in one go gives the same
view as folding it in batches, whether the state between batches is held in memory or read back
from what the ops wrote (a fresh handler, a rebuild, a crash); the state a fold holds is the
state its own writes store.
"""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from airfix.events.codec import decode_data
from airfix.events.core.machine import fold
from airfix.events.keys import Keys
from airfix.events.schema import Event
from airfix.projections.base import script_args
from airfix.projections.core.fold import Fold, fold_entries
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
    StateRead,
    ZAdd,
    ZRem,
    ZRemRangeByRank,
)
from airfix.projections.core.status import RunStatusFold
from airfix.projections.core.views import (
    PhaseSummaryFold,
    RunHistoryFold,
    TargetRunsFold,
    TaskQueueFold,
)
from tests.scenario import run_events
from tests.test_projection_keys import LOG

KEYS = Keys(partitions=4)


def b(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


class Model:
    """Redis as the ops and reads see it: strings, hashes, sets and sorted sets by key (a
    container left empty disappears, as in Redis)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def _get(self, key: str, kind: type) -> Any:
        return self.data.setdefault(key, kind())

    def _ranked(self, key: str) -> list[bytes]:
        zset = self.data.get(key, {})
        return sorted(zset, key=lambda m: (zset[m], m))

    def write(self, op: Op) -> None:
        match op:
            case SetValue(key=k, value=v):
                self.data[k] = b(v)
            case Delete(key=k):
                self.data.pop(k, None)
            case ZAdd(key=k, score=s, member=m):
                self._get(k, dict)[b(m)] = float(s)
            case ZRem(key=k, members=ms):
                for m in ms:
                    self._get(k, dict).pop(b(m), None)
            case ZRemRangeByRank(key=k, start=start, stop=stop):
                ranked = self._ranked(k)
                stop = len(ranked) + stop if stop < 0 else stop
                for m in ranked[start : stop + 1] if stop >= 0 else []:
                    del self.data[k][m]
            case HSet(key=k, field=f, value=v):
                self._get(k, dict)[f] = b(v)
            case HDel(key=k, field=f):
                self._get(k, dict).pop(f, None)
            case SAdd(key=k, member=m):
                self._get(k, set).add(b(m))
            case SRem(key=k, members=ms):
                self._get(k, set).difference_update(b(m) for m in ms)
            case RebuildList(key=k, source=src, length=n):
                newest = list(reversed(self._ranked(src)))[:n]
                self.data[k] = [m.split(b"|", 1)[1] for m in newest]
            case SetNewer(key=k, position_key=pk, position=pos, value=v):
                if b(pos) > self.data.get(pk, b""):
                    self.data[pk], self.data[k] = b(pos), b(v)
            case _:
                raise AssertionError(f"no model of {op!r}")
        self.data = {k: v for k, v in self.data.items() if v or isinstance(v, bytes)}

    def read(self, where: StateRead | None) -> Any:
        if isinstance(where, HashField):
            return self.data.get(where.key, {}).get(where.field)
        if isinstance(where, SetMembers):
            return set(self.data.get(where.key, set()))
        return None

    def states(self, f: Fold[Any], run_ids: set[str]) -> dict[str, Any]:
        """What a handler with cold caches loads: each run's state read back from the view."""
        return {r: f.decode(r, self.read(f.state_at(r))) for r in run_ids}


def folds() -> list[Fold[Any]]:
    return [
        RunStatusFold(KEYS),
        TaskQueueFold(KEYS),
        RunHistoryFold(KEYS, length=2),
        *(PhaseSummaryFold(KEYS, p) for p in ("build", "test", "lint")),
        TargetRunsFold(KEYS),
    ]


def _runs() -> list[list[Event]]:
    logged = [decode_data(line) for line in LOG.read_bytes().splitlines() if line.strip()]
    by_run: dict[str, list[Event]] = {}
    for ev in logged:
        by_run.setdefault(ev.run_id, []).append(ev)
    return [*by_run.values(), run_events("r-a"), run_events("r-b", finish=False)]


RUNS = _runs()


@st.composite
def logs(draw: st.DrawFn) -> list[tuple[str, Event]]:
    """Some of the runs, each cut at some point, interleaved keeping each run's order."""
    chosen = draw(st.lists(st.sampled_from(range(len(RUNS))), min_size=1, max_size=5, unique=True))
    runs = [RUNS[i][: draw(st.integers(1, len(RUNS[i])))] for i in chosen]
    pending = list(itertools.chain.from_iterable([i] * len(r) for i, r in enumerate(runs)))
    order = draw(st.permutations(pending))
    taken = [0] * len(runs)
    out = []
    for n, i in enumerate(order):
        out.append((f"{1_000 + n}-{n % 2}", runs[i][taken[i]]))
        taken[i] += 1
    return out


def project(
    f: Fold[Any], model: Model, states: dict[str, Any], log: list[tuple[str, Event]]
) -> dict[str, Any]:
    """One batch, as the handler does it: the states of the batch's runs, the fold, the writes."""
    missing = {ev.run_id for _, ev in log} - set(states)
    states, ops = fold_entries(f, {**states, **model.states(f, missing)}, log)
    for entry_ops in ops:
        for op in entry_ops:
            model.write(op)
    return states


@settings(max_examples=60, deadline=None)
@given(log=logs(), data=st.data())
def test_batches_and_reloads_give_the_view_of_one_go(
    log: list[tuple[str, Event]], data: Any
) -> None:
    """Folding in batches, with the state held or read back from the view between them, writes
    exactly what folding the whole log in one go writes; and what the fold holds at the end is
    what its writes stored."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(log)), max_size=4)))
    for f in folds():
        whole = Model()
        held = project(f, whole, {}, log)
        batched = Model()
        states: dict[str, Any] = {}
        for lo, hi in itertools.pairwise([0, *cuts, len(log)]):
            if data.draw(st.booleans(), label=f"{f.name}: reload after {lo}"):
                states = {}  # a fresh handler: every state is read back from the view
            states = project(f, batched, states, log[lo:hi])
        assert whole.data == batched.data, f.name
        assert held == whole.states(f, set(held)), f.name


@settings(max_examples=30, deadline=None)
@given(log=logs())
def test_the_status_state_is_the_machine_fold(log: list[tuple[str, Event]]) -> None:
    f = RunStatusFold(KEYS)
    model = Model()
    held = project(f, model, {}, log)
    by_run: dict[str, list[Event]] = {}
    for _, ev in log:
        by_run.setdefault(ev.run_id, []).append(ev)
    for run_id, events in by_run.items():
        expected = msgspec.json.encode(fold(events))
        assert expected == msgspec.json.encode(held[run_id]) == model.data[KEYS.status][run_id]


def test_a_task_leaves_the_queue_when_started_and_its_record_when_it_ends() -> None:
    events = run_events("r1")
    f = TaskQueueFold(KEYS)
    model = Model()
    planned = next(i for i, e in enumerate(events) if type(e).__name__ == "BatchPlanned")
    project(f, model, {}, [(f"{n + 1}-0", e) for n, e in enumerate(events[: planned + 3])])
    assert {b"r1/b1": 1.0, b"r1/b2": 3.0, b"r1/b3": 5.0} == model.data[KEYS.task_queue]
    record = msgspec.json.decode(model.data[KEYS.task("r1/b2")])
    assert ("r1", "lint", 3) == (record["run_id"], record["phase"], record["priority"])
    state, ops = f.apply(frozenset({"r1/b2"}), events[planned + 3], "99-0")  # FixStarted b2
    assert (frozenset({"r1/b2"}), [ZRem(KEYS.task_queue, ("r1/b2",))]) == (state, ops)
    done = project(f, model, {}, [(f"{n + 100}-0", e) for n, e in enumerate(events)])
    assert frozenset() == done["r1"]
    assert {} == {k: v for k, v in model.data.items() if "task" in k}


def test_history_keeps_the_newest_finished_runs() -> None:
    f = RunHistoryFold(KEYS, length=3)
    model = Model()
    log = [
        (f"{n + 1}-0", e) for n, e in enumerate(e for i in range(5) for e in run_events(f"h{i}"))
    ]
    project(f, model, {}, log)
    newest = [msgspec.json.decode(x)["run_id"] for x in model.data[KEYS.run_history]]
    assert ["h4", "h3", "h2"] == newest
    assert 3 == len(model.data[f"{{{KEYS.run_history}}}:order"])


def test_ops_go_to_the_script_as_names_key_indexes_and_arguments() -> None:
    """apply.lua's wire form: keys by index (KEYS[1] is the fence), key arguments by index too."""
    ops = [
        [HSet("v", "r1", b"{}"), RebuildList("list", "order", 3)],
        [SetNewer("v", "pos", "000-1", b"x"), ZRem("q", ("a", "b"))],
    ]
    keys, args = script_args("ckpt", "ckpt-key", "log0", ["1-0", "2-0"], ops)
    assert ["ckpt-key", "v", "list", "order", "pos", "q"] == keys
    assert [
        "ckpt", "log0", 2,
        "1-0", 2, "HSET", 2, 2, "r1", b"{}", "REBUILD_LIST", 3, 2, 4, 3,
        "2-0", 2, "SETNEWER", 2, 3, 5, "000-1", b"x", "ZREM", 6, 2, "a", "b",
    ] == args  # fmt: skip
