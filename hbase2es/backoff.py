"""The one retry pacing used everywhere: capped exponential backoff with jitter.

Three places wait before trying again: the bulk writer (a busy or unreachable cluster), the
HBase readers (a restarting Thrift server, an expired scanner) and the bulk-load restore.
They differ only in their budget: the writer has a deadline (``retry_seconds``), the readers
and the restore a number of attempts. ``Retry`` holds one such budget and sleeps between
attempts.

Why not tenacity: every caller here retries a loop that already exists (a scan that reopens
after its last key, a bulk that resends only the rejected documents), so a decorator around
one call does not fit, and a dozen lines of our own avoid a dependency.

Jitter: ``jitter = 1`` is "full jitter" (a delay anywhere in ``[0, cap]``), what many
writers hammering one cluster need so they do not retry in step; a smaller value keeps a
floor under the delay, for a single reader waiting for a server to come back.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delays ``base_s * 2**attempt``, capped at ``cap_s``, minus up to ``jitter`` of it."""

    base_s: float = 0.5
    cap_s: float = 30.0
    jitter: float = 1.0

    def delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (0 for the first retry)."""
        ceiling = min(self.cap_s, self.base_s * 2 ** min(attempt, 62))
        return ceiling * (1.0 - self.jitter * random.random())

    def budget(self, *, attempts: int | None = None, seconds: float | None = None,
               sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> "Retry":
        """A fresh budget of ``attempts`` retries and/or ``seconds`` from now."""
        return Retry(self, attempts, seconds, sleep, clock)


class Retry:
    """One retry budget: ``wait()`` until ``exhausted``; ``reset()`` after a success."""

    def __init__(self, backoff: Backoff, attempts: int | None, seconds: float | None,
                 sleep: Callable[[float], None], clock: Callable[[], float]):
        if attempts is None and seconds is None:
            raise ValueError("a retry budget needs attempts or seconds")
        self.backoff = backoff
        self.attempts = attempts
        self.seconds = seconds
        self._sleep = sleep
        self._clock = clock
        self.failures = 0  # faults since the last reset
        self._deadline = None if seconds is None else clock() + seconds

    @property
    def exhausted(self) -> bool:
        """True when no retry is left: too many failures, or past the deadline."""
        if self.attempts is not None and self.failures > self.attempts:
            return True
        return self._deadline is not None and self._clock() >= self._deadline

    def failed(self) -> bool:
        """Count one fault; True while a retry is still allowed."""
        self.failures += 1
        return not self.exhausted

    def next_delay(self) -> float:
        """The wait before the next retry, never past the deadline."""
        delay = self.backoff.delay(max(self.failures - 1, 0))
        if self._deadline is not None:
            delay = max(0.0, min(delay, self._deadline - self._clock()))
        return delay

    def wait(self, delay: float | None = None) -> float:
        """Sleep before the next retry; returns the seconds slept."""
        delay = self.next_delay() if delay is None else delay
        self._sleep(delay)
        return delay

    def reset(self) -> None:
        """A success: the next fault starts a fresh count (the deadline stays)."""
        self.failures = 0
