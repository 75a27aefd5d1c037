"""The tool-adapter interface: what an adapter is, what a run returns, and the shared machinery
(executable lookup, temporary directory, deadline, failure → ``tool_error``).

Why this module is strict about failure: the system this replaces reported "0 errors in 0.0s" and
"tests 0/0 passed" when a tool had not run at all.  Here a
tool that is missing, crashes, times out, rejects its configuration or prints output that cannot
be parsed yields ``ToolResult(status="tool_error", error=<reason with stderr tail>)`` and *no*
issues.  Only a run whose output was understood can be ``passed`` or ``failed``.

Why artefacts go to a temporary directory: result files, caches and coverage data written into
the target tree dirty it, get swept into commits and look like "progress".  Every
adapter runs with cwd = target but points its caches and reports at a per-run temporary directory
that is removed afterwards.

``skipped`` means the tool had nothing to check in the requested scope (a scoped run whose files
it does not take); it is not evidence that anything is clean.

Issue identity (fingerprints) lives in :mod:`.fingerprints`, the process runner in
:mod:`airfix.services.process`.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Protocol, runtime_checkable

from airfix.events.schema import IssueRecord, Phase, ToolResult, ToolStatus
from airfix.services.process import (
    ProcessResult,
    exit_description,
    find_executable,
    run_process,
    tail,
)
from airfix.services.secrets import scrubbed_env
from airfix.services.tools.environment import PythonEnv, has_module, project_tool
from airfix.services.tools.fingerprints import relative_path
from airfix.services.tools.results import TestOutcome, ToolRun

Tier = Literal["static", "dynamic"]

# ---------------------------------------------------------------- the interface


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


_VERSIONS: dict[tuple[tuple[str, ...], float], str] = {}


def _probe_version(
    argv: Sequence[str], mtime: float, environment: Callable[[Path], dict[str, str]]
) -> str:
    """``<tool> --version``, once per executable (and per install: the mtime is in the key).

    Adapters are created per measurement; without this every check re-spawned every tool once
    more just to learn a version that had not changed."""
    key = (tuple(argv), mtime)
    if key not in _VERSIONS:
        with tempfile.TemporaryDirectory(prefix="airfix-version-") as tmp:
            proc = run_process([*argv, "--version"], Path(tmp), 30.0, environment(Path(tmp)))
        found = ""
        if proc.exit_code == 0:
            m = re.search(r"\d+(?:\.\d+)+\S*", proc.stdout + proc.stderr)
            found = m.group(0) if m else tail(proc.stdout, 80)
        _VERSIONS[key] = found
    return _VERSIONS[key]


@runtime_checkable
class ToolAdapter(Protocol):
    """One health tool for one language.  Adapters for other languages implement the same shape.

    ``name``/``language``/``phase``/``tier`` are read-only (class constants in the adapters).
    """

    @property
    def name(self) -> str: ...

    @property
    def language(self) -> str: ...

    @property
    def phase(self) -> Phase: ...

    @property
    def tier(self) -> Tier: ...

    def available(self) -> bool: ...

    def version(self) -> str: ...

    def command(self, target: Path, files: Sequence[str] | None = None) -> list[str]: ...

    #: the setting ``timeout_s`` came from, named when the run times out ("" = none)
    timeout_setting: str

    def run(
        self, target: Path, files: Sequence[str] | None = None, *, timeout_s: float | None = None
    ) -> ToolRun: ...


class ToolFailure(Exception):
    """Raised inside an adapter when the tool did not produce a usable result."""

    def __init__(self, reason: str, proc: ProcessResult | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.proc = proc


@dataclass
class RunContext:
    """One adapter run: where, on what, with which temp dir, and how much time is left."""

    target: Path
    files: list[str] | None
    workdir: Path
    executable: str
    env: dict[str, str]
    deadline: float
    procs: list[ProcessResult] = field(default_factory=list)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


class BaseToolAdapter(ABC):
    """Shared machinery: executable lookup, temp dir, process run, failure → ``tool_error``.

    Subclasses set the class attributes and implement :meth:`build_command` and :meth:`execute`.
    """

    name: ClassVar[str]
    language: ClassVar[str] = "python"
    phase: ClassVar[Phase]
    tier: ClassVar[Tier]
    executable_name: ClassVar[str]
    default_timeout_s: ClassVar[float] = 600.0
    #: run as ``<python> -m <module>`` with the project's interpreter (tools that import the project)
    module: ClassVar[str | None] = None
    #: the setting the caller took ``timeout_s`` from: a timeout's message names it, so whoever
    #: owns a long suite knows what to raise ("" when the limit is the adapter's own default)
    timeout_setting: str = ""

    def __init__(
        self,
        executable: str | None = None,
        *,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.executable = executable or self.executable_name
        self._as_module = self.module is not None and executable is None  # an explicit path wins
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self._version: str | None = None
        self.python_env: PythonEnv | None = None

    # -- discovery

    def use_python(self, env: PythonEnv) -> None:
        """Run in the target project's environment (see :mod:`.environment`)."""
        self.python_env = env
        self._version = None

    def _python(self) -> str:
        return self.python_env.python if self.python_env is not None else sys.executable

    def resolve(self) -> str | None:
        """The executable to start: the interpreter for a module tool, else the tool itself
        (from the project's environment first, then next to airfix, then on PATH)."""
        if self._as_module and self.module is not None:
            python = self._python()
            return python if has_module(python, self.module) else None
        return project_tool(self.python_env, self.executable) or find_executable(self.executable)

    def invocation(self, exe: str) -> list[str]:
        """The argv prefix that starts the tool: ``[python, -m, module]`` or ``[exe]``."""
        return [exe, "-m", self.module] if self._as_module and self.module is not None else [exe]

    def available(self) -> bool:
        return self.resolve() is not None

    def version(self) -> str:
        """The tool's version number (e.g. ``0.17.6``), "" when it cannot be determined."""
        if self._version is None:
            exe = self.resolve()
            self._version = ""
            if exe is not None:
                self._version = _probe_version(self.invocation(exe), _mtime(exe), self._environment)
        return self._version

    def missing(self) -> str:
        """Why the tool cannot be started, and how to get it."""
        if self._as_module and self.module is not None:
            python = self._python()
            where = (
                self.python_env.describe()
                if self.python_env is not None
                else f"{python} (airfix's own interpreter)"
            )
            return (
                f"{self.name}: {self.module} is not installed in the project's environment "
                f"{where}; install it there ({python} -m pip install {self.module}) or give "
                "the project's interpreter with --python"
            )
        return (
            f"{self.name}: executable {self.executable!r} not found (looked in the project's "
            f"environment, next to {sys.executable} and on PATH); install it "
            f"(pip install {self.executable_name})"
        )

    # -- commands

    def command(self, target: Path, files: Sequence[str] | None = None) -> list[str]:
        """The main command for display and dry runs; temp paths appear as ``$AIRFIX_TMP``."""
        exe = self.resolve() or self.executable
        return self.build_command(
            exe, Path(target), self._scope(Path(target), files), Path("$AIRFIX_TMP")
        )

    @abstractmethod
    def build_command(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[str]:
        """The argv of the main tool invocation."""

    def scope(self, target: Path, files: list[str]) -> list[str]:
        """Which of the requested files this tool takes; default: the ones that exist."""
        return [f for f in files if (target / f).exists()]

    def _scope(self, target: Path, files: Sequence[str] | None) -> list[str] | None:
        if files is None:
            return None
        return self.scope(target, [relative_path(str(f), target) for f in files])

    # -- running

    def _environment(self, workdir: Path) -> dict[str, str]:
        env = scrubbed_env(os.environ)  # the target's code runs here: none of airfix's secrets
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # no __pycache__ in the target
        env.update(self.extra_env)
        return env

    def run(
        self, target: Path, files: Sequence[str] | None = None, *, timeout_s: float | None = None
    ) -> ToolRun:
        """Run the tool on ``target`` (optionally only on ``files``, relative to it)."""
        target = Path(target).resolve()
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        base_cmd = [self.executable]
        exe = self.resolve()
        if exe is None:
            return self._tool_error(self.missing(), base_cmd)
        if not target.is_dir():
            return self._tool_error(f"{self.name}: target {target} is not a directory", [exe])
        self.version()  # recorded with the result, so a changed tool is not taken for a regression
        scoped = self._scope(target, files)
        if scoped is not None and not scoped:
            return ToolRun(
                result=ToolResult(
                    tool=self.name,
                    status="skipped",
                    version=self.version(),
                    command=[exe],
                    error=f"none of the {len(files or [])} requested files is checked by {self.name}",
                )
            )
        with tempfile.TemporaryDirectory(prefix=f"airfix-{self.name}-") as tmp:
            workdir = Path(tmp)
            ctx = RunContext(
                target=target,
                files=scoped,
                workdir=workdir,
                executable=exe,
                env=self._environment(workdir),
                deadline=time.monotonic() + timeout,
            )
            try:
                return self.execute(ctx)
            except ToolFailure as exc:
                proc = exc.proc or (ctx.procs[-1] if ctx.procs else None)
                return self._tool_error(exc.reason, proc.cmd if proc else [exe], proc, ctx)
            except Exception as exc:  # noqa: BLE001 - a parser bug must not pass for a clean run
                proc = ctx.procs[-1] if ctx.procs else None
                return self._tool_error(
                    f"{self.name}: could not interpret the output ({type(exc).__name__}: {exc})",
                    proc.cmd if proc else [exe],
                    proc,
                    ctx,
                )

    @abstractmethod
    def execute(self, ctx: RunContext) -> ToolRun:
        """Run the tool(s) and parse; raise :class:`ToolFailure` when the result is unusable."""

    def spawn(self, ctx: RunContext, cmd: list[str]) -> ProcessResult:
        """Run one process within the run's deadline; launch failure and timeout raise."""
        proc = run_process(cmd, ctx.target, ctx.remaining(), ctx.env)
        ctx.procs.append(proc)
        if proc.launch_error:
            raise ToolFailure(f"{self.name}: could not start {cmd[0]}: {proc.launch_error}", proc)
        if proc.cancelled:
            raise ToolFailure(f"{self.name}: stopped, the run was cancelled or moved on", proc)
        if proc.timed_out:
            setting = f" ({self.timeout_setting})" if self.timeout_setting else ""
            raise ToolFailure(
                f"{self.name}: timed out after {proc.duration_s:.1f}s{setting}; "
                "its process group was killed",
                proc,
            )
        return proc

    # -- results

    def result(
        self,
        ctx: RunContext,
        status: ToolStatus,
        *,
        issues: list[IssueRecord] | None = None,
        counts: Mapping[str, int] | None = None,
        metrics: Mapping[str, float] | None = None,
        tests: Mapping[str, TestOutcome] | None = None,
        error: str = "",
    ) -> ToolRun:
        """A parsed run: command, exit status and duration come from the processes of ``ctx``."""
        main = ctx.procs[0] if ctx.procs else None
        return ToolRun(
            result=ToolResult(
                tool=self.name,
                status=status,
                version=self.version(),
                command=main.cmd if main else [],
                exit_status=main.exit_code if main else None,
                counts=dict(counts or {}),
                duration_s=round(sum(p.duration_s for p in ctx.procs), 3),
                error=error,
            ),
            issues=list(issues or []),
            metrics=dict(metrics or {}),
            tests=dict(tests or {}),
            stdout_tail=tail(main.stdout) if main else "",
            stderr_tail=tail(main.stderr) if main else "",
        )

    def _tool_error(
        self,
        reason: str,
        cmd: list[str],
        proc: ProcessResult | None = None,
        ctx: RunContext | None = None,
    ) -> ToolRun:
        detail = reason
        if proc is not None:
            if proc.exit_code is not None and f"exit {proc.exit_code}" not in reason:
                detail += f" (exit {proc.exit_code})"
            err = tail(proc.stderr, 1200)
            out = tail(proc.stdout, 800)
            if err:
                detail += f"\nstderr: {err}"
            if out:
                detail += f"\nstdout: {out}"
        duration = (
            sum(p.duration_s for p in ctx.procs) if ctx else (proc.duration_s if proc else 0.0)
        )
        return ToolRun(
            result=ToolResult(
                tool=self.name,
                status="tool_error",
                version=self._version or "",
                command=list(cmd),
                exit_status=proc.exit_code if proc else None,
                duration_s=round(duration, 3),
                error=detail,
            ),
            stdout_tail=tail(proc.stdout) if proc else "",
            stderr_tail=tail(proc.stderr) if proc else "",
        )


def check_exit(
    proc: ProcessResult,
    allowed: Sequence[int],
    tool: str,
    meanings: Mapping[int, str] | None = None,
) -> int:
    """The exit code if it is one the adapter understands, else a ``ToolFailure``.

    ``meanings`` names documented failure codes (pytest 4 = usage error) for the error message.
    """
    code = proc.exit_code
    if code is None or code not in allowed:
        what = exit_description(code)
        meaning = (meanings or {}).get(code) if code is not None else None
        raise ToolFailure(f"{tool}: unexpected {what}" + (f" ({meaning})" if meaning else ""), proc)
    return code
