"""Replay, export/import and projections rebuild, through the real CLI and in-process with spies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from airfix.config import load_config
from airfix.events.core.machine import fold
from airfix.projections.status import load_status
from airfix.services.commands.cli import main
from airfix.services.runtime.app import build_app
from airfix.services.runtime.worker import drain
from tests.conftest import REAL_URL, real_client
from tests.scenario import append_run


def cli(
    *args: str, env: dict[str, str] | None = None, url: str | None = REAL_URL
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full.pop("AIRFIX_REDIS_URL", None)
    extra = ["--redis-url", url] if url else []
    cmd, rest = args[0], list(args[1:])
    # options go after the subcommand (and after the projections subcommand's own verb)
    cmd_args = [cmd, rest[0], *extra, *rest[1:]] if cmd == "projections" else [cmd, *extra, *rest]
    return subprocess.run(
        [sys.executable, "-m", "airfix.services.commands.cli", *cmd_args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def server_app():  # type: ignore[no-untyped-def]
    client = real_client()
    client.flushdb()
    app = build_app(load_config(overrides={"store.redis_url": REAL_URL}, env={}))
    yield app
    client.flushdb()


def test_replay_of_a_run_equals_its_live_status(server_app) -> None:  # type: ignore[no-untyped-def]
    events = append_run(server_app.store, "r1")
    drain(server_app.store, server_app.handlers(["projections"]))
    out = cli("replay", "r1", "--json")
    assert 0 == out.returncode, out.stderr
    replay = json.loads(out.stdout)
    live = load_status(server_app.client, server_app.keys, "r1")
    live.pop("halted")
    assert live == replay["state"]
    assert [e.version for e in events] == [s["version"] for s in replay["steps"]]
    assert "new -> requested" == replay["steps"][0]["transition"]
    at = json.loads(cli("replay", "r1", "--at", "4", "--json").stdout)
    assert msgspec.to_builtins(fold(events[:4])) == at["state"]
    text = cli("replay", "r1")
    assert (
        0 == text.returncode and "committed def" in text.stdout and "partially_fixed" in text.stdout
    )


def test_export_then_offline_replay_then_idempotent_import(server_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    append_run(server_app.store, "r1")
    exported = cli("export", "r1")
    assert 0 == exported.returncode, exported.stderr
    path = tmp_path / "run.jsonl"
    path.write_text(exported.stdout)
    assert 14 == len(path.read_text().splitlines())
    # offline: no Redis at all (the URL points nowhere and is never used)
    offline = cli("replay", str(path), "--json", url="redis://127.0.0.1:1/0")
    assert 0 == offline.returncode, offline.stderr
    assert "completed" == json.loads(offline.stdout)["state"]["state"]
    # import into another store (a prefix of its own), twice: the second adds nothing
    other = {"AIRFIX__STORE__PREFIX": "other"}
    first = cli("import", str(path), env=other)
    assert 0 == first.returncode and "r1: imported, version 14" in first.stdout, first.stderr
    second = cli("import", str(path), env=other)
    assert "r1: already present, version 14" in second.stdout
    other_app = build_app(
        load_config(overrides={"store.redis_url": REAL_URL, "store.prefix": "other"}, env={})
    )
    assert 14 == server_app.client.xlen(other_app.keys.run_stream("r1"))
    assert list(server_app.store.read_run("r1")) == list(other_app.store.read_run("r1"))


def test_a_torn_or_bad_export_line_is_named_and_nothing_is_imported(
    server_app, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    append_run(server_app.store, "r1")
    lines = cli("export", "r1").stdout.splitlines()
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([*lines[:3], lines[3][:40]]) + "\n")
    out = cli("import", str(path), env={"AIRFIX__STORE__PREFIX": "other"})
    assert 2 == out.returncode and "line 4" in out.stderr
    assert [] == server_app.client.keys("other:*:run:*")


def test_projections_rebuild_check_finds_and_repairs_a_difference(server_app) -> None:  # type: ignore[no-untyped-def]
    append_run(server_app.store, "r1")
    append_run(server_app.store, "r2", finish=False)
    drain(server_app.store, server_app.handlers(["projections"]))
    ok = cli("projections", "rebuild", "--check")
    assert 0 == ok.returncode and "DIFFERS" not in ok.stdout, ok.stdout + ok.stderr
    server_app.client.zadd(server_app.keys.task_queue, {"junk": 1})
    bad = cli("projections", "rebuild", "--check")
    assert 1 == bad.returncode and "task_queue: DIFFERS" in bad.stdout
    fixed = cli("projections", "rebuild")
    assert 0 == fixed.returncode
    assert 0 == cli("projections", "rebuild", "--check").returncode
    assert server_app.client.zscore(server_app.keys.task_queue, "junk") is None
    assert [] == server_app.client.keys("scratch:*")


def test_replay_has_no_side_effects(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replay starts no process, touches no repository and writes nothing to the store."""
    import airfix.events.storage.store as store_mod
    import airfix.services.pipeline.git as git_mod
    import airfix.services.tools.adapter as tools_base
    from airfix.events.storage.backend import connect, embedded_server

    client = connect()  # the process-wide embedded store the CLI uses
    client.flushdb()
    app = build_app(load_config(env={}))
    append_run(app.store, "spy-run")

    def forbidden(*a: object, **k: object) -> None:
        raise AssertionError("replay must not do this")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(subprocess, "run", forbidden)
    monkeypatch.setattr(tools_base, "run_process", forbidden)
    monkeypatch.setattr(git_mod.Repo, "open", forbidden)
    monkeypatch.setattr(store_mod.EventStore, "append", forbidden)
    before = {k: client.type(k) for k in client.keys("*")}
    lengths = {k: client.xlen(k) for k, t in before.items() if t == b"stream"}
    monkeypatch.delenv("AIRFIX_REDIS_URL", raising=False)
    monkeypatch.setenv("AIRFIX__STORE__JOURNAL", "")  # the events are already in this process
    assert 0 == main(["replay", "spy-run", "--json"])
    assert "completed" == json.loads(capsys.readouterr().out)["state"]["state"]
    after = {k: client.type(k) for k in client.keys("*")}
    assert before == after
    assert lengths == {k: client.xlen(k) for k in lengths}
    assert embedded_server() is not None
    client.flushdb()


def test_inspect_shows_groups_dead_letters_and_projection_lag(server_app) -> None:  # type: ignore[no-untyped-def]
    from airfix.projections.base import ProjectorHandler

    append_run(server_app.store, "r1")
    drain(server_app.store, [ProjectorHandler(server_app.projections())])
    append_run(server_app.store, "r2", finish=False)  # 12 more entries nobody applied yet
    server_app.client.xadd(server_app.keys.dead_letters("projections"), {"kind": "failed"})
    out = cli("inspect", "--json")
    assert 0 == out.returncode, out.stderr
    info = json.loads(out.stdout)
    assert 26 == sum(info["logs"].values())
    assert 1 == info["runs"]  # runs come from the status view, which has not seen r2 yet
    group = next(g for g in info["groups"] if g["group"] == "projections")
    assert (12, 0, 1) == (group["lag"], group["pending"], group["dead_letters"])
    assert {12} == {v["entries_behind"] for v in info["projections"].values()}
    assert "consumer groups" in cli("inspect").stdout
