"""A fix run as Airflow tasks see it: parse the DAG's params, request the run under an id derived
from the DAG run, follow it line by line into the task log, and reduce its report to a summary.

No Airflow import here: the DAG files and the sensor call these functions, and the tests call them
without a scheduler.  Errors a user must fix (bad target, missing workers) are ``AirfixError``s;
the DAGs turn them into failures that are not retried.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from airfix.config import Config, load_config
from airfix.events.errors import AirfixError
from airfix.events.schema import (
    TERMINAL_EVENTS,
    Event,
    HealthChecked,
    RunCancelled,
    StackLanded,
)
from airfix.projections.describe import describe
from airfix.projections.report import RunReport
from airfix.services.pipeline.git import Repo, worktree
from airfix.services.pipeline.measure import measure
from airfix.services.pipeline.requests import (
    cancel_run,
    finalize,
    release_lock,
    report_for,
    request_run,
    roles_without_workers,
    run_inline,
)
from airfix.services.pipeline.workspace import Workspace, is_remote, public_url, remote_head
from airfix.services.runtime.app import App, build_app

#: Terminal statuses that end a task successfully unless the DAG run's ``ok_statuses`` say otherwise:
#: a partially fixed run made verified commits, which is what a fix run is for; a run that found
#: nothing its fixer chain can fix (an already fixed repository) did nothing wrong.
DEFAULT_OK_STATUSES = ("succeeded", "simulated", "partially_fixed", "nothing_fixable")
EXECUTIONS = ("workers", "inline")
WAITS = ("follow", "defer")

Log = Callable[[str], None]


def fix_run_id(dag_id: str, dag_run_id: str) -> str:
    """The airfix run id of one DAG run: the same for every try of every task of that DAG run (a
    retried or cleared task finds its run again), different for every other DAG run, and valid in
    a Redis key (``events/storage/store.py`` ``RUN_ID_RE``).  Airflow's run ids hold ``+`` and ``:``
    (``manual__2026-11-24T20:02:08.882142+00:00``), so the readable part keeps letters and digits
    only and a digest of the exact pair keeps ids that read alike apart."""
    digest = hashlib.sha256(f"{dag_id}\0{dag_run_id}".encode()).hexdigest()[:8]
    readable = re.sub(
        r"[^A-Za-z0-9]+", "", re.sub(r"^(manual|scheduled|asset_triggered)__", "", dag_run_id)
    )
    dag = re.sub(r"[^A-Za-z0-9._-]+", "_", dag_id)[:60]
    return f"af-{dag}-{readable[:40]}-{digest}" if readable else f"af-{dag}-{digest}"


@dataclass(frozen=True)
class FixParams:
    """A DAG run's params (Airflow has already checked them against the DAG's JSON schema)."""

    target: str
    max_iterations: int
    simulation: bool = False
    batching: str | None = None  # None: the config's issue_grouping.mode
    fixer: str | None = None  # None: the config's fixer.chain
    execution: str = "workers"
    wait: str = "follow"
    ok_statuses: tuple[str, ...] = DEFAULT_OK_STATUSES
    config: str | None = None

    @property
    def inline(self) -> bool:
        return self.execution == "inline"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FixParams:
        """The known keys of ``params``.  Airflow checked each against the DAG's JSON schema when the
        run was triggered; the rule across keys that a schema per key cannot say is checked here."""
        config = params.get("config") or None
        target = params.get("target_project") or load_config(config).target_project.path
        if not target:
            raise AirfixError(
                "target_project is required: the git repository to fix, e.g. "
                '{"target_project": "/path/to/repo"}, or target_project.path in the config'
            )
        fp = cls(
            target=str(target),
            max_iterations=int(params.get("max_iterations", 10)),
            simulation=bool(params.get("simulation", False)),
            batching=params.get("batching") or None,
            fixer=params.get("fixer") or None,
            execution=str(params.get("execution", "workers")),
            wait=str(params.get("wait", "follow")),
            ok_statuses=tuple(params.get("ok_statuses") or DEFAULT_OK_STATUSES),
            config=config,
        )
        fp.check()
        return fp

    def check(self) -> None:
        if self.inline and self.wait == "defer":
            raise AirfixError(
                '"execution": "inline" hosts the run inside the task that follows it, so it '
                'cannot be combined with "wait": "defer" (a deferred task runs nothing); '
                'use "wait": "follow", or airfix workers'
            )


def open_app(config_path: str | None, *, inline: bool) -> App:
    """airfix's store as a task needs it.  Worker-hosted runs live on the Redis server the workers
    use (``AIRFIX_REDIS_URL`` or ``store.redis_url``).  An inline run lives on the embedded store,
    which the journal (``store.journal``) carries from one task's process to the next; an inline
    run never joins a shared server's consumer groups, where it would take other runs' events."""
    config = load_config(config_path, overrides={"store.redis_url": ""} if inline else None)
    if not inline and not config.store.redis_url:
        raise AirfixError(
            '"execution": "workers" needs the Redis server the airfix workers use: set '
            "AIRFIX_REDIS_URL (or store.redis_url in the config file) in Airflow's "
            'environment, or pass "execution": "inline" to run the fix inside the task'
        )
    return build_app(config, journal=inline)


def submit(app: App, fp: FixParams, run_id: str) -> str:
    """Request the run ``run_id`` (idempotent: an existing run is returned, nothing is appended)."""
    if not fp.inline and app.store.version(run_id) == 0:
        missing = roles_without_workers(app)
        if missing:
            raise AirfixError(
                f"no live airfix worker hosts the role(s) {', '.join(missing)}; start one "
                "with: airfix worker --redis-url URL --roles all (same URL and prefix as "
                'Airflow\'s AIRFIX_* settings), or pass "execution": "inline"'
            )
    cfg = app.config
    return request_run(
        app,
        cfg,
        fp.target if is_remote(fp.target) else Path(fp.target).expanduser(),
        batching=fp.batching or cfg.issue_grouping.mode,
        fixer=fp.fixer or ",".join(cfg.fixer.chain),
        simulation=fp.simulation,
        max_iterations=fp.max_iterations,
        run_id=run_id,
    )


def finished(event: Event | None) -> dict[str, Any] | None:
    """What a terminal event says (JSON-safe), or None for any other event (or none)."""
    if not isinstance(event, TERMINAL_EVENTS):
        return None
    status = "cancelled" if isinstance(event, RunCancelled) else event.status
    return {
        "run_id": event.run_id,
        "status": status,
        "reason": event.reason,
        "version": event.version,
    }


def event_lines(event: Event) -> list[str]:
    """The task-log lines of one event: its version, the time it happened (UTC; the log's own stamp
    is when the line was written, which for a backlog is much later) and its one-line description,
    then why each tool that could not measure failed (what a user needs to fix it)."""
    at = event.recorded_at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
    head = f"[airfix {event.version:>3} {at}Z]"
    lines = [f"{head} {describe(event)}"]
    if isinstance(event, StackLanded):  # each commit as it now is on the branch
        lines += [
            f"{head} committed {c.sha[:10]} {c.message.partition(chr(10))[0]}"
            for c in event.commits
        ]
    if isinstance(event, HealthChecked):
        lines += [
            f"    {t.tool}: {t.error[:500]}"
            for t in event.tools
            if t.status == "tool_error" and t.error
        ]
    return lines


def last_event(app: App, run_id: str) -> Event | None:
    version = app.store.version(run_id)
    return next(iter(app.store.read_run(run_id, version, version)), None) if version else None


class TaskLogProgress:
    """Writes every event of a run that it has not written yet as one line through ``log``; returns
    the run's terminal event once it has been written."""

    def __init__(self, app: App, run_id: str, log: Log, *, after_version: int = 0) -> None:
        self.app, self.run_id, self.log, self.seen = app, run_id, log, after_version
        self.terminal: dict[str, Any] | None = None

    def write_backlog(self) -> int:
        """Write what is recorded so far; the version written up to."""
        self()
        return self.seen

    def __call__(self) -> dict[str, Any] | None:
        for ev in self.app.store.read_run(self.run_id, self.seen + 1):
            self.seen = ev.version
            for line in event_lines(ev):
                self.log(line)
            self.terminal = self.terminal or finished(ev)
        return self.terminal


