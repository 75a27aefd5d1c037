"""Real Python releases: airfix's run, judged by an independent re-measure.

For each project of ``tests/fixtures/corpus/python.json``: fetch the sdist (cached), make a fresh
one-commit repository, give it its own venv, measure it (``tests.corpus.measure``, which never
imports airfix), run ``airfix run --target REPO --fixer autofix --max-iterations 3 --json`` as a
user would, then re-measure the run branch commit by commit and check what airfix claims against
what is there.  Every failed check of a project is reported together, each naming the project,
the figure and the commit, so one run of this test says everything that is wrong:

* at least 90% of the baseline's safely fixable ruff issues are gone at the run branch's tip
  (counted per file and rule), in the commits the summary lists;
* every test that passed at the baseline passes at the tip (by node id), the manifest's
  ``ruff_fix_breaks`` tests included, and the tests did run (the summary's pytest status is not
  ``skipped`` while tests pass);
* the summary's per-tool counts before/after and each commit's ``Counts (before -> after)``
  equal the re-measure of the baseline/tip and of the commit's parent/the commit;
* each commit names its rules, only rules with issues in its files, the right number of files,
  and changes only lines of its issues (``tests.corpus.diffcheck``);
* each commit is one the full per-batch verification keeps, whatever faster verification airfix
  used (a stack's tip, the tests test impact chose): judged alone on its parent, no test that
  passed there fails and no (file, rule) gains a ruff or mypy issue;
* a test counts as broken (here and at the tip) only if, run alone, it fails each time at the
  commit and passes each time at the parent: one whose outcome moves with no change to the code
  (a property test finding a rare example) is flaky, listed in the figures, held against no one;
* a project with an in-repository venv: the summary names its interpreter, and no issue or tool
  error of the run is a dependency that venv has.

The quick tests at the end pin the checkers themselves on small hand-made inputs: a checker that
cannot fail would make the acceptance test worthless.

``AIRFIX_CORPUS_PROJECTS=six,toolz`` limits the slow tests to some projects (and is the only way
to run one the manifest keeps out of CI, ``in_ci: false``);
``AIRFIX_CORPUS_REPORT=DIR`` writes each project's figures to ``DIR/<project>.json`` (for the
benchmark).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from tests.corpus import commits, diffcheck, hand, manifest, measure, pypi
from tests.corpus import repo as git
from tests.corpus.manifest import Project
from tests.corpus.measure import Measurement

MAX_ITERATIONS = 3
RERUNS = 2  # a test judged broken by a whole-suite run must fail alone this often (and pass before)
MIN_FRACTION_REMOVED = 0.9
AIRFIX_TIMEOUT_S = 1800.0
MEASURED = ("ruff", "mypy", "pytest")
DEPENDENCY_ERROR = re.compile(
    r"ModuleNotFoundError|No module named|import-not-found|Cannot find implementation or library "
    r"stub|Library stubs not installed|import-untyped"
)


def selected(projects: list[Project]) -> list[Project]:
    wanted = {
        n.strip() for n in os.environ.get("AIRFIX_CORPUS_PROJECTS", "").split(",") if n.strip()
    }
    unknown = wanted - {p.name for p in projects}
    if unknown:
        raise ValueError(f"AIRFIX_CORPUS_PROJECTS names unknown projects: {sorted(unknown)}")
    return [p for p in projects if p.name in wanted or (not wanted and p.in_ci)]


PROJECTS = selected(manifest.load())


# --------------------------------------------------------------------------------- the judge


@dataclass
class Judge:
    """Measurements of one repository's commits, each taken once (in a temporary worktree)."""

    project: Project
    repo: Path
    python: Path
    mypy_cache: Path
    seen: dict[str, Measurement] = field(default_factory=dict)
    seconds: float = 0.0
    flaky: set[str] = field(default_factory=set)  # outcome changed with no change to the code
    failures: dict[str, str] = field(default_factory=dict)  # sha: a failing re-run's output

    def at(self, sha: str, tools: Iterable[str] = MEASURED) -> Measurement:
        have = self.seen.get(sha)
        wanted = [t for t in MEASURED if t in set(tools)]
        missing = [
            t
            for t in wanted
            if have is None or getattr(have, t if t != "pytest" else "tests") is None
        ]
        if missing:
            start = time.monotonic()
            new = measure.measure_commit(
                self.repo, sha, python=self.python, test_paths=self.project.test_paths,
                import_paths=self.project.import_paths, tools=missing, mypy_cache=self.mypy_cache,
            )  # fmt: skip
            self.seconds += time.monotonic() - start
            if have is None:
                have = self.seen[sha] = new
            else:
                have.ruff = have.ruff if new.ruff is None else new.ruff
                have.mypy = have.mypy if new.mypy is None else new.mypy
                if new.tests is not None:
                    have.tests, have.pytest_tail = new.tests, new.pytest_tail
        assert have is not None
        return have

    def confirm_broken(self, parent: str, sha: str, tests: list[str]) -> list[str]:
        """Of ``tests`` (passed at ``parent``, not at ``sha`` in the whole-suite runs), those that
        also fail at ``sha`` and pass at ``parent`` each of ``RERUNS`` times they run alone; the
        rest changed outcome with no change to the code (a property test that found a rare
        example, a deadline on a loaded machine): flaky, judged by neither side.  The output of
        a failing re-run is kept for the report."""
        if not tests:
            return []
        start = time.monotonic()
        runs: dict[str, list[measure.PytestRun]] = {}
        for at in (parent, sha):
            with git.worktree_at(self.repo, at) as tree:
                runs[at] = [
                    measure.run_pytest(tree, self.python, tests, self.project.import_paths)
                    for _ in range(RERUNS)
                ]
        self.seconds += time.monotonic() - start
        broken = [
            t
            for t in tests
            if all(r.outcomes.get(t) == "passed" for r in runs[parent])
            and all(r.outcomes.get(t) != "passed" for r in runs[sha])
        ]
        self.flaky.update(t for t in tests if t not in broken)
        if broken:
            self.failures[sha] = runs[sha][0].output_tail[-1500:]
        return broken

    def imports(self, sha: str, files: Iterable[str]) -> dict[str, set[int]]:
        out = {}
        for f in files:
            source = git.show_file(self.repo, sha, f)
            out[f] = measure.import_lines(source) if source is not None else set()
        return out


