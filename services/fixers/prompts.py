"""Fix prompts for the LLM fixers, rendered from ``config/prompts.yaml`` (or ``fixer.prompts_file``).

One template per phase (build, test, lint), per-language overrides (checks, forbidden suppression
markers, configuration files, hints, whole templates), and the rules every prompt ends with: fix
the root cause, no suppressions, no deleted or skipped tests, no configuration edits, no commits.

Why :class:`string.Template`: issue messages are data copied from tool output and may contain
anything (``{0.__class__}``, ``$(rm -rf ~)``, ``${rules}``, backticks, fake "Rules:" sections).
``Template.substitute`` inserts values in a single pass and never re-reads them as template
text, so no message can change the instructions; ``str.format`` would at least choke on braces
in the *template* and tempts ``format(**values)`` twice.  Additionally every message line is
indented under its numbered record, so a message cannot forge a record of its own, and control
characters in one-line fields (paths, rules) are escaped.

The original's prompts asked the agent to commit ("Commit is REQUIRED", ``--no-verify``): here
airfix commits only verified work, and the prompt says so.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec
import yaml

from airfix.events.errors import ConfigError
from airfix.events.schema import IssueRecord

if TYPE_CHECKING:
    from airfix.services.fixers import FixRequest

__all__ = [
    "PHASES",
    "PLACEHOLDERS",
    "RULES_PLACEHOLDERS",
    "LanguagePrompts",
    "PromptSet",
    "batch_language",
    "default_prompts_path",
    "format_issues",
    "load_prompts",
    "prompts_for",
    "render_prompt",
    "render_request",
    "verification_commands",
]

PHASES = ("build", "test", "lint")
PLACEHOLDERS = frozenset(
    {
        "phase",
        "language",
        "target",
        "batch_id",
        "description",
        "issue_count",
        "issues",
        "files",
        "checks",
        "hint",
        "rules",
    }
)
RULES_PLACEHOLDERS = frozenset({"forbidden", "config_files"})
MESSAGE_LIMIT = 4000  # characters of one issue message in a prompt
UNKNOWN_LANGUAGE = "unknown"

_EXTENSIONS = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".go": "go",
    ".dart": "dart",
}
_TOOL_LANGUAGE = {
    "ruff": "python",
    "mypy": "python",
    "pytest": "python",
    "coverage": "python",
    "eslint": "javascript",
    "js_test": "javascript",
    "tsc": "typescript",
    "go_vet": "go",
    "go_test": "go",
    "gofmt": "go",
    "golangci-lint": "go",
    "dart_analyze": "dart",
    "dart_test": "dart",
    "flutter_test": "dart",
}
_T = TypeVar("_T")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class LanguagePrompts:
    checks: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    config_files: tuple[str, ...] = ()
    hint: str = ""
    phase_hints: Mapping[str, str] = field(default_factory=dict)
    phase_templates: Mapping[str, string.Template] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptSet:
    """A validated prompts file."""

    source: str
    rules: string.Template
    phases: Mapping[str, string.Template]
    languages: Mapping[str, LanguagePrompts]
    default_language: LanguagePrompts
    tools: Mapping[str, str]

    def language(self, name: str) -> LanguagePrompts:
        return self.languages.get(name, self.default_language)

    def template(self, phase: str, language: str) -> string.Template:
        own = self.language(language).phase_templates.get(phase)
        return own if own is not None else self.phases[phase]


# ---------------------------------------------------------------- loading


def default_prompts_path() -> Path:
    """The shipped ``prompts.yaml`` (package data of ``airfix.config``)."""
    return Path(str(resources.files("airfix.config").joinpath("prompts.yaml")))


def prompts_for(prompts_file: str) -> PromptSet:
    """The prompts a :class:`~airfix.config.FixerConfig` names (``""`` = the shipped file)."""
    return load_prompts(prompts_file or None)


def load_prompts(path: str | Path | None = None) -> PromptSet:
    """Load and validate a prompts file; errors name the file and the key."""
    resolved = Path(path).expanduser().resolve() if path is not None else default_prompts_path()
    try:
        mtime = resolved.stat().st_mtime_ns
    except OSError:
        raise ConfigError(f"fixer.prompts_file: {resolved} not found") from None
    return _load_cached(str(resolved), mtime)


class _PhaseSpec(msgspec.Struct, forbid_unknown_fields=True):
    hint: str = ""
    template: str = ""


class _LanguageSpec(msgspec.Struct, forbid_unknown_fields=True):
    checks: list[str] = []
    forbidden: list[str] = []
    config_files: list[str] = []
    hint: str = ""
    phases: dict[str, dict[str, Any]] = {}  # converted per phase, so errors name it


class _PromptsFile(msgspec.Struct, forbid_unknown_fields=True):
    """The prompts file as written; typed so msgspec names the key and the type that is wrong."""

    version: Literal[1] = 1  # the file format's version; a later format will not load silently
    phases: dict[str, str] = {}
    rules: str = ""
    languages: dict[str, dict[str, Any]] = {}  # converted per language, so errors name it
    default_language: dict[str, Any] = {}
    tools: dict[str, Any] = {}  # converted per tool, so errors name it


def _none_to_default(value: Any) -> Any:
    """YAML's empty value (``key:``) means "not given", as if the key were absent."""
    if isinstance(value, dict):
        return {k: _none_to_default(v) for k, v in value.items() if v is not None}
    return value