def follow(
    app: App, run_id: str, log: Log, *, inline: bool, block_ms: int = 1000, quiet_s: float = 60.0
) -> RunReport:
    """Follow the run to its end, one task-log line per event as it is recorded, and return its
    report.  ``inline`` hosts every role in this process; otherwise the workers do the work and this
    blocks on the run's stream (``XREAD BLOCK`` from the last entry seen, no busy loop)."""
    if app.store.version(run_id) == 0:
        where = (
            "the embedded store: is store.journal empty?" if inline else app.keys.run_stream(run_id)
        )
        raise AirfixError(f"run {run_id} has no events in {where}")
    progress = TaskLogProgress(app, run_id, log)
    if inline:
        run_inline(app, run_id, progress=progress)
        progress()
    else:
        _wait_on_stream(app, run_id, progress, log, block_ms=block_ms, quiet_s=quiet_s)
    report = report_for(app, run_id)
    release_lock(app, report.target, run_id)
    report.checkout = finalize(report, app.config)
    return report


def _wait_on_stream(
    app: App, run_id: str, progress: TaskLogProgress, log: Log, *, block_ms: int, quiet_s: float
) -> None:
    stream = app.keys.run_stream(run_id)
    last_news = time.monotonic()
    while True:
        before = progress.seen
        if progress() is not None:
            return
        if progress.seen != before:
            last_news = time.monotonic()
        elif time.monotonic() - last_news > quiet_s:
            missing = roles_without_workers(app)
            hosts = (
                f"no live worker hosts {', '.join(missing)}" if missing else "the workers are alive"
            )
            log(
                f"[airfix] no new event for {quiet_s:.0f}s (last: version {progress.seen}); {hosts}"
            )
            last_news = time.monotonic()
        app.client.xread({stream: f"0-{progress.seen}"}, count=1, block=block_ms)


