"""Section 7: operator commands end to end, each a fresh ``airfix`` process (start and
imports included): ``airfix replay`` of one long run and ``projections rebuild`` over a big log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from scripts.bench.common import (
    Metric,
    Results,
    console,
    delete_prefix,
    make_app,
)
from scripts.bench.runs import fill_log, long_run


def _airfix_cli(url: str, prefix: str, *args: str) -> float:
    """Wall seconds of one ``airfix`` process (start, imports, the command, exit); output discarded."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFIX")}
    env.update({"AIRFIX_REDIS_URL": url, "AIRFIX__STORE__PREFIX": prefix})
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "airfix.services.commands.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"airfix {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return wall


def bench_cli_ops(res: Results, url: str, prefix: str, quick: bool, procs: int) -> None:
    size = 20_000 if quick else 100_000
    res.begin(
        f"7. operator commands end to end: airfix replay of a {size:,}-event run, "
        "projections rebuild --check"
    )
    app = make_app(url, prefix)
    evs = long_run("bench-cli-replay", size, 11)
    for i in range(0, size, 1000):
        app.store.append("bench-cli-replay", evs[i : i + 1000], i)
    del evs
    _airfix_cli(url, prefix, "--version")  # warm the file cache
    start_s = min(_airfix_cli(url, prefix, "--version") for _ in range(3))
    for label, args in (("", ()), (" --json", ("--json",))):
        wall = min(_airfix_cli(url, prefix, "replay", "bench-cli-replay", *args) for _ in range(2))
        res.add(
            Metric(
                f"cli_replay{args[0][2:] + '_' if args else '_'}{size // 1000}k_s",
                f"airfix replay{label} of a {size:,}-event run, end to end",
                wall,
                "s",
                2.0 if size == 100_000 else None,
                higher_is_better=False,
                note=f"best of 2, output to /dev/null; `airfix --version` (interpreter, no imports) {start_s:.2f}s",
            )
        )
    delete_prefix(app.client, prefix)

    total = 100_000 if quick else 1_000_000
    t_setup = time.perf_counter()
    fill_log(url, prefix, total, procs, timeout_s=900)
    console.log(f"  setup: {total:,} events appended in {time.perf_counter() - t_setup:.1f}s")
    swap = _airfix_cli(url, prefix, "projections", "rebuild")  # builds the live views
    res.add(
        Metric(
            f"cli_rebuild_{total // 1000}k_s",
            f"airfix projections rebuild over {total:,} events",
            swap,
            "s",
            note="rebuild into scratch, compare, then rebuild the live views",
        )
    )
    check = _airfix_cli(url, prefix, "projections", "rebuild", "--check")
    res.add(
        Metric(
            f"cli_rebuild_check_{total // 1000}k_s",
            f"airfix projections rebuild --check over {total:,} events",
            check,
            "s",
            15.0 if total == 1_000_000 else None,
            higher_is_better=False,
            note=f"{total / check:,.0f} events/s; all {len(app.projections())} views, end to end",
        )
    )
    delete_prefix(app.client, prefix)
