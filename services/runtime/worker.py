"""A worker process: one consumer per group it hosts, each on its own thread, a heartbeat that
keeps their leases, a clean stop on SIGTERM/SIGINT (no new fetches, in-flight work finished)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog

from airfix.events.storage.store import EventStore
from airfix.services.runtime.consumers import (
    Consumer,
    ConsumerStats,
    Handler,
    RuntimeSettings,
    consumer_name,
)

log = structlog.get_logger("airfix.runtime")


@dataclass
class Worker:
    """Hosts one consumer per handler, each in its own thread; SIGTERM drains and exits."""

    store: EventStore
    handlers: Sequence[Handler]
    settings: RuntimeSettings = field(default_factory=RuntimeSettings)
    name: str = field(default_factory=consumer_name)

    def __post_init__(self) -> None:
        self.stop_event = threading.Event()
        self.consumers = [
            Consumer(self.store, h, self.settings, name=self.name, stop=self.stop_event)
            for h in self.handlers
        ]
        self.errors: list[BaseException] = []

    def stop(self, *_: Any) -> None:
        if not self.stop_event.is_set():
            log.info("worker stopping: no new fetches, finishing in-flight work", worker=self.name)
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _heartbeat_loop(self) -> None:
        interval = self.settings.heartbeat_interval_ms / 1000
        while not self.stop_event.wait(interval):
            for c in self.consumers:
                try:
                    c.heartbeat()
                except redis.RedisError as exc:  # timeouts too: the next beat tries again
                    log.warning("heartbeat failed; will retry", error=repr(exc))

    def run(self, *, burst: bool = False) -> list[ConsumerStats]:
        """Run every consumer until stopped (or until all are idle, with ``burst``)."""
        threads = [
            threading.Thread(
                target=self._run_one, args=(c, burst), name=f"consumer:{c.group}", daemon=True
            )
            for c in self.consumers
        ]
        hb = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        hb.start()
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads) and not self.stop_event.is_set():
                for t in threads:
                    t.join(0.2)
        finally:
            self.stop_event.set()
            deadline = time.monotonic() + self.settings.shutdown_deadline_s
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            stuck = [t.name for t in threads if t.is_alive()]
            if stuck:
                log.error(
                    "shutdown deadline passed; unfinished entries stay pending for reclaim",
                    consumers=stuck,
                )
        if self.errors:
            raise self.errors[0]
        return [c.stats for c in self.consumers]

    def _run_one(self, consumer: Consumer, burst: bool) -> None:
        backoff = 0.1
        polls_at_failure = -1
        while not self.stop_event.is_set():
            try:
                consumer.run(burst=burst)
                return
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
                if consumer.polls != polls_at_failure:  # it worked since the last outage
                    backoff = 0.1
                polls_at_failure = consumer.polls
                log.warning(
                    "redis unavailable; reconnecting",
                    group=consumer.group,
                    error=repr(exc),
                    retry_in_s=round(backoff, 2),
                )
                consumer.owned.clear()  # leases may have expired meanwhile; rebalance re-takes them
                consumer._next_rebalance = 0.0
                consumer._groups_ready = False  # a restarted server may have lost the groups
                if self.stop_event.wait(backoff):
                    return
                backoff = min(backoff * 2, 5.0)
            except BaseException as exc:  # a bug in the runtime itself: stop everything, loudly
                log.exception("consumer crashed", group=consumer.group)
                self.errors.append(exc)
                self.stop_event.set()
                return


def drain(
    store: EventStore,
    handlers: Iterable[Handler],
    settings: RuntimeSettings | None = None,
    *,
    on_idle: Callable[[], bool] | None = None,
) -> None:
    """Run every handler in this thread until no group has anything left (tests, embedded runs)."""
    consumers = [Consumer(store, h, settings) for h in handlers]
    try:
        while True:
            n = sum(c.poll(block=False) for c in consumers)
            if n == 0 and (on_idle is None or not on_idle()):
                return
    finally:
        for c in consumers:
            c.release_all()
