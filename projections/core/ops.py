"""What a fold asks of Redis, as data: the writes of one event (:class:`Op`) and where a run's
state is read back from (:class:`StateRead`).

Every write names a command of ``apply.lua``'s whitelist; :meth:`Op.wire` gives its name and
arguments as the script takes them (a :class:`KeyRef` argument names another key).
"""

from __future__ import annotations

from typing import Any

import msgspec

_ENC = msgspec.json.Encoder()


def dumps(obj: Any) -> bytes:
    return _ENC.encode(obj)


def position(entry_id: str) -> str:
    """A fixed-width, lexicographically ordered form of a stream id (for order-stable views)."""
    ms, _, seq = entry_id.partition("-")
    return f"{int(ms):015d}-{int(seq or 0):010d}"


class KeyRef(msgspec.Struct, frozen=True):
    """An op argument that names another key; it is passed in KEYS and replaced by its index."""

    key: str


class Op(msgspec.Struct, frozen=True, tag=True):
    """One Redis write to ``key``."""

    key: str

    def wire(self) -> tuple[str, tuple[Any, ...]]:
        """The apply.lua command name and its arguments."""
        raise NotImplementedError


class SetValue(Op, frozen=True):
    value: bytes

    def wire(self) -> tuple[str, tuple[Any, ...]]:
        return "SET", (self.value,)


class Delete(Op, frozen=True):
    def wire(self) -> tuple[str, tuple[Any, ...]]:
        return "DEL", ()


class ZAdd(Op, frozen=True):
    score: float
    member: str | bytes

    def wire(self) -> tuple[str, tuple[Any, ...]]:
        return "ZADD", (self.score, self.member)


class ZRem(Op, frozen=True):
    members: tuple[str, ...]

    def wire(self) -> tuple[str, tuple[Any, ...]]:
        return "ZREM", self.members


class ZRemRangeByRank(Op, frozen=True):
    start: int
    stop: int

    def wire(self) -> tuple[str, tuple[Any, ...]]:
        return "ZREMRANGEBYRANK", (self.start, self.stop)


class HSet(Op, frozen=True):
    field: str
    value: bytes

    def wire(self) -> tuple[str, tuple[Any, ...]]:
        return "HSET", (self.field, self.value)


class HDel(Op, frozen=True):
    field: str

    def wire(self) -> tuple[str, tuple[Any, ...]]:
        return "HDEL", (self.field,)


class SAdd(Op, frozen=True):
    member: str

    def wire(self) -> tuple[str, tuple[Any, ...]]:
        return "SADD", (self.member,)


class SRem(Op, frozen=True):
    members: tuple[str, ...]

    def wire(self) -> tuple[str, tuple[Any, ...]]:
        return "SREM", self.members


class RebuildList(Op, frozen=True):
    """Replace the list at ``key`` by the values of the ``source`` zset, newest first, at most
    ``length``; members are ``<position>|<value>`` with score 0 (so the order is the log's)."""

    source: str
    length: int

    def wire(self) -> tuple[str, tuple[Any, ...]]:
        return "REBUILD_LIST", (KeyRef(self.source), self.length)


class SetNewer(Op, frozen=True):
    """Set ``key`` to ``value`` unless ``position_key`` holds a later log position already."""

    position_key: str
    position: str
    value: bytes

    def wire(self) -> tuple[str, tuple[Any, ...]]:
        return "SETNEWER", (KeyRef(self.position_key), self.position, self.value)


class StateRead(msgspec.Struct, frozen=True, tag=True):
    """Where a run's fold state is stored (written by the fold's own ops)."""

    key: str


class HashField(StateRead, frozen=True):
    """``HGET key field``: the raw value, or None."""

    field: str


class SetMembers(StateRead, frozen=True):
    """``SMEMBERS key``: the raw members."""
