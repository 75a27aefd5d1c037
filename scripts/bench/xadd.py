"""Section 1: the ceiling a store built on XADD can approach, measured by ``redis-benchmark``
on the same server, so the store's append rate can be read as a fraction of it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.parse

import redis

from scripts.bench.common import (
    Metric,
    Results,
)

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
    res.begin("1. redis-benchmark XADD ceiling")
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
