"""The deferrable wait: ``RunFinishedTrigger`` (asyncio, ``redis.asyncio``) on fakeredis and on the
real server, and ``RunFinishedSensor``'s decisions around it, without a scheduler.

Each trigger test drives ``run()`` in its own event loop; ``asyncio.wait_for`` guards only stop a
broken trigger from hanging the suite, nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import pytest
import redis

from tests.airflow_harness import process_logging_kept

with process_logging_kept():
    from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
    from airflow.sdk.module_loading import import_string
    from airflow.triggers.base import TriggerEvent

    from airfix.airflow_glue.sensor import RunFinishedSensor
    from airfix.airflow_glue.tasks import request
    from airfix.airflow_glue.trigger import RunFinishedTrigger
from airfix.events import stamp
from airfix.events.keys import Keys
from airfix.events.schema import Event, RunCancelled, RunFailed
from airfix.events.storage.store import EventStore
from tests.conftest import BACKENDS, REAL_URL, real_client
from tests.redis_procs import RedisServer
from tests.scenario import run_events

GUARD_S = 60  # only so that a broken trigger fails instead of hanging


class Lines:
    """Stands in for the trigger's logger (Airflow sends it to the task log)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)

    warning = info

    def versions(self) -> list[int]:
        return [
            int(line.split("]")[0].split()[1]) for line in self.lines if line.startswith("[airfix")
        ]


@dataclass
class Where:
    """A store the test appends to, and how a trigger reaches the same data."""

    store: EventStore
    url: str
    async_client: Any = None  # fakeredis: the async client on the same FakeServer
    made: list[RunFinishedTrigger] = field(default_factory=list)

    def trigger(self, run_id: str, **kwargs: Any) -> RunFinishedTrigger:
        kwargs = {
            "redis_url": self.url,
            "stream": self.store.keys.run_stream(run_id),
            "run_id": run_id,
            "block_ms": 100,
            **kwargs,
        }
        t = RunFinishedTrigger(**kwargs)
        if self.async_client is not None:
            t.connect = self.async_client  # type: ignore[method-assign]
        t._log = Lines()  # type: ignore[assignment]
        self.made.append(t)
        return t


@pytest.fixture(params=BACKENDS)
def where(request: pytest.FixtureRequest) -> Iterator[Where]:
    if request.param == "fakeredis":
        server = fakeredis.FakeServer(version=(7, 0))
        yield Where(
            EventStore(fakeredis.FakeRedis(server=server), Keys()),
            "redis://fake",
            async_client=lambda: fakeredis.FakeAsyncRedis(server=server),
        )
        return
    client = real_client()
    prefix = f"airfix_trig_{uuid.uuid4().hex[:8]}"
    yield Where(EventStore(client, Keys(prefix=prefix)), REAL_URL)
    for key in client.scan_iter(match=f"*{prefix}*", count=1000):
        client.delete(key)


def lines_of(t: RunFinishedTrigger) -> Lines:
    return t._log  # type: ignore[return-value]


async def first(t: RunFinishedTrigger) -> TriggerEvent:
    return await asyncio.wait_for(anext(t.run()), GUARD_S)


def terminal(run_id: str, version: int, event: Event) -> list[Event]:
    return stamp([event], run_id=run_id, expected_version=version)


def test_a_run_that_ended_before_the_trigger_fires_at_once(where: Where) -> None:
    events = run_events("run-done")
    where.store.append("run-done", events, 0)
    t = where.trigger("run-done")
    fired = asyncio.run(first(t))
    assert fired.payload == {
        "run_id": "run-done",
        "status": "partially_fixed",
        "reason": "max iterations (1) reached",
        "version": len(events),
    }
    assert lines_of(t).versions() == list(
        range(1, len(events) + 1)
    )  # every event into the task log
    assert "run finished: partially_fixed" in lines_of(t).lines[-1]


def test_the_trigger_waits_for_the_run_to_end(where: Where) -> None:
    events = run_events("run-live")
    where.store.append("run-live", events[:3], 0)

    def worker() -> None:
        for i in range(3, len(events)):
            time.sleep(0.02)
            where.store.append("run-live", events[i : i + 1], i)

    async def main() -> TriggerEvent:
        waiting = asyncio.ensure_future(first(where.trigger("run-live", after_version=3)))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # nothing terminal yet: it blocks on the stream
        thread = threading.Thread(target=worker)
        thread.start()
        fired = await waiting
        thread.join()
        return fired

    fired = asyncio.run(main())
    assert fired.payload["status"] == "partially_fixed" and fired.payload["version"] == len(events)
    assert lines_of(where.made[0]).versions() == list(
        range(4, len(events) + 1)
    )  # after its position


