"""The event store's contract, on fakeredis and on the real server."""

from __future__ import annotations

import threading

import pytest
import redis

from airfix.events import (
    ConcurrencyError,
    DuplicateEventError,
    InvalidEventError,
    Keys,
    StoreLayoutError,
    partition_of,
    stamp,
)
from airfix.events.schema import (
    BatchPlanned,
    Committed,
    HealthChecked,
    RunRequested,
    RunStarted,
    ToolResult,
)
from airfix.events.storage.store import EventStore


def _events(run_id: str, expected: int, n: int = 2):
    payloads = [RunRequested(target="/repo")] if expected == 0 else []
    while len(payloads) < n:
        payloads.append(RunStarted(worker=f"w{len(payloads)}"))
    return stamp(payloads, run_id=run_id, expected_version=expected)


@pytest.fixture
def store(client: redis.Redis) -> EventStore:
    return EventStore(client, Keys(partitions=4))


def test_append_then_read_in_order(store: EventStore) -> None:
    """Appended events come back in version order, from the run stream and the partition log."""
    result = store.append("r1", _events("r1", 0, 3), 0)
    assert (3, False) == (result.version, result.duplicate)
    assert ["0-1", "0-2", "0-3"] == [p.run_entry for p in result.positions]
    assert [1, 2, 3] == [e.version for e in store.read_run("r1")]
    assert [2, 3] == [e.version for e in store.read_run("r1", from_version=2)]
    log = store.read_log(partition_of("r1", 4))
    assert [1, 2, 3] == [e.event.version for e in log if e.event]


def test_stream_fields_are_readable(store: EventStore, client: redis.Redis) -> None:
    """Entries have flat type/v/id/run/at/data fields for redis-cli."""
    store.append("r1", _events("r1", 0, 1), 0)
    ((entry_id, fields),) = client.xrange(store.keys.run_stream("r1"))
    assert b"0-1" == entry_id
    assert {b"type", b"v", b"id", b"run", b"at", b"data"} == set(fields)
    assert b"RunRequested" == fields[b"type"]
    assert fields[b"at"].endswith(b"Z")


def test_expected_version_mismatch_writes_nothing(store: EventStore, client: redis.Redis) -> None:
    store.append("r1", _events("r1", 0, 2), 0)
    with pytest.raises(ConcurrencyError, match="expected version 1, but the run is at version 2"):
        store.append("r1", stamp([RunStarted()], run_id="r1", expected_version=1), 1)
    assert 2 == client.xlen(store.keys.run_stream("r1"))
    assert 2 == client.xlen(store.keys.log_of("r1"))


def test_resend_after_lost_reply_is_idempotent(store: EventStore, client: redis.Redis) -> None:
    """Re-sending the same events returns the original positions and adds nothing, at any later time."""
    batch = _events("r1", 0, 2)
    first = store.append("r1", batch, 0)
    store.append("r1", stamp([RunStarted()], run_id="r1", expected_version=2), 2)
    again = store.append("r1", batch, 0)
    assert again.duplicate
    assert first.positions == again.positions
    assert 3 == client.xlen(store.keys.run_stream("r1"))


def test_same_event_id_other_content_is_an_error(store: EventStore, client: redis.Redis) -> None:
    batch = _events("r1", 0, 1)
    store.append("r1", batch, 0)
    import msgspec

    changed = [msgspec.structs.replace(batch[0], target="/elsewhere")]
    with pytest.raises(DuplicateEventError, match=batch[0].event_id):
        store.append("r1", changed, 0)
    assert 1 == client.xlen(store.keys.run_stream("r1"))


def test_partial_duplicate_batch_is_rejected(store: EventStore) -> None:
    batch = _events("r1", 0, 2)
    store.append("r1", batch[:1], 0)
    with pytest.raises(ConcurrencyError):
        store.append("r1", batch, 0)
    assert 1 == store.version("r1")


def test_retried_handler_events_are_recognised_despite_new_time(store: EventStore) -> None:
    """The digest ignores recorded_at: a retried handler that re-creates an event is a duplicate."""
    ids = ["01ID000000000000000000000A"]
    first = stamp([RunRequested(target="/x")], run_id="r1", expected_version=0, event_ids=ids)
    store.append("r1", first, 0)
    second = stamp([RunRequested(target="/x")], run_id="r1", expected_version=0, event_ids=ids)
    assert store.append("r1", second, 0).duplicate


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda evs: [evs[0], msgspec_replace(evs[0], version=2)], "repeated event_id"),
        (lambda evs: [msgspec_replace(evs[0], version=5)], "version 5, expected 1"),
        (lambda evs: [msgspec_replace(evs[0], run_id="other")], "run_id is 'other'"),
        (lambda evs: [], "nothing to append"),
    ],
)
def test_malformed_batches_are_rejected_before_writing(store, client, mutate, message) -> None:
    with pytest.raises(InvalidEventError, match=message):
        store.append("r1", mutate(_events("r1", 0, 1)), 0)
    assert 0 == client.exists(store.keys.run_stream("r1"))


