"""The documents stay true to the code: README's quick start, links that lead somewhere, airfix
command lines the CLI accepts, the generated configuration reference, and example configs the
real loader takes."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from airfix.config import load_config
from airfix.services import fixers
from airfix.services.commands.cli import build_parser
from airfix.services.fixers.command import PLACEHOLDERS, CommandFixer, expand_command
from tests.conftest import REAL_URL, real_client
from tests.test_fixers_llm import SMALL, make_repo, make_request, small_issues

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.yaml"))
QUICK_START = (
    'pip install ".[python-tools]" && airfix run --sample --max-iterations 3',
    "./scripts/test.sh",
)
README_LINES = 250  # README for users; the Benchmarks section at its end is not counted
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
# a synopsis's placeholders for numbers, as a user would fill them in
NUMBERS = {"VERSION": "3", "N": "2", "S": "30", "PORT": "6380"}
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _code_blocks(text: str, lang: str) -> list[str]:
    return [body for kind, body in _FENCE.findall(text) if kind == lang]


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = _FENCE.sub("", text)
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_readme_starts_with_the_quick_start_commands() -> None:
    first = _code_blocks(README.read_text(), "bash")[0]
    commands = [x for x in first.splitlines() if x.strip() and not x.lstrip().startswith("#")]
    assert QUICK_START == tuple(commands[:2])


def test_readme_is_short_and_ends_with_the_benchmarks() -> None:
    text = README.read_text()
    head, sep, benchmarks = text.partition("\n## Benchmarks\n")
    assert sep, "README has no Benchmarks section"
    assert "\n## " not in benchmarks, "the Benchmarks section must be README's last"
    assert len(head.splitlines()) <= README_LINES


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_every_relative_link_points_to_an_existing_file(doc: Path) -> None:
    text = doc.read_text()
    broken = []
    for target in _LINK.findall(_FENCE.sub("", text)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert [] == broken, f"{doc.name}: {broken}"


def test_the_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "here.md").write_text("# Title\n\n## Some `code` here\n")
    assert "some-code-here" in _anchors((tmp_path / "here.md").read_text())
    doc = tmp_path / "doc.md"
    doc.write_text("[a](here.md#some-code-here) [b](gone.md) [c](here.md#nowhere)\n")
    with pytest.raises(AssertionError, match=r"gone\.md: no such file.*no heading #nowhere"):
        test_every_relative_link_points_to_an_existing_file(doc)


def _airfix_lines(text: str) -> list[str]:
    """Every ``airfix ...`` command of the text's bash blocks, cut at pipes, redirects and ``&&``;
    a synopsis's optional ``[...]`` and ``...`` are taken as written out."""
    out = []
    for block in _code_blocks(text, "bash"):
        for line in block.splitlines():
            for part in re.split(r"\s(?:\||&&|>)\s", line.split(" # ", 1)[0]):
                part = part.strip().replace("[", "").replace("]", "").replace("...", "")
                if part.startswith("airfix "):
                    out.append(part)
    return out


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_every_airfix_command_shown_is_accepted_by_the_cli(doc: Path) -> None:
    lines = _airfix_lines(doc.read_text())
    refused = []
    for line in lines:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                build_parser().parse_args([NUMBERS.get(w, w) for w in shlex.split(line)[1:]])
        except SystemExit:
            refused.append(f"{line}: {err.getvalue().strip().splitlines()[-1]}")
    assert [] == refused
    if doc in (README, ROOT / "docs" / "operations.md"):
        assert lines, f"{doc.name} shows no airfix command"


def _config_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "scripts" / "config_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configuration_reference_is_what_the_schema_renders() -> None:
    reference = _config_reference()
    checked_in = (ROOT / "docs" / "configuration-reference.md").read_text()
    assert reference.render() == checked_in, (
        "docs/configuration-reference.md is out of date: run python scripts/config_reference.py"
    )


