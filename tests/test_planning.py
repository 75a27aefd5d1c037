"""Unit and property tests of batch planning and commit messages (``airfix.events.core.planning``)."""

from __future__ import annotations

import random
import re
from collections import Counter
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airfix.config import BatchSizesConfig, IssueGroupingConfig
from airfix.events.core.cleanup import CLEANUP_MIN_ISSUES, cleanup_phrase, is_cleanup_rule
from airfix.events.core.machine import PlanBatch
from airfix.events.core.messages import commit_message
from airfix.events.core.planning import (
    PHASES,
    Plan,
    phase_caps,
    plan_batches,
)
from airfix.events.schema import IssueRecord

RANK = {p: i for i, p in enumerate(PHASES)}
NO_CAPS: dict = {}


def issue(
    n: int | str,
    *,
    phase: str = "lint",
    tool: str = "ruff",
    file: str = "pkg/mod.py",
    line: int = 1,
    rule: str = "E722",
    message: str = "",
) -> IssueRecord:
    return IssueRecord(
        issue_id=f"i{n}",
        fingerprint=f"fp-{n}",
        tool=tool,
        phase=phase,  # type: ignore[arg-type]
        file=file,
        line=line,
        rule=rule,
        message=message or f"message {n}",
    )


def plan(issues, mode="smart", *, cleanup=50, location=20, caps=NO_CAPS, iteration=1, run="run-1"):
    return plan_batches(
        issues,
        mode=mode,
        iteration=iteration,
        run_id=run,
        max_cleanup_batch_size=cleanup,
        max_location_batch_size=location,
        batches_per_phase=caps,
    )


def by_id(issues):
    return {i.issue_id: i for i in issues}


# ---------------------------------------------------------------- strategies

FILES = ["a.py", "pkg/a.py", "pkg/b.py", "pkg/sub/c.py", "tests/test_x.py", "web/app.ts", ""]
RULES = ["F401", "F841", "I001", "UP006", "E501", "E722", "B006", "arg-type", "", "unused_import"]
TOOLS = ["ruff", "mypy", "pytest", "eslint"]


@st.composite
def issue_lists(draw, max_size=60):
    n = draw(st.integers(min_value=0, max_value=max_size))
    out = []
    for k in range(n):
        out.append(
            IssueRecord(
                issue_id=f"i{k}",
                fingerprint=draw(st.sampled_from([f"fp{k}", "dup-a", "dup-b"])),
                tool=draw(st.sampled_from(TOOLS)),
                phase=draw(st.sampled_from(PHASES)),
                file=draw(st.sampled_from(FILES)),
                line=draw(st.integers(min_value=0, max_value=30)),
                column=draw(st.integers(min_value=0, max_value=3)),
                rule=draw(st.sampled_from(RULES)),
                message=draw(st.sampled_from(["x", "y", "unused"])),
            )
        )
    return out


modes = st.sampled_from(["mega", "smart", "individual"])
sizes = st.integers(min_value=1, max_value=7)
caps = st.fixed_dictionaries(
    {}, optional={p: st.integers(min_value=0, max_value=4) for p in PHASES}
)


# ---------------------------------------------------------------- properties


@settings(max_examples=200, deadline=None)
@given(issue_lists(), modes, sizes, sizes)
def test_every_issue_in_exactly_one_batch_without_caps(issues, mode, cleanup, location):
    p = plan(issues, mode, cleanup=cleanup, location=location)
    ids = [i for b in p.batches for i in b.issue_ids]
    assert Counter(ids) == Counter(i.issue_id for i in issues)
    assert p.deferred_issue_ids == [] and p.deferred_batches == 0
    assert all(b.issue_ids for b in p.batches)


@settings(max_examples=200, deadline=None)
@given(issue_lists(), modes, sizes, sizes, caps)
def test_caps_respected_and_nothing_lost(issues, mode, cleanup, location, per_phase):
    p = plan(issues, mode, cleanup=cleanup, location=location, caps=per_phase)
    kept = [i for b in p.batches for i in b.issue_ids]
    assert not set(kept) & set(p.deferred_issue_ids)
    assert Counter(kept + p.deferred_issue_ids) == Counter(i.issue_id for i in issues)
    per = Counter(b.phase for b in p.batches)
    for phase, cap in per_phase.items():
        assert per[phase] <= cap
    for b in p.batches:
        assert b.issue_ids
        if b.kind == "cleanup":
            assert len(b.issue_ids) <= cleanup
        elif b.kind == "location":
            assert len(b.issue_ids) <= location
        elif b.kind == "single":
            assert len(b.issue_ids) == 1
    if mode == "mega":
        assert all(n == 1 for n in Counter(b.phase for b in p.batches).values())


