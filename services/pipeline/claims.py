"""Whose each worktree in the workspace is: a lock file beside it, held while the tree exists.

Why: a worker that is killed (SIGKILL, the OOM killer, a machine that loses power) cannot remove
its trees, in use or parked, and nothing else knew they were its: each is a whole checkout left
in the workspace for good.  Every tree ``<run dir>/<name>`` has a ``<name>.lock`` that the
process owning the tree holds with ``flock`` from before the tree is made until after it is
gone.  The kernel drops the lock when the process dies, however it dies, so a tree whose lock
can be taken is nobody's: :func:`sweep` removes those (a worker does it when it starts).

A lock file is unlinked while locked, so whoever takes one checks it is still the file at the
path (same inode) and tries again when it is not; then a sweep and a new owner of the same path
can never both believe they hold it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

from airfix.services.runtime.logs import get_logger

log = get_logger("airfix.claims")

#: the workspace's layout: ``<root>/<target digest>/<run id>/<slot>-<worker>``
_DIGEST = re.compile(r"^[0-9a-f]{12}$")
#: a tree without a lock file (made before trees had locks) is swept once unchanged this long
STALE_S = 24 * 3600.0

_lock = threading.Lock()
_held: dict[Path, int] = {}  # tree path -> the open, locked descriptor of its lock file


def lock_path(tree: Path) -> Path:
    return tree.parent / f"{tree.name}.lock"


def _take(tree: Path, *, wait: bool) -> int | None:
    """The lock of ``tree``, locked by this open file (None: someone else holds it)."""
    path = lock_path(tree)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # a sweep removed the empty run directory just now
            path.parent.mkdir(parents=True, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # unlinked by its last holder meanwhile
            same = False
        if same:
            return fd
        os.close(fd)


def claim(tree: Path) -> None:
    """Hold ``tree``'s lock for this process (before the tree is made; idempotent)."""
    with _lock:
        if tree in _held:
            return
    tree.parent.mkdir(parents=True, exist_ok=True)
    fd = _take(tree, wait=True)
    assert fd is not None
    with _lock:
        _held[tree] = fd


def release(tree: Path) -> None:
    """Give up ``tree``'s lock (after the tree is gone): the lock file goes too."""
    with _lock:
        fd = _held.pop(tree, None)
    if fd is None:
        return
    lock_path(tree).unlink(missing_ok=True)
    os.close(fd)


def held() -> list[Path]:
    with _lock:
        return sorted(_held)


def orphans(root: Path) -> list[Path]:
    """The trees under ``root`` that no live process holds (nothing is changed)."""
    out = []
    for tree in _trees(root):
        fd = _unowned(tree)
        if fd is not None:
            out.append(tree)
            if fd >= 0:
                os.close(fd)
    return out


def _unowned(tree: Path) -> int | None:
    """``tree``'s lock taken (-1: it has none and is older than :data:`STALE_S`); None when a
    live process may own it.  Without a lock file only age tells: an airfix before locks made it."""
    if lock_path(tree).exists():
        return _take(tree, wait=False)
    try:
        idle = time.time() - tree.stat().st_mtime
    except FileNotFoundError:
        return None
    return -1 if idle > STALE_S else None


def sweep(root: Path) -> list[Path]:
    """Remove the trees under ``root`` that no live process holds, each with its repository's
    record of it; the removed ones.  A tree held meanwhile is left alone."""
    gone = []
    for tree in _trees(root):
        fd = _unowned(tree)
        if fd is None:  # its owner is alive
            continue
        if fd < 0:  # a tree without a lock: lock it for its removal
            fd = _take(tree, wait=False)
            if fd is None:
                continue
        try:
            _remove(tree)
            lock_path(tree).unlink(missing_ok=True)
        finally:
            os.close(fd)
        gone.append(tree)
    _prune_empty(root)  # the swept trees' run and target directories among them
    if gone:
        log.info("removed worktrees of processes that are gone", trees=len(gone), root=str(root))
    return gone


def _prune_empty(root: Path) -> None:
    """Remove the layout's empty run and target directories (a target's goes with its last run's;
    a claim that races this makes its directory again)."""
    for target in _targets(root):
        for d in [*(r for r in target.iterdir() if r.is_dir()), target]:
            with contextlib.suppress(OSError):  # not empty: someone's
                d.rmdir()


def _trees(root: Path) -> list[Path]:
    """Every tree (or lock without one) of the layout under ``root``; nothing else is touched:
    a directory that is not a worktree, or not empty, is not airfix's to remove."""
    out: set[Path] = set()
    for target in _targets(root):
        for run in target.iterdir():
            if not run.is_dir():
                continue
            for entry in run.iterdir():
                if entry.name.endswith(".lock") and entry.is_file():
                    tree = entry.with_name(entry.name.removesuffix(".lock"))
                    if not tree.exists() or _is_worktree(tree):
                        out.add(tree)
                elif entry.is_dir() and (_is_worktree(entry) or not any(entry.iterdir())):
                    out.add(entry)
    return sorted(out)


def _targets(root: Path) -> list[Path]:
    """The layout's target directories under ``root`` (clones and anything else: not ours)."""
    if not root.is_dir():
        return []
    return [t for t in root.iterdir() if _DIGEST.match(t.name) and t.is_dir()]


def _is_worktree(path: Path) -> bool:
    git = path / ".git"
    return git.is_file() and git.read_text(errors="replace").startswith("gitdir: ")


def _remove(tree: Path) -> None:
    """The tree's directory, then its repository's record of it (``worktree prune``)."""
    admin = None
    if _is_worktree(tree):
        admin = Path((tree / ".git").read_text(errors="replace")[len("gitdir: ") :].strip())
    shutil.rmtree(tree, ignore_errors=True)
    common = admin.parent.parent if admin is not None else None  # <git dir>/worktrees/<name>
    if common is not None and common.is_dir():
        subprocess.run(
            ["git", "worktree", "prune"], cwd=common, check=False, capture_output=True, timeout=60
        )
