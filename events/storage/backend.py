"""Where the log lives: a Redis server (``redis://...``), a Redis Cluster
(``redis+cluster://host:port``, any node of it) or the embedded store (fakeredis).

The embedded store is one :class:`fakeredis.FakeServer` per process, shared by every client, so
in-process services see each other's writes exactly as they would on a server.

On a cluster a command may only touch keys of one hash slot.  The key layout
(:mod:`airfix.events.keys`) puts what one script touches in one slot; what reads several partition
logs at once goes through :func:`by_slot` / :func:`xread_across`, which on a single server are the
one command they always were.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import fakeredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

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


#: URL schemes that name a cluster, and the plain scheme redis-py's cluster client is given.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def connect(url: str | None = None, *, fresh_embedded: bool = False) -> redis.Redis:
    """A client for ``url``, or for the embedded store when ``url`` is empty.

    ``redis+cluster://[user:pass@]host:port`` (``rediss+cluster://`` with TLS) gives redis-py's
    :class:`~redis.cluster.RedisCluster`, which finds the other nodes from that one; it serves the
    same commands, so it is handed out as a :class:`redis.Redis`.  Both clients get the same
    options (bytes replies, hiredis when installed); the cluster client ignores
    ``health_check_interval``, which redis-py does not pass to cluster connections."""
    if url:
        options: dict[str, Any] = {
            "health_check_interval": 30,
            "socket_keepalive": True,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
        }
        node = cluster_node_url(url)
        if node:
            return cast("redis.Redis", RedisCluster.from_url(node, **options))
        return redis.Redis.from_url(url, **options)
    server = fakeredis.FakeServer(version=EMBEDDED_VERSION) if fresh_embedded else embedded_server()
    return fakeredis.FakeRedis(server=server)


def cluster_node_url(url: str) -> str | None:
    """The plain URL of the node a ``redis+cluster://`` URL names (None: not a cluster URL)."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    return f"{plain}://{rest}" if sep and plain else None


def connect_async(url: str) -> aioredis.Redis:
    """An asyncio client for a server or cluster URL (the Airflow trigger waits with it)."""
    node = cluster_node_url(url)
    if node:
        return cast("aioredis.Redis", AsyncRedisCluster.from_url(node))
    return aioredis.Redis.from_url(url)


def is_embedded(client: redis.Redis) -> bool:
    return isinstance(client, fakeredis.FakeRedis)


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def by_slot(client: redis.Redis, keys: Iterable[str]) -> list[list[str]]:
    """``keys`` in groups that one multi-key command may take: all of them on a single server, one
    group per hash slot on a cluster.  Order is kept within a group."""
    wanted = list(keys)
    if not is_cluster(client):
        return [wanted] if wanted else []
    groups: dict[int, list[str]] = {}
    for key in wanted:
        slot: int = cast("RedisCluster", client).keyslot(key)  # type: ignore[no-untyped-call]
        groups.setdefault(slot, []).append(key)
    return list(groups.values())


#: what XREAD/XREADGROUP return (redis-py types it loosely): per stream, its entries
StreamsReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


def xread_across(
    client: redis.Redis,
    streams: Mapping[str, str],
    *,
    count: int | None = None,
    block: int | None = None,
) -> StreamsReply:
    """``XREAD`` of ``streams`` (key -> last id seen), waiting up to ``block`` ms for any of them.

    On a single server (or when every stream is in one slot) that is one ``XREAD BLOCK``.  On a
    cluster one command cannot wait on several slots, so every slot is first read without
    blocking, then waited on in turn for its share of ``block`` (``0``: round after round until
    something comes); the wait still ends at most ``block`` ms after it began, and what arrives
    meanwhile on another slot is seen by the caller's next read."""
    groups = by_slot(client, streams)
    if len(groups) <= 1:
        return cast("StreamsReply", client.xread(dict(streams), count=count, block=block) or [])  # type: ignore[arg-type]

    def read(group: list[str], wait: int | None) -> StreamsReply:
        sub = {k: streams[k] for k in group}
        return cast("StreamsReply", client.xread(sub, count=count, block=wait) or [])  # type: ignore[arg-type]

    out = [row for group in groups for row in read(group, None)]
    if out or block is None:
        return out
    share = max(1, block // len(groups)) if block else 1000
    while True:
        for group in groups:
            got = read(group, share)
            if got:
                return got
        if block:
            return []


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
