"""airfix.config: strict typed loading, errors that name the key path, env overrides."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import yaml

from airfix.config import (
    Config,
    ConsumersConfig,
    StoreConfig,
    config_to_dict,
    default_yaml_path,
    load_config,
)
from airfix.events.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "airfix.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _leaf_paths(d: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, value in d.items():
        out.append((*prefix, key))
        if isinstance(value, dict):
            out.extend(_leaf_paths(value, (*prefix, key)))
    return out


class TestShippedYaml:
    def test_equals_builtin_defaults(self):
        """The shipped file restates the defaults exactly: editing one without the other fails."""
        assert Config() == load_config(default_yaml_path(), env={})

    def test_raw_file_has_every_default_key_and_no_other(self):
        """Compared as plain data too, so a key the loader would fill from defaults is caught."""
        raw = yaml.safe_load(default_yaml_path().read_text(encoding="utf-8"))
        assert config_to_dict(Config()) == raw

    def test_every_key_has_a_comment(self):
        """Every section and key carries a comment on the line above or on its own line."""
        text = default_yaml_path().read_text(encoding="utf-8")
        lines = text.splitlines()
        node = yaml.compose(text)
        key_lines: dict[tuple[str, ...], int] = {}

        def walk(n, prefix):
            if isinstance(n, yaml.MappingNode):
                for k, v in n.value:
                    key_lines[(*prefix, k.value)] = k.start_mark.line
                    walk(v, (*prefix, k.value))

        walk(node, ())
        missing = []
        for path in _leaf_paths(config_to_dict(Config())):
            line = key_lines[path]
            above = lines[line - 1].strip() if line else ""
            if not (above.startswith("#") or "#" in lines[line]):
                missing.append(".".join(path))
        assert [] == missing

    def test_is_package_data(self):
        """default_yaml_path() points at a real file inside the airfix.config package."""
        path = default_yaml_path()
        assert path.is_file()
        assert "autonomous_fix.yaml" == path.name


class TestDefaults:
    def test_no_file_means_builtin_defaults(self):
        assert Config() == load_config(env={})

    def test_selected_defaults(self):
        cfg = Config()
        assert "" == cfg.store.redis_url
        assert 4 == cfg.store.partitions
        assert 5 == cfg.consumers.delivery_cap
        assert 1 == cfg.completion_criteria.stability_runs
        assert "smart" == cfg.issue_grouping.mode
        assert ("autofix",) == cfg.fixer.chain
        assert "console" == cfg.logging.format

    def test_frozen(self):
        with pytest.raises(AttributeError):
            Config().store.partitions = 9  # type: ignore[misc]

    def test_config_to_dict_round_trips(self):
        """config_to_dict gives plain lists (YAML/JSON friendly) and converts back unchanged."""
        d = config_to_dict(Config())
        assert ["autofix"] == d["fixer"]["chain"]
        assert Config() == msgspec.convert(d, Config)
        yaml.safe_dump(d)  # plain builtins only


class TestFileMerge:
    def test_partial_file_keeps_other_defaults(self, tmp_path):
        path = _write(tmp_path, "store:\n  partitions: 8\nconsumers:\n  delivery_cap: 2\n")
        cfg = load_config(path, env={})
        assert StoreConfig(partitions=8) == cfg.store
        assert ConsumersConfig(delivery_cap=2) == cfg.consumers

    def test_empty_file_and_empty_section(self, tmp_path):
        """An empty file, or a section whose keys are all commented out, keeps the defaults."""
        assert Config() == load_config(_write(tmp_path, "# nothing\n"), env={})
        assert Config() == load_config(_write(tmp_path, "store:\n  # partitions: 3\n"), env={})

    def test_int_accepted_for_float(self, tmp_path):
        cfg = load_config(_write(tmp_path, "circuit_breaker:\n  max_duration_hours: 2\n"), env={})
        assert 2.0 == cfg.circuit_breaker.max_duration_hours


class TestErrorsNameTheKeyPath:
    def test_unknown_key_in_section(self, tmp_path):
        path = _write(tmp_path, "store:\n  partitons: 3\n")
        with pytest.raises(ConfigError) as ei:
            load_config(path, env={})
        msg = str(ei.value)
        assert "unknown key store.partitons" in msg
        assert "did you mean partitions?" in msg
        assert f"{path}, line 2" in msg

    def test_removed_log_maxlen_points_at_airfix_trim(self, tmp_path):
        """store.log_maxlen trimmed partition logs past what groups had read: it is gone, and
        setting it (anywhere, even to 0) says why and what to use instead."""
        path = _write(tmp_path, "store:\n  partitions: 4\n  log_maxlen: 1000\n")
        for kwargs, where in [
            ({"path": path}, f"(in {path}, line 3)"),
            (
                {"env": {"AIRFIX__STORE__LOG_MAXLEN": "0"}},
                "(from environment variable AIRFIX__STORE__LOG_MAXLEN)",
            ),
            ({"overrides": {"store.log_maxlen": 5}}, "(from overrides)"),
        ]:
            with pytest.raises(ConfigError) as ei:
                load_config(**{"env": {}, **kwargs})
            msg = str(ei.value)
            assert msg.startswith("store.log_maxlen: this key was removed"), msg
            assert "airfix trim --older-than" in msg and msg.endswith(where), msg

    def test_removed_fixer_name_names_fixer_chain(self, tmp_path):
        """fixer.name was documented as the fixer but never used (fixer.chain was): a config that
        still sets it is told which key does the job, instead of silently running autofix."""
        path = _write(tmp_path, "fixer:\n  name: command\n")
        with pytest.raises(ConfigError) as ei:
            load_config(path, env={})
        msg = str(ei.value)
        assert msg.startswith("fixer.name: this key was removed"), msg
        assert "fixer.chain" in msg and msg.endswith(f"(in {path}, line 2)"), msg

    def test_unknown_section(self, tmp_path):
        """An original-tool section that airfix does not read is an error, not silently dropped."""
        path = _write(tmp_path, "reporting:\n  slack_channel: x\n")
        with pytest.raises(ConfigError, match=r"unknown key reporting .*line 1"):
            load_config(path, env={})

    def test_section_key_at_top_level_suggests_section(self, tmp_path):
        path = _write(tmp_path, "partitions: 3\n")
        with pytest.raises(ConfigError, match=r"did you mean store\.partitions\?"):
            load_config(path, env={})

    def test_wrong_type(self, tmp_path):
        path = _write(tmp_path, "consumers:\n  block_ms: 10\n  delivery_cap: lots\n")
        with pytest.raises(ConfigError) as ei:
            load_config(path, env={})
        assert f"consumers.delivery_cap: expected int, got str (in {path}, line 3)" == str(ei.value)

    def test_bool_is_not_an_int(self, tmp_path):
        path = _write(tmp_path, "store:\n  partitions: yes\n")
        with pytest.raises(ConfigError, match=r"store\.partitions: expected int, got bool"):
            load_config(path, env={})

    def test_section_not_a_mapping(self, tmp_path):
        path = _write(tmp_path, "store: redis://x\n")
        with pytest.raises(ConfigError, match=r"^store: expected a mapping, got str"):
            load_config(path, env={})

    def test_list_item_path(self, tmp_path):
        path = _write(tmp_path, "fixer:\n  chain: [autofix, 3]\n")
        with pytest.raises(ConfigError, match=r"fixer\.chain\[1\]: expected str, got int"):
            load_config(path, env={})


class TestBadFiles:
    def test_missing_file(self, tmp_path):
        with pytest.raises(ConfigError, match="not found"):
            load_config(tmp_path / "nope.yaml", env={})

    def test_unparsable_yaml_names_file_and_line(self, tmp_path):
        path = _write(tmp_path, "store:\n  partitions: 4\n  prefix: [unclosed\nconsumers: {}\n")
        with pytest.raises(ConfigError) as ei:
            load_config(path, env={})
        msg = str(ei.value)
        assert msg.startswith(f"{path}, line ")
        assert "not valid YAML" in msg

    def test_top_level_not_a_mapping(self, tmp_path):
        path = _write(tmp_path, "- store\n- consumers\n")
        with pytest.raises(ConfigError) as ei:
            load_config(path, env={})
        assert (
            f"{path}, line 1: expected a mapping of sections at the top level, got a list"
            == str(ei.value)
        )

    def test_duplicate_key(self, tmp_path):
        """PyYAML keeps the last of two equal keys; a silent overwrite is refused instead."""
        path = _write(tmp_path, "store:\n  partitions: 4\n  partitions: 8\n")
        with pytest.raises(ConfigError, match=r"line 3: duplicate key store\.partitions"):
            load_config(path, env={})


class TestSemanticChecks:
    @pytest.mark.parametrize(
        ("overrides", "expected"),
        [
            ({"store": {"partitions": 0}}, "store.partitions: expected int >= 1, got 0"),
            (
                {"consumers": {"delivery_cap": 0}},
                "consumers.delivery_cap: expected int >= 1, got 0",
            ),
            (
                {"completion_criteria": {"min_test_pass_rate": 1.5}},
                "completion_criteria.min_test_pass_rate: expected float <= 1.0, got 1.5",
            ),
            (
                {"health_check": {"static_pass_threshold": -0.1}},
                "health_check.static_pass_threshold: expected float >= 0.0, got -0.1",
            ),
            (
                {"issue_grouping": {"mode": "clever"}},
                "issue_grouping.mode: expected one of mega, smart, individual, got 'clever'",
            ),
            ({"logging": {"format": "xml"}}, "logging.format: expected one of console, json"),
            ({"logging": {"level": "loud"}}, "logging.level: expected one of debug, info"),
            ({"fixer": {"chain": []}}, "fixer.chain: expected a list of length >= 1, got length 0"),
            (
                {"consumers": {"retry_backoff_ms": 500, "retry_backoff_max_ms": 100}},
                "consumers.retry_backoff_max_ms: must be >= consumers.retry_backoff_ms (500)",
            ),
            (
                {"consumers": {"lease_ttl_ms": 1000}},
                "consumers.rebalance_interval_ms: must be < consumers.lease_ttl_ms (1000)",
            ),
        ],
    )
    def test_out_of_range(self, overrides, expected):
        with pytest.raises(ConfigError) as ei:
            load_config(overrides=overrides, env={})
        assert expected in str(ei.value)
        assert "(from overrides)" in str(ei.value)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                "consumers:\n  lease_ttl_ms: 99999999999999999999\n",
                "consumers.lease_ttl_ms: expected int <= 3600000, got 99999999999999999999",
            ),
            (
                "store:\n  partitions: 100000000\n",
                "store.partitions: expected int <= 1024, got 100000000",
            ),
            (
                "consumers:\n  lease_ttl_ms: 5\n",
                "consumers.lease_ttl_ms: expected int >= 100, got 5",
            ),
            ("consumers:\n  block_ms: 86400000\n", "consumers.block_ms: expected int <= 60000"),
            ("fixer:\n  timeout_s: .inf\n", "fixer.timeout_s: expected float <= 86400.0, got inf"),
            ("fixer:\n  timeout_s: .nan\n", "fixer.timeout_s: expected float > 0.0, got nan"),
            (
                "health_check:\n  test_timeout_s: -1\n",
                "health_check.test_timeout_s: expected float > 0.0",
            ),
            (
                "circuit_breaker:\n  max_duration_hours: 1000000\n",
                "circuit_breaker.max_duration_hours: expected float <= 8784",
            ),
            (
                "circuit_breaker:\n  max_total_runs: 10000000000\n",
                "circuit_breaker.max_total_runs: expected int <= 100000",
            ),
            (
                "consumers:\n  delivery_cap: 1000000\n",
                "consumers.delivery_cap: expected int <= 1000",
            ),
        ],
    )
    def test_values_are_range_checked_at_load_with_the_key_path(self, tmp_path, text, expected):
        """Values that used to be accepted and later stalled or crashed a worker."""
        path = _write(tmp_path, text)
        with pytest.raises(ConfigError) as ei:
            load_config(path, env={})
        assert expected in str(ei.value)
        assert str(ei.value).endswith(f"(in {path}, line 2)")

    def test_semantic_error_from_file_names_file(self, tmp_path):
        path = _write(tmp_path, "store:\n  partitions: 0\n")
        with pytest.raises(ConfigError, match=rf"got 0 \(in {path}, line 2\)"):
            load_config(path, env={})

    def test_level_is_case_insensitive(self):
        assert "DEBUG" == load_config(overrides={"logging.level": "DEBUG"}, env={}).logging.level


class TestEnvironment:
    def test_redis_url(self):
        cfg = load_config(env={"AIRFIX_REDIS_URL": "redis://:pw@localhost:6379/2"})
        assert "redis://:pw@localhost:6379/2" == cfg.store.redis_url

    def test_redis_url_beats_file(self, tmp_path):
        path = _write(tmp_path, "store:\n  redis_url: redis://file:6379/0\n")
        cfg = load_config(path, env={"AIRFIX_REDIS_URL": "redis://env:6379/0"})
        assert "redis://env:6379/0" == cfg.store.redis_url

    def test_generic_form_parses_yaml_scalars(self):
        cfg = load_config(
            env={
                "AIRFIX__STORE__PARTITIONS": "8",
                "AIRFIX__COMPLETION_CRITERIA__MIN_TEST_PASS_RATE": "0.5",
                "AIRFIX__GUARDS__ALLOW_SUPPRESSIONS": "true",
                "AIRFIX__FIXER__CHAIN": "[autofix, manual]",
            }
        )
        assert 8 == cfg.store.partitions
        assert 0.5 == cfg.completion_criteria.min_test_pass_rate
        assert cfg.guards.allow_suppressions is True
        assert ("autofix", "manual") == cfg.fixer.chain

    def test_generic_form_keeps_strings_verbatim(self):
        """A string key takes the text as is: a numeric-looking prefix does not become an int."""
        cfg = load_config(env={"AIRFIX__STORE__PREFIX": "123", "AIRFIX__LOGGING__FORMAT": "json"})
        assert "123" == cfg.store.prefix
        assert "json" == cfg.logging.format

    def test_generic_form_wins_over_redis_url_shortcut(self):
        cfg = load_config(
            env={"AIRFIX_REDIS_URL": "redis://a", "AIRFIX__STORE__REDIS_URL": "redis://b"}
        )
        assert "redis://b" == cfg.store.redis_url

    def test_env_beats_file_and_overrides_beat_env(self, tmp_path):
        path = _write(tmp_path, "store:\n  partitions: 2\n")
        env = {"AIRFIX__STORE__PARTITIONS": "3"}
        assert 3 == load_config(path, env=env).store.partitions
        assert 5 == load_config(path, overrides={"store.partitions": 5}, env=env).store.partitions

    def test_bad_env_value_names_variable(self):
        with pytest.raises(ConfigError) as ei:
            load_config(env={"AIRFIX__CONSUMERS__DELIVERY_CAP": "many"})
        assert (
            "consumers.delivery_cap: expected int, got str "
            "(from environment variable AIRFIX__CONSUMERS__DELIVERY_CAP)"
        ) == str(ei.value)

    def test_unknown_env_key_names_variable(self):
        with pytest.raises(ConfigError, match=r"unknown key store\.partitons .*AIRFIX__STORE__"):
            load_config(env={"AIRFIX__STORE__PARTITONS": "3"})

    def test_unrelated_variables_are_ignored(self):
        assert Config() == load_config(env={"AIRFIX_HOME": "/x", "PATH": "/bin"})

    def test_none_reads_os_environ(self, monkeypatch):
        monkeypatch.setenv("AIRFIX__STORE__PARTITIONS", "7")
        assert 7 == load_config().store.partitions


class TestOverrides:
    def test_nested_and_dotted(self):
        cfg = load_config(
            overrides={"store": {"partitions": 2}, "consumers.delivery_cap": 9}, env={}
        )
        assert 2 == cfg.store.partitions
        assert 9 == cfg.consumers.delivery_cap

    def test_caller_mapping_not_mutated(self):
        overrides = {"fixer": {"chain": ["a"]}}
        load_config(overrides=overrides, env={})
        assert {"fixer": {"chain": ["a"]}} == overrides
