"""A projection worker for fault tests: the real ``Worker`` plus switches that make it misbehave.

Run as a script (``python tests/fault_harness/worker.py --redis-url URL ...``).  It builds the app
exactly like ``airfix worker --roles projections`` does (``load_config`` + ``build_app`` +
``App.handlers``), then wraps each handler's ``handle`` according to the flags:

``--sleep-in-handler S``   sleep S per handle, split at random around the real apply, so a kill
                           lands mid-handler (before or after the apply);
``--die-group G --die-after N``   after the N-th ``handle`` of group G has *returned* (the apply.lua
                           call ran) and before the runtime acks, record where and SIGKILL itself;
``--hang G:N:before|after``  (repeatable) the N-th ``handle`` call of group G records itself in the
                           ``hung`` hash and blocks for good, before or after the real apply: a
                           deterministic spot for the test to SIGKILL the process;
``--poison-group G --poison-event RUN:VERSION``   group G raises for every batch holding that event
                           (before applying anything), counting each attempt in Redis;
``--count-applies``        count every application of every entry, per view (:func:`count_applies`);
``--progress``             maintain the ``inside`` / ``handled`` counters below;
``--wait-leases-free S``   before starting, wait (up to S seconds) until no partition lease of this
                           prefix exists (a dead worker's leases have expired);
``--fork-server``          import once, then read one JSON argv list per stdin line, fork a child that
                           runs it, and print one JSON line per child: how it ended.  Cheap
                           process-per-step for the kill-at-every-step test.

Progress goes to Redis under ``fault:<prefix>:*`` (see :func:`fkey`), never to airfix's own keys:
``pid``, ``handled`` (successful handle calls), ``inside`` (handle calls in progress: INCR on entry,
DECR on exit, so a value > 0 after a SIGKILL proves the kill landed inside a handler), ``died``,
``hung`` (group -> where it blocks and on which entries), ``poison_attempts``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

import yaml

from airfix.config import load_config
from airfix.events.schema import Event
from airfix.events.storage.store import LogEntry
from airfix.projections.base import Projection
from airfix.projections.core.ops import Op
from airfix.services.runtime.app import build_app
from airfix.services.runtime.logs import configure_logging
from airfix.services.runtime.worker import Worker


def fkey(prefix: str, name: str) -> str:
    """A fault-instrumentation key (outside airfix's key space)."""
    return f"fault:{prefix}:{name}"


def counter_key(view_key: str) -> str:
    """ZSET in the view's slot: ``<run>:<version>`` -> how often the projection applied it."""
    return f"{{{view_key}}}:fault_applied"


class CountApplied(Op, frozen=True):
    """``ZADD <key> INCR 1 <member>``: one more application of ``member`` (``<run>:<version>``)."""

    member: str

    def wire(self) -> tuple[str, tuple[Any, ...]]:
        return "ZADD", ("INCR", 1, self.member)


def count_applies(projection: Projection) -> None:
    """Make every application of an entry also ``ZADD <counter> INCR 1 <run>:<version>``.

    The extra op rides in the same apply.lua call as the view's own ops and its checkpoint, so it
    is applied exactly when they are.  The views' own ops are idempotent (ZADD, SET, SADD ...), so
    an entry applied twice could go unnoticed in them; this counter is not: it would show a 2.
    """
    fold = projection.fold
    orig = fold.apply
    key = counter_key(projection.view_key())

    def apply(state: Any, event: Event, entry_id: str) -> tuple[Any, list[Op]]:
        state, ops = orig(state, event, entry_id)
        return state, [*ops, CountApplied(key, f"{event.run_id}:{event.version}")]

    fold.apply = apply  # type: ignore[method-assign]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fault-worker")
    p.add_argument("--redis-url", default="")
    p.add_argument("--prefix", default="autonomous_fix")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="config override (value parsed as YAML)",
    )
    p.add_argument("--name")
    p.add_argument("--burst", action="store_true")
    p.add_argument("--log-level", default="info")
    p.add_argument("--sleep-in-handler", type=float, default=0.0)
    p.add_argument("--hang", action="append", default=[], metavar="GROUP:N:before|after")
    p.add_argument("--die-group")
    p.add_argument("--die-after", type=int, default=0)
    p.add_argument("--poison-group")
    p.add_argument("--poison-event", help="RUN:VERSION")
    p.add_argument("--count-applies", action="store_true")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--wait-leases-free", type=float, default=0.0)
    p.add_argument("--fork-server", action="store_true")
    return p.parse_args(list(argv))


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"store.redis_url": args.redis_url, "store.prefix": args.prefix}
    for item in args.set:
        key, _, raw = item.partition("=")
        out[key] = yaml.safe_load(raw)
    return out


