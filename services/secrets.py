"""Secrets stay out of what airfix writes and out of the processes it starts for the target.

What is redacted (replaced by ``***``), wherever airfix writes text that others read - the
``RunRequested`` event's ``config`` (so exports, trim archives, journals and ``tail --json``), every
log line (terminal, the ``autonomous_fix:logs`` stream, ``journal.logs.jsonl``) and error messages:

* the password of every URL (``redis://:***@host``, ``redis://user:***@host``); a user name alone
  is kept when it is short (``git@``, ``default@``) and redacted when it may be a token;
* query parameters named like secrets (``?password=***``, ``&token=***``);
* the text values of keys named like secrets (``secrets.redact_keys``: ``*password*``, ``*token*``,
  ``*secret*``, ``*api_key*``, ...), in the config and in log lines;
* well-known token shapes (``sk-ant-...``, ``ghp_...``, ``github_pat_...``, ``xox?-...``, ``AKIA...``,
  ``Bearer ...``) and the values of this process's environment variables named like secrets.

What the target's processes see (:func:`scrubbed_env`): airfix's environment without the variables
matched by ``secrets.env_deny`` (airfix's own ``AIRFIX_REDIS_URL`` and ``AIRFIX__*`` settings,
anything ``*REDIS_URL*``, ``*_API_KEY``, ``*_TOKEN``, ``*SECRET*``, ``*PASSWORD*``, ...) unless
``secrets.env_allow`` matches them, and without any variable whose value holds the store's Redis
password.  The tools' adapters, the verifier's git (hooks are the target's code) and the fixers use
it; the ``claude`` fixer additionally keeps its own authentication (``ANTHROPIC_*``,
``CLAUDE_CODE_*``, and the cloud credentials of Bedrock or Vertex when those are selected), the
``command`` fixer the variables ``fixer.command_env`` names.
"""

from __future__ import annotations

import fnmatch
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airfix.config import DEFAULT_ENV_DENY, DEFAULT_REDACT_KEYS

__all__ = [
    "REDACTED",
    "Policy",
    "active",
    "configure",
    "is_secret_name",
    "redact_config",
    "redact_text",
    "redact_url",
    "scrubbed_env",
]

REDACTED = "***"
MIN_SECRET_CHARS = 8  # shorter values are not searched for in text (they would match everywhere)

_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<cred>[^\s/?#\"'<>]*)@")
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|pass|token|access_token|auth_token|api_key|apikey|secret|"
    r"client_secret|auth)=)[^&\s#\"']+",
    re.IGNORECASE,
)
_TOKEN_SHAPES = re.compile(
    r"sk-ant-[A-Za-z0-9_\-]{8,}|\bsk-[A-Za-z0-9_\-]{20,}|\bgh[pousr]_[A-Za-z0-9]{20,}|"
    r"\bgithub_pat_[A-Za-z0-9_]{20,}|\bxox[abprs]-[A-Za-z0-9\-]{10,}|\bAKIA[0-9A-Z]{16}\b|"
    r"\bglpat-[A-Za-z0-9_\-]{20,}"
)
_BEARER = re.compile(r"(?P<head>\b[Bb]earer\s+)[A-Za-z0-9._~+/\-]{16,}=*")
_PLAIN_USER = re.compile(r"^[A-Za-z0-9._\-]{1,16}$")


def _credentials(m: re.Match[str]) -> str:
    cred = m.group("cred")
    user, colon, _ = cred.partition(":")
    if colon:
        return f"{m.group('scheme')}{user}:{REDACTED}@"
    return m.group(0) if _PLAIN_USER.match(cred) else f"{m.group('scheme')}{REDACTED}@"


def redact_text(text: str, values: Iterable[str] | None = None) -> str:
    """``text`` with URL passwords, secret query parameters, token-shaped strings and the given
    secret ``values`` (default: the active policy's) replaced by ``***``."""
    if not text:
        return text
    out = _URL_CREDENTIALS.sub(_credentials, text)
    out = _QUERY_SECRET.sub(lambda m: m.group("head") + REDACTED, out)
    out = _BEARER.sub(lambda m: m.group("head") + REDACTED, out)
    out = _TOKEN_SHAPES.sub(REDACTED, out)
    for value in active().values if values is None else values:
        if len(value) >= MIN_SECRET_CHARS and value in out:
            out = out.replace(value, REDACTED)
    return out