def test_the_reference_names_every_key_with_its_range_and_comment(tmp_path: Path) -> None:
    reference = _config_reference()
    text = reference.render()
    cfg = load_config(env={})
    for section in type(cfg).__struct_fields__:
        for key in type(getattr(cfg, section)).__struct_fields__:
            assert f"| `{section}.{key}` |" in text
    assert (
        "| `store.partitions` | int, >= 1, <= 1024 | `4` | Number of event-log partitions" in text
    )
    assert "| `issue_grouping.mode` | one of: individual, mega, smart | `smart` |" in text
    stale = tmp_path / "reference.md"
    stale.write_text(text.replace("1024", "2048"))
    reference.OUTPUT = stale
    assert 1 == reference.main(["--check"])
    stale.write_text(text)
    assert 0 == reference.main(["--check"])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_loads_and_its_fixers_can_be_built(path: Path) -> None:
    cfg = load_config(path, env={})
    chain = fixers.chain(",".join(cfg.fixer.chain))
    assert [f.name for f in chain] == list(cfg.fixer.chain)
    assert "autofix" == cfg.fixer.chain[0] and len(cfg.fixer.chain) > 1  # the agent gets the rest
    if "command" in cfg.fixer.chain:
        values = {p: f"<{p}>" for p in PLACEHOLDERS}
        argv = expand_command(cfg.fixer.command, values, ["src/app.py"])
        # the agent is told what to fix: the prompt file, by placeholder or by environment
        assert "<prompt_file>" in argv or any("AIRFIX_PROMPT_FILE" in a for a in argv)
        assert cfg.fixer.command_env, "an agent needs its API key passed on: fixer.command_env"
    assert f"(config/examples/{path.name})" in README.read_text()


def test_there_are_examples_for_claude_and_for_the_command_fixer() -> None:
    chains = {load_config(p, env={}).fixer.chain[-1] for p in EXAMPLES}
    assert {"claude", "command"} <= chains


# A stand-in for an agent CLI: records what airfix handed it (argv, working directory, the prompt
# from --message-file or stdin, whether the API keys reached it) and edits the batch's first file.
FAKE_AGENT = """#!{python}
import json, os, sys
argv = sys.argv[1:]
if "--message-file" in argv:
    prompt = open(argv[argv.index("--message-file") + 1]).read()
else:
    prompt = sys.stdin.read()
files = [a for a in argv if a.endswith(".py")]
with open(files[0] if files else "small/core.py", "a") as f:
    f.write("# edited\\n")
print("agent: editing", flush=True)
seen = {{k: k in os.environ for k in ("OPENAI_API_KEY", "GITHUB_TOKEN")}}
json.dump({{"argv": argv, "cwd": os.getcwd(), "prompt": prompt, "env": seen}},
          open(os.environ["FAKE_AGENT_OUT"], "w"))
"""


@pytest.mark.parametrize(
    "path",
    [p for p in EXAMPLES if "command" in load_config(p, env={}).fixer.chain],
    ids=lambda p: p.name,
)
def test_command_example_hands_its_agent_the_prompt_and_the_keys(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example's command, run by the real command fixer against a stand-in of its agent."""
    fixer = load_config(path, env={}).fixer
    agent = shlex.split(fixer.command[-1])[1] if fixer.command[0] == "sh" else fixer.command[0]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / agent).write_text(FAKE_AGENT.format(python=sys.executable))
    (bin_dir / agent).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_AGENT_OUT", str(tmp_path / "seen.json"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-kept-for-the-agent")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_hidden_from_the_agent")
    repo = make_repo(tmp_path, SMALL)
    request = make_request(
        repo, small_issues(), command=fixer.command, command_env=fixer.command_env
    )
    outcome = CommandFixer().fix(request)
    assert outcome.ok, outcome.reason
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert "small/core.py:1:8 - ruff F401 (error)" in seen["prompt"]
    assert Path(seen["cwd"]).resolve() == repo.resolve()
    assert {"OPENAI_API_KEY": True, "GITHUB_TOKEN": False} == seen["env"]
    assert "# edited" in (repo / "small" / "core.py").read_text()


# ---------------------------------------------------------------- every shell command, executed

