"""One run per target, atomically (``services/pipeline/target_lock.py``): of N requests released together by
a barrier, exactly one is accepted, whether the lock was free, held by a finished run, or held by a
stale claim (a requester that died before recording its run); an active run, recorded or freshly
claimed, is never taken over; a request that fails after taking the lock gives it back.  On
fakeredis and the real server, many repetitions each."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import redis

from airfix.events.errors import AirfixError
from airfix.services.pipeline import target_lock
from airfix.services.pipeline.git import Repo
from airfix.services.pipeline.requests import request_run, target_lock_key
from airfix.services.runtime.app import App
from tests.helpers import app_on
from tests.pipeline_harness import make_repo

THREADS = 6
ROUNDS = 12


@pytest.fixture
def app(client: redis.Redis) -> App:
    return app_on(client)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path)


def _request(app: App, repo: Path) -> str:
    return request_run(
        app, app.config, repo, batching="smart", fixer="autofix", simulation=True, max_iterations=1
    )


def _lock(app: App, repo: Path) -> str:
    return target_lock_key(app, Repo.open(repo))


def _finished(app: App, run_id: str) -> None:
    """``run_id`` is a finished run as far as the lock is concerned (its status says so)."""
    app.client.hset(app.keys.status, run_id, json.dumps({"run_id": run_id, "state": "completed"}))


def _race(app: App, repo: Path, n: int = THREADS) -> tuple[list[str], list[BaseException]]:
    """``n`` threads request a run on ``repo`` at the same instant; (accepted ids, errors)."""
    barrier = threading.Barrier(n)
    won: list[str] = []
    lost: list[BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        try:
            rid = _request(app, repo)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on below
            with lock:
                lost.append(exc)
            return
        with lock:
            won.append(rid)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return won, lost


@pytest.mark.parametrize("held_by", ["free", "finished", "stale"])
def test_exactly_one_of_many_concurrent_requests_wins(app: App, repo: Path, held_by: str) -> None:
    lock = _lock(app, repo)
    for r in range(ROUNDS):
        app.client.delete(lock, target_lock.claim_key(lock))
        if held_by == "finished":
            _finished(app, f"old-{r}")
            app.client.set(lock, f"old-{r}")
        elif held_by == "stale":  # its requester died before RunRequested; the claim has expired
            app.client.set(lock, f"ghost-{r}")
        won, lost = _race(app, repo)
        assert 1 == len(won), (r, won, lost)
        assert THREADS - 1 == len(lost)
        for exc in lost:
            assert isinstance(exc, AirfixError), repr(exc)
            assert f"run {won[0]} is still active on {Path(repo).resolve()}" in str(exc)
        assert won[0].encode() == app.client.get(lock)
        assert 1 == app.store.version(won[0])
        _finished(app, won[0])  # the next round starts from a finished run's lock, or resets it
    runs = [k for k in app.client.scan_iter(match=f"{app.keys.prefix}:*:idx:*")]
    assert ROUNDS == len(runs), "a refused request recorded a run"


def test_an_active_run_is_never_taken_over(app: App, repo: Path) -> None:
    """A recorded, unfinished run keeps the target however old; so does a fresh claim."""
    first = _request(app, repo)
    with pytest.raises(AirfixError, match=f"run {first} is still active"):
        _request(app, repo)
    app.client.delete(target_lock.claim_key(_lock(app, repo)))  # long past its claim window
    with pytest.raises(AirfixError, match=f"run {first} is still active"):
        _request(app, repo)

    lock = _lock(app, repo)
    app.client.delete(lock)
    assert "" == target_lock.acquire(app.client, app.keys, lock, "claimed", target=str(repo))
    with pytest.raises(
        AirfixError, match=r"run claimed is still active .*being requested: it has no event yet"
    ):
        _request(app, repo)
    assert b"claimed" == app.client.get(lock)


def test_a_claim_older_than_its_window_is_stale(app: App, repo: Path) -> None:
    """A requester that took the lock and died before recording its run: once the claim window has
    passed, the next request takes the target over."""
    lock = _lock(app, repo)
    target_lock.acquire(app.client, app.keys, lock, "died", target=str(repo), claim_window_ms=100)
    with pytest.raises(AirfixError, match="run died is still active"):
        _request(app, repo)
    time.sleep(0.2)
    rid = _request(app, repo)
    assert rid.encode() == app.client.get(lock)


def test_a_request_that_fails_after_taking_the_lock_gives_it_back(
    app: App, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("lost the server mid-append")

    monkeypatch.setattr(app.store, "append", broken)
    with pytest.raises(redis.ConnectionError):
        _request(app, repo)
    lock = _lock(app, repo)
    assert not app.client.exists(lock, target_lock.claim_key(lock))
    monkeypatch.undo()
    assert 1 == app.store.version(_request(app, repo))


def test_a_refused_request_takes_no_lock(app: App, repo: Path, tmp_path: Path) -> None:
    """Input checked after the lock used to leave it behind (target_project.python): now every
    check runs before it."""
    from airfix.config import load_config

    app.config = load_config(env={}, overrides={"target_project.python": str(tmp_path / "nope")})
    with pytest.raises(AirfixError, match="is not a file"):
        _request(app, repo)
    assert [] == list(app.client.scan_iter(match="*target_lock*"))
