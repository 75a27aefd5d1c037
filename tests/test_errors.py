"""Errors people meet first: one clear line, no traceback, the right exit code, nothing written.

* A Redis server that refuses the connection, does not answer, or rejects the credentials: exit 10
  (``EXIT_REDIS_UNAVAILABLE``), naming the server without its password, for the commands that open
  the store (``run``, ``worker``, ``status``, ``runs``).
* Refused input writes nothing at all on the server: not a run, not a lock, not ``meta``, not a log
  line (``--wait-timeout -1``, an empty fixer name, a fixer whose executable is missing or whose
  command is not configured, a missing ``--python``, a config value out of range).
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airfix.services.commands.cli import EXIT_REDIS_UNAVAILABLE
from airfix.services.commands.run import EXIT_CODES
from tests.conftest import real_client
from tests.helpers import run_cli
from tests.pipeline_harness import make_repo
from tests.redis_procs import RedisServer, free_port

PASSWORD = "PLANTED-pw-for-errors-77"


def test_the_redis_exit_code_is_its_own() -> None:
    assert 10 == EXIT_REDIS_UNAVAILABLE
    assert EXIT_REDIS_UNAVAILABLE not in set(EXIT_CODES.values()) | {2}


def _commands(repo: Path) -> list[list[str]]:
    return [
        ["runs"],
        ["status"],
        ["run", "--target", str(repo), "--max-iterations", "1", "--json"],
        ["worker", "--burst"],
    ]


def _one_clear_line(code: int, out: str, err: str, *fragments: str) -> None:
    assert EXIT_REDIS_UNAVAILABLE == code, err
    assert "" == out
    lines = err.strip().splitlines()
    assert 1 == len(lines) and lines[0].startswith("airfix: error: "), err
    assert "Traceback" not in err and PASSWORD not in err
    for f in fragments:
        assert f in err, (f, err)


def test_connection_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    for args in _commands(make_repo(tmp_path)):
        code, out, err = run_cli(capsys, *args, url=url)
        _one_clear_line(
            code,
            out,
            err,
            f"cannot connect to the Redis server redis://:***@127.0.0.1:{port}/0",
            "Connection refused",
        )


def test_authentication_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=False, password=PASSWORD).start()
    try:
        repo = make_repo(tmp_path)
        for url, shown in (
            (
                f"redis://:wrong-{PASSWORD}@127.0.0.1:{server.port}/0",
                f"redis://:***@127.0.0.1:{server.port}/0",
            ),
            (f"redis://127.0.0.1:{server.port}/0", f"redis://127.0.0.1:{server.port}/0"),
        ):
            for args in _commands(repo):
                code, out, err = run_cli(capsys, *args, url=url)
                _one_clear_line(code, out, err, f"the Redis server {shown} refused the credentials")
                assert f"wrong-{PASSWORD}" not in err
        import redis

        assert [] == redis.Redis.from_url(server.url).keys("*")  # and nothing was written
    finally:
        server.stop()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(sock.getsockname()[1])
    stop.set()
    thread.join(2)
    for c in held:
        c.close()
    sock.close()


def test_timeout(tmp_path: Path, silent_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{silent_server}/0?socket_timeout=0.3"
    for args in _commands(make_repo(tmp_path))[:3]:
        code, out, err = run_cli(capsys, *args, url=url)
        _one_clear_line(
            code,
            out,
            err,
            f"the Redis server redis://:***@127.0.0.1:{silent_server}/0",
            "did not answer in time",
        )


# ------------------------------------------------------------------------------ refused input writes nothing


@pytest.fixture
def prefix(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"airfix_err_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("AIRFIX__STORE__PREFIX", name)
    yield name
    client = real_client()
    for pattern in (f"{name}:*", f"{{{name}:*"):
        for key in client.scan_iter(match=pattern):
            client.delete(key)


def _bad(case: str, tmp_path: Path) -> tuple[list[str], str]:
    repo = make_repo(tmp_path)
    run = ["run", "--target", str(repo), "--max-iterations", "1", "--json"]
    if case == "wait-timeout-negative":
        return [
            *run,
            "--wait-timeout",
            "-1",
        ], "--wait-timeout must be a number of seconds above 0, got -1"
    if case == "wait-timeout-nan":
        return [*run, "--wait-timeout", "nan"], "--wait-timeout must be a number of seconds above 0"
    if case == "empty-fixer-name":
        return [
            *run,
            "--fixer",
            "autofix,,claude",
        ], "fixer: empty fixer name at position 2 of 'autofix,,claude'"
    if case == "trailing-comma":
        return [*run, "--fixer", "autofix,"], "fixer: empty fixer name at position 2"
    if case == "claude-not-installed":
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"fixer:\n  claude_executable: {tmp_path / 'no-such-claude'}\n")
        return [
            *run,
            "--fixer",
            "autofix,claude",
            "--config",
            str(cfg),
        ], "npm install -g @anthropic-ai/claude-code"
    if case == "command-not-configured":
        return [*run, "--fixer", "command"], "fixer.command is empty"
    if case == "command-not-installed":
        cfg = tmp_path / "c.yaml"
        cfg.write_text("fixer:\n  command: [no-such-agent-xyz, '{prompt_file}']\n")
        return [
            *run,
            "--fixer",
            "command",
            "--config",
            str(cfg),
        ], "executable 'no-such-agent-xyz' of fixer.command not found"
    if case == "python-missing":
        return [*run, "--python", str(tmp_path / "nope" / "python")], "is not a file"
    if case == "config-out-of-range":
        cfg = tmp_path / "c.yaml"
        cfg.write_text("consumers:\n  lease_ttl_ms: 99999999999999999999\n")
        return [*run, "--config", str(cfg)], "consumers.lease_ttl_ms: expected int <= 3600000"
    raise AssertionError(case)


BAD = [
    "wait-timeout-negative",
    "wait-timeout-nan",
    "empty-fixer-name",
    "trailing-comma",
    "claude-not-installed",
    "command-not-configured",
    "command-not-installed",
    "python-missing",
    "config-out-of-range",
]


@pytest.mark.parametrize("case", BAD)
def test_refused_input_writes_nothing_at_all(
    case: str, tmp_path: Path, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args, expected = _bad(case, tmp_path)
    code, out, err = (
        run_cli(capsys, *args, "--wait-timeout", "5")
        if "--wait-timeout" not in args
        else run_cli(capsys, *args)
    )
    assert 2 == code, (out, err)
    assert "" == out and err.startswith("airfix: error: ") and "Traceback" not in err
    assert expected in err, err
    client = real_client()
    keys = [
        k for pattern in (f"{prefix}:*", f"{{{prefix}:*") for k in client.scan_iter(match=pattern)
    ]
    assert [] == keys  # no run, no lock, no log line, not even meta


def test_a_simulation_needs_no_fixer_installed(
    tmp_path: Path, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A simulation plans and reports; its fixers never run, so they need not be installed."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"fixer:\n  claude_executable: {tmp_path / 'no-such-claude'}\n")
    code, out, err = run_cli(
        capsys,
        "run",
        "--target",
        str(make_repo(tmp_path)),
        "--simulation",
        "--fixer",
        "claude",
        "--config",
        str(cfg),
        "--inline",
        "--json",
        "--max-iterations",
        "1",
    )
    assert 0 == code, err[-2000:]
    assert '"status":"simulated"' in out.replace(" ", "")
