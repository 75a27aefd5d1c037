"""Health-check tool adapters: one adapter per tool, one small interface (:class:`ToolAdapter`).

An adapter runs a tool on a target directory and returns a :class:`ToolRun`: a ``ToolResult``
(status ``passed``/``failed``/``tool_error``/``skipped``) plus ``IssueRecord``s with stable
fingerprints, plus metrics (test counts, coverage).  "The tool did not run" is always
``tool_error``, never "0 issues".

Languages map to adapter factories in :data:`REGISTRY`; other languages add theirs with
:func:`register` (``register("go", GoVetAdapter)``).

Phases (see each module): ruff → lint (its syntax errors → build), mypy → build, pytest → test,
coverage → test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from airfix.services.process import ProcessResult, find_executable, run_process
from airfix.services.tools.adapter import BaseToolAdapter, Tier, ToolAdapter
from airfix.services.tools.coverage import CoverageAdapter
from airfix.services.tools.dart_analyze import DartAnalyzeAdapter
from airfix.services.tools.detect import detect_languages, python_adapters
from airfix.services.tools.eslint import EslintAdapter
from airfix.services.tools.fingerprints import Finding, fingerprint, normalise_message, to_issues
from airfix.services.tools.flutter_test import DartTestAdapter, FlutterTestAdapter
from airfix.services.tools.go_test import GoTestAdapter
from airfix.services.tools.go_vet import GoVetAdapter
from airfix.services.tools.gofmt import GofmtAdapter
from airfix.services.tools.js_test import JsTestAdapter
from airfix.services.tools.mypy import MypyAdapter
from airfix.services.tools.pytest import PytestAdapter
from airfix.services.tools.results import ToolRun
from airfix.services.tools.ruff import RuffAdapter
from airfix.services.tools.tsc import TscAdapter

AdapterFactory = Callable[[], ToolAdapter]

REGISTRY: dict[str, list[AdapterFactory]] = {
    "python": [RuffAdapter, MypyAdapter, PytestAdapter, CoverageAdapter],
    "javascript": [EslintAdapter, JsTestAdapter],
    "typescript": [EslintAdapter, TscAdapter, JsTestAdapter],
    "go": [GofmtAdapter, GoVetAdapter, GoTestAdapter],
    "dart": [DartAnalyzeAdapter, DartTestAdapter],
    "flutter": [DartAnalyzeAdapter, FlutterTestAdapter],
}


def register(language: str, *factories: AdapterFactory) -> None:
    """Add adapter factories for ``language`` (appended after any already registered)."""
    REGISTRY.setdefault(language, []).extend(factories)


def adapters_for(language: str) -> list[ToolAdapter]:
    """Fresh adapters for ``language``; ``[]`` when none are registered."""
    return [factory() for factory in REGISTRY.get(language, [])]


def adapters_for_target(target: Path) -> dict[str, list[ToolAdapter]]:
    """Adapters per detected language; a language without adapters maps to ``[]`` so a caller
    can report it instead of silently checking nothing."""
    return {lang: adapters_for(lang) for lang in detect_languages(target)}


__all__ = [
    "REGISTRY",
    "AdapterFactory",
    "BaseToolAdapter",
    "CoverageAdapter",
    "Finding",
    "MypyAdapter",
    "ProcessResult",
    "PytestAdapter",
    "RuffAdapter",
    "Tier",
    "ToolAdapter",
    "ToolRun",
    "adapters_for",
    "adapters_for_target",
    "detect_languages",
    "find_executable",
    "fingerprint",
    "normalise_message",
    "python_adapters",
    "register",
    "run_process",
    "to_issues",
]
