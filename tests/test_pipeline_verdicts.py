"""The verification rules that real repositories broke, each on a small real repository run end to
end in one process (real git, real ruff/mypy/pytest): already fixed is not failed, tests judge by
id (and always run), diffs touch only the batch's lines, a hook that refuses a commit rolls the
batch back, a run without commits leaves the user where they were."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from airfix.events.schema import BatchSkipped, Committed, FixRolledBack, RunCompleted, StackDropped
from airfix.projections.report import on_branch
from tests.pipeline_harness import (
    MINI_FILES,
    branch,
    embedded_app,
    events_of,
    git,
    head,
    make_config,
    make_repo,
    run_to_end,
    status_porcelain,
)

TWO_IN_ONE = dict(
    MINI_FILES,
    **{
        "mini/core.py": """\
import os, sys


def add(a: int, b: int) -> int:
    return a + b
""",
        "pyproject.toml": MINI_FILES["pyproject.toml"].replace(
            'select = ["E", "F", "W", "I"]', 'select = ["F"]'
        ),
    },
)


def test_a_batch_an_earlier_batch_already_fixed_is_skipped_not_failed(tmp_path: Path) -> None:
    """ruff's fix for `import os, sys` removes the statement: the second batch has nothing left."""
    repo = make_repo(tmp_path, TWO_IN_ONE)
    app = embedded_app()
    run_id, report = run_to_end(app, repo, batching="individual", max_iterations=1)
    events = events_of(app, run_id)
    skipped = [e for e in events if isinstance(e, BatchSkipped)]
    assert len(skipped) == 1 and "already fixed" in skipped[0].reason
    assert [type(e).__name__ for e in events if isinstance(e, Committed | FixRolledBack)] == [
        "Committed"
    ]
    assert len(report.commits) == 1 and report.status == "partially_fixed", (
        report.reason
    )  # mypy remains
    assert report.skipped == [{"batch_id": skipped[0].batch_id, "reason": skipped[0].reason}]


IDENTITY_FILES = dict(
    MINI_FILES,
    **{
        "mini/core.py": """\
from typing import List


def pick(items: List[int]) -> List[int]:
    return items
""",
        "tests/test_core.py": """\
import typing

from mini.core import pick


def test_pick() -> None:
    assert pick([1]) == [1]


def test_annotation_is_typing_list() -> None:
    assert pick.__annotations__["items"] is typing.List[int] or pick.__annotations__["items"] == "List[int]"
""",
    },
)
IDENTITY_PYPROJECT = MINI_FILES["pyproject.toml"].replace(
    'select = ["E", "F", "W", "I"]', 'select = ["E", "F", "W", "I", "UP"]'
)


def test_a_fix_that_breaks_a_passing_test_is_found_by_bisection_and_set_aside(
    tmp_path: Path,
) -> None:
    """UP006 rewrites typing.List[int] into list[int]; a test compares one annotation by identity
    (the defect plain `ruff check --fix` has).  The tests judge it, by id, although the static
    score is poor; the rolled-back batch is bisected in the same iteration (by files, then by
    issues), the harmless fix is committed, and the culprit is set aside with the reason."""
    repo = make_repo(tmp_path, dict(IDENTITY_FILES, **{"pyproject.toml": IDENTITY_PYPROJECT}))
    base = head(repo)
    app = embedded_app(make_config(**{"fixer.verify": "batch"}))
    run_id, report = run_to_end(app, repo, max_iterations=2)
    events = events_of(app, run_id)
    rolled = [e for e in events if isinstance(e, FixRolledBack)]
    assert rolled and all("that passed now fail" in e.reason for e in rolled)
    assert any("tests/test_core.py::test_annotation_is_typing_list" in e.reason for e in rolled)
    halves = [e for e in events if type(e).__name__ == "BatchPlanned" and e.split_of]
    assert halves and all(e.iteration == 1 for e in halves)  # bisected at once, not next iteration
    committed = [e for e in events if isinstance(e, Committed)]
    assert len(committed) == 1 and committed[0].batch_id in {e.batch_id for e in halves}
    assert "-> list[int]:" in git(repo, "show", committed[0].sha)  # the return annotation alone
    attempts = [e.batch_id for e in events if type(e).__name__ == "FixStarted"]
    assert len(attempts) == len(set(attempts))  # nothing is tried twice as it was
    final = next(e for e in events if isinstance(e, RunCompleted))
    assert final.status in ("nothing_fixable", "partially_fixed"), (final.status, final.reason)
    assert any(
        "was rolled back: 1 test(s) that passed now fail" in r.reason for r in final.remaining
    )
    assert report.commits and head(repo) != base
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=repo,
        check=True,
        capture_output=True,
    )  # every test still passes on the tip


