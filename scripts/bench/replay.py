"""Section 3: replaying a big log (``read_run`` + decode + ``fold``), and the fold of one long
run in memory, which shows whether the cost per event grows with a run's length.
"""

from __future__ import annotations

import time

from scripts.bench.common import (
    FOLD_NAME,
    Metric,
    Results,
    console,
    delete_prefix,
    fold_events,
    make_app,
)
from scripts.bench.runs import fill_log, long_run


def bench_replay(res: Results, url: str, prefix: str, quick: bool, procs: int) -> None:
    total = 100_000 if quick else 1_000_000
    res.begin(f"3. replay of a {total:,}-event log (read_run + decode + fold)")
    console.log(f"fold: {FOLD_NAME}")
    app = make_app(url, prefix)
    store, client = app.store, app.client
    # setup (not timed): realistic 20-iteration runs appended through EventStore.append, one
    # call per run, by ``procs`` processes at once to keep the setup short
    t_setup = time.perf_counter()
    runs = fill_log(url, prefix, total, procs, timeout_s=600)
    n = sum(length for _, length in runs)
    console.log(
        f"  setup: {n:,} events in {len(runs):,} runs "
        f"(~{n // len(runs)} events/run) in {time.perf_counter() - t_setup:.1f}s"
    )

    page = 1000
    for run_id, _ in runs[:20]:  # warm-up
        fold_events(store.read_run(run_id, page=page))

    read_s = fold_s = 0.0
    count = 0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for run_id, length in runs:
        a = time.perf_counter()
        events = list(store.read_run(run_id, page=page))
        b = time.perf_counter()
        state = fold_events(events)
        c = time.perf_counter()
        read_s += b - a
        fold_s += c - b
        count += len(events)
        if state.version != length:
            raise SystemExit(f"replay of {run_id}: folded to version {state.version}, not {length}")
    wall = time.perf_counter() - t0
    share = (time.process_time() - cpu0) / wall
    res.details["replay_client_cpu_share"] = share
    if count != total:
        raise SystemExit(f"replay read {count} events, expected {total}")

    res.add(
        Metric(
            "replay_events_per_s",
            f"replay {total:,} events: read+decode+fold",
            count / wall,
            "events/s",
            200_000,
            note=f"{len(runs)} runs of ~{total // len(runs)} events, read_run(page={page}); "
            f"client CPU/wall {share:.2f} (< 0.9: descheduled, machine busy)",
        )
    )
    res.add(
        Metric(
            "replay_read_decode_events_per_s",
            "  of which read_run + decode",
            count / read_s,
            "events/s",
            note="XRANGE pages + redis-py parsing + msgspec decode",
        )
    )
    res.add(
        Metric(
            "replay_fold_events_per_s",
            "  of which fold",
            count / fold_s,
            "events/s",
            note=FOLD_NAME,
        )
    )
    delete_prefix(client, prefix)

    # the fold of ONE long run, in memory: shows whether the cost per event grows with length
    sizes = (10_000, 50_000) if quick else (10_000, 400_000)
    for size in sizes:
        evs = long_run(f"bench-long-{size}", size, 7)
        fold_events(evs[:2000])  # warm-up
        t0 = time.perf_counter()
        fold_events(evs)
        rate = size / (time.perf_counter() - t0)
        res.add(
            Metric(
                f"fold_long_run_{size // 1000}k_events_per_s",
                f"fold one {size:,}-event run (in memory)",
                rate,
                "events/s",
                200_000,
                note="one run, many iterations; no Redis",
            )
        )
        del evs
