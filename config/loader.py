"""Loading the configuration strictly, with errors that name the key and where it came from.

The original tool read a YAML dict and silently ignored keys it did not know, so users believed they
had configured timeouts and limits that nothing read.  Here every key is a field of a
frozen msgspec Struct with ``forbid_unknown_fields=True``: a misspelt key, a wrong type or an
out-of-range value is a :class:`~airfix.events.errors.ConfigError` whose message names the dotted
key path and where the value came from (file and line, environment variable, or overrides).

Precedence, lowest first: built-in defaults < YAML file < environment < ``overrides``.  The shipped
``autonomous_fix.yaml`` restates the defaults with a comment per key (a test keeps the two equal).

Environment variables:

* ``AIRFIX_REDIS_URL`` sets ``store.redis_url`` (the value is taken verbatim).
* ``AIRFIX__SECTION__KEY=value`` sets ``section.key``.  Names are case-insensitive; the value is
  taken verbatim where the key is a string, and parsed as a YAML value (``5``, ``true``, ``0.5``,
  ``[a, b]``) everywhere else.  It is applied after ``AIRFIX_REDIS_URL``, so it wins if both are set.
* Other ``AIRFIX_*`` variables are left alone; they may belong to other parts of airfix.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from airfix.config.schema import (
    ENV_PREFIX,
    ENV_REDIS_URL,
    Config,
    _semantic_problems,
    config_to_dict,
)
from airfix.events.errors import ConfigError


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build a :class:`Config` from defaults, a YAML file, the environment and overrides.

    Args:
        path: YAML file to merge over the defaults; ``None`` for none.
        overrides: nested mapping (``{"store": {"partitions": 2}}``) or dotted keys
            (``{"store.partitions": 2}``), applied last: meant for command-line flags.
        env: environment to read ``AIRFIX_*`` variables from; ``None`` means ``os.environ``.

    Raises:
        ConfigError: the file is missing or unparsable, or a key is unknown, mistyped or out of
            range.  The message names the dotted key path and its source.
    """
    merged: dict[str, Any] = config_to_dict(Config())
    origins: dict[tuple[str, ...], str] = {}
    lines: dict[tuple[str, ...], int] = {}
    file_label = ""

    if path is not None:
        file_label = str(path)
        data, lines = _read_yaml(Path(path))
        _merge(merged, data, (), origins, file_label)

    for name, key_path, value in _env_layers(os.environ if env is None else env):
        _merge(merged, _nest(key_path, value, name), (), origins, f"environment variable {name}")

    if overrides:
        for key, value in overrides.items():
            key_path = tuple(str(key).split("."))
            _merge(merged, _nest(key_path, value, "overrides"), (), origins, "overrides")

    def where(key_path: tuple[str | int, ...]) -> str:
        return _where(key_path, origins, lines, file_label)

    try:
        cfg = msgspec.convert(merged, Config)
    except msgspec.ValidationError as exc:
        bad_path, message = _explain(str(exc), merged)
        raise ConfigError(f"{message}{where(bad_path)}") from None

    problems = _semantic_problems(cfg)
    if problems:
        raise ConfigError(
            "; ".join(f"{message}{where(key_path)}" for key_path, message in problems)
        )
    return cfg


# ---------------------------------------------------------------- YAML


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    """Parse a config file; return its mapping and the 1-based line of every key path."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {problem}") from None
    if data is None:  # an empty file (or only comments) means "all defaults"
        return {}, {}
    if not isinstance(data, dict):
        lineno = node.start_mark.line + 1 if node is not None else 1
        raise ConfigError(
            f"{path}, line {lineno}: expected a mapping of sections at the top level, "
            f"got {_type_name(data)}"
        )
    lines: dict[tuple[str, ...], int] = {}
    _index_lines(node, (), lines, path)
    return data, lines


def _index_lines(
    node: yaml.Node, prefix: tuple[str, ...], out: dict[tuple[str, ...], int], path: Path
) -> None:
    """Record each key's line; reject duplicate keys, which PyYAML would silently collapse."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        key = (*prefix, str(key_node.value))
        if key in out and key_node.value != "<<":
            dotted = ".".join(key)
            raise ConfigError(
                f"{path}, line {key_node.start_mark.line + 1}: duplicate key {dotted} "
                f"(first at line {out[key]})"
            )
        out[key] = key_node.start_mark.line + 1
        _index_lines(value_node, key, out, path)


