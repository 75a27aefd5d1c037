"""The live status line of ``airfix run`` on a terminal: what runs now and for how long.

Under the progress lines (one per event, unchanged), one line says which step the run is in
(from the run's state after its latest event), which tools that step is running (from the
``tool started`` / ``tool finished`` service log lines, read from the log stream, so a step
hosted by a worker on another machine shows too) and the elapsed times; it is redrawn about
every half second and erased when the step ends.  Only on a terminal and without ``--json``:
a pipe or a log file gets the progress lines alone, with no control sequences.
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from rich.live import Live
from rich.text import Text

from airfix.events.core.machine import RunState, evolve, initial_state
from airfix.events.core.steps import next_action
from airfix.events.errors import AirfixError

REFRESH_S = 0.5
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def step_label(state: RunState) -> str:
    """What the run is doing after its latest event ("" once nothing is running)."""
    action = next_action(state)
    it = state.iteration
    if action == "start":
        return "starting: checking the target and the environment"
    if action == "check":
        return f"health check (iteration {it})"
    if action == "plan":
        return f"planning batches (iteration {it})"
    if action == "fix":
        return f"choosing the next batch (iteration {it})"
    if action == "run_fix":
        return f"fixing {state.current_batch} with {state.fixer}"
    if action == "verify":
        return f"verifying {state.current_batch}"
    if action == "close":
        return f"closing check of iteration {it}"
    return ""


class ToolTracker:
    """The tools the run's steps are running now, from its mirrored service log lines."""

    def __init__(self, client: Any, key: str, run_id: str) -> None:
        self.client, self.key, self.run_id = client, key, run_id
        newest = client.xrevrange(key, count=1)
        self.last_id: Any = newest[0][0] if newest else "0-0"
        self.running: dict[str, float] = {}  # tool -> epoch seconds it started

    def poll(self) -> None:
        while True:
            got = self.client.xread({self.key: self.last_id}, count=500)
            if not got:
                return
            for entry_id, fields in got[0][1]:
                self.last_id = entry_id
                self._take(fields)

    def _take(self, fields: dict[Any, Any]) -> None:
        run = fields.get(b"run_id", fields.get("run_id", b""))
        if (run.decode() if isinstance(run, bytes) else run) != self.run_id:
            return
        try:
            line = json.loads(fields.get(b"line", fields.get("line", b"{}")))
        except ValueError:
            return  # tail reports unreadable lines; the status line only needs tool names
        tool = line.get("tool") if isinstance(line, dict) else None
        if not isinstance(tool, str):
            return
        if line.get("event") == "tool started":
            self.running[tool] = _epoch(line.get("timestamp")) or time.time()
        elif line.get("event") == "tool finished":
            self.running.pop(tool, None)


def _epoch(stamp: Any) -> float | None:
    try:
        return _dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class LiveLine:
    """Calls ``progress`` (which prints the new events' lines) and redraws the status line under
    them from a thread of its own, so the line moves while a long step blocks the main thread.
    ``progress`` is wrapped in a lock: the main loop keeps calling it too (see :attr:`progress`)."""

    def __init__(self, app: Any, run_id: str, progress: Any) -> None:
        self.app, self.run_id, self._progress = app, run_id, progress
        progress.collect, progress.before_print = True, self._end_line
        self.console = progress.console
        self.tools = ToolTracker(app.client, app.keys.log_lines, run_id)
        self.state = initial_state(run_id)
        self.step_at = 0.0  # when the step began: the recorded time of the run's latest event
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._live: Live | None = None
        self._thread = threading.Thread(target=self._loop, name="live-line", daemon=True)
        self._frame = 0
        self._paused = False

    @property
    def progress(self) -> Callable[[], None]:
        def locked() -> None:
            with self._lock:
                self._step()

        return locked

    def __enter__(self) -> LiveLine:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            self._end_line()

    def _loop(self) -> None:
        while not self._stop.wait(REFRESH_S):
            with self._lock:
                try:
                    self._step()
                    self.tools.poll()
                except (OSError, redis.RedisError, AirfixError) as exc:  # the main loop sees it too
                    self._end_line()
                    if not self._paused:  # once per outage, not twice a second
                        self.console.print(f"[dim]live status paused: {exc}[/dim]")
                    self._paused = True
                    continue
                self._paused = False
                self._draw()

    def _step(self) -> None:
        """Print the new events' progress lines; a new event ends the step, and its line."""
        self._progress()
        if not self._progress.fresh:
            return
        for ev in self._progress.fresh:
            self.state = evolve(self.state, ev)
            self.step_at = ev.recorded_at.timestamp()
        self._progress.fresh = []
        # a tool started before the step began belonged to an earlier step (its line may have
        # been read before the event that ended that step)
        running = self.tools.running
        self.tools.running = {tool: at for tool, at in running.items() if at >= self.step_at}

    def _draw(self) -> None:
        label = step_label(self.state)
        if not label:
            self._end_line()
            return
        now = time.time()
        self._frame += 1
        text = f"{_SPINNER[self._frame % len(_SPINNER)]} {label} · {now - self.step_at:.1f}s"
        if self.tools.running:
            text += " · running " + ", ".join(
                f"{tool} ({now - at:.1f}s)" for tool, at in sorted(self.tools.running.items())
            )
        line = Text(text, style="cyan", no_wrap=True, overflow="ellipsis")
        if self._live is None:
            self._live = Live(
                line, console=self.console, auto_refresh=False, transient=True,
                redirect_stdout=False, redirect_stderr=True,
            )  # fmt: skip
            self._live.start()
        self._live.update(line, refresh=True)

    def _end_line(self) -> None:
        if self._live is not None:
            self._live.stop()  # transient: the line is erased
            self._live = None
