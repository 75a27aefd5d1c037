"""A worker frozen past its lease cannot change what others see (real workers, real server).

For each step with effects outside Redis a worker is frozen with SIGSTOP at that step (the
fixer mid-fix, the verifier before and after its git commit, the manager at the start), another
worker finishes the run, then the frozen one is woken.  Afterwards: every Committed sha is on the
run branch and the branch is exactly the recorded commits, no Airfix-Batch trailer appears twice,
each commit's content is its own batch's (its trailer matches its event), the run is terminal,
the user's checkout is clean and untouched, and no worktree is left behind.

Freezing at a precise point uses the repository's own hooks, as a user's could be: a
``pre-commit`` / ``post-commit`` / ``reference-transaction`` hook that stops the airfix worker
process above it (found through the process tree) once, when that worker's environment names a
marker file that does not exist yet.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airfix.projections.report import on_branch
from airfix.projections.status import load_status
from airfix.services.pipeline.requests import request_run
from tests.conftest import REAL_URL, real_client
from tests.pipeline_harness import (
    events_of,
    git,
    head,
    make_config,
    make_repo,
    registered,
    server_app,
)
from tests.pipeline_harness.cheats import SlowFixer
from tests.pipeline_harness.workers import (
    Workers,
    new_prefix,
    slowfix_starts,
    wait_for,
    worker_pool,
)

pytestmark = pytest.mark.fault

FREEZE_ENV = "HARNESS_FREEZE_MARKER"
# stop the worker (the python process running git) once; then git and the hook go on as usual
HOOK = f"""#!/bin/sh
[ -n "${FREEZE_ENV}" ] || exit 0
[ -e "${FREEZE_ENV}" ] && exit 0
{{WHEN}}
pid=$PPID
while [ "$pid" -gt 1 ]; do
  if tr '\\0' ' ' < /proc/$pid/cmdline | grep -q -- '--roles'; then
    echo "$pid" > "${FREEZE_ENV}.tmp" && mv "${FREEZE_ENV}.tmp" "${FREEZE_ENV}"  # seen whole
    kill -STOP "$pid"
    exit 0
  fi
  pid=$(awk '{{print $4}}' /proc/$pid/stat)