def test_a_restarted_trigger_resumes_after_the_last_entry_seen(where: Where) -> None:
    """A triggerer restart: the running trigger is cancelled, a new one is built from the first
    one's serialized kwargs; it reads only what the first did not, and sees the run fail."""
    events = run_events("run-resume", finish=False)
    where.store.append("run-resume", events[:5], 0)

    async def until_cancelled() -> dict[str, Any]:
        t = where.trigger("run-resume")
        task = asyncio.ensure_future(first(t))
        while t.after_version < 5:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        classpath, kwargs = t.serialize()
        assert import_string(classpath) is RunFinishedTrigger  # what the triggerer imports
        return kwargs

    kwargs = asyncio.run(until_cancelled())
    assert kwargs["after_version"] == 5 and kwargs["run_id"] == "run-resume"
    where.store.append("run-resume", events[5:], 5)
    where.store.append(
        "run-resume",
        terminal("run-resume", len(events), RunFailed(reason="mypy: crashed", status="tool_error")),
        len(events),
    )
    restarted = where.trigger(**{k: v for k, v in kwargs.items() if k != "redis_url"})
    fired = asyncio.run(first(restarted))
    assert fired.payload == {
        "run_id": "run-resume",
        "status": "tool_error",
        "reason": "mypy: crashed",
        "version": len(events) + 1,
    }
    assert lines_of(where.made[0]).versions() == [1, 2, 3, 4, 5]
    assert lines_of(restarted).versions() == list(
        range(6, len(events) + 2)
    )  # nothing twice, nothing missed


def test_a_cancelled_run_and_a_position_past_the_end(where: Where) -> None:
    events = run_events("run-cancel", finish=False)
    where.store.append("run-cancel", events, 0)
    where.store.append(
        "run-cancel", terminal("run-cancel", len(events), RunCancelled(reason="stop")), len(events)
    )
    end = len(events) + 1
    fired = asyncio.run(
        first(where.trigger("run-cancel", after_version=end))
    )  # XREAD would wait forever
    assert fired.payload == {
        "run_id": "run-cancel",
        "status": "cancelled",
        "reason": "stop",
        "version": end,
    }


def test_a_run_without_a_stream_is_an_error_event(where: Where) -> None:
    fired = asyncio.run(first(where.trigger("run-nowhere")))
    assert fired.payload["status"] == "error" and "has no stream" in fired.payload["reason"]


def test_the_trigger_never_shows_a_password() -> None:
    t = RunFinishedTrigger(
        redis_url="redis://user:s3cret@redis.example:6379/0", stream="k", run_id="r"
    )
    assert "s3cret" not in repr(t) and "user:***@" in repr(t)


@pytest.mark.fault
def test_the_trigger_survives_a_redis_restart(redis_server: RedisServer) -> None:
    store = EventStore(redis.Redis.from_url(redis_server.url), Keys())
    events = run_events("run-restart")
    store.append("run-restart", events[:4], 0)
    t = RunFinishedTrigger(
        redis_url=redis_server.url,
        stream=store.keys.run_stream("run-restart"),
        run_id="run-restart",
        block_ms=100,
        max_backoff_s=0.5,
    )
    t._log = Lines()  # type: ignore[assignment]

    async def main() -> TriggerEvent:
        waiting = asyncio.ensure_future(first(t))
        while t.after_version < 4:
            await asyncio.sleep(0.01)
        redis_server.kill()
        await asyncio.sleep(0.5)  # the trigger now fails to reach the server and retries
        redis_server.start()
        after = EventStore(redis.Redis.from_url(redis_server.url), Keys())
        after.append("run-restart", events[4:], 4)
        return await waiting

    fired = asyncio.run(main())
    assert fired.payload["status"] == "partially_fixed"
    assert any(line.startswith("lost Redis") for line in lines_of(t).lines)
    assert lines_of(t).versions() == list(range(1, len(events) + 1))


# ------------------------------------------------------------------ the sensor around the trigger


class FakeTI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


