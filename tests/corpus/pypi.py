"""Python releases for the corpus: the sdist from the package index, and the project's own venv.

Why sdists: they are what a release publishes with its tests, unchanged by us.  Why a venv per
project with exact pins: the tests must run in the project's environment (not airfix's), the same
way on every machine; transitive dependencies are pinned in the manifest and installed with
``--no-deps`` so nothing floats.  Downloads happen once into the cache (``tests.corpus.repo``);
the only network access is pip talking to the package index.

``pip download --no-binary NAME`` (rather than ``:all:``) keeps the *build* dependencies pip needs
to read the sdist's metadata as wheels: with ``:all:`` pip compiles the build backend from source
first (a minute per project instead of seconds) for the same file.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.corpus.manifest import Project
from tests.corpus.repo import cache_dir, exclude

PY_TAG = f"py{sys.version_info.major}.{sys.version_info.minor}"
PTH_NAME = "corpus_project_paths.pth"


class FetchError(RuntimeError):
    """A download, checksum or install step failed; the message says which and why."""


@contextmanager
def locked(name: str) -> Iterator[None]:
    """An exclusive lock shared by every process using the same cache (two test runs at once)."""
    path = cache_dir("locks") / f"{name}.lock"
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pip(*args: str, python: str | None = None) -> None:
    """Run this interpreter's pip (optionally acting on another environment's ``python``)."""
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    if python is not None:
        cmd += ["--python", python]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise FetchError(f"pip {' '.join(args)}: exit {proc.returncode}\n{proc.stderr[-3000:]}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(project: Project) -> Path:
    """The unpacked release (its root directory) in the cache; downloaded and checked once."""
    sdists = cache_dir("sdists")
    archive = sdists / project.sdist
    with locked(f"sdist-{project.key}"):
        if not archive.is_file():
            with tempfile.TemporaryDirectory(dir=sdists) as download:
                pip("download", "--no-deps", "--no-binary", project.name,
                    f"{project.name}=={project.version}", "-d", download)  # fmt: skip
                got = Path(download) / project.sdist
                if not got.is_file():
                    raise FetchError(
                        f"pip download gave {os.listdir(download)}, not {project.sdist}"
                    )
                check_sha256(project, got)
                got.replace(archive)
        check_sha256(project, archive)
        unpacked = cache_dir("src") / project.key
        if not (unpacked / project.root).is_dir():
            staging = Path(tempfile.mkdtemp(dir=unpacked.parent, prefix=".unpack-"))
            try:
                proc = subprocess.run(
                    ["tar", "--no-same-owner", "-xzf", str(archive), "-C", str(staging)],
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                if proc.returncode != 0:
                    raise FetchError(f"tar -xzf {archive}: {proc.stderr.strip()}")
                shutil.rmtree(unpacked, ignore_errors=True)
                staging.rename(unpacked)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    root = unpacked / project.root
    if not root.is_dir():
        raise FetchError(f"{archive} does not unpack to {project.root}/")
    return root


def check_sha256(project: Project, path: Path) -> None:
    actual = sha256_of(path)
    if actual != project.sha256:
        raise FetchError(
            f"{path.name}: sha256 {actual} differs from the manifest's {project.sha256}; "
            "the index served another file (delete it from the cache only if the manifest is wrong)"
        )


def _requirements_hash(requirements: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:12]


def wheelhouse(project: Project) -> Path:
    """A directory holding a wheel for every pinned requirement (built or downloaded once)."""
    wheels = cache_dir("wheels")
    marker = wheels / f".{project.key}-{_requirements_hash(project.requirements)}"
    with locked("wheels"):
        if not marker.exists():
            pip("wheel", "--no-deps", "-w", str(wheels), *project.requirements)
            marker.touch()
    return wheels


def make_venv(project: Project, dest: Path, repo: Path | None = None) -> Path:
    """A fresh venv at ``dest`` with the project's pinned test requirements; returns its python.

    ``repo`` (for a venv made for one repository) gets ``import_paths`` added through a ``.pth``
    file, which is what an editable install amounts to, without writing into the repository.
    """
    wheels = wheelhouse(project)
    proc = subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(dest)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise FetchError(f"python -m venv {dest}: {proc.stderr.strip()}")
    python = dest / "bin" / "python"
    pip("install", "--no-index", "--no-deps", "--find-links", str(wheels),
        *project.requirements, python=str(python))  # fmt: skip
    if project.import_paths:
        if repo is None:
            raise FetchError(f"{project.name}: import_paths need the repository the venv is for")
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        lines = [str((repo / p).resolve()) for p in project.import_paths]
        (Path(site) / PTH_NAME).write_text("\n".join(lines) + "\n")
    return python


def project_python(project: Project, repo: Path) -> Path:
    """The interpreter of the project's own environment for the repository ``repo``.

    ``outside``: a venv cached per project, version, Python and pins (built once).
    ``in-repo``: ``repo/.venv``, made now and hidden from git through ``.git/info/exclude``.
    """
    if project.venv == "in-repo":
        exclude(repo, "/.venv/")
        return make_venv(project, repo / ".venv", repo=repo)
    name = f"{project.key}-{PY_TAG}-{_requirements_hash(project.requirements)}"
    dest = cache_dir("venvs") / name
    with locked(f"venv-{name}"):
        done = dest / ".corpus-complete"
        if not done.exists():
            shutil.rmtree(dest, ignore_errors=True)
            make_venv(project, dest)
            done.touch()
    return dest / "bin" / "python"
