"""Service log lines mirrored where ``airfix tail`` can find them: a capped Redis stream, and on the
embedded store a capped JSON-lines file beside the journal.

The terminal output of a worker stays as it is (console or JSON at ``logging.level``); the mirror
receives every line at ``info`` and above, so ``airfix tail`` on another machine sees what a run's
services did even when their own terminals show only warnings.  ``logging.log_stream_maxlen``
caps both (0 turns the mirror off).  A line is one JSON object: structlog's event dict with
``timestamp``, ``level``, ``logger``, ``event`` and the bound event context (``run_id``, ...).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import msgspec
import redis

from airfix.services.runtime.logs import LogSink, configure_logging

MIRROR_LEVEL = "info"
_encoder = msgspec.json.Encoder(enc_hook=repr)  # a log line must never fail on an odd value


def encode_line(event_dict: dict[str, Any]) -> bytes:
    return _encoder.encode(event_dict)


class RedisLogSink:
    """XADD each line to the capped log stream: fields ``run_id``, ``level`` and ``line`` (JSON)."""

    def __init__(self, client: redis.Redis, key: str, maxlen: int) -> None:
        self.client, self.key, self.maxlen = client, key, maxlen

    def __call__(self, event_dict: dict[str, Any]) -> None:
        fields = {
            "run_id": str(event_dict.get("run_id", "")),
            "level": str(event_dict.get("level", "")),
            "line": encode_line(event_dict),
        }
        self.client.xadd(self.key, fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]


def journal_log_path(journal: Path) -> Path:
    """``journal.jsonl`` -> ``journal.logs.jsonl``."""
    return journal.with_name(f"{journal.stem}.logs.jsonl")


class FileLogSink:
    """Append each line to a JSON-lines file under an exclusive lock, compacting it to the last
    ``maxlen`` lines once it holds twice as many (so it stays capped like the Redis stream)."""

    def __init__(self, path: Path, maxlen: int) -> None:
        self.path, self.maxlen = path, maxlen
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lines = self._count()

    def _count(self) -> int:
        try:
            with self.path.open("rb") as fh:
                return sum(1 for _ in fh)
        except FileNotFoundError:
            return 0

    def __call__(self, event_dict: dict[str, Any]) -> None:
        blob = encode_line(event_dict) + b"\n"
        while True:
            with self.path.open("ab") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                if os.fstat(fh.fileno()).st_ino != os.stat(self.path).st_ino:
                    continue  # another process compacted (replaced) the file meanwhile: reopen
                fh.write(blob)
                fh.flush()
                self._lines += 1
                if self._lines >= 2 * self.maxlen:
                    self._compact()
                return

    def _compact(self) -> None:
        """Keep the newest ``maxlen`` lines; called with the lock held, replaces the file atomically."""
        lines = self.path.read_bytes().splitlines(keepends=True)[-self.maxlen :]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(b"".join(lines))
        os.replace(tmp, self.path)
        self._lines = len(lines)


class _Both:
    def __init__(self, *sinks: LogSink) -> None:
        self.sinks = sinks

    def __call__(self, event_dict: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink(event_dict)


def sink_for(app: Any) -> LogSink | None:
    """The mirror for ``app``'s store: the Redis stream, plus the file beside the journal when the
    store is the embedded one with a journal (another process cannot read this one's memory)."""
    maxlen = app.config.logging.log_stream_maxlen
    if maxlen == 0:
        return None
    sink: LogSink = RedisLogSink(app.client, app.keys.log_lines, maxlen)
    journal = getattr(app.store, "journal", None)
    if journal is not None:
        sink = _Both(sink, FileLogSink(journal_log_path(journal), maxlen))
    return sink


def configure_service_logging(app: Any, level: str, fmt: str) -> None:
    """Terminal lines at ``level`` in ``fmt``; the mirror at ``info`` and above."""
    configure_logging(level, fmt, redis_sink=sink_for(app), sink_level=MIRROR_LEVEL)
