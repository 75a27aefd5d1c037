"""``airfix tail``: filters, the Redis feed (fakeredis and the real server), the journal feed, the
log mirror, and the CLI following a run until it ends."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from airfix.events.codec import encode
from airfix.events.errors import AirfixError
from airfix.events.keys import Keys
from airfix.events.storage.store import EventStore
from airfix.services.commands.tail import (
    Filter,
    JournalFeed,
    RedisFeed,
    Tail,
    log_item,
    parse_filter,
)
from airfix.services.runtime.logs import configure_logging, get_logger
from airfix.services.runtime.logstream import FileLogSink, RedisLogSink
from tests.conftest import REAL_URL, real_client
from tests.scenario import append_run, run_events


def _lines(out: io.StringIO) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(x) for x in out.getvalue().splitlines()]


def _log(run_id: str, event: str, level: str = "info", **kw: object) -> dict[str, object]:
    return {
        "run_id": run_id,
        "event": event,
        "level": level,
        "logger": "airfix.test",
        "timestamp": "2026-11-24T10:00:00.000000Z",
        **kw,
    }


# ------------------------------------------------------------------------------------ filters


def test_bad_type_and_level_are_errors_naming_the_option() -> None:
    with pytest.raises(AirfixError, match=r"--type: unknown Comitted"):
        parse_filter(None, "Comitted", None)
    with pytest.raises(AirfixError, match=r"--level: expected one of .* got 'loud'"):
        parse_filter(None, None, "loud")


def test_filter_by_type_is_case_insensitive_and_log_names_log_lines() -> None:
    flt = parse_filter("r1", "committed,LOG", "info")
    assert flt == Filter("r1", frozenset({"Committed", "log"}), "info")
    events = {type(e).__name__: e for e in run_events("r1")}
    from airfix.services.commands.tail import event_item

    assert flt.keeps(event_item(events["Committed"]))
    assert not flt.keeps(event_item(events["RunStarted"]))
    assert flt.keeps(log_item(json.dumps(_log("r1", "x")), "here"))
    assert not flt.keeps(log_item(json.dumps(_log("r2", "x")), "here"))  # another run
    assert not flt.keeps(log_item(json.dumps(_log("r1", "x", "debug")), "here"))  # under info


def test_an_unreadable_log_line_is_shown_as_an_error_not_dropped() -> None:
    item = log_item(b"{torn", "autonomous_fix:logs 1-0")
    assert "error" == item.level
    assert "unreadable log line at autonomous_fix:logs 1-0" in item.log["event"]  # type: ignore[index]


# ---------------------------------------------------------------------------- the Redis feed


def test_tail_of_one_run_shows_every_event_with_its_state_and_its_log_lines(
    client: redis.Redis,
) -> None:
    store = EventStore(client, Keys())
    events = append_run(store, "r1")
    append_run(store, "r2")
    sink = RedisLogSink(client, store.keys.log_lines, 100)
    sink(_log("r1", "tool finished", tool="ruff", issues=3))
    sink(_log("r2", "not this run"))
    sink(_log("r1", "fixer is slow", "warning"))
    out = io.StringIO()
    shown = Tail(
        RedisFeed(store, "r1", from_start=True),
        parse_filter("r1", None, None),
        out=out,
        json_out=True,
    ).run(follow=False)
    lines = _lines(out)
    assert 16 == shown == len(lines)
    got = [x for x in lines if x["kind"] == "event"]
    assert [e.version for e in events] == [x["version"] for x in got]
    assert ("requested", "completed", "partially_fixed") == (
        got[0]["state"],
        got[-1]["state"],
        got[-1]["status"],
    )
    assert ["tool finished", "fixer is slow"] == [
        x["log"]["event"] for x in lines if x["kind"] == "log"
    ]
    # the human rendering: phase and what happened, with counts
    text = io.StringIO()
    Tail(
        RedisFeed(store, "r1", from_start=True),
        parse_filter("r1", "Committed,log", "warning"),
        out=text,
    ).run(follow=False)
    assert 1 == len(text.getvalue().splitlines()), (
        text.getvalue()
    )  # events are info: only the warning
    text = io.StringIO()
    Tail(
        RedisFeed(store, "r1", from_start=True),
        parse_filter("r1", "RunCompleted,Committed", None),
        out=text,
    ).run(follow=False)
    rendered = text.getvalue().splitlines()
    assert 2 == len(rendered)
    assert "committed" in rendered[0] and "run finished: partially_fixed" in rendered[1]
    assert rendered[1].split()[1] == "completed"


def test_tail_of_every_run_from_now_shows_only_new_events_with_the_state_folded_from_history(
    client: redis.Redis,
) -> None:
    store = EventStore(client, Keys())
    events = run_events("r1")
    store.append("r1", events[:5], 0)
    feed = RedisFeed(store, None, from_start=False)
    store.append("r1", events[5:7], 5)
    out = io.StringIO()
    Tail(feed, parse_filter(None, None, None), out=out, json_out=True).run(follow=False)
    lines = _lines(out)
    assert [6, 7] == [x["version"] for x in lines]
    # the state comes from folding versions 1..5, which this tail never showed
    from airfix.events.core.machine import fold

    assert fold(events[:7]).state == lines[-1]["state"]


def test_follow_stops_by_itself_when_the_run_ends(client: redis.Redis) -> None:
    store = EventStore(client, Keys())
    events = run_events("r1")
    store.append("r1", events[:2], 0)
    out = io.StringIO()
    tail = Tail(
        RedisFeed(store, "r1", from_start=True),
        parse_filter("r1", None, None),
        out=out,
        json_out=True,
    )
    done = threading.Event()
    thread = threading.Thread(
        target=lambda: (tail.run(follow=True, block_s=0.1), done.set()), daemon=True
    )
    thread.start()
    try:
        for v in range(2, len(events)):
            assert not done.is_set()  # still following: the run has not ended
            store.append("r1", [events[v]], v)
            time.sleep(0.02)
        thread.join(10)
        assert done.is_set(), "tail --follow did not stop after the run ended"
    finally:
        thread.join(10)
    assert list(range(1, len(events) + 1)) == [x["version"] for x in _lines(out)]


# --------------------------------------------------------------------------- the journal feed


def test_journal_feed_waits_for_a_line_being_written_and_never_cuts_it(tmp_path: Path) -> None:
    journal, logs = tmp_path / "journal.jsonl", tmp_path / "journal.logs.jsonl"
    events = run_events("r1")
    blobs = [encode(e) + b"\n" for e in events]
    journal.write_bytes(b"".join(blobs[:3]) + blobs[3][:20])  # a writer is mid-line
    feed = JournalFeed(journal, logs, "r1", from_start=True)
    assert [1, 2, 3] == [i.event.version for i in feed.read(0)]  # type: ignore[union-attr]
    assert journal.read_bytes().endswith(blobs[3][:20])  # not truncated: it is someone else's write
    with journal.open("ab") as fh:
        fh.write(blobs[3][20:] + b"".join(blobs[4:]))
    assert list(range(4, len(events) + 1)) == [i.event.version for i in feed.read(0)]  # type: ignore[union-attr]
    assert [] == feed.read(0)


def test_journal_feed_reads_a_compacted_log_file_without_repeating_lines(tmp_path: Path) -> None:
    journal, logs = tmp_path / "journal.jsonl", tmp_path / "journal.logs.jsonl"
    journal.write_bytes(b"".join(encode(e) + b"\n" for e in run_events("r1")))
    sink = FileLogSink(logs, maxlen=5)
    feed = JournalFeed(journal, logs, "r1", from_start=True)
    feed.read(0)
    seen: list[str] = []
    for n in range(23):
        sink(_log("r1", f"line {n}", timestamp=f"2026-11-24T10:00:{n:02d}.000000Z"))
        if n % 4 == 0:
            seen += [i.log["event"] for i in feed.read(0)]  # type: ignore[index]
    seen += [i.log["event"] for i in feed.read(0)]  # type: ignore[index]
    assert [f"line {n}" for n in range(23)] == seen
    assert len(logs.read_bytes().splitlines()) < 10  # capped: compacted to the newest maxlen lines


def test_a_corrupt_journal_line_is_an_error_naming_it(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    blobs = [encode(e) + b"\n" for e in run_events("r1")]
    journal.write_bytes(blobs[0] + b"{not an event}\n" + blobs[1])
    with pytest.raises(AirfixError, match=r"journal .*journal.jsonl, line 2"):
        JournalFeed(journal, tmp_path / "logs.jsonl", None, from_start=True)


# ------------------------------------------------------------------------------- the mirror


def test_the_mirror_gets_info_lines_the_terminal_does_not_show(client: redis.Redis) -> None:
    terminal = io.StringIO()
    sink = RedisLogSink(client, "autonomous_fix:logs", 3)
    try:
        configure_logging("warning", "json", stream=terminal, redis_sink=sink, sink_level="info")
        log = get_logger("airfix.test")
        log.debug("too quiet for both")
        log.info("for the mirror only", run_id="r1")
        log.warning("for both", run_id="r1")
        for n in range(300):
            log.info("filler", n=n)
    finally:
        configure_logging("warning", "console")
    assert ["for both"] == [json.loads(x)["event"] for x in terminal.getvalue().splitlines()]
    entries = client.xrange("autonomous_fix:logs")
    assert len(entries) < 300  # capped (MAXLEN ~ trims whole macro nodes)
    first = [json.loads(f[b"line"]) for _, f in client.xrange("autonomous_fix:logs", count=2)]
    assert all(x["event"] == "filler" for x in first)
    client.delete("autonomous_fix:logs")
    configure_logging("warning", "json", stream=terminal, redis_sink=sink, sink_level="info")
    try:
        get_logger("airfix.test").info("for the mirror only", run_id="r1")
    finally:
        configure_logging("warning", "console")
    ((_, fields),) = client.xrange("autonomous_fix:logs")
    assert (b"r1", b"info") == (fields[b"run_id"], fields[b"level"])
    assert "for the mirror only" == json.loads(fields[b"line"])["event"]


# ----------------------------------------------------------------------------------- the CLI


def _cli(*args: str, **kw: object) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "AIRFIX_REDIS_URL"}
    return subprocess.Popen(
        [sys.executable, "-m", "airfix.services.commands.cli", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )  # type: ignore[call-overload]


def test_cli_tail_follow_of_every_run_picks_up_new_runs_until_interrupted() -> None:
    client = real_client()
    client.flushdb()
    store = EventStore(redis.Redis.from_url(REAL_URL), Keys())
    append_run(store, "old")
    proc = _cli("tail", "--redis-url", REAL_URL, "--follow", "--json")
    try:
        time.sleep(1.5)  # tail starts from now: "old" is history, not news
        append_run(store, "new")
        RedisLogSink(store.client, store.keys.log_lines, 100)(_log("new", "a log line"))
        deadline = time.monotonic() + 30
        lines: list[dict] = []  # type: ignore[type-arg]
        assert proc.stdout is not None
        while len(lines) < 15 and time.monotonic() < deadline:
            lines.append(json.loads(proc.stdout.readline()))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        client.flushdb()
    assert 0 == proc.returncode, err
    assert {"new"} == {x["run_id"] for x in lines}
    assert 14 == sum(x["kind"] == "event" for x in lines) and 1 == sum(
        x["kind"] == "log" for x in lines
    )


def test_cli_tail_of_an_unknown_run_or_with_a_bad_option_exits_2_and_names_it() -> None:
    client = real_client()
    client.flushdb()
    unknown = _cli("tail", "nope", "--redis-url", REAL_URL)
    _, err = unknown.communicate(timeout=30)
    assert 2 == unknown.returncode and "no run 'nope'" in err
    bad = _cli("tail", "--redis-url", REAL_URL, "--type", "Bogus")
    _, err = bad.communicate(timeout=30)
    assert 2 == bad.returncode and "--type: unknown Bogus" in err


def test_latest_on_the_journal_is_the_run_requested_last_and_only_its_events_are_shown(
    tmp_path: Path,
) -> None:
    from airfix.services.commands.tail import open_feed

    journal, logs = tmp_path / "journal.jsonl", tmp_path / "journal.logs.jsonl"
    journal.write_bytes(
        b"".join(encode(e) + b"\n" for run in ("r1", "r2") for e in run_events(run))
    )
    feed, run_id = open_feed(None, journal=journal, logs=logs, run_id="latest", from_start=True)
    assert "r2" == run_id
    assert {"r2"} == {i.run_id for i in feed.read(0)}
    with pytest.raises(AirfixError, match="no runs yet"):
        open_feed(
            None, journal=tmp_path / "empty.jsonl", logs=logs, run_id="latest", from_start=True
        )
