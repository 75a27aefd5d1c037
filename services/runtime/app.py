"""Wiring: from a :class:`~airfix.config.Config` to a store, its projections and its handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis

from airfix.config import Config
from airfix.events.errors import AirfixError
from airfix.events.keys import Keys
from airfix.events.storage.backend import connect
from airfix.events.storage.store import EventStore
from airfix.projections.base import Projection, ProjectionHandler, ProjectorHandler
from airfix.projections.status import RunStatus
from airfix.projections.views import PhaseSummary, RunHistory, TargetRuns, TaskQueue
from airfix.services.runtime.consumers import Handler, RuntimeSettings

PHASES = ("build", "test", "lint")

#: handlers of consumer groups that live above the runtime, by group name (``role:<name>``)
GROUP_HANDLERS: list[Callable[[App, str], Handler | None]] = []


def register_group_handler(factory: Callable[[App, str], Handler | None]) -> None:
    """Let ``factory(app, group)`` build the handler of the groups it knows (None for others)."""
    if factory not in GROUP_HANDLERS:
        GROUP_HANDLERS.append(factory)


@dataclass
class App:
    config: Config
    client: redis.Redis
    store: EventStore

    @property
    def keys(self) -> Keys:
        return self.store.keys

    @property
    def settings(self) -> RuntimeSettings:
        return RuntimeSettings.from_config(self.config.consumers)

    def projections(self, keys: Keys | None = None) -> list[Projection]:
        """Every read model, bound to ``keys`` (a scratch namespace for rebuilds)."""
        k = keys or self.keys
        views: list[Projection] = [
            TaskQueue(self.client, k),
            RunHistory(self.client, k, self.config.projections.run_history_length),
            *(PhaseSummary(self.client, k, p) for p in PHASES),
            TargetRuns(self.client, k),
        ]
        return [RunStatus(self.client, k), *views]

    def handler_for(self, group: str) -> Handler:
        """The handler this airfix runs for consumer group ``group`` (what a dead letter's retry
        hands its entry to): the projections', or one a service package registered
        (:func:`register_group_handler`: the pipeline's roles register theirs)."""
        if group == "projections":
            return ProjectorHandler(self.projections())
        if group.startswith("projection:"):
            for p in self.projections():
                if group == f"projection:{p.name}":
                    return ProjectionHandler(p)
        for factory in GROUP_HANDLERS:
            handler = factory(self, group)
            if handler is not None:
                return handler
        raise AirfixError(
            f"group {group} has no handler in this airfix (known: projections, "
            "projection:<view>, role:<role>); its dead letters can only be discarded"
        )

    def handlers(self, roles: list[str]) -> list[Handler]:
        out: list[Handler] = []
        for role in roles:
            if role == "projections":
                out.append(ProjectorHandler(self.projections()))
            elif role == "projections-separately":  # one group per projection (fault tests)
                out += [ProjectionHandler(p) for p in self.projections()]
            else:
                raise ValueError(
                    f"unknown role {role!r}; known roles: projections, projections-separately"
                )
        return out


def redo_actions(app: App) -> None:
    """After a journal replay: the operator's recorded trims and dead-letter retries/discards,
    in order, so the replay does not undo them (``events/storage/journal.py: record_action``)."""
    from airfix.events.storage.journal import JournaledStore, load_actions
    from airfix.services.runtime import deadletters, retention

    assert isinstance(app.store, JournaledStore)
    for action in load_actions(app.store.journal):
        (retention.reapply if action.get("op") == "trim" else deadletters.reapply)(app, action)


def build_app(config: Config, *, redis_url: str | None = None, journal: bool = False) -> App:
    """The store and views for ``config``.  With ``journal`` (the CLI), the embedded store is
    loaded from ``store.journal`` first and keeps writing to it, so runs outlive the process."""
    from airfix.services import secrets

    secrets.configure(config)  # what logs redact, what the target's processes do not see
    url = redis_url if redis_url is not None else config.store.redis_url
    client = connect(url or None)
    keys = Keys(prefix=config.store.prefix, partitions=config.store.partitions)
    if journal and not url and config.store.journal:
        from pathlib import Path

        from airfix.events.storage.journal import JournaledStore
        from airfix.services.runtime.worker import drain

        store = JournaledStore(client, keys, journal=Path(config.store.journal).expanduser())
        app = App(config, client, store)
        if store.replay_journal():
            drain(store, app.handlers(["projections"]), app.settings)
            redo_actions(app)
        return app
    return App(config, client, EventStore(client, keys))
