"""A trigger that fires when a fix run reaches its terminal event, waiting on the run's own stream
with ``redis.asyncio`` inside the triggerer (no worker slot is held meanwhile).

The stream is the source of truth and its entry ids are ``0-<version>``, so "resume from the last
entry seen" is ``XREAD ... STREAMS <run stream> 0-<version>``: a trigger re-created after a
triggerer restart from its serialized ``after_version`` reads exactly what it has not seen.  It
reads whatever is already there first, so a run that ended before the trigger started (or while no
triggerer ran) is reported at once.  Plain ``XREAD``, no consumer group: nothing to acknowledge,
nothing left behind.  Every event is also written as one line into the task log.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio as aioredis
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airfix.airflow_glue.runs import event_lines, finished
from airfix.events import codec
from airfix.events.storage.backend import connect_async
from airfix.events.storage.store import as_str, id_key

_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def redact(url: str) -> str:
    """``url`` without its password (trigger kwargs appear in Airflow's own log lines)."""
    return _PASSWORD.sub(r"\1***@", url)


class RunFinishedTrigger(BaseTrigger):
    """Yields one ``TriggerEvent`` with ``run_id``, ``status``, ``reason`` and ``version`` when the
    run's terminal event is in its stream; ``status`` is ``"error"`` when the run does not exist.

    ``after_version`` advances as events are read, so ``serialize()`` always gives the position to
    resume from.  Lost connections are retried with backoff (up to ``max_backoff_s``); the sensor's
    timeout bounds the whole wait.
    """

    def __init__(
        self,
        *,
        redis_url: str,
        stream: str,
        run_id: str,
        after_version: int = 0,
        block_ms: int = 2000,
        max_backoff_s: float = 5.0,
        prefix: str = "autonomous_fix",
        partitions: int = 4,
    ) -> None:
        super().__init__()
        self.redis_url = redis_url
        self.stream = stream
        self.run_id = run_id
        self.after_version = after_version
        self.block_ms = block_ms
        self.max_backoff_s = max_backoff_s
        self.prefix = prefix  # the store's key layout, to cancel the run when the task is stopped
        self.partitions = partitions

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "redis_url": self.redis_url,
                "stream": self.stream,
                "run_id": self.run_id,
                "after_version": self.after_version,
                "block_ms": self.block_ms,
                "max_backoff_s": self.max_backoff_s,
                "prefix": self.prefix,
                "partitions": self.partitions,
            },
        )

    async def on_kill(self) -> None:
        """The user stopped the waiting task (marked it failed or success, or cleared it): the
        fix run it waits for is cancelled too, rather than left running unwatched."""
        from airfix.airflow_glue.runs import cancel_for_airflow

        await asyncio.to_thread(
            cancel_for_airflow, self.redis_url, self.prefix, self.partitions, self.run_id
        )

    def __repr__(self) -> str:
        return (
            f"<RunFinishedTrigger run {self.run_id} on {redact(self.redis_url)} {self.stream} "
            f"after version {self.after_version}>"
        )

    def connect(self) -> aioredis.Redis:
        """A new client for each connection attempt (tests hand in fakeredis' async client here)."""
        return connect_async(self.redis_url)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        backoff = 0.2
        while True:
            client = self.connect()
            try:
                if not await client.exists(self.stream):
                    yield TriggerEvent(
                        {
                            "run_id": self.run_id,
                            "status": "error",
                            "version": 0,
                            "reason": f"run {self.run_id} has no stream {self.stream} on "
                            f"{redact(self.redis_url)} (wrong server or prefix?)",
                        }
                    )
                    return
                done = await self._last_entry_terminal(client)
                while done is None:
                    done = await self._read_new(client)
                    backoff = 0.2
                yield TriggerEvent(done)
                return
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self.log.warning(
                    "lost Redis at %s (%s); retrying in %.1fs", redact(self.redis_url), exc, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
            finally:
                await client.aclose()

    async def _last_entry_terminal(self, client: aioredis.Redis) -> dict[str, Any] | None:
        """The run's end when it is at or before ``after_version``: XREAD after it would wait forever.
        A later end is read (and logged) by :meth:`_read_new` with the events before it."""
        rows: Any = await client.xrevrange(self.stream, "+", "-", count=1)
        if not rows or id_key(as_str(rows[0][0]))[1] > self.after_version:
            return None
        entry_id, fields = rows[0]
        return finished(codec.from_fields(fields, where=self.stream, entry_id=as_str(entry_id)))

    async def _read_new(self, client: aioredis.Redis) -> dict[str, Any] | None:
        reply: Any = await client.xread(
            {self.stream: f"0-{self.after_version}"}, count=100, block=self.block_ms
        )
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                eid = as_str(entry_id)
                event = codec.from_fields(fields, where=self.stream, entry_id=eid)
                self.after_version = id_key(eid)[1]
                for line in event_lines(event):
                    self.log.info("%s", line)
                done = finished(event)
                if done is not None:
                    return done
        return None
