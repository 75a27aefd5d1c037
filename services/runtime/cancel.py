"""Stopping what a step started when its turn is over.

A step runs tools and fixers as child processes for seconds to minutes.  When the run is
cancelled, or moves on without the step (another worker took it over while this one was
frozen), those processes must stop: a fixer that goes on editing and billing for a turn that is
no longer ours is exactly the effect fencing forbids.  So each step runs under a cancel scope (a
``threading.Event`` in a context variable) that a :class:`RunWatcher` sets as soon as the run's
stream grows past the version the step started from; the process runner polls the scope and
kills the process group.  Scopes nest: one opened inside a step's stops its processes when either
is set (a check stops its test suite once a type check has condemned the tree it runs on).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

import redis

from airfix.services.runtime.logs import get_logger

log = get_logger("airfix.cancel")

CURRENT: contextvars.ContextVar[tuple[threading.Event, ...]] = contextvars.ContextVar(
    "airfix_cancel", default=()
)


def cancelled() -> bool:
    """Whether the current step's turn is over (or a scope opened within it was stopped)."""
    return any(event.is_set() for event in CURRENT.get())


@contextmanager
def scope(event: threading.Event) -> Iterator[threading.Event]:
    token = CURRENT.set((*CURRENT.get(), event))
    try:
        yield event
    finally:
        CURRENT.reset(token)


class RunWatcher:
    """Sets ``event`` when the run's stream gets an entry past ``version`` (a cancel, or another
    worker's step): one blocking ``XREAD`` at a time in a daemon thread, no busy loop."""

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        version: int,
        event: threading.Event,
        block_ms: int = 500,
    ) -> None:
        self.client, self.stream, self.version, self.event = client, stream, version, event
        self.block_ms = block_ms
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, name=f"watch-{stream}", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()  # the thread ends after its current read; nobody waits for it

    def _watch(self) -> None:
        while not self.stopped.is_set():
            try:
                grew = self.client.xread(
                    {self.stream: f"0-{self.version}"}, count=1, block=self.block_ms
                )
            except redis.RedisError as exc:  # the step goes on; its append decides in the end
                log.warning("cannot watch the run for a cancel", error=repr(exc))
                self.stopped.wait(1.0)
                continue
            if grew and not self.stopped.is_set():
                log.info(
                    "the run moved on without this step: stopping its processes",
                    stream=self.stream,
                    version=self.version,
                )
                self.event.set()
                return
