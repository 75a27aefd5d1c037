"""Section 11: scaling out.  The same runs hosted by 1, 2, 4 and 8 ``airfix worker`` processes.

Laid out as a deployment is ("split"): those workers run only the pipeline's roles, and one more
worker process runs only the projections, so that a role's burst of CPU (a request's check, a
verification) does not stand in the queue between an entry and its projection.  For comparison
the largest worker count runs again with every role in every worker ("shared").

Every target is a bare repository served only by ``git daemon`` on loopback (the checkout it was
made from is deleted before the first run), so each worker fetches and pushes through git, in a
workspace of its own (``AIRFIX__GIT__WORKSPACE``), and the requester here has no checkout at all.
The fixer is the ``command`` fixer: it sleeps a fixed time (an agent thinking) and then makes a
deterministic edit (removes the one unused import each target has), so a run's time is mostly
waiting and the ideal with N workers is 1/N of the time with one.  The run ids are chosen one per
partition, and the store has as many partitions as runs, so every worker count splits the runs
evenly.  The targets' tests run in an environment of their own holding only pytest and coverage
(as a project's own venv would; airfix's development venv would add plugins that take seconds to
load in every test run).  While the runs go, every entry the workers append is followed to the
moment the projections' checkpoints cover it: the append-to-projection latency under that load.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import redis

from airfix.config import load_config
from airfix.events.core.steps import ROLES
from airfix.events.ids import new_run_id
from airfix.events.keys import partition_of
from airfix.projections.status import load_status
from airfix.services.pipeline.requests import SERVED_GROUPS, request_run
from airfix.services.runtime.app import build_app
from scripts.bench.common import Metric, Results, console, delete_prefix, entry_key, percentile
from scripts.bench.latency import Checkpoints, Tracker

MODULE = (
    'def double(n: int) -> int:\n    """Twice n."""\n    return 2 * n\n',
    "import os\n",  # the one issue: F401, removed by the fixer
)
FILES = {
    "pyproject.toml": '[project]\nname = "scaled"\nversion = "0"\n\n'
    '[tool.pytest.ini_options]\ntestpaths = ["tests"]\n',
    "scaled/__init__.py": "",
    "scaled/core.py": MODULE[1] + "\n\n" + MODULE[0],
    "tests/test_core.py": "from scaled.core import double\n\n\ndef test_double() -> None:\n"
    "    assert double(2) == 4\n",
}
#: Rebalancing fast enough that a new worker count settles in seconds; the other consumer
#: settings stay at their defaults (shorter leases, heartbeats and blocks together make an idle
#: worker take 10% of a core instead of 3%: eight of them, a third of this machine's two cores).
FAST = {"AIRFIX__CONSUMERS__REBALANCE_INTERVAL_MS": "500"}
#: "split": N workers with the pipeline's roles and one with the projections (a deployment);
#: "shared": every role in each of the N workers.
LAYOUTS = ("split", "shared")
#: How much lower the split layout's pipeline workers run than its projector.  Lowering them
#: (rather than raising the projector with a negative nice) needs no privilege, so the section
#: measures the same as root or not, and leaves Redis, git daemon and the follower level with the
#: projector instead of below it.  The tools a worker starts sit ``child_niceness`` lower still.
PIPELINE_NICENESS = 5


def fixer_command(sleep_s: float) -> list[str]:
    return ["sh", "-c", f"sleep {sleep_s} && sed -i '/^import os$/d' scaled/core.py"]


def make_targets(base: Path, n: int) -> list[str]:
    """``n`` bare repositories under ``base`` (what the daemon serves), their checkouts deleted."""
    src = Path(tempfile.mkdtemp(prefix="airfix-scaling-src-"))
    for rel, text in FILES.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], [*ident, "commit", "-q", "-m", "x"]):
        subprocess.run(["git", *cmd], cwd=src, check=True, capture_output=True)
    names = []
    for i in range(n):
        name = f"t{i:02d}.git"
        subprocess.run(
            ["git", "clone", "-q", "--bare", str(src), str(base / name)],
            check=True,
            capture_output=True,
        )
        names.append(name)
    shutil.rmtree(src)
    return names


class Daemon:
    """``git daemon`` on a free loopback port, serving ``base`` with pushes allowed."""

    def __init__(self, base: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            ["git", "daemon", f"--base-path={base}", "--export-all", "--enable=receive-pack",
             "--reuseaddr", "--listen=127.0.0.1", f"--port={self.port}", "--max-connections=64",
             str(base)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise SystemExit("scaling: git daemon did not start (is git-daemon installed?)")

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run_ids(n: int) -> list[str]:
    """``n`` new run ids, one in each of ``n`` partitions."""
    found: dict[int, str] = {}
    while len(found) < n:
        rid = new_run_id()
        found.setdefault(partition_of(rid, n), rid)
    return [found[p] for p in range(n)]


class Follower:
    """Every entry appended to the partition logs, followed until all projections cover it.

    In a process of its own, so that this one's work (a request takes ~100 ms of CPU, the status
    polling more) cannot delay the moment an entry is seen covered: what is measured is the
    workers' projections, not this process's GIL."""

    def __init__(self, url: str, app: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.stop, self.ready, self.results = ctx.Event(), ctx.Event(), ctx.Queue()
        views = [v.checkpoint_key for v in app.projections()]
        self.process = ctx.Process(
            target=follow,
            args=(url, views, app.keys.logs(), self.stop, self.ready, self.results),
            name="scaling-follower",
            daemon=True,
        )

    def start(self) -> None:
        """Start following from the logs' current ends (returns once it is there)."""
        self.process.start()
        if not self.ready.wait(60):
            raise SystemExit("scaling: the follower process did not start")

    def finish(self) -> tuple[list[float], int]:
        """Stop; every followed entry's latency in ms (sorted) and how many timed out."""
        self.stop.set()
        worst, timed_out = self.results.get(timeout=60)
        self.process.join(10)
        return sorted(v * 1000 for v in worst), timed_out


