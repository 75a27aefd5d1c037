"""The Dart/Flutter adapters (dart analyze, flutter test, dart test) and the ``dart fix`` fixer.

The SDKs cannot be installed on the CI machine (no access to their download sites), so the
tools' outputs are fixtures that follow the emitters' source exactly (``tests/fixtures/dart/README.md``).  The adapters are run
for real against fake ``dart``/``flutter`` executables that print a fixture (with its recorded
project root replaced by their working directory) and exit with the recorded status: the adapter
code path — lookup, spawn, exit-code check, parse, judgement — is the one used with a real SDK.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from airfix.config import FixerConfig
from airfix.events.schema import BatchPlanned, IssueRecord
from airfix.services.fixers import FixRequest
from airfix.services.fixers.autofix import DETERMINISTIC, AutoFixer
from airfix.services.fixers.autofix_go_dart import DartFix
from airfix.services.tools import ToolRun, adapters_for, adapters_for_target, detect_languages
from airfix.services.tools.dart_analyze import (
    DartAnalyzeAdapter,
    parse_dart_analyze,
    parse_fix_dry_run,
)
from airfix.services.tools.fingerprints import to_issues
from airfix.services.tools.flutter_test import (
    DartTestAdapter,
    FlutterTestAdapter,
    parse_test_json,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dart"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
APP_ROOT = MANIFEST["roots"]["flutter_app"]
PKG_ROOT = MANIFEST["roots"]["dart_pkg"]
DART_VERSION = MANIFEST["analyze_flutter_app.json"]["version"]
FLUTTER_VERSION = MANIFEST["flutter_test_machine.jsonl"]["version"]

EXPECTED_ANALYZE = {
    ("lib/cart.dart", 1, 8, "unused_import", "lint", "warning"),
    ("lib/cart.dart", 20, 5, "avoid_print", "lint", "info"),
    ("lib/main.dart", 39, 16, "prefer_const_constructors", "lint", "info"),
    ("lib/report.dart", 4, 54, "undefined_identifier", "build", "error"),
}
FAILING_FLUTTER = "test/cart_test.dart::Cart gives 10% off from 10 items"


# ---------------------------------------------------------------- fakes and projects

FAKE = '''#!{python}
"""A stand-in for {name}: prints recorded outputs (see tests/fixtures/dart/README.md)."""
import json, os, sys

RESPONSES = {responses!r}
ROOTS = {roots!r}
args = sys.argv[1:]
log = os.environ.get("AIRFIX_FAKE_LOG")
if log:
    with open(log, "a") as f:
        f.write(json.dumps([{name!r}, *args]) + "\\n")
for prefix, fixture, code, stderr in RESPONSES:
    if args[: len(prefix)] == prefix:
        text = open(fixture, encoding="utf-8").read() if fixture else ""
        for root in ROOTS:
            text = text.replace(root, os.getcwd())
        sys.stdout.write(text)
        sys.stderr.write(stderr)
        sys.exit(code)
sys.stderr.write("fake {name}: unexpected arguments " + " ".join(args) + "\\n")
sys.exit(64)
'''


def fake(bin_dir: Path, name: str, *responses: tuple[list[str], str | None, int, str]) -> str:
    """An executable ``bin_dir/name`` answering ``--version`` and the given argv prefixes."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    version = DART_VERSION if name == "dart" else FLUTTER_VERSION
    (bin_dir / f"{name}.version").write_text(version + "\n")
    table = [(["--version"], str(bin_dir / f"{name}.version"), 0, "")]
    table += [(p, str(FIXTURES / f) if f else None, c, e) for p, f, c, e in responses]
    path = bin_dir / name
    path.write_text(FAKE.format(python=sys.executable, name=name, responses=table,
                                roots=[APP_ROOT, PKG_ROOT]))  # fmt: skip
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


