"""``airfix run``, ``worker`` and ``cancel``: the commands that start, host and end fix runs."""

from __future__ import annotations

import argparse
import json

from airfix.events.core.steps import ROLES as PIPELINE_ROLES
from airfix.events.errors import AirfixError
from airfix.services.commands.options import (
    EXIT_CODES,
    EXIT_FAILURE,
    Subparsers,
    add_command,
    add_json,
    load,
)

ROLES = ("projections", *PIPELINE_ROLES)


def add_commands(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    _add_worker(sub, common)
    _add_run(sub, common)
    cancel = add_command(
        sub,
        "cancel",
        parents=[common],
        summary="end a run as cancelled: its in-flight fixer or tool is stopped, its target freed",
        description="End a run as cancelled (a RunCancelled event).  The worker hosting its "
        "in-flight fixer or tool stops it; commits made so far stay on the run's branch.",
        examples=[
            "airfix cancel run-20261124-ab12cd --reason 'wrong target'",
            "airfix cancel run-20261124-ab12cd --json",
        ],
        exit_codes=[(EXIT_FAILURE, "the run had already finished otherwise")],
    )
    cancel.add_argument("run_id", metavar="RUN_ID", help="the run to cancel")
    cancel.add_argument("--reason", default="", help="why (recorded in RunCancelled)")
    add_json(cancel, "the run's status")
    cancel.set_defaults(func=cmd_cancel)


def _add_worker(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    worker = add_command(
        sub,
        "worker",
        parents=[common],
        summary="run consumer roles against a Redis server until SIGTERM",
        description="Host consumer roles (the projections and the pipeline's steps) against a "
        "Redis server, until SIGTERM or Ctrl-C; several workers share the partitions.",
        examples=[
            "airfix worker --redis-url redis://localhost:6379/0 --roles all",
            "airfix worker --roles fixer --name fixer-1",
        ],
    )
    worker.add_argument(
        "--roles", default="all", help=f"comma-separated roles, or all (known: {', '.join(ROLES)})"
    )
    worker.add_argument("--burst", action="store_true", help="exit once nothing is left to read")
    worker.add_argument("--name", help="consumer name (default: host-pid-random)")
    worker.set_defaults(func=cmd_worker)


def _add_run(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    run = add_command(
        sub,
        "run",
        parents=[common],
        summary="make a repository healthier, one verified commit at a time",
        description="Fix a git repository: check it, plan batches of issues, fix each, verify it "
        "and commit it on the run's own branch.  Each event is shown on stderr as it happens; the "
        "summary (or with --json one JSON object) goes to stdout.",
        examples=[
            "airfix run --target ~/src/project",
            "airfix run --sample --max-iterations 1 --json",
            "airfix run --target . --redis-url redis://localhost:6379/0 --wait-timeout 600",
        ],
        exit_codes=[
            *((code, status) for status, code in EXIT_CODES.items() if code),
            (130, "detached on Ctrl-C: the run goes on in the workers"),
        ],
    )
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--target",
        metavar="PATH|URL",
        help="the git repository to fix: a local checkout (clean tree) or a git URL the workers "
        "fetch from and push to (https://, ssh://, git@host:path, file://)",
    )
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
        "--fixer",
        help="the fixers, in order, e.g. autofix or autofix,claude (default: fixer.chain)",
    )
    add_json(run, "the final summary")
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


def cmd_worker(args: argparse.Namespace) -> int:
    from airfix.services.process import set_child_niceness
    from airfix.services.runtime.app import build_app
    from airfix.services.runtime.logs import configure_logging, get_logger
    from airfix.services.runtime.logstream import configure_service_logging
    from airfix.services.runtime.worker import Worker

    cfg = load(args)
    configure_logging(cfg.logging.level, cfg.logging.format)  # errors before the store opens
    roles = _roles(args.roles)
    if not cfg.store.redis_url and not args.burst:
        raise AirfixError(
            "worker needs a Redis server: pass --redis-url or set AIRFIX_REDIS_URL "
            "(the embedded store lives inside one process)"
        )
    app = build_app(cfg)
    configure_service_logging(app, cfg.logging.level, cfg.logging.format)  # + tail's log stream
    kwargs = {"name": args.name} if args.name else {}
    handlers = app.handlers([r for r in roles if r == "projections"])
    pipeline_roles = [r for r in roles if r != "projections"]
    if pipeline_roles:
        from airfix.services.pipeline.roles import Pipeline, role_handlers
        from airfix.services.runtime.consumers import consumer_name

        kwargs["name"] = args.name or consumer_name()
        pipeline = Pipeline(app.store, cfg, worker=kwargs["name"])
        pipeline.sweep()
        handlers += role_handlers(pipeline, pipeline_roles)  # type: ignore[arg-type]
    set_child_niceness(cfg.consumers.child_niceness)
    worker = Worker(app.store, handlers, app.settings, **kwargs)
    worker.install_signal_handlers()
    get_logger("airfix.cli").info(
        "worker starting", roles=roles, worker=worker.name, partitions=app.keys.partitions
    )
    worker.run(burst=args.burst)
    return 0


def _roles(text: str) -> list[str]:
    roles = [r.strip() for r in text.split(",") if r.strip()]
    if roles == ["all"]:
        return list(ROLES)
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise AirfixError(
            f"--roles: unknown role(s) {', '.join(unknown)}; known: {', '.join(ROLES)}"
        )
    return roles


def cmd_run(args: argparse.Namespace) -> int:
    from airfix.services.commands.run import main_run
    from airfix.services.runtime.logs import configure_logging

    cfg = load(args)
    wait = args.wait_timeout
    if wait is not None and not 0 < wait < float("inf"):  # NaN too; before anything is opened
        raise AirfixError(f"--wait-timeout must be a number of seconds above 0, got {wait:g}")
    # people follow the run through its events (one line each, on stderr, --json or not); the
    # service logs join them with --log-level, and as JSON lines with --log-format json
    level = cfg.logging.level if (args.log_level or cfg.logging.format == "json") else "warning"
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
    from airfix.services.pipeline.requests import cancel_run
    from airfix.services.runtime.app import build_app

    app = build_app(load(args), journal=True)
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
    return 0 if now else EXIT_FAILURE
