"""What happened: event types, their encoding, the run state machine and the event store."""

from airfix.events.errors import (
    AirfixError,
    ConcurrencyError,
    ConfigError,
    DuplicateEventError,
    InvalidEventError,
    InvalidTransition,
    StoreLayoutError,
    UndecodableEntry,
)
from airfix.events.keys import DEFAULT_PREFIX, Keys, partition_of
from airfix.events.schema import *  # noqa: F403  (the package re-exports the wire contract)
from airfix.events.schema import AnyEvent, Event, stamp

__all__ = [
    "DEFAULT_PREFIX",
    "AirfixError",
    "AnyEvent",
    "ConcurrencyError",
    "ConfigError",
    "DuplicateEventError",
    "Event",
    "InvalidEventError",
    "InvalidTransition",
    "Keys",
    "StoreLayoutError",
    "UndecodableEntry",
    "partition_of",
    "stamp",
]
