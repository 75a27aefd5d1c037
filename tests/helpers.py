"""Helpers shared by the runtime, fault, dead-letter and retention tests.

``Recorder`` and ``append_runs`` drive the consumer runtime with a handler that fails where it is
told (a poison event parked after the delivery cap); the ``assert_*`` checks compare every live
view with a clean rebuild and count, per view, how often each event was applied (the fault
harness's ``count_applies`` counters).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import redis

from airfix.config import load_config
from airfix.events import Keys, stamp
from airfix.events.schema import RunRequested, RunStarted
from airfix.events.storage.store import EventStore, LogEntry
from airfix.projections.base import rebuild
from airfix.services.runtime.app import App
from airfix.services.runtime.consumers import RuntimeSettings
from tests.conftest import REAL_URL, real_client
from tests.fault_harness.worker import counter_key

FAST = RuntimeSettings(
    block_ms=100,
    batch_size=50,
    lease_ttl_ms=400,
    rebalance_interval_ms=50,
    delivery_cap=3,
    retry_backoff_ms=1,
    retry_backoff_max_ms=5,
    shutdown_deadline_s=5,
    heartbeat_interval_ms=100,
)


class Recorder:
    """Records (run, version) per call; fails where ``fail`` says so."""

    def __init__(
        self,
        group: str = "svc",
        ordered: bool = False,
        fail: Callable[[LogEntry], bool] = lambda e: False,
        delay_s: float = 0.0,
    ) -> None:
        self.group, self.ordered, self.fail, self.delay_s = group, ordered, fail, delay_s
        self.seen: list[tuple[str, int]] = []
        self.attempts: dict[tuple[str, str], int] = defaultdict(int)
        self.lock = threading.Lock()

    def handle(self, entries: Sequence[LogEntry]) -> None:
        for e in entries:
            assert e.event is not None
            with self.lock:
                self.attempts[(e.stream, e.entry_id)] += 1
            if self.fail(e):
                raise RuntimeError(f"cannot handle {e.event.type} v{e.event.version}")
        if self.delay_s:
            time.sleep(self.delay_s)
        with self.lock:
            self.seen += [(e.event.run_id, e.event.version) for e in entries if e.event]


def append_runs(store: EventStore, runs: int, per_run: int) -> None:
    for r in range(runs):
        run = f"r{r}"
        evs = stamp(
            [RunRequested(target="/t")] + [RunStarted(worker=str(i)) for i in range(per_run - 1)],
            run_id=run,
            expected_version=0,
        )
        store.append(run, evs, 0)


def assert_views_equal_clean_pass(app: App, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every live view's dump equals a single clean ``rebuild`` into a scratch namespace."""
    scratch = Keys(prefix=f"scratch:{app.keys.prefix}", partitions=app.keys.partitions)
    live = app.projections()
    fresh = app.projections(scratch)
    dumps: dict[str, Any] = {}
    for lv, fr in zip(live, fresh, strict=True):
        assert lv.name == fr.name
        rebuild(app.store, fr)
        expected = fr.dump()
        dumps[lv.name] = expected
        if lv.name in skip:
            continue
        assert lv.dump() == expected, (
            f"view {lv.name} of {app.keys.prefix} differs from a clean pass"
        )
        fr.clear()
    return dumps


def assert_applied_exactly_once(
    app: App, runs: list[str], *, skip: tuple[str, ...] = (), upto: dict[str, int] | None = None
) -> None:
    """Every view applied every event exactly once (the harness's ``--count-applies`` counters),
    up to version ``upto[run]`` where given (a halted run)."""
    last = {r: (upto or {}).get(r, app.store.version(r)) for r in runs}
    expected = {f"{r}:{v}": 1.0 for r in runs for v in range(1, last[r] + 1)}
    for p in app.projections():
        if p.name in skip:
            continue
        raw = app.client.zrange(counter_key(p.view_key()), 0, -1, withscores=True)
        counts = {m.decode(): n for m, n in raw}
        twice = {k: n for k, n in counts.items() if n > 1}
        assert not twice, f"{app.keys.prefix}: {p.name} applied entries more than once: {twice}"
        assert expected == counts, f"{app.keys.prefix}: {p.name} missed entries"


def poll(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Wait until ``cond()`` is truthy (Redis errors count as "not yet"); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout}s waiting for {what}"
                + (f" (last error: {last_exc!r})" if last_exc else "")
            )
        time.sleep(interval)


def app_on(client: redis.Redis) -> App:
    """An app with the default layout and config around ``client``."""
    return App(load_config(env={}), client, EventStore(client, Keys()))


@contextlib.contextmanager
def flushed_server_app() -> Iterator[App]:
    """An app on the real server's test db, flushed before and after."""
    client = real_client()
    client.flushdb()
    try:
        yield app_on(client)
    finally:
        client.flushdb()


def run_cli(
    capsys: pytest.CaptureFixture[str], *args: str, url: str | None = REAL_URL
) -> tuple[int, str, str]:
    """``airfix ARGS [--redis-url URL]`` in this process: exit code, stdout, stderr."""
    from airfix.services.commands.cli import main

    code = main([*args, "--redis-url", url] if url else list(args))
    out = capsys.readouterr()
    return code, out.out, out.err