done
exit 0
"""


@pytest.fixture
def prefix() -> Iterator[str]:
    yield from new_prefix()


@pytest.fixture
def workers(tmp_path: Path, prefix: str) -> Iterator[Workers]:
    yield from worker_pool(tmp_path, prefix)


def install_hook(repo: Path, name: str, when: str = "") -> None:
    hook = repo / ".git" / "hooks" / name
    hook.write_text(HOOK.replace("{WHEN}", when))
    hook.chmod(0o755)


def assert_fenced(repo: Path, app, run_id: str, base: str) -> None:  # type: ignore[no-untyped-def]
    status = load_status(app.client, app.keys, run_id)
    assert status and status["state"] == "completed", status
    committed = on_branch(events_of(app, run_id))  # committed there, or landed with a stack
    run_branch = f"refs/heads/airfix/{run_id}"
    branch_shas = git(repo, "rev-list", "--reverse", f"{base}..{run_branch}").split()
    assert branch_shas == [e.sha for e in committed], (
        "the run branch is not exactly the recorded commits"
    )
    trailers = [
        git(repo, "log", "-1", "--format=%(trailers:key=Airfix-Batch,valueonly)", sha).strip()
        for sha in branch_shas
    ]
    assert len(trailers) == len(set(trailers)), trailers
    assert trailers == [e.batch_id for e in committed], "a commit carries another batch's trailer"
    for e in committed:  # each commit's content is its batch's: the files its event names
        changed = sorted(
            git(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", e.sha).split()
        )
        assert changed == sorted(e.files), (e.batch_id, changed, e.files)
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert head(repo) == base and git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert len(git(repo, "worktree", "list").splitlines()) == 1, git(repo, "worktree", "list")


def finished(app, run_id: str, workers: Workers):  # type: ignore[no-untyped-def]
    def check():  # type: ignore[no-untyped-def]
        status = load_status(app.client, app.keys, run_id)
        if status and status["halted"]:
            pytest.fail(f"run halted: {status['halted']}\n{workers.logs()}")
        return status if status and status["state"] == "completed" else None

    return check


COMMITTED = '[ "$1" = committed ] || exit 0'
REFUSALS = (
    "another worker took this step first",
    "the run moved on during this step; its result is dropped",
)


@pytest.mark.parametrize(
    ("hook", "when", "verify"),
    [
        ("pre-commit", "", "batch"),  # the verifier, before its commit
        (
            "post-commit",
            "",
            "batch",
        ),  # the verifier, after its commit, before its append and branch move
        ("post-commit", "", "stack"),  # the verifier, its commit staged on the iteration's stack
        # the manager, run branch made (its step is the same in both verify modes)
        ("reference-transaction", COMMITTED, "batch"),
    ],
)
def test_a_frozen_step_changes_nothing_others_see(
    tmp_path: Path, prefix: str, workers: Workers, hook: str, when: str, verify: str
) -> None:
    repo = make_repo(tmp_path)
    base = head(repo)
    install_hook(repo, hook, when)
    marker = tmp_path / "frozen"
    mode = {"AIRFIX__FIXER__VERIFY": verify}
    first = workers.start("a", **{FREEZE_ENV: str(marker)}, **mode)
    app = server_app(REAL_URL, make_config(**{"store.redis_url": REAL_URL, "store.prefix": prefix}))
    run_id = request_run(
        app,
        app.config,
        repo,
        batching="individual",
        fixer="autofix",
        simulation=False,
        max_iterations=1,
    )
    wait_for(f"worker a to freeze in {hook}", marker.exists, 120, workers)
    assert int(marker.read_text()) == first.pid
    workers.start("b", **mode)
    wait_for("worker b to finish the run", finished(app, run_id, workers), 300, workers)
    first.send_signal(signal.SIGCONT)

    def refused() -> bool:  # its result was refused, or dropped once it saw the run move on
        woken = workers.tail("a", 200_000)
        return any(m in woken for m in REFUSALS)

    # the woken worker finishes its stale step, or tries to: how long that takes depends on
    # the machine's load, so the test waits for the refusal itself, not a fixed time
    wait_for("worker a to find its step taken", refused, 120, workers)
    assert workers.stop("a") == 0, workers.tail("a")
    assert workers.stop("b") == 0, workers.tail("b")
    assert_fenced(repo, app, run_id, base)


def test_a_fixer_frozen_mid_fix_is_never_paid_twice_and_changes_nothing(
    tmp_path: Path, prefix: str, workers: Workers
) -> None:
    client = real_client()
    repo = make_repo(tmp_path)
    base = head(repo)
    key = f"harness:{prefix}:slowfix_started"
    slow = {"HARNESS_SLOWFIX_DELAY_S": "4", "HARNESS_SLOWFIX_KEY": key}
    first = workers.start("a", harness=True, **slow)
    app = server_app(REAL_URL, make_config(**{"store.redis_url": REAL_URL, "store.prefix": prefix}))
    with registered("slowfix", SlowFixer):
        run_id = request_run(
            app,
            app.config,
            repo,
            batching="smart",
            fixer="slowfix",
            simulation=False,
            max_iterations=1,
        )
    wait_for("the fixer to start in a", lambda: int(client.get(key) or 0) >= 1, 120, workers)
    os.kill(first.pid, signal.SIGSTOP)
    frozen_batch = slowfix_starts(client, key)[0][1]
    workers.start("b", harness=True, **slow)
    wait_for("worker b to finish the run", finished(app, run_id, workers), 300, workers)
    first.send_signal(signal.SIGCONT)
    time.sleep(8)  # its fixer wakes, edits its own worktree, and its result is refused
    assert workers.stop("a") == 0, workers.tail("a")
    assert workers.stop("b") == 0, workers.tail("b")
    starts = slowfix_starts(client, key)
    assert [b for _, b in starts].count(frozen_batch) == 1, starts  # never paid for twice
    assert_fenced(repo, app, run_id, base)
    client.close()
