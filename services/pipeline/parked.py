"""Worktrees kept between a run's steps in one process, so each step does not write a new one.

Why: making a worktree writes every file of the project, and on some disks that costs more than
the step that uses it (800 files: 0.05 s to 0.7 s on one disk, by directory and moment; a run
of 20 batches makes some 60 of them).  When a step ends its tree is parked; the next step of the
same run asking for the same path (the path names the run, the slot and the worker) takes it
back, moved to its commit as a fresh one would be (:meth:`Repo.move_to`: HEAD detached there,
untracked and ignored files removed), which writes only the files that differ.

A parked tree is as private as one in use: its path names this worker, so a stale worker's
parked tree is seen by no one.  Parked trees are removed when their run ends
(:meth:`Parked.release_run`, called as the workers see its last event), when they have been
idle for ``git.keep_worktrees_s`` (checked whenever a tree is parked) and when the process exits.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airfix.config import GitConfig
from airfix.services.pipeline.git import GitError, Repo, add_worktree, borrow, remove_worktree
from airfix.services.runtime.logs import get_logger

log = get_logger("airfix.parked")

#: how long a parked tree waits for its run's next step before it is removed: the default of
#: ``git.keep_worktrees_s`` (a pipeline passes its configured value)
IDLE_S = GitConfig().keep_worktrees_s


class Parked:
    """This process's parked worktrees, by path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # path -> (its repository, until when it is kept)
        self._trees: dict[Path, tuple[Repo, float]] = {}
        self._hooked = False

    @contextmanager
    def tree(self, repo: Repo, sha: str, path: Path, keep_s: float = IDLE_S) -> Iterator[Repo]:
        """A private worktree of ``repo`` at ``sha`` at ``path``: the one parked there, moved to
        ``sha``, or a new one; parked again afterwards for ``keep_s`` seconds (0: removed)."""
        wt = self._take(repo, sha, path) or add_worktree(repo, sha, path)
        try:
            yield wt
        finally:
            if keep_s > 0:
                self._park(repo, path, keep_s)
            else:
                remove_worktree(repo, path)

    def paths(self) -> list[Path]:
        with self._lock:
            return sorted(self._trees)

    def release_run(self, run_id: str) -> int:
        """Remove the parked trees of run ``run_id`` (it has ended); how many there were."""
        with self._lock:
            gone = [(p, r) for p, (r, _) in self._trees.items() if p.parent.name == run_id]
            for p, _ in gone:
                del self._trees[p]
        self._remove(gone)
        return len(gone)

    def close(self) -> None:
        """Remove every parked tree (the process is exiting)."""
        with self._lock:
            gone = [(p, r) for p, (r, _) in self._trees.items()]
            self._trees.clear()
        self._remove(gone)

    def _take(self, repo: Repo, sha: str, path: Path) -> Repo | None:
        with self._lock:
            entry = self._trees.pop(path, None)
        if entry is None:
            return None
        if entry[0].path != repo.path or not (path / ".git").is_file():  # not a worktree now
            remove_worktree(entry[0], path)
            return None
        wt = Repo(path)
        try:
            wt.move_to(sha)
        except GitError as exc:  # broken (its repository pruned it, a clone evicted): a new one
            log.info("parked worktree unusable; making a new one", path=str(path), error=str(exc))
            remove_worktree(repo, path)
            return None
        borrow(repo, path)
        return wt

    def _park(self, repo: Repo, path: Path, keep_s: float) -> None:
        now = time.monotonic()
        with self._lock:
            if not path.is_dir():  # removed under it: nothing to keep
                return
            self._trees[path] = (repo, now + keep_s)
            idle = [(p, r) for p, (r, until) in self._trees.items() if until < now]
            for p, _ in idle:
                del self._trees[p]
            if not self._hooked:
                atexit.register(self.close)
                self._hooked = True
        self._remove(idle)

    @staticmethod
    def _remove(trees: list[tuple[Path, Repo]]) -> None:
        for path, repo in trees:
            remove_worktree(repo, path)


#: the process's parked trees (their paths name the worker, so one pool serves every pipeline)
PARKED = Parked()