@settings(max_examples=150, deadline=None)
@given(issue_lists(), modes, sizes, sizes, caps, st.randoms(use_true_random=False))
def test_deterministic_under_permutation(issues, mode, cleanup, location, per_phase, rnd):
    shuffled = list(issues)
    rnd.shuffle(shuffled)
    a = plan(issues, mode, cleanup=cleanup, location=location, caps=per_phase)
    b = plan(shuffled, mode, cleanup=cleanup, location=location, caps=per_phase)
    assert a == b


@settings(max_examples=150, deadline=None)
@given(issue_lists(), modes, sizes, sizes, caps)
def test_ids_unique_and_priorities_follow_phases(issues, mode, cleanup, location, per_phase):
    p = plan(
        issues, mode, cleanup=cleanup, location=location, caps=per_phase, iteration=7, run="r-9"
    )
    assert [b.priority for b in p.batches] == list(range(1, len(p.batches) + 1))
    assert [b.batch_id for b in p.batches] == [f"r-9/7-{b.priority}" for b in p.batches]
    ranks = [RANK[b.phase] for b in p.batches]
    assert ranks == sorted(ranks)
    for earlier, later in pairwise(p.batches):
        if RANK[earlier.phase] < RANK[later.phase]:
            assert earlier.priority < later.priority


@settings(max_examples=150, deadline=None)
@given(issue_lists(), modes, sizes, sizes)
def test_batch_contents_are_consistent(issues, mode, cleanup, location):
    issues_by_id = by_id(issues)
    p = plan(issues, mode, cleanup=cleanup, location=location)
    for b in p.batches:
        members = [issues_by_id[i] for i in b.issue_ids]
        assert {m.phase for m in members} == {b.phase}
        assert b.files == sorted({m.file for m in members if m.file})
        assert b.rules == sorted({m.rule for m in members if m.rule})
        assert b.mode == mode
        assert b.description
        if b.kind == "cleanup":
            assert len({(m.tool, m.rule) for m in members}) == 1
            assert is_cleanup_rule(members[0].rule)
        if b.kind == "location":
            assert len({m.file.rpartition("/")[0] for m in members}) == 1


@settings(max_examples=150, deadline=None)
@given(issue_lists(), sizes, sizes)
def test_smart_cleanup_groups_go_project_wide(issues, cleanup, location):
    p = plan(issues, "smart", cleanup=cleanup, location=location)
    kind_of = {i: b.kind for b in p.batches for i in b.issue_ids}
    groups = Counter((i.phase, i.tool, i.rule) for i in issues if is_cleanup_rule(i.rule))
    for i in issues:
        key = (i.phase, i.tool, i.rule)
        expected = "cleanup" if groups.get(key, 0) >= CLEANUP_MIN_ISSUES else "location"
        assert kind_of[i.issue_id] == expected


@settings(max_examples=100, deadline=None)
@given(issue_lists(), modes, sizes, sizes, caps)
def test_capped_plan_is_the_uncapped_plan_cut_per_phase(issues, mode, cleanup, location, per_phase):
    full = plan(issues, mode, cleanup=cleanup, location=location)
    capped = plan(issues, mode, cleanup=cleanup, location=location, caps=per_phase)
    expected = []
    for phase in PHASES:
        of_phase = [b for b in full.batches if b.phase == phase]
        cap = per_phase.get(phase)
        expected.extend(of_phase if cap is None else of_phase[:cap])
    assert [(b.issue_ids, b.description, b.kind) for b in capped.batches] == [
        (b.issue_ids, b.description, b.kind) for b in expected
    ]


# ---------------------------------------------------------------- modes


