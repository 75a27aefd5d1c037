"""The ``claude`` fixer: Claude Code's CLI in print mode, streamed, judged by its final result event.

Invocation (cwd = the target, its own process group)::

    claude -p <prompt> --output-format stream-json --verbose --max-turns N
           --permission-mode acceptEdits [--model M] [--max-budget-usd X]
           --allowedTools <fixer.allowed_tools...> --disallowedTools <fixer.disallowed_tools...>

* The prompt (``config/prompts.yaml``) is a positional argument right after ``-p``; a prompt too
  large for one argv entry (``ARG_PROMPT_LIMIT``) or starting with ``-`` goes on stdin instead,
  which ``-p`` also reads.
  ``--allowedTools``/``--disallowedTools`` take several values, so they come last.
* Permissions: ``acceptEdits`` lets the agent edit files without prompting; any other tool must be
  allowed by a rule, and in print mode a tool that would need a prompt is denied.  The default
  allow-list is Read, Edit, Write, Glob, Grep and ``Bash(<check command>:*)`` rules for the
  projects' checks (ruff, mypy, pytest, eslint, tsc, go, dart...) plus ``git diff``/``git
  status``.  ``Bash(x:*)`` is the CLI's prefix rule: it matches commands starting with ``x``, and
  never a compound command (``x && git commit`` does not match), so git commit cannot slip in.
  The deny-list repeats it (``Bash(git commit:*)``, push, reset, checkout, stash, rebase, merge,
  WebFetch, WebSearch): deny rules win over allow rules.  The prompt also says not to commit:
  airfix verifies and commits (the original demanded that the agent commit).
* ``CLAUDECODE`` is removed from the child's environment: the CLI refuses to start "inside
  another Claude Code session" when it is set, which happens when airfix itself runs from one.

Protocol (stream-json, one JSON object per stdout line): a ``system``/``init`` event, then
``assistant`` messages (content blocks ``text``, ``thinking``, ``tool_use``), ``user`` messages
carrying ``tool_result`` blocks, optional ``rate_limit_event``/``stream_event``/other ``system``
subtypes, and last one ``result`` event: ``subtype`` (``success``, ``error_max_turns``,
``error_during_execution``, ``error_max_budget_usd``...), ``is_error``, ``result`` (the final
text), ``total_cost_usd``, ``num_turns``, ``duration_ms``, ``usage``, ``session_id``,
``errors``...

Each text and tool-use block becomes a ``fixer progress`` log line the moment its line is read.
The outcome comes only from the ``result`` event - ``subtype == "success"`` and ``is_error``
false is success - never from the exit code: the CLI exits non-zero after ``error_max_turns``
but also exits 0 with ``is_error`` results such as a rate limit.  No ``result`` event is a
failure naming the exit code and stderr tail.  After the result, the process gets
``RESULT_GRACE_S`` to exit (it is known to hang after its last line) before its group is killed.
The overall and idle-output timeouts kill the whole group and say which one fired.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airfix.config import FixerConfig
from airfix.events.schema import IssueRecord
from airfix.services.fixers import FixOutcome, FixRequest
from airfix.services.fixers.command import LOG_TEXT_CHARS, REASON_TAIL_CHARS
from airfix.services.process import exit_description, find_executable, stream_process, tail
from airfix.services.runtime.logs import get_logger
from airfix.services.secrets import scrubbed_env

__all__ = [
    "ARG_PROMPT_LIMIT",
    "RESULT_GRACE_S",
    "ClaudeFixer",
    "StreamState",
    "build_command",
    "classify_result",
]

log = get_logger("airfix.fixers.claude")

ARG_PROMPT_LIMIT = 100_000  # bytes; Linux caps one argv string at 128 KiB (MAX_ARG_STRLEN)
RESULT_GRACE_S = 5.0  # seconds the CLI may take to exit after its result event
_RATE_LIMIT = re.compile(
    r"rate[ _-]?limit|usage limit|limit (?:reached|exceeded)|hit your (?:usage )?limit|"
    r"too many requests|\b429\b",
    re.IGNORECASE,
)


def build_command(exe: str, prompt: str | None, config: FixerConfig) -> list[str]:
    """The CLI's argv; ``prompt=None`` means the prompt is sent on stdin."""
    cmd = [exe, "-p"]
    if prompt is not None:
        cmd.append(prompt)
    cmd += [
        "--output-format",
        "stream-json",
        "--verbose",
        "--max-turns",
        str(config.max_turns),
        "--permission-mode",
        "acceptEdits",
    ]
    if config.model:
        cmd += ["--model", config.model]
    if config.max_budget_usd > 0:
        cmd += ["--max-budget-usd", f"{config.max_budget_usd:g}"]
    if config.allowed_tools:
        cmd += ["--allowedTools", *config.allowed_tools]
    if config.disallowed_tools:
        cmd += ["--disallowedTools", *config.disallowed_tools]
    return cmd


