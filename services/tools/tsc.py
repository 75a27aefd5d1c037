"""tsc: the TypeScript type checker (phase ``build``), for targets with a ``tsconfig.json``.

Why ``build``: as with mypy, type errors are analyser errors (what stops the program from being
correct), so they sit with syntax errors ahead of tests and lint.

tsc has no JSON output.  Its machine format *is* the plain diagnostic line printed with
``--pretty false`` (verified with TypeScript 6.0.3 and 7.0.2)::

    src/shapes.ts(14,9): error TS2322: Type 'string' is not assignable to type 'number'.
      Type 'string' is not assignable to type 'number'.
    error TS18003: No inputs were found in config file '/p/tsconfig.json'. ...

``file(line,col): <error|warning|message> TS<code>: <text>`` with the file relative to the working
directory and 1-based line/column; indented lines continue the previous message (chained
diagnostics) and are appended to it; a global diagnostic has no location.  ``--pretty`` defaults
to false when stdout is not a terminal, but it is passed explicitly.

Exit codes: 0 no diagnostics; 1 and 2 both mean "diagnostics present" (TypeScript <= 6 exits 2
even with ``--noEmit``, TypeScript 7 exits 1 — verified), so either is ``failed`` *when* the output
holds diagnostics and a ``tool_error`` when it holds none (a crash of the Node wrapper also exits
1); 3 (invalid project), 4 (project reference cycle) and anything else are ``tool_error``.

Configuration errors are ``tool_error``, not issues: a diagnostic located in a ``.json`` file
(``tsconfig.json(6,21): error TS5023: Unknown compiler option``, JSON syntax errors, options
removed in this TypeScript version) or a global one with a TS5xxx/TS6xxx/TS18xxx code (bad
command-line option, "No inputs were found").  The exit code cannot tell them apart (TS 6: 2, TS 7:
1), only the diagnostics can.  A run with no diagnostics at all is confirmed with
``tsc --showConfig``: a configuration that selects no files (a solution-style ``tsconfig.json``
with ``"files": []`` and ``references``, which only ``tsc --build`` would check) checked nothing
and is a ``tool_error``, not a pass.

No ``tsconfig.json`` at the target's root: ``skipped`` (``detect`` also calls a project
TypeScript when ``typescript`` is merely a dependency; tsc without a project has nothing defined
to check, and guessing options would report errors the project never asked for).

Type checking is whole-program: a scoped run with any TypeScript/JavaScript/JSON file among the
requested ones checks the whole project (TypeScript 7 even rejects files on the command line while
a tsconfig.json exists, TS5112); with none of them it is ``skipped``.

Nothing is written into the target: ``--noEmit``, and ``--tsBuildInfoFile`` in the run's temporary
directory (a project with ``incremental``/``composite`` would otherwise write
``tsconfig.tsbuildinfo`` next to its config even with ``--noEmit``; without them the option is
inert).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from airfix.services.tools.adapter import RunContext, ToolFailure, check_exit
from airfix.services.tools.eslint import NodeToolAdapter, strip_ansi
from airfix.services.tools.fingerprints import Finding, relative_path, to_issues
from airfix.services.tools.results import ToolRun

CONFIG_FILE = "tsconfig.json"
CHECKED_SUFFIXES = (
    ".ts", ".tsx", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs", ".json",
)  # fmt: skip
_LOCATED = re.compile(
    r"^(?P<file>.+?)\((?P<line>\d+),(?P<col>\d+)\): "
    r"(?P<sev>error|warning|message) TS(?P<code>\d+): (?P<msg>.*)$"
)
_GLOBAL = re.compile(r"^(?P<sev>error|warning|message) TS(?P<code>\d+): (?P<msg>.*)$")
EXIT_MEANINGS = {3: "invalid project, outputs skipped", 4: "project reference cycle"}


class TscReference(msgspec.Struct, frozen=True):
    """A project reference in ``tsc --showConfig`` (``{"path": ...}``)."""

    path: str


class TscShownConfig(msgspec.Struct, frozen=True):
    """``tsc --showConfig``: the resolved configuration; only the selected inputs matter here.

    It lists every selected input under ``files`` (TypeScript 6 and 7, verified) and leaves the
    key out when there is none."""

    files: list[str] = []
    references: list[TscReference] = []


@dataclass
class TscDiagnostic:
    file: str
    line: int
    column: int
    severity: str
    code: int
    message: str

    @property
    def is_config(self) -> bool:
        """A diagnostic about the configuration, not the code: the run measured nothing."""
        if self.file:
            return self.file.endswith(".json")
        return 5000 <= self.code < 7000 or 18000 <= self.code < 19000

    def render(self) -> str:
        where = f"{self.file}({self.line},{self.column}): " if self.file else ""
        return f"{where}{self.severity} TS{self.code}: {self.message}"


@dataclass
class TscReport:
    diagnostics: list[TscDiagnostic] = field(default_factory=list)
    other_lines: list[str] = field(default_factory=list)  # evidence; not diagnostics

    @property
    def config_errors(self) -> list[TscDiagnostic]:
        return [d for d in self.diagnostics if d.is_config]

    @property
    def errors(self) -> int:
        return sum(1 for d in self.diagnostics if d.severity == "error")


def parse_tsc_output(text: str, target: Path) -> TscReport:
    """Diagnostics from ``tsc --pretty false`` output (file paths relative to ``target``)."""
    report = TscReport()
    for raw in text.splitlines():
        line = strip_ansi(raw.rstrip())
        if not line.strip():
            continue
        m = _LOCATED.match(line)
        if m:
            report.diagnostics.append(
                TscDiagnostic(
                    file=relative_path(m["file"], target),
                    line=int(m["line"]),
                    column=int(m["col"]),
                    severity=m["sev"],
                    code=int(m["code"]),
                    message=m["msg"].strip(),
                )
            )
            continue
        m = _GLOBAL.match(line)
        if m:
            report.diagnostics.append(
                TscDiagnostic("", 0, 0, m["sev"], int(m["code"]), m["msg"].strip())
            )
        elif line[0].isspace() and report.diagnostics:
            report.diagnostics[-1].message += "\n" + line.strip()
        else:
            report.other_lines.append(line)
    return report


def findings_of(report: TscReport) -> list[Finding]:
    return [
        Finding(
            phase="build",
            file=d.file,
            line=d.line,
            column=d.column,
            rule=f"TS{d.code}",
            message=d.message,
            severity=d.severity,
        )
        for d in report.diagnostics
    ]


class TscAdapter(NodeToolAdapter):
    name = "tsc"
    language = "typescript"
    phase = "build"
    tier = "static"
    executable_name = "tsc"
    npm_package = "typescript"
    default_timeout_s = 600.0

    def preflight(self, target: Path, files: Sequence[str] | None) -> ToolRun | None:
        if (target / CONFIG_FILE).is_file():
            return None
        return self.skipped(
            [self.bin_name(target)],
            f"no {CONFIG_FILE} in {target}: tsc has no project to check",
        )

    def scope(self, target: Path, files: list[str]) -> list[str]:
        return [f for f in files if f.endswith(CHECKED_SUFFIXES) and (target / f).is_file()]

    def build_command(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[str]:
        # ``files`` only decides whether to run at all: type checking is whole-program.
        return [
            exe, "-p", CONFIG_FILE, "--noEmit", "--pretty", "false",
            "--tsBuildInfoFile", str(workdir / "tsc.tsbuildinfo"), *self.extra_args,
        ]  # fmt: skip

    def execute(self, ctx: RunContext) -> ToolRun:
        proc = self.spawn(
            ctx, self.build_command(ctx.executable, ctx.target, ctx.files, ctx.workdir)
        )
        code = check_exit(proc, (0, 1, 2), "tsc", EXIT_MEANINGS)
        report = parse_tsc_output(proc.stdout, ctx.target)
        if report.config_errors:
            shown = "; ".join(d.render() for d in report.config_errors[:5])
            raise ToolFailure(f"tsc: configuration error: {shown}", proc)
        if code != 0 and not report.diagnostics:
            raise ToolFailure(f"tsc: exit {code} but no diagnostics in its output", proc)
        if code == 0 and report.errors:
            raise ToolFailure(f"tsc: exit 0 but {report.errors} error diagnostics", proc)
        if not report.diagnostics:
            self._confirm_inputs(ctx)
        issues = to_issues(self.name, findings_of(report))
        return self.result(
            ctx,
            "failed" if issues else "passed",
            issues=issues,
            counts={
                "issues": len(issues),
                "errors": report.errors,
                "global": sum(1 for i in issues if not i.file),
            },
        )

    def _confirm_inputs(self, ctx: RunContext) -> None:
        """A clean run counts only if the configuration selected files to check."""
        proc = self.spawn(ctx, [ctx.executable, "-p", CONFIG_FILE, "--showConfig"])
        if proc.exit_code != 0:
            raise ToolFailure("tsc: --showConfig failed after a clean run", proc)
        try:
            config = msgspec.json.decode(proc.stdout, type=TscShownConfig)
        except msgspec.DecodeError as exc:  # names the path: $.files[0]
            raise ToolFailure(f"tsc: unparsable --showConfig output ({exc})", proc) from exc
        if not config.files:
            refs = config.references
            why = (
                'a solution-style tsconfig.json ("files": [] with references) checks nothing '
                "without tsc --build, which airfix does not run"
                if refs
                else "tsconfig.json selects no files"
            )
            raise ToolFailure(f"tsc: checked no files: {why}", proc)