#: documents whose commands are not run here, and why
NOT_RUN_FILES = {
    "configuration-reference.md": "generated from the schema; it holds no commands",
}
#: commands that cannot run inside a test, by pattern, with the reason
NOT_RUN = [
    (r"^pip install", "installs the package: the test runs the checkout it is part of"),
    (r"^(export )?AIRFLOW|^airflow ", "needs an Airflow scheduler and webserver"),
    (r"^TOKEN=|^curl ", "Airflow's REST API: needs its webserver"),
    (r"sync_dags_to_airflow", "copies the DAGs into an Airflow installation"),
    (r"claude-code\.yaml", "needs the claude CLI, installed and logged in"),
    (r"scripts/test\.sh", "runs this whole suite (15+ min, and it would run itself)"),
    (r"^scripts/lock\.sh", "re-resolves the locked versions from the package index"),
    (r"^python -m scripts\.bench", "minutes of benchmarks; tests/test_bench_smoke.py runs it"),
    (r"^export AIRFIX_REDIS_URL", "a setting, given to every command of the Redis phase"),
    (r"^airfix worker ", "serves until SIGTERM: the Redis phase starts one as its worker"),
    (r"^airfix tail --follow", "follows every run until Ctrl-C"),
]
#: and on the embedded store only (the server phase parks an entry for them)
NOT_RUN_EMBEDDED = r"^airfix dlq (show|retry|discard) "
#: exit codes the documents give for these commands in the state the test leaves them in
EXPECTED = [
    (r"^airfix run ", {0, 3, 4, 11}, "a finished run's status (README: Exit codes)"),
    (r"^airfix cancel ", {1}, "the run had already finished (airfix cancel --help)"),
    (r"^airfix dlq retry ", {1}, "the parked entry cannot be decoded: it fails again (exit 1)"),
]
#: redis-cli commands the documents say may print nothing (a drained queue, no summary yet)
MAY_BE_EMPTY = r"task_queue|summary:|dead_letters"
_SUBSTITUTE = [  # placeholders of the documents, in this order
    (r"~/src/\w+/\.venv/bin/python", "@python@"),
    (r"~/src/\w+|/path/to/repo", "@target@"),
    (r"--target DIR", "--target @target@"),
    (r"--archive DIR", "--archive @archive@"),
    (r"redis://(localhost|host):6379/0|(?<=--redis-url )URL", "@url@"),
    (r"<run_id>|\bRUN_ID\b", "@run_id@"),
    (r"\bBASE\b", "@base@"),
    (r"\bVERSION\b", "5"),
    (r"--reason TEXT", "--reason 'from the docs test'"),
    (r"--group G\b", "--group projections"),
    (r"\bID \[ID\.\.\.\]|\bID\b", "@dead_letter@"),
    (r"(?<=\s)(\S+)\|(\S+)(?=\s)", r"\1"),  # RUN_ID|latest: the first of the alternatives
    (r"\[|\]|\.\.\.", ""),  # a synopsis's optional parts, written out
]


def _without_comment(line: str) -> str:
    """The line up to a ``#`` that starts a shell comment (not one inside quotes or a word)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def shell_commands(text: str) -> list[str]:
    """The commands of the text's bash blocks: continuation lines joined, comments dropped."""
    out = []
    for block in _code_blocks(text, "bash"):
        joined = re.sub(r" *\\\n\s*", " ", block)
        out += [c for c in map(_without_comment, joined.splitlines()) if c.strip()]
    return out


def not_run_reason(command: str) -> str:
    return next((why for pattern, why in NOT_RUN if re.search(pattern, command)), "")


def test_commands_are_read_whole_and_the_reasons_name_what_is_not_run(tmp_path: Path) -> None:
    text = "```bash\nairfix runs   # every run\nredis-cli GET '{a}:#b' \\\n  x\n```\n"
    assert ["airfix runs", "redis-cli GET '{a}:#b' x"] == shell_commands(text)
    assert "Airflow" in not_run_reason("airflow dags trigger autonomous_fixing")
    assert "" == not_run_reason("airfix status RUN_ID --json")
    values = {"run_id": "run-0", "target": str(tmp_path), "url": "", "prefix": "p"}
    wrong = _execute(
        [("x.md", "airfix status RUN_ID [--json]"), ("x.md", "airfix config | head -1")],
        values,
        _phase_env(tmp_path),
        tmp_path,
    )
    assert 1 == len(wrong) and "ran: airfix status run-0 --json\n  exit 2" in wrong[0]


def _docs_with_commands(*, runnable: bool = True) -> list[tuple[str, str]]:
    """(document, command) of every document not in NOT_RUN_FILES; with ``runnable``, the parts
    of a ``&&`` chain that cannot run here are dropped (``pip install . && airfix run ...``)."""
    out = []
    for doc in [README, *DOCS]:
        if doc.name in NOT_RUN_FILES:
            continue
        for command in shell_commands(doc.read_text()):
            parts = command.split(" && ")
            kept = [p for p in parts if not not_run_reason(p)] if runnable else parts
            if kept:
                out.append((doc.name, " && ".join(kept)))
    return out


