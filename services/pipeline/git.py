"""The git operations a fix run needs.  airfix owns every commit; fixers only edit files.

Fencing by construction: a run's steps never touch the user's checkout.  Each step works in a
private worktree created at the commit the event log records (:func:`worktree`), and the run
branch moves only by compare-and-swap (:meth:`Repo.move_ref`, ``git update-ref REF NEW OLD``)
from the commit the log recorded before to the one it records now.  A worker that lost its turn
(frozen past its lease, its step redone by another) can write objects nobody refers to, in a
worktree nobody else uses; it cannot move the branch, because either its append to the log was
refused or the branch already moved past the value it expects.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from airfix.events.errors import AirfixError
from airfix.services.pipeline import claims
from airfix.services.secrets import scrubbed_env

ZERO = "0" * 40  # update-ref's "must not exist yet"
#: untracked environment directories a worktree borrows from the checkout (by symlink)
BORROWED = ("node_modules", ".dart_tool")
#: pathspecs of the project's own files: everything but the borrowed links
_OWN_FILES = (".", *(f":(exclude){name}" for name in BORROWED))


class GitError(AirfixError):
    """A git precondition failed or a git command did not succeed."""


@dataclass(frozen=True)
class Repo:
    path: Path

    def git(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(
            ["git", *args], check=False, cwd=self.path, capture_output=True, text=True, env=env
        )
        if check and proc.returncode != 0:
            raise GitError(
                f"git {' '.join(args)} failed in {self.path}: "
                f"{(proc.stderr or proc.stdout).strip()[-1000:]}"
            )
        return proc.stdout

    @classmethod
    def open(cls, path: str | Path) -> Repo:
        """A repository with at least one commit; otherwise a clear error naming the problem."""
        p = Path(path).expanduser()
        if not p.exists():
            raise GitError(f"target {p} does not exist")
        if not p.is_dir():
            raise GitError(f"target {p} is not a directory")
        proc = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            check=False,
            cwd=p,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise GitError(f"target {p} is not a git repository (git init, commit, then retry)")
        repo = cls(Path(proc.stdout.strip()))
        if not repo.git("rev-parse", "--verify", "-q", "HEAD", check=False).strip():
            raise GitError(f"target {p} has no commits yet; commit once, then retry")
        return repo

    def dirty_files(self) -> list[str]:
        out = self.git("status", "--porcelain", "--untracked-files=all", "--", *_OWN_FILES)
        return [line[3:] for line in out.splitlines() if line.strip()]

    def require_clean(self) -> None:
        dirty = self.dirty_files()
        if dirty:
            shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
            raise GitError(
                f"target {self.path} has uncommitted changes ({shown}); "
                "commit or stash them first: airfix commits only its own work"
            )

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def branch(self) -> str:
        """The checked-out branch's name, or ``HEAD`` when detached."""
        return self.git("rev-parse", "--abbrev-ref", "HEAD").strip()

    def changed_files(self) -> list[str]:
        """Files that differ from HEAD, untracked ones included."""
        return sorted(set(self.dirty_files()))

    def diff(self, base: str = "HEAD", head: str | None = None) -> str:
        """``base`` against the work tree (new files included), or against commit ``head``."""
        if head is not None:
            return self.git("diff", base, head, "--unified=0")
        self.stage("-N")  # intent-to-add: new files show in the diff
        return self.git("diff", base, "--unified=0")

    def move_to(self, sha: str) -> None:
        """This worktree exactly at ``sha``, as a fresh one would be: HEAD detached there,
        untracked and ignored files gone, the borrowed links kept.  One tree then serves a
        step's many probes, at the cost of the files that differ rather than of all of them."""
        self.git("checkout", "-q", "--detach", "--force", sha)
        self.git("clean", "-ffdqx", *(arg for name in BORROWED for arg in ("-e", name)))

    def stage(self, *options: str) -> None:
        """``git add -A`` of the project's own files: the borrowed directories stay out.

        One the project's ``.gitignore`` already ignores is not named again: ``git add`` fails
        ("paths are ignored by one of your .gitignore files") when a pathspec, even an
        exclusion, names an ignored path."""
        ignored = set(self.git("check-ignore", "--", *BORROWED, check=False).splitlines())
        own = (".", *(f":(exclude){name}" for name in BORROWED if name not in ignored))
        self.git("add", "-A", *options, "--", *own)

    def commit_as(self, message: str, sha: str, *, run_hooks: bool = True) -> None:
        """Commit what is staged on the current HEAD with ``sha``'s author (a commit made again:
        narrowed, or re-applied on another parent); the project's hooks judge it unless the
        configuration says not to run them."""
        args = ["commit", "-q", "-m", message, *([] if run_hooks else ["--no-verify"])]
        self.git(*args, env=identity_env(self, sha))

    def commit_all(self, message: str, *, run_hooks: bool = True) -> str:
        """Commit everything in the work tree on the current HEAD; the new commit's sha."""
        self.stage()
        args = ["commit", "-q", "--allow-empty-message", "-m", message]
        if not run_hooks:
            args.append("--no-verify")
        self.git(*args, env=_identity_env())
        return self.head()

    # -- refs, compared and swapped

    def ref(self, name: str) -> str | None:
        """The commit ``name`` points at, or None when it does not exist."""
        out = self.git("rev-parse", "--verify", "-q", f"{name}^{{commit}}", check=False).strip()
        return out or None

    def move_ref(self, ref: str, new: str, old: str) -> bool:
        """Move ``ref`` to ``new`` only if it is at ``old`` (:data:`ZERO`: only if it does not
        exist); False when it was not, and then nothing changed."""
        proc = subprocess.run(
            ["git", "update-ref", "-m", "airfix", ref, new, old],
            check=False,
            cwd=self.path,
            capture_output=True,
            text=True,
        )
        return proc.returncode == 0

    def succeeds(self, *args: str) -> bool:
        """Whether ``git ARGS`` exits 0 (for commands whose failure is an answer: a conflict)."""
        proc = subprocess.run(
            ["git", *args], check=False, cwd=self.path, capture_output=True, env=_identity_env()
        )
        return proc.returncode == 0

    def is_ancestor(self, older: str, newer: str) -> bool:
        proc = subprocess.run(
            ["git", "merge-base", "--is-ancestor", older, newer],
            check=False,
            cwd=self.path,
            capture_output=True,
        )
        return proc.returncode == 0