def redact_url(url: str) -> str:
    """``url`` without its password: ``redis://user:***@host:6379/0``.  Whatever does not parse
    as a URL is redacted as text."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return redact_text(url, ())
        host = parts.netloc.rpartition("@")[2]
        user = parts.netloc.rpartition("@")[0].partition(":")[0]
        return redact_text(urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}")), ())
    except ValueError:
        return redact_text(url, ())


def is_secret_name(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches one of the fnmatch ``patterns``, in any case."""
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, p.lower()) for p in patterns)


def redact_config(
    data: Any, patterns: Iterable[str] | None = None, values: Iterable[str] | None = None
) -> Any:
    """A copy of plain data (a config dict, a log event) with the scalar values of keys named like
    secrets replaced by ``***`` and every string passed through :func:`redact_text`."""
    pats = tuple(active().redact_keys if patterns is None else patterns)
    vals = tuple(active().values if values is None else values)

    def walk(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                k: (REDACTED if _is_scalar_secret(k, v, pats) else walk(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, tuple):
            return tuple(walk(v) for v in value)
        if isinstance(value, str):
            return redact_text(value, vals)
        return value

    return walk(data)


def _is_scalar_secret(key: Any, value: Any, patterns: tuple[str, ...]) -> bool:
    """A non-empty text value under a secret-like key (numbers such as ``max_tokens`` are not)."""
    return (
        isinstance(key, str)
        and isinstance(value, (str, bytes))
        and bool(value)
        and is_secret_name(key, patterns)
    )


# ---------------------------------------------------------------- the policy


@dataclass(frozen=True)
class Policy:
    """What counts as secret: key-name patterns, environment deny/allow patterns, and literal
    values (the store's Redis password, this process's secret-named environment values)."""

    redact_keys: tuple[str, ...] = DEFAULT_REDACT_KEYS
    env_deny: tuple[str, ...] = DEFAULT_ENV_DENY
    env_allow: tuple[str, ...] = ()
    values: frozenset[str] = field(default_factory=frozenset)


def secret_values(
    environ: Mapping[str, str], redact_keys: Iterable[str], urls: Iterable[str] = ()
) -> frozenset[str]:
    """Literal secrets to look for in text: values of variables named like secrets, and the
    passwords of ``urls``."""
    keys = tuple(redact_keys)
    out = {v for k, v in environ.items() if len(v) >= MIN_SECRET_CHARS and is_secret_name(k, keys)}
    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password and len(password) >= MIN_SECRET_CHARS:
            out.add(password)
    return frozenset(out)


_lock = threading.Lock()
_active = Policy(values=secret_values(os.environ, DEFAULT_REDACT_KEYS))


def configure(config: Any, environ: Mapping[str, str] | None = None) -> Policy:
    """Make ``config.secrets`` (and the store URL's password) the process's policy; returns it."""
    global _active
    sec = config.secrets
    env = os.environ if environ is None else environ
    policy = Policy(
        redact_keys=tuple(sec.redact_keys),
        env_deny=tuple(sec.env_deny),
        env_allow=tuple(sec.env_allow),
        values=secret_values(env, sec.redact_keys, [config.store.redis_url]),
    )
    with _lock:
        _active = policy
    return policy


def active() -> Policy:
    """The policy in force (defaults until :func:`configure`)."""
    return _active


def scrubbed_env(
    environ: Mapping[str, str], policy: Policy | None = None, *, keep: Iterable[str] = ()
) -> dict[str, str]:
    """``environ`` without airfix's secrets: variables matching ``policy.env_deny`` (unless
    ``env_allow`` or ``keep`` matches them) and variables whose value holds one of the policy's
    secret values that are not kept.  ``keep`` is what one process needs for itself (patterns)."""
    pol = active() if policy is None else policy
    kept = tuple(keep)
    out: dict[str, str] = {}
    for name, value in environ.items():
        if kept and is_secret_name(name, kept):
            out[name] = value
            continue
        if is_secret_name(name, pol.env_deny) and not is_secret_name(name, pol.env_allow):
            continue
        if any(s in value for s in pol.values) and not is_secret_name(name, pol.env_allow):
            continue
        out[name] = value
    return out
