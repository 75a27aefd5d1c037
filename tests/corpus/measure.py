"""The independent re-measure: ruff issues, mypy errors and pytest outcomes of one tree or commit.

Why it exists: the acceptance test must not take airfix's word for anything.  This module never
imports airfix; it calls the tools itself and parses their output itself.  It runs them the way
airfix says it does (read from ``services/tools/ruff.py`` and ``mypy.py``), so a difference in a
count is a difference in what airfix reports, not in how it was measured:

* ruff: ``ruff check --output-format json --no-cache --force-exclude .`` with the ruff next to this
  interpreter (airfix looks there first).  Count = every record.
* mypy: ``mypy -O json --cache-dir DIR [.]`` (``.`` unless the project's mypy configuration names
  ``files``), with ``--python-executable`` of the project (see :data:`MYPY_WITH_PROJECT_PYTHON`).
  Count = every record whose severity is not ``note``.
* pytest: ``python -m pytest`` with the *project's* interpreter, and a plugin of our own that
  writes each report's ``nodeid``/``when``/``outcome`` as JSON lines (node ids are exact, JUnit
  XML loses them).  A collection error is an id of its own with outcome ``error``.  Count = ids
  whose outcome is ``failed`` or ``error``: each test once.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.corpus.repo import worktree_at

#: Whether airfix passes ``--python-executable <the project's interpreter>`` to mypy: it does
#: whenever the project has an interpreter of its own and mypy is not installed in it (true of
#: every corpus venv), so the judge measures that.
MYPY_WITH_PROJECT_PYTHON = True

TOOLS = ("ruff", "mypy", "pytest")
FAILING = ("failed", "error")
MYPY_CONFIGS = ("mypy.ini", ".mypy.ini", "pyproject.toml", "setup.cfg")

PLUGIN_NAME = "corpus_outcomes"
PLUGIN_SOURCE = '''"""Written by tests/corpus/measure.py: every test report as one JSON line."""
import json
import os

_OUT = []


def _write(record):
    if not _OUT:
        _OUT.append(open(os.environ["CORPUS_OUTCOMES"], "a", encoding="utf-8"))
    _OUT[0].write(json.dumps(record) + "\\n")
    _OUT[0].flush()


def pytest_collectreport(report):
    if report.failed:
        _write({"nodeid": report.nodeid or "<collection>", "when": "collect", "outcome": "failed"})


def pytest_runtest_logreport(report):
    _write({"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome})


def pytest_sessionfinish(session, exitstatus):
    _write({"nodeid": "", "when": "sessionfinish", "outcome": str(int(exitstatus))})
'''


class MeasureError(RuntimeError):
    """A tool could not be run or its output not understood: nothing was measured."""


def tool(name: str) -> str:
    """``name`` next to this interpreter (the venv airfix runs from), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise MeasureError(f"{name} is neither next to {sys.executable} nor on PATH")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without a venv or module path of its own leaking in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTEST_ADDOPTS")
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


# ------------------------------------------------------------------------------------ ruff


@dataclass(frozen=True)
class RuffIssue:
    """One ruff record.  Rows are 1-based; ``fix_spans`` are the row ranges its fix edits."""

    file: str
    rule: str
    row: int
    end_row: int
    message: str
    applicability: str  # "safe", "unsafe", "display-only", or "" without a fix
    fix_spans: tuple[tuple[int, int], ...] = ()

    @property
    def safe(self) -> bool:
        return self.applicability == "safe"


def edit_rows(start: dict[str, int], end: dict[str, int], content: str = "") -> tuple[int, int]:
    """The rows an edit really changes.  An edit ending at column 1 of a later row stops at the
    end of the row before (it takes a newline, not that row's text); inserting whole lines at
    column 1 of row R lands after row R - 1, which is the row ``git diff`` says it follows."""
    row, end_row = start["row"], end["row"]
    if end["column"] == 1 and end_row > row:
        end_row -= 1
    pure_insert = (row, start["column"]) == (end["row"], end["column"])
    if pure_insert and start["column"] == 1 and content.endswith("\n"):
        return (row - 1, row - 1)
    return (row, end_row)


def parse_ruff(text: str, tree: Path) -> list[RuffIssue]:
    start = text.find("[")
    if start < 0:
        raise MeasureError(f"ruff printed no JSON array: {text[:500]!r}")
    records = json.loads(text[start:])
    root = tree.resolve()
    issues = []
    for rec in records:
        if rec.get("code") == "E902" or rec.get("name") == "io-error":
            raise MeasureError(f"ruff could not read a file: {rec.get('message')}")
        fix = rec.get("fix") or {}
        issues.append(
            RuffIssue(
                file=Path(os.path.relpath(rec["filename"], root)).as_posix(),
                rule=str(rec.get("code") or rec.get("name") or ""),
                row=int(rec["location"]["row"]),
                end_row=int(rec["end_location"]["row"]),
                message=str(rec.get("message") or ""),
                applicability=str(fix.get("applicability") or ""),
                fix_spans=tuple(
                    edit_rows(e["location"], e["end_location"], e.get("content") or "")
                    for e in fix.get("edits") or ()
                ),
            )
        )
    return issues


