"""A stack's commits skip the whole-program checkers (mypy re-reads the whole program on every
run); the tip runs them once, and a tip with a new mypy error is bisected on mypy alone, the
culprit dropped, the rest landed.  Real git, ruff, mypy and pytest on a small project."""

from __future__ import annotations

import subprocess
from pathlib import Path

from airfix.events.schema import Committed, StackDropped, StackLanded
from airfix.services import fixers
from airfix.services.fixers import FixOutcome, FixRequest
from tests.pipeline_harness import (
    MINI_FILES,
    embedded_app,
    events_of,
    git,
    make_config,
    make_repo,
    registered,
    run_to_end,
    tool,
)


class TypeBreakingFixer:
    """ruff's own fixes, and in the batch that fixes the f-string also a line mypy rejects."""

    name = "typebreak"
    deterministic = True

    def __init__(self) -> None:
        self.inner = fixers.REGISTRY["autofix"]()

    def supports(self, issue, config):  # type: ignore[no-untyped-def]
        return self.inner.supports(issue, config)

    def fix(self, request: FixRequest) -> FixOutcome:
        outcome = self.inner.fix(request)
        if any(i.rule == "F541" for i in request.issues):
            core = request.target / "mini" / "core.py"
            core.write_text(core.read_text() + '\n\nLIMIT: int = "ten"\n')
        return outcome


#: a test that takes two minutes on a tree with the line mypy rejects, and none otherwise
SLOW_ON_THE_BAD_TREE = """\
import pathlib
import time


def test_the_tree_is_sound() -> None:
    core = pathlib.Path(__file__).parents[1] / "mini" / "core.py"
    if 'LIMIT: int = "ten"' in core.read_text():
        time.sleep(120)
"""


def test_a_new_mypy_error_at_the_stack_tip_is_bisected_and_its_batch_dropped(
    tmp_path: Path,
) -> None:
    """The tip's test suite, which runs alongside mypy, stops as soon as mypy has found the new
    error: a conftest logs each session's start and end (independently of airfix), and the
    tip's session, whose one test would sleep two minutes there, never ends (without the stop:
    three sessions end, the tip's two minutes late)."""
    sessions = tmp_path / "sessions.log"
    conftest = (
        "def pytest_sessionstart(session):\n"
        f"    open({str(sessions)!r}, 'a').write('start\\n')\n\n\n"
        "def pytest_sessionfinish(session):\n"
        f"    open({str(sessions)!r}, 'a').write('end\\n')\n"
    )
    files = {
        **MINI_FILES,
        "tests/conftest.py": conftest,
        "tests/test_slow.py": SLOW_ON_THE_BAD_TREE,
    }
    repo = make_repo(tmp_path, files)
    with registered("typebreak", TypeBreakingFixer):
        app = embedded_app(make_config(**{"fixer.verify": "stack"}))
        run_id, report = run_to_end(app, repo, fixer="typebreak", batching="individual")
    events = events_of(app, run_id)
    staged = {e.batch_id: e for e in events if isinstance(e, Committed) and e.staged}
    assert staged and all("mypy" not in e.counts_after for e in staged.values())  # skipped
    dropped = [e for e in events if isinstance(e, StackDropped)]
    assert len(dropped) == 1 and dropped[0].blamed, [e.reason for e in dropped]
    assert "new issue(s) (mypy" in dropped[0].reason and "bisection blamed" in dropped[0].reason
    assert "F541" in staged[dropped[0].batch_id].message
    landed = next(e for e in events if isinstance(e, StackLanded))
    assert [c.batch_id for c in landed.commits] == [b for b in staged if b != dropped[0].batch_id]
    # independently: mypy and the tests pass on the run's tip, the f-string is still there
    git(repo, "checkout", "-q", report.branch)
    mypy = subprocess.run([tool("mypy")], cwd=repo, capture_output=True, text=True)
    assert mypy.returncode == 0, mypy.stdout
    assert 'f"hello "' in (repo / "mini" / "core.py").read_text()
    assert "import os" not in (repo / "mini" / "core.py").read_text()
    # the opening check's and the new tip's sessions ended; the condemned tip's was stopped
    # (before or after it started: mypy may answer first)
    log = sessions.read_text().split()
    assert log.count("end") == 2 and log.count("start") in (2, 3), log
