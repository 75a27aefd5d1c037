"""The configuration's schema: one frozen :class:`Config` of sections, every key typed and
range-checked, so a misspelt key or an out-of-range value is refused at load with its key path
(``config/loader.py``).  ``autonomous_fix.yaml`` restates the defaults with a comment per key."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

ENV_REDIS_URL = "AIRFIX_REDIS_URL"
ENV_PREFIX = "AIRFIX__"
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")

# Constrained scalars.  The constraints are checked when a mapping is decoded (load_config), not
# when a Struct is built in code: msgspec leaves construction unchecked on purpose (static type
# checkers cover code, decoding covers untrusted input).
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
Name = Annotated[str, msgspec.Meta(min_length=1)]


# Upper bounds too: a typo of a few digits is an error at load, not a worker that stalls (a lease of
# three billion years) or a store of 10^8 partition streams.  Floats refuse NaN and infinities.
HOUR_MS = 3_600_000
DAY_S = 86_400.0
Partitions = Annotated[int, msgspec.Meta(ge=1, le=1024)]
BlockMs = Annotated[int, msgspec.Meta(ge=1, le=60_000)]
LeaseMs = Annotated[int, msgspec.Meta(ge=100, le=HOUR_MS)]
IntervalMs = Annotated[int, msgspec.Meta(ge=1, le=HOUR_MS)]
BackoffMs = Annotated[int, msgspec.Meta(ge=0, le=HOUR_MS)]
Count = Annotated[int, msgspec.Meta(ge=1, le=100_000)]
SmallCount = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=DAY_S)]
SecondsOrZero = Annotated[float, msgspec.Meta(ge=0, le=DAY_S)]
Hours = Annotated[float, msgspec.Meta(gt=0, le=24 * 366)]
Dollars = Annotated[float, msgspec.Meta(ge=0, le=1_000_000)]


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every section: immutable, keyword-only, and strict about unknown keys."""


# ---------------------------------------------------------------- infrastructure sections


class StoreConfig(_Section, frozen=True, kw_only=True):
    """Where events live: Redis (or the embedded store) and the key layout."""

    redis_url: str = ""  # "" = the embedded store (fakeredis), for tests and single-process use
    prefix: Name = "autonomous_fix"
    partitions: Partitions = 4
    # the embedded store's events between commands (JSON lines); "" = keep nothing
    journal: str = "~/.local/share/airfix/journal.jsonl"


class ConsumersConfig(_Section, frozen=True, kw_only=True):
    """How consumer groups read, lease partitions, retry and stop."""

    # >= 1: XREADGROUP BLOCK 0 would block forever and defeat the shutdown deadline.
    block_ms: BlockMs = 1000
    batch_size: SmallCount = 200
    lease_ttl_ms: LeaseMs = 10000
    rebalance_interval_ms: IntervalMs = 1000
    delivery_cap: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    retry_backoff_ms: BackoffMs = 50
    retry_backoff_max_ms: BackoffMs = 2000
    shutdown_deadline_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    heartbeat_interval_ms: IntervalMs = 2000
    # How much lower the CPU priority (nice) of the tools and fixers an `airfix worker` starts is
    # than its own, their session's scheduling group's too where Linux groups by session
    # (autogroup): on a busy machine they wait, not its leases, projections and steps. 0 = same.
    child_niceness: Annotated[int, msgspec.Meta(ge=0, le=19)] = 10


class ProjectionsConfig(_Section, frozen=True, kw_only=True):
    """Read models built from the log."""

    run_history_length: SmallCount = 10
    wait_timeout_s: SecondsOrZero = 10.0


class LoggingConfig(_Section, frozen=True, kw_only=True):
    """structlog output (see :mod:`airfix.services.runtime.logs`)."""

    level: str = "info"  # checked against LOG_LEVELS, case-insensitively
    format: Literal["console", "json"] = "console"
    log_stream_maxlen: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)] = 10000


# ---------------------------------------------------------------- fix-pipeline sections


class CompletionCriteriaConfig(_Section, frozen=True, kw_only=True):
    """When a run counts as healthy and stops with success."""

    build_passes: bool = True
    min_test_pass_rate: Fraction = 0.95
    max_lint_errors: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0
    # 1, not the original's 3: a run that was already healthy had to loop two more iterations
    # re-measuring an unchanged tree (burning the iteration cap) before it could stop.
    stability_runs: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1


class CircuitBreakerConfig(_Section, frozen=True, kw_only=True):
    """Budgets that stop a run that is not converging.  Names follow the original config."""

    max_consecutive_failures: SmallCount = 5
    # The iteration cap: one "run" of the original is one iteration here.
    max_total_runs: Count = 20
    max_duration_hours: Hours = 4.0
    no_progress_iterations: SmallCount = 3
    max_cost_usd: Dollars = 0.0  # 0 = no cost limit


