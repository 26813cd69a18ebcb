"""A pool Outcome as a line of a run's report: its status and its error text.

Export and verify both keep one entry per slice; this is how either turns the outcome of
the slice's task into that entry's ``status`` and ``error``.
"""

from __future__ import annotations

from ..pool import Outcome

MAX_ERROR_CHARS = 500


def outcome_status(outcome: Outcome) -> str:
    """``done``, ``failed`` or ``cancelled`` (the pool says ``ok`` for done)."""
    if outcome.status == "ok":
        return "done"
    return "failed" if outcome.status == "failed" else "cancelled"


def outcome_error(outcome: Outcome) -> str | None:
    """``Type: message`` of a task that did not end ok, short enough for a report."""
    if outcome.error is None:
        return None
    return f"{outcome.error.type}: {outcome.error.message}"[:MAX_ERROR_CHARS]
