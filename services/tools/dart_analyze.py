"""dart analyze: the Dart analyser for Dart and Flutter projects (phase ``build``).

``dart analyze --format=json`` prints one JSON object: ``{"version": 1,
"diagnostics": [{"code", "severity": INFO|WARNING|ERROR, "type": LINT|HINT|STATIC_WARNING|
COMPILE_TIME_ERROR|SYNTACTIC_ERROR|..., "location": {"file": <absolute>, "range": {"start":
{"offset", "line", "column"}, "end": {...}}}, "problemMessage", "correctionMessage"?,
"contextMessages"?, "documentation"?}]}`` with 1-based lines and columns.  ``flutter analyze``
has no diagnostics JSON (its ``--machine`` is something else), so Flutter projects use the
``dart`` that ships with the Flutter SDK.  Older SDKs printed a preamble before the JSON: parsing
starts at the first line that begins with ``{``.

Exit status: 0 nothing (or only infos/warnings when not fatal), 1 infos with ``--fatal-infos``,
2 warnings (``--fatal-warnings`` is on by default), 3 errors, 4 the analysis server crashed, 64
usage.  Statuses 4, 64 and anything else are a ``tool_error``; so is a JSON that contradicts its
exit status: errors in ``pubspec.yaml``/``analysis_options.yaml`` make ``dart analyze`` exit 3 but
are left out of the JSON, so "exit 3, no ERROR diagnostic" would otherwise read as clean.

Issues: ``rule`` = the diagnostic code, severity lower-cased, phase ``build`` for errors
(``ERROR``, or a compile-time/syntactic type) and ``lint`` for warnings, hints and lints (the
taxonomy of ``mypy.py``); the message is ``problemMessage`` plus the correction and the
documentation link, the fingerprint uses ``problemMessage`` only.

Fixability: the JSON says nothing about fixes.  When there are diagnostics the adapter asks
``dart fix --dry-run`` (a second, read-only run; dart-lang/sdk ``commands/fix.dart``) which
``(file, code)`` pairs have a bulk fix and marks those issues ``fix="safe"`` — exactly what
``dart fix --apply --code=<code> <file>`` (``services/fixers/autofix_go_dart.py``) repairs.  If
that probe fails, nothing is marked fixable and ``counts["fix_probe_failed"]`` is 1; the
analysis itself stands.

Dependencies must have been resolved (``.dart_tool/package_config.json``): without them every
``package:`` import is an error and the result means nothing, and resolving them (``pub get``)
would write into the target.  A project that was never ``pub get``-ed is a ``tool_error`` that
says so.  The analysis server's cache lives in the user's home (``~/.dartServer``).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import msgspec

from airfix.services.tools.adapter import BaseToolAdapter, RunContext, ToolFailure, check_exit
from airfix.services.tools.fingerprints import Finding, relative_path, to_issues
from airfix.services.tools.results import ToolRun

PACKAGE_CONFIG = Path(".dart_tool") / "package_config.json"
CONFIG_FILES = ("pubspec.yaml", "pubspec.lock", "analysis_options.yaml", "package_config.json")
BUILD_TYPES = {"COMPILE_TIME_ERROR", "CHECKED_MODE_COMPILE_TIME_ERROR", "SYNTACTIC_ERROR"}
EXIT_MEANINGS = {4: "the analysis server crashed", 64: "usage error", 65: "data error"}
UNRESOLVED = (
    "dependencies are not resolved ({} is missing): run `dart pub get` (or `flutter pub get`) "
    "in the project first; airfix does not write .dart_tool into the target"
)


def missing_sdk(adapter: BaseToolAdapter) -> ToolRun | None:
    """A ``tool_error`` naming the SDK when the executable is missing (there is no pip package)."""
    if adapter.resolve() is not None:
        return None
    return adapter._tool_error(
        f"{adapter.name}: executable {adapter.executable!r} not found (looked next to "
        f"{sys.executable} and on PATH); install the Dart SDK, or the Flutter SDK (which ships "
        "dart), and put its bin/ directory on PATH",
        [adapter.executable],
    )


def require_resolved(target: Path, tool: str) -> None:
    """Raise :class:`ToolFailure` when ``pub get`` was never run in a pubspec project."""
    if (target / "pubspec.yaml").is_file() and not (target / PACKAGE_CONFIG).is_file():
        raise ToolFailure(f"{tool}: " + UNRESOLVED.format(PACKAGE_CONFIG.as_posix()))


class DartPosition(msgspec.Struct, frozen=True):
    """A 1-based ``line``/``column`` (``offset`` is ignored)."""

    line: int = 0
    column: int = 0


class DartRange(msgspec.Struct, frozen=True):
    start: DartPosition | None = None


class DartLocation(msgspec.Struct, frozen=True):
    file: str = ""  # absolute
    range: DartRange | None = None

    @property
    def start(self) -> DartPosition:
        found = self.range.start if self.range is not None else None
        return found if found is not None else DartPosition()


class DartContextMessage(msgspec.Struct, frozen=True):
    """A ``contextMessages`` entry: a related place (the declaration a use conflicts with)."""

    message: str = ""
    location: DartLocation | None = None


class DartDiagnostic(msgspec.Struct, frozen=True, rename="camel"):
    """One of ``diagnostics``; ``severity`` is INFO, WARNING or ERROR."""

    severity: str
    code: str = ""
    type: str = ""
    location: DartLocation | None = None
    problem_message: str = ""
    correction_message: str | None = None
    context_messages: list[DartContextMessage] = []
    documentation: str | None = None


class DartAnalysis(msgspec.Struct, frozen=True):
    """The object ``dart analyze --format=json`` prints (``version`` is ignored)."""

    diagnostics: list[DartDiagnostic]


@dataclass
class DartReport:
    findings: list[Finding] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)  # diagnostic code per finding, same order
    errors: int = 0
    warnings: int = 0
    infos: int = 0


def _first_json_object(text: str) -> DartAnalysis:
    """The first JSON object in ``text`` (older SDKs print a preamble), typed: a wrong shape is
    a ``msgspec.ValidationError`` naming the path (``$.diagnostics[0].location.file``)."""
    for m in re.finditer(r"^[ \t]*\{", text, re.MULTILINE):
        start = m.end() - 1
        try:
            _, stop = json.JSONDecoder().raw_decode(text, start)  # where the object ends
        except json.JSONDecodeError:
            continue
        return msgspec.json.decode(text[start:stop], type=DartAnalysis)
    raise ValueError("no JSON object in dart analyze's output")


def parse_dart_analyze(text: str, target: Path) -> DartReport:
    """Findings from ``dart analyze --format=json``; ``ValueError`` if malformed."""
    doc = _first_json_object(text)
    report = DartReport()
    for n, diag in enumerate(doc.diagnostics):
        severity = diag.severity.upper()
        kind = diag.type.upper()
        if severity not in ("INFO", "WARNING", "ERROR"):
            raise ValueError(
                f"unknown dart analyze severity {diag.severity!r} - at `$.diagnostics[{n}].severity`"
            )
        location = diag.location or DartLocation()
        start = location.start
        problem = diag.problem_message
        message = problem
        if diag.correction_message:
            message += "\n" + diag.correction_message
        for context in diag.context_messages:
            c_loc = context.location or DartLocation()
            where = relative_path(c_loc.file, target)
            message += f"\n- {context.message} ({where}:{c_loc.start.line})"
        if diag.documentation:
            message += "\n" + diag.documentation
        code = diag.code
        build = severity == "ERROR" or kind in BUILD_TYPES
        report.findings.append(
            Finding(
                phase="build" if build else "lint",
                file=relative_path(location.file, target),
                line=start.line,
                column=start.column,
                rule=code,
                message=message,
                severity=severity.lower(),
                key_message=problem,
            )
        )
        report.codes.append(code)
        if severity == "ERROR":
            report.errors += 1
        elif severity == "WARNING":
            report.warnings += 1
        else:
            report.infos += 1
    return report


# ---------------------------------------------------------------- dart fix --dry-run

_PROPOSED = re.compile(r"^\s*\d[\d,.]*\s+proposed\s+fix(?:es)?\s+in\s+\d[\d,.]*\s+files?\.\s*$")
_FIX_LINE = re.compile(r"^\s+(?P<code>[A-Za-z0-9_]+)\s+(?:•|-|\*)\s+\d[\d,.]*\s+fix(?:es)?\s*$")


def parse_fix_dry_run(text: str, target: Path) -> set[tuple[str, str]] | None:
    """``{(file, code)}`` that ``dart fix`` can fix; ``None`` when the text is not understood."""
    if re.search(r"^\s*Nothing to fix!\s*$", text, re.MULTILINE):
        return set()
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _PROPOSED.match(line)), None)
    if start is None:
        return None
    fixable: set[tuple[str, str]] = set()
    current = ""
    for line in lines[start + 1 :]:
        if line.startswith("To fix"):
            break
        if not line.strip():
            continue
        m = _FIX_LINE.match(line)
        if m:
            if not current:
                return None
            fixable.add((current, m.group("code")))
        elif not line[0].isspace():
            current = relative_path(line.strip(), target)
        else:
            return None
    return fixable


# ---------------------------------------------------------------- the adapter


class DartAnalyzeAdapter(BaseToolAdapter):
    name = "dart_analyze"
    language = "dart"
    phase = "build"
    tier = "static"
    executable_name = "dart"
    default_timeout_s = 600.0

    def __init__(
        self,
        executable: str | None = None,
        *,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        probe_fixes: bool = True,
    ) -> None:
        super().__init__(executable, extra_args=extra_args, env=env)
        self.probe_fixes = probe_fixes

    def run(
        self, target: Path, files: Sequence[str] | None = None, *, timeout_s: float | None = None
    ) -> ToolRun:
        return missing_sdk(self) or super().run(target, files, timeout_s=timeout_s)

    def _scope(self, target: Path, files: Sequence[str] | None) -> list[str] | None:
        if files is None:
            return None
        rel = [relative_path(str(f), target) for f in files]
        if any(Path(f).name in CONFIG_FILES for f in rel):
            return None  # the configuration changed: everything may have changed
        return [f for f in rel if f.endswith(".dart") and (target / f).is_file()]

    def build_command(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[str]:
        return [exe, "analyze", "--format=json", *self.extra_args, *(files or [])]

    def execute(self, ctx: RunContext) -> ToolRun:
        require_resolved(ctx.target, "dart analyze")
        proc = self.spawn(
            ctx, self.build_command(ctx.executable, ctx.target, ctx.files, ctx.workdir)
        )
        code = check_exit(proc, (0, 1, 2, 3), "dart analyze", EXIT_MEANINGS)
        try:
            report = parse_dart_analyze(proc.stdout, ctx.target)
        except ValueError as exc:
            raise ToolFailure(f"dart analyze: unparsable JSON output ({exc})", proc) from exc
        if code == 3 and not report.errors:
            raise ToolFailure(
                "dart analyze: exit 3 (errors) but no ERROR diagnostic in its JSON; errors in "
                "pubspec.yaml or analysis_options.yaml are left out of the JSON output",
                proc,
            )
        if report.errors and code != 3:
            raise ToolFailure(
                f"dart analyze: {report.errors} errors in the JSON but exit {code}", proc
            )
        if code == 2 and not report.warnings:
            raise ToolFailure("dart analyze: exit 2 (warnings) but no WARNING diagnostic", proc)
        counts = {
            "issues": len(report.findings),
            "errors": report.errors,
            "warnings": report.warnings,
            "infos": report.infos,
            "fixable": 0,
        }
        findings = report.findings
        if findings and self.probe_fixes:
            fixable = self._probe_fixes(ctx)
            if fixable is None:
                counts["fix_probe_failed"] = 1
            else:
                findings = [
                    replace(f, fix="safe") if (f.file, c) in fixable else f
                    for f, c in zip(report.findings, report.codes, strict=True)
                ]
                counts["fixable"] = sum(1 for f in findings if f.fix)
        issues = to_issues(self.name, findings)
        return self.result(ctx, "failed" if issues else "passed", issues=issues, counts=counts)

    def _probe_fixes(self, ctx: RunContext) -> set[tuple[str, str]] | None:
        try:
            proc = self.spawn(ctx, [ctx.executable, "fix", "--dry-run"])
        except ToolFailure:
            return None
        if proc.exit_code != 0:
            return None
        return parse_fix_dry_run(proc.stdout, ctx.target)
