"""A sensor for a fix run's end: passes or fails by the run's status.

Deferrable by default: it looks at the run first (a run that already ended finishes the task at
once), otherwise it hands the wait to :class:`RunFinishedTrigger` in the triggerer and frees its
worker slot.  ``deferrable=False`` pokes the store instead (``mode="reschedule"`` frees the slot
between pokes).  Settings it is not given come from the DAG run's params (``config``,
``execution``, ``ok_statuses``), so it fits any DAG built on :func:`fix_params`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from airfix.airflow_glue.runs import (
    DEFAULT_OK_STATUSES,
    TaskLogProgress,
    finished,
    last_event,
    open_app,
)
from airfix.airflow_glue.tasks import finish, user_errors_fail
from airfix.airflow_glue.trigger import RunFinishedTrigger
from airfix.events.storage.backend import is_embedded
from airfix.services.pipeline.requests import release_lock, report_for
from airfix.services.runtime.app import App


class RunFinishedSensor(BaseSensorOperator):
    template_fields: Sequence[str] = ("fix_run_id",)

    def __init__(
        self,
        *,
        fix_run_id: str,
        config: str | None = None,
        execution: str | None = None,
        ok_statuses: Sequence[str] | None = None,
        deferrable: bool = True,
        block_ms: int = 2000,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", timedelta(hours=6))
        super().__init__(**kwargs)
        self.fix_run_id = fix_run_id
        self.config = config
        self.execution = execution
        self.ok_statuses = ok_statuses
        self.deferrable = deferrable
        self.block_ms = block_ms

    def _app(self, context: Mapping[str, Any]) -> App:
        params = context["params"]
        execution = self.execution or params.get("execution", "workers")
        with user_errors_fail():
            return open_app(self.config or params.get("config"), inline=execution == "inline")

    def execute(self, context: Any) -> Any:
        app = self._app(context)
        version = app.store.version(self.fix_run_id)
        if version == 0:
            raise AirflowFailException(
                f"no fix run {self.fix_run_id} in {app.keys.run_stream(self.fix_run_id)}"
            )
        if finished(last_event(app, self.fix_run_id)) is not None:  # over before we would wait
            return self._finish(context, app)
        if not self.deferrable:
            super().execute(context)  # pokes until the run has ended
            return self._finish(context, app)
        if is_embedded(app.client):
            raise AirflowFailException(
                f"run {self.fix_run_id} is inline and unfinished, and nothing hosts it "
                "here: a deferred wait needs airfix workers and a Redis server"
            )
        # the run's story so far goes into this log; the trigger's log goes on from there
        version = TaskLogProgress(app, self.fix_run_id, self.log.info).write_backlog()
        self.log.info(
            "deferring until run %s ends (seen up to version %d)", self.fix_run_id, version
        )
        self.defer(
            trigger=RunFinishedTrigger(
                redis_url=app.config.store.redis_url,
                stream=app.keys.run_stream(self.fix_run_id),
                run_id=self.fix_run_id,
                after_version=version,
                block_ms=self.block_ms,
                prefix=app.keys.prefix,
                partitions=app.keys.partitions,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Any) -> bool:
        return finished(last_event(self._app(context), self.fix_run_id)) is not None

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        if event["status"] == "error":
            raise AirflowFailException(event["reason"])
        return self._finish(context, self._app(context))

    def _finish(self, context: Any, app: App) -> dict[str, Any]:
        report = report_for(app, self.fix_run_id)
        release_lock(app, report.target, self.fix_run_id)
        ok = self.ok_statuses or context["params"].get("ok_statuses") or DEFAULT_OK_STATUSES
        return finish(context, report, ok, self.log.info)
