"""The DAGs' run inputs as Airflow Params: JSON-schema checked when a run is triggered (the UI's
trigger form, ``airflow dags trigger --conf``, REST ``POST .../dagRuns`` all get a clear 400-style
error for a bad value, before any task runs)."""

from __future__ import annotations

import logging

from airflow.sdk import Param

from airfix.airflow_glue.runs import DEFAULT_OK_STATUSES, EXECUTIONS, WAITS
from airfix.config import load_config
from airfix.events.errors import AirfixError
from airfix.events.schema import TERMINAL_STATUSES

log = logging.getLogger(__name__)


def configured_target() -> str:
    """``target_project.path`` as Airflow's environment configures it (AIRFIX__TARGET_PROJECT__PATH)
    when the DAG file is parsed: it becomes the param's default, so a conf without a target fixes
    that repository, as the original's did, and Airflow refuses a run only when neither names one.
    A run's ``config`` file may also name it (read when the run is requested)."""
    try:
        return load_config(None).target_project.path
    except AirfixError as exc:  # a DAG file must import; the run's own request says what is wrong
        log.warning("airfix config unreadable while parsing the DAG: %s", exc)
        return ""


def fix_params(
    *, max_iterations: int = 10, simulation: bool = False, wait: bool = True
) -> dict[str, Param]:
    """Params of a DAG that requests one fix run; ``wait`` adds the follow-or-defer choice."""
    target = configured_target()
    about = (
        "The git repository to fix: a git URL (https://, ssh://, git@host:path, file://) the "
        "airfix workers can fetch from and push to, or an absolute path on the Airflow workers "
        "and the airfix workers (clean tree, one commit); empty: the config's target_project.path."
    )
    params = {
        "target_project": (
            Param(target, type="string", minLength=1, description=about)
            if target
            else Param(type="string", minLength=1, description=about)
        ),
        "max_iterations": Param(
            max_iterations,
            type="integer",
            minimum=1,
            description="Fix cycles at most (check, plan, fix, verify, commit).",
        ),
        "simulation": Param(
            simulation, type="boolean", description="Plan and report; change nothing in the target."
        ),
        "batching": Param(
            None,
            type=["null", "string"],
            enum=[None, "mega", "smart", "individual"],
            description="Issue batching mode; empty: the config's issue_grouping.mode.",
        ),
        "fixer": Param(
            None,
            type=["null", "string"],
            minLength=1,
            description="Fixer chain, e.g. autofix or autofix,claude; empty: the config's "
            "fixer.chain.",
        ),
        "execution": Param(
            "workers",
            enum=list(EXECUTIONS),
            description="workers: running `airfix worker`s do the work (Redis at "
            "AIRFIX_REDIS_URL); inline: the task itself hosts the run.",
        ),
        "ok_statuses": Param(
            list(DEFAULT_OK_STATUSES),
            type="array",
            minItems=1,
            uniqueItems=True,
            items={"enum": list(TERMINAL_STATUSES)},
            description="Run statuses that end the DAG run successfully.",
        ),
        "config": Param(
            None,
            type=["null", "string"],
            description="An airfix YAML config file; empty: defaults plus AIRFIX_* env.",
        ),
    }
    if wait:
        params["wait"] = Param(
            "follow",
            enum=list(WAITS),
            description="follow: a task writes every event into its log as it "
            "happens; defer: a deferrable sensor waits in the triggerer "
            "and frees its worker slot (needs workers).",
        )
    return params
