"""What every JavaScript test runner's report becomes: per-test outcomes under stable ids and
findings for the failures (shared by the node, jest/vitest, mocha and tape parsers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from airfix.services.tools.base import Finding, TestOutcome, TestTally
from airfix.services.tools.eslint import strip_ansi

MESSAGE_LIMIT = 4000
END_MARKER = "airfix:end"


@dataclass
class TestReport(TestTally):
    """Counts, findings and per-test outcomes from a JS test run."""

    seen: dict[str, int] = field(default_factory=dict)

    def add(self, base_id: str, outcome: TestOutcome) -> str:
        """Record a distinct test: the n-th test with the same id in one run gets `` [n]``."""
        n = self.seen.get(base_id, 0) + 1
        self.seen[base_id] = n
        test_id = base_id if n == 1 else f"{base_id} [{n}]"
        self.record(test_id, outcome)
        return test_id


def clean_text(text: str, target: Path) -> str:
    """ANSI codes and the target's absolute prefix removed (stack traces differ per checkout)."""
    text = strip_ansi(text)
    for root in {str(target), str(target.resolve())}:
        prefix = root.rstrip("/") + "/"
        text = text.replace("file://" + prefix, "").replace(prefix, "")
    return text.strip()


def _message(test_id: str, text: str) -> str:
    """``<test id>: <failure text>``, cut at :data:`MESSAGE_LIMIT` characters."""
    message = f"{test_id}: {text}" if text else test_id
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 1] + "…"
    return message


def failure_finding(
    file: str, line: int, rule: str, key_rule: str, test_id: str, text: str
) -> Finding:
    return Finding(
        phase="test",
        file=file,
        line=line,
        column=0,
        rule=rule,
        message=_message(test_id, text),
        key_rule=key_rule,
        key_message=test_id,
    )
