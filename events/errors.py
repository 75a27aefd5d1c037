"""The error families of airfix.

Every error a caller can act on derives from :class:`AirfixError`, and each message names *where* the
problem is (a config key path, a run id and version, an event id) so the caller never has to guess.
"""

from __future__ import annotations


class AirfixError(Exception):
    """Root of every error airfix raises on purpose."""


class ConfigError(AirfixError):
    """A config file or override is wrong; the message names the key path."""


class ConcurrencyError(AirfixError):
    """An append lost an optimistic-concurrency race: the run moved on since the caller read it."""

    def __init__(self, run_id: str, expected: int, actual: int) -> None:
        self.run_id, self.expected, self.actual = run_id, expected, actual
        super().__init__(
            f"run {run_id!r}: expected version {expected}, but the run is at version {actual}; "
            "nothing was written (re-read the run and decide again)"
        )


class DuplicateEventError(AirfixError):
    """An event id was reused with different content: never silently accepted."""

    def __init__(self, run_id: str, event_id: str, detail: str = "") -> None:
        self.run_id, self.event_id = run_id, event_id
        super().__init__(
            f"run {run_id!r}: event id {event_id} is already recorded with different content"
            + (f" ({detail})" if detail else "")
            + "; nothing was written"
        )


class InvalidEventError(AirfixError):
    """An event batch is malformed (wrong run, gap in versions, bad envelope); nothing was written."""


class InvalidTransition(AirfixError):
    """A command is not legal in the run's current state; nothing is appended."""

    def __init__(self, state: str, command: str, reason: str = "") -> None:
        self.state, self.command = state, command
        super().__init__(
            f"{command} is not allowed in state {state!r}" + (f": {reason}" if reason else "")
        )


class UndecodableEntry(AirfixError):
    """A stream entry cannot be decoded into a known event (unknown type, bad JSON, bad fields)."""

    def __init__(self, stream: str, entry_id: str, reason: str) -> None:
        self.stream, self.entry_id, self.reason = stream, entry_id, reason
        super().__init__(f"entry {entry_id} of {stream}: {reason}")


class StoreLayoutError(AirfixError):
    """The store was created with a different layout (for example another partition count)."""


class StoreError(AirfixError):
    """Stored data cannot be read back as recorded (for example a trimmed run's archive is gone)."""
