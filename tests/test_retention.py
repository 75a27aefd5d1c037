"""Retention (``airfix trim``): never an unacknowledged or pending entry, never an unfinished run;
``--dry-run`` changes nothing; archives replay to the live status; runs, status, inspect, replay
and ``projections rebuild --check`` still work after a trim, on the real server and the embedded
store (whose journal replay must not bring trimmed entries back)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis

from airfix.config import load_config
from airfix.events import Keys, partition_of
from airfix.events.errors import AirfixError, StoreError
from airfix.events.storage.backend import connect
from airfix.events.storage.store import EventStore
from airfix.projections.status import load_status
from airfix.services.commands.cli import main
from airfix.services.commands.ops import import_events, read_jsonl, rebuild_all
from airfix.services.runtime.app import App, build_app
from airfix.services.runtime.consumers import ensure_group
from airfix.services.runtime.retention import (
    GroupPosition,
    RunFacts,
    judge,
    parse_duration,
    trim,
    trim_run,
    unacknowledged_by,
)
from airfix.services.runtime.worker import drain
from tests.helpers import FAST, Recorder, app_on, flushed_server_app, run_cli
from tests.scenario import run_events

DAY = 86400.0


# ------------------------------------------------------------------------------ pure parts


def test_durations() -> None:
    assert (7 * DAY, 12 * 3600, 30 * 60, 45, 5400, 14 * DAY, 0) == tuple(
        parse_duration(t) for t in ("7d", "12h", "30m", "45s", "1h30m", "2w", "0s")
    )
    assert 1.5 * 3600 == parse_duration("1.5h")
    for bad in ("", "7", "d", "7x", "-1d", "7 d", "1h-30m", "seven days"):
        with pytest.raises(AirfixError, match="not a duration"):
            parse_duration(bad)


def test_judging_a_run() -> None:
    now = 100 * DAY
    ok = RunFacts("r", 0, ("1-0", "2-0"), "completed", now - 10 * DAY)
    assert judge(ok, now=now, older_than=7 * DAY).trim
    for facts, category in [
        (replace(ok, state="planning"), "unfinished"),
        (replace(ok, state=""), "unfinished"),
        (replace(ok, finished_at=now - 6 * DAY), "too recent"),
        (replace(ok, halted_in=("projections",)), "halted"),
        (replace(ok, dead_letters_in=("role:fixer",)), "dead letters"),
        (replace(ok, unacked_by=("role:checker",)), "unacknowledged"),
        (replace(ok, log_read_by_nobody=True), "unread log"),
    ]:
        v = judge(facts, now=now, older_than=7 * DAY)
        assert (False, category) == (v.trim, v.category), facts


def test_what_a_group_has_acknowledged() -> None:
    entries = ["5-0", "6-0", "7-0"]
    groups = [
        GroupPosition("done", "9-0", frozenset()),
        GroupPosition("behind", "6-0", frozenset()),
        GroupPosition("pending", "9-0", frozenset({"6-0"})),
        GroupPosition("fresh", "0-0", frozenset()),
        GroupPosition("exact", "7-0", frozenset({"8-0"})),
    ]
    assert ["behind", "pending", "fresh"] == unacknowledged_by(entries, groups)
    assert [] == unacknowledged_by(["10-0"], [])


# ------------------------------------------------------------------------------ the store


def runs_in_partitions(n: int, partitions: int = 4) -> list[str]:
    """``n`` run ids in ``n`` different partitions."""
    out: list[str] = []
    for i in range(100):
        name = f"old-{i}"
        if partition_of(name, partitions) not in {partition_of(r, partitions) for r in out}:
            out.append(name)
        if len(out) == n:
            return out
    raise AssertionError("not enough partitions")


OLD1, OLD2 = runs_in_partitions(2)


def append_aged(store: EventStore, run_id: str, *, days: float, finish: bool = True) -> list[Any]:
    at = datetime.now(UTC) - timedelta(days=days)
    events = [msgspec.structs.replace(e, recorded_at=at) for e in run_events(run_id, finish=finish)]
    store.append(run_id, events, 0)
    return events


@pytest.fixture
def app(client: redis.Redis) -> App:
    return app_on(client)


def populate(app: App) -> None:
    """Two old finished runs (two partitions), a recent one, an old unfinished one; projected."""
    append_aged(app.store, OLD1, days=10)
    append_aged(app.store, OLD2, days=10)
    append_aged(app.store, "fresh", days=0)
    append_aged(app.store, "open", days=10, finish=False)
    drain(app.store, app.handlers(["projections"]), FAST)


def log_ids(app: App, run_id: str) -> list[str]:
    return [
        i.decode()
        for i, f in app.client.xrange(app.keys.log_of(run_id))
        if f[b"run"] == run_id.encode()
    ]


def snapshot(client: redis.Redis) -> dict[bytes, Any]:
    """Every key with its whole content."""
    read = {
        b"stream": lambda k: client.xrange(k),
        b"hash": client.hgetall,
        b"string": client.get,
        b"list": lambda k: client.lrange(k, 0, -1),
        b"set": client.smembers,
        b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
    }
    out = {}
    for key in client.keys("*"):
        kind = client.type(key)
        out[key] = (kind, read[kind](key))
        if kind == b"stream":
            out[key + b" groups"] = [
                (g["name"], g["last-delivered-id"], g["pending"]) for g in client.xinfo_groups(key)
            ]
    return out


def assert_rebuild_equals_live(app: App) -> None:
    scratch = Keys(prefix=f"scratch:{app.keys.prefix}", partitions=app.keys.partitions)
    equal = rebuild_all(app.store, app.projections(), app.projections(scratch), check=True)
    assert all(equal.values()), equal


def test_trim_never_removes_an_unread_or_pending_entry(app: App) -> None:
    populate(app)
    before = {r: log_ids(app, r) for r in (OLD1, OLD2, "fresh", "open")}
    # a role group that has not read anything yet: nothing of anybody can go
    for stream in app.keys.logs():
        ensure_group(app.client, stream, "role:fixer")
    report = trim(app, older_than=7 * DAY)
    assert ([], {"unacknowledged": 2, "too recent": 1, "unfinished": 1}) == (
        report.runs,
        report.kept,
    )
    assert before == {r: log_ids(app, r) for r in before}

    drain(app.store, [Recorder(group="role:fixer")], FAST)  # it reads and acks everything
    # a group that read OLD1's partition and acknowledged nothing: those entries are pending
    p1 = app.keys.log_of(OLD1)
    for stream in app.keys.logs():
        ensure_group(app.client, stream, "role:checker", "0" if stream == p1 else "$")
    app.client.xreadgroup("role:checker", "c1", {p1: ">"})
    report = trim(app, older_than=7 * DAY)
    assert [OLD2] == report.runs
    assert {app.keys.log_of(OLD2): 14} == report.removed
    assert {"unacknowledged": 1, "too recent": 1, "unfinished": 1} == report.kept
    assert [] == log_ids(app, OLD2)
    assert {r: before[r] for r in (OLD1, "fresh", "open")} == {
        r: log_ids(app, r) for r in (OLD1, "fresh", "open")
    }
    # the script checks again at the moment it deletes: asked directly, it still refuses
    status, removed = trim_run(app, OLD1, before[OLD1], None, now=0)
    assert (f"pending in group role:checker ({before[OLD1][0]})", 0) == (status, removed)
    app.client.xack(p1, "role:checker", *before[OLD1])
    ensure_group(app.client, p1, "latecomer")  # created at 0: has read nothing
    status, removed = trim_run(app, OLD1, before[OLD1], None, now=0)
    assert (f"not read yet in group latecomer ({before[OLD1][0]})", 0) == (status, removed)
    assert before[OLD1] == log_ids(app, OLD1)
    # a trimmed run is still a run: its stream, ledger and views are untouched
    assert 14 == app.store.version(OLD2) == len(list(app.store.read_run(OLD2)))
    assert "completed" == load_status(app.client, app.keys, OLD2)["state"]
    assert_rebuild_equals_live(app)


def test_dry_run_changes_nothing(app: App, tmp_path: Path) -> None:
    populate(app)
    before = snapshot(app.client)
    report = trim(app, older_than=7 * DAY, archive=tmp_path / "archive", dry_run=True)
    assert sorted([OLD1, OLD2]) == sorted(report.runs)
    assert 28 == sum(report.removed.values())
    assert sorted([OLD1, OLD2]) == sorted(report.archived)
    assert before == snapshot(app.client)
    assert not (tmp_path / "archive").exists()


def test_archived_runs_replay_to_their_status_and_rebuild_still_matches(
    app: App, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    populate(app)
    originals = {r: list(app.store.read_run(r)) for r in (OLD1, OLD2)}
    report = trim(app, older_than=7 * DAY, archive=tmp_path / "archive")
    assert (sorted([OLD1, OLD2]), 2) == (sorted(report.runs), report.streams_removed)
    for run in (OLD1, OLD2):
        path = Path(report.archived[run])
        assert path == (tmp_path / "archive" / f"{run}.jsonl").resolve()
        assert not app.client.exists(app.keys.run_stream(run))
        assert [] == log_ids(app, run)
        monkeypatch.delenv("AIRFIX_REDIS_URL", raising=False)
        capsys.readouterr()  # the workers' log lines so far
        assert 0 == main(["replay", str(path), "--json"])  # offline: the file alone
        replayed = json.loads(capsys.readouterr().out)["state"]
        live = load_status(app.client, app.keys, run)
        assert {k: v for k, v in live.items() if k != "halted"} == replayed
        assert originals[run] == list(app.store.read_run(run))  # read back from the archive
    assert_rebuild_equals_live(app)
    # the ledger stays: importing an archive again adds nothing (no view folds it twice)
    assert {OLD1: (14, True)} == import_events(app.store, read_jsonl(Path(report.archived[OLD1])))
    Path(report.archived[OLD1]).unlink()
    with pytest.raises(
        StoreError, match=f"run '{OLD1}' was archived to .*{OLD1}.jsonl, which is not there"
    ):
        assert_rebuild_equals_live(app)


# ------------------------------------------------------------------------------ the CLI


@pytest.fixture
def server_app() -> Iterator[App]:
    with flushed_server_app() as app:
        yield app


def test_cli_trim_on_the_real_server(
    server_app: App, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    populate(server_app)
    before = snapshot(server_app.client)
    code, _, err = run_cli(capsys, "trim", "--older-than", "a week")
    assert 2 == code and "'a week' is not a duration" in err
    code, out, err = run_cli(capsys, "trim", "--older-than", "7d", "--dry-run")
    assert 0 == code, err
    assert "dry run: would remove 28 log entries of 2 finished run(s)" in out
    assert before == snapshot(server_app.client)
    code, out, err = run_cli(capsys, "trim", "--older-than", "7d", "--archive", str(tmp_path))
    assert 0 == code, err
    assert "removed 28 log entries of 2 finished run(s)" in out
    for run in (OLD1, OLD2):
        assert server_app.keys.log_of(run) in out
    assert f"archived 2 run(s) to {tmp_path.resolve()} and removed their run streams" in out
    assert "kept: 1 too recent, 1 unfinished" in out
    code, out, _ = run_cli(capsys, "trim", "--older-than", "7d", "--json")
    assert ([], {"too recent": 1, "unfinished": 1}) == (
        json.loads(out)["runs"],
        json.loads(out)["kept"],
    )
    # a trimmed run still shows everywhere
    code, out, _ = run_cli(capsys, "runs", "--json")
    assert {OLD1, OLD2, "fresh", "open"} == {r["run_id"] for r in json.loads(out)}
    code, out, _ = run_cli(capsys, "status", OLD1, "--json")
    assert (0, "completed") == (code, json.loads(out)["state"])
    code, out, _ = run_cli(capsys, "replay", OLD1, "--json")
    assert (0, 14) == (code, len(json.loads(out)["steps"]))
    code, out, _ = run_cli(capsys, "inspect", "--json")
    assert (0, 14 + 12) == (code, sum(json.loads(out)["logs"].values()))
    code, out, _ = run_cli(capsys, "projections", "rebuild", "--check")
    assert 0 == code and "DIFFERS" not in out


def test_embedded_store_keeps_the_trim_across_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each command replays the journal, which puts every entry back; the recorded trim is done
    again after the replay, so the next command sees the store as the trim left it."""
    journal = tmp_path / "journal.jsonl"
    monkeypatch.setenv("AIRFIX__STORE__JOURNAL", str(journal))
    monkeypatch.delenv("AIRFIX_REDIS_URL", raising=False)
    embedded = connect()
    embedded.flushdb()
    writer = build_app(load_config(), journal=True)
    for run, days, finish in (
        (OLD1, 10, True),
        (OLD2, 10, True),
        ("fresh", 0, True),
        ("open", 10, False),
    ):
        append_aged(writer.store, run, days=days, finish=finish)

    embedded.flushdb()  # every run_cli() below is a new command: a fresh store loaded from the journal
    code, out, err = run_cli(
        capsys, "trim", "--older-than", "7d", "--archive", str(tmp_path / "a"), url=None
    )
    assert 0 == code, err
    assert "removed 28 log entries of 2 finished run(s)" in out
    for _ in range(2):
        embedded.flushdb()
        code, out, err = run_cli(capsys, "inspect", "--json", url=None)
        assert (0, 14 + 12) == (code, sum(json.loads(out)["logs"].values())), err
        assert "" == err  # the trim was done again without complaint
        embedded.flushdb()
        code, out, _ = run_cli(capsys, "runs", "--json", url=None)
        assert {OLD1, OLD2, "fresh", "open"} == {r["run_id"] for r in json.loads(out)}
        embedded.flushdb()
        code, out, _ = run_cli(capsys, "replay", OLD2, "--json", url=None)
        assert (0, "completed") == (code, json.loads(out)["state"]["state"])
        embedded.flushdb()
        code, out, _ = run_cli(capsys, "projections", "rebuild", "--check", url=None)
        assert 0 == code and "DIFFERS" not in out
    embedded.flushdb()


