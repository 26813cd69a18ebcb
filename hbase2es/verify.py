"""``hbase2es verify``: prove that Elasticsearch holds a document for every row of a window.

Each slice runs on the worker pool like an export: the worker scans the rows the slice
exports (same time source, same row-time check), keeping only what it needs, and asks
Elasticsearch for their documents with ``mget`` in batches. Only counts and at most ten
example keys per slice go back to the parent.

What a scan keeps. The cell time source needs each row's newest cell older than the slice
end, so the scan uses ``KeyOnlyFilter``: values are emptied on the server, every column's
timestamp is kept. ``FirstKeyOnlyFilter`` would be wrong here: it keeps the first column
only, whose timestamp need not be the newest, and rows would fall out of their slice. A
row-key source needs only the keys; a column source needs only its time column. With
``--compare-fields`` the rows are read whole, to rebuild their documents.

A document's ``_version`` is the row time it was written from (external versioning), so
a version older than the row's time means the newer state never arrived ("older"); a
newer one was written by a later slice and counts as present.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import orjson
from tqdm import tqdm

from . import es_compat
from .errors import ExitCode, Hbase2esError
from .hbase_reader import open_reader
from .mapping import IndexTemplate, build_document, document_id
from .pool import Progress as ProgressEvent
from .settings import Settings
from .timesource import time_source
from .timewindow import Slice, format_time, split_window

log = logging.getLogger(__name__)

MGET_BATCH = 1000
MAX_EXAMPLES = 10  # keys and differences per slice that cross the pipe
MAX_VALUE_CHARS = 200
KEY_ONLY_FILTER = b"KeyOnlyFilter()"
PROGRESS_EVERY_ROWS = 2048
ABSENT = "(absent)"


@dataclass(frozen=True)
class VerifyOptions:
    sample: int | None = None  # random rows per slice; None checks every row
    compare_fields: bool = False
    batch_size: int = MGET_BATCH


@dataclass
class VerifySliceResult:
    """What one slice's check found; small enough to cross the result pipe."""

    index: int
    start_ms: int
    end_ms: int
    rows: int = 0  # rows of the slice in HBase
    checked: int = 0  # rows whose document was looked up (all, or the sample)
    present: int = 0
    missing: int = 0
    older: int = 0  # document written from an older state of the row
    compared: int = 0  # documents compared field by field (--compare-fields)
    differing: int = 0  # compared documents with at least one differing field
    missing_keys: list[str] = field(default_factory=list)  # document ids (text or b64:)
    older_keys: list[str] = field(default_factory=list)
    differences: list[dict] = field(default_factory=list)
    rows_read: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _show_value(value) -> str:
    if value is ABSENT:
        return ABSENT
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 3] + "..."


def field_differences(expected: dict, actual: dict) -> list[tuple[str, object, object]]:
    """``(field, expected, actual)`` for every top-level field that differs; ABSENT marks
    a field one side lacks."""
    out = []
    for name in sorted(set(expected) | set(actual)):
        want, have = expected.get(name, ABSENT), actual.get(name, ABSENT)
        if want is ABSENT or have is ABSENT or want != have:
            out.append((name, want, have))
    return out


