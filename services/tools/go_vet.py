"""go vet: Go's analyser (phase ``build``), plus what the three Go adapters share.

``go vet -json ./...`` prints one pretty-printed JSON object per package:
``{"<import path>": {"<analyzer>": [{"posn": "/abs/f.go:18:2", "end": "...", "message": "...",
"suggested_fixes"?: [...]}]}}``; a package without findings prints ``{}``, an analyzer that failed
prints ``{"error": "..."}`` instead of its list.  Go 1.27 writes the JSON to stdout, older
toolchains to stderr, interleaved with ``# <package>`` lines, so both streams are scanned with a
streaming decoder and everything that is not JSON is kept as text.  In JSON mode the exit status
is 0 even with findings (golang/go#53509).

A package that does not compile is not vetted: go vet prints the compiler's ``file:line:col: msg``
lines (twice: once from the build, once as ``vet: ...``) on stderr and exits 1.  Those lines are
issues of phase ``build`` (rule ``compile-error``), deduplicated; the run is then ``failed``,
not a tool error.  Exit 1 without such lines (no ``go.mod``, a broken ``go.mod``, an unknown
flag), any other exit, or an analyzer ``error`` object is a ``tool_error``.  A module without
packages ("matched no packages") is ``skipped``: there was nothing to vet.

Findings with ``suggested_fixes`` are marked ``fix="unsafe"``: vet has a fix, but whether it
preserves behaviour is not classified, and no deterministic fixer applies it (``go vet -fix``
is left to a human or an LLM fixer that can judge it).

The Go toolchain, the environment and what the three Go adapters share are in
:mod:`.go_toolchain`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from airfix.services.tools.adapter import RunContext, ToolFailure, check_exit
from airfix.services.tools.fingerprints import Finding, relative_path, to_issues
from airfix.services.tools.go_toolchain import (
    NO_PACKAGES,
    GoToolAdapter,
    compile_finding,
    go_scope,
    package_patterns,
)
from airfix.services.tools.results import ToolRun

# ---------------------------------------------------------------- parsing

_POSN = re.compile(r"^(?P<file>.+?):(?P<line>\d+)(?::(?P<col>\d+))?$")


class VetSuggestedFix(msgspec.Struct, frozen=True):
    """One of a diagnostic's ``suggested_fixes`` (only counted: no fixer applies them)."""

    message: str = ""


class VetDiagnostic(msgspec.Struct, frozen=True):
    """One finding of an analyzer: ``posn`` is ``/abs/file.go:line[:col]``."""

    posn: str = ""
    message: str = ""
    suggested_fixes: list[VetSuggestedFix] = []


class VetAnalyzerError(msgspec.Struct, frozen=True):
    """What an analyzer that did not run prints instead of its list."""

    error: str


#: one analyzer's entry in a package's object: its findings, or why it did not run
VetAnalysis = list[VetDiagnostic] | VetAnalyzerError


@dataclass
class VetReport:
    findings: list[Finding] = field(default_factory=list)
    packages: int = 0  # JSON objects printed: one per vetted package
    compile_errors: int = 0
    suggested_fixes: int = 0
    analyzer_errors: list[str] = field(default_factory=list)
    other_lines: list[str] = field(default_factory=list)  # text that is neither JSON nor an error


def iter_json_and_text(text: str) -> Iterator[object]:
    """JSON values (dicts) and text lines (str) of ``text`` in order.

    A line starting with ``{`` begins a JSON value (pretty-printed values span lines); if it does
    not decode, the line is returned as text.  ``json``'s ``raw_decode`` only finds where a value
    ends in the mixed stream (msgspec has no incremental decoder); :func:`_add_vet_object` types it.
    """
    decoder = json.JSONDecoder()
    pos, end = 0, len(text)
    while pos < end:
        nl = text.find("\n", pos)
        line_end = end if nl < 0 else nl
        line = text[pos:line_end]
        if line.lstrip().startswith("{"):
            start = pos + (len(line) - len(line.lstrip()))
            try:
                value, stop = decoder.raw_decode(text, start)
            except json.JSONDecodeError:
                pass
            else:
                yield value
                pos = stop
                continue
        if line.strip():
            yield line.rstrip("\r")
        pos = line_end + 1


