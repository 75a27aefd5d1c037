"""Where the log lives: a Redis server (``redis://...``) or the embedded store (fakeredis).

The embedded store is one :class:`fakeredis.FakeServer` per process, shared by every client, so
in-process services see each other's writes exactly as they would on a server.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import fakeredis
import redis

_EMBEDDED: fakeredis.FakeServer | None = None
_LOCK = threading.Lock()
EMBEDDED_VERSION = (7, 0)


def embedded_server() -> fakeredis.FakeServer:
    global _EMBEDDED
    with _LOCK:
        if _EMBEDDED is None:
            _EMBEDDED = fakeredis.FakeServer(version=EMBEDDED_VERSION)
        return _EMBEDDED


#: Seconds to open a connection (an unreachable host would otherwise hang for the OS's TCP timeout,
#: minutes); the URL's own ``?socket_connect_timeout=`` wins.  Reads have no default timeout
#: (``XREAD BLOCK`` waits by design); ``?socket_timeout=S`` sets one.
CONNECT_TIMEOUT_S = 10.0


def connect(url: str | None = None, *, fresh_embedded: bool = False) -> redis.Redis:
    """A client for ``url``, or for the embedded store when ``url`` is empty."""
    if url:
        return redis.Redis.from_url(
            url,
            health_check_interval=30,
            socket_keepalive=True,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
        )
    server = fakeredis.FakeServer(version=EMBEDDED_VERSION) if fresh_embedded else embedded_server()
    return fakeredis.FakeRedis(server=server)


def is_embedded(client: redis.Redis) -> bool:
    return isinstance(client, fakeredis.FakeRedis)


@dataclass(frozen=True)
class Capabilities:
    """Which Redis 8.x stream commands the server has; airfix runs on 7.0 without any of them."""

    version: tuple[int, ...]
    xackdel: bool  # 8.2
    readgroup_claim: bool  # 8.4
    idmp: bool  # 8.6
    xnack: bool  # 8.8


def capabilities(client: redis.Redis, fallback: tuple[int, ...] = (7, 0)) -> Capabilities:
    """Detect the server version (``INFO server``); fall back when the server hides it."""
    version = fallback
    if is_embedded(client):
        version = tuple(client.connection_pool.connection_kwargs.get("server").version)  # type: ignore[union-attr]
    else:
        try:
            raw = client.info("server").get("redis_version", "")
            version = tuple(int(p) for p in str(raw).split(".")[:3]) or fallback
        except (redis.ResponseError, ValueError):
            version = fallback
    return Capabilities(
        version=version,
        xackdel=version >= (8, 2),
        readgroup_claim=version >= (8, 4),
        idmp=version >= (8, 6),
        xnack=version >= (8, 8),
    )