def _template(where: str, text: str, key: str, allowed: frozenset[str]) -> string.Template:
    t = string.Template(text)
    if not t.is_valid():
        raise ConfigError(
            f"{where}: {key}: invalid placeholder syntax (use $name, ${{name}} "
            "or $$ for a dollar sign)"
        )
    unknown = sorted(set(t.get_identifiers()) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: {key}: unknown placeholder(s) "
            f"{', '.join('$' + u for u in unknown)}; known: "
            f"{', '.join('$' + a for a in sorted(allowed))}"
        )
    return t


def _convert(where: str, key: str, value: Any, kind: type[_T]) -> _T:
    """``value`` as ``kind``; a mismatch is a ConfigError naming the file and the key."""
    try:
        return msgspec.convert(_none_to_default(value), kind)
    except msgspec.ValidationError as exc:
        message, _, at = str(exc).partition(" - at `$")
        at = at.rstrip("`").lstrip(".")
        raise ConfigError(
            f"{where}: {'.'.join(k for k in (key, at) if k) or 'top level'}: {message}"
        ) from None


def _language(where: str, value: dict[str, Any], key: str) -> LanguagePrompts:
    spec = _convert(where, key, value, _LanguageSpec)
    unknown = sorted(set(spec.phases) - set(PHASES))
    if unknown:
        raise ConfigError(
            f"{where}: {key}.phases.{unknown[0]}: unknown phase; known: {', '.join(PHASES)}"
        )
    phases = {
        ph: _convert(where, f"{key}.phases.{ph}", v, _PhaseSpec) for ph, v in spec.phases.items()
    }
    return LanguagePrompts(
        checks=tuple(spec.checks),
        forbidden=tuple(spec.forbidden),
        config_files=tuple(spec.config_files),
        hint=spec.hint.strip(),
        phase_hints={ph: ps.hint.strip() for ph, ps in phases.items() if ps.hint},
        phase_templates={
            ph: _template(where, ps.template, f"{key}.phases.{ph}.template", PLACEHOLDERS)
            for ph, ps in phases.items()
            if ps.template
        },
    )


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, _mtime: int) -> PromptSet:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read prompts: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    raw = _convert(path, "", data, _PromptsFile)
    missing = [ph for ph in PHASES if not raw.phases.get(ph)]
    if missing:
        raise ConfigError(f"{path}: phases: missing template(s) for {', '.join(missing)}")
    return PromptSet(
        source=path,
        rules=_template(path, raw.rules, "rules", RULES_PLACEHOLDERS),
        phases={ph: _template(path, raw.phases[ph], f"phases.{ph}", PLACEHOLDERS) for ph in PHASES},
        languages={
            name: _language(path, spec, f"languages.{name}") for name, spec in raw.languages.items()
        },
        default_language=_language(path, raw.default_language, "default_language"),
        tools={k: _convert(path, f"tools.{k}", v, str) for k, v in raw.tools.items()},
    )


# ---------------------------------------------------------------- what goes into a prompt


def batch_language(
    issues: Sequence[IssueRecord], files: Sequence[str], target: Path | None = None
) -> str:
    """The batch's language: the most common one among its files' extensions, then its tools',
    then the target's first detected language; ``"unknown"`` when nothing tells."""
    votes: dict[str, int] = {}
    for f in [*(i.file for i in issues), *files]:
        lang = _EXTENSIONS.get(Path(f).suffix.lower()) if f else None
        if lang:
            votes[lang] = votes.get(lang, 0) + 1
    if not votes:
        for i in issues:
            lang = _TOOL_LANGUAGE.get(i.tool)
            if lang:
                votes[lang] = votes.get(lang, 0) + 1
    if votes:
        return max(sorted(votes), key=lambda k: votes[k])
    if target is not None:
        from airfix.services.tools.detect import detect_languages

        found = detect_languages(target)
        if found:
            return "dart" if found[0] == "flutter" else found[0]
    return UNKNOWN_LANGUAGE


