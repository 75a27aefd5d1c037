"""Parallel fixing (``fixer.parallel``): while the fixer step runs the batch in flight, it also
fixes up to ``parallel - 1`` other pending batches of the iteration, each in a private worktree
at the run's tip, and records each result as a ``FixPrepared`` event appended with the step's
own.  The state machine stays sequential: when a prepared batch's turn comes, its fix is
replayed onto the tip as it is then (a cherry-pick in the step's private worktree) instead of
running the fixer again, and the verifier judges it as any other.

Why this is safe under the fencing rules: everything happens inside the step that owns the run's
turn, in worktrees nobody else uses; candidates are objects on no branch.  A ``FixPrepared`` is
only ever read from the log, so a stale step's results (its append refused) are never used.  Each
prepared batch has its own ``fix_attempt`` marker, so a paid fixer never runs twice for the same
attempt: a batch whose marker is set but whose result never reached the log fails as the
sequential path does for a worker that died mid-fix.

Batches whose files overlap (or that name no file: they may touch anything) are never fixed at
the same time.  A fixer may still edit beyond its batch's files; a replay that conflicts fails
the batch with the reason, and the next iteration plans its issues again."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

from airfix.events.core.ledger import IterationView
from airfix.events.core.machine import ApplyFix, PrepareFix, RunState, decide
from airfix.events.schema import BatchPlanned, Event, FixPrepared, IssueRecord
from airfix.services import fixers as fixer_registry
from airfix.services.pipeline.context import Pipeline, open_issues_of, tip
from airfix.services.pipeline.git import Repo
from airfix.services.runtime.logs import get_logger

log = get_logger("airfix.roles")

MARKER_TTL_S = 7 * 86400


def marker_key(p: Pipeline, state: RunState, batch_id: str, attempt: int) -> str:
    """The key that says a fixer started this attempt of this batch (set once: never twice)."""
    return f"{p.store.keys.prefix}:fix_attempt:{state.run_id}:{batch_id}:{attempt}"


def prepared_fix(history: Sequence[Event], batch_id: str, attempt: int) -> FixPrepared | None:
    """The fix made ahead for this attempt of ``batch_id``, as the log records it."""
    found = None
    for ev in history:
        if isinstance(ev, FixPrepared) and ev.batch_id == batch_id and ev.attempt == attempt:
            found = ev
    return found


def files_of(batch: BatchPlanned, issues: Sequence[IssueRecord]) -> frozenset[str]:
    """What the batch's fix is expected to touch; empty when it cannot be known."""
    return frozenset(f for f in (*batch.files, *(i.file for i in issues)) if f and f != ".")


def companions(
    state: RunState,
    view: IterationView,
    history: Sequence[Event],
    current: BatchPlanned,
    parallel: int,
) -> list[tuple[BatchPlanned, list[IssueRecord]]]:
    """Up to ``parallel - 1`` pending batches to fix alongside ``current``, in the order the
    fixer would take them (``next_batch``'s), whose files are disjoint from ``current``'s and from
    each other's; none already prepared, none with nothing left to fix."""
    if parallel <= 1:
        return []
    taken = files_of(current, open_issues_of(current, view))
    if not taken:
        return []
    order = {b: i for i, b in enumerate(state.planned)}
    pending = sorted(
        (b for b in state.pending if b in view.batches and b != current.batch_id),
        key=lambda b: (view.batches[b].priority, order.get(b, 0)),
    )
    out: list[tuple[BatchPlanned, list[IssueRecord]]] = []
    for b in pending:
        if len(out) >= parallel - 1:
            break
        batch = view.batches[b]
        attempt = state.attempts.get(b, 0) + 1
        if prepared_fix(history, b, attempt) is not None:
            continue
        issues = open_issues_of(batch, view)
        files = files_of(batch, issues)
        if not issues or not files or files & taken:
            continue
        taken |= files
        out.append((batch, issues))
    return out


@dataclass
class _Job:
    batch: BatchPlanned
    issues: list[IssueRecord]
    attempt: int
    tree: Repo
    outcome: fixer_registry.FixOutcome | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


@dataclass
class Alongside:
    """The batches fixed alongside the one in flight, and their ``FixPrepared`` events once
    every fixer is done (:func:`alongside`)."""

    jobs: list[_Job] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@contextmanager