# ------------------------------------------------------------------------------ running airfix


def airfix_command() -> list[str]:
    script = Path(sys.executable).parent / "airfix"
    return (
        [str(script)]
        if script.is_file()
        else [sys.executable, "-m", "airfix.services.commands.cli"]
    )


@dataclass
class AirfixRun:
    summary: dict[str, Any]
    exit_code: int
    seconds: float
    stderr_tail: str
    command: list[str]


def run_airfix(project: Project, repo: Path, python: Path, cwd: Path) -> AirfixRun:
    cmd = [*airfix_command(), "run", "--target", str(repo), "--fixer", "autofix",
           "--max-iterations", str(MAX_ITERATIONS), "--json"]  # fmt: skip
    if project.venv == "outside":
        cmd += ["--python", str(python)]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=measure.clean_env(),
                              timeout=AIRFIX_TIMEOUT_S, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{project.key}: airfix run did not finish in {AIRFIX_TIMEOUT_S:.0f}s "
                    f"({' '.join(cmd)}); stderr tail: {str(exc.stderr or '')[-2000:]}")  # fmt: skip
    seconds = time.monotonic() - start
    summary = parse_summary(proc.stdout)
    if summary is None:
        pytest.fail(f"{project.key}: airfix run exit {proc.returncode} printed no JSON summary "
                    f"({' '.join(cmd)});\nstdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}")  # fmt: skip
    return AirfixRun(summary, proc.returncode, seconds, proc.stderr[-3000:], cmd)


def parse_summary(stdout: str) -> dict[str, Any] | None:
    for candidate in (stdout.strip(), *reversed(stdout.strip().splitlines())):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict) and "run_id" in value:
            return value
    return None


