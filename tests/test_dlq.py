"""Dead letters: the round trip (park, fix the cause, retry: processed exactly once, the halted run's
held entries after it in order, the views equal a rebuild), retries that crash or find the entry
already applied, discard, show and list, role groups, a live worker serving the retry, and the
embedded store, whose journal replay must not undo a retry or a discard."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import redis

from airfix.config import load_config
from airfix.events import Keys, stamp
from airfix.events.core.machine import fold
from airfix.events.errors import AirfixError
from airfix.events.schema import (
    Committed,
    Event,
    FixApplied,
    FixStarted,
    IterationCompleted,
    RunCompleted,
)
from airfix.events.storage.backend import connect
from airfix.projections.base import ProjectionHandler
from airfix.projections.status import load_status
from airfix.services.commands import dlq
from airfix.services.pipeline import roles
from airfix.services.runtime import deadletters
from airfix.services.runtime.app import App, build_app
from airfix.services.runtime.consumers import Consumer
from airfix.services.runtime.worker import Worker, drain
from tests.fault_harness.worker import count_applies
from tests.helpers import (
    FAST,
    app_on,
    assert_applied_exactly_once,
    assert_views_equal_clean_pass,
    flushed_server_app,
    poll,
    run_cli,
)
from tests.scenario import append_run, run_events

RUNS = ["r1", "r2", "r3"]


class Views:
    """Instruments every live view the app builds (CLI commands included): counts each application
    of each event (the fault harness's counters) and raises for ``target`` in ``view`` while
    ``poisoned``; ``calls`` records (view, run, version) of every fold, in order."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        target: tuple[str, int] | None = ("r1", 5),
        view: str = "status",
    ) -> None:
        self.target, self.view, self.poisoned = target, view, target is not None
        self.calls: list[tuple[str, str, int]] = []
        orig = App.projections

        def projections(app: App, keys: Keys | None = None) -> list[Any]:
            views = orig(app, keys)
            if keys is None:  # live views only; rebuilds go to scratch namespaces
                for v in views:
                    self._arm(v)
            return views

        monkeypatch.setattr(App, "projections", projections)

    def _arm(self, view: Any) -> None:
        count_applies(view)
        inner = view.fold.apply

        def apply(state: Any, event: Event, entry_id: str) -> tuple[Any, list[Any]]:
            if (
                self.poisoned
                and view.name == self.view
                and (event.run_id, event.version) == self.target
            ):
                raise RuntimeError(
                    f"poison: {view.name} cannot fold {event.run_id} v{event.version}"
                )
            self.calls.append((view.name, event.run_id, event.version))
            return inner(state, event, entry_id)

        view.fold.apply = apply

    def folded(self, view: str, run: str) -> list[int]:
        return [v for name, r, v in self.calls if name == view and r == run]


@pytest.fixture
def app(client: redis.Redis) -> App:
    return app_on(client)


def park(app: App, *, finish_r1: bool = False) -> list[deadletters.DeadLetter]:
    """Three runs through the projector with the poison armed; r1's v5 fails at the cap."""
    append_run(app.store, "r1", finish=finish_r1)
    append_run(app.store, "r2")
    append_run(app.store, "r3")
    drain(app.store, app.handlers(["projections"]), FAST)
    return deadletters.list_dead_letters(app.client, app.keys)


def more_of_r1(at: int) -> list[Event]:
    """r1 (left in planning at v12 by ``append_run(finish=False)``) carries on to its end."""
    return stamp(
        [
            FixStarted(batch_id="r1/b3", fixer="autofix"),
            FixApplied(batch_id="r1/b3", fixer="autofix", files_changed=["pkg/m3.py"]),
            Committed(batch_id="r1/b3", sha="f00", files=["pkg/m3.py"]),
            IterationCompleted(
                iteration=1, committed=2, failed=1, score=0.8, issues_remaining=1, progress=True
            ),
            RunCompleted(
                status="partially_fixed",
                reason="max iterations (1) reached",
                issues_before=5,
                issues_after=1,
                commits=2,
            ),
        ][at - 13 :],
        run_id="r1",
        expected_version=at - 1,
    )


