"""``airfix worker`` as a real process on the real server: SIGTERM drains and exits cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import redis

from airfix.config import load_config
from airfix.events import Keys
from airfix.events.storage.store import EventStore
from airfix.projections.base import rebuild
from airfix.services.runtime.app import build_app
from airfix.services.runtime.metrics import group_metrics
from tests.conftest import REAL_URL, real_client
from tests.scenario import append_run


def _worker(*extra: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "AIRFIX__CONSUMERS__LEASE_TTL_MS": "2000",
        "AIRFIX__CONSUMERS__REBALANCE_INTERVAL_MS": "100",
        "AIRFIX__CONSUMERS__BLOCK_MS": "100",
        "AIRFIX__CONSUMERS__HEARTBEAT_INTERVAL_MS": "200",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airfix.services.commands.cli",
            "worker",
            "--redis-url",
            REAL_URL,
            "--roles",
            "projections",
            "--log-format",
            "json",
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _settled(client: redis.Redis, keys: Keys, groups: list[str]) -> bool:
    return all(
        group_metrics(client, keys, g).lag == 0 and group_metrics(client, keys, g).pending == 0
        for g in groups
    )


def test_sigterm_stops_cleanly_and_loses_nothing() -> None:
    client = real_client()
    client.flushdb()
    try:
        app = build_app(load_config(overrides={"store.redis_url": REAL_URL}, env={}))
        store: EventStore = app.store
        for n in range(6):
            append_run(store, f"first-{n}")
        proc = _worker("--name", "w-term")
        groups = ["projections"]
        deadline = time.monotonic() + 30
        while not _settled(client, app.keys, groups) and time.monotonic() < deadline:
            time.sleep(0.05)
        for n in range(6):  # more work arrives while it runs
            append_run(store, f"second-{n}")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert 0 == proc.returncode, err[-2000:]
        lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
        assert any(x.get("event", "").startswith("worker stopping") for x in lines)
        assert [] == client.keys(f"{app.keys.prefix}:*lease*")  # handed back at once
        # whatever it did not finish, a second worker does; nothing is lost or doubled
        second = _worker("--burst", "--name", "w-burst")
        second.communicate(timeout=60)
        assert 0 == second.returncode
        assert _settled(client, app.keys, groups)
        scratch = Keys(prefix="scratch:autonomous_fix", partitions=app.keys.partitions)
        for live, fresh in zip(app.projections(), app.projections(scratch), strict=True):
            rebuild(store, fresh)
            assert live.dump() == fresh.dump(), live.name
        assert 10 == client.llen(app.keys.run_history)  # 12 finished runs, capped at the default 10
    finally:
        client.flushdb()


def test_operator_redis_cli_commands_verbatim() -> None:
    """The original guide's redis-cli commands show data after a run against the real server."""
    client = real_client()
    client.flushdb()
    try:
        app = build_app(load_config(overrides={"store.redis_url": REAL_URL}, env={}))
        append_run(app.store, "done-1")
        append_run(app.store, "open-1", finish=False)
        proc = _worker("--burst")
        proc.communicate(timeout=60)
        assert 0 == proc.returncode
        db = REAL_URL.rsplit("/", 1)[1]
        host_port = REAL_URL.split("//", 1)[1].split("/", 1)[0]
        host, port = host_port.split(":")

        def cli(*args: str) -> str:
            return subprocess.run(
                ["redis-cli", "-h", host, "-p", port, "-n", db, *args],
                capture_output=True,
                text=True,
                check=True,
            ).stdout

        assert "open-1/b3\n5\n" == cli(
            "ZRANGE", "autonomous_fix:task_queue", "0", "-1", "WITHSCORES"
        )
        history = cli("LRANGE", "autonomous_fix:run_history", "0", "9").strip().splitlines()
        assert ["done-1"] == [json.loads(h)["run_id"] for h in history]
        assert 1 == json.loads(cli("GET", "autonomous_fix:summary:build"))["total_count"]
    finally:
        client.flushdb()