class BatchSizesConfig(_Section, frozen=True, kw_only=True):
    """How many grouped fix tasks one iteration executes per phase."""

    build_fixes: Count = 5
    test_fixes: Count = 5
    lint_fixes: Count = 5


class IssueGroupingConfig(_Section, frozen=True, kw_only=True):
    """How discovered issues are grouped into fix tasks."""

    mode: Literal["mega", "smart", "individual"] = "smart"
    max_cleanup_batch_size: Count = 50
    max_location_batch_size: Count = 20


class HealthCheckConfig(_Section, frozen=True, kw_only=True):
    """Measuring the target project."""

    static_pass_threshold: Fraction = 0.6
    tool_timeout_s: Seconds = 300.0
    test_timeout_s: Seconds = 600.0


class FixerConfig(_Section, frozen=True, kw_only=True):
    """Which fixers edit code, and their limits."""

    chain: Annotated[tuple[Name, ...], msgspec.Meta(min_length=1)] = ("autofix",)
    timeout_s: Seconds = 900.0
    idle_timeout_s: Seconds = 300.0
    max_turns: SmallCount = 30
    allow_unsafe_fixes: bool = False
    # How batches are verified: "batch" = each by the full checks (tests included); "stack" = each
    # by the per-file static checks, the tests and whole-program checkers (mypy) once on the tip of
    # the iteration's stack (bisected when it fails); "auto" = stack for deterministic chains.
    verify: Literal["auto", "batch", "stack"] = "auto"
    # Batches fixed at the same time (for slow fixers: an LLM agent takes minutes per batch), each
    # in its own worktree at the run's tip, never two touching the same files; the verifier still
    # takes them one at a time, each replayed onto the tip (a conflict fails that batch).
    parallel: Annotated[int, msgspec.Meta(ge=1, le=32)] = 1
    # Verified by batch, a batch runs only the tests that executed the files it changed at the
    # iteration's start (pytest under coverage), plus those not passing then; the closing check
    # runs the whole suite and reverts a commit it finds breaking a test. false = every test.
    test_impact: bool = True
    # LLM fixers (services/fixers/claude.py, command.py); see config/prompts.yaml for the prompts.
    claude_executable: Name = "claude"
    model: str = ""  # "" = the Claude Code CLI's default model
    # Claude Code permission rules: edits, and Bash only for the projects' checks (no git commit).
    allowed_tools: tuple[Name, ...] = (
        "Read",
        "Edit",
        "Write",
        "Glob",
        "Grep",
        "Bash(ruff check:*)",
        "Bash(ruff format:*)",
        "Bash(mypy:*)",
        "Bash(pytest:*)",
        "Bash(python -m pytest:*)",
        "Bash(npx eslint:*)",
        "Bash(npx tsc:*)",
        "Bash(npm test:*)",
        "Bash(go build:*)",
        "Bash(go vet:*)",
        "Bash(go test:*)",
        "Bash(dart analyze:*)",
        "Bash(dart test:*)",
        "Bash(flutter test:*)",
        "Bash(git diff:*)",
        "Bash(git status:*)",
    )
    disallowed_tools: tuple[Name, ...] = (
        "Bash(git commit:*)",
        "Bash(git push:*)",
        "Bash(git reset:*)",
        "Bash(git checkout:*)",
        "Bash(git stash:*)",
        "Bash(git rebase:*)",
        "Bash(git merge:*)",
        "WebFetch",
        "WebSearch",
    )
    max_budget_usd: Dollars = 0.0  # per fix task (--max-budget-usd); 0 = no limit
    command: tuple[str, ...] = ()  # the "command" fixer's argv template; () = not configured
    # Environment variables (fnmatch) the "command" fixer gets although secrets.env_deny hides them
    # from the target, e.g. [OPENAI_API_KEY] for an agent that needs it.
    command_env: tuple[Name, ...] = ()
    prompts_file: str = ""  # "" = the shipped config/prompts.yaml


class TargetProjectConfig(_Section, frozen=True, kw_only=True):
    """The project to fix, and the environment its tools run in."""

    path: str = ""  # the repository a run fixes when none is named on the command line
    # The project's Python interpreter (a venv's bin/python).  "" = detect it: UV_PROJECT_ENVIRONMENT,
    # .venv/venv/env in the repository, Poetry, .pdm-python, an active VIRTUAL_ENV; else airfix's own.
    python: str = ""


class GitConfig(_Section, frozen=True, kw_only=True):
    """How fixes are committed."""

    branch_prefix: str = "airfix/"
    commit_to_current_branch: bool = False  # fast-forward the user's branch when the run ends
    run_hooks: bool = True
    workspace: str = ""  # where steps make their private worktrees; "" = ~/.cache/airfix/workspace
    max_clones: PositiveInt = (
        20  # cached clones of remote targets a worker keeps (least recently used go)
    )
    # seconds a step's worktree is kept for the run's next step on the same worker (0 = removed
    # after every step)
    keep_worktrees_s: NonNegativeFloat = 120.0


