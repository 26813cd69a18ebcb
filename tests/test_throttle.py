"""The run's limits without a server: the reservation and AIMD arithmetic (run.throttle),
and the shared RunLimiter (run.limiter) across real spawned processes, including one
killed in the middle of a bulk.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time

import pytest
import throttle_tasks

from hbase2es.run import limiter as limiter_module
from hbase2es.run import throttle as t
from hbase2es.run.limiter import RunLimiter
from hbase2es.settings import Settings

# --------------------------------------------------------------------------- reservations


def test_reservations_queue_behind_each_other_at_the_rate():
    paid, waits = 0.0, []
    for _ in range(4):  # four workers ask at the same instant
        wait, paid = t.reserve(paid, 100.0, 250, 2000.0)
        waits.append(wait)
    assert waits == [0.0, 0.125, 0.25, 0.375]
    assert paid == pytest.approx(100.5)


def test_an_idle_bucket_saves_no_credit():
    # Asked again long after the last reservation: it starts now, not in the past, so an
    # idle minute cannot be spent as a burst afterwards.
    wait, paid = t.reserve(10.0, 70.0, 100, 100.0)
    assert (wait, paid) == (0.0, 71.0)


def test_bulks_and_reader_batches_hold_a_fraction_of_a_second_under_a_limit():
    assert t.bulk_caps(5000, 10 * 2**20, 2000, None) == (250, 10 * 2**20)
    assert t.bulk_caps(5000, 10 * 2**20, None, 800_000) == (5000, 100_000)
    assert t.bulk_caps(100, 10 * 2**20, 1e6, None) == (100, 10 * 2**20)  # never larger
    assert t.bulk_caps(5000, 10 * 2**20, 2, 10) == (1, t.MIN_BULK_BYTES)
    assert t.read_batch(1000, None) == 1000
    assert t.read_batch(1000, 400) == 100
    assert t.read_batch(1000, 1) == 1


def test_spark_tasks_get_their_share_of_every_limit():
    s = Settings()
    s = t.task_share(s.__class__(run=s.run.__class__(max_docs_per_second=2000,
                                                     max_bytes_per_second=None),
                                 hbase=s.hbase.__class__(max_rows_per_second=900)), 4)
    assert (s.run.max_docs_per_second, s.run.max_bytes_per_second,
            s.hbase.max_rows_per_second) == (500, None, 225)


# --------------------------------------------------------------------------- AIMD


def _bulk(state, start, *, rejected=False, seconds=0.1, docs=100, ceiling=4):
    return t.after_bulk(state, ceiling=ceiling, started=start, now=start + seconds, docs=docs,
                        rejected=rejected)


def test_a_storm_of_429s_halves_once_per_round_down_to_one():
    state = t.new_state(8)
    # Eight bulks in flight together all come back 429: one halving, not eight.
    assert _bulk(state, 1.0, rejected=True, ceiling=8) == "backoff"
    assert [_bulk(state, 1.0 + i * 0.01, rejected=True, ceiling=8) for i in range(7)] == \
        [None] * 7
    assert state[t.LIMIT] == 4
    # Bulks sent after the halving that still get 429s halve again, down to 1 and no lower.
    assert _bulk(state, 2.0, rejected=True, ceiling=8) == "backoff"
    assert _bulk(state, 3.0, rejected=True, ceiling=8) == "backoff"
    assert _bulk(state, 4.0, rejected=True, ceiling=8) is None
    assert (state[t.LIMIT], state[t.LOWEST], state[t.BACKOFFS]) == (1, 1, 3)
    assert state[t.PRESSURED] == 11


def test_concurrency_comes_back_one_step_per_few_good_bulks_up_to_the_workers():
    state = t.new_state(4)
    _bulk(state, 1.0, rejected=True)
    _bulk(state, 2.0, rejected=True)
    assert state[t.LIMIT] == 1
    changes = [_bulk(state, 10.0 + i) for i in range(4 * t.INCREASE_EVERY)]
    assert changes.count("increase") == 3  # 1 -> 4, then it stays at the ceiling
    assert state[t.LIMIT] == 4
    assert changes[t.INCREASE_EVERY - 1] == "increase"


def test_a_climbing_latency_is_pressure_but_small_or_quick_bulks_are_not():
    state = t.new_state(4)
    for i in range(t.LATENCY_MIN_SAMPLES):
        _bulk(state, float(i), seconds=0.5, docs=1000)  # 0.5 ms per document
    assert state[t.BASELINE] == pytest.approx(0.0005)
    assert not t.is_slow(state, 1.5, 1000)  # 3x: not yet
    assert not t.is_slow(state, 0.9, 100)  # 18x per document, but under a second
    assert not t.is_slow(state, 30.0, 10)  # a tiny bulk says nothing
    assert _bulk(state, 100.0, seconds=2.5, docs=1000) == "backoff"  # 5x
    assert state[t.LIMIT] == 2


# --------------------------------------------------------------------------- shared memory


def _spawned(target, *args):
    ctx = multiprocessing.get_context("spawn")
    process = ctx.Process(target=target, args=args, daemon=True)
    process.start()
    return process


@pytest.mark.timeout(60)
def test_three_processes_share_one_documents_rate():
    # Shared memory travels to a process only when it starts: Process arguments, as the
    # pool initializer's are, not pool task arguments.
    limiter = RunLimiter(docs_rate=600.0, adaptive=False, ceiling=3, start_method="spawn")
    ctx = multiprocessing.get_context("spawn")
    results = ctx.SimpleQueue()
    processes = [_spawned(throttle_tasks.take_docs, limiter, 600, 30, results) for _ in range(3)]
    try:
        granted = [results.get() for _ in processes]
    finally:
        for process in processes:
            process.join(10)
    times = sorted(x for chunk in granted for x in chunk)
    assert len(times) == 60  # 1800 documents in chunks of 30
    # 1800 at 600/s: the last chunk may start at 1770/600 = 2.95 s after the first, never
    # sooner (that would be over the limit). Later is allowed: on a loaded machine a
    # process may get the CPU late, which slows the run but breaks no limit.
    span = times[-1] - times[0]
    assert 2.9 <= span <= 4.5, span
    # No second of it holds more than the rate plus one chunk.
    for first in times:
        in_a_second = sum(1 for x in times if first <= x < first + 1.0)
        assert in_a_second * 30 <= 600 + 30


@pytest.mark.timeout(60)
def test_a_worker_killed_in_the_middle_of_a_bulk_leaks_no_permit():
    limiter = RunLimiter(adaptive=True, ceiling=2, start_method="spawn")
    limiter._state[t.LIMIT] = 1.0  # after a back-off: one bulk at a time
    ready = multiprocessing.get_context("spawn").Event()
    hanging = _spawned(throttle_tasks.hold_a_permit_and_hang, limiter, ready)
    try:
        assert ready.wait(30), "the child never started its bulk"
        assert limiter.in_flight() == 1
        sent = []
        send = limiter.around_send(lambda payload: sent.append(time.monotonic()) or {})
        os.kill(hanging.pid, signal.SIGKILL)
        hanging.join(10)  # reaped, as the pool reaps a dead worker
        started = time.monotonic()
        send(b'{"index":{}}\n{}\n')
        assert sent and sent[0] - started < 1.0, "the dead worker's permit was not freed"
    finally:
        if hanging.is_alive():
            hanging.kill()
    assert limiter.in_flight() == 0


def test_a_lock_left_taken_by_a_dead_worker_stops_nothing(monkeypatch, caplog):
    limiter = RunLimiter(docs_rate=1000.0, adaptive=True, ceiling=2)
    monkeypatch.setattr(limiter_module, "LOCK_TIMEOUT_S", 0.2)
    assert limiter._lock.acquire(timeout=1)  # as if its holder had died holding it
    # A CLI test in this process may have stopped our loggers at their own handler.
    monkeypatch.setattr(logging.getLogger("hbase2es"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="hbase2es")
    send = limiter.around_send(lambda payload: {})
    started = time.monotonic()
    send(b'{"index":{}}\n{}\n')
    assert any("limiter lock" in r.getMessage() for r in caplog.records)
    caplog.clear()  # said once: the sends after it neither wait nor warn again
    for _ in range(2):
        send(b'{"index":{}}\n{}\n')
    assert time.monotonic() - started < 1.0  # waited once, then went on without it
    assert not [r for r in caplog.records if "limiter lock" in r.getMessage()]
    assert limiter.counters()["requests"] == 3


def test_429s_in_a_bulk_answer_are_counted_and_back_off():
    limiter = RunLimiter(adaptive=True, ceiling=4)
    answer = {"errors": True, "items": [{"index": {"status": 429}}, {"index": {"status": 201}},
                                        {"index": {"status": 503}}, {"index": {"status": 400}}]}
    limiter.around_send(lambda payload: answer)(b"a\nb\n" * 4)
    c = limiter.counters()
    assert (c["rejected_429"], c["bulk_retries"], c["backoffs"], c["concurrency"]) == (1, 1, 1, 2)
    assert (c["requests"], c["docs_sent"], c["bytes_sent"]) == (1, 4, 16)


def test_a_row_limit_is_reserved_in_chunks():
    limiter = RunLimiter(rows_rate=2000.0, adaptive=False)
    take_row = limiter.row_gate()
    started = time.monotonic()
    for _ in range(1000):
        take_row()
    elapsed = time.monotonic() - started
    # 1000 rows at 2000/s in chunks of 100: the tenth chunk starts 0.45 s after the first.
    assert elapsed == pytest.approx(0.45, abs=0.1)
    assert RunLimiter(adaptive=False).row_gate() is None
