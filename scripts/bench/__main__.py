"""The benchmark's command line: which sections run, against which Redis, and the printed table
and ``--json`` file of every figure."""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table

import scripts.bench
from scripts.bench.append import bench_append
from scripts.bench.careful import bench_careful_person, careful_table
from scripts.bench.cli_ops import bench_cli_ops
from scripts.bench.common import (
    FOLD_NAME,
    NOISE_CAVEAT,
    PrivateRedis,
    Results,
    console,
    delete_prefix,
    fmt_num,
)
from scripts.bench.impact import bench_test_impact
from scripts.bench.latency import bench_latency
from scripts.bench.parallel import PARALLEL_NOTE, bench_parallel
from scripts.bench.pipeline import PIPELINE_NOTES, bench_fix_pipeline
from scripts.bench.projector import bench_projector
from scripts.bench.replay import bench_replay
from scripts.bench.scaling import bench_scaling
from scripts.bench.xadd import bench_xadd

Phase = tuple[str, Callable[[], None]]

LATENCY_NOTE = (
    "latency = from just before store.append() to the first poll (HMGET of every checkpoint, "
    "~0.2 ms apart) that shows the entry applied; poll resolution adds up to ~0.5 ms"
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m scripts.bench", description=(scripts.bench.__doc__ or "").split("\n\n")[0]
    )
    ap.add_argument("--redis-url", help="use this server instead of a private redis-server")
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    ap.add_argument(
        "--json", metavar="PATH", help="write every figure (section, name, value, unit, ratio)"
    )
    ap.add_argument("--rate", type=float, default=200.0, help="appends/s in the latency test")
    ap.add_argument(
        "--only",
        choices=("core", "ops", "pipeline", "careful", "parallel", "impact", "scaling"),
        help="core: sections 1-5 and 7 (Redis event store); ops: section 7; pipeline: section 6 "
        "(fix pipeline, no Redis needed); careful: section 8 (careful person vs airfix); "
        "parallel: section 9 (fixer.parallel 1 vs 4 with a slow fake fixer); impact: section 10 "
        "(test impact vs every test, batch verification); scaling: section 11 (1-8 worker "
        "processes on git-daemon targets); default all",
    )
    ap.add_argument(
        "--corpus",
        metavar="NAME",
        action="append",
        default=[],
        help="sections 8 and 10 on this project of the Python corpus too (tests/fixtures/corpus/"
        "python.json, e.g. six; fetched once with pip into the corpus cache); repeatable",
    )
    ap.add_argument(
        "--procs",
        type=int,
        default=max(2, min(4, os.cpu_count() or 2)),
        help="processes in the concurrent append test",
    )
    return ap.parse_args(argv)


def redis_phases(
    res: Results, args: argparse.Namespace, url: str, prefix: str, private: bool
) -> list[Phase]:
    """Sections 1-5 and 7, in the order they run."""
    client = redis.Redis.from_url(url)
    info = client.info("server")
    client.close()
    res.details["environment"].update(
        {
            "redis_version": info.get("redis_version"),
            "redis_url": url if private else "(given)",
            "private_server": private,
        }
    )
    console.log(f"redis {info.get('redis_version')} at {url} ({'private' if private else 'given'})")
    q, procs = args.quick, args.procs

    def xadd() -> None:
        with redis.Redis.from_url(url) as c:
            bench_xadd(res, url, c, prefix, q)

    phases: list[Phase] = [
        ("xadd", xadd),
        ("append", lambda: bench_append(res, url, f"{prefix}-append", q, procs)),
        ("replay", lambda: bench_replay(res, url, f"{prefix}-replay", q, procs)),
        ("projector", lambda: bench_projector(res, url, f"{prefix}-proj", q)),
        ("cli_ops", lambda: bench_cli_ops(res, url, f"{prefix}-ops", q, procs)),
        ("latency", lambda: bench_latency(res, url, f"{prefix}-lat", q, args.rate, private)),
    ]
    if args.only == "ops":
        return [p for p in phases if p[0] == "cli_ops"]
    return phases


@contextmanager
def redis_for(args: argparse.Namespace, prefix: str) -> Iterator[tuple[str, bool]]:
    """The server the Redis sections use: the given one (keys under ``prefix`` deleted after) or
    a private one (killed after); yields (url, private)."""
    if args.redis_url:
        try:
            yield args.redis_url, False
        finally:
            with redis.Redis.from_url(args.redis_url) as client:
                delete_prefix(client, prefix)
        return
    server = PrivateRedis().start()
    try:
        yield server.url, True
    finally:
        server.stop()


