"""What a stack's tip showed that its start did not, as a test any tree can be put to.

Bisection (which commit of the stack) and narrowing (which issues of a batch) ask the same
question of many trees: does this one show the symptom?  Broken tests are run alone; issues of
the whole-program checkers (which a stack's commits skip) are looked for with those checkers
alone.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from airfix.events.core.machine import RunState
from airfix.events.core.search import Place
from airfix.events.core.verdicts import compare
from airfix.events.schema import IssueRecord
from airfix.services.pipeline.context import Pipeline
from airfix.services.pipeline.git import Repo
from airfix.services.pipeline.measure import rerun_tests, tool_adapters
from airfix.services.pipeline.workspace import target_identity
from airfix.services.tools.environment import PythonEnv


class Symptom(Protocol):
    def places(self, repo: Repo, base: str) -> list[Place]:
        """Where it was seen, in the files as they are at ``base`` (the iteration's start, where
        its issues' lines were measured): what bisection and narrowing suspect first."""
        ...

    def shows(self, p: Pipeline, state: RunState, wt: Repo) -> bool | None:
        """Whether the tree ``wt`` shows it (None: this cannot be told without a full check)."""
        ...


@dataclass(frozen=True)
class BrokenTests:
    """Tests that passed at the iteration's start and fail on the stack's tip."""

    tests: Sequence[str]

    def places(self, repo: Repo, base: str) -> list[Place]:
        """Each test's definition (its whole file when it cannot be found there); each file
        is read once, however many of its tests broke."""
        sources: dict[str, str] = {}
        out: list[Place] = []
        for test in self.tests:
            file, _, name = test.partition("::")
            if file not in sources:
                sources[file] = repo.git("show", f"{base}:{file}", check=False)
            out.append((file, *(span_of_test(sources[file], name) or (0, 0))))
        return out

    def shows(self, p: Pipeline, state: RunState, wt: Repo) -> bool | None:
        again = rerun_tests(wt.path, p.config, self.tests, p.python(state))
        if not again:  # no runner selects tests by id
            return None
        return any(again.get(t, "missing") != "passed" for t in self.tests)


@dataclass(frozen=True)
class NewIssues:
    """Issues of whole-program checkers on the stack's tip that the iteration's start had not
    (``before``: the start's issues of those tools)."""

    added: Sequence[IssueRecord]
    before: Sequence[IssueRecord]

    def places(self, repo: Repo, base: str) -> list[Place]:
        return [(i.file, i.line, i.line) for i in self.added]

    def shows(self, p: Pipeline, state: RunState, wt: Repo) -> bool | None:
        tools = {i.tool for i in self.added}
        others = static_names(wt.path, p.python(state), target_identity(state.target)) - tools
        m = p.measure_tree(state, wt, scope="static", skip=others)
        wanted = {i.fingerprint for i in self.added}
        return bool({i.fingerprint for i in compare(self.before, m.issues).new} & wanted)


def static_names(path: Path, python: PythonEnv | None, caches: str) -> set[str]:
    adapters, _ = tool_adapters(path, python, caches)
    return {a.name for a in adapters if a.tier == "static"}


def span_of_test(source: str, name: str) -> tuple[int, int] | None:
    """The first and last lines of the test ``name`` (a node id's part after the file:
    ``TestCase::test_it[param]``) in Python ``source``, decorators included."""
    try:
        body: list[ast.stmt] = ast.parse(source).body
    except (SyntaxError, ValueError):
        return None
    node: ast.stmt | None = None
    for part in name.split("[")[0].split("::"):
        node = next(
            (
                n
                for n in body
                if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and n.name == part
            ),
            None,
        )
        if node is None:
            return None
        body = node.body
    if node is None or node.end_lineno is None:
        return None
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return first, node.end_lineno