def verification_commands(
    prompts: PromptSet, language: str, issues: Sequence[IssueRecord]
) -> list[str]:
    """The commands the verifier's checks correspond to: the language's checks, preceded by the
    commands of the tools that reported this batch's issues when the language's list lacks them."""
    checks = list(prompts.language(language).checks)
    first: list[str] = []
    for tool in sorted({i.tool for i in issues if i.tool}):
        command = prompts.tools.get(tool, tool)
        if command not in checks and command not in first:
            first.append(command)
    return first + checks


def _one_line(value: str) -> str:
    """A single-line field (path, rule, tool): control characters shown escaped, not obeyed."""
    return _CONTROL_ONE_LINE.sub(lambda m: f"\\x{ord(m.group()):02x}", value).strip()


def _message_lines(message: str) -> list[str]:
    text = message.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 1] + "…"
    return text.split("\n") or [""]


def format_issues(issues: Sequence[IssueRecord]) -> str:
    """The exact issue records, numbered; each message indented below its header line.

    ``1. pkg/mod.py:3:8 - ruff F401 (error)`` then ``   `os` imported but unused``.  Location
    parts that are unknown (0) are left out; an empty rule shows as ``-``.
    """
    out: list[str] = []
    for n, issue in enumerate(issues, 1):
        where = _one_line(issue.file) or "(no file)"
        if issue.line:
            where += f":{issue.line}"
            if issue.column:
                where += f":{issue.column}"
        head = (
            f"{n}. {where} - {_one_line(issue.tool) or '?'} {_one_line(issue.rule) or '-'} "
            f"({_one_line(issue.severity) or 'error'})"
        )
        out.append(head)
        out += ["   " + line if line else "   " for line in _message_lines(issue.message)]
    return "\n".join(out)


def _bullets(items: Sequence[str], empty: str) -> str:
    return "\n".join(f"- {_one_line(i)}" for i in items) if items else f"- {empty}"


def render_prompt(
    *,
    phase: str,
    target: Path | str,
    batch_id: str,
    description: str,
    issues: Sequence[IssueRecord],
    files: Sequence[str],
    prompts: PromptSet | None = None,
    language: str | None = None,
) -> str:
    """The prompt for one batch.  ``language`` defaults to :func:`batch_language`."""
    ps = prompts or load_prompts()
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; known: {', '.join(PHASES)}")
    lang = language or batch_language(issues, files, Path(target))
    lp = ps.language(lang)
    all_files = list(dict.fromkeys([*files, *(i.file for i in issues if i.file)]))
    rules = ps.rules.substitute(
        forbidden=", ".join(lp.forbidden) or "suppression comments",
        config_files=", ".join(lp.config_files) or "lint, type-checker and test configuration",
    ).strip()
    hint = "\n".join(h for h in (lp.hint, lp.phase_hints.get(phase, "")) if h)
    values = {
        "phase": phase,
        "language": lang,
        "target": _one_line(str(target)),
        "batch_id": _one_line(batch_id),
        "description": _one_line(description) or f"{phase} issues",
        "issue_count": str(len(issues)),
        "issues": format_issues(issues) or "(none listed)",
        "files": _bullets(all_files, "(none listed)"),
        "checks": _bullets(verification_commands(ps, lang, issues), "the project's own checks"),
        "hint": hint,
        "rules": rules,
    }
    template = ps.template(phase, lang).template
    # A placeholder alone on its line with an empty value takes its line with it.
    for name, value in values.items():
        if not value:
            template = re.sub(rf"(?m)^[ \t]*\$(?:{name}|\{{{name}\}})[ \t]*\n", "", template)
    text = string.Template(template).substitute(values)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def render_request(request: FixRequest) -> str:
    """:func:`render_prompt` for a fixer's request, with ``fixer.prompts_file``'s templates."""
    batch = request.batch
    return render_prompt(
        phase=batch.phase,
        target=request.target,
        batch_id=batch.batch_id,
        description=batch.description,
        issues=request.issues,
        files=list(batch.files),
        prompts=prompts_for(request.config.prompts_file),
    )
