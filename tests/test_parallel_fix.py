"""Parallel fixing (``fixer.parallel``, services/pipeline/parallel.py) end to end: real git, a real
fixer process (the ``command`` fixer running the fake agent of ``scripts/bench/parallel.py``,
which sleeps, then removes the unused imports of its batch's files), every role hosted in this
process on an embedded store.  No timing is asserted: only which fixer runs overlapped (each run
logs its start and end), which events were recorded and what was committed."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog

from airfix.config import load_config
from airfix.events.core.ledger import iteration_view
from airfix.events.core.machine import (
    PlanBatch,
    PrepareFix,
    RecordHealth,
    RecordIssues,
    RequestRun,
    StartFix,
    StartRun,
    decide,
    fold,
    initial_state,
)
from airfix.events.errors import ConfigError, InvalidTransition
from airfix.events.schema import (
    BatchPlanned,
    BatchSkipped,
    Committed,
    FixApplied,
    FixFailed,
    FixPrepared,
    FixRolledBack,
    FixStarted,
    IssueRecord,
    stamp,
)
from airfix.services.pipeline.parallel import companions
from scripts.bench.parallel import FixRun, fix_run, git, make_project

SLEEP_S = 1.0


@pytest.fixture(autouse=True)
def _quiet_logs():
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def overlapping(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def of(run: FixRun, kind: type) -> list[Any]:
    return [e for e in run.events if isinstance(e, kind)]


def batch_of(run: FixRun, module: str) -> str:
    """The batch planned for the issues of ``par/<module>.py``."""
    (batch,) = [b.batch_id for b in of(run, BatchPlanned) if b.files == [f"par/{module}.py"]]
    return batch


def runs_of(run: FixRun, batch: str) -> list[dict[str, Any]]:
    return [r for r in run.fixer_runs() if r["batch"] == batch]


def test_parallel_one_and_four_commit_the_same_contents(tmp_path: Path) -> None:
    modules = {f"m{k}": "" for k in range(1, 6)}
    runs = {}
    for parallel in (1, 4):
        root = make_project(tmp_path / f"p{parallel}" / "proj", modules)
        runs[parallel] = fix_run(
            root, tmp_path / f"p{parallel}", parallel=parallel, sleep_s=SLEEP_S, batches=5
        )
    one, four = runs[1], runs[4]
    assert one.state.status == four.state.status == "succeeded", (one.state, four.state)
    assert len(one.patches()) == 5
    assert one.patches() == four.patches()  # the same changes, in the same order
    tips = [git(r.root, "rev-parse", f"{r.branch}^{{tree}}") for r in (one, four)]
    assert tips[0] == tips[1]
    # parallel 1 never fixes ahead, and its fixer runs one after another
    assert of(one, FixPrepared) == []
    assert not any(overlapping(a, b) for a, b in combinations(one.fixer_runs(), 2))
    # parallel 4: the first step fixed 3 batches alongside the first, each in a worktree of its
    # own; the fifth ran alone (nothing was left to fix alongside it)
    prepared = of(four, FixPrepared)
    first = of(four, FixStarted)[0].batch_id
    assert len(prepared) == 3 and {p.alongside for p in prepared} == {first}
    assert all(p.candidate and not p.reason for p in prepared)
    wave = [r for r in four.fixer_runs() if r["batch"] in {first, *(p.batch_id for p in prepared)}]
    assert len(wave) == 4 and len({r["target"] for r in wave}) == 4
    assert any(overlapping(a, b) for a, b in combinations(wave, 2))
    # each batch's fixer ran once: a prepared fix is replayed at its turn, not run again
    assert len(four.fixer_runs()) == 5 == len(of(four, FixApplied)) == len(of(four, Committed))


def test_batches_touching_the_same_file_are_never_fixed_together(tmp_path: Path) -> None:
    two = "import os  # one\nimport sys  # two\n\n\ndef both() -> int:\n    return 2\n"
    root = make_project(
        tmp_path / "proj", {f"m{k}": "" for k in range(2, 5)}, files={"par/m1.py": two}
    )
    run = fix_run(root, tmp_path, parallel=4, sleep_s=SLEEP_S, batches=5)
    on_m1 = [b.batch_id for b in of(run, BatchPlanned) if b.files == ["par/m1.py"]]
    assert len(on_m1) == 2  # one batch per issue, both on the same file
    for a, b in combinations(run.fixer_runs(), 2):
        if set(a["files"]) & set(b["files"]):
            assert not overlapping(a, b), (a, b)
    # the other batches did run alongside the first m1 batch, so the test could have failed
    alongside = {p.batch_id for p in of(run, FixPrepared) if p.alongside == on_m1[0]}
    assert alongside == {batch_of(run, m) for m in ("m2", "m3", "m4")}
    # the first m1 fix removed both imports: the second batch had nothing left to do
    assert [s.batch_id for s in of(run, BatchSkipped)] == [on_m1[1]]
    assert run.state.status == "succeeded", run.state.reason


def test_a_prepared_fix_that_conflicts_with_an_earlier_commit_fails_with_the_reason(
    tmp_path: Path,
) -> None:
    modules = {"c1": "agent: clash", "c2": "agent: clash", "m3": ""}
    root = make_project(tmp_path / "proj", modules)
    run = fix_run(root, tmp_path, parallel=2, sleep_s=SLEEP_S, batches=3)
    c1, c2 = batch_of(run, "c1"), batch_of(run, "c2")
    (ahead,) = [p for p in of(run, FixPrepared) if p.batch_id == c2]
    assert ahead.alongside == c1 and ahead.candidate and "shared.txt" in ahead.files_changed
    (c1_commit,) = [c for c in of(run, Committed) if c.batch_id == c1]
    (failure,) = [f for f in of(run, FixFailed) if f.batch_id == c2]
    assert failure.reason.startswith(f"conflicts with {c1_commit.sha[:7]}"), failure.reason
    assert "shared.txt" in failure.reason
    assert c2 not in {c.batch_id for c in of(run, Committed)}
    assert not any(isinstance(e, FixApplied) and e.batch_id == c2 for e in run.events)
    assert len(runs_of(run, c2)) == 1  # its fixer ran once, alongside c1: not again
    assert git(root, "show", f"{run.branch}:shared.txt") == f"{c1}\n"
    assert git(root, "status", "--porcelain") == ""  # the user's checkout was never touched


def test_a_failing_prepared_fix_is_recorded_and_not_run_again(tmp_path: Path) -> None:
    modules = {"a1": "", "f2": "agent: fail", "m3": ""}
    root = make_project(tmp_path / "proj", modules)
    run = fix_run(root, tmp_path, parallel=3, sleep_s=SLEEP_S, batches=3)
    f2, m3 = batch_of(run, "f2"), batch_of(run, "m3")
    prepared = {p.batch_id: p for p in of(run, FixPrepared)}
    assert set(prepared) == {f2, m3}
    assert not prepared[f2].candidate and "gave up" in prepared[f2].reason
    (failure,) = [f for f in of(run, FixFailed) if f.batch_id == f2]
    assert failure.reason.startswith(f"fixed alongside {batch_of(run, 'a1')}: ")
    assert "gave up" in failure.reason
    started = [s for s in of(run, FixStarted) if s.batch_id == f2]
    assert len(started) == 1 and len(runs_of(run, f2)) == 1  # recorded once, run once
    # the prepared m3 went through as a replayed candidate and was committed
    assert m3 in {c.batch_id for c in of(run, Committed)}
    assert len(runs_of(run, m3)) == 1


def test_a_prepared_fix_that_fails_verification_is_rolled_back_with_the_reason(
    tmp_path: Path,
) -> None:
    modules = {"a1": "", "b2": "agent: break", "m3": ""}
    root = make_project(tmp_path / "proj", modules)
    run = fix_run(root, tmp_path, parallel=3, sleep_s=SLEEP_S, batches=3)
    b2 = batch_of(run, "b2")
    (ahead,) = [p for p in of(run, FixPrepared) if p.batch_id == b2]
    (applied,) = [a for a in of(run, FixApplied) if a.batch_id == b2]
    assert applied.candidate != ahead.candidate  # replayed onto a1's commit, then judged
    (back,) = [r for r in of(run, FixRolledBack) if r.batch_id == b2]
    assert "F821" in back.reason or "undefined" in back.reason, back.reason
    assert b2 not in {c.batch_id for c in of(run, Committed)}
    assert len(runs_of(run, b2)) == 1
    assert "undefined_name" not in git(root, "show", f"{run.branch}:par/b2.py")


def test_a_batch_whose_attempt_someone_else_started_is_not_fixed_alongside(tmp_path: Path) -> None:
    """The fencing rule of the sequential path holds for prepared batches too: a fixer that may
    have been paid for this attempt (its marker is set, its result never reached the log: a stale
    step) is not run again; the batch fails at its turn instead."""
    modules = {"m1": "", "m2": "", "m3": ""}
    root = make_project(tmp_path / "proj", modules)

    def stale_step(app: Any, run_id: str) -> None:
        key = f"{app.keys.prefix}:fix_attempt:{run_id}:{run_id}/1-2:1"
        app.client.set(key, "ghost (alongside earlier)")

    run = fix_run(root, tmp_path, parallel=3, sleep_s=SLEEP_S, batches=3, requested=stale_step)
    m2, m3 = batch_of(run, "m2"), batch_of(run, "m3")
    assert m2 == f"{run.state.run_id}/1-2"
    assert [p.batch_id for p in of(run, FixPrepared)] == [m3]
    (failure,) = [f for f in of(run, FixFailed) if f.batch_id == m2]
    assert "worker ghost (alongside earlier) died" in failure.reason
    assert runs_of(run, m2) == []  # never run: it may have been paid for already
    assert {c.batch_id for c in of(run, Committed)} == {batch_of(run, "m1"), m3}


def _planned(*batches: tuple[str, list[str], int]) -> tuple[Any, list[Any]]:
    """A run in ``fixing`` with the first of ``batches`` (id, files, priority) in flight; one
    issue per file and batch.  The state and the events, as the log would hold them."""
    issues = [
        IssueRecord(issue_id=f"{b}:{f}", fingerprint=f"{b}:{f}", tool="ruff", phase="lint", file=f)
        for b, files, _ in batches
        for f in files or [""]
    ]
    commands: list[Any] = [
        RequestRun(target="repo"),
        StartRun(base_sha="abc", branch="airfix/x"),
        RecordHealth(now=0.0),
        RecordIssues(issues=issues),
        *(
            PlanBatch(
                batch_id=b,
                phase="lint",
                issue_ids=[i.issue_id for i in issues if i.issue_id.startswith(f"{b}:")],
                files=files,
                priority=priority,
            )
            for b, files, priority in batches
        ),
        StartFix(batch_id=batches[0][0]),
    ]
    state, events = initial_state("run-x"), []
    for c in commands:
        new = stamp(decide(state, c), run_id="run-x", expected_version=state.version)
        state, events = fold(new, state), events + new
    return state, events


def test_companions_are_pending_disjoint_and_in_the_fixers_order() -> None:
    state, events = _planned(
        ("b1", ["a.py"], 1),
        ("b2", ["a.py", "b.py"], 2),  # shares a.py with the batch in flight
        ("b3", ["c.py"], 5),
        ("b4", ["d.py", "c.py"], 3),  # taken before b3 (priority), so b3 (c.py) is not
        ("b5", [], 4),  # no file named: it may touch anything
        ("b6", ["e.py"], 6),
    )
    view = iteration_view(events, state.iteration)
    current = view.batches["b1"]
    chosen = [b.batch_id for b, _ in companions(state, view, events, current, 8)]
    assert chosen == ["b4", "b6"]
    assert [b.batch_id for b, _ in companions(state, view, events, current, 2)] == ["b4"]
    assert companions(state, view, events, current, 1) == []
    # a batch already fixed ahead (its FixPrepared in the log) is not fixed again
    ahead = stamp(
        decide(state, PrepareFix(batch_id="b4", candidate="c0ffee")),
        run_id="run-x",
        expected_version=state.version,
    )
    state = fold(ahead, state)
    chosen = [b.batch_id for b, _ in companions(state, view, [*events, *ahead], current, 8)]
    assert chosen == ["b3", "b6"]
    # nothing goes alongside a batch that names no file
    state, events = _planned(("b1", [], 1), ("b2", ["a.py"], 2))
    view = iteration_view(events, state.iteration)
    assert companions(state, view, events, view.batches["b1"], 8) == []


def test_a_prepared_fix_is_legal_only_for_a_pending_batch() -> None:
    state, _ = _planned(("b1", ["a.py"], 1), ("b2", ["b.py"], 2))
    (ev,) = decide(state, PrepareFix(batch_id="b2", candidate="c0ffee"))
    assert isinstance(ev, FixPrepared) and ev.fixer == state.fixer
    after = fold(stamp([ev], run_id="run-x", expected_version=state.version), state)
    assert msgspec.structs.replace(after, version=state.version, updated_at=0.0) == (
        msgspec.structs.replace(state, updated_at=0.0)
    )  # the fold ignores it
    for batch in ("b1", "nope"):  # in flight, or not planned
        with pytest.raises(InvalidTransition, match="not pending"):
            decide(state, PrepareFix(batch_id=batch))


def test_parallel_is_a_bounded_count(tmp_path: Path) -> None:
    assert load_config(env={}).fixer.parallel == 1
    assert load_config(env={}, overrides={"fixer.parallel": 4}).fixer.parallel == 4
    for bad in (0, 33):
        with pytest.raises(ConfigError, match="parallel"):
            load_config(env={}, overrides={"fixer.parallel": bad})
