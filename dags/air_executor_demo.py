"""air_executor_demo: the basic pattern. Create a fix run, wait for it with a sensor, use the result.

``create_fix_run`` requests a run on ``target_project`` (a simulation unless the conf says
``"simulation": false``) and passes its id on through XCom; ``wait_for_fix_run`` is a deferrable
sensor for the run's end; ``get_results`` pulls both XComs and reports what the run planned and did.
With ``"execution": "inline"`` the run is done inside ``create_fix_run`` (no airfix workers needed)
and the sensor finds it finished.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

from airfix.airflow_glue.params import fix_params
from airfix.airflow_glue.runs import task_logger
from airfix.airflow_glue.sensor import RunFinishedSensor
from airfix.airflow_glue.tasks import host_if_inline, request


@dag(
    dag_id="air_executor_demo",
    schedule=None,
    catchup=False,
    tags=["airfix", "example"],
    params=fix_params(max_iterations=1, simulation=True, wait=False),
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
)
def air_executor_demo() -> None:
    @task
    def create_fix_run(**context: Any) -> str:
        fix_run = request(context)
        host_if_inline(context, fix_run)
        return fix_run

    @task(multiple_outputs=False)
    def get_results(fix_run: str, **context: Any) -> dict[str, Any]:
        outcome = context["ti"].xcom_pull(task_ids="wait_for_fix_run", key="summary")
        log = task_logger()
        log(
            f"run {fix_run} (from create_fix_run): {outcome['status']}, {outcome['batches_planned']} "
            f"batch(es) planned, {outcome['commits']} committed, issues {outcome['issues_before']} -> "
            f"{outcome['issues_after']}"
        )
        return {
            "fix_run": fix_run,
            "status": outcome["status"],
            "batches_planned": outcome["batches_planned"],
            "commits": outcome["commits"],
        }

    fix_run = create_fix_run()
    wait = RunFinishedSensor(task_id="wait_for_fix_run", fix_run_id=fix_run, poke_interval=2)
    fix_run >> wait >> get_results(fix_run)


air_executor_demo()
