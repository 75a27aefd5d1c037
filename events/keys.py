"""Every Redis key airfix uses, in one place (see docs/architecture.md, "Key layout").

Keys that a Lua script touches together share a hash tag, so the layout holds on Redis Cluster:

* a run's stream, its index hash and its partition log share ``{pN}`` (the partition);
* a projection's view and its checkpoint share the view key's own name as the tag
  (``{autonomous_fix:task_queue}:checkpoint`` hashes to the slot of ``autonomous_fix:task_queue``),
  which keeps the operator's verbatim key names (``autonomous_fix:task_queue``) working.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

DEFAULT_PREFIX = "autonomous_fix"


def partition_of(run_id: str, partitions: int) -> int:
    """The partition of a run: stable across processes and Python versions (crc32, not hash())."""
    return zlib.crc32(run_id.encode()) % partitions


@dataclass(frozen=True)
class Keys:
    prefix: str = DEFAULT_PREFIX
    partitions: int = 4

    # --- the event log -----------------------------------------------------------------------
    def tag(self, partition: int) -> str:
        return f"{{p{partition}}}"

    def run_stream(self, run_id: str) -> str:
        """STREAM: one run's events, entry id ``0-<version>``."""
        return f"{self.prefix}:{self.tag(partition_of(run_id, self.partitions))}:run:{run_id}"

    def run_index(self, run_id: str) -> str:
        """HASH: ``version`` and ``e:<event_id>`` -> "version run_pos log_pos digest"."""
        return f"{self.prefix}:{self.tag(partition_of(run_id, self.partitions))}:idx:{run_id}"

    def log(self, partition: int) -> str:
        """STREAM: the partition log that consumer groups read."""
        return f"{self.prefix}:{self.tag(partition)}:log"

    def log_of(self, run_id: str) -> str:
        return self.log(partition_of(run_id, self.partitions))

    def logs(self) -> list[str]:
        return [self.log(p) for p in range(self.partitions)]

    def trimmed(self, partition: int) -> str:
        """HASH: run_id -> JSON of the trim that removed the run's entries from this partition's log
        (and, when archived, its stream); what rebuild and ``read_run`` read them back from."""
        return f"{self.prefix}:{self.tag(partition)}:trimmed"

    @property
    def meta(self) -> str:
        """HASH: the store's layout (``partitions``), checked by every process that opens it."""
        return f"{self.prefix}:meta"

    def test_impact(self, run_id: str, iteration: int) -> str:
        """STRING with TTL: which tests execute which files at the iteration's opening check
        (zlib'd msgpack), so a batch's verification runs only the tests its change can reach."""
        return f"{self.prefix}:impact:{run_id}:{iteration}"

    # --- the consumer runtime ----------------------------------------------------------------
    def dead_letters(self, group: str) -> str:
        """STREAM: entries ``group`` parked (delivery cap reached, undecodable, run halted)."""
        return f"{self.prefix}:dead_letters:{group}"

    def dlq_requests(self, group: str) -> str:
        """HASH: dead-letter id -> JSON retry request, served by whoever owns the entry's partition."""
        return f"{self.prefix}:dlq_requests:{group}"

    def lease(self, group: str, partition: int) -> str:
        """STRING with TTL: which consumer of ``group`` owns ``partition`` now."""
        return f"{self.prefix}:{self.tag(partition)}:lease:{group}"

    def members(self, group: str) -> str:
        """ZSET: live consumers of ``group`` scored by heartbeat time (ms)."""
        return f"{self.prefix}:members:{group}"

    def halted(self, group: str) -> str:
        """HASH: run_id -> why the ordered handler of ``group`` stopped for that run."""
        return f"{self.prefix}:halted:{group}"

    @property
    def log_lines(self) -> str:
        """STREAM, capped: service log lines (``run_id``, ``level``, ``line`` = JSON), for tail."""
        return f"{self.prefix}:logs"

    # --- projections (operator-facing names from the original guide) -------------------------
    @property
    def task_queue(self) -> str:
        """ZSET: pending batch ids scored by priority."""
        return f"{self.prefix}:task_queue"

    def task(self, batch_id: str) -> str:
        """STRING: the JSON batch record; the tag keeps it in the task_queue's slot."""
        return f"{{{self.task_queue}}}:task:{batch_id}"

    @property
    def run_history(self) -> str:
        """LIST: finished runs, newest first, capped."""
        return f"{self.prefix}:run_history"

    def summary(self, phase: str) -> str:
        """STRING: JSON of the last fix summary of ``phase``."""
        return f"{self.prefix}:summary:{phase}"

    @property
    def status(self) -> str:
        """HASH: run_id -> JSON of the run's status."""
        return f"{self.prefix}:status"

    @property
    def runs(self) -> str:
        """ZSET: run ids scored by the time they were requested (ms)."""
        return f"{{{self.status}}}:runs"

    def checkpoint(self, view_key: str) -> str:
        """HASH: partition log -> last applied entry id, in the view's slot."""
        return f"{{{view_key}}}:checkpoint"

    def retried(self, view_key: str) -> str:
        """HASH: ``<partition log>|<entry id>`` -> when a dead-letter retry applied that entry to the
        view (past the checkpoint fence, so it needs its own exactly-once marker), in the view's slot."""
        return f"{{{view_key}}}:retried"
