"""Fault tests: racing appenders, kill -9 of workers (mid-handler, between apply and ack, at every
step), a poison event, and kill -9 + restart of an ``--appendonly yes`` Redis under load.

Every test starts its own ``redis-server`` (the ``redis_server`` fixture) and, where a process has
to die, a real worker process: ``tests/fault_harness/worker.py`` (the production ``Worker`` with
the projection handlers, plus switches that make it misbehave; see its docstring).  Waits poll a
condition against a deadline; nothing relies on a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from airfix.config import load_config
from airfix.events import ConcurrencyError, Keys, partition_of, stamp
from airfix.events.schema import RunStarted
from airfix.events.storage.store import EventStore
from airfix.projections.base import id_newer
from airfix.services.runtime.app import App, build_app
from airfix.services.runtime.metrics import group_metrics
from tests.fault_harness.worker import counter_key, fkey
from tests.helpers import assert_applied_exactly_once, assert_views_equal_clean_pass, poll
from tests.scenario import append_run, run_events

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(__file__).resolve().parent / "fault_harness" / "worker.py"
# short leases so a dead worker's partitions are taken over quickly (all well above the heartbeat)
FAST = {
    "lease_ttl_ms": 1000,
    "heartbeat_interval_ms": 150,
    "rebalance_interval_ms": 150,
    "block_ms": 200,
    "retry_backoff_ms": 10,
    "retry_backoff_max_ms": 50,
}


# ------------------------------------------------------------------------------------ helpers


def make_app(url: str, prefix: str = "autonomous_fix", **consumers: Any) -> App:
    overrides: dict[str, Any] = {"store.redis_url": url, "store.prefix": prefix}
    overrides.update({f"consumers.{k}": v for k, v in consumers.items()})
    return build_app(load_config(None, overrides=overrides, env={}))


def set_args(**consumers: Any) -> list[str]:
    out: list[str] = []
    for k, v in consumers.items():
        out += ["--set", f"consumers.{k}={v}"]
    return out


def groups_of(app: App) -> list[str]:
    return [h.group for h in app.handlers(["projections-separately"])]


def settled(app: App, groups: list[str]) -> bool:
    """Every group has read everything and holds nothing pending."""
    for g in groups:
        m = group_metrics(app.client, app.keys, g)
        if m.lag or m.pending:
            return False
    return True


@contextlib.contextmanager
def harness(tmp_path: Path, name: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A harness worker process, logging to ``tmp_path/<name>.log``; killed if still alive."""
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(HARNESS), *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def stop_gracefully(proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 20) -> None:
    """SIGTERM drains and exits 0."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker did not stop within {timeout}s of SIGTERM; see {log_path}")
    assert 0 == code, f"worker exited {code} on SIGTERM; log:\n{log_path.read_text()[-3000:]}"


def two_runs_in_two_partitions(partitions: int = 4) -> list[str]:
    names = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    first = names[0]
    second = next(
        n for n in names if partition_of(n, partitions) != partition_of(first, partitions)
    )
    return [first, second]


# ------------------------------------------------------------------ 1. racing appenders


def test_two_appenders_race_one_winner_per_round(redis_server) -> None:
    """1,000 rounds of two appenders reading the same version and appending at it."""
    rounds = 1000
    run = "race-1"
    stores = [EventStore(redis.Redis.from_url(redis_server.url), Keys()) for _ in range(2)]
    start, go = threading.Barrier(2, timeout=30), threading.Barrier(2, timeout=30)
    results: list[list[Any]] = [[None] * rounds, [None] * rounds]
    errors: list[BaseException] = []

    def appender(i: int) -> None:
        store, rng = stores[i], random.Random(i)
        try:
            for r in range(rounds):
                start.wait()  # both finished the previous round
                v = store.version(run)
                events = stamp(
                    [RunStarted(worker=f"w{i}-r{r}-{k}") for k in range(rng.randint(1, 3))],
                    run_id=run,
                    expected_version=v,
                )
                go.wait()  # both have read the version: now race
                try:
                    results[i][r] = ("won", v, events, store.append(run, events, v))
                except ConcurrencyError as exc:
                    results[i][r] = ("lost", v, events, exc)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the main thread
            errors.append(exc)
            start.abort()
            go.abort()

    threads = [threading.Thread(target=appender, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "appenders hung"
    assert not errors, errors

    winners: list[Any] = []
    total = 0
    for r in range(rounds):
        a, b = results[0][r], results[1][r]
        assert a[1] == b[1] == total, f"round {r}: both must have read version {total}"
        outcomes = sorted([a[0], b[0]])
        assert ["lost", "won"] == outcomes, f"round {r}: {outcomes}"
        win, lose = (a, b) if a[0] == "won" else (b, a)
        size = len(win[2])
        assert (total + size, False) == (win[3].version, win[3].duplicate)
        assert [f"0-{total + k + 1}" for k in range(size)] == [
            p.run_entry for p in win[3].positions
        ]
        exc = lose[3]
        assert isinstance(exc, ConcurrencyError)
        assert (run, total, total + size) == (exc.run_id, exc.expected, exc.actual)
        winners.append(win)
        total += size

    client = stores[0].client
    store = stores[0]
    won_ids = [ev.event_id for w in winners for ev in w[2]]
    lost_ids = {
        ev.event_id
        for r in range(rounds)
        for res in (results[0][r], results[1][r])
        if res[0] == "lost"
        for ev in res[2]
    }
    stored = list(store.read_run(run))
    assert total == store.version(run) == client.xlen(store.keys.run_stream(run)) == len(won_ids)
    assert list(range(1, total + 1)) == [ev.version for ev in stored]  # gapless
    assert won_ids == [ev.event_id for ev in stored]  # the winners' events, in round order
    assert not lost_ids & {ev.event_id for ev in stored}  # no trace of a loser
    assert total + 1 == client.hlen(store.keys.run_index(run))  # version + one e:<id> per event
    log = [
        e
        for e in store.iter_log(partition_of(run, store.keys.partitions))
        if e.event and e.event.run_id == run
    ]
    assert total == len(log) == client.xlen(store.keys.log_of(run))
    assert won_ids == [e.event.event_id for e in log]
    assert list(range(1, total + 1)) == [e.event.version for e in log]


# ------------------------------------------------------- 2. kill -9 of a consumer mid-handler


def test_kill_9_mid_handler_then_another_worker_takes_over(redis_server, tmp_path: Path) -> None:
    url = redis_server.url
    app = make_app(url)
    prefix = app.keys.prefix
    groups = groups_of(app)
    runs = [f"mid-{i}" for i in range(6)]
    for r in runs:
        append_run(app.store, r)
    common = ["--redis-url", url, "--count-applies", "--log-level", "info", *set_args(**FAST)]

    # all groups run slowly; two of them block for good at a known spot: after the apply (applied,
    # not acked) and before it (delivered, not applied).  Then the process is SIGKILLed.
    hangs = {"projection:task_queue": "after", "projection:run_history": "before"}
    with harness(
        tmp_path,
        "slow",
        *common,
        *set_args(batch_size=3),
        "--sleep-in-handler",
        "0.2",
        "--progress",
        "--name",
        "slow",
        *[a for g, where in hangs.items() for a in ("--hang", f"{g}:3:{where}")],
    ) as slow:
        poll(
            lambda: (
                app.client.hlen(fkey(prefix, "hung")) == len(hangs)
                and int(app.client.get(fkey(prefix, "handled")) or 0) >= 8
            ),
            60,
            "the slow worker to get going and block where told",
        )
        slow.send_signal(signal.SIGKILL)
        slow.wait(10)
    assert -signal.SIGKILL == slow.returncode
    assert int(app.client.get(fkey(prefix, "inside")) or 0) >= len(hangs), "not killed mid-handler"
    for g, where in hangs.items():
        hung = json.loads(app.client.hget(fkey(prefix, "hung"), g))
        assert where == hung["where"]
        view = next(p for p in app.projections() if f"projection:{p.name}" == g)
        for stream, entry_id in hung["entries"]:
            pel = [
                r["message_id"].decode()
                for r in app.client.xpending_range(stream, g, min="-", max="+", count=1000)
            ]
            assert entry_id in pel, (g, entry_id)  # delivered, never acked
            ckpt = (app.client.hget(view.checkpoint_key, stream) or b"0-0").decode()
            applied = not id_newer(entry_id, ckpt)
            assert applied == (where == "after"), (g, where, entry_id, ckpt)
    more = ["mid-late-1", "mid-late-2"]  # written while nobody consumes
    for r in more:
        append_run(app.store, r)
    with harness(tmp_path, "second", *common, "--name", "second") as second:
        started = time.monotonic()
        poll(lambda: settled(app, groups), 60, "the second worker to catch up after the takeover")
        took = time.monotonic() - started
        assert second.poll() is None
        dumps = assert_views_equal_clean_pass(app)
        assert_applied_exactly_once(app, runs + more)
        assert len(dumps["run_history"]) == 8
        stop_gracefully(second, tmp_path / "second.log")
    assert took < 30
    for g in groups:
        m = group_metrics(app.client, app.keys, g)
        assert (0, 0, 0, 0) == (m.lag, m.pending, m.dead_letters, m.halted_runs), g
    assert b"reclaimed pending entries" in (tmp_path / "second.log").read_bytes()


# ---------------------------------------- 3. kill -9 between apply and ack, at every step


class ForkLane:
    """A ``worker.py --fork-server``: runs harness argv lists in forked children, one at a time."""

    def __init__(self, log_path: Path) -> None:
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            [sys.executable, str(HARNESS), "--fork-server"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
        )
        self.replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.replies.put(json.loads(line))
        self.replies.put(None)

    def submit(self, argv: list[str]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(argv) + "\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            reply = self.replies.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"a forked harness child gave no answer within {timeout}s")
        if reply is None:
            pytest.fail("the fork server died")
        return reply

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def run_on_lanes(
    lanes: list[ForkLane], jobs: list[tuple[Any, list[str]]], timeout: float = 90
) -> dict[Any, dict[str, Any]]:
    """Run every (key, argv) job, spread round-robin over the lanes; results by key."""
    per_lane: list[list[Any]] = [[] for _ in lanes]
    for i, (key, argv) in enumerate(jobs):
        per_lane[i % len(lanes)].append(key)
        lanes[i % len(lanes)].submit(argv)
    out: dict[Any, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    for lane, keys in zip(lanes, per_lane, strict=True):
        for key in keys:
            out[key] = lane.result(max(1.0, deadline - time.monotonic()))
    return out


def test_kill_9_between_apply_and_ack_at_every_step(redis_server, tmp_path: Path) -> None:
    """For every projection group G and every step N: a worker dies (SIGKILL) right after G's N-th
    apply and before its ack; a clean burst worker finishes.  Views must equal a clean pass, no
    entry may be applied twice, and nothing may stay pending."""
    url = redis_server.url
    client = redis.Redis.from_url(url)
    runs = two_runs_in_two_partitions()
    n_entries = sum(len(run_events(r)) for r in runs)
    probe = make_app(url, prefix="t3probe")
    die_groups = groups_of(probe)
    # The dying worker handles the two runs alternately (one entry per partition per read), so the
    # N-th handle is event (N+1)//2 of one run.  By default group i dies at every N of parity i,
    # plus the first and last: every group at every event type, every N in some group, and the
    # first and last step everywhere.  FAULT_EVERY_STEP=1 runs all groups x all N.
    every = os.environ.get("FAULT_EVERY_STEP") == "1"
    steps = [
        (g, n)
        for i, g in enumerate(die_groups)
        for n in range(1, n_entries + 1)
        if every or n in (1, n_entries) or n % 2 == i % 2
    ]
    prefix = {step: f"t3g{die_groups.index(step[0])}n{step[1]}" for step in steps}
    for step in steps:
        store = EventStore(client, Keys(prefix=prefix[step], partitions=4))
        for r in runs:
            append_run(store, r)
    common = [
        "--redis-url",
        url,
        "--count-applies",
        "--log-level",
        "warning",
        "--burst",
        *set_args(**{**FAST, "block_ms": 100}),
    ]
    # batch_size 1: every handle() is one entry, so "the N-th handle" is "the N-th entry"
    dying = [*common, *set_args(batch_size=1)]

    lanes = [ForkLane(tmp_path / f"lane{i}.log") for i in range(3)]
    try:
        started = time.monotonic()
        died = run_on_lanes(
            lanes,
            [
                (
                    step,
                    [
                        *dying,
                        "--prefix",
                        prefix[step],
                        "--die-group",
                        step[0],
                        "--die-after",
                        str(step[1]),
                    ],
                )
                for step in steps
            ],
        )
        t_die = time.monotonic() - started
        for step in steps:
            res, p = died[step], prefix[step]
            assert (signal.SIGKILL, False) == (res["signal"], res["timed_out"]), (step, res)
            flag = json.loads(client.get(fkey(p, "died")) or "null")
            assert flag and (step[0], step[1]) == (flag["group"], flag["n"]), (step, flag)
            [(stream, entry_id)] = flag["entries"]
            # it died between apply and ack: applied (checkpoint) but still pending
            ckpt_key = next(
                pr.checkpoint_key
                for pr in probe.projections(Keys(prefix=p, partitions=4))
                if f"projection:{pr.name}" == step[0]
            )
            assert entry_id == (client.hget(ckpt_key, stream) or b"").decode(), (step, entry_id)
            pel = [
                r["message_id"].decode()
                for r in client.xpending_range(stream, step[0], min="-", max="+", count=100)
            ]
            assert entry_id in pel, (step, entry_id, pel)

        # the dead workers' leases expire by themselves (lease_ttl_ms)
        poll(lambda: not client.keys("t3g*:lease:*"), 20, "the dead workers' leases to expire")
        started = time.monotonic()
        # a clean worker (default batch_size) finishes what the dead one left
        finished = run_on_lanes(
            lanes,
            [
                (step, [*common, "--prefix", prefix[step], "--wait-leases-free", "10"])
                for step in steps
            ],
        )
        t_finish = time.monotonic() - started
    finally:
        for lane in lanes:
            lane.close()
    started = time.monotonic()
    for step in steps:
        res = finished[step]
        assert (0, 0) == (res["signal"], res["exit"]), (step, res)
        app = make_app(url, prefix=prefix[step])
        try:
            for g in groups_of(app):
                m = group_metrics(app.client, app.keys, g)
                assert (0, 0, 0, 0) == (m.lag, m.pending, m.dead_letters, m.halted_runs), (
                    step,
                    g,
                    m,
                )
            dumps = assert_views_equal_clean_pass(app)
            assert_applied_exactly_once(app, runs)
            assert 2 == len(dumps["run_history"])
        finally:
            app.client.close()
    t_check = time.monotonic() - started
    print(
        f"\n{len(steps)} kill points: dying {t_die:.1f}s, finishing {t_finish:.1f}s, "
        f"checking {t_check:.1f}s"
    )


# ------------------------------------------------------------------------- 4. poison event


def test_poison_event_is_dead_lettered_after_exactly_the_cap(redis_server, tmp_path: Path) -> None:
    url = redis_server.url
    app = make_app(url)
    prefix = app.keys.prefix
    cap = 3
    runs = ["alpha", "bravo", "poison-1", "delta"]
    for r in runs:
        append_run(app.store, r)
    poison_version = app.store.version("poison-1")  # its last event (RunCompleted): nothing held
    group = "projection:run_history"
    groups = groups_of(app)
    with harness(
        tmp_path,
        "poisoned",
        "--redis-url",
        url,
        "--count-applies",
        *set_args(**FAST, delivery_cap=cap),
        "--poison-group",
        group,
        "--poison-event",
        f"poison-1:{poison_version}",
    ) as worker:
        poll(
            lambda: (
                settled(app, groups)
                and group_metrics(app.client, app.keys, group).dead_letters >= 1
            ),
            60,
            "everything handled and the poison event parked",
        )
        assert worker.poll() is None, "a poison event must not stop the worker"
        stop_gracefully(worker, tmp_path / "poisoned.log")

    assert cap == int(app.client.get(fkey(prefix, "poison_attempts")) or 0)
    dlq = app.client.xrange(app.keys.dead_letters(group))
    assert 1 == len(dlq)
    fields = dlq[0][1]
    assert (b"failed", group.encode(), str(cap).encode()) == (
        fields[b"kind"],
        fields[b"group"],
        fields[b"attempts"],
    )
    assert (b"poison-1", str(poison_version).encode(), b"RunCompleted") == (
        fields[b"orig.run"],
        fields[b"orig.v"],
        fields[b"orig.type"],
    )
    assert b"poison event" in fields[b"error"]
    assert {b"poison-1"} == set(app.client.hkeys(app.keys.halted(group)))
    for g in groups:
        m = group_metrics(app.client, app.keys, g)
        assert (0, 0) == (m.lag, m.pending), g
        if g != group:
            assert (0, 0) == (m.dead_letters, m.halted_runs), g
    # every other view (and every other event of the poisoned view) was processed
    dumps = assert_views_equal_clean_pass(app, skip=("run_history",))
    assert_applied_exactly_once(app, runs, skip=("run_history",))
    history = [json.loads(x)["run_id"] for x in app.client.lrange(app.keys.run_history, 0, -1)]
    assert sorted(["alpha", "bravo", "delta"]) == sorted(history)
    assert sorted(runs) == sorted(h["run_id"] for h in dumps["run_history"])
    history_view = next(p for p in app.projections() if p.name == "run_history")
    counted = {
        m.decode(): n
        for m, n in app.client.zrange(counter_key(history_view.view_key()), 0, -1, withscores=True)
    }
    assert {
        f"{r}:{v}": 1.0
        for r in runs
        for v in range(1, app.store.version(r) + 1)
        if (r, v) != ("poison-1", poison_version)
    } == counted


# -------------------------------------------- 5. Redis kill -9 + restart during appends


class LossyRedis(redis.Redis):
    """Loses the reply of some EVALSHA calls after the server ran them (a dropped connection)."""

    rng = random.Random(7)
    lost = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        reply = super().execute_command(*args, **options)
        if args and args[0] == "EVALSHA" and LossyRedis.rng.random() < 0.03:
            LossyRedis.lost += 1
            raise redis.ConnectionError("reply lost (injected by the test)")
        return reply


def test_redis_restart_mid_appends_loses_nothing_acknowledged(redis_server) -> None:
    url = redis_server.url
    store = EventStore(LossyRedis.from_url(url, socket_connect_timeout=1, socket_timeout=5), Keys())
    runs = [f"dur-{i}" for i in range(5)]
    acked: list[tuple[str, list[Any], bool]] = []
    stop = threading.Event()
    saw_error = threading.Event()
    errors: list[BaseException] = []
    retries = [0]

    def appender() -> None:
        rng = random.Random(11)
        versions = dict.fromkeys(runs, 0)
        i = 0
        try:
            while not stop.is_set():
                run = runs[i % len(runs)]
                i += 1
                v = versions[run]
                events = stamp(
                    [RunStarted(worker=f"{run}-{v + k + 1}") for k in range(rng.randint(1, 3))],
                    run_id=run,
                    expected_version=v,
                )
                backoff = 0.01
                deadline = time.monotonic() + 60
                while True:  # re-send the SAME events at the SAME version until it is answered
                    try:
                        result = store.append(run, events, v)
                        break
                    except (redis.ConnectionError, redis.TimeoutError):
                        retries[0] += 1
                        saw_error.set()
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(backoff)
                        backoff = min(backoff * 2, 0.25)
                assert result.version == v + len(events)
                versions[run] = result.version
                acked.append((run, events, result.duplicate))
        except BaseException as exc:  # noqa: BLE001 - surfaced by the main thread
            errors.append(exc)

    t = threading.Thread(target=appender)
    t.start()
    try:
        for _cycle in range(2):
            base = len(acked)
            poll(lambda b=base: len(acked) >= b + 300 or errors, 60, "appends to flow")
            assert not errors, errors
            saw_error.clear()
            redis_server.kill()  # mid-stream: the appender is busy appending
            poll(saw_error.is_set, 20, "the appender to notice the dead server")
            redis_server.start()  # same dir, same port: replays the AOF
        base = len(acked)
        poll(lambda: len(acked) >= base + 300 or errors, 60, "appends to flow after the restarts")
    finally:
        stop.set()
        t.join(90)
    assert not t.is_alive()
    assert not errors, errors

    check = EventStore(redis.Redis.from_url(url), Keys())
    total = 0
    for run in runs:
        mine = [ev for r, evs, _ in acked if r == run for ev in evs]
        stored = list(check.read_run(run))
        n = len(mine)
        total += n
        assert n == check.version(run) == check.client.xlen(check.keys.run_stream(run))
        assert list(range(1, n + 1)) == [ev.version for ev in stored]
        assert [ev.event_id for ev in mine] == [ev.event_id for ev in stored]  # each exactly once
        log = [
            e.event.event_id
            for e in check.iter_log(partition_of(run, 4))
            if e.event and e.event.run_id == run
        ]
        assert [ev.event_id for ev in mine] == log
    assert total == sum(check.client.xlen(k) for k in check.keys.logs())  # no strays
    duplicates = sum(1 for *_, dup in acked if dup)
    assert LossyRedis.lost > 0 and duplicates > 0, (LossyRedis.lost, duplicates)
    assert retries[0] > 0


# ------------------------------------------ 6. a consumer survives a Redis restart


def test_worker_reconnects_after_redis_restart(redis_server, tmp_path: Path) -> None:
    url = redis_server.url
    app = make_app(url)
    groups = groups_of(app)
    before = ["pre-1", "pre-2"]
    for r in before:
        append_run(app.store, r)
    log_path = tmp_path / "survivor.log"
    with harness(
        tmp_path,
        "survivor",
        "--redis-url",
        url,
        "--count-applies",
        "--log-level",
        "info",
        *set_args(**FAST),
        "--name",
        "survivor",
    ) as worker:
        poll(lambda: settled(app, groups), 60, "the worker to process the first runs")
        redis_server.kill()
        poll(
            lambda: b"redis unavailable; reconnecting" in log_path.read_bytes(),
            30,
            "the worker to notice the dead server",
        )
        redis_server.start()
        app.client.connection_pool.disconnect()  # the test's own stale sockets
        after = ["post-1", "post-2"]
        for r in after:
            append_run(app.store, r)

        def caught_up() -> bool:
            history = {
                json.loads(x)["run_id"] for x in app.client.lrange(app.keys.run_history, 0, -1)
            }
            return set(after) <= history and settled(app, groups)

        poll(caught_up, 60, "the same worker to process runs appended after the restart")
        assert worker.poll() is None, "the worker died instead of reconnecting"
        assert str(worker.pid) == (app.client.get(fkey(app.keys.prefix, "pid")) or b"").decode()
        assert_views_equal_clean_pass(app)
        assert_applied_exactly_once(app, before + after)
        stop_gracefully(worker, log_path)
