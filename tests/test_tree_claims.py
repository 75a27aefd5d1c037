"""A worktree belongs to the process that holds its lock; a sweep removes the ones nobody holds.

The owners here are real processes: one is killed with SIGKILL (its trees are swept), one stays
alive and one is frozen with SIGSTOP (theirs are left alone), and this process's own tree too."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airfix.services.pipeline import claims
from airfix.services.pipeline.git import Repo, add_worktree, remove_worktree
from tests.pipeline_harness import MINI_FILES, git, make_repo

ROOT = Path(__file__).resolve().parents[1]
OWNER = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    from airfix.services.pipeline.git import Repo, add_worktree
    repo, sha, *trees = sys.argv[1:]
    for t in trees:
        add_worktree(Repo(Path(repo)), sha, Path(t))
    print("ready", flush=True)
    time.sleep(600)
""")


def tree_in(root: Path, run: str, name: str) -> Path:
    return root / "0123456789ab" / run / name


@pytest.fixture
def owners() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait(10)


def start_owner(
    procs: list[subprocess.Popen[str]], repo: Path, *trees: Path
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(repo), git(repo, "rev-parse", "HEAD").strip(),
         *map(str, trees)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    procs.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_killed_owners_trees_are_swept_and_a_live_or_frozen_owners_are_not(
    tmp_path: Path, owners: list[subprocess.Popen[str]]
) -> None:
    repo = make_repo(tmp_path, MINI_FILES)
    root = tmp_path / "ws"
    dead = [tree_in(root, "run-a", "fix-w1"), tree_in(root, "run-a", "check-w1")]
    alive, frozen = tree_in(root, "run-b", "fix-w2"), tree_in(root, "run-c", "fix-w3")
    mine = tree_in(root, "run-d", "fix-w4")
    killed = start_owner(owners, repo, *dead)
    start_owner(owners, repo, alive)
    start_owner(owners, repo, frozen).send_signal(signal.SIGSTOP)
    add_worktree(Repo(repo), "HEAD", mine)
    assert all(
        (t / ".git").is_file() and claims.lock_path(t).is_file() for t in [*dead, alive, frozen]
    )
    assert claims.orphans(root) == []  # every owner is alive
    assert claims.sweep(root) == []
    assert len(git(repo, "worktree", "list").splitlines()) == 6

    killed.kill()
    killed.wait(10)
    assert claims.orphans(root) == sorted(dead)
    assert all(t.is_dir() for t in dead)  # orphans() changes nothing
    assert claims.sweep(root) == sorted(dead)
    assert not (root / "0123456789ab" / "run-a").exists()  # the run's directory went with them
    assert all(t.is_dir() for t in (alive, frozen, mine))
    listed = git(repo, "worktree", "list")
    assert len(listed.splitlines()) == 4 and not any(str(t) in listed for t in dead)
    assert claims.sweep(root) == []

    remove_worktree(Repo(repo), mine)  # its owner removes it: the lock goes with it
    assert not claims.lock_path(mine).exists() and not mine.parent.exists()
    assert mine not in claims.held()


def test_the_sweep_touches_only_the_layouts_trees(tmp_path: Path) -> None:
    """Clones, a directory that is not a worktree, files of other shapes: not airfix's trees."""
    root = tmp_path / "ws"
    clone_file = root / "clones" / "0123456789abcdef.git" / "objects" / "x" / "y"
    not_a_tree = tree_in(root, "run-a", "notes") / "keep.txt"
    odd = root / "not-a-digest" / "run-a" / "fix-w1" / ".git"
    for f in (clone_file, not_a_tree, odd):
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("gitdir: /nowhere\n")
    assert claims.sweep(root) == [] and claims.orphans(root) == []
    assert all(f.is_file() for f in (clone_file, not_a_tree, odd))
    assert claims.sweep(tmp_path / "absent") == []


def test_a_tree_without_a_lock_is_swept_only_once_it_is_old(tmp_path: Path) -> None:
    """A tree made before trees had locks: its owner cannot be known, so only age tells."""
    repo = make_repo(tmp_path, MINI_FILES)
    root = tmp_path / "ws"
    young, old = tree_in(root, "run-a", "fix-w1"), tree_in(root, "run-b", "fix-w1")
    for t in (young, old):
        t.parent.mkdir(parents=True)
        git(repo, "worktree", "add", "-q", "--detach", str(t), "HEAD")
    then = time.time() - claims.STALE_S - 60
    os.utime(old, (then, then))
    assert claims.sweep(root) == [old]
    assert young.is_dir() and not old.exists() and not claims.lock_path(old).exists()
    assert str(old) not in git(repo, "worktree", "list")


def test_empty_run_and_target_directories_are_swept(tmp_path: Path) -> None:
    """A run's directory goes with its last tree, its target's with its last run: a sweep removes
    the empty ones such removals left behind, and nothing that holds a file."""
    empty_target = tmp_path / "0123456789ab"
    empty_run = tmp_path / "ba9876543210" / "run-a"
    kept = tmp_path / "aaaaaaaaaaaa" / "run-b" / "fix-w1.lock"
    for d in (empty_target, empty_run, kept.parent):
        d.mkdir(parents=True)
    fd = os.open(kept, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a live owner, between claiming and making its tree
        assert claims.sweep(tmp_path) == []
    finally:
        os.close(fd)
    assert not empty_target.exists() and not empty_run.parent.exists()
    assert kept.is_file()


def test_a_lock_left_without_its_tree_is_swept(tmp_path: Path) -> None:
    """An owner killed between removing its tree and unlinking the lock leaves a lock file."""
    lock = claims.lock_path(tree_in(tmp_path, "run-a", "fix-w1"))
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    assert claims.sweep(tmp_path) == [lock.with_name("fix-w1")]
    assert not lock.exists() and not (tmp_path / "0123456789ab").exists()
