"""The few git operations a fix run needs.  airfix owns every commit; fixers only edit files."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from airfix.events.errors import AirfixError


class GitError(AirfixError):
    """A git precondition failed or a git command did not succeed."""


@dataclass(frozen=True)
class Repo:
    path: Path

    def git(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(["git", *args], check=False, cwd=self.path, capture_output=True, text=True,
                              env=env)
        if check and proc.returncode != 0:
            raise GitError(f"git {' '.join(args)} failed in {self.path}: "
                           f"{(proc.stderr or proc.stdout).strip()[-1000:]}")
        return proc.stdout

    @classmethod
    def open(cls, path: str | Path) -> Repo:
        """A repository whose tree is clean; otherwise a clear error naming the problem."""
        p = Path(path).expanduser()
        if not p.exists():
            raise GitError(f"target {p} does not exist")
        if not p.is_dir():
            raise GitError(f"target {p} is not a directory")
        proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], check=False, cwd=p,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise GitError(f"target {p} is not a git repository (git init, commit, then retry)")
        repo = cls(Path(proc.stdout.strip()))
        if not repo.git("rev-parse", "--verify", "-q", "HEAD", check=False).strip():
            raise GitError(f"target {p} has no commits yet; commit once, then retry")
        return repo

    def dirty_files(self) -> list[str]:
        out = self.git("status", "--porcelain", "--untracked-files=all")
        return [line[3:] for line in out.splitlines() if line.strip()]

    def require_clean(self) -> None:
        dirty = self.dirty_files()
        if dirty:
            shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
            raise GitError(f"target {self.path} has uncommitted changes ({shown}); "
                           "commit or stash them first: airfix commits only its own work")

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def branch(self) -> str:
        return self.git("rev-parse", "--abbrev-ref", "HEAD").strip()

    def checkout_new(self, name: str, at: str | None = None) -> None:
        exists = self.git("rev-parse", "--verify", "-q", f"refs/heads/{name}", check=False).strip()
        if exists:
            self.git("checkout", "-q", name)
        else:
            self.git("checkout", "-q", "-b", name, *([at] if at else []))

    def changed_files(self) -> list[str]:
        """Files that differ from HEAD, untracked ones included."""
        return sorted(set(self.dirty_files()))

    def diff(self) -> str:
        self.git("add", "-A", "-N")  # intent-to-add, so new files show in the diff
        return self.git("diff", "HEAD", "--unified=0")

    def commit_all(self, message: str, *, run_hooks: bool = True) -> str:
        self.git("add", "-A")
        args = ["commit", "-q", "-m", message]
        if not run_hooks:
            args.append("--no-verify")
        self.git(*args, env=_identity_env())
        return self.head()

    def reset_hard(self, sha: str) -> None:
        self.git("reset", "-q", "--hard", sha)
        self.git("clean", "-q", "-fd")


def _identity_env() -> dict[str, str]:
    """Commit as the user when git knows them, else as airfix (never fail for a missing name)."""
    import os

    from airfix.services.secrets import scrubbed_env

    env = scrubbed_env(os.environ)  # hooks are the target's code: none of airfix's secrets
    env.setdefault("GIT_AUTHOR_NAME", _config("user.name") or "airfix")
    env.setdefault("GIT_AUTHOR_EMAIL", _config("user.email") or "airfix@localhost")
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    return env


def _config(key: str) -> str:
    proc = subprocess.run(["git", "config", "--get", key], check=False, capture_output=True,
                          text=True)
    return proc.stdout.strip()