def export_events(run_id: str, cwd: Path) -> list[dict[str, Any]]:
    proc = subprocess.run([*airfix_command(), "export", run_id], cwd=cwd, capture_output=True,
                          text=True, env=measure.clean_env(), check=False)  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(
            f"airfix export {run_id}: exit {proc.returncode}: {proc.stderr[-2000:]}"
        )
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def issues_in(value: Any) -> Iterable[dict[str, Any]]:
    """Every issue record anywhere in an event (a dict with a message and a rule or a tool)."""
    if isinstance(value, dict):
        if isinstance(value.get("message"), str) and ("rule" in value or "tool" in value):
            yield value
        for v in value.values():
            yield from issues_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from issues_in(v)


# ------------------------------------------------------------------------------------ checks


def tool_rows(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["tool"]: row for row in summary.get("tools") or [] if isinstance(row, dict)}


def check_summary_counts(
    key: str, summary: dict[str, Any], before: Measurement, after: Measurement, problems: list[str]
) -> None:
    rows = tool_rows(summary)
    for name in MEASURED:
        row = rows.get(name)
        if row is None:
            problems.append(f"{key}: the summary has no row for {name} (tools: {sorted(rows)})")
            continue
        for when, m, status in (("before", before, row.get("status_before")),
                                ("after", after, row.get("status_after"))):  # fmt: skip
            if name == "pytest" and status not in ("passed", "failed") and m.passed():
                problems.append(f"{key}: the summary's pytest status {when} is {status}, though "
                                f"{len(m.passed())} tests pass there: commits not verified by tests")  # fmt: skip
            claimed, actual = row.get(f"issues_{when}"), m.counts()[name]
            if claimed != actual:
                problems.append(f"{key}: summary {name} issues {when} = {claimed} (status {status}), "
                                f"re-measure = {actual}")  # fmt: skip


def check_commit_claims(
    key: str,
    judge: Judge,
    parent: str,
    sha: str,
    problems: list[str],
    offences: list[diffcheck.Offence],
) -> None:
    message = git.commit_message(judge.repo, sha)
    claims = commits.parse(message)
    changed = git.changed_files(judge.repo, parent, sha)
    where = f"{key}: commit {sha[:10]} {claims.subject!r}"
    problems.extend(f"{where}: {p}" for p in claims.problems)
    tools = set(claims.counts or {}) & set(MEASURED)
    before, after = judge.at(parent, {"ruff", *tools}), judge.at(sha, {"ruff", *tools})
    if claims.counts is None:
        problems.append(f"{where}: no 'Counts (before -> after):' block in its body")
    else:
        if "ruff" not in claims.counts:
            problems.append(f"{where}: its Counts block has no ruff line")
        for name, (b, a) in sorted(claims.counts.items()):
            if name not in MEASURED:
                problems.append(
                    f"{where}: Counts names {name!r}, which the corpus cannot re-measure"
                )
                continue
            real_b, real_a = before.counts()[name], after.counts()[name]
            if (b, a) != (str(real_b), str(real_a)):
                problems.append(f"{where}: body says {name}: {b} -> {a}, re-measure (parent -> "
                                f"commit) is {real_b} -> {real_a}")  # fmt: skip
    rules = claims.rules or []
    if not rules:
        problems.append(f"{where}: no 'Rules:' line naming its rules")
    on_parent = {(i.file, i.rule) for i in before.ruff or ()} | {
        (e.file, e.code) for e in before.mypy or ()
    }
    for rule in rules:
        if not any((f, rule) in on_parent for f in changed):
            problems.append(
                f"{where}: names rule {rule} but no {rule} issue is in its files at the parent"
            )
    for f in changed:
        if rules and not any((f, r) in on_parent for r in rules):
            problems.append(f"{where}: changes {f}, where none of its rules ({', '.join(rules)}) "
                            "has an issue at the parent")  # fmt: skip
    for label, n in (("subject", claims.subject_files), ("body", claims.body_files)):
        if n is not None and n != len(changed):
            problems.append(
                f"{where}: the {label} says {n} file(s), the commit changes {len(changed)}"
            )
    diff = git.diff_u0(judge.repo, parent, sha)
    offences.extend(
        diffcheck.check_commit(sha, diff, before, rules, judge.imports(parent, changed))
    )


