"""The one retry pacing (hbase2es.backoff): delays, jitter, and both kinds of budget."""

from __future__ import annotations

import pytest

from hbase2es.backoff import Backoff


class FakeClock:
    """A clock that moves only when the retry sleeps, so deadlines are exact."""

    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def test_delays_double_up_to_the_cap_and_full_jitter_stays_below_them():
    backoff = Backoff(base_s=0.5, cap_s=4.0, jitter=1.0)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        values = {backoff.delay(attempt) for _ in range(50)}
        assert all(0.0 <= v <= ceiling for v in values)
        assert len(values) > 1  # jittered
        assert max(values) > ceiling / 2  # not stuck near zero


def test_partial_jitter_keeps_a_floor():
    backoff = Backoff(base_s=1.0, cap_s=8.0, jitter=0.5)
    values = [backoff.delay(2) for _ in range(200)]
    assert min(values) >= 2.0 and max(values) <= 4.0


def test_no_jitter_is_exact_and_huge_attempts_do_not_overflow():
    backoff = Backoff(base_s=0.5, cap_s=30.0, jitter=0.0)
    assert [backoff.delay(a) for a in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff.delay(10_000) == 30.0


def test_attempt_budget_allows_exactly_n_retries_and_reset_renews_it():
    clock = FakeClock()
    retry = Backoff(base_s=1, cap_s=1, jitter=0).budget(attempts=3, sleep=clock.sleep,
                                                         clock=clock)
    allowed = []
    for _ in range(5):
        allowed.append(retry.failed())
        if allowed[-1]:
            retry.wait()
    assert allowed == [True, True, True, False, False]
    assert clock.slept == [1, 1, 1]
    retry.reset()
    assert retry.failed() is True


def test_deadline_budget_never_sleeps_past_the_deadline():
    clock = FakeClock()
    retry = Backoff(base_s=4, cap_s=4, jitter=0).budget(seconds=10, sleep=clock.sleep,
                                                         clock=clock)
    while retry.failed():
        retry.wait()
    assert clock.slept == [4, 4, 2]  # the last wait is cut to the deadline
    assert clock.now == 10 and retry.exhausted


def test_a_budget_needs_a_bound():
    with pytest.raises(ValueError, match="attempts or seconds"):
        Backoff().budget()
