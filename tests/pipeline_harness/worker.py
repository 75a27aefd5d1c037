"""``airfix worker`` with one extra fixer, ``slowfix``: autofix after a pause, announced in Redis.

Run from the repository root: ``python -m tests.pipeline_harness.worker [worker args ...]``; every
argument is passed to ``airfix worker`` (``airfix.services.commands.cli.main(["worker", ...])``).

Environment:

``HARNESS_SLOWFIX_DELAY_S``   seconds ``slowfix`` sleeps before delegating to autofix (default 3);
``HARNESS_SLOWFIX_KEY``       a Redis key (on ``--redis-url``) that ``slowfix`` INCRs when it starts
                              a fix; it also RPUSHes ``<pid> <batch_id>`` to ``<key>:log``.  The key
                              is the test's own, outside airfix's key space.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import redis

from airfix.services import fixers
from airfix.services.commands import cli
from airfix.services.fixers import FixRequest
from tests.pipeline_harness.cheats import SlowFixer

DELAY_ENV = "HARNESS_SLOWFIX_DELAY_S"
KEY_ENV = "HARNESS_SLOWFIX_KEY"


def _redis_url(argv: Sequence[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--redis-url" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--redis-url="):
            return arg.split("=", 1)[1]
    return os.environ.get("AIRFIX_REDIS_URL", "")


def install(argv: Sequence[str]) -> None:
    delay = float(os.environ.get(DELAY_ENV, "3"))
    key = os.environ.get(KEY_ENV, "")
    url = _redis_url(argv)
    client = redis.Redis.from_url(url) if key and url else None

    def announce(request: FixRequest) -> None:
        if client is not None:
            client.rpush(f"{key}:log", f"{os.getpid()} {request.batch.batch_id}")
            client.incr(key)

    fixers.register("slowfix", lambda: SlowFixer(delay, announce))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    install(args)
    return cli.main(["worker", *args])


if __name__ == "__main__":
    sys.exit(main())
