"""The suite runs against the locked versions, and the lock stays inside pyproject's ranges.

``scripts/test.sh`` installs with ``-c scripts/constraints.txt``; these tests fail when the
environment under test holds any of airfix's (transitive) dependencies at a version other than the
locked one, when the lock misses one, or when a pin leaves the range users install from.  To move
a version on purpose, run ``scripts/lock.sh`` (it rewrites the lock and runs the suite).
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "scripts" / "constraints.txt"
EXTRAS = ("test", "airflow", "python-tools")  # what scripts/test.sh installs


def locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for n, raw in enumerate(LOCK.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version and " " not in version, (
            f"{LOCK.name}:{n}: not NAME==VERSION: {raw!r}"
        )
        pins[canonicalize_name(name)] = version
    return pins


def _applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    env = default_environment()
    return any(req.marker.evaluate({**env, "extra": e}) for e in extras or {""})


def closure() -> dict[str, set[str]]:
    """Every distribution airfix[test,airflow,python-tools] pulls in, with the extras asked of it."""
    todo: list[tuple[str, set[str]]] = [("airfix", set(EXTRAS))]
    seen: dict[str, set[str]] = {}
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in seen and extras <= seen[key]:
            continue
        seen.setdefault(key, set()).update(extras)
        for spec in metadata.requires(name) or []:
            req = Requirement(spec)
            if _applies(req, extras | {""}):
                todo.append((req.name, set(req.extras)))
    seen.pop("airfix")
    return seen


def test_every_dependency_is_installed_at_its_locked_version() -> None:
    pins = locked()
    wrong = {}
    for name in sorted(closure()):
        if name not in pins:
            wrong[name] = "not in the lock"
            continue
        installed = metadata.version(name)
        if installed != pins[name]:
            wrong[name] = f"installed {installed}, locked {pins[name]}"
    assert not wrong, (
        f"the environment under test is not the one {LOCK.name} pins: {wrong}; install with "
        "scripts/test.sh, or refresh the lock on purpose with scripts/lock.sh"
    )


def test_the_lock_is_inside_the_ranges_users_install_from() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in EXTRAS:
        wanted += project["optional-dependencies"][extra]
    pins = locked()
    outside = [
        f"{spec} (locked {pins[canonicalize_name(Requirement(spec).name)]})"
        for spec in wanted
        if not Requirement(spec).specifier.contains(
            pins[canonicalize_name(Requirement(spec).name)], prereleases=True
        )
    ]
    assert not outside, f"pins outside pyproject's ranges: {outside}"


def test_test_script_installs_with_the_lock() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text()
    install = [ln for ln in script.replace("\\\n", " ").splitlines() if "pip install" in ln]
    assert install and all("-c scripts/constraints.txt" in ln for ln in install), install
