"""ruff: the Python linter (phase ``lint``; syntax errors are phase ``build``).

``ruff check --output-format json --cache-dir DIR --force-exclude PATHS`` prints a JSON array of
findings with *absolute* filenames and 1-based rows/columns.  Exit 0 = clean,
1 = findings, 2 = ruff itself failed (bad configuration, unknown rule selector, bad CLI).  Warnings
on stderr (deprecated options) do not fail a run whose JSON is good.

Why ``--cache-dir``: ruff's own cache would be written to ``.ruff_cache`` inside the target; the
caller names one outside it (kept between checks), else ``--no-cache``.  Why
``--force-exclude``: files passed explicitly (a scoped verification) would otherwise be linted even
when the project's configuration excludes them, so a scoped and a full run would disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from airfix.events.schema import IssueRecord
from airfix.services.tools.adapter import BaseToolAdapter, RunContext, ToolFailure, check_exit
from airfix.services.tools.fingerprints import Finding, relative_path, to_issues
from airfix.services.tools.results import ToolRun

SYNTAX_NAMES = {"invalid-syntax", "syntax-error"}
IO_ERROR_NAMES = {"io-error"}


class RuffLocation(msgspec.Struct, frozen=True):
    """A 1-based position in ruff's JSON (``location``, ``end_location``)."""

    row: int
    column: int


class RuffEdit(msgspec.Struct, frozen=True):
    """One replacement of a fix: ``content`` replaces ``location``..``end_location``."""

    location: RuffLocation
    end_location: RuffLocation
    content: str | None = None


class RuffFixData(msgspec.Struct, frozen=True):
    """A finding's ``fix``: how safe it is and its edits (all of them or none)."""

    applicability: str | None = None
    edits: list[RuffEdit] = []
    message: str | None = None


class RuffRecord(msgspec.Struct, frozen=True):
    """One element of ``ruff check --output-format json``; other fields are ignored."""

    filename: str
    code: str | None = None
    name: str | None = None
    message: str | None = None
    severity: str | None = None
    location: RuffLocation | None = None
    fix: RuffFixData | None = None


@dataclass
class RuffReport:
    findings: list[Finding] = field(default_factory=list)
    fixable: int = 0  # findings ``ruff check --fix`` fixes (applicability "safe")
    unsafe_fixable: int = 0  # need ``--unsafe-fixes``
    io_errors: list[str] = field(default_factory=list)
    fixes: list[RuffFixData | None] = field(default_factory=list)  # each finding's ``fix``


class Diagnostic(msgspec.Struct, frozen=True, kw_only=True):
    """One finding as an issue, with ruff's own fix for it (``None``: ruff has none)."""

    issue: IssueRecord
    fix: RuffFixData | None = None


def diagnostics(report: RuffReport) -> list[Diagnostic]:
    """The report's issues (ids as the adapter assigns them) paired with their fixes."""
    pairs = list(zip(report.findings, report.fixes, strict=True))
    issues = to_issues("ruff", report.findings)
    ordered = sorted(
        pairs, key=lambda p: (p[0].file, p[0].line, p[0].column, p[0].rule, p[0].message)
    )
    return [Diagnostic(issue=i, fix=fix) for i, (_, fix) in zip(issues, ordered, strict=True)]


def parse_ruff_json(text: str, target: Path) -> RuffReport:
    """Findings from ruff's JSON array; ``ValueError`` (a ``msgspec.ValidationError`` naming the
    path, e.g. ``$[3].location.row``) when it is not one."""
    start = text.find("[")
    if start < 0:
        raise ValueError("no JSON array in ruff's output")
    records = msgspec.json.decode(text[start:], type=list[RuffRecord])
    report = RuffReport()
    for rec in records:
        name = rec.name or ""
        code = rec.code or ""
        file = relative_path(rec.filename, target)
        if name in IO_ERROR_NAMES or code == "E902":
            report.io_errors.append(f"{file}: {rec.message or ''}")
            continue
        syntax = name in SYNTAX_NAMES or code in SYNTAX_NAMES or code == "E999"
        applicability = rec.fix.applicability if rec.fix is not None else None
        report.fixes.append(rec.fix)
        report.findings.append(
            Finding(
                fix=applicability if applicability in ("safe", "unsafe") else "",
                phase="build" if syntax else "lint",
                file=file,
                line=rec.location.row if rec.location else 0,
                column=rec.location.column if rec.location else 0,
                rule="invalid-syntax" if syntax else (code or name),
                message=rec.message or "",
                severity=rec.severity or "error",
            )
        )
        if applicability == "safe":
            report.fixable += 1
        elif applicability == "unsafe":
            report.unsafe_fixable += 1
    return report


class RuffAdapter(BaseToolAdapter):
    name = "ruff"
    phase = "lint"
    tier = "static"
    executable_name = "ruff"
    default_timeout_s = 120.0
    cache_dir: Path | None = None  # outside the target; None = no cache

    def build_command(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[str]:
        cache = ["--cache-dir", str(self.cache_dir)] if self.cache_dir else ["--no-cache"]
        return [
            exe, "check", "--output-format", "json", *cache, "--force-exclude",
            *self.extra_args, *(files if files is not None else ["."]),
        ]  # fmt: skip

    def execute(self, ctx: RunContext) -> ToolRun:
        if self.cache_dir is not None and self.cache_dir.resolve().is_relative_to(ctx.target):
            raise ToolFailure(f"ruff: cache_dir {self.cache_dir} is inside the target {ctx.target}")
        return self._check(ctx)

    def _check(self, ctx: RunContext) -> ToolRun:
        proc = self.spawn(
            ctx, self.build_command(ctx.executable, ctx.target, ctx.files, ctx.workdir)
        )
        code = check_exit(proc, (0, 1), "ruff", {2: "configuration or usage error"})
        try:
            report = parse_ruff_json(proc.stdout, ctx.target)
        except (ValueError, TypeError) as exc:
            raise ToolFailure(f"ruff: unparsable JSON output ({exc})", proc) from exc
        if report.io_errors:
            raise ToolFailure("ruff: could not read " + "; ".join(report.io_errors[:5]), proc)
        if code == 1 and not report.findings:
            raise ToolFailure("ruff: exit 1 but no findings in its JSON output", proc)
        issues = to_issues(self.name, report.findings)
        return self.result(
            ctx,
            "failed" if issues else "passed",
            issues=issues,
            counts={
                "issues": len(issues),
                "fixable": report.fixable,
                "unsafe_fixable": report.unsafe_fixable,
                "syntax_errors": sum(1 for i in issues if i.phase == "build"),
            },
        )
