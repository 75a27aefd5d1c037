"""Secrets (``services/secrets.py``): nothing secret is written anywhere airfix writes, and the
target's processes run without airfix's secrets.

The end-to-end tests plant a Redis password (in ``AIRFIX_REDIS_URL`` of a private server started
with ``--requirepass``, or in a ``REDIS_URL`` next to the embedded store), an ``ANTHROPIC_API_KEY``
and a ``GITHUB_TOKEN``, run ``airfix run`` with the ``command`` and ``claude`` fixers on a project
whose test writes its environment to a file (and puts it in its failure message, which becomes an
issue record), commit through a pre-commit hook that does the same, then grep everything written:
every key of the server, the journal files, the export, ``tail --json``, the trim archive, the log
stream and every command's stdout and stderr.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis
import structlog

from airfix.config import load_config
from airfix.services import secrets
from airfix.services.runtime.logs import configure_logging
from airfix.services.secrets import Policy, redact_config, redact_text, redact_url, scrubbed_env
from tests.fake_claude import FAKE_CLAUDE
from tests.pipeline_harness import make_repo
from tests.redis_procs import RedisServer

REDIS_PW = "PLANTED-redis-pw-4f1c9a"
ANTHROPIC = "sk-ant-PLANTED-anthropic-key-0123456789"
GITHUB = "ghp_PLANTEDgithubTOKEN0123456789abcdef"
PLANTED = (REDIS_PW, ANTHROPIC, GITHUB)


# ------------------------------------------------------------------------------ the pieces


def test_redact_url() -> None:
    assert "redis://:***@host:6379/0" == redact_url(f"redis://:{REDIS_PW}@host:6379/0")
    assert "redis://user:***@host/1" == redact_url("redis://user:pw@host/1")
    assert "rediss://:***@h:6380/0?ssl_cert_reqs=none" == redact_url(
        "rediss://:a@b@h:6380/0?ssl_cert_reqs=none"
    )
    assert "redis://host:6379/0" == redact_url("redis://host:6379/0")
    assert "" == redact_url("")


def test_redact_text() -> None:
    text = (
        f"lost redis://:{REDIS_PW}@10.0.0.1:6379/0 (retry) https://{GITHUB}@github.com/o/r "
        f"ssh://git@github.com/o/r ?password=hunter2&db=1 Authorization: Bearer abcdefghijklmnop1234 "
        f"key {ANTHROPIC}"
    )
    out = redact_text(text, ())
    for secret in (REDIS_PW, GITHUB, ANTHROPIC, "hunter2", "abcdefghijklmnop1234"):
        assert secret not in out, out
    assert "redis://:***@10.0.0.1:6379/0 (retry)" in out and "ssh://git@github.com/o/r" in out
    assert "?password=***&db=1" in out
    assert "the value s3cr3t-value-xyz here" != redact_text(
        "the value s3cr3t-value-xyz here", ["s3cr3t-value-xyz"]
    )


def test_redact_config() -> None:
    data = {
        "store": {"redis_url": f"redis://:{REDIS_PW}@h/0", "partitions": 4},
        "plugin": {
            "api_key": "abc",
            "Access_Token": "t0k",
            "password": "",
            "max_turns": 3,
            "max_tokens": 4000,
            "nested": [{"client_secret": "x"}],
        },
        "secrets": {"redact_keys": ["*token*"]},
    }
    out = redact_config(data, ("*password*", "*token*", "*secret*", "*api_key*"), ())
    assert {
        "store": {"redis_url": "redis://:***@h/0", "partitions": 4},
        "plugin": {
            "api_key": "***",
            "Access_Token": "***",
            "password": "",
            "max_turns": 3,
            "max_tokens": 4000,
            "nested": [{"client_secret": "***"}],
        },
        "secrets": {"redact_keys": ["*token*"]},
    } == out  # a section named like one is walked
    assert f"redis://:{REDIS_PW}@h/0" == data["store"]["redis_url"]  # a copy


def test_scrubbed_env() -> None:
    env = {
        "PATH": "/bin",
        "HOME": "/h",
        "AIRFIX_REDIS_URL": "redis://x",
        "AIRFIX__STORE__PREFIX": "p",
        "REDIS_URL": "redis://y",
        "ANTHROPIC_API_KEY": ANTHROPIC,
        "GITHUB_TOKEN": GITHUB,
        "AWS_SECRET_ACCESS_KEY": "s",
        "PGPASSWORD": "pg",
        "TOKENIZERS_PARALLELISM": "false",
        "CELERY_BROKER": f"redis://:{REDIS_PW}@h/0",
        "AIRFIX_RUN_ID": "r",
    }
    base = Policy(values=frozenset({REDIS_PW}))
    assert ["AIRFIX_RUN_ID", "HOME", "PATH", "TOKENIZERS_PARALLELISM"] == sorted(
        scrubbed_env(env, base)
    )
    allow = Policy(env_allow=("PGPASSWORD",), values=frozenset({REDIS_PW}))
    assert "PGPASSWORD" in scrubbed_env(env, allow)
    kept = scrubbed_env(env, base, keep=("ANTHROPIC_*",))
    assert ANTHROPIC == kept["ANTHROPIC_API_KEY"] and "GITHUB_TOKEN" not in kept
    deny = Policy(env_deny=("HOME",))
    assert "HOME" not in scrubbed_env(env, deny) and "GITHUB_TOKEN" in scrubbed_env(env, deny)


def test_the_policy_comes_from_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(
        env={},
        overrides={
            "store.redis_url": f"redis://:{REDIS_PW}@h/0",
            "secrets.env_allow": ["GITHUB_TOKEN"],
            "secrets.redact_keys": ["*token*", "*hush*"],
        },
    )
    try:
        policy = secrets.configure(cfg, {"GITHUB_TOKEN": GITHUB, "MY_HUSH": "quiet-please-now"})
        assert {REDIS_PW, GITHUB, "quiet-please-now"} == set(policy.values)
        assert GITHUB == scrubbed_env({"GITHUB_TOKEN": GITHUB})["GITHUB_TOKEN"]  # allowed
        assert "***" == redact_config({"MY_HUSH": "x"})["MY_HUSH"]
    finally:
        secrets.configure(load_config(env={}))


def test_log_lines_are_redacted_in_the_sink_and_on_the_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(secrets, "_active", Policy(values=frozenset({"quiet-please-now"})))
    for fmt in ("console", "json"):
        mirrored: list[dict[str, Any]] = []
        out = io.StringIO()
        configure_logging("info", fmt, stream=out, redis_sink=mirrored.append)
        log = structlog.get_logger("t")
        log.info(
            "connecting",
            url=f"redis://:{REDIS_PW}@h:6379/0",
            password="pw-in-a-key",
            headers={"api_key": "k-123"},
            note="the quiet-please-now value",
        )
        try:
            raise redis.ConnectionError(f"cannot reach redis://u:{REDIS_PW}@h/0 with {GITHUB}")
        except redis.ConnectionError:
            log.exception("lost it")
        written = out.getvalue() + json.dumps(mirrored, default=str)
        for secret in (REDIS_PW, "pw-in-a-key", "k-123", "quiet-please-now", GITHUB):
            assert secret not in written, (fmt, secret, written)
        assert "redis://:***@h:6379/0" in written and "lost it" in written
    configure_logging("warning", "console")


def test_airfix_config_prints_no_password(capsys: pytest.CaptureFixture[str]) -> None:
    from airfix.services.commands.cli import main

    assert 0 == main(["config", "--redis-url", f"redis://:{REDIS_PW}@127.0.0.1:1/0"])
    out = capsys.readouterr().out
    assert REDIS_PW not in out and "redis_url: redis://:***@127.0.0.1:1/0" in out


# ------------------------------------------------------------------------------ end to end

TARGET = {
    "pyproject.toml": textwrap.dedent("""\
        [project]
        name = "ages"
        version = "0.1.0"
        requires-python = ">=3.11"

        [tool.ruff]
        line-length = 100

        [tool.mypy]
        files = ["ages", "tests"]

        [tool.pytest.ini_options]
        testpaths = ["tests"]
        pythonpath = ["."]
        """),
    "ages/__init__.py": "",
    "ages/core.py": "def is_adult(age: int) -> bool:\n    return age > 18\n",
    "tests/__init__.py": "",
    # the target's own code writes what it sees, and puts it in a failure message (an issue record)
    "tests/test_core.py": textwrap.dedent("""\
        import json
        import os

        from ages.core import is_adult


        def _seen() -> str:
            out = os.environ.get("ENV_DUMP_DIR")
            if out:
                with open(os.path.join(out, f"pytest-{os.getpid()}.json"), "w") as fh:
                    json.dump(dict(os.environ), fh)
            names = ("AIRFIX_REDIS_URL", "REDIS_URL", "ANTHROPIC_API_KEY", "GITHUB_TOKEN")
            return " ".join(str(os.environ.get(n)) for n in names)


        def test_eighteen_is_adult() -> None:
            assert is_adult(18), f"the target saw {_seen()}"


        def test_seventeen_is_not() -> None:
            assert not is_adult(17)
        """),
}

COMMAND_FIXER = """\
import json, os, sys
with open(os.path.join(os.environ["ENV_DUMP_DIR"], f"command-{os.getpid()}.json"), "w") as fh:
    json.dump(dict(os.environ), fh)
