"""The fix pipeline hosted by ``airfix worker`` processes on the real server.

Every test works under a key prefix of its own (``AIRFIX__STORE__PREFIX``) on ``REAL_URL``, so
other tests sharing the database neither see its runs nor disturb them; its keys are deleted
afterwards.  Workers run with a 2 s lease, so a dead worker's partitions move within seconds.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from airfix.events.schema import FixFailed, FixStarted, RunStarted
from airfix.projections.report import on_branch
from airfix.projections.status import load_status
from airfix.services.pipeline.requests import request_run
from tests.conftest import REAL_URL, real_client
from tests.pipeline_harness import (
    branch,
    events_of,
    git,
    head,
    make_config,
    make_repo,
    registered,
    server_app,
    status_porcelain,
)
from tests.pipeline_harness.cheats import SlowFixer
from tests.pipeline_harness.workers import (
    Workers,
    assert_commits_match_events,
    cli,
    new_prefix,
    slowfix_starts,
    wait_for,
    worker_pool,
)


@pytest.fixture
def prefix() -> Iterator[str]:
    yield from new_prefix()


@pytest.fixture
def workers(tmp_path: Path, prefix: str) -> Iterator[Workers]:
    yield from worker_pool(tmp_path, prefix)


# 9 -------------------------------------------------------------------------------------------


def test_two_workers_host_a_run_that_the_cli_waits_for(
    tmp_path: Path, prefix: str, workers: Workers
) -> None:
    repo = make_repo(tmp_path)
    base = head(repo)
    for name in ("w1", "w2"):
        workers.start(name)
    proc = cli(
        [
            "run",
            "--redis-url",
            REAL_URL,
            "--target",
            str(repo),
            "--max-iterations",
            "1",
            "--json",
            "--wait-timeout",
            "240",
        ],
        prefix,
        timeout=300,
    )
    assert proc.returncode == 3, f"{proc.stdout}\n{proc.stderr[-3000:]}\n{workers.logs()}"
    lines = proc.stdout.strip().splitlines()
    assert 1 == len(lines), proc.stdout
    report = json.loads(lines[0])
    run_id = report["run_id"]
    assert ("completed", "partially_fixed") == (report["state"], report["status"]), report["reason"]
    assert 2 == len(report["commits"])

    app = server_app(REAL_URL, make_config(**{"store.redis_url": REAL_URL, "store.prefix": prefix}))
    events = events_of(app, run_id)
    hosts = {e.worker for e in events if isinstance(e, (RunStarted, FixStarted))}
    assert hosts and hosts <= {"w1", "w2"}, hosts  # the workers did the work, not the CLI process
    run_branch = f"airfix/{run_id}"
    assert run_branch == branch(repo) and "" == status_porcelain(repo)
    assert_commits_match_events(repo, base, run_branch, on_branch(events))
    assert base == git(repo, "rev-parse", "refs/heads/main").strip()

    status = cli(["status", run_id, "--json", "--redis-url", REAL_URL], prefix, timeout=60)
    assert 0 == status.returncode, status.stderr
    st = json.loads(status.stdout)
    assert (run_id, "completed", "partially_fixed") == (st["run_id"], st["state"], st["status"])
    assert [c["sha"] for c in report["commits"]] == st["commits"] and {} == st["halted"]
    latest = cli(
        ["status", "--json", "--redis-url", REAL_URL], prefix, timeout=60
    )  # the latest run
    assert 0 == latest.returncode and run_id == json.loads(latest.stdout)["run_id"]
    runs = cli(["runs", "--json", "--redis-url", REAL_URL], prefix, timeout=60)
    assert 0 == runs.returncode, runs.stderr
    rows = json.loads(runs.stdout)
    assert [run_id] == [r["run_id"] for r in rows]
    assert "partially_fixed" == rows[0]["status"] and str(repo) == rows[0]["target"]

    for name in ("w1", "w2"):
        assert 0 == workers.stop(name), workers.tail(name)


# 10 ------------------------------------------------------------------------------------------


def test_a_worker_killed_mid_fix_is_replaced_and_the_run_completes(
    tmp_path: Path, prefix: str, workers: Workers
) -> None:
    client = real_client()
    repo = make_repo(tmp_path)
    base = head(repo)
    started_key = f"harness:{prefix}:slowfix_started"
    slow = {"HARNESS_SLOWFIX_DELAY_S": "2", "HARNESS_SLOWFIX_KEY": started_key}
    first = workers.start("h1", harness=True, **slow)

    app = server_app(REAL_URL, make_config(**{"store.redis_url": REAL_URL, "store.prefix": prefix}))
    with registered("slowfix", SlowFixer):  # request_run checks the fixer chain here, too
        run_id = request_run(
            app,
            app.config,
            repo,
            batching="smart",
            fixer="slowfix",
            simulation=False,
            max_iterations=1,
        )

    wait_for("slowfix to start in h1", lambda: int(client.get(started_key) or 0) >= 1, 120, workers)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert -signal.SIGKILL == first.returncode
    killed_in = slowfix_starts(client, started_key)
    assert 1 == len(killed_in) and str(first.pid) == killed_in[0][0]
    killed_batch = killed_in[0][1]
    assert head(repo) == base  # it died before anything was committed

    left = [p for p in workers.workspace.glob("*/*/*") if p.name.endswith("-h1")]
    assert left, "h1 died in a step: its worktree is still there"

    second = workers.start("h2", harness=True, **slow)

    def finished():  # type: ignore[no-untyped-def]
        status = load_status(app.client, app.keys, run_id)
        if status and status["halted"]:
            pytest.fail(f"run halted: {status['halted']}\n{workers.logs()}")
        return status if status and status["state"] == "completed" else None

    status = wait_for("the run to complete on h2", finished, 240, workers)
    assert "partially_fixed" == status["status"], status["reason"]

    starts = slowfix_starts(client, started_key)
    assert (str(first.pid), killed_batch) == starts[0]
    # the interrupted fix is never paid for twice: h2 records it as failed and goes on
    assert killed_batch not in {b for _, b in starts[1:]}, starts
    assert all(pid == str(second.pid) for pid, _ in starts[1:])

    events = events_of(app, run_id)
    fix_starts = [e for e in events if isinstance(e, FixStarted)]
    assert len({e.batch_id for e in fix_starts}) == len(fix_starts), "a batch was started twice"
    assert next(e for e in fix_starts if e.batch_id == killed_batch).worker == "h1"
    failed = [e for e in events if isinstance(e, FixFailed) and e.batch_id == killed_batch]
    assert 1 == len(failed) and "died while fixing" in failed[0].reason
    committed = on_branch(events)
    assert killed_batch not in {e.batch_id for e in committed}
    assert committed, "the other batches were still fixed and committed"
    run_branch = f"airfix/{run_id}"
    # the workers never touch the checkout (steps use worktrees); only a requester finalizes it
    assert "main" == branch(repo) and "" == status_porcelain(repo)
    assert_commits_match_events(repo, base, run_branch, committed)
    assert [e.sha for e in committed] == status["commits"]
    # h2 removed what h1 could not as it started (h1's locks were free), and its own as it ended
    assert not any(p.exists() for p in left), left
    assert 0 == workers.stop("h2"), workers.tail("h2")
    assert not list(workers.workspace.glob("*/*/*")), list(workers.workspace.rglob("*"))[:20]
    assert 1 == len(git(repo, "worktree", "list").splitlines())
    with contextlib.suppress(Exception):
        client.close()