def ruff_issues(tree: Path) -> list[RuffIssue]:
    cmd = [tool("ruff"), "check", "--output-format", "json", "--no-cache", "--force-exclude", "."]
    proc = subprocess.run(
        cmd, cwd=tree, capture_output=True, text=True, env=clean_env(), check=False
    )
    if proc.returncode not in (0, 1):
        raise MeasureError(f"ruff exit {proc.returncode} in {tree}: {proc.stderr[-2000:]}")
    return parse_ruff(proc.stdout, tree)


def uses_ruff_format(tree: Path) -> bool:
    """Whether the project uses ruff's formatter (two signals): its configuration says
    so (a ``format`` section, a ``ruff-format`` pre-commit hook) or the tree is already clean."""
    for name, marker in (("pyproject.toml", "[tool.ruff.format]"), ("ruff.toml", "[format]"),
                         (".ruff.toml", "[format]"), (".pre-commit-config.yaml", "ruff-format")):  # fmt: skip
        path = tree / name
        if path.is_file() and marker in path.read_text(errors="replace"):
            return True
    proc = subprocess.run([tool("ruff"), "format", "--check", "--no-cache", "."], cwd=tree,
                          capture_output=True, text=True, env=clean_env(), check=False)  # fmt: skip
    if proc.returncode not in (0, 1):
        raise MeasureError(
            f"ruff format --check exit {proc.returncode} in {tree}: {proc.stderr[-2000:]}"
        )
    return proc.returncode == 0