def check_full_verdict(key: str, judge: Judge, parent: str, sha: str, problems: list[str]) -> None:
    """Whatever airfix's faster verification did (a stack's tip, tests test impact chose), each
    kept commit must be one that the full per-batch verification keeps: judged alone on its
    parent, no test that passed there fails, and no (file, rule) gains a ruff or mypy issue."""
    before, after = judge.at(parent), judge.at(sha)
    where = f"{key}: commit {sha[:10]}"
    broken = sorted(t for t in before.passed() if (after.tests or {}).get(t) != "passed")
    broken = judge.confirm_broken(parent, sha, broken)
    if broken:
        problems.append(f"{where}: the full verification would reject it: {len(broken)} test(s) pass "
                        f"at its parent and not at it: {', '.join(broken[:5])}\n"
                        f"{judge.failures[sha]}")  # fmt: skip
    for tool, was, now in (
        ("ruff", Counter((i.file, i.rule) for i in before.ruff or ()),
         Counter((i.file, i.rule) for i in after.ruff or ())),
        ("mypy", Counter((e.file, e.code) for e in before.mypy or ()),
         Counter((e.file, e.code) for e in after.mypy or ())),
    ):  # fmt: skip
        grown = sorted(k for k in now if now[k] > was[k])
        if grown:
            problems.append(f"{where}: the full verification would reject it: new {tool} issue(s) "
                            f"{', '.join(f'{f} {r}' for f, r in grown[:5])}")  # fmt: skip


def dependency_error(project: Project, text: str) -> bool:
    """Whether ``text`` says one of the project's venv-only dependencies is missing."""
    named = DEPENDENCY_ERROR.search(text) and any(m in text for m in project.venv_only_modules)
    return bool(named) or any(marker in text for marker in project.dependency_error_markers)


def check_dependency_issues(
    key: str, project: Project, events: list[dict[str, Any]], problems: list[str]
) -> None:
    """No issue of the run (and no tool error) is a dependency the project's venv has.

    A run that never recorded its issues (no ``IssuesDiscovered``) cannot pass this vacuously.
    """
    if not any(e.get("type") == "IssuesDiscovered" for e in events):
        problems.append(f"{key}: the run recorded no IssuesDiscovered event: its issues cannot be "
                        "checked for dependency errors")  # fmt: skip
    hits = set()
    for event in events:
        for issue in issues_in(event):
            text = str(issue.get("message"))
            if dependency_error(project, text):
                hits.add(f"{event.get('type')}: [{issue.get('tool')} {issue.get('rule')}] "
                         f"{text.splitlines()[0][:200]}")  # fmt: skip
        for result in event.get("tools") or []:
            error = str(result.get("error") or "") if isinstance(result, dict) else ""
            if dependency_error(project, error):
                last = [line for line in error.splitlines() if line.strip()][-1][:200]
                hits.add(
                    f"{event.get('type')}: {result.get('tool')} {result.get('status')}: {last}"
                )
    if hits:
        problems.append(f"{key}: the run reports dependencies of the project's venv as missing "
                        f"({len(hits)} distinct): " + "; ".join(sorted(hits)[:8]))  # fmt: skip


def venv_named(summary: dict[str, Any], python: Path) -> bool:
    text = json.dumps(summary)
    bindir = str(python.parent)
    return any(str(c) in text for c in (python, bindir + "/python3")) or f"{bindir}/python" in text


def module_importable(python: Path | str, module: str) -> bool:
    proc = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True,
                          env=measure.clean_env(), check=False)  # fmt: skip
    return proc.returncode == 0


def fmt_rules(counter: Counter[tuple[str, str]]) -> str:
    by_rule: Counter[str] = Counter()
    for (_, rule), n in counter.items():
        by_rule[rule] += n
    return ", ".join(f"{r} {n}" for r, n in by_rule.most_common())