def follow(
    url: str, checkpoint_keys: list[str], streams: list[str], stop: Any, ready: Any, results: Any
) -> None:
    """The follower process: new entries by ``XREAD``, the views' checkpoints polled until each
    covers them (each view given by its checkpoint key)."""
    client = redis.Redis.from_url(url)
    views = [SimpleNamespace(checkpoint_key=k) for k in checkpoint_keys]
    checkpoints = Checkpoints(url, views, streams)
    tracker = Tracker(len(views), timeout_s=60.0)
    last = {}
    for s in streams:
        newest = client.xrevrange(s, count=1)
        last[s] = newest[0][0].decode() if newest else "0-0"
    ready.set()
    while not stop.is_set():
        got = client.xread(last, block=2) or []  # type: ignore[arg-type]
        for stream, entries in got:  # type: ignore[union-attr]
            name = stream.decode()
            for entry_id, _ in entries:
                last[name] = entry_id.decode()
                ms, seq = entry_key(entry_id)
                tracker.add([(ms / 1000, name, (ms, seq))])
        if tracker.open:
            tracker.settle(checkpoints.poll(), time.time())
    results.put((tracker.worst, tracker.timed_out))


#: A process that only sleeps 2 ms, wakes and PINGs the server, until its stdin closes; it prints
#: how late each wake was and how long each PING took (ms).  Beside the projection's latency it
#: shows the floor the machine sets: no projector can be quicker than a wake and a round trip.
PROBE = """
import json, sys, threading, time
import redis
client, late, ping, done = redis.Redis.from_url(sys.argv[1]), [], [], threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
while not done.is_set():
    t0 = time.perf_counter(); time.sleep(0.002); t1 = time.perf_counter()
    client.ping()
    late.append((t1 - t0 - 0.002) * 1e3); ping.append((time.perf_counter() - t1) * 1e3)
print(json.dumps({"late": late, "ping": ping}))
"""


class Probe:
    """:data:`PROBE` in a process of its own at the projector's priority, for one round."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PROBE, url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def finish(self) -> dict[str, float]:
        """The p99 of the wakes' lateness and of the PINGs, in ms."""
        out, _ = self.proc.communicate("", timeout=60)
        got = json.loads(out)
        return {f"floor_{k}_p99_ms": percentile(sorted(v), 0.99) for k, v in got.items()}


def settled(client: redis.Redis, keys: Any, names: list[str], projectors: list[str]) -> bool:
    """Every group's partitions are held, each of its workers holding some: the pipeline's groups
    by the ``names`` workers, the projections' by the ``projectors``."""
    for group in SERVED_GROUPS:
        serving = projectors if group == "projections" else names
        owners = {client.get(keys.lease(group, p)) for p in range(keys.partitions)}
        held = {o.decode() if isinstance(o, bytes) else o for o in owners}
        if not all(any(h and h.startswith(n) for h in held) for n in serving) or None in held:
            return False
    return True


