"""Ctrl-C and SIGTERM during a run: the one place that decides what each signal means.

1st signal: start no new slices; running ones finish within the grace time
(``report.interrupted`` is set, and whatever registered with ``on_stop`` is told).
2nd signal: force. With ``soft_force`` (Spark), running jobs are cancelled by the driver
loop; otherwise KeyboardInterrupt is raised at once, and the run still writes its report,
with the running slices ``cancelled`` and the rest ``pending``.
3rd signal (Spark): KeyboardInterrupt.

Only flags are set and plain callbacks run here: a signal handler may interrupt any call,
so the slow work (cancelling Spark jobs, terminating workers) happens in the run's loops.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager

from ..signals import handling_stop_signals

log = logging.getLogger(__name__)


class StopRequest:
    """What the signals so far asked for."""

    def __init__(self, report, *, soft_force: bool = False):
        self.report = report
        self.soft_force = soft_force
        self.at: float | None = None  # monotonic time of the first signal
        self.force = False
        self.signals = 0
        self._listeners: list[Callable[[], None]] = []

    def deadline(self, grace_seconds: float) -> float:
        return (self.at or time.monotonic()) + grace_seconds

    @contextmanager
    def on_stop(self, listener: Callable[[], None]):
        """Call ``listener()`` on the first signal while the block runs (at once if it came)."""
        if self.at is not None:
            listener()
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)

    def handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        self.signals += 1
        if self.signals == 1:
            log.warning("%s: finishing running slices, starting no new ones (again to %s)",
                        name, "cancel them" if self.soft_force else "force")
            self.report.interrupted = True
            self.at = time.monotonic()
            for listener in list(self._listeners):
                listener()
        elif self.signals == 2 and self.soft_force:
            log.warning("%s: cancelling the running slices (again to quit at once)", name)
            self.force = True
        else:
            self.force = True
            raise KeyboardInterrupt


@contextmanager
def stop_on_signals(report, *, soft_force: bool = False):
    """Route Ctrl-C / SIGTERM to one StopRequest for the block."""
    stop = StopRequest(report, soft_force=soft_force)
    with handling_stop_signals(stop.handle):
        yield stop