STACK_FILES = dict(
    MINI_FILES,
    **{
        "mini/core.py": """\
from typing import List, Optional


def first(items: List[int]) -> Optional[int]:
    return items[0] if items else None
""",
        "tests/test_core.py": """\
from mini.core import first


def test_first() -> None:
    assert first([1]) == 1 and first([]) is None


def test_annotation_is_typing_list() -> None:
    assert repr(first.__annotations__["items"]) in ("typing.List[int]", "'List[int]'")
""",
        "pyproject.toml": IDENTITY_PYPROJECT,
    },
)


def test_a_stack_whose_tip_breaks_a_test_is_bisected_and_only_the_culprit_dropped(
    tmp_path: Path,
) -> None:
    """The same defect with the batches verified as a stack (autofix's default): the static checks
    pass each batch, the tests on the stack's tip catch the broken test and bisection drops the
    batch that broke it.  The batch after it (the return annotation, on the same line and import)
    no longer applies without it: the deterministic fixer makes it again on the new parent in the
    same landing, and it lands in the first iteration.  Only the culprit is set aside."""
    repo = make_repo(tmp_path, STACK_FILES)
    base, ruff_before = head(repo), ruff_count(repo)
    app = embedded_app(make_config(**{"fixer.verify": "stack"}))
    run_id, report = run_to_end(app, repo, batching="individual", max_iterations=3)
    events = events_of(app, run_id)
    staged = [e for e in events if isinstance(e, Committed)]
    assert staged and all(e.staged for e in staged)
    dropped = [e for e in events if isinstance(e, StackDropped)]
    blamed = [e for e in dropped if e.blamed]
    assert (
        len(blamed) == 1
        and "tests/test_core.py::test_annotation_is_typing_list" in blamed[0].reason
    )
    assert all(e.blamed for e in dropped), dropped
    landed = on_branch(events)
    assert len(landed) == 1 and [c.sha for c in landed] == [c["sha"] for c in report.commits]
    assert landed[0].batch_id.split("/")[-1].startswith("1-")  # made again, same iteration
    planned = [e.batch_id for e in events if type(e).__name__ == "BatchPlanned"]
    assert all(b.split("/")[-1].startswith("1-") for b in planned), planned  # nothing was left
    # the branch holds exactly the landed commit on the base; its message says how the stack was
    # verified, its counts agree with a re-measure of its tree
    assert git(repo, "rev-list", "--reverse", f"{base}..HEAD").split() == [c.sha for c in landed]
    body = git(repo, "log", "-1", "--format=%B", landed[0].sha)
    assert body.strip() == landed[0].message.strip()
    assert (
        "Verified: as part of a stack of 1 commit(s) whose tip passed the full test suite" in body
    )
    shown = git(repo, "show", "--format=", landed[0].sha)
    assert "+def first(items: List[int]) -> int | None:" in shown, shown
    assert f"ruff: {ruff_before} -> {ruff_count(repo)}" in body, body
    final = next(e for e in events if isinstance(e, RunCompleted))
    assert any("dropped from the stack" in r.reason for r in final.remaining), final.remaining
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=repo,
        check=True,
        capture_output=True,
    )  # every test still passes on the tip


def ruff_count(repo: Path) -> int:
    """ruff's findings on the checkout, measured independently of airfix."""
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--output-format", "json", "--no-cache", "."],
        check=False,
        cwd=repo,
        capture_output=True,
        text=True,
    )
    return len(json.loads(out.stdout))


NOT_FORMATTED = dict(
    MINI_FILES,
    **{
        "mini/core.py": """\
import os
import sys
def add(a:int,b:int)->int:
    return a+b
def greet( name ):
    return 'hello '+name+str(sys.argv[:0])
""",
        "pyproject.toml": MINI_FILES["pyproject.toml"].replace(
            'select = ["E", "F", "W", "I"]', 'select = ["F"]'
        ),
    },
)