ANALYZE = (["analyze", "--format=json"], "analyze_flutter_app.json", 3, "")
DRY_RUN = (["fix", "--dry-run"], "fix_dry_run_flutter_app.txt", 0, "")
APPLY = (["fix", "--apply"], None, 0, "")
FLUTTER_TEST = (["test", "--machine", "--no-pub"], "flutter_test_machine.jsonl", 1, "")
DART_TEST = (["test", "--reporter", "json"], "dart_test_json.jsonl", 1, "")


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return proc.stdout


def copy_project(name: str, dest: Path, *, resolved: bool = True) -> Path:
    """A git copy of a sample project as after ``pub get`` (ignored ``.dart_tool/``)."""
    shutil.copytree(FIXTURES / name, dest)
    (dest / ".gitignore").write_text(".dart_tool/\nbuild/\n")
    if resolved:
        (dest / ".dart_tool").mkdir()
        (dest / ".dart_tool" / "package_config.json").write_text(
            json.dumps({"configVersion": 2, "packages": [], "generator": "pub"})
        )
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "sample")
    return dest


def porcelain(target: Path) -> str:
    return git(target, "status", "--porcelain", "--untracked-files=all")


@pytest.fixture
def app(tmp_path: Path) -> Path:
    return copy_project("flutter_app", tmp_path / "airfix_flutter_app")


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    return copy_project("dart_pkg", tmp_path / "airfix_dart_pkg")


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("AIRFIX_FAKE_LOG", str(path))
    return path


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def key(issues: list[IssueRecord]) -> set[tuple[str, int, int, str, str, str]]:
    return {(i.file, i.line, i.column, i.rule, i.phase, i.severity) for i in issues}


def assert_tool_error(run: ToolRun, *needles: str) -> None:
    assert run.result.status == "tool_error", run.result
    assert run.issues == []
    assert not run.ok
    for needle in needles:
        assert needle in run.result.error, run.result.error


def fixture_text(name: str, root: str, target: Path) -> str:
    return (FIXTURES / name).read_text().replace(root, str(target))


# ---------------------------------------------------------------- detection and registry


def test_detection_and_registry(app: Path, pkg: Path) -> None:
    assert detect_languages(app) == ["flutter"]
    assert detect_languages(pkg) == ["dart"]
    assert [a.name for a in adapters_for("flutter")] == ["dart_analyze", "flutter_test"]
    assert [a.name for a in adapters_for("dart")] == ["dart_analyze", "dart_test"]
    assert [a.name for a in adapters_for_target(app)["flutter"]] == ["dart_analyze", "flutter_test"]
    assert DETERMINISTIC["dart_analyze"].__class__ is DartFix


# ---------------------------------------------------------------- dart analyze


def test_parse_dart_analyze_fixture(app: Path) -> None:
    text = fixture_text("analyze_flutter_app.json", APP_ROOT, app)
    report = parse_dart_analyze(text, app)
    # independently: straight from the JSON
    doc = json.loads(text)
    expected = {
        (Path(d["location"]["file"]).relative_to(app).as_posix(),
         d["location"]["range"]["start"]["line"], d["location"]["range"]["start"]["column"],
         d["code"])
        for d in doc["diagnostics"]
    }  # fmt: skip
    issues = to_issues("dart_analyze", report.findings)
    assert {(i.file, i.line, i.column, i.rule) for i in issues} == expected
    assert key(issues) == EXPECTED_ANALYZE
    assert (report.errors, report.warnings, report.infos) == (1, 1, 2)
    # positions agree with the sample sources the fixture describes
    for d in doc["diagnostics"]:
        source = (app / Path(d["location"]["file"]).relative_to(app)).read_text()
        start, end = d["location"]["range"]["start"], d["location"]["range"]["end"]
        line = source.splitlines()[start["line"] - 1]
        assert (
            source[start["offset"] : end["offset"]] == line[start["column"] - 1 : end["column"] - 1]
        )
    undefined = next(i for i in issues if i.rule == "undefined_identifier")
    assert undefined.message.splitlines() == [
        "Undefined name 'totl'.",
        "Try correcting the name to one that is defined, or defining the name.",
        "https://dart.dev/diagnostics/undefined_identifier",
    ]


