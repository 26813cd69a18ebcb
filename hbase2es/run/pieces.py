"""What a worker is handed: a slice, a region piece of a slice, or a slice resumed after
its ledger checkpoint; and the split of slices into region pieces and the merge back.

The parent lists the table's regions once (``hbase.regions``), and each slice becomes one
task per region its key ranges touch. A task carries the slice and the region's key range;
the worker clips the slice's scans to that range. The pieces of a slice together read
exactly the rows the whole slice would: regions do not overlap and cover the whole key
space. ``RegionSplit`` wraps an executor so that the rest of the run still sees one
outcome per slice.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace

from ..pool import Outcome, Progress, Retrying, Started, TaskError
from ..timesource import ScanSpec
from ..timewindow import Slice

__all__ = ["Checkpoint", "RegionSplit", "SliceTask", "clip", "clip_scan", "merge_results",
           "split_by_regions", "wants_region_split"]


@dataclass(frozen=True)
class Checkpoint:
    """How far a slice got: every row up to ``last_key`` is settled (indexed, stale or a
    counted failure), and these are the slice's counts up to there."""

    last_key: bytes
    rows: int = 0
    indexed: int = 0
    stale: int = 0
    failed: int = 0
    skipped_fields: int = 0


@dataclass(frozen=True)
class SliceTask:
    """A slice, or one piece of it: its scans restricted to keys in ``[row_start, row_stop)``
    (``row_stop`` b"" = the end of the table), resumed after ``resume`` when given.

    Small and picklable: it crosses the pool's task pipe.
    """

    slice: Slice
    row_start: bytes = b""
    row_stop: bytes = b""
    resume: Checkpoint | None = None

    @property
    def key_range(self) -> tuple[bytes, bytes] | None:
        return (self.row_start, self.row_stop) if self.row_start or self.row_stop else None


def clip(start: bytes, stop: bytes, lo: bytes, hi: bytes) -> tuple[bytes, bytes] | None:
    """``[start, stop) ∩ [lo, hi)``, where an empty stop/hi means "to the end of the table".

    None when the ranges do not overlap.
    """
    new_start = max(start, lo)
    if not stop:
        new_stop = hi
    elif not hi:
        new_stop = stop
    else:
        new_stop = min(stop, hi)
    if new_stop and new_start >= new_stop:
        return None
    return new_start, new_stop


def clip_scan(spec: ScanSpec, lo: bytes, hi: bytes) -> ScanSpec | None:
    """The scan restricted to keys in ``[lo, hi)``; None when nothing is left."""
    clipped = clip(spec.row_start, spec.row_stop, lo, hi)
    if clipped is None:
        return None
    return replace(spec, row_start=clipped[0], row_stop=clipped[1])


def split_by_regions(slices: Iterable[Slice],
                     ranges_of: Callable[[Slice], list[tuple[bytes, bytes]]],
                     bounds: list[tuple[bytes, bytes]]) -> tuple[list, list[int]]:
    """Tasks for the pool and, for each task, the position of its slice in ``slices``.

    A slice gets one SliceTask per region that one of its key ranges
    (``ranges_of(slice)``) overlaps, in key order. A slice with no key range at all
    (nothing can be in it) stays a plain Slice, so it is still run and reported.
    """
    tasks: list = []
    owners: list[int] = []
    for position, slice_ in enumerate(slices):
        if isinstance(slice_, SliceTask):  # resumed after its checkpoint: runs whole
            tasks.append(slice_)
            owners.append(position)
            continue
        ranges = ranges_of(slice_)
        pieces = [(lo, hi) for lo, hi in bounds
                  if any(clip(start, stop, lo, hi) is not None for start, stop in ranges)]
        if not pieces:
            tasks.append(slice_)
            owners.append(position)
        for lo, hi in pieces:
            tasks.append(SliceTask(slice_, lo, hi))
            owners.append(position)
    return tasks, owners


def wants_region_split(settings) -> bool:
    """``[run] split_by_region`` if set, else on for the row-key source only.

    Row-key slices are narrow key ranges, so their pieces are few. A cell or column
    slice scans the whole table, so it gets one piece per region: worth it when slices
    are few and large, but slices x regions tasks (each opening its own scanner and bulk
    batches) is too many on a table of thousands of regions, so it is offered, not default.
    """
    flag = settings.run.split_by_region
    return settings.window.time_source == "rowkey" if flag is None else bool(flag)


