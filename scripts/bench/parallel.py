"""Section 9: parallel fixing (``fixer.parallel``) with a slow fixer.

A fake agent (the ``command`` fixer running :data:`AGENT`, a real process) sleeps a fixed time per
batch, as an LLM agent takes minutes, then removes the unused import of each file of its batch.
The sample has one such issue per module, so each batch (``individual`` batching) touches one
file of its own.  The same run is made with ``fixer.parallel`` 1 and 4 on identical fresh copies
(embedded store, every role hosted in this process as ``airfix run`` does); the figures are both
wall times, their ratio (goal <= 0.35x) and whether both runs made commits with identical
contents (each commit's patch, in order).

The tests (tests/test_parallel_fix.py) drive the same helpers with a short sleep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airfix.config import load_config
from airfix.events.core.machine import fold
from airfix.events.keys import Keys
from airfix.events.schema import (
    Committed,
    Event,
    FixApplied,
    FixFailed,
    FixRolledBack,
    FixStarted,
)
from airfix.events.storage.backend import connect
from airfix.events.storage.store import EventStore
from airfix.projections.status import load_status
from airfix.services.pipeline.requests import release_lock, request_run, run_inline
from airfix.services.runtime.app import App
from scripts.bench.common import Metric, Results, console
from scripts.bench.sample import GIT_IDENTITY

RATIO_TARGET = 0.35  # parallel 4 over parallel 1, 8 independent batches: the goal
BENCH_BATCHES = 8
BENCH_SLEEP_S = 20.0

#: The fake agent: ``AGENT LOG SLEEP FILES_FILE``.  A file's marker comment changes what it does:
#: It removes every ``import`` line of its files.  ``# agent: fail`` makes it give up (exit 1); ``# agent: clash`` makes it also write its batch
#: id into ``shared.txt`` (two such batches fixed from the same base conflict); ``# agent: break``
#: makes its fix add an undefined name (a new issue, which the verifier rejects).  Every run is
#: logged to LOG as a JSON line (batch, files, start and end on the monotonic clock, pid).
AGENT = """\
import json, os, re, sys, time
from pathlib import Path

log, sleep, files_file = sys.argv[1], float(sys.argv[2]), sys.argv[3]
files = [f for f in Path(files_file).read_text().splitlines() if f]
batch = os.environ["AIRFIX_BATCH_ID"]
start = time.monotonic()
time.sleep(sleep)
code = 0
for name in files:
    path = Path(name)
    text = path.read_text()
    if "# agent: fail" in text:
        print("the agent gave up on " + name, file=sys.stderr)
        code = 1
        continue
    if "# agent: clash" in text:
        Path("shared.txt").write_text(batch + "\\n")
    fixed = re.sub(r"^import \\w+.*\\n", "", text, flags=re.M)
    if "# agent: break" in text:
        fixed += "\\nBROKEN = undefined_name\\n"
    path.write_text(fixed)
entry = {"batch": batch, "files": files, "start": start, "end": time.monotonic(),
         "pid": os.getpid(), "target": os.getcwd()}
with open(log, "a") as out:
    out.write(json.dumps(entry) + "\\n")
