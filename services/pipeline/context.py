"""What every step of a run needs: the store, the config, who the worker is, the run's tip as
the log records it, a private worktree at it, and the run branch brought up to the log."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import msgspec

from airfix.config import Config
from airfix.events.core.health import TestCounts
from airfix.events.core.ledger import IterationView, explain_remaining, lessons
from airfix.events.core.machine import (
    RunState,
    fold,
)
from airfix.events.errors import AirfixError
from airfix.events.schema import (
    BatchPlanned,
    Event,
    HealthChecked,
    IssueRecord,
    RunCompleted,
    stamp,
)
from airfix.events.storage.store import EventStore
from airfix.services import fixers as fixer_registry
from airfix.services.pipeline import claims
from airfix.services.pipeline.git import GitError, Repo, worktree
from airfix.services.pipeline.measure import (
    Measurement,
    measure,
)
from airfix.services.pipeline.parked import PARKED
from airfix.services.pipeline.workspace import (
    Remote,
    Workspace,
    is_remote,
    remote_head,
    target_identity,
)
from airfix.services.runtime.logs import get_logger
from airfix.services.tools.environment import PythonEnv, python_env_of

log = get_logger("airfix.roles")


@dataclass
class Pipeline:
    """What every role needs: the store, the config, and who this worker is."""

    store: EventStore
    config: Config
    worker: str = "airfix"
    measure: Callable[..., Measurement] = field(default=measure)

    def advance(self, state: RunState, events: list[Event]) -> RunState:
        """The state after ``events`` (payload-only), as the store will fold them."""
        return fold(stamp(events, run_id=state.run_id, expected_version=state.version), state)

    def sweep(self) -> list[Path]:
        """Remove the worktrees in the workspace that no live process owns (``claims.py``): a
        worker killed mid-step left them.  Done as a worker starts."""
        return claims.sweep(Workspace.of(self.config).root)

    def events(self, state: RunState) -> list[Event]:
        return list(self.store.read_run(state.run_id, to_version=state.version))

    def python(self, state: RunState) -> PythonEnv | None:
        return python_env_of(state.environment)

    def measure_tree(self, state: RunState, wt: Repo, **how: object) -> Measurement:
        """Measure a private worktree of the run's target with the project's interpreter and
        the target's tool caches (shared by every worktree of it, so they stay warm from one
        run to the next, though each run's worktrees have paths of their own)."""
        return self.measure(
            wt.path,
            self.config,
            python=self.python(state),
            caches=target_identity(state.target),
            **how,
        )

    def remote(self, state: RunState, *shas: str) -> Remote | None:
        """This worker's clone of a remote target holding ``shas`` (None for a local target)."""
        if not is_remote(state.target):
            return None
        return Workspace.of(self.config).remote(state.target, state.run_id, shas)

    def branch_home(self, state: RunState) -> Repo | Remote:
        """Where the run branch lives: the target checkout, or the remote (moved by push)."""
        return self.remote(state) or Repo.open(state.target)

    def objects(self, state: RunState, *shas: str) -> Repo:
        """A repository holding ``shas``: the target checkout, or this worker's clone."""
        remote = self.remote(state, *shas)
        return remote.clone if remote else Repo.open(state.target)

    def publish(self, state: RunState, *shas: str) -> None:
        """Commits this worker made, fetchable by every worker before the log names them (a no-op
        for a local target, whose commits are in the one repository every step uses)."""
        remote = self.remote(state)
        if remote is not None:
            remote.publish(state.run_id, shas)

    @contextmanager
    def tree(self, state: RunState, slot: str, sha: str | None = None) -> Iterator[Repo]:
        """A private worktree of the target at ``sha`` (default: the run's tip as the log records
        it), at a path stable per run, slot and worker, parked afterwards for the run's next step
        here (``parked.py``).  The run branch is first brought up to the log (:func:`follow_log`).
        For a remote target the worktree is one of this worker's clone, and a commit left at its
        HEAD is published."""
        at = sha or tip(state)
        remote = self.remote(state, at, landed_tip(state))
        repo = remote.clone if remote else Repo.open(state.target)
        follow_log(remote or repo, state)
        root = Workspace.of(self.config).root
        digest = hashlib.sha256(target_identity(state.target).encode()).hexdigest()[:12]
        where = root / digest / state.run_id / f"{slot}-{_safe(self.worker)}"
        with PARKED.tree(repo, at, where, self.config.git.keep_worktrees_s) as wt:
            yield wt
            if remote is not None and (made := wt.head()) != at:
                remote.publish(state.run_id, [made])

    @contextmanager
    def start_point(self, state: RunState) -> Iterator[tuple[Repo, Repo | Remote, str, str]]:
        """Where a run starts: a tree to read the project's environment in, where its branch
        lives, the commit and the branch name the target is at (a local checkout must be clean)."""
        remote = self.remote(state)
        if remote is None:
            repo = Repo.open(state.target)
            repo.require_clean()
            yield repo, repo, repo.head(), repo.branch()
            return
        base, base_branch = remote_head(state.target)
        remote.ensure(state.run_id, [base])
        root = Workspace.of(self.config).root
        digest = hashlib.sha256(target_identity(state.target).encode()).hexdigest()[:12]
        with worktree(
            remote.clone, base, root / digest / state.run_id / f"start-{_safe(self.worker)}"
        ) as wt:
            yield wt, remote, base, base_branch

    def fix_request(
        self, state: RunState, wt: Repo, batch: BatchPlanned, issues: Sequence[IssueRecord]
    ) -> fixer_registry.FixRequest:
        """What a fixer is asked: ``batch``'s ``issues``, in the worktree ``wt``."""
        return fixer_registry.FixRequest(
            run_id=state.run_id,
            target=wt.path,
            batch=batch,
            issues=list(issues),
            config=self.config.fixer,
            environment=state.environment,
        )

    def chain(self, state: RunState) -> list[fixer_registry.Fixer]:
        return fixer_registry.chain(state.fixer or ",".join(self.config.fixer.chain))

    def stacked(self, state: RunState) -> bool:
        """Verify the iteration's batches as a stack: the run's own choice, made when it was
        requested (``verify_mode``), so that every worker hosting it does the same."""
        return state.verify == "stack"

    def tests_before(self, events: Sequence[Event], iteration: int) -> TestCounts | None:
        """The opening check's test counts (for runners that report no per-test outcomes)."""
        for ev in events:
            if isinstance(ev, HealthChecked) and ev.iteration == iteration:
                for t in ev.tools:
                    if t.status in ("passed", "failed") and "tests_total" in t.counts:
                        c = t.counts
                        return TestCounts(
                            passed=c.get("tests_passed", 0),
                            failed=c.get("tests_failed", 0),
                            errors=c.get("tests_errors", 0),
                            skipped=c.get("tests_skipped", 0),
                        )
                return None
        return None

    def finish(
        self,
        state: RunState,
        events: list[Event],
        issues: Sequence[IssueRecord],
        history: Sequence[Event],
    ) -> list[Event]:
        """When ``events`` end the run, say in the final event what is left, and why."""
        if not events or not isinstance(events[-1], RunCompleted):
            return events
        try:
            chain = self.chain(state)
        except AirfixError:
            chain = []
        cfg = self.config.fixer
        learned = lessons(history)
        planned = [i for ev in history if isinstance(ev, BatchPlanned) for i in ev.issue_ids]
        left = explain_remaining(
            issues,
            fixable=lambda i: fixer_registry.supported(chain, i, cfg),
            set_aside=learned.set_aside,
            planned=planned,
            fixer=state.fixer,
            limit=events[-1].reason,
        )
        return [*events[:-1], msgspec.structs.replace(events[-1], remaining=left)]


