"""What ``decide`` concludes: the command's events, then at most one terminal verdict.

Policy in ``decide`` (it appends one ``RunCompleted`` after the command's own events):

* RecordHealth, scope "full": a tool with status "tool_error" -> "tool_error" (a tool that cannot
  measure never passes); else ``healthy`` for ``limits.stability_runs`` full checks in a row ->
  "succeeded".  Other scopes never end the run.
* FailFix / RollBack (of a batch that is not a bisecting half: ``BatchPlanned.split_of``):
  ``consecutive_failures`` reaches ``max_consecutive_failures`` ->
  "partially_fixed" when the run has commits, else "verify_failed" (last failure a rollback) or
  "failed" (last failure the fixer's).  Commit resets the streak.
* FailFix / RollBack / Commit (back in planning, nothing in flight) and CompleteIteration:
  ``max_cost_usd`` > 0 and cost >= it -> "budget_exhausted".  Never right after ApplyFix, so a
  run never stops with an unverified fix on the tree.
* FailFix with ``fatal`` (a failure no retry can cure: the fixer is not logged in, its binary is
  missing) -> "fixer_unavailable" at once, instead of trying it on every batch.
* CompleteIteration of a simulation run -> "simulated" (it plans, fixes nothing, ends).
* CompleteIteration with ``nothing_fixable`` (the planner found nothing its fixer chain can fix)
  -> "partially_fixed" when the run has commits, else "nothing_fixable".
* CompleteIteration: iterations completed >= ``max_iterations`` -> "partially_fixed" with commits,
  else "budget_exhausted"; ``no_progress_iterations`` iterations in a row without progress (no
  commit and no full-check score better than the best before) -> "no_progress".
* Any command carrying ``now`` (Tick always): ``now - started_at > max_duration_s`` ->
  "timed_out", also mid-fix: it is a hard limit.  The clock starts at RunStarted.
* The first verdict wins, in the order listed for the command: health, failure streak,
  max_iterations, no_progress, cost, timeout.  A limit <= 0 is disabled.
"""

from __future__ import annotations

import msgspec

from airfix.events.core.commands import (
    Command,
    Commit,
    CompleteIteration,
    Fail,
    FailFix,
    RecordHealth,
    RollBack,
    Tick,
    events_for,
)
from airfix.events.core.state import RunState, evolve
from airfix.events.core.transitions import illegal
from airfix.events.errors import InvalidTransition
from airfix.events.schema import TERMINAL_STATUSES, Event, RunCompleted


def _timeout(before: RunState, now: float | None) -> tuple[str, str] | None:
    limit = before.limits.max_duration_s
    if now is None or before.started_at <= 0 or limit <= 0:
        return None
    elapsed = now - before.started_at
    if elapsed > limit:
        return "timed_out", f"max_duration_s={limit:g} exceeded: {elapsed:.0f}s since the start"
    return None


def _cost(after: RunState) -> tuple[str, str] | None:
    limit = after.limits.max_cost_usd
    if limit > 0 and after.cost_usd >= limit:
        return "budget_exhausted", f"max_cost_usd={limit:g} reached: ${after.cost_usd:.2f} spent"
    return None


def _after_health(before: RunState, after: RunState, c: RecordHealth) -> tuple[str, str] | None:
    lim = after.limits
    if c.scope == "full":
        broken = [t.tool for t in c.tools if t.status == "tool_error"]
        if broken:
            return "tool_error", f"tools could not measure: {', '.join(broken)}"
        if c.healthy and after.healthy_streak >= max(1, lim.stability_runs):
            runs = (
                f", {after.healthy_streak} full checks in a row" if lim.stability_runs > 1 else ""
            )
            return "succeeded", f"healthy (score {c.score:g}{runs})"
    return _timeout(before, c.now)


def _after_failure(
    before: RunState, after: RunState, c: FailFix | RollBack
) -> tuple[str, str] | None:
    if isinstance(c, FailFix) and c.fatal:
        return "fixer_unavailable", c.reason
    n = after.limits.max_consecutive_failures
    if n > 0 and after.consecutive_failures >= n:
        what = "rolled back" if isinstance(c, RollBack) else "failed"
        reason = f"max_consecutive_failures={n} reached: {n} fixes in a row {what}"
        if after.commits:
            return "partially_fixed", reason
        return ("verify_failed" if isinstance(c, RollBack) else "failed"), reason
    return _cost(after) or _timeout(before, c.now)


def _after_iteration(
    before: RunState, after: RunState, c: CompleteIteration
) -> tuple[str, str] | None:
    lim = after.limits
    if after.simulation:
        return "simulated", (
            f"simulation: {after.batches_planned} batch(es) planned, "
            "no fixer ran, nothing was changed"
        )
    if c.nothing_fixable:
        reason = (
            f"nothing left is fixable by the fixer chain {after.fixer!r}: "
            f"{after.issues_open} issue(s) remain"
        )
        return ("partially_fixed" if after.commits else "nothing_fixable"), reason
    if lim.max_iterations > 0 and after.iterations_completed >= lim.max_iterations:
        reason = f"max_iterations={lim.max_iterations} reached"
        return ("partially_fixed" if after.commits else "budget_exhausted"), reason
    n = lim.no_progress_iterations
    if n > 0 and after.iterations_without_progress >= n:
        return "no_progress", f"no_progress_iterations={n} reached: no commit, no better score"
    return _cost(after) or _timeout(before, c.now)


def _verdict(before: RunState, after: RunState, c: Command) -> tuple[str, str] | None:
    """The terminal (status, reason) the policy reaches after ``c``'s own events, if any."""
    if after.terminal:
        return None
    if isinstance(c, RecordHealth):
        return _after_health(before, after, c)
    if isinstance(c, (FailFix, RollBack)):
        return _after_failure(before, after, c)
    if isinstance(c, Commit):
        return _cost(after) or _timeout(before, c.now)
    if isinstance(c, CompleteIteration):
        return _after_iteration(before, after, c)
    if isinstance(c, Tick):
        return _timeout(before, c.now)
    return None


def decide(state: RunState, command: Command) -> list[Event]:
    """The payload-only events ``command`` produces on ``state``; raises InvalidTransition if illegal.

    The command's own events are checked with the same legality rules ``evolve`` uses and the policy reads
    the state *after* them, so ``fold(stamp(decide(s, c)))`` can never disagree with ``decide``.
    """
    cname = type(command).__name__
    if state.terminal:
        why = f"the run is completed (status {state.status!r}); nothing is legal after it"
        raise InvalidTransition(state.state, cname, why)
    if isinstance(command, Tick) and state.state == "new":
        raise InvalidTransition(state.state, cname, "the run has not been requested")
    if isinstance(command, Fail) and (
        command.status not in TERMINAL_STATUSES or command.status == "succeeded"
    ):
        why = f"status {command.status!r} is not a failure status"
        raise InvalidTransition(state.state, cname, why)
    events = events_for(state, command)
    after = state
    for ev in events:
        refused = illegal(after, ev)
        if refused is not None:
            raise InvalidTransition(state.state, cname, refused)
        after = evolve(
            after,
            msgspec.structs.replace(ev, run_id=after.run_id, version=after.version + 1),
        )
    verdict = _verdict(state, after, command)
    if verdict is not None:
        status, reason = verdict
        events.append(
            RunCompleted(
                status=status,  # type: ignore[arg-type]
                reason=reason,
                issues_before=after.issues_initial,
                issues_after=after.issues_open,
                commits=len(after.commits),
            )
        )
    return events
