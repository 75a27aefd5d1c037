"""The ``airfix`` command line.  Exit codes: 0 ok, 1 failure, 2 bad input (usage, config)."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Sequence

import yaml

from airfix.config import config_to_dict, load_config
from airfix.events.errors import AirfixError

ROLES = ("projections",)


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
    common.add_argument("--redis-url", metavar="URL",
                        help="Redis server (default: store.redis_url, $AIRFIX_REDIS_URL, or embedded)")
    common.add_argument("--log-format", choices=("console", "json"), help="log line format")
    common.add_argument("--log-level", help="minimum log level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    cfg = sub.add_parser("config", parents=[common], help="print the effective configuration")
    cfg.set_defaults(func=cmd_config)

    worker = sub.add_parser("worker", parents=[common],
                            help="run consumer roles against a Redis server until SIGTERM")
    worker.add_argument("--roles", default="projections",
                        help=f"comma-separated roles (known: {', '.join(ROLES)})")
    worker.add_argument("--burst", action="store_true", help="exit once nothing is left to read")
    worker.add_argument("--name", help="consumer name (default: host-pid-random)")
    worker.set_defaults(func=cmd_worker)
    return parser


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    overrides: dict[str, object] = {}
    if getattr(args, "redis_url", None):
        overrides["store.redis_url"] = args.redis_url
    if getattr(args, "log_format", None):
        overrides["logging.format"] = args.log_format
    if getattr(args, "log_level", None):
        overrides["logging.level"] = args.log_level
    return load_config(args.config, overrides=overrides)


def cmd_config(args: argparse.Namespace) -> int:
    cfg = _load(args)
    sys.stdout.write(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from airfix.services.app import build_app
    from airfix.services.logs import configure_logging, get_logger
    from airfix.services.runtime import Worker

    cfg = _load(args)
    configure_logging(cfg.logging.level, cfg.logging.format)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise AirfixError(f"--roles: unknown role(s) {', '.join(unknown)}; known: {', '.join(ROLES)}")
    if not cfg.store.redis_url and not args.burst:
        raise AirfixError("worker needs a Redis server: pass --redis-url or set AIRFIX_REDIS_URL "
                          "(the embedded store lives inside one process)")
    app = build_app(cfg)
    kwargs = {"name": args.name} if args.name else {}
    worker = Worker(app.store, app.handlers(roles), app.settings, **kwargs)
    worker.install_signal_handlers()
    get_logger("airfix.cli").info("worker starting", roles=roles, worker=worker.name,
                                  partitions=app.keys.partitions)
    worker.run(burst=args.burst)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except AirfixError as exc:
        print(f"airfix: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
