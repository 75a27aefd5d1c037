"""``airfix run`` on a terminal: request a run (``services/pipeline/requests.py`` checks every
input before anything is written), host its roles in-process or wait for workers while showing
each event, handle Ctrl-C (cancel or detach), and print the summary with where the work is."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

from airfix.config import Config
from airfix.events.errors import AirfixError
from airfix.projections.report import RunReport
from airfix.projections.status import load_status
from airfix.services.commands.live import LiveLine
from airfix.services.commands.options import EXIT_CODES
from airfix.services.pipeline.requests import (
    cancel_run,
    finalize,
    fresh_sample_repo,
    release_lock,
    report_for,
    request_run,
    require_workers,
    run_inline,
    wait_for_workers,
)
from airfix.services.pipeline.workspace import is_remote
from airfix.services.runtime.app import App, build_app
from airfix.services.runtime.logs import get_logger
from airfix.services.runtime.logstream import configure_service_logging

log = get_logger("airfix.run")


def render(report: RunReport, *, stream: Any = None) -> None:
    """The human summary: issues before/after per tool, batches, commits, duration."""
    from rich.console import Console
    from rich.table import Table

    out = stream or sys.stdout
    # in a pipe nothing wraps: every line stays whole for grep and for the reader of a log
    console = Console(file=out, soft_wrap=True, width=None if out.isatty() else 1000)
    title = f"airfix run {report.run_id}: [bold]{report.status or report.state}[/bold]"
    console.print(title)
    console.print(
        f"  target {report.target}  branch {report.branch or '-'}  "
        f"iterations {report.iterations}  {report.duration_s:.1f}s"
    )
    if report.environment:
        console.print(f"  {environment_line(report.environment)}", markup=False)
    if report.reason:
        console.print(f"  reason: {report.reason}")
    tools = Table(title="issues per tool", show_lines=False)
    for col in ("tool", "before", "after", "status before", "status after"):
        tools.add_column(col)
    for t in report.tools:
        tools.add_row(
            t.tool, _n(t.issues_before), _n(t.issues_after), t.status_before, t.status_after
        )
    tools.add_row("[bold]total[/bold]", str(report.issues_before), str(report.issues_after), "", "")
    console.print(tools)
    console.print(
        f"  batches planned {report.batches_planned}, committed {len(report.commits)}, "
        f"rolled back {len(report.rolled_back)}, failed {len(report.failed)}"
    )
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
        console.print(
            "  [yellow]not verified by tests: none found[/yellow] (the project has no tests "
            "airfix could run)"
        )
    if report.remaining:
        console.print(f"  left: {sum(r.count for r in report.remaining)} issue(s)")
        for left in report.remaining:
            where = f" ({', '.join(left.files)})" if left.files else ""
            console.print(
                f"    {left.tool} {left.rule}: {left.count}, {left.reason}{where}", markup=False
            )
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
        return [
            *lines,
            f"  review: git log --stat -{n}   git diff HEAD~{n} HEAD",
            f"  undo:   git reset --keep {report.base_sha[:10]}",
        ]
    return [
        *lines,
        f"  {n} commit(s) on branch {branch}, on top of {base} ({report.base_sha[:10]})",
        (
            f"  review: git log --stat {report.base_sha[:10]}..{branch}   "
            f"git diff {report.base_sha[:10]} {branch}"
        ),
        f"  take:   git checkout {base} && git merge --ff-only {branch}",
        f"  drop:   git checkout {base} && git branch -D {branch}",
    ]


def environment_line(environment: dict[str, str]) -> str:
    """``python PATH (3.11.7, from .venv); ruff 0.17.6, mypy 2.4.1, ...``"""
    python = environment.get("python", "?")
    source = environment.get("python_source", "")
    where = "airfix's own interpreter" if source == "airfix" else f"from {source}"
    tools = ", ".join(
        f"{k.removeprefix('tool.')} {v}"
        for k, v in sorted(environment.items())
        if k.startswith("tool.")
    )
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
        self.collect = False  # keep the events shown in ``fresh`` (for a live line)
        self.fresh: list[Any] = []
        self.before_print: Any = None  # called before new lines print (a live line ends)

    def __call__(self) -> None:
        from rich.markup import escape

        from airfix.projections.describe import describe

        events = list(self.app.store.read_run(self.run_id, self.seen + 1))
        if events and self.before_print is not None:
            self.before_print()
        for ev in events:
            self.seen = ev.version
            if self.collect:
                self.fresh.append(ev)
            stamp_ = ev.recorded_at.strftime("%H:%M:%S")
            self.console.print(
                f"[dim]{stamp_}[/dim] {escape(describe(ev))}", markup=True, soft_wrap=True
            )


def serve_embedded(port: int) -> Any:
    """Expose this process's embedded store on 127.0.0.1:``port`` (fakeredis' TCP server), so
    redis-cli can look at a run on a machine with no Redis server.  fakeredis has no INFO."""
    from fakeredis import TcpFakeServer

    from airfix.events.storage.backend import embedded_server

    try:
        tcp = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    except OSError as exc:
        raise AirfixError(
            f"--serve-redis {port}: cannot listen on 127.0.0.1:{port} ({exc})"
        ) from None
    tcp.fake_server = embedded_server()  # the same data the in-process services use
    threading.Thread(target=tcp.serve_forever, name="serve-redis", daemon=True).start()
    print(
        f"airfix: embedded store served at redis://127.0.0.1:{port}/0 (redis-cli -p {port})",
        file=sys.stderr,
        flush=True,
    )
    return tcp


def _serve_until_interrupted(port: int) -> None:
    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(
        f"airfix: run finished; still serving on port {port} until Ctrl-C",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


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
        answer = input(
            f"\nairfix: cancel run {run_id} [c], or detach and let the workers go on [d]? "
        )
    except (EOFError, KeyboardInterrupt):
        return True
    return answer.strip().lower().startswith("c")


def main_run(
    config: Config,
    *,
    target: str | None,
    sample: bool,
    batching: str,
    fixer: str,
    simulation: bool,
    max_iterations: int | None,
    json_out: bool,
    inline: bool,
    wait_timeout_s: float | None,
    serve_redis: int | None = None,
    log_level: str | None = None,
    detach: bool = False,
) -> int:
    if serve_redis is not None and config.store.redis_url:
        raise AirfixError(
            "--serve-redis exposes the embedded store; it cannot be used with --redis-url"
        )
    app = build_app(config, journal=True)
    # the terminal shows log_level; the log stream (airfix tail) gets info and above
    configure_service_logging(app, log_level or config.logging.level, config.logging.format)
    tcp = serve_embedded(serve_redis) if serve_redis is not None else None
    target_path: Path | str  # a checkout, or a git URL (services/pipeline/workspace.py)
    if sample:
        target_path = fresh_sample_repo()
    elif target:
        target_path = target if is_remote(target) else Path(target)
    else:
        raise AirfixError(
            "pass --target PATH (a git repository), --target URL (a git remote) or --sample"
        )
    iterations = (
        max_iterations if max_iterations is not None else config.circuit_breaker.max_total_runs
    )
    hosted = inline or not config.store.redis_url
    run_id = request_run(
        app,
        config,
        target_path,
        batching=batching,
        fixer=fixer,
        simulation=simulation,
        max_iterations=iterations,
        # on a server, a run that no worker would take is refused before anything is written
        before_write=None if hosted else lambda: require_workers(app, config.store.redis_url),
    )
    progress = Progress(app, run_id)  # on stderr, with --json too: stdout holds the result only
    print(
        f"airfix: run {run_id}; follow it from another terminal with: airfix tail {run_id} --follow",
        file=sys.stderr,
        flush=True,
    )
    # on a terminal, a live line under the progress lines says what runs now (not with --json)
    live = LiveLine(app, run_id, progress) if not json_out and sys.stderr.isatty() else None
    step = live.progress if live is not None else progress
    try:
        with live or contextlib.nullcontext(), _termination_as_interrupt():
            if hosted:
                run_inline(app, run_id, progress=step)
            else:
                wait_for_workers(app, run_id, timeout_s=wait_timeout_s, progress=step)
    except KeyboardInterrupt:
        if not hosted and (detach or not _ask_cancel(run_id)):
            print(
                f"airfix: detached from run {run_id}; it goes on in the workers. Follow it: airfix tail "
                f"{run_id} --follow; cancel it: airfix cancel {run_id}",
                file=sys.stderr,
                flush=True,
            )
            return 130
        cancel_run(app, run_id, reason="interrupted from the terminal (Ctrl-C)")
        print(
            f"airfix: run {run_id} cancelled; commits made so far stay on its branch",
            file=sys.stderr,
            flush=True,
        )
    try:
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