"""
HOOK = '#!/bin/sh\nenv > "$ENV_DUMP_DIR/hook-$$.txt"\nexit 0\n'


def _target(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "work", TARGET, name="ages")
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text(HOOK)
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)
    return repo


def _config(tmp_path: Path) -> Path:
    script = tmp_path / "command_fixer.py"
    script.write_text(COMMAND_FIXER)
    path = tmp_path / "airfix.yaml"
    path.write_text(
        json.dumps(
            {
                "fixer": {
                    "claude_executable": str(FAKE_CLAUDE),
                    "timeout_s": 120,
                    "command": [sys.executable, str(script), "{prompt_file}"],
                    "command_env": ["GITHUB_TOKEN"],
                },
            }
        )
    )
    return path


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    dump = tmp_path / "seen"
    dump.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFIX", "FAKE_CLAUDE"))}
    edits = [{"file": "ages/core.py", "old": "    return age > 18", "new": "    return age >= 18"}]
    return {
        **env,
        "ANTHROPIC_API_KEY": ANTHROPIC,
        "GITHUB_TOKEN": GITHUB,
        "ENV_DUMP_DIR": str(dump),
        "FAKE_CLAUDE_EDITS": json.dumps(edits),
        "FAKE_CLAUDE_RECORD": str(tmp_path / "claude.json"),
        "AIRFIX__STORE__JOURNAL": str(tmp_path / "journal" / "journal.jsonl"),
        **extra,
    }


def _airfix(
    env: dict[str, str], *args: str, ok: tuple[int, ...] = (0,)
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "airfix.services.commands.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode in ok, (args, proc.returncode, proc.stderr[-3000:])
    return proc


def _assert_clean(where: str, blob: str | bytes) -> None:
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    for secret in PLANTED:
        assert secret not in text, (
            f"{where} holds a planted secret {secret[:12]}...: ...{_around(text, secret)}..."
        )


def _around(text: str, secret: str) -> str:
    i = text.find(secret)
    return text[max(0, i - 200) : i + 60]


def _what_the_target_saw(tmp_path: Path) -> None:
    seen = sorted((tmp_path / "seen").iterdir())
    kinds = {p.name.split("-")[0] for p in seen}
    assert {"pytest", "command", "hook"} <= kinds, (
        seen
    )  # the tests, the command fixer, a commit's hook
    for p in seen:
        text = p.read_text()
        if p.name.startswith(
            "command-"
        ):  # fixer.command_env names GITHUB_TOKEN for it; nothing else
            env = json.loads(text)
            assert GITHUB == env.pop("GITHUB_TOKEN")
            _assert_clean(p.name, json.dumps(env))
            assert not {"AIRFIX_REDIS_URL", "ANTHROPIC_API_KEY", "REDIS_URL"} & set(env)
            continue
        _assert_clean(p.name, text)
        for name in (
            "AIRFIX_REDIS_URL",
            "ANTHROPIC_API_KEY",
            "GITHUB_TOKEN",
            "AIRFIX__STORE__JOURNAL",
        ):
            assert f"{name}=" not in text and f'"{name}"' not in text, (p.name, name)
    claude = json.loads((tmp_path / "claude.json").read_text())["env"]
    assert ANTHROPIC == claude.pop("ANTHROPIC_API_KEY")  # its own key: what its adapter needs
    _assert_clean("the claude fixer's environment", json.dumps(claude))


def _dump_server(client: redis.Redis) -> bytes:
    """Every key of the database and everything in it."""
    out = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        out.append(key)
        if kind == "string":
            out.append(client.get(key) or b"")
        elif kind == "hash":
            out += [b"%s=%s" % kv for kv in client.hgetall(key).items()]
        elif kind == "list":
            out += client.lrange(key, 0, -1)
        elif kind == "set":
            out += list(client.smembers(key))
        elif kind == "zset":
            out += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for _, fields in client.xrange(key):
                out += [b"%s=%s" % kv for kv in fields.items()]
        else:
            raise AssertionError(f"{key!r}: a {kind} nobody expected")
    return b"\n".join(out)


def _run_and_read_back(tmp_path: Path, env: dict[str, str]) -> str:
    """run, then every reading command; returns all their output.  Asserts the run committed."""
    repo = _target(tmp_path)
    cfg = _config(tmp_path)
    run = _airfix(
        env,
        "run",
        "--target",
        str(repo),
        "--config",
        str(cfg),
        "--fixer",
        "command,claude",
        "--max-iterations",
        "2",
        "--inline",
        "--json",
        "--log-level",
        "debug",
        ok=(0, 3),
    )
    report = json.loads(run.stdout)
    assert report["commits"], report
    rid = report["run_id"]
    outputs = [run.stdout, run.stderr]
    archive = tmp_path / "archive"
    for args in (
        ["export", rid],
        ["tail", rid, "--json"],
        ["status", rid, "--json"],
        ["runs", "--json"],
        ["inspect", "--json"],
        ["dlq", "list", "--json"],
        ["config"],
        ["replay", rid, "--json"],
        ["trim", "--older-than", "0s", "--archive", str(archive), "--json"],
    ):
        proc = _airfix(env, *args, "--config", str(cfg))
        outputs += [proc.stdout, proc.stderr]
    assert (archive / f"{rid}.jsonl").is_file(), outputs[-2]
    outputs += [p.read_text() for p in archive.iterdir()]
    assert '"type":"RunRequested"' in outputs[2] or '"type": "RunRequested"' in outputs[2]
    return "\n".join(outputs)


def test_no_secret_is_written_and_the_target_sees_none_on_a_server(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=False, password=REDIS_PW).start()
    try:
        env = _env(tmp_path, AIRFIX_REDIS_URL=server.url)
        everything = _run_and_read_back(tmp_path, env)
        _assert_clean("the commands' stdout and stderr", everything)
        assert "redis://:***@127.0.0.1" in everything  # the URL is there, without its password
        client = redis.Redis.from_url(server.url)
        logs = client.xrange("autonomous_fix:logs")
        assert len(logs) > 20  # the log stream has the run's lines
        _assert_clean("the Redis server", _dump_server(client))
        client.close()
        _what_the_target_saw(tmp_path)
    finally:
        server.stop()


def test_no_secret_is_written_and_the_target_sees_none_on_the_embedded_store(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path, REDIS_URL=f"redis://:{REDIS_PW}@127.0.0.1:1/0")  # some other tool's
    everything = _run_and_read_back(tmp_path, env)
    _assert_clean("the commands' stdout and stderr", everything)
    journals = sorted((tmp_path / "journal").glob("journal*.jsonl"))
    assert {"journal.jsonl", "journal.logs.jsonl", "journal.ops.jsonl"} <= {
        p.name for p in journals
    }
    for path in journals:
        _assert_clean(path.name, path.read_bytes())
    _what_the_target_saw(tmp_path)
