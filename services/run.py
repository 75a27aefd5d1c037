"""``airfix run``: validate, request a run, host the roles in-process (or wait for workers), report.

Everything is checked before the first event: the target exists, is a git repository with a clean
tree, the config loads, the fixer chain is known, ``--max-iterations`` is at least 1, and no other
run is active on the target.  Bad input exits 2 with the reason and writes nothing.
"""

from __future__ import annotations

import getpass
import hashlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import redis

from airfix.config import Config, config_to_dict
from airfix.events.errors import AirfixError, ConcurrencyError
from airfix.events.ids import new_run_id
from airfix.events.machine import Cancel, RequestRun, RunState, decide, fold, initial_state
from airfix.events.schema import Limits, RunRequested, stamp
from airfix.events.steps import ROLES
from airfix.events.store import check_run_id
from airfix.projections.base import ProjectorHandler
from airfix.projections.report import RunReport, build_report
from airfix.projections.status import load_status
from airfix.services import fixers, secrets, target_lock
from airfix.services.app import App, build_app
from airfix.services.git import ZERO, Repo
from airfix.services.logs import get_logger
from airfix.services.logstream import configure_service_logging
from airfix.services.roles import Pipeline, role_handlers
from airfix.services.runtime import Consumer

log = get_logger("airfix.run")

EXIT_CODES = {
    "succeeded": 0, "simulated": 0, "failed": 1, "partially_fixed": 3, "no_progress": 4,
    "budget_exhausted": 5, "timed_out": 6, "verify_failed": 7, "tool_error": 8, "cancelled": 9,
    "nothing_fixable": 11, "fixer_unavailable": 12,
}


def sample_source() -> Path:
    """The bundled sample project: ``sample_project/`` beside ``services/`` in a checkout, and
    ``airfix/sample_project`` (package data) in an installed wheel: the same relative place."""
    source = Path(__file__).resolve().parents[1] / "sample_project"
    if not (source / "pyproject.toml").is_file():
        raise AirfixError(f"the bundled sample project is missing from {source}; reinstall airfix")
    return source


