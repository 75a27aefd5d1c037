"""The ``airfix`` command line.  Exit codes: 0 ok, 1 failure, 2 bad input (usage, config),
10 the Redis server cannot be used (refused, timed out, rejected the credentials)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import redis
import yaml

from airfix.config import config_to_dict, load_config
from airfix.events.errors import AirfixError

ROLES = ("projections", "manager", "checker", "planner", "fixer", "verifier")
#: Exit code when the Redis server cannot be used: not reachable, too slow, wrong credentials.
EXIT_REDIS_UNAVAILABLE = 10


def _version() -> str:
    try:
        return version("airfix")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airfix",
        description="Autonomous code fixing as an event-sourced state machine on Redis Streams.",
    )
    parser.add_argument("--version", action="version", version=f"airfix {_version()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="YAML config (default: built-in defaults)")
    common.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis server (default: store.redis_url, $AIRFIX_REDIS_URL, or embedded)",
    )
    common.add_argument("--log-format", choices=("console", "json"), help="log line format")
    common.add_argument("--log-level", help="minimum log level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    cfg = sub.add_parser("config", parents=[common], help="print the effective configuration")
    cfg.set_defaults(func=cmd_config)

    worker = sub.add_parser(
        "worker", parents=[common], help="run consumer roles against a Redis server until SIGTERM"
    )
    worker.add_argument(
        "--roles", default="all", help=f"comma-separated roles, or all (known: {', '.join(ROLES)})"
    )
    worker.add_argument("--burst", action="store_true", help="exit once nothing is left to read")
    worker.add_argument("--name", help="consumer name (default: host-pid-random)")
    worker.set_defaults(func=cmd_worker)

    run = sub.add_parser(
        "run", parents=[common], help="make a repository healthier, one verified commit at a time"
    )
    where = run.add_mutually_exclusive_group()
    where.add_argument("--target", metavar="PATH", help="the git repository to fix (clean tree)")
    where.add_argument(
        "--sample",
        action="store_true",
        help="fix a fresh temporary copy of the bundled sample project",
    )
    run.add_argument(
        "--python",
        metavar="PATH",
        help="the project's Python interpreter, e.g. .venv/bin/python (default: "
        "target_project.python, else detected: .venv, Poetry, uv, PDM, VIRTUAL_ENV)",
    )
    run.add_argument(
        "--max-iterations",
        type=int,
        metavar="N",
        help="stop after N iterations (default: circuit_breaker.max_total_runs)",
    )
    run.add_argument("--simulation", action="store_true", help="plan and report; change nothing")
    run.add_argument(
        "--batching",
        choices=("mega", "smart", "individual"),
        help="how issues are grouped (default: issue_grouping.mode)",
    )
    run.add_argument(
        "--fixer", help="fixer chain, e.g. autofix or autofix,claude (default: fixer.name)"
    )
    run.add_argument(
        "--json", action="store_true", help="print the final summary as JSON on stdout"
    )
    run.add_argument(
        "--inline",
        action="store_true",
        help="with --redis-url, host every role in this process instead of waiting for workers",
    )
    run.add_argument(
        "--wait-timeout",
        type=float,
        metavar="S",
        help="give up waiting for workers after S seconds",
    )
    run.add_argument(
        "--serve-redis",
        type=int,
        metavar="PORT",
        help="expose the embedded store on 127.0.0.1:PORT for redis-cli, until Ctrl-C after the run",
    )
    run.add_argument(
        "--detach",
        action="store_true",
        help="on Ctrl-C while waiting for workers, leave the run going (exit 130) instead of "
        "asking whether to cancel it",
    )
    run.set_defaults(func=cmd_run)

    cancel = sub.add_parser(
        "cancel",
        parents=[common],
        help="end a run as cancelled: its in-flight fixer or tool is stopped, its target freed",
    )
    cancel.add_argument("run_id", metavar="RUN_ID", help="the run to cancel")
    cancel.add_argument("--reason", default="", help="why (recorded in RunCancelled)")
    cancel.add_argument("--json", action="store_true", help="print the run's status as JSON")
    cancel.set_defaults(func=cmd_cancel)

    status = sub.add_parser(
        "status", parents=[common], help="a run's status (default: the latest run)"
    )
    status.add_argument("run_id", nargs="?", metavar="RUN_ID")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    replay = sub.add_parser(
        "replay",
        parents=[common],
        help="a run's timeline with the state after each event (RUN_ID or an export file)",
    )
    replay.add_argument("source", metavar="RUN_ID|FILE.jsonl")
    replay.add_argument("--at", type=int, metavar="VERSION", help="stop at this version")
    replay.add_argument("--json", action="store_true")
    replay.set_defaults(func=cmd_replay)

    export = sub.add_parser(
        "export", parents=[common], help="write a run's events as JSON lines to stdout"
    )
    export.add_argument("run_id", metavar="RUN_ID")
    export.set_defaults(func=cmd_export)

    imp = sub.add_parser(
        "import", parents=[common], help="load exported events into this store (idempotent)"
    )
    imp.add_argument("file", metavar="FILE.jsonl")
    imp.set_defaults(func=cmd_import)

    proj = sub.add_parser(
        "projections", parents=[common], help="rebuild the read models from the log"
    )
    proj_sub = proj.add_subparsers(dest="projections_command", metavar="ACTION", required=True)
    rb = proj_sub.add_parser(
        "rebuild",
        parents=[common],
        help="rebuild into a scratch namespace, compare, then swap in (or only --check)",
    )
    rb.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    rb.set_defaults(func=cmd_projections_rebuild)

    dlq = sub.add_parser("dlq", parents=[common], help="dead letters: list, show, retry, discard")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    for action, text in (
        ("list", "every parked entry (optionally of one group)"),
        ("show", "one dead letter with its original event"),
        (
            "retry",
            (
                "hand the original entry to its group again, then the "
                "halted run's other parked entries, oldest first"
            ),
        ),
        ("discard", "delete dead letters"),
    ):
        a = dlq_sub.add_parser(action, parents=[common], help=text)
        if action == "discard":
            a.add_argument("ids", nargs="+", metavar="ID")
        elif action != "list":
            a.add_argument("ids", nargs=1, metavar="ID")
        a.add_argument("--group", help="the consumer group (default: whichever has the id)")
        if action in ("list", "show"):
            a.add_argument("--json", action="store_true")
        else:
            a.add_argument(
                "--wait",
                type=float,
                default=30.0,
                metavar="S",
                help="how long a live worker owning the partition may take to do it",
            )
        a.set_defaults(func=cmd_dlq)

    trim = sub.add_parser(
        "trim",
        parents=[common],
        help="remove log entries every group acknowledged, of runs finished long ago",
    )
    trim.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="runs finished more than this long ago: 7d, 12h, 30m, 1h30m",
    )
    trim.add_argument(
        "--archive",
        metavar="DIR",
        help="first write each such run to DIR/<run_id>.jsonl, then remove its stream too",
    )
    trim.add_argument("--dry-run", action="store_true", help="show what would go; change nothing")
    trim.add_argument("--json", action="store_true")
    trim.set_defaults(func=cmd_trim)

    insp = sub.add_parser(
        "inspect",
        parents=[common],
        help="streams, consumer groups (lag, pending, dead letters), projection lag",
    )
    insp.add_argument("--json", action="store_true")
    insp.set_defaults(func=cmd_inspect)

    tail = sub.add_parser(
        "tail",
        parents=[common],
        help="a run's (or every run's) events and service log lines, optionally as they happen",
    )
    tail.add_argument(
        "run_id",
        nargs="?",
        metavar="RUN_ID",
        help="one run, or latest for the newest (default: every run)",
    )
    tail.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep going: until the run ends, or until Ctrl-C without RUN_ID",
    )
    tail.add_argument(
        "--json", action="store_true", help="one JSON object per line (kind: event or log)"
    )
    tail.add_argument(
        "--type", metavar="T[,T...]", help="only these event types (log = service log lines)"
    )
    tail.add_argument("--level", metavar="L", help="minimum level (events count as info)")
    tail.add_argument(
        "--from",
        dest="start",
        choices=("start", "now"),
        help="where to begin (default: a run's start with RUN_ID, now without)",
    )
    tail.set_defaults(func=cmd_tail)

    runs = sub.add_parser("runs", parents=[common], help="list runs, newest first")
    runs.add_argument("--json", action="store_true")
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(func=cmd_runs)
    return parser


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    overrides: dict[str, object] = {}
    if getattr(args, "redis_url", None):
        overrides["store.redis_url"] = args.redis_url
    if getattr(args, "log_format", None):
        overrides["logging.format"] = args.log_format
    if getattr(args, "log_level", None):
        overrides["logging.level"] = args.log_level
    if getattr(args, "python", None):
        overrides["target_project.python"] = args.python
    cfg = load_config(args.config, overrides=overrides)
    args.store_url = cfg.store.redis_url  # what main() names when the server cannot be used
    return cfg


def cmd_config(args: argparse.Namespace) -> int:
    from airfix.services.secrets import configure, redact_config

    cfg = _load(args)
    configure(cfg)
    sys.stdout.write(yaml.safe_dump(redact_config(config_to_dict(cfg)), sort_keys=False))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from airfix.services.runtime.app import build_app
    from airfix.services.runtime.logs import configure_logging, get_logger
    from airfix.services.runtime.logstream import configure_service_logging
    from airfix.services.runtime.worker import Worker

    cfg = _load(args)
    configure_logging(cfg.logging.level, cfg.logging.format)  # errors before the store opens
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    if roles == ["all"]:
        roles = list(ROLES)
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise AirfixError(
            f"--roles: unknown role(s) {', '.join(unknown)}; known: {', '.join(ROLES)}"
        )
    if not cfg.store.redis_url and not args.burst:
        raise AirfixError(
            "worker needs a Redis server: pass --redis-url or set AIRFIX_REDIS_URL "
            "(the embedded store lives inside one process)"
        )
    app = build_app(cfg)
    configure_service_logging(
        app, cfg.logging.level, cfg.logging.format
    )  # + the log stream for tail
    kwargs = {"name": args.name} if args.name else {}
    worker_name = args.name or None
    handlers = app.handlers([r for r in roles if r == "projections"])
    pipeline_roles = [r for r in roles if r != "projections"]
    if pipeline_roles:
        from airfix.services.pipeline.roles import Pipeline, role_handlers
        from airfix.services.runtime.consumers import consumer_name

        worker_name = worker_name or consumer_name()
        kwargs["name"] = worker_name
        handlers += role_handlers(Pipeline(app.store, cfg, worker=worker_name), pipeline_roles)  # type: ignore[arg-type]
    worker = Worker(app.store, handlers, app.settings, **kwargs)
    worker.install_signal_handlers()
    get_logger("airfix.cli").info(
        "worker starting", roles=roles, worker=worker.name, partitions=app.keys.partitions
    )
    worker.run(burst=args.burst)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from airfix.services.commands.run import main_run
    from airfix.services.runtime.logs import configure_logging

    cfg = _load(args)
    wait = args.wait_timeout
    if wait is not None and not 0 < wait < float(
        "inf"
    ):  # NaN too; checked before anything is opened
        raise AirfixError(f"--wait-timeout must be a number of seconds above 0, got {wait:g}")
    # people follow the run through its events (one line each); the service logs stay available
    # with --log-level info, and as JSON lines with --log-format json
    level = (
        cfg.logging.level
        if (args.log_level or args.json or cfg.logging.format == "json")
        else "warning"
    )
    configure_logging(level, cfg.logging.format)
    return main_run(
        cfg,
        target=args.target or cfg.target_project.path or None,
        sample=args.sample,
        batching=args.batching or cfg.issue_grouping.mode,
        fixer=args.fixer or ",".join(cfg.fixer.chain),
        simulation=args.simulation,
        max_iterations=args.max_iterations,
        json_out=args.json,
        inline=args.inline,
        wait_timeout_s=args.wait_timeout,
        serve_redis=args.serve_redis,
        log_level=level,
        detach=args.detach,
    )


def cmd_cancel(args: argparse.Namespace) -> int:
    """Exit 0 when the run is now cancelled, 1 when it had already finished otherwise."""
    import json

    from airfix.services.pipeline.requests import cancel_run
    from airfix.services.runtime.app import build_app

    app = build_app(_load(args), journal=True)
    state, now = cancel_run(app, args.run_id, reason=args.reason)
    if args.json:
        print(
            json.dumps(
                {
                    "run_id": state.run_id,
                    "state": state.state,
                    "status": state.status,
                    "reason": state.reason,
                    "cancelled_now": now,
                }
            )
        )
    elif now:
        print(f"airfix: run {state.run_id} cancelled ({state.reason})")
    else:
        print(f"airfix: run {state.run_id} had already finished: {state.status} ({state.reason})")
    return 0 if now else 1


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from airfix.projections.status import load_status, newest_runs
    from airfix.services.runtime.app import build_app

    app = build_app(_load(args), journal=True)
    run_id = args.run_id
    if run_id is None:
        newest = newest_runs(app.client, app.keys)
        if not newest:
            raise AirfixError("no runs yet")
        run_id = newest[0]
    status = load_status(app.client, app.keys, run_id)
    if status is None:
        raise AirfixError(f"no run {run_id!r} (see airfix runs)")
    if args.json:
        print(json.dumps(status))
    else:
        halted = "; HALTED in " + ", ".join(status["halted"]) if status["halted"] else ""
        print(
            f"{run_id}: {status['state']} {status['status'] or ''} iteration {status['iterations_completed']} "
            f"score {status['score']:.2f} issues {status['issues_initial']} -> {status['issues_open']} "
            f"commits {len(status['commits'])}{halted}"
        )
        if status["reason"]:
            print(f"  reason: {status['reason']}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    import json

    from airfix.projections.status import load_status, newest_runs
    from airfix.services.runtime.app import build_app

    app = build_app(_load(args), journal=True)
    ids = newest_runs(app.client, app.keys, args.limit)
    rows = [load_status(app.client, app.keys, r) for r in ids]
    if args.json:
        print(json.dumps([r for r in rows if r]))
        return 0
    for r in rows:
        if r:
            print(f"{r['run_id']}  {r['state']:<10} {r['status'] or '-':<16} {r['target']}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from collections.abc import Iterable
    from pathlib import Path

    from airfix.events.schema import Event
    from airfix.services.commands.ops import iter_timeline, read_jsonl, write_timeline

    source = Path(args.source)
    events: Iterable[Event]
    if source.suffix == ".jsonl" or source.is_file():
        if not source.is_file():
            raise AirfixError(f"{source}: no such file")
        events = list(read_jsonl(source))  # offline: no Redis at all
        runs = {e.run_id for e in events}
        if len(runs) != 1:
            raise AirfixError(f"{source} holds {len(runs)} runs; replay takes one")
    else:
        from airfix.services.runtime.app import build_app

        app = build_app(_load(args), journal=True)
        if app.store.version(args.source) == 0:
            raise AirfixError(f"no run {args.source!r} in this store (see airfix runs)")
        events = app.store.read_run(args.source)  # streamed: a long run is never all in memory
    if args.at is not None and args.at < 1:
        raise AirfixError(f"--at must be at least 1, got {args.at}")
    write_timeline(iter_timeline(events, at=args.at), sys.stdout.buffer, json=args.json)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from airfix.services.commands.ops import inspect_store, render_inspect
    from airfix.services.runtime.app import build_app

    info = inspect_store(build_app(_load(args), journal=True))
    if args.json:
        print(json.dumps(info))
    else:
        render_inspect(info)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from airfix.services.commands.tail import Tail, open_feed, parse_filter
    from airfix.services.runtime.logstream import journal_log_path

    cfg = _load(args)
    flt = parse_filter(None, args.type, args.level)  # bad options fail before anything is opened
    from_start = (args.start or ("start" if args.run_id else "now")) == "start"
    if cfg.store.redis_url:
        from airfix.services.runtime.app import build_app

        feed, run_id = open_feed(
            build_app(cfg), journal=None, logs=None, run_id=args.run_id, from_start=from_start
        )
    elif cfg.store.journal:  # the embedded store lives in another process: follow its journal
        journal = Path(cfg.store.journal).expanduser()
        feed, run_id = open_feed(
            None,
            journal=journal,
            logs=journal_log_path(journal),
            run_id=args.run_id,
            from_start=from_start,
        )
    else:
        raise AirfixError(
            "the embedded store without a journal (store.journal: '') keeps nothing between "
            "commands; pass --redis-url or set store.journal"
        )
    try:
        Tail(feed, replace(flt, run_id=run_id), json_out=args.json).run(follow=args.follow)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from airfix.events.codec import write_jsonl
    from airfix.services.runtime.app import build_app

    app = build_app(_load(args), journal=True)
    if app.store.version(args.run_id) == 0:
        raise AirfixError(f"no run {args.run_id!r} in this store (see airfix runs)")
    write_jsonl(app.store.read_run(args.run_id), sys.stdout.buffer)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from airfix.services.commands.ops import import_events, read_jsonl
    from airfix.services.runtime.app import build_app

    events = list(read_jsonl(Path(args.file)))  # every line is checked before anything is written
    app = build_app(_load(args), journal=True)
    for run_id, (at_version, duplicate) in import_events(app.store, events).items():
        print(f"{run_id}: {'already present' if duplicate else 'imported'}, version {at_version}")
    return 0


def cmd_projections_rebuild(args: argparse.Namespace) -> int:
    from airfix.events.keys import Keys
    from airfix.services.commands.ops import rebuild_all
    from airfix.services.runtime.app import build_app

    app = build_app(_load(args), journal=True)
    scratch = Keys(prefix=f"scratch:{app.keys.prefix}", partitions=app.keys.partitions)
    equal = rebuild_all(app.store, app.projections(), app.projections(scratch), check=args.check)
    for name, same in equal.items():
        print(
            f"{name}: {'equal' if same else 'DIFFERS from a rebuild'}"
            + ("" if args.check else "; rebuilt from the log")
        )
    return 1 if args.check and not all(equal.values()) else 0


def cmd_dlq(args: argparse.Namespace) -> int:
    import json

    from airfix.services.commands import dlq
    from airfix.services.runtime import deadletters
    from airfix.services.runtime.app import build_app

    app = build_app(_load(args), journal=True)
    if args.dlq_command == "list":
        rows = deadletters.list_dead_letters(app.client, app.keys, args.group)
        if args.json:
            print(json.dumps([d.to_dict() for d in rows]))
        else:
            dlq.render_list(rows)
        return 0
    found = [
        deadletters.find(app.client, app.keys, i, args.group) for i in args.ids
    ]  # all, before any write
    if args.dlq_command == "show":
        if args.json:
            print(json.dumps(found[0].to_dict(event=True)))
        else:
            dlq.render_show(found[0])
        return 0
    failed = False
    for d in found:
        out = deadletters.request(app, args.dlq_command, d, wait_s=args.wait)
        print(dlq.describe(out))
        failed = failed or out.state != "done"
    return 1 if failed else 0


def cmd_trim(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict
    from pathlib import Path

    from airfix.services.commands.trim import render
    from airfix.services.runtime.app import build_app
    from airfix.services.runtime.retention import parse_duration, trim

    older_than = parse_duration(args.older_than)  # bad input fails before anything is opened
    app = build_app(_load(args), journal=True)
    report = trim(
        app,
        older_than=older_than,
        archive=Path(args.archive) if args.archive else None,
        dry_run=args.dry_run,
    )
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        render(report)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from airfix.services.runtime.logs import configure_logging

    configure_logging("warning", "console")  # stdout is for results; run/worker set their own level
    try:
        return int(args.func(args))
    except AirfixError as exc:
        from airfix.services.secrets import redact_text

        print(f"airfix: error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    except (
        redis.ConnectionError,
        redis.TimeoutError,
    ) as exc:  # AuthenticationError is a ConnectionError
        print(
            f"airfix: error: {redis_problem(exc, getattr(args, 'store_url', ''))}", file=sys.stderr
        )
        return EXIT_REDIS_UNAVAILABLE


def redis_problem(exc: BaseException, url: str) -> str:
    """One line for a Redis server that cannot be used, naming it without its password."""
    from airfix.services.secrets import redact_text, redact_url

    where = f"the Redis server {redact_url(url)}" if url else "the Redis server"
    detail = redact_text(str(exc).strip().rstrip(".")) or type(exc).__name__
    if isinstance(exc, redis.AuthenticationError):
        return (
            f"{where} refused the credentials ({detail}); check the user and password in "
            "--redis-url / AIRFIX_REDIS_URL / store.redis_url"
        )
    if isinstance(exc, redis.TimeoutError):
        return (
            f"{where} did not answer in time ({detail}); is it overloaded or behind a firewall? "
            "(timeouts: ?socket_timeout=S&socket_connect_timeout=S in the URL)"
        )
    return f"cannot connect to {where} ({detail}); is it running, and is the URL right?"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