class GuardsConfig(_Section, frozen=True, kw_only=True):
    """Edits a fix may not make unless explicitly allowed; each one is a way to "pass" by cheating."""

    allow_test_deletion: bool = False
    allow_suppressions: bool = False
    allow_config_edits: bool = False


#: Key names (fnmatch, any case) whose values never reach events, exports, archives or log lines.
DEFAULT_REDACT_KEYS: tuple[str, ...] = (
    "*password*",
    "*passwd*",
    "*secret*",
    "*token*",
    "*api_key*",
    "*apikey*",
    "*credential*",
    "*private_key*",
    "*auth*key*",
)
#: Environment variables (fnmatch, any case) that the target's tools and the fixers never see.
DEFAULT_ENV_DENY: tuple[str, ...] = (
    "AIRFIX_REDIS_URL",
    "AIRFIX__*",
    "*REDIS_URL*",
    "*_API_KEY",
    "*APIKEY*",
    "*_TOKEN",
    "TOKEN",
    "*_TOKEN_*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*PRIVATE_KEY*",
    "*ACCESS_KEY*",
    "*CREDENTIALS*",
)


class SecretsConfig(_Section, frozen=True, kw_only=True):
    """What airfix keeps out of what it writes and out of the target's processes
    (:mod:`airfix.services.secrets`)."""

    redact_keys: tuple[Name, ...] = DEFAULT_REDACT_KEYS
    env_deny: tuple[Name, ...] = DEFAULT_ENV_DENY
    env_allow: tuple[
        Name, ...
    ] = ()  # exceptions to env_deny, e.g. [PGPASSWORD] for the target's tests


def _section(cls: type) -> Any:
    return msgspec.field(default_factory=cls)


class Config(_Section, frozen=True, kw_only=True):
    """The whole configuration.  ``Config()`` is the built-in defaults."""

    store: StoreConfig = _section(StoreConfig)
    consumers: ConsumersConfig = _section(ConsumersConfig)
    projections: ProjectionsConfig = _section(ProjectionsConfig)
    logging: LoggingConfig = _section(LoggingConfig)
    completion_criteria: CompletionCriteriaConfig = _section(CompletionCriteriaConfig)
    circuit_breaker: CircuitBreakerConfig = _section(CircuitBreakerConfig)
    batch_sizes: BatchSizesConfig = _section(BatchSizesConfig)
    issue_grouping: IssueGroupingConfig = _section(IssueGroupingConfig)
    health_check: HealthCheckConfig = _section(HealthCheckConfig)
    fixer: FixerConfig = _section(FixerConfig)
    target_project: TargetProjectConfig = _section(TargetProjectConfig)
    git: GitConfig = _section(GitConfig)
    guards: GuardsConfig = _section(GuardsConfig)
    secrets: SecretsConfig = _section(SecretsConfig)


# ---------------------------------------------------------------- public helpers


def default_yaml_path() -> Path:
    """Path of the shipped ``autonomous_fix.yaml`` (package data, so it works when installed)."""
    # The package is always installed as files on disk (setuptools, no zip), so a Path is safe.
    return Path(str(resources.files("airfix.config").joinpath("autonomous_fix.yaml")))


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain dicts, lists and scalars: ready for YAML, JSON or a ``RunRequested`` payload."""
    return _lists(msgspec.to_builtins(cfg))


def _lists(value: Any) -> Any:
    """to_builtins keeps tuples; YAML safe_dump and JSON readers want lists."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


# ---------------------------------------------------------------- semantic checks


def _semantic_problems(cfg: Config) -> list[tuple[tuple[str, ...], str]]:
    """Rules that span fields or that a type cannot say; ranges are in the field types above."""
    problems: list[tuple[tuple[str, ...], str]] = []
    level = cfg.logging.level
    if level.lower() not in LOG_LEVELS:
        problems.append(
            (
                ("logging", "level"),
                f"logging.level: expected one of {', '.join(LOG_LEVELS)}, got {level!r}",
            )
        )
    c = cfg.consumers
    if c.retry_backoff_max_ms < c.retry_backoff_ms:
        problems.append(
            (
                ("consumers", "retry_backoff_max_ms"),
                (
                    f"consumers.retry_backoff_max_ms: must be >= consumers.retry_backoff_ms "
                    f"({c.retry_backoff_ms}), got {c.retry_backoff_max_ms}"
                ),
            )
        )
    for key in ("rebalance_interval_ms", "heartbeat_interval_ms"):
        interval = getattr(c, key)
        if interval >= c.lease_ttl_ms:
            problems.append(
                (
                    ("consumers", key),
                    (
                        f"consumers.{key}: must be < consumers.lease_ttl_ms ({c.lease_ttl_ms}), "
                        f"got {interval}; a lease would expire between two renewals"
                    ),
                )
            )
    return problems
