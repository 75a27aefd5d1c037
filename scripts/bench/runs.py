"""Realistic event logs for the store benchmarks: legal runs of every shape, and a log filled fast.

Why realistic: the store's cost per event depends on payload size and on how runs interleave, and
the strict state machine refuses illegal sequences, so the payloads follow a real run's path.
"""

from __future__ import annotations

import multiprocessing as mp
import random
from typing import Any

import redis

from airfix.events import stamp
from airfix.events.keys import Keys
from airfix.events.schema import (
    BatchPlanned,
    Committed,
    Event,
    FixApplied,
    FixFailed,
    FixRolledBack,
    FixStarted,
    HealthChecked,
    IssueRecord,
    IssuesDiscovered,
    IterationCompleted,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunRequested,
    RunStarted,
    ToolResult,
)
from airfix.events.storage.store import EventStore

PHASES = ("build", "test", "lint")


def run_payloads(
    run_id: str, rng: random.Random, *, iterations: int, batches: int, ending: str = "completed"
) -> list[Event]:
    """One legal run (for the strict state machine) with realistic payloads.

    ``ending``: "completed" (all iterations, then RunCompleted), "failed" (RunFailed right after
    the last iteration's health check), "cancelled" (RunCancelled after the last iteration's
    batches are planned) or "open" (no terminal event).
    """
    p: list[Event] = [
        RunRequested(
            target=f"/repos/{run_id}",
            batching="smart",
            fixer="autofix",
            requested_by="bench",
            config={"batch_sizes": {"lint_fixes": batches}},
        ),
        RunStarted(worker="bench-worker-1", base_sha="9f3c2a1b" * 5, branch=f"airfix/{run_id}"),
    ]
    commits = 0
    issues_before = 0
    for k in range(1, iterations + 1):
        n_issues = 2 * batches + rng.randrange(3)
        p.append(
            HealthChecked(
                iteration=k,
                score=round(0.4 + 0.5 * k / iterations, 3),
                parts={"build": 1.0, "test": 0.9, "lint": round(0.3 + 0.05 * k, 3)},
                tools=[
                    ToolResult(
                        tool="ruff",
                        status="failed",
                        version="0.6.9",
                        command=["ruff", "check", "."],
                        exit_status=1,
                        counts={"error": n_issues},
                        duration_s=0.8,
                    ),
                    ToolResult(
                        tool="pytest",
                        status="passed",
                        version="8.3.3",
                        command=["pytest", "-q"],
                        exit_status=0,
                        counts={"passed": 212, "failed": 0},
                        duration_s=14.2,
                    ),
                ],
            )
        )
        if ending == "failed" and k == iterations:
            p.append(RunFailed(reason="ruff crashed", status="tool_error", failed_tools=["ruff"]))
            return stamp(p, run_id=run_id, expected_version=0)
        issues = [
            IssueRecord(
                issue_id=f"{run_id}:{k}:i{n}",
                fingerprint=f"fp{k}{n:04d}",
                tool="ruff",
                phase=PHASES[n % 3],
                file=f"src/pkg/mod{n % 7}.py",
                line=10 + n,
                column=1,
                rule="F401",
                message="`os` imported but unused",
            )
            for n in range(n_issues)
        ]
        if k == 1:
            issues_before = n_issues
        p.append(IssuesDiscovered(iteration=k, issues=issues))
        ids = [f"{run_id}/i{k}/b{j}" for j in range(batches)]
        for j, b in enumerate(ids):
            mine = [i.issue_id for i in issues[2 * j : 2 * j + 2]]
            p.append(
                BatchPlanned(
                    iteration=k,
                    batch_id=b,
                    phase=PHASES[(j + k) % 3],
                    mode="smart",
                    issue_ids=mine,
                    priority=1 + j % 5,
                    description=f"F401 in src/pkg/mod{j}.py",
                    files=[f"src/pkg/mod{j}.py"],
                )
            )
        if ending == "cancelled" and k == iterations:
            p.append(RunCancelled(reason="operator request", requested_by="bench"))
            return stamp(p, run_id=run_id, expected_version=0)
        committed = rolled = failed = 0
        for b in ids:
            for attempt in (1, 2):
                p.append(FixStarted(batch_id=b, fixer="autofix", attempt=attempt, worker="w1"))
                r = rng.random()
                if r < 0.15:
                    p.append(
                        FixFailed(
                            batch_id=b,
                            fixer="autofix",
                            reason="fixer exited 1",
                            duration_s=3.1,
                            cost_usd=0.01,
                            turns=2,
                        )
                    )
                    failed += 1
                elif r < 0.3:
                    p.append(
                        FixApplied(
                            batch_id=b,
                            fixer="autofix",
                            files_changed=[f"{b}.py"],
                            duration_s=5.2,
                            cost_usd=0.02,
                            turns=3,
                        )
                    )
                    p.append(
                        FixRolledBack(
                            batch_id=b,
                            reason="tests regressed",
                            reset_to="9f3c2a1b",
                            regressions=["test_mod.py::t1"],
                        )
                    )
                    rolled += 1
                else:
                    p.append(
                        FixApplied(
                            batch_id=b,
                            fixer="autofix",
                            files_changed=[f"{b}.py"],
                            duration_s=4.7,
                            cost_usd=0.02,
                            turns=3,
                        )
                    )
                    commits += 1
                    committed += 1
                    p.append(
                        Committed(
                            batch_id=b,
                            sha=f"{commits:040x}",
                            message=f"fix {b}",
                            files=[f"{b}.py"],
                            counts_before={"lint": 9},
                            counts_after={"lint": 7},
                        )
                    )
                    break
                if rng.random() < 0.5:
                    break  # give up on this batch for this iteration
        p.append(
            IterationCompleted(
                iteration=k,
                committed=committed,
                rolled_back=rolled,
                failed=failed,
                score=round(0.5 + 0.4 * k / iterations, 3),
                issues_remaining=max(0, n_issues - 2 * committed),
                progress=committed > 0,
            )
        )
    if ending == "completed":
        p.append(
            RunCompleted(
                status="partially_fixed",
                reason=f"max iterations ({iterations})",
                issues_before=issues_before,
                issues_after=2,
                commits=commits,
            )
        )
    return stamp(p, run_id=run_id, expected_version=0)


