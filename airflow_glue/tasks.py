"""Task bodies the DAGs share: request a fix run, follow it into the task log, finish with a summary.

A mistake the user must fix (bad target, unknown fixer, no workers, ...) is an ``AirfixError``; it
fails the task without retries (``AirflowFailException``), because retrying cannot help.  Anything
else (a lost Redis connection) propagates and gets the task's retries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from airfix.airflow_glue.runs import (
    FixParams,
    Log,
    failure,
    fix_run_id,
    follow,
    log_report,
    open_app,
    submit,
    summary,
    task_logger,
)
from airfix.events.errors import AirfixError
from airfix.projections.report import RunReport
from airfix.services.pipeline.requests import cancel_run
from airfix.services.runtime.app import App

RULE = "=" * 80


@contextlib.contextmanager
def user_errors_fail() -> Iterator[None]:
    try:
        yield
    except AirfixError as exc:
        raise AirflowFailException(str(exc)) from exc


def request(context: Mapping[str, Any]) -> str:
    """Request the DAG run's fix run (its id derives from the DAG run: a retry finds it again)."""
    with user_errors_fail():
        fp = FixParams.from_params(context["params"])
        app = open_app(fp.config, inline=fp.inline)
        dag_run = context["dag_run"]
        run_id = submit(app, fp, fix_run_id(dag_run.dag_id, dag_run.run_id))
    task_logger()(f"airfix run {run_id} requested on {fp.target} ({fp.execution})")
    return run_id


def host_if_inline(context: Mapping[str, Any], fix_run: str) -> None:
    """With ``execution: inline``, do the run in this task (a task-log line per event); a sensor
    downstream then finds it finished.  With workers, nothing to do here."""
    with user_errors_fail():
        fp = FixParams.from_params(context["params"])
        if fp.inline:
            follow(open_app(fp.config, inline=True), fix_run, task_logger(), inline=True)


def follow_and_finish(context: Mapping[str, Any], fix_run: str) -> dict[str, Any]:
    """Follow the run (hosting it when inline) with one task-log line per event, then finish."""
    log = task_logger()
    with user_errors_fail():
        fp = FixParams.from_params(context["params"])
        app = open_app(fp.config, inline=fp.inline)
        cancel_on_kill(context, app, fix_run)
        where = "inside this task" if fp.inline else "by the airfix workers"
        for line in (RULE, f"airfix run {fix_run} on {fp.target}, hosted {where}", RULE):
            log(line)
        report = follow(app, fix_run, log, inline=fp.inline)
    return finish(context, report, fp.ok_statuses, log)


def run_and_finish(context: Mapping[str, Any]) -> dict[str, Any]:
    """The DAG run's fix run from request to summary in this one task, so that it also works on
    its own (``airflow tasks test autonomous_fixing run_autonomous_fixing DATE``): a run an
    upstream task already requested is found again by its id, never requested twice."""
    return follow_and_finish(context, request(context))


def cancel_on_kill(context: Mapping[str, Any], app: App, fix_run: str) -> None:
    """When Airflow stops this task (marked failed or success, cleared, killed: its task runner
    calls ``on_kill`` on SIGTERM), cancel the fix run it follows instead of leaving it running."""
    task = context.get("task")
    if task is None:
        return

    def on_kill() -> None:
        cancel_run(
            app,
            fix_run,
            reason="the Airflow task was stopped (marked failed or success, cleared, or killed)",
            requested_by="airflow",
        )

    task.on_kill = on_kill


def finish(
    context: Mapping[str, Any], report: RunReport, ok_statuses: Sequence[str], log: Log
) -> dict[str, Any]:
    """Log the run's summary, push it as XCom ``summary``, and fail when its status is not ok."""
    log(RULE)
    log_report(report, log)
    log(RULE)
    result = summary(report)
    context["ti"].xcom_push(key="summary", value=result)
    reason = failure(result, ok_statuses)
    if reason:
        raise AirflowFailException(reason)
    return result
