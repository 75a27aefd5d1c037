"""``scripts/sync_dags_to_airflow.sh`` against temporary Airflow DAGs folders and a real, isolated
Airflow database: copy, symlink, dry run, a broken DAG file, a foreign file of the same name, and
that --cleanup and --auto-unpause act on this repository's DAGs only (the original's touched all).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.airflow_harness import DAGS, OUR_DAGS, ROOT, AirflowHome, make_home

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "scripts" / "sync_dags_to_airflow.sh"
MANIFEST = ".airfix-dags.manifest"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    root = tmp_path_factory.mktemp("airflow_sync")
    return make_home(root, dags_folder=root / "unused")


def sync(
    home: AirflowHome, dest: Path, *args: str, source: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = home.env(AIRFLOW__CORE__DAGS_FOLDER=str(dest))
    cmd = ["bash", str(SCRIPT), "--python", sys.executable, *args]
    if source is not None:
        cmd += ["--source", str(source)]
    return subprocess.run(
        cmd, env=env, cwd=ROOT, text=True, capture_output=True, timeout=300, check=False
    )


def source_copy(tmp_path: Path, **extra: str) -> Path:
    """This repository's DAG files plus ``extra`` files (name -> text)."""
    src = tmp_path / "src"
    shutil.copytree(DAGS, src, ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in extra.items():
        (src / name).write_text(text)
    return src


def dag_file(dag_id: str) -> str:
    return (
        f"from airflow.sdk import dag, task\n\n\n@dag(dag_id={dag_id!r}, schedule=None)\ndef d():\n"
        f"    @task\n    def t():\n        return 1\n\n    t()\n\n\nd()\n"
    )


def digest(folder: Path) -> dict[str, str]:
    """Every entry of a folder: a link's target or a file's sha256."""
    out = {}
    for p in sorted(folder.iterdir()) if folder.exists() else []:
        out[p.name] = (
            f"-> {os.readlink(p)}" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
        )
    return out


def manifest(dest: Path) -> dict[str, list[str]]:
    rows = [
        line.split("\t")
        for line in (dest / MANIFEST).read_text().splitlines()
        if not line.startswith("#")
    ]
    return {name: [sha, ids] for name, sha, ids in rows}


def paused(home: AirflowHome, dest: Path) -> dict[str, bool]:
    proc = home.airflow(
        "dags", "list", "-o", "json", env=home.env(AIRFLOW__CORE__DAGS_FOLDER=str(dest)), check=True
    )
    listing = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("[")))
    return {d["dag_id"]: str(d["is_paused"]) == "True" for d in listing}


def test_help_documents_every_flag() -> None:
    helped = subprocess.run(
        ["bash", str(SCRIPT), "--help"], text=True, capture_output=True, check=False
    )
    assert helped.returncode == 0
    for flag in (
        "--copy",
        "--symlink",
        "--dry-run",
        "--cleanup",
        "--auto-unpause",
        "--dags-folder",
        "--source",
        "--python",
    ):
        assert flag in helped.stdout
    wrong = subprocess.run(
        ["bash", str(SCRIPT), "--bogus"], text=True, capture_output=True, check=False
    )
    assert wrong.returncode == 2 and "unknown option: --bogus" in wrong.stderr


def test_copy_then_symlink_deploys_this_repositorys_dags(home: AirflowHome, tmp_path: Path) -> None:
    dest = tmp_path / "dags"
    dest.mkdir()
    (dest / "theirs.py").write_text("# someone else's file\n")
    copied = sync(home, dest)  # default source: dags/ of this repository, found automatically
    assert copied.returncode == 0, copied.stderr
    for name in ("autonomous_fixing.py", "air_executor_demo.py", "hybrid_control_flow.py"):
        assert (
            not (dest / name).is_symlink()
            and (dest / name).read_bytes() == (DAGS / name).read_bytes()
        )
        assert manifest(dest)[name] == [
            hashlib.sha256((DAGS / name).read_bytes()).hexdigest(),
            name[:-3],
        ]
    assert {ids for _, ids in manifest(dest).values()} == OUR_DAGS
    assert (dest / "theirs.py").read_text() == "# someone else's file\n"
    linked = sync(home, dest, "--symlink")
    assert linked.returncode == 0, linked.stderr
    for name in manifest(dest):
        assert (dest / name).is_symlink() and (dest / name).resolve() == (DAGS / name).resolve()
    assert "deployed 3 DAG file(s)" in linked.stdout and "(symlink)" in linked.stdout