def fresh_sample_repo() -> Path:
    """A temporary git repository holding a copy of the sample project (the checkout stays clean)."""
    dest = Path(tempfile.mkdtemp(prefix="airfix-sample-")) / "sample_project"
    shutil.copytree(sample_source(), dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env_cmds = [["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "-c", "user.name=airfix", "-c", "user.email=airfix@localhost",
                 "commit", "-q", "-m", "sample project"]]
    for cmd in env_cmds:
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def target_lock_key(app: App, repo: Repo) -> str:
    digest = hashlib.sha256(str(repo.path.resolve()).encode()).hexdigest()[:16]
    return f"{app.keys.prefix}:target_lock:{digest}"


def request_run(app: App, config: Config, target: Path, *, batching: str, fixer: str,
                simulation: bool, max_iterations: int, run_id: str | None = None) -> str:
    """Validate everything, then append RunRequested; returns the run id.

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
    repo = Repo.open(target)
    repo.require_clean()
    run_id = run_id or new_run_id()
    cb = config.circuit_breaker
    limits = Limits(max_iterations=max_iterations, max_consecutive_failures=cb.max_consecutive_failures,
                    max_duration_s=cb.max_duration_hours * 3600, no_progress_iterations=cb.no_progress_iterations,
                    max_cost_usd=cb.max_cost_usd,
                    stability_runs=config.completion_criteria.stability_runs)
    python = config.target_project.python
    if python and not Path(python).expanduser().is_file():
        raise AirfixError(f"target_project.python (--python): {python} is not a file; give the "
                          "project's interpreter, e.g. /path/to/project/.venv/bin/python")
    command = RequestRun(target=str(repo.path), batching=batching, fixer=fixer,  # type: ignore[arg-type]
                         simulation=simulation, limits=limits, requested_by=_user(),
                         config=secrets.redact_config(config_to_dict(config), config.secrets.redact_keys),
                         python=str(Path(python).expanduser().absolute()) if python else "")
    events = stamp(decide(initial_state(run_id), command), run_id=run_id, expected_version=0)
    # everything is checked: only now take the target (atomically, services/target_lock.py)
    lock = target_lock_key(app, repo)
    held_before = target_lock.acquire(app.client, app.keys, lock, run_id, target=str(repo.path))
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
    log.info("run requested", run_id=run_id, repo=str(repo.path), batching=batching, fixer=fixer,
             simulation=simulation, max_iterations=max_iterations)
    return run_id


def _existing_run(app: App, run_id: str, target: Path) -> str:
    first = next(iter(app.store.read_run(run_id, 1, 1)), None)
    if not isinstance(first, RunRequested):
        raise AirfixError(f"run {run_id} exists but does not start with RunRequested; not reusing it")
    wanted = Repo.open(target).path
    if Path(first.target) != wanted:
        raise AirfixError(f"run {run_id} already exists on {first.target}, not on {wanted}; "
                          "use another run id")
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
    # only this run: a journal may hold older, unfinished runs whose targets are gone
    handlers = [*role_handlers(pipeline, ROLES, only_run=run_id), ProjectorHandler(app.projections())]
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


def wait_for_workers(app: App, run_id: str, *, timeout_s: float | None = None, progress: Any = None) -> None:
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = load_status(app.client, app.keys, run_id)
        if status is not None and status["state"] == "completed":
            return
        if progress is not None:
            progress()
        if deadline is not None and time.monotonic() > deadline:
            raise AirfixError(f"run {run_id} did not finish within {timeout_s}s; are workers running? "
                              "(airfix worker --redis-url ... --roles all)")
        time.sleep(0.2)


def release_lock(app: App, repo_path: str, run_id: str) -> None:
    try:
        lock = target_lock_key(app, Repo(Path(repo_path)))
    except AirfixError:
        return
    target_lock.release(app.client, lock, run_id)  # compare-and-delete: never another run's lock


def report_for(app: App, run_id: str) -> RunReport:
    return build_report(app.store.read_run(run_id))


def render(report: RunReport, *, stream: Any = None) -> None:
    """The human summary: issues before/after per tool, batches, commits, duration."""
    from rich.console import Console
    from rich.table import Table

    out = stream or sys.stdout
    # in a pipe nothing wraps: every line stays whole for grep and for the reader of a log
    console = Console(file=out, soft_wrap=True, width=None if out.isatty() else 1000)
    title = f"airfix run {report.run_id}: [bold]{report.status or report.state}[/bold]"
    console.print(title)
    console.print(f"  target {report.target}  branch {report.branch or '-'}  "
                  f"iterations {report.iterations}  {report.duration_s:.1f}s")
    if report.environment:
        console.print(f"  {environment_line(report.environment)}", markup=False)
    if report.reason:
        console.print(f"  reason: {report.reason}")
    tools = Table(title="issues per tool", show_lines=False)
    for col in ("tool", "before", "after", "status before", "status after"):
        tools.add_column(col)
    for t in report.tools:
        tools.add_row(t.tool, _n(t.issues_before), _n(t.issues_after), t.status_before, t.status_after)
    tools.add_row("[bold]total[/bold]", str(report.issues_before), str(report.issues_after), "", "")
    console.print(tools)
    console.print(f"  batches planned {report.batches_planned}, committed {len(report.commits)}, "
                  f"rolled back {len(report.rolled_back)}, failed {len(report.failed)}")
    for c in report.commits:
        console.print(f"  [green]commit[/green] {c['sha'][:10]} {c['message']}")
    for r in report.rolled_back:
        console.print(f"  [yellow]rolled back[/yellow] {r['batch_id']}: {r['reason'][:200]}")
    for f in report.failed:
        console.print(f"  [red]failed[/red] {f['batch_id']}: {f['reason'][:200]}")
    for k in report.skipped:
        console.print(f"  [dim]skipped[/dim] {k['batch_id']}: {k['reason'][:200]}")
    if report.tool_errors:
        console.print(f"  [red]tool errors:[/red] {', '.join(report.tool_errors)}")
    if not report.tests_ran and report.commits:
        console.print("  [yellow]not verified by tests: none found[/yellow] (the project has no tests "
                      "airfix could run)")
    if report.remaining:
        console.print(f"  left: {sum(r.count for r in report.remaining)} issue(s)")
        for r in report.remaining:
            where = f" ({', '.join(r.files)})" if r.files else ""
            console.print(f"    {r.tool} {r.rule}: {r.count}, {r.reason}{where}", markup=False)
    for line in where_the_work_is(report):
        console.print(line, markup=False)


def where_the_work_is(report: RunReport) -> list[str]:
    """Where the run's commits are and the commands to review, take or drop them."""
    if report.simulation:
        return ["  simulation: nothing was changed"]
    branch, base = report.branch, report.base_branch or report.base_sha[:12]
    n = len(report.commits)
    lines = [f"  {report.checkout}"] if report.checkout else []
    if not n:
        return lines or [f"  no commits: {base} is checked out as before"]
    if "fast-forwarded" in report.checkout:
        return [*lines, f"  review: git log --stat -{n}   git diff HEAD~{n} HEAD",
                f"  undo:   git reset --keep {report.base_sha[:10]}"]
    return [
        *lines,
        f"  {n} commit(s) on branch {branch}, on top of {base} ({report.base_sha[:10]})",
        (f"  review: git log --stat {report.base_sha[:10]}..{branch}   "
         f"git diff {report.base_sha[:10]} {branch}"),
        f"  take:   git checkout {base} && git merge --ff-only {branch}",
        f"  drop:   git checkout {base} && git branch -D {branch}",
    ]


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
    try:
        repo = Repo.open(report.target)
        ref = f"refs/heads/{report.branch}"
        shas = [c["sha"] for c in report.commits]
        if shas and repo.ref(ref) != shas[-1] and repo.ref(ref) in [report.base_sha, *shas[:-1]]:
            repo.move_ref(ref, shas[-1], repo.ref(ref) or "")  # a verifier died before moving it
        if not shas:
            repo.move_ref(ref, ZERO, report.base_sha)  # delete it, if it is still empty
            return f"no commits: {report.base_branch or report.base_sha[:12]} is checked out as before"
        untouched = (not repo.dirty_files() and repo.head() == report.base_sha
                     and repo.branch() == (report.base_branch or "HEAD"))
        if not untouched:
            return (f"your checkout changed during the run, so it was left alone; the commits are on "
                    f"{report.branch}")
        if config.git.commit_to_current_branch and report.base_branch not in ("", "HEAD"):
            repo.git("merge", "-q", "--ff-only", report.branch)
            repo.move_ref(ref, ZERO, shas[-1])
            return f"{report.base_branch} fast-forwarded to the run's commits (checked out)"
        repo.git("checkout", "-q", report.branch)
        return f"{report.branch} is checked out"
    except AirfixError as exc:
        log.warning("could not leave the checkout on the run's result", error=str(exc))
        return f"the checkout was left as it was ({exc})"


def environment_line(environment: dict[str, str]) -> str:
    """``python PATH (3.11.7, from .venv); ruff 0.17.6, mypy 2.4.1, ...``"""
    python = environment.get("python", "?")
    source = environment.get("python_source", "")
    where = "airfix's own interpreter" if source == "airfix" else f"from {source}"
    tools = ", ".join(f"{k.removeprefix('tool.')} {v}" for k, v in sorted(environment.items())
                      if k.startswith("tool."))
    return f"python {python} ({environment.get('python_version', '?')}, {where}); {tools}"


def _n(value: int | None) -> str:
    return "error" if value is None else str(value)


def report_json(report: RunReport) -> str:
    return msgspec.json.encode(report).decode()


class Progress:
    """Shows each new event of the run as one line on stderr, as it is recorded."""

    def __init__(self, app: App, run_id: str, stream: Any = None) -> None:
        from rich.console import Console

        self.app, self.run_id, self.seen = app, run_id, 0
        self.console = Console(file=stream or sys.stderr, highlight=False)

    def __call__(self) -> None:
        from rich.markup import escape

        from airfix.projections.describe import describe

        for ev in self.app.store.read_run(self.run_id, self.seen + 1):
            self.seen = ev.version
            stamp_ = ev.recorded_at.strftime("%H:%M:%S")
            self.console.print(f"[dim]{stamp_}[/dim] {escape(describe(ev))}", markup=True, soft_wrap=True)


def serve_embedded(port: int) -> Any:
    """Expose this process's embedded store on 127.0.0.1:``port`` (fakeredis' TCP server), so
    redis-cli can look at a run on a machine with no Redis server.  fakeredis has no INFO."""
    from fakeredis import TcpFakeServer

    from airfix.events.backend import embedded_server

    try:
        tcp = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    except OSError as exc:
        raise AirfixError(f"--serve-redis {port}: cannot listen on 127.0.0.1:{port} ({exc})") from None
    tcp.fake_server = embedded_server()  # the same data the in-process services use
    threading.Thread(target=tcp.serve_forever, name="serve-redis", daemon=True).start()
    print(f"airfix: embedded store served at redis://127.0.0.1:{port}/0 (redis-cli -p {port})",
          file=sys.stderr, flush=True)
    return tcp


def _serve_until_interrupted(port: int) -> None:
    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"airfix: run finished; still serving on port {port} until Ctrl-C", file=sys.stderr, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


def cancel_run(app: App, run_id: str, *, reason: str = "", requested_by: str = "") -> tuple[RunState, bool]:
    """End a run as ``cancelled`` (RunCancelled at its newest version, retried while it moves);
    returns its state and whether this call cancelled it (False: it had already finished).

    Workers stop the cancelled run's in-flight step within a moment (its processes are killed,
    its worktree removed, its result dropped: ``services/cancel.py``); the target's lock is
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
            app.store.append(run_id, stamp(decide(state, cancel), run_id=run_id,
                                           expected_version=state.version), state.version)
        except ConcurrencyError:
            time.sleep(0.05)  # a step landed meanwhile: cancel on top of it
            continue
        release_lock(app, state.target, run_id)
        log.info("run cancelled", run_id=run_id, reason=reason)
        return fold(app.store.read_run(run_id)), True
    raise AirfixError(f"could not cancel run {run_id}: it kept moving; try again")


@contextmanager
def _termination_as_interrupt() -> Iterator[None]:
    """SIGTERM while a run is hosted or awaited is handled like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ask_cancel(run_id: str) -> bool:
    """On a terminal, ask whether Ctrl-C means cancel or detach; elsewhere, detach."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    try:
        answer = input(f"\nairfix: cancel run {run_id} [c], or detach and let the workers go on [d]? ")
    except (EOFError, KeyboardInterrupt):
        return True
    return answer.strip().lower().startswith("c")


def main_run(config: Config, *, target: str | None, sample: bool, batching: str, fixer: str,
             simulation: bool, max_iterations: int | None, json_out: bool, inline: bool,
             wait_timeout_s: float | None, serve_redis: int | None = None,
             log_level: str | None = None, detach: bool = False) -> int:
    if serve_redis is not None and config.store.redis_url:
        raise AirfixError("--serve-redis exposes the embedded store; it cannot be used with --redis-url")
    app = build_app(config, journal=True)
    # the terminal shows log_level; the log stream (airfix tail) gets info and above
    configure_service_logging(app, log_level or config.logging.level, config.logging.format)
    tcp = serve_embedded(serve_redis) if serve_redis is not None else None
    if sample:
        target_path = fresh_sample_repo()
    elif target:
        target_path = Path(target)
    else:
        raise AirfixError("pass --target PATH (a git repository) or --sample")
    iterations = max_iterations if max_iterations is not None else config.circuit_breaker.max_total_runs
    run_id = request_run(app, config, target_path, batching=batching, fixer=fixer,
                         simulation=simulation, max_iterations=iterations)
    progress = None if json_out else Progress(app, run_id)
    if progress is not None:
        print(f"airfix: run {run_id}; follow it from another terminal with: airfix tail {run_id} --follow",
              file=sys.stderr, flush=True)
    hosted = inline or not config.store.redis_url
    try:
        with _termination_as_interrupt():
            if hosted:
                run_inline(app, run_id, progress=progress)
            else:
                wait_for_workers(app, run_id, timeout_s=wait_timeout_s, progress=progress)
    except KeyboardInterrupt:
        if not hosted and (detach or not _ask_cancel(run_id)):
            print(f"airfix: detached from run {run_id}; it goes on in the workers. Follow it: airfix tail "
                  f"{run_id} --follow; cancel it: airfix cancel {run_id}", file=sys.stderr, flush=True)
            return 130
        cancel_run(app, run_id, reason="interrupted from the terminal (Ctrl-C)")
        print(f"airfix: run {run_id} cancelled; commits made so far stay on its branch",
              file=sys.stderr, flush=True)
    try:
        if progress is not None:
            progress()
    finally:
        status = load_status(app.client, app.keys, run_id)
        if status is not None and status.get("state") == "completed":
            release_lock(app, status["target"], run_id)
    report = report_for(app, run_id)
    report.checkout = finalize(report, config)
    if json_out:
        print(report_json(report), flush=True)
    else:
        render(report)
    if tcp is not None:
        _serve_until_interrupted(serve_redis)  # type: ignore[arg-type]
        tcp.shutdown()
    return EXIT_CODES.get(report.status, 1)