def check_corpus(project: Project, repo: Path, python: str, base: str, judge: Judge) -> Measurement:
    """The corpus itself must be what the manifest says, or the run's verdicts mean nothing."""
    key = project.key
    assert git.status_porcelain(repo) == "", f"{key}: the fresh repository is not clean"
    for module in project.venv_only_modules:
        assert not module_importable(sys.executable, module), f"{key}: airfix's env has {module}"
        assert module_importable(python, module), f"{key}: the project's venv lacks {module}"
    with git.worktree_at(repo, base) as tree:
        assert not measure.uses_ruff_format(tree), (
            f"{key} uses ruff's formatter: the diff check would need a formatter exemption"
        )
    baseline = judge.at(base)
    assert baseline.safe_total > 0, f"{key}: no safely fixable ruff issue at the baseline"
    assert baseline.passed(), f"{key}: no test passes at the baseline:\n{baseline.pytest_tail}"
    for test_id in project.ruff_fix_breaks:
        assert (baseline.tests or {}).get(test_id) == "passed", (
            f"{key}: {test_id} does not pass at the baseline"
        )
    return baseline


# ------------------------------------------------------------------------------ the test


@pytest.mark.slow
@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.key)
def test_airfix_run_survives_an_independent_remeasure(project: Project, tmp_path: Path) -> None:
    started = time.monotonic()
    key = project.key
    repo = tmp_path / project.name
    base = git.make_repo(
        pypi.fetch_sdist(project), repo, f"{project.name} {project.version} (sdist)"
    )
    python = pypi.project_python(project, repo)
    judge = Judge(project, repo, python, git.cache_dir("mypy", key))
    setup_s = time.monotonic() - started

    baseline = check_corpus(project, repo, python, base, judge)

    run = run_airfix(project, repo, python, tmp_path)
    summary = run.summary
    problems: list[str] = []
    offences: list[diffcheck.Offence] = []
    context = (f"{key}: airfix {summary.get('status')} ({summary.get('reason')}), exit {run.exit_code}, "
               f"{run.seconds:.0f}s, {len(summary.get('commits') or [])} commit(s), "
               f"{len(summary.get('rolled_back') or [])} rolled back")  # fmt: skip

    # where the work is
    branch = summary.get("branch") or ""
    if summary.get("base_sha") != base:
        problems.append(
            f"{key}: summary base_sha {summary.get('base_sha')} is not the repository's {base}"
        )
    claimed = [c.get("sha") for c in summary.get("commits") or []]
    shas: list[str] = []
    if branch in git.branches(repo):
        shas = git.commits_since(repo, base, branch)
    elif claimed:  # a run without commits may remove its empty branch
        problems.append(
            f"{key}: the summary's branch {branch!r} does not exist (branches: {git.branches(repo)})"
        )
    if sorted(claimed) != sorted(shas):
        problems.append(f"{key}: the summary lists commits {[str(c)[:10] for c in claimed]}, "
                        f"branch {branch} has {[s[:10] for s in shas]}")  # fmt: skip
    tip = shas[-1] if shas else base
    after = judge.at(tip)

    # 90% of the safely fixable issues gone, in commits
    gone = hand.removed(baseline, after)
    fraction = gone / baseline.safe_total
    if fraction < MIN_FRACTION_REMOVED:
        now = after.safe_by_key()
        left = Counter({k: min(n, now[k]) for k, n in baseline.safe_by_key().items() if now[k]})
        problems.append(f"{key}: {gone} of {baseline.safe_total} safely fixable ruff issues are gone at "
                        f"the tip {tip[:10]} ({fraction:.0%}, need {MIN_FRACTION_REMOVED:.0%}); left: "
                        f"{fmt_rules(left)}")  # fmt: skip

    # no test that passed before fails now
    broken = sorted(t for t in baseline.passed() if (after.tests or {}).get(t) != "passed")
    broken = judge.confirm_broken(base, tip, broken)
    if broken:
        problems.append(f"{key}: {len(broken)} test(s) passed at the baseline and do not at the tip "
                        f"{tip[:10]}: " + ", ".join(f"{t} ({(after.tests or {}).get(t, 'missing')})"
                                                    for t in broken[:15]))  # fmt: skip
    for test_id in project.ruff_fix_breaks:
        if (after.tests or {}).get(test_id) != "passed":
            problems.append(f"{key}: {test_id}, which a plain ruff check --fix breaks, does not pass "
                            f"at the tip ({(after.tests or {}).get(test_id, 'missing')})")  # fmt: skip

    # every reported count equals the re-measure; every diff stays on its issues' lines
    check_summary_counts(key, summary, baseline, after, problems)
    parent = base
    for sha in shas:
        check_commit_claims(key, judge, parent, sha, problems, offences)
        check_full_verdict(key, judge, parent, sha, problems)
        parent = sha

    # the project's own environment
    if project.venv == "in-repo" and not venv_named(summary, python):
        problems.append(f"{key}: the summary never names the project's interpreter {python}")
    if project.venv_only_modules:
        check_dependency_issues(key, project, export_events(summary["run_id"], tmp_path), problems)

    if offences:
        per_commit = Counter(o.commit[:10] for o in offences)
        problems.append(
            f"{key}: {len(offences)} offending hunk(s) (per commit: "
            + ", ".join(f"{c} {n}" for c, n in per_commit.items())
            + "), each below"
        )

    figures = {
        "project": key, "status": summary.get("status"), "reason": summary.get("reason"),
        "airfix_exit": run.exit_code, "airfix_s": round(run.seconds, 1),
        "remeasure_s": round(judge.seconds, 1), "setup_s": round(setup_s, 1),
        "total_s": round(time.monotonic() - started, 1), "commits": len(shas),
        "safe_before": baseline.safe_total, "safe_gone": gone,
        "safe_after": after.safe_total, "broken_tests": broken, "flaky": sorted(judge.flaky),
        "counts_before": baseline.counts(), "counts_after": after.counts(),
        "offending_hunks": [str(o) for o in offences], "summary_tools": summary.get("tools"),
        "rolled_back": [str(r.get("reason"))[:300] for r in summary.get("rolled_back") or []],
        "failed": [str(r.get("reason"))[:300] for r in summary.get("failed") or []],
        "problems": problems,
    }  # fmt: skip
    report_dir = os.environ.get("AIRFIX_CORPUS_REPORT")
    if report_dir:
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        (Path(report_dir) / f"{key}.json").write_text(json.dumps(figures, indent=2) + "\n")
    shown = {k: v for k, v in figures.items() if k not in ("problems", "summary_tools")}
    print(json.dumps({**shown, "offending_hunks": len(offences)}))
    if problems:
        detail = [f"{key}: offending hunk {o}" for o in offences]
        pytest.fail(f"{context}\n{len(problems)} problem(s):\n" + "\n".join(problems + detail),
                    pytrace=False)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("project", [p for p in PROJECTS if p.ruff_fix_breaks], ids=lambda p: p.key)