def test_every_command_not_run_is_one_the_documents_show() -> None:
    """The list of what cannot run names real commands, so it cannot hide a stale entry."""
    shown = [c for _, c in _docs_with_commands(runnable=False)]
    unused = [p for p, _ in NOT_RUN if not any(re.search(p, c) for c in shown)]
    assert [] == unused


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["airfix", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def _execute(
    commands: list[tuple[str, str]], values: dict[str, str], env: dict[str, str], cwd: Path
) -> list[str]:
    """Run each command (``bash -o pipefail``); the ones that exit otherwise than documented."""
    wrong = []
    for doc, command in commands:
        line = command
        for pattern, repl in _SUBSTITUTE:
            line = re.sub(pattern, repl, line)
        for key, value in values.items():
            line = line.replace(f"@{key}@", value)
        line = line.replace("redis-cli ", f"redis-cli -u {values['url']} ")
        line = line.replace("autonomous_fix:", f"{values['prefix']}:")
        where = values["target"] if line.startswith("git ") else str(cwd)
        out = subprocess.run(
            ["bash", "-o", "pipefail", "-c", line],
            cwd=where,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        ok = next(({*codes} for p, codes, _ in EXPECTED if re.search(p, line)), {0})
        if line.startswith("redis-cli") and out.returncode == 0:  # it exits 0 on an error reply
            if re.search(r"^(ERR|WRONGTYPE|NOAUTH|NOPERM)\b", out.stdout, re.M):
                out.returncode, out.stderr = 1, out.stdout
            elif not out.stdout.strip() and not re.search(MAY_BE_EMPTY, line):
                out.returncode, out.stderr = 1, "printed nothing"
        if out.returncode not in ok:
            wrong.append(f"{doc}: {command}\n  ran: {line}\n  exit {out.returncode}, "
                         f"documented {sorted(ok)}\n  {out.stderr.strip()[-600:]}")  # fmt: skip
    return wrong


def _phase_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFIX")}
    (tmp / "home").mkdir(parents=True)
    env.update(HOME=str(tmp / "home"), TMPDIR=str(tmp), **extra)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env


def _first_run(env: dict[str, str], tmp: Path) -> dict[str, str]:
    """The placeholders' values, from a real run of the bundled sample."""
    out = _cli(env, "run", "--sample", "--max-iterations", "2", "--json")
    assert out.returncode in (0, 3, 11), out.stderr[-3000:]
    report = json.loads(out.stdout)
    (tmp / "archive").mkdir()
    return {
        "run_id": report["run_id"],
        "target": report["target"],
        "base": report["base_sha"],
        "python": sys.executable,
        "archive": str(tmp / "archive"),
    }


@pytest.mark.slow
def test_every_shell_command_of_the_docs_runs_on_the_embedded_store(tmp_path: Path) -> None:
    """The airfix and git commands of every document, against a fresh copy of the sample."""
    env = _phase_env(tmp_path)
    values = {**_first_run(env, tmp_path), "url": "", "prefix": "autonomous_fix"}
    commands = [
        (doc, c)
        for doc, c in _docs_with_commands()
        if not not_run_reason(c) and not c.startswith("redis-cli") and not re.search(
            rf"redis://|--redis-url|{NOT_RUN_EMBEDDED}", c)
    ]  # fmt: skip
    assert len(commands) > 30, commands
    assert [] == _execute(commands, values, env, tmp_path)


def _park_an_entry(env: dict[str, str], run_id: str, prefix: str) -> str:
    """An entry no airfix can decode, in the run's partition log: the worker's groups park it.
    Returns the id of the projections group's dead letter (for ``dlq show/retry/discard ID``)."""
    from airfix.events.keys import Keys

    log = Keys(prefix=prefix).log_of(run_id)
    fields = {"type": "FromTheFuture", "v": "1", "id": "x", "run": "docs-junk", "data": b"{}"}
    real_client().xadd(log, fields)  # type: ignore[arg-type]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = _cli(env, "dlq", "list", "--group", "projections", "--json")
        parked = json.loads(out.stdout) if out.returncode == 0 else []
        if parked:
            return str(parked[0]["id"])
        time.sleep(0.5)
    raise AssertionError(f"the worker parked nothing: {out.stdout} {out.stderr[-2000:]}")


@pytest.mark.slow
def test_every_airfix_and_redis_cli_command_of_the_docs_runs_on_a_server(tmp_path: Path) -> None:
    """The airfix and redis-cli commands against the real server, with a worker started here."""
    prefix = f"airfix_docs_{uuid.uuid4().hex[:10]}"
    env = _phase_env(
        tmp_path,
        AIRFIX_REDIS_URL=REAL_URL,
        AIRFIX__STORE__PREFIX=prefix,
        AIRFIX__CONSUMERS__BLOCK_MS="200",
    )
    worker = subprocess.Popen(
        ["airfix", "worker", "--roles", "all"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while _cli(env, "doctor").returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.5)  # until the worker has joined every group
        values = {**_first_run(env, tmp_path), "url": REAL_URL, "prefix": prefix}
        values["dead_letter"] = _park_an_entry(env, values["run_id"], prefix)
        commands = [
            (doc, c)
            for doc, c in _docs_with_commands()
            if not not_run_reason(c) and not c.startswith("git ")
        ]
        assert any(c.startswith("redis-cli") for _, c in commands)
        assert [] == _execute(commands, values, env, tmp_path)
    finally:
        worker.terminate()
        worker.wait(30)
        client = real_client()
        for pattern in (f"{prefix}:*", f"{{{prefix}:*"):
            for key in client.scan_iter(match=pattern, count=1000):
                client.delete(key)
