"""ESLint: the JavaScript/TypeScript linter (phase ``lint``; parse errors are phase ``build``).

Also home of :class:`NodeToolAdapter`, the base of the three Node adapters (eslint, tsc, js_test):
a Node project pins its tools in ``package.json``, so the tool is looked up in the *target's*
``node_modules/.bin`` first and only then next to the interpreter and on ``PATH`` (never ``npx``,
which would download whatever version is current).  Installing the project's dependencies
(``npm ci``) is the caller's business: an adapter never installs anything.

``eslint -f json .`` prints one JSON array of per-file results (verified with
ESLint 10.15): ``filePath`` (absolute), ``messages[]``, ``suppressedMessages[]``, ``errorCount``,
``warningCount``, ``fixableErrorCount``, ``fixableWarningCount``, ``fatalErrorCount``.  A message
has ``ruleId`` (``null`` for parse errors and directive warnings), ``severity`` (1 warning, 2
error), ``message``, 1-based ``line``/``column``, ``fix`` (present when ``eslint --fix`` would
apply it: the issue gets ``fix="safe"``), ``suggestions`` (never applied automatically: no
``fix``) and ``fatal: true`` for parse errors, which become ``build`` issues with rule
``invalid-syntax`` (the name ruff uses, so syntax errors look alike across tools).  Unused
``eslint-disable`` directives (``ruleId: null``, not fatal) are issues of rule
``unused-disable-directive`` without ``fix``: their fix type is ``directive``, which
:class:`~airfix.services.fixers.autofix_js.EslintFix` does not apply.

Exit codes: 0 no errors (warnings allowed), 1 errors, 2 ESLint failed (no or broken configuration,
unknown rule, crash, a pattern matching no file).  2, any other code, or JSON that cannot be read
is a ``tool_error``; so is "exit 1 but no error in the JSON" and its opposite.

Nothing is written into the target: ESLint only caches with ``--cache``, which is never passed.
Scoped runs pass the files after ``--`` with ``--no-warn-ignored`` and
``--no-error-on-unmatched-pattern``, so a requested file that the project's configuration ignores
is left out instead of becoming a warning or an exit 2; a scoped run in which every requested file
is ignored is ``skipped``.  Each of these options is passed only to an ESLint that knows it
(:func:`scope_flags`): an older one rejects it with exit 2, and its "File ignored" warning for such
a file is dropped by the parser instead.  A full run lints ``.`` and an ESLint that finds nothing to lint there
(exit 2) is a ``tool_error``, not a clean project.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import msgspec

from airfix.events.schema import Phase, ToolResult
from airfix.services.tools.base import (
    BaseToolAdapter,
    Finding,
    RunContext,
    ToolFailure,
    ToolRun,
    check_exit,
    find_executable,
    relative_path,
    run_process,
    tail,
    to_issues,
)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def project_bin(target: Path, name: str) -> str | None:
    """``<target>/node_modules/.bin/<name>`` when it exists and is executable."""
    candidate = Path(target) / "node_modules" / ".bin" / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return None


def read_package_json(target: Path) -> dict[str, object] | None:
    """The target's ``package.json`` as a dict; ``None`` when there is none.

    Raises ``ValueError`` (invalid JSON) or ``TypeError`` (not an object) when it exists but is
    unusable.
    """
    path = Path(target) / "package.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TypeError("package.json is not a JSON object")
    return data


def bin_package_version(exe: str) -> str:
    """The version in the ``package.json`` of the npm package an executable belongs to
    (``node_modules/.bin/X`` links into it); "" outside a ``node_modules`` or without one."""
    if "node_modules" not in Path(exe).parts:
        return ""
    here = Path(exe).resolve().parent
    for folder in (here, *here.parents):
        manifest = folder / "package.json"
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return ""
            return str(data.get("version") or "") if isinstance(data, dict) else ""
    return ""


class NodeToolAdapter(BaseToolAdapter):
    """Base of the Node adapters: the target's own ``node_modules/.bin`` tool wins.

    The executable depends on the target, so :meth:`run` and :meth:`command` work on a shallow
    copy bound to it (adapters run in parallel threads in ``measure``; nothing is mutated on the
    shared instance except the per-executable version cache).  Without a bound target,
    :meth:`resolve`/:meth:`available`/:meth:`version` describe the tool on ``PATH``.  An
    ``executable`` given to the constructor is used as is (tests, pinned installs).
    """

    language: ClassVar[str] = "javascript"
    npm_package: ClassVar[str] = ""  # what to ``npm install --save-dev`` when it is missing

    def __init__(
        self,
        executable: str | None = None,
        *,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(executable, extra_args=extra_args, env=env)
        self._pinned = executable is not None
        self._target: Path | None = None
        self._versions: dict[str, str] = {}

    # -- discovery

    def bin_name(self, target: Path) -> str:
        """The name of the executable for ``target`` (the test adapter picks its runner)."""
        return self.executable_name

    def for_target(self, target: Path) -> NodeToolAdapter:
        bound = copy.copy(self)
        bound._target = Path(target).resolve()
        return bound

    def resolve(self) -> str | None:
        if self._pinned:
            return find_executable(self.executable)
        if self._target is not None:
            name = self.bin_name(self._target)
            return project_bin(self._target, name) or find_executable(name)
        return find_executable(self.executable)

    def version(self) -> str:
        """The version of the executable this adapter would run ("" when there is none)."""
        exe = self.resolve()
        if exe is None:
            return ""
        if exe not in self._versions:
            found = ""
            with tempfile.TemporaryDirectory(prefix="airfix-version-") as tmp:
                proc = run_process(
                    [exe, "--version"], Path(tmp), 30.0, self._environment(Path(tmp))
                )
            if proc.exit_code == 0:
                out = strip_ansi(proc.stdout + proc.stderr)
                m = re.search(r"\d+(?:\.\d+)+[^\s,]*", out)
                found = m.group(0) if m else tail(out, 80)
            self._versions[exe] = found
        self._version = self._versions[exe]
        return self._version

    # -- running

    def _environment(self, workdir: Path) -> dict[str, str]:
        env = super()._environment(workdir)
        env.setdefault("NO_COLOR", "1")
        env["FORCE_COLOR"] = "0"
        env.update(self.extra_env)
        return env

    def command(self, target: Path, files: Sequence[str] | None = None) -> list[str]:
        """The main command for display and dry runs; temp paths appear as ``$AIRFIX_TMP``."""
        if self._target is None:
            return self.for_target(target).command(target, files)
        target = Path(target)
        exe = self.resolve() or (self.executable if self._pinned else self.bin_name(target))
        return self.build_command(exe, target, self._scope(target, files), Path("$AIRFIX_TMP"))

    def missing_reason(self, target: Path) -> str:
        name = self.bin_name(target) if not self._pinned else self.executable
        hint = (
            "; install the project's dependencies (npm ci) or add it: "
            f"npm install --save-dev {self.npm_package}"
            if self.npm_package
            else ""
        )
        return (
            f"{self.name}: executable {name!r} not found (looked in {target}/node_modules/.bin, "
            f"next to the interpreter and on PATH){hint}"
        )

    def preflight(self, target: Path, files: Sequence[str] | None) -> ToolRun | None:
        """A result that makes running pointless (a ``skipped``), else ``None``."""
        return None

    def run(
        self, target: Path, files: Sequence[str] | None = None, *, timeout_s: float | None = None
    ) -> ToolRun:
        if self._target is None:
            return self.for_target(target).run(target, files, timeout_s=timeout_s)
        target = Path(target).resolve()
        if not target.is_dir():
            return self._tool_error(
                f"{self.name}: target {target} is not a directory", [self.executable]
            )
        try:
            early = self.preflight(target, files)
        except (OSError, ValueError, TypeError) as exc:
            return self._tool_error(
                f"{self.name}: cannot read the project: {exc}", [self.executable]
            )
        if early is not None:
            return early
        if self.resolve() is None:
            return self._tool_error(self.missing_reason(target), [self.bin_name(target)])
        return super().run(target, files, timeout_s=timeout_s)

    def skipped(self, command: list[str], why: str) -> ToolRun:
        return ToolRun(
            result=ToolResult(
                tool=self.name, status="skipped", version=self.version(), command=command, error=why
            )
        )


# ---------------------------------------------------------------- ESLint

LINTED_SUFFIXES = (
    ".js", ".mjs", ".cjs", ".jsx", ".ts", ".mts", ".cts", ".tsx", ".vue", ".svelte", ".astro",
)  # fmt: skip
DIRECTIVE_PREFIXES = ("Unused eslint-disable", "Unused eslint-enable", "Unused inline config")
IGNORED_PREFIXES = ("File ignored",)


class EslintFixData(msgspec.Struct, frozen=True):
    """A message's ``fix``: replace ``range`` (UTF-16 offsets into the file) with ``text``."""

    range: tuple[int, int]
    text: str = ""