def mixed_runs(prefix: str, total: int, seed: int) -> list[tuple[str, list[Event]]]:
    """Runs of varied shape (1-4 iterations, 2-5 batches, all endings) totalling >= ``total``."""
    rng = random.Random(seed)
    out: list[tuple[str, list[Event]]] = []
    n = 0
    i = 0
    while n < total:
        run_id = f"{prefix}-{i:06d}"
        ending = rng.choices(["completed", "failed", "cancelled", "open"], [75, 10, 10, 5])[0]
        evs = run_payloads(
            run_id, rng, iterations=rng.randint(1, 4), batches=rng.randint(2, 5), ending=ending
        )
        out.append((run_id, evs))
        n += len(evs)
        i += 1
    return out


def interleave(
    runs: list[tuple[str, list[Event]]], chunk: int, width: int, seed: int
) -> list[tuple[str, list[Event], int]]:
    """Append calls (run, events, expected_version) with ``width`` runs in flight at a time."""
    rng = random.Random(seed)
    pending = list(reversed(runs))
    active: list[list[Any]] = []
    calls: list[tuple[str, list[Event], int]] = []
    while pending or active:
        while pending and len(active) < width:
            run_id, evs = pending.pop()
            active.append([run_id, evs, 0])
        slot = active[rng.randrange(len(active))]
        run_id, evs, pos = slot
        calls.append((run_id, evs[pos : pos + chunk], pos))
        slot[2] = pos + chunk
        if slot[2] >= len(evs):
            active.remove(slot)
    return calls


def long_run(run_id: str, n: int, seed: int) -> list[Event]:
    """One legal run of exactly ``n`` events (truncated; no terminal event needed)."""
    rng = random.Random(seed)
    iterations = n // 12 + 2  # >= 12 events per iteration
    return run_payloads(run_id, rng, iterations=iterations, batches=3, ending="open")[:n]


def _fill_worker(url: str, prefix: str, k: int, quota: int, out: Any) -> None:
    """Append ``quota`` events as 20-iteration runs (the last one cut short); report the runs."""
    store = EventStore(redis.Redis.from_url(url), Keys(prefix=prefix))
    rng = random.Random(1000 + k)
    runs: list[tuple[str, int]] = []
    n = 0
    while n < quota:
        run_id = f"bench-replay-{k}-{len(runs):05d}"
        evs = run_payloads(run_id, rng, iterations=20, batches=3)[: quota - n]
        store.append(run_id, evs, 0)  # one call per run
        runs.append((run_id, len(evs)))
        n += len(evs)
    out.put(runs)


def fill_log(
    url: str, prefix: str, total: int, procs: int, timeout_s: float
) -> list[tuple[str, int]]:
    """``total`` events of 20-iteration runs appended through ``EventStore.append`` (one call per
    run) by ``procs`` processes at once, to keep a big setup short; returns (run, length) sorted."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    quotas = [total // procs + (1 if k < total % procs else 0) for k in range(procs)]
    workers = [
        ctx.Process(target=_fill_worker, args=(url, prefix, k, q, out))
        for k, q in enumerate(quotas)
    ]
    for w in workers:
        w.start()
    runs: list[tuple[str, int]] = []
    for _ in workers:
        runs += out.get(timeout=timeout_s)
    for w in workers:
        w.join(30)
        if w.exitcode != 0:
            raise SystemExit(f"log setup process failed (exit {w.exitcode})")
    return sorted(runs)
