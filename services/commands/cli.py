"""The ``airfix`` command line: the top-level parser and the entry point.

The subcommands live by group (``cli_run``, ``cli_read``, ``cli_log``); this module parses, picks
the handler and turns the errors people can act on into one line and an exit code: 0 ok,
1 failure, 2 bad input (usage, config), 10 the Redis server cannot be used (refused, timed out,
rejected the credentials), 141 stdout was closed before everything was written (``| head``).
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import redis

from airfix.events.errors import AirfixError
from airfix.services.commands import cli_log, cli_read, cli_run
from airfix.services.commands.cli_run import ROLES
from airfix.services.commands.options import (
    EXIT_CLOSED_PIPE,
    EXIT_REDIS_UNAVAILABLE,
    EXIT_USAGE,
    common_options,
    redis_problem,
)

__all__ = [
    "EXIT_CLOSED_PIPE",
    "EXIT_REDIS_UNAVAILABLE",
    "ROLES",
    "build_parser",
    "main",
    "redis_problem",
]


def _version() -> str:
    try:
        return version("airfix")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airfix",
        description="Autonomous code fixing as an event-sourced state machine on Redis Streams.",
        epilog="airfix COMMAND --help shows what a command does, examples and its exit codes.",
    )
    parser.add_argument("--version", action="version", version=f"airfix {_version()}")
    common = common_options()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help="what to do")
    cli_run.add_commands(sub, common)
    cli_read.add_commands(sub, common)
    cli_log.add_commands(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code is returned (the console script exits with it)."""
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help(sys.stderr)  # stdout is for results; no command is a usage error
        return EXIT_USAGE
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):  # options without a command
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        code = _dispatch(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # another pipe (a tool's, a fixer's) broke: that is a real failure
        return _closed_pipe()


def _dispatch(args: argparse.Namespace) -> int:
    from airfix.services.runtime.logs import configure_logging

    try:
        # stdout is for results, stderr for people: service log lines only when asked for
        # (run and worker set their own level)
        configure_logging(args.log_level or "warning", args.log_format or "console")
        return int(args.func(args))
    except AirfixError as exc:
        from airfix.services.secrets import redact_text

        print(f"airfix: error: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except (redis.ConnectionError, redis.TimeoutError) as exc:  # credentials: a ConnectionError
        problem = redis_problem(exc, getattr(args, "store_url", ""))
        print(f"airfix: error: {problem}", file=sys.stderr)
        return EXIT_REDIS_UNAVAILABLE


def _stdout_closed() -> bool:
    """Whether stdout is a pipe nobody reads any more (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no descriptor, or no poll on this system
        return True


def _closed_pipe() -> int:
    """The reader of stdout went away (``airfix runs --json | head -1``): end quietly, as CPython's
    documentation on SIGPIPE advises.  Python ignores SIGPIPE, so a write raises instead; stdout is
    pointed at /dev/null so the interpreter's final flush cannot raise (and print) again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor: nothing will flush it
        pass
    return EXIT_CLOSED_PIPE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
