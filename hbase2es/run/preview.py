"""What the `plan` command shows: the plan as text, and sample documents built from the
first rows of the window, exactly as an export would build them."""

from __future__ import annotations

from ..hbase import open_reader
from ..indexname import IndexTemplate
from ..mapping import build_document, document_id
from ..settings import Settings
from ..timesource import time_source
from ..timewindow import split_window

MAX_NAMES_SHOWN = 5


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
        lines.append(f"sample {doc['_index']}/{doc['_id']} (version {doc['version']}"
                     f"{', delete' if doc.get('delete') else ''}): {doc['document']}")
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
                        if settings.delete_when and settings.delete_when.matches(values):
                            out[-1]["delete"] = True  # export deletes this row's document
                        if len(out) >= count:
                            return out
                finally:
                    rows.close()
            if out:
                return out
    finally:
        reader.close()
    return out
