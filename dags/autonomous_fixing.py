"""autonomous_fixing: make a repository healthier, one verified commit at a time, from Airflow.

Trigger with a JSON conf, e.g. ``{"target_project": "/path/to/repo", "max_iterations": 3}``
(without ``target_project``, the config's ``target_project.path``).  ``request_fix_run`` validates
and appends RunRequested under an airfix run id derived from this DAG run (a retry or a re-run of
the task never starts a second fix run).  Then, by ``wait``:

* ``follow`` (default): ``run_autonomous_fixing`` writes each event (health checks, issues found,
  batches, fixes, commits) into its task log as it happens and finishes with the run's summary;
  on its own (``airflow tasks test``) it requests the run itself;
* ``defer``: ``wait_for_run``, a deferrable sensor, writes the events so far into its log, then
  waits in the triggerer (whose log goes on with the rest) and holds no worker slot.

Either one pushes the summary (run id, status, counts) as XCom ``summary`` and fails, with the
reason, when the run's status is not in ``ok_statuses``.  ``execution: inline`` runs the fix inside
``follow_run`` instead of on `airfix worker`s.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import dag, task

from airfix.airflow_glue.params import fix_params
from airfix.airflow_glue.sensor import RunFinishedSensor
from airfix.airflow_glue.tasks import request, run_and_finish


@dag(
    dag_id="autonomous_fixing",
    schedule=None,
    catchup=False,
    params=fix_params(),
    tags=["airfix"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    doc_md=__doc__,
)
def autonomous_fixing() -> None:
    @task
    def request_fix_run(**context: Any) -> str:
        return request(context)

    @task.branch
    def choose_wait(**context: Any) -> str:
        return "wait_for_run" if context["params"]["wait"] == "defer" else "run_autonomous_fixing"

    @task(multiple_outputs=False, execution_timeout=timedelta(hours=6))
    def run_autonomous_fixing(**context: Any) -> dict[str, Any]:
        return run_and_finish(context)

    fix_run = request_fix_run()
    choice = choose_wait()
    wait = RunFinishedSensor(task_id="wait_for_run", fix_run_id=fix_run)
    fix_run >> choice >> [run_autonomous_fixing(), wait]


autonomous_fixing()
