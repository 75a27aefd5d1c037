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


@pytest.fixture(autouse=True, scope="session")
def _private_journal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """CLI runs on the embedded store write a journal; tests keep theirs out of the user's home."""
    old = os.environ.get("AIRFIX__STORE__JOURNAL")
    os.environ["AIRFIX__STORE__JOURNAL"] = str(tmp_path_factory.mktemp("journal") / "journal.jsonl")
    yield
    if old is None:
        os.environ.pop("AIRFIX__STORE__JOURNAL", None)
    else:
        os.environ["AIRFIX__STORE__JOURNAL"] = old


def _worker_url(url: str) -> str:
    """One database per pytest-xdist worker (gw0 the given one, gw1 the one below, ...): tests
    flush their database, so parallel workers must never share one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    base, _, db = url.rpartition("/")
    return f"{base}/{int(db or 0) - int(worker[2:])}"


REAL_URL = _worker_url(os.environ.get("AIRFIX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
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
