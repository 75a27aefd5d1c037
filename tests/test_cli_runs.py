"""Two real runs of the bundled sample on one copy: ``airfix runs --target`` shows the target's
history (the second run starts where the first left it), and every view of a finished run names
the same last iteration (status, show, replay, tail, the summary and the health lines)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "airfix.services.commands.cli"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The sample fixed twice on one copy: ``--max-iterations 3``, then ``--max-iterations 1``."""
    tmp = tmp_path_factory.mktemp("runs")
    (tmp / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFIX")}
    env.update(HOME=str(tmp / "home"), TMPDIR=str(tmp))
    first = _cli(env, "run", "--sample", "--max-iterations", "3", "--json")
    one = json.loads(first.stdout)
    second = _cli(env, "run", "--target", one["target"], "--max-iterations", "1", "--json")
    return {"env": env, "first": one, "second": json.loads(second.stdout)}


def _cli(env: dict[str, str], *args: str, ok: tuple[int, ...] = (0, 3, 4, 11)):  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode in ok, f"airfix {' '.join(args)}: {out.returncode}\n{out.stderr[-3000:]}"
    return out


def _last_iteration_everywhere(env: dict[str, str], run: dict[str, object]) -> set[int]:
    """The last iteration as each view names it."""
    rid = str(run["run_id"])
    status = json.loads(_cli(env, "status", rid, "--json").stdout)
    status_line = _cli(env, "status", rid).stdout
    show = json.loads(_cli(env, "show", rid, "--json").stdout)
    show_text = _cli(env, "show", rid).stdout
    replay = json.loads(_cli(env, "replay", rid, "--json").stdout)
    replay_text = _cli(env, "replay", rid).stdout
    tail = _cli(env, "tail", rid).stdout
    named = {
        "summary": run["iterations"],
        "status --json": status["iteration"],
        "status": int(re.search(r" iteration (\d+) ", status_line)[1]),  # type: ignore[index]
        "show --json": show["iterations"][-1]["number"],
        "show": int(re.findall(r"^iteration (\d+) \(", show_text, re.M)[-1]),
        "replay --json": replay["state"]["iteration"],
        "replay": int(re.findall(r"^ +iteration (\d+),", replay_text, re.M)[-1]),
        "tail": int(re.findall(r"iteration (\d+) done:", tail)[-1]),
    }
    # the last health line: the check of the last iteration, or the one that opened it
    health = re.findall(r"health check \(full, (after )?iteration (\d+)\)", tail)[-1]
    named["health"] = int(health[1]) + (1 if health[0] else 0)
    assert len(set(named.values())) == 1, named
    return set(named.values())  # type: ignore[arg-type]


def test_every_view_names_the_same_last_iteration(runs: dict[str, object]) -> None:
    env = runs["env"]
    first, second = runs["first"], runs["second"]
    assert isinstance(env, dict) and isinstance(first, dict) and isinstance(second, dict)
    assert {first["iterations"]} == _last_iteration_everywhere(env, first)
    assert 1 <= first["iterations"] <= 3
    assert {1} == _last_iteration_everywhere(env, second)  # max 1: never "iteration 2"


def test_runs_of_a_target_newest_first_with_scores_commits_and_fixed(
    runs: dict[str, object],
) -> None:
    env, first, second = runs["env"], runs["first"], runs["second"]
    assert isinstance(env, dict) and isinstance(first, dict) and isinstance(second, dict)
    rows = json.loads(_cli(env, "runs", "--target", first["target"], "--json").stdout)
    assert [second["run_id"], first["run_id"]] == [r["run_id"] for r in rows]
    new, old = rows
    assert (old["status"], new["status"]) == (first["status"], second["status"])
    assert (old["score_before"], old["score_after"]) == (
        first["score_before"],
        first["score_after"],
    )
    assert new["score_before"] == old["score_after"]  # the second run starts where the first ended
    assert old["commits"] == len(first["commits"]) and new["commits"] == len(second["commits"])
    assert old["fixed"] == sum(c["issues"] for c in first["commits"]) > 0
    assert (old["issues_before"], old["issues_after"]) == (
        first["issues_before"],
        first["issues_after"],
    )
    assert new["issues_before"] == first["issues_after"]
    assert old["started"] < new["started"] and old["duration_s"] > 0
    # a subdirectory of the repository names the same target
    sub = Path(str(first["target"])) / "inventory"
    assert rows == json.loads(_cli(env, "runs", "--target", str(sub), "--json").stdout)

    table = _cli(env, "runs", "--target", first["target"]).stdout
    lines = table.splitlines()
    assert "\x1b" not in table and all(len(x) <= 120 for x in lines), table
    assert lines[0] == f"runs of {first['target']}, newest first"
    assert re.match(r"started +run +status +score +commits +fixed +duration$", lines[1])
    assert lines[2].split()[2] == second["run_id"] and lines[3].split()[2] == first["run_id"]
    before, after = f"{first['score_before']:.2f}", f"{first['score_after']:.2f}"
    assert f"{before} -> {after}" in lines[3] and f" {old['fixed']} " in lines[3]


def test_runs_of_a_target_without_runs_is_an_empty_list(runs: dict[str, object]) -> None:
    env = runs["env"]
    assert isinstance(env, dict)
    assert [] == json.loads(_cli(env, "runs", "--target", "/nowhere/at/all", "--json").stdout)
    out = _cli(env, "runs", "--target", "/nowhere/at/all")
    assert "" == out.stdout and "no runs of /nowhere/at/all" in out.stderr
