"""Requesting, hosting and finishing a fix run: what ``airfix run``, the Airflow tasks and the
tests share.

Everything is checked before the first event: the target exists, is a git repository with a clean
tree, the config loads, the fixer chain is known and can start, ``--max-iterations`` is at least
1, and no other run is active on the target.  Bad input is an ``AirfixError`` and writes nothing.
Once a run is over, :func:`finalize` leaves the user's checkout on its result.
"""

from __future__ import annotations

import getpass
import hashlib
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import redis

from airfix.config import Config, config_to_dict
from airfix.events.core.machine import Cancel, RequestRun, RunState, decide, fold, initial_state
from airfix.events.core.steps import ROLES
from airfix.events.errors import AirfixError, ConcurrencyError
from airfix.events.ids import new_run_id
from airfix.events.schema import BatchingMode, Limits, RunRequested, stamp
from airfix.events.storage.store import check_run_id
from airfix.projections.base import ProjectorHandler
from airfix.projections.report import RunReport, build_report
from airfix.projections.status import load_status
from airfix.services import fixers, secrets
from airfix.services.pipeline import target_lock
from airfix.services.pipeline.context import verify_mode
from airfix.services.pipeline.git import ZERO, Repo
from airfix.services.pipeline.parked import PARKED
from airfix.services.pipeline.roles import Pipeline, role_handlers
from airfix.services.pipeline.workspace import (
    Workspace,
    is_remote,
    public_url,
    remote_head,
    target_identity,
)
from airfix.services.runtime.app import App
from airfix.services.runtime.consumers import Consumer, Handler
from airfix.services.runtime.logs import get_logger

log = get_logger("airfix.run")

WORKER_GRACE_S = 30.0  # how long `airfix run --redis-url` waits for starting workers to show up


def sample_source() -> Path:
    """The bundled sample project: ``sample_project/`` beside ``services/`` in a checkout, and
    ``airfix/sample_project`` (package data) in an installed wheel: the same relative place."""
    source = Path(__file__).resolve().parents[2] / "sample_project"
    if not (source / "pyproject.toml").is_file():
        raise AirfixError(f"the bundled sample project is missing from {source}; reinstall airfix")
    return source


