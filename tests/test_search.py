"""The guided search for where a stack's symptom starts, and the guesses it is given."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from airfix.events.core.search import (
    GUESSES,
    distance,
    first_showing,
    likeliest,
    suspects_first,
)
from airfix.events.schema import IssueRecord
from airfix.services.pipeline.symptoms import span_of_test


@st.composite
def series(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    n = draw(st.integers(1, 64))
    first = draw(st.integers(0, n - 1))
    guesses = draw(st.lists(st.integers(-2, n + 1), max_size=4))
    return n, first, guesses


@given(series())
def test_it_finds_the_first_element_showing_the_symptom_whatever_the_guesses(
    case: tuple[int, int, list[int]],
) -> None:
    n, first, guesses = case
    asked: list[int] = []

    def shows(k: int) -> bool:
        asked.append(k)
        return k >= first

    assert first_showing(n, shows, guesses) == first
    assert n - 1 not in asked and len(asked) == len(set(asked))  # the tip is known; none twice
    plain = math.ceil(math.log2(n)) if n > 1 else 0
    if guesses[:1] == [first]:
        assert len(asked) <= 2  # a right guess: itself and the one before it
    else:
        assert len(asked) <= plain + 2 * GUESSES  # a wrong one costs two probes at most


def test_a_right_guess_deep_in_a_long_series_costs_two_probes() -> None:
    asked: list[int] = []
    assert first_showing(100, lambda k: asked.append(k) or k >= 37, [37]) == 37
    assert asked == [37, 36]
    asked.clear()  # a wrong first guess, then the right one
    assert first_showing(100, lambda k: asked.append(k) or k >= 37, [10, 37]) == 37
    assert asked == [10, 37, 36]


def issue(file: str, line: int, n: int = 0) -> IssueRecord:
    return IssueRecord(
        issue_id=f"{file}:{line}:{n}", fingerprint=f"{file}:{line}:{n}", tool="ruff",
        phase="lint", file=file, line=line,
    )  # fmt: skip


def test_suspects_are_the_issues_in_the_places_files_nearest_first() -> None:
    far, near, inside, other = (
        issue("a.py", 90),
        issue("a.py", 12),
        issue("a.py", 22),
        issue("b.py", 10),
    )
    anywhere = issue("t.py", 5)
    places = [("a.py", 20, 30), ("t.py", 0, 0)]  # a test's span; a file where no span is known
    assert distance(near, places) == 8 and distance(inside, places) == 0
    assert distance(far, places) == 60 and distance(other, places) is None
    assert distance(anywhere, places) == 0
    assert suspects_first([other, far, near, inside, anywhere], places) == [
        inside, anywhere, near, far, other,
    ]  # fmt: skip
    assert suspects_first([other], places) == [other]


def test_the_likeliest_group_is_the_one_with_the_nearest_issue_earliest_on_a_tie() -> None:
    places = [("a.py", 100, 100)]
    groups = [[issue("b.py", 1)], [issue("a.py", 10)], [issue("a.py", 99)], [issue("a.py", 101)]]
    assert likeliest(groups, places) == [2, 3, 1]
    assert likeliest([[issue("b.py", 1)], []], places) == []
    many = [[issue("a.py", 100, 1)], [issue("a.py", 100, 2), issue("a.py", 100, 3)]]
    assert likeliest(many, places) == [1, 0]  # as near, more of them


SOURCE = """import os


def helper():
    pass


@pytest.mark.parametrize("x", [1, 2])
def test_top(x):
    from a import b
    assert b


class TestThing:
    def test_method(self):
        assert True
"""


def test_a_broken_tests_span_is_found_from_its_node_id() -> None:
    assert span_of_test(SOURCE, "test_top[1]") == (8, 11)  # decorators included
    assert span_of_test(SOURCE, "TestThing::test_method") == (15, 16)
    assert span_of_test(SOURCE, "TestThing") == (14, 16)
    assert span_of_test(SOURCE, "test_gone") is None
    assert span_of_test("def (:\n", "test_top") is None  # not Python: the whole file, then