class EslintMessage(msgspec.Struct, frozen=True, rename="camel"):
    """One of a result's ``messages`` (``ruleId`` is ``null`` for parse errors and directives)."""

    message: str = ""
    rule_id: str | None = None
    severity: int = 0
    fatal: bool = False
    line: int | None = None
    column: int | None = None
    fix: EslintFixData | None = None


class EslintResult(msgspec.Struct, frozen=True, rename="camel"):
    """One file's result in ``eslint -f json``; the counts and other fields are ignored."""

    messages: list[EslintMessage]
    file_path: str = ""


@dataclass
class EslintReport:
    findings: list[Finding] = field(default_factory=list)
    messages: list[EslintMessage] = field(default_factory=list)  # each finding's message
    files: int = 0  # per-file results in the JSON (files ESLint linted)
    errors: int = 0
    warnings: int = 0
    fixable: int = 0  # findings ``eslint --fix`` fixes (they carry a ``fix``)


def _json_array(text: str) -> list[EslintResult]:
    """The results array in ``text``; tolerates lines printed before it (a config's console.log).

    A candidate that is not JSON is passed over; JSON of the wrong shape is an error at once
    (``msgspec.ValidationError`` names the path, e.g. ``$[0].messages[2].line``)."""
    stripped = text.strip()
    start = stripped.find("[")
    candidates = [stripped, *(line for line in stripped.splitlines() if line.startswith("["))]
    if start >= 0:
        candidates.append(stripped[start:])
    error: msgspec.DecodeError | None = None
    for candidate in candidates:
        try:
            return msgspec.json.decode(candidate, type=list[EslintResult])
        except msgspec.ValidationError:
            raise
        except msgspec.DecodeError as exc:
            error = exc
    if start < 0 or error is None:
        raise ValueError("no JSON array in ESLint's output")
    raise error