def lower_priority() -> None:
    """In a split layout's pipeline worker, before it starts: see ``PIPELINE_NICENESS``."""
    os.nice(PIPELINE_NICENESS)


def project_python(base: Path) -> str:
    """The targets' own environment: a venv with pytest and coverage, pinned as airfix's are."""
    venv = base / "project-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    pins = Path(__file__).resolve().parents[1] / "constraints.txt"
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "-c", str(pins), "pytest", "coverage"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(venv / "bin" / "python")


def one_round(
    url: str,
    workers: int,
    runs: int,
    sleep_s: float,
    daemon: Daemon,
    targets: list[str],
    python: str,
    layout: str = "split",
) -> dict[str, Any]:
    """``runs`` runs hosted by ``workers`` worker processes, each in a workspace of its own, laid
    out as ``layout`` says (``LAYOUTS``)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    prefix = f"airfixscale{os.getpid()}{layout}w{workers}"
    scratch = Path(tempfile.mkdtemp(prefix="airfix-scaling-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFIX")}
    env |= FAST | {
        "AIRFIX__STORE__PREFIX": prefix,
        "AIRFIX__STORE__PARTITIONS": str(runs),
        "AIRFIX__FIXER__CHAIN": "[command]",
        "AIRFIX__FIXER__COMMAND": repr(fixer_command(sleep_s)),
        "AIRFIX__LOGGING__LEVEL": "warning",
    }
    overrides = {
        "store.prefix": prefix,
        "store.redis_url": url,
        "store.partitions": runs,
        "fixer.chain": ["command"],
        "fixer.command": fixer_command(sleep_s),
        "target_project.python": python,
    }
    config = load_config(overrides=overrides, env={})
    app = build_app(config, redis_url=url)
    procs: list[subprocess.Popen[bytes]] = []
    names = [f"w{workers}-{i}" for i in range(workers)]
    split = layout == "split"
    projectors = [f"w{workers}-projector"] if split else names
    if split:
        roles = dict.fromkeys(names, ",".join(ROLES)) | dict.fromkeys(projectors, "projections")
    else:
        roles = dict.fromkeys(names, "all")
    cpu0 = _children_cpu_s()
    row: dict[str, Any] = {}
    try:
        for name, hosted in roles.items():
            home = scratch / name
            home.mkdir()
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "airfix.services.commands.cli",
                        "worker",
                        "--redis-url",
                        url,
                        "--roles",
                        hosted,
                        "--name",
                        name,
                    ],
                    cwd=home,
                    env=env | {"AIRFIX__GIT__WORKSPACE": str(home / "workspace")},
                    stdout=subprocess.DEVNULL,
                    stderr=(home / "log").open("wb"),
                    preexec_fn=lower_priority if split and name not in projectors else None,
                )
            )
        deadline = time.monotonic() + 120
        while not settled(app.client, app.keys, names, projectors):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"scaling: {workers} worker(s) did not take the partitions")
            time.sleep(0.1)
        follower = Follower(url, app)
        follower.start()
        probe = Probe(url)
        started = time.perf_counter()
        ids = [
            request_run(
                app,
                config,
                daemon.url(target),
                batching="smart",
                fixer="command",
                simulation=False,
                max_iterations=1,
                run_id=rid,
            )
            for rid, target in zip(run_ids(runs), targets, strict=True)
        ]
        statuses: dict[str, Any] = {}
        while len(statuses) < runs:
            for rid in ids:
                if rid not in statuses:
                    st = load_status(app.client, app.keys, rid)
                    if st is not None and st.get("state") == "completed":
                        statuses[rid] = st
            if time.perf_counter() - started > 3600:
                raise SystemExit(f"scaling: runs not finished after an hour with {workers} workers")
            time.sleep(0.05)
        total = time.perf_counter() - started
        time.sleep(0.5)  # the last entries' projections
        lat, timed_out = follower.finish()
        floor = probe.finish()
        committed = sum(1 for s in statuses.values() if s.get("commits"))
        row = {
            "layout": layout,
            "workers": workers,
            "total_s": total,
            "runs": runs,
            "runs_with_commits": committed,
            "statuses": sorted({str(s.get("status")) for s in statuses.values()}),
            "entries": len(lat),
            "p50_ms": percentile(lat, 0.5),
            "p99_ms": percentile(lat, 0.99),
            "timed_out": timed_out,
            **floor,
        }
        return row
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        # the workers (the projector too) and the tools they ran, reaped: what the runs cost in
        # CPU, whatever the worker count (start-up and idle polling included)
        row["cpu_s"] = _children_cpu_s() - cpu0
        delete_prefix(app.client, prefix)
        shutil.rmtree(scratch, ignore_errors=True)


def _children_cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def bench_scaling(res: Results, url: str, quick: bool) -> None:
    """The split layout at every worker count under the section's figures, then the shared one at
    the largest count: what a deployment gains by giving the projections a process of their own."""
    runs, counts, sleep_s = (2, (1, 2), 0.5) if quick else (16, (1, 2, 4, 8), 40.0)
    rounds = [*(("split", n) for n in counts), ("shared", counts[-1])]
    res.begin(
        f"11. scaling: {runs} runs on git-daemon targets, {', '.join(map(str, counts))} worker "
        f"processes with the pipeline's roles and one with the projections (then {counts[-1]} "
        f"with every role, to compare), command fixer sleeping {sleep_s:g}s"
    )
    base = Path(tempfile.mkdtemp(prefix="airfix-scaling-remotes-"))
    daemon = Daemon(base)
    rows: list[dict[str, Any]] = []
    try:
        python = project_python(base)
        for layout, n in rounds:
            where = f"{layout}-w{n}"
            targets = [f"{where}/{t}" for t in make_targets(base / where, runs)]
            row = one_round(url, n, runs, sleep_s, daemon, targets, python, layout)
            rows.append(row)
            console.log(
                f"  {n} worker(s), {layout}: {row['total_s']:.1f}s, {row['runs_with_commits']}/"
                f"{runs} runs with commits, p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms "
                f"over {row['entries']} entries; floor p99: wake {row['floor_late_p99_ms']:.1f} "
                f"ms, PING {row['floor_ping_p99_ms']:.1f} ms"
            )
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)
    one = rows[0]["total_s"]
    for row in rows:
        n = row["workers"]
        speedup = one / row["total_s"]
        row["speedup"], row["efficiency"] = speedup, speedup / n
        note = (
            f"{row['runs_with_commits']}/{runs} runs with commits ({', '.join(row['statuses'])}); "
            f"{row['entries']} log entries followed, {row['timed_out']} timed out; "
            f"workers and their tools used {row['cpu_s']:.0f} CPU-s ({os.cpu_count()} CPUs)"
        )
        if row["layout"] == "shared":
            res.add(Metric(f"scaling_shared_w{n}_total_s", f"{n} worker(s), every role in each: "
                           "total", row["total_s"], "s", higher_is_better=False,
                           note=note))  # fmt: skip
            res.add(Metric(f"scaling_shared_w{n}_latency_p99_ms", f"{n} worker(s), every role in "
                           "each: append-to-projection p99", row["p99_ms"], "ms",
                           higher_is_better=False, note=f"p50 {row['p50_ms']:.1f} ms"))  # fmt: skip
            continue
        res.add(Metric(f"scaling_w{n}_total_s", f"{n} worker(s): total", row["total_s"], "s",
                       higher_is_better=False, note=note))  # fmt: skip
        res.add(Metric(f"scaling_w{n}_speedup", f"{n} worker(s): speedup over one", speedup, "x",
                       None if quick else (6.0 if n == 8 else None)))  # fmt: skip
        res.add(Metric(f"scaling_w{n}_vs_ideal", f"{n} worker(s): share of ideal", row["efficiency"],
                       "x"))  # fmt: skip
        res.add(Metric(f"scaling_w{n}_cpu_s", f"{n} worker(s): CPU used by workers and tools",
                       row["cpu_s"], "s", higher_is_better=False))  # fmt: skip
        res.add(Metric(f"scaling_w{n}_latency_p99_ms", f"{n} worker(s): append-to-projection p99",
                       row["p99_ms"], "ms", higher_is_better=False,
                       note=f"p50 {row['p50_ms']:.1f} ms"))  # fmt: skip
        res.add(Metric(f"scaling_w{n}_floor_p99_ms", f"{n} worker(s): floor p99 (a 2 ms sleeper's "
                       "lateness + its PING)", row["floor_late_p99_ms"] + row["floor_ping_p99_ms"],
                       "ms", higher_is_better=False,
                       note=f"wake {row['floor_late_p99_ms']:.1f} ms, PING "
                       f"{row['floor_ping_p99_ms']:.1f} ms"))  # fmt: skip
    res.tables["scaling"] = rows
