"""What every section of the benchmark shares: figures and their table, the Redis it runs
against, and the small measuring helpers.

Why the figures carry their section: ``--json`` output is compared between changes, and a figure
is only comparable with the same figure measured the same way.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from rich.console import Console

from airfix.config import load_config
from airfix.events.core.machine import fold
from airfix.events.schema import Event
from airfix.services.runtime.app import App, build_app
from tests.redis_procs import RedisServer

console = Console(stderr=True)
NOISE_CAVEAT = (
    "Noise: this machine has 2 shared cores; redis-server, this Python client, the projection "
    "worker and other sessions' processes compete for them. Expect +-20% run to run; compare "
    "ratios, not the last digit."
)

FOLD_NAME = "airfix.events.core.machine.fold (strict evolve of RunState)"


def fold_events(events: Iterable[Event]) -> Any:
    return fold(events)


class PrivateRedis:
    """The test suite's throwaway redis-server, without persistence, in a directory of its own
    that goes away with it (so a shared server on 6379 is not disturbed)."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise SystemExit("redis-server is not installed; install it or pass --redis-url")
        self.dir = Path(tempfile.mkdtemp(prefix="airfix-bench-redis-"))
        self.server = RedisServer(self.dir, appendonly=False)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> PrivateRedis:
        try:
            self.server.start()
        except RuntimeError as exc:
            self.stop()
            raise SystemExit(str(exc)) from exc
        return self

    def stop(self) -> None:
        self.server.stop()
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
    section: str = ""  # set by Results.add: the section that measured it

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
            "section": self.section,
            "name": self.name,
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
    """Every figure of one benchmark run, in the order measured, with the section that measured
    it; ``tables`` holds row-shaped results (one row per compared case) printed as their own table."""

    metrics: dict[str, Metric] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    section: str = ""

    def begin(self, section: str) -> None:
        """Start a section: figures added from now on belong to it."""
        self.section = section
        console.rule(section)

    def add(self, m: Metric) -> Metric:
        m.section = self.section
        self.metrics[m.name] = m
        mark = {"PASS": "[green]PASS[/]", "MISS": "[red]MISS[/]", "INFO": "[dim]info[/]"}[m.status]
        console.log(f"  {m.label}: {fmt_num(m.value)} {m.unit}  {mark}")
        return m

    def as_json(self) -> dict[str, Any]:
        return {
            "metrics": {k: m.as_json() for k, m in self.metrics.items()},
            "tables": self.tables,
            "details": self.details,
            "notes": self.notes,
        }


def fmt_num(v: float | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"  # counts: issues, commits
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


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


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
