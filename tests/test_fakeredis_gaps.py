"""Canaries for the fakeredis gaps the runtime works around; each flips when fakeredis fixes it.

The runtime never relies on blocking ``XREADGROUP``: it fetches with a non-blocking
``XREADGROUP ... COUNT`` and waits with a plain ``XREAD BLOCK`` (services/runtime.py).
"""

from __future__ import annotations

import threading
import time

import fakeredis


def _client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer(version=(7, 0)))


def test_blocking_xreadgroup_with_count_returns_at_once() -> None:
    """fakeredis 2.40: BLOCK with COUNT does not block (real Redis waits for the entry)."""
    c = _client()
    c.xgroup_create("s", "g", id="0", mkstream=True)
    threading.Timer(0.3, lambda: c.xadd("s", {"f": "v"})).start()
    started = time.monotonic()
    got = c.xreadgroup("g", "me", {"s": ">"}, block=2000, count=1)
    waited = time.monotonic() - started
    time.sleep(0.4)
    assert got == [] and waited < 0.25, "fakeredis now blocks with COUNT: the gap is fixed"


def test_plain_xread_block_wakes_up_on_append() -> None:
    """The wait the runtime uses does work on fakeredis."""
    c = _client()
    c.xadd("s", {"f": "v0"})
    threading.Timer(0.2, lambda: c.xadd("s", {"f": "v1"})).start()
    last = c.xrange("s")[-1][0]
    started = time.monotonic()
    got = c.xread({"s": last}, block=3000)
    assert got and time.monotonic() - started < 2.5