def in_scratch(name: str, bench: Callable[[Path], None]) -> Callable[[], None]:
    """A section that works in a temporary directory of its own, removed after it."""

    def phase() -> None:
        scratch = Path(tempfile.mkdtemp(prefix=f"airfix-bench-{name}-"))
        try:
            bench(scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    return phase


def run_phases(res: Results, phases: list[Phase]) -> None:
    res.details["phases"] = {}
    for name, run_phase in phases:
        gc.collect()
        load = os.getloadavg()[0]
        t_phase = time.perf_counter()
        run_phase()
        res.details["phases"][name] = {
            "loadavg_1m_at_start": load,
            "seconds": time.perf_counter() - t_phase,
        }


def print_table(res: Results) -> None:
    """Every figure, one band per section, then the careful-person table and the notes."""
    table = Table(title="airfix benchmark", show_lines=False)
    for col, just in (
        ("metric", "left"),
        ("value", "right"),
        ("unit", "left"),
        ("target", "right"),
        ("ratio", "right"),
        ("", "center"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    section = None
    for m in res.metrics.values():
        if m.section != section:
            if section is not None:
                table.add_section()
            section = m.section
            table.add_row(f"[bold]{section}[/]", "", "", "", "", "")
        target = (
            "-" if m.target is None else ("≥ " if m.higher_is_better else "≤ ") + fmt_num(m.target)
        )
        ratio = "-" if m.ratio is None else f"{m.ratio:.2f}x"
        status = {"PASS": "[green]PASS[/]", "MISS": "[bold red]MISS[/]", "INFO": "[dim]info[/]"}[
            m.status
        ]
        table.add_row(m.label, fmt_num(m.value), m.unit, target, ratio, status)
    out = Console(width=None if sys.stdout.isatty() else 110)
    out.print(table)
    careful = careful_table(res)
    if careful is not None:
        out.print(careful)
    for note in res.notes:
        out.print(f"- {note}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    core = args.only in (None, "core", "ops")
    pipeline = args.only in (None, "pipeline")
    careful = args.only in (None, "careful")
    impact = args.only in (None, "impact")
    parallel = args.only in (None, "parallel")
    scaling = args.only in (None, "scaling")

    from airfix.services.runtime.logs import configure_logging

    configure_logging("warning")
    prefix = f"airfixbench{os.getpid()}{uuid.uuid4().hex[:4]}"
    res = Results()
    started = time.perf_counter()
    load0 = os.getloadavg()
    res.details["environment"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": load0,
        "quick": args.quick,
        "only": args.only or "all",
        "fold": FOLD_NAME,
        "platform": platform.platform(),
    }
    console.log(
        f"{os.cpu_count()} CPUs; load {load0[0]:.2f}; {'quick' if args.quick else 'full'} run"
    )
    later: list[Phase] = []
    if pipeline:
        later.append(("pipeline", lambda: bench_fix_pipeline(res, args.quick)))
    if careful:
        later.append(
            ("careful", in_scratch("careful", lambda d: bench_careful_person(res, d, args.corpus)))
        )
    if impact:
        later.append(
            ("impact", in_scratch("impact", lambda d: bench_test_impact(res, d, args.corpus)))
        )
    if parallel:
        later.append(
            ("parallel", in_scratch("parallel", lambda d: bench_parallel(res, d, args.quick)))
        )
    if core or scaling:
        with redis_for(args, prefix) as (url, private):
            phases = redis_phases(res, args, url, prefix, private) if core else []
            if scaling:
                later.append(("scaling", lambda: bench_scaling(res, url, args.quick)))
            run_phases(res, phases + later)
    else:
        run_phases(res, later)
    add_notes(res, load0, time.perf_counter() - started, core=core, pipeline=pipeline)
    if parallel:
        res.notes.append(PARALLEL_NOTE)
    print_table(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res.as_json(), indent=2, default=str))
        console.log(f"figures written to {args.json}")
    return 0


def add_notes(
    res: Results, load0: tuple[float, ...], elapsed: float, *, core: bool, pipeline: bool
) -> None:
    load1 = os.getloadavg()
    res.details["environment"]["loadavg_end"] = load1
    res.details["environment"]["elapsed_s"] = elapsed
    if core:
        res.notes.append(f"fold used for replay: {FOLD_NAME}")
    res.notes += [
        NOISE_CAVEAT,
        f"load average {load0[0]:.2f} at start, {load1[0]:.2f} at end; {elapsed:.0f}s in total; "
        "1-minute load at each phase's start: "
        + ", ".join(
            f"{k} {v['loadavg_1m_at_start']:.1f}" for k, v in res.details.get("phases", {}).items()
        ),
    ]
    if core:
        res.notes.append(LATENCY_NOTE)
    if pipeline:
        res.notes += PIPELINE_NOTES


if __name__ == "__main__":
    sys.exit(main())