def alongside(
    p: Pipeline,
    state: RunState,
    view: IterationView,
    history: Sequence[Event],
    current: BatchPlanned,
    chain: list[fixer_registry.Fixer],
) -> Iterator[Alongside]:
    """Start the companions' fixers (threads, one private worktree each at the run's tip) and
    yield; on leaving, wait for every one, keep each result as a candidate commit, and fill
    ``events`` with their ``FixPrepared``.  An exception a fixer raised is raised again here,
    after all of them have ended, as it would have been had the batch run alone."""
    found = companions(state, view, history, current, p.config.fixer.parallel)
    side = Alongside()
    base = tip(state)
    with ExitStack() as trees:
        for k, (batch, issues) in enumerate(found, 1):
            attempt = state.attempts.get(batch.batch_id, 0) + 1
            key = marker_key(p, state, batch.batch_id, attempt)
            who = f"{p.worker} (alongside {current.batch_id})"
            wt = trees.enter_context(p.tree(state, f"fix-{k}"))
            if not p.store.client.set(key, who, nx=True, ex=MARKER_TTL_S):
                continue  # someone fixed this attempt already: its turn will say what happened
            side.jobs.append(_Job(batch, issues, attempt, wt))
        for job in side.jobs:
            job.thread = threading.Thread(  # in a copy of our context: log lines keep run_id & co
                target=contextvars.copy_context().run,
                args=(_run, job, p, state, chain),
                name=f"fix {job.batch.batch_id}",
            )
            job.thread.start()
        if side.jobs:
            log.info(
                "fixing batches alongside the one in flight",
                batch_id=current.batch_id,
                alongside=[j.batch.batch_id for j in side.jobs],
            )
        try:
            yield side
        finally:
            for job in side.jobs:
                if job.thread is not None:
                    job.thread.join()
        for job in side.jobs:
            if job.error is not None:
                raise job.error
        s = state
        for job in side.jobs:
            new = decide(s, _prepared(job, base, current.batch_id))
            s = p.advance(s, new)
            side.events += new


def _run(job: _Job, p: Pipeline, state: RunState, chain: list[fixer_registry.Fixer]) -> None:
    request = p.fix_request(state, job.tree, job.batch, job.issues)
    try:
        job.outcome = fixer_registry.run_chain(chain, request)
    except BaseException as exc:  # noqa: BLE001 - raised again by the step, after every join
        job.error = exc


def _prepared(job: _Job, base: str, current: str) -> PrepareFix:
    o = job.outcome or fixer_registry.FixOutcome(ok=False, reason="the fixer did not report")
    changed = job.tree.changed_files() if o.ok else []
    candidate, reason = "", ""
    if not o.ok:
        reason = o.reason or "the fixer failed"
    elif not changed:
        reason = "the fixer changed nothing"
    else:
        candidate = job.tree.commit_all(
            f"airfix candidate for {job.batch.batch_id}", run_hooks=False
        )
    return PrepareFix(
        batch_id=job.batch.batch_id,
        attempt=job.attempt,
        base=base,
        candidate=candidate,
        files_changed=changed,
        reason=reason,
        fatal=o.fatal,
        duration_s=o.duration_s,
        cost_usd=o.cost_usd,
        turns=o.turns,
        alongside=current,
    )


def replay(
    state: RunState,
    wt: Repo,
    prepared: FixPrepared,
    failed: Callable[[str, fixer_registry.FixOutcome], list[Event]],
) -> list[Event]:
    """The turn of a batch fixed ahead: its fixer's failure, or its candidate replayed onto the
    run's tip (``wt``, a private worktree there): ``ApplyFix`` with the new candidate, or a
    failure naming the commits it conflicts with.  The fixer's cost counts here, once."""
    spent = fixer_registry.FixOutcome(
        ok=not prepared.reason,
        reason=prepared.reason,
        fatal=prepared.fatal,
        cost_usd=prepared.cost_usd,
        turns=prepared.turns,
        duration_s=prepared.duration_s,
    )
    if not prepared.candidate:
        return failed(f"fixed alongside {prepared.alongside}: {prepared.reason}", spent)
    base = tip(state)
    candidate = prepared.candidate
    if prepared.base != base:
        if not wt.succeeds("cherry-pick", "--no-commit", candidate):
            return failed(_conflict(wt, prepared, base), spent)
        if not wt.changed_files():
            return failed(
                f"its fix (made on {prepared.base[:12]}) changes nothing on the run's tip "
                f"{base[:12]}: the commits since did the same",
                spent,
            )
        candidate = wt.commit_all(f"airfix candidate for {prepared.batch_id}", run_hooks=False)
    log.info(
        "fix made alongside replayed onto the tip",
        batch_id=prepared.batch_id,
        base=prepared.base[:12],
        tip=base[:12],
        candidate=candidate[:12],
    )
    return decide(
        state,
        ApplyFix(
            batch_id=prepared.batch_id,
            fixer=prepared.fixer,
            files_changed=list(prepared.files_changed),
            cost_usd=prepared.cost_usd,
            turns=prepared.turns,
            duration_s=prepared.duration_s,
            candidate=candidate,
        ),
    )


def _conflict(wt: Repo, prepared: FixPrepared, base: str) -> str:
    """Why a replay failed, naming the commits since the fix's base that touch its files."""
    wt.git("cherry-pick", "--abort", check=False)
    wt.git("reset", "-q", "--hard", base, check=False)
    files = list(prepared.files_changed)
    since = wt.git("log", "--format=%h", f"{prepared.base}..{base}", "--", *files, check=False)
    shas = since.split() or wt.git("log", "--format=%h", f"{prepared.base}..{base}").split()
    return (
        f"conflicts with {', '.join(shas[:5]) or 'the run tip'} (its fix, made alongside "
        f"{prepared.alongside} on {prepared.base[:12]}, changes {', '.join(files[:5])}, "
        f"which the run's tip {base[:12]} changed since)"
    )
