"""Read models: the operator's redis-cli views, exactly-once application, rebuild equality."""

from __future__ import annotations

import json

import pytest
import redis

from airfix.events import Keys
from airfix.events.storage.store import EventStore
from airfix.projections.base import ProjectionHandler, rebuild, wait_for
from airfix.projections.status import RunStatus, load_status
from airfix.projections.views import PhaseSummary, RunHistory, TaskQueue
from airfix.services.runtime.worker import drain
from tests.scenario import append_run


def views(client: redis.Redis, keys: Keys) -> list:
    return [
        RunStatus(client, keys),
        TaskQueue(client, keys),
        RunHistory(client, keys, length=3),
        *(PhaseSummary(client, keys, p) for p in ("build", "test", "lint")),
    ]


@pytest.fixture
def store(client: redis.Redis) -> EventStore:
    return EventStore(client, Keys(partitions=4))


def test_operator_commands_show_the_views(store: EventStore, client: redis.Redis) -> None:
    """The guide's redis-cli commands work verbatim with the default prefix."""
    append_run(store, "done-1")
    append_run(store, "open-1", finish=False)
    drain(store, [ProjectionHandler(v) for v in views(client, store.keys)])
    queue = client.zrange("autonomous_fix:task_queue", 0, -1, withscores=True)
    assert [(b"open-1/b3", 5.0)] == queue  # b2 committed, b1 failed: only b3 still pending
    record = json.loads(client.get(store.keys.task("open-1/b3")))
    assert ("lint", ["open-1-i3", "open-1-i4"]) == (record["phase"], record["issue_ids"])
    history = [json.loads(x) for x in client.lrange("autonomous_fix:run_history", 0, 9)]
    assert [("done-1", "partially_fixed")] == [(h["run_id"], h["status"]) for h in history]
    lint = json.loads(client.get("autonomous_fix:summary:lint"))
    assert (2, 4, 1) == (lint["fixed_count"], lint["total_count"], lint["batches_committed"])
    build = json.loads(client.get("autonomous_fix:summary:build"))
    assert (0, 1, 1) == (build["fixed_count"], build["total_count"], build["batches_failed"])
    assert client.get("autonomous_fix:summary:test") is None


def test_history_is_newest_first_and_capped(store: EventStore, client: redis.Redis) -> None:
    for n in range(5):
        append_run(store, f"run-{n}")
    drain(store, [ProjectionHandler(RunHistory(client, store.keys, length=3))])
    history = [json.loads(x)["run_id"] for x in client.lrange(store.keys.run_history, 0, -1)]
    assert ["run-4", "run-3", "run-2"] == history


def test_redelivery_is_a_no_op(store: EventStore, client: redis.Redis) -> None:
    """Applying the same entries twice changes nothing: the checkpoint fences them."""
    append_run(store, "r1")
    for view in views(client, store.keys):
        handler = ProjectionHandler(view)
        for p in range(store.keys.partitions):
            entries = store.read_log(p)
            first = handler.apply_entries(store.keys.log(p), entries)
            before = view.dump()
            assert 0 == handler.apply_entries(store.keys.log(p), entries)
            handler.on_partitions_changed()  # cold caches: the checkpoint alone fences
            assert 0 == handler.apply_entries(
                store.keys.log(p), entries[: max(1, len(entries) // 2)]
            )
            assert before == view.dump()
            assert first in (0, len(entries))


def test_checkpoints_never_go_backwards(store: EventStore, client: redis.Redis) -> None:
    append_run(store, "r1")
    view = TaskQueue(client, store.keys)
    handler = ProjectionHandler(view)
    p = __import__("airfix.events.keys", fromlist=["partition_of"]).partition_of("r1", 4)
    entries = store.read_log(p)
    handler.apply_entries(store.keys.log(p), entries)
    top = view.checkpoints()[store.keys.log(p)]
    handler.apply_entries(store.keys.log(p), entries[:2])
    assert top == view.checkpoints()[store.keys.log(p)]


def test_rebuild_equals_live(store: EventStore, client: redis.Redis) -> None:
    """Rebuilding any projection from the log into a scratch namespace gives the live view."""
    for n in range(6):
        append_run(store, f"run-{n}", finish=n % 2 == 0)
    live = views(client, store.keys)
    drain(store, [ProjectionHandler(v) for v in live])
    scratch = Keys(prefix="scratch:autonomous_fix", partitions=4)
    for live_view, scratch_view in zip(live, views(client, scratch), strict=True):
        rebuild(store, scratch_view)
        assert live_view.dump() == scratch_view.dump(), live_view.name


def test_wait_for_read_your_writes(store: EventStore, client: redis.Redis) -> None:
    events = append_run(store, "r1", finish=False)
    view = TaskQueue(client, store.keys)
    pos = store.append(
        "r1",
        [
            __import__("msgspec").structs.replace(
                events[-1], event_id="X" * 26, version=len(events) + 1
            )
        ],
        len(events),
    ).positions[-1]
    assert not wait_for(view, store.keys.log_of("r1"), pos.log_entry, timeout_s=0.05)
    drain(store, [ProjectionHandler(view)])
    assert wait_for(view, store.keys.log_of("r1"), pos.log_entry, timeout_s=1)


def test_status_is_the_folded_run_state(store: EventStore, client: redis.Redis) -> None:
    """The status view equals fold() of the run's events: replay and live agree."""
    from airfix.events.core.machine import fold

    done = append_run(store, "done-1")
    append_run(store, "open-1", finish=False)
    drain(store, [ProjectionHandler(RunStatus(client, store.keys))])
    status = load_status(client, store.keys, "done-1")
    expected = json.loads(__import__("msgspec").json.encode(fold(done)))
    assert {**expected, "halted": {}} == status
    assert ("completed", "partially_fixed", 1) == (
        status["state"],
        status["status"],
        status["committed"],
    )
    assert "planning" == load_status(client, store.keys, "open-1")["state"]
    assert [b"done-1", b"open-1"] == client.zrange(store.keys.runs, 0, -1)
    assert load_status(client, store.keys, "nope") is None


def test_an_illegal_event_halts_the_run_visibly(store: EventStore, client: redis.Redis) -> None:
    """An event the state machine rejects halts status for that run only, and status says so."""
    from airfix.events import stamp
    from airfix.events.schema import Committed
    from airfix.services.runtime.consumers import RuntimeSettings

    append_run(store, "bad", finish=False)
    v = store.version("bad")
    store.append(
        "bad", stamp([Committed(batch_id="nope", sha="x")], run_id="bad", expected_version=v), v
    )
    append_run(store, "good")
    settings = RuntimeSettings(delivery_cap=2, retry_backoff_ms=1, retry_backoff_max_ms=2)
    drain(store, [ProjectionHandler(RunStatus(client, store.keys))], settings)
    bad = load_status(client, store.keys, "bad")
    assert v == bad["version"]  # the last good state stays readable
    assert "Committed" in bad["halted"]["projection:status"]["error"]
    assert "completed" == load_status(client, store.keys, "good")["state"]
