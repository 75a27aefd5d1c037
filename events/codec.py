"""How events are stored: flat, redis-cli-readable stream fields plus the JSON of the event.

An entry looks like this in ``redis-cli XRANGE``::

    1) "type"  2) "Committed"  3) "v" 4) "7"  5) "id" 6) "01JD..."  7) "run" 8) "run-01jd..."
    9) "at" 10) "2026-11-24T16:54:00.123Z"  11) "data" 12) "{\"type\":\"Committed\",...}"

``data`` is the whole event (envelope included), so one typed decode rebuilds it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import IO

import msgspec

from airfix.events.errors import UndecodableEntry
from airfix.events.schema import EPOCH, EVENT_TYPES, AnyEvent, Event

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(AnyEvent)

#: (type, stored schema) -> function turning the stored JSON object into the next schema's object.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, object]], dict[str, object]]] = {}
#: The current schema number of every type (its ``schema`` default).
CURRENT_SCHEMA: dict[str, int] = {
    name: next(f.default for f in msgspec.structs.fields(cls) if f.name == "schema")
    for name, cls in EVENT_TYPES.items()
}


def encode(event: Event) -> bytes:
    return _ENCODER.encode(event)


def to_fields(event: Event) -> dict[str, str | bytes]:
    """The stream entry for ``event``."""
    return {
        "type": type(event).__name__,
        "v": str(event.version),
        "id": event.event_id,
        "run": event.run_id,
        "at": event.recorded_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": _ENCODER.encode(event),
    }


def digest(event: Event) -> str:
    """The content of an event, for idempotency: everything but the time it was recorded.

    A handler that is retried re-creates the same events at a later time; they are the same events.
    """
    body = _ENCODER.encode(msgspec.structs.replace(event, recorded_at=EPOCH))
    return hashlib.blake2b(body, digest_size=12).hexdigest()


def _get(fields: Mapping[bytes | str, bytes | str], name: str) -> bytes | str | None:
    value = fields.get(name.encode())
    if value is None:
        value = fields.get(name)  # decode_responses=True clients
    return value


def decode_data(data: bytes | str, *, where: str = "?", entry_id: str = "?") -> Event:
    """Decode an event's JSON, upcasting old schemas; raises :class:`UndecodableEntry`."""
    try:
        event: Event = _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        raise UndecodableEntry(where, entry_id, f"invalid event: {exc}") from None
    except msgspec.DecodeError as exc:
        raise UndecodableEntry(where, entry_id, f"not JSON: {exc}") from None
    name = type(event).__name__
    if event.schema < CURRENT_SCHEMA[name]:
        event = _upcast(name, data, where, entry_id)
    return event


def _upcast(name: str, data: bytes | str, where: str, entry_id: str) -> Event:
    obj = msgspec.json.decode(data)
    schema = int(obj.get("schema", 1))
    while schema < CURRENT_SCHEMA[name]:
        step = UPCASTERS.get((name, schema))
        if step is None:
            raise UndecodableEntry(where, entry_id, f"no upcaster for {name} schema {schema}")
        obj = step(obj)
        schema += 1
        obj["schema"] = schema
    return msgspec.convert(obj, EVENT_TYPES[name])


def from_fields(
    fields: Mapping[bytes | str, bytes | str] | None, *, where: str = "?", entry_id: str = "?"
) -> Event:
    """Rebuild the event of a stream entry; raises :class:`UndecodableEntry` for anything else."""
    if not fields:
        raise UndecodableEntry(where, entry_id, "entry has no fields (deleted or trimmed)")
    data = _get(fields, "data")
    if data is None:
        raise UndecodableEntry(where, entry_id, "entry has no 'data' field")
    return decode_data(data, where=where, entry_id=entry_id)


def event_type_of(fields: Mapping[bytes | str, bytes | str] | None) -> str:
    """The ``type`` field of an entry, even when the entry itself cannot be decoded."""
    value = _get(fields or {}, "type")
    if value is None:
        return "?"
    return value.decode() if isinstance(value, bytes) else value


def write_jsonl(events: Iterable[Event], out: IO[bytes]) -> int:
    """Events as JSON lines (the export and archive format); how many were written."""
    n = 0
    for ev in events:
        out.write(encode(ev) + b"\n")
        n += 1
    return n
