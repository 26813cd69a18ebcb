"""The job file ``hbase2es init`` writes: a draft job from a table's sample, as commented
TOML that ``load_settings`` reads back unchanged. Pure.

``draft_job`` turns what was read (sampled rows, per-region counts, the range of row
times) into a ``JobDraft``; ``render_job`` writes it. Every guess carries its evidence in
a comment, so the user can judge it before the first export.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .infer import ColumnGuess, es_mappings, field_names, guess_columns
from .inferwindow import (MATCH_SHARE, TARGET_ROWS, RowEstimate, RowKeyLayout, aligned_window,
                          choose_slice, slice_ms)
from .timesource import show_bytes
from .timewindow import format_time

MAX_COLUMNS = 500  # listed in [mapping.columns]; wide rows leave the rest unmapped
MAX_SLICES_PROPOSED = 100_000
TIMESTAMP_FIELD = "@timestamp"
_INDEX_CHARS = re.compile(r"[^a-z0-9._-]+")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def index_from_table(table: str) -> str:
    """An Elasticsearch index name for an HBase table: lower case, ``ns:t`` -> ``ns-t``."""
    name = _INDEX_CHARS.sub("-", table.lower()).lstrip("-_+.")
    return name[:200] or "hbase-table"


@dataclass(frozen=True)
class JobDraft:
    """Everything the job file says, with the evidence its comments show."""

    hbase: tuple[str, int]
    table: str
    es_hosts: tuple[str, ...] | None  # None: --es not given, the default is written
    index: str
    workers: int
    sampled_rows: int = 0
    regions: int = 1
    columns: tuple[ColumnGuess, ...] = ()  # listed in [mapping.columns]
    fields: dict = field(default_factory=dict)  # column -> document field
    left_out: tuple[ColumnGuess, ...] = ()  # over MAX_COLUMNS: unmapped
    not_utf8: int = 0  # columns whose names cannot be TOML keys
    layout: RowKeyLayout | None = None
    start: str = "now-1d"
    end: str = "now"
    slice: str = "1h"
    first_ms: int | None = None  # the row times read
    last_ms: int | None = None
    end_is_now: bool = False  # some rows were not counted, so the end is now
    estimate: RowEstimate | None = None

    @property
    def misfits(self) -> int:
        return sum(c.misfits for c in self.columns)

    def mappings(self) -> dict:
        types = {self.fields[c.column]: c.type for c in self.columns}
        return es_mappings(types, TIMESTAMP_FIELD)


def _listed(guesses: list[ColumnGuess]) -> tuple[list[ColumnGuess], list[ColumnGuess], int]:
    """(listed, left out, count of non-UTF-8 names): the MAX_COLUMNS seen most often."""
    named = []
    for guess in guesses:
        try:
            guess.column.decode("utf-8")
            named.append(guess)
        except UnicodeDecodeError:
            pass
    ranked = sorted(named, key=lambda g: (-g.values, g.column))
    listed = sorted(ranked[:MAX_COLUMNS], key=lambda g: g.column)
    return listed, ranked[MAX_COLUMNS:], len(guesses) - len(named)


def draft_job(*, hbase: tuple[str, int], table: str, es_hosts: Sequence[str] | None,
              workers: int, rows: Sequence[dict], regions: int,
              layout: RowKeyLayout | None, time_range: tuple[int, int] | None,
              estimate: RowEstimate | None, now_ms: int) -> JobDraft:
    """The draft job from the sampled rows' cells, the layout found and the row times read
    (``time_range`` = first and last row time, None when no row was read)."""
    listed, left_out, not_utf8 = _listed(guess_columns(rows))
    fields = field_names([g.column for g in listed], reserved=(TIMESTAMP_FIELD,))
    draft = JobDraft(hbase=hbase, table=table, es_hosts=tuple(es_hosts) if es_hosts else None,
                     index=index_from_table(table), workers=workers, sampled_rows=len(rows),
                     regions=regions, columns=tuple(listed), fields=fields,
                     left_out=tuple(left_out), not_utf8=not_utf8, layout=layout,
                     estimate=estimate)
    if time_range is None or estimate is None:
        return draft
    first, last = time_range
    end_is_now = not estimate.exact and now_ms > last
    if end_is_now:
        last = now_ms
    slice_text = choose_slice(last - first + 1, estimate.rows)
    start, end = aligned_window(first, last, slice_text)
    while (end - start) // slice_ms(slice_text) > MAX_SLICES_PROPOSED:
        slice_text = choose_slice(end - start, 0)  # one slice: a window of decades
        start, end = aligned_window(first, last, slice_text)
    return replace(draft, start=format_time(start), end=format_time(end), slice=slice_text,
                   first_ms=time_range[0], last_ms=time_range[1], end_is_now=end_is_now)


# --- TOML ---------------------------------------------------------------------------


def toml_string(text: str) -> str:
    """A TOML basic string; JSON's escapes are TOML's, except that DEL must be escaped too."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _comment(text: str) -> str:
    """Text safe inside a TOML comment: one line, no control characters."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{toml_key(k)} = {_value(v)}" for k, v in value.items()) + " }"


def toml_key(name: str) -> str:
    """A TOML key: bare when it can be, else quoted."""
    return name if _BARE_KEY.fullmatch(name) else toml_string(name)


def _header(d: JobDraft, config: str) -> list[str]:
    lines = [f"# hbase2es job for HBase table {d.table}, drafted by `hbase2es init`."]
    if d.sampled_rows:
        lines.append(f"# Every setting below is a guess from {d.sampled_rows:,} rows sampled at "
                     f"the start of each of the table's {d.regions} region(s).")
    else:
        lines += ["# No rows were sampled: the table is empty. The window below is a",
                  "# placeholder and no column is listed; run init again once it has rows."]
    return lines + ["# Read the comments, then run:",
                    f"#   hbase2es plan --config {_comment(config)} --sample 3",
                    f"#   hbase2es export --config {_comment(config)}", ""]


def _connection(d: JobDraft) -> list[str]:
    host, port = d.hbase
    lines = ["[hbase]", f"host = {toml_string(host)}", f"port = {port}",
             f"table = {toml_string(d.table)}", "", "[elasticsearch]"]
    if d.es_hosts:
        lines.append(f"hosts = {_value(list(d.es_hosts))}")
    else:
        lines.append('hosts = ["http://127.0.0.1:9200"]  # no --es was given: your cluster here')
    lines += [f"index = {toml_string(d.index)}  # from the table name; one index per day: "
              f"{toml_string(d.index + '-{time:%Y.%m.%d}')}", ""]
    return lines


def _time_source(d: JobDraft) -> list[str]:
    if d.layout is None:
        reason = ("no row was sampled" if not d.sampled_rows else
                  f"no row-key time agreed with the cell times of {MATCH_SHARE:.0%} of the "
                  "sampled rows")
        return [f"# The row time is its newest cell timestamp ({reason}). With Thrift1 every",
                "# slice reads all rows older than its end; [hbase] api = \"thrift2\" (and the",
                "# port of HBase's Thrift2 server) bounds both ends on the server.",
                'time_source = "cell"']
    lay = d.layout
    where = [f"after prefix '{show_bytes(lay.prefix)}'"] if lay.prefix else []
    if lay.salt_buckets:
        where.append(f"{lay.salt_format} salt of {lay.salt_buckets} buckets")
    return [f"# The row key holds the row time ({lay.encoding}"
            f"{', reversed' if lay.reversed else ''}{', ' if where else ''}{', '.join(where)}):",
            f"# it agrees with the newest cell time of {lay.agreeing:,} of {lay.rows:,} sampled "
            "rows (within a day).",
            'time_source = "rowkey"']


def _window(d: JobDraft) -> list[str]:
    lines = ["[window]", *_time_source(d)]
    if d.first_ms is None:
        lines.append("# Placeholder window: the last day. Set start and end.")
    else:
        lines.append(f"# Row times read: {format_time(d.first_ms)} to {format_time(d.last_ms)}; "
                     "rows outside [start, end) are not exported.")
        if d.end_is_now:
            lines.append("# Not every row was counted, so newer rows may exist: the end is now.")
    lines += [f"start = {toml_string(d.start)}", f"end = {toml_string(d.end)}"]
    est = d.estimate
    if est is not None and d.first_ms is not None:
        how = ("counted exactly" if est.exact else "at least, some regions could not be "
               "extrapolated" if est.lower_bound else "an estimate: regions counted from "
               "their start and extrapolated over their key range")
        lines.append(f"# About {TARGET_ROWS:,} rows per slice, for {est.rows:,} rows in the "
                     f"table ({how}).")
    lines += [f"slice = {toml_string(d.slice)}", 'tz = "UTC"']
    if d.layout is not None:
        lines += ["", "[window.rowkey]"]
        lines += [f"{k} = {_value(v)}" for k, v in d.layout.settings().items()]
        if d.layout.salt_buckets:
            lines.append("# salt_buckets: the largest salt seen, plus one; raise it if the "
                         "table has more buckets.")
    return lines + [""]


def _run(d: JobDraft) -> list[str]:
    lines = ["[run]", f"workers = {d.workers}  # the cores of the machine init ran on"]
    if d.es_hosts:
        lines.append("create_index = true  # create missing indices with the mappings at the "
                     "end of this file")
    return lines + [""]


def _column_line(d: JobDraft, g: ColumnGuess) -> str:
    key = toml_string(g.column.decode("utf-8"))
    spec = f"{key} = {{ field = {toml_string(d.fields[g.column])}, type = {toml_string(g.type)} }}"
    note = f"{g.share:.0%} of {g.values:,} decode as {g.type}, e.g. {g.example}"
    if g.misfits:
        kinds = ", ".join(f"{t}: {n}" for t, n in sorted(g.misfit_types.items()))
        note += f"; {g.misfits:,} misfit(s) ({kinds}), e.g. {g.misfit_example}"
    if g.json_arrays:
        note += f"; {g.json_arrays:,} JSON array(s): type json takes objects only"
    return f"{spec}  # {_comment(note)}"


def _mapping(d: JobDraft) -> list[str]:
    lines = ["[mapping]", f"timestamp_field = {toml_string(TIMESTAMP_FIELD)}"]
    unmapped = len(d.left_out) + d.not_utf8
    if unmapped:
        shown = ", ".join(g.column.decode() for g in d.left_out[:5])
        lines.append(f"# {unmapped:,} more column(s) seen are not listed below"
                     + (f" (wide rows: only the {MAX_COLUMNS} seen most often are; the others "
                        f"include {_comment(shown)})" if d.left_out else "")
                     + (f"; {d.not_utf8:,} have names that are not UTF-8" if d.not_utf8 else "")
                     + ".")
    lines.append('unmapped = "include"  # other columns: "family:qualifier" text fields '
                 '("#b64" when not UTF-8)')
    if d.misfits:
        lines += [f"# {d.misfits:,} sampled value(s) do not decode as their column's type: "
                  "skip-field leaves such a value",
                  "# out of its document (the export counts them); \"dead-letter\" would keep "
                  "the whole row out.",
                  'on_decode_error = "skip-field"']
    lines += ["", "[mapping.columns]",
              "# \"family:qualifier\" = { field, type }  # share of sampled values that decode "
              "as the type"]
    lines += [_column_line(d, g) for g in d.columns]
    return lines + [""]


def _es_mappings(d: JobDraft) -> list[str]:
    if not d.es_hosts:
        return []
    lines = ["# What --create-index (create_index = true above) maps each field to.",
             "[elasticsearch.mappings.properties]"]
    for name, spec in d.mappings()["properties"].items():
        lines.append(f"{toml_key(name)} = {_value(spec)}")
    if len(d.columns) + len(d.left_out) > 900:
        lines += ["# Many fields: Elasticsearch allows 1000 per index by default; raise it with",
                  "# [elasticsearch.index_settings] \"mapping.total_fields.limit\" = 5000"]
    return lines + [""]


def render_job(draft: JobDraft, config: str = "job.toml") -> str:
    """The job file's text: TOML with a comment on every guess (``config``: its path, for
    the commands it shows)."""
    parts = [_header(draft, config), _connection(draft), _window(draft), _run(draft),
             _mapping(draft), _es_mappings(draft)]
    return "\n".join(line for part in parts for line in part).rstrip("\n") + "\n"
