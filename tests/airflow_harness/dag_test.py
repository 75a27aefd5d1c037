"""``airflow dags test DAG_ID -c CONF`` in this process (the CLI's own code), then the run's state,
its task states and its XComs as JSON in OUT.

Usage: python -m tests.airflow_harness.dag_test DAG_ID CONF_JSON OUT_JSON
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main(dag_id: str, conf: str, out: str) -> int:
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", "dags", "test", dag_id, "-c", conf]
    exit_code = 0
    try:
        airflow_main()
    except SystemExit as exc:  # "DagRun failed" (exit 1) or argparse errors
        exit_code = exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        print(f"airflow dags test raised {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        exit_code = 1
    report: dict[str, Any] = {"exit": exit_code, "state": None, "tasks": {}, "xcom": {}}
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc())
        ).first()
        if run is not None:
            report["state"] = str(run.state)
            report["run_id"] = run.run_id
            for ti in session.scalars(
                select(TaskInstance).where(
                    TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id
                )
            ):
                name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
                report["tasks"][name] = str(ti.state) if ti.state else None
            for x in session.scalars(
                select(XComModel).where(XComModel.dag_id == dag_id, XComModel.run_id == run.run_id)
            ):
                name = x.task_id if x.map_index < 0 else f"{x.task_id}[{x.map_index}]"
                report["xcom"][f"{name}:{x.key}"] = XComModel.deserialize_value(x)
    with open(out, "w") as fh:
        json.dump(report, fh, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
