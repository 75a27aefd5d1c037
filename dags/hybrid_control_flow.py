"""hybrid_control_flow: Airflow prepares, airfix discovers and fixes, Airflow takes control back.

1. ``prepare`` (Airflow): checks the target as a run would and records a baseline health check.
2. ``hand_off``: requests the fix run; the airfix services discover the issues and queue the
   batches as they go, work no DAG could have declared up front.
3. ``wait_for_airfix``: a deferrable sensor until the run ends (fails the DAG run on a bad status).
4. ``committed_batches`` then ``post_process``, mapped dynamically over the run's commits: each
   commit is checked in git (it exists, carries the run's and the batch's trailers) and measured.
5. ``final_report``: baseline against the run's outcome, with every commit's size.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

from airfix.airflow_glue.params import fix_params
from airfix.airflow_glue.runs import (
    FixParams,
    baseline,
    commit_facts,
    open_app,
    task_logger,
)
from airfix.airflow_glue.sensor import RunFinishedSensor
from airfix.airflow_glue.tasks import host_if_inline, request, user_errors_fail
from airfix.config import load_config
from airfix.services.pipeline.requests import report_for


@dag(
    dag_id="hybrid_control_flow",
    schedule=None,
    catchup=False,
    tags=["airfix", "example"],
    params=fix_params(max_iterations=2, wait=False),
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
)
def hybrid_control_flow() -> None:
    @task(multiple_outputs=False)
    def prepare(**context: Any) -> dict[str, Any]:
        with user_errors_fail():
            fp = FixParams.from_params(context["params"])
            before = baseline(load_config(fp.config), fp.target)
        task_logger()(
            f"baseline of {before['target']} at {before['head'][:10]}: score {before['score']:.2f}, "
            f"{before['issues']} issue(s) {before['by_tool']}"
        )
        return before

    @task
    def hand_off(before: dict[str, Any], **context: Any) -> str:
        fix_run = request(context)
        host_if_inline(context, fix_run)
        return fix_run

    @task
    def committed_batches(fix_run: str, **context: Any) -> list[dict[str, Any]]:
        with user_errors_fail():
            fp = FixParams.from_params(context["params"])
            report = report_for(open_app(fp.config, inline=fp.inline), fix_run)
        return [{"batch_id": c["batch_id"], "sha": c["sha"]} for c in report.commits]

    @task(multiple_outputs=False)
    def post_process(
        commit: dict[str, Any], fix_run: str, before: dict[str, Any]
    ) -> dict[str, Any]:
        with user_errors_fail():
            facts = commit_facts(before["target"], fix_run, commit)
        task_logger()(
            f"{facts['sha'][:10]} {facts['subject']}: {facts['files']} file(s), "
            f"+{facts['insertions']} -{facts['deletions']}"
        )
        return facts

    @task(multiple_outputs=False, trigger_rule="none_failed")
    def final_report(
        before: dict[str, Any], inspected: list[dict[str, Any]], **context: Any
    ) -> dict[str, Any]:
        outcome = context["ti"].xcom_pull(task_ids="wait_for_airfix", key="summary")
        commits = list(inspected)
        log = task_logger()
        log(
            f"run {outcome['run_id']}: {outcome['status']}; issues {before['issues']} (baseline) -> "
            f"{outcome['issues_after']}; {len(commits)} commit(s), "
            f"+{sum(c['insertions'] for c in commits)} -{sum(c['deletions'] for c in commits)} lines"
        )
        return {
            "run_id": outcome["run_id"],
            "status": outcome["status"],
            "baseline_issues": before["issues"],
            "issues_after": outcome["issues_after"],
            "commits": len(commits),
        }

    before = prepare()
    fix_run = hand_off(before)
    wait = RunFinishedSensor(task_id="wait_for_airfix", fix_run_id=fix_run, poke_interval=5)
    batches = committed_batches(fix_run)
    wait >> batches
    inspected = post_process.partial(fix_run=fix_run, before=before).expand(commit=batches)
    final_report(before, inspected)


hybrid_control_flow()
