"""airfix.services.runtime.logs: event context on every line, no locals in tracebacks, a safe sink."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from airfix.events.errors import ConfigError
from airfix.events.schema import RunStarted
from airfix.services.runtime import logs
from airfix.services.runtime.logs import bind_event, configure_logging, event_context, get_logger

# Module level, not a literal in the raising function: Rich tracebacks print the source lines
# around the raise, and the test is about rendered *values*, not about source code.
SECRET = "hunter2"


@pytest.fixture(autouse=True)
def _reset_structlog():
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture(name="out")
def _out():
    return io.StringIO()


class _TTY(io.StringIO):
    def isatty(self):
        return True


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line]


def _event():
    return RunStarted(
        run_id="run-1", event_id="01EVT", version=3, correlation_id="corr-1", causation_id="cause-1"
    )


def _raise_with_secret_local():
    secret = SECRET  # noqa: F841 - the local whose value must never be rendered
    raise RuntimeError("tool crashed")


class TestJson:
    def test_bound_event_fields_on_every_line(self, out):
        configure_logging(fmt="json", stream=out)
        log = get_logger("airfix.test")
        with bind_event(_event(), stream="airfix:events:0", entry_id="1-0"):
            log.info("handling")
            log.warning("still handling", attempt=2)
        log.info("after")

        first, second, after = _lines(out)
        for line in (first, second):
            assert "run-1" == line["run_id"]
            assert "01EVT" == line["event_id"]
            assert 3 == line["version"]
            assert "RunStarted" == line["event_type"]
            assert "corr-1" == line["correlation_id"]
            assert "cause-1" == line["causation_id"]
            assert "airfix:events:0" == line["stream"]
            assert "1-0" == line["entry_id"]
            assert "airfix.test" == line["logger"]
        assert "warning" == second["level"]
        assert 2 == second["attempt"]
        assert "run_id" not in after  # context restored on exit

    def test_timestamp_is_iso_utc(self, out):
        configure_logging(fmt="json", stream=out)
        get_logger().info("x")
        (line,) = _lines(out)
        assert line["timestamp"].endswith("Z")
        assert "T" in line["timestamp"]

    def test_level_filter(self, out):
        configure_logging(level="WARNING", fmt="json", stream=out)
        log = get_logger()
        log.info("dropped")
        log.error("kept")
        assert ["kept"] == [line["event"] for line in _lines(out)]

    def test_traceback_without_locals(self, out):
        configure_logging(fmt="json", stream=out)
        try:
            _raise_with_secret_local()
        except RuntimeError:
            get_logger().exception("fix failed")
        text = out.getvalue()
        assert SECRET not in text
        (line,) = _lines(out)
        (exc,) = line["exception"]
        assert "RuntimeError" == exc["exc_type"]
        assert "_raise_with_secret_local" in [f["name"] for f in exc["frames"]]
        assert all("locals" not in f for f in exc["frames"])


class TestConsole:
    def test_renders_event_and_context(self, out):
        configure_logging(fmt="console", stream=out)
        with bind_event(_event()):
            get_logger("airfix.test").info("handling")
        text = out.getvalue()
        assert "handling" in text
        assert "run_id=run-1" in text
        assert "event_type=RunStarted" in text
        assert "\x1b[" not in text  # not a terminal: no colour codes

    @pytest.mark.parametrize("stream_cls", [io.StringIO, _TTY], ids=["plain", "rich-tty"])
    def test_traceback_without_locals(self, stream_cls):
        """Both the plain and the Rich (terminal) formatter leave locals out."""
        out = stream_cls()
        configure_logging(fmt="console", stream=out)
        try:
            _raise_with_secret_local()
        except RuntimeError:
            get_logger().exception("fix failed")
        text = out.getvalue()
        assert "tool crashed" in text
        assert "_raise_with_secret_local" in text
        assert SECRET not in text


class TestConfigure:
    def test_idempotent(self, out):
        """Configuring twice replaces the first configuration; lines are not doubled."""
        configure_logging(fmt="console", stream=io.StringIO())
        log = get_logger("early")  # created before the final configuration
        configure_logging(fmt="json", stream=out)
        configure_logging(fmt="json", stream=out)
        log.info("once")
        assert [("once", "early")] == [(line["event"], line["logger"]) for line in _lines(out)]

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [({"level": "loud"}, "logging.level"), ({"fmt": "xml"}, "logging.format")],
    )
    def test_bad_arguments(self, kwargs, match):
        with pytest.raises(ConfigError, match=match):
            configure_logging(**kwargs)


class TestEventContext:
    def test_from_mapping_skips_empty(self):
        ctx = event_context({"type": "FixApplied", "run_id": "r", "version": 0, "event_id": ""})
        assert {"event_type": "FixApplied", "run_id": "r", "version": 0} == ctx

    def test_undecodable_entry_has_only_location(self):
        assert {"stream": "s", "entry_id": "1-0"} == event_context(None, "s", "1-0")

    def test_extra_keys_and_yielded_context(self):
        with bind_event(None, stream="s", consumer="c1") as ctx:
            assert {"stream": "s", "consumer": "c1"} == ctx
            assert ctx == structlog.contextvars.get_contextvars()
        assert {} == structlog.contextvars.get_contextvars()


class TestSink:
    def test_sink_gets_copy_of_final_dict(self, out):
        got: list[dict] = []
        configure_logging(fmt="json", stream=out, redis_sink=got.append)
        with bind_event(_event()):
            get_logger().info("mirrored", n=1)
        (line,) = _lines(out)
        assert [line] == got  # same content as rendered
        got[0]["n"] = 99
        assert 1 == _lines(out)[0]["n"]

    def test_sink_below_level_not_called(self, out):
        got: list[dict] = []
        configure_logging(level="error", fmt="json", stream=out, redis_sink=got.append)
        get_logger().info("dropped")
        assert [] == got

    def test_console_sink_gets_exception_without_locals(self, out):
        got: list[dict] = []
        configure_logging(fmt="console", stream=out, redis_sink=got.append)
        try:
            _raise_with_secret_local()
        except RuntimeError:
            get_logger().exception("fix failed")
        (entry,) = got
        assert "exc_info" not in entry
        assert "RuntimeError" == entry["exception"][0]["exc_type"]
        assert SECRET not in json.dumps(entry)
        assert "Traceback" in out.getvalue()  # the console still renders it itself

    def test_failing_sink_counts_and_warns_once(self, out, capsys):
        def broken(_event_dict):
            raise ConnectionError("redis down")

        configure_logging(fmt="json", stream=out, redis_sink=broken)
        before = logs.sink_failures()
        log = get_logger()
        log.info("one")
        log.info("two")
        assert 2 == logs.sink_failures() - before
        assert ["one", "two"] == [line["event"] for line in _lines(out)]  # logging went on
        err = capsys.readouterr().err
        assert 1 == err.count("log sink failed")
        assert "ConnectionError: redis down" in err

    def test_sink_that_logs_does_not_recurse(self, out):
        calls: list[str] = []

        def chatty(event_dict):
            calls.append(event_dict["event"])
            get_logger().info("from sink")

        configure_logging(fmt="json", stream=out, redis_sink=chatty)
        get_logger().info("outer")
        assert ["outer"] == calls
        assert ["from sink", "outer"] == [line["event"] for line in _lines(out)]