def _short(text: Any, limit: int = LOG_TEXT_CHARS) -> str:
    s = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, default=str)
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _tool_input(name: str, data: Any) -> str:
    if isinstance(data, dict):
        for key in ("command", "file_path", "path", "pattern", "notebook_path", "url", "query"):
            if isinstance(data.get(key), str):
                return _short(data[key], 200)
    return _short(data, 200)


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return "" if content is None else str(content)


@dataclass
class StreamState:
    """What the stream said so far; :meth:`feed` is the ``on_line`` callback."""

    context: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    session_id: str = ""
    model: str = ""
    rate_limited: str = ""
    auth_failed: str = ""  # an assistant message's error saying the CLI cannot authenticate
    events: int = 0
    not_json: int = 0
    assistant_messages: set[str] = field(default_factory=set)
    last_text: str = ""

    def feed(self, line: str) -> bool:
        """Log one stdout line; True once the final ``result`` event has been read."""
        if not line.strip():
            return False
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            self.not_json += 1
            log.info("fixer progress", kind="output", text=_short(line), **self.context)
            return False
        self.events += 1
        self.session_id = str(event.get("session_id") or self.session_id)
        kind = event.get("type")
        if kind == "result":
            self.result = event
            return True
        if kind == "system":
            self._system(event)
        elif kind == "assistant":
            self._assistant(event)
        elif kind == "user":
            self._user(event)
        elif kind == "rate_limit_event":
            info = event.get("rate_limit_info") or {}
            status = info.get("status", "") if isinstance(info, dict) else ""
            if status == "rejected":
                self.rate_limited = f"rate limit rejected ({info.get('rateLimitType', '?')})"
            log.info(
                "fixer progress",
                kind="rate_limit",
                status=status,
                limit=(info.get("rateLimitType", "") if isinstance(info, dict) else ""),
                **self.context,
            )
        else:  # stream_event deltas and future types: counted, not logged line by line
            log.debug("fixer event", kind=str(kind), **self.context)
        return False

    def _system(self, event: dict[str, Any]) -> None:
        subtype = event.get("subtype", "")
        if subtype == "init":
            self.model = str(event.get("model", ""))
            log.info(
                "fixer progress",
                kind="init",
                session_id=self.session_id,
                model=self.model,
                permission_mode=event.get("permissionMode", ""),
                tools=len(event.get("tools") or []),
                **self.context,
            )
        else:
            log.debug("fixer event", kind=f"system.{subtype}", **self.context)

    def _assistant(self, event: dict[str, Any]) -> None:
        message = event.get("message") or {}
        if not isinstance(message, dict):
            return
        if message.get("id"):
            self.assistant_messages.add(str(message["id"]))
        if event.get("error") in ("rate_limit", "rate_limit_error"):
            self.rate_limited = "rate limit"
        if event.get("error") in AUTH_ERRORS:
            self.auth_failed = str(event["error"])
        for block in message.get("content") or []:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text" and str(block.get("text", "")).strip():
                self.last_text = str(block["text"])
                log.info("fixer progress", kind="text", text=_short(block["text"]), **self.context)
            elif btype == "tool_use":
                name = str(block.get("name", "?"))
                log.info(
                    "fixer progress",
                    kind="tool_use",
                    tool=name,
                    input=_tool_input(name, block.get("input")),
                    **self.context,
                )
            elif btype == "thinking":
                log.debug(
                    "fixer progress",
                    kind="thinking",
                    text=_short(block.get("thinking", "")),
                    **self.context,
                )

    def _user(self, event: dict[str, Any]) -> None:
        message = event.get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                text = _short(_result_text(block.get("content")), 200)
                if block.get("is_error"):
                    log.info("fixer progress", kind="tool_error", text=text, **self.context)
                else:
                    log.debug("fixer progress", kind="tool_result", text=text, **self.context)


