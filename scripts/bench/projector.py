"""Section 4: how fast the projections apply a realistic log, one by one, together, and
through the full consumer path (``services.runtime.drain``).
"""

from __future__ import annotations

import time

from airfix.projections.base import ProjectionHandler, ProjectorHandler
from airfix.services.runtime.consumers import RuntimeSettings
from airfix.services.runtime.worker import drain
from scripts.bench.common import (
    Metric,
    Results,
    console,
    delete_prefix,
    make_app,
)
from scripts.bench.runs import interleave, mixed_runs


def bench_projector(res: Results, url: str, prefix: str, quick: bool) -> None:
    total = 10_000 if quick else 50_000
    res.begin(f"4. projector apply rate ({total:,} events of realistic runs)")
    app = make_app(url, prefix)
    store, client = app.store, app.client
    runs = mixed_runs("bench-proj", total, seed=5)
    calls = interleave(runs, chunk=4, width=64, seed=6)
    for run_id, evs, expected in calls:
        store.append(run_id, evs, expected)
    n_events = sum(len(e) for _, e in runs)
    del runs, calls
    logs = {store.keys.log(p): list(store.iter_log(p)) for p in range(store.keys.partitions)}
    n_log = sum(len(v) for v in logs.values())
    console.log(
        f"  log: {n_log:,} entries in {store.keys.partitions} partitions "
        f"({n_events:,} events appended)"
    )
    batch = RuntimeSettings().batch_size

    def apply_all(handler: ProjectionHandler, limit: int | None = None) -> int:
        done = 0
        for stream, entries in logs.items():
            rows = entries if limit is None else entries[:limit]
            for i in range(0, len(rows), batch):
                done += handler.apply_entries(stream, rows[i : i + batch])
        return done

    total_s = 0.0
    per: dict[str, float] = {}
    for projection in app.projections():
        handler = ProjectionHandler(projection)
        projection.clear()
        apply_all(handler, limit=500)  # warm-up on the first entries, then start over
        projection.clear()
        handler = ProjectionHandler(projection)  # a fresh handler: no cached checkpoints
        t0 = time.perf_counter()
        applied = apply_all(handler)
        dt = time.perf_counter() - t0
        if applied != n_log:
            raise SystemExit(f"{projection.name}: applied {applied} of {n_log} entries")
        total_s += dt
        per[projection.name] = n_log / dt
        res.add(
            Metric(
                f"projector_{projection.name.replace(':', '_')}_events_per_s",
                f"apply_entries: {projection.name}",
                n_log / dt,
                "events/s",
                30_000,
                note=f"batches of {batch}",
            )
        )
    res.add(
        Metric(
            "projector_all_events_per_s",
            f"apply_entries: all {len(per)} projections",
            n_log / total_s,
            "events/s",
            30_000,
            note="each event through every projection (sum of the times above)",
        )
    )

    # the full consumer path: consumer groups, XREADGROUP, halted check, apply, XACK
    for projection in app.projections():
        projection.clear()
    # the production wiring: one consumer group ("projections") fanning out to every view
    handlers = [ProjectorHandler(app.projections())]
    t0 = time.perf_counter()
    drain(store, handlers, RuntimeSettings())
    dt = time.perf_counter() - t0
    for projection in app.projections():
        got = projection.checkpoints()
        for stream, entries in logs.items():
            if entries and got.get(stream) != entries[-1].entry_id:
                raise SystemExit(
                    f"drain: {projection.name} stopped at {got.get(stream)} on {stream}"
                )
    res.add(
        Metric(
            "projector_drain_all_events_per_s",
            f"runtime.drain: all {len(app.projections())} projections, one group",
            n_log / dt,
            "events/s",
            30_000,
            note="Consumer.poll loop incl. XREADGROUP/XACK, default settings",
        )
    )
    delete_prefix(client, prefix)
