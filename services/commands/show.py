"""A run as a whole, folded from its events: target, base and branch, status and why; per
iteration its checks and per batch the verdict with its reason; the commits with their diffstat
(from git in the target, when it is still there); what is left by tool and rule; durations."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import msgspec

from airfix.events.errors import AirfixError
from airfix.projections.detail import RunDetail, run_detail
from airfix.services.commands.options import load

_SHA = re.compile(r"[0-9a-f]{7,64}")  # what a commit event records; never an option for git


class FileStat(msgspec.Struct, kw_only=True):
    path: str
    insertions: int | None  # None: a binary file
    deletions: int | None


class DiffStat(msgspec.Struct, kw_only=True):
    files: list[FileStat]
    insertions: int
    deletions: int


def diffstat(target: str, sha: str) -> DiffStat | None:
    """What the commit changed, from ``git show --numstat`` in the target; None when the target
    or the commit is gone."""
    if not (Path(target).is_dir() and _SHA.fullmatch(sha)):
        return None
    proc = subprocess.run(
        ["git", "show", "--numstat", "--format=", "--no-renames", sha],
        cwd=target,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    files = []
    for line in proc.stdout.splitlines():
        added, removed, path = line.split("\t", 2)
        files.append(
            FileStat(
                path=path,
                insertions=None if added == "-" else int(added),
                deletions=None if removed == "-" else int(removed),
            )
        )
    return DiffStat(
        files=files,
        insertions=sum(f.insertions or 0 for f in files),
        deletions=sum(f.deletions or 0 for f in files),
    )


def cmd_show(args: argparse.Namespace) -> int:
    from airfix.projections.status import newest_runs
    from airfix.services.runtime.app import build_app

    app = build_app(load(args), journal=True)
    run_id = args.run_id
    if run_id == "latest":
        newest = newest_runs(app.client, app.keys)
        if not newest:
            raise AirfixError("no runs yet")
        run_id = newest[0]
    if app.store.version(run_id) == 0:
        raise AirfixError(f"no run {run_id!r} in this store (see airfix runs)")
    detail = run_detail(app.store.read_run(run_id))
    stats = {c.sha: diffstat(detail.target, c.sha) for c in detail.commits}
    if args.json:
        data = msgspec.to_builtins(detail)
        for commit in data["commits"]:
            stat = stats[commit["sha"]]
            commit["stat"] = msgspec.to_builtins(stat) if stat is not None else None
        sys.stdout.write(msgspec.json.encode(data).decode() + "\n")
    else:
        render(detail, stats, sys.stdout)
    return 0


def render(detail: RunDetail, stats: dict[str, DiffStat | None], out: IO[str]) -> None:
    d = detail
    outcome = f"{d.state} {d.status}".strip() + (f" ({d.reason})" if d.reason else "")
    lines = [
        f"run {d.run_id}: {outcome}",
        f"  target   {d.target}",
        f"  base     {d.base_branch or 'HEAD'} at {d.base_sha[:10] or '-'}; "
        f"branch {d.branch or '-'}",
        f"  fixer    {d.fixer}, batching {d.batching}"
        + (", simulation: nothing changed" if d.simulation else ""),
        f"  issues   {d.issues_before} -> {d.issues_after}; score {_score(d.score_before)} -> "
        f"{_score(d.score_after)}; {d.duration_s:.1f}s"
        + (f"; ${d.cost_usd:.2f}" if d.cost_usd else ""),
    ]
    for it in d.iterations:
        lines += _iteration_lines(it)
    lines.append(f"commits: {len(d.commits)}" + (f" on {d.branch}" if d.commits else ""))
    for c in d.commits:
        lines.append(f"  {c.sha[:10]} {c.subject}")
        lines += _stat_lines(stats.get(c.sha))
    left = sum(r.count for r in d.remaining)
    lines.append(f"left: {left} issue(s)" + (" by tool and rule" if left else ""))
    for r in d.remaining:
        where = f" ({', '.join(r.files)})" if r.files else ""
        lines.append(f"  {r.tool} {r.rule or '-'}: {r.count}, {r.reason}{where}")
    out.write("\n".join(lines) + "\n")


def _iteration_lines(it: Any) -> list[str]:
    done = (
        f": {it.committed} committed, {it.rolled_back} rolled back, {it.failed} failed; "
        f"score {it.score:.2f}"
        if it.completed
        else ""
    )
    lines = [f"iteration {it.number} ({it.duration_s:.1f}s){done}"]
    lines += [f"  {c.line} [{c.tools_s:.1f}s of tools]" for c in it.checks]
    if it.issues_found:
        lines.append(f"  {it.issues_found} issue(s) found")
    for b in it.batches:
        sha = f" {b.sha[:10]}" if b.sha else ""
        why = f": {b.reason}" if b.reason else ""
        lines.append(f"  [{b.phase}] {b.description} ({b.issues} issue(s))")
        lines.append(f"      {b.verdict}{sha}{why} [{b.attempts} attempt(s), fixer {b.fix_s:.1f}s]")
    return lines


def _stat_lines(stat: DiffStat | None) -> list[str]:
    if stat is None:
        return ["      (no diffstat: the target or the commit is not reachable)"]
    lines = [
        f"      {len(stat.files)} file(s) changed, {stat.insertions} insertion(s)(+), "
        f"{stat.deletions} deletion(s)(-)"
    ]
    for f in stat.files:
        change = "binary" if f.insertions is None else f"+{f.insertions} -{f.deletions}"
        lines.append(f"      {f.path} | {change}")
    return lines


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
