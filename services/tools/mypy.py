"""mypy: the Python type checker (phase ``build``).

Why ``build``: in the original's phase taxonomy build = analyser
*errors* (what stops the program from being correct), test = failing tests, lint = warnings and
style.  Type errors are analyser errors, so they sit in ``build`` with syntax errors, ahead of
tests and lint.

``mypy -O json`` prints JSON Lines: ``{"file","line","column" (0-based!),
"end_line","end_column","message","hint","code","severity"}``.  Notes (``severity: note``) belong to
the error before them and are appended to its message; a note with no error before it is not an
issue.  Exit 0 = clean, 1 = errors, 2 = blocking errors: with ``"code": "syntax"`` records (mypy
stops checking there) they are parsed as issues; exit 2 without records is a usage or
configuration failure, a ``tool_error``.  mypy only *warns* about a broken configuration file
(invalid TOML, invalid values) on stderr and carries on with defaults, which would silently
measure something else: such warnings make the run a ``tool_error`` (unrecognised options are
tolerated: they are typically options of another mypy version).

The cache goes to the run's temporary directory (``--cache-dir``), never ``.mypy_cache`` in the
target.  A fix loop runs mypy every iteration and a cold run costs seconds (typeshed is re-read),
so ``MypyAdapter(cache_dir=...)`` may name a persistent cache *outside* the target instead; mypy
validates cache entries itself.  Without ``files`` the project's configured ``files`` are
checked, else ``.``.
"""

from __future__ import annotations

import configparser
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import msgspec

from airfix.services.tools.adapter import BaseToolAdapter, RunContext, ToolFailure, check_exit
from airfix.services.tools.fingerprints import Finding, relative_path, to_issues
from airfix.services.tools.results import ToolRun

CONFIG_FILES = ("mypy.ini", ".mypy.ini", "pyproject.toml", "setup.cfg")
_CONFIG_WARNING = re.compile(
    r"^(?:.*[/\\])?(?:mypy\.ini|\.mypy\.ini|pyproject\.toml|setup\.cfg|mypy\.toml): (?P<rest>.+)$",
    re.MULTILINE,
)


class MypyRecord(msgspec.Struct, frozen=True):
    """One line of ``mypy -O json`` (``column`` is 0-based); other fields are ignored."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    hint: str | None = None
    code: str | None = None
    severity: str | None = None


@dataclass
class MypyReport:
    findings: list[Finding] = field(default_factory=list)
    blocking: bool = False  # a syntax error stopped checking: the issue list is incomplete
    other_lines: list[str] = field(default_factory=list)  # non-JSON stdout lines, kept as evidence


def parse_mypy_json(text: str, target: Path) -> MypyReport:
    """Errors from mypy's JSON Lines; notes are attached to the error before them.

    ``ValueError`` (``msgspec.ValidationError``) names the line and field of a malformed record."""
    report = MypyReport()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("{"):
            report.other_lines.append(line)
            continue
        try:
            rec = msgspec.json.decode(line, type=MypyRecord)
        except msgspec.DecodeError as exc:
            raise ValueError(f"line {number}: {exc}") from exc
        message = rec.message
        hint = rec.hint
        if rec.severity == "note":
            if report.findings:
                prev = report.findings[-1]
                report.findings[-1] = replace(prev, message=f"{prev.message}\nnote: {message}")
            continue
        code = rec.code or "mypy"
        col = rec.column
        if code == "syntax":
            report.blocking = True
        report.findings.append(
            Finding(
                phase="build",
                file=relative_path(rec.file or "", target),
                line=rec.line or 0,
                column=col + 1 if col is not None and col >= 0 else 0,
                rule=code,
                message=message + (f"\n{hint}" if hint else ""),
                severity=rec.severity or "error",
                key_message=message,  # the hint may mention versions or install commands
            )
        )
    return report


def configured_files(target: Path) -> bool:
    """Whether the project's mypy configuration names what to check (``files = ...``)."""
    for name in CONFIG_FILES:
        path = target / name
        if not path.is_file():
            continue
        try:
            if name == "pyproject.toml":
                section = tomllib.loads(path.read_text()).get("tool", {}).get("mypy")
                if section is None:
                    continue
                return bool(section.get("files"))
            parser = configparser.ConfigParser()
            parser.read(path)
            if not parser.has_section("mypy"):
                continue
            return bool(parser.get("mypy", "files", fallback=""))
        except (OSError, ValueError, configparser.Error):
            return False  # mypy reports the broken file itself; check "." meanwhile
    return False