_IDENTITY_FIELDS = ("index", "start_ms", "end_ms")


def merge_results(results: list):
    """One slice's result from its pieces' results (dataclasses of the same type).

    Counts are summed, and so is ``seconds``: the worker time the slice took, not its
    wall-clock span (pieces run side by side). Other fields come from the first piece.
    """
    first = results[0]
    merged = {}
    for f in fields(first):
        values = [getattr(r, f.name) for r in results]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if f.name in _IDENTITY_FIELDS or not numeric:
            merged[f.name] = values[0]
        else:
            total = sum(values)
            merged[f.name] = round(total, 3) if isinstance(total, float) else total
    return type(first)(**merged)


def _slice_of(task) -> Slice:
    return task.slice if isinstance(task, SliceTask) else task


class RegionSplit:
    """An executor that runs each slice as one task per table region it touches.

    It still yields one Outcome per slice: done when every piece is, failed when one
    failed (its error names the piece's key range), cancelled when a piece was cancelled
    or never started. Counts and seconds are summed (``merge_results``); attempts is the
    most any piece needed. Events carry the slice's position; a piece's checkpoint is left
    out (pieces of one slice advance side by side, so no single key says how far the slice
    got, and a resumed slice restarts its pieces).
    """

    def __init__(self, executor, regions: list[tuple[bytes, bytes]],
                 ranges_of: Callable[[Slice], list[tuple[bytes, bytes]]]):
        self.executor = executor
        self.regions = regions
        self.ranges_of = ranges_of

    def __call__(self, settings, slices: list, on_event, report, stop) -> Iterator[Outcome]:
        tasks, owners = split_by_regions(slices, self.ranges_of, self.regions)
        run = _SplitRun(tasks, owners, on_event)
        report.region_split = {
            "regions": len(self.regions), "tasks": len(tasks),
            "slices": [{"index": _slice_of(s).index, "pieces": run.left[i], "workers": 0}
                       for i, s in enumerate(slices)]}
        for outcome in self.executor(settings, tasks, run.piece_event, report, stop):
            position = run.owners[outcome.index]
            run.finished.setdefault(position, []).append(outcome)
            run.left[position] -= 1
            if not run.left[position]:
                yield run.merged(position, report)
        for position in list(run.finished):  # stopped early: some pieces never started
            yield run.merged(position, report)


class _SplitRun:
    """The pieces of one RegionSplit run: which slice each belongs to, and how many are left."""

    def __init__(self, tasks: list, owners: list[int], on_event):
        self.tasks = tasks
        self.owners = owners
        self.on_event = on_event
        self.left = collections.Counter(owners)
        self.finished: dict[int, list[Outcome]] = {}
        self.workers: dict[int, set[int]] = collections.defaultdict(set)

    def piece_event(self, event) -> None:
        if isinstance(event, Started):
            self.workers[self.owners[event.index]].add(event.pid)
        elif isinstance(event, Progress) and isinstance(event.payload, dict):
            event = dataclasses.replace(event, payload={**event.payload, "checkpoint": None})
        elif not isinstance(event, Retrying):
            return  # Finished: the merged outcome is yielded when the last piece ends
        self.on_event(dataclasses.replace(event, index=self.owners[event.index]))

    def merged(self, position: int, report) -> Outcome:
        pieces = self.finished.pop(position, [])
        report.region_split["slices"][position]["workers"] = len(self.workers[position])
        attempts = max((o.attempts for o in pieces), default=0)
        bad = [o for o in pieces if o.status == "failed"] or \
            [o for o in pieces if o.status != "ok"]
        if bad:
            task = self.tasks[bad[0].index]
            where = (f"region piece [{task.row_start.hex()}, {task.row_stop.hex()}): "
                     if isinstance(task, SliceTask) else "")
            error = bad[0].error and dataclasses.replace(
                bad[0].error, message=where + bad[0].error.message)
            return Outcome(position, bad[0].status, None, error, attempts)
        if self.left[position]:
            error = TaskError("Cancelled", f"{self.left[position]} of its region pieces did "
                              "not run", "")
            return Outcome(position, "cancelled", None, error, attempts)
        return Outcome(position, "ok", merge_results([o.value for o in pieces]), None, attempts)
