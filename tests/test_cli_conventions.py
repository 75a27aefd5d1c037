"""The command line's conventions, for real: help and exit codes, a closed pipe, a human stderr next
to ``--json``, ``config --json``; ``airfix show`` checked against the events and git of a real fix
of the bundled sample; ``airfix doctor`` against a real server with and without workers."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from airfix.events.schema import (
    BatchPlanned,
    Committed,
    IterationCompleted,
    RunCompleted,
    StackLanded,
)
from airfix.services.commands.cli import build_parser
from airfix.services.commands.options import EXIT_CLOSED_PIPE
from tests.conftest import REAL_URL, real_client
from tests.pipeline_harness import make_repo, tool

#: what ``airfix run`` writes on stderr for people: its id, then one line per event
HUMAN = re.compile(r"^(airfix: run \S+; follow it|\d\d:\d\d:\d\d |  checks run with )")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFIX")}
    return {**env, **extra}


def _airfix(*args: str, env: dict[str, str] | None = None, timeout: float = 300):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "airfix.services.commands.cli", *args],
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _git(repo: str, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


# ------------------------------------------------------------------------------- help and usage


def test_no_arguments_prints_help_on_stderr_and_exits_2() -> None:
    out = _airfix()
    assert 2 == out.returncode
    assert "" == out.stdout
    assert (
        out.stderr.startswith("usage: airfix") and "doctor" in out.stderr and "show" in out.stderr
    )


def _commands(
    parser: argparse.ArgumentParser, path: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield f"{path} {name}".strip(), child
                yield from _commands(child, f"{path} {name}")


def test_every_subcommand_help_has_a_description_an_example_exit_codes_and_option_help() -> None:
    commands = dict(_commands(build_parser()))
    assert {"run", "show", "doctor", "config", "dlq retry", "projections rebuild"} <= set(commands)
    for name, parser in commands.items():
        text = parser.format_help()
        assert parser.description, name
        assert "examples:\n  airfix " in text, name
        assert re.search(r"exit codes:\n(  +\d+  \S.*\n?)+", text), name
        for code in ("0", "2", "10", str(EXIT_CLOSED_PIPE)):
            assert re.search(rf"^ +{code}  ", text, re.MULTILINE), (name, code)
        for action in parser._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
    run_help = _airfix("run", "--help")
    assert 0 == run_help.returncode and "  3  partially_fixed" in run_help.stdout


def test_config_json_is_the_yaml_config_as_json() -> None:
    as_json = _airfix("config", "--json")
    as_yaml = _airfix("config")
    assert 0 == as_json.returncode == as_yaml.returncode, as_json.stderr
    assert json.loads(as_json.stdout) == yaml.safe_load(as_yaml.stdout)
    assert "store" in json.loads(as_json.stdout)


# ----------------------------------------------------------------- a real fix of the sample


@dataclass
class Sample:
    run_id: str
    target: str
    report: dict  # type: ignore[type-arg]
    stderr: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def sample() -> Iterator[Sample]:
    """``airfix run --sample --json`` hosted inline on the real server, under a prefix of its own."""
    prefix = f"airfix_cli_{uuid.uuid4().hex[:10]}"
    env = _env(AIRFIX_REDIS_URL=REAL_URL, AIRFIX__STORE__PREFIX=prefix)
    proc = _airfix("run", "--sample", "--inline", "--max-iterations", "1", "--json", env=env)
    report = json.loads(proc.stdout)
    try:
        yield Sample(report["run_id"], report["target"], report, proc.stderr, env)
    finally:
        shutil.rmtree(Path(report["target"]).parent, ignore_errors=True)
        client = real_client()
        for pattern in (f"{prefix}:*", f"{{{prefix}:*"):
            for key in client.scan_iter(match=pattern, count=1000):
                client.delete(key)


def test_run_json_leaves_stderr_to_people(sample: Sample) -> None:
    lines = sample.stderr.splitlines()
    assert [] == [x for x in lines if not HUMAN.match(x)], sample.stderr[-3000:]
    assert any("run finished: partially_fixed" in x for x in lines)


def test_log_level_debug_adds_the_service_log_lines(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    proc = _airfix(
        "run", "--target", str(repo), "--max-iterations", "1", "--json", "--log-level", "debug"
    )
    assert 3 == proc.returncode, proc.stderr[-3000:]
    assert 1 == len(proc.stdout.splitlines())
    service = [x for x in proc.stderr.splitlines() if not HUMAN.match(x)]
    assert any("tool finished" in x for x in service), proc.stderr[-3000:]


@pytest.mark.parametrize(
    "args",
    [["runs", "--json"], ["export", "RUN"], ["tail", "RUN"], ["show", "RUN"], ["replay", "RUN"]],
)
def test_a_closed_pipe_ends_quietly_with_141(sample: Sample, args: list[str]) -> None:
    argv = [sample.run_id if a == "RUN" else a for a in args]
    proc = subprocess.Popen(
        [sys.executable, "-m", "airfix.services.commands.cli", *argv],
        env=sample.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first write
    err = proc.stderr.read().decode()
    assert EXIT_CLOSED_PIPE == proc.wait(120), err
    assert "" == err


def test_a_shell_pipeline_into_head_shows_no_traceback(sample: Sample) -> None:
    airfix = f"{sys.executable} -m airfix.services.commands.cli"
    proc = subprocess.run(
        ["bash", "-c", f"{airfix} export {sample.run_id} | head -c 10; exit ${{PIPESTATUS[0]}}"],
        env=sample.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 10 == len(proc.stdout) and proc.stdout.startswith('{"type"')
    assert proc.returncode in (0, EXIT_CLOSED_PIPE) and "" == proc.stderr


def test_show_tells_the_run_as_its_events_and_git_do(sample: Sample) -> None:
    proc = _airfix("show", sample.run_id, "--json", env=sample.env)
    assert 0 == proc.returncode and "" == proc.stderr, proc.stderr
    shown = json.loads(proc.stdout)
    events = _events(sample)
    final = next(e for e in events if isinstance(e, RunCompleted))
    assert (final.status, final.reason) == (shown["status"], shown["reason"])
    assert (
        final.issues_after == shown["issues_after"] == sum(r["count"] for r in shown["remaining"])
    )
    assert {(r.tool, r.rule) for r in final.remaining} == {
        (r["tool"], r["rule"]) for r in shown["remaining"]
    }
    # the commits are what git has on the run's branch since the base, in order
    base, branch = shown["base_sha"], shown["branch"]
    shas = _git(sample.target, "rev-list", "--reverse", f"{base}..{branch}").split()
    assert shas == [c["sha"] for c in shown["commits"]] and shas
    for c in shown["commits"]:
        assert _git(sample.target, "log", "-1", "--format=%s", c["sha"]).strip() == c["subject"]
        short = _git(sample.target, "diff", "--shortstat", f"{c['sha']}^", c["sha"])
        counts = {k: int(n) for n, k in re.findall(r"(\d+) (file|insertion|deletion)", short)}
        stat = c["stat"]
        assert counts.get("file", 0) == len(stat["files"])
        assert (counts.get("insertion", 0), counts.get("deletion", 0)) == (
            stat["insertions"],
            stat["deletions"],
        )
    # per iteration, every planned batch with the verdict its events give
    planned = [e for e in events if isinstance(e, BatchPlanned)]
    batches = [b for it in shown["iterations"] for b in it["batches"]]
    assert [e.batch_id for e in planned] == [b["batch_id"] for b in batches]
    landed = {c.batch_id: c.sha for e in events if isinstance(e, StackLanded) for c in e.commits}
    landed |= {e.batch_id: e.sha for e in events if isinstance(e, Committed) and not e.staged}
    for b in batches:
        assert (b["verdict"] == "committed") == (b["batch_id"] in landed), b
        assert b["sha"] == landed.get(b["batch_id"], b["sha"])
    done = next(e for e in events if isinstance(e, IterationCompleted))
    first = shown["iterations"][0]
    assert (done.committed, done.rolled_back, done.failed) == (
        first["committed"],
        first["rolled_back"],
        first["failed"],
    )
    assert first["checks"] and first["duration_s"] > 0
    text = _airfix("show", sample.run_id, env=sample.env)
    assert 0 == text.returncode, text.stderr
    for sha in shas:
        assert sha[:10] in text.stdout
    assert f"left: {final.issues_after} issue(s)" in text.stdout
    assert f"run {sample.run_id}: completed partially_fixed" in text.stdout
    latest = _airfix("show", "latest", "--json", env=sample.env)
    assert sample.run_id == json.loads(latest.stdout)["run_id"]


def test_run_detail_gives_each_batch_its_last_verdict_and_reason() -> None:
    from airfix.projections.detail import run_detail
    from tests.scenario import run_events

    done = run_detail(run_events("r1"))
    (it,) = done.iterations
    verdicts = {b.batch_id: (b.verdict, b.reason, b.sha, b.attempts) for b in it.batches}
    assert verdicts == {
        "r1/b1": ("failed", "fixer exited 1", "", 1),
        "r1/b2": ("committed", "", "def", 1),
        "r1/b3": ("planned", "", "", 0),
    }
    assert (it.completed, it.committed, it.failed, it.issues_found) == (True, 1, 1, 5)
    assert ["def"] == [c.sha for c in done.commits]
    assert ("completed", "partially_fixed") == (done.state, done.status)
    going = run_detail(run_events("r1", finish=False))
    assert not going.iterations[0].completed and "" == going.status and [] == going.remaining


def _events(sample: Sample) -> list:  # type: ignore[type-arg]
    from airfix.config import load_config
    from airfix.services.runtime.app import build_app

    cfg = load_config(
        overrides={
            "store.redis_url": REAL_URL,
            "store.prefix": sample.env["AIRFIX__STORE__PREFIX"],
        },
        env={},
    )
    return list(build_app(cfg).store.read_run(sample.run_id))


# ------------------------------------------------------------------------------------ doctor


def _tool_version(name: str) -> str:
    out = subprocess.run([tool(name), "--version"], capture_output=True, text=True, check=True)
    return re.search(r"\d+(?:\.\d+)+", out.stdout).group(0)  # type: ignore[union-attr]


def test_doctor_names_tools_the_server_and_workers_per_role() -> None:
    prefix = f"airfix_doc_{uuid.uuid4().hex[:10]}"
    env = _env(AIRFIX__STORE__PREFIX=prefix, AIRFIX__CONSUMERS__BLOCK_MS="200")
    lonely = _airfix("doctor", "--redis-url", REAL_URL, "--json", env=env)
    assert 1 == lonely.returncode, lonely.stderr
    report = json.loads(lonely.stdout)
    by_name = {(f["section"], f["name"]): f for f in report["findings"]}
    assert report["ok"] is False
    assert by_name[("redis", "redis")]["ok"] and prefix in by_name[("redis", "redis")]["detail"]
    assert by_name[("tools", "ruff")] == {
        "section": "tools",
        "name": "ruff",
        "ok": True,
        "detail": _tool_version("ruff"),
    }
    workers = {n: f["ok"] for (s, n), f in by_name.items() if s == "workers"}
    assert workers == dict.fromkeys(
        ("manager", "checker", "planner", "fixer", "verifier", "projections"), False
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "airfix.services.commands.cli", "worker", "--redis-url", REAL_URL],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, healthy = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            healthy = _airfix("doctor", "--redis-url", REAL_URL, env=env)
            if healthy.returncode == 0:
                break
            time.sleep(0.5)
        assert healthy is not None and 0 == healthy.returncode, healthy and healthy.stdout
        assert "all fine" in healthy.stdout and "NO " not in healthy.stdout
    finally:
        worker.terminate()
        worker.wait(30)
        client = real_client()
        for pattern in (f"{prefix}:*", f"{{{prefix}:*"):
            for key in client.scan_iter(match=pattern, count=1000):
                client.delete(key)


def test_doctor_with_an_unreachable_server_says_so_and_exits_1() -> None:
    out = _airfix("doctor", "--redis-url", "redis://127.0.0.1:1/0")
    assert 1 == out.returncode and "Traceback" not in out.stderr
    assert re.search(r"^NO +redis +redis +cannot connect", out.stdout, re.MULTILINE), out.stdout


def test_doctor_on_a_target_names_its_interpreter(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    out = _airfix("doctor", "--target", str(repo), "--json")
    assert 0 == out.returncode, out.stdout + out.stderr
    findings = json.loads(out.stdout)["findings"]
    python = next(f for f in findings if f["section"] == "python")
    assert python["ok"] and sys.version.split()[0] in python["detail"]
    assert {"ruff", "mypy", "pytest"} <= {f["name"] for f in findings if f["section"] == "tools"}
    missing = _airfix("doctor", "--target", str(tmp_path / "nowhere"))
    assert 2 == missing.returncode and "no such directory" in missing.stderr


def test_a_broken_pipe_other_than_stdout_is_not_hidden(monkeypatch, capfd) -> None:  # type: ignore[no-untyped-def]
    from airfix.services.commands import cli_read
    from airfix.services.commands.cli import main

    def broken(args: argparse.Namespace) -> int:
        raise BrokenPipeError("a tool's stdin")

    monkeypatch.setattr(cli_read, "cmd_config", broken)
    with pytest.raises(BrokenPipeError, match="a tool's stdin"):
        main(["config"])


def test_a_run_no_worker_would_take_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """``airfix run --redis-url`` with no live worker for some role would wait forever: it says
    which roles are missing and how to start a worker (or use --inline), exits 2, writes nothing."""
    prefix = f"airfix_nowk_{uuid.uuid4().hex[:10]}"
    repo = make_repo(tmp_path)
    env = _env(AIRFIX__STORE__PREFIX=prefix)
    out = _airfix("run", "--redis-url", REAL_URL, "--target", str(repo), "--json", env=env)
    assert 2 == out.returncode, out.stderr[-2000:]
    assert "" == out.stdout and "Traceback" not in out.stderr
    assert (
        "no live airfix worker hosts manager, checker, planner, fixer, verifier, projections"
        in out.stderr
    )
    assert "airfix worker --redis-url URL --roles all" in out.stderr and "--inline" in out.stderr
    client = real_client()
    assert [] == [k for p in (f"{prefix}:*", f"{{{prefix}:*") for k in client.scan_iter(match=p)]
    assert _git(str(repo), "branch", "--list", "airfix/*") == ""  # the target is untouched too
