"""A thin facade over the modules that replaced this one, kept for the modules that still import
from here: the adapter interface is in :mod:`.adapter`, run results in :mod:`.results`, issue
identity in :mod:`.fingerprints`, and the process runner in :mod:`airfix.services.process`.
New code imports from those.
"""

from __future__ import annotations

from airfix.services.process import ProcessResult, find_executable, run_process, tail
from airfix.services.tools.adapter import BaseToolAdapter, RunContext, ToolFailure, check_exit
from airfix.services.tools.fingerprints import Finding, relative_path, to_issues
from airfix.services.tools.results import TestOutcome, TestTally, ToolRun

__all__ = [
    "BaseToolAdapter",
    "Finding",
    "ProcessResult",
    "RunContext",
    "TestOutcome",
    "TestTally",
    "ToolFailure",
    "ToolRun",
    "check_exit",
    "find_executable",
    "relative_path",
    "run_process",
    "tail",
    "to_issues",
]
