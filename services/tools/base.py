"""The tool-adapter interface, the process runner and issue fingerprints shared by all adapters.

Why this module is strict about failure: the system this replaces reported "0 errors in 0.0s" and
"tests 0/0 passed" when a tool had not run at all (seed inventory 7.1 F3/F4/F7, 7.3 #2).  Here a
tool that is missing, crashes, times out, rejects its configuration or prints output that cannot
be parsed yields ``ToolResult(status="tool_error", error=<reason with stderr tail>)`` and *no*
issues.  Only a run whose output was understood can be ``passed`` or ``failed``.

Why artefacts go to a temporary directory: result files, caches and coverage data written into
the target tree dirty it, get swept into commits and look like "progress" (seed D27).  Every
adapter runs with cwd = target but points its caches and reports at a per-run temporary directory
that is removed afterwards.

``skipped`` means the tool had nothing to check in the requested scope (a scoped run whose files
it does not take); it is not evidence that anything is clean.

Conventions of the :class:`IssueRecord` values built here: ``file`` is relative to the target, in
POSIX form; ``line`` and ``column`` are 1-based, 0 means unknown.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Protocol, runtime_checkable

import msgspec

from airfix.events.schema import IssueRecord, Phase, ToolResult, ToolStatus
from airfix.services.runtime.cancel import cancelled
from airfix.services.secrets import scrubbed_env
from airfix.services.tools.environment import PythonEnv, has_module, project_tool

Tier = Literal["static", "dynamic"]

TAIL_CHARS = 2000
KILL_GRACE_S = 2.0

# Keys of ToolRun.metrics (all floats; only the ones a tool measures are present).
TESTS_TOTAL = "tests_total"
TESTS_PASSED = "tests_passed"
TESTS_FAILED = "tests_failed"
TESTS_ERRORS = "tests_errors"
TESTS_SKIPPED = "tests_skipped"
COVERAGE_PERCENT = "coverage_percent"


TestOutcome = Literal["passed", "failed", "error", "skipped"]


class ToolRun(msgspec.Struct, frozen=True, kw_only=True):
    """What one adapter run produced: the measurement, its issues and numeric metrics.

    ``metrics`` keys: ``tests_total``, ``tests_passed``, ``tests_failed``, ``tests_errors``,
    ``tests_skipped``, ``coverage_percent``, ``covered_lines``, ``num_statements``.  Tails of stdout
    and stderr are kept as evidence for the report and for a human reading a ``tool_error``.

    ``tests`` (test runners only): each test's outcome by its stable id (pytest's node id, a JS
    runner's ``file > suite > title``, Go's ``package/TestName``).  A file that failed to load or
    collect is an id of its own with outcome ``error``.  Verification judges a change by these
    ids, never by counts alone: "one test fixed, another broken" keeps the counts equal.
    """

    result: ToolResult
    issues: list[IssueRecord] = []
    metrics: dict[str, float] = {}
    tests: dict[str, TestOutcome] = {}
    stdout_tail: str = ""
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        """True when the tool ran and its output was understood (passed or failed)."""
        return self.result.status in ("passed", "failed")

    def _metric_int(self, key: str) -> int | None:
        value = self.metrics.get(key)
        return None if value is None else int(value)

    @property
    def tests_total(self) -> int | None:
        return self._metric_int(TESTS_TOTAL)

    @property
    def tests_passed(self) -> int | None:
        return self._metric_int(TESTS_PASSED)

    @property
    def tests_failed(self) -> int | None:
        """Failed plus errored tests: everything that is neither passed nor skipped."""
        failed, errors = self.metrics.get(TESTS_FAILED), self.metrics.get(TESTS_ERRORS)
        if failed is None and errors is None:
            return None
        return int((failed or 0) + (errors or 0))

    @property
    def coverage_percent(self) -> float | None:
        return self.metrics.get(COVERAGE_PERCENT)


# ---------------------------------------------------------------- fingerprints

_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
_SPACE = re.compile(r"\s+")
_CODE_SPAN = re.compile(r"`([^`]*)`")
_QUOTES = str.maketrans({"'": '"', "\u2018": '"', "\u2019": '"', "\u201c": '"', "\u201d": '"'})


def normalise_message(message: str) -> str:
    """The message with what shifts between runs removed, identifiers kept.

    Numbers standing alone (line/column numbers, lengths such as ``(101 > 100)``, argument
    positions) become ``#`` and memory addresses ``0x?``; whitespace collapses.  Identifiers and
    quoted names stay, because they are what tells two issues in one file apart (``os`` vs ``sys``
    imported but unused).  Numbers inside identifiers (``x1``, ``py311``) are kept.

    Tools quote source text in messages (ruff: ``Dictionary key literal `'a'` repeated``), so a
    formatter that only changed quote style or spacing would make an old issue look new: quote
    characters are unified and whitespace inside a quoted code span is dropped.
    """
    text = _CODE_SPAN.sub(lambda m: "`" + _SPACE.sub("", m.group(1)) + "`", message)
    text = text.translate(_QUOTES)
    text = _HEX_ADDRESS.sub("0x?", text)
    text = _NUMBER.sub("#", text)
    return _SPACE.sub(" ", text).strip()


def fingerprint(tool: str, rule: str, file: str, message: str, snippet: str | None = None) -> str:
    """A stable id for "the same problem": tool + rule + relative path + normalised message.

    Line and column are left out, so inserting lines above an issue does not change it.  ``snippet``
    (the offending source line) may be given to separate otherwise identical messages; it is
    whitespace-normalised only, so it survives re-indentation but not edits of that line.
    """
    parts = [tool, rule, file.replace("\\", "/"), normalise_message(message)]
    if snippet is not None:
        parts.append(_SPACE.sub(" ", snippet).strip())
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Finding:
    """An issue before ids are assigned; adapters build these, :func:`to_issues` numbers them.

    ``key_rule``/``key_message`` override what is fingerprinted (pytest fingerprints the test id,
    not its changing assertion text).
    """

    phase: Phase
    file: str
    line: int
    column: int
    rule: str
    message: str
    severity: str = "error"
    key_rule: str | None = None
    key_message: str | None = None
    fix: str = ""  # "safe" / "unsafe" when the tool can fix it itself


@dataclass
class TestTally:
    """What every test-runner adapter counts, as ToolRun metrics and ToolResult counts.

    Runners without a separate "error" outcome (go test, dart test) leave ``errors`` at 0."""

    __test__ = False  # not a pytest test class

    total: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    findings: list[Finding] = field(default_factory=list)
    outcomes: dict[str, TestOutcome] = field(default_factory=dict)

    def record(self, test_id: str, outcome: TestOutcome) -> None:
        """Count one test's outcome under its id; an id seen twice keeps its worst outcome
        (a call failure plus a teardown error is one failed test, counted once)."""
        previous = self.outcomes.get(test_id)
        if previous is not None:
            if _RANK[outcome] > _RANK[previous]:
                self._count(previous, -1)
                self._count(outcome, +1)
                self.outcomes[test_id] = outcome
            return
        self.outcomes[test_id] = outcome
        self.total += 1
        self._count(outcome, +1)

    def _count(self, outcome: TestOutcome, n: int) -> None:
        name = {"passed": "passed", "failed": "failed", "error": "errors", "skipped": "skipped"}[
            outcome
        ]
        setattr(self, name, getattr(self, name) + n)

    def metrics(self) -> dict[str, float]:
        return {
            TESTS_TOTAL: float(self.total),
            TESTS_PASSED: float(self.passed),
            TESTS_FAILED: float(self.failed),
            TESTS_ERRORS: float(self.errors),
            TESTS_SKIPPED: float(self.skipped),
        }

    def counts(self) -> dict[str, int]:
        return {
            "tests": self.total,
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
        }


_RANK: dict[str, int] = {"skipped": 0, "passed": 1, "failed": 2, "error": 3}


def to_issues(tool: str, findings: Sequence[Finding]) -> list[IssueRecord]:
    """IssueRecords in (file, line, column) order with ``issue_id = <fingerprint>:<occurrence>``.

    Identical fingerprints (say two ambiguous names ``l`` in one file) are told apart by their
    occurrence index in line order, which survives line shifts as long as their order does.
    """
    ordered = sorted(findings, key=lambda f: (f.file, f.line, f.column, f.rule, f.message))
    seen: dict[str, int] = {}
    out: list[IssueRecord] = []
    for f in ordered:
        fp = fingerprint(
            tool,
            f.key_rule if f.key_rule is not None else f.rule,
            f.file,
            f.key_message if f.key_message is not None else f.message,
        )
        n = seen.get(fp, 0)
        seen[fp] = n + 1
        out.append(
            IssueRecord(
                issue_id=f"{fp}:{n}",
                fingerprint=fp,
                tool=tool,
                phase=f.phase,
                file=f.file,
                line=max(f.line, 0),
                column=max(f.column, 0),
                severity=f.severity,
                rule=f.rule,
                message=f.message,
                fix=f.fix,
            )
        )
    return out


def relative_path(path: str, target: Path) -> str:
    """``path`` relative to ``target`` in POSIX form; paths outside the target stay absolute."""
    if not path:
        return ""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix().removeprefix("./")
    for root in (target, target.resolve()):
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            pass
    try:
        return p.resolve().relative_to(target.resolve()).as_posix()
    except ValueError:
        return p.as_posix()


# ---------------------------------------------------------------- processes


@dataclass
class ProcessResult:
    """A finished (or killed) process: everything needed to judge it and to explain a failure."""

    cmd: list[str]
    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    launch_error: str = ""
    cancelled: bool = False  # the step's turn ended (run cancelled or moved on): group killed


def run_process(
    cmd: Sequence[str],
    cwd: Path,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
) -> ProcessResult:
    """Run ``cmd`` in its own process group; on timeout kill the whole group.

    Why a group: pytest and ``coverage run`` start children (xdist workers, subprocesses under
    test); killing only the leader would leave them running and holding the pipes open.  The group
    is also killed after a normal exit so stray background children do not outlive the check.
    stdout and stderr are read concurrently (``communicate``), so a chatty tool cannot deadlock.
    """
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(cmd),
            cwd=str(cwd),
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return ProcessResult(
            list(cmd), None, "", "", time.monotonic() - start, launch_error=str(exc)
        )
    timed_out = stopped = False
    deadline = start + max(timeout_s, 0.001)
    try:
        while True:  # in slices, so a cancelled step stops its processes within a quarter second
            try:
                out, err = proc.communicate(
                    timeout=max(0.001, min(0.25, deadline - time.monotonic()))
                )
                break
            except subprocess.TimeoutExpired:
                stopped = cancelled()
                if stopped or time.monotonic() >= deadline:
                    raise
    except subprocess.TimeoutExpired:
        timed_out = not stopped
        _kill_group(proc, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            try:
                out, err = proc.communicate(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:  # a child left the group and holds the pipes
                proc.kill()
                out, err = b"", b""
    finally:
        _kill_group(proc, signal.SIGKILL)
    return ProcessResult(
        cmd=list(cmd),
        exit_code=proc.returncode,
        stdout=(out or b"").decode("utf-8", errors="replace"),
        stderr=(err or b"").decode("utf-8", errors="replace"),
        duration_s=time.monotonic() - start,
        timed_out=timed_out,
        cancelled=stopped,
    )


def _kill_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def find_executable(name: str) -> str | None:
    """``name`` next to ``sys.executable`` first (a venv's own ruff), then on PATH.

    A name containing a path separator is taken as a path and must exist and be executable.
    """
    if os.sep in name or (os.altsep and os.altsep in name):
        p = Path(name)
        return str(p) if p.is_file() and os.access(p, os.X_OK) else None
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


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
            raise ToolFailure(
                f"{self.name}: timed out after {proc.duration_s:.1f}s; its process group was killed",
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
        what = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
        meaning = (meanings or {}).get(code) if code is not None else None
        raise ToolFailure(f"{tool}: unexpected {what}" + (f" ({meaning})" if meaning else ""), proc)
    return code