sys.exit(code)
"""

MODULE = "import os  # {marker}\n\n\ndef value_{n}() -> int:\n    return {n}\n"
TESTS = {
    "tests/__init__.py": "",
    "tests/test_par.py": "import par\n\n\ndef test_imports() -> None:\n    assert par\n",
}


def git(root: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=False, env=_git_env()
    )
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} in {root}: {proc.stderr.strip()}")
    return proc.stdout


def _git_env() -> dict[str, str]:
    return {**os.environ, **GIT_IDENTITY}


def make_project(root: Path, modules: Mapping[str, str], files: Mapping[str, str] = {}) -> Path:
    """A git repository with one module per entry of ``modules`` (name -> marker comment), each
    with one unused import (ruff F401), ``files`` as given (path -> text), a passing test, and a
    ``shared.txt`` that clashing batches write."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "par"\nversion = "0.1.0"\n\n[tool.ruff]\nline-length = 100\n'
    )
    (root / ".gitignore").write_text("__pycache__/\n.ruff_cache/\n.mypy_cache/\n")
    (root / "shared.txt").write_text("base\n")
    pkg = root / "par"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for n, (name, marker) in enumerate(sorted(modules.items()), 1):
        (pkg / f"{name}.py").write_text(MODULE.format(n=n, marker=marker or "unused"))
    for rel, text in {**TESTS, **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@dataclass
class FixRun:
    """One finished run: its wall time, its events, where it started and its branch."""

    seconds: float
    events: list[Event]
    base: str
    branch: str
    root: Path
    log: Path

    @property
    def state(self) -> Any:
        return fold(self.events)

    def patches(self) -> list[str]:
        """Each commit of the run branch as a patch (content only: no sha, date or message)."""
        shas = git(self.root, "rev-list", "--reverse", f"{self.base}..{self.branch}").split()
        return [git(self.root, "diff-tree", "-p", "--no-commit-id", sha) for sha in shas]

    def seconds_in(self, start: type[Event], ends: tuple[type[Event], ...]) -> float:
        """Wall seconds between each ``start`` event and the next of ``ends`` (from the log's
        ``recorded_at``): the fixer's steps (FixStarted to FixApplied/FixFailed) or the
        verifier's (FixApplied to Committed/FixRolledBack)."""
        total, since = 0.0, None
        for ev in self.events:
            if isinstance(ev, start):
                since = ev.recorded_at
            elif isinstance(ev, ends) and since is not None:
                total += (ev.recorded_at - since).total_seconds()
                since = None
        return total

    def fixer_runs(self) -> list[dict[str, Any]]:
        """Every run of the fake agent, as it logged it."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


def fix_run(
    root: Path,
    scratch: Path,
    *,
    parallel: int,
    sleep_s: float,
    batches: int,
    timeout_s: float = 900.0,
    requested: Callable[[App, str], object] | None = None,
) -> FixRun:
    """Run airfix on ``root`` with the fake agent (``command`` fixer, one batch per issue, one
    iteration), every role in this process on a fresh embedded store.  ``requested(app, run_id)``
    runs once the run is requested, before any step (a test's way to set the stage)."""
    scratch.mkdir(parents=True, exist_ok=True)
    agent, log = scratch / "agent.py", scratch / "agent.log"
    agent.write_text(AGENT)
    config = load_config(
        env={},
        overrides={
            "fixer.chain": ["command"],
            "fixer.command": [sys.executable, str(agent), str(log), str(sleep_s), "{files_file}"],
            "fixer.parallel": parallel,
            "fixer.timeout_s": max(60.0, sleep_s * 4),
            "batch_sizes.lint_fixes": max(5, batches),
            "git.workspace": str(scratch / "worktrees"),
        },
    )
    client = connect(fresh_embedded=True)
    app = App(config, client, EventStore(client, Keys(prefix=config.store.prefix)))
    base = git(root, "rev-parse", "HEAD").strip()
    started = time.perf_counter()
    run_id = request_run(
        app,
        config,
        root,
        batching="individual",
        fixer="command",
        simulation=False,
        max_iterations=1,
    )
    if requested is not None:
        requested(app, run_id)
    deadline = time.monotonic() + timeout_s

    def progress() -> None:
        if time.monotonic() > deadline:
            raise SystemExit(f"the run on {root} took more than {timeout_s:.0f}s")

    try:
        run_inline(app, run_id, progress=progress)
    finally:
        status = load_status(app.client, app.keys, run_id)
        if status is not None and status.get("state") == "completed":
            release_lock(app, status["target"], run_id)
    seconds = time.perf_counter() - started
    events = list(app.store.read_run(run_id))
    branch = fold(events).branch
    return FixRun(seconds, events, base, branch, root, log)


def bench_parallel(res: Results, scratch: Path, quick: bool) -> None:
    """Parallel 1 and 4 on identical samples of independent batches."""
    res.begin("9. parallel fixing: a slow fixer, fixer.parallel 1 vs 4")
    sleep_s = 0.5 if quick else BENCH_SLEEP_S
    modules = {f"m{k}": "" for k in range(1, BENCH_BATCHES + 1)}
    runs: dict[int, FixRun] = {}
    for parallel in (1, 4):
        root = make_project(scratch / f"p{parallel}" / "proj", modules)
        console.log(f"parallel {parallel}: {BENCH_BATCHES} batches, {sleep_s:g}s each")
        runs[parallel] = fix_run(
            root,
            scratch / f"p{parallel}",
            parallel=parallel,
            sleep_s=sleep_s,
            batches=BENCH_BATCHES,
        )
    one, four = runs[1], runs[4]
    same = one.patches() == four.patches()
    committed = len(four.patches())
    res.add(Metric("parallel_p1_s", "parallel 1: run wall time", one.seconds, "s"))
    res.add(Metric("parallel_p4_s", "parallel 4: run wall time", four.seconds, "s"))
    res.add(
        Metric(
            "parallel_p4_vs_p1",
            "parallel 4 / parallel 1",
            four.seconds / one.seconds,
            "x",
            target=RATIO_TARGET,
            higher_is_better=False,
        )
    )
    fixing = {p: r.seconds_in(FixStarted, (FixApplied, FixFailed)) for p, r in runs.items()}
    verifying = {p: r.seconds_in(FixApplied, (Committed, FixRolledBack)) for p, r in runs.items()}
    for p in (1, 4):
        res.add(Metric(f"parallel_p{p}_fixing_s", f"parallel {p}: in fixer steps", fixing[p], "s"))
        res.add(
            Metric(f"parallel_p{p}_verify_s", f"parallel {p}: in verifier steps", verifying[p], "s")
        )
    res.add(
        Metric(
            "parallel_fixing_p4_vs_p1",
            "fixer steps only: parallel 4 / parallel 1",
            fixing[4] / fixing[1],
            "x",
        )
    )
    res.add(Metric("parallel_commits", "commits (parallel 4)", committed, "commits"))
    res.add(
        Metric(
            "parallel_commits_identical",
            "commits identical in content (1 = yes)",
            int(same),
            "bool",
            target=1,
        )
    )
    res.tables.setdefault("parallel", []).append(
        {
            "batches": BENCH_BATCHES,
            "fixer_sleep_s": sleep_s,
            "parallel_1_s": one.seconds,
            "parallel_4_s": four.seconds,
            "ratio": four.seconds / one.seconds,
            "commits": committed,
            "identical": same,
            "fixing_1_s": fixing[1],
            "fixing_4_s": fixing[4],
            "verifying_1_s": verifying[1],
            "verifying_4_s": verifying[4],
        }
    )
    res.details["parallel"] = {
        "batches": BENCH_BATCHES,
        "fixer_sleep_s": sleep_s,
        "fixer_runs": {p: len(r.fixer_runs()) for p, r in runs.items()},
        "status": {p: r.state.status for p, r in runs.items()},
    }


PARALLEL_NOTE = (
    "section 9: a fake agent (command fixer) sleeping per batch, 8 batches of one file each, "
    "one iteration; each run on a fresh copy, every role in this process on the embedded store. "
    "Only the fixing runs in parallel: the verifier still judges each batch in turn with the full "
    "checks, so the wall-time ratio is bounded by (2 fixer waves + 8 verifications + the opening "
    "and closing checks) over (8 fixer runs + the same); the fixer-steps ratio isolates the part "
    "fixer.parallel changes"
)