def msgspec_replace(ev, **kw):
    import msgspec

    return msgspec.structs.replace(ev, **kw)


@pytest.mark.parametrize("bad", ["", "a b", "x{p1}", "r" * 200])
def test_bad_run_ids_are_rejected(store: EventStore, bad: str) -> None:
    with pytest.raises(InvalidEventError, match="run id"):
        store.version(bad)


def test_paging_reads_long_runs(store: EventStore) -> None:
    version = 0
    for _ in range(5):
        batch = stamp(
            [RunRequested(target="/r")] if version == 0 else [RunStarted()] * 1,
            run_id="long",
            expected_version=version,
        )
        store.append("long", batch, version)
        version += 1
    extra = stamp([RunStarted() for _ in range(2500)], run_id="long", expected_version=version)
    store.append("long", extra, version)
    versions = [e.version for e in store.read_run("long", page=100)]
    assert list(range(1, 2506)) == versions
    assert [2500, 2501] == [e.version for e in store.read_run("long", 2500, 2501, page=1)]


def test_payloads_round_trip(store: EventStore) -> None:
    payloads = [
        RunRequested(target="/r"),
        RunStarted(),
        HealthChecked(
            iteration=1,
            tools=[
                ToolResult(
                    tool="ruff",
                    status="failed",
                    version="0.8",
                    counts={"error": 3},
                    exit_status=1,
                    duration_s=0.2,
                )
            ],
            score=0.4,
            parts={"lint": 0.4},
        ),
        BatchPlanned(
            iteration=1, batch_id="b1", phase="lint", mode="smart", issue_ids=["i1"], priority=3
        ),
        Committed(
            batch_id="b1",
            sha="abc",
            files=["a.py"],
            counts_before={"lint": 3},
            counts_after={"lint": 0},
        ),
    ]
    events = stamp(payloads, run_id="r9", expected_version=0)
    store.append("r9", events, 0)
    assert events == list(store.read_run("r9"))


def test_partition_count_is_fixed_per_store(client: redis.Redis) -> None:
    four = EventStore(client, Keys(partitions=4))
    eight = EventStore(client, Keys(partitions=8))  # nothing recorded yet: opening only reads
    assert [] == client.keys("*")
    four.append("r1", _events("r1", 0, 1), 0)
    with pytest.raises(StoreLayoutError, match="4 partitions"):
        EventStore(client, Keys(partitions=8))
    with pytest.raises(StoreLayoutError, match="4 partitions"):  # nor can one opened before write
        eight.append("r2", _events("r2", 0, 1), 0)
    assert 1 == len(list(four.read_run("r1"))) and 0 == four.version("r2")


def test_racing_appenders_one_wins_each_round(store: EventStore, client: redis.Redis) -> None:
    """Two threads append at the same expected version: exactly one succeeds each time."""
    store.append("race", _events("race", 0, 1), 0)
    wins = [0, 0]
    conflicts = [0, 0]

    def appender(i: int) -> None:
        for _ in range(100):
            v = store.version("race")
            try:
                store.append(
                    "race", stamp([RunStarted(worker=str(i))], run_id="race", expected_version=v), v
                )
                wins[i] += 1
            except ConcurrencyError:
                conflicts[i] += 1

    threads = [threading.Thread(target=appender, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 + sum(wins) == client.xlen(store.keys.run_stream("race")) == store.version("race")
    assert list(range(1, 2 + sum(wins))) == [e.version for e in store.read_run("race")]


def test_capabilities_follow_the_server_version(backend: str, client: redis.Redis) -> None:
    """8.x stream commands are only ever enabled by detection; Redis 7.0 gets none of them."""
    import fakeredis

    from airfix.events.storage.backend import capabilities

    caps = capabilities(client)
    assert caps.version[:2] == (7, 0)
    assert not (caps.xackdel or caps.readgroup_claim or caps.idmp or caps.xnack)
    newer = capabilities(fakeredis.FakeRedis(server=fakeredis.FakeServer(version=(8, 8))))
    assert newer.xackdel and newer.readgroup_claim and newer.idmp and newer.xnack
