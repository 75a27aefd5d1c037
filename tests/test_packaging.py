"""The package installs into a fresh virtual environment, as a wheel and editable, and runs."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL_NAMES = ("events", "projections", "services", "config", "dags", "scripts")


def _venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin"


def _run(*cmd: str | Path, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert 0 == proc.returncode, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _check_installed(bin_dir: Path, tmp: Path) -> None:
    assert _run(bin_dir / "airfix", "--version", cwd=tmp).startswith("airfix ")
    assert "worker" in _run(bin_dir / "airfix", "--help", cwd=tmp)
    site = _run(
        bin_dir / "python",
        "-c",
        "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        cwd=tmp,
    )
    site_dir = Path(site.strip())
    clashes = [n for n in TOP_LEVEL_NAMES if (site_dir / n).exists()]
    assert [] == clashes, f"top-level names in site-packages: {clashes}"
    _run(
        bin_dir / "python",
        "-c",
        "import airfix.events, airfix.projections, airfix.services.runtime.consumers, airfix.config as c; "
        "c.load_config(c.default_yaml_path())",
        cwd=tmp,
    )


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, ROOT, cwd=tmp_path)
    wheel = next(dist.glob("airfix-*.whl"))
    bin_dir = _venv(tmp_path / "venv")
    _run(
        bin_dir / "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        f"{wheel}[python-tools]",
        cwd=tmp_path,
    )
    _check_installed(bin_dir, tmp_path)
    # README's first command, from the installed wheel: a real fix run on a copy of the sample
    proc = subprocess.run(
        [str(bin_dir / "airfix"), "run", "--sample", "--max-iterations", "1", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = json.loads(proc.stdout)
    assert (3, "partially_fixed") == (proc.returncode, summary["status"]), proc.stderr[-3000:]
    assert len(summary["commits"]) >= 3
    assert summary["issues_after"] < summary["issues_before"]


@pytest.mark.slow
def test_editable_install_into_a_fresh_venv(tmp_path: Path) -> None:
    bin_dir = _venv(tmp_path / "venv")
    _run(
        bin_dir / "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-e",
        ROOT,
        cwd=tmp_path,
    )
    _check_installed(bin_dir, tmp_path)
