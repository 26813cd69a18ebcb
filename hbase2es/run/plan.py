"""The plan of a run: its slices (the window, or what is new since the ledger's
watermark), the tasks they run as, and the plan as plain data for `plan`.

Pure apart from the ledger it is handed: nothing here contacts a server.
"""

from __future__ import annotations

import logging

from ..hbase import describe_strategy
from ..indexname import IndexTemplate
from ..settings import Settings
from ..timesource import show_bytes, time_source
from ..timewindow import Slice, format_time, split_window
from .pieces import SliceTask, split_by_regions, wants_region_split

log = logging.getLogger(__name__)


def plan_run(settings: Settings, ledger=None) -> list[Slice]:
    """The slices of this run: the window, or from the ledger's watermark with --incremental."""
    start = settings.start_ms
    if settings.run.incremental:
        start = ledger.watermark(settings.start_ms)
        if start >= settings.end_ms:
            log.info("nothing new: the ledger is done up to %s, the window ends at %s",
                     format_time(start), format_time(settings.end_ms))
            return []
        log.info("incremental: exporting [%s, %s)", format_time(start), format_time(settings.end_ms))
    return split_window(start, settings.end_ms, settings.slice_ms)


def slice_ranges(settings: Settings):
    """``slice -> [(row_start, row_stop)]``: the key ranges a slice's scans read."""
    source = time_source(settings.window)
    return lambda s: [(spec.row_start, spec.row_stop) for spec in source.scans(s)]


def slice_tasks(settings: Settings, slices: list[Slice],
                regions: list[tuple[bytes, bytes]] | None) -> tuple[list, list[int]]:
    """The pool's tasks for ``slices`` and, per task, the position of its slice.

    Without ``regions`` each slice is one task; with them, one SliceTask per region a
    slice's key ranges touch.
    """
    if regions is None:
        return list(slices), list(range(len(slices)))
    return split_by_regions(slices, slice_ranges(settings), regions)


def _slice_scans(source, s: Slice, pieces: list | None) -> dict:
    """Key ranges (hex; "" = open end) and filter of a slice's scans, and its region pieces."""
    specs = source.scans(s)
    out: dict = {"ranges": [[spec.row_start.hex(), spec.row_stop.hex()] for spec in specs]}
    filters = {spec.filter for spec in specs if spec.filter}
    if filters:
        out["filter"] = show_bytes(filters.pop()) if len(filters) == 1 \
            else [show_bytes(f) for f in sorted(filters)]
    if pieces is not None:
        out["pieces"] = [[t.row_start.hex(), t.row_stop.hex()] for t in pieces
                         if isinstance(t, SliceTask)]
    return out


def describe_plan(settings: Settings, regions: list[tuple[bytes, bytes]] | None = None) -> dict:
    """The plan as plain data; nothing is contacted (``regions`` come from the caller).

    Each slice shows the key ranges of its scans in hex, the filter string of the column
    source, and with ``regions`` the region pieces it runs as (one task each).
    """
    template = IndexTemplate(settings.elasticsearch.index, settings.tzinfo)
    source = time_source(settings.window)
    slices = split_window(settings.start_ms, settings.end_ms, settings.slice_ms)
    pieces: dict[int, list] = {}
    if regions is not None:
        tasks, owners = slice_tasks(settings, slices, regions)
        for task, owner in zip(tasks, owners):
            pieces.setdefault(owner, []).append(task)
    return {
        "table": settings.hbase.table,
        "index": settings.elasticsearch.index,
        "time_source": source.name,
        "api": settings.hbase.api,
        "strategy": describe_strategy(settings.hbase, source),
        "window": {"start": format_time(settings.start_ms), "end": format_time(settings.end_ms)},
        "split_by_region": wants_region_split(settings),  # what export will do
        "regions": None if regions is None else len(regions),  # known when asked for
        "slices": [{"index": s.index, "start": format_time(s.start_ms),
                    "end": format_time(s.end_ms),
                    "indices": template.names_between(s.start_ms, s.end_ms),
                    **_slice_scans(source, s, pieces.get(i, []) if regions is not None else None)}
                   for i, s in enumerate(slices)],
    }


def plan_warnings(settings: Settings) -> list[str]:
    """One line per thing about this job's plan that can surprise its user."""
    template = IndexTemplate(settings.elasticsearch.index, settings.tzinfo)
    source = time_source(settings.window)
    warnings = []
    # A cell or column time changes when the row is updated; a row-key time never does.
    if source.name in ("cell", "column") and not template.is_static:
        warnings.append(
            f"rows can move between indices: an updated row gets a newer {source.name} time, "
            f"so index template {template.template!r} can put its document in a newer index "
            f"than an earlier export did; a fixed index name or time_source = \"rowkey\" "
            f"keeps each row in one index")
    return warnings
