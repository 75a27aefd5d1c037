"""Real npm packages for the corpus: fetched once, verified, unpacked, installed, cached.

A package is a published tarball (``npm pack NAME@VERSION``) whose sha512 must equal the
``dist.integrity`` recorded here (``npm view NAME@VERSION dist.integrity`` when it was chosen): a
changed tarball is an error, never silently a different corpus.  The cache
(``$AIRFIX_CORPUS_CACHE``, default ``~/.cache/airfix/corpus``; see :mod:`tests.corpus.repo`)
holds, per package and version, under ``npm/<name>-<version>/``:

* ``<name>-<version>.tgz``: the verified tarball;
* ``src/``: the tarball unpacked (its ``package/`` prefix stripped), never changed: the
  repositories are made from it;
* ``installed/``: a copy of ``src/`` with its devDependencies installed by
  ``npm install --ignore-scripts`` (and the ``package-lock.json`` that install wrote, as a record
  of what was resolved).  Tools a package's *release* process needs but neither its lint nor its
  tests (coverage wrappers, audits, bundlers, README checkers: :data:`RELEASE_ONLY`) are dropped
  from that copy's ``package.json`` before installing, because their large dependency trees made
  ``npm install`` time out here; the repository keeps the ``package.json`` as published.

Each test gets a fresh one-commit repository of ``src/`` (:func:`tests.corpus.repo.make_repo`)
whose ``node_modules`` is a symlink to the installed copy's, excluded from git through
``.git/info/exclude`` (so the tree stays clean and no commit can include it).  Installs are
serialised with a lock file, so parallel test processes share one install.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.corpus.repo import cache_dir, exclude, make_repo

RELEASE_ONLY = (
    "nyc", "aud", "eclint", "evalmd", "browserify", "npmignore", "safe-publish-latest",
    "in-publish", "auto-changelog", "mkdirp", "@browserify/envify", "@browserify/uglifyify",
    "bundle-collapser", "common-shakeify", "unassertify", "module-deps", "covert", "istanbul",
    "nsp", "parallelshell", "github-changes", "grunt", "grunt-contrib-connect",
    "grunt-contrib-watch", "grunt-saucelabs", "uglify-js",
)  # fmt: skip
INSTALL_TIMEOUT_S = 900


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # "sha512-<base64>", from npm view NAME@VERSION dist.integrity
    #: environment the package's tests need under today's Node (for airfix and the re-measure)
    env: tuple[tuple[str, str], ...] = ()

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def slug(self) -> str:
        return f"{self.name.replace('/', '+').lstrip('@')}-{self.version}"


# Chosen as real, released packages with tests and an ESLint setup (see the corpus test's
# docstring for the figures measured on each).
PACKAGES = {
    "qs": NpmPackage(
        "qs", "6.11.2",
        "sha512-tDNIz22aBzCDxLtVH++VnTfzxlfeK5CbqohpSqpJgj1Wg/cQbStNAz3NuqCs5vV+pjBsK4x4pN9HlVh7rcYRiA==",
    ),
    "minimist": NpmPackage(
        "minimist", "1.2.8",
        "sha512-2yyAR8qBkN3YuheJanUpWC5U3bb5osDywNB8RzDVlDwDHbocAJveqqj1u8+SVD7jkWT4yvsHCpWqqWqAxb0zCA==",
    ),
    "function-bind": NpmPackage(
        "function-bind", "1.1.1",
        "sha512-yIovAzMX49sF8Yl58fSCWJ5svSLuaibPxXQJFLmBObTuCr0Mf1KiPopGM9NiFjiYBCbfaa2Fh6breQ6ANVTI0A==",
    ),
    # mocha 3.5 and ESLint 7.32; its promise tests leave rejections unhandled on purpose, which
    # Node >= 15 turns into a crash of the whole mocha process
    "es6-shim": NpmPackage(
        "es6-shim", "0.35.6",
        "sha512-EmTr31wppcaIAgblChZiuN/l9Y7DPyw8Xtbg7fIVngn6zMW+IEBJDJngeKC3x6wr0V/vcA2wqeFnaw1bFJbDdA==",
        env=(("NODE_OPTIONS", "--unhandled-rejections=warn"),),
    ),
}  # fmt: skip


class CorpusError(RuntimeError):
    pass


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise CorpusError("npm is not installed: the JS corpus needs Node.js and npm")
    return npm


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sha512_integrity(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def tarball(pkg: NpmPackage) -> Path:
    """The verified tarball, fetched with ``npm pack`` on first use."""
    folder = cache_dir("npm", pkg.slug)
    with _locked(folder):
        found = sorted(folder.glob("*.tgz"))
        if not found:
            proc = subprocess.run(
                [_npm(), "pack", pkg.spec, "--pack-destination", str(folder), "--json",
                 "--loglevel=error"],
                capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                raise CorpusError(f"npm pack {pkg.spec} failed: {proc.stderr[-2000:]}")
            found = sorted(folder.glob("*.tgz"))
        if len(found) != 1:
            raise CorpusError(f"expected one tarball in {folder}, found {found}")
        got = sha512_integrity(found[0])
        if got != pkg.integrity:
            found[0].unlink()
            raise CorpusError(f"{pkg.spec}: tarball integrity {got} != recorded {pkg.integrity}")
        return found[0]


def unpacked(pkg: NpmPackage) -> Path:
    """``src/``: the tarball's files without the ``package/`` prefix (unpacked once)."""
    tgz = tarball(pkg)
    folder = cache_dir("npm", pkg.slug)
    src = folder / "src"
    with _locked(folder):
        if not (folder / "src.done").exists():
            shutil.rmtree(src, ignore_errors=True)
            tmp = folder / "src.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            with tarfile.open(tgz) as tar:
                tar.extractall(tmp, filter="data")
            inner = tmp / "package"
            if not inner.is_dir():
                raise CorpusError(f"{pkg.spec}: the tarball has no package/ folder")
            inner.rename(src)
            shutil.rmtree(tmp)
            (folder / "src.done").write_text(pkg.integrity)
    return src


def installed(pkg: NpmPackage) -> Path:
    """``installed/``: ``src/`` with its devDependencies installed (once per version)."""
    src = unpacked(pkg)
    folder = cache_dir("npm", pkg.slug)
    dest = folder / "installed"
    with _locked(folder):
        if not (folder / "installed.done").exists():
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(src, dest)
            manifest = dest / "package.json"
            data = json.loads(manifest.read_text(encoding="utf-8"))
            dropped = [d for d in RELEASE_ONLY if d in (data.get("devDependencies") or {})]
            for name in dropped:
                del data["devDependencies"][name]
            manifest.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            proc = subprocess.run(
                [_npm(), "install", "--ignore-scripts", "--no-audit", "--no-fund",
                 "--fetch-timeout=60000", "--fetch-retries=2", "--loglevel=error"],
                cwd=dest, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                raise CorpusError(f"npm install for {pkg.spec} failed:\n{proc.stderr[-3000:]}")
            (folder / "installed.done").write_text(json.dumps({"dropped": dropped}))
    return dest


def fresh_repo(pkg: NpmPackage, dest: Path) -> Path:
    """A one-commit git repository of the published files at ``dest``, with ``node_modules``
    linked to the cached install and excluded from git."""
    install = installed(pkg)
    make_repo(unpacked(pkg), dest, message=f"Import {pkg.spec} as published")
    (dest / "node_modules").symlink_to(install / "node_modules", target_is_directory=True)
    exclude(dest, "/node_modules")
    return dest
