"""Which languages a target contains, from the marker files at its root.

Markers: Python ``pyproject.toml``/``setup.cfg``/``setup.py``/
``requirements.txt`` (also ``Pipfile``); JavaScript ``package.json``, TypeScript when a
``tsconfig.json`` sits next to it or ``typescript`` is a dependency; Go ``go.mod``; Dart
``pubspec.yaml``, Flutter when that file depends on the ``flutter`` SDK.  Only the target's root
is looked at: a target is one project; nested projects (``node_modules``, examples, vendored
code) must not add languages.  Several languages may be returned, in a fixed order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from airfix.services.tools.adapter import BaseToolAdapter
from airfix.services.tools.coverage import CoverageAdapter
from airfix.services.tools.mypy import MypyAdapter
from airfix.services.tools.pytest import PytestAdapter
from airfix.services.tools.ruff import RuffAdapter

PYTHON_MARKERS = ("pyproject.toml", "setup.cfg", "setup.py", "requirements.txt", "Pipfile")
_FLUTTER_SDK = re.compile(
    r"^\s+(?:flutter|flutter_test)\s*:\s*\n\s+sdk\s*:\s*flutter", re.MULTILINE
)
_FLUTTER_KEY = re.compile(r"^flutter\s*:", re.MULTILINE)


def _is_typescript(root: Path) -> bool:
    if (root / "tsconfig.json").is_file():
        return True
    try:
        pkg = json.loads((root / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(pkg, dict):
        return False
    for key in ("dependencies", "devDependencies", "peerDependencies"):
        deps = pkg.get(key)
        if isinstance(deps, dict) and "typescript" in deps:
            return True
    return False


def _is_flutter(pubspec: Path) -> bool:
    try:
        text = pubspec.read_text(encoding="utf-8")
    except OSError:
        return False
    return bool(_FLUTTER_SDK.search(text) or _FLUTTER_KEY.search(text))


def detect_languages(target: Path) -> list[str]:
    """Languages of ``target``: any of python, javascript, typescript, go, dart, flutter."""
    root = Path(target)
    found: list[str] = []
    if any((root / m).is_file() for m in PYTHON_MARKERS):
        found.append("python")
    if (root / "package.json").is_file():
        found.append("typescript" if _is_typescript(root) else "javascript")
    if (root / "go.mod").is_file():
        found.append("go")
    pubspec = root / "pubspec.yaml"
    if pubspec.is_file():
        found.append("flutter" if _is_flutter(pubspec) else "dart")
    return found


def python_adapters() -> list[BaseToolAdapter]:
    """The Python checks in the order a health check runs them: static first, then dynamic."""
    return [RuffAdapter(), MypyAdapter(), PytestAdapter(), CoverageAdapter()]
