"""Tools and fixers run below the worker's CPU priority (``consumers.child_niceness``), so a busy
machine delays them, not the worker's leases, projections and steps.  Each child reports its own
niceness, as the kernel sees it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airfix.services import process
from airfix.services.process import run_process, set_child_niceness, stream_process

# the child asks after a moment: its niceness is set just after it starts
REPORT = "import os, time; time.sleep(0.2); print(os.getpriority(os.PRIO_PROCESS, 0))"
NESTED = (
    "import subprocess, sys, time; time.sleep(0.2); "
    f"subprocess.run([sys.executable, '-c', {REPORT!r}])"
)


@pytest.fixture(autouse=True)
def _restore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "_child_niceness", process._child_niceness)


def own() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


def test_children_run_the_configured_steps_below_the_worker(tmp_path: Path) -> None:
    set_child_niceness(5)

    captured = run_process([sys.executable, "-c", REPORT], tmp_path, 30)
    lines: list[str] = []
    streamed = stream_process(
        [sys.executable, "-c", REPORT],
        tmp_path,
        timeout_s=30,
        idle_timeout_s=30,
        on_line=lambda line: lines.append(line),
    )

    expected = min(own() + 5, 19)
    assert int(captured.stdout) == expected, captured
    assert [int(x) for x in lines if x.strip()] == [expected], (lines, streamed)


def test_what_a_child_starts_inherits_its_priority(tmp_path: Path) -> None:
    set_child_niceness(7)

    done = run_process([sys.executable, "-c", NESTED], tmp_path, 30)

    assert int(done.stdout) == min(own() + 7, 19), done


AUTOGROUP = re.compile(r"^(/autogroup-\d+) nice (-?\d+)$")
# the child reads its group until its niceness is set (just after it starts) or 10 s have passed
READ_GROUP = (
    "import pathlib, time\n"
    "path, seen = pathlib.Path('/proc/self/autogroup'), ''\n"
    "for _ in range(200):\n"
    "    seen = path.read_text().strip() if path.exists() else ''\n"
    "    if not seen.endswith(' nice 0'):\n"
    "        break\n"
    "    time.sleep(0.05)\n"
    "print(seen)\n"
)


def autogroup(text: str) -> tuple[str, int] | None:
    """``(group, niceness)`` from ``/proc/<pid>/autogroup``, or None where the kernel shows none
    (no file, or an empty one, as some sandboxed kernels have)."""
    found = AUTOGROUP.match(text.strip())
    return (found[1], int(found[2])) if found else None


def test_a_childs_session_ranks_at_its_niceness_where_the_kernel_groups_by_session(
    tmp_path: Path,
) -> None:
    """A child has a session of its own (its group is stopped as one); with autogroup on, that
    session is a scheduling group whose own niceness ranks it against the worker's, so it gets
    the child's niceness too.  Without autogroup there is nothing to set, and nothing fails."""
    set_child_niceness(6)
    path = Path("/proc/self/autogroup")

    done = run_process([sys.executable, "-c", READ_GROUP], tmp_path, 30)

    assert done.exit_code == 0, done
    mine = autogroup(path.read_text()) if path.exists() else None
    theirs = autogroup(done.stdout)
    if theirs is None:
        assert mine is None, done  # the kernel groups nothing here
        return
    # some kernels show the worker's group empty and the child's in full: the child's is what counts
    if mine is not None:
        assert theirs[0] != mine[0], done  # a group of its own: its session's
    assert theirs[1] == min(own() + 6, 19), done


def test_zero_leaves_children_at_the_workers_priority(tmp_path: Path) -> None:
    set_child_niceness(0)

    done = run_process([sys.executable, "-c", REPORT], tmp_path, 30)

    assert int(done.stdout) == own(), done


def test_a_worker_starts_its_fixer_at_the_configured_niceness(tmp_path: Path) -> None:
    """A real ``airfix worker`` on the real server hosts a run whose ``command`` fixer writes its
    own niceness down: the worker's plus ``consumers.child_niceness``."""
    from tests.conftest import REAL_URL
    from tests.pipeline_harness.workers import new_prefix, worker_env, worker_pool

    target = tmp_path / "proj"
    (target / "pkg").mkdir(parents=True)
    (target / "pyproject.toml").write_text('[project]\nname = "pkg"\nversion = "0"\n')
    (target / "pkg" / "__init__.py").write_text("import os\n")
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *cmd], cwd=target,
                       check=True)  # fmt: skip
    seen = tmp_path / "niceness"
    fixer = f"ps -o ni= -p $$ > {seen} && sed -i '/^import os$/d' pkg/__init__.py"
    prefixes = new_prefix()
    prefix = next(prefixes)
    pool = worker_pool(tmp_path, prefix)
    workers = next(pool)
    try:
        command = repr(["sh", "-c", fixer])  # checked by the requester, run by the worker
        workers.start("nice", AIRFIX__CONSUMERS__CHILD_NICENESS="6", AIRFIX__FIXER__COMMAND=command)
        proc = subprocess.run(
            [sys.executable, "-m", "airfix.services.commands.cli", "run", "--redis-url", REAL_URL,
             "--target", str(target), "--fixer", "command", "--max-iterations", "1", "--json",
             "--wait-timeout", "300"],
            env=worker_env(prefix, AIRFIX__FIXER__COMMAND=command),
            cwd=tmp_path, capture_output=True, text=True, timeout=400, check=False,
        )  # fmt: skip
        assert seen.exists(), f"{proc.stdout}{proc.stderr[-2000:]}\n{workers.logs()}"
        worker = workers.procs["nice"].pid
        assert int(seen.read_text()) == min(os.getpriority(os.PRIO_PROCESS, worker) + 6, 19)
    finally:
        next(pool, None)
        next(prefixes, None)