def ruff_version() -> str:
    out = subprocess.run([tool("ruff"), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


# ------------------------------------------------------------------------------------ mypy


@dataclass(frozen=True)
class MypyError:
    file: str
    line: int
    end_line: int
    code: str
    message: str


def mypy_configures_files(tree: Path) -> bool:
    """Whether the first mypy configuration found names ``files`` (then mypy gets no ``.``)."""
    for name in MYPY_CONFIGS:
        path = tree / name
        if not path.is_file():
            continue
        try:
            if name == "pyproject.toml":
                section = tomllib.loads(path.read_text()).get("tool", {}).get("mypy")
                if section is None:
                    continue
                return bool(section.get("files"))
            parser = configparser.ConfigParser()
            parser.read(path)
            if not parser.has_section("mypy"):
                continue
            return bool(parser.get("mypy", "files", fallback=""))
        except (OSError, ValueError, configparser.Error):
            return False
    return False


def mypy_errors(tree: Path, python: Path, cache: Path) -> list[MypyError]:
    cmd = [tool("mypy"), "-O", "json", "--cache-dir", str(cache)]
    if MYPY_WITH_PROJECT_PYTHON:
        cmd += ["--python-executable", str(python)]
    if not mypy_configures_files(tree):
        cmd.append(".")
    proc = subprocess.run(
        cmd, cwd=tree, capture_output=True, text=True, env=clean_env(), check=False
    )
    errors, syntax = [], False
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        if rec.get("severity") == "note":
            continue
        code = str(rec.get("code") or "mypy")
        syntax = syntax or code == "syntax"
        errors.append(
            MypyError(
                file=str(rec.get("file") or ""),
                line=int(rec.get("line") or 0),
                end_line=int(rec.get("end_line") or rec.get("line") or 0),
                code=code,
                message=str(rec.get("message") or ""),
            )
        )
    if proc.returncode not in (0, 1, 2) or (proc.returncode == 2 and not syntax):
        raise MeasureError(
            f"mypy exit {proc.returncode} in {tree}: {(proc.stdout + proc.stderr)[-2000:]}"
        )
    if (proc.returncode == 1) != bool(errors) and proc.returncode != 2:
        raise MeasureError(
            f"mypy exit {proc.returncode} with {len(errors)} error records in {tree}"
        )
    return errors


# ---------------------------------------------------------------------------------- pytest


def outcomes_from(records: Iterable[dict[str, str]]) -> dict[str, str]:
    """One outcome per node id from the plugin's records.

    setup failed → error; call failed → failed; skipped (xfail included) → skipped; a teardown
    failure turns a passed or skipped test into error; a collection failure is ``error``.
    """
    result: dict[str, str] = {}
    for rec in records:
        nodeid, when, outcome = rec["nodeid"], rec["when"], rec["outcome"]
        if when == "sessionfinish":
            continue
        if when == "collect":
            result[nodeid] = "error"
        elif when == "setup":
            result[nodeid] = {"failed": "error", "skipped": "skipped"}.get(outcome, "passed")
        elif when == "call":
            if result.get(nodeid) != "error":
                result[nodeid] = outcome if outcome in ("passed", "failed", "skipped") else "error"
        elif when == "teardown" and outcome == "failed" and result.get(nodeid) != "failed":
            result[nodeid] = "error"
    return result


@dataclass
class PytestRun:
    outcomes: dict[str, str]
    exit_code: int
    output_tail: str


def run_pytest(
    tree: Path,
    python: Path,
    test_paths: Sequence[str],
    import_paths: Sequence[str],
    timeout_s: float = 900.0,
) -> PytestRun:
    """The tree's tests with the project's interpreter; ``import_paths`` of *this* tree go first on
    ``sys.path`` (so a venv's editable ``.pth`` pointing at another checkout cannot win)."""
    with tempfile.TemporaryDirectory(prefix="corpus-pytest-") as tmp:
        tmpdir = Path(tmp)
        (tmpdir / f"{PLUGIN_NAME}.py").write_text(PLUGIN_SOURCE)
        out = tmpdir / "outcomes.jsonl"
        paths = [str(tmpdir), *(str(tree / p) for p in import_paths)]
        env = clean_env(PYTHONPATH=os.pathsep.join(paths), CORPUS_OUTCOMES=str(out),
                        HYPOTHESIS_STORAGE_DIRECTORY=str(tmpdir / "hypothesis"))  # fmt: skip
        cmd = [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-p", PLUGIN_NAME, "-q",
               "--rootdir", str(tree), "--continue-on-collection-errors", *test_paths]  # fmt: skip
        try:
            proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, env=env,
                                  timeout=timeout_s, check=False)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise MeasureError(f"pytest took more than {timeout_s}s in {tree}") from exc
        records = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    tail = (proc.stdout + proc.stderr)[-3000:]
    finished = any(r["when"] == "sessionfinish" for r in records)
    outcomes = outcomes_from(records)
    if proc.returncode == 5:
        raise MeasureError(f"pytest collected no tests in {tree}: {tail}")
    if proc.returncode not in (0, 1) or not finished:
        # the session broke (a conftest that no longer imports, an internal error): whatever
        # ran is kept, and the breakage is an item of its own so every missing test shows
        outcomes[f"<pytest exit {proc.returncode}>"] = "error"
    return PytestRun(outcomes=outcomes, exit_code=proc.returncode, output_tail=tail)


# ------------------------------------------------------------------------------ measurement


@dataclass
class Measurement:
    """What the tools say about one tree; a tool left out is ``None``."""

    ruff: list[RuffIssue] | None = None
    mypy: list[MypyError] | None = None
    tests: dict[str, str] | None = None
    pytest_tail: str = ""

    def counts(self) -> dict[str, int]:
        """Per tool, the count airfix reports for it (issues; failing tests once each)."""
        out: dict[str, int] = {}
        if self.ruff is not None:
            out["ruff"] = len(self.ruff)
        if self.mypy is not None:
            out["mypy"] = len(self.mypy)
        if self.tests is not None:
            out["pytest"] = sum(1 for o in self.tests.values() if o in FAILING)
        return out

    def safe_by_key(self) -> Counter[tuple[str, str]]:
        """Safely fixable ruff issues per (file, rule)."""
        return Counter((i.file, i.rule) for i in self.ruff or () if i.safe)

    @property
    def safe_total(self) -> int:
        return sum(1 for i in self.ruff or () if i.safe)

    def passed(self) -> set[str]:
        return {t for t, o in (self.tests or {}).items() if o == "passed"}


def import_lines(source: bytes) -> set[int]:
    """The lines covered by an ``import``/``from ... import`` statement in Python ``source``
    (none when it does not parse)."""
    try:
        with warnings.catch_warnings():  # invalid escapes in old code are not our concern
            warnings.simplefilter("ignore")
            module = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    lines: set[int] = set()
    for node in ast.walk(module):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def measure_tree(
    tree: Path,
    *,
    python: Path,
    test_paths: Sequence[str] = (),
    import_paths: Sequence[str] = (),
    tools: Sequence[str] = TOOLS,
    mypy_cache: Path | None = None,
) -> Measurement:
    """Measure a directory as it is with the tools named in ``tools``."""
    m = Measurement()
    if "ruff" in tools:
        m.ruff = ruff_issues(tree)
    if "mypy" in tools:
        with tempfile.TemporaryDirectory(prefix="corpus-mypy-") as tmp:
            m.mypy = mypy_errors(tree, python, mypy_cache or Path(tmp))
    if "pytest" in tools:
        run = run_pytest(tree, python, test_paths, import_paths)
        m.tests, m.pytest_tail = run.outcomes, run.output_tail
    return m


def measure_commit(
    repo: Path,
    sha: str,
    *,
    python: Path,
    test_paths: Sequence[str] = (),
    import_paths: Sequence[str] = (),
    tools: Sequence[str] = TOOLS,
    mypy_cache: Path | None = None,
) -> Measurement:
    """Measure commit ``sha`` of ``repo`` in a temporary worktree (the repository is untouched)."""
    with worktree_at(repo, sha) as tree:
        return measure_tree(tree, python=python, test_paths=test_paths,
                            import_paths=import_paths, tools=tools, mypy_cache=mypy_cache)  # fmt: skip
