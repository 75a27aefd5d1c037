"""airfix performance benchmark: one run against a real Redis, figures and ratios against targets.

    python -m scripts.bench [--redis-url URL] [--quick] [--json FILE] [--rate N]
                            [--only core|ops|pipeline|careful]

(from the repository root).  Without ``--redis-url`` a private throwaway redis-server (the test
suite's ``tests/redis_procs.py``, no persistence) is started on a free port, so a shared server on
6379 is not disturbed, and killed at the end.  With ``--redis-url`` every key goes under a unique
``airfixbench...`` prefix and is deleted afterwards; nothing is flushed.

What is measured (``--quick`` shrinks every size, not the method), one module per section:

1. ``xadd``: ``redis-benchmark`` XADD ceiling on the same server, unpipelined and pipelined.
2. ``append``: ``EventStore.append``, one event per call, 100 per call, and 100-event batches from
   several processes at once.  Each event is 2 stream entries + 1 HSET (plus the Lua checks).
3. ``replay``: ``store.read_run`` (decode included) + ``machine.fold`` over a log of 1,000,000
   events (100,000 with --quick) of realistic 20-iteration runs; and the fold of one long run.
4. ``projector``: ``ProjectionHandler.apply_entries`` for every projection, alone and together,
   and the full consumer path (``services.runtime.drain``).
5. ``latency``: append-to-projection latency with a ``Worker`` thread, open-loop appends.
6. ``pipeline`` (no Redis: the embedded store), on a generated healthy project (``sample``;
   24 modules, 624 safely fixable ruff issues; 12 and 312 with --quick):
   a. an ``autofix`` run against a hand script doing the same with the same tools;
   b. ``planning``: ``plan_batches`` over 100,000 synthetic issues;
   c. ``static_tier``: the static tier's wall time against the sum of its tools' times.
7. ``cli_ops``: operator commands end to end (``airfix replay``, ``projections rebuild``).
8. ``careful``: a careful person (checks, ``ruff check --fix``, checks, commit) against
   ``airfix run --fixer autofix`` on the bundled ``sample_project/``; ratio target 1.5x.

Sections run in the order 1-5, 7, 6, 8 (the Redis sections first, while their server is up).
``--only core`` runs sections 1-5 and 7, ``--only ops`` section 7, ``--only pipeline`` section 6,
``--only careful`` section 8 (neither of the last two needs redis-server).

Timings use ``time.perf_counter`` after a warm-up.  The machine this was written on has 2 shared
cores running redis-server, this client and whatever else runs there: expect +-20% between runs.
Nothing here tunes itself to pass: a target that is missed is printed as MISS.  ``--json FILE``
writes every figure (section, name, value, unit, target, ratio) and the careful-person rows, so a
later change can be compared with this one.
"""
