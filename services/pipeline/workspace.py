"""Targets that are git remotes: a worker's cached clones, and the run branch moved by push.

A target is a local path (the user's checkout, as before) or a git URL (``https://``, ``ssh://``,
``git://``, ``file://``, ``user@host:path``).  For a URL nothing is shared between processes but
the remote itself: each worker keeps one bare clone per remote under its workspace
(``git.workspace``/clones), fetches what the log names, makes its private worktree there at the
exact commit the log records and removes it after the step.  The clones are a cache: the
least recently used beyond ``git.max_clones`` are deleted.

Commits a step makes exist first in that worker's clone only; before the step's events reach the
log they are pushed to ``refs/airfix/<run_id>/<sha>`` on the remote (:meth:`Remote.publish`), so
whichever worker takes the next step can fetch them.  The run branch moves by
``git push --force-with-lease=REF:<old>`` (:meth:`Remote.move_ref`): the same compare-and-swap as
``update-ref REF NEW OLD`` on a local target, so a stale worker's push fails.

Credentials: the URL recorded in the log never holds a password (:func:`public_url`); a password
given to ``airfix run`` serves the requester's own check only, and each worker authenticates with
its own git setup (credential helper, ssh key).  Git's messages are redacted before they are
raised.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from airfix.config import Config
from airfix.services.pipeline.git import ZERO, GitError, Repo
from airfix.services.secrets import redact_text

SCHEMES = ("http", "https", "ssh", "git", "file")
_SCP = re.compile(r"^(?P<user>[A-Za-z0-9._\-]+)@(?P<host>[A-Za-z0-9.\-]+):(?P<path>[^/].*)$")
_PLAIN_USER = re.compile(r"^[A-Za-z0-9._\-]{1,16}$")
#: what a fetch brings into a clone: the remote's branches and the run's published commits
_BRANCHES = "+refs/heads/*:refs/remotes/origin/*"


def is_remote(target: str) -> bool:
    """Whether ``target`` names a git remote rather than a local path."""
    scheme, sep, _ = target.partition("://")
    if sep and scheme.lower() in SCHEMES:
        return True
    return bool(_SCP.match(target)) and not Path(target).exists()


def public_url(url: str) -> str:
    """``url`` as it may be recorded: no password, and no user name that may be a token."""
    if _SCP.match(url):
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    keep = user and parts.password is None and _PLAIN_USER.match(user)
    netloc = f"{user}@{host}" if keep else host
    return urlunsplit(parts._replace(netloc=netloc))


def normalise(url: str) -> str:
    """One name per repository, whatever the spelling: no credentials or user, lower-case scheme
    and host, ``user@host:path`` as ``ssh://host/path``, no trailing ``/`` or ``.git``."""
    m = _SCP.match(url)
    if m:
        scheme, host, path = "ssh", m["host"].lower(), "/" + m["path"]
    else:
        parts = urlsplit(url)
        scheme, host, path = parts.scheme.lower(), (parts.hostname or ""), parts.path
        if parts.port:
            host = f"{host}:{parts.port}"
    path = path.rstrip("/").removesuffix(".git").rstrip("/")
    return f"{scheme}://{host}{path}"


def target_identity(target: str) -> str:
    """What the target lock is keyed by: the normalised URL, or the resolved local path."""
    return normalise(target) if is_remote(target) else str(Path(target).expanduser().resolve())


