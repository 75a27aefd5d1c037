"""Section 2: ``EventStore.append`` rates, one event per call, 100 per call, and 100 per call
from several processes at once, with the Lua script's server time and the client's encoding cost.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import redis

from airfix.events.keys import Keys
from airfix.events.storage.store import EventStore
from scripts.bench.common import (
    Metric,
    Results,
    delete_prefix,
    evalsha_usec,
    make_app,
)
from scripts.bench.runs import long_run


def _append_worker(
    url: str, prefix: str, run_id: str, n: int, batch: int, seed: int, barrier: Any, out: Any
) -> None:
    client = redis.Redis.from_url(url)
    store = EventStore(client, Keys(prefix=prefix))
    events = long_run(run_id, n, seed)
    barrier.wait()
    t0 = time.perf_counter()
    for i in range(0, len(events), batch):
        store.append(run_id, events[i : i + batch], i)
    out.put((t0, time.perf_counter(), len(events)))


def bench_append(res: Results, url: str, prefix: str, quick: bool, procs: int) -> None:
    res.begin("2. EventStore.append")
    app = make_app(url, prefix)
    store, client = app.store, app.client
    n_single = 2_000 if quick else 5_000
    n_batch = 30_000 if quick else 200_000
    batch = 100

    # warm-up: script load, connection, allocator
    warm = long_run("bench-append-warm", 2_000, 1)
    for i in range(0, 1_000, 100):
        store.append("bench-append-warm", warm[i : i + 100], i)
    for ev in warm[1_000:1_200]:
        store.append("bench-append-warm", [ev], ev.version - 1)

    events = long_run("bench-append-single", n_single, 2)
    t0 = time.perf_counter()
    for ev in events:
        store.append("bench-append-single", [ev], ev.version - 1)
    single = n_single / (time.perf_counter() - t0)

    events = long_run("bench-append-batch", n_batch, 3)
    usec0, _ = evalsha_usec(client)
    t0 = time.perf_counter()
    for i in range(0, n_batch, batch):
        store.append("bench-append-batch", events[i : i + batch], i)
    dt = time.perf_counter() - t0
    usec1, _ = evalsha_usec(client)
    batched = n_batch / dt
    # client-side share: validation + encoding (codec.to_fields + codec.digest per event)
    t0 = time.perf_counter()
    for i in range(0, min(n_batch, 20_000), batch):
        store._validate("bench-append-batch", events[i : i + batch], i)
    validate_us = (time.perf_counter() - t0) / min(n_batch, 20_000) * 1e6
    del events

    # several processes, each appending its own run in 100-event batches
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(procs)
    out = ctx.Queue()
    per = n_batch // procs
    workers = [
        ctx.Process(
            target=_append_worker,
            args=(url, prefix, f"bench-append-proc{i}", per, batch, 10 + i, barrier, out),
        )
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    rows = [out.get(timeout=300) for _ in workers]
    for w in workers:
        w.join(30)
    concurrent = sum(r[2] for r in rows) / (max(r[1] for r in rows) - min(r[0] for r in rows))

    ceiling = res.metrics.get("xadd_ceiling_p16")
    target = 0.4 * ceiling.value if ceiling else None
    res.add(
        Metric(
            "append_single_events_per_s",
            "append, 1 event per call",
            single,
            "events/s",
            note=f"{n_single} sequential calls; each is one EVALSHA round trip",
        )
    )
    res.add(
        Metric(
            "append_batch100_events_per_s",
            f"append, {batch} events per call",
            batched,
            "events/s",
            target,
            note="target: 0.4 x pipelined XADD ceiling (f v)",
        )
    )
    res.add(
        Metric(
            "append_batch100_entries_per_s",
            f"append, {batch}/call, stream entries",
            2 * batched,
            "entries/s",
            note="2 XADDs per event (run stream + partition log) + 1 HSET (idempotency)",
        )
    )
    res.add(
        Metric(
            "append_batch100_concurrent_events_per_s",
            f"append, {batch}/call, {procs} processes",
            concurrent,
            "events/s",
            target,
            note=f"{procs} processes, one run each, started together",
        )
    )
    res.add(
        Metric(
            "append_lua_server_us_per_event",
            "append.lua server time per event",
            (usec1 - usec0) / n_batch,
            "us",
            note="INFO commandstats evalsha usec / events",
        )
    )
    res.add(
        Metric(
            "append_client_validate_us_per_event",
            "append client validate+encode per event",
            validate_us,
            "us",
            note="EventStore._validate: to_fields + digest per event",
        )
    )
    delete_prefix(client, prefix)