STAGED = (
    "static checks on this commit; the tests and whole-program checks (mypy) run once on the tip "
    "of the iteration's stack"
)


def verify_mode(setting: str, chain: Sequence[fixer_registry.Fixer]) -> Literal["batch", "stack"]:
    """``fixer.verify`` resolved for a run: as a stack (static checks per batch, the tests once on
    the stack's tip, bisection when it fails, as a merge queue does) for chains of deterministic
    fixers, whose fixes are cheap to make again; else each batch by the full checks."""
    if setting in ("batch", "stack"):
        return setting  # type: ignore[return-value]
    return "stack" if deterministic(chain) else "batch"


def deterministic(chain: Sequence[fixer_registry.Fixer]) -> bool:
    """Whether every fixer of ``chain`` makes the same edit for the same issues (fixes found by
    fingerprint, not by line): such fixes are cheap to make again on another parent."""
    return bool(chain) and all(getattr(f, "deterministic", False) for f in chain)


def landed_tip(state: RunState) -> str:
    """The commit the run's branch is at, as the log records it."""
    return state.commits[-1] if state.commits else state.base_sha


def tip(state: RunState) -> str:
    """The commit the next step builds on: the iteration's stack (staged commits, tests pending)
    when there is one, else the run branch."""
    return state.stack[-1] if state.stack else landed_tip(state)


class BranchMoved(GitError):
    """The run branch is somewhere the run never put it: someone moved it outside airfix."""


def follow_log(repo: Repo | Remote, state: RunState) -> None:
    """Bring the run branch up to the log: a verifier appends ``Committed`` first and moves the
    branch after, so one that died in between leaves the branch one recorded commit behind.  It
    only ever moves forward along the recorded commits, by compare-and-swap."""
    if state.simulation or not state.branch:
        return
    ref, want = f"refs/heads/{state.branch}", landed_tip(state)
    have = repo.ref(ref)
    if have == want:
        return
    recorded = [state.base_sha, *state.commits]
    if have in recorded:
        if not repo.move_ref(ref, want, have) and repo.ref(ref) not in recorded:
            raise BranchMoved(f"the run branch {state.branch} moved while airfix was moving it")
        return
    raise BranchMoved(
        f"the run branch {state.branch} is at {have or 'nothing (deleted)'}, which "
        f"the run never recorded (its tip is {want[:12]}): it was changed outside airfix"
    )


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


@dataclass
class Step:
    """What an action decided, and the effect outside Redis to take once its events are in the
    log (an effect before the append could be taken by a worker whose turn is already over)."""

    events: list[Event]
    after: Callable[[], object] | None = None


def open_issues_of(batch: BatchPlanned, view: IterationView) -> list[IssueRecord]:
    """The batch's issues that the latest measurement still shows (as many per fingerprint as
    the batch holds, at most as many as are still open)."""
    open_by_id = {i.issue_id: i for i in view.issues}
    out = [open_by_id[i] for i in batch.issue_ids if i in open_by_id]  # the very issues planned
    taken = {i.issue_id for i in out}
    # an id an earlier commit resolved may stand for a same-fingerprint issue still open (which
    # occurrence a fix removed is not knowable): fill up to the batch's count per fingerprint
    wanted = Counter(
        view.discovered[i].fingerprint
        for i in batch.issue_ids
        if i in view.discovered and i not in open_by_id
    )
    for issue in view.issues:
        if (
            issue.issue_id not in taken
            and wanted[issue.fingerprint] > 0
            and issue.issue_id not in batch.issue_ids
        ):
            wanted[issue.fingerprint] -= 1
            out.append(issue)
    return out
