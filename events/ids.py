"""Event ids: unique and sortable by creation time (ULID layout, Crockford base32).

Sortable ids let people read a log in order by eye; the version, not the id, is what orders a run.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = -1
_last_rand = 0


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def new_event_id() -> str:
    """A 26-character ULID; monotonic within one process even inside one millisecond."""
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _last_rand = (_last_rand + 1) & ((1 << 80) - 1)
        else:
            _last_ms = ms
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1  # room to increment
        return _encode(ms, 10) + _encode(_last_rand, 16)


def new_run_id() -> str:
    """Run ids are short, sortable and safe inside a Redis key."""
    return "run-" + new_event_id().lower()
