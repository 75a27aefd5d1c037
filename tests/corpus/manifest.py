"""The corpus manifest: which releases, how to test them, and what is known about them.

Why a data file (``tests/fixtures/corpus/python.json``) and not code: the figures and pins are
facts about third-party releases, reviewed like fixtures; this module only gives them types.

Fields of a project:

* ``name``/``version``/``sdist``/``sha256``: the release and its checksum, verified after download.
* ``root``: the directory the sdist unpacks to.
* ``test_paths``: what to pass to pytest ([] = what pytest's own configuration collects, which is
  what airfix runs too).
* ``import_paths``: directories (relative to the repository) that must be importable, e.g.
  ``src`` for a src layout; the project's venv gets a ``.pth`` for them like an editable install.
* ``test_requirements``: exact pins installed (``--no-deps``) next to the manifest's
  ``pytest_base`` into the project's own venv; transitive dependencies are listed explicitly.
* ``venv``: ``outside`` (a cached venv outside the repository, given to airfix with ``--python``)
  or ``in-repo`` (``.venv`` inside the repository, which airfix must detect by itself).
* ``venv_only_modules``: modules the tests (or their tools' configuration) import that must not
  exist in airfix's environment.
* ``dependency_error_markers``: other texts that, in an issue, betray a missing dependency
  (pytest says "fixture 'mocker' not found" without naming pytest-mock).
* ``ruff_fix_breaks``: node ids of tests that pass on the release and fail after a plain
  ``ruff check --fix`` (proved by ``tests.corpus.hand``).
* ``in_ci`` (default true): false keeps a project whose suite takes minutes out of the corpus
  test unless ``AIRFIX_CORPUS_PROJECTS`` names it (its judge runs the suite per commit); the
  benchmark's careful-person section measures it (``--corpus NAME``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MANIFEST = Path(__file__).resolve().parents[1] / "fixtures" / "corpus" / "python.json"

VenvKind = Literal["outside", "in-repo"]


@dataclass(frozen=True)
class Project:
    name: str
    version: str
    sdist: str
    sha256: str
    root: str
    test_paths: tuple[str, ...]
    import_paths: tuple[str, ...]
    requirements: tuple[str, ...]  # pytest_base + test_requirements, all pinned
    venv: VenvKind
    venv_only_modules: tuple[str, ...]
    dependency_error_markers: tuple[str, ...]
    ruff_config: str
    ruff_fix_breaks: tuple[str, ...]
    why: str
    in_ci: bool = True

    @property
    def key(self) -> str:
        """``name-version``: the cache key and the test id."""
        return f"{self.name}-{self.version}"


def load(path: Path = MANIFEST) -> list[Project]:
    """Every project of the manifest, in file order; malformed entries raise ``ValueError``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    base = tuple(data["pytest_base"])
    projects = []
    for entry in data["projects"]:
        venv = entry["venv"]
        if venv not in ("outside", "in-repo"):
            raise ValueError(f"{entry['name']}: venv must be outside or in-repo, not {venv!r}")
        reqs = base + tuple(entry["test_requirements"])
        unpinned = [r for r in reqs if "==" not in r]
        if unpinned:
            raise ValueError(f"{entry['name']}: requirements must be pinned with ==: {unpinned}")
        names = [r.split("==")[0].lower() for r in reqs]
        if len(set(names)) != len(names):
            raise ValueError(f"{entry['name']}: a requirement is listed twice: {sorted(names)}")
        in_ci = entry.get("in_ci", True)
        if not isinstance(in_ci, bool):
            raise ValueError(f"{entry['name']}: in_ci must be true or false, not {in_ci!r}")
        if venv == "outside" and entry["import_paths"]:
            raise ValueError(
                f"{entry['name']}: import_paths need a venv made for the repository (in-repo): "
                "a cached venv outside it cannot point at a repository made per test"
            )
        projects.append(
            Project(
                name=entry["name"],
                version=entry["version"],
                sdist=entry["sdist"],
                sha256=entry["sha256"],
                root=entry["root"],
                test_paths=tuple(entry["test_paths"]),
                import_paths=tuple(entry["import_paths"]),
                requirements=reqs,
                venv=venv,
                venv_only_modules=tuple(entry["venv_only_modules"]),
                dependency_error_markers=tuple(entry["dependency_error_markers"]),
                ruff_config=entry["ruff_config"],
                ruff_fix_breaks=tuple(entry["ruff_fix_breaks"]),
                why=entry["why"],
                in_ci=in_ci,
            )
        )
    return projects


def by_name(name: str) -> Project:
    for project in load():
        if project.name == name:
            return project
    raise KeyError(name)
