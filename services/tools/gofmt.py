"""gofmt: Go's formatter as a check (phase ``lint``).

``gofmt -l -- FILES`` lists the files whose formatting differs from gofmt's, one path per line on
stdout, exit 0.  Each listed file is one issue, ``file is not gofmt-formatted`` (line 0: the whole
file), ``fix="safe"``: ``gofmt -w`` (see ``services/fixers/autofix_go_dart.py``) only changes
layout.  A file that does not parse is not listed; gofmt prints ``file.go:3:11: expected ')', found
'{'`` on stderr and exits 2 — those lines are issues of phase ``build`` (rule ``syntax-error``).
Exit 2 without such lines (an unreadable file), any other exit, or a listed path that was not
asked for is a ``tool_error``.

Which files: not ``gofmt -l .``, which also descends into ``testdata/`` (where Go projects keep
deliberately malformed sources) and ``vendor/``.  The files are the ones ``go build ./...`` would
see: directories named ``testdata``/``vendor`` or starting with ``.``/``_`` are skipped, as are
nested modules (a directory with its own ``go.mod``), and so are files starting with ``.``/``_``.
They are passed in chunks so a large tree cannot overflow the command line.

``gofmt`` has no ``--version``: its version is the toolchain's (``<GOROOT>/VERSION``, else
``go version``).  gofmt writes nothing without ``-w``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airfix.services.tools.adapter import RunContext, ToolFailure, check_exit
from airfix.services.tools.fingerprints import Finding, relative_path, to_issues
from airfix.services.tools.go_toolchain import (
    GoToolAdapter,
    compile_finding,
    find_go,
    find_gofmt,
    go_version_of,
)
from airfix.services.tools.results import ToolRun

NOT_FORMATTED = "file is not gofmt-formatted"
CHUNK = 500
SKIP_DIRS = ("testdata", "vendor")


def _ignored(name: str) -> bool:
    return name.startswith((".", "_"))


def go_source_files(target: Path) -> list[str]:
    """The ``.go`` files of the module at ``target`` (POSIX, relative), as ``./...`` sees them."""
    out: list[str] = []
    for root, dirs, files in os.walk(target):
        here = Path(root)
        dirs[:] = sorted(
            d for d in dirs
            if not _ignored(d) and d not in SKIP_DIRS and not (here / d / "go.mod").is_file()
        )  # fmt: skip
        for name in sorted(files):
            if name.endswith(".go") and not _ignored(name):
                out.append((here / name).relative_to(target).as_posix())
    return out


def is_go_source(path: str) -> bool:
    parts = Path(path).parts
    if not parts or not parts[-1].endswith(".go"):
        return False
    return not any(_ignored(p) or p in SKIP_DIRS for p in parts)


@dataclass
class GofmtReport:
    findings: list[Finding] = field(default_factory=list)
    unformatted: int = 0
    syntax_errors: int = 0
    other_lines: list[str] = field(default_factory=list)


def parse_gofmt(stdout: str, stderr: str, target: Path, requested: Sequence[str]) -> GofmtReport:
    """Issues from one ``gofmt -l`` run over ``requested``; unknown stdout paths raise."""
    wanted = {p.removeprefix("./") for p in requested}
    report = GofmtReport()
    for line in stdout.splitlines():
        path = line.strip()
        if not path:
            continue
        rel = relative_path(path, target)
        if rel not in wanted:
            raise ValueError(f"gofmt listed {path!r}, which was not among the files checked")
        report.unformatted += 1
        report.findings.append(
            Finding(phase="lint", file=rel, line=0, column=0, rule="gofmt",
                    message=NOT_FORMATTED, fix="safe")
        )  # fmt: skip
    for line in stderr.splitlines():
        if not line.strip():
            continue
        finding = compile_finding(line, target, "syntax-error")
        if finding is None:
            report.other_lines.append(line)
        else:
            report.syntax_errors += 1
            report.findings.append(finding)
    return report


class GofmtAdapter(GoToolAdapter):
    name = "gofmt"
    phase = "lint"
    tier = "static"
    executable_name = "gofmt"
    default_timeout_s = 120.0

    def resolve(self) -> str | None:
        return find_gofmt(self.executable)

    def version(self) -> str:
        if self._version is None:
            self._version = ""
            exe = self.resolve()
            if exe is not None:
                version_file = Path(exe).resolve().parent.parent / "VERSION"
                try:
                    first = version_file.read_text(encoding="utf-8").splitlines()[0].strip()
                except (OSError, IndexError):
                    first = ""
                if first.startswith("go"):
                    self._version = first[2:]
                else:
                    self._version = go_version_of(find_go())
        return self._version

    def scope(self, target: Path, files: list[str]) -> list[str]:
        return [f for f in files if is_go_source(f) and (target / f).is_file()]

    def build_command(
        self, exe: str, target: Path, files: list[str] | None, workdir: Path
    ) -> list[str]:
        if files is None:
            files = go_source_files(target) if target.is_dir() else []
        return [exe, "-l", *self.extra_args, "--", *files]

    def execute_go(self, ctx: RunContext) -> ToolRun:
        files = ctx.files if ctx.files is not None else go_source_files(ctx.target)
        if not files:
            return self.result(ctx, "skipped", counts={"files": 0}, error="gofmt: no Go files")
        findings: list[Finding] = []
        counts = {"files": len(files), "unformatted": 0, "syntax_errors": 0}
        for start in range(0, len(files), CHUNK):
            chunk = files[start : start + CHUNK]
            proc = self.spawn(
                ctx, self.build_command(ctx.executable, ctx.target, chunk, ctx.workdir)
            )
            code = check_exit(proc, (0, 2), "gofmt")
            try:
                report = parse_gofmt(proc.stdout, proc.stderr, ctx.target, chunk)
            except ValueError as exc:
                raise ToolFailure(f"gofmt: {exc}", proc) from exc
            if report.other_lines:
                raise ToolFailure("gofmt: " + "; ".join(report.other_lines[:5]), proc)
            if code == 2 and not report.syntax_errors:
                raise ToolFailure("gofmt: exit 2 without syntax errors", proc)
            findings.extend(report.findings)
            counts["unformatted"] += report.unformatted
            counts["syntax_errors"] += report.syntax_errors
        issues = to_issues(self.name, findings)
        counts["issues"] = len(issues)
        return self.result(ctx, "failed" if issues else "passed", issues=issues, counts=counts)
