"""The hand script: what a developer gets from a plain ``ruff check --fix`` on the same repository.

Why: the benchmark reports airfix's results next to this baseline (fraction of safely fixable
issues removed, tests broken), and the corpus uses it to prove that a project's recorded
``ruff_fix_breaks`` tests really break under a fix that does not verify.  It works on a copy; the
repository is never touched.  Measured exactly as the acceptance test measures airfix's tip.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.corpus.measure import MeasureError, Measurement, clean_env, measure_tree, tool
from tests.corpus.repo import clone_at


@dataclass
class HandResult:
    safe_before: int
    safe_removed: int  # per (file, rule): how many of the safe issues are gone
    broken: list[str]  # tests that passed before and do not pass after, by node id
    before: Measurement
    after: Measurement
    fix_seconds: float

    @property
    def fraction_removed(self) -> float:
        return self.safe_removed / self.safe_before if self.safe_before else 1.0


def removed(before: Measurement, after: Measurement) -> int:
    """Safely fixable issues of ``before`` that are gone in ``after``, counted per (file, rule)
    so that new issues elsewhere cannot make up for ones left in place."""
    left = after.safe_by_key()
    return sum(max(0, n - left.get(key, 0)) for key, n in before.safe_by_key().items())


def hand_fix(
    repo: Path,
    sha: str,
    *,
    python: Path,
    test_paths: tuple[str, ...] = (),
    import_paths: tuple[str, ...] = (),
) -> HandResult:
    """Clone commit ``sha`` of ``repo``, run ``ruff check --fix`` there and measure before/after
    (ruff and pytest; mypy is left out: a type checker plays no part in the hand script)."""
    tools = ("ruff", "pytest")
    with tempfile.TemporaryDirectory(prefix="corpus-hand-") as tmp:
        copy = clone_at(repo, sha, Path(tmp) / "copy")
        kw = {
            "python": python,
            "test_paths": test_paths,
            "import_paths": import_paths,
            "tools": tools,
        }
        before = measure_tree(copy, **kw)  # type: ignore[arg-type]
        start = time.monotonic()
        proc = subprocess.run([tool("ruff"), "check", "--fix", "--no-cache", "."], cwd=copy,
                              capture_output=True, text=True, env=clean_env(), check=False)  # fmt: skip
        seconds = time.monotonic() - start
        if proc.returncode not in (0, 1):
            raise MeasureError(f"ruff check --fix exit {proc.returncode}: {proc.stderr[-2000:]}")
        after = measure_tree(copy, **kw)  # type: ignore[arg-type]
    broken = sorted(t for t in before.passed() if (after.tests or {}).get(t) != "passed")
    return HandResult(safe_before=before.safe_total, safe_removed=removed(before, after),
                      broken=broken, before=before, after=after, fix_seconds=seconds)  # fmt: skip
