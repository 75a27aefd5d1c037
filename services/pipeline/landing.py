"""A stack's kept commits as they land on the run branch: each one's counts measured again where
re-application moved it, and its message rewritten to say how it was verified.

The counts are measured while the tip's suite runs (:class:`Recount`): the suite leaves a core
idle, and they are needed the moment it passes.  Nothing here moves the run branch.
"""

from __future__ import annotations

import contextvars
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from airfix.events.core.machine import RunState
from airfix.events.schema import Committed, Landed
from airfix.services.pipeline.context import Pipeline
from airfix.services.pipeline.git import GitError, Repo, identity_env
from airfix.services.pipeline.measure import WHOLE_PROGRAM
from airfix.services.runtime.cancel import scope as cancel_scope

_VERIFIED = re.compile(r"^Verified: .*$", re.MULTILINE)
_COUNTS = re.compile(r"^Counts \(before -> after\):\n(?:  .*\n)*", re.MULTILINE)
#: a commit's issue counts per tool, before and after it
Counts = tuple[dict[str, int], dict[str, int]]
#: a stack: (batch id, commit) from its first commit to its tip
Stack = list[tuple[str, str]]


class Recount:
    """The counts of the stack's kept commits, measured while the tip's suite runs (it leaves a
    core idle, and they are needed as soon as the suite passes); stopped and thrown away when
    the stack changes.  In a tree of its own: bisection and re-application use theirs."""

    def __init__(
        self, stack: list[tuple[str, str]], count: Callable[[Stack], list[Counts]]
    ) -> None:
        self.stack = list(stack)
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recount")
        self.future = self.pool.submit(contextvars.copy_context().run, self._counts, count)

    @classmethod
    def of(
        cls,
        current: Recount | None,
        stack: Stack,
        count: Callable[[Stack], list[Counts]] | None = None,
    ) -> Recount | None:
        """``current`` if it measures ``stack``; else it stops, and ``count`` starts on
        ``stack`` (none when it is empty)."""
        if current is not None and current.stack == stack:
            return current
        if current is not None:
            current.drop()
        return cls(stack, count) if stack and count is not None else None

    def _counts(self, count: Callable[[Stack], list[Counts]]) -> list[Counts]:
        with cancel_scope(self.stop):  # inside the step's own scope: either stops its tools
            return count(self.stack)

    def take(self, stack: Stack) -> list[Counts] | None:
        """The counts, if ``stack`` is the one measured (else None, and it stops)."""
        if stack != self.stack:
            self.drop()
            return None
        try:
            return self.future.result()
        finally:
            self.pool.shutdown()

    def drop(self) -> None:
        self.stop.set()
        self.future.exception()  # waits for it; what it found or raised no longer matters
        self.pool.shutdown()


def counts_of(
    p: Pipeline,
    state: RunState,
    base_counts: dict[str, int],
    stack: list[tuple[str, str]],
    committed: dict[str, Committed],
    rebuilt: set[str],
    slot: str = "verify",
) -> list[Counts]:
    """Each kept commit's issue counts before and after it, the stack's base having
    ``base_counts``: measured again for those re-applied on another parent or whose parent's
    counts moved, as committed for the others."""
    out: list[Counts] = []
    previous_after = dict(base_counts)
    with ExitStack() as trees:  # one worktree, made on first need, measures them all
        wt: Repo | None = None
        for batch, sha in stack:
            event = committed[batch]
            if _remeasured(batch, event, rebuilt, previous_after):
                if wt is None:
                    wt = trees.enter_context(p.tree(state, slot, sha=sha))
                wt.move_to(sha)
                after = p.measure_tree(
                    state, wt, scope="static", skip=WHOLE_PROGRAM - set(event.counts_after)
                ).counts_by_tool()
                before = {t: previous_after[t] for t in after if t in previous_after}
                counts = (before or dict(event.counts_before), after)
            else:
                counts = (dict(event.counts_before), dict(event.counts_after))
            out.append(counts)
            previous_after = dict(counts[1])
    return out


def rewrite(
    repo: Repo,
    base: str,
    stack: list[tuple[str, str]],
    verified: str,
    counts: list[Counts],
) -> list[Landed]:
    """The kept commits again on ``base``, each message saying how it was verified and with its
    counts (:func:`counts_of`)."""
    out: list[Landed] = []
    parent = base
    for (batch, sha), (before, after) in zip(stack, counts, strict=True):
        landed = _landed(repo, parent, batch, sha, verified, before, after)
        out.append(landed)
        parent = landed.sha
    return out


def _remeasured(
    batch: str, event: Committed, rebuilt: set[str], previous_after: dict[str, int]
) -> bool:
    """Whether a kept commit's counts must be measured again: it was re-applied on another
    parent, or its parent's counts changed under it (tools it did not measure are no change)."""
    return batch in rebuilt or any(
        previous_after.get(t, n) != n for t, n in event.counts_before.items()
    )


def _landed(
    repo: Repo,
    parent: str,
    batch: str,
    sha: str,
    verified: str,
    before: dict[str, int],
    after: dict[str, int],
) -> Landed:
    """``sha``'s tree as a commit on ``parent``, its message saying how it was verified and
    with the counts ``before`` -> ``after``."""
    message = _VERIFIED.sub(
        f"Verified: {verified}", repo.git("log", "-1", "--format=%B", sha).rstrip()
    )
    message = _COUNTS.sub(_counts_block(before, after), message + "\n").rstrip() + "\n"
    tree = repo.git("rev-parse", f"{sha}^{{tree}}").strip()
    try:
        new = repo.git(
            "commit-tree", tree, "-p", parent, "-m", message, env=identity_env(repo, sha)
        ).strip()
    except GitError as exc:
        raise GitError(f"could not land the stack at {batch}: {exc}") from exc
    files = [f for f in repo.git("diff", "--name-only", parent, new).splitlines() if f]
    return Landed(
        batch_id=batch,
        sha=new,
        message=message,
        files=files,
        counts_before=dict(before),
        counts_after=dict(after),
    )


def _counts_block(before: dict[str, int], after: dict[str, int]) -> str:
    keys = sorted(set(before) | set(after))
    if not keys:
        return ""
    lines = ["Counts (before -> after):"]
    for k in keys:
        b, a = before.get(k), after.get(k)
        lines.append(f"  {k}: {'?' if b is None else b} -> {'?' if a is None else a}")
    return "\n".join(lines) + "\n"