@contextmanager
def worktree(repo: Repo, sha: str, path: Path) -> Iterator[Repo]:
    """A private, detached work tree of ``repo`` at ``sha``, removed afterwards
    (:func:`add_worktree`, :func:`remove_worktree`)."""
    wt = add_worktree(repo, sha, path)
    try:
        yield wt
    finally:
        remove_worktree(repo, path)


def add_worktree(repo: Repo, sha: str, path: Path) -> Repo:
    """A private, detached work tree of ``repo`` at ``sha``, made at ``path``.

    A stale one at ``path`` (a step that died) is removed first.  Untracked environment
    directories the checkout has (:data:`BORROWED`: ``node_modules``...) are linked in, so the
    project's own tools run as they do in the checkout."""
    claims.claim(path)  # before the tree exists: a sweep never takes it for a dead worker's
    try:
        _remove_worktree(repo, path)
        repo.git("worktree", "add", "-q", "--detach", "--force", str(path), sha)
        borrow(repo, path)
    except BaseException:
        remove_worktree(repo, path)
        raise
    return Repo(path)


def borrow(repo: Repo, path: Path) -> None:
    """Link the checkout's :data:`BORROWED` directories into the work tree at ``path``."""
    for name in BORROWED:
        source = repo.path / name
        if source.is_dir() and not (path / name).exists():
            (path / name).symlink_to(source, target_is_directory=True)


def remove_worktree(repo: Repo, path: Path) -> None:
    """The work tree at ``path`` removed, and its directory (a run's) when it was the last."""
    _remove_worktree(repo, path)
    claims.release(path)
    with contextlib.suppress(OSError):
        path.parent.rmdir()


def _remove_worktree(repo: Repo, path: Path) -> None:
    if path.exists():
        repo.git("worktree", "remove", "--force", "--force", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)
    repo.git("worktree", "prune", check=False)


def identity_env(repo: Repo, sha: str) -> dict[str, str]:
    """The environment to make a commit again with ``sha``'s author (the committer is now)."""
    name, email, date = (
        repo.git("log", "-1", "--format=%an%x00%ae%x00%aI", sha).rstrip("\n").split("\0")
    )
    return {
        **_identity_env(),
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_AUTHOR_DATE": date,
    }


def _identity_env() -> dict[str, str]:
    """Commit as the user when git knows them, else as airfix (never fail for a missing name)."""
    env = scrubbed_env(os.environ)  # hooks are the target's code: none of airfix's secrets
    env.setdefault("GIT_AUTHOR_NAME", _config("user.name") or "airfix")
    env.setdefault("GIT_AUTHOR_EMAIL", _config("user.email") or "airfix@localhost")
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    return env


def _config(key: str) -> str:
    """git's setting ``key`` as seen from here, asked once per place it is read from (every
    commit needs the user's name and e-mail): a worker sees a changed setting once restarted."""
    where = tuple(os.environ.get(v, "") for v in _CONFIG_PLACES)
    return _config_at(key, os.getcwd(), where)


#: the environment that decides which configuration files git reads
_CONFIG_PLACES = (
    "HOME",
    "XDG_CONFIG_HOME",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_NOSYSTEM",
)


@functools.lru_cache(maxsize=64)
def _config_at(key: str, cwd: str, where: tuple[str, ...]) -> str:
    proc = subprocess.run(
        ["git", "config", "--get", key], check=False, capture_output=True, text=True, cwd=cwd
    )
    return proc.stdout.strip()
