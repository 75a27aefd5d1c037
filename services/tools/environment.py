"""The target project's own Python environment: which interpreter runs its tests and imports.

Why: a project's tests import its dependencies, and mypy needs them to see real types.  Run in
airfix's environment instead, a project that depends on a package airfix lacks shows collection
errors and "library stubs not installed" that are not defects of the code, and a fixer is then
asked to "fix" them.  So pytest and coverage run as ``<python> -m ...`` with the project's
interpreter, and mypy gets ``--python-executable``.

Discovery order, first match wins (the managers' own conventions):

1. explicit: ``--python`` / ``target_project.python``;
2. ``UV_PROJECT_ENVIRONMENT`` (relative to the target);
3. Poetry: a ``poetry.lock`` and ``poetry env info --executable`` (when poetry is installed);
4. PDM: the interpreter saved in ``.pdm-python``;
5. an in-repository ``.venv``, ``venv`` or ``env`` holding a ``pyvenv.cfg`` (uv, Hatch with an
   in-project path, ``python -m venv``);
6. an active ``VIRTUAL_ENV``;
7. airfix's own interpreter, said as such (a project without an environment of its own).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import msgspec

IN_REPO_VENVS = (".venv", "venv", "env")


class PythonEnv(msgspec.Struct, frozen=True, kw_only=True):
    """An interpreter and how it was found; ``own`` is airfix's interpreter itself."""

    python: str
    source: str  # "--python", "UV_PROJECT_ENVIRONMENT", "poetry", ".pdm-python", ".venv", ...
    version: str = ""

    @property
    def own(self) -> bool:
        return self.source == "airfix"

    @property
    def bin_dir(self) -> Path:
        return Path(self.python).parent

    def describe(self) -> str:
        where = "airfix's own interpreter" if self.own else f"from {self.source}"
        return f"{self.python} (Python {self.version or '?'}, {where})"


def _interpreter(venv: Path) -> Path | None:
    for name in ("bin/python", "bin/python3", "Scripts/python.exe"):
        candidate = venv / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _poetry(target: Path) -> Path | None:
    if not (target / "poetry.lock").is_file():
        return None
    try:
        proc = subprocess.run(
            ["poetry", "env", "info", "--executable"],
            cwd=target,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None
    return path if path is not None and path.is_file() else None


def _pdm(target: Path) -> Path | None:
    saved = target / ".pdm-python"
    if not saved.is_file():
        return None
    path = Path(saved.read_text(encoding="utf-8").strip())
    return path if path.is_file() else None


def find_python(
    target: Path, explicit: str = "", environ: Mapping[str, str] | None = None
) -> PythonEnv:
    """The interpreter the target's tools run with (see the module docstring for the order)."""
    env = os.environ if environ is None else environ
    target = Path(target)
    found: tuple[Path, str] | None = None
    if explicit:
        found = (Path(explicit).expanduser(), "--python")
    elif env.get("UV_PROJECT_ENVIRONMENT"):
        venv = target / env["UV_PROJECT_ENVIRONMENT"]
        python = _interpreter(venv)
        found = (python, "UV_PROJECT_ENVIRONMENT") if python else None
    if found is None and (poetry := _poetry(target)) is not None:
        found = (poetry, "poetry")
    if found is None and (pdm := _pdm(target)) is not None:
        found = (pdm, ".pdm-python")
    if found is None:
        for name in IN_REPO_VENVS:
            venv = target / name
            if (venv / "pyvenv.cfg").is_file() and (python := _interpreter(venv)) is not None:
                found = (python, name)
                break
    if found is None and env.get("VIRTUAL_ENV"):
        python = _interpreter(Path(env["VIRTUAL_ENV"]))
        found = (python, "VIRTUAL_ENV") if python else None
    path, source = found if found is not None else (Path(sys.executable), "airfix")
    return PythonEnv(python=str(path.absolute()), source=source, version=python_version(str(path)))


_VERSIONS: dict[tuple[str, float], str] = {}
_MODULES: dict[tuple[str, float, str], bool] = {}


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return -1.0


def python_version(python: str) -> str:
    """``X.Y.Z`` of an interpreter ("" when it does not run), asked once per install."""
    key = (python, _mtime(python))
    if key not in _VERSIONS:
        try:
            proc = subprocess.run(
                [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                check=False,
                capture_output=True,
                text=True,
                timeout=30,
            )
            _VERSIONS[key] = proc.stdout.strip() if proc.returncode == 0 else ""
        except (OSError, subprocess.TimeoutExpired):
            _VERSIONS[key] = ""
    return _VERSIONS[key]


def has_module(python: str, module: str) -> bool:
    """Whether ``module`` imports in that interpreter (asked once per install and module)."""
    key = (python, _mtime(python), module)
    if key not in _MODULES:
        try:
            proc = subprocess.run(
                [python, "-c", f"import {module}"],
                check=False,
                capture_output=True,
                timeout=60,
                env=_quiet_env(),
            )
            _MODULES[key] = proc.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _MODULES[key] = False
    return _MODULES[key]


def _quiet_env() -> dict[str, str]:
    from airfix.services.secrets import scrubbed_env

    env = scrubbed_env(os.environ)  # importing runs the project's environment's code
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def project_tool(env: PythonEnv | None, name: str) -> str | None:
    """A tool installed in the project's environment (its ``bin/<name>``), if there is one."""
    if env is None or env.own:
        return None
    candidate = env.bin_dir / name
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def python_env_of(environment: Mapping[str, str]) -> PythonEnv | None:
    """The project's interpreter as ``RunStarted.environment`` recorded it (None: not recorded)."""
    python = environment.get("python", "")
    if not python:
        return None
    return PythonEnv(
        python=python,
        source=environment.get("python_source", ""),
        version=environment.get("python_version", ""),
    )