def _git(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def _failed(what: str, proc: subprocess.CompletedProcess[str]) -> GitError:
    return GitError(redact_text(f"{what}: {(proc.stderr or proc.stdout).strip()[-1000:]}", ()))


def remote_head(url: str) -> tuple[str, str]:
    """The commit the remote's HEAD is at and the branch it names (``HEAD`` when it names none)."""
    proc = _git(["ls-remote", "--symref", url, "HEAD"])
    if proc.returncode != 0:
        raise _failed(f"target {public_url(url)} is not a reachable git remote", proc)
    branch, sha = "HEAD", ""
    for line in proc.stdout.splitlines():
        if line.startswith("ref: ") and line.endswith("\tHEAD"):
            branch = line[5:].split("\t")[0].removeprefix("refs/heads/")
        elif line.endswith("\tHEAD"):
            sha = line.split("\t")[0]
    if not sha:
        raise GitError(f"target {public_url(url)} has no commits yet; push one, then retry")
    return sha, branch


@dataclass(frozen=True)
class Remote:
    """A remote target as one worker sees it: its URL and the worker's bare clone of it."""

    url: str
    clone: Repo

    @property
    def path(self) -> str:
        return self.url

    def ref(self, name: str) -> str | None:
        """The commit ``name`` points at on the remote, or None when it does not exist there."""
        proc = _git(["ls-remote", self.url, name], cwd=self.clone.path)
        if proc.returncode != 0:
            raise _failed(f"could not read {name} from {public_url(self.url)}", proc)
        for line in proc.stdout.splitlines():
            sha, _, ref = line.partition("\t")
            if ref == name:
                return sha
        return None

    def move_ref(self, ref: str, new: str, old: str) -> bool:
        """Push ``new`` to ``ref`` only if the remote has it at ``old`` (:data:`ZERO`: only if it
        does not exist; ``new`` :data:`ZERO` deletes it); False when it was not."""
        lease = f"--force-with-lease={ref}:{'' if old == ZERO else old}"
        spec = f":{ref}" if new == ZERO else f"{new}:{ref}"
        return (
            _git(["push", "-q", "--no-verify", lease, self.url, spec], self.clone.path).returncode
            == 0
        )

    def publish(self, run_id: str, shas: Iterable[str]) -> None:
        """Make commits made in this clone fetchable by every worker (before the log names them)."""
        specs = [f"{s}:refs/airfix/{run_id}/{s}" for s in dict.fromkeys(shas)]
        if not specs:
            return
        proc = _git(["push", "-q", "--no-verify", self.url, *specs], self.clone.path)
        if proc.returncode != 0:
            raise _failed(f"could not push the run's commits to {public_url(self.url)}", proc)

    def forget(self, run_id: str) -> int:
        """Delete the run's published refs (its commits that matter are on its branch by now);
        how many there were."""
        proc = _git(["ls-remote", self.url, f"refs/airfix/{run_id}/*"], self.clone.path)
        refs = [line.partition("\t")[2] for line in proc.stdout.splitlines() if "\t" in line]
        if proc.returncode == 0 and refs:
            done = _git(
                ["push", "-q", "--no-verify", self.url, *(f":{r}" for r in refs)], self.clone.path
            )
            if done.returncode != 0:
                raise _failed(f"could not delete the run's refs on {public_url(self.url)}", done)
        return len(refs)

    def ensure(self, run_id: str, shas: Iterable[str]) -> None:
        """Fetch when one of ``shas`` is not in the clone yet (the remote's branches and the run's
        published commits); a commit the remote does not have either is an error naming it."""
        missing = [
            s for s in shas if s and not self.clone.succeeds("cat-file", "-e", f"{s}^{{commit}}")
        ]
        if not missing:
            return
        with _locked(self.clone.path):
            proc = _git(
                [
                    "fetch",
                    "-q",
                    "--no-tags",
                    self.url,
                    _BRANCHES,
                    f"+refs/airfix/{run_id}/*:refs/airfix/{run_id}/*",
                ],
                self.clone.path,
            )
        if proc.returncode != 0:
            raise _failed(f"could not fetch from {public_url(self.url)}", proc)
        still = [s for s in missing if not self.clone.succeeds("cat-file", "-e", f"{s}^{{commit}}")]
        if still:
            raise GitError(
                f"{public_url(self.url)} has no commit {', '.join(s[:12] for s in still)} that the "
                "run's log records (was its branch rewritten, or a published ref deleted?)"
            )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One fetch or eviction at a time per clone (a worker's threads, or workers sharing a disk)."""
    with open(path.parent / f"{path.name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def default_root() -> Path:
    """``$XDG_CACHE_HOME/airfix/workspace`` (``~/.cache/airfix/workspace``): clones of remote
    targets are a cache, fetched into for weeks, and the temporary directory is the wrong home
    for one (often RAM-backed; cleaners such as systemd-tmpfiles delete old files in it, a
    clone's objects included).  Worktrees sit beside their clones and go after their step."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "airfix" / "workspace"


@dataclass(frozen=True)
class Workspace:
    """A worker's directory of bare clones (one per remote) and private worktrees."""

    root: Path
    max_clones: int = 20

    @classmethod
    def of(cls, config: Config) -> Workspace:
        root = config.git.workspace or default_root()
        return cls(Path(root).expanduser(), config.git.max_clones)

    @property
    def clones(self) -> Path:
        return self.root / "clones"

    def remote(self, url: str, run_id: str, shas: Iterable[str] = ()) -> Remote:
        """This worker's clone of ``url`` (made on first use), holding ``shas``."""
        path = self.clones / (hashlib.sha256(normalise(url).encode()).hexdigest()[:16] + ".git")
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            if not (path / "HEAD").is_file():
                shutil.rmtree(path, ignore_errors=True)
                proc = _git(["init", "-q", "--bare", str(path)])
                if proc.returncode != 0:
                    raise _failed(f"could not make a clone in {path}", proc)
                (path / "airfix-url").write_text(public_url(url) + "\n")
            os.utime(path / "HEAD")  # last used: what the LRU bound goes by
        remote = Remote(url, Repo(path))
        remote.ensure(run_id, shas)
        self.evict(keep=path)
        return remote

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Delete the least recently used clones beyond ``max_clones``; one with a worktree in use
        stays.  The deleted ones, oldest first."""
        if not self.clones.is_dir():
            return []
        clones = sorted(
            (p for p in self.clones.glob("*.git") if (p / "HEAD").is_file()),
            key=lambda p: (p / "HEAD").stat().st_mtime,
        )
        gone: list[Path] = []
        excess = len(clones) - max(1, self.max_clones)
        for path in clones:
            if excess <= 0:
                break
            if path == keep or any((path / "worktrees").glob("*")):
                continue
            with _locked(path):
                shutil.rmtree(path, ignore_errors=True)
            (path.parent / f"{path.name}.lock").unlink(missing_ok=True)
            gone.append(path)
            excess -= 1
        return gone

    def describe(self) -> tuple[int, int]:
        """How many clones the workspace holds and their size in bytes."""
        if not self.clones.is_dir():
            return 0, 0
        count = sum(1 for p in self.clones.glob("*.git") if (p / "HEAD").is_file())
        size = sum(
            f.stat().st_size for f in self.clones.rglob("*") if f.is_file() and not f.is_symlink()
        )
        return count, size


def clone_urls(ws: Workspace) -> list[tuple[str, float]]:
    """The remotes ``ws`` holds clones of, with when each was last used (for ``airfix doctor``)."""
    out = []
    for p in sorted(ws.clones.glob("*.git")) if ws.clones.is_dir() else []:
        if (p / "airfix-url").is_file():
            out.append((p.joinpath("airfix-url").read_text().strip(), (p / "HEAD").stat().st_mtime))
    return sorted(out, key=lambda u: -u[1])


def age(seconds_since_epoch: float) -> str:
    s = max(0, int(time.time() - seconds_since_epoch))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
