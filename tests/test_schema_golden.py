"""Schema evolution: stored events of every released schema decode with the current code.

``tests/golden/events_v1.jsonl`` holds real stream entries (one per event type) as written by
schema 1.  Never edit it: add a new file for a new schema and keep this one decoding.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airfix.events.codec import CURRENT_SCHEMA, from_fields, to_fields
from airfix.events.errors import UndecodableEntry
from airfix.events.schema import EVENT_TYPES

GOLDEN = sorted((Path(__file__).parent / "golden").glob("events_v*.jsonl"))


def _entries():
    for path in GOLDEN:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            yield pytest.param(json.loads(line), id=f"{path.stem}:{n}")


@pytest.mark.parametrize("fields", list(_entries()))
def test_golden_entries_decode(fields: dict[str, str]) -> None:
    event = from_fields({k.encode(): v.encode() for k, v in fields.items()})
    assert fields["type"] == type(event).__name__
    assert (fields["id"], fields["run"], int(fields["v"])) == (
        event.event_id,
        event.run_id,
        event.version,
    )
    assert fields["at"] == to_fields(event)["at"]


def test_corpus_covers_every_event_type() -> None:
    seen = {json.loads(line)["type"] for p in GOLDEN for line in p.read_text().splitlines()}
    assert set(EVENT_TYPES) == seen


def test_new_fields_have_defaults() -> None:
    """Rule 1: an entry written before a field existed must still decode.  Every field added
    after schema 1 must have a default; the fields of schema 1 are frozen here."""
    import msgspec

    frozen_required = {
        "RunRequested": {"target"},
        "HealthChecked": {"iteration"},
        "IssuesDiscovered": {"iteration"},
        "BatchPlanned": {"iteration", "batch_id", "phase", "mode", "issue_ids"},
        "FixStarted": {"batch_id", "fixer"},
        "FixApplied": {"batch_id", "fixer"},
        "FixFailed": {"batch_id", "fixer", "reason"},
        "FixRolledBack": {"batch_id", "reason"},
        "Committed": {"batch_id", "sha"},
        "IterationCompleted": {"iteration"},
        "RunCompleted": {"status"},
        "RunFailed": {"reason"},
        "BatchSkipped": {"batch_id"},
        "StackLanded": set(),
        "StackDropped": {"batch_id", "reason"},
    }
    for name, cls in EVENT_TYPES.items():
        required = {f.name for f in msgspec.structs.fields(cls) if f.required}
        assert frozen_required.get(name, set()) == required, name
        assert 1 == CURRENT_SCHEMA[name]


def test_unknown_fields_are_ignored_and_unknown_types_rejected() -> None:
    line = json.loads((GOLDEN[0]).read_text().splitlines()[1])
    data = json.loads(line["data"])
    data["added_in_the_future"] = {"x": 1}
    event = from_fields({b"data": json.dumps(data).encode()})
    assert "RunStarted" == type(event).__name__
    data["type"] = "EventFromTheFuture"
    with pytest.raises(UndecodableEntry, match="EventFromTheFuture"):
        from_fields({b"data": json.dumps(data).encode()}, where="s", entry_id="1-0")


def test_breaking_change_goes_through_an_upcaster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule 5: an old schema is upcast on read; a missing upcaster is a clear, parkable error."""
    from airfix.events import codec

    raw = json.loads((GOLDEN[0]).read_text().splitlines()[1])["data"]
    monkeypatch.setitem(codec.CURRENT_SCHEMA, "RunStarted", 2)
    with pytest.raises(UndecodableEntry, match="no upcaster for RunStarted schema 1"):
        codec.decode_data(raw)
    monkeypatch.setitem(
        codec.UPCASTERS, ("RunStarted", 1), lambda o: {**o, "branch": "upcast/" + o["branch"]}
    )
    event = codec.decode_data(raw)
    assert ("upcast/airfix/run-1", 2) == (event.branch, event.schema)
