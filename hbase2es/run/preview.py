"""What the `plan` command shows: the plan as text, and sample documents built from the
first rows of the window, exactly as an export would build and send them.

A sample is shown as its bulk action line and its document as indented JSON. Values
longer than MAX_VALUE_CHARS are cut in the text, which says so; ``plan --json`` keeps
them whole.
"""

from __future__ import annotations

import orjson

from ..hbase import open_reader
from ..indexname import IndexTemplate
from ..docaddress import Addressing, MissingValue
from ..mapping import build_document
from ..search.chunking import index_action
from ..settings import Settings
from ..timesource import time_source
from ..timewindow import split_window

MAX_NAMES_SHOWN = 5
MAX_VALUE_CHARS = 200  # a 12 MB cell must not become a 12-million-character line
MAX_CONFLICTS_SHOWN = 3


def render_plan(data: dict) -> str:
    lines = [f"table {data['table']} -> index {data['index']}",
             f"time source: {data['strategy']}",
             f"HBase API: {data.get('api', 'thrift1')}",
             *_estimate_line(data.get("estimate")),
             *_region_line(data),
             *_incremental_line(data.get("incremental")),
             f"window [{data['window']['start']}, {data['window']['end']}) in "
             f"{len(data['slices'])} slices"
             f"{' (of the next incremental run)' if 'incremental' in data else ''}:"]
    for s in data["slices"]:
        names = s["indices"]
        shown = ", ".join(names[:MAX_NAMES_SHOWN]) + (
            f" (+{len(names) - MAX_NAMES_SHOWN} more)" if len(names) > MAX_NAMES_SHOWN else "")
        lines.append(f"  {s['index']:>4}  [{s['start']}, {s['end']})  -> {shown}"
                     + _cost_note(s)
                     + _ranges_note(s, data.get("time_source"))
                     + ("  (again: lookback)" if s.get("reexport") else "")
                     + ("  (skipped: done)" if s.get("skip") else ""))
    cut = 0
    for doc in data.get("sample", []):
        sample_lines, truncated = _sample_lines(doc)
        lines.extend(sample_lines)
        cut += truncated
    if cut:
        lines.append(f"({cut} value{'s' if cut != 1 else ''} longer than {MAX_VALUE_CHARS} "
                     f"characters cut above; plan --json shows them whole)")
    if "sample" in data and not data["sample"]:
        lines.append("sample: no row in the window")
    return "\n".join(lines)


def _estimate_line(estimate: dict | None) -> list[str]:
    if not estimate:
        return []
    return [f"rows read per document (estimate): ~{estimate['rows_read_per_document']:g} "
            f"({estimate['assumes']})"]


def _cost_note(s: dict) -> str:
    """A slice's read strategy and its estimated rows to read / to write."""
    if "strategy" not in s:
        return ""
    return f"  [{s['strategy']}: read ~{s['read']:g}, write ~{s['write']:g}]"


def _sample_lines(doc: dict) -> tuple[list[str], int]:
    """One sample as the bulk request sends it: the action line, then the document as
    indented JSON with long values cut; and how many values were cut."""
    action = index_action(doc["_index"], doc["_id"], doc["version"], {}, doc.get("routing"),
                          doc.get("pipeline")).split(b"\n", 1)[0]
    shown, truncated = shorten(doc["document"])
    delete = ", delete" if doc.get("delete") else ""  # the row matches [mapping] delete_when
    lines = [f"sample {doc['_index']}/{doc['_id']} (version {doc['version']}{delete}):",
             action.decode(), orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode()]
    if doc.get("decode_errors"):
        lines.append("decode errors: " + "; ".join(doc["decode_errors"]))
    return lines, truncated


def shorten(value, limit: int = MAX_VALUE_CHARS):
    """``value`` with every string longer than ``limit`` cut, saying its full length;
    and how many were cut. Lists and objects (json columns) are walked."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value, 0
        return f"{value[:limit]}… ({len(value):,} chars, truncated)", 1
    if isinstance(value, dict):
        out, cut = {}, 0
        for key, item in value.items():
            out[key], n = shorten(item, limit)
            cut += n
        return out, cut
    if isinstance(value, list):
        items = [shorten(item, limit) for item in value]
        return [item for item, _ in items], sum(n for _, n in items)
    return value, 0


def dotted_field_conflicts(documents: list[dict]) -> list[tuple[str, str]]:
    """Pairs ``(field, other)`` that Elasticsearch cannot map in one index: it reads the
    dots in a field name as objects, so ``d:a.b`` makes ``d:a`` an object, and a plain
    value of ``d:a`` (in the same document or another one) conflicts with it."""
    values: dict[str, str] = {}  # dotted path of a plain value -> the field it came from
    objects: dict[str, str] = {}  # dotted path that must be an object -> a field that says so
    for document in documents:
        for field, value in document.items():
            for path, is_object in _paths(field, value):
                (objects if is_object else values).setdefault(path, field)
                parts = path.split(".")
                for i in range(1, len(parts)):
                    objects.setdefault(".".join(parts[:i]), field)
    # A json column whose shape varies clashes with itself: that is a type, not a name, issue.
    return [(values[path], objects[path]) for path in sorted(values)
            if path in objects and values[path] != objects[path]]


def _paths(path: str, value):
    """``(dotted path, is an object)`` of ``value`` and, for an object, of what it holds."""
    yield path, isinstance(value, dict)
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(f"{path}.{key}", item)


def sample_warnings(documents: list[dict]) -> list[str]:
    """One line per problem the sample documents show that the plan alone cannot."""
    conflicts = dotted_field_conflicts(documents)
    if not conflicts:
        return []
    shown = ", ".join(f"{a} and {b}" for a, b in conflicts[:MAX_CONFLICTS_SHOWN])
    more = f" (+{len(conflicts) - MAX_CONFLICTS_SHOWN} more)" \
        if len(conflicts) > MAX_CONFLICTS_SHOWN else ""
    return [f"fields {shown}{more} cannot both be in one index: Elasticsearch reads a dot "
            f"in a field name as an object, so a document with either one is rejected "
            f"(dead-lettered) once the other is mapped; give one of the columns a field name "
            f"without the clash: [mapping.columns] \"family:qualifier\" = {{ field = \"...\" }}"]


def _region_line(data: dict) -> list[str]:
    if not data.get("split_by_region"):
        return []
    if data.get("regions") is None:
        return ["split by region: on (give --split-by-region to list each slice's region tasks)"]
    return [f"split by region: {data['regions']} regions"]


def _incremental_line(inc: dict | None) -> list[str]:
    if inc is None:
        return []
    if not inc["ledger_exists"]:
        return [f"incremental: ledger {inc['ledger']} does not exist yet, so the whole "
                f"window is new"]
    lookback = (f"lookback {inc['lookback']}: {inc['reexported']} done slice(s) exported again"
                if inc["lookback"] else "no lookback")
    return [f"incremental: watermark {inc['watermark']}, {lookback}"]


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
    addressing = Addressing.of(settings)
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
                        try:
                            doc_id = addressing.doc_id(key, values)
                            routing = addressing.route(key, values, missing_ok=True)
                        except MissingValue as exc:  # export dead-letters such a row
                            doc_id, routing = None, None
                            errors = [*errors, exc]
                        out.append({"_index": template.render(t), "_id": doc_id,
                                    "version": t, "document": document,
                                    "decode_errors": [str(e) for e in errors]})
                        if routing is not None:
                            out[-1]["routing"] = routing
                        if addressing.pipeline is not None:
                            out[-1]["pipeline"] = addressing.pipeline
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
