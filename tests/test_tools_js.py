"""The JavaScript/TypeScript adapters (eslint, tsc, js_test) and ``eslint --fix`` against the real
tools, on temporary copies of the projects in ``tests/fixtures/js``.

Fixtures: ``sample`` (TypeScript: ESLint 10 flat config with typescript-eslint, TypeScript 6,
node:test), ``jest`` and ``vitest`` (the same small suite under each runner), ``tape`` and
``mocha`` (nested tests, a failure, a skip, duplicate names; mocha also a failing hook).  Each has a
``package-lock.json``; a session fixture copies it once to a temporary directory and runs
``npm ci`` there (node_modules never lands in the repository).  Tests that change files work on
further copies whose ``node_modules`` is a symlink to the installed one.  A missing ``node``/``npm``
or a failed install is a test failure, never a skip.

What is pinned, as for the Python adapters: the adapters find exactly what an independent run of
each tool finds; fingerprints survive line shifts; a missing tool, a crash, a timeout, a broken
configuration or unreadable output is a ``tool_error`` with no issues; the target tree is
untouched afterwards; ``eslint --fix`` through the deterministic fixer fixes what it claims.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from airfix.config import FixerConfig
from airfix.events.schema import BatchPlanned, IssueRecord
from airfix.services.fixers import FixRequest
from airfix.services.fixers.autofix import DETERMINISTIC, AutoFixer
from airfix.services.fixers.autofix_js import EslintFix, fix_batch
from airfix.services.pipeline.git import Repo
from airfix.services.tools import (
    REGISTRY,
    ToolAdapter,
    ToolRun,
    adapters_for,
    adapters_for_target,
    detect_languages,
)
from airfix.services.tools.eslint import (
    EslintAdapter,
    bin_package_version,
    parse_eslint_json,
    scope_flags,
)
from airfix.services.tools.js_test import (
    Invocation,
    JsTestAdapter,
    UnsupportedRunner,
    detect_runner,
    is_js_test_path,
    mocha_args,
    parse_jest_json,
    parse_mocha_events,
    parse_node_events,
    parse_tape_events,
    runner_invocations,
)
from airfix.services.tools.tsc import TscAdapter, parse_tsc_output

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "js"
SAMPLE = FIXTURES / "sample"
ADAPTER_CLASSES = [EslintAdapter, TscAdapter, JsTestAdapter]
slow = pytest.mark.slow

# What the sample holds (checked against independent runs below, not just asserted).
ESLINT_EXPECTED = {
    ("src/cart.js", 12, 7, "prefer-const", "error", "safe"),
    ("src/cart.js", 13, 9, "@typescript-eslint/no-unused-vars", "error", ""),
    ("src/cart.js", 25, 12, "object-shorthand", "warning", "safe"),
    ("src/cart.js", 29, 17, "eqeqeq", "warning", ""),
    ("src/shapes.ts", 15, 3, "no-var", "error", "safe"),
    ("src/units.ts", 8, 33, "@typescript-eslint/no-explicit-any", "error", ""),
    ("src/units.ts", 9, 7, "prefer-const", "error", "safe"),
}
TSC_EXPECTED = {("src/shapes.ts", 14, 9, "TS2322"), ("src/shapes.ts", 20, 3, "TS2322")}
FAILING_NODE_TEST = "test/cart.test.js > bulk price applies from ten items"
JEST_OUTCOMES = {
    "test/sum.test.js > sum > adds two numbers": "passed",
    "test/sum.test.js > sum > is commutative": "passed",
    "test/sum.test.js > sum > handles bigint": "skipped",
    "test/sum.test.js > sum > rejects strings": "skipped",
    "test/sum.test.js > mean > averages three values": "failed",
    "test/sum.test.js > mean of two values": "passed",
    "test/broken.test.js": "error",
}
TAPE_OUTCOMES = {
    "test/mean.js > mean": "passed",
    "test/mean.js > mean > of three values": "failed",
    "test/mean.js > mean > of two values": "passed",
    "test/sum.js > sum": "passed",
    "test/sum.js > sum > is commutative": "passed",
    "test/sum.js > sum > with zero": "passed",
    "test/sum.js > handles bigint": "skipped",
    "test/sum.js > rejects strings": "skipped",
    "test/sum.js > same name": "passed",
    "test/sum.js > same name [2]": "passed",
}
MOCHA_OUTCOMES = {
    "test/nested/mean.test.js > mean > of three values": "failed",
    "test/nested/mean.test.js > mean > of two values": "passed",
    'test/nested/mean.test.js > with a broken fixture > "before all" hook': "error",
    "test/sum.test.js > sum > adds two numbers": "passed",
    "test/sum.test.js > sum > is commutative": "passed",
    "test/sum.test.js > sum > handles bigint": "skipped",
    "test/sum.test.js > sum > with zero > works": "passed",
    "test/sum.test.js > sum > with negatives > works": "passed",
    "test/sum.test.js > same suite > same name": "passed",
    "test/sum.test.js > same suite > same name [2]": "passed",
}


# ---------------------------------------------------------------- helpers and fixtures


def need(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: these tests need Node.js and npm", pytrace=False)
    return found


def install(src: Path, dest: Path) -> Path:
    """``src`` copied to ``dest`` with its locked dependencies installed (``npm ci``)."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("node_modules"))
    proc = subprocess.run(
        [need("npm"), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=dest, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"npm ci failed in {dest}:\n{proc.stderr[-3000:]}", pytrace=False)
    return dest


@pytest.fixture(scope="session")
def installed_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(SAMPLE, tmp_path_factory.mktemp("js") / "sample")


@pytest.fixture(scope="session")
def installed_jest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(FIXTURES / "jest", tmp_path_factory.mktemp("js") / "jest")


@pytest.fixture(scope="session")
def installed_vitest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(FIXTURES / "vitest", tmp_path_factory.mktemp("js") / "vitest")


@pytest.fixture(scope="session")
def installed_tape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(FIXTURES / "tape", tmp_path_factory.mktemp("js") / "tape")


@pytest.fixture(scope="session")
def installed_mocha(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(FIXTURES / "mocha", tmp_path_factory.mktemp("js") / "mocha")


@pytest.fixture(scope="session")
def installed_mocha3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(FIXTURES / "mocha3", tmp_path_factory.mktemp("js") / "mocha3")


@pytest.fixture(scope="session")
def installed_eslint7(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(FIXTURES / "eslint7", tmp_path_factory.mktemp("js") / "eslint7")


def linked_copy(installed: Path, dest: Path) -> Path:
    """A writable copy of an installed project sharing its ``node_modules`` (a symlink)."""
    shutil.copytree(installed, dest, ignore=shutil.ignore_patterns("node_modules"))
    (dest / "node_modules").symlink_to(installed / "node_modules", target_is_directory=True)
    return dest


@pytest.fixture
def sample(installed_sample: Path, tmp_path: Path) -> Path:
    return linked_copy(installed_sample, tmp_path / "sample")


@pytest.fixture(scope="module")
def sample_runs(installed_sample: Path) -> Iterator[tuple[Path, dict[str, ToolRun], dict, dict]]:
    """The three adapters once on the installed sample, with a snapshot of the whole tree
    (node_modules included) before and after."""
    before = snapshot(installed_sample)
    runs = {
        a.name: a.run(installed_sample) for a in (EslintAdapter(), TscAdapter(), JsTestAdapter())
    }
    yield installed_sample, runs, before, snapshot(installed_sample)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            out[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def bin_of(project: Path, name: str) -> str:
    path = project / "node_modules" / ".bin" / name
    assert path.exists(), f"{path} missing: npm ci did not install {name}"
    return str(path)


def key(issues: list[IssueRecord]) -> set[tuple[str, int, int, str]]:
    return {(i.file, i.line, i.column, i.rule) for i in issues}


def write_exe(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def assert_tool_error(run: ToolRun, *needles: str) -> None:
    assert run.result.status == "tool_error", run.result
    assert run.issues == []
    assert not run.ok
    for needle in needles:
        assert needle in run.result.error, run.result.error


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def tap_totals(stdout: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^# (\w+) (\d+)$", stdout, re.MULTILINE)}


# ---------------------------------------------------------------- the real tools on the sample


@slow
def test_eslint_matches_an_independent_eslint_run(sample_runs, tmp_path: Path) -> None:
    target, runs, _, _ = sample_runs
    run = runs["eslint"]
    mirror = linked_copy(target, tmp_path / "mirror")
    proc = subprocess.run([bin_of(target, "eslint"), "-f", "json", "."], cwd=mirror,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    messages = [(r, m) for r in json.loads(proc.stdout) for m in r["messages"]]
    expected = {
        (Path(r["filePath"]).relative_to(mirror).as_posix(), m["line"], m["column"], m["ruleId"])
        for r, m in messages
    }
    assert run.result.status == "failed"
    assert run.result.exit_status == 1
    assert len(run.issues) == len(messages) == 7
    assert key(run.issues) == expected
    assert {(i.file, i.line, i.column, i.rule, i.severity, i.fix) for i in run.issues} == (
        ESLINT_EXPECTED
    )
    assert run.result.counts == {
        "issues": 7, "errors": 5, "warnings": 2, "fixable": 4, "files": 5, "syntax_errors": 0,
    }  # fmt: skip
    assert run.result.counts["fixable"] == sum(
        1 for r in json.loads(proc.stdout) for m in r["messages"] if "fix" in m
    )
    assert {i.phase for i in run.issues} == {"lint"}
    assert {i.tool for i in run.issues} == {"eslint"}
    version = subprocess.run([bin_of(target, "eslint"), "--version"], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert run.result.version == version.strip().lstrip("v") == "10.15.0"
    assert run.result.command[0] == bin_of(target, "eslint")  # the project's own ESLint


@slow
def test_tsc_matches_an_independent_tsc_run(sample_runs, tmp_path: Path) -> None:
    target, runs, _, _ = sample_runs
    run = runs["tsc"]
    mirror = linked_copy(target, tmp_path / "mirror")
    proc = subprocess.run([bin_of(target, "tsc"), "--noEmit", "--pretty", "false"], cwd=mirror,
                          capture_output=True, text=True, check=False)  # fmt: skip
    located = re.findall(r"^(\S+)\((\d+),(\d+)\): error (TS\d+): ", proc.stdout, re.MULTILINE)
    expected = {(f, int(line), int(col), code) for f, line, col, code in located}
    assert run.result.status == "failed"
    assert run.result.exit_status == proc.returncode == 2  # TypeScript 6: 2 even with --noEmit
    assert key(run.issues) == expected == TSC_EXPECTED
    assert {(i.phase, i.severity, i.tool) for i in run.issues} == {("build", "error", "tsc")}
    first = min(run.issues, key=lambda i: i.line)
    assert first.message == (
        "Type 'string' is not assignable to type 'number'.\n"
        "Type 'string' is not assignable to type 'number'."  # tsc's indented continuation line
    )
    assert run.result.counts == {"issues": 2, "errors": 2, "global": 0}
    assert run.result.version == "6.0.3"


@slow
def test_node_test_run_matches_an_independent_run(sample_runs, tmp_path: Path) -> None:
    target, runs, _, _ = sample_runs
    run = runs["js_test"]
    mirror = linked_copy(target, tmp_path / "mirror")
    proc = subprocess.run([need("node"), "--test", "--test-reporter=tap"], cwd=mirror,
                          capture_output=True, text=True, check=False)  # fmt: skip
    totals = tap_totals(proc.stdout)
    assert run.result.status == "failed"
    assert run.result.exit_status == proc.returncode == 1
    assert (run.tests_total, run.tests_passed, run.tests_failed) == (
        totals["tests"], totals["pass"], totals["fail"],
    ) == (5, 4, 1)  # fmt: skip
    assert run.result.counts == {"tests": 5, "passed": 4, "failed": 1, "errors": 0, "skipped": 0}
    assert run.tests == {
        "test/cart.test.js > total multiplies price by quantity": "passed",
        "test/cart.test.js > discount takes a percentage off": "passed",
        FAILING_NODE_TEST: "failed",
        "test/cart.test.js > small orders pay the list price": "passed",
        "test/cart.test.js > sameItem > matches lines by name": "passed",
    }
    [issue] = run.issues
    assert (issue.phase, issue.file, issue.line, issue.rule, issue.tool) == (
        "test", "test/cart.test.js", 14, "failure", "js_test",
    )  # fmt: skip
    assert issue.message.startswith(FAILING_NODE_TEST + ": AssertionError")
    assert "10 !== 9" in issue.message
    assert "test/cart.test.js:15" in issue.message and str(target) not in issue.message
    assert run.result.command[:2] == [need("node"), "--test"]
    assert run.result.version == proc_version("node")
    assert "bulk price applies from ten items" in run.stdout_tail  # the spec reporter, as evidence


def proc_version(exe: str) -> str:
    return subprocess.run([need(exe), "--version"], capture_output=True, text=True,
                          check=True).stdout.strip().lstrip("v")  # fmt: skip


@slow
def test_no_artifacts_in_the_target_tree(sample_runs) -> None:
    target, runs, before, after = sample_runs
    assert {r.result.status for r in runs.values()} == {"failed"}
    assert after == before  # node_modules included: no .cache, no tsbuildinfo, no reports
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [".gitignore", "eslint.config.js", "node_modules", "package-lock.json", "package.json",
         "src", "test", "tsconfig.json"]
    )  # fmt: skip


@slow
def test_issue_ids_are_unique(sample_runs) -> None:
    _, runs, _, _ = sample_runs
    ids = [i.issue_id for r in runs.values() for i in r.issues]
    assert len(ids) == len(set(ids)) == 10


@slow
def test_incremental_projects_keep_their_build_info_out_of_the_target(sample: Path) -> None:
    config = json.loads((sample / "tsconfig.json").read_text())
    config["compilerOptions"]["incremental"] = True
    (sample / "tsconfig.json").write_text(json.dumps(config))
    run = TscAdapter().run(sample)
    assert key(run.issues) == TSC_EXPECTED
    assert list(sample.glob("*.tsbuildinfo")) == []


# ---------------------------------------------------------------- fingerprints


@slow
def test_fingerprints_survive_shifted_lines(sample: Path) -> None:
    adapters = [EslintAdapter(), TscAdapter(), JsTestAdapter()]
    before = {a.name: a.run(sample) for a in adapters}
    shifted = 0
    for path in [*sample.glob("src/*"), *sample.glob("test/*")]:
        path.write_text("// shifted\n// shifted\n// shifted\n" + path.read_text())
        shifted += 1
    assert shifted == 4
    after = {a.name: a.run(sample) for a in adapters}
    for name, old_run in before.items():
        old, new = old_run.issues, after[name].issues
        assert old, name
        assert [i.issue_id for i in old] == [i.issue_id for i in new], name
        assert [i.line + 3 for i in old] == [i.line for i in new], name
        assert [i.message for i in old if i.tool != "js_test"] == [
            i.message for i in new if i.tool != "js_test"
        ]


# ---------------------------------------------------------------- tool did not run → tool_error


@pytest.mark.parametrize("cls", ADAPTER_CLASSES, ids=lambda c: c.name)
def test_missing_executable_is_a_tool_error(cls, tmp_path: Path) -> None:
    project = shutil.copytree(SAMPLE, tmp_path / "sample")
    adapter = cls(executable="/nonexistent/bin/" + cls.executable_name)
    assert not adapter.available()
    assert adapter.version() == ""
    assert_tool_error(adapter.run(project), "not found")


@pytest.mark.parametrize("cls", [EslintAdapter, TscAdapter], ids=lambda c: c.name)
def test_uninstalled_project_tool_is_a_tool_error(
    cls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No node_modules (dependencies not installed) and nothing on PATH: not "0 issues"."""
    project = shutil.copytree(SAMPLE, tmp_path / "sample")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    run = cls().run(project)
    assert_tool_error(run, "not found", "node_modules/.bin", "npm ci")
    assert sorted(p.name for p in project.iterdir()) == sorted(p.name for p in SAMPLE.iterdir())


def test_missing_jest_and_node_are_tool_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = shutil.copytree(FIXTURES / "jest", tmp_path / "jest")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    assert_tool_error(JsTestAdapter().run(project), "jest not found", "npm ci")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "package.json").write_text('{"name": "plain"}')
    assert_tool_error(JsTestAdapter().run(plain), "'node' not found")


@slow
def test_eslint_config_errors_are_tool_errors(sample: Path) -> None:
    config = sample / "eslint.config.js"
    original = config.read_text()
    replace_in(config, '"no-var": "error"', '"no-such-rule": "error"')
    assert_tool_error(EslintAdapter().run(sample), "exit 2", "no-such-rule")
    config.write_text("export default [ {\n")
    assert_tool_error(EslintAdapter().run(sample), "exit 2", "SyntaxError")
    config.unlink()
    assert_tool_error(EslintAdapter().run(sample), "exit 2", "couldn't find an eslint.config")
    config.write_text(original)
    for path in [*sample.glob("src/*"), *sample.glob("test/*"), config]:
        path.unlink()
    (sample / "eslint.config.js").write_text(
        'export default [{ ignores: ["eslint.config.js"] }];\n'
    )
    (sample / "README.md").write_text("nothing to lint\n")
    assert_tool_error(EslintAdapter().run(sample), "exit 2", "ignored")


@slow
def test_tsc_config_errors_are_tool_errors(sample: Path) -> None:
    tsconfig = sample / "tsconfig.json"
    original = tsconfig.read_text()
    replace_in(tsconfig, '"strict": true,', '"strict": true,\n    "noSuchOption": 1,')
    assert_tool_error(TscAdapter().run(sample), "configuration error", "TS5023", "noSuchOption")
    tsconfig.write_text(original.replace("src/**/*.ts", "nothing/**/*.ts"))
    assert_tool_error(TscAdapter().run(sample), "configuration error", "TS18003")
    tsconfig.write_text("{ broken")
    assert_tool_error(TscAdapter().run(sample), "configuration error", "tsconfig.json(1,")
    # solution style: the root config checks nothing itself; a clean exit 0 is not a pass
    (sample / "tsconfig.app.json").write_text(
        original.replace('"noEmit": true,', '"composite": true,')
    )
    tsconfig.write_text('{"files": [], "references": [{"path": "./tsconfig.app.json"}]}')
    assert_tool_error(TscAdapter().run(sample), "checked no files", "solution-style")
    tsconfig.unlink()
    skipped = TscAdapter().run(sample)
    assert skipped.result.status == "skipped" and skipped.issues == []
    assert "no tsconfig.json" in skipped.result.error


@slow
def test_crash_and_garbage_output_are_tool_errors(sample: Path, tmp_path: Path) -> None:
    crash = write_exe(tmp_path / "crash", "echo 'TypeError: boom' >&2\nexit 3\n")
    for cls in ADAPTER_CLASSES:
        assert_tool_error(cls(executable=str(crash)).run(sample), "unexpected exit 3", "boom")
    garbage = write_exe(tmp_path / "garbage", "echo 'this is not json'\nexit 1\n")
    assert_tool_error(EslintAdapter(executable=str(garbage)).run(sample), "unparsable")
    assert_tool_error(TscAdapter(executable=str(garbage)).run(sample), "no diagnostics")
    assert_tool_error(JsTestAdapter(executable=str(garbage)).run(sample), "wrote no report")
    empty = write_exe(tmp_path / "empty", "echo '[]'\nexit 1\n")
    assert_tool_error(EslintAdapter(executable=str(empty)).run(sample), "exit 1 but no error")
    killed = write_exe(tmp_path / "killed", "kill -9 $$\n")
    for cls in ADAPTER_CLASSES:
        assert_tool_error(cls(executable=str(killed)).run(sample), "killed by signal 9")


@slow
def test_timeout_kills_the_test_run(tmp_path: Path) -> None:
    project = tmp_path / "hang"
    (project / "test").mkdir(parents=True)
    (project / "package.json").write_text('{"name": "hang", "type": "module"}')
    pidfile = tmp_path / "node.pid"
    (project / "test" / "hang.test.js").write_text(
        'import { test } from "node:test";\nimport { writeFileSync } from "node:fs";\n'
        f'test("hangs", async () => {{\n  writeFileSync({json.dumps(str(pidfile))}, String(process.pid));\n'
        "  await new Promise((resolve) => setTimeout(resolve, 120000));\n});\n"
    )
    adapter = JsTestAdapter()
    adapter.version()
    start = time.monotonic()
    run = adapter.run(project, timeout_s=6)
    assert time.monotonic() - start < 30
    assert_tool_error(run, "timed out", "process group was killed")
    assert pidfile.exists(), "the test never started: the timeout proves nothing"
    assert wait_dead(int(pidfile.read_text()))


def wait_dead(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


# ---------------------------------------------------------------- parse errors, scoping, commands


@slow
def test_eslint_parse_errors_are_build_issues(sample: Path) -> None:
    (sample / "src" / "broken.js").write_text("export const x = ;\n")
    run = EslintAdapter().run(sample)
    syntax = [i for i in run.issues if i.phase == "build"]
    assert [(i.file, i.line, i.rule, i.fix) for i in syntax] == [
        ("src/broken.js", 1, "invalid-syntax", "")
    ]
    assert "Parsing error" in syntax[0].message
    assert run.result.counts["syntax_errors"] == 1
    assert len(run.issues) == 8


@slow
def test_scoped_runs(sample: Path) -> None:
    lint = EslintAdapter().run(sample, ["src/units.ts"])
    assert {(i.file, i.rule) for i in lint.issues} == {
        ("src/units.ts", "@typescript-eslint/no-explicit-any"), ("src/units.ts", "prefer-const"),
    }  # fmt: skip
    assert lint.result.command[-2:] == ["--", "src/units.ts"]
    assert EslintAdapter().run(sample, ["README.md", "nope.js"]).result.status == "skipped"
    replace_in(
        sample / "eslint.config.js",
        "  js.configs.recommended,",
        '  { ignores: ["src/units.ts"] },\n  js.configs.recommended,',
    )
    ignored = EslintAdapter().run(sample, ["src/units.ts"])
    assert ignored.result.status == "skipped" and "ignores" in ignored.result.error
    whole = TscAdapter().run(sample, ["src/units.ts"])  # type checking is whole-program
    assert key(whole.issues) == TSC_EXPECTED
    assert TscAdapter().run(sample, ["README.md"]).result.status == "skipped"
    only = JsTestAdapter().run(sample, ["test/cart.test.js", "src/cart.js"])
    assert only.result.command[-1] == "test/cart.test.js"
    assert only.tests_total == 5
    suite = JsTestAdapter().run(sample, ["src/cart.js"])  # a source file: the whole suite
    assert suite.result.command[-1] == "--test-reporter-destination=stdout"
    assert suite.tests_total == 5


def test_commands_keep_artifacts_outside_the_target(tmp_path: Path) -> None:
    project = shutil.copytree(SAMPLE, tmp_path / "sample")
    assert EslintAdapter().command(project)[1:] == ["-f", "json", "."]
    tsc = TscAdapter().command(project)
    assert tsc[1:6] == ["-p", "tsconfig.json", "--noEmit", "--pretty", "false"]
    assert tsc[6] == "--tsBuildInfoFile" and not tsc[7].startswith(str(project))
    node = JsTestAdapter().command(project)
    assert node[1] == "--test"
    assert all(str(project) not in arg for arg in node)
    jest = JsTestAdapter().command(FIXTURES / "jest", ["test/sum.test.js"])
    assert "--ci" in jest and jest[-2:] == ["--runTestsByPath", "test/sum.test.js"]
    vitest = JsTestAdapter().command(FIXTURES / "vitest")
    assert vitest[1] == "run" and "--no-cache" in vitest


# ---------------------------------------------------------------- the deterministic fixer


@slow
def test_eslint_fix_fixes_the_fixable_issues(sample: Path) -> None:
    assert isinstance(DETERMINISTIC["eslint"], EslintFix)
    before = EslintAdapter().run(sample)
    config = FixerConfig()
    fixer = AutoFixer()
    fixable = [i for i in before.issues if fixer.supports(i, config)]
    assert {(i.file, i.rule) for i in fixable} == {
        (f, r) for f, _, _, r, _, fix in ESLINT_EXPECTED if fix == "safe"
    }
    batch = BatchPlanned(iteration=1, batch_id="b1", phase="lint", mode="smart",
                         issue_ids=[i.issue_id for i in fixable])  # fmt: skip
    outcome = fixer.fix(FixRequest(run_id="r1", target=sample, batch=batch, issues=fixable,
                                   config=config))  # fmt: skip
    assert outcome.ok, outcome.reason
    assert outcome.commands and all(Path(c[0]).name == "eslint" for c in outcome.commands)
    after = EslintAdapter().run(sample)
    assert {(i.file, i.rule) for i in after.issues} == {
        ("src/cart.js", "@typescript-eslint/no-unused-vars"),
        ("src/cart.js", "eqeqeq"),
        ("src/units.ts", "@typescript-eslint/no-explicit-any"),
    }
    assert not any(i.fix for i in after.issues)
    fixed = {i.fingerprint for i in before.issues} - {i.fingerprint for i in after.issues}
    assert fixed == {i.fingerprint for i in fixable}
    assert "const rate = percent / 100;" in (sample / "src" / "cart.js").read_text()
    # no-var's fix made a prefer-const problem on its own line: fixed as a follow-up
    assert 'const unit = "cm";' in (sample / "src" / "shapes.ts").read_text()
    assert key(TscAdapter().run(sample).issues) == TSC_EXPECTED  # behaviour unchanged
    assert JsTestAdapter().run(sample).result.counts["failed"] == 1


def changed_lines(before: str, after: str) -> list[int]:
    """1-based numbers of the lines of ``before`` that a diff to ``after`` replaces or deletes."""
    import difflib

    out: list[int] = []
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(
        None, before.splitlines(), after.splitlines(), autojunk=False
    ).get_opcodes():
        if tag != "equal":
            out.extend(range(i1 + 1, max(i2, i1 + 1) + 1) if i1 == i2 else range(i1 + 1, i2 + 1))
    return out


@slow
def test_eslint_fix_touches_only_the_batch(sample: Path) -> None:
    """A file with fixable problems outside the batch: only the batch's lines change, through
    today's AutoFixer (the command bridge) and through EslintFix.fix directly."""
    before = EslintAdapter().run(sample)
    cart = sample / "src" / "cart.js"
    original = cart.read_text()
    [const] = [i for i in before.issues if (i.file, i.rule) == ("src/cart.js", "prefer-const")]
    batch = BatchPlanned(iteration=1, batch_id="b1", phase="lint", mode="individual",
                         issue_ids=[const.issue_id])  # fmt: skip
    outcome = AutoFixer().fix(FixRequest(run_id="r1", target=sample, batch=batch, issues=[const],
                                         config=FixerConfig()))  # fmt: skip
    assert outcome.ok, outcome.reason
    assert changed_lines(original, cart.read_text()) == [const.line] == [12]
    assert "  const rate = percent / 100;" in cart.read_text()
    assert "{ name: name, price, qty }" in cart.read_text()  # object-shorthand: not in the batch
    after = EslintAdapter().run(sample)
    assert {i.issue_id for i in before.issues} - {i.issue_id for i in after.issues} == {
        const.issue_id
    }
    assert {i.fingerprint for i in after.issues} == {i.fingerprint for i in before.issues} - {
        const.fingerprint
    }
    for path in sample.rglob("*"):  # no other file changed
        if "node_modules" not in path.parts and path.is_file() and path != cart:
            assert (
                path.read_bytes()
                == (installed_sample_root(sample) / path.relative_to(sample)).read_bytes()
            )
    # directly, as AutoFixer calls an EditFix
    [shorthand] = [i for i in after.issues if i.rule == "object-shorthand"]
    middle = cart.read_text()
    direct = EslintFix().apply(sample, [shorthand], FixerConfig())
    assert direct.ok and "1 of 1 issues fixed" in direct.reason, direct.reason
    assert changed_lines(middle, cart.read_text()) == [shorthand.line] == [25]


def installed_sample_root(copy: Path) -> Path:
    return (copy / "node_modules").resolve().parent


@slow
def test_eslint_fix_rounds_overlaps_and_encodings(sample: Path) -> None:
    """Overlapping fixes need a second round (object-shorthand rewrites the method that holds the
    prefer-const problem); a like problem outside the batch stays; BOM, CRLF and a character
    outside the BMP before the problems keep offsets right."""
    path = sample / "src" / "methods.js"
    source = (
        "// caf\u00e9 \U0001f600 in a comment: two UTF-16 code units\r\n"
        "export const o = {\r\n"
        "  f: function () {\r\n"
        "    let x = 1;\r\n"
        "    return x;\r\n"
        "  },\r\n"
        "};\r\n"
        "let y = 2;\r\n"
        "export const z = y;\r\n"
    )
    path.write_bytes(("\ufeff" + source).encode("utf-8"))
    found = [i for i in EslintAdapter().run(sample, ["src/methods.js"]).issues]
    assert [(i.line, i.rule) for i in found] == [
        (3, "object-shorthand"), (4, "prefer-const"), (8, "prefer-const"),
    ]  # fmt: skip
    report = fix_batch(sample, found[:2])
    assert (report.rounds, report.applied) == (3, 2)  # 3 ESLint runs: fix, fix, both gone
    assert sorted(report.fixed) == sorted(i.issue_id for i in found[:2])
    assert report.left == [] and report.missing == []
    text = path.read_bytes().decode("utf-8")
    assert text == "\ufeff" + source.replace("f: function () {", "f () {").replace(
        "let x = 1;", "const x = 1;"
    )
    left = EslintAdapter().run(sample, ["src/methods.js"]).issues
    assert [(i.line, i.rule, i.issue_id) for i in left] == [(8, "prefer-const", found[2].issue_id)]
    # already fixed: nothing to apply, nothing written
    again = fix_batch(sample, found[:2])
    assert again.applied == 0 and sorted(again.missing) == sorted(i.issue_id for i in found[:2])
    assert path.read_bytes().decode("utf-8") == text


def test_eslint_fix_takes_only_safe_eslint_issues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fix, config = EslintFix(), FixerConfig()
    base = IssueRecord(issue_id="x:0", fingerprint="x", tool="eslint", phase="lint", file="a.js",
                       rule="prefer-const", fix="safe")  # fmt: skip
    assert fix.supports(base, config)
    assert not fix.supports(msgspec.structs.replace(base, fix=""), config)
    assert not fix.supports(msgspec.structs.replace(base, tool="ruff"), config)
    assert not fix.supports(
        msgspec.structs.replace(base, rule="invalid-syntax", phase="build"), config
    )
    empty = tmp_path / "p"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    missing = fix.apply(empty, [base], config)  # not installed: the outcome says so
    assert not missing.ok and "eslint" in missing.reason.lower(), missing.reason


# ---------------------------------------------------------------- wrongly typed output → tool_error

#: a fake tool that copies REPORT wherever the adapter told its runner to write a report
FAKE_REPORTER = """for a in "$@"; do
  case "$a" in
    --outputFile=*) cp "{report}" "${{a#--outputFile=}}" ;;
    --test-reporter-destination=stdout) ;;
    --test-reporter-destination=*) cp "{report}" "${{a#*=}}" ;;
  esac
done
[ -n "$AIRFIX_MOCHA_EVENTS" ] && cp "{report}" "$AIRFIX_MOCHA_EVENTS"
[ -n "$AIRFIX_TAPE_EVENTS" ] && cp "{report}" "$AIRFIX_TAPE_EVENTS"
cat "{stdout}"
exit {code}
"""


def fake_reporter(tmp_path: Path, report: str, stdout: str = "", code: int = 1) -> str:
    (tmp_path / "report.txt").write_text(report + "\n")
    (tmp_path / "stdout.txt").write_text(stdout)
    body = FAKE_REPORTER.format(
        report=tmp_path / "report.txt", stdout=tmp_path / "stdout.txt", code=code
    )
    return str(write_exe(tmp_path / "fake-tool", body))


def test_wrongly_typed_eslint_and_tsc_output_is_a_tool_error(sample: Path, tmp_path: Path) -> None:
    """One field of the wrong type is a ``tool_error`` that names it (msgspec's path)."""
    result = [{"filePath": str(sample / "src/cart.js"), "messages": [
        {"ruleId": "semi", "severity": 2, "message": "Missing semicolon.", "line": 3, "column": 9},
        {"ruleId": "eqeqeq", "severity": "error", "message": "Expected '==='.", "line": 5},
    ]}]  # fmt: skip
    eslint = fake_reporter(tmp_path, "", stdout=json.dumps(result))
    assert_tool_error(
        EslintAdapter(executable=eslint).run(sample),
        "eslint: unparsable JSON output",
        "$[0].messages[1].severity",
    )
    (tmp_path / "tsc").mkdir()
    tsc = write_exe(
        tmp_path / "tsc" / "tsc",
        'case "$*" in *--showConfig*) echo \'{"files": "src/units.ts"}\' ;; esac\nexit 0\n',
    )
    assert_tool_error(
        TscAdapter(executable=str(tsc)).run(sample), "tsc: unparsable --showConfig", "$.files"
    )


@pytest.mark.parametrize(
    ("package", "report", "needles"),
    [
        (
            {"name": "n"},
            '{"type": "test:diagnostic", "message": "tests 1"}\n'
            '{"type": "test:pass", "name": "a", "nesting": "0", "file": "/t/a.test.js"}\n'
            '{"type": "airfix:end"}',
            ["unreadable node report", "line 2", "$.nesting"],
        ),
        (
            {"scripts": {"test": "jest"}, "devDependencies": {"jest": "*"}},
            json.dumps({"numTotalTests": 1, "testResults": [{"name": "/t/a.test.js",
                        "assertionResults": [{"title": "a", "status": "broken"}]}]}),
            ["unreadable jest report", "$.testResults[0].assertionResults[0].status"],
        ),
        (
            {"scripts": {"test": "mocha"}, "devDependencies": {"mocha": "*"}},
            '{"type": "airfix:start"}\n{"type": "fail", "id": "t > a", "line": "7"}',
            ["unreadable mocha report", "line 2", "$.line"],
        ),
        (
            {"scripts": {"test": "tape test/*.js"}, "devDependencies": {"tape": "*"}},
            '{"type": "hooked"}\n{"type": "start", "id": "t > a", "skip": "no"}',
            ["unreadable tape report", "line 2", "$.skip"],
        ),
    ],
    ids=["node", "jest", "mocha", "tape"],
)  # fmt: skip
def test_wrongly_typed_test_report_is_a_tool_error(
    package: dict[str, object], report: str, needles: list[str], tmp_path: Path
) -> None:
    project = tmp_path / "p"
    (project / "test").mkdir(parents=True)
    (project / "package.json").write_text(json.dumps(package))
    (project / "test" / "a.test.js").write_text("")
    runner = fake_reporter(tmp_path, report)
    assert_tool_error(JsTestAdapter(executable=runner).run(project), *needles)


def test_wrongly_typed_eslint_output_fails_the_fix(tmp_path: Path) -> None:
    """The fixer reads ESLint's JSON with the adapter's types: a wrong field is a failed fix
    that names it, not a crash."""
    project = tmp_path / "p"
    (project / "node_modules" / ".bin").mkdir(parents=True)
    (project / "a.js").write_text("let x = 1\n")
    result = [{"filePath": str(project / "a.js"), "messages": [
        {"ruleId": "semi", "severity": 2, "message": "Missing semicolon.", "line": 1,
         "column": 10, "fix": {"range": [9], "text": ";"}},
    ]}]  # fmt: skip
    (tmp_path / "out.json").write_text(json.dumps(result))
    write_exe(
        project / "node_modules" / ".bin" / "eslint", f'cat "{tmp_path / "out.json"}"\nexit 1\n'
    )
    issue = IssueRecord(issue_id="x:0", fingerprint="x", tool="eslint", phase="lint", file="a.js",
                        line=1, column=10, rule="semi", fix="safe")  # fmt: skip
    outcome = EslintFix().apply(project, [issue], FixerConfig())
    assert not outcome.ok
    assert "eslint: unparsable JSON output" in outcome.reason, outcome.reason
    assert "$[0].messages[0].fix.range" in outcome.reason, outcome.reason


# ---------------------------------------------------------------- jest and vitest, for real


@slow
@pytest.mark.parametrize("runner", ["jest", "vitest"])
def test_jest_and_vitest_runs(runner: str, request: pytest.FixtureRequest) -> None:
    target: Path = request.getfixturevalue(f"installed_{runner}")
    before = snapshot(target)
    run = JsTestAdapter().run(target)
    assert snapshot(target) == before  # no cache, no snapshots, no report in the tree
    assert detect_runner(target) == runner
    assert run.result.command[0] == bin_of(target, runner)
    assert run.result.status == "failed" and run.result.exit_status == 1
    # 6 tests + 1 file that does not load (an errored test, as pytest counts collection errors)
    assert run.result.counts == {"tests": 7, "passed": 3, "failed": 1, "errors": 1, "skipped": 2}
    assert (run.tests_total, run.tests_failed) == (7, 2)
    assert {(i.file, i.rule) for i in run.issues} == {
        ("test/sum.test.js", "failure"), ("test/broken.test.js", "load-error"),
    }  # fmt: skip
    failure = next(i for i in run.issues if i.rule == "failure")
    assert failure.message.startswith("test/sum.test.js > mean > averages three values: ")
    assert failure.line == (18 if runner == "jest" else 20)
    load = next(i for i in run.issues if i.rule == "load-error")
    assert "median" in load.message
    assert run.result.version == ("30.5.2" if runner == "jest" else "4.1.5")
    assert run.tests == JEST_OUTCOMES


@slow
def test_jest_and_vitest_agree_on_identities(installed_jest: Path, installed_vitest: Path) -> None:
    """The same suite under two runners yields the same fingerprints: ids name tests, not runners."""
    jest, vitest = JsTestAdapter().run(installed_jest), JsTestAdapter().run(installed_vitest)
    assert [i.fingerprint for i in jest.issues] == [i.fingerprint for i in vitest.issues]
    assert jest.tests == vitest.tests == JEST_OUTCOMES


@slow
def test_jest_counts_match_an_independent_jest_run(installed_jest: Path, tmp_path: Path) -> None:
    out = tmp_path / "jest.json"
    subprocess.run([bin_of(installed_jest, "jest"), "--ci", "--json", f"--outputFile={out}",
                    f"--cacheDirectory={tmp_path / 'cache'}"], cwd=installed_jest,
                   capture_output=True, check=False)  # fmt: skip
    report = json.loads(out.read_text())
    run = JsTestAdapter().run(installed_jest)
    assert run.result.counts["passed"] == report["numPassedTests"]
    assert run.result.counts["failed"] == report["numFailedTests"]
    assert run.result.counts["errors"] == report["numRuntimeErrorTestSuites"]
    assert (
        run.result.counts["tests"] == report["numTotalTests"] + report["numRuntimeErrorTestSuites"]
    )


# ---------------------------------------------------------------- Node runner edge cases


NODE_EDGE_CASES = """\
import { after, before, describe, it, test } from "node:test";

describe("hooked", () => {
  before(() => { throw new Error("hook boom"); });
  it("a", () => {});
  it("b", () => {});
});
describe("throws", () => { throw new Error("describe boom"); });
test("parent", async (t) => {
  await t.test("child ok", () => {});
  await t.test("child bad", () => { throw new Error("child boom"); });
});
describe("same", () => { it("works", () => { throw new Error("x1"); }); });
describe("other", () => { it("works", () => { throw new Error("x2"); }); });
test.skip("skipped", () => {});
test.todo("later");
"""


def test_node_runner_edge_cases(tmp_path: Path) -> None:
    project = tmp_path / "edge"
    (project / "test").mkdir(parents=True)
    (project / "package.json").write_text('{"name": "edge", "type": "module"}')
    (project / "test" / "edge.test.js").write_text(NODE_EDGE_CASES)
    (project / "test" / "load.test.js").write_text('import "./missing.js";\n')
    run = JsTestAdapter().run(project)
    independent = subprocess.run([need("node"), "--test", "--test-reporter=tap"], cwd=project,
                                 capture_output=True, text=True, check=False)  # fmt: skip
    totals = tap_totals(independent.stdout)
    assert run.result.status == "failed"
    assert run.tests == {
        "test/edge.test.js > hooked > a": "error",  # cancelled by the failed hook
        "test/edge.test.js > hooked > b": "error",
        "test/edge.test.js > hooked": "error",  # Node counts no test for a failed suite
        "test/edge.test.js > throws": "error",
        "test/edge.test.js > parent > child ok": "passed",
        "test/edge.test.js > parent > child bad": "failed",
        "test/edge.test.js > parent": "failed",
        "test/edge.test.js > same > works": "failed",
        "test/edge.test.js > other > works": "failed",
        "test/edge.test.js > skipped": "skipped",
        "test/edge.test.js > later": "skipped",
        "test/load.test.js": "error",  # Node counts it as a failed test
    }
    # Node's own totals, with the two failed suites added and the load failure as an error
    assert run.result.counts == {
        "tests": totals["tests"] + 2, "passed": totals["pass"], "failed": totals["fail"] - 1,
        "errors": totals["cancelled"] + 2 + 1, "skipped": totals["skipped"] + totals["todo"],
    }  # fmt: skip
    found = sorted((i.rule, i.message.split(":", 1)[0]) for i in run.issues)
    assert found == [
        ("failure", "test/edge.test.js > other > works"),
        ("failure", "test/edge.test.js > parent > child bad"),
        ("failure", "test/edge.test.js > same > works"),
        ("load-error", "test/load.test.js"),
        ("suite-failure", "test/edge.test.js > hooked"),
        ("suite-failure", "test/edge.test.js > throws"),
    ]
    assert len({i.fingerprint for i in run.issues}) == 6  # "works" twice, in two suites
    assert sorted(p.name for p in project.rglob("*")) == [
        "edge.test.js", "load.test.js", "package.json", "test",
    ]  # fmt: skip


def test_no_tests_is_a_failed_check_not_a_pass(tmp_path: Path) -> None:
    project = tmp_path / "empty"
    (project / "src").mkdir(parents=True)
    (project / "package.json").write_text('{"name": "empty"}')
    (project / "src" / "index.js").write_text("export const x = 1;\n")
    run = JsTestAdapter().run(project)
    assert run.result.status == "failed"
    assert run.tests_total == 0 and run.issues == []
    assert "no tests" in run.result.error


def test_unsupported_runner_and_broken_package_json(tmp_path: Path) -> None:
    project = tmp_path / "ava"
    project.mkdir()
    (project / "package.json").write_text('{"scripts": {"test": "npm run lint && ava --verbose"}}')
    assert_tool_error(
        JsTestAdapter().run(project), "ava", "supported: node --test, jest, vitest, mocha, tape"
    )
    (project / "package.json").write_text('{"devDependencies": {"tape": "5"}}')
    assert_tool_error(JsTestAdapter().run(project), "tape without test files in scripts.test")
    (project / "package.json").write_text('{"scripts": {"test": "tape t.js && mocha"}}')
    assert_tool_error(JsTestAdapter().run(project), "mocha and tape in one test script")
    (project / "package.json").write_text("{ not json")
    assert_tool_error(JsTestAdapter().run(project), "cannot read the project")


def test_runner_detection(tmp_path: Path) -> None:
    def runner(pkg: dict[str, object]) -> str:
        (tmp_path / "package.json").write_text(json.dumps(pkg))
        return detect_runner(tmp_path)

    assert runner({}) == "node"
    assert runner({"scripts": {"test": 'echo "Error: no test specified" && exit 1'}}) == "node"
    assert (
        runner({"scripts": {"test": "node --test test/"}, "devDependencies": {"jest": "1"}})
        == "node"
    )
    assert runner({"scripts": {"test": "vitest run"}}) == "vitest"
    assert runner({"scripts": {"test": "NODE_OPTIONS=--x jest --coverage"}}) == "jest"
    assert runner({"devDependencies": {"vitest": "4"}}) == "vitest"
    assert runner({"devDependencies": {"jest": "30", "ts-jest": "29"}}) == "jest"
    assert runner({"devDependencies": {"mocha": "10"}}) == "mocha"
    assert (
        runner({"devDependencies": {"mocha": "10"}, "scripts": {"test": "node --test"}}) == "node"
    )
    with pytest.raises(UnsupportedRunner):
        runner({"devDependencies": {"ava": "6"}})


def test_tape_and_mocha_invocations(tmp_path: Path) -> None:
    """The runner's own command is found through npm-run chains, wrappers and prechecks."""

    def found(scripts: dict[str, str], deps: tuple[str, ...] = ("tape",)) -> list[Invocation]:
        pkg = {"scripts": scripts, "devDependencies": {d: "1" for d in deps}}
        (tmp_path / "package.json").write_text(json.dumps(pkg))
        return runner_invocations(tmp_path)

    ljharb = {  # qs, side-channel, minimist...: lint first, nyc around tape, an audit after
        "pretest": "npm run lint", "lint": "eslint --ext=js,mjs .", "test": "npm run tests-only",
        "tests-only": "nyc tape 'test/**/*.js'", "posttest": "aud --production",
    }  # fmt: skip
    assert found(ljharb) == [Invocation("tape", ("test/**/*.js",))]
    assert found({"test": "npm run --silent tests-only", "tests-only": "node test"}) == [
        Invocation("tape", ("test",))  # node FILE in a tape project: tape on that file
    ]
    assert found({"test": "npm run lint && npm run tests-only && npm run security",
                  "tests-only": "tape -r ./shim.js test/a.js test/b.js", "lint": "eslint ."}) == [
        Invocation("tape", ("-r", "./shim.js", "test/a.js", "test/b.js"))
    ]  # fmt: skip
    assert found({"test": "npm run test:stock && npm run test:shams",
                  "test:stock": "nyc node test", "test:shams": "nyc tape 'test/shams/*.js'"}) == [
        Invocation("tape", ("test",)), Invocation("tape", ("test/shams/*.js",)),
    ]  # fmt: skip
    assert found({"test": "NODE_ENV=test c8 --reporter=lcov mocha --recursive -t 5000 spec"},
                 ("mocha",)) == [
        Invocation("mocha", ("--recursive", "-t", "5000", "spec"))
    ]  # fmt: skip
    assert found({"test": "cross-env CI=1 _mocha 'test/**/*.spec.js'"}, ("mocha",)) == [
        Invocation("mocha", ("test/**/*.spec.js",))
    ]
    assert found({"test": "node test"}, ()) == [Invocation("node")]  # no tape: Node's runner
    options, specs = mocha_args(["--recursive", "-R", "dot", "--reporter=spec", "-t", "5000",
                                 "--parallel", "-j", "2", "--watch", "test/**/*.js"])  # fmt: skip
    assert (options, specs) == (["--recursive", "-t", "5000"], ["test/**/*.js"])
    (tmp_path / "package.json").unlink()
    assert detect_runner(tmp_path) == "node"


def test_test_file_patterns() -> None:
    for yes in ("test/cart.test.js", "a.spec.ts", "src/x_test.mjs", "test-utils.cjs",
                "__tests__/thing.jsx", "tests/helpers.ts", "pkg/test.js", "b-test.js"):  # fmt: skip
        assert is_js_test_path(yes), yes
    for no in ("src/cart.js", "src/contest.js", "README.md", "test/data.json", "latest.js"):
        assert not is_js_test_path(no), no


# ---------------------------------------------------------------- parsers on real output shapes


TARGET = Path("/TARGET")


def test_parse_tsc_output() -> None:
    text = (
        "src/shapes.ts(14,9): error TS2322: Type 'string' is not assignable to type 'number'.\n"
        "  Type 'string' is not assignable to type 'number'.\n"
        "/TARGET/src/b.ts(1,7): error TS2304: Cannot find name 'x'.\n"
        "error TS2688: Cannot find type definition file for 'node'.\n"
        "tsconfig.json(6,21): error TS5023: Unknown compiler option 'noSuchOption'.\n"
        "error TS18003: No inputs were found in config file '/TARGET/tsconfig.json'.\n"
    )
    report = parse_tsc_output(text, TARGET)
    assert [(d.file, d.line, d.column, d.code) for d in report.diagnostics] == [
        ("src/shapes.ts", 14, 9, 2322), ("src/b.ts", 1, 7, 2304), ("", 0, 0, 2688),
        ("tsconfig.json", 6, 21, 5023), ("", 0, 0, 18003),
    ]  # fmt: skip
    assert report.diagnostics[0].message.count("\n") == 1
    assert [d.code for d in report.config_errors] == [5023, 18003]
    assert report.errors == 5 and report.other_lines == []


def test_parse_eslint_json_shapes() -> None:
    records = [
        {"filePath": "/TARGET/a.js", "messages": [
            {"ruleId": None, "fatal": True, "severity": 2, "message": "Parsing error: x", "line": 1, "column": 2},
            {"ruleId": None, "severity": 1, "message": "Unused eslint-disable directive (no problems were reported from 'no-console').", "line": 3, "column": 1, "fix": {"range": [0, 1], "text": ""}},
            {"ruleId": None, "severity": 1, "message": "File ignored because of a matching ignore pattern.", "line": 0, "column": 0},
            {"ruleId": "semi", "severity": 1, "message": "Missing semicolon.", "line": 4, "column": 9, "fix": {"range": [1, 1], "text": ";"}},
            {"ruleId": "no-alert", "severity": 2, "message": "Unexpected alert.", "line": 5, "column": 1, "suggestions": [{"desc": "x"}]},
        ]},
    ]  # fmt: skip
    report = parse_eslint_json("config loaded\n" + json.dumps(records), TARGET)
    assert [(f.phase, f.rule, f.severity, f.fix) for f in report.findings] == [
        ("build", "invalid-syntax", "error", ""),
        ("lint", "unused-disable-directive", "warning", ""),
        ("lint", "semi", "warning", "safe"),
        ("lint", "no-alert", "error", ""),
    ]
    assert (report.errors, report.warnings, report.fixable, report.files) == (2, 2, 1, 1)
    with pytest.raises(ValueError):
        parse_eslint_json("Oops! Something went wrong!", TARGET)
    with pytest.raises(ValueError, match=r"Expected `array`, got `object`"):
        parse_eslint_json('{"results": []}', TARGET)
    with pytest.raises(ValueError, match=r"\$\[0\]\.messages\[0\]\.line"):
        parse_eslint_json('[{"filePath": "/TARGET/a.js", "messages": [{"line": "4"}]}]', TARGET)


def test_parse_node_events_needs_a_complete_report() -> None:
    complete = '{"type": "test:diagnostic", "message": "tests 0"}\n{"type": "airfix:end"}\n'
    assert parse_node_events(complete, TARGET).total == 0
    with pytest.raises(ValueError, match="end marker"):
        parse_node_events('{"type": "test:diagnostic", "message": "tests 3"}\n', TARGET)
    with pytest.raises(ValueError, match="totals"):
        parse_node_events('{"type": "airfix:end"}\n', TARGET)


# ---------------------------------------------------------------- registration and detection


def test_detection_registers_adapters_for_the_fixtures(tmp_path: Path) -> None:
    assert detect_languages(SAMPLE) == ["typescript"]
    found = adapters_for_target(SAMPLE)
    assert [(a.name, a.phase, a.tier) for a in found["typescript"]] == [
        ("eslint", "lint", "static"), ("tsc", "build", "static"), ("js_test", "test", "dynamic"),
    ]  # fmt: skip
    assert detect_languages(FIXTURES / "jest") == ["javascript"]
    assert [a.name for a in adapters_for_target(FIXTURES / "jest")["javascript"]] == [
        "eslint", "js_test",
    ]  # fmt: skip
    assert [f.__name__ for f in REGISTRY["typescript"]] == [
        "EslintAdapter", "TscAdapter", "JsTestAdapter",
    ]  # fmt: skip
    for adapter in adapters_for("typescript"):
        assert isinstance(adapter, ToolAdapter)
    assert {a.language for a in adapters_for("typescript")} == {"javascript", "typescript"}
    # a project with Python and TypeScript gets both sets
    mixed = shutil.copytree(SAMPLE, tmp_path / "mixed")
    (mixed / "pyproject.toml").write_text("[project]\nname = 'm'\nversion = '0'\n")
    assert list(adapters_for_target(mixed)) == ["python", "typescript"]


# ---------------------------------------------------------------- tape and mocha, for real


@slow
def test_tape_run_matches_an_independent_run(installed_tape: Path, tmp_path: Path) -> None:
    target = installed_tape
    before = snapshot(target)
    run = JsTestAdapter().run(target)
    assert snapshot(target) == before
    assert detect_runner(target) == "tape"
    assert run.result.command[0] == bin_of(target, "tape")
    assert run.result.command[1] == "-r" and not run.result.command[2].startswith(str(target))
    assert run.result.command[3:] == ["test/**/*.js"]  # the script's glob, without nyc
    assert run.result.status == "failed" and run.result.exit_status == 1
    assert run.tests == TAPE_OUTCOMES
    assert run.result.counts == {"tests": 10, "passed": 7, "failed": 1, "errors": 0, "skipped": 2}
    # tape's own TAP, run independently: assertions, and the names of the tests in order
    mirror = linked_copy(target, tmp_path / "mirror")
    proc = subprocess.run([bin_of(target, "tape"), "test/**/*.js"], cwd=mirror,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 1
    totals = {m[1]: int(m[2]) for m in re.finditer(r"^# (\w+)\s+(\d+)$", proc.stdout, re.MULTILINE)}
    assert totals == {"tests": 9, "pass": 8, "fail": 1}  # assertions; the todo one "passes"
    names = re.findall(r"^# (?!tests |pass |fail |skip |todo |ok$)(?:SKIP |TODO )?(.+)$",
                       proc.stdout, re.MULTILINE)  # fmt: skip
    assert sorted(set(names)) == sorted({k.split(" > ")[-1].split(" [")[0] for k in run.tests})
    assert len(names) == len(run.tests)
    [issue] = run.issues
    assert (issue.file, issue.line, issue.rule) == ("test/mean.js", 8, "failure")
    assert issue.message.startswith("test/mean.js > mean > of three values: not ok should be")
    assert "operator: equal\n  expected: 2\n  actual:   1" in issue.message  # the YAML block
    assert "at: Test.<anonymous> (test/mean.js:8:" in issue.message
    assert str(target) not in issue.message
    assert run.result.version == "5.10.2"
    assert "not ok 1 should be strictly equal" in run.stdout_tail  # tape's TAP, as evidence


@slow
def test_tape_ids_are_stable(installed_tape: Path, tmp_path: Path) -> None:
    """Shifted lines and an edited, unrelated source keep every id and fingerprint."""
    project = linked_copy(installed_tape, tmp_path / "tape")
    before = JsTestAdapter().run(project)
    for path in [*project.glob("test/*.js"), project / "src" / "sum.js"]:
        path.write_text("// shifted\n// shifted\n" + path.read_text())
    after = JsTestAdapter().run(project)
    assert after.tests == before.tests == TAPE_OUTCOMES
    assert [i.issue_id for i in after.issues] == [i.issue_id for i in before.issues]
    assert [i.line for i in after.issues] == [i.line + 2 for i in before.issues]


@slow
def test_tape_load_errors_crashes_and_scoped_runs(installed_tape: Path, tmp_path: Path) -> None:
    project = linked_copy(installed_tape, tmp_path / "tape")
    scoped = JsTestAdapter().run(project, ["test/sum.js", "src/sum.js"])
    assert scoped.result.command[-1] == "test/sum.js"
    assert scoped.result.status == "passed"
    assert scoped.tests == {k: v for k, v in TAPE_OUTCOMES.items() if k.startswith("test/sum.js")}
    # a test file that throws while tape loads it: tape stops before running any test
    (project / "test" / "broken.js").write_text("'use strict';\nrequire('../src/median');\n")
    broken = JsTestAdapter().run(project)
    assert broken.result.status == "failed" and broken.result.exit_status == 1
    assert broken.tests == {"test/broken.js": "error"}
    [issue] = broken.issues
    assert (issue.rule, issue.file) == ("load-error", "test/broken.js")
    assert "Cannot find module '../src/median'" in issue.message
    # a test that crashes the process: it is an error, the tests after it never ran
    (project / "test" / "broken.js").write_text(
        "'use strict';\nvar test = require('tape');\n"
        "test('crashes', function (t) { setTimeout(function () { throw new Error('boom'); }); });\n"
    )
    crashed = JsTestAdapter().run(project)
    assert crashed.result.status == "failed"
    assert crashed.tests == {"test/broken.js > crashes": "error"}
    assert [(i.rule, i.file) for i in crashed.issues] == [("crash", "test/broken.js")]
    assert "boom" in crashed.issues[0].message


@slow
def test_tape_4_through_node_test(tmp_path: Path, installed_tape: Path) -> None:
    """``node test`` in a tape project (function-bind, qs <= 6.5): tape on test/index.js,
    which requires the other files; their tests are attributed to the files that define them."""
    project = linked_copy(installed_tape, tmp_path / "tape")
    pkg = json.loads((project / "package.json").read_text())
    pkg["scripts"] = {"test": "npm run tests-only", "tests-only": "node test"}
    (project / "package.json").write_text(json.dumps(pkg))
    (project / "test" / "index.js").write_text(
        "'use strict';\nrequire('./sum');\nrequire('./mean');\n"
    )
    run = JsTestAdapter().run(project)
    assert run.result.command[-1] == "test"
    assert run.tests == TAPE_OUTCOMES


@slow
def test_mocha_run_matches_an_independent_run(installed_mocha: Path, tmp_path: Path) -> None:
    target = installed_mocha
    before = snapshot(target)
    run = JsTestAdapter().run(target)
    assert snapshot(target) == before
    assert detect_runner(target) == "mocha"
    cmd = run.result.command
    assert cmd[0] == bin_of(target, "mocha")
    assert cmd[1] == "--recursive" and cmd[-1] == "test/**/*.test.js" and "dot" not in cmd
    assert run.result.status == "failed" and run.result.exit_status == 2  # mocha: 2 failures
    assert run.tests == MOCHA_OUTCOMES
    assert run.result.counts == {"tests": 10, "passed": 7, "failed": 1, "errors": 1, "skipped": 1}
    out = tmp_path / "mocha.json"
    mirror = linked_copy(target, tmp_path / "mirror")
    subprocess.run([bin_of(target, "mocha"), "--recursive", "--reporter", "json",
                    "--reporter-option", f"output={out}", "test/**/*.test.js"], cwd=mirror,
                   capture_output=True, check=False)  # fmt: skip
    report = json.loads(out.read_text())
    stats = report["stats"]
    assert (stats["passes"], stats["pending"], stats["failures"]) == (7, 1, 2)
    ran = {t["fullTitle"] for t in report["passes"] + report["pending"] + report["failures"]}
    ours = {" ".join(k.split(" > ")[1:]).removesuffix(" [2]") for k in run.tests}
    assert {t.removesuffix(' for "never runs"') for t in ran} == ours
    assert {(i.rule, i.file, i.line) for i in run.issues} == {
        ("failure", "test/nested/mean.test.js", 8),
        ("hook-failure", "test/nested/mean.test.js", 18),
    }
    assert run.result.version == "10.8.2"


@slow
def test_mocha_scoped_runs_and_load_errors(installed_mocha: Path, tmp_path: Path) -> None:
    project = linked_copy(installed_mocha, tmp_path / "mocha")
    scoped = JsTestAdapter().run(project, ["test/sum.test.js"])
    assert scoped.result.command[-1] == "test/sum.test.js"
    assert scoped.result.status == "passed"
    assert scoped.tests == {k: v for k, v in MOCHA_OUTCOMES.items() if "sum.test" in k}
    (project / "test" / "broken.test.js").write_text("require('../src/median');\n")
    assert_tool_error(JsTestAdapter().run(project), "mocha", "median")


def test_parse_tape_events_checks_the_tap_summary() -> None:
    events = "\n".join(json.dumps(e) for e in [
        {"type": "hooked"},
        {"type": "start", "id": "t.js > a", "file": "t.js"},
        {"type": "assert", "id": "t.js > a", "ok": True},
        {"type": "end", "id": "t.js > a"},
    ])  # fmt: skip
    tap = "TAP version 13\n# a\nok 1 x\n\n1..1\n# tests 1\n# pass  1\n\n# ok\n"
    assert parse_tape_events(events, tap, TARGET).outcomes == {"t.js > a": "passed"}
    with pytest.raises(ValueError, match="summary counts 2"):
        parse_tape_events(events, tap.replace("# tests 1", "# tests 2"), TARGET)
    with pytest.raises(ValueError, match="no summary"):
        parse_tape_events(events, "TAP version 13\n# a\nok 1 x\n", TARGET)
    with pytest.raises(ValueError, match="did not load"):
        parse_tape_events("", tap, TARGET)


def test_parse_mocha_events_needs_the_end() -> None:
    lines = [{"type": "airfix:start"}, {"type": "pass", "id": "t.js > a", "file": "t.js"}]
    text = "\n".join(json.dumps(e) for e in lines)
    with pytest.raises(ValueError, match="end marker"):
        parse_mocha_events(text, TARGET)
    end = {"type": "airfix:end", "stats": {"passes": 1, "pending": 0, "failures": 0}}
    assert parse_mocha_events(text + "\n" + json.dumps(end), TARGET).outcomes == {
        "t.js > a": "passed"
    }
    end["stats"]["failures"] = 1
    with pytest.raises(ValueError, match="counted 1 failures"):
        parse_mocha_events(text + "\n" + json.dumps(end), TARGET)


def test_parse_jest_json_numbers_duplicates_and_checks_the_total() -> None:
    def case(title: str, status: str) -> dict[str, object]:
        return {"ancestorTitles": ["s"], "title": title, "status": status}

    data = {"numTotalTests": 3, "testResults": [{"name": "/TARGET/a.test.js", "assertionResults": [
        case("t", "passed"), case("t", "failed"), case("u", "todo")]}]}  # fmt: skip
    report = parse_jest_json(json.dumps(data), TARGET)
    assert report.outcomes == {
        "a.test.js > s > t": "passed", "a.test.js > s > t [2]": "failed",
        "a.test.js > s > u": "skipped",
    }  # fmt: skip
    assert [f.key_message for f in report.findings] == ["a.test.js > s > t [2]"]
    data["numTotalTests"] = 4
    with pytest.raises(ValueError, match="lists 3 tests but counts 4"):
        parse_jest_json(json.dumps(data), TARGET)


# ---------------------------------------------------------------- older tool versions


@slow
def test_mocha_3_without_runner_stats(installed_mocha3: Path) -> None:
    """mocha 3 (es6-shim's) gives a reporter no ``runner.stats`` unless it derives from mocha's
    base reporter; its events are counted instead.  Its test script runs mocha twice
    (``test:shim && test:sham``): both commands' tests are in the one report."""
    run = JsTestAdapter().run(installed_mocha3)
    assert run.result.status == "failed", run.result.error
    assert run.result.version == "3.5.3"
    assert run.tests == {
        "test/sum.js > sum > adds two numbers": "passed",
        "test/sum.js > sum > handles bigint": "skipped",
        "test/sum.js > sum > with zero > works": "passed",
        "test/shim/mean.js > mean > of three values": "failed",
        "test-sham/sum.js > sum > adds two numbers": "passed",
    }
    assert run.result.counts == {"tests": 5, "passed": 3, "failed": 1, "errors": 0, "skipped": 1}
    assert [(i.rule, i.file, i.line) for i in run.issues] == [("failure", "test/shim/mean.js", 8)]
    commands = (
        JsTestAdapter()
        .for_target(installed_mocha3)
        .build_commands("mocha", installed_mocha3, None, Path("/TMP"))
    )
    assert [c[-2:] for c in commands] == [
        ["test/*.js", "test/*/*.js"],
        ["--no-colors", "test-sham/*.js"],
    ]


@slow
def test_every_mocha_command_of_the_script_runs(installed_mocha: Path, tmp_path: Path) -> None:
    """A script that runs mocha on one part of the suite, then on another: both parts run, and
    the exit code of each command is checked against its own part of the report."""
    project = linked_copy(installed_mocha, tmp_path / "mocha")
    pkg = json.loads((project / "package.json").read_text())
    pkg["scripts"] = {
        "test": "npm run test:sum && npm run test:nested",
        "test:sum": "mocha test/sum.test.js",
        "test:nested": "mocha --recursive 'test/nested/*.test.js'",
    }
    (project / "package.json").write_text(json.dumps(pkg))
    run = JsTestAdapter().run(project)
    assert run.result.status == "failed", run.result.error
    assert run.tests == MOCHA_OUTCOMES
    assert {(i.rule, i.file) for i in run.issues} == {
        ("failure", "test/nested/mean.test.js"), ("hook-failure", "test/nested/mean.test.js"),
    }  # fmt: skip
    scoped = JsTestAdapter().run(project, ["test/sum.test.js"])
    assert scoped.result.status == "passed"
    assert scoped.tests == {k: v for k, v in MOCHA_OUTCOMES.items() if "sum.test" in k}


def test_parse_mocha_events_numbers_duplicates_across_commands() -> None:
    """Each mocha command numbers its own duplicates; across commands the run numbers them."""

    def command(*ids: str) -> str:
        lines = [{"type": "airfix:start"}]
        lines += [{"type": "pass", "id": i, "base": i.removesuffix(" [2]"), "file": "t.js"}
                  for i in ids]  # fmt: skip
        lines.append({"type": "airfix:end", "stats": {"passes": len(ids), "failures": 0}})
        return "\n".join(json.dumps(e) for e in lines)

    report = parse_mocha_events(command("t.js > a", "t.js > a [2]"), TARGET)
    parse_mocha_events(command("t.js > a", "t.js > b"), TARGET, report)
    assert report.outcomes == {
        "t.js > a": "passed", "t.js > a [2]": "passed", "t.js > a [3]": "passed",
        "t.js > b": "passed",
    }  # fmt: skip
    assert report.total == 4


@slow
def test_eslint_7_scoped_runs_and_fixes(installed_eslint7: Path, tmp_path: Path) -> None:
    """ESLint 7 (eslintrc, before ``--no-warn-ignored``) gets only the options it knows; the
    ignored file it is given is left out through its "File ignored" warning."""
    project = linked_copy(installed_eslint7, tmp_path / "eslint7")
    run = EslintAdapter().run(project, ["src/cart.js", "src/generated.js"])
    assert run.result.status == "failed", run.result.error
    assert run.result.version == "7.32.0"
    assert "--no-warn-ignored" not in run.result.command
    assert "--no-error-on-unmatched-pattern" in run.result.command
    assert {(i.file, i.line, i.rule, i.fix) for i in run.issues} == {
        ("src/cart.js", 3, "prefer-const", "safe"), ("src/cart.js", 5, "eqeqeq", ""),
    }  # fmt: skip
    assert run.result.counts["files"] == 1
    ignored = EslintAdapter().run(project, ["src/generated.js"])
    assert ignored.result.status == "skipped", ignored.result.error
    [prefer_const] = [i for i in run.issues if i.rule == "prefer-const"]
    report = fix_batch(project, [prefer_const])
    assert report.fixed == [prefer_const.issue_id]
    assert all("--no-warn-ignored" not in c for c in report.commands)
    assert "const total = 0;" in (project / "src" / "cart.js").read_text()


def test_scope_flags_follow_the_eslint_version(tmp_path: Path) -> None:
    both = ["--no-warn-ignored", "--no-error-on-unmatched-pattern"]
    unmatched = ["--no-error-on-unmatched-pattern"]
    assert scope_flags("10.15.0", tmp_path, {}) == both
    assert scope_flags("v9.0.0", tmp_path, {}) == both
    assert scope_flags("9.39.1", tmp_path, {"ESLINT_USE_FLAT_CONFIG": "false"}) == unmatched
    assert scope_flags("", tmp_path, {}) == both  # unknown: the current ESLint's options
    assert scope_flags("8.57.0", tmp_path, {}) == unmatched  # eslintrc mode
    assert scope_flags("8.57.0", tmp_path, {"ESLINT_USE_FLAT_CONFIG": "true"}) == both
    (tmp_path / "eslint.config.mjs").write_text("export default [];\n")
    assert scope_flags("8.57.0", tmp_path, {}) == both
    assert scope_flags("8.56.0", tmp_path, {}) == unmatched  # .mjs configs came with 8.57
    (tmp_path / "eslint.config.js").write_text("module.exports = [];\n")
    assert scope_flags("8.51.0", tmp_path, {}) == both
    assert scope_flags("8.50.0", tmp_path, {}) == unmatched
    assert scope_flags("7.32.0", tmp_path, {}) == unmatched
    assert scope_flags("6.7.2", tmp_path, {}) == []


def test_bin_package_version_reads_the_bins_package(tmp_path: Path) -> None:
    package = tmp_path / "node_modules" / "eslint"
    (package / "bin").mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"name": "eslint", "version": "7.32.0"}))
    script = write_exe(package / "bin" / "eslint.js", "#!/bin/sh\n")
    (tmp_path / "node_modules" / ".bin").mkdir()
    link = tmp_path / "node_modules" / ".bin" / "eslint"
    link.symlink_to(script)
    assert bin_package_version(str(link)) == "7.32.0"
    assert bin_package_version(str(script)) == "7.32.0"
    assert bin_package_version(str(write_exe(tmp_path / "eslint", "#!/bin/sh\n"))) == ""


@pytest.mark.parametrize("ignore", ["node_modules\n", "/node_modules/\n", ""])
@pytest.mark.parametrize("kind", ["link", "directory"])
def test_commits_leave_node_modules_out(tmp_path: Path, ignore: str, kind: str) -> None:
    """Staging works whether or not the project's ``.gitignore`` lists ``node_modules`` (a
    worktree borrows it as a symlink; a checkout has the directory): never in a commit."""
    root = tmp_path / "project"
    root.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    (root / ".gitignore").write_text(ignore)
    (root / "index.js").write_text("module.exports = 1;\n")
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "first"], cwd=root, check=True)
    installed = tmp_path / "installed" / "node_modules"
    (installed / "tape").mkdir(parents=True)
    (installed / "tape" / "index.js").write_text("module.exports = 2;\n")
    if kind == "link":
        (root / "node_modules").symlink_to(installed, target_is_directory=True)
    else:
        shutil.copytree(installed, root / "node_modules")
    (root / "index.js").write_text("module.exports = 3;\n")
    (root / "added.js").write_text("module.exports = 4;\n")
    repo = Repo(root)
    assert "+module.exports = 4;" in repo.diff()
    sha = repo.commit_all("fix")
    files = repo.git("show", "--name-only", "--format=", sha).split()
    assert sorted(files) == ["added.js", "index.js"]
    assert repo.git("ls-files").split() == [".gitignore", "added.js", "index.js"]
