"""The layout's rules, checked on the source: what each package may import, no package cycles,
no module over ``LONG`` lines without a written reason, and ruff (lint and format) clean.

A static check of every ``import`` statement (module level and inside functions alike, since a
lazy import is a dependency too), read with ``ast`` from the files themselves: the
``package-dir`` mapping that installs ``events/`` as ``airfix.events`` hides the tree from
import-graph tools that walk an installed package.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "events": "airfix.events",
    "projections": "airfix.projections",
    "services": "airfix.services",
    "config": "airfix.config",
    "airflow_glue": "airfix.airflow_glue",
}

# the pure core: no Redis, no processes, no files, no clock, no config, no services
CORE_MAY_IMPORT = (
    "__future__",
    "typing",
    "collections",
    "dataclasses",
    "msgspec",
    "re",
    "math",
    "operator",
    "datetime",
    "enum",
    "itertools",
    "functools",
    "abc",
    "airfix.events.schema",
    "airfix.events.errors",
    "airfix.events.core",
)
# the wire contract: data and its encoding only
CONTRACT_MAY_IMPORT = (
    *CORE_MAY_IMPORT,
    "hashlib",
    "os",
    "threading",
    "time",
    "zlib",
    "json",
    "airfix.events",
)
CONTRACT_MODULES = (
    "airfix.events.schema",
    "airfix.events.codec",
    "airfix.events.ids",
    "airfix.events.errors",
    "airfix.events.keys",
    "airfix.events",
)

# the projections' folds: pure like the core, and they may name keys; no Redis, no log storage,
# nothing of the projections' I/O modules (the handler executes what the folds describe)
PROJECTION_CORE_MAY_IMPORT = (
    *CORE_MAY_IMPORT,
    "airfix.events.keys",
    "airfix.projections.core",
)

#: lines of ruff-formatted code above which a module must be split or say why it is not
LONG = 500

#: modules over LONG lines, and why they may be
LONG_MODULES: dict[str, str] = {
    "airfix.services.runtime.consumers": "one Consumer: leases, reads, retries and parking are one "
    "state machine whose invariants (one owner per partition, ordered handling, delivery cap) are "
    "argued and tested together; its worker loop, metrics and dead-letter machinery live apart",
    "airfix.services.runtime.deadletters": "the retry/discard request protocol and the dead letter "
    "it reads: one exactly-once argument, kept in one place",
}


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def imports(path: Path, module: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                package = module.rsplit(".", node.level - (path.name == "__init__.py"))[0]
                base = f"{package}.{base}" if base else package
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def within(name: str, allowed: tuple[str, ...]) -> bool:
    return any(name == a or name.startswith(a + ".") for a in allowed)


def violations(source: str, allowed: tuple[str, ...]) -> list[str]:
    bad = []
    for module, path in modules().items():
        if not within(module, (source,)):
            continue
        for name in sorted(imports(path, module)):
            top = name.split(".")[0]
            known = top != "airfix" or name in modules()  # not a name imported from a module
            if known and not within(name, allowed):
                bad.append(f"{module} imports {name}")
    return bad


def test_the_core_is_pure() -> None:
    assert violations("airfix.events.core", CORE_MAY_IMPORT) == []


def test_the_projection_folds_are_pure() -> None:
    assert violations("airfix.projections.core", PROJECTION_CORE_MAY_IMPORT) == []


def test_the_contract_is_data_and_encoding_only() -> None:
    bad = []
    for module in CONTRACT_MODULES:
        path = modules()[module]
        for name in sorted(imports(path, module)):
            if name.split(".")[0] == "airfix" and name not in modules():
                continue  # a name imported from a module, not a module
            if not within(name, CONTRACT_MAY_IMPORT) or within(name, ("airfix.events.storage",)):
                bad.append(f"{module} imports {name}")
    assert bad == []


def test_events_and_projections_never_import_services() -> None:
    bad = [
        v
        for source in ("airfix.events", "airfix.projections", "airfix.config")
        for v in violations(source, ("airfix.events", "airfix.projections", "airfix.config", ""))
        if "airfix.services" in v.split(" imports ")[1]
        or "airfix.airflow_glue" in v.split(" imports ")[1]
    ]
    assert bad == []


def package_of(module: str) -> str:
    """The package a module belongs to (a module of a package counts as its package)."""
    mods = modules()
    if mods[module].name == "__init__.py":
        return module
    return module.rsplit(".", 1)[0]


def test_no_package_cycles() -> None:
    mods = modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in mods.items():
        for name in imports(path, module):
            if name in mods and package_of(name) != package_of(module):
                graph[package_of(module)].add(package_of(name))
    # a package importing one of its own subpackages (the package's __init__ re-exporting) is
    # a parent-child link, not a cycle between independent parts
    edges = {
        (a, b)
        for a, bs in graph.items()
        for b in bs
        if not b.startswith(a + ".") and not a.startswith(b + ".")
    }
    cycles = []
    for a, b in sorted(edges):
        seen, todo = set(), [b]
        while todo:
            node = todo.pop()
            if node == a:
                cycles.append(f"{a} -> {b} -> ... -> {a}")
                break
            if node not in seen:
                seen.add(node)
                todo.extend(y for (x, y) in edges if x == node)
    assert cycles == []


def test_no_module_is_long_without_a_reason() -> None:
    long = {}
    for module, path in modules().items():
        n = len(path.read_text().splitlines())
        if n > LONG and module not in LONG_MODULES:
            long[module] = n
    for script in sorted((ROOT / "scripts").rglob("*.py")):
        n = len(script.read_text().splitlines())
        if n > LONG and script.stem not in LONG_MODULES:
            long[str(script.relative_to(ROOT))] = n
    assert long == {}, f"split these modules or give a reason in LONG_MODULES: {long}"


def test_source_is_ruff_clean_and_formatted():
    """The lint rules and the formatter of pyproject.toml hold for every file, in CI too."""
    for args in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, f"ruff {' '.join(args)}:\n{done.stdout}{done.stderr}"


def test_mypy_passes_strict_on_the_contract_and_core(tmp_path: Path) -> None:
    """mypy (configured in pyproject.toml) on the package as installed: ``airfix.*`` is mapped from
    the top-level folders, so the check runs on a tree of links that spells the package out."""
    root = tmp_path / "src"
    (root / "airfix").mkdir(parents=True)
    for folder, package in FOLDERS.items():
        link = root / "airfix" / package.split(".")[1]
        link.symlink_to(ROOT / folder, target_is_directory=True)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "-p", "airfix"],
        cwd=root, capture_output=True, text=True,
        env={**os.environ, "MYPYPATH": str(root)},
    )  # fmt: skip
    assert done.returncode == 0, f"mypy:\n{done.stdout}{done.stderr}"


#: citations of documents that are not in the repository (design notes, the issue tracker)
OUTSIDE_REFERENCE = re.compile(
    r"\bseed (inventory|sec\.|[A-Z]\d)|\bresearch [A-Z]\.\d|\bissue #?\d+\b", re.IGNORECASE
)


def test_no_source_cites_documents_outside_the_repository():
    """A reader has the repository, not our notes or tracker: comments say the reason itself."""
    folders = [*FOLDERS, "dags", "scripts", "tests"]
    cited = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "fixtures" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE_REFERENCE.search(line)
    ]
    assert cited == [], "\n".join(cited)
