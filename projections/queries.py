"""Queries of the read models: what commands, Airflow and people ask the views."""

from __future__ import annotations

from typing import Any, cast

import msgspec
import redis

from airfix.events.keys import Keys
from airfix.events.storage.store import as_str as _s


def newest_runs(client: redis.Redis, keys: Keys, limit: int = 1) -> list[str]:
    """Run ids, newest request first (``airfix runs``, ``status``, ``tail latest``)."""
    rows = cast("list[bytes | str]", client.zrevrange(keys.runs, 0, limit - 1))
    return [x.decode() if isinstance(x, bytes) else x for x in rows]


def load_status(client: redis.Redis, keys: Keys, run_id: str) -> dict[str, Any] | None:
    """The run's status as plain data, with ``halted`` naming every consumer group stuck on it."""
    raw = client.hget(keys.status, run_id)
    if raw is None:
        return None
    status: dict[str, Any] = msgspec.json.decode(raw)
    halted = {}
    for key in client.scan_iter(match=f"{keys.prefix}:halted:*", count=1000):
        info = client.hget(key, run_id)
        if info is not None:
            halted[_s(key).split(":halted:", 1)[1]] = msgspec.json.decode(info)
    status["halted"] = halted
    return status


def target_runs(
    client: redis.Redis, keys: Keys, target: str, limit: int = 20
) -> list[dict[str, Any]]:
    """The runs of one target (its path as the run recorded it), newest first, from the
    ``target_runs`` view: started, status, scores before and after, commits, fixed, duration."""
    from airfix.projections.core.views import TargetRunsFold

    fold = TargetRunsFold(keys)
    ids = cast("list[bytes | str]", client.zrevrange(fold.target_key(target), 0, limit - 1))
    if not ids:
        return []
    raw = cast("list[bytes | None]", client.hmget(fold.record_key, ids))
    out = []
    for blob in raw:
        if blob is not None:
            rec: dict[str, Any] = msgspec.json.decode(blob)
            rec.pop("batches", None)
            out.append(rec)
    return out
