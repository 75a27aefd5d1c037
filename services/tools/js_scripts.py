"""Which test runner a JavaScript project uses, with which arguments: its ``package.json``'s
``scripts.test`` read as a shell command line (see :mod:`airfix.services.tools.js_test`)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airfix.services.tools.eslint import read_package_json

RUNNERS = ("node", "jest", "vitest", "mocha", "tape")
UNSUPPORTED_RUNNERS = (
    "ava", "jasmine", "karma", "tap", "uvu", "playwright", "cypress",
)  # fmt: skip
WRAPPERS = ("nyc", "c8", "cross-env", "npx", "env", "time", "dotenv", "nodemon")

_JS_SUFFIX = re.compile(r"\.[cm]?[jt]sx?$")
_TEST_STEM = re.compile(r"(^test$|^test[-_.]|[._-](test|spec)$)")
TEST_DIRS = {"test", "tests", "__tests__", "spec"}


def is_js_test_path(path: str) -> bool:
    """Whether ``path`` is a test file by the default patterns of node --test, jest, vitest and
    the usual ``test/`` directories of mocha and tape projects."""
    parts = path.replace("\\", "/").split("/")
    m = _JS_SUFFIX.search(parts[-1])
    if not m:
        return False
    stem = parts[-1][: m.start()]
    return bool(_TEST_STEM.search(stem)) or any(p in TEST_DIRS for p in parts[:-1])


class UnsupportedRunner(Exception):
    pass


@dataclass(frozen=True)
class Invocation:
    """One runner command found in the test script: the runner and its own arguments."""

    runner: str
    args: tuple[str, ...] = ()


def _mentions(script: str, name: str) -> bool:
    return re.search(rf"(?<![\w@/.-]){re.escape(name)}(?![\w.-])", script) is not None


def _commands(text: str) -> list[list[str]]:
    """A shell command line split into simple commands (at ``&&``, ``||``, ``;``, ``|``)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    out: list[list[str]] = [[]]
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: read it as plain words
        tokens = text.split()
    for token in tokens:
        if token and set(token) <= set("&|;()<>"):
            if out[-1]:
                out.append([])
        else:
            out[-1].append(token)
    return [c for c in out if c]


_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _script_invocations(
    scripts: dict[str, Any], name: str, deps: set[str], depth: int = 0
) -> list[Invocation]:
    text = scripts.get(name)
    if not isinstance(text, str) or depth > 8:
        return []
    found: list[Invocation] = []
    for words in _commands(text):
        while words and _ENV_ASSIGNMENT.match(words[0]):
            words = words[1:]
        if not words:
            continue
        head = Path(words[0]).name
        if head in ("npm", "pnpm", "yarn"):
            rest = [w for w in words[1:] if not w.startswith("-")]
            if rest[:1] in (["test"], ["t"], ["tst"]):
                found += _script_invocations(scripts, "test", deps, depth + 1)
            elif rest[:1] in (["run"], ["run-script"]) and len(rest) > 1:
                found += _script_invocations(scripts, rest[1], deps, depth + 1)
            elif head == "yarn" and rest and rest[0] in scripts:
                found += _script_invocations(scripts, rest[0], deps, depth + 1)
            continue
        inv = _invocation(words, deps)
        if inv is not None:
            found.append(inv)
    return found


def _invocation(words: list[str], deps: set[str]) -> Invocation | None:
    """The runner a simple command runs, with its arguments; ``None`` for other commands."""
    for i, word in enumerate(words):
        name = Path(word).name
        if i and words[i - 1] in ("-r", "--require", "-i", "--ignore"):
            continue
        if name in ("jest", "vitest"):
            return Invocation(name)
        if name in ("mocha", "_mocha"):
            return Invocation("mocha", tuple(words[i + 1 :]))
        if name == "tape":
            return Invocation("tape", tuple(words[i + 1 :]))
        if name in UNSUPPORTED_RUNNERS:
            raise UnsupportedRunner(name)
        if name == "node":
            rest = words[i + 1 :]
            if "--test" in rest:
                return Invocation("node")
            operands = [w for w in rest if not w.startswith("-")]
            if "tape" in deps and operands:
                return Invocation("tape", (operands[0],))
            return None
        if i == 0 and name not in WRAPPERS:
            return None  # eslint, aud, echo, tsc, ...: not a test runner
    return None


def runner_invocations(target: Path) -> list[Invocation]:
    """The runner commands of ``target``'s tests (see the module docstring).

    :class:`UnsupportedRunner` for runners airfix cannot read, ``ValueError``/``TypeError`` when
    ``package.json`` is not valid JSON or not an object.
    """
    pkg = read_package_json(target)
    if pkg is None:
        return [Invocation("node")]
    scripts = pkg.get("scripts")
    scripts = scripts if isinstance(scripts, dict) else {}
    script = str(scripts.get("test") or "")
    deps: set[str] = set()
    for key in ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies"):
        value = pkg.get(key)
        if isinstance(value, dict):
            deps |= set(value)
    for name in ("vitest", "jest"):
        if _mentions(script, name):
            return [Invocation(name)]
    found = _script_invocations(scripts, "test", deps)
    runners = {inv.runner for inv in found}
    if len(runners) > 1:
        raise UnsupportedRunner(" and ".join(sorted(runners)) + " in one test script")
    if found:
        return found if runners <= {"tape", "mocha"} else found[:1]
    for name in UNSUPPORTED_RUNNERS:
        if _mentions(script, name):
            raise UnsupportedRunner(name)
    for name in ("vitest", "jest", "mocha"):
        if name in deps:
            return [Invocation(name)]
    if "tape" in deps:
        raise UnsupportedRunner("tape without test files in scripts.test")
    for name in UNSUPPORTED_RUNNERS:
        if name in deps:
            raise UnsupportedRunner(name)
    return [Invocation("node")]


def detect_runner(target: Path) -> str:
    """``node``, ``jest``, ``vitest``, ``mocha`` or ``tape`` for ``target``; see
    :func:`runner_invocations` for the errors."""
    return runner_invocations(target)[0].runner


def split_args(args: Sequence[str], value_options: set[str]) -> tuple[list[str], list[str]]:
    """A runner's arguments as (options with their values, operands)."""
    options: list[str] = []
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and arg != "-":
            options.append(arg)
            if arg in value_options and i + 1 < len(args):
                options.append(args[i + 1])
                i += 1
        else:
            operands.append(arg)
        i += 1
    return options, operands
