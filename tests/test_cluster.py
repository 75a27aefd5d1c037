"""airfix on a real Redis Cluster: three Redis 7.0 primaries started by the test
(:class:`tests.redis_procs.RedisClusterProcs`), reached through ``redis+cluster://``.

The partition logs hash to slots on different nodes, so every command that reads several of them,
every script and every pipeline is checked where a cross-slot command would fail: a fix run of the
bundled sample hosted by a worker process, ``airfix tail``, a poison entry parked and discarded
with ``airfix dlq``, ``airfix trim``, ``airfix projections rebuild`` (checked before and after the
trim, then done in place), and a consumer killed with kill -9 mid-handler whose partitions another worker takes over.
Every result is read back from the cluster or from git, not taken from the commands' word.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from airfix.events.keys import Keys, partition_of
from airfix.events.storage.backend import by_slot, connect, xread_across
from airfix.events.storage.store import as_str
from airfix.projections.report import on_branch
from airfix.projections.status import load_status
from airfix.services.runtime.deadletters import list_dead_letters
from tests.airflow_harness import process_logging_kept
from tests.pipeline_harness import git
from tests.pipeline_harness.workers import FAST, assert_commits_match_events
from tests.redis_procs import RedisClusterProcs
from tests.scenario import run_events
from tests.test_faults import test_kill_9_mid_handler_then_another_worker_takes_over as kill_9_test

with process_logging_kept():
    from airfix.airflow_glue.trigger import RunFinishedTrigger

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcs]:
    procs = RedisClusterProcs(tmp_path_factory.mktemp("cluster"))
    try:
        yield procs.start()
    finally:
        procs.stop()


@pytest.fixture
def client(cluster: RedisClusterProcs) -> Iterator[redis.Redis]:
    """A client of the empty cluster (every test starts from nothing)."""
    c = connect(cluster.url)
    c.flushdb()  # the cluster client sends FLUSHDB to every primary
    yield c
    c.close()


def airfix(*args: str, url: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airfix.services.commands.cli", *args, "--redis-url", url],
        env=cli_env(url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFIX")}
    return {**env, **FAST, "AIRFIX_REDIS_URL": url, "PYTHONPATH": str(ROOT)}


def poll(what: str, predicate: Any, timeout: float, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(
        f"{what}: not within {timeout}s" + (f"\n{log.read_text()[-3000:]}" if log else "")
    )


# ------------------------------------------------------------------------------ the client


def test_a_cluster_url_gives_a_cluster_client_and_the_logs_span_its_nodes(
    cluster: RedisClusterProcs, client: redis.Redis
) -> None:
    assert isinstance(client, RedisCluster)
    plain = connect(f"redis://127.0.0.1:{cluster.nodes[0].port}/0")
    assert not isinstance(plain, RedisCluster)
    assert b"v" == (client.set("k", "v") and client.get("k"))  # bytes, as on a single server
    logs = Keys().logs()
    nodes = {cast_cluster(client).get_node_from_key(k).port for k in logs}
    assert len(nodes) >= 2, "the partition logs should live on several nodes"
    assert [[k] for k in logs] == by_slot(client, logs)  # one slot each: one command each
    assert [logs] == by_slot(plain, logs)  # a single server takes them in one command
    # a wait across nodes ends when one of them gets an entry, and on time when none does
    started = time.monotonic()
    assert [] == xread_across(client, dict.fromkeys(logs, "$"), block=300)
    assert 0.25 < time.monotonic() - started < 3
    client.xadd(logs[2], {"f": "1"})
    [(stream, [(_, fields)])] = xread_across(client, dict.fromkeys(logs, "0-0"), block=300)
    assert (logs[2].encode(), {b"f": b"1"}) == (stream, fields)
    plain.close()


def cast_cluster(client: redis.Redis) -> RedisCluster:
    assert isinstance(client, RedisCluster)
    return client


# ---------------------------------------------------------------------- a whole fix run


def test_fix_run_dlq_trim_and_rebuild_through_the_cli(
    cluster: RedisClusterProcs, client: redis.Redis, tmp_path: Path
) -> None:
    url = cluster.url
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "airfix.services.commands.cli", "worker", "--roles", "all",
             "--name", "w1", "--log-format", "json"],
            cwd=ROOT, env=cli_env(url), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        run = airfix(
            "run", "--sample", "--max-iterations", "1", "--json", "--wait-timeout", "240",
            url=url, timeout=300,
        )  # fmt: skip
        assert 3 == run.returncode, f"{run.stderr[-3000:]}\n{log_path.read_text()[-3000:]}"
        report = json.loads(run.stdout.strip().splitlines()[-1])
        run_id = report["run_id"]
        assert ("completed", "partially_fixed") == (report["state"], report["status"])
        check_run_on_the_cluster(client, run_id, report)

        tail = airfix("tail", run_id, "--json", url=url)
        assert 0 == tail.returncode, tail.stderr[-3000:]
        versions = [x["version"] for x in map(json.loads, tail.stdout.splitlines())
                    if x["kind"] == "event"]  # fmt: skip
        assert list(range(1, len(events_of(client, run_id)) + 1)) == versions

        check_poison_is_parked_and_discarded(client, url, log_path)
        assert 0 == airfix("projections", "rebuild", "--check", url=url).returncode
        check_trim(client, url, run_id)
        checked = airfix("projections", "rebuild", "--check", url=url)
        assert 0 == checked.returncode and "DIFFERS" not in checked.stdout, checked.stdout
        rebuilt = airfix("projections", "rebuild", url=url)  # the live views, in place
        assert 0 == rebuilt.returncode, rebuilt.stderr[-3000:]
        status = load_status(client, Keys(), run_id)
        assert status is not None and "completed" == status["state"]
        assert 0 == airfix("projections", "rebuild", "--check", url=url).returncode
    finally:
        worker.terminate()
        code = worker.wait(30)
    assert 0 == code, log_path.read_text()[-3000:]


def events_of(client: redis.Redis, run_id: str) -> list[Any]:
    from airfix.events.storage.store import EventStore

    return list(EventStore(client).read_run(run_id))


def check_run_on_the_cluster(client: redis.Redis, run_id: str, report: dict[str, Any]) -> None:
    """The run's events, status and commits, read back from the cluster and from git."""
    events = events_of(client, run_id)
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    assert "RunCompleted" == type(events[-1]).__name__
    status = load_status(client, Keys(), run_id)
    assert status is not None and ("completed", {}) == (status["state"], status["halted"])
    assert len(events) == status["version"]
    repo = Path(status["target"])
    committed = on_branch(events)
    assert committed and [c["sha"] for c in report["commits"]] == [c.sha for c in committed]
    base = git(repo, "rev-parse", "refs/heads/main").strip()
    assert_commits_match_events(repo, base, f"airfix/{run_id}", committed)