def test_a_broken_dag_file_deploys_nothing(home: AirflowHome, tmp_path: Path) -> None:
    src = source_copy(
        tmp_path,
        **{
            "broken_import.py": "import airfix_no_such_module\n" + dag_file("b1"),
            "broken_syntax.py": "def oops(:\n",
            "helper.py": "X = 1\n",
        },
    )
    dest = tmp_path / "dags"
    out = sync(home, dest, source=src)
    assert out.returncode == 1
    assert "broken_import.py: import error" in out.stderr and "airfix_no_such_module" in out.stderr
    assert (
        "broken_syntax.py: syntax error" in out.stderr and "helper.py: defines no DAG" in out.stderr
    )
    assert "nothing was deployed" in out.stderr
    assert digest(dest) == {}


def test_a_file_of_the_same_name_that_is_not_ours_is_never_overwritten(
    home: AirflowHome, tmp_path: Path
) -> None:
    dest = tmp_path / "dags"
    dest.mkdir()
    (dest / "autonomous_fixing.py").write_text("# another project's DAG of the same name\n")
    before = digest(dest)
    out = sync(home, dest)
    assert (
        out.returncode == 1 and "was not deployed by this script; not overwriting it" in out.stderr
    )
    assert digest(dest) == before


def test_a_dry_run_changes_nothing(home: AirflowHome, tmp_path: Path) -> None:
    src = source_copy(
        tmp_path, **{"extra_dag.py": dag_file(f"airfix_extra_{uuid.uuid4().hex[:6]}")}
    )
    dest = tmp_path / "dags"
    assert sync(home, dest, source=src).returncode == 0
    (src / "extra_dag.py").unlink()  # stale now
    (src / "autonomous_fixing.py").write_text(
        (src / "autonomous_fixing.py").read_text() + "\n# changed\n"
    )
    before = digest(dest)
    out = sync(home, dest, "--dry-run", "--cleanup", "--auto-unpause", "--symlink", source=src)
    assert out.returncode == 0, out.stderr
    assert digest(dest) == before
    assert (
        "would symlink" in out.stdout
        and "would remove stale" in out.stdout
        and "would unpause" in out.stdout
    )
    assert "dry run: nothing was changed" in out.stdout


def test_unpause_and_cleanup_touch_only_this_repositorys_dags(
    home: AirflowHome, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    theirs, old, edited = f"foreign_{tag}", f"airfix_old_{tag}", f"airfix_edited_{tag}"
    dest = tmp_path / "dags"
    dest.mkdir()
    (dest / "theirs.py").write_text(
        dag_file(theirs)
    )  # another project's DAG, paused like every new DAG
    src = source_copy(tmp_path, **{"old_dag.py": dag_file(old), "edited_dag.py": dag_file(edited)})
    first = sync(home, dest, "--auto-unpause", source=src)
    assert first.returncode == 0, first.stderr + first.stdout
    state = paused(home, dest)
    assert state[theirs] is True  # not ours: untouched
    assert all(state[d] is False for d in (*OUR_DAGS, old, edited)), state
    # the sources of two of our DAGs go away; someone edits the deployed copy of one of them
    (src / "old_dag.py").unlink()
    (src / "edited_dag.py").unlink()
    (dest / "edited_dag.py").write_text(dag_file(edited) + "# edited in place\n")
    cleaned = sync(home, dest, "--cleanup", source=src)
    assert cleaned.returncode == 0, cleaned.stderr + cleaned.stdout
    assert not (dest / "old_dag.py").exists()
    assert (dest / "edited_dag.py").exists() and (dest / "theirs.py").exists()
    assert "left " in cleaned.stdout and "edited_dag.py in place" in cleaned.stdout
    assert f"deleted the metadata of stale DAG {old}" in cleaned.stdout
    state = paused(home, dest)
    assert old not in state and theirs in state and edited in state
    assert "old_dag.py" not in manifest(dest) and "edited_dag.py" in manifest(dest)