# ------------------------------------------------------------------------------ appends never trim


def test_appends_never_trim_entries_a_group_has_not_acknowledged(client: redis.Redis) -> None:
    """append.lua once capped partition logs (``MAXLEN ~ store.log_maxlen``) whatever the groups had
    read.  Now nothing but ``airfix trim`` removes log entries: a group that read nothing still
    finds every entry after many appends, and one that read but did not ack keeps them pending."""
    store = EventStore(client, Keys(partitions=1))
    log = store.keys.log(0)
    ensure_group(client, log, "slow")  # reads nothing
    ensure_group(client, log, "reader")
    for r in range(60):
        store.append(f"r{r}", run_events(f"r{r}")[:5], 0)
    client.xreadgroup("reader", "c1", {log: ">"}, count=1000)  # read, never acknowledged
    assert 300 == client.xlen(log)
    info = {g["name"].decode(): g for g in client.xinfo_groups(log)}
    assert 300 == info["slow"]["lag"] and 300 == info["reader"]["pending"]
    assert [f"r{r}" for r in range(60) for _ in range(5)] == [
        f[b"run"].decode() for _, f in client.xrange(log)
    ]
    with pytest.raises(TypeError):  # no way left to ask for a capped log
        EventStore(client, Keys(partitions=1), log_maxlen=10)  # type: ignore[call-arg]
