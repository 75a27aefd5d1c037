"""Typed configuration: one frozen :class:`Config` (``schema.py``), loaded strictly from defaults,
a YAML file, the environment and overrides, with errors that name the key and where it came from
(``loader.py``).

Precedence, lowest first: built-in defaults < YAML file < environment < ``overrides``.  A
misspelt key, a wrong type or an out-of-range value is a
:class:`~airfix.events.errors.ConfigError`, never silently ignored.
"""

from __future__ import annotations

from airfix.config.loader import load_config
from airfix.config.schema import (
    DEFAULT_ENV_DENY,
    DEFAULT_REDACT_KEYS,
    ENV_PREFIX,
    ENV_REDIS_URL,
    LOG_LEVELS,
    BatchSizesConfig,
    CircuitBreakerConfig,
    CompletionCriteriaConfig,
    Config,
    ConsumersConfig,
    FixerConfig,
    GitConfig,
    GuardsConfig,
    HealthCheckConfig,
    IssueGroupingConfig,
    LoggingConfig,
    ProjectionsConfig,
    SecretsConfig,
    StoreConfig,
    TargetProjectConfig,
    config_to_dict,
    default_yaml_path,
)

__all__ = [
    "DEFAULT_ENV_DENY",
    "DEFAULT_REDACT_KEYS",
    "ENV_PREFIX",
    "ENV_REDIS_URL",
    "LOG_LEVELS",
    "BatchSizesConfig",
    "CircuitBreakerConfig",
    "CompletionCriteriaConfig",
    "Config",
    "ConsumersConfig",
    "FixerConfig",
    "GitConfig",
    "GuardsConfig",
    "HealthCheckConfig",
    "IssueGroupingConfig",
    "LoggingConfig",
    "ProjectionsConfig",
    "SecretsConfig",
    "StoreConfig",
    "TargetProjectConfig",
    "config_to_dict",
    "default_yaml_path",
    "load_config",
]
