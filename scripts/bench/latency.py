"""Section 5: append-to-projection latency with a ``Worker`` thread running every projection.

The appender runs open loop on a fixed schedule, so a slow consumer cannot slow it down and hide its
own latency; a poller records when each projection's checkpoint reaches each appended entry.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import redis

from airfix.events.schema import Event
from airfix.events.storage.store import EventStore
from airfix.projections.base import ProjectorHandler
from airfix.services.runtime.consumers import RuntimeSettings
from airfix.services.runtime.worker import Worker
from scripts.bench.common import (
    Metric,
    Results,
    delete_prefix,
    entry_key,
    make_app,
    percentile,
    total_commands,
)
from scripts.bench.runs import interleave, mixed_runs


def _thread_cpu_s(native_ids: list[int]) -> float | None:
    """CPU seconds (user+system) used so far by these threads of this process (Linux only)."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for tid in native_ids:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / tick
    except (OSError, ValueError, IndexError):
        return None


def start_worker(
    store: EventStore, views: list[Any], block_ms: int
) -> tuple[Worker, threading.Thread]:
    """A ``Worker`` thread with the production wiring (one group for all the views), once it owns
    its partitions."""
    worker = Worker(store, [ProjectorHandler(views)], RuntimeSettings(block_ms=block_ms))
    thread = threading.Thread(target=worker.run, name="bench-worker", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not all(c.owned for c in worker.consumers):
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("latency: the worker did not take its partitions within 15 s")
        time.sleep(0.01)
    return worker, thread


class Checkpoints:
    """Where each view's checkpoint is on each log stream, read in one pipelined round trip."""

    def __init__(self, url: str, views: list[Any], streams: list[str]) -> None:
        self.client = redis.Redis.from_url(url)
        self.keys = [p.checkpoint_key for p in views]
        self.streams = streams

    def poll(self) -> list[dict[str, tuple[int, int]]]:
        pipe = self.client.pipeline(transaction=False)
        for key in self.keys:
            pipe.hmget(key, self.streams)
        return [
            {s: entry_key(v) for s, v in zip(self.streams, row, strict=True) if v is not None}
            for row in pipe.execute()
        ]

    def wait_for(self, last: dict[str, tuple[int, int]], timeout_s: float) -> None:
        wait_until = time.monotonic() + timeout_s
        while time.monotonic() < wait_until:
            got = self.poll()
            if all(g.get(s, (0, 0)) >= e for g in got for s, e in last.items()):
                return
            time.sleep(0.001)


class Appender:
    """Appends one event per call on a fixed schedule (open loop) in its own thread, recording
    when each append started and which log entry it made."""

    def __init__(self, store: EventStore, calls: list[tuple[str, list[Event], int]], rate: float):
        self.store, self.calls, self.rate = store, calls, rate
        self.appended: list[tuple[float, str, tuple[int, int]]] = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.lateness: list[float] = []
        self.taken = 0

    def run(self) -> None:
        t0 = time.perf_counter()
        for i, (run_id, evs, expected) in enumerate(self.calls):
            delay = t0 + i / self.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                self.lateness.append(-delay)
            ts = time.perf_counter()
            pos = self.store.append(run_id, evs, expected).positions[0]
            with self.lock:
                self.appended.append((ts, self.store.keys.log_of(run_id), entry_key(pos.log_entry)))
        self.done.set()

    def new(self) -> list[tuple[float, str, tuple[int, int]]]:
        with self.lock:
            out = self.appended[self.taken :]
            self.taken = len(self.appended)
        return out

    def finished(self) -> bool:
        return self.done.is_set() and self.taken == len(self.calls)


class Tracker:
    """Appended entries not yet applied by every view, and the latencies of those that were."""

    def __init__(self, n_views: int, timeout_s: float = 10.0) -> None:
        self.n_views = n_views
        self.timeout_s = timeout_s
        self.lat: list[list[float]] = [[] for _ in range(n_views)]  # per view, seconds
        self.worst: list[float] = []  # all views caught up
        self.open: list[list[Any]] = []  # [ts, stream, entry, views left, slowest so far]
        self.timed_out = 0

    def add(self, new: list[tuple[float, str, tuple[int, int]]]) -> None:
        for ts, stream, entry in new:
            self.open.append([ts, stream, entry, set(range(self.n_views)), 0.0])

    def settle(self, got: list[dict[str, tuple[int, int]]], now: float) -> None:
        still = []
        for item in self.open:
            ts, stream, entry, left, _ = item
            for j in list(left):
                if got[j].get(stream, (0, 0)) >= entry:
                    self.lat[j].append(now - ts)
                    left.discard(j)
                    item[4] = max(item[4], now - ts)
            if not left:
                self.worst.append(item[4])
            elif now - ts > self.timeout_s:
                self.timed_out += 1
                self.worst.append(now - ts)
            else:
                still.append(item)
        self.open = still


def consumer_thread_ids() -> list[int]:
    return [
        t.native_id
        for t in threading.enumerate()
        if (t.name.startswith("consumer:") or t.name == "heartbeat") and t.native_id is not None
    ]


def measure_latency(
    url: str,
    prefix: str,
    *,
    projections: list[str] | None,
    rate: float,
    duration_s: float,
    block_ms: int,
) -> dict[str, Any]:
    app = make_app(url, prefix)
    store, client = app.store, app.client
    views = [p for p in app.projections() if projections is None or p.name in projections]
    worker, worker_thread = start_worker(store, views, block_ms)

    n = int(rate * duration_s)
    warm_n = 60
    runs = mixed_runs("bench-lat", n + warm_n + 200, seed=9)
    calls = [(r, [e], e.version - 1) for r, evs, _ in interleave(runs, 1, 24, seed=10) for e in evs]
    warm, calls = calls[:warm_n], calls[warm_n : warm_n + n]
    checkpoints = Checkpoints(url, views, store.keys.logs())

    # warm-up: a few events through the whole path
    last: dict[str, tuple[int, int]] = {}
    for run_id, evs, expected in warm:
        pos = store.append(run_id, evs, expected).positions[0]
        last[store.keys.log_of(run_id)] = entry_key(pos.log_entry)
    checkpoints.wait_for(last, timeout_s=15)

    # measured window: appender thread (open loop), this thread polls the checkpoints
    appender = Appender(store, calls, rate)
    tracker = Tracker(len(views))
    tids = consumer_thread_ids()
    cpu0 = _thread_cpu_s(tids)
    cmds0 = total_commands(client)
    polls = 0
    t_start = time.perf_counter()
    threading.Thread(target=appender.run, name="bench-appender", daemon=True).start()
    while True:
        tracker.add(appender.new())
        if not tracker.open and appender.finished():
            break
        got = checkpoints.poll()
        polls += 1
        tracker.settle(got, time.perf_counter())
        time.sleep(0.0002)
    window = time.perf_counter() - t_start
    cpu1 = _thread_cpu_s(tids)
    cmds1 = total_commands(client)
    worker.stop()
    worker_thread.join(15)
    checkpoints.client.close()
    delete_prefix(client, prefix)
    worst = sorted(tracker.worst)
    per = {}
    for p, values in zip(views, tracker.lat, strict=True):
        values.sort()
        per[p.name] = {
            "p50_ms": percentile(values, 0.5) * 1e3,
            "p99_ms": percentile(values, 0.99) * 1e3,
            "max_ms": values[-1] * 1e3 if values else float("nan"),
            "n": len(values),
        }
    return {
        "n": len(worst),
        "timed_out": tracker.timed_out,
        "rate_target": rate,
        "rate_achieved": len(calls) / window,
        "appender_late_max_ms": max(appender.lateness) * 1e3 if appender.lateness else 0.0,
        "p50_ms": percentile(worst, 0.5) * 1e3,
        "p90_ms": percentile(worst, 0.9) * 1e3,
        "p99_ms": percentile(worst, 0.99) * 1e3,
        "max_ms": worst[-1] * 1e3 if worst else float("nan"),
        "per_projection": per,
        "polls": polls,
        "worker_cpu_ms_per_event": (
            (cpu1 - cpu0) / len(calls) * 1e3 if cpu0 is not None and cpu1 is not None else None
        ),
        "redis_commands_per_event": (cmds1 - cmds0 - polls * len(views)) / len(calls),
        "projections": [p.name for p in views],
    }


def bench_latency(
    res: Results, url: str, prefix: str, quick: bool, rate: float, private: bool
) -> None:
    duration = 2.0 if quick else 4.0
    block_ms = 5
    res.begin(
        f"5. append-to-projection latency ({rate:.0f} appends/s for {duration:.0f}s, "
        f"Worker thread, block_ms={block_ms})"
    )
    full = measure_latency(
        url, f"{prefix}-a", projections=None, rate=rate, duration_s=duration, block_ms=block_ms
    )
    res.details["latency_all_projections"] = full
    k = len(full["projections"])
    note = (
        f"{full['n']} appends at {full['rate_achieved']:.0f}/s (target {rate:.0f}/s), "
        f"open loop; {full['timed_out']} timed out"
    )
    res.add(
        Metric(
            "latency_all_p50_ms",
            f"latency p50, all {k} projections caught up",
            full["p50_ms"],
            "ms",
            note=note,
            higher_is_better=False,
        )
    )
    res.add(
        Metric(
            "latency_all_p99_ms",
            f"latency p99, all {k} projections caught up",
            full["p99_ms"],
            "ms",
            5.0,
            higher_is_better=False,
            note=note,
        )
    )
    for name, row in full["per_projection"].items():
        res.add(
            Metric(
                f"latency_{name.replace(':', '_')}_p99_ms",
                f"  p99 of {name}",
                row["p99_ms"],
                "ms",
                5.0,
                higher_is_better=False,
                note=f"p50 {row['p50_ms']:.2f} ms; same run as above",
            )
        )
    if full["worker_cpu_ms_per_event"] is not None:
        res.add(
            Metric(
                "latency_worker_cpu_ms_per_event",
                "worker CPU per appended event",
                full["worker_cpu_ms_per_event"],
                "ms",
                note=f"consumer+heartbeat threads; {k} consumers",
            )
        )
    if private:
        res.add(
            Metric(
                "latency_redis_cmds_per_event",
                "redis commands per appended event",
                full["redis_commands_per_event"],
                "cmds",
                note="INFO commandstats delta (Lua-internal calls included), polls excluded",
            )
        )

    # diagnostic: the same with ONE projection in the worker, to separate per-consumer overhead
    one = measure_latency(
        url,
        f"{prefix}-b",
        projections=["task_queue"],
        rate=rate,
        duration_s=duration / 2,
        block_ms=block_ms,
    )
    res.details["latency_task_queue_only"] = one
    res.add(
        Metric(
            "latency_one_projection_p50_ms",
            "latency p50, worker with task_queue only",
            one["p50_ms"],
            "ms",
            higher_is_better=False,
            note=f"{one['n']} appends; diagnostic",
        )
    )
    res.add(
        Metric(
            "latency_one_projection_p99_ms",
            "latency p99, worker with task_queue only",
            one["p99_ms"],
            "ms",
            5.0,
            higher_is_better=False,
            note="diagnostic",
        )
    )
