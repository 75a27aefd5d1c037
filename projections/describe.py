"""One line per event, for people: what happened, in which phase, with counts."""

from __future__ import annotations

from airfix.events.schema import (
    BatchPlanned,
    BatchSkipped,
    Committed,
    Event,
    FixApplied,
    FixFailed,
    FixPrepared,
    FixRolledBack,
    FixStarted,
    HealthChecked,
    IssuesDiscovered,
    IterationCompleted,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunRequested,
    RunStarted,
    StackDropped,
    StackLanded,
)


def _tools(ev: HealthChecked) -> str:
    parts = []
    for t in ev.tools:
        if t.status == "tool_error":
            parts.append(f"{t.tool} ERROR")
        elif t.status == "skipped":
            parts.append(f"{t.tool} skipped")
        elif t.tool == "coverage" and "coverage" in ev.parts:  # the metric, not its test run
            parts.append(f"coverage {100 * ev.parts['coverage']:.0f}%")
        elif "tests_total" in t.counts:
            parts.append(
                f"{t.tool} {t.counts.get('tests_passed', 0)}/{t.counts['tests_total']} passed"
            )
        else:
            parts.append(f"{t.tool} {t.counts.get('issues', t.counts.get('error', 0))}")
    return ", ".join(parts)


def _started(ev: RunStarted) -> str:
    start = ev.base_branch or "HEAD"
    line = f"started from {start} at {ev.base_sha[:10]} by {ev.worker}; commits go to {ev.branch or '-'}"
    env = ev.environment
    if env:
        tools = ", ".join(
            f"{k.removeprefix('tool.')} {v}"
            for k, v in sorted(env.items())
            if k.startswith("tool.")
        )
        source = env.get("python_source", "")
        where = "airfix's own" if source == "airfix" else f"from {source}"
        line += (
            f"\n  checks run with python {env.get('python', '?')} "
            f"({env.get('python_version', '?')}, {where}); {tools}"
        )
    return line


def _found(ev: IssuesDiscovered) -> str:
    by_phase: dict[str, int] = {}
    for i in ev.issues:
        by_phase[i.phase] = by_phase.get(i.phase, 0) + 1
    detail = ", ".join(f"{n} {p}" for p, n in sorted(by_phase.items())) or "none"
    return f"{len(ev.issues)} issue(s) found: {detail}"


def describe(ev: Event) -> str:  # noqa: C901 (a line per event type)
    """A short human line for ``ev`` (no run id: callers add it when they show several runs)."""
    if isinstance(ev, RunRequested):
        mode = " (simulation)" if ev.simulation else ""
        return (
            f"run requested on {ev.target}{mode}: batching {ev.batching}, fixer {ev.fixer}, "
            f"max {ev.limits.max_iterations} iterations"
        )
    if isinstance(ev, RunStarted):
        return _started(ev)
    if isinstance(ev, HealthChecked):
        verdict = "healthy" if ev.healthy else "not healthy"
        # a full check after the first closes the previous iteration (and opens the next, if any)
        when = (
            f"after iteration {ev.iteration - 1}"
            if ev.scope == "full" and ev.iteration > 1
            else f"iteration {ev.iteration}"
        )
        return f"health check ({ev.scope}, {when}): score {ev.score:.2f}, {verdict}; {_tools(ev)}"
    if isinstance(ev, IssuesDiscovered):
        return _found(ev)
    if isinstance(ev, BatchPlanned):
        return (
            f"[{ev.phase}] batch {ev.batch_id} planned (priority {ev.priority}): {ev.description}"
        )
    if isinstance(ev, FixStarted):
        return f"fixing {ev.batch_id} with {ev.fixer} (attempt {ev.attempt})"
    if isinstance(ev, FixApplied):
        cost = f", ${ev.cost_usd:.2f}, {ev.turns} turns" if ev.cost_usd or ev.turns else ""
        return f"fix applied to {ev.batch_id}: {len(ev.files_changed)} file(s) changed in {ev.duration_s:.1f}s{cost}"
    if isinstance(ev, FixPrepared):
        done = f"candidate {ev.candidate[:10]}" if ev.candidate else f"failed: {ev.reason}"
        return f"fixed {ev.batch_id} ahead, alongside {ev.alongside}: {done}"
    if isinstance(ev, FixFailed):
        return f"fix failed for {ev.batch_id}: {ev.reason}"
    if isinstance(ev, FixRolledBack):
        return f"rolled back {ev.batch_id}: {ev.reason}"
    if isinstance(ev, BatchSkipped):
        return f"skipped {ev.batch_id}: {ev.reason}"
    if isinstance(ev, StackDropped) and ev.narrowed:
        return f"narrowed {ev.batch_id} on the stack to {ev.narrowed[:10]}: {ev.reason}"
    if isinstance(ev, StackDropped):
        return f"dropped {ev.batch_id} from the stack: {ev.reason}"
    if isinstance(ev, StackLanded):
        return f"landed {len(ev.commits)} commit(s) on the run branch, verified {ev.verified_by}"
    if isinstance(ev, Committed):
        subject = ev.message.splitlines()[0] if ev.message else ""
        where = "staged " if ev.staged else "committed "
        return f"{where}{ev.sha[:10]} {subject}"
    if isinstance(ev, IterationCompleted):
        return (
            f"iteration {ev.iteration} done: {ev.committed} committed, {ev.rolled_back} rolled back, "
            f"{ev.failed} failed; {ev.issues_remaining} issue(s) remain, score {ev.score:.2f}"
        )
    if isinstance(ev, RunCompleted):
        return (
            f"run finished: {ev.status} ({ev.reason}); issues {ev.issues_before} -> {ev.issues_after}, "
            f"{ev.commits} commit(s)"
        )
    if isinstance(ev, RunFailed):
        return f"run failed: {ev.status} ({ev.reason})"
    if isinstance(ev, RunCancelled):
        return f"run cancelled by {ev.requested_by or '?'}: {ev.reason}"
    return type(ev).__name__