def settled_clean(app: App) -> None:
    """Nothing parked, halted or requested anywhere; every view equals a clean rebuild."""
    assert [] == deadletters.list_dead_letters(app.client, app.keys)
    assert {} == app.client.hgetall(app.keys.halted("projections"))
    assert {} == app.client.hgetall(app.keys.dlq_requests("projections"))
    assert_views_equal_clean_pass(app)


# ------------------------------------------------------------------------------ the round trip


def test_dead_letter_round_trip(
    app: App, backend: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Parked, cause fixed, retried: the poison event and the halted run's held entries are each
    applied exactly once, in order; the halt is gone; every view equals a rebuild."""
    views = Views(monkeypatch)
    parked = park(app)
    assert [("failed", 5)] + [("held", v) for v in range(6, 13)] == [
        (d.kind, d.version) for d in parked
    ]
    assert {("projections", "r1")} == {(d.group, d.run) for d in parked}
    assert "poison: status cannot fold r1 v5" in parked[0].error
    assert app.client.hexists(app.keys.halted("projections"), "r1")
    assert 4 == load_status(app.client, app.keys, "r1")["version"]
    assert_applied_exactly_once(app, RUNS, upto={"r1": 4})

    views.poisoned = False  # the cause is fixed
    views.calls.clear()
    if backend == "redis":  # the real CLI against the real server
        code, out, err = run_cli(capsys, "dlq", "retry", parked[0].id)
        assert 0 == code, err
    else:
        out = dlq.describe(deadletters.request(app, "retry", parked[0]))
    assert f"retried 8 dead letter(s) of group projections: {parked[0].id}" in out
    assert "run r1 is no longer halted in projections" in out
    assert list(range(5, 13)) == views.folded(
        "status", "r1"
    )  # the poison event first, then in order
    assert_applied_exactly_once(app, RUNS)
    settled_clean(app)
    events = list(app.store.read_run("r1"))
    assert msgspec.to_builtins(fold(events)) == {
        k: v for k, v in load_status(app.client, app.keys, "r1").items() if k != "halted"
    }
    # the run is no longer halted for the workers either: its next event is applied, not held
    app.store.append("r1", more_of_r1(13)[:1], 12)
    drain(app.store, app.handlers(["projections"]), FAST)
    assert 13 == load_status(app.client, app.keys, "r1")["version"]
    assert [] == deadletters.list_dead_letters(app.client, app.keys)
    # the dead letter is gone: retrying it again is bad input that names the id and the group
    with pytest.raises(AirfixError, match=f"no dead letter {parked[0].id} in group projections"):
        deadletters.find(app.client, app.keys, parked[0].id, "projections")


def test_a_retry_that_crashed_midway_applies_nothing_twice(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry dies after two views applied the entry (before its dead letter was deleted): the
    next retry skips those two (their markers), applies the rest, and nothing is applied twice."""
    views = Views(monkeypatch)
    parked = park(app)
    views.poisoned = False
    real = ProjectionHandler.redeliver
    crashed: list[str] = []

    def dying(self: ProjectionHandler, entry: Any, parked_fields: Any) -> int:
        applied = real(self, entry, parked_fields)
        if self.projection.name == "task_queue" and not crashed:
            crashed.append(entry.entry_id)
            raise KeyboardInterrupt("the retrying process died")
        return applied

    monkeypatch.setattr(ProjectionHandler, "redeliver", dying)
    with pytest.raises(KeyboardInterrupt):
        deadletters.request(app, "retry", parked[0])
    assert 8 == len(deadletters.list_dead_letters(app.client, app.keys))  # nothing deleted
    assert [] == app.client.keys(f"{app.keys.prefix}:*lease*")  # the borrowed lease went back
    out = deadletters.request(app, "retry", parked[0])
    assert ("done", 8) == (out.state, len(out.done))
    views = len(app.projections())
    assert (
        views * 8 - 2 == out.applied
    )  # every view x 8 entries, less the two the dead retry applied
    assert_applied_exactly_once(app, RUNS)
    settled_clean(app)


def test_an_entry_applied_before_it_was_parked_is_not_applied_again(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The projector dies between apply and ack until the cap: the entries are parked although every
    view has them.  The checkpoints recorded at park time tell the retry so; it applies nothing."""
    Views(monkeypatch, target=None)
    append_run(app.store, "r1", finish=False)
    append_run(app.store, "r2")
    handler = app.handlers(["projections"])[0]
    real = handler.handle

    def killed_after_apply(entries: Any) -> None:
        real(entries)
        if any(
            e.event is not None and (e.event.run_id, e.event.version) == ("r1", 5) for e in entries
        ):
            raise RuntimeError("killed between apply and ack")

    handler.handle = killed_after_apply  # type: ignore[method-assign]
    drain(app.store, [handler], FAST)
    parked = deadletters.list_dead_letters(app.client, app.keys)
    assert ["failed"] + ["held"] * 7 == [d.kind for d in parked]
    assert {
        "ckpt.status",
        "ckpt.task_queue",
        "ckpt.run_history",
        "ckpt.summary:build",
        "ckpt.summary:test",
        "ckpt.summary:lint",
        "ckpt.target_runs",
    } == set(parked[0].parked)
    out = deadletters.request(app, "retry", parked[0])
    assert ("done", 8, 0, True) == (out.state, len(out.done), out.applied, out.resumed)
    assert_applied_exactly_once(app, ["r1", "r2"])
    settled_clean(app)


def test_retry_goes_oldest_first_and_bad_ids_change_nothing(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    Views(monkeypatch)
    parked = park(app)
    before = app.client.xrange(app.keys.dead_letters("projections"))
    with pytest.raises(AirfixError, match=f"waits behind {parked[0].id}"):
        deadletters.request(app, "retry", parked[3])
    with pytest.raises(AirfixError, match="no dead letter 1-0 in group projections"):
        deadletters.find(app.client, app.keys, "1-0", "projections")
    with pytest.raises(AirfixError, match=r"no dead letter 1-0 in any group \(projections\)"):
        deadletters.find(app.client, app.keys, "1-0")
    with pytest.raises(AirfixError, match="not a dead-letter id"):
        deadletters.find(app.client, app.keys, "r1")
    with pytest.raises(AirfixError, match="no dead letter 1-0 in group role:fixer"):
        deadletters.find(app.client, app.keys, "1-0", "role:fixer")
    assert before == app.client.xrange(app.keys.dead_letters("projections"))
    assert {} == app.client.hgetall(app.keys.dlq_requests("projections"))


def test_a_retry_that_fails_again_keeps_the_dead_letters_and_the_halt(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    views = Views(monkeypatch)
    parked = park(app)
    out = deadletters.request(app, "retry", parked[0])  # the cause is not fixed
    assert ("failed", parked[0].id, []) == (out.state, out.failed, out.done)
    assert "poison: status cannot fold r1 v5" in out.error and "failed again" in dlq.describe(out)
    assert [d.id for d in parked] == [
        d.id for d in deadletters.list_dead_letters(app.client, app.keys)
    ]
    assert app.client.hexists(app.keys.halted("projections"), "r1")
    assert 4 == max(views.folded("status", "r1"))  # v5 never folded, so nothing after it either
    assert_applied_exactly_once(app, RUNS, upto={"r1": 4})


def test_discarding_the_failed_entry_leaves_the_run_halted_until_its_backlog_is_gone(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    Views(monkeypatch)
    parked = park(app)
    out = deadletters.request(app, "discard", parked[0])
    assert ("done", [parked[0].id], False, 7) == (
        out.state,
        out.done,
        out.resumed,
        out.still_parked,
    )
    assert "run r1 stays halted in projections: 7 parked entries left" in dlq.describe(out)
    assert app.client.hexists(app.keys.halted("projections"), "r1")
    for d in parked[1:-1]:
        deadletters.request(app, "discard", d)
    last = deadletters.request(app, "discard", parked[-1])
    assert (True, 0) == (last.resumed, last.still_parked)
    assert not app.client.hexists(app.keys.halted("projections"), "r1")
    assert [] == deadletters.list_dead_letters(app.client, app.keys)


def test_an_undecodable_entry_is_parked_cannot_be_retried_and_can_be_discarded(app: App) -> None:
    append_run(app.store, "r2")
    app.client.xadd(
        app.keys.log_of("r2"),
        {
            "type": "FromTheFuture",
            "v": "15",
            "id": "x",
            "run": "r2",
            "data": b'{"type":"FromTheFuture"}',
        },
    )
    drain(app.store, app.handlers(["projections"]), FAST)
    [parked] = deadletters.list_dead_letters(app.client, app.keys)
    assert ("undecodable", "FromTheFuture") == (parked.kind, parked.event_type)
    out = deadletters.request(app, "retry", parked)
    assert "failed" == out.state and "FromTheFuture" in out.error
    assert "done" == deadletters.request(app, "discard", parked).state
    assert [] == deadletters.list_dead_letters(app.client, app.keys)


# ------------------------------------------------------------------------------ roles


def test_a_role_retry_hands_the_entry_to_the_role_again(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fixer role crashed on the run's newest event; after the fix the retry makes it act
    (FixStarted appended once); re-delivering an event the run has moved past does nothing."""
    app.store.append("r1", run_events("r1")[:7], 0)  # planned, a batch pending: the fixer's step
    broken = {"on": True}
    real_fix = roles.ACTIONS["fix"]

    def fix(p: roles.Pipeline, state: Any) -> list[Event]:
        if broken["on"]:
            raise RuntimeError("fixer backend unreachable")
        return real_fix(p, state)

    monkeypatch.setitem(roles.ACTIONS, "fix", fix)
    pipeline = roles.Pipeline(app.store, app.config, worker="w1")
    drain(app.store, roles.role_handlers(pipeline, ["fixer"]), FAST)
    [parked] = deadletters.list_dead_letters(app.client, app.keys)
    assert ("role:fixer", "failed", 7) == (parked.group, parked.kind, parked.version)
    assert app.client.hexists(app.keys.halted("role:fixer"), "r1")
    assert 7 == app.store.version("r1")

    broken["on"] = False
    out = deadletters.request(app, "retry", parked)
    assert ("done", True) == (out.state, out.resumed)
    events = list(app.store.read_run("r1"))
    assert ["FixStarted"] == [type(e).__name__ for e in events[7:]]
    # handing an event the run has moved past to the role again is a no-op (idempotent by version)
    app.handler_for("role:fixer").handle([parked.log_entry()])
    assert 8 == app.store.version("r1")
    assert [] == deadletters.list_dead_letters(app.client, app.keys)


# ------------------------------------------------------------------------------ a live worker


def test_a_live_worker_serves_the_retry_while_the_run_goes_on(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker owns every partition and keeps parking r1's new events; the retry is served by it,
    between its batches, so nothing is parked behind the retry or applied out of order."""
    views = Views(monkeypatch)
    worker = Worker(app.store, app.handlers(["projections"]), FAST, name="live-worker")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        append_run(app.store, "r1", finish=False)
        append_run(app.store, "r2")
        poll(
            lambda: len(deadletters.list_dead_letters(app.client, app.keys)) == 8,
            20,
            "r1's entries parked",
        )
        app.store.append("r1", more_of_r1(13)[:2], 12)  # still halted: held
        poll(
            lambda: len(deadletters.list_dead_letters(app.client, app.keys)) == 10,
            20,
            "v13, v14 held",
        )
        views.poisoned = False
        views.calls.clear()
        head = deadletters.list_dead_letters(app.client, app.keys)[0]

        def keep_appending() -> None:
            for i, ev in enumerate(more_of_r1(15)):
                time.sleep(0.02)
                app.store.append("r1", [ev], 14 + i)

        appender = threading.Thread(target=keep_appending)
        appender.start()
        out = deadletters.request(app, "retry", head, wait_s=20)
        appender.join(10)
        assert ("done", "live-worker") == (out.state, out.served_by)
        poll(
            lambda: (load_status(app.client, app.keys, "r1") or {}).get("version") == 17,
            20,
            "r1 folded to its end",
        )
    finally:
        worker.stop()
        thread.join(10)
    assert [] == deadletters.list_dead_letters(app.client, app.keys)
    assert list(range(5, 18)) == views.folded("status", "r1")
    assert_applied_exactly_once(app, ["r1", "r2"])
    settled_clean(app)


# ------------------------------------------------------------------------------ the CLI


@pytest.fixture
def server_app() -> Iterator[App]:
    with flushed_server_app() as app:
        yield app


def test_cli_list_show_discard_on_the_real_server(
    server_app: App, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    Views(monkeypatch, target=("r2", 14))  # r2's last event: nothing held behind it
    append_run(server_app.store, "r1")
    append_run(server_app.store, "r2")
    drain(server_app.store, server_app.handlers(["projections"]), FAST)
    code, out, err = run_cli(capsys, "dlq", "list", "--json")
    assert 0 == code, err
    [row] = json.loads(out)
    assert ("projections", "failed", "r2", 14, "RunCompleted") == (
        row["group"],
        row["kind"],
        row["run"],
        row["version"],
        row["type"],
    )
    code, out, _ = run_cli(capsys, "dlq", "list")
    assert 0 == code and row["id"] in out and "RunCompleted" in out

    code, out, _ = run_cli(capsys, "dlq", "show", row["id"])
    assert 0 == code and "original event:" in out and "poison: status cannot fold r2 v14" in out
    original = next(e for e in server_app.store.read_run("r2") if e.version == 14)
    code, out, _ = run_cli(capsys, "dlq", "show", row["id"], "--json")
    shown = json.loads(out)
    assert msgspec.to_builtins(original) == shown["event"]
    assert (row["id"], "projections") == (shown["id"], shown["group"])

    code, _, err = run_cli(capsys, "dlq", "show", "1-0")
    assert 2 == code and "no dead letter 1-0 in any group (projections)" in err
    code, _, err = run_cli(capsys, "dlq", "discard", row["id"], "2-0", "--group", "projections")
    assert 2 == code and "no dead letter 2-0 in group projections" in err
    assert 1 == len(
        deadletters.list_dead_letters(server_app.client, server_app.keys)
    )  # nothing discarded

    code, out, err = run_cli(capsys, "dlq", "discard", row["id"])
    assert 0 == code, err
    assert f"discarded 1 dead letter(s) of group projections: {row['id']}" in out
    assert "run r2 is no longer halted in projections" in out
    assert [] == json.loads(run_cli(capsys, "dlq", "list", "--json")[1])
    assert (
        13 == load_status(server_app.client, server_app.keys, "r2")["version"]
    )  # skipped, as asked

    code, _, err = run_cli(capsys, "dlq", "retry", row["id"])
    assert 2 == code and f"no dead letter {row['id']} in any group" in err


def test_cli_retry_that_fails_again_exits_1(
    server_app: App, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    Views(monkeypatch)
    parked = park(server_app)
    code, out, _ = run_cli(capsys, "dlq", "retry", parked[0].id)
    assert 1 == code and "failed" in out and "poison" in out
    code, _, err = run_cli(capsys, "dlq", "retry", parked[2].id)
    assert 2 == code and f"waits behind {parked[0].id}" in err
    assert 8 == len(deadletters.list_dead_letters(server_app.client, server_app.keys))


# ------------------------------------------------------------------------------ the embedded store


def test_embedded_store_keeps_retries_and_discards_across_commands(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command replays the journal and folds it again, re-parking a poison event; a recorded
    discard is done again after that replay, and a retry's effect stays (nothing is re-parked)."""
    journal = tmp_path / "journal.jsonl"
    monkeypatch.setenv("AIRFIX__STORE__JOURNAL", str(journal))
    monkeypatch.setenv("AIRFIX__CONSUMERS__RETRY_BACKOFF_MS", "1")
    monkeypatch.setenv("AIRFIX__CONSUMERS__RETRY_BACKOFF_MAX_MS", "5")
    monkeypatch.delenv("AIRFIX_REDIS_URL", raising=False)
    embedded = connect()

    def restart() -> None:  # a new command: a fresh embedded store, loaded from the journal
        embedded.flushdb()

    restart()
    writer = build_app(load_config(), journal=True)
    for r in RUNS:
        append_run(writer.store, r)
    views = Views(monkeypatch)  # r1 v5 fails whenever the journal is folded

    restart()
    code, out, err = run_cli(capsys, "dlq", "list", "--json", url=None)
    assert 0 == code, err
    parked = json.loads(out)
    assert [("failed", 5)] + [("held", v) for v in range(6, 15)] == [
        (d["kind"], d["version"]) for d in parked
    ]
    views.poisoned = False  # fixed in this process: retry it here
    code, out, err = run_cli(capsys, "dlq", "retry", parked[0]["id"], url=None)
    assert 0 == code, err
    assert "run r1 is no longer halted" in out
    restart()
    views.poisoned = True  # had the cause come back, the replay would park it again...
    views.target = ("r2", 14)
    code, out, _ = run_cli(capsys, "dlq", "list", "--json", url=None)
    [r2] = json.loads(out)
    assert ("r2", "failed") == (r2["run"], r2["kind"])
    code, out, err = run_cli(capsys, "dlq", "discard", r2["id"], url=None)
    assert 0 == code and "discarded 1" in out, err

    restart()  # r2's poison is parked again by the replay, and the recorded discard removes it again
    code, out, _ = run_cli(capsys, "dlq", "list", "--json", url=None)
    assert [] == json.loads(out)
    code, out, _ = run_cli(capsys, "status", "r2", "--json", url=None)
    assert (13, {}) == (json.loads(out)["version"], json.loads(out)["halted"])
    code, out, _ = run_cli(capsys, "status", "r1", "--json", url=None)
    assert ("completed", {}) == (json.loads(out)["state"], json.loads(out)["halted"])
    restart()


# ------------------------------------------------------------------------------ dead letters of any shape


def _odd_dead_letters(app: App) -> list[str]:
    """Dead letters nobody's runtime wrote: malformed numbers and ids, missing fields, bytes that
    are not UTF-8, terminal escapes and Rich markup; returns their ids."""
    group = app.keys.dead_letters("projections")
    return [
        _s(app.client.xadd(group, f))
        for f in (
            {
                "kind": "failed",
                "attempts": "lots",
                "parked_at": "yesterday",
                "entry": "not-an-id",
                "stream": "nowhere",
                "orig.v": "seven",
                "orig.run": "r9",
                "orig.type": "Committed",
                "error": "[/bold] unbalanced markup \x1b[31m red",
            },
            {"x": "y"},  # nothing airfix writes
            {
                b"\xff\xfe": b"\x00\x81\xff",
                b"kind": b"\xc3\x28",
                b"attempts": b"\xff",
                b"orig.data": bytes(range(256)) * 4,
                b"orig.type": b"\xff\x1b[2J",
                b"orig.\x80": b"\x81",
                b"parked_at": b"1e400",
                b"entry": b"99999999999999999999999-0",
                b"orig.run": b"r\xff",
            },
            {
                "kind": "held",
                "parked_at": "1e20",
                "attempts": "-3",
                "orig.v": "NaN",
                "stream": "",
                "orig.run": "bad run id{}",
            },
        )
    ]


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def test_dead_letters_of_any_shape_are_listed_shown_and_discarded(app: App) -> None:
    import io

    ids = _odd_dead_letters(app)
    rows = deadletters.list_dead_letters(app.client, app.keys)
    assert ids == [d.id for d in rows]
    assert ["failed", "?", "\ufffd(", "held"] == [d.kind for d in rows]
    assert [0, 0, 0, 0] == [d.attempts for d in rows]  # "lots", missing, b"\xff", "-3"
    assert [0, 0, 0, 0] == [d.version for d in rows]  # "seven", missing, missing, "NaN"
    assert [0.0, 0.0, 0.0, 1e20] == [d.parked_at for d in rows]  # 1e20 is shown as "?"
    text = io.StringIO()
    dlq.render_list(rows, text)
    for i in ids:
        assert i in text.getvalue()
    assert "\x1b" not in text.getvalue()  # a poison entry cannot drive the terminal
    json.dumps([d.to_dict() for d in rows])
    for d in rows:
        shown = io.StringIO()
        dlq.render_show(d, shown)
        assert d.id in shown.getvalue() and "\x1b" not in shown.getvalue()
        json.dumps(deadletters.find(app.client, app.keys, d.id).to_dict(event=True))
    out = deadletters.request(
        app, "retry", rows[0]
    )  # names no partition log: its run's owner does it
    assert "failed" == out.state
    with pytest.raises(AirfixError, match=r"no partition log of this store.*can only be discarded"):
        deadletters.request(app, "retry", rows[1])
    for d in rows:
        assert "done" == deadletters.request(app, "discard", d, wait_s=5).state, d
    assert [] == deadletters.list_dead_letters(app.client, app.keys)


def test_cli_lists_shows_and_discards_dead_letters_of_any_shape(
    server_app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _odd_dead_letters(server_app)
    for args in (
        ["dlq", "list"],
        ["dlq", "list", "--json"],
        *(["dlq", "show", i] for i in ids),
        *(["dlq", "show", i, "--json"] for i in ids),
    ):
        code, out, err = run_cli(capsys, *args)
        assert (0, "") == (code, err), (args, err)
        assert "\x1b" not in out
    assert ids == [row["id"] for row in json.loads(run_cli(capsys, "dlq", "list", "--json")[1])]
    code, _, err = run_cli(capsys, "dlq", "show", "99999999999999999999999-0")
    assert 2 == code and "is not a dead-letter id" in err and "Traceback" not in err
    code, out, err = run_cli(capsys, "dlq", "discard", *ids)
    assert 0 == code, err
    assert [] == json.loads(run_cli(capsys, "dlq", "list", "--json")[1])


class Capture:
    """A plain group's handler that fails on ``poison`` while ``broken``; records what it got."""

    ordered = False

    def __init__(self, group: str) -> None:
        self.group, self.broken, self.got = group, True, []

    def handle(self, entries: Any) -> None:
        for e in entries:
            assert e.event is not None
            if self.broken and e.event.run_id == "big":
                raise RuntimeError("cannot swallow that")
        self.got += [e.event for e in entries]


def test_a_huge_entry_parked_by_several_groups_is_copied_bounded_and_retried_whole(
    app: App,
) -> None:
    """A 5 MB event parked by three groups: each dead letter keeps at most 64 KiB (with the
    original's stream, entry id and size), show stays small, and a retry hands the handler the
    whole event, read back from the partition log, or from the run's stream once the log entry is
    gone; with neither, the retry fails with a reason and keeps the dead letter."""
    import io

    from airfix.events.schema import RunRequested

    blob = "x" * (5 * 1024 * 1024)
    append_run(app.store, "r2")
    app.store.append(
        "big",
        stamp([RunRequested(target="/t", config={"blob": blob})], run_id="big", expected_version=0),
        0,
    )
    handlers = [Capture(f"g{i}") for i in range(3)]
    drain(app.store, handlers, FAST)
    parked = deadletters.list_dead_letters(app.client, app.keys)
    assert ["g0", "g1", "g2"] == [d.group for d in parked]
    for d in parked:
        raw = app.client.xrange(app.keys.dead_letters(d.group))[0][1]
        assert (
            sum(len(k) + len(v) for k, v in raw.items()) < 64 * 1024 + 4096
        )  # the cap, the reasons
        assert d.truncated and d.original_bytes > 5 * 1024 * 1024
        assert (d.run, d.version, d.stream) == ("big", 1, app.keys.log_of("big"))
        shown = io.StringIO()
        dlq.render_show(d, shown)
        assert (
            len(shown.getvalue()) < 10_000 and f"entry {d.entry} of {d.stream}" in shown.getvalue()
        )
        assert d.to_dict(event=True)["event"] is None  # show never loads the 5 MB original
    for h in handlers:
        h.broken = False
    g0, g1, g2 = parked

    def retry(d: deadletters.DeadLetter, handler: Capture) -> deadletters.Outcome:
        consumer = Consumer(app.store, handler, FAST, name="t")
        assert consumer.try_own(app.keys.logs().index(d.stream))
        try:
            return deadletters.perform(consumer, "retry", d.id)
        finally:
            consumer.release_all()

    assert "done" == retry(g0, handlers[0]).state
    assert blob == handlers[0].got[-1].config["blob"]
    app.client.xdel(g1.stream, g1.entry)  # the log entry is gone: the run's stream has the event
    assert "done" == retry(g1, handlers[1]).state
    assert blob == handlers[1].got[-1].config["blob"]
    app.client.delete(app.keys.run_stream("big"))  # neither: a clear failure, nothing lost
    out = retry(g2, handlers[2])
    assert "failed" == out.state and "is no longer there" in out.error
    assert [g2.id] == [d.id for d in deadletters.list_dead_letters(app.client, app.keys)]
