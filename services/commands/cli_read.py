"""Commands that only look: ``config``, ``status``, ``runs``, ``show``, ``inspect``, ``tail``
and ``doctor``."""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any

from airfix.events.errors import AirfixError
from airfix.services.commands import doctor, show
from airfix.services.commands.options import (
    EXIT_FAILURE,
    Subparsers,
    add_command,
    add_json,
    load,
)


def add_commands(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    cfg = add_command(
        sub,
        "config",
        parents=[common],
        summary="print the effective configuration",
        description="The configuration airfix would use (defaults, the file, AIRFIX_* variables "
        "and these options), secrets redacted; YAML, or JSON with --json.",
        examples=["airfix config --config airfix.yaml", "airfix config --json | jq .store"],
    )
    add_json(cfg, "the configuration")
    cfg.set_defaults(func=cmd_config)
    _add_runs(sub, common)
    shown = add_command(
        sub,
        "show",
        parents=[common],
        summary="a run as a whole: checks, batches and verdicts, commits, what is left",
        description=show.__doc__ or "",
        examples=["airfix show RUN_ID", "airfix show RUN_ID --json | jq '.commits[].stat'"],
    )
    shown.add_argument("run_id", metavar="RUN_ID", help="the run to show, or latest")
    add_json(shown, "the run")
    shown.set_defaults(func=show.cmd_show)
    insp = add_command(
        sub,
        "inspect",
        parents=[common],
        summary="streams, consumer groups (lag, pending, dead letters), projection lag",
        description="The store's plumbing: log lengths, consumer groups with their lag, pending "
        "entries and dead letters, and how far behind the log each read model is.",
        examples=["airfix inspect --redis-url redis://localhost:6379/0", "airfix inspect --json"],
    )
    add_json(insp, "the figures")
    insp.set_defaults(func=cmd_inspect)
    _add_tail(sub, common)
    doc = add_command(
        sub,
        "doctor",
        parents=[common],
        summary="can airfix work here? tools, the project's interpreter, Redis, workers",
        description=doctor.__doc__ or "",
        examples=[
            "airfix doctor",
            "airfix doctor --target ~/src/project --redis-url redis://localhost:6379/0 --json",
        ],
        exit_codes=[(EXIT_FAILURE, "something airfix needs is missing (see the lines marked)")],
    )
    doc.add_argument(
        "--target",
        metavar="PATH",
        help="the project to check for (default: target_project.path; without one, the Python "
        "tools in airfix's own environment)",
    )
    doc.add_argument(
        "--python", metavar="PATH", help="the project's Python interpreter (default: detected)"
    )
    add_json(doc, "every check")
    doc.set_defaults(func=doctor.cmd_doctor)


def _add_runs(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    status = add_command(
        sub,
        "status",
        parents=[common],
        summary="a run's status (default: the latest run)",
        description="One line on a run: its phase and status, iteration, score, issues and "
        "commits; and the consumer groups halted on it, if any.",
        examples=["airfix status", "airfix status RUN_ID --json"],
    )
    status.add_argument("run_id", nargs="?", metavar="RUN_ID", help="the run (default: latest)")
    add_json(status, "the run's status")
    status.set_defaults(func=cmd_status)

    runs = add_command(
        sub,
        "runs",
        parents=[common],
        summary="list runs, newest first",
        description="The runs of this store, newest request first: id, phase, status, target.  "
        "With --target, one repository's runs over time: started, status, health score before "
        "-> after, commits, issues fixed, duration (from the target_runs view).",
        examples=[
            "airfix runs --limit 5",
            "airfix runs --json | head -1",
            "airfix runs --target ~/src/project",
        ],
    )
    add_json(runs, "the runs' statuses (one array); with --target, the runs' records")
    runs.add_argument("--limit", type=int, default=20, metavar="N", help="at most N runs")
    runs.add_argument("--target", metavar="PATH", help="only the runs of this repository")
    runs.set_defaults(func=cmd_runs)


def _add_tail(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    tail = add_command(
        sub,
        "tail",
        parents=[common],
        summary="a run's (or every run's) events and service log lines, optionally as they happen",
        description="Each event with the run's phase after it, and the service log lines; from "
        "a Redis server, or from the embedded store's journal of another process.",
        examples=[
            "airfix tail latest --follow",
            "airfix tail RUN_ID --type Committed,FixRolledBack",
            "airfix tail --json --level warning | head",
        ],
    )
    tail.add_argument(
        "run_id",
        nargs="?",
        metavar="RUN_ID",
        help="one run, or latest for the newest (default: every run)",
    )
    tail.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep going: until the run ends, or until Ctrl-C without RUN_ID",
    )
    tail.add_argument(
        "--json", action="store_true", help="one JSON object per line (kind: event or log)"
    )
    tail.add_argument(
        "--type", metavar="T[,T...]", help="only these event types (log = service log lines)"
    )
    tail.add_argument("--level", metavar="L", help="minimum level (events count as info)")
    tail.add_argument(
        "--from",
        dest="start",
        choices=("start", "now"),
        help="where to begin (default: a run's start with RUN_ID, now without)",
    )
    tail.set_defaults(func=cmd_tail)


def cmd_config(args: argparse.Namespace) -> int:
    import yaml

    from airfix.config import config_to_dict
    from airfix.services.secrets import configure, redact_config

    cfg = load(args)
    configure(cfg)
    shown = redact_config(config_to_dict(cfg))
    if args.json:
        print(json.dumps(shown))
    else:
        sys.stdout.write(yaml.safe_dump(shown, sort_keys=False))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from airfix.projections.status import load_status, newest_runs
    from airfix.services.runtime.app import build_app

    app = build_app(load(args), journal=True)
    run_id = args.run_id
    if run_id is None:
        newest = newest_runs(app.client, app.keys)
        if not newest:
            raise AirfixError("no runs yet")
        run_id = newest[0]
    status = load_status(app.client, app.keys, run_id)
    if status is None:
        raise AirfixError(f"no run {run_id!r} (see airfix runs)")
    if args.json:
        print(json.dumps(status))
        return 0
    halted = "; HALTED in " + ", ".join(status["halted"]) if status["halted"] else ""
    print(
        f"{run_id}: {status['state']} {status['status'] or ''} iteration "
        f"{status['iteration']} score {status['score']:.2f} issues "
        f"{status['issues_initial']} -> {status['issues_open']} "
        f"commits {len(status['commits'])}{halted}"
    )
    if status["reason"]:
        print(f"  reason: {status['reason']}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from airfix.projections.status import load_status, newest_runs
    from airfix.services.runtime.app import build_app

    app = build_app(load(args), journal=True)
    if args.target:
        return _target_runs(app, args.target, args.limit, args.json)
    ids = newest_runs(app.client, app.keys, args.limit)
    rows = [load_status(app.client, app.keys, r) for r in ids]
    if args.json:
        print(json.dumps([r for r in rows if r]))
        return 0
    for r in rows:
        if r:
            print(f"{r['run_id']}  {r['state']:<10} {r['status'] or '-':<16} {r['target']}")
    return 0


def _target_path(path: str) -> str:
    """The target as runs record it: the repository's top level (or the path itself, resolved,
    when it is no repository any more: a removed checkout keeps its history)."""
    from airfix.services.pipeline.git import GitError, Repo

    try:
        return str(Repo.open(path).path)
    except GitError:
        return str(Path(path).expanduser().resolve())


def _target_runs(app: Any, path: str, limit: int, as_json: bool) -> int:
    from airfix.projections.queries import target_runs

    target = _target_path(path)
    rows = target_runs(app.client, app.keys, target, limit)
    if as_json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print(f"no runs of {target}", file=sys.stderr)
        return 0
    print(f"runs of {target}, newest first")
    print(
        f"{'started':<19}  {'run':<30}  {'status':<17} {'score':<13} {'commits':>7} "
        f"{'fixed':>5} {'duration':>9}"
    )
    for r in rows:
        started = _dt.datetime.fromtimestamp(r["started"]).strftime("%Y-%m-%d %H:%M:%S")
        score = f"{_score(r['score_before'])} -> {_score(r['score_after'])}"
        status = r["status"] or r["state"]
        print(
            f"{started:<19}  {r['run_id']:<30}  {status:<17} {score:<13} {r['commits']:>7} "
            f"{r['fixed']:>5} {r['duration_s']:>8.1f}s"
        )
    return 0


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def cmd_inspect(args: argparse.Namespace) -> int:
    from airfix.services.commands.ops import inspect_store, render_inspect
    from airfix.services.runtime.app import build_app

    info = inspect_store(build_app(load(args), journal=True))
    if args.json:
        print(json.dumps(info))
    else:
        render_inspect(info)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from dataclasses import replace
    from pathlib import Path

    from airfix.services.commands.tail import Tail, open_feed, parse_filter
    from airfix.services.runtime.logstream import journal_log_path

    cfg = load(args)
    flt = parse_filter(None, args.type, args.level)  # bad options fail before anything is opened
    from_start = (args.start or ("start" if args.run_id else "now")) == "start"
    if cfg.store.redis_url:
        from airfix.services.runtime.app import build_app

        feed, run_id = open_feed(
            build_app(cfg), journal=None, logs=None, run_id=args.run_id, from_start=from_start
        )
    elif cfg.store.journal:  # the embedded store lives in another process: follow its journal
        journal = Path(cfg.store.journal).expanduser()
        feed, run_id = open_feed(
            None,
            journal=journal,
            logs=journal_log_path(journal),
            run_id=args.run_id,
            from_start=from_start,
        )
    else:
        raise AirfixError(
            "the embedded store without a journal (store.journal: '') keeps nothing between "
            "commands; pass --redis-url or set store.journal"
        )
    with contextlib.suppress(KeyboardInterrupt):
        Tail(feed, replace(flt, run_id=run_id), json_out=args.json).run(follow=args.follow)
    return 0
