"""How far each consumer group is: lag, pending, the oldest idle entry, from ``XINFO GROUPS`` and
``XPENDING`` (``airfix inspect``, the benchmarks, the tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import structlog

from airfix.events.keys import Keys
from airfix.events.storage.store import as_str as _s

log = structlog.get_logger("airfix.runtime")


@dataclass(frozen=True)
class GroupMetrics:
    group: str
    lag: int
    pending: int
    oldest_pending_idle_ms: int
    dead_letters: int
    consumers: int
    halted_runs: int


def group_info(client: redis.Redis, stream: str, group: str) -> dict[str, Any] | None:
    """``XINFO GROUPS`` of ``stream`` for ``group`` (None when the group does not exist)."""
    return next((g for g in client.xinfo_groups(stream) if _s(g["name"]) == group), None)


def group_lag(
    client: redis.Redis, stream: str, info: dict[str, Any], *, at_most: int | None = None
) -> int:
    """Entries the group has not read yet.  Redis reports NULL lag after trims or SETID; then count
    what is past the group's position (``at_most`` bounds the count when only "any?" matters)."""
    if info.get("lag") is not None:
        return int(info["lag"])
    return len(client.xrange(stream, f"({_s(info['last-delivered-id'])}", "+", count=at_most) or [])


def group_metrics(client: redis.Redis, keys: Keys, group: str) -> GroupMetrics:
    """Lag, pending count, oldest pending idle time and dead-letter depth of ``group``."""
    lag = pending = oldest = 0
    consumers: set[str] = set()
    for stream in keys.logs():
        if not client.exists(stream):
            continue
        info = group_info(client, stream, group)
        if info is None:
            lag += int(client.xlen(stream))
            continue
        lag += group_lag(client, stream, info)
        pending += int(info["pending"])
        if int(info["pending"]):
            rows = client.xpending_range(stream, group, min="-", max="+", count=1)
            if rows:
                oldest = max(oldest, int(rows[0]["time_since_delivered"]))
        for c in client.xinfo_consumers(stream, group):
            consumers.add(_s(c["name"]))
    return GroupMetrics(
        group=group,
        lag=lag,
        pending=pending,
        oldest_pending_idle_ms=oldest,
        dead_letters=int(client.xlen(keys.dead_letters(group))),
        consumers=len(consumers),
        halted_runs=int(client.hlen(keys.halted(group))),
    )