def baseline(config: Config, target: str) -> dict[str, Any]:
    """Check the target as a run would (git repository, clean tree, tools that can measure it) and
    measure its health once: the score the run is later compared with."""
    if is_remote(target):  # measured in a worktree of this process's clone, at the remote's HEAD
        head, _ = remote_head(target)
        ws = Workspace.of(config)
        remote = ws.remote(target, "baseline", [head])
        with worktree(remote.clone, head, ws.root / "baseline" / f"{os.getpid()}") as wt:
            m = measure(wt.path, config)
        repo, shown = remote.clone, public_url(target)
    else:
        repo = Repo.open(Path(target).expanduser())
        repo.require_clean()
        m = measure(repo.path, config)
        head, shown = repo.head(), str(repo.path)
    if m.report.tool_errors:
        raise AirfixError(
            f"{shown} cannot be measured, so a run would end tool_error: "
            f"{'; '.join(m.report.tool_errors)}"
        )
    return {
        "target": shown,
        "head": head,
        "score": round(m.report.score, 4),
        "healthy": m.report.healthy,
        "issues": len(m.issues),
        "by_tool": m.counts_by_tool(),
    }


def commit_facts(target: str, run_id: str, commit: Mapping[str, Any]) -> dict[str, Any]:
    """What git says about one of the run's commits, checked against the run's record of it: the
    commit exists and carries the run's and the batch's trailers."""
    sha, batch = commit["sha"], commit["batch_id"]
    if is_remote(target):  # the run's commits, fetched into this process's clone
        repo = Workspace.of(load_config(None)).remote(target, run_id, [sha]).clone
    else:
        repo = Repo(Path(target))
    message = repo.git("show", "-s", "--format=%B", sha)
    for trailer in (f"Airfix-Batch: {batch}", f"Airfix-Run: {run_id}"):
        if trailer not in message:
            raise AirfixError(
                f"commit {sha[:10]} in {target} lacks '{trailer}': it is not the commit "
                f"the run recorded for batch {batch}"
            )
    added = removed = files = 0
    for line in repo.git("show", "--numstat", "--format=", sha).splitlines():
        plus, minus, _path = line.split("\t", 2)
        files += 1
        added += int(plus) if plus.isdigit() else 0  # "-" for binary files
        removed += int(minus) if minus.isdigit() else 0
    return {
        "batch_id": batch,
        "sha": sha,
        "subject": message.splitlines()[0],
        "files": files,
        "insertions": added,
        "deletions": removed,
    }


