"""The arithmetic of the run's limits: rate reservations and the AIMD rule for bulks.

Pure: every function works on numbers and on a ``state`` sequence indexed by the names
below (a list in the tests, shared memory in ``run.limiter``), so the rules can be
checked without processes, clocks or servers.

Rates (documents, bytes, rows per second) are reservations, not fixed sleeps: each
bucket keeps the time up to which its rate is already spoken for. Taking ``n`` units
starts at that time (or now, if it lies in the past) and moves it on by ``n / rate``;
the caller sleeps until its start. Over any span the units taken are at most
``rate x span`` plus the one reservation that started last, so the measured rate stays at
the limit while the workers want more, across any number of workers.

Concurrency is additive increase, multiplicative decrease: a bulk that comes back with a
429 (or much slower than usual) halves the number of bulks that may fly at once (floor
1); every ``INCREASE_EVERY`` bulks without pressure add one back (ceiling: the workers).
Bulks that were already in flight when the limit went down do not halve it again: one
storm of 429s is one back-off.
"""

from __future__ import annotations

import math
from dataclasses import replace

# Slots of the shared state (doubles).
PAID_DOCS, PAID_BYTES, PAID_ROWS = 0, 1, 2  # time up to which each rate is reserved
LIMIT = 3  # bulks that may be in flight at once
LOWEST = 4  # the lowest LIMIT of the run
SUCCESSES = 5  # bulks without pressure since LIMIT last changed
LAST_DECREASE = 6  # when LIMIT last went down
BASELINE = 7  # seconds per document of an ordinary bulk (0 = not known yet)
SAMPLES = 8  # bulks BASELINE has learnt from
BACKOFFS = 9  # times LIMIT went down
PRESSURED = 10  # bulks that came back with a 429 or slow
REJECTED_429 = 11  # 429 answers: whole requests, or single documents of a bulk
RETRIES = 12  # bulk requests the writer has to send again (busy answers, lost connections)
REQUESTS = 13  # bulk requests sent
DOCS_SENT = 14  # documents sent, resent ones included
BYTES_SENT = 15
FIRST_SEND = 16  # when the first bulk of the run went out (0 = none yet)
LAST_DONE = 17  # when the latest bulk came back
LOCK_BROKEN = 18  # 1 once a worker died holding the state's lock (see run.limiter)
INCREASES = 19  # times LIMIT went up
STATE_SIZE = 20

INCREASE_EVERY = 4  # bulks without pressure per +1 of LIMIT
# "Bulk latency climbs": seconds per document this many times the usual, and at least
# SLOW_BULK_S in all. Bulks under LATENCY_MIN_DOCS documents neither teach nor signal:
# their time is mostly the fixed cost of a request.
LATENCY_FACTOR = 4.0
SLOW_BULK_S = 1.0
LATENCY_MIN_DOCS = 50
LATENCY_MIN_SAMPLES = 5
# With a rate limit, a bulk or a reader batch holds at most this many seconds of the rate,
# so documents (and rows) flow evenly instead of arriving in bursts of bulk_docs.
BULK_SHARE_S = 0.125
READ_SHARE_S = 0.25
MIN_BULK_BYTES = 1024


def reserve(paid_until: float, now: float, amount: float, rate: float) -> tuple[float, float]:
    """Reserve ``amount`` units of ``rate``: (seconds to wait before using them, new paid_until)."""
    start = max(paid_until, now)
    return start - now, start + amount / rate


def new_state(ceiling: int) -> list[float]:
    """The state of a run before its first bulk: every bulk may fly."""
    state = [0.0] * STATE_SIZE
    state[LIMIT] = state[LOWEST] = float(ceiling)
    return state


def is_slow(state, seconds: float, docs: int) -> bool:
    """True when this bulk took far longer per document than the run's ordinary bulks."""
    if docs < LATENCY_MIN_DOCS or state[SAMPLES] < LATENCY_MIN_SAMPLES or seconds < SLOW_BULK_S:
        return False
    return seconds / docs > LATENCY_FACTOR * state[BASELINE]


def _learn(state, seconds: float, docs: int) -> None:
    """Follow the ordinary latency: quickly down, slowly up, so a slow climb still shows."""
    if docs < LATENCY_MIN_DOCS:
        return
    per_doc = seconds / docs
    base = state[BASELINE]
    if state[SAMPLES] == 0 or per_doc < base:
        state[BASELINE] = per_doc if state[SAMPLES] == 0 else (base + per_doc) / 2
    else:
        state[BASELINE] = base + 0.05 * (per_doc - base)
    state[SAMPLES] += 1


def after_bulk(state, *, ceiling: int, started: float, now: float, docs: int,
               rejected: bool) -> str | None:
    """Apply the AIMD rule to one bulk that came back; "backoff", "increase" or None.

    ``rejected``: Elasticsearch answered 429 to the request or to one of its documents.
    """
    seconds = now - started
    if rejected or is_slow(state, seconds, docs):
        state[PRESSURED] += 1
        state[SUCCESSES] = 0
        # A bulk sent before the last decrease flew under the old limit: no second halving.
        if started < state[LAST_DECREASE] or state[LIMIT] <= 1:
            return None
        state[LIMIT] = max(1.0, float(math.floor(state[LIMIT] / 2)))
        state[LOWEST] = min(state[LOWEST], state[LIMIT])
        state[LAST_DECREASE] = now
        state[BACKOFFS] += 1
        return "backoff"
    _learn(state, seconds, docs)
    state[SUCCESSES] += 1
    if state[SUCCESSES] >= INCREASE_EVERY and state[LIMIT] < ceiling:
        state[LIMIT] += 1
        state[SUCCESSES] = 0
        state[INCREASES] += 1
        return "increase"
    return None


def bulk_caps(bulk_docs: int, bulk_bytes: int, docs_rate: float | None,
              bytes_rate: float | None) -> tuple[int, int]:
    """The documents and bytes of one bulk under the run's rate limits."""
    if docs_rate:
        bulk_docs = min(bulk_docs, max(1, int(docs_rate * BULK_SHARE_S)))
    if bytes_rate:
        bulk_bytes = min(bulk_bytes, max(MIN_BULK_BYTES, int(bytes_rate * BULK_SHARE_S)))
    return bulk_docs, bulk_bytes


def read_batch(batch_size: int, rows_rate: float | None) -> int:
    """Rows per Thrift round trip under a row limit, so HBase sees no 1000-row bursts."""
    if not rows_rate:
        return batch_size
    return min(batch_size, max(1, int(rows_rate * READ_SHARE_S)))


def row_chunk(rows_rate: float) -> int:
    """Rows a reader reserves at once: a twentieth of a second of the rate (1..1000)."""
    return max(1, min(1000, int(rows_rate / 20)))


def task_share(settings, tasks: int):
    """Settings whose limits are each task's share: for executors whose tasks cannot share
    memory (Spark), ``limit / tasks`` per task, so the run as a whole keeps the limit while
    ``tasks`` run at once."""
    tasks = max(1, tasks)

    def share(limit):
        return None if limit is None else limit / tasks

    run, hbase = settings.run, settings.hbase
    return replace(settings,
                   run=replace(run, max_docs_per_second=share(run.max_docs_per_second),
                               max_bytes_per_second=share(run.max_bytes_per_second)),
                   hbase=replace(hbase, max_rows_per_second=share(hbase.max_rows_per_second)))