def check_poison_is_parked_and_discarded(client: redis.Redis, url: str, log_path: Path) -> None:
    """An entry nobody can decode is parked by each group (a dead letter written on one node, the
    ack on another); ``airfix dlq`` lists it and discards it through the partition's owner."""
    keys = Keys()
    log = keys.logs()[3]
    entry = client.xadd(log, {"type": "NoSuchEvent", "run": "poison", "data": "{"}).decode()
    groups = {as_str(g["name"]) for g in client.xinfo_groups(log)}
    assert {"projections", "role:fixer"} <= groups
    poll(
        "every group to park the poison entry",
        lambda: groups == {d.group for d in list_dead_letters(client, keys) if d.entry == entry},
        60,
        log_path,
    )
    listed = airfix("dlq", "list", "--json", url=url)
    assert 0 == listed.returncode, listed.stderr[-3000:]
    rows = [r for r in json.loads(listed.stdout) if r["entry"] == entry]
    assert groups == {r["group"] for r in rows} and {"undecodable"} == {r["kind"] for r in rows}
    for row in rows:
        gone = airfix("dlq", "discard", row["id"], "--group", row["group"], url=url)
        assert 0 == gone.returncode, gone.stderr[-3000:]
    assert [] == [d for d in list_dead_letters(client, keys) if d.entry == entry]
    client.xdel(log, entry)  # a stray entry, not an event: rebuild must not see it


def check_trim(client: redis.Redis, url: str, run_id: str) -> None:
    """``airfix trim`` removes the finished run's entries from its partition log (a script on
    that partition's node) and the run still reads back whole."""
    keys = Keys()
    log = keys.log_of(run_id)
    before = client.xlen(log)
    trimmed = airfix("trim", "--older-than", "0s", "--json", url=url)
    assert 0 == trimmed.returncode, trimmed.stderr[-3000:]
    out = json.loads(trimmed.stdout)
    assert [run_id] == out["runs"]
    events = events_of(client, run_id)
    assert {log: len(events)} == out["removed"]
    assert before - len(events) == client.xlen(log)
    record = json.loads(client.hget(keys.trimmed(partition_of(run_id, keys.partitions)), run_id))
    assert len(events) == record["entries"]


# ---------------------------------------------------------------------- the Airflow trigger


def test_the_airflow_trigger_waits_for_a_run_on_the_cluster(
    cluster: RedisClusterProcs, client: redis.Redis
) -> None:
    """The deferred sensor's trigger (an asyncio cluster client) blocks on the run's stream until
    the run ends, then reports how it ended."""
    from airfix.events.storage.store import EventStore

    store = EventStore(client)
    events = run_events("run-live")
    store.append("run-live", events[:3], 0)
    trigger = RunFinishedTrigger(
        redis_url=cluster.url, stream=store.keys.run_stream("run-live"), run_id="run-live",
        after_version=3, block_ms=500,
    )  # fmt: skip

    async def main() -> Any:
        waiting = asyncio.ensure_future(asyncio.wait_for(anext(trigger.run()), 60))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # nothing terminal yet: it blocks on the stream
        await asyncio.to_thread(store.append, "run-live", events[3:], 3)
        return await waiting

    fired = asyncio.run(main())
    assert ("partially_fixed", len(events)) == (fired.payload["status"], fired.payload["version"])


# ---------------------------------------------------------------------- kill -9 of a consumer


def test_kill_9_mid_handler_then_another_worker_takes_over_on_a_cluster(
    cluster: RedisClusterProcs, client: redis.Redis, tmp_path: Path
) -> None:
    """tests/test_faults.py's kill -9 test, run as it is against the cluster."""
    kill_9_test(cluster, tmp_path)
