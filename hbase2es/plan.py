"""What a run would do: its slices, index names and a few sample documents."""

from __future__ import annotations

from .hbase_reader import describe_strategy, open_reader
from .mapping import IndexTemplate, build_document, document_id
from .regions import SliceTask, region_bounds, split_by_regions, wants_region_split
from .settings import Settings
from .timesource import show_bytes, time_source
from .timewindow import Slice, format_time, split_window

MAX_NAMES_SHOWN = 5


def table_regions(settings: Settings) -> list[tuple[bytes, bytes]]:
    """The table's region key ranges ``(start, end)`` in key order (b"" = open end)."""
    reader = open_reader(settings.hbase)
    try:
        return region_bounds(reader.regions())
    finally:
        reader.close()


def slice_tasks(settings: Settings, slices: list[Slice],
                regions: list[tuple[bytes, bytes]] | None) -> tuple[list, list[int]]:
    """The pool's tasks for ``slices`` and, per task, the position of its slice.

    Without ``regions`` each slice is one task; with them, one SliceTask per region a
    slice's key ranges touch.
    """
    if regions is None:
        return list(slices), list(range(len(slices)))
    source = time_source(settings.window)
    return split_by_regions(
        slices, lambda s: [(spec.row_start, spec.row_stop) for spec in source.scans(s)], regions)


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


def render_plan(data: dict) -> str:
    lines = [f"table {data['table']} -> index {data['index']}",
             f"time source: {data['strategy']}",
             f"HBase API: {data.get('api', 'thrift1')}",
             *_region_line(data),
             f"window [{data['window']['start']}, {data['window']['end']}) in "
             f"{len(data['slices'])} slices:"]
    for s in data["slices"]:
        names = s["indices"]
        shown = ", ".join(names[:MAX_NAMES_SHOWN]) + (
            f" (+{len(names) - MAX_NAMES_SHOWN} more)" if len(names) > MAX_NAMES_SHOWN else "")
        lines.append(f"  {s['index']:>4}  [{s['start']}, {s['end']})  -> {shown}"
                     + _ranges_note(s, data.get("time_source")))
    for doc in data.get("sample", []):
        lines.append(f"sample {doc['_index']}/{doc['_id']} (version {doc['version']}): "
                     f"{doc['document']}")
    if "sample" in data and not data["sample"]:
        lines.append("sample: no row in the window")
    return "\n".join(lines)


def _region_line(data: dict) -> list[str]:
    if not data.get("split_by_region"):
        return []
    if data.get("regions") is None:
        return ["split by region: on (give --split-by-region to list each slice's region tasks)"]
    return [f"split by region: {data['regions']} regions"]


def _ranges_note(s: dict, source_name: str | None) -> str:
    """What a slice reads, when it is not simply the whole table."""
    ranges = s.get("ranges", [])
    notes = []
    if source_name == "rowkey":
        notes.append(f"{len(ranges)} key range{'s' if len(ranges) != 1 else ''}")
    if "pieces" in s:
        notes.append(f"{len(s['pieces']) or 1} task{'s' if len(s['pieces']) > 1 else ''} "
                     f"by region")
    return f"  ({', '.join(notes)})" if notes else ""


def sample_documents(settings: Settings, count: int) -> list[dict]:
    """Build up to ``count`` documents from the first slices that have rows."""
    template = IndexTemplate(settings.elasticsearch.index, settings.tzinfo)
    source = time_source(settings.window)
    reader = open_reader(settings.hbase)
    out: list[dict] = []
    try:
        for s in split_window(settings.start_ms, settings.end_ms, settings.slice_ms):
            for spec in source.scans(s):
                rows = reader.scan(**spec.scan_kwargs())
                try:
                    for key, values, newest in rows:
                        t = source.row_time(key, values, newest)
                        if not s.start_ms <= t < s.end_ms:
                            continue
                        document, errors = build_document(key, values, t, settings.mapping)
                        out.append({"_index": template.render(t), "_id": document_id(key),
                                    "version": t, "document": document,
                                    "decode_errors": [str(e) for e in errors]})
                        if len(out) >= count:
                            return out
                finally:
                    rows.close()
            if out:
                return out
    finally:
        reader.close()
    return out
