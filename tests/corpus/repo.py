"""Language-neutral repository helpers for the corpus: the shared cache, fresh one-commit
repositories, and the few git queries the independent checks need.

Why a fixed identity and date: the same release must become the same commit (same sha) on every
machine, so a failure report names a commit anyone can reproduce.  Why the git environment is
isolated (no global or system config): a user's hooks, signing or default branch must not change
what the corpus builds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE_ENV = "AIRFIX_CORPUS_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "airfix" / "corpus"

IDENTITY = {
    "GIT_AUTHOR_NAME": "airfix corpus",
    "GIT_AUTHOR_EMAIL": "corpus@airfix.invalid",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+00:00",
    "GIT_COMMITTER_NAME": "airfix corpus",
    "GIT_COMMITTER_EMAIL": "corpus@airfix.invalid",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+00:00",
}


class GitError(RuntimeError):
    """A git command failed; the message carries the command and its stderr."""


def cache_dir(*parts: str) -> Path:
    """A directory under the corpus cache (``$AIRFIX_CORPUS_CACHE``, default
    ``~/.cache/airfix/corpus``), created on first use and shared between test runs."""
    base = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def git_env() -> dict[str, str]:
    """The environment for every git call here: fixed identity, no user or system config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(IDENTITY)
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    return env


def git(repo: Path, *args: str) -> str:
    """Run ``git -C repo ARGS`` and return its stdout; raise :class:`GitError` on failure."""
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=git_env(), check=False
    )
    if proc.returncode != 0:
        raise GitError(
            f"git {' '.join(args)} in {repo}: exit {proc.returncode}: {proc.stderr.strip()}"
        )
    return proc.stdout


def make_repo(src_dir: Path, dest: Path, message: str = "Import the released sources") -> str:
    """Copy the unpacked tree ``src_dir`` to ``dest`` (which must not exist) and make it a fresh
    git repository on ``main`` with exactly one commit holding every file; returns its sha.

    Every file is added, even ones a shipped ``.gitignore`` names: the repository is the release.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists; make_repo wants a fresh directory")
    shutil.copytree(src_dir, dest, symlinks=True)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A", "--force")
    git(dest, "-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "-m", message)
    return head(dest)


def exclude(repo: Path, pattern: str) -> None:
    """Add ``pattern`` to ``.git/info/exclude`` (untracked and unseen, the tree stays clean)."""
    path = Path(git(repo, "rev-parse", "--git-path", "info/exclude").strip())
    if not path.is_absolute():
        path = repo / path
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = path.read_text().splitlines() if path.exists() else []
    if pattern not in lines:
        path.write_text("\n".join([*lines, pattern]) + "\n")


def head(repo: Path) -> str:
    return rev_parse(repo, "HEAD")


def rev_parse(repo: Path, ref: str) -> str:
    return git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}").strip()


def branches(repo: Path) -> list[str]:
    """Local branch names."""
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split()


def commits_since(repo: Path, base: str, branch: str) -> list[str]:
    """The commits of ``branch`` that ``base`` does not have, oldest first."""
    return git(repo, "rev-list", "--reverse", f"{base}..{branch}").split()


def parents(repo: Path, sha: str) -> list[str]:
    return git(repo, "rev-list", "--parents", "-n", "1", sha).split()[1:]


def commit_message(repo: Path, sha: str) -> str:
    """Subject and body of a commit, as written."""
    return git(repo, "log", "-1", "--format=%B", sha)


def diff_u0(repo: Path, parent: str, sha: str) -> str:
    """``git diff -U0`` between two commits (no renames, no colour, no external diff)."""
    return git(repo, "diff", "-U0", "--no-color", "--no-ext-diff", "--no-renames", parent, sha)


def changed_files(repo: Path, parent: str, sha: str) -> list[str]:
    """Paths changed between two commits, repository-relative."""
    out = git(repo, "diff", "--name-only", "--no-renames", "-z", parent, sha)
    return [p for p in out.split("\0") if p]


def show_file(repo: Path, sha: str, path: str) -> bytes | None:
    """The bytes of ``path`` at commit ``sha``, or None when the commit has no such file."""
    proc = subprocess.run(["git", "-C", str(repo), "show", f"{sha}:{path}"], capture_output=True,
                          env=git_env(), check=False)  # fmt: skip
    return proc.stdout if proc.returncode == 0 else None


def status_porcelain(repo: Path) -> str:
    """``git status --porcelain`` (empty when the work tree is clean)."""
    return git(repo, "status", "--porcelain")


def clone_at(repo: Path, sha: str, dest: Path) -> Path:
    """A standalone clone of ``repo`` at ``sha`` (detached): a real repository of its own, so
    tools that honour ``.gitignore`` behave as in the original, and changes stay in the copy."""
    git(repo, "clone", "-q", "--no-checkout", str(Path(repo).resolve()), str(Path(dest).resolve()))
    git(dest, "checkout", "-q", "--detach", sha)
    return dest


@contextmanager
def worktree_at(repo: Path, sha: str) -> Iterator[Path]:
    """The files of commit ``sha`` in a temporary detached worktree, removed afterwards.

    A worktree (not an archive) so tools that look for the enclosing git repository (ruff's
    ``.gitignore`` handling) see what they see in the repository itself.
    """
    tmp = Path(tempfile.mkdtemp(prefix="corpus-tree-"))
    tree = tmp / "tree"
    git(repo, "worktree", "add", "--detach", "--force", "-q", str(tree), sha)
    try:
        yield tree
    finally:
        try:
            git(repo, "worktree", "remove", "--force", str(tree))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            git(repo, "worktree", "prune")
