"""Worktrees parked between a run's steps: taken back as a fresh one would be, and removed when
their run ends, when idle, or when the process exits."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from airfix.services.pipeline.git import Repo
from airfix.services.pipeline.parked import Parked


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def make_repo(root: Path) -> tuple[Repo, str, str]:
    """A repository with two commits: ``a.py`` changes between them, ``same.py`` does not."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "t")
    git(root, "config", "user.email", "t@t")
    (root / ".gitignore").write_text("*.log\n")
    (root / "a.py").write_text("x = 1\n")
    (root / "same.py").write_text("y = 2\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "one")
    first = git(root, "rev-parse", "HEAD").strip()
    (root / "a.py").write_text("x = 10\n")
    git(root, "commit", "-qam", "two")
    return Repo(root), first, git(root, "rev-parse", "HEAD").strip()


def trees(repo: Repo) -> int:
    return len(git(repo.path, "worktree", "list").splitlines()) - 1


def test_a_parked_tree_is_taken_back_as_a_fresh_one_writing_only_what_differs(
    tmp_path: Path,
) -> None:
    repo, first, second = make_repo(tmp_path / "repo")
    pool = Parked()
    where = tmp_path / "ws" / "run-1" / "fix-w"
    with pool.tree(repo, first, where) as wt:
        unchanged = (wt.path / "same.py").stat().st_ino
        (wt.path / "same.py").write_text("edited\n")  # a step's leftovers, of every kind
        (wt.path / "new.py").write_text("new\n")
        (wt.path / "debug.log").write_text("ignored\n")
        wt.git("add", "new.py")
        wt.git("commit", "-qm", "made in the tree")
    assert pool.paths() == [where] and trees(repo) == 1
    with pool.tree(repo, second, where) as wt:
        assert wt.path == where and wt.head() == second
        assert (wt.path / "a.py").read_text() == "x = 10\n"
        assert (wt.path / "same.py").read_text() == "y = 2\n"
        assert not (wt.path / "new.py").exists() and not (wt.path / "debug.log").exists()
        assert wt.git("status", "--porcelain", "--ignored") == ""
    with pool.tree(repo, second, where) as wt:  # nothing differs: no file is written again
        before = (wt.path / "same.py").stat().st_ino
        assert before != unchanged  # the edit above replaced it; from now on it stays
    with pool.tree(repo, first, where) as wt:
        assert (wt.path / "same.py").stat().st_ino == before
        assert (wt.path / "a.py").read_text() == "x = 1\n"
    assert trees(repo) == 1


def test_trees_go_when_their_run_ends_with_the_run_directory(tmp_path: Path) -> None:
    repo, first, _ = make_repo(tmp_path / "repo")
    pool = Parked()
    runs = tmp_path / "ws"
    for run, slot in (("run-1", "fix-w"), ("run-1", "verify-w"), ("run-2", "fix-w")):
        with pool.tree(repo, first, runs / run / slot):
            pass
    assert trees(repo) == 3
    assert pool.release_run("run-1") == 2
    assert not (runs / "run-1").exists() and trees(repo) == 1
    assert pool.paths() == [runs / "run-2" / "fix-w"]
    assert pool.release_run("run-1") == 0
    pool.close()
    assert pool.paths() == [] and trees(repo) == 0 and list(runs.iterdir()) == []


def test_idle_trees_are_removed_when_another_is_parked(tmp_path: Path) -> None:
    repo, first, _ = make_repo(tmp_path / "repo")
    pool = Parked()
    a, b = tmp_path / "ws" / "run-1" / "a", tmp_path / "ws" / "run-2" / "b"
    with pool.tree(repo, first, a, keep_s=0.01):
        pass
    time.sleep(0.05)
    with pool.tree(repo, first, b):
        pass
    assert pool.paths() == [b] and not a.exists() and trees(repo) == 1
    with pool.tree(repo, first, b, keep_s=0):  # kept no time at all: removed at once
        pass
    assert pool.paths() == [] and trees(repo) == 0


def test_a_tree_broken_while_parked_is_made_again(tmp_path: Path) -> None:
    repo, first, second = make_repo(tmp_path / "repo")
    outer = tmp_path / "outer"  # the workspace inside another repository, with work of its own
    outer.mkdir()
    git(outer, "init", "-q")
    (outer / "precious.txt").write_text("untracked work\n")
    pool = Parked()
    where = outer / "ws" / "run-1" / "fix-w"
    with pool.tree(repo, first, where):
        pass
    git(repo.path, "worktree", "remove", "--force", str(where))  # as a clean-up from outside
    where.mkdir(parents=True)  # and something else at its path
    with pool.tree(repo, second, where) as wt:
        assert wt.head() == second and (wt.path / "a.py").read_text() == "x = 10\n"
    assert trees(repo) == 1
    assert (outer / "precious.txt").exists()  # never cleaned as if it were the tree
    pool.close()
    assert trees(repo) == 0
