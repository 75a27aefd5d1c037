"""The Airflow glue without a scheduler: idempotent run requests, run ids derived from DAG runs, the
live follow into a task log, worker liveness, commit checks, and the sensor's decisions.

The store tests run on fakeredis and on the real server (``tests/conftest.py``); the sensor tests
use the real server under a key prefix of their own.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import redis

from airfix.airflow_glue.runs import (
    FixParams,
    commit_facts,
    event_lines,
    failure,
    fix_run_id,
    follow,
    roles_without_workers,
    submit,
    summary,
)
from airfix.events import stamp
from airfix.events.core.steps import ROLES
from airfix.events.errors import AirfixError
from airfix.events.keys import Keys
from airfix.events.schema import RunFailed, RunRequested
from airfix.events.storage.store import RUN_ID_RE, EventStore
from airfix.services.pipeline.requests import request_run
from airfix.services.runtime.app import App
from tests.conftest import REAL_URL, real_client
from tests.pipeline_harness import (
    commits_since,
    embedded_app,
    git,
    head,
    make_config,
    make_repo,
    server_app,
)
from tests.scenario import run_events

# ------------------------------------------------------------------ request_run(run_id=...)


def _request(app: App, repo: Path, run_id: str | None, **kw: Any) -> str:
    args: dict[str, Any] = {
        "batching": "smart",
        "fixer": "autofix",
        "simulation": True,
        "max_iterations": 1,
    }
    return request_run(app, app.config, repo, run_id=run_id, **{**args, **kw})


def test_a_repeated_request_with_the_same_run_id_appends_nothing(tmp_path: Path) -> None:
    app = embedded_app()
    repo = make_repo(tmp_path)
    first = _request(app, repo, "af-demo-1")
    assert first == "af-demo-1" and app.store.version(first) == 1
    entries = app.client.xlen(app.keys.log_of(first))
    # a retried task: even with other arguments, nothing is validated or appended again
    again = _request(app, repo, "af-demo-1", max_iterations=0, fixer="no-such-fixer")
    assert again == first
    assert app.store.version(first) == 1 and app.client.xlen(app.keys.log_of(first)) == entries
    assert [type(e).__name__ for e in app.store.read_run(first)] == ["RunRequested"]


def test_an_existing_run_id_on_another_target_is_refused(tmp_path: Path) -> None:
    app = embedded_app()
    _request(app, make_repo(tmp_path / "a"), "af-demo-2")
    with pytest.raises(AirfixError, match=r"already exists on .*a/mini, not on .*b/mini"):
        _request(app, make_repo(tmp_path / "b"), "af-demo-2")


def test_two_concurrent_requests_for_one_run_id_make_one_run(tmp_path: Path) -> None:
    """The second request passes every check while the first is still appending; its own append
    then loses the version race, and it returns the run the first one made."""
    app = embedded_app()
    repo = make_repo(tmp_path)
    append = app.store.append
    raced: list[str] = []

    def racing_append(run_id: str, events: Any, expected_version: int) -> Any:
        if not raced:
            raced.append("racing")
            app.store.append = append  # type: ignore[method-assign]
            raced.append(_request(app, repo, run_id))  # the other request gets there first
        return append(run_id, events, expected_version)

    app.store.append = racing_append  # type: ignore[method-assign]
    assert _request(app, repo, "af-race") == "af-race" == raced[1]
    assert [type(e).__name__ for e in app.store.read_run("af-race")] == ["RunRequested"]


def test_a_new_run_id_is_validated_like_any_request(tmp_path: Path) -> None:
    app = embedded_app()
    repo = make_repo(tmp_path)
    with pytest.raises(AirfixError, match="at least 1"):
        _request(app, repo, "af-demo-3", max_iterations=0)
    with pytest.raises(AirfixError, match="not valid"):
        _request(app, repo, "bad id {with braces}")
    assert app.store.version("af-demo-3") == 0


def test_without_a_run_id_every_request_is_a_new_run(tmp_path: Path) -> None:
    app = embedded_app()
    repo = make_repo(tmp_path)
    first = _request(app, repo, None)
    app.client.delete(*app.client.keys(f"{app.keys.prefix}:target_lock:*"))  # the first never ran
    assert _request(app, repo, None) != first


# ------------------------------------------------------------------ run ids from DAG runs


def test_fix_run_ids_are_stable_distinct_and_valid_keys() -> None:
    manual = "manual__2026-11-24T20:02:08.882142+00:00"
    rid = fix_run_id("autonomous_fixing", manual)
    assert rid == fix_run_id("autonomous_fixing", manual)  # every try of every task
    assert RUN_ID_RE.match(rid) and rid.startswith("af-autonomous_fixing-20261124T200208")
    others = {
        fix_run_id("autonomous_fixing", "manual__2026-11-24T20:02:08.882143+00:00"),
        fix_run_id("hybrid_control_flow", manual),
        fix_run_id("autonomous_fixing", "manual__2026-11-24T20_02_08.882142+00_00"),
    }  # reads alike
    assert rid not in others and len(others) == 3
    long_id = fix_run_id("d" * 250, "x" * 250)
    assert RUN_ID_RE.match(long_id) and len(long_id) <= 128
    assert RUN_ID_RE.match(fix_run_id("dag", "+++"))


def test_inline_runs_cannot_be_deferred() -> None:
    with pytest.raises(AirfixError, match="cannot be combined"):
        FixParams.from_params({"target_project": "/x", "execution": "inline", "wait": "defer"})
    with pytest.raises(AirfixError, match="target_project is required"):
        FixParams.from_params({"max_iterations": 2})
    fp = FixParams.from_params(
        {"target_project": "/x", "max_iterations": 2, "ok_statuses": ["succeeded"]}
    )
    assert (fp.max_iterations, fp.execution, fp.wait, fp.ok_statuses) == (
        2,
        "workers",
        "follow",
        ("succeeded",),
    )


def test_only_listed_statuses_pass() -> None:
    result = {
        "run_id": "r",
        "status": "tool_error",
        "reason": "ruff: not found",
        "issues_before": 0,
        "issues_after": 0,
        "commits": 0,
    }
    why = failure(result, ("succeeded", "simulated"))
    assert why is not None and "ended tool_error: ruff: not found" in why
    assert failure({**result, "status": "simulated"}, ("succeeded", "simulated")) is None


# ------------------------------------------------------------------ following a run


def _app_on(client: redis.Redis) -> App:
    cfg = make_config()
    return App(cfg, client, EventStore(client, Keys()))


def test_follow_writes_one_line_per_event_as_workers_record_them(client: redis.Redis) -> None:
    """Another process appends the run slowly; follow blocks on the stream and returns at its end."""
    app = _app_on(client)
    events = run_events("run-follow")  # ends with RunCompleted
    app.store.append("run-follow", events[:1], 0)

    def worker() -> None:
        for i in range(1, len(events)):
            time.sleep(0.01)
            app.store.append("run-follow", events[i : i + 1], i)

    lines: list[str] = []
    thread = threading.Thread(target=worker)
    thread.start()
    report = follow(app, "run-follow", lines.append, inline=False, block_ms=50)
    thread.join()
    assert len(lines) == len(events)
    assert [
        int(re.match(r"\[airfix +(\d+) \d\d:\d\d:\d\d\.\d{3}Z\]", line).group(1)) for line in lines
    ] == list(  # type: ignore[union-attr]
        range(1, len(lines) + 1)
    )
    assert "run requested on /repos/run-follow" in lines[0]
    assert lines[-1].endswith(
        "run finished: partially_fixed (max iterations (1) reached); issues 5 -> 3, 1 commit(s)"
    )
    assert report.status == "partially_fixed"
    assert summary(report)["commits"] == 1


def test_follow_inline_hosts_the_run_and_reports_its_commits(tmp_path: Path) -> None:
    app = embedded_app()
    repo = make_repo(tmp_path)
    base = head(repo)
    run_id = _request(app, repo, "af-inline-1", simulation=False)
    lines: list[str] = []
    report = follow(app, run_id, lines.append, inline=True)
    commits = commits_since(repo, base, f"airfix/{run_id}")
    assert report.status == "partially_fixed" and commits
    assert [c["sha"] for c in report.commits] == [c["sha"] for c in commits]
    assert sum("] committed " in line for line in lines) == len(commits)
    assert any("issue(s) found" in line for line in lines) and "run finished" in lines[-1]
    assert not app.client.keys(f"{app.keys.prefix}:target_lock:*")  # released for the next run


def test_follow_refuses_a_run_that_is_not_there() -> None:
    with pytest.raises(AirfixError, match="no events"):
        follow(embedded_app(), "af-missing", print, inline=True)


# ------------------------------------------------------------------ workers must be alive


@pytest.fixture
def prefixed() -> Iterator[App]:
    """An app on the real server under a key prefix of its own (deleted afterwards)."""
    prefix = f"airfix_glue_{uuid.uuid4().hex[:8]}"
    app = server_app(REAL_URL, make_config(**{"store.redis_url": REAL_URL, "store.prefix": prefix}))
    yield app
    c = real_client()
    for key in c.scan_iter(match=f"*{prefix}*", count=1000):
        c.delete(key)


def test_workers_must_be_alive_for_every_role(prefixed: App, tmp_path: Path) -> None:
    app = prefixed
    repo = make_repo(tmp_path)
    fp = FixParams(target=str(repo), max_iterations=1, simulation=True)
    with pytest.raises(AirfixError, match="no live airfix worker hosts the role"):
        submit(app, fp, "af-nobody")
    now_ms = int(time.time() * 1000)
    stale = now_ms - app.settings.lease_ttl_ms - 1000
    for role in ROLES:  # how a worker registers (services/runtime/consumers.py Consumer.heartbeat)
        app.client.zadd(
            app.keys.members(f"role:{role}"), {"w1": now_ms if role != "fixer" else stale}
        )
    assert roles_without_workers(app) == ["fixer"]
    app.client.zadd(app.keys.members("role:fixer"), {"w2": now_ms})
    assert submit(app, fp, "af-somebody") == "af-somebody"
    assert isinstance(next(iter(app.store.read_run("af-somebody"))), RunRequested)


# ------------------------------------------------------------------ post-processing a commit


def test_commit_facts_checks_the_trailers_against_the_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "mini" / "core.py").write_text("import os\n")
    git(repo, "commit", "-qam", "chore: tidy\n\nAirfix-Batch: r1/1-1\nAirfix-Run: r1")
    sha = head(repo)
    facts = commit_facts(str(repo), "r1", {"batch_id": "r1/1-1", "sha": sha})
    assert facts["subject"] == "chore: tidy" and facts["files"] == 1 and facts["deletions"] > 0
    with pytest.raises(AirfixError, match="lacks 'Airfix-Run: r2'"):
        commit_facts(str(repo), "r2", {"batch_id": "r1/1-1", "sha": sha})


# ------------------------------------------------------------------ failing runs


def test_a_failed_run_is_reported_with_its_reason(client: redis.Redis) -> None:
    app = _app_on(client)
    events = run_events("run-bad", finish=False)
    app.store.append("run-bad", events, 0)
    app.store.append(
        "run-bad",
        stamp(
            [RunFailed(reason="mypy: crashed", status="tool_error")],
            run_id="run-bad",
            expected_version=len(events),
        ),
        len(events),
    )
    lines: list[str] = []
    result = summary(follow(app, "run-bad", lines.append, inline=False, block_ms=50))
    assert result["status"] == "tool_error" and result["reason"] == "mypy: crashed"
    assert "run failed: tool_error (mypy: crashed)" in lines[-1]
    assert "ended tool_error: mypy: crashed" in (failure(result, ("succeeded",)) or "")


# ------------------------------------------------------------------ log lines inside Airflow tasks


def test_no_log_line_uses_a_key_the_airflow_task_supervisor_reserves() -> None:
    """Airflow 3.3's supervisor forwards a task's log lines as ``_log_to_target(target, level, msg,
    **line)``: a line with a key ``target`` or ``msg`` raises TypeError there and the task dies
    (seen under ``airflow standalone``; ``airflow dags test`` runs tasks without that supervisor).
    airfix code runs inside tasks (request, inline runs), so none of its log calls may use them."""
    import ast

    root = Path(__file__).resolve().parents[1]
    methods = {
        "debug",
        "info",
        "warning",
        "error",
        "exception",
        "critical",
        "log",
        "msg",
        "bind",
        "new",
    }
    offenders = []
    for folder in ("events", "projections", "services", "config", "airflow_glue"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in methods
                    and "log" in ast.unparse(node.func.value).lower()
                ):
                    bad = {k.arg for k in node.keywords} & {"target", "msg"}
                    if bad:
                        offenders.append(f"{path.relative_to(root)}:{node.lineno} {sorted(bad)}")
    assert offenders == []


def test_every_progress_line_carries_the_time_of_its_event(client: redis.Redis) -> None:
    app = _app_on(client)
    app.store.append("run-times", run_events("run-times")[:3], 0)
    for ev in app.store.read_run("run-times"):
        at = ev.recorded_at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
        assert event_lines(ev)[0].startswith(f"[airfix {ev.version:>3} {at}Z] ")


def test_without_a_target_in_the_conf_the_configured_one_is_fixed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFIX__TARGET_PROJECT__PATH", "/srv/repos/app")
    assert FixParams.from_params({"max_iterations": 2}).target == "/srv/repos/app"
    assert FixParams.from_params({"target_project": "/other"}).target == "/other"
    monkeypatch.delenv("AIRFIX__TARGET_PROJECT__PATH")
    with pytest.raises(AirfixError, match=r"target_project.path in the config"):
        FixParams.from_params({"max_iterations": 2})