def config_problems(stderr: str) -> list[str]:
    """mypy's warnings about its configuration file that change what it measures."""
    return [
        m.group(0)
        for m in _CONFIG_WARNING.finditer(stderr)
        if "Unrecognized option" not in m.group("rest")
    ]


class MypyAdapter(BaseToolAdapter):
    name = "mypy"
    phase = "build"
    tier = "static"
    executable_name = "mypy"
    default_timeout_s = 300.0

    def __init__(
        self,
        executable: str | None = None,
        *,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(executable, extra_args=extra_args, env=env)
        self.cache_dir = Path(cache_dir).resolve() if cache_dir is not None else None

    def _cache(self, workdir: Path) -> Path:
        return self.cache_dir if self.cache_dir is not None else workdir / "mypy_cache"

    def scope(self, target: Path, files: list[str]) -> list[str]:
        return [f for f in files if f.endswith((".py", ".pyi")) and (target / f).is_file()]

    def build_command(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[str]:
        # mypy reads its own file list from its config when it has one
        paths = files if files is not None else ([] if configured_files(target) else ["."])
        return [
            exe, "-O", "json", "--cache-dir", str(self._cache(workdir)),
            *self._imports_from(exe), *self.extra_args, *paths,
        ]  # fmt: skip

    def _imports_from(self, exe: str) -> list[str]:
        """airfix's mypy reads the project's packages from the project's interpreter; a mypy
        installed in the project's environment already does."""
        env = self.python_env
        if env is None or env.own or Path(exe).parent == env.bin_dir:
            return []
        return ["--python-executable", env.python]

    def execute(self, ctx: RunContext) -> ToolRun:
        if self.cache_dir is not None and self.cache_dir.is_relative_to(ctx.target):
            raise ToolFailure(f"mypy: cache_dir {self.cache_dir} is inside the target {ctx.target}")
        proc = self.spawn(
            ctx, self.build_command(ctx.executable, ctx.target, ctx.files, ctx.workdir)
        )
        code = check_exit(proc, (0, 1, 2), "mypy")
        problems = config_problems(proc.stderr)
        if problems:
            raise ToolFailure("mypy: configuration error: " + "; ".join(problems[:5]), proc)
        try:
            report = parse_mypy_json(proc.stdout, ctx.target)
        except (ValueError, TypeError) as exc:
            raise ToolFailure(f"mypy: unparsable JSON output ({exc})", proc) from exc
        issues = to_issues(self.name, report.findings)
        if code == 2 and not report.blocking:
            # Blocking errors mypy reports as records are syntax errors; anything else with exit 2
            # (usage, missing files, duplicate modules, a crash) means it did not check the code.
            raise ToolFailure(
                "mypy: exit 2 without syntax-error records (usage or setup error)", proc
            )
        if code == 1 and not issues:
            raise ToolFailure("mypy: exit 1 but no error records in its JSON output", proc)
        if code == 0 and issues:
            raise ToolFailure("mypy: exit 0 but error records in its JSON output", proc)
        return self.result(
            ctx,
            "failed" if issues else "passed",
            issues=issues,
            counts={"issues": len(issues), "blocking": int(report.blocking)},
            error="mypy stopped at a syntax error; other type errors are not reported yet"
            if report.blocking
            else "",
        )
