"""A projection as a pure fold: ``apply(state, event, entry_id) -> (state, ops)``.

State is kept per run: each event changes only its own run's state, so a handler loads the states
of the runs a batch touches (from where :meth:`Fold.state_at` says the fold's own ops store them),
folds the batch and writes the ops.  ``ops`` depend only on the events seen so far, so a rebuild
from the log gives the same view as the live fold, whatever the batches were.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

from airfix.events.keys import Keys
from airfix.events.schema import Event
from airfix.projections.core.ops import Op, StateRead

S = TypeVar("S")


class Fold(Generic[S]):
    """Base of every read model's fold.  Subclasses set ``name`` and implement the methods."""

    name = "projection"

    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    def view_key(self) -> str:
        """The view's main key; every key the fold writes lives in its hash slot."""
        raise NotImplementedError

    def state_at(self, run_id: str) -> StateRead | None:
        """Where ``run_id``'s state is stored (None: the fold keeps no state)."""
        return None

    def decode(self, run_id: str, raw: Any) -> S:
        """The state from what :meth:`state_at`'s read returned (None when there is no read)."""
        raise NotImplementedError

    def apply(self, state: S, event: Event, entry_id: str) -> tuple[S, list[Op]]:
        """The run's state after ``event`` (at ``entry_id`` of its log) and the writes it makes."""
        raise NotImplementedError


def fold_entries(
    fold: Fold[S], states: Mapping[str, S], entries: Iterable[tuple[str, Event]]
) -> tuple[dict[str, S], list[list[Op]]]:
    """Fold ``(entry_id, event)`` pairs in order from ``states`` (which must hold every run the
    entries name): the states after them (all of ``states``, updated) and each entry's ops."""
    out = dict(states)
    ops: list[list[Op]] = []
    for entry_id, event in entries:
        out[event.run_id], written = fold.apply(out[event.run_id], event, entry_id)
        ops.append(written)
    return out, ops