def fresh_sample_repo() -> Path:
    """A temporary git repository holding a copy of the sample project (the checkout stays clean)."""
    dest = Path(tempfile.mkdtemp(prefix="airfix-sample-")) / "sample_project"
    shutil.copytree(sample_source(), dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env_cmds = [
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        [
            "git",
            "-c",
            "user.name=airfix",
            "-c",
            "user.email=airfix@localhost",
            "commit",
            "-q",
            "-m",
            "sample project",
        ],
    ]
    for cmd in env_cmds:
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def target_lock_key(app: App, target: Repo | str) -> str:
    """The lock of a checkout (its resolved path) or of a remote (its normalised URL)."""
    identity = str(target.path.resolve()) if isinstance(target, Repo) else target_identity(target)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return f"{app.keys.prefix}:target_lock:{digest}"


#: the consumer groups a run needs a live worker in: the pipeline's roles, then the projector
#: (whose views `airfix run`, `status` and `tail latest` read)
SERVED_GROUPS = (*(f"role:{r}" for r in ROLES), "projections")


def roles_without_workers(app: App, *, projections: bool = False) -> list[str]:
    """The roles no live ``airfix worker`` hosts (heartbeat within the lease TTL), in order;
    ``projections`` adds the projector's group to the roles looked at."""
    since = int(time.time() * 1000) - app.settings.lease_ttl_ms
    groups = SERVED_GROUPS if projections else SERVED_GROUPS[:-1]
    return [
        g.removeprefix("role:")
        for g in groups
        if not app.client.zcount(app.keys.members(g), since, "+inf")
    ]


def require_workers(app: App, url: str, *, grace_s: float = WORKER_GRACE_S) -> None:
    """Refuse a run that no worker would take: every role needs a live ``airfix worker`` on the
    server.  Workers that are starting get ``grace_s`` to send their first heartbeat."""
    deadline = time.monotonic() + grace_s
    while missing := roles_without_workers(app, projections=True):
        if time.monotonic() >= deadline:
            raise AirfixError(
                f"no live airfix worker hosts {', '.join(missing)} on {secrets.redact_url(url)}: "
                f"start one (airfix worker --redis-url URL --roles all), or run with --inline to "
                "host the run in this process"
            )
        time.sleep(0.2)


def request_run(
    app: App,
    config: Config,
    target: Path | str,
    *,
    batching: str,
    fixer: str,
    simulation: bool,
    max_iterations: int,
    run_id: str | None = None,
    before_write: Callable[[], None] | None = None,
) -> str:
    """Validate everything, then append RunRequested; returns the run id.

    ``before_write`` is a last check (e.g. that workers will take the run): it runs once the
    request itself is known to be good and before anything is written.

    ``run_id`` (an orchestrator's own id, e.g. one derived from an Airflow DAG run) makes the
    request idempotent: when that run already exists, nothing is checked or appended and the id is
    returned, so a retried task never starts a second fix run.  The existing run must be on the
    same target; anything else is an error, not a silent reuse.
    """
    if run_id is not None and app.store.version(check_run_id(run_id)) > 0:
        return _existing_run(app, run_id, target)
    if max_iterations < 1:
        raise AirfixError(f"--max-iterations must be at least 1, got {max_iterations}")
    chain = fixers.chain(fixer)
    if not simulation:  # a simulation plans and reports: its fixers never run
        fixers.preflight(chain, config.fixer)
    recorded = _checked_target(target)
    run_id = run_id or new_run_id()
    cb = config.circuit_breaker
    limits = Limits(
        max_iterations=max_iterations,
        max_consecutive_failures=cb.max_consecutive_failures,
        max_duration_s=cb.max_duration_hours * 3600,
        no_progress_iterations=cb.no_progress_iterations,
        max_cost_usd=cb.max_cost_usd,
        stability_runs=config.completion_criteria.stability_runs,
    )
    python = config.target_project.python
    if python and not Path(python).expanduser().is_file():
        raise AirfixError(
            f"target_project.python (--python): {python} is not a file; give the "
            "project's interpreter, e.g. /path/to/project/.venv/bin/python"
        )
    command = RequestRun(
        target=recorded,
        batching=cast(BatchingMode, batching),  # config and the CLI only let the three through
        fixer=fixer,
        simulation=simulation,
        limits=limits,
        requested_by=_user(),
        config=secrets.redact_config(config_to_dict(config), config.secrets.redact_keys),
        python=str(Path(python).expanduser().absolute()) if python else "",
        verify=verify_mode(config.fixer.verify, chain),
    )
    events = stamp(decide(initial_state(run_id), command), run_id=run_id, expected_version=0)
    if before_write is not None:
        before_write()
    # everything is checked: only now take the target (atomically, services/pipeline/target_lock.py)
    lock = target_lock_key(app, recorded)
    held_before = target_lock.acquire(app.client, app.keys, lock, run_id, target=recorded)
    try:
        app.store.append(run_id, events, 0)
    except ConcurrencyError:  # the same id was requested concurrently and that request won
        return _existing_run(app, run_id, target)
    except BaseException:
        if held_before != run_id:  # ours alone: a failed request must not keep the target
            target_lock.release(app.client, lock, run_id)
        raise
    # no key named "target" (or "msg"): inside an Airflow 3.3 task, the supervisor that forwards log
    # lines passes each key as a keyword next to its own "target" argument, and the task dies
    log.info(
        "run requested",
        run_id=run_id,
        repo=recorded,
        batching=batching,
        fixer=fixer,
        simulation=simulation,
        max_iterations=max_iterations,
    )
    return run_id


def _checked_target(target: Path | str) -> str:
    """The target as the log records it: a clean checkout's top-level path, or a reachable
    remote's URL without its credentials (:mod:`~airfix.services.pipeline.workspace`)."""
    if isinstance(target, str) and is_remote(target):
        remote_head(target)  # reachable, with a commit; its errors are redacted
        return public_url(target)
    repo = Repo.open(target)
    repo.require_clean()
    return str(repo.path)


def _existing_run(app: App, run_id: str, target: Path | str) -> str:
    first = next(iter(app.store.read_run(run_id, 1, 1)), None)
    if not isinstance(first, RunRequested):
        raise AirfixError(
            f"run {run_id} exists but does not start with RunRequested; not reusing it"
        )
    remote = isinstance(target, str) and is_remote(target)
    wanted = public_url(str(target)) if remote else str(Repo.open(target).path)
    if target_identity(first.target) != target_identity(wanted):
        raise AirfixError(
            f"run {run_id} already exists on {first.target}, not on {wanted}; use another run id"
        )
    log.info("run already requested; not requesting it again", run_id=run_id, repo=first.target)
    return run_id


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def run_inline(app: App, run_id: str, *, progress: Any = None, worker: str = "inline") -> None:
    """Host every role and projection in this process until the run is finished."""
    pipeline = Pipeline(app.store, app.config, worker=worker)
    pipeline.sweep()
    # only this run: a journal may hold older, unfinished runs whose targets are gone
    handlers: list[Handler] = [
        *role_handlers(pipeline, ROLES, only_run=run_id),
        ProjectorHandler(app.projections()),
    ]
    consumers = [Consumer(app.store, h, app.settings, name=worker) for h in handlers]
    stop = threading.Event()

    def heartbeat() -> None:  # a long tool run must not cost us our partitions
        while not stop.wait(app.settings.heartbeat_interval_ms / 1000):
            for c in consumers:
                try:
                    c.heartbeat()
                except redis.RedisError as exc:  # the main loop will see the outage too
                    log.warning("heartbeat failed; will retry", error=repr(exc))

    beat = threading.Thread(target=heartbeat, name="heartbeat", daemon=True)
    beat.start()
    try:
        while True:
            moved = sum(c.poll(block=False) for c in consumers)
            if progress is not None:
                progress()
            status = load_status(app.client, app.keys, run_id)
            if status is not None and status["state"] == "completed" and moved == 0:
                return
            if moved == 0:
                time.sleep(0.01)
    finally:
        stop.set()
        beat.join(5)
        for c in consumers:
            c.release_all()
        PARKED.release_run(run_id)  # finished, failed or interrupted: no step here needs them


def wait_for_workers(
    app: App, run_id: str, *, timeout_s: float | None = None, progress: Any = None
) -> None:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = load_status(app.client, app.keys, run_id)
        if status is not None and status["state"] == "completed":
            return
        if progress is not None:
            progress()
        if deadline is not None and time.monotonic() > deadline:
            raise AirfixError(
                f"run {run_id} did not finish within {timeout_s}s; are workers running? "
                "(airfix worker --redis-url ... --roles all)"
            )
        time.sleep(0.2)


def release_lock(app: App, repo_path: str, run_id: str) -> None:
    try:
        lock = target_lock_key(app, repo_path)
    except (AirfixError, OSError, ValueError):
        return
    target_lock.release(app.client, lock, run_id)  # compare-and-delete: never another run's lock


def report_for(app: App, run_id: str) -> RunReport:
    return build_report(app.store.read_run(run_id))


def finalize(report: RunReport, config: Config) -> str:
    """Leave the user's checkout where the run's result is, and say where that is.

    The run's steps never touch the checkout (they work in worktrees of their own); once the run
    is over: with commits, the checkout switches to the run branch (or, with
    ``git.commit_to_current_branch``, fast-forwards the branch the user was on and removes the
    run branch), so ``git log`` and ``git diff HEAD~N HEAD`` show the run's work; without
    commits, the empty run branch is removed.  Only a clean checkout still where the run found
    it is changed; otherwise the note says so and nothing moves."""
    if report.state != "completed" or report.simulation or not report.branch:
        return ""
    if is_remote(report.target):
        return _finalize_remote(report, config)
    try:
        repo = Repo.open(report.target)
        ref = f"refs/heads/{report.branch}"
        shas = [c["sha"] for c in report.commits]
        if shas and repo.ref(ref) != shas[-1] and repo.ref(ref) in [report.base_sha, *shas[:-1]]:
            repo.move_ref(ref, shas[-1], repo.ref(ref) or "")  # a verifier died before moving it
        if not shas:
            repo.move_ref(ref, ZERO, report.base_sha)  # delete it, if it is still empty
            return (
                f"no commits: {report.base_branch or report.base_sha[:12]} is checked out as before"
            )
        untouched = (
            not repo.dirty_files()
            and repo.head() == report.base_sha
            and repo.branch() == (report.base_branch or "HEAD")
        )
        if not untouched:
            return (
                f"your checkout changed during the run, so it was left alone; the commits are on "
                f"{report.branch}"
            )
        if config.git.commit_to_current_branch and report.base_branch not in ("", "HEAD"):
            repo.git("merge", "-q", "--ff-only", report.branch)
            repo.move_ref(ref, ZERO, shas[-1])
            return f"{report.base_branch} fast-forwarded to the run's commits (checked out)"
        repo.git("checkout", "-q", report.branch)
        return f"{report.branch} is checked out"
    except AirfixError as exc:
        log.warning("could not leave the checkout on the run's result", error=str(exc))
        return f"the checkout was left as it was ({exc})"


def cancel_run(
    app: App, run_id: str, *, reason: str = "", requested_by: str = ""
) -> tuple[RunState, bool]:
    """End a run as ``cancelled`` (RunCancelled at its newest version, retried while it moves);
    returns its state and whether this call cancelled it (False: it had already finished).

    Workers stop the cancelled run's in-flight step within a moment (its processes are killed,
    its worktree removed, its result dropped: ``services/runtime/cancel.py``); the target's lock is
    released here."""
    for _ in range(100):
        events = list(app.store.read_run(check_run_id(run_id)))
        if not events:
            raise AirfixError(f"no run {run_id} in this store")
        state = fold(events)
        if state.terminal:
            return state, False
        cancel = Cancel(reason=reason or "cancelled", requested_by=requested_by or _user())
        try:
            app.store.append(
                run_id,
                stamp(decide(state, cancel), run_id=run_id, expected_version=state.version),
                state.version,
            )
        except ConcurrencyError:
            time.sleep(0.05)  # a step landed meanwhile: cancel on top of it
            continue
        release_lock(app, state.target, run_id)
        log.info("run cancelled", run_id=run_id, reason=reason)
        return fold(app.store.read_run(run_id)), True
    raise AirfixError(f"could not cancel run {run_id}: it kept moving; try again")


def _finalize_remote(report: RunReport, config: Config) -> str:
    """A remote target has no checkout to leave: the run branch is brought up to its last commit
    (a verifier may have died before pushing it), or removed when the run made none."""
    try:
        remote = Workspace.of(config).remote(report.target, report.run_id)
        ref = f"refs/heads/{report.branch}"
        shas = [c["sha"] for c in report.commits]
        have = remote.ref(ref)
        if not shas:
            if have == report.base_sha:
                remote.move_ref(ref, ZERO, report.base_sha)
            remote.forget(report.run_id)
            return f"no commits: {report.target} is as it was"
        if have != shas[-1] and have in [report.base_sha, *shas[:-1]]:
            remote.ensure(report.run_id, shas[-1:])
            remote.move_ref(ref, shas[-1], have or ZERO)
        if remote.ref(ref) == shas[-1]:  # the commits are safe on the branch
            remote.forget(report.run_id)
        return f"the commits are on branch {report.branch} of {report.target}"
    except AirfixError as exc:
        log.warning("could not bring the remote run branch up to the run", error=str(exc))
        return f"the commits are on branch {report.branch} of {report.target} ({exc})"