def _number(value: Any, kind: type) -> Any:
    try:
        return kind(value) if value is not None else kind(0)
    except (TypeError, ValueError):
        return kind(0)


def classify_result(result: dict[str, Any], *, rate_limited: str = "", max_turns: int = 0) -> str:
    """ "" when the result event means success, else the failure reason.

    Success is ``subtype == "success"`` and ``is_error`` false - nothing else, whatever the exit
    code.  A rate limit (in the result text, ``api_error_status`` 429, an assistant message's
    ``error``, or a rejected ``rate_limit_event``) is reported as such, since it says "retry
    later", not "this fix is impossible".
    """
    subtype = str(result.get("subtype") or "")
    is_error = bool(result.get("is_error"))
    if subtype == "success" and not is_error:
        return ""
    errors = result.get("errors")
    detail = _result_text(result.get("result"))
    if isinstance(errors, list) and errors:
        detail = "; ".join(str(e) for e in errors) + (f" ({detail})" if detail else "")
    detail = tail(" ".join(detail.split()), 400)
    if result.get("api_error_status") == 429 or _RATE_LIMIT.search(detail or "") or rate_limited:
        return f"rate limit: {detail or rate_limited}"
    if subtype == "error_max_turns":
        turns = _number(result.get("num_turns"), int)
        return f"error_max_turns: stopped after {turns} turns (fixer.max_turns = {max_turns})" + (
            f": {detail}" if detail else ""
        )
    if subtype == "error_max_budget_usd":
        cost = _number(result.get("total_cost_usd"), float)
        return f"error_max_budget_usd: spent ${cost:.4f} (fixer.max_budget_usd)" + (
            f": {detail}" if detail else ""
        )
    if subtype and subtype != "success":
        return f"{subtype}" + (f": {detail}" if detail else "")
    return "is_error result" + (f": {detail}" if detail else " without a message")


AUTH_ERRORS = ("authentication_failed", "invalid_api_key", "oauth_token_revoked", "billing_error")
_AUTH_TEXT = re.compile(
    r"not logged in|/login|invalid api key|authentication[_ ]failed|"
    r"credit balance is too low",
    re.IGNORECASE,
)
_BAD_ARGS = re.compile(
    r"error: (unknown option|option .* argument|too many arguments|"
    r"missing required argument)",
    re.IGNORECASE,
)
LOGIN_HELP = (
    "log the Claude Code CLI in where airfix's workers run (`claude` then `/login`, or "
    "`claude setup-token`), or give the workers ANTHROPIC_API_KEY"
)


def incurable(
    state: StreamState, result: dict[str, Any] | None, stderr: str, launch_error: str
) -> str:
    """Why no retry of this fixer can work ("" when one might): it cannot authenticate, it is not
    there, or it refused its own command line.  The run then ends at once with the fix to apply,
    instead of failing the same way on every batch."""
    if launch_error:
        return (
            f"the Claude Code CLI could not start ({launch_error}); install it "
            "(npm install -g @anthropic-ai/claude-code) or set fixer.claude_executable"
        )
    text = _result_text((result or {}).get("result")) if result else ""
    if state.auth_failed or (
        result is not None and result.get("is_error") and _AUTH_TEXT.search(text)
    ):
        said = " ".join(text.split()) or state.auth_failed
        return f"the Claude Code CLI cannot authenticate ({said}): {LOGIN_HELP}"
    refused = [line.strip() for line in stderr.splitlines() if _BAD_ARGS.match(line.strip())]
    if result is None and refused:
        return (
            f"the Claude Code CLI refused its command line ({refused[0]}): check the fixer.* "
            "options (model, allowed_tools, ...) against `claude --help` for this CLI version"
        )
    return ""


