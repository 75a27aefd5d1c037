"""Mechanical, project-wide kinds of fix: the rules a cleanup batch groups, and how its commit
subject names them in the conventional-commit style people use."""

from __future__ import annotations

__all__ = ["CLEANUP_MIN_ISSUES", "CLEANUP_RULES", "cleanup_phrase", "is_cleanup_rule"]

CLEANUP_MIN_ISSUES = 2

# rule -> (conventional-commit type, phrase).  "{all}" becomes "all " in a single project-wide
# batch and disappears in one part of a split group ("remove all unused imports" vs "remove
# unused imports, part 2/3").
CLEANUP_RULES: dict[str, tuple[str, str]] = {
    # ruff / flake8 (pyflakes, pycodestyle, isort)
    "F401": ("chore", "remove {all}unused imports"),
    "F811": ("chore", "remove {all}redefined unused names"),
    "F841": ("chore", "remove {all}unused variables"),
    "F541": ("chore", "remove placeholder-less f-string prefixes"),
    "F632": ("chore", "use == for {all}comparisons with literals"),
    "I001": ("style", "sort {all}imports"),
    "I002": ("chore", "add {all}missing required imports"),
    "E401": ("style", "split {all}multiple imports on one line"),
    "E501": ("style", "shorten {all}long lines"),
    "E703": ("style", "remove {all}useless semicolons"),
    "E711": ("chore", "fix {all}comparisons to None"),
    "E712": ("chore", "fix {all}comparisons to True/False"),
    "E713": ("chore", "use 'not in' for {all}negated membership tests"),
    "E714": ("chore", "use 'is not' for {all}negated identity tests"),
    "E721": ("chore", "use isinstance() for {all}type comparisons"),
    "W291": ("style", "remove {all}trailing whitespace"),
    "W292": ("style", "add {all}missing final newlines"),
    "W293": ("style", "remove {all}whitespace on blank lines"),
    "W391": ("style", "remove {all}blank lines at end of file"),
    "RUF100": ("chore", "remove {all}unused noqa directives"),
    # ruff pyupgrade (any other UP rule: "modernise syntax (UPxxx)")
    "UP004": ("chore", "remove {all}useless object inheritance"),
    "UP006": ("chore", "use builtin generic types"),
    "UP007": ("chore", "use X | Y union syntax"),
    "UP008": ("chore", "use super() without arguments"),
    "UP009": ("chore", "remove {all}UTF-8 encoding declarations"),
    "UP010": ("chore", "remove {all}unnecessary __future__ imports"),
    "UP015": ("chore", "remove {all}redundant open() modes"),
    "UP024": ("chore", "replace aliased OS errors"),
    "UP031": ("chore", "replace printf-style formatting"),
    "UP032": ("chore", "use f-strings instead of format()"),
    "UP035": ("chore", "replace deprecated imports"),
    "UP037": ("chore", "remove {all}quoted annotations"),
    # mypy
    "unused-ignore": ("chore", "remove {all}unused type: ignore comments"),
    "redundant-cast": ("chore", "remove {all}redundant casts"),
    # eslint
    "no-unused-vars": ("chore", "remove {all}unused variables"),
    "@typescript-eslint/no-unused-vars": ("chore", "remove {all}unused variables"),
    "prefer-const": ("chore", "use const for {all}never-reassigned variables"),
    "no-extra-semi": ("style", "remove {all}extra semicolons"),
    "semi": ("style", "fix {all}semicolons"),
    "quotes": ("style", "normalise {all}quotes"),
    "eol-last": ("style", "add {all}missing final newlines"),
    # dart analyzer / flutter lints
    "unused_import": ("chore", "remove {all}unused imports"),
    "unnecessary_import": ("chore", "remove {all}unnecessary imports"),
    "unused_local_variable": ("chore", "remove {all}unused variables"),
    "prefer_const_constructors": ("chore", "add {all}missing const keywords"),
    "prefer_const_declarations": ("chore", "add {all}missing const keywords"),
    "prefer_final_fields": ("chore", "make {all}never-reassigned fields final"),
    "directives_ordering": ("style", "sort {all}directives"),
    "prefer_single_quotes": ("style", "use single quotes"),
    "lines_longer_than_80_chars": ("style", "shorten {all}long lines"),
}


def is_cleanup_rule(rule: str) -> bool:
    """A mechanical kind of fix that reads well as one project-wide commit."""
    return rule in CLEANUP_RULES or (rule.startswith("UP") and rule[2:].isdigit())


def cleanup_phrase(rule: str, *, whole: bool = True) -> tuple[str, str]:
    """``(commit type, phrase)`` for a rule: ``("chore", "remove all unused imports")``.

    ``whole`` is False for one part of a split group ("remove unused imports").  Unknown rules
    fall back to ``("fix", "fix <rule> issues")``.
    """
    kind, phrase = CLEANUP_RULES.get(rule, ("", ""))
    if not phrase:
        if rule.startswith("UP") and rule[2:].isdigit():
            kind, phrase = "chore", f"modernise syntax ({rule})"
        else:
            kind, phrase = "fix", f"fix {{all}}{rule or 'unclassified'} issues"
    return kind, phrase.replace("{all}", "all " if whole else "")