def test_plain_ruff_fix_breaks_the_recorded_tests(project: Project, tmp_path: Path) -> None:
    """The hand script end to end, and the proof behind the manifest's ``ruff_fix_breaks``."""
    repo = tmp_path / project.name
    base = git.make_repo(pypi.fetch_sdist(project), repo)
    python = pypi.project_python(project, repo)
    result = hand.hand_fix(repo, base, python=python, test_paths=project.test_paths,
                           import_paths=project.import_paths)  # fmt: skip
    print(json.dumps({"project": project.key, "safe_before": result.safe_before,
                      "safe_removed": result.safe_removed, "broken": result.broken}))  # fmt: skip
    assert result.safe_before > 0 and 0 < result.fraction_removed <= 1
    assert set(project.ruff_fix_breaks) <= set(result.broken), (
        f"{project.key}: the manifest says ruff check --fix breaks {list(project.ruff_fix_breaks)}, "
        f"the hand script broke {result.broken}"
    )
    assert git.status_porcelain(repo) == "", "the hand script changed the repository"


# ------------------------------------------------------------- the checkers, on small inputs


def _ruff(file: str, rule: str, row: int, end_row: int, fix: tuple[tuple[int, int], ...] = ()
          ) -> measure.RuffIssue:  # fmt: skip
    return measure.RuffIssue(file, rule, row, end_row, "m", "safe" if fix else "", fix)