def _instrument(
    handler: Any,
    args: argparse.Namespace,
    client: Any,
    lock: threading.Lock,
    counts: dict[str, int],
) -> None:
    orig = handler.handle
    group = handler.group
    prefix = args.prefix
    poison = None
    hang: tuple[int, str] | None = None
    for spec in args.hang:
        g, n_calls, where = spec.rsplit(":", 2)
        if g == group:
            assert where in ("before", "after"), spec
            hang = (int(n_calls), where)
    calls = 0
    rng = random.Random()

    def maybe_hang(where: str, entries: Sequence[LogEntry]) -> None:
        if hang is not None and hang == (calls, where):
            client.hset(
                fkey(prefix, "hung"),
                group,
                json.dumps({"where": where, "entries": [[e.stream, e.entry_id] for e in entries]}),
            )
            threading.Event().wait()  # until the test kills the process

    if args.poison_group == group and args.poison_event:
        run, _, version = args.poison_event.rpartition(":")
        poison = (run, int(version))

    def handle(entries: Sequence[LogEntry]) -> None:
        nonlocal calls
        calls += 1
        if poison is not None and any(
            e.event is not None and (e.event.run_id, e.event.version) == poison for e in entries
        ):
            client.incr(fkey(prefix, "poison_attempts"))
            raise RuntimeError(f"poison event {poison[0]} v{poison[1]} (injected by the harness)")
        if args.progress:
            client.incr(fkey(prefix, "inside"))
        pause = rng.uniform(0, args.sleep_in_handler)  # a random split: threads drift apart
        if pause:
            time.sleep(pause)
        maybe_hang("before", entries)
        orig(entries)  # the real ProjectionHandler.handle: apply.lua ran when this returns
        maybe_hang("after", entries)
        if args.sleep_in_handler:
            time.sleep(args.sleep_in_handler - pause)
        if args.die_group == group:
            with lock:
                counts[group] = counts.get(group, 0) + 1
                n = counts[group]
            if n == args.die_after:
                client.set(
                    fkey(prefix, "died"),
                    json.dumps(
                        {
                            "group": group,
                            "n": n,
                            "pid": os.getpid(),
                            "entries": [[e.stream, e.entry_id] for e in entries],
                        }
                    ),
                )
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)  # applied, not acked
                time.sleep(60)  # not reached
        if args.progress:
            client.decr(fkey(prefix, "inside"))
            client.incr(fkey(prefix, "handled"))

    handler.handle = handle


def run(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level, "console")
    cfg = load_config(None, overrides=_overrides(args), env={})
    app = build_app(cfg)
    handlers = app.handlers(["projections-separately"])
    if args.count_applies:
        for h in handlers:
            count_applies(h.projection)
    lock = threading.Lock()
    counts: dict[str, int] = {}
    for h in handlers:
        _instrument(h, args, app.client, lock, counts)
    if args.wait_leases_free:
        deadline = time.monotonic() + args.wait_leases_free
        while any(
            app.client.exists(app.keys.lease(h.group, p))
            for h in handlers
            for p in range(app.keys.partitions)
        ):
            if time.monotonic() > deadline:
                print("leases still held after the deadline", file=sys.stderr)
                return 3
            time.sleep(0.02)
    kwargs = {"name": args.name} if args.name else {}
    worker = Worker(app.store, handlers, app.settings, **kwargs)
    worker.install_signal_handlers()
    app.client.set(fkey(args.prefix, "pid"), os.getpid())
    worker.run(burst=args.burst)
    return 0


def fork_server() -> int:
    """One forked child per stdin line (a JSON argv list); one JSON result line per child."""
    child_timeout = float(os.environ.get("FAULT_CHILD_TIMEOUT_S", "60"))
    while True:
        line = sys.stdin.readline()
        if not line:
            return 0
        line = line.strip()
        if not line:
            continue
        argv = json.loads(line)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the server loop
            code = 1
            try:
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.dup2(2, 1)  # stdout is the server's reply channel
                code = run(argv)
            except BaseException:  # noqa: BLE001 - report whatever it was, then exit
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        status = None
        timed_out = False
        while status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
            elif time.monotonic() - started > child_timeout:
                timed_out = True
                os.kill(pid, signal.SIGKILL)  # our own child
                _, status = os.waitpid(pid, 0)
            else:
                time.sleep(0.005)
        result = {
            "pid": pid,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "timed_out": timed_out,
            "elapsed": round(time.monotonic() - started, 3),
        }
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--fork-server" in argv:
        return fork_server()
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
