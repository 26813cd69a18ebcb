"""A pool Outcome as a line of a run's report: its status and its error text; and the
report shape the checks (verify, reconcile) share.

Export, verify and reconcile all keep one entry per slice; this is how each turns the
outcome of the slice's task into that entry's ``status`` and ``error``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import ClassVar

from ..pool import Outcome
from ..timewindow import Slice, format_time

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


@dataclass
class CheckEntry:
    """One slice of a check (verify, reconcile): its status and what its worker found."""

    slice: Slice
    status: str = "pending"  # pending | running | done | failed | cancelled
    result: object | None = None  # the job's per-slice result dataclass, when done
    attempts: int = 0
    error: str | None = None

    def count(self, name: str) -> int:
        return getattr(self.result, name) if self.result is not None else 0

    def record(self, outcome: Outcome) -> None:
        self.attempts = outcome.attempts
        self.status, self.error = outcome_status(outcome), outcome_error(outcome)
        if outcome.status == "ok":
            self.result = outcome.value


@dataclass
class CheckReport:
    """The window a check covered, one CheckEntry per slice, and what ended it."""

    TOTALS: ClassVar[tuple[str, ...]] = ()  # the counts summed over slices
    MAX_EXAMPLES: ClassVar[int] = 10

    table: str
    index: str
    start_ms: int
    end_ms: int
    options: object
    slices: list[CheckEntry]
    interrupted: bool = False
    seconds: float = 0.0
    exit_code: int = 0

    def totals(self) -> dict[str, int]:
        return {name: sum(e.count(name) for e in self.slices) for name in self.TOTALS}

    def examples(self, name: str) -> list:
        """Up to MAX_EXAMPLES of the slices' ``name`` lists (ids, differences), in order."""
        out: list = []
        for e in self.slices:
            if e.result is not None:
                out.extend(getattr(e.result, name))
        return out[:self.MAX_EXAMPLES]

    def slice_dict(self, e: CheckEntry) -> dict:
        """A slice's line in the JSON report: its window, status, attempts and counts."""
        out = {"index": e.slice.index, "start": format_time(e.slice.start_ms),
               "end": format_time(e.slice.end_ms), "status": e.status, "attempts": e.attempts,
               **{name: e.count(name) for name in self.TOTALS}}
        if e.error:
            out["error"] = e.error
        return out

    def slice_dicts(self) -> list[dict]:
        """Every slice's line, with what its result adds (``result_dict``)."""
        return [{**self.slice_dict(e), **(self.result_dict(e.result) if e.result else {})}
                for e in self.slices]

    def result_dict(self, result) -> dict:
        """What a slice's result adds to its line: the check's lists (ids, seconds)."""
        return {"seconds": result.seconds}

    def window_dict(self) -> dict:
        return {"table": self.table, "index": self.index,
                "window": {"start": format_time(self.start_ms), "end": format_time(self.end_ms)}}

    def end_dict(self) -> dict:
        return {"exit_code": int(self.exit_code), "interrupted": self.interrupted,
                "seconds": round(self.seconds, 3)}

    def cancel_running(self) -> None:
        """After a forced stop: a slice that started but whose outcome never came."""
        for entry in self.slices:
            if entry.status == "running":
                entry.status = "cancelled"


def stderr_is_tty() -> bool:
    """Whether a progress bar belongs on stderr (a person watches it)."""
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
