#!/usr/bin/env python
"""airfix performance benchmark: one run against a real Redis, figures and ratios against targets.

    python scripts/bench.py [--redis-url URL] [--quick] [--json FILE] [--rate N]

Without ``--redis-url`` a private throwaway ``redis-server --save '' --appendonly no`` is started on
a free port (so a shared server on 6379 is not disturbed) and killed at the end.  With
``--redis-url`` every key goes under a unique ``airfixbench...`` prefix and is deleted afterwards;
nothing is flushed.

What is measured (``--quick`` shrinks every size, not the method):

1. ``redis-benchmark`` XADD ceiling on the same server, unpipelined (-P 1) and pipelined (-P 16).
2. ``EventStore.append``: one event per call, 100 events per call, and 100-event batches from
   several processes at once.  Each event is 2 stream entries + 1 HSET (plus the Lua checks).
3. Replay: ``store.read_run(run, page=1000)`` (decode included) + ``machine.fold`` over a log of
   1,000,000 events (100,000 with --quick) made of realistic 20-iteration runs; the fold of one long
   run is measured too (in memory) because its cost per event grows with the run's length.
4. Projector apply rate: ``ProjectionHandler.apply_entries`` (200-entry batches, the runtime's
   default batch size) for every projection of ``App.projections()``, alone and all together, and
   the full consumer path (``services.runtime.drain``).
5. Append-to-projection latency: a ``Worker`` thread runs every projection handler (block_ms=5);
   an appender appends one event at a time on a fixed schedule (open loop, so a slow consumer
   cannot slow the appender down and hide its own latency); a poller records when each
   projection's checkpoint reaches each appended log entry.

Timings use ``time.perf_counter`` after a warm-up.  The machine this was written on has 2 shared
cores running redis-server, this client and whatever else runs there: expect +-20% between runs.
Nothing here tunes itself to pass: a target that is missed is printed as MISS.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from rich.console import Console
from rich.table import Table

from airfix.config import load_config
from airfix.events import stamp
from airfix.events.keys import Keys
from airfix.events.schema import (
    BatchPlanned,
    Committed,
    Event,
    FixApplied,
    FixFailed,
    FixRolledBack,
    FixStarted,
    HealthChecked,
    IssueRecord,
    IssuesDiscovered,
    IterationCompleted,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunRequested,
    RunStarted,
    ToolResult,
)
from airfix.events.store import EventStore
from airfix.projections.base import ProjectionHandler
from airfix.services.app import App, build_app
from airfix.services.runtime import RuntimeSettings, Worker, drain

console = Console(stderr=True)
NOISE_CAVEAT = (
    "Noise: this machine has 2 shared cores; redis-server, this Python client, the projection "
    "worker and other sessions' processes compete for them. Expect +-20% run to run; compare "
    "ratios, not the last digit."
)

# ----------------------------------------------------------------------------- the fold to time

try:  # the pure state machine, when it is there and importable
    from airfix.events.machine import fold as _machine_fold

    FOLD_NAME = "airfix.events.machine.fold (strict evolve of RunState)"
except Exception as _exc:  # noqa: BLE001 - any import problem means "not available"
    _machine_fold = None
    FOLD_NAME = f"per-type Counter (airfix.events.machine not usable: {_exc!r})"


def fold_events(events: Iterable[Event]) -> Any:
    if _machine_fold is not None:
        return _machine_fold(events)
    return Counter(type(e).__name__ for e in events)


# ----------------------------------------------------------------------------- private redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A throwaway redis-server without persistence on a free port (cf. tests/redis_procs.py)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed; install it or pass --redis-url")
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="airfix-bench-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    client.close()
                    return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                time.sleep(0.05)
        self.stop()
        raise SystemExit(
            f"redis-server on port {self.port} did not start; see {self.dir}/redis.log"
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------------- results


@dataclass
class Metric:
    name: str
    label: str
    value: float
    unit: str
    target: float | None = None
    higher_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.target is None or self.target <= 0:
            return None
        return self.value / self.target

    @property
    def status(self) -> str:
        if self.target is None:
            return "INFO"
        ok = self.value >= self.target if self.higher_is_better else self.value <= self.target
        return "PASS" if ok else "MISS"

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": self.value,
            "unit": self.unit,
            "target": self.target,
            "direction": "higher_is_better" if self.higher_is_better else "lower_is_better",
            "ratio": self.ratio,
            "status": self.status,
            "note": self.note,
        }


@dataclass
class Results:
    metrics: dict[str, Metric] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, m: Metric) -> Metric:
        self.metrics[m.name] = m
        mark = {"PASS": "[green]PASS[/]", "MISS": "[red]MISS[/]", "INFO": "[dim]info[/]"}[m.status]
        console.log(f"  {m.label}: {fmt_num(m.value)} {m.unit}  {mark}")
        return m


def fmt_num(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


# ----------------------------------------------------------------------------- realistic runs

PHASES = ("build", "test", "lint")


def run_payloads(
    run_id: str, rng: random.Random, *, iterations: int, batches: int, ending: str = "completed"
) -> list[Event]:
    """One legal run (for the strict state machine) with realistic payloads.

    ``ending``: "completed" (all iterations, then RunCompleted), "failed" (RunFailed right after
    the last iteration's health check), "cancelled" (RunCancelled after the last iteration's
    batches are planned) or "open" (no terminal event).
    """
    p: list[Event] = [
        RunRequested(
            target=f"/repos/{run_id}",
            batching="smart",
            fixer="autofix",
            requested_by="bench",
            config={"batch_sizes": {"lint_fixes": batches}},
        ),
        RunStarted(worker="bench-worker-1", base_sha="9f3c2a1b" * 5, branch=f"airfix/{run_id}"),
    ]
    commits = 0
    issues_before = 0
    for k in range(1, iterations + 1):
        n_issues = 2 * batches + rng.randrange(3)
        p.append(
            HealthChecked(
                iteration=k,
                score=round(0.4 + 0.5 * k / iterations, 3),
                parts={"build": 1.0, "test": 0.9, "lint": round(0.3 + 0.05 * k, 3)},
                tools=[
                    ToolResult(
                        tool="ruff",
                        status="failed",
                        version="0.6.9",
                        command=["ruff", "check", "."],
                        exit_status=1,
                        counts={"error": n_issues},
                        duration_s=0.8,
                    ),
                    ToolResult(
                        tool="pytest",
                        status="passed",
                        version="8.3.3",
                        command=["pytest", "-q"],
                        exit_status=0,
                        counts={"passed": 212, "failed": 0},
                        duration_s=14.2,
                    ),
                ],
            )
        )
        if ending == "failed" and k == iterations:
            p.append(RunFailed(reason="ruff crashed", status="tool_error", failed_tools=["ruff"]))
            return stamp(p, run_id=run_id, expected_version=0)
        issues = [
            IssueRecord(
                issue_id=f"{run_id}:{k}:i{n}",
                fingerprint=f"fp{k}{n:04d}",
                tool="ruff",
                phase=PHASES[n % 3],
                file=f"src/pkg/mod{n % 7}.py",
                line=10 + n,
                column=1,
                rule="F401",
                message="`os` imported but unused",
            )
            for n in range(n_issues)
        ]
        if k == 1:
            issues_before = n_issues
        p.append(IssuesDiscovered(iteration=k, issues=issues))
        ids = [f"{run_id}/i{k}/b{j}" for j in range(batches)]
        for j, b in enumerate(ids):
            mine = [i.issue_id for i in issues[2 * j : 2 * j + 2]]
            p.append(
                BatchPlanned(
                    iteration=k,
                    batch_id=b,
                    phase=PHASES[(j + k) % 3],
                    mode="smart",
                    issue_ids=mine,
                    priority=1 + j % 5,
                    description=f"F401 in src/pkg/mod{j}.py",
                    files=[f"src/pkg/mod{j}.py"],
                )
            )
        if ending == "cancelled" and k == iterations:
            p.append(RunCancelled(reason="operator request", requested_by="bench"))
            return stamp(p, run_id=run_id, expected_version=0)
        committed = rolled = failed = 0
        for b in ids:
            for attempt in (1, 2):
                p.append(FixStarted(batch_id=b, fixer="autofix", attempt=attempt, worker="w1"))
                r = rng.random()
                if r < 0.15:
                    p.append(
                        FixFailed(
                            batch_id=b,
                            fixer="autofix",
                            reason="fixer exited 1",
                            duration_s=3.1,
                            cost_usd=0.01,
                            turns=2,
                        )
                    )
                    failed += 1
                elif r < 0.3:
                    p.append(
                        FixApplied(
                            batch_id=b,
                            fixer="autofix",
                            files_changed=[f"{b}.py"],
                            duration_s=5.2,
                            cost_usd=0.02,
                            turns=3,
                        )
                    )
                    p.append(
                        FixRolledBack(
                            batch_id=b,
                            reason="tests regressed",
                            reset_to="9f3c2a1b",
                            regressions=["test_mod.py::t1"],
                        )
                    )
                    rolled += 1
                else:
                    p.append(
                        FixApplied(
                            batch_id=b,
                            fixer="autofix",
                            files_changed=[f"{b}.py"],
                            duration_s=4.7,
                            cost_usd=0.02,
                            turns=3,
                        )
                    )
                    commits += 1
                    committed += 1
                    p.append(
                        Committed(
                            batch_id=b,
                            sha=f"{commits:040x}",
                            message=f"fix {b}",
                            files=[f"{b}.py"],
                            counts_before={"lint": 9},
                            counts_after={"lint": 7},
                        )
                    )
                    break
                if rng.random() < 0.5:
                    break  # give up on this batch for this iteration
        p.append(
            IterationCompleted(
                iteration=k,
                committed=committed,
                rolled_back=rolled,
                failed=failed,
                score=round(0.5 + 0.4 * k / iterations, 3),
                issues_remaining=max(0, n_issues - 2 * committed),
                progress=committed > 0,
            )
        )
    if ending == "completed":
        p.append(
            RunCompleted(
                status="partially_fixed",
                reason=f"max iterations ({iterations})",
                issues_before=issues_before,
                issues_after=2,
                commits=commits,
            )
        )
    return stamp(p, run_id=run_id, expected_version=0)


def mixed_runs(prefix: str, total: int, seed: int) -> list[tuple[str, list[Event]]]:
    """Runs of varied shape (1-4 iterations, 2-5 batches, all endings) totalling >= ``total``."""
    rng = random.Random(seed)
    out: list[tuple[str, list[Event]]] = []
    n = 0
    i = 0
    while n < total:
        run_id = f"{prefix}-{i:06d}"
        ending = rng.choices(["completed", "failed", "cancelled", "open"], [75, 10, 10, 5])[0]
        evs = run_payloads(
            run_id, rng, iterations=rng.randint(1, 4), batches=rng.randint(2, 5), ending=ending
        )
        out.append((run_id, evs))
        n += len(evs)
        i += 1
    return out


def interleave(
    runs: list[tuple[str, list[Event]]], chunk: int, width: int, seed: int
) -> list[tuple[str, list[Event], int]]:
    """Append calls (run, events, expected_version) with ``width`` runs in flight at a time."""
    rng = random.Random(seed)
    pending = list(reversed(runs))
    active: list[list[Any]] = []
    calls: list[tuple[str, list[Event], int]] = []
    while pending or active:
        while pending and len(active) < width:
            run_id, evs = pending.pop()
            active.append([run_id, evs, 0])
        slot = active[rng.randrange(len(active))]
        run_id, evs, pos = slot
        calls.append((run_id, evs[pos : pos + chunk], pos))
        slot[2] = pos + chunk
        if slot[2] >= len(evs):
            active.remove(slot)
    return calls


# ----------------------------------------------------------------------------- helpers


def make_app(url: str, prefix: str) -> App:
    config = load_config(overrides={"store.prefix": prefix, "store.redis_url": url}, env={})
    return build_app(config, redis_url=url)


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    n = 0
    for pattern in (f"{prefix}*", f"{{{prefix}*"):
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=5000):
            batch.append(key)
            if len(batch) >= 1000:
                n += client.unlink(*batch)
                batch = []
        if batch:
            n += client.unlink(*batch)
    return n


def entry_key(entry_id: str | bytes) -> tuple[int, int]:
    s = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)


def evalsha_usec(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("usec", 0)), int(stats.get("calls", 0))


def total_commands(client: redis.Redis) -> int:
    return sum(int(v.get("calls", 0)) for v in client.info("commandstats").values())


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


# ----------------------------------------------------------------------------- 1. XADD ceiling

_RPS = re.compile(r"([0-9]+(?:\.[0-9]+)?) requests per second")


def redis_benchmark(url: str, args: list[str]) -> float:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise RuntimeError("redis-benchmark is not installed (it comes with redis-server)")
    u = urllib.parse.urlparse(url)
    cmd = [binary, "-h", u.hostname or "127.0.0.1", "-p", str(u.port or 6379)]
    if u.password:
        cmd += ["-a", urllib.parse.unquote(u.password), "--no-auth-warning"]
    if u.username and u.password:
        cmd += ["--user", urllib.parse.unquote(u.username)]
    db = (u.path or "/0").lstrip("/") or "0"
    if db != "0":
        cmd += ["--dbnum", db]
    out = subprocess.run(cmd + args, capture_output=True, text=True, timeout=300, check=False)
    text = out.stdout.replace("\r", "\n")
    found = _RPS.findall(text)
    if out.returncode != 0 or not found:
        raise RuntimeError(f"redis-benchmark failed ({out.returncode}): {out.stderr.strip()[:300]}")
    return float(found[-1])


def bench_xadd(res: Results, url: str, client: redis.Redis, prefix: str, quick: bool) -> None:
    console.rule("1. redis-benchmark XADD ceiling")
    key = f"{prefix}:xadd_ceiling"
    n1, n16 = (30_000, 100_000) if quick else (100_000, 500_000)
    base = ["-c", "50", "-q", "XADD", key, "*", "f", "v"]
    redis_benchmark(url, ["-n", "5000", "-P", "16", *base])  # warm-up
    client.delete(key)
    p1 = redis_benchmark(url, ["-n", str(n1), "-P", "1", *base])
    client.delete(key)
    p16 = redis_benchmark(url, ["-n", str(n16), "-P", "16", *base])
    client.delete(key)
    big = redis_benchmark(
        url, ["-n", str(n16 // 2), "-c", "50", "-P", "16", "-q", "XADD", key, "*", "f", "x" * 300]
    )
    client.delete(key)
    res.add(
        Metric(
            "xadd_ceiling_p1",
            "XADD ceiling, -P 1 (f v)",
            p1,
            "req/s",
            note=f"redis-benchmark -n {n1} -c 50 -P 1",
        )
    )
    res.add(
        Metric(
            "xadd_ceiling_p16",
            "XADD ceiling, -P 16 (f v)",
            p16,
            "req/s",
            note=f"redis-benchmark -n {n16} -c 50 -P 16",
        )
    )
    res.add(
        Metric(
            "xadd_ceiling_p16_300b",
            "XADD ceiling, -P 16, 300-byte value",
            big,
            "req/s",
            note="closer to an event entry's size (events are 230-1,100 bytes of JSON)",
        )
    )


# ----------------------------------------------------------------------------- 2. append


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


def long_run(run_id: str, n: int, seed: int) -> list[Event]:
    """One legal run of exactly ``n`` events (truncated; no terminal event needed)."""
    rng = random.Random(seed)
    iterations = n // 12 + 2  # >= 12 events per iteration
    return run_payloads(run_id, rng, iterations=iterations, batches=3, ending="open")[:n]


def bench_append(res: Results, url: str, prefix: str, quick: bool, procs: int) -> None:
    console.rule("2. EventStore.append")
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


# ----------------------------------------------------------------------------- 3. replay


def _replay_setup_worker(url: str, prefix: str, k: int, quota: int, out: Any) -> None:
    """Append ``quota`` events as 20-iteration runs (the last one cut short); report the runs."""
    store = EventStore(redis.Redis.from_url(url), Keys(prefix=prefix))
    rng = random.Random(1000 + k)
    runs: list[tuple[str, int]] = []
    n = 0
    while n < quota:
        run_id = f"bench-replay-{k}-{len(runs):05d}"
        evs = run_payloads(run_id, rng, iterations=20, batches=3)[: quota - n]
        store.append(run_id, evs, 0)  # one call per run
        runs.append((run_id, len(evs)))
        n += len(evs)
    out.put(runs)


def bench_replay(res: Results, url: str, prefix: str, quick: bool, procs: int) -> None:
    total = 100_000 if quick else 1_000_000
    console.rule(f"3. replay of a {total:,}-event log (read_run + decode + fold)")
    console.log(f"fold: {FOLD_NAME}")
    app = make_app(url, prefix)
    store, client = app.store, app.client
    # setup (not timed): realistic 20-iteration runs appended through EventStore.append, one
    # call per run, by ``procs`` processes at once to keep the setup short
    t_setup = time.perf_counter()
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    quotas = [total // procs + (1 if k < total % procs else 0) for k in range(procs)]
    workers = [
        ctx.Process(target=_replay_setup_worker, args=(url, prefix, k, q, out))
        for k, q in enumerate(quotas)
    ]
    for w in workers:
        w.start()
    runs: list[tuple[str, int]] = []
    for _ in workers:
        runs += out.get(timeout=600)
    for w in workers:
        w.join(30)
        if w.exitcode != 0:
            raise SystemExit(f"replay setup process failed (exit {w.exitcode})")
    runs.sort()
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
        if _machine_fold is not None and state.version != length:
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


# ----------------------------------------------------------------------------- 4. projector


def bench_projector(res: Results, url: str, prefix: str, quick: bool) -> None:
    total = 10_000 if quick else 50_000
    console.rule(f"4. projector apply rate ({total:,} events of realistic runs)")
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
    handlers = [ProjectionHandler(p) for p in app.projections()]
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
            f"runtime.drain: all {len(handlers)} projections",
            n_log / dt,
            "events/s",
            30_000,
            note="Consumer.poll loop incl. XREADGROUP/XACK, default settings",
        )
    )
    delete_prefix(client, prefix)


# ----------------------------------------------------------------------------- 5. latency


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
    worker = Worker(
        store, [ProjectionHandler(p) for p in views], RuntimeSettings(block_ms=block_ms)
    )
    worker_thread = threading.Thread(target=worker.run, name="bench-worker", daemon=True)
    worker_thread.start()
    deadline = time.monotonic() + 15
    while not all(c.owned for c in worker.consumers):
        if time.monotonic() > deadline or not worker_thread.is_alive():
            raise SystemExit("latency: the worker did not take its partitions within 15 s")
        time.sleep(0.01)

    n = int(rate * duration_s)
    warm_n = 60
    runs = mixed_runs("bench-lat", n + warm_n + 200, seed=9)
    calls = [(r, [e], e.version - 1) for r, evs, _ in interleave(runs, 1, 24, seed=10) for e in evs]
    warm, calls = calls[:warm_n], calls[warm_n : warm_n + n]
    poller = redis.Redis.from_url(url)
    ckpt_keys = [p.checkpoint_key for p in views]
    streams = store.keys.logs()

    def poll() -> list[dict[str, tuple[int, int]]]:
        pipe = poller.pipeline(transaction=False)
        for key in ckpt_keys:
            pipe.hmget(key, streams)
        out = []
        for row in pipe.execute():
            out.append({s: entry_key(v) for s, v in zip(streams, row) if v is not None})
        return out

    # warm-up: a few events through the whole path
    last: dict[str, tuple[int, int]] = {}
    for run_id, evs, expected in warm:
        pos = store.append(run_id, evs, expected).positions[0]
        last[store.keys.log_of(run_id)] = entry_key(pos.log_entry)
    wait_until = time.monotonic() + 15
    while time.monotonic() < wait_until:
        got = poll()
        if all(g.get(s, (0, 0)) >= e for g in got for s, e in last.items()):
            break
        time.sleep(0.001)

    # measured window: appender thread (open loop), this thread polls the checkpoints
    appended: list[tuple[float, str, tuple[int, int]]] = []
    lock = threading.Lock()
    done = threading.Event()
    lateness: list[float] = []

    def appender() -> None:
        t0 = time.perf_counter()
        for i, (run_id, evs, expected) in enumerate(calls):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                lateness.append(-delay)
            ts = time.perf_counter()
            pos = store.append(run_id, evs, expected).positions[0]
            with lock:
                appended.append((ts, store.keys.log_of(run_id), entry_key(pos.log_entry)))
        done.set()

    consumer_tids = [
        t.native_id
        for t in threading.enumerate()
        if t.name.startswith("consumer:") or t.name == "heartbeat"
    ]
    cpu0 = _thread_cpu_s([t for t in consumer_tids if t is not None])
    cmds0 = total_commands(client)
    lat: list[list[float]] = [[] for _ in views]  # per projection, seconds
    worst: list[float] = []  # all projections caught up
    open_: list[list[Any]] = []  # [ts, stream, entry, remaining projection indexes, per-proj]
    taken = 0
    polls = 0
    t_start = time.perf_counter()
    appender_thread = threading.Thread(target=appender, name="bench-appender", daemon=True)
    appender_thread.start()
    timeout_s = 10.0
    timed_out = 0
    while True:
        with lock:
            new = appended[taken:]
            taken = len(appended)
        for ts, stream, entry in new:
            open_.append([ts, stream, entry, set(range(len(views))), 0.0])
        if not open_ and done.is_set() and taken == len(calls):
            break
        got = poll()
        now = time.perf_counter()
        polls += 1
        still = []
        for item in open_:
            ts, stream, entry, left, _ = item
            for j in list(left):
                if got[j].get(stream, (0, 0)) >= entry:
                    lat[j].append(now - ts)
                    left.discard(j)
                    item[4] = max(item[4], now - ts)
            if not left:
                worst.append(item[4])
            elif now - ts > timeout_s:
                timed_out += 1
                worst.append(now - ts)
            else:
                still.append(item)
        open_ = still
        time.sleep(0.0002)
    window = time.perf_counter() - t_start
    cpu1 = _thread_cpu_s([t for t in consumer_tids if t is not None])
    cmds1 = total_commands(client)
    worker.stop()
    worker_thread.join(15)
    poller.close()
    delete_prefix(client, prefix)
    worst.sort()
    per = {}
    for p, values in zip(views, lat):
        values.sort()
        per[p.name] = {
            "p50_ms": percentile(values, 0.5) * 1e3,
            "p99_ms": percentile(values, 0.99) * 1e3,
            "max_ms": values[-1] * 1e3 if values else float("nan"),
            "n": len(values),
        }
    return {
        "n": len(worst),
        "timed_out": timed_out,
        "rate_target": rate,
        "rate_achieved": len(calls) / window,
        "appender_late_max_ms": max(lateness) * 1e3 if lateness else 0.0,
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
    console.rule(
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


# ----------------------------------------------------------------------------- main


def print_table(res: Results) -> None:
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
    for m in res.metrics.values():
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
    for note in res.notes:
        out.print(f"- {note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", help="use this server instead of a private redis-server")
    ap.add_argument("--quick", action="store_true", help="small sizes (about 30 s)")
    ap.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    ap.add_argument("--rate", type=float, default=200.0, help="appends/s in the latency test")
    ap.add_argument(
        "--procs",
        type=int,
        default=max(2, min(4, os.cpu_count() or 2)),
        help="processes in the concurrent append test",
    )
    args = ap.parse_args(argv)

    from airfix.services.logs import configure_logging

    configure_logging("warning")
    server: PrivateRedis | None = None
    if args.redis_url:
        url = args.redis_url
    else:
        server = PrivateRedis().start()
        url = server.url
    prefix = f"airfixbench{os.getpid()}{uuid.uuid4().hex[:4]}"
    client = redis.Redis.from_url(url)
    res = Results()
    started = time.perf_counter()
    load0 = os.getloadavg()
    try:
        info = client.info("server")
        res.details["environment"] = {
            "redis_version": info.get("redis_version"),
            "redis_url": url if server else "(given)",
            "private_server": server is not None,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_start": load0,
            "quick": args.quick,
            "fold": FOLD_NAME,
            "platform": platform.platform(),
        }
        console.log(
            f"redis {info.get('redis_version')} at {url} "
            f"({'private' if server else 'given'}); {os.cpu_count()} CPUs; "
            f"load {load0[0]:.2f}; {'quick' if args.quick else 'full'} run"
        )
        phases: list[tuple[str, Callable[[], None]]] = [
            ("xadd", lambda: bench_xadd(res, url, client, prefix, args.quick)),
            ("append", lambda: bench_append(res, url, f"{prefix}-append", args.quick, args.procs)),
            ("replay", lambda: bench_replay(res, url, f"{prefix}-replay", args.quick, args.procs)),
            ("projector", lambda: bench_projector(res, url, f"{prefix}-proj", args.quick)),
            (
                "latency",
                lambda: bench_latency(
                    res, url, f"{prefix}-lat", args.quick, args.rate, server is not None
                ),
            ),
        ]
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
    finally:
        if server is None:
            delete_prefix(client, prefix)
        client.close()
        if server is not None:
            server.stop()
    elapsed = time.perf_counter() - started
    load1 = os.getloadavg()
    res.details["environment"]["loadavg_end"] = load1
    res.details["environment"]["elapsed_s"] = elapsed
    res.notes += [
        f"fold used for replay: {FOLD_NAME}",
        NOISE_CAVEAT,
        f"load average {load0[0]:.2f} at start, {load1[0]:.2f} at end; {elapsed:.0f}s in total; "
        "1-minute load at each phase's start: "
        + ", ".join(
            f"{k} {v['loadavg_1m_at_start']:.1f}" for k, v in res.details.get("phases", {}).items()
        ),
        (
            "latency = from just before store.append() to the first poll (HMGET of every "
            "checkpoint, ~0.2 ms apart) that shows the entry applied; poll resolution adds up to "
            "~0.5 ms"
        ),
    ]
    print_table(res)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "metrics": {k: m.as_json() for k, m in res.metrics.items()},
                    "details": res.details,
                    "notes": res.notes,
                },
                indent=2,
                default=str,
            )
        )
        console.log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