@pytest.fixture
def server_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[EventStore]:
    """What Airflow's environment gives the sensor: the server URL and a prefix of this test's own."""
    prefix = f"airfix_sens_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AIRFIX_REDIS_URL", REAL_URL)
    monkeypatch.setenv("AIRFIX__STORE__PREFIX", prefix)
    client = real_client()
    yield EventStore(client, Keys(prefix=prefix))
    for key in client.scan_iter(match=f"*{prefix}*", count=1000):
        client.delete(key)


def context(**params: Any) -> dict[str, Any]:
    return {"params": {"execution": "workers", **params}, "ti": FakeTI()}


def test_the_sensor_defers_from_the_runs_current_position(
    server_env: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_env.append("run-s1", run_events("run-s1", finish=False)[:4], 0)
    sensor = RunFinishedSensor(task_id="wait", fix_run_id="run-s1", block_ms=500)
    log = Lines()
    monkeypatch.setattr(RunFinishedSensor, "log", property(lambda self: log))
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context())
    assert log.versions() == [1, 2, 3, 4]  # the story so far, before the trigger goes on
    trigger = deferred.value.trigger
    assert isinstance(trigger, RunFinishedTrigger)
    assert (trigger.after_version, trigger.stream, trigger.redis_url) == (
        4,
        server_env.keys.run_stream("run-s1"),
        REAL_URL,
    )
    assert deferred.value.method_name == "execute_complete"


def test_the_sensor_finishes_at_once_for_an_ended_run_and_fails_a_bad_status(
    server_env: EventStore,
) -> None:
    events = run_events("run-s2", finish=False)
    server_env.append("run-s2", events, 0)
    server_env.append(
        "run-s2",
        terminal("run-s2", len(events), RunFailed(reason="no tests", status="failed")),
        len(events),
    )
    ctx = context()
    with pytest.raises(AirflowFailException, match="ended failed: no tests"):
        RunFinishedSensor(task_id="wait", fix_run_id="run-s2").execute(ctx)
    assert ctx["ti"].xcom["summary"]["status"] == "failed"  # the summary is pushed even so
    ok = context(ok_statuses=["failed"])
    assert RunFinishedSensor(task_id="wait", fix_run_id="run-s2").execute(ok)["status"] == "failed"


def test_the_sensor_maps_the_triggers_event(server_env: EventStore) -> None:
    server_env.append("run-s3", run_events("run-s3"), 0)
    sensor = RunFinishedSensor(task_id="wait", fix_run_id="run-s3")
    with pytest.raises(AirflowFailException, match="wrong server"):
        sensor.execute_complete(context(), {"status": "error", "reason": "wrong server or prefix?"})
    result = sensor.execute_complete(context(), {"status": "partially_fixed", "run_id": "run-s3"})
    assert result["status"] == "partially_fixed" and result["commits"] == 1
    with pytest.raises(AirflowFailException, match="no fix run run-none"):
        RunFinishedSensor(task_id="wait", fix_run_id="run-none").execute(context())


def test_a_user_error_fails_the_request_task_without_retries(tmp_path: Any) -> None:
    """Bad input cannot get better by retrying: AirflowFailException, with airfix's message."""
    dag_run = type("DagRun", (), {"dag_id": "autonomous_fixing", "run_id": "manual__x"})()
    ctx = {
        "params": {"target_project": str(tmp_path), "execution": "inline", "wait": "defer"},
        "dag_run": dag_run,
    }
    with pytest.raises(AirflowFailException, match='cannot be combined with "wait": "defer"'):
        request(ctx)
    ctx["params"] = {
        "target_project": str(tmp_path / "missing"),
        "execution": "inline",
        "max_iterations": 1,
    }
    with pytest.raises(AirflowFailException, match="does not exist"):
        request(ctx)


def test_without_deferral_the_sensor_pokes_until_the_run_ends(server_env: EventStore) -> None:
    events = run_events("run-s4")
    server_env.append("run-s4", events[:3], 0)

    def worker() -> None:
        for i in range(3, len(events)):
            time.sleep(0.02)
            server_env.append("run-s4", events[i : i + 1], i)

    thread = threading.Thread(target=worker)
    thread.start()
    sensor = RunFinishedSensor(
        task_id="wait", fix_run_id="run-s4", deferrable=False, poke_interval=0.05
    )
    result = sensor.execute(context())  # never defers: it polls the store in this task
    thread.join()
    assert result["status"] == "partially_fixed" and result["iterations"] == 1