def test_a_commit_touches_only_the_lines_of_its_issues(tmp_path: Path) -> None:
    """No formatter: the unused import goes, the unformatted code around it stays as it was."""
    repo = make_repo(tmp_path, NOT_FORMATTED)
    base = head(repo)
    app = embedded_app()
    _, report = run_to_end(app, repo, max_iterations=1)
    assert len(report.commits) >= 1, report.reason
    changed = git(repo, "diff", "-U0", base, "HEAD", "--", "mini/core.py")
    removed = [ln for ln in changed.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    added = [ln for ln in changed.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    assert removed == ["-import os"] and added == [], changed
    body = git(repo, "log", "-1", "--format=%B")
    assert "Counts (before -> after):" in body and "whose tip passed the full test suite" in body, (
        body
    )


def test_a_commit_a_hook_refuses_rolls_the_batch_back_and_the_run_goes_on(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'lint-staged: 2 files would be reformatted' >&2\nexit 1\n")
    hook.chmod(0o755)
    app = embedded_app()
    run_id, report = run_to_end(app, repo, max_iterations=1)
    rolled = [e for e in events_of(app, run_id) if isinstance(e, FixRolledBack)]
    assert rolled and all(
        "the commit was refused" in e.reason and "would be reformatted" in e.reason for e in rolled
    ), [e.reason for e in rolled]
    assert report.state == "completed" and not report.commits
    assert status_porcelain(repo) == ""  # nothing staged, nothing left behind


def test_a_run_without_commits_leaves_the_user_on_their_branch(tmp_path: Path) -> None:
    files = dict(
        MINI_FILES, **{"mini/core.py": "def add(a: int, b: int) -> int:\n    return a + b\n"}
    )
    repo = make_repo(tmp_path, files)
    git(repo, "checkout", "-q", "-b", "feature")
    app = embedded_app()
    _, report = run_to_end(
        app, repo, max_iterations=1
    )  # finalizes the checkout, as airfix run does
    assert report.commits == [] and report.base_branch == "feature"
    assert report.checkout == "no commits: feature is checked out as before"
    assert branch(repo) == "feature"
    assert f"refs/heads/{report.branch}" not in git(repo, "for-each-ref", "--format=%(refname)")


def test_with_commits_the_checkout_ends_on_the_run_branch_or_fast_forwarded(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    base = head(repo)
    _, report = run_to_end(embedded_app(), repo, max_iterations=1)
    assert (
        report.commits and branch(repo) == report.branch and head(repo) == report.commits[-1]["sha"]
    )
    assert report.checkout == f"{report.branch} is checked out" and status_porcelain(repo) == ""
    assert git(repo, "rev-list", "--count", f"{base}..HEAD").strip() == str(len(report.commits))
    other = make_repo(tmp_path, name="other")
    _, ff = run_to_end(
        embedded_app(make_config(**{"git.commit_to_current_branch": True})), other, max_iterations=1
    )
    assert branch(other) == "main" and head(other) == ff.commits[-1]["sha"]
    assert f"refs/heads/{ff.branch}" not in git(other, "for-each-ref", "--format=%(refname)")


TWO_CULPRITS = """\
from typing import List


def {name}(items: List[int]) -> int:
    return items[0]
"""


def test_a_second_culprit_is_bisected_on_the_broken_test_alone(tmp_path: Path) -> None:
    """Two batches of a stack break the same test, in two files.  Once the first culprit is
    dropped, the test is run alone on the new tip: it still fails, so the second is bisected at
    once, with no whole-suite run in between.  A conftest counts every pytest session and its
    size (independently of airfix): two whole-suite runs (the stack's tip, then the base the
    drops leave) instead of three."""
    sessions = tmp_path / "sessions.log"
    files = {
        "pyproject.toml": IDENTITY_PYPROJECT,
        "mini/__init__.py": "",
        "mini/a.py": TWO_CULPRITS.format(name="first"),
        "mini/b.py": TWO_CULPRITS.format(name="second"),
        "tests/__init__.py": "",
        "tests/conftest.py": (
            "def pytest_collection_finish(session):\n"
            f"    with open({str(sessions)!r}, 'a') as f:\n"
            "        f.write(str(len(session.items)) + '\\n')\n"
        ),
        "tests/test_ab.py": """\
import typing

from mini.a import first
from mini.b import second


def test_values() -> None:
    assert first([1]) == 1 and second([2]) == 2


def test_annotations_are_typing_lists() -> None:
    for f in (first, second):
        assert f.__annotations__["items"] is typing.List[int]
""",
    }
    repo = make_repo(tmp_path, files)
    app = embedded_app(make_config(**{"fixer.verify": "stack"}))
    run_id, _ = run_to_end(app, repo, batching="individual", max_iterations=1)
    events = events_of(app, run_id)

    dropped = {e.batch_id: e for e in events if isinstance(e, StackDropped)}
    planned = {e.batch_id: e.files for e in events if type(e).__name__ == "BatchPlanned"}
    assert {f for b in dropped for f in planned[b]} >= {"mini/a.py", "mini/b.py"}, dropped
    assert all("test_annotations_are_typing_lists" in e.reason for e in dropped.values())
    # the first is blamed; the next broke the test once re-applied without it (bisected on the
    # test alone), so it is made again from scratch in a later iteration
    assert [e.blamed for e in dropped.values()].count(True) == 1
    sizes = [int(n) for n in sessions.read_text().split()]
    whole = sizes.count(2)  # both tests collected: the opening check, the tip, the base
    assert whole == 3, sizes
    assert 1 in sizes  # the broken test alone: the flaky check, then on the new tip
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=repo,
        check=True,
        capture_output=True,
    )  # every test still passes on what the run left


@pytest.mark.parametrize("hooks", ["run", "off"])
def test_a_blamed_batch_is_narrowed_to_the_issue_that_broke_the_test(
    tmp_path: Path, hooks: str
) -> None:
    """One batch fixes the same rule in three files and breaks a test through one of them.  The
    batch is not dropped whole: its issues are bisected on the broken test alone (fixes made
    again on its parent), the culprit's fix is left out and set aside, and the batch lands in the
    same iteration with its other fixes.  No second iteration, and (counted by a conftest,
    independently of airfix: tests collected and tests run per session) three whole-suite runs:
    the opening check, the tip (stopped at the broken test, the last one never runs), the new
    tip.  With ``git.run_hooks`` off, a pre-commit hook that refuses everything is not run for
    the narrowed commit either."""
    sessions = tmp_path / "sessions.log"
    files = {
        "pyproject.toml": IDENTITY_PYPROJECT,
        "mini/__init__.py": "",
        **{f"mini/{n}.py": TWO_CULPRITS.format(name=n) for n in ("one", "two", "three")},
        "tests/__init__.py": "",
        "tests/conftest.py": (
            "RAN = []\n\n\n"
            "def pytest_runtest_logreport(report):\n"
            "    if report.when == 'call':\n"
            "        RAN.append(report.nodeid)\n\n\n"
            "def pytest_sessionfinish(session):\n"
            f"    with open({str(sessions)!r}, 'a') as f:\n"
            "        f.write(f'{len(session.items)}:{len(RAN)}\\n')\n"
        ),
        "tests/test_mini.py": """\
from mini.one import one
from mini.three import three
from mini.two import two


def test_values() -> None:
    assert one([1]) == 1 and two([2]) == 2 and three([3]) == 3


def test_two_keeps_typing_list() -> None:
    assert repr(two.__annotations__["items"]) == "typing.List[int]"


def test_zz_last() -> None:
    assert three([4]) == 4
""",
    }
    repo = make_repo(tmp_path, files)
    base = head(repo)
    if hooks == "off":
        hook = repo / ".git" / "hooks" / "pre-commit"
        hook.write_text("#!/bin/sh\necho refused >&2\nexit 1\n")
        hook.chmod(0o755)
    config = make_config(**{"fixer.verify": "stack", "git.run_hooks": hooks == "run"})
    app = embedded_app(config)
    run_id, report = run_to_end(app, repo, batching="smart", max_iterations=3)
    events = events_of(app, run_id)

    planned = {e.batch_id: e for e in events if type(e).__name__ == "BatchPlanned"}
    assert all(b.split("/")[-1].startswith("1-") for b in planned), list(planned)
    dropped = [e for e in events if isinstance(e, StackDropped)]
    assert len(dropped) == 1 and dropped[0].narrowed, dropped
    narrowed = dropped[0]
    assert "test_two_keeps_typing_list" in narrowed.reason and "mini/two.py" in narrowed.reason
    discovered = {
        i.fingerprint: i for e in events if type(e).__name__ == "IssuesDiscovered" for i in e.issues
    }
    assert narrowed.culprits and {discovered[f].file for f in narrowed.culprits} == {"mini/two.py"}
    landed = {c.batch_id: c for c in on_branch(events)}
    assert narrowed.batch_id in landed, landed
    changed = git(repo, "diff", "--name-only", f"{base}..HEAD").split()
    assert "mini/one.py" in changed and "mini/three.py" in changed and "mini/two.py" not in changed
    assert [c["sha"] for c in report.commits] == [c.sha for c in on_branch(events)]
    final = next(e for e in events if isinstance(e, RunCompleted))
    assert any("mini/two.py" in r.files for r in final.remaining), final.remaining
    sizes = sessions.read_text().split()
    # the opening check and the narrowed stack's tip ran all three; the stack's tip stopped at
    # the broken test, before the last
    assert sizes.count("3:3") == 2 and sizes.count("3:2") == 1, sizes
    assert len([s for s in sizes if s.startswith("3:")]) == 3, sizes
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=repo,
        check=True,
        capture_output=True,
    )  # every test passes on what the run left
    shown = git(repo, "show", "--format=%B", landed[narrowed.batch_id].sha)
    assert f"Airfix-Batch: {narrowed.batch_id}" in shown and "mini/two.py" not in shown


UNUSED_AND_OLD = """\
import os
from typing import List


def {name}(items: List[int]) -> int:
    return items[0]
"""


def test_bisection_and_narrowing_probe_first_where_the_broken_test_points(tmp_path: Path) -> None:
    """The broken test's own file has the culprit: an import inside the test that ruff removes
    as unused (its effect is the point of the test, as in python-dateutil's test_imports).  The
    stack's commit whose batch fixed issues inside that test is probed first, and the batch's
    issue inside the test is tried alone first: a conftest counts the run-alone sessions
    (independently of airfix), five at most (the guess and the commit before it, the issue
    alone, the rest without it, the test on the new tip) where plain bisection needs seven."""
    sessions = tmp_path / "sessions.log"
    files = {
        "pyproject.toml": IDENTITY_PYPROJECT,
        "mini/__init__.py": "",
        "mini/extra.py": "VALUE = 1\n",
        **{f"mini/{n}.py": UNUSED_AND_OLD.format(name=n) for n in ("a", "b", "c", "d", "e")},
        # one more batch each: imports to sort, `(object)`, a coding line, a bare f-string
        "mini/f.py": "import sys\nimport os\n\nPATHS = (os.sep, sys.prefix)\n",
        "mini/g.py": "class G(object):\n    pass\n",
        "mini/h.py": "# -*- coding: utf-8 -*-\nH = 1\n",
        "mini/i.py": 'I = f"plain"\n',
        "tests/__init__.py": "",
        "tests/conftest.py": (
            "def pytest_collection_finish(session):\n"
            f"    with open({str(sessions)!r}, 'a') as f:\n"
            "        f.write(str(len(session.items)) + '\\n')\n"
        ),
        "tests/test_mini.py": """\
import sys


def test_values() -> None:
    from mini.a import a
    assert a([1]) == 1


def test_importing_extra_registers_it() -> None:
    import mini.extra
    assert "mini.extra" in sys.modules
""",
    }
    repo = make_repo(tmp_path, files)
    config = make_config(**{"fixer.verify": "stack"})
    app = embedded_app(config)
    run_id, _ = run_to_end(app, repo, batching="smart", max_iterations=1)
    events = events_of(app, run_id)
    dropped = [e for e in events if isinstance(e, StackDropped)]
    assert len(dropped) == 1 and dropped[0].narrowed, dropped
    discovered = {
        i.fingerprint: i for e in events if type(e).__name__ == "IssuesDiscovered" for i in e.issues
    }
    assert {discovered[f].file for f in dropped[0].culprits} == {"tests/test_mini.py"}
    staged = [e for e in events if isinstance(e, Committed) and e.staged]
    sizes = [int(n) for n in sessions.read_text().split()]
    alone = sizes.count(1)
    assert len(staged) >= 3 and alone <= 5, (len(staged), sizes)
