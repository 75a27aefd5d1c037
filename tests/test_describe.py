"""The one-line descriptions of events that `airfix run`, `airfix tail` and Airflow's task logs show:
what they say must be what the event records."""

from __future__ import annotations

from airfix.events.schema import HealthChecked, ToolResult
from airfix.projections.describe import describe

TOOLS = [
    ToolResult(tool="ruff", status="failed", counts={"issues": 27}),
    ToolResult(tool="pytest", status="failed", counts={"tests_total": 13, "tests_passed": 12}),
    ToolResult(
        tool="coverage",
        status="passed",
        counts={"tests_total": 13, "tests_passed": 12, "covered_lines": 47, "num_statements": 50},
    ),
]


def check(iteration: int, scope: str = "full") -> HealthChecked:
    return HealthChecked(
        iteration=iteration,
        scope=scope,  # type: ignore[arg-type]
        tools=TOOLS,
        score=0.81,
        parts={"lint": 0.5, "test": 12 / 13, "coverage": 0.9412},
    )


def test_coverage_shows_the_recorded_percentage_not_its_test_count() -> None:
    line = describe(check(1))
    assert "coverage 94%" in line and "pytest 12/13 passed" in line
    assert "coverage 12/13" not in line


def test_a_closing_check_names_the_iteration_it_closes() -> None:
    assert describe(check(1)).startswith("health check (full, iteration 1):")
    assert describe(check(4)).startswith("health check (full, after iteration 3):")
    assert describe(check(2, "batch")).startswith("health check (batch, iteration 2):")
