"""Commands over the log itself: ``replay``, ``export``, ``import``, ``projections rebuild``,
``dlq`` and ``trim``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from airfix.events.errors import AirfixError
from airfix.services.commands.options import (
    EXIT_FAILURE,
    Subparsers,
    add_command,
    add_json,
    load,
)


def add_commands(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    replay = add_command(
        sub,
        "replay",
        parents=[common],
        summary="a run's timeline with the state after each event (RUN_ID or an export file)",
        description="Fold a run's events one by one and show each with the run's state after "
        "it.  An export file is replayed offline: no Redis at all.  Nothing is written.",
        examples=["airfix replay RUN_ID --at 12", "airfix replay run.jsonl --json | jq .state"],
    )
    replay.add_argument(
        "source", metavar="RUN_ID|FILE.jsonl", help="a run of this store, or an export file"
    )
    replay.add_argument("--at", type=int, metavar="VERSION", help="stop at this version")
    add_json(replay, '{"steps": [...], "state": {...}}')
    replay.set_defaults(func=cmd_replay)

    export = add_command(
        sub,
        "export",
        parents=[common],
        summary="write a run's events as JSON lines to stdout",
        description="Write a run's events, one JSON object per line, in version order: for "
        "airfix import into another store, or airfix replay offline.",
        examples=["airfix export RUN_ID > run.jsonl", "airfix export RUN_ID | head -c 200"],
    )
    export.add_argument("run_id", metavar="RUN_ID", help="the run to export")
    export.set_defaults(func=cmd_export)

    imp = add_command(
        sub,
        "import",
        parents=[common],
        summary="load exported events into this store (idempotent)",
        description="Append an export file's runs to this store, as recorded.  Every line is "
        "checked before anything is written; importing the same file twice adds nothing.",
        examples=["airfix import run.jsonl --redis-url redis://localhost:6379/0"],
    )
    imp.add_argument("file", metavar="FILE.jsonl", help="a file written by airfix export")
    imp.set_defaults(func=cmd_import)
    _add_projections(sub, common)
    _add_dlq(sub, common)
    _add_trim(sub, common)


def _add_projections(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    proj = add_command(
        sub,
        "projections",
        parents=[common],
        summary="rebuild the read models from the log",
        description="The read models (status, task queue, run history, ...) are folds of the "
        "log; rebuild them from it.",
        examples=["airfix projections rebuild --check"],
    )
    actions = proj.add_subparsers(
        dest="projections_command", metavar="ACTION", required=True, help="what to do"
    )
    rb = add_command(
        actions,
        "rebuild",
        parents=[common],
        summary="rebuild into a scratch namespace, compare, then swap in (or only --check)",
        description="Fold the whole log into a scratch namespace, compare with the live views, "
        "then rebuild the live views in place (with --check: only compare).",
        examples=["airfix projections rebuild --check", "airfix projections rebuild"],
        exit_codes=[(EXIT_FAILURE, "with --check: a view differs from a rebuild")],
    )
    rb.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    rb.set_defaults(func=cmd_projections_rebuild)


_DLQ_ACTIONS = {
    "list": ("every parked entry (optionally of one group)", ["airfix dlq list --json"]),
    "show": ("one dead letter with its original event", ["airfix dlq show ID"]),
    "retry": (
        "hand the original entry to its group again, then the halted run's other parked "
        "entries, oldest first",
        ["airfix dlq retry ID --wait 60"],
    ),
    "discard": ("delete dead letters", ["airfix dlq discard ID [ID ...]"]),
}


def _add_dlq(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    dlq = add_command(
        sub,
        "dlq",
        parents=[common],
        summary="dead letters: list, show, retry, discard",
        description="Entries a consumer group could not handle are parked as dead letters, and "
        "the run halted in that group; look at them, retry or discard them.",
        examples=["airfix dlq list", "airfix dlq retry ID"],
    )
    actions = dlq.add_subparsers(
        dest="dlq_command", metavar="ACTION", required=True, help="what to do"
    )
    for action, (text, examples) in _DLQ_ACTIONS.items():
        changes = action in ("retry", "discard")
        a = add_command(
            actions,
            action,
            parents=[common],
            summary=text,
            description=text[0].upper() + text[1:] + ".",
            examples=examples,
            exit_codes=[(EXIT_FAILURE, f"a {action} did not go through")] if changes else [],
        )
        if action == "discard":
            a.add_argument("ids", nargs="+", metavar="ID", help="dead letter ids (dlq list)")
        elif action != "list":
            a.add_argument("ids", nargs=1, metavar="ID", help="a dead letter id (dlq list)")
        a.add_argument("--group", help="the consumer group (default: whichever has the id)")
        if changes:
            a.add_argument(
                "--wait",
                type=float,
                default=30.0,
                metavar="S",
                help="how long a live worker owning the partition may take to do it",
            )
        else:
            add_json(a, "the dead letter(s)")
        a.set_defaults(func=cmd_dlq)


def _add_trim(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    trim = add_command(
        sub,
        "trim",
        parents=[common],
        summary="remove log entries every group acknowledged, of runs finished long ago",
        description="Remove the log entries of runs finished long ago that every consumer "
        "group has acknowledged; optionally archive each such run first.",
        examples=[
            "airfix trim --older-than 7d --dry-run",
            "airfix trim --older-than 30d --archive /var/backups/airfix",
        ],
    )
    trim.add_argument(
        "--older-than",
        required=True,
        metavar="DURATION",
        help="runs finished more than this long ago: 7d, 12h, 30m, 1h30m",
    )
    trim.add_argument(
        "--archive",
        metavar="DIR",
        help="first write each such run to DIR/<run_id>.jsonl, then remove its stream too",
    )
    trim.add_argument("--dry-run", action="store_true", help="show what would go; change nothing")
    add_json(trim, "what was (or would be) removed")
    trim.set_defaults(func=cmd_trim)


def cmd_replay(args: argparse.Namespace) -> int:
    from collections.abc import Iterable

    from airfix.events.schema import Event
    from airfix.services.commands.ops import iter_timeline, read_jsonl, write_timeline

    source = Path(args.source)
    events: Iterable[Event]
    if source.suffix == ".jsonl" or source.is_file():
        if not source.is_file():
            raise AirfixError(f"{source}: no such file")
        events = list(read_jsonl(source))  # offline: no Redis at all
        runs = {e.run_id for e in events}
        if len(runs) != 1:
            raise AirfixError(f"{source} holds {len(runs)} runs; replay takes one")
    else:
        from airfix.services.runtime.app import build_app

        app = build_app(load(args), journal=True)
        if app.store.version(args.source) == 0:
            raise AirfixError(f"no run {args.source!r} in this store (see airfix runs)")
        events = app.store.read_run(args.source)  # streamed: a long run is never all in memory
    if args.at is not None and args.at < 1:
        raise AirfixError(f"--at must be at least 1, got {args.at}")
    write_timeline(iter_timeline(events, at=args.at), sys.stdout.buffer, json=args.json)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from airfix.events.codec import write_jsonl
    from airfix.services.runtime.app import build_app

    app = build_app(load(args), journal=True)
    if app.store.version(args.run_id) == 0:
        raise AirfixError(f"no run {args.run_id!r} in this store (see airfix runs)")
    write_jsonl(app.store.read_run(args.run_id), sys.stdout.buffer)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from airfix.services.commands.ops import import_events, read_jsonl
    from airfix.services.runtime.app import build_app

    events = list(read_jsonl(Path(args.file)))  # every line is checked before anything is written
    app = build_app(load(args), journal=True)
    for run_id, (at_version, duplicate) in import_events(app.store, events).items():
        print(f"{run_id}: {'already present' if duplicate else 'imported'}, version {at_version}")
    return 0


def cmd_projections_rebuild(args: argparse.Namespace) -> int:
    from airfix.events.keys import Keys
    from airfix.services.commands.ops import rebuild_all
    from airfix.services.runtime.app import build_app

    app = build_app(load(args), journal=True)
    scratch = Keys(prefix=f"scratch:{app.keys.prefix}", partitions=app.keys.partitions)
    equal = rebuild_all(app.store, app.projections(), app.projections(scratch), check=args.check)
    for name, same in equal.items():
        print(
            f"{name}: {'equal' if same else 'DIFFERS from a rebuild'}"
            + ("" if args.check else "; rebuilt from the log")
        )
    return EXIT_FAILURE if args.check and not all(equal.values()) else 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from airfix.services.commands import dlq
    from airfix.services.runtime import deadletters
    from airfix.services.runtime.app import build_app

    app = build_app(load(args), journal=True)
    if args.dlq_command == "list":
        rows = deadletters.list_dead_letters(app.client, app.keys, args.group)
        if args.json:
            print(json.dumps([d.to_dict() for d in rows]))
        else:
            dlq.render_list(rows)
        return 0
    # every id is found before anything is written
    found = [deadletters.find(app.client, app.keys, i, args.group) for i in args.ids]
    if args.dlq_command == "show":
        if args.json:
            print(json.dumps(found[0].to_dict(event=True)))
        else:
            dlq.render_show(found[0])
        return 0
    failed = False
    for d in found:
        out = deadletters.request(app, args.dlq_command, d, wait_s=args.wait)
        print(dlq.describe(out))
        failed = failed or out.state != "done"
    return EXIT_FAILURE if failed else 0


def cmd_trim(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from airfix.services.commands.trim import render
    from airfix.services.runtime.app import build_app
    from airfix.services.runtime.retention import parse_duration, trim

    older_than = parse_duration(args.older_than)  # bad input fails before anything is opened
    app = build_app(load(args), journal=True)
    report = trim(
        app,
        older_than=older_than,
        archive=Path(args.archive) if args.archive else None,
        dry_run=args.dry_run,
    )
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        render(report)
    return 0
