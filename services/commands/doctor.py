"""Whether airfix can work here: the health tools it would run (found, with their versions), the
project's Python interpreter, the Redis server (--redis-url, or the configured one), a live
worker for every pipeline role, and the workspace (its clones of remote targets, and whether
worktrees can be made there).  Exit 0 when everything is fine, 1 when something is missing."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import IO

import msgspec
import redis

from airfix.config import Config
from airfix.events.errors import AirfixError
from airfix.services.commands.options import EXIT_FAILURE, load, redis_problem
from airfix.services.pipeline.workspace import is_remote


class Finding(msgspec.Struct, kw_only=True):
    section: str  # tools, python, redis, workers, workspace
    name: str
    ok: bool
    detail: str


def tool_findings(target: Path | None, explicit_python: str) -> list[Finding]:
    """The target's interpreter and tools as a run would find them; without a target, the Python
    tools next to airfix itself."""
    from airfix.events.schema import ToolResult
    from airfix.services.pipeline.measure import tool_adapters
    from airfix.services.tools.adapter import BaseToolAdapter, ToolAdapter
    from airfix.services.tools.detect import python_adapters
    from airfix.services.tools.environment import PythonEnv, find_python, python_version

    if target is None:
        python = PythonEnv(
            python=sys.executable, source="airfix", version=python_version(sys.executable)
        )
        adapters: list[ToolAdapter] = list(python_adapters())
        errors: list[ToolResult] = []
    else:
        if not target.is_dir():
            raise AirfixError(f"--target {target}: no such directory")
        python = find_python(target, explicit_python)
        adapters, errors = tool_adapters(target, python)
    found = [
        Finding(section="python", name="python", ok=bool(python.version), detail=python.describe())
    ]
    for a in adapters:
        if a.available():
            found.append(Finding(section="tools", name=a.name, ok=True, detail=a.version() or "?"))
        else:
            why = a.missing() if isinstance(a, BaseToolAdapter) else f"{a.name}: not found"
            found.append(Finding(section="tools", name=a.name, ok=False, detail=why))
    found += [Finding(section="tools", name=e.tool, ok=False, detail=e.error) for e in errors]
    return found


def store_findings(cfg: Config) -> list[Finding]:
    """The Redis server answers, and every role a run needs (the pipeline's and the projector)
    has a live worker on it."""
    from airfix.services.pipeline.requests import SERVED_GROUPS, roles_without_workers
    from airfix.services.runtime.app import build_app

    url = cfg.store.redis_url
    if not url:
        return [
            Finding(
                section="redis",
                name="redis",
                ok=True,
                detail="none configured: each run hosts itself on the embedded store "
                "(workers need a server: --redis-url or AIRFIX_REDIS_URL)",
            )
        ]
    try:
        app = build_app(cfg)
        server = app.client.info("server")
        missing = roles_without_workers(app, projections=True)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return [Finding(section="redis", name="redis", ok=False, detail=redis_problem(exc, url))]
    from airfix.services.secrets import redact_url

    found = [
        Finding(
            section="redis",
            name="redis",
            ok=True,
            detail=f"Redis {server.get('redis_version', '?')} at {redact_url(url)}, "
            f"prefix {app.keys.prefix}",
        )
    ]
    for role in (g.removeprefix("role:") for g in SERVED_GROUPS):
        alive = role not in missing
        detail = "a live worker" if alive else f"none alive: airfix worker --roles {role} (or all)"
        found.append(Finding(section="workers", name=role, ok=alive, detail=detail))
    return found


def workspace_findings(cfg: Config) -> list[Finding]:
    """Where this process makes worktrees and keeps its clones of remote targets, and how much
    they take (a cache: the least recently used beyond ``git.max_clones`` go)."""
    from airfix.services.pipeline import claims
    from airfix.services.pipeline.workspace import Workspace, age, clone_urls

    ws = Workspace.of(cfg)
    count, size = ws.describe()
    found = [
        Finding(
            section="workspace",
            name="clones",
            ok=True,
            detail=f"{ws.root}: {count} clone(s) of remote targets (at most {ws.max_clones}), "
            f"{size / 1e6:.1f} MB",
        )
    ]
    for url, used in clone_urls(ws):
        found.append(
            Finding(
                section="workspace", name="clone", ok=True, detail=f"{url} (used {age(used)} ago)"
            )
        )
    why = unusable(ws.root)
    found.append(
        Finding(
            section="workspace",
            name="writable",
            ok=not why,
            detail=why + "; set git.workspace to a directory this user can write"
            if why
            else f"{ws.root}: steps can make their worktrees there",
        )
    )
    left = claims.orphans(ws.root)
    found.append(
        Finding(
            section="workspace",
            name="worktrees",
            ok=True,
            detail=f"{len(left)} left by processes that are gone (a worker removes them as it "
            "starts)" + (": " + ", ".join(str(t) for t in left[:3]) if left else ""),
        )
    )
    return found


def unusable(root: Path) -> str:
    """Why worktrees cannot be made under ``root`` ("" when they can), judged on the nearest
    directory that exists (nothing is created)."""
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable by this user"
    return ""


def cmd_doctor(args: argparse.Namespace) -> int:
    cfg = load(args)
    target = args.target or cfg.target_project.path or None
    # a remote target's tools are those of the worktrees made here: airfix's own environment's
    local = Path(target) if target and not is_remote(target) else None
    findings = [
        *tool_findings(local.expanduser() if local else None, cfg.target_project.python),
        *store_findings(cfg),
        *workspace_findings(cfg),
    ]
    ok = all(f.ok for f in findings)
    if args.json:
        print(json.dumps({"ok": ok, "findings": msgspec.to_builtins(findings)}))
    else:
        render(findings, sys.stdout)
    return 0 if ok else EXIT_FAILURE


def render(findings: list[Finding], out: IO[str]) -> None:
    for f in findings:
        out.write(f"{'ok ' if f.ok else 'NO '} {f.section:<8} {f.name:<10} {f.detail}\n")
    bad = sum(not f.ok for f in findings)
    out.write("all fine\n" if not bad else f"{bad} problem(s)\n")
