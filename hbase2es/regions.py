"""Splitting slices by the table's regions, so that one big slice runs on several workers.

Pure: the parent lists the table's regions once (happybase ``Table.regions()``), and each
slice becomes one task per region its key ranges touch. A task carries the slice and the
region's key range; the worker clips the slice's scans to that range. The pieces of a
slice together read exactly the rows the whole slice would: regions do not overlap and
cover the whole key space.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable, Iterable

from .timesource import ScanSpec
from .timewindow import Slice

__all__ = ["SliceTask", "clip", "clip_scan", "merge_results", "region_bounds",
           "split_by_regions", "wants_region_split"]


@dataclass(frozen=True)
class SliceTask:
    """One piece of a slice: its scans restricted to keys in ``[row_start, row_stop)``.

    ``row_stop`` b"" means the end of the table. Small and picklable: it crosses the
    pool's task pipe.
    """

    slice: Slice
    row_start: bytes = b""
    row_stop: bytes = b""


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


def region_bounds(regions: Iterable[dict]) -> list[tuple[bytes, bytes]]:
    """``(start_key, end_key)`` of happybase region dicts, in key order."""
    return sorted((r["start_key"], r["end_key"]) for r in regions)


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