def test_dart_analyze_with_fake_dart(app: Path, tmp_path: Path, log: Path) -> None:
    dart = fake(tmp_path / "bin", "dart", ANALYZE, DRY_RUN)
    run = DartAnalyzeAdapter(executable=dart).run(app)
    assert run.result.status == "failed"
    assert run.result.exit_status == 3
    assert run.result.version == "3.5.4"
    assert run.result.command == [dart, "analyze", "--format=json"]
    assert key(run.issues) == EXPECTED_ANALYZE
    assert {i.rule for i in run.issues if i.fix == "safe"} == {
        "unused_import", "prefer_const_constructors",
    }  # fmt: skip
    assert run.result.counts == {
        "issues": 4, "errors": 1, "warnings": 1, "infos": 2, "fixable": 2,
    }  # fmt: skip
    assert [c[1:] for c in calls(log)] == [
        ["--version"], ["analyze", "--format=json"], ["fix", "--dry-run"],
    ]  # fmt: skip
    assert porcelain(app) == ""


def test_dart_analyze_without_fix_probe(app: Path, tmp_path: Path, log: Path) -> None:
    dart = fake(tmp_path / "bin", "dart", ANALYZE, DRY_RUN)
    run = DartAnalyzeAdapter(executable=dart, probe_fixes=False).run(app)
    assert run.result.counts["fixable"] == 0 and all(i.fix == "" for i in run.issues)
    assert ["fix", "--dry-run"] not in [c[1:] for c in calls(log)]


@pytest.mark.parametrize(
    "dry_run",
    [(["fix", "--dry-run"], None, 1, "boom"), (["fix", "--dry-run"], "analyze_clean.json", 0, "")],
    ids=["exit-1", "garbage"],
)
def test_failed_fix_probe_keeps_the_analysis(app: Path, tmp_path: Path, dry_run) -> None:
    run = DartAnalyzeAdapter(executable=fake(tmp_path / "bin", "dart", ANALYZE, dry_run)).run(app)
    assert run.result.status == "failed"
    assert key(run.issues) == EXPECTED_ANALYZE
    assert run.result.counts["fix_probe_failed"] == 1
    assert all(i.fix == "" for i in run.issues)


def test_clean_analysis_passes_without_probing(app: Path, tmp_path: Path, log: Path) -> None:
    clean = (["analyze", "--format=json"], "analyze_clean.json", 0, "")
    run = DartAnalyzeAdapter(executable=fake(tmp_path / "bin", "dart", clean, DRY_RUN)).run(app)
    assert (run.result.status, run.issues, run.result.exit_status) == ("passed", [], 0)
    assert [c[1] for c in calls(log)] == ["--version", "analyze"]


def test_preamble_before_the_json_is_tolerated(app: Path) -> None:
    text = "Analyzing airfix_flutter_app...\n" + fixture_text(
        "analyze_flutter_app.json", APP_ROOT, app
    )
    assert len(parse_dart_analyze(text, app).findings) == 4


@pytest.mark.parametrize(
    ("response", "needles"),
    [
        ((["analyze"], "analyze_clean.json", 3, ""), ["left out of the JSON"]),
        ((["analyze"], "analyze_flutter_app.json", 0, ""), ["errors in the JSON but exit 0"]),
        ((["analyze"], "analyze_clean.json", 2, ""), ["no WARNING"]),
        (
            (["analyze"], None, 4, "The analysis server shut down unexpectedly.\n"),
            ["crashed", "shut down unexpectedly"],
        ),
        ((["analyze"], None, 64, 'Could not find an option named "x".\n'), ["usage error"]),
        ((["analyze"], "fix_dry_run_flutter_app.txt", 0, ""), ["unparsable"]),
        ((["analyze"], None, 0, ""), ["unparsable"]),
    ],
    ids=["exit3-empty", "exit0-errors", "exit2-nowarn", "crash", "usage", "garbage", "empty"],
)
def test_misbehaving_dart_analyze_is_a_tool_error(
    app: Path, tmp_path: Path, response, needles
) -> None:
    run = DartAnalyzeAdapter(executable=fake(tmp_path / "bin", "dart", response)).run(app)
    assert_tool_error(run, *needles)