def test_diff_checker_flags_hunks_off_the_issues_lines() -> None:
    parent = Measurement(ruff=[_ruff("a.py", "UP004", 10, 10, ((10, 10),)),
                               _ruff("a.py", "W605", 30, 30, ((25, 25),)),
                               _ruff("b.py", "UP004", 3, 3, ((3, 3),))], mypy=[])  # fmt: skip
    lines = [
        "diff --git a/a.py b/a.py", "--- a/a.py", "+++ b/a.py",
        "@@ -10 +10 @@", "-class A(object):", "+class A:",          # on the issue: fine
        "@@ -25 +25 @@", '-x = """', '+x = r"""',                   # the W605 fix's own edit: fine
        "@@ -2 +1,0 @@", "-import os",                              # an import line: fine
        "@@ -40,2 +40,2 @@", "-y=1", "-z=2", "+y = 1", "+z = 2",    # reformatting: offence
        "@@ -50,0 +51 @@", "+# added",                              # added after line 50: offence
        "@@ -9,0 +10 @@", "+import bisect",                         # inserted at the span's top: fine
        "diff --git a/b.py b/b.py", "--- a/b.py", "+++ b/b.py",
        "@@ -3 +3 @@", "-class B(object):", "+class B:",            # a rule the commit does not name
        "diff --git a/c.py b/c.py", "new file mode 100644", "--- /dev/null", "+++ b/c.py",
        "@@ -0,0 +1 @@", "+x = 1",                                  # a new file: offence
    ]  # fmt: skip
    diff = "\n".join(lines)
    offences = diffcheck.check_commit("f" * 40, diff, parent, ["UP004", "W605"], {"a.py": {2}})
    assert [(o.hunk.new_file, o.hunk.header) for o in offences] == [
        ("a.py", "@@ -40,2 +40,2 @@"), ("a.py", "@@ -50,0 +51 @@"), ("c.py", "@@ -0,0 +1 @@"),
    ]  # fmt: skip
    only_up004 = diffcheck.check_commit("f" * 40, diff, parent, ["UP004"], {"a.py": {2}})
    assert ("a.py", "@@ -25 +25 @@") in [(o.hunk.new_file, o.hunk.header) for o in only_up004]


def test_ruff_fix_rows_follow_what_the_edit_changes() -> None:
    # I001 replaces rows 1-9 up to column 1 of row 10: rows 1-9 change, row 10 does not
    assert measure.edit_rows({"row": 1, "column": 1}, {"row": 10, "column": 1}, "x\n") == (1, 9)
    # I002 inserts a whole line at row 3: git says it follows row 2
    assert measure.edit_rows({"row": 3, "column": 1}, {"row": 3, "column": 1}, "import x\n") == (
        2,
        2,
    )
    # an r prefix inserted at column 1 changes row 7 itself
    assert measure.edit_rows({"row": 7, "column": 1}, {"row": 7, "column": 1}, "r") == (7, 7)


def test_commit_claims_are_read_from_the_message() -> None:
    lines = [
        "chore: remove all useless object inheritance (2 files)", "",
        "Batch: run-x/1-2 (cleanup, lint phase, smart mode)", "Issues: 5 in 2 files",
        "Rules: UP004, UP008", "Counts (before -> after):", "  mypy: 4 -> 4", "  ruff: 74 -> 69",
        "Fixer: autofix", "", "Airfix-Batch: run-x/1-2",
    ]  # fmt: skip
    claims = commits.parse("\n".join(lines))
    assert claims.rules == ["UP004", "UP008"]
    assert claims.counts == {"mypy": ("4", "4"), "ruff": ("74", "69")}
    assert (claims.subject_files, claims.body_files) == (2, 2)
    assert commits.parse("fix: something\n\nFixer: autofix").counts is None


