"""The projections' Redis keys, byte for byte: what redis-cli users, Airflow and other code read.

``fixtures/projections/sample_run.jsonl`` holds a run of the bundled sample (autofix, two
iterations) and a few scenario runs (one unfinished, one cancelled, one failed).  Every view folds
them in batches under fixed entry ids; ``sample_run_keys.json`` is what the projections wrote for
that log (every key, its type and raw value) and must not change: run this module as a script to
write it again only when a change of the views is meant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import redis

from airfix.events.codec import decode_data
from airfix.events.keys import Keys
from airfix.events.storage.store import LogEntry
from airfix.projections.base import ProjectionHandler, ProjectorHandler
from airfix.projections.status import RunStatus
from airfix.projections.views import PhaseSummary, RunHistory, TargetRuns, TaskQueue

FIXTURES = Path(__file__).parent / "fixtures" / "projections"
LOG = FIXTURES / "sample_run.jsonl"
GOLDEN = FIXTURES / "sample_run_keys.json"
PREFIX = "golden:autofix"


def sample_log(keys: Keys) -> list[LogEntry]:
    """The fixture's events as partition log entries with fixed ids, in recorded order."""
    events = [decode_data(line) for line in LOG.read_bytes().splitlines() if line.strip()]
    seq: dict[str, int] = {}
    out = []
    for n, ev in enumerate(events):
        stream = keys.log_of(ev.run_id)
        seq[stream] = seq.get(stream, 0) + 1
        entry_id = f"{1_700_000_000_000 + n}-{seq[stream] % 3}"
        out.append(LogEntry(stream, entry_id, {}, ev, None))
    return out


def bound_views(client: redis.Redis, keys: Keys) -> list[Any]:
    """The views of ``App.projections``, history capped at 3 so the cap is exercised."""
    return [
        RunStatus(client, keys),
        TaskQueue(client, keys),
        RunHistory(client, keys, 3),
        *(PhaseSummary(client, keys, p) for p in ("build", "test", "lint")),
        TargetRuns(client, keys),
    ]


def project(client: redis.Redis, keys: Keys, entries: list[LogEntry], batch: int = 7) -> None:
    """Fold ``entries`` through the runtime's handler in batches, then redeliver one batch."""
    handler = ProjectorHandler(bound_views(client, keys))
    for i in range(0, len(entries), batch):
        handler.handle(entries[i : i + batch])
    handler.handle(entries[:batch])  # a redelivery changes nothing
    fresh = [ProjectionHandler(v) for v in bound_views(client, keys)]
    for h in fresh:  # cold caches and checkpoints: everything is fenced
        h.handle(entries)


def text(raw: bytes | str) -> str:
    return raw.decode("latin-1") if isinstance(raw, bytes) else raw


def key_dump(client: redis.Redis, prefix: str) -> dict[str, Any]:
    """Every key under ``prefix`` (and in its hash-tagged slots): type and exact value."""
    out: dict[str, Any] = {}
    found = {*client.scan_iter(match=f"{prefix}*"), *client.scan_iter(match=f"{{{prefix}*")}
    for key in sorted(found):
        kind = text(client.type(key))
        value: Any
        if kind == "string":
            value = text(client.get(key))
        elif kind == "hash":
            value = sorted((text(k), text(v)) for k, v in client.hgetall(key).items())
        elif kind == "zset":
            value = [(text(m), s) for m, s in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "set":
            value = sorted(text(m) for m in client.smembers(key))
        elif kind == "list":
            value = [text(x) for x in client.lrange(key, 0, -1)]
        else:
            raise AssertionError(f"unexpected {kind} at {key!r}")
        out[text(key)] = [kind, value]
    return json.loads(json.dumps(out))  # tuples as lists, as read back from the golden file


def test_the_views_write_the_same_bytes(client: redis.Redis) -> None:
    keys = Keys(prefix=PREFIX, partitions=4)
    project(client, keys, sample_log(keys))
    assert json.loads(GOLDEN.read_text()) == key_dump(client, PREFIX)


def write_golden(url: str) -> None:
    client = redis.Redis.from_url(url)
    keys = Keys(prefix=PREFIX, partitions=4)
    doomed = [*client.scan_iter(match=f"{PREFIX}*"), *client.scan_iter(match=f"{{{PREFIX}*")]
    if doomed:
        client.delete(*doomed)
    project(client, keys, sample_log(keys))
    GOLDEN.write_text(json.dumps(key_dump(client, PREFIX), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write_golden(sys.argv[1])


def test_a_new_runs_first_entry_costs_two_round_trips(monkeypatch: Any) -> None:
    """Every view lacks its checkpoint on a new partition and the new run's state: the handler
    reads them all in one round trip (not two per view, which made a run's first entry the slowest
    of all), then applies every view in a second."""
    import fakeredis

    client = fakeredis.FakeRedis()
    keys = Keys("trips")
    handler = ProjectorHandler(bound_views(client, keys))
    entries = sample_log(keys)
    first = entries[0]
    handler.handle([first])  # loads the apply script once
    trips: list[str] = []
    real_execute = redis.client.Pipeline.execute
    real_command = redis.Redis.execute_command

    def pipeline_execute(self: Any, *a: Any, **k: Any) -> Any:
        trips.append(f"pipeline of {len(self.command_stack)}")
        return real_execute(self, *a, **k)

    def command(self: Any, *args: Any, **k: Any) -> Any:
        if not isinstance(self, redis.client.Pipeline):
            trips.append(str(args[0]))
        return real_command(self, *args, **k)

    monkeypatch.setattr(redis.client.Pipeline, "execute", pipeline_execute)
    monkeypatch.setattr(redis.Redis, "execute_command", command)
    other = next(e for e in entries if keys.log_of(e.event.run_id) != first.stream)  # type: ignore[union-attr]
    handler.handle([other])
    assert len(trips) == 2, trips
    assert (
        client.hget(RunStatus(client, keys).checkpoint_key, other.stream) == other.entry_id.encode()
    )
