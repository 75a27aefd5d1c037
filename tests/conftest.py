"""Shared fixtures: every store, runtime and projection test runs on fakeredis AND the real server.

The real server is ``redis://127.0.0.1:6379/15`` (override with ``AIRFIX_TEST_REDIS_URL``).  A
missing server is a test failure, never a skip: ``.ci/run`` starts one when it can.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis

from tests.redis_procs import RedisServer

REAL_URL = os.environ.get("AIRFIX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
BACKENDS = ["fakeredis", "redis"]


def real_client() -> redis.Redis:
    client = redis.Redis.from_url(REAL_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(
            f"no Redis server answers at {REAL_URL} ({exc}); start one with: redis-server "
            "--daemonize yes --port 6379 --save '' --appendonly no  (or set AIRFIX_TEST_REDIS_URL)",
            pytrace=False,
        )
    return client


def make_client(backend: str) -> redis.Redis:
    if backend == "fakeredis":
        return fakeredis.FakeRedis(server=fakeredis.FakeServer(version=(7, 0)))
    return real_client()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(backend: str) -> Iterator[redis.Redis]:
    c = make_client(backend)
    c.flushdb()
    yield c
    c.flushdb()
    c.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with AOF, killed at the end."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()