def parse_go_vet(stdout: str, stderr: str, target: Path) -> VetReport:
    """Findings from ``go vet -json`` output; ``ValueError`` on a malformed object, naming the
    package, the analyzer and the path in it (``$[0].posn``)."""
    report = VetReport()
    seen_compile: set[tuple[str, int, int, str]] = set()
    for stream in (stdout, stderr):
        for item in iter_json_and_text(stream):
            if isinstance(item, str):
                if item.startswith("#"):
                    continue  # "# example.com/pkg" header before a package's compiler output
                finding = compile_finding(item, target, "compile-error")
                if finding is None:
                    report.other_lines.append(item)
                    continue
                key = (finding.file, finding.line, finding.column, finding.message)
                if key not in seen_compile:
                    seen_compile.add(key)
                    report.findings.append(finding)
                    report.compile_errors += 1
                continue
            report.packages += 1  # one object per vetted package, ``{}`` when it is clean
            _add_vet_object(report, item, target)
    return report


def _add_vet_object(report: VetReport, obj: object, target: Path) -> None:
    """One package's object; converted an analyzer at a time so that an error names both."""
    try:
        packages = msgspec.convert(obj, dict[str, dict[str, Any]])
    except msgspec.ValidationError as exc:
        raise ValueError(f"a package's analyzers are not an object: {exc}") from exc
    for package, analyzers in packages.items():
        for analyzer, raw in analyzers.items():
            try:
                analysis = msgspec.convert(raw, VetAnalysis)
            except msgspec.ValidationError as exc:
                raise ValueError(f"{package} {analyzer}: {exc}") from exc
            if isinstance(analysis, VetAnalyzerError):  # the analyzer did not run
                report.analyzer_errors.append(f"{package} {analyzer}: {analysis.error}")
                continue
            for diag in analysis:
                m = _POSN.match(diag.posn)
                fixes = diag.suggested_fixes
                if fixes:
                    report.suggested_fixes += 1
                report.findings.append(
                    Finding(
                        phase="build",
                        file=relative_path(m.group("file"), target) if m else "",
                        line=int(m.group("line")) if m else 0,
                        column=int(m.group("col") or 0) if m else 0,
                        rule=analyzer,
                        message=diag.message,
                        fix="unsafe" if fixes else "",
                    )
                )


# ---------------------------------------------------------------- the adapter


class GoVetAdapter(GoToolAdapter):
    name = "go_vet"
    phase = "build"
    tier = "static"
    default_timeout_s = 600.0

    def _scope(self, target: Path, files: Sequence[str] | None) -> list[str] | None:
        return go_scope(target, files)

    def build_command(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[str]:
        patterns = package_patterns(files) if files is not None else ["./..."]
        return [exe, "vet", "-json", *self.extra_args, *patterns]

    def execute_go(self, ctx: RunContext) -> ToolRun:
        proc = self.spawn(
            ctx, self.build_command(ctx.executable, ctx.target, ctx.files, ctx.workdir)
        )
        code = check_exit(proc, (0, 1), "go vet")
        try:
            report = parse_go_vet(proc.stdout, proc.stderr, ctx.target)
        except (TypeError, ValueError) as exc:
            raise ToolFailure(f"go vet: unparsable output ({exc})", proc) from exc
        if report.analyzer_errors:
            raise ToolFailure(
                "go vet: analyzers failed: " + "; ".join(report.analyzer_errors[:5]), proc
            )
        if code == 1 and not report.compile_errors:
            if NO_PACKAGES in proc.stderr and not report.packages:
                return self.result(
                    ctx, "skipped", counts={"packages": 0},
                    error="go vet: no Go packages to vet (" + NO_PACKAGES + ")",
                )  # fmt: skip
            raise ToolFailure(
                "go vet: exit 1 without compiler errors (the go command failed)", proc
            )
        if code == 0 and not report.packages:
            raise ToolFailure("go vet: exit 0 but no JSON in its output (nothing was vetted)", proc)
        issues = to_issues(self.name, report.findings)
        return self.result(
            ctx,
            "failed" if issues else "passed",
            issues=issues,
            counts={
                "issues": len(issues),
                "packages": report.packages,
                "compile_errors": report.compile_errors,
                "suggested_fixes": report.suggested_fixes,
            },
        )