# ---------------------------------------------------------------- merging layers


def _merge(
    base: dict[str, Any],
    layer: Mapping[str, Any],
    prefix: tuple[str, ...],
    origins: dict[tuple[str, ...], str],
    label: str,
) -> None:
    """Deep-merge ``layer`` into ``base`` in place, remembering which layer set each key."""
    for raw_key, value in layer.items():
        key = raw_key if isinstance(raw_key, str) else str(raw_key)
        key_path = (*prefix, key)
        current = base.get(key)
        if isinstance(current, dict) and value is None:
            continue  # "section:" with every key commented out: keep the defaults
        origins[key_path] = label
        if isinstance(current, dict) and isinstance(value, Mapping):
            _merge(current, value, key_path, origins, label)
        else:
            # Copied: later layers merge into it, and the caller's mapping must stay untouched.
            base[key] = copy.deepcopy(value)
            if isinstance(value, Mapping):
                _note(value, key_path, origins, label)


def _note(
    value: Mapping[str, Any],
    prefix: tuple[str, ...],
    origins: dict[tuple[str, ...], str],
    label: str,
) -> None:
    for key, sub in value.items():
        origins[(*prefix, str(key))] = label
        if isinstance(sub, Mapping):
            _note(sub, (*prefix, str(key)), origins, label)


def _nest(key_path: tuple[str, ...], value: Any, source: str) -> dict[str, Any]:
    if not all(key_path):
        raise ConfigError(f"{source}: empty key in {'.'.join(key_path)!r}")
    nested: Any = value
    for key in reversed(key_path):
        nested = {key: nested}
    return nested


def _env_layers(env: Mapping[str, str]) -> list[tuple[str, tuple[str, ...], Any]]:
    """The environment's settings in application order: AIRFIX_REDIS_URL, then AIRFIX__* sorted."""
    layers: list[tuple[str, tuple[str, ...], Any]] = []
    if ENV_REDIS_URL in env:
        layers.append((ENV_REDIS_URL, ("store", "redis_url"), env[ENV_REDIS_URL]))
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        key_path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if not all(key_path):
            raise ConfigError(f"environment variable {name}: expected AIRFIX__SECTION__KEY")
        layers.append((name, key_path, _env_value(name, key_path, env[name])))
    return layers


def _env_value(name: str, key_path: tuple[str, ...], raw: str) -> Any:
    """A string key takes the text verbatim (a URL or "123" stays a string); others parse as YAML."""
    if _is_str(_annotation_at(key_path)):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"environment variable {name}: not a valid YAML value: {problem}"
        ) from None


# ---------------------------------------------------------------- explaining errors


#: Keys that existed once, with why they are gone and what to do instead (an error, not "unknown").
REMOVED_KEYS: dict[tuple[str | int, ...], str] = {
    ("fixer", "name"): (
        "this key was removed: a run's fixers are fixer.chain, in order (each batch goes to the "
        "first that can fix it, the next when it fails), e.g. chain: [autofix, claude]"
    ),
    ("store", "log_maxlen"): (
        "this key was removed: capping the partition logs by length dropped entries that consumer "
        "groups had not read or acknowledged yet; delete the key and remove old entries with "
        "`airfix trim --older-than DURATION`, which only removes what every group acknowledged"
    ),
}

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)
_PATH_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def _split_path(path: str) -> tuple[str | int, ...]:
    """``$.store.partitions`` -> ("store", "partitions"); ``$.fixer.chain[0]`` -> (.., "chain", 0)."""
    body = path.removeprefix("$")
    return tuple(
        m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _PATH_PART.finditer(body)
    )


