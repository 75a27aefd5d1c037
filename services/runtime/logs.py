"""Structured logging: one structlog pipeline, event context from contextvars, no leaked locals.

Every service calls :func:`configure_logging` once at start (tests may call it again: it replaces
the previous configuration).  Handlers wrap the handling of one stream entry in :func:`bind_event`,
so every line logged meanwhile - by the fold, a projection or a tool adapter - carries ``run_id``,
``event_id``, ``version``, ``event_type``, ``correlation_id`` and ``causation_id`` without a logger
being passed around.

Tracebacks never include local variables.  Locals of a fix run hold Redis URLs with passwords,
API tokens and file contents; a log line is the wrong place for any of them.  And every line is
redacted (:mod:`airfix.services.secrets`): URL passwords, values of keys named like secrets and
token-shaped strings become ``***`` in the event dict (so in the log stream too) and, last, in the
rendered text (exception messages included).
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO, cast

import structlog
from structlog.typing import EventDict, ExceptionRenderer, Processor, WrappedLogger

from airfix.events.errors import ConfigError

__all__ = [
    "LogSink",
    "bind_event",
    "configure_logging",
    "event_context",
    "get_logger",
    "sink_failures",
]

LogSink = Callable[[dict[str, Any]], None]
"""Receives a copy of each final event dict (after filtering, before rendering)."""

_LEVELS = ("debug", "info", "warning", "error", "critical")
_FORMATS = ("console", "json")

# JSON: the exception becomes a list of frame dicts (file, line, function), never their locals.
_DICT_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)

_sink_lock = threading.Lock()
_sink_failures = 0
_in_sink: contextvars.ContextVar[bool] = contextvars.ContextVar("airfix_in_log_sink", default=False)


def sink_failures() -> int:
    """How many times the log sink raised since the process started (for health and metrics)."""
    return _sink_failures


class _SinkProcessor:
    """Hands each event dict to the sink; a failing sink is counted and reported, never fatal.

    Logging must not crash the service: if Redis is down, the fix run goes on and the lines still
    reach the stream.  A failure is not swallowed either: it increments :func:`sink_failures` and
    the first failure after each :func:`configure_logging` writes one warning to ``sys.stderr``
    (one, not one per line, so a dead sink cannot flood stderr).  A sink that itself logs is not
    called again for its own lines, so it cannot recurse.
    """

    __slots__ = ("_sink", "_warned")

    def __init__(self, sink: LogSink) -> None:
        self._sink = sink
        self._warned = False

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        global _sink_failures
        if _in_sink.get():
            return event_dict
        mirrored = dict(event_dict)
        if "exc_info" in mirrored:  # the console pipeline renders it later; the sink needs data
            mirrored = dict(
                _redact(logger, method_name, _DICT_TRACEBACKS(logger, method_name, mirrored))
            )
        token = _in_sink.set(True)
        try:
            self._sink(mirrored)
        except Exception as exc:  # noqa: BLE001 - counted and reported below, see the docstring
            with _sink_lock:
                _sink_failures += 1
                first, self._warned = not self._warned, True
            if first:
                sys.stderr.write(
                    f"airfix.logs: log sink failed ({type(exc).__name__}: {exc}); "
                    "further failures are only counted (airfix.services.runtime.logs.sink_failures())\n"
                )
                sys.stderr.flush()
        finally:
            _in_sink.reset(token)
        return event_dict


def _console_exception_formatter(colors: bool) -> ExceptionRenderer:
    """Rich tracebacks on a terminal, plain ones elsewhere; locals off in both."""
    if colors:
        try:
            import rich  # noqa: F401 - only to know whether RichTracebackFormatter can work
        except ImportError:
            return structlog.dev.plain_traceback
        return structlog.dev.RichTracebackFormatter(show_locals=False)
    return structlog.dev.plain_traceback


class _CurrentStderr:
    """``sys.stderr`` looked up at each write, so a replaced (and later closed) stderr, as in test
    captures or daemonised workers, never leaves logging writing into a closed file."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(
    level: str = "info",
    fmt: str = "console",
    stream: TextIO | None = None,
    redis_sink: LogSink | None = None,
    sink_level: str | None = None,
) -> None:
    """Configure structlog for the whole process; calling it again replaces the configuration.

    Args:
        level: minimum level name (debug, info, warning, error, critical; any case).
        fmt: ``"console"`` for people, ``"json"`` for one JSON object per line.
        stream: where lines go; ``None`` means whatever ``sys.stderr`` is when a line is written.
        redis_sink: optional callable given a copy of every event dict that passes the level filter,
            e.g. to mirror lines into a capped Redis stream.  See :class:`_SinkProcessor`.
        sink_level: the sink's own minimum level (default: ``level``); lines between the two reach
            the sink only, so a quiet terminal can still feed a detailed mirror.

    Raises:
        ConfigError: unknown level or format (named as the ``logging.*`` config keys).
    """
    name = level.lower()
    if name not in _LEVELS:
        msg = f"logging.level: expected one of {', '.join(_LEVELS)}, got {level!r}"
        raise ConfigError(msg)
    floor = name
    if redis_sink is not None and sink_level is not None:
        if sink_level.lower() not in _LEVELS:
            raise ConfigError(
                f"sink level: expected one of {', '.join(_LEVELS)}, got {sink_level!r}"
            )
        floor = min(name, sink_level.lower(), key=_LEVELS.index)
    if fmt not in _FORMATS:
        msg = f"logging.format: expected one of {', '.join(_FORMATS)}, got {fmt!r}"
        raise ConfigError(msg)
    # _CurrentStderr is file-like where PrintLogger needs it: write, flush, isatty
    out = cast(TextIO, _CurrentStderr()) if stream is None else stream

    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,  # first, so explicit kwargs override the context
        structlog.processors.add_log_level,
        _add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if fmt == "json":
        processors.append(_DICT_TRACEBACKS)
    processors.append(_redact)
    if redis_sink is not None:
        processors.append(_SinkProcessor(redis_sink))
    if floor != name:
        processors.append(_drop_below(name))
    if fmt == "json":
        processors.append(_redacted_text(structlog.processors.JSONRenderer()))
    else:
        isatty = getattr(out, "isatty", None)
        colors = bool(isatty and isatty())
        processors.append(
            _redacted_text(
                structlog.dev.ConsoleRenderer(
                    colors=colors, exception_formatter=_console_exception_formatter(colors)
                )
            )
        )

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(floor),
        context_class=dict,
        logger_factory=_NamedPrintLoggerFactory(out),
        # Not cached: module-level loggers must follow a later configure_logging (CLI, tests).
        cache_logger_on_first_use=False,
    )


