"""The consumer runtime: delivery cap, parking, halting, ordering, reclaim, shutdown, metrics."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest
import redis

from airfix.events import Keys, stamp
from airfix.events.schema import RunRequested, RunStarted
from airfix.events.storage.store import EventStore
from airfix.services.runtime.consumers import Consumer, RuntimeSettings
from airfix.services.runtime.metrics import group_metrics
from airfix.services.runtime.worker import Worker, drain
from tests.helpers import FAST, Recorder, append_runs


@pytest.fixture
def store(client: redis.Redis) -> EventStore:
    return EventStore(client, Keys(partitions=4))


def test_everything_is_handled_once_in_order(store: EventStore) -> None:
    append_runs(store, 5, 4)
    rec = Recorder()
    drain(store, [rec], FAST)
    per_run = defaultdict(list)
    for run, v in rec.seen:
        per_run[run].append(v)
    assert {f"r{r}": [1, 2, 3, 4] for r in range(5)} == dict(per_run)


def test_poison_event_is_dead_lettered_after_exactly_the_cap(store: EventStore, client) -> None:
    """A handler that always fails on one event: cap attempts, one dead letter, others flow."""
    append_runs(store, 3, 3)
    rec = Recorder(fail=lambda e: e.event.run_id == "r1" and e.event.version == 2)
    drain(store, [rec], FAST)
    poison = [max(rec.attempts, key=rec.attempts.get)]
    assert FAST.delivery_cap == rec.attempts[poison[0]]
    assert all(n <= 2 for eid, n in rec.attempts.items() if eid != poison[0])
    dlq = client.xrange(store.keys.dead_letters("svc"))
    assert 1 == len(dlq)
    fields = dlq[0][1]
    assert (poison[0][0].encode(), poison[0][1].encode()) == (fields[b"stream"], fields[b"entry"])
    assert (b"failed", b"svc", str(FAST.delivery_cap).encode()) == (
        fields[b"kind"],
        fields[b"group"],
        fields[b"attempts"],
    )
    assert b"cannot handle RunStarted v2" in fields[b"error"]
    assert b"RunStarted" == fields[b"orig.type"] and fields[b"orig.data"].startswith(b"{")
    assert ("r1", 3) in rec.seen  # unordered handler: the run goes on
    assert 8 == len(rec.seen)
    m = group_metrics(client, store.keys, "svc")
    assert (0, 0, 1) == (m.pending, m.lag, m.dead_letters)


def test_ordered_handler_halts_the_run_not_the_others(store: EventStore, client) -> None:
    append_runs(store, 3, 4)
    rec = Recorder(ordered=True, fail=lambda e: e.event.run_id == "r1" and e.event.version == 2)
    drain(store, [rec], FAST)
    assert [("r1", 1)] == [s for s in rec.seen if s[0] == "r1"]
    assert 9 == len(rec.seen)
    assert client.hexists(store.keys.halted("svc"), "r1")
    kinds = [f[b"kind"] for _, f in client.xrange(store.keys.dead_letters("svc"))]
    assert [b"failed", b"held", b"held"] == kinds
    assert 1 == group_metrics(client, store.keys, "svc").halted_runs


def test_undecodable_entries_are_parked_not_fatal(store: EventStore, client) -> None:
    append_runs(store, 1, 2)
    log = store.keys.log_of("r0")
    client.xadd(
        log,
        {
            "type": "FromTheFuture",
            "v": "3",
            "id": "x",
            "run": "r0",
            "data": b'{"type":"FromTheFuture"}',
        },
    )
    client.xadd(log, {"type": "RunStarted", "data": b"not json"})
    append_runs_tail = stamp([RunStarted()], run_id="r0", expected_version=2)
    store.append("r0", append_runs_tail, 2)
    rec = Recorder()
    drain(store, [rec], FAST)
    assert [("r0", 1), ("r0", 2), ("r0", 3)] == rec.seen
    parked = client.xrange(store.keys.dead_letters("svc"))
    assert [b"undecodable", b"undecodable"] == [f[b"kind"] for _, f in parked]
    assert b"FromTheFuture" in parked[0][1][b"error"]


def test_several_workers_keep_each_run_in_order(store: EventStore, client) -> None:
    """Three consumers share the partitions; every run is seen complete and in version order."""
    rec = Recorder(delay_s=0.001)
    stop = threading.Event()
    consumers = [Consumer(store, rec, FAST, name=f"c{i}", stop=stop) for i in range(3)]
    threads = [threading.Thread(target=c.run) for c in consumers]
    for t in threads:
        t.start()
    time.sleep(0.5)  # let all three join and split the partitions
    for _wave in range(4):  # appends while consumers run
        for r in range(10):
            run = f"run{r}"
            v = store.version(run)
            payload = [RunRequested(target="/t")] if v == 0 else [RunStarted()]
            store.append(
                run, stamp(payload * 1 + [RunStarted()] * 2, run_id=run, expected_version=v), v
            )
    deadline = time.monotonic() + 20
    while len(rec.seen) < 120 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(10)
    per_run = defaultdict(list)
    for run, v in rec.seen:
        per_run[run].append(v)
    assert {f"run{r}": list(range(1, 13)) for r in range(10)} == dict(per_run)
    assert sum(1 for c in consumers if c.stats.handled) >= 2  # the load was shared


def test_a_dead_consumers_pending_entries_are_reclaimed(store: EventStore, client) -> None:
    """A consumer that read entries and died: its lease expires, another one claims and handles them."""
    append_runs(store, 4, 3)
    dead = Consumer(store, Recorder(), FAST, name="dead")
    dead.rebalance()  # takes every partition (it is alone)
    got = dead.read()
    assert sum(len(rows) for _, rows in got) == 12  # delivered, never acked: the "crash"
    rec = Recorder()
    alive = Consumer(store, rec, FAST, name="alive")
    started = time.monotonic()
    while len(rec.seen) < 12 and time.monotonic() - started < 5:
        alive.poll(block=False)
        time.sleep(0.02)
    took = time.monotonic() - started
    assert 12 == len(rec.seen)
    assert took < (FAST.lease_ttl_ms + FAST.rebalance_interval_ms) / 1000 + 1.0
    assert 12 == alive.stats.reclaimed
    assert 0 == group_metrics(client, store.keys, "svc").pending


def test_a_heartbeat_renews_every_lease_in_one_round_trip_and_finds_a_lost_one(
    store: EventStore, client, monkeypatch
) -> None:
    """The heartbeat thread must not hold up the consumer thread's reads: every lease and the
    membership go to the server in one pipeline, not one call per partition; a lease someone
    else holds now is lost, and only that one."""
    consumer = Consumer(store, Recorder(), FAST, name="beating")
    consumer.rebalance()
    owned = sorted(consumer.owned)
    assert len(owned) == store.keys.partitions > 1
    stolen = store.keys.lease(consumer.group, owned[1])
    client.set(stolen, "another")
    for p in owned:
        if p != owned[1]:
            client.pexpire(store.keys.lease(consumer.group, p), 5)
    calls: list[tuple] = []
    real = client.execute_command
    monkeypatch.setattr(
        client, "execute_command", lambda *a, **kw: calls.append(a) or real(*a, **kw)
    )

    consumer.heartbeat()

    assert calls == []  # one pipeline: no call of its own per lease
    assert consumer.owned == set(owned) - {owned[1]}
    assert client.get(stolen) == b"another"
    ttls = [client.pttl(store.keys.lease(consumer.group, p)) for p in consumer.owned]
    assert min(ttls) > FAST.lease_ttl_ms // 2, ttls  # renewed, not left to expire (5 ms)
    assert client.zscore(store.keys.members(consumer.group), "beating") is not None


def test_worker_stops_on_request_and_hands_partitions_back(store: EventStore, client) -> None:
    append_runs(store, 3, 2)
    rec = Recorder()
    worker = Worker(store, [rec], FAST, name="w1")
    t = threading.Thread(target=worker.run)
    t.start()
    deadline = time.monotonic() + 5
    while len(rec.seen) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()
    t.join(FAST.shutdown_deadline_s)
    assert not t.is_alive()
    assert 6 == len(rec.seen)
    assert [] == [k for k in client.keys(f"{store.keys.prefix}:*lease*")]


def test_no_busy_loop_when_idle(store: EventStore, client, monkeypatch) -> None:
    """Idle consumers block (fakeredis included): a handful of reads per second, not thousands."""
    calls = []
    for name in ("xreadgroup", "xread"):
        real = getattr(client, name)

        def counting(*a, _real=real, **kw):
            calls.append(kw.get("block"))
            return _real(*a, **kw)

        monkeypatch.setattr(client, name, counting)
    settings = RuntimeSettings(block_ms=200, rebalance_interval_ms=1000, lease_ttl_ms=5000)
    consumer = Consumer(store, Recorder(), settings)
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        consumer.poll(block=True)
    assert len(calls) <= 20, f"{len(calls)} reads in 1 s"


def test_a_cancel_scope_inside_another_stops_with_either() -> None:
    """A check opens a scope inside its step's: its processes stop when the step's turn ends or
    when the check itself stops them; once the inner scope closes, only the outer one counts."""
    import threading

    from airfix.services.runtime.cancel import cancelled, scope

    outer, inner = threading.Event(), threading.Event()
    with scope(outer):
        with scope(inner):
            assert not cancelled()
            inner.set()
            assert cancelled()
        assert not cancelled()
        with scope(threading.Event()):
            outer.set()
            assert cancelled()
    assert not cancelled()