class SliceVerifier:
    """The per-process resources and the check of one slice."""

    def __init__(self, settings: Settings, options: VerifyOptions):
        self.settings = settings
        self.options = options
        self.reader = open_reader(settings.hbase)
        try:
            self.client = es_compat.make_client(settings.elasticsearch)
        except BaseException:
            self.reader.close()
            raise
        self.template = IndexTemplate(settings.elasticsearch.index, settings.tzinfo)
        self.source = time_source(settings.window)
        # A value that does not decode is left out of the rebuilt document, so it shows as
        # a difference instead of stopping the check.
        self.mapping = dataclasses.replace(settings.mapping, on_decode_error="skip-field")

    def close(self) -> None:
        self.reader.close()
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass

    def scan_kwargs(self, spec) -> dict:
        """The slice's scan, reading no more of each row than the row-time check needs."""
        kwargs = spec.scan_kwargs()
        if self.options.compare_fields:
            return kwargs
        if self.source.name in ("cell", "rowkey"):
            # Not FirstKeyOnlyFilter: the cell source needs every column's timestamp.
            current = kwargs.get("filter")
            kwargs["filter"] = (b"(" + current + b") AND " + KEY_ONLY_FILTER if current
                                else KEY_ONLY_FILTER)
        elif self.source.name == "column":
            kwargs["columns"] = [self.source.column]
        return kwargs

    def run(self, slice_: Slice, progress: Callable[[dict], None] | None = None
            ) -> VerifySliceResult:
        started = time.monotonic()
        result = VerifySliceResult(slice_.index, slice_.start_ms, slice_.end_ms)
        sample = self.options.sample
        keep_values = self.options.compare_fields
        rng = random.Random()
        chosen: list[tuple] = []  # the batch, or the reservoir with --sample
        start_ms, end_ms = slice_.start_ms, slice_.end_ms
        row_time = self.source.row_time
        rows_read_before = self.reader.rows_read
        reported = 0
        for spec in self.source.scans(slice_):
            for key, values, newest in self.reader.scan(**self.scan_kwargs(spec)):
                t = row_time(key, values, newest)
                if t < start_ms or t >= end_ms:
                    continue
                result.rows += 1
                item = (key, t, values if keep_values else None)
                if sample is None:
                    chosen.append(item)
                    if len(chosen) >= self.options.batch_size:
                        self._check(chosen, result)
                        chosen = []
                elif len(chosen) < sample:
                    chosen.append(item)
                else:  # reservoir sampling: every row of the slice equally likely
                    j = rng.randrange(result.rows)
                    if j < sample:
                        chosen[j] = item
                if progress is not None and result.rows % PROGRESS_EVERY_ROWS == 0:
                    progress({"rows": result.rows - reported})
                    reported = result.rows
        chosen.sort(key=lambda item: item[0])
        for i in range(0, len(chosen), self.options.batch_size):
            self._check(chosen[i:i + self.options.batch_size], result)
        if progress is not None and result.rows > reported:
            progress({"rows": result.rows - reported})
        result.rows_read = self.reader.rows_read - rows_read_before
        result.seconds = round(time.monotonic() - started, 3)
        return result

    def _check(self, batch: list[tuple], result: VerifySliceResult) -> None:
        by_index: dict[str, list[tuple]] = {}
        render = self.template.render
        for item in batch:
            by_index.setdefault(render(item[1]), []).append(item)
        for index, items in by_index.items():
            ids = [document_id(key) for key, _, _ in items]
            response = es_compat.mget(self.client, index, ids, source=self.options.compare_fields)
            for (key, t, values), doc_id, doc in zip(items, ids, response["docs"]):
                result.checked += 1
                error = doc.get("error")
                if error is not None and (error.get("type") if isinstance(error, dict) else
                                          None) != "index_not_found_exception":
                    reason = error.get("reason") if isinstance(error, dict) else error
                    raise Hbase2esError(f"Elasticsearch could not look up {index}/{doc_id}: "
                                        f"{reason}")
                if error is not None or not doc.get("found"):
                    result.missing += 1
                    if len(result.missing_keys) < MAX_EXAMPLES:
                        result.missing_keys.append(doc_id)
                    continue
                version = doc.get("_version")
                if isinstance(version, int) and version < t:
                    result.older += 1
                    if len(result.older_keys) < MAX_EXAMPLES:
                        result.older_keys.append(doc_id)
                    continue
                result.present += 1
                if values is not None:
                    if isinstance(version, int) and version > t:
                        key, t, values = self._state_at(key, t, values, version)
                    self._compare(key, t, values, doc_id, doc.get("_source") or {}, result)

    def _state_at(self, key: bytes, t: int, values: dict, version: int) -> tuple:
        """The row as the document's version says it was written.

        A version newer than the slice's row time is a later cell-time slice's export of
        the row, when HBase holds a state at exactly that time; the document is compared
        with that state. Any other version (an update made in Elasticsearch, another time
        source) is compared with the slice's own state.
        """
        if self.source.name != "cell":
            return key, t, values
        for _key, later, newest in self.reader.scan(row_start=key, row_stop=key + b"\x00",
                                                    timestamp=version + 1):
            if newest == version:
                return key, version, later
        return key, t, values

    def _compare(self, key: bytes, t: int, values: dict, doc_id: str, source: dict,
                 result: VerifySliceResult) -> None:
        expected, _ = build_document(key, values, t, self.mapping)
        result.compared += 1
        differences = field_differences(expected, source)
        if not differences:
            return
        result.differing += 1
        for name, want, have in differences:
            if len(result.differences) >= MAX_EXAMPLES:
                break
            result.differences.append({"id": doc_id, "field": name,
                                       "expected": _show_value(want), "actual": _show_value(have)})