def _dotted(key_path: tuple[str | int, ...]) -> str:
    out = ""
    for part in key_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def _explain(raw: str, merged: dict[str, Any]) -> tuple[tuple[str | int, ...], str]:
    """Turn a msgspec ValidationError message into (key path, message naming the dotted path)."""
    m = _AT.match(raw)
    assert m is not None  # the pattern matches any string
    msg, key_path = m.group("msg"), _split_path(m.group("path") or "$")

    unknown = re.fullmatch(r"Object contains unknown field `(.*)`", msg)
    if unknown:
        key = unknown.group(1)
        full = (*key_path, key)
        if full in REMOVED_KEYS:
            return full, f"{_dotted(full)}: {REMOVED_KEYS[full]}"
        hint = _suggest(key, _fields_at(key_path)) if key_path else _suggest_section(key)
        return full, f"unknown key {_dotted(full)}{hint}"

    value = _value_at(merged, key_path)
    got = f"got {_type_name(value)}"
    typed = re.fullmatch(r"Expected `([^`]*)`, got `([^`]*)`", msg)
    if typed:
        return key_path, f"{_dotted(key_path)}: expected {_human(typed.group(1))}, {got}"
    bounded = re.fullmatch(r"Expected `([^`]*)` (.+)", msg)
    if bounded:
        expected = f"{_human(bounded.group(1))} {bounded.group(2)}"
        if isinstance(value, (list, tuple, str)) and "length" in expected:
            return key_path, f"{_dotted(key_path)}: expected {expected}, got length {len(value)}"
        return key_path, f"{_dotted(key_path)}: expected {expected}, got {value!r}"
    if msg.startswith("Invalid enum value"):
        allowed = typing.get_args(_annotation_at(key_path))
        choices = ", ".join(str(a) for a in allowed) if allowed else "?"
        return key_path, f"{_dotted(key_path)}: expected one of {choices}, got {value!r}"
    return key_path, f"{_dotted(key_path)}: {msg[:1].lower()}{msg[1:]}"


def _human(msgspec_type: str) -> str:
    return {"object": "a mapping", "array": "a list", "null": "null"}.get(
        msgspec_type, msgspec_type
    )


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _value_at(data: Any, key_path: tuple[str | int, ...]) -> Any:
    for part in key_path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _suggest(key: str, candidates: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, candidates, n=1)
    if close:
        return f" (did you mean {close[0]}?)"
    if candidates:
        return f" (known keys: {', '.join(candidates)})"
    return ""


def _suggest_section(key: str) -> str:
    """A top-level key that is really a section's key ("partitions") names its section."""
    for section in Config.__struct_fields__:
        if key in _fields_at((section,)):
            return f" (did you mean {section}.{key}?)"
    return _suggest(key, Config.__struct_fields__)


def _where(
    key_path: tuple[str | int, ...],
    origins: Mapping[tuple[str, ...], str],
    lines: Mapping[tuple[str, ...], int],
    file_label: str,
) -> str:
    """Name the layer that set ``key_path`` (or its nearest enclosing section)."""
    keys = tuple(str(p) for p in key_path if not isinstance(p, int))
    for n in range(len(keys), 0, -1):
        label = origins.get(keys[:n])
        if label is None:
            continue
        if label == file_label:
            line = lines.get(keys[:n])
            return f" (in {file_label}" + (f", line {line})" if line else ")")
        return f" (from {label})"
    return f" (in {file_label})" if file_label else ""


# ---------------------------------------------------------------- type introspection


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _annotation_at(key_path: tuple[str | int, ...]) -> Any:
    """The declared type at a key path, or ``None`` if the path names no field."""
    annotation: Any = Config
    for part in key_path:
        annotation = _strip(annotation)
        if isinstance(part, int):
            args = typing.get_args(annotation)
            annotation = args[0] if args else None
            continue
        if not (isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)):
            return None
        annotation = typing.get_type_hints(annotation, include_extras=True).get(part)
        if annotation is None:
            return None
    return annotation


def _fields_at(key_path: tuple[str | int, ...]) -> tuple[str, ...]:
    annotation = _strip(_annotation_at(key_path))
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation.__struct_fields__
    return ()


def _is_str(annotation: Any) -> bool:
    annotation = _strip(annotation)
    if annotation is str:
        return True
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) is Literal and all(isinstance(a, str) for a in args)
