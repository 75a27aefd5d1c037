"""The project's own environment: which interpreter runs its tests and imports, found as the
package managers leave it, and what happens when a dependency is missing there."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from airfix.services.tools import MypyAdapter, PytestAdapter
from airfix.services.tools.environment import find_python
from tests.pipeline_harness import git

ONLY_HERE = "airfix_only_in_the_project_env"


def make_venv(where: Path, *, with_package: bool = True) -> Path:
    """A real venv whose site-packages sees airfix's test tools (a .pth file) and, with
    ``with_package``, a package airfix's own environment does not have."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "airfix_tools.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    if with_package:
        pkg = site / ONLY_HERE
        pkg.mkdir()
        (pkg / "__init__.py").write_text("def answer() -> int:\n    return 42\n")
        (pkg / "py.typed").write_text("")
    return python


def project(root: Path) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0"\n\n[tool.mypy]\nfiles = ["app"]\n'
    )
    (root / "app" / "__init__.py").write_text(
        f"from {ONLY_HERE} import answer\n\n\ndef twice() -> int:\n    return 2 * answer()\n"
    )
    (root / "tests" / "test_app.py").write_text(
        "from app import twice\n\n\ndef test_twice():\n    assert twice() == 84\n"
    )
    return root


def test_the_detection_order_follows_the_package_managers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path / "p")
    own = find_python(root, environ={})
    assert (own.source, own.python) == ("airfix", str(Path(sys.executable).absolute()))
    active = make_venv(tmp_path / "active", with_package=False)
    assert (
        find_python(root, environ={"VIRTUAL_ENV": str(tmp_path / "active")}).source == "VIRTUAL_ENV"
    )
    in_repo = make_venv(root / ".venv", with_package=False)
    found = find_python(root, environ={"VIRTUAL_ENV": str(tmp_path / "active")})
    assert (found.source, found.python) == (".venv", str(in_repo))
    assert found.version == ".".join(map(str, sys.version_info[:3]))
    (root / ".pdm-python").write_text(str(active) + "\n")
    assert find_python(root, environ={}).source == ".pdm-python"
    uv = make_venv(root / "envs" / "uv", with_package=False)
    assert find_python(root, environ={"UV_PROJECT_ENVIRONMENT": "envs/uv"}).python == str(uv)
    assert (
        find_python(root, "/x/bin/python", environ={"UV_PROJECT_ENVIRONMENT": "envs/uv"}).source
        == "--python"
    )


def test_poetry_is_asked_where_its_environment_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path / "p")
    (root / "poetry.lock").write_text("# lock\n")
    venv = make_venv(tmp_path / "cache" / "app-py3.11", with_package=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    poetry = bin_dir / "poetry"  # poetry's own answer to `poetry env info --executable`
    poetry.write_text(
        f'#!/bin/sh\n[ "$1 $2 $3" = "env info --executable" ] && echo {venv} && exit 0\nexit 1\n'
    )
    poetry.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    found = find_python(root, environ={})
    assert (found.source, found.python) == ("poetry", str(venv))


def test_tests_and_types_see_the_project_environment_and_a_missing_dependency_is_named(
    tmp_path: Path,
) -> None:
    root = project(tmp_path / "p")
    env = find_python(root, str(make_venv(tmp_path / "venv")))
    in_env = PytestAdapter()
    in_env.use_python(env)
    run = in_env.run(root)
    assert run.result.status == "passed" and run.tests == {
        "tests/test_app.py::test_twice": "passed"
    }
    assert run.result.command[:3] == [env.python, "-m", "pytest"]
    mypy = MypyAdapter(cache_dir=tmp_path / "cache")
    mypy.use_python(env)
    typed = mypy.run(root)
    assert typed.result.status == "passed", [i.message for i in typed.issues]
    assert "--python-executable" in typed.result.command
    missing = PytestAdapter().run(root)  # airfix's own interpreter lacks the package
    assert missing.result.status == "tool_error" and missing.issues == []
    assert f"lacks '{ONLY_HERE}' (imported by tests/test_app.py)" in missing.result.error
    assert "--python" in missing.result.error


def test_a_project_environment_without_pytest_is_a_tool_error_saying_how_to_install_it(
    tmp_path: Path,
) -> None:
    root = project(tmp_path / "p")
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    adapter = PytestAdapter()
    adapter.use_python(find_python(root, str(bare / "bin" / "python")))
    run = adapter.run(root)
    assert run.result.status == "tool_error"
    assert "pytest is not installed in the project's environment" in run.result.error
    assert f"{bare / 'bin' / 'python'} -m pip install pytest" in run.result.error


def test_a_run_uses_the_in_repository_venv_and_says_so(tmp_path: Path) -> None:
    root = project(tmp_path / "repo")
    make_venv(root / ".venv")
    git(root, "init", "-q", "-b", "main")
    (root / ".git" / "info" / "exclude").write_text(".venv/\n")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    env = {**os.environ, "AIRFIX__STORE__JOURNAL": str(tmp_path / "journal.jsonl")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "airfix.services.commands.cli",
            "run",
            "--target",
            str(root),
            "--max-iterations",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr  # healthy: succeeded
    python = str(root / ".venv" / "bin" / "python")
    assert "started from main" in proc.stderr and f"checks run with python {python}" in proc.stderr
    assert f"python {python}" in proc.stdout and "from .venv" in proc.stdout
    status = subprocess.run(
        [sys.executable, "-m", "airfix.services.commands.cli", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    import json

    facts = json.loads(status.stdout)
    assert (
        facts["environment"]["python_source"] == ".venv"
        and facts["environment"]["python"] == python
    )
    assert facts["status"] == "succeeded" and facts["tools_in_error"] == []