def test_smart_mode_example():
    issues = [
        issue(1, rule="F401", file="pkg/a.py", line=3),
        issue(2, rule="F401", file="pkg/b.py", line=1),
        issue(3, rule="F401", file="web/x.py", line=9),
        issue(4, rule="F841", file="pkg/a.py", line=12),  # lone cleanup rule -> location
        issue(5, rule="E722", file="pkg/c.py", line=4),
        issue(6, phase="build", tool="mypy", rule="arg-type", file="home/views.py", line=8),
        issue(7, phase="build", tool="mypy", rule="return-value", file="home/models.py", line=2),
        issue(8, phase="test", tool="pytest", rule="", file="tests/test_a.py", line=5),
    ]
    p = plan(issues)
    got = [(b.phase, b.kind, b.description, b.issue_ids) for b in p.batches]
    assert got == [
        ("build", "location", "fix: type errors in home/ (2 issues, 2 files)", ["i7", "i6"]),
        ("test", "location", "fix: test failures in tests/ (1 issue, 1 file)", ["i8"]),
        ("lint", "cleanup", "chore: remove all unused imports (3 files)", ["i1", "i2", "i3"]),
        ("lint", "location", "fix: lint issues in pkg/ (2 issues, 2 files)", ["i4", "i5"]),
    ]
    cleanup = p.batches[2]
    assert cleanup.rules == ["F401"] and cleanup.scope == "F401"
    assert cleanup.files == ["pkg/a.py", "pkg/b.py", "web/x.py"]
    assert p.batches[0].scope == "home"
    assert [b.priority for b in p.batches] == [1, 2, 3, 4]
    assert [b.batch_id for b in p.batches] == [f"run-1/1-{n}" for n in (1, 2, 3, 4)]


def test_smart_cleanup_is_split_evenly_in_file_order():
    issues = [issue(k, rule="F401", file=f"m{k:03d}.py") for k in range(120)]
    p = plan(issues, cleanup=50)
    assert [len(b.issue_ids) for b in p.batches] == [40, 40, 40]
    assert [b.description for b in p.batches] == [
        f"chore: remove unused imports, part {n}/3 (40 files)" for n in (1, 2, 3)
    ]
    assert [i for b in p.batches for i in b.issue_ids] == [f"i{k}" for k in range(120)]


def test_smart_location_is_split_by_cap():
    issues = [issue(k, file=f"home/f{k % 5}.py", line=k) for k in range(25)]
    p = plan(issues, location=20)
    assert [len(b.issue_ids) for b in p.batches] == [13, 12]
    assert p.batches[0].description == "fix: lint issues in home/, part 1/2 (13 issues, 3 files)"


def test_smart_groups_by_directory_and_root():
    issues = [
        issue(1, file="setup.py"),
        issue(2, file=""),
        issue(3, file="a/b/c.py"),
        issue(4, file="a/d.py"),
    ]
    p = plan(issues)
    scopes = {b.scope: b for b in p.batches}
    assert set(scopes) == {"", "a/b", "a"}
    assert scopes[""].issue_ids == ["i2", "i1"]
    assert scopes[""].files == ["setup.py"]
    assert scopes[""].description == "fix: lint issues in the project root (2 issues, 1 file)"


def test_smart_cleanup_needs_same_tool_and_rule():
    issues = [
        issue(1, rule="F401", tool="ruff"),
        issue(2, rule="F401", tool="flake8", file="x/y.py"),
    ]
    p = plan(issues)
    assert {b.kind for b in p.batches} == {"location"}


def test_smart_orders_cleanup_before_location_larger_first():
    issues = (
        [issue(f"a{k}", rule="E722", file="big/x.py", line=k) for k in range(5)]
        + [issue(f"b{k}", rule="E722", file="small/x.py", line=k) for k in range(2)]
        + [issue(f"c{k}", rule="W291", file=f"f{k}.py") for k in range(2)]
        + [issue(f"d{k}", rule="F401", file=f"g{k}.py") for k in range(3)]
    )
    p = plan(issues)
    assert [(b.kind, b.scope) for b in p.batches] == [
        ("cleanup", "F401"),
        ("cleanup", "W291"),
        ("location", "big"),
        ("location", "small"),
    ]
    assert p.batches[1].description == "style: remove all trailing whitespace (2 files)"


def test_mega_mode_one_batch_per_phase():
    issues = [issue(k, file=f"d{k % 7}/f.py") for k in range(100)] + [
        issue(f"b{k}", phase="build", tool="mypy", rule="arg-type") for k in range(3)
    ]
    p = plan(issues, "mega", cleanup=1, location=1)
    assert [(b.phase, b.kind, len(b.issue_ids)) for b in p.batches] == [
        ("build", "mega", 3),
        ("lint", "mega", 100),
    ]
    assert p.batches[1].description == "fix: comprehensive cleanup of 100 issues"
    assert p.batches[1].rules == ["E722"]


