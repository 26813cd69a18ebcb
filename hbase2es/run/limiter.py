"""The run's limits, shared by every worker: rates, concurrent bulks, and their counters.

One ``RunLimiter`` per run lives in shared memory made with the pool's start-method
context; the parent hands it to each worker through the pool initializer's arguments
(the pool itself stays generic) and reads the counters for the report and the metrics.
The rules are in ``run.throttle``; this module only keeps their state.

Surviving a killed worker. The pool promises that a worker may die at any moment, so
nothing here may wait on a dead process:
- the lock guards a few arithmetic steps, never a sleep or a request. If a worker is
  killed inside those microseconds the lock stays taken; the next process that waits
  ``LOCK_TIMEOUT_S`` for it says so once and the run goes on without the lock (the
  limits then hold only approximately);
- a bulk in flight is a slot holding its process id, not a counter: a slot whose
  process is gone is free again, so a worker killed mid-bulk leaks no permit.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import random
import time
from collections.abc import Callable
from contextlib import contextmanager

from ..search import engine
from ..search.writer import RETRY_STATUSES
from . import throttle as t

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 10.0
PERMIT_POLL_S = 0.01  # how often a worker waiting for a bulk permit looks again


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now holds the number: not ours
        return False
    return True


class RunLimiter:
    """Rate limits and the adaptive bulk concurrency of one run, for all its workers.

    ``ceiling`` is the most bulks in flight at once (the workers); ``start_method`` the
    pool's (None: the default, for a limiter used in one process only).
    """

    def __init__(self, *, docs_rate: float | None = None, bytes_rate: float | None = None,
                 rows_rate: float | None = None, adaptive: bool = True, ceiling: int = 1,
                 start_method: str | None = None):
        ctx = multiprocessing.get_context(start_method)
        self.docs_rate, self.bytes_rate, self.rows_rate = docs_rate, bytes_rate, rows_rate
        self.ceiling = max(1, ceiling)
        self.adaptive = adaptive
        self._lock = ctx.Lock()
        self._state = ctx.RawArray("d", t.new_state(self.ceiling))
        # Twice the ceiling: a replacement worker finds a free slot even before the slot
        # of the worker it replaces is seen to be dead.
        self._slots = ctx.RawArray("q", 2 * self.ceiling + 2)

    @classmethod
    def for_run(cls, settings, *, ceiling: int | None = None,
                start_method: str | None = None) -> RunLimiter:
        """The limiter a run's settings ask for; ``ceiling`` defaults to the workers.

        ``start_method`` must be the pool's, so that its workers can open the shared memory.
        """
        return cls(docs_rate=settings.run.max_docs_per_second,
                   bytes_rate=settings.run.max_bytes_per_second,
                   rows_rate=settings.hbase.max_rows_per_second,
                   adaptive=settings.run.adaptive,
                   ceiling=settings.run.workers if ceiling is None else ceiling,
                   start_method=start_method)

    # -- the lock ------------------------------------------------------------------------

    @contextmanager
    def _locked(self):
        if self._state[t.LOCK_BROKEN]:
            yield
            return
        if not self._lock.acquire(timeout=LOCK_TIMEOUT_S):
            self._state[t.LOCK_BROKEN] = 1.0
            log.warning("the run's limiter lock was held for %.0fs: a worker died holding it; "
                        "the limits go on without the lock and may be exceeded slightly",
                        LOCK_TIMEOUT_S)
            yield
            return
        try:
            yield
        finally:
            self._lock.release()

    # -- rates ---------------------------------------------------------------------------

    def take(self, slot: int, rate: float, amount: float) -> float:
        """Reserve ``amount`` of the rate in ``slot`` and sleep until it is ours; the wait."""
        with self._locked():
            wait, self._state[slot] = t.reserve(self._state[slot], time.monotonic(), amount,
                                                rate)
        if wait > 0:
            time.sleep(wait)
        return wait

    def row_gate(self) -> Callable[[], None] | None:
        """A function a reader calls once per row it takes from a scan; None: no row limit.

        It reserves rows in chunks (``throttle.row_chunk``), so the shared state is
        touched a few times a second, not once per row.
        """
        rate = self.rows_rate
        if not rate:
            return None
        chunk = t.row_chunk(rate)
        credit = 0

        def take_row() -> None:
            nonlocal credit
            if credit <= 0:
                self.take(t.PAID_ROWS, rate, chunk)
                credit = chunk
            credit -= 1

        return take_row

    # -- concurrent bulks ----------------------------------------------------------------

    def _claim(self, pid: int) -> bool:
        free, flying = None, 0
        for i, owner in enumerate(self._slots):
            # Our own pid in a slot is stale (one bulk per process at a time): a dead
            # worker's number came back to us.
            if owner == 0 or owner == pid or not _alive(owner):
                self._slots[i] = 0
                free = i if free is None else free
            else:
                flying += 1
        if free is None or flying >= self._state[t.LIMIT]:
            return False
        self._slots[free] = pid
        return True

    def _acquire(self) -> None:
        pid = os.getpid()
        while True:
            with self._locked():
                if self._claim(pid):
                    return
            time.sleep(PERMIT_POLL_S * (0.5 + random.random()))

    def _release(self) -> None:
        pid = os.getpid()
        with self._locked():
            for i, owner in enumerate(self._slots):
                if owner == pid:
                    self._slots[i] = 0

    def in_flight(self) -> int:
        """Bulks in flight now (for tests and the metrics)."""
        return sum(1 for owner in self._slots if owner and _alive(owner))

    # -- around one bulk request ---------------------------------------------------------

    def around_send(self, send: Callable[[bytes], dict]) -> Callable[[bytes], dict]:
        """``send`` behind the rates and the concurrency limit, its answers counted."""
        def limited_send(payload: bytes) -> dict:
            # Every action of our bulks is two lines: the action and the document.
            docs = max(1, payload.count(b"\n") // 2)
            if self.docs_rate:
                self.take(t.PAID_DOCS, self.docs_rate, docs)
            if self.bytes_rate:
                self.take(t.PAID_BYTES, self.bytes_rate, len(payload))
            if self.adaptive:
                self._acquire()
            started = time.monotonic()
            try:
                response = send(payload)
            except engine.API_ERRORS as exc:
                status = engine.status_of(exc)
                self._settled(started, docs, len(payload), rejected=int(status == 429),
                              retry=status in RETRY_STATUSES)
                raise
            except engine.CONNECTION_ERRORS:
                self._settled(started, docs, len(payload), rejected=0, retry=True)
                raise
            finally:
                if self.adaptive:
                    self._release()
            rejected, busy = _busy_items(response)
            self._settled(started, docs, len(payload), rejected=rejected, retry=busy > 0)
            return response

        return limited_send

    def _settled(self, started: float, docs: int, size: int, *, rejected: int,
                 retry: bool) -> None:
        s = self._state
        with self._locked():
            now = time.monotonic()
            s[t.REQUESTS] += 1
            s[t.DOCS_SENT] += docs
            s[t.BYTES_SENT] += size
            s[t.REJECTED_429] += rejected
            s[t.RETRIES] += 1 if retry else 0
            if not s[t.FIRST_SEND]:
                s[t.FIRST_SEND] = started
            s[t.LAST_DONE] = max(s[t.LAST_DONE], now)
            change = None
            if self.adaptive:
                change = t.after_bulk(s, ceiling=self.ceiling, started=started, now=now,
                                      docs=docs, rejected=rejected > 0)
            limit = int(s[t.LIMIT])
        if change == "backoff":
            log.info("Elasticsearch is under pressure (%s): at most %d concurrent bulk(s) now",
                     "429" if rejected else f"a bulk took {now - started:.1f}s", limit)
        elif change == "increase" and limit == self.ceiling:
            log.info("Elasticsearch pressure is gone: %d concurrent bulks again", limit)

    # -- what the parent reads -----------------------------------------------------------

    def counters(self) -> dict:
        """The run's counters and the concurrency limit, as plain numbers."""
        s = list(self._state)
        sending = s[t.LAST_DONE] - s[t.FIRST_SEND] if s[t.FIRST_SEND] else 0.0
        return {"requests": int(s[t.REQUESTS]), "docs_sent": int(s[t.DOCS_SENT]),
                "bytes_sent": int(s[t.BYTES_SENT]), "rejected_429": int(s[t.REJECTED_429]),
                "bulk_retries": int(s[t.RETRIES]), "backoffs": int(s[t.BACKOFFS]),
                "increases": int(s[t.INCREASES]), "pressured_bulks": int(s[t.PRESSURED]),
                "concurrency": int(s[t.LIMIT]), "lowest_concurrency": int(s[t.LOWEST]),
                "ceiling": self.ceiling, "sending_seconds": round(max(0.0, sending), 3)}


def _busy_items(response: dict) -> tuple[int, int]:
    """(429 items, items the writer will send again) of a bulk answer."""
    if not isinstance(response, dict) or not response.get("errors"):
        return 0, 0
    rejected = busy = 0
    for result in response.get("items") or ():
        status = next(iter(result.values()), {}).get("status", 0)
        if status in RETRY_STATUSES:
            busy += 1
            rejected += status == 429
    return rejected, busy