def _redact(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Secrets out of the event dict (``exc_info`` is left to the renderer, see below)."""
    from airfix.services.secrets import redact_config

    exc = event_dict.pop("exc_info", None)
    out: EventDict = redact_config(event_dict)
    if exc is not None:
        out["exc_info"] = exc
    return out


def _redacted_text(renderer: Processor) -> Processor:
    """The renderer, whose text (tracebacks and exception messages included) is redacted too."""
    from airfix.services.secrets import redact_text

    def render(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
        text = renderer(logger, method_name, event_dict)
        return redact_text(text) if isinstance(text, str) else text

    return render


def _drop_below(level: str) -> Processor:
    """Drop lines under ``level`` (they were logged only for the sink)."""
    floor = _LEVELS.index(level)

    def drop(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if _LEVELS.index(_level_of(method_name)) < floor:
            raise structlog.DropEvent
        return event_dict

    return drop


def _level_of(method_name: str) -> str:
    name = {"warn": "warning", "exception": "error", "fatal": "critical"}.get(
        method_name, method_name
    )
    return name if name in _LEVELS else "info"


def get_logger(name: str | None = None, **initial_values: Any) -> Any:
    """A logger whose lines carry ``logger=name``; safe to call at import time, before configuring.

    The name travels as a logger-factory argument, not as bound context, because binding on
    structlog's lazy proxy would freeze whatever configuration is current at import time.
    """
    if name is None:
        return structlog.get_logger(**initial_values)
    return structlog.get_logger(name, **initial_values)


class _NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger that remembers the name it was created for."""

    def __init__(self, file: TextIO, name: str | None) -> None:
        super().__init__(file)
        self.name = name


class _NamedPrintLoggerFactory:
    """Like ``structlog.PrintLoggerFactory``, keeping ``get_logger(name)``'s name for the chain."""

    __slots__ = ("_file",)

    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedPrintLogger:
        return _NamedPrintLogger(self._file, str(args[0]) if args else None)


def _add_logger_name(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    name = getattr(logger, "name", None)
    if name is not None:
        event_dict.setdefault("logger", name)
    return event_dict


_ENVELOPE = ("run_id", "event_id", "version", "correlation_id", "causation_id")


def event_context(
    event: Any = None, stream: str | None = None, entry_id: str | None = None
) -> dict[str, Any]:
    """The log context of one event: its envelope, its type, and where it was read from.

    ``event`` is an :class:`airfix.events.schema.Event`, a decoded mapping (``type`` key), or
    ``None`` for an entry that could not be decoded.  Empty envelope fields are left out.
    """
    context: dict[str, Any] = {}
    if event is not None:
        get = event.get if isinstance(event, Mapping) else lambda k: getattr(event, k, None)
        for key in _ENVELOPE:
            value = get(key)
            if value not in (None, ""):
                context[key] = value
        event_type = get("type") if isinstance(event, Mapping) else type(event).__name__
        if event_type:
            context["event_type"] = event_type
    if stream is not None:
        context["stream"] = stream
    if entry_id is not None:
        context["entry_id"] = entry_id
    return context


@contextlib.contextmanager
def bind_event(
    event: Any = None, stream: str | None = None, entry_id: str | None = None, **extra: Any
) -> Iterator[dict[str, Any]]:
    """Bind an event's context for every line logged while it is handled; restored on exit.

    Yields the bound context.  ``extra`` adds keys such as ``consumer=...``.
    """
    context = {**event_context(event, stream, entry_id), **extra}
    with structlog.contextvars.bound_contextvars(**context):
        yield context