def is_ignored_notice(msg: EslintMessage) -> bool:
    """ESLint's "File ignored because ..." for an explicitly passed file its configuration
    ignores (ESLint < 8.51, or without ``--no-warn-ignored``): about the file, not in it."""
    return msg.rule_id is None and not msg.fatal and msg.message.startswith(IGNORED_PREFIXES)


def _ignored_only(messages: list[EslintMessage]) -> bool:
    return len(messages) == 1 and is_ignored_notice(messages[0])


def parse_eslint_json(text: str, target: Path) -> EslintReport:
    """Findings from ``eslint -f json``; ``ValueError`` when it is not that."""
    records = _json_array(text)
    report = EslintReport()
    for rec in records:
        if not _ignored_only(rec.messages):
            report.files += 1
        file = relative_path(rec.file_path, target)
        for msg in rec.messages:
            text_ = msg.message
            rule_id = msg.rule_id
            severity = msg.severity
            fatal = msg.fatal
            has_fix = msg.fix is not None
            if is_ignored_notice(msg):
                continue
            phase: Phase = "build" if fatal else "lint"
            if fatal:
                rule, fix = "invalid-syntax", ""
            elif rule_id is None:
                directive = text_.startswith(DIRECTIVE_PREFIXES)
                rule, fix = ("unused-disable-directive" if directive else "eslint"), ""
            else:
                rule, fix = rule_id, ("safe" if has_fix else "")
            level = "error" if severity >= 2 or fatal else "warning"
            if level == "error":
                report.errors += 1
            else:
                report.warnings += 1
            if fix:
                report.fixable += 1
            report.messages.append(msg)
            report.findings.append(
                Finding(
                    phase=phase,
                    file=file,
                    line=msg.line or 0,
                    column=msg.column or 0,
                    rule=rule,
                    message=text_,
                    severity=level,
                    fix=fix,
                )
            )
    return report


def error_summary(text: str, limit: int = 800) -> str:
    """The message of a Node tool's failure without its banner and stack frames."""
    lines = []
    for line in strip_ansi(text).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("at ", "Oops! Something")):
            continue
        if re.fullmatch(r"ESLint: \d+\S*", stripped):
            continue
        lines.append(stripped)
    summary = "\n".join(lines)
    return summary if len(summary) <= limit else summary[: limit - 1] + "…"


#: ESLint versions that know the scoped-run options
NO_ERROR_ON_UNMATCHED_SINCE = (6, 8)
NO_WARN_IGNORED_SINCE = (8, 51)
FLAT_CONFIG_FILES = ("eslint.config.js", "eslint.config.mjs", "eslint.config.cjs")


def _version_tuple(version: str) -> tuple[int, ...] | None:
    m = re.match(r"v?(\d+)\.(\d+)", version.strip())
    return (int(m[1]), int(m[2])) if m else None