def test_individual_mode_one_issue_per_batch():
    issues = [
        issue(2, rule="F401", file="a/x.py", line=3),
        issue(1, rule="", tool="mypy", phase="build", file="", line=0),
    ]
    p = plan(issues, "individual")
    assert [(b.kind, b.description, b.scope, b.files, b.rules) for b in p.batches] == [
        ("single", "fix: mypy (mypy)", "", [], []),
        ("single", "fix: F401 in a/x.py:3", "a/x.py:3", ["a/x.py"], ["F401"]),
    ]


def test_per_phase_caps_defer_the_rest():
    issues = [issue(k, rule="E722", file=f"d{k}/x.py") for k in range(6)] + [
        issue(f"b{k}", phase="build", tool="mypy", file=f"d{k}/x.py") for k in range(3)
    ]
    p = plan(issues, caps={"build": 1, "lint": 2, "test": 5})
    assert [b.phase for b in p.batches] == ["build", "lint", "lint"]
    assert p.deferred_batches == 6
    assert sorted(p.deferred_issue_ids) == sorted(["ib1", "ib2", "i2", "i3", "i4", "i5"])
    assert isinstance(p, Plan)
    assert p.issue_ids == ["ib0", "i0", "i1"]


def test_zero_cap_defers_whole_phase():
    p = plan([issue(1), issue(2, file="x/y.py")], caps={"lint": 0})
    assert p.batches == [] and sorted(p.deferred_issue_ids) == ["i1", "i2"]


def test_empty_input():
    assert plan([], "smart") == Plan(batches=[], deferred_issue_ids=[], deferred_batches=0)


def test_duplicate_issue_ids_are_planned_once():
    a = issue(1, file="a/x.py")
    p = plan([a, a, issue(2, file="a/x.py")])
    assert [i for b in p.batches for i in b.issue_ids] == ["i1", "i2"]


def test_retry_produces_identical_batches():
    issues = [
        issue(k, rule=random.Random(k).choice(RULES), file=f"d{k % 3}/f.py") for k in range(40)
    ]
    assert plan(issues, iteration=3) == plan(list(reversed(issues)), iteration=3)
    assert plan(issues, iteration=3).batches[0].batch_id == "run-1/3-1"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "huge"}, "unknown batching mode"),
        ({"cleanup": 0}, "at least 1"),
        ({"location": 0}, "at least 1"),
        ({"caps": {"lint": -1}}, ">= 0"),
        ({"caps": {"deploy": 1}}, "unknown phase"),
    ],
)
def test_invalid_arguments(kwargs, message):
    mode = kwargs.pop("mode", "smart")
    with pytest.raises(ValueError, match=message):
        plan([issue(1)], mode, **kwargs)


def test_unknown_issue_phase_is_rejected():
    bad = IssueRecord(issue_id="x", fingerprint="f", tool="t", phase="deploy")  # type: ignore
    with pytest.raises(ValueError, match="unknown phase"):
        plan([bad])


def test_planned_batch_becomes_a_plan_batch_command():
    b = plan([issue(1, rule="F401"), issue(2, rule="F401", file="b.py")]).batches[0]
    cmd = b.command()
    assert cmd == PlanBatch(
        batch_id=b.batch_id,
        phase="lint",
        issue_ids=["i2", "i1"],
        mode="smart",
        priority=1,
        description=b.description,
        files=["b.py", "pkg/mod.py"],
        kind="cleanup",
    )


def test_phase_caps_from_config():
    assert phase_caps(BatchSizesConfig(build_fixes=1, test_fixes=2, lint_fixes=3)) == {
        "build": 1,
        "test": 2,
        "lint": 3,
    }
    grouping = IssueGroupingConfig()
    p = plan_batches(
        [issue(1)],
        mode=grouping.mode,
        iteration=1,
        run_id="r",
        max_cleanup_batch_size=grouping.max_cleanup_batch_size,
        max_location_batch_size=grouping.max_location_batch_size,
        batches_per_phase=phase_caps(BatchSizesConfig()),
    )
    assert len(p.batches) == 1


