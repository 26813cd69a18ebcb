"""Ctrl-C and SIGTERM during a command: the one place that decides what each signal means.

A command is in one of three phases, and a signal means something different in each:

- before the run (the ledger is opened, slices are planned): the 1st signal means the run
  starts no slice at all; later ones only say so again;
- during the run (``with stop.running()``): the 1st signal starts no new slices and lets
  running ones finish within the grace time (``report.interrupted`` is set, and whatever
  registered with ``on_stop`` is told). The 2nd forces: with ``soft_force`` (Spark) the
  driver loop cancels the running jobs and a 3rd raises KeyboardInterrupt; otherwise
  KeyboardInterrupt is raised at once. The run catches it and still returns its report,
  with the running slices ``cancelled`` and the rest ``pending``;
- after the run (the report and summary are being written): signals are held back and
  only logged when the command ends. Killing the command then would lose the report (and
  with the default SIGTERM action the exit code would be 143 instead of 130); even a
  handled signal would do harm, as one that interrupts a write to a full pipe makes Python
  drop the rest of the output.

The CLI keeps one StopRequest installed for the whole command (``command_stop``), from
before the ledger is opened until the report is written, so no signal ever meets Python's
default handlers in between. Only flags are set and plain callbacks run here: a signal
handler may interrupt any call, so the slow work (cancelling Spark jobs, terminating
workers) happens in the run's loops.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

from ..signals import STOP_SIGNALS, handling_stop_signals

log = logging.getLogger(__name__)

BEFORE, RUNNING, AFTER = "before", "running", "after"


class StopRequest:
    """What the signals so far asked for, and which phase of the command they came in."""

    def __init__(self, report=None, *, soft_force: bool = False):
        self.report = report
        self.soft_force = soft_force
        self.at: float | None = None  # monotonic time of the first signal
        self.force = False
        self.signals = 0
        self.phase = BEFORE
        self._listeners: list[Callable[[], None]] = []
        self._routed = False  # our handlers are installed, so signals may be held after the run
        self._mask: set | None = None  # the signal mask before they were held

    def attach(self, report) -> None:
        """The report this stop marks ``interrupted`` (at once if a signal came already)."""
        self.report = report
        if self.at is not None:
            report.interrupted = True

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

    @contextmanager
    def running(self):
        """The run itself: only here may a signal raise KeyboardInterrupt (the run catches
        it). When the block ends, the run is over and signals are only logged."""
        self.phase = RUNNING
        try:
            yield
        finally:
            self.phase = AFTER
            if self._routed and self._mask is None:
                self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    @contextmanager
    def _installed(self):
        """Our handlers for the block; signals held after the run reach ``handle`` at its end."""
        with handling_stop_signals(self.handle):
            self._routed = threading.current_thread() is threading.main_thread()
            try:
                yield self
            finally:
                if self._mask is not None:
                    mask, self._mask = self._mask, None
                    signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # pending ones run now
                self._routed = False

    def handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        self.signals += 1
        if self.phase == AFTER:
            log.warning("%s: came after the run had ended; its report is complete", name)
        elif self.signals == 1:
            log.warning("%s: finishing running slices, starting no new ones (again to %s)",
                        name, "cancel them" if self.soft_force else "force")
            if self.report is not None:
                self.report.interrupted = True
            self.at = time.monotonic()
            for listener in list(self._listeners):
                listener()
        elif self.signals == 2 and self.soft_force:
            log.warning("%s: cancelling the running slices (again to quit at once)", name)
            self.force = True
        elif self.phase == RUNNING:
            self.force = True
            raise KeyboardInterrupt
        else:  # before the run: nothing runs yet, and nothing will start
            self.force = True
            log.warning("%s: stopping; no slice will start", name)


@contextmanager
def stop_on_signals(report, *, stop: StopRequest | None = None, soft_force: bool = False):
    """Route Ctrl-C / SIGTERM to one StopRequest for the block.

    With ``stop`` (the command's, from ``command_stop``) its handlers are already
    installed and stay so after the block: it is only attached to ``report``.
    """
    if stop is not None:
        stop.attach(report)
        yield stop
        return
    with StopRequest(report, soft_force=soft_force)._installed() as stop:
        yield stop


@contextmanager
def command_stop():
    """One StopRequest for a whole command: from before its run starts until its report
    and summary are written, so a late signal cannot kill the command half-way."""
    with StopRequest()._installed() as stop:
        yield stop
