"""Which test files import a module, directly or through other modules of the project: what test
impact selects when a change touches code that runs at import (a signature, an import, a module
constant), which per-test coverage cannot attribute to any test.

Static: the project's ``.py`` files are parsed (never imported) and their ``import`` statements
followed within the project; importing ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``.
Imports made at run time (``importlib``, ``__import__``, reading ``locals()``) are not seen: the
iteration's closing check runs every test and reverts what this missed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

SKIP_DIRS = {
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".tox",
    ".nox",
    "build",
    "dist",
}


def _module_of(path: str) -> str:
    parts = path[:-3].split("/")
    if parts[0] == "src" and len(parts) > 1:
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _files(root: Path) -> dict[str, str]:
    """Module name -> path (relative to ``root``) of the project's Python files."""
    out: dict[str, str] = {}
    for p in root.rglob("*.py"):
        rel = p.relative_to(root)
        if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
            continue
        out.setdefault(_module_of(rel.as_posix()), rel.as_posix())
    return out


def _imported(source: str, module: str, is_package: bool) -> set[str]:
    """The absolute module names a file's import statements name (and their parents)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".") if package else []
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{a.name}" if base else a.name for a in node.names)
    out: set[str] = set()
    for name in names:
        parts = name.split(".")
        out.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return out


def importing_tests(root: Path, changed: str, test_files: Iterable[str]) -> set[str]:
    """The files of ``test_files`` that import ``changed`` (a path relative to ``root``),
    directly or through other modules of the project."""
    modules = _files(root)
    target = _module_of(changed)
    if target not in modules:
        return set()
    by_file = {path: mod for mod, path in modules.items()}
    importers: dict[str, set[str]] = {}
    for mod, path in modules.items():
        try:
            source = (root / path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for name in _imported(source, mod, path.endswith("__init__.py")):
            if name in modules and name != mod:
                importers.setdefault(name, set()).add(mod)
    seen, todo = {target}, [target]
    while todo:
        for parent in importers.get(todo.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    wanted = set(test_files)
    return {modules[m] for m in seen if modules[m] in wanted} | (
        {changed} if changed in wanted and by_file.get(changed) else set()
    )