# One verifier per worker process, opened by the pool's initializer.
_verifier: SliceVerifier | None = None


def open_verifier(settings: Settings, options: VerifyOptions) -> None:
    """Pool initializer: this process's HBase connection and Elasticsearch client."""
    global _verifier
    _verifier = SliceVerifier(settings, options)


def close_verifier() -> None:
    """Pool finalizer."""
    global _verifier
    if _verifier is not None:
        _verifier.close()
        _verifier = None


def verify_slice(slice_: Slice, progress: Callable[[dict], None]) -> VerifySliceResult:
    """The function the pool runs for each slice."""
    return _verifier.run(slice_, progress)


# --- the parent ----------------------------------------------------------------------

TOTALS = ("rows", "checked", "present", "missing", "older", "compared", "differing")


@dataclass
class VerifyEntry:
    slice: Slice
    status: str = "pending"  # pending | done | failed | cancelled
    result: VerifySliceResult | None = None
    attempts: int = 0
    error: str | None = None

    def count(self, name: str) -> int:
        return getattr(self.result, name) if self.result is not None else 0


@dataclass
class VerifyReport:
    table: str
    index: str
    start_ms: int
    end_ms: int
    options: VerifyOptions
    slices: list[VerifyEntry]
    interrupted: bool = False
    seconds: float = 0.0
    exit_code: int = 0

    def totals(self) -> dict[str, int]:
        return {name: sum(e.count(name) for e in self.slices) for name in TOTALS}

    def examples(self, name: str) -> list[str]:
        out: list[str] = []
        for e in self.slices:
            if e.result is not None:
                out.extend(getattr(e.result, name))
        return out[:MAX_EXAMPLES]

    def to_dict(self) -> dict:
        slices = []
        for e in self.slices:
            entry = {"index": e.slice.index, "start": format_time(e.slice.start_ms),
                     "end": format_time(e.slice.end_ms), "status": e.status,
                     "attempts": e.attempts}
            entry.update({name: e.count(name) for name in TOTALS})
            if e.result is not None:
                entry.update(missing_keys=e.result.missing_keys, older_keys=e.result.older_keys,
                             seconds=e.result.seconds)
                if self.options.compare_fields:
                    entry["differences"] = e.result.differences
            if e.error:
                entry["error"] = e.error
            slices.append(entry)
        return {"table": self.table, "index": self.index,
                "window": {"start": format_time(self.start_ms), "end": format_time(self.end_ms)},
                "mode": "all rows" if self.options.sample is None else "sample",
                "sample": self.options.sample, "compare_fields": self.options.compare_fields,
                "slices": slices, "totals": self.totals(),
                "missing_examples": self.examples("missing_keys"),
                "older_examples": self.examples("older_keys"),
                "difference_examples": self.examples("differences"),
                "exit_code": int(self.exit_code), "interrupted": self.interrupted,
                "seconds": round(self.seconds, 3)}


def exit_code(report: VerifyReport) -> ExitCode:
    if report.interrupted:
        return ExitCode.INTERRUPTED
    t = report.totals()
    if any(e.status != "done" for e in report.slices) or t["missing"] or t["older"] \
            or t["differing"]:
        return ExitCode.FAILED
    return ExitCode.OK


