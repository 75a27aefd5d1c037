"""Which tests can judge a change: test impact, from the baseline's per-test coverage.

A batch is verified by the tests that executed one of the files it changed at the iteration's
opening check, plus every test that did not pass there (their verdict is what the batch may
improve); the closing check runs the whole suite and catches what the map could not see.  A
change the map cannot speak for runs the whole suite: a file that is not Python source (data,
configuration, any test may read it), a ``conftest.py`` (fixtures reach every test), and a file
no test executed (new, or run only at import: a module constant reaches tests through other
files).  Pure: the map and the outcomes come from the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence

import msgspec

NOT_PASSING = ("failed", "error")


class TestImpact(msgspec.Struct, frozen=True, kw_only=True):
    """What the baseline's tests executed: for each file, each line that ran inside a test and
    the tests that ran it (indexes into ``tests``).  A line missing ran at import, or never."""

    tests: list[str] = []
    files: dict[str, dict[int, list[int]]] = {}

    def __bool__(self) -> bool:
        return bool(self.files)


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", re.MULTILINE)

Hunk = tuple[int, int, int, int]  # old start, old count, new start, new count


def hunks(diff: str) -> dict[str, list[Hunk]]:
    """Each changed file's hunks (by its old path) from a ``git diff --unified=0``; a new file
    has none (no old lines: no map speaks for it)."""
    out: dict[str, list[Hunk]] = {}
    for part in re.split(r"^diff --git ", diff, flags=re.MULTILINE)[1:]:
        old = re.search(r"^--- (?:a/(.*)|/dev/null)$", part, re.MULTILINE)
        if old is None or old.group(1) is None:
            continue
        out[old.group(1)] = [
            (int(m[1]), int(m[2] or 1), int(m[3]), int(m[4] or 1)) for m in _HUNK.finditer(part)
        ]
    return out


def changed_lines(diff: str) -> dict[str, list[int]]:
    """The old-side lines each file's change touches; an insertion counts the line it follows
    (0 at the top of a file)."""
    return {
        path: [
            n
            for start, count, _, _ in hs
            for n in ([start] if count == 0 else range(start, start + count))
        ]
        for path, hs in hunks(diff).items()
    }


def _back(n: int, since: list[Hunk]) -> int | None:
    shift = 0
    for _, old_count, new_start, new_count in since:
        if new_count and new_start <= n < new_start + new_count:
            return None  # a line an earlier change wrote: the baseline never ran it
        if (new_count and n >= new_start + new_count) or (not new_count and n > new_start):
            shift += old_count - new_count
    return n + shift


def to_baseline(
    lines: Mapping[str, Sequence[int]], since: Mapping[str, list[Hunk]]
) -> dict[str, list[int]]:
    """``lines`` (numbered in today's files) as numbered at the baseline, across the changes
    ``since`` made in between (earlier commits of the iteration); a line one of them wrote maps
    to -1, which no map holds."""
    out: dict[str, list[int]] = {}
    for path, ns in lines.items():
        mapped = [_back(n, since.get(path, [])) for n in ns]
        out[path] = [-1 if m is None else m for m in mapped]
    return out


class Selection(msgspec.Struct, frozen=True, kw_only=True):
    """The tests to run (``None``: the whole suite) and why, for the commit body."""

    tests: list[str] | None
    reason: str


def test_of(test_id: str) -> str:
    """A node id without its parameters: ``f.py::test_x[1-2]`` -> ``f.py::test_x`` (parameter ids
    are not always valid on a command line; running every parameter of a test is a superset)."""
    return test_id.split("[", 1)[0]


def select_tests(
    changed: Sequence[str],
    impact: TestImpact | None,
    baseline: Mapping[str, str],
    *,
    is_test_file: Callable[[str], bool],
    lines: Mapping[str, Sequence[int]] | None = None,
) -> Selection:
    """The tests that executed the changed lines of ``changed`` (paths relative to the project), whose
    old lines are ``lines`` (:func:`changed_lines`; without it, any line is taken to run at
    import).  A line that ran outside every test (a signature, an import, a module constant: code
    run at import) reaches tests through whatever imports it, which the map does not know: then
    the whole suite runs."""
    if not impact:
        return Selection(tests=None, reason="no test impact map for this iteration")
    chosen: set[str] = set()
    for path in changed:
        name = path.rsplit("/", 1)[-1]
        if not path.endswith(".py"):
            return Selection(
                tests=None, reason=f"{path} is not Python source: any test may read it"
            )
        if name == "conftest.py":
            return Selection(tests=None, reason=f"{path} holds fixtures that reach every test")
        if is_test_file(path):
            chosen.add(path)
        elif path in impact.files:
            ran = impact.files[path]
            outside = [n for n in (lines or {}).get(path, [0]) if n not in ran]
            if outside:
                return Selection(
                    tests=None,
                    reason=f"{path}:{outside[0]} runs at import or in no test: whatever imports "
                    "it may depend on it",
                )
            for n in (lines or {})[path]:
                chosen.update(test_of(impact.tests[i]) for i in ran[n])
        else:
            return Selection(tests=None, reason=f"no test executed {path} at the iteration's start")
    failing = {test_of(t) for t, o in baseline.items() if o in NOT_PASSING}
    files = {t for t in chosen if "::" not in t}
    tests = sorted(t for t in chosen | failing if t in files or t.split("::", 1)[0] not in files)
    odd = next((t for t in tests if not is_test_file(t.split("::", 1)[0])), None)
    if odd is not None:  # the runner would take it for a module to collect, not a test to select
        return Selection(tests=None, reason=f"{odd} is not in a test_*.py file")
    reach = len(chosen - failing)
    return Selection(
        tests=tests,
        reason=f"{reach} test(s) that execute the changed files"
        + (f" and the {len(failing)} not passing at the iteration's start" if failing else ""),
    )


def selected(test_id: str, tests: Collection[str]) -> bool:
    """Whether a run of ``tests`` (ids, parameterless ids or files) runs ``test_id``."""
    return test_id in tests or test_of(test_id) in tests or test_id.split("::", 1)[0] in tests


def within(outcomes: Mapping[str, str], tests: Collection[str] | None) -> dict[str, str]:
    """The outcomes of the tests a selection runs (all of them for the whole suite)."""
    if tests is None:
        return dict(outcomes)
    return {t: o for t, o in outcomes.items() if selected(t, tests)}
