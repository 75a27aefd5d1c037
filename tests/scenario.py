"""Realistic runs appended straight to a store, for projection and runtime tests."""

from __future__ import annotations

from airfix.events import stamp
from airfix.events.schema import (
    BatchPlanned,
    Committed,
    Event,
    FixApplied,
    FixFailed,
    FixStarted,
    HealthChecked,
    IssueRecord,
    IssuesDiscovered,
    IterationCompleted,
    RunCompleted,
    RunRequested,
    RunStarted,
    ToolResult,
)
from airfix.events.storage.store import EventStore


def run_events(run_id: str, *, finish: bool = True) -> list[Event]:
    """One legal run: check, plan three batches, commit one, fail one, finish the iteration."""
    issues = [
        IssueRecord(
            issue_id=f"{run_id}-i{n}",
            fingerprint=f"fp{n}",
            tool="ruff",
            phase="lint" if n else "build",
            file=f"pkg/m{n}.py",
            line=n + 1,
            rule="F401",
        )
        for n in range(5)
    ]
    payloads: list[Event] = [
        RunRequested(target=f"/repos/{run_id}"),
        RunStarted(worker="w1", base_sha="abc"),
        HealthChecked(
            iteration=1,
            tools=[ToolResult(tool="ruff", status="failed", counts={"error": 5})],
            score=0.5,
            parts={"lint": 0.5},
        ),
        IssuesDiscovered(iteration=1, issues=issues),
        BatchPlanned(
            iteration=1,
            batch_id=f"{run_id}/b1",
            phase="build",
            mode="smart",
            issue_ids=[issues[0].issue_id],
            priority=1,
        ),
        BatchPlanned(
            iteration=1,
            batch_id=f"{run_id}/b2",
            phase="lint",
            mode="smart",
            issue_ids=[i.issue_id for i in issues[1:3]],
            priority=3,
        ),
        BatchPlanned(
            iteration=1,
            batch_id=f"{run_id}/b3",
            phase="lint",
            mode="smart",
            issue_ids=[i.issue_id for i in issues[3:]],
            priority=5,
        ),
        FixStarted(batch_id=f"{run_id}/b2", fixer="autofix"),
        FixApplied(batch_id=f"{run_id}/b2", fixer="autofix", files_changed=["pkg/m1.py"]),
        Committed(
            batch_id=f"{run_id}/b2",
            sha="def",
            files=["pkg/m1.py"],
            counts_before={"lint": 4},
            counts_after={"lint": 2},
        ),
        FixStarted(batch_id=f"{run_id}/b1", fixer="autofix"),
        FixFailed(batch_id=f"{run_id}/b1", fixer="autofix", reason="fixer exited 1"),
    ]
    if finish:
        payloads += [
            IterationCompleted(
                iteration=1, committed=1, failed=1, score=0.7, issues_remaining=3, progress=True
            ),
            RunCompleted(
                status="partially_fixed",
                reason="max iterations (1) reached",
                issues_before=5,
                issues_after=3,
                commits=1,
            ),
        ]
    return stamp(payloads, run_id=run_id, expected_version=0)


def append_run(
    store: EventStore, run_id: str, *, finish: bool = True, chunk: int = 3
) -> list[Event]:
    events = run_events(run_id, finish=finish)
    for i in range(0, len(events), chunk):
        store.append(run_id, events[i : i + chunk], i)
    return events
