"""Where in an ordered series a symptom starts, asking as few probes as a good guess allows.

Bisection assumes that the symptom, once there, stays (as ``git bisect`` does): it asks about
log2(n) elements.  A stack's broken test or new issue usually points at its cause: the commit
that edited the broken test's own file, or the lines next to the new issue.  Such a guess is
probed first, with the element before it; when it is right the search costs those two probes
whatever the series' length, and when it is wrong the next guess, then bisection, goes on in what
they left (two probes more per wrong guess, and :data:`GUESSES` at most).  Pure: the probe is
the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from airfix.events.schema import IssueRecord

#: where a symptom was seen: a file and the first and last lines of a span in it (a test's
#: definition, a new issue's line; 0, 0: anywhere in the file)
Place = tuple[str, int, int]
#: guesses tried before plain bisection: each wrong one costs up to two probes
GUESSES = 2


def first_showing(n: int, shows: Callable[[int], bool], guesses: Sequence[int] = ()) -> int:
    """The first index of ``0..n-1`` whose element shows the symptom, given that element
    ``n - 1`` does (it is not asked) and that the series' start does not.  Each of ``guesses``
    still possible is probed first, with the element before it (at most :data:`GUESSES`)."""
    lo, hi, tried = 0, n - 1, 0
    for guess in guesses:
        if tried == GUESSES:
            break
        if not lo <= guess <= hi:
            continue
        tried += 1
        if guess < hi and not shows(guess):
            lo = guess + 1
        elif guess == lo or not shows(guess - 1):
            return guess
        else:
            hi = guess - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if shows(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def distance(issue: IssueRecord, places: Sequence[Place]) -> int | None:
    """How many lines ``issue`` is from the nearest place in its own file (0 inside one, or for
    a place that is the whole file); None when no place is in its file."""
    near = [
        0
        if not first or first <= issue.line <= last
        else min(abs(issue.line - n) for n in (first, last))
        for file, first, last in places
        if file == issue.file
    ]
    return min(near) if near else None


def suspects_first(issues: Sequence[IssueRecord], places: Sequence[Place]) -> list[IssueRecord]:
    """``issues`` with those in the places' files first, nearest first; the rest keep their
    order."""
    ranked = [(distance(i, places), k, i) for k, i in enumerate(issues)]
    near = sorted((d, k, i) for d, k, i in ranked if d is not None)
    return [i for _, _, i in near] + [i for d, _, i in ranked if d is None]


def likeliest(groups: Sequence[Sequence[IssueRecord]], places: Sequence[Place]) -> list[int]:
    """The indexes of the groups (a commit's issues) with an issue in a place's file, likeliest
    first: nearest to a place, then with the most issues that near, then earliest."""
    scored = []
    for k, group in enumerate(groups):
        near = [d for d in (distance(i, places) for i in group) if d is not None]
        if near:
            scored.append((min(near), -near.count(min(near)), k))
    return [k for *_, k in sorted(scored)]