def scope_flags(version: str, target: Path, env: Mapping[str, str]) -> list[str]:
    """The options that keep ignored and unmatched requested files out of a scoped run, as far
    as this ESLint knows them (an unknown version gets both).

    ``--no-error-on-unmatched-pattern`` came with ESLint 6.8 (before 5.0 an unmatched pattern
    was no error at all); ``--no-warn-ignored`` with 8.51, and only in flat-config mode: the
    default from ESLint 9 (unless ``ESLINT_USE_FLAT_CONFIG=false``), in ESLint 8 only with an
    ``eslint.config.*`` file or ``ESLINT_USE_FLAT_CONFIG=true``.
    """
    known = _version_tuple(version)
    if known is None:
        return ["--no-warn-ignored", "--no-error-on-unmatched-pattern"]
    flat_env = env.get("ESLINT_USE_FLAT_CONFIG", "").lower()
    if known >= (9, 0):
        flat = flat_env != "false"
    else:  # eslint.config.mjs and .cjs count from 8.57
        names = FLAT_CONFIG_FILES if known >= (8, 57) else FLAT_CONFIG_FILES[:1]
        has_file = any((Path(target) / name).is_file() for name in names)
        flat = flat_env == "true" or (has_file and flat_env != "false")
    flags = []
    if known >= NO_WARN_IGNORED_SINCE and flat:
        flags.append("--no-warn-ignored")
    if known >= NO_ERROR_ON_UNMATCHED_SINCE:
        flags.append("--no-error-on-unmatched-pattern")
    return flags


def eslint_version(exe: str, env: Mapping[str, str]) -> str:
    """The version of the ESLint at ``exe``: its package's ``package.json``, else
    ``eslint --version`` ("" when neither says)."""
    found = bin_package_version(exe)
    if found:
        return found
    with tempfile.TemporaryDirectory(prefix="airfix-version-") as tmp:
        proc = run_process([exe, "--version"], Path(tmp), 30.0, dict(env))
    m = re.search(r"\d+(?:\.\d+)+", strip_ansi(proc.stdout)) if proc.exit_code == 0 else None
    return m.group(0) if m else ""


class EslintAdapter(NodeToolAdapter):
    name = "eslint"
    phase = "lint"
    tier = "static"
    executable_name = "eslint"
    npm_package = "eslint"
    default_timeout_s = 300.0

    def scope(self, target: Path, files: list[str]) -> list[str]:
        return [f for f in files if f.endswith(LINTED_SUFFIXES) and (target / f).is_file()]

    def build_command(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[str]:
        if files is None:
            return [exe, "-f", "json", *self.extra_args, "."]
        flags = scope_flags(self.version(), target, {**os.environ, **self.extra_env})
        return [exe, "-f", "json", *flags, *self.extra_args, "--", *files]

    def execute(self, ctx: RunContext) -> ToolRun:
        proc = self.spawn(
            ctx, self.build_command(ctx.executable, ctx.target, ctx.files, ctx.workdir)
        )
        if proc.exit_code == 2:  # the stderr tail would be stack frames: say what went wrong
            raise ToolFailure(
                "eslint: exit 2 (configuration error, crash or nothing to lint): "
                + error_summary(proc.stderr or proc.stdout),
                proc,
            )
        code = check_exit(proc, (0, 1), "eslint")
        try:
            report = parse_eslint_json(proc.stdout, ctx.target)
        except (ValueError, TypeError) as exc:
            raise ToolFailure(f"eslint: unparsable JSON output ({exc})", proc) from exc
        max_warnings = any(a.startswith("--max-warnings") for a in self.extra_args)
        if code == 1 and not report.errors and not (max_warnings and report.warnings):
            raise ToolFailure("eslint: exit 1 but no error in its JSON output", proc)
        if code == 0 and report.errors:
            raise ToolFailure(f"eslint: exit 0 but {report.errors} errors in its JSON output", proc)
        if ctx.files is not None and report.files == 0:
            return self.result(
                ctx,
                "skipped",
                error="ESLint's configuration ignores every requested file",
            )
        issues = to_issues(self.name, report.findings)
        return self.result(
            ctx,
            "failed" if issues else "passed",
            issues=issues,
            counts={
                "issues": len(issues),
                "errors": report.errors,
                "warnings": report.warnings,
                "fixable": report.fixable,
                "files": report.files,
                "syntax_errors": sum(1 for i in issues if i.phase == "build"),
            },
        )