def claude_env(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The variables the Claude Code CLI authenticates with, kept although secrets.env_deny hides
    them from the target: its API key or OAuth token, and the cloud credentials of Bedrock or
    Vertex when one of those is selected."""
    keep: tuple[str, ...] = ("ANTHROPIC_*", "CLAUDE_CODE_*", "CLAUDE_CONFIG_DIR")
    if environ.get("CLAUDE_CODE_USE_BEDROCK"):
        keep += ("AWS_*",)
    if environ.get("CLAUDE_CODE_USE_VERTEX"):
        keep += ("GOOGLE_*", "CLOUD_ML_REGION", "GCLOUD_*", "CLOUDSDK_*")
    return keep


class ClaudeFixer:
    """Claude Code in print mode; tries every issue, reports cost and turns from its result."""

    name = "claude"

    def supports(self, issue: IssueRecord, config: FixerConfig) -> bool:
        return True  # the LLM tries anything; the verifier rejects what it gets wrong

    def check(self, config: FixerConfig) -> str:
        """What stops this fixer from starting at all ("" = nothing): a missing CLI."""

        if find_executable(config.claude_executable) is None:
            return (
                f"fixer claude: executable {config.claude_executable!r} not found (fixer.claude_executable, "
                "looked next to the Python interpreter and on PATH); install Claude Code with "
                "`npm install -g @anthropic-ai/claude-code`, or set fixer.claude_executable to its path"
            )
        return ""

    def fix(self, request: FixRequest) -> FixOutcome:
        from airfix.services.fixers.prompts import render_request

        started = time.monotonic()
        cfg = request.config
        batch = request.batch
        exe = find_executable(cfg.claude_executable)
        if exe is None:
            return FixOutcome(
                ok=False,
                reason=(
                    f"claude: executable {cfg.claude_executable!r} not found (fixer.claude_executable; "
                    "install Claude Code: npm install -g @anthropic-ai/claude-code)"
                ),
            )
        try:
            prompt = render_request(request)
        except Exception as exc:  # noqa: BLE001 - a broken prompts file fails this fix, clearly
            return FixOutcome(
                ok=False,
                reason=f"claude: cannot render the prompt: {exc}",
                duration_s=time.monotonic() - started,
            )
        # stdin when argv cannot carry it: too long, or it would parse as an option
        on_stdin = len(prompt.encode("utf-8")) > ARG_PROMPT_LIMIT or prompt.startswith("-")
        cmd = build_command(exe, None if on_stdin else prompt, cfg)
        shown = build_command(exe, None, cfg)
        if not on_stdin:
            shown.insert(2, f"<prompt: {len(prompt)} chars>")
        env = scrubbed_env(
            os.environ, keep=claude_env(os.environ)
        )  # its auth, none of airfix's secrets
        env.pop("CLAUDECODE", None)
        ctx = {"fixer": self.name, "batch_id": batch.batch_id}
        state = StreamState(context=ctx)
        log.info(
            "fixer started",
            command=shown,
            cwd=str(request.target),
            prompt_chars=len(prompt),
            prompt_on_stdin=on_stdin,
            **ctx,
        )
        res = stream_process(
            cmd,
            request.target,
            timeout_s=cfg.timeout_s,
            idle_timeout_s=cfg.idle_timeout_s,
            on_line=state.feed,
            env=env,
            stdin_text=prompt if on_stdin else None,
            done_grace_s=RESULT_GRACE_S,
        )
        duration = time.monotonic() - started
        result = state.result
        cost = _number(result.get("total_cost_usd"), float) if result else 0.0
        turns = _number(result.get("num_turns"), int) if result else len(state.assistant_messages)
        stderr = tail(res.stderr_tail, REASON_TAIL_CHARS)
        if res.launch_error:
            reason = f"claude: could not start {exe}: {res.launch_error}"
        elif result is not None:
            why = classify_result(result, rate_limited=state.rate_limited, max_turns=cfg.max_turns)
            reason = f"claude: {why}" if why else ""
        elif res.killed:
            reason = (
                f"claude: {res.killed}; its process group was killed "
                f"({state.events} events read, no result event)"
            )
        else:
            how = exit_description(res.exit_code)
            reason = f"claude: no result event; {how}" + (f"; stderr: {stderr}" if stderr else "")
            if state.rate_limited:
                reason += f"; {state.rate_limited}"
        fatal = incurable(state, result, res.stderr_tail, res.launch_error)
        if fatal:
            reason = f"claude: {fatal}"
        outcome = FixOutcome(
            ok=not reason,
            reason=reason,
            cost_usd=cost,
            turns=turns,
            duration_s=duration,
            commands=[shown],
            fatal=bool(fatal),
        )
        log.info(
            "fixer finished",
            ok=outcome.ok,
            reason=reason[:LOG_TEXT_CHARS],
            subtype=(result or {}).get("subtype", ""),
            cost_usd=cost,
            turns=turns,
            exit_code=res.exit_code,
            lingered=res.lingered,
            session_id=state.session_id,
            duration_s=round(duration, 3),
            **ctx,
        )
        return outcome