def run_verify(settings: Settings, *, sample: int | None = None,
               compare_fields: bool = False) -> VerifyReport:
    """Check every slice of the window on the worker pool; the report carries the exit code."""
    from .export import pool_outcomes, preflight  # the same checks, pool and Ctrl-C handling

    started = time.monotonic()
    options = VerifyOptions(sample=sample, compare_fields=compare_fields)
    slices = split_window(settings.start_ms, settings.end_ms, settings.slice_ms)
    report = VerifyReport(settings.hbase.table, settings.elasticsearch.index, settings.start_ms,
                          settings.end_ms, options, [VerifyEntry(s) for s in slices])
    preflight(settings)
    run = settings.run
    bar = tqdm(total=len(slices), unit="slice", dynamic_ncols=True, desc="verify",
               disable=run.quiet or not _stderr_is_tty())
    rows = 0

    def on_event(event) -> None:
        nonlocal rows
        if isinstance(event, ProgressEvent):
            rows += event.payload.get("rows", 0)
            bar.set_postfix_str(f"{rows} rows", refresh=True)

    try:
        for outcome in pool_outcomes(settings, verify_slice, slices, on_event, report,
                                     initializer=open_verifier, initargs=(settings, options),
                                     finalizer=close_verifier):
            entry = report.slices[outcome.index]
            entry.attempts = outcome.attempts
            if outcome.status == "ok":
                entry.status, entry.result = "done", outcome.value
            else:
                entry.status = "failed" if outcome.status == "failed" else "cancelled"
                if outcome.error is not None:
                    entry.error = f"{outcome.error.type}: {outcome.error.message}"[:500]
            bar.update(1)
    finally:
        bar.close()
    report.seconds = time.monotonic() - started
    report.exit_code = exit_code(report)
    return report


def _stderr_is_tty() -> bool:
    import sys

    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def render_verify(data: dict) -> str:
    """The table printed at the end of ``verify`` (from ``VerifyReport.to_dict()``)."""
    compare = data["compare_fields"]
    mode = ("every row checked" if data["sample"] is None else
            f"SAMPLE: up to {data['sample']} random rows per slice checked, not every row")
    lines = [f"verify {data['table']} -> {data['index']}, window [{data['window']['start']}, "
             f"{data['window']['end']}), {len(data['slices'])} slices; {mode}"
             + ("; fields compared" if compare else "")]
    names = ["rows", "checked", "present", "missing", "older"]
    if compare:
        names += ["compared", "differing"]
    head = ("slice", "status", *names, "seconds")
    table = [head]
    for s in data["slices"]:
        table.append((f"{s['start']} .. {s['end']}", s["status"], *(str(s[n]) for n in names),
                      f"{s.get('seconds', 0.0):.1f}"))
    t = data["totals"]
    table.append((f"total ({len(data['slices'])} slices)", "", *(str(t[n]) for n in names),
                  f"{data['seconds']:.1f}"))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]

    def fmt(row):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))

    rule = "-" * len(fmt(head))
    lines += [fmt(head), rule, *map(fmt, table[1:-1]), rule, fmt(table[-1])]
    for s in data["slices"]:
        if s.get("error"):
            lines.append(f"slice {s['start']} .. {s['end']} {s['status']}: {s['error']}")
    lines.extend(_problem_lines(data))
    if data["exit_code"] == 0:
        lines.append(f"OK: all {t['checked']} checked rows have their document"
                     + (" with the same fields" if compare else ""))
    return "\n".join(lines)


def _problem_lines(data: dict) -> list[str]:
    t = data["totals"]
    lines = []
    if t["missing"]:
        lines.append(f"MISSING: {t['missing']} documents, e.g. "
                     f"{', '.join(data['missing_examples'])}")
    if t["older"]:
        lines.append(f"OLDER: {t['older']} documents hold an older state of their row than "
                     f"HBase, e.g. {', '.join(data['older_examples'])}")
    if t["differing"]:
        lines.append(f"DIFFERENT: {t['differing']} documents differ from their rows, e.g.:")
        for d in data["difference_examples"]:
            lines.append(f"  {d['id']}  {d['field']}: expected {d['expected']}, "
                         f"actual {d['actual']}")
    return lines


def problem_summary(data: dict) -> str:
    """One or more lines for stderr when ``--json`` owns stdout."""
    return "\n".join(_problem_lines(data))