def test_unresolved_project_is_a_tool_error(tmp_path: Path) -> None:
    project = copy_project("flutter_app", tmp_path / "airfix_flutter_app", resolved=False)
    dart = fake(tmp_path / "bin", "dart", ANALYZE)
    assert_tool_error(DartAnalyzeAdapter(executable=dart).run(project), "pub get")
    flutter = fake(tmp_path / "bin", "flutter", FLUTTER_TEST)
    assert_tool_error(FlutterTestAdapter(executable=flutter).run(project), "pub get")
    assert porcelain(project) == ""


def test_dart_analyze_scope(app: Path, tmp_path: Path) -> None:
    dart = fake(tmp_path / "bin", "dart", ANALYZE, DRY_RUN)
    scoped = DartAnalyzeAdapter(executable=dart).run(app, ["lib/cart.dart", "README.md"])
    assert scoped.result.command[-1] == "lib/cart.dart"
    full = DartAnalyzeAdapter(executable=dart).run(app, ["lib/cart.dart", "pubspec.yaml"])
    assert full.result.command[-1] == "--format=json"
    assert DartAnalyzeAdapter(executable=dart).run(app, ["README.md"]).result.status == "skipped"


def test_dart_analyze_fingerprints_survive_shifted_lines(app: Path) -> None:
    text = fixture_text("analyze_flutter_app.json", APP_ROOT, app)
    shifted = json.loads(text)
    for d in shifted["diagnostics"]:
        for end in ("start", "end"):
            pos = d["location"]["range"][end]
            pos["line"] += 3
            pos["offset"] += len("// a\n// b\n\n")
    before = to_issues("dart_analyze", parse_dart_analyze(text, app).findings)
    after = to_issues("dart_analyze", parse_dart_analyze(json.dumps(shifted), app).findings)
    assert [i.issue_id for i in before] == [i.issue_id for i in after]
    assert [i.line + 3 for i in before] == [i.line for i in after]


def test_parse_fix_dry_run(app: Path) -> None:
    text = (FIXTURES / "fix_dry_run_flutter_app.txt").read_text()
    assert parse_fix_dry_run(text, app) == {
        ("lib/cart.dart", "unused_import"), ("lib/main.dart", "prefer_const_constructors"),
    }  # fmt: skip
    ansi = text.replace(" - 1 fix", " • 1 fix")  # the bullet on a terminal
    assert parse_fix_dry_run(ansi, app) == parse_fix_dry_run(text, app)
    assert parse_fix_dry_run((FIXTURES / "fix_dry_run_clean.txt").read_text(), app) == set()
    assert parse_fix_dry_run("Unable to compute fixes: boom\n", app) is None


# ---------------------------------------------------------------- dart fix --apply


def test_dart_fix_applies_only_marked_issues(
    app: Path, tmp_path: Path, log: Path, monkeypatch
) -> None:
    bin_dir = tmp_path / "bin"
    fake(bin_dir, "dart", ANALYZE, DRY_RUN, APPLY)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    issues = DartAnalyzeAdapter().run(app).issues
    config = FixerConfig()
    fixer = DartFix()
    assert {i.rule for i in issues if fixer.supports(i, config)} == {
        "unused_import", "prefer_const_constructors",
    }  # fmt: skip
    assert not AutoFixer().supports(next(i for i in issues if i.rule == "avoid_print"), config)
    request = FixRequest(
        run_id="r", target=app, config=config, issues=issues,
        batch=BatchPlanned(iteration=1, batch_id="b1", phase="lint", mode="smart",
                           issue_ids=[i.issue_id for i in issues]),
    )  # fmt: skip
    outcome = AutoFixer().fix(request)
    assert outcome.ok, outcome.reason
    dart = str(bin_dir / "dart")
    assert outcome.commands == [
        [dart, "fix", "--apply", "--code=unused_import", "lib/cart.dart"],
        [dart, "fix", "--apply", "--code=prefer_const_constructors", "lib/main.dart"],
    ]
    assert outcome.reason == "dart_analyze issues left for another fixer"  # print, undefined name
    assert [c[1:] for c in calls(log)][-2:] == [cmd[1:] for cmd in outcome.commands]


