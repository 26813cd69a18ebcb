"""One pass: a run of consecutive cell-time slices read with one Thrift1 scan per key range.

Thrift1 cannot bound a scan's cells from below, so a slice ``[s, e)`` scans every row
with a cell older than ``e`` and keeps those whose newest such cell is at or after ``s``:
24 hourly slices over a table holding only that day read each row ~12.5 times. A pass
reads its key range once, with the upper bound of the run's last slice, and counts each
row in the slice of its newest cell older than that bound; rows older than the run's
first slice are skipped. Each row is read about once.

Which slice counts a row. A row that changed in two slices of one pass (cells in slice 3
and slice 7) is counted once, in slice 7, where the per-slice path counts it in both
(slice 3 writing the older state that slice 7 then overwrites). The final documents are
the same: the per-slice path's last write of a row is the state as of its newest cell
before the end, which is exactly what the pass writes. A row changed after the window's
end is, on both paths, the state as of its newest cell before the end.

The ledger stays per slice: ``OnePass`` wraps an executor and still yields one outcome
per slice; a slice is done when its pass is (and, split by region, when the passes of all
its key ranges are). A pass sends no checkpoints (a key says how far all its slices got
only together), so ``--resume`` after a killed pass runs its slices again from their
start, as a new pass. A slice resumed from a per-slice checkpoint runs alone.

Split by region (the default for passes), a task is one pass over one region, so the
workers share the window; a table of one region is one pass, read by one worker.

Used with the local executor only: a Spark task runs one slice (run.spark), so Spark
runs fall back to the per-slice path.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from ..pool import Outcome, Progress
from ..timewindow import Slice
from .pieces import SliceTask, wants_region_split

__all__ = ["OnePass", "PassTask", "group_passes", "slot_finder", "splits_by_region",
           "wants_one_pass"]


@dataclass(frozen=True)
class PassTask:
    """Consecutive slices read in one scan of keys ``[row_start, row_stop)``."""

    slices: tuple[Slice, ...]
    row_start: bytes = b""
    row_stop: bytes = b""

    @property
    def slice(self) -> Slice:
        """The span of the pass, as one slice (what its scans are made from)."""
        first, last = self.slices[0], self.slices[-1]
        return Slice(first.index, first.start_ms, last.end_ms)

    @property
    def key_range(self) -> tuple[bytes, bytes] | None:
        return (self.row_start, self.row_stop) if self.row_start or self.row_stop else None

    def __str__(self) -> str:
        return f"{self.slices[0]} .. {self.slices[-1]} (one pass of {len(self.slices)} slices)"


def wants_one_pass(settings) -> bool:
    """True when cell-time slices read over Thrift1 run as passes: ``[run] one_pass``,
    the local executor, an api already settled (``hbase.choose_api``) to thrift1, and
    no ``[mapping] delete_when`` (its deletes are counted per writer, not per slice)."""
    return (settings.run.one_pass and settings.run.executor == "local"
            and settings.window.time_source == "cell" and settings.hbase.api != "thrift2"
            and settings.delete_when is None)


def splits_by_region(settings, n_slices: int) -> bool:
    """Whether export runs ``n_slices`` as region pieces: ``[run] split_by_region`` if
    set; unset, on for the row-key source and for passes (two slices or more). A pass per
    region costs one task per region (not slices x regions), and it is what lets several
    workers share a pass. A lone slice is no pass: it keeps its checkpoints, which
    region pieces do not send."""
    if settings.run.split_by_region is None and wants_one_pass(settings) and n_slices > 1:
        return True
    return wants_region_split(settings)


def _span(task) -> tuple[Slice, bytes, bytes] | None:
    """The slice and key range of a task a pass can take; None for one that runs alone."""
    if isinstance(task, Slice):
        return task, b"", b""
    if isinstance(task, SliceTask) and task.resume is None:
        return task.slice, task.row_start, task.row_stop
    return None


def group_passes(tasks: list) -> tuple[list, list[list[int]]]:
    """The tasks to run and, for each, the positions in ``tasks`` it stands for.

    Tasks of the same key range whose slices follow each other without a gap become one
    PassTask; a task alone in its run, or resumed from a checkpoint, stays as it is.
    """
    runs: list[list[int]] = []
    open_run: dict[tuple[bytes, bytes], int] = {}  # key range -> its run being built
    for position, task in enumerate(tasks):
        span = _span(task)
        if span is None:
            runs.append([position])
            continue
        slice_, lo, hi = span
        current = open_run.get((lo, hi))
        if current is not None and _span(tasks[runs[current][-1]])[0].end_ms == slice_.start_ms:
            runs[current].append(position)
            continue
        open_run[(lo, hi)] = len(runs)
        runs.append([position])
    out = []
    for members in runs:
        if len(members) == 1:
            out.append(tasks[members[0]])
            continue
        _, lo, hi = _span(tasks[members[0]])
        out.append(PassTask(tuple(_span(tasks[m])[0] for m in members), lo, hi))
    return out, runs


def slot_finder(slices: tuple[Slice, ...]):
    """``time -> position of the slice holding it``, or None outside them all."""
    starts = [s.start_ms for s in slices]
    end = slices[-1].end_ms

    def slot(t: int) -> int | None:
        if t >= end:
            return None
        i = bisect.bisect_right(starts, t) - 1
        return i if i >= 0 and t < slices[i].end_ms else None
    return slot


class OnePass:
    """An executor that runs consecutive slices of a key range as one PassTask, and still
    yields one Outcome per task it was given (a pass returns a list of SliceResults).

    Events of a pass go to each of its slices; a pass's progress message names the slice
    it is about (``slot``) and carries no checkpoint.
    """

    def __init__(self, executor):
        self.executor = executor

    def __call__(self, settings, tasks: list, on_event, report, stop) -> Iterator[Outcome]:
        passes, members = group_passes(tasks)

        def event(e) -> None:
            owners = members[e.index]
            if isinstance(e, Progress) and isinstance(e.payload, dict) and "slot" in e.payload:
                payload = {k: v for k, v in e.payload.items() if k != "slot"}
                on_event(dataclasses.replace(e, index=owners[e.payload["slot"]],
                                             payload=payload))
                return
            for owner in owners:
                on_event(dataclasses.replace(e, index=owner))

        for outcome in self.executor(settings, passes, event, report, stop):
            owners = members[outcome.index]
            if outcome.status == "ok" and isinstance(passes[outcome.index], PassTask):
                for owner, value in zip(owners, outcome.value):
                    yield Outcome(owner, "ok", value, None, outcome.attempts)
                continue
            for owner in owners:
                yield dataclasses.replace(outcome, index=owner)