def summary(report: RunReport) -> dict[str, Any]:
    """The small XCom of a finished run: ids, status and counts (the full report stays in airfix)."""
    return {
        "run_id": report.run_id,
        "status": report.status,
        "reason": report.reason,
        "target": report.target,
        "branch": report.branch,
        "simulation": report.simulation,
        "iterations": report.iterations,
        "issues_before": report.issues_before,
        "issues_after": report.issues_after,
        "batches_planned": report.batches_planned,
        "commits": len(report.commits),
        "rolled_back": len(report.rolled_back),
        "failed": len(report.failed),
    }


def failure(result: Mapping[str, Any], ok_statuses: Sequence[str]) -> str | None:
    """Why a task must fail for this run's outcome, or None when its status is acceptable."""
    if result["status"] in ok_statuses:
        return None
    return (
        f"airfix run {result['run_id']} ended {result['status']}: {result['reason'] or 'no reason given'} "
        f"(issues {result['issues_before']} -> {result['issues_after']}, {result['commits']} commit(s); "
        f"statuses that pass: {', '.join(ok_statuses)})"
    )


def log_report(report: RunReport, log: Log) -> None:
    """The run's outcome in a few task-log lines: status, issues per tool, batches, commits."""

    def count(n: int | None) -> str:
        return "error" if n is None else str(n)

    tools = ", ".join(
        f"{t.tool} {count(t.issues_before)} -> {count(t.issues_after)}" for t in report.tools
    )
    log(
        f"airfix run {report.run_id}: {report.status} ({report.reason or 'no reason given'}) after "
        f"{report.iterations} iteration(s), {report.duration_s:.1f}s"
    )
    log(
        f"issues {report.issues_before} -> {report.issues_after}" + (f" ({tools})" if tools else "")
    )
    log(
        f"batches planned {report.batches_planned}: committed {len(report.commits)}, rolled back "
        f"{len(report.rolled_back)}, failed {len(report.failed)}; branch {report.branch or '-'}"
    )
    for c in report.commits:
        log(f"commit {c['sha'][:10]} {c['message']}")
    for r in report.rolled_back:
        log(f"rolled back {r['batch_id']}: {r['reason'][:200]}")
    for f in report.failed:
        log(f"failed {f['batch_id']}: {f['reason'][:200]}")
    if report.tool_errors:
        log(f"tool errors: {', '.join(report.tool_errors)}")


def task_logger(name: str = "airfix.progress") -> Log:
    """A line writer into the task log: Airflow routes stdlib logging of a task into its log."""
    logger = logging.getLogger(name)
    return lambda line: logger.info("%s", line)


def cancel_for_airflow(redis_url: str, prefix: str, partitions: int, run_id: str) -> None:
    """Cancel the fix run an Airflow task was waiting on, because the task was stopped."""
    config = load_config(
        overrides={
            "store.redis_url": redis_url,
            "store.prefix": prefix,
            "store.partitions": partitions,
        },
        env={},
    )
    cancel_run(
        build_app(config),
        run_id,
        reason="the Airflow task was stopped (marked failed or success, cleared, or killed)",
        requested_by="airflow",
    )
