"""Ctrl-C and SIGTERM handled by the run instead of Python's default KeyboardInterrupt."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def handling_stop_signals(handler):
    """Route SIGINT and SIGTERM to ``handler(signum, frame)`` inside the block.

    Signal handlers can only be set from the main thread; elsewhere (an embedding
    application's worker thread) the block runs with the handlers it already has.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