def test_dart_fix_without_dart_refuses(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    issue = IssueRecord(issue_id="a:0", fingerprint="a", tool="dart_analyze", phase="lint",
                        file="lib/a.dart", rule="unused_import", fix="safe")  # fmt: skip
    assert DartFix().commands(tmp_path, [issue], FixerConfig()) == []


# ---------------------------------------------------------------- flutter test / dart test


def independent_counts(text: str) -> tuple[int, int, int, int]:
    """(total, passed, failed, skipped) from the JSON lines, straight from the protocol doc."""
    done = [json.loads(line) for line in text.splitlines() if '"type":"testDone"' in line]
    visible = [d for d in done if not d["hidden"]]
    passed = sum(1 for d in visible if d["result"] == "success" and not d["skipped"])
    skipped = sum(1 for d in visible if d["skipped"])
    return len(visible), passed, len(visible) - passed - skipped, skipped


def test_flutter_test_with_fake_flutter(app: Path, tmp_path: Path) -> None:
    flutter = fake(tmp_path / "bin", "flutter", FLUTTER_TEST)
    run = FlutterTestAdapter(executable=flutter).run(app)
    expected = independent_counts((FIXTURES / "flutter_test_machine.jsonl").read_text())
    assert run.result.status == "failed"
    assert run.result.exit_status == 1
    assert run.result.version == "3.24.4"
    assert run.result.command == [flutter, "test", "--machine", "--no-pub"]
    assert (run.tests_total, run.tests_passed, run.tests_failed, int(run.metrics["tests_skipped"])) \
        == expected == (5, 3, 1, 1)  # fmt: skip
    assert run.result.counts == {"tests": 5, "passed": 3, "failed": 1, "skipped": 1}
    [issue] = run.issues
    assert (issue.phase, issue.file, issue.line, issue.rule) == (
        "test", "test/cart_test.dart", 15, "failure",
    )  # fmt: skip
    assert issue.message.startswith(FAILING_FLUTTER + ": added plum\nExpected: <27.0>")
    assert "test/cart_test.dart 17:7" in issue.message
    assert str(app) not in issue.message
    assert porcelain(app) == ""


def test_dart_test_with_fake_dart(pkg: Path, tmp_path: Path) -> None:
    dart = fake(tmp_path / "bin", "dart", DART_TEST)
    run = DartTestAdapter(executable=dart).run(pkg)
    expected = independent_counts((FIXTURES / "dart_test_json.jsonl").read_text())
    assert run.result.status == "failed"
    assert run.result.version == "3.5.4"
    assert (run.tests_total, run.tests_passed, run.tests_failed) == expected[:3] == (4, 2, 2)
    by_rule = {i.rule: i for i in run.issues}
    assert set(by_rule) == {"load-error", "failure"}
    load = by_rule["load-error"]
    assert (load.file, load.line) == ("test/parse_test.dart", 0)
    assert "Method not found: 'parseCents'" in load.message
    failure = by_rule["failure"]
    assert (failure.file, failure.line) == ("test/money_test.dart", 13)
    assert failure.message.startswith(
        "test/money_test.dart::rounds to the nearest 5 cents: Expected: <125>"
    )


def test_widget_test_failure_is_located_in_its_own_file(app: Path) -> None:
    """``testWidgets``' ``url`` points into flutter_test; ``root_url`` is the test's file."""
    text = fixture_text("flutter_test_machine.jsonl", APP_ROOT, app).replace(
        '{"testID":11,"result":"success"',
        '{"testID":11,"error":"Test failed. See exception logs above.\\nThe test description was: '
        'tapping + adds an item","stackTrace":"","isFailure":true,"type":"error","time":7660}\n'
        '{"testID":11,"result":"failure"',
    )
    report = parse_test_json(text, app)
    widget = next(f for f in report.findings if "tapping" in f.message)
    assert (widget.file, widget.line, widget.rule) == ("test/widget_test.dart", 6, "failure")
    assert widget.key_message == "test/widget_test.dart::tapping + adds an item"


def test_error_after_completion_and_unfinished_tests_fail(app: Path) -> None:
    text = fixture_text("flutter_test_machine.jsonl", APP_ROOT, app)
    late = text.replace(
        '{"testID":6,"result":"success","skipped":false,"hidden":false,"type":"testDone","time":6251}',
        '{"testID":6,"result":"success","skipped":false,"hidden":false,"type":"testDone","time":6251}\n'
        '{"testID":6,"error":"This test failed after it had already completed.","stackTrace":"",'
        '"isFailure":false,"type":"error","time":6252}',
    )
    report = parse_test_json(late, app)
    assert (report.total, report.failed) == (5, 2)
    assert {f.rule for f in report.findings} == {"failure", "error"}
    truncated = "\n".join(line for line in text.splitlines() if '"testID":7,"result"' not in line)
    report = parse_test_json(truncated, app)
    assert report.failed == 2
    assert any("no testDone" in f.message for f in report.findings)


def test_flutter_test_fingerprints_survive_shifted_lines(app: Path) -> None:
    text = fixture_text("flutter_test_machine.jsonl", APP_ROOT, app)
    shifted = text.replace('"line":15,', '"line":18,').replace(
        "cart_test.dart 17:7", "cart_test.dart 20:7"
    )
    before = to_issues("flutter_test", parse_test_json(text, app).findings)
    after = to_issues("flutter_test", parse_test_json(shifted, app).findings)
    assert [i.issue_id for i in before] == [i.issue_id for i in after]
    assert [i.line + 3 for i in before] == [i.line for i in after]


def test_scoped_flutter_test(app: Path, tmp_path: Path) -> None:
    flutter = fake(tmp_path / "bin", "flutter", FLUTTER_TEST)
    only = FlutterTestAdapter(executable=flutter).run(app, ["test/cart_test.dart"])
    assert only.result.command[-1] == "test/cart_test.dart"
    everything = FlutterTestAdapter(executable=flutter).run(app, ["lib/cart.dart"])
    assert everything.result.command[-1] == "--no-pub"


@pytest.mark.parametrize("cls", [DartAnalyzeAdapter, FlutterTestAdapter, DartTestAdapter],
                         ids=lambda c: c.name)  # fmt: skip
def test_missing_executable_is_a_tool_error(cls, app: Path, tmp_path: Path, monkeypatch) -> None:
    adapter = cls(executable="/nonexistent/bin/" + cls.executable_name)
    assert not adapter.available() and adapter.version() == ""
    assert_tool_error(adapter.run(app), "not found")
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing named dart/flutter anywhere
    assert_tool_error(cls().run(app), "not found")


def truncated_fixture(tmp_path: Path, name: str, keep: int) -> str:
    lines = (FIXTURES / name).read_text().splitlines()[:keep]
    out = tmp_path / f"cut_{name}"
    out.write_text("\n".join(lines) + "\n")
    return str(out)


@pytest.mark.parametrize(
    ("cls", "response", "needle"),
    [
        (FlutterTestAdapter, (["test"], "flutter_test_machine.jsonl", 0, ""), "exit 0 but"),
        (
            FlutterTestAdapter,
            (["test"], None, 1, "Oops; flutter has exited unexpectedly.\n"),
            "no 'done' event",
        ),
        (FlutterTestAdapter, (["test"], "analyze_clean.json", 1, ""), "no 'done' event"),
        (FlutterTestAdapter, (["test"], None, 255, ""), "exit 255"),
        (
            DartTestAdapter,
            (["test"], None, 64, 'Could not find an option named "x".\n'),
            "usage error",
        ),
        (DartTestAdapter, (["test"], "CUT", 1, ""), "no 'done' event"),
    ],
    ids=["exit0-failures", "crash", "no-events", "exit255", "usage", "truncated"],
)
def test_misbehaving_test_runner_is_a_tool_error(
    cls, response, needle, app: Path, tmp_path: Path
) -> None:
    if response[1] == "CUT":
        response = (
            response[0],
            truncated_fixture(tmp_path, "dart_test_json.jsonl", 12),
            *response[2:],
        )
    run = cls(executable=fake(tmp_path / "bin", cls.executable_name, response)).run(app)
    assert_tool_error(run, needle)


def corrupted_fixture(tmp_path: Path, name: str, line: int, old: str, new: str) -> str:
    """A copy of a recorded output with ``old`` replaced by ``new`` on 1-based ``line``."""
    lines = (FIXTURES / name).read_text().splitlines()
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    out = tmp_path / f"bad_{name}"
    out.write_text("\n".join(lines) + "\n")
    return str(out)


@pytest.mark.parametrize(
    ("cls", "prefix", "fixture", "line", "old", "new", "code", "needles"),
    [
        (
            DartAnalyzeAdapter, ["analyze"], "analyze_flutter_app.json", 1,
            '"line":4,', '"line":"4",', 3,
            ["dart analyze: unparsable", "$.diagnostics[3].location.range.start.line"],
        ),
        (
            DartAnalyzeAdapter, ["analyze"], "analyze_flutter_app.json", 1,
            '"severity":"INFO"', '"severity":"NOTICE"', 3,
            ["dart analyze: unparsable", "'NOTICE'", "$.diagnostics[1].severity"],
        ),
        (
            FlutterTestAdapter, ["test"], "flutter_test_machine.jsonl", 3,
            '{"test":{"id":1,', '{"test":{"id":"1",', 1,
            ["flutter_test: unparsable", "stdout line 3 (testStart)", "$.test.id"],
        ),
        (
            DartTestAdapter, ["test"], "dart_test_json.jsonl", 1,
            '"type":', '"type":3,"was":', 1,
            ["dart_test: unparsable", "stdout line 1", "$.type"],
        ),
    ],
    ids=["analyze-line", "analyze-severity", "flutter-test-id", "dart-type"],
)  # fmt: skip
def test_wrongly_typed_json_is_a_tool_error_naming_the_field(
    cls, prefix, fixture, line, old, new, code, needles, app: Path, tmp_path: Path
) -> None:
    bad = corrupted_fixture(tmp_path, fixture, line, old, new)
    run = cls(executable=fake(tmp_path / "bin", cls.executable_name, (prefix, bad, code, ""))).run(
        app
    )
    assert_tool_error(run, *needles)


def test_runner_closed_early_is_a_tool_error(app: Path, tmp_path: Path) -> None:
    cut = Path(truncated_fixture(tmp_path, "flutter_test_machine.jsonl", 26))
    cut.write_text(cut.read_text() + '{"success":null,"type":"done","time":7000}\n')
    run = FlutterTestAdapter(
        executable=fake(tmp_path / "bin", "flutter", (["test"], str(cut), 1, ""))
    ).run(app)
    assert_tool_error(run, "closed before all tests completed")


@pytest.mark.parametrize(
    ("cls", "response"),
    [
        (FlutterTestAdapter, (["test"], None, 1, 'Test directory "test" not found.\n')),
        (DartTestAdapter, (["test"], None, 79, "No tests ran.\n")),
    ],
    ids=["flutter-no-test-dir", "dart-79"],
)
def test_no_tests_is_not_a_pass(cls, response, pkg: Path, tmp_path: Path) -> None:
    run = cls(executable=fake(tmp_path / "bin", cls.executable_name, response)).run(pkg)
    assert (run.result.status, run.tests_total, run.issues) == ("failed", 0, [])
    assert "no tests ran" in run.result.error
