"""Third-party behaviour airfix relies on or works around, pinned against the locked versions.

Two kinds of test live here:

* **Parity**: what the runtime relies on, checked on fakeredis *and* the real server.  A failure
  is a real regression in a dependency: keep the lock where it is and report it upstream.
* **Canaries**: a known gap airfix works around.  They run against ``scripts/constraints.txt``, so
  they can only flip when someone refreshes the lock (``scripts/lock.sh``), never between two
  commits.  Each canary's docstring says what to do when it flips: remove the workaround it names
  (or keep it with a written reason), then turn the canary into a parity test or delete it.

History: fakeredis 2.40 returned at once from a blocking ``XREADGROUP ... COUNT`` and could mark
entries of a blocking multi-stream ``XREADGROUP`` delivered without returning them; 2.41 fixed
both, and the canary for it flipped.  The runtime keeps fetching with a non-blocking
``XREADGROUP`` and waiting with ``XREAD BLOCK`` on both backends anyway, for a reason of its own:
a blocking group read can deliver entries of a partition whose lease was lost while it waited,
whereas the wake-up read delivers nothing (services/runtime/consumers.py).  One path, tested on both.
"""

from __future__ import annotations

import threading
import time

import fakeredis
import pytest
import redis

from tests.conftest import make_client


@pytest.fixture(params=["fakeredis", "redis"])
def c(request: pytest.FixtureRequest) -> redis.Redis:
    client = make_client(str(request.param))
    client.delete("s", "s2")
    yield client
    client.delete("s", "s2")


def test_blocking_xreadgroup_with_count_waits_for_the_entry(c: redis.Redis) -> None:
    """Parity (fakeredis >= 2.41): BLOCK with COUNT waits, then returns the new entry."""
    c.xgroup_create("s", "g", id="0", mkstream=True)
    threading.Timer(0.3, lambda: c.xadd("s", {"f": "v"})).start()
    started = time.monotonic()
    got = c.xreadgroup("g", "me", {"s": ">"}, block=3000, count=1)
    assert got and time.monotonic() - started >= 0.2
    assert c.xpending("s", "g")["pending"] == 1


def test_blocking_multi_stream_xreadgroup_returns_what_it_delivers(c: redis.Redis) -> None:
    """Parity: every entry a blocking multi-stream group read marks delivered is returned."""
    for s in ("s", "s2"):
        c.xgroup_create(s, "g", id="0", mkstream=True)
    n = 60

    def produce() -> None:
        for i in range(n):
            c.xadd("s" if i % 2 else "s2", {"i": str(i)})

    threading.Thread(target=produce).start()
    got, deadline = 0, time.monotonic() + 10
    while got < n and time.monotonic() < deadline:
        for _, rows in c.xreadgroup("g", "me", {"s": ">", "s2": ">"}, block=200, count=3) or []:
            got += len(rows)
    pending = sum(c.xpending(s, "g")["pending"] for s in ("s", "s2"))
    assert got == pending == n


def test_plain_xread_block_wakes_up_on_append(c: redis.Redis) -> None:
    """Parity: the runtime's wait (a plain XREAD BLOCK from the last seen id) wakes on append."""
    c.xadd("s", {"f": "v0"})
    threading.Timer(0.2, lambda: c.xadd("s", {"f": "v1"})).start()
    last = c.xrange("s")[-1][0]
    started = time.monotonic()
    got = c.xread({"s": last}, block=3000)
    assert got and time.monotonic() - started < 2.5


def test_canary_fakeredis_has_no_info_command() -> None:
    """Canary: fakeredis answers ``INFO`` with "unknown command".

    Worked around in ``events/storage/backend.py capabilities()``, which reads the embedded server's
    version from its ``FakeServer`` instead of ``INFO server``.  When this flips, let
    ``capabilities()`` use ``INFO`` on both backends (one path), then make this a parity test.
    """
    c = fakeredis.FakeRedis(server=fakeredis.FakeServer(version=(7, 0)))
    with pytest.raises(redis.ResponseError, match="unknown command"):
        c.info("server")
