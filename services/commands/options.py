"""What every ``airfix`` subcommand shares: exit codes, the common options, the layout of each
``--help`` (what it does, examples, exit codes), and the configuration the options select."""

from __future__ import annotations

import argparse
import signal
import textwrap
from collections.abc import Sequence
from typing import TypeAlias

import redis

from airfix.config import Config, load_config

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
#: the Redis server cannot be used: not reachable, too slow, wrong credentials
EXIT_REDIS_UNAVAILABLE = 10
#: stdout's reader went away (``airfix runs --json | head -1``): what a shell reports for a
#: process ended by SIGPIPE (128 + 13), so pipelines and ``set -o pipefail`` read it as usual
EXIT_CLOSED_PIPE = 128 + int(signal.SIGPIPE)

#: ``airfix run``'s exit code per terminal status of the run
EXIT_CODES = {
    "succeeded": 0,
    "simulated": 0,
    "failed": 1,
    "partially_fixed": 3,
    "no_progress": 4,
    "budget_exhausted": 5,
    "timed_out": 6,
    "verify_failed": 7,
    "tool_error": 8,
    "cancelled": 9,
    "nothing_fixable": 11,
    "fixer_unavailable": 12,
}

#: exit codes every subcommand may end with; each adds its own (see :func:`add_command`)
COMMON_EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "done"),
    (EXIT_USAGE, "bad input: usage, configuration, an unknown run or file"),
    (EXIT_REDIS_UNAVAILABLE, "the Redis server cannot be used (refused, timed out, credentials)"),
    (EXIT_CLOSED_PIPE, "stdout was closed early (e.g. piped into head): the rest is dropped"),
)


def common_options() -> argparse.ArgumentParser:
    """The options of every subcommand: configuration file, Redis server, logging."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="YAML config (default: built-in defaults)")
    common.add_argument(
        "--redis-url",
        metavar="URL",
        help="Redis server (default: store.redis_url, $AIRFIX_REDIS_URL, or embedded)",
    )
    common.add_argument(
        "--log-format", choices=("console", "json"), help="service log line format (on stderr)"
    )
    common.add_argument(
        "--log-level",
        metavar="LEVEL",
        help="minimum level of service log lines on stderr: debug, info, warning (default), error",
    )
    return common


def add_command(
    sub: Subparsers,
    name: str,
    *,
    parents: Sequence[argparse.ArgumentParser],
    summary: str,
    description: str,
    examples: Sequence[str],
    exit_codes: Sequence[tuple[int, str]] = (),
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` says what it does, shows examples and lists its exit codes
    (its own, then the common ones)."""
    codes = sorted({**dict(COMMON_EXIT_CODES), **dict(exit_codes)}.items())
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    epilog += "\n\nexit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in codes)
    return sub.add_parser(
        name,
        parents=list(parents),
        help=summary,
        description=textwrap.fill(" ".join(description.split()), width=88),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    """``--json``: the result as JSON on stdout; stderr stays for people."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout")


def load(args: argparse.Namespace) -> Config:
    """The configuration with the command line's overrides; remembers the store's URL so an
    unusable server can be named in the error."""
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
    args.store_url = cfg.store.redis_url
    return cfg


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