def test_test_outcomes_count_each_test_once() -> None:
    records = [
        {"nodeid": "t.py::a", "when": "setup", "outcome": "passed"},
        {"nodeid": "t.py::a", "when": "call", "outcome": "failed"},
        {"nodeid": "t.py::a", "when": "teardown", "outcome": "failed"},
        {"nodeid": "t.py::b", "when": "setup", "outcome": "failed"},
        {"nodeid": "t.py::b", "when": "teardown", "outcome": "passed"},
        {"nodeid": "t.py::c", "when": "setup", "outcome": "passed"},
        {"nodeid": "t.py::c", "when": "call", "outcome": "passed"},
        {"nodeid": "t.py::c", "when": "teardown", "outcome": "failed"},
        {"nodeid": "t.py::d", "when": "setup", "outcome": "skipped"},
        {"nodeid": "u.py", "when": "collect", "outcome": "failed"},
        {"nodeid": "", "when": "sessionfinish", "outcome": "1"},
    ]
    outcomes = measure.outcomes_from(records)
    assert outcomes == {"t.py::a": "failed", "t.py::b": "error", "t.py::c": "error",
                        "t.py::d": "skipped", "u.py": "error"}  # fmt: skip
    assert Measurement(tests=outcomes).counts() == {"pytest": 4}


def test_removed_counts_per_file_and_rule() -> None:
    before = Measurement(ruff=[_ruff("a.py", "F401", 1, 1, ((1, 1),)), _ruff("a.py", "F401", 2, 2, ((2, 2),)),
                               _ruff("b.py", "UP004", 1, 1, ((1, 1),))])  # fmt: skip
    after = Measurement(
        ruff=[_ruff("a.py", "F401", 1, 1, ((1, 1),)), _ruff("c.py", "UP004", 1, 1, ((1, 1),))]
    )
    assert hand.removed(before, after) == 2  # a new UP004 in c.py does not make up for anything


def test_a_test_that_changes_outcome_alone_is_flaky_not_broken(tmp_path: Path) -> None:
    """The judge holds a test against a commit only if it fails there and passes at the parent
    every time it runs alone: a genuine break is kept, an outcome that moves by itself is not."""
    src, counter = tmp_path / "src", tmp_path / "runs"
    src.mkdir()
    (src / "pkg.py").write_text("def f():\n    return 1\n")
    (src / "test_pkg.py").write_text(
        "import pathlib\nfrom pkg import f\n\n\ndef test_f():\n    assert f() == 1\n\n\n"
        f"def test_moody():\n    runs = pathlib.Path({str(counter)!r})\n"
        "    n = int(runs.read_text()) if runs.exists() else 0\n"
        "    runs.write_text(str(n + 1))\n    assert n != 2  # the third run fails, once\n"
    )
    repo = tmp_path / "repo"
    base = git.make_repo(src, repo)
    (repo / "pkg.py").write_text("def f():\n    return 2\n")
    git.git(repo, "commit", "-qam", "f returns 2")
    sha = git.head(repo)
    project = replace(manifest.load()[0], import_paths=(".",), test_paths=("test_pkg.py",))
    judge = Judge(project, repo, Path(sys.executable), tmp_path / "mypy")
    tests = ["test_pkg.py::test_f", "test_pkg.py::test_moody"]
    assert judge.confirm_broken(base, sha, tests) == ["test_pkg.py::test_f"]
    assert judge.flaky == {"test_pkg.py::test_moody"}
    assert "assert 2 == 1" in judge.failures[sha]
    assert int(counter.read_text()) == 2 * RERUNS  # each side ran each test RERUNS times


def test_a_project_kept_out_of_ci_runs_only_when_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """``in_ci: false`` (a suite of minutes) leaves the default selection, not a named one."""
    quick = replace(manifest.load()[0], name="quick", in_ci=True)
    slow = replace(quick, name="slow", in_ci=False)
    monkeypatch.delenv("AIRFIX_CORPUS_PROJECTS", raising=False)
    assert selected([quick, slow]) == [quick]
    monkeypatch.setenv("AIRFIX_CORPUS_PROJECTS", "slow,quick")
    assert selected([quick, slow]) == [quick, slow]
    monkeypatch.setenv("AIRFIX_CORPUS_PROJECTS", "slow")
    assert selected([quick, slow]) == [slow]
    assert not manifest.by_name("mpmath").in_ci  # the manifest's project of minutes


def test_the_manifest_refuses_an_in_ci_that_is_not_a_boolean(tmp_path: Path) -> None:
    data = json.loads(manifest.MANIFEST.read_text())
    data["projects"][0]["in_ci"] = "false"
    path = tmp_path / "python.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="in_ci must be true or false, not 'false'"):
        manifest.load(path)
