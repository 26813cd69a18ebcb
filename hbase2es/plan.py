"""What a run would do: its slices, index names and a few sample documents."""

from __future__ import annotations

from .hbase_reader import open_reader
from .mapping import IndexTemplate, build_document, document_id
from .settings import Settings
from .timesource import time_source
from .timewindow import format_time, split_window

MAX_NAMES_SHOWN = 5


def describe_plan(settings: Settings) -> dict:
    """The plan as plain data; nothing is contacted."""
    template = IndexTemplate(settings.elasticsearch.index, settings.tzinfo)
    source = time_source(settings.window.time_source)
    slices = split_window(settings.start_ms, settings.end_ms, settings.slice_ms)
    return {
        "table": settings.hbase.table,
        "index": settings.elasticsearch.index,
        "time_source": source.name,
        "strategy": source.description,
        "window": {"start": format_time(settings.start_ms), "end": format_time(settings.end_ms)},
        "slices": [{"index": s.index, "start": format_time(s.start_ms),
                    "end": format_time(s.end_ms),
                    "indices": template.names_between(s.start_ms, s.end_ms)} for s in slices],
    }


def render_plan(data: dict) -> str:
    lines = [f"table {data['table']} -> index {data['index']}",
             f"time source: {data['strategy']}",
             f"window [{data['window']['start']}, {data['window']['end']}) in "
             f"{len(data['slices'])} slices:"]
    for s in data["slices"]:
        names = s["indices"]
        shown = ", ".join(names[:MAX_NAMES_SHOWN]) + (
            f" (+{len(names) - MAX_NAMES_SHOWN} more)" if len(names) > MAX_NAMES_SHOWN else "")
        lines.append(f"  {s['index']:>4}  [{s['start']}, {s['end']})  -> {shown}")
    for doc in data.get("sample", []):
        lines.append(f"sample {doc['_index']}/{doc['_id']} (version {doc['version']}): "
                     f"{doc['document']}")
    if "sample" in data and not data["sample"]:
        lines.append("sample: no row in the window")
    return "\n".join(lines)


def sample_documents(settings: Settings, count: int) -> list[dict]:
    """Build up to ``count`` documents from the first slices that have rows."""
    template = IndexTemplate(settings.elasticsearch.index, settings.tzinfo)
    source = time_source(settings.window.time_source)
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