def test_plans_100k_issues():
    rnd = random.Random(42)
    rules = ["F401", "F841", "E501", "E722", "B006", "arg-type", "UP006", ""]
    issues = [
        IssueRecord(
            issue_id=f"i{k}",
            fingerprint=f"fp{k}",
            tool=rnd.choice(["ruff", "mypy", "pytest"]),
            phase=rnd.choice(PHASES),
            file=f"pkg{rnd.randrange(50)}/sub{rnd.randrange(5)}/m{rnd.randrange(40)}.py",
            line=rnd.randrange(1, 500),
            rule=rnd.choice(rules),
        )
        for k in range(100_000)
    ]
    for mode in ("smart", "mega", "individual"):
        p = plan(issues, mode)
        ids = [i for b in p.batches for i in b.issue_ids]
        assert len(ids) == len(set(ids)) == 100_000
        assert all(b.issue_ids for b in p.batches)
        assert all(len(b.issue_ids) <= 50 for b in p.batches if b.kind == "cleanup")
        assert all(len(b.issue_ids) <= 20 for b in p.batches if b.kind == "location")
    capped = plan(issues, caps={"build": 5, "test": 5, "lint": 5})
    assert len(capped.batches) == 15
    assert len(capped.issue_ids) + len(capped.deferred_issue_ids) == 100_000


# ---------------------------------------------------------------- phrases and commit messages


@pytest.mark.parametrize(
    "rule, whole, expected",
    [
        ("F401", True, ("chore", "remove all unused imports")),
        ("F401", False, ("chore", "remove unused imports")),
        ("F841", True, ("chore", "remove all unused variables")),
        ("F541", True, ("chore", "remove placeholder-less f-string prefixes")),
        ("I001", True, ("style", "sort all imports")),
        ("E711", True, ("chore", "fix all comparisons to None")),
        ("E712", True, ("chore", "fix all comparisons to True/False")),
        ("W291", True, ("style", "remove all trailing whitespace")),
        ("W293", True, ("style", "remove all whitespace on blank lines")),
        ("UP006", True, ("chore", "use builtin generic types")),
        ("UP999", True, ("chore", "modernise syntax (UP999)")),
        ("prefer_const_constructors", True, ("chore", "add all missing const keywords")),
        ("B006", True, ("fix", "fix all B006 issues")),
        ("B006", False, ("fix", "fix B006 issues")),
    ],
)
def test_cleanup_phrases(rule, whole, expected):
    assert cleanup_phrase(rule, whole=whole) == expected


def test_is_cleanup_rule():
    assert is_cleanup_rule("F401") and is_cleanup_rule("UP035") and is_cleanup_rule("UP123")
    assert not is_cleanup_rule("E722") and not is_cleanup_rule("UPX") and not is_cleanup_rule("")


def test_commit_message_for_a_cleanup_batch():
    issues = [issue(k, rule="F401", file=f"m{k}.py") for k in range(30)]
    b = plan(issues, run="run-7", iteration=2).batches[0]
    msg = commit_message(b, {"ruff": 42, "mypy": 3}, {"ruff": 12, "mypy": 3}, "claude", "run-7")
    lines = msg.splitlines()
    assert lines[0] == "chore: remove all unused imports (30 files)"
    assert lines[1] == ""
    assert "Batch: run-7/2-1 (cleanup, lint phase, smart mode)" in lines
    assert "Issues: 30 in 30 files" in lines
    assert "Rules: F401" in lines
    assert "  mypy: 3 -> 3" in lines and "  ruff: 42 -> 12" in lines
    assert "Fixer: claude" in lines
    assert lines[-2:] == ["Airfix-Batch: run-7/2-1", "Airfix-Run: run-7"]
    assert lines[-3] == ""


def test_commit_message_styles_for_each_kind():
    loc = plan(
        [
            issue(k, phase="build", tool="mypy", rule="arg-type", file=f"home/f{k % 8}.py", line=k)
            for k in range(15)
        ]
    ).batches[0]
    assert loc.description == "fix: type errors in home/ (15 issues, 8 files)"
    mega = plan([issue(k, file=f"d{k}/f.py") for k in range(100)], "mega").batches[0]
    assert mega.description == "fix: comprehensive cleanup of 100 issues"
    single = plan([issue(1, rule="E711", file="a.py", line=4)], "individual").batches[0]
    assert single.description == "fix: E711 in a.py:4"
    for b in (loc, mega, single):
        msg = commit_message(b, {}, {"lint": 0}, "", "r")
        assert msg.splitlines()[0] == b.description
        assert "  lint: ? -> 0" in msg and "Fixer: (unknown)" in msg
        assert msg.endswith("Airfix-Run: r")
        assert re.search(r"^Batch: run-1/1-1 ", msg, re.MULTILINE)
