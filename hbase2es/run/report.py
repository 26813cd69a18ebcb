"""What a run shows and leaves behind: progress bar, log lines, summary table, JSON report."""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field

import orjson
from tqdm import tqdm

from ..errors import ConfigError
from ..timewindow import Slice, format_time
from . import logformat
from .pieces import Checkpoint

log = logging.getLogger("hbase2es")

COUNTS = ("rows", "indexed", "stale", "failed", "deleted")
STATUSES = ("done", "failed", "cancelled", "pending", "running", "skipped")
SHORT_UP_TO = 20  # slices the short summary still lists one by one
SLOWEST = 5  # the slowest slices the short summary shows
MOST_FAILED = 10  # failed slices the short summary lists; the rest are counted
LIMIT_UNITS = {"max_docs_per_second": "docs/s", "max_bytes_per_second": "bytes/s",
               "max_rows_per_second": "rows/s"}


@dataclass
class SliceReport:
    """One slice's line in the summary and the JSON report."""

    slice: Slice
    status: str = "pending"  # pending | running | done | failed | skipped | cancelled
    rows: int = 0
    indexed: int = 0
    stale: int = 0
    failed: int = 0
    deleted: int = 0  # soft-deleted rows whose document was deleted ([mapping] delete_when)
    seconds: float = 0.0
    attempts: int = 0
    error: str | None = None
    skipped_fields: int = 0
    resume: Checkpoint | None = None  # where --resume starts this slice (not reported)
    resumed_after: int = 0  # rows a previous run had settled before this one resumed
    rows_read: int = 0  # rows the scans returned, in the slice or not (read amplification)
    # A done slice exported again (--lookback): its counts replace the earlier ones in the
    # ledger, so they are not new work and stay out of the run's totals.
    reexport: bool = False
    moved: int = 0  # older copies of updated rows deleted from other indices (search.copies)
    move_conflicts: int = 0  # copies not deleted: a newer write reached them first

    def to_dict(self) -> dict:
        out = {"index": self.slice.index, "start": format_time(self.slice.start_ms),
               "end": format_time(self.slice.end_ms), "rows": self.rows, "indexed": self.indexed,
               "stale": self.stale, "failed": self.failed, "deleted": self.deleted,
               "seconds": self.seconds,
               "status": self.status, "attempts": self.attempts, "rows_read": self.rows_read,
               "moved": self.moved}
        if self.move_conflicts:
            out["move_conflicts"] = self.move_conflicts
        if self.error:
            out["error"] = self.error
        if self.skipped_fields:
            out["skipped_fields"] = self.skipped_fields
        if self.resumed_after:
            out["resumed_after_rows"] = self.resumed_after
        if self.reexport:
            out["reexported"] = True
        return out


@dataclass
class RunReport:
    slices: list[SliceReport]
    exit_code: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    # What the parts around the pool did, each in its own section of the JSON report.
    region_split: dict | None = None  # run.pieces: regions, tasks, pieces per slice
    bulk_load: dict | None = None  # search.indexsetup: indices, previous settings, restored
    bulk_load_restore_failed: list[str] = field(default_factory=list)  # curl commands
    spark: dict | None = None  # run.spark: master, application id
    read: dict | None = None  # how the slices were read: settled api, path (run.readcost)
    # run.limiter: 429s, back-offs and the concurrency limit; and the achieved rates.
    pressure: dict | None = None
    throughput: dict | None = None
    verify: dict | None = None  # run.cutover: --verify after the export (exit code, totals)
    alias: dict | None = None  # run.cutover: name, previous and current targets, cut_over
    # The run's shared RunLimiter while it runs (read by the metrics; not reported).
    limiter: object | None = field(default=None, repr=False)

    def totals(self) -> dict[str, int]:
        """The counts of the run's new work: every slice but those exported again."""
        return {name: sum(getattr(s, name) for s in self.slices if not s.reexport)
                for name in COUNTS}

    def reexported(self) -> dict[str, int]:
        """How many done slices this run exported again (--lookback), and their counts."""
        again = [s for s in self.slices if s.reexport]
        return {"slices": len(again), **{name: sum(getattr(s, name) for s in again)
                                         for name in COUNTS}}

    def to_dict(self) -> dict:
        out = {"slices": [s.to_dict() for s in self.slices], "totals": self.totals(),
               "reexported": self.reexported(),
               "exit_code": int(self.exit_code), "interrupted": self.interrupted,
               "seconds": round(self.seconds, 3)}
        for name in ("region_split", "bulk_load", "spark", "pressure", "throughput", "read",
                     "verify", "alias"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.bulk_load_restore_failed:
            out["bulk_load_restore_failed"] = self.bulk_load_restore_failed
        return out


def record_rates(report: RunReport, limits: dict, counters: dict | None,
                 adaptive: bool) -> None:
    """The achieved rates (over the time bulks were being sent, or the whole run when no
    limiter counted it) and Elasticsearch's push-back, as report sections."""
    sending = counters["sending_seconds"] if counters else report.seconds
    t = report.totals()
    per_s = (lambda n: round(n / sending, 1)) if sending else (lambda n: 0.0)
    report.throughput = {"docs_per_second": per_s(t["indexed"]),
                         "rows_per_second": per_s(sum(s.rows_read for s in report.slices)),
                         "sending_seconds": round(sending, 3),
                         "limits": {k: v for k, v in limits.items() if v}}
    if counters:
        report.throughput["bytes_per_second"] = per_s(counters["bytes_sent"])
        report.pressure = {"adaptive": adaptive, **{k: counters[k] for k in (
            "rejected_429", "bulk_retries", "backoffs", "increases", "pressured_bulks",
            "concurrency", "lowest_concurrency", "ceiling", "requests")}}


class TqdmHandler(logging.Handler):
    """Log lines written through tqdm so they do not tear the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


def setup_logging(level: str, log_format: str = "human", secrets: tuple[str, ...] = ()) -> None:
    """The parent's logging: through the progress bar, in the run's format, secrets scrubbed."""
    logformat.configure(TqdmHandler(), level, log_format, secrets=secrets)


class Progress:
    """A bar over slices with documents/s on a terminal; a log line per slice elsewhere."""

    def __init__(self, total_slices: int, *, quiet: bool = False, stream=None,
                 docs_limit: float | None = None):
        stream = stream or sys.stderr
        # JSON logs are for machines: a line per slice, never a bar.
        self.use_bar = (not quiet and hasattr(stream, "isatty") and stream.isatty()
                        and logformat.current_format() != "json")
        self.docs_limit = docs_limit
        self.started = time.monotonic()
        self.documents = 0
        self.rows = 0
        self.bar = tqdm(total=total_slices, unit="slice", file=stream, dynamic_ncols=True,
                        disable=not self.use_bar, smoothing=0.1)

    def rows_progress(self, payload: dict) -> None:
        """A worker's progress message: counts since its previous message."""
        self.rows += payload.get("rows", 0)
        self.documents += payload.get("indexed", 0)
        self._postfix()

    def slice_finished(self, report: SliceReport, docs_reported: int) -> None:
        # The final counts replace what progress messages announced for this slice.
        self.documents += report.indexed - docs_reported
        if self.use_bar:
            self.bar.update(1)
            self._postfix()
        else:
            status = "re-exported" if report.reexport and report.status == "done" \
                else report.status
            line = (f"slice {report.slice} {status}: rows={report.rows} "
                    f"indexed={report.indexed} stale={report.stale} failed={report.failed} "
                    + (f"deleted={report.deleted} " if report.deleted else "")
                    + f"in {report.seconds:.1f}s")
            if report.moved:
                line += f", {report.moved} older copies deleted from other indices"
            if report.error:
                line += f" ({report.error})"
            (log.warning if report.status == "failed" else log.info)(line, extra=slice_event(report))

    def _postfix(self) -> None:
        if self.use_bar:
            elapsed = max(time.monotonic() - self.started, 1e-6)
            limit = f" (limit {self.docs_limit:,.0f})" if self.docs_limit else ""
            self.bar.set_postfix_str(f"{self.documents} docs, {self.documents / elapsed:,.0f} "
                                     f"docs/s{limit}", refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def render_table(head: tuple[str, ...], rows: list[tuple[str, ...]], total: tuple[str, ...]) -> str:
    """A plain-text table: the first two columns left-aligned, numbers right-aligned,
    rules around the body, the total line last. Export and verify print theirs with it."""
    lines = [head, *rows, total]
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]

    def fmt(row):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))

    rule = "-" * len(fmt(head))
    return "\n".join([fmt(head), rule, *map(fmt, rows), rule, fmt(total)])


def slice_window(start_ms: int, end_ms: int) -> str:
    return f"{format_time(start_ms)} .. {format_time(end_ms)}"


def slice_event(s: SliceReport) -> dict:
    """A finished slice as the fields of its log line (the JSON log format shows them)."""
    return {"event": "slice_finished", "status": s.status, "seconds": s.seconds, "error": s.error,
            "slice": {"index": s.slice.index, "start": format_time(s.slice.start_ms),
                      "end": format_time(s.slice.end_ms)},
            "counts": {name: getattr(s, name) for name in COUNTS}}


def _slice_line(s: SliceReport, names: list[str]) -> tuple[str, ...]:
    return (slice_window(s.slice.start_ms, s.slice.end_ms),
            "re-exported" if s.reexport and s.status == "done" else s.status,
            *(str(getattr(s, n)) for n in names), f"{s.seconds:.1f}")


def _alias_line(record: dict) -> str:
    """--alias: where it points now, or why it stayed."""
    def few(names: list[str]) -> str:
        more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
        return ", ".join(names[:3]) + more if names else "nothing"

    if record.get("cut_over"):
        return (f"alias {record['name']}: now {few(record['current'])} (was "
                f"{few(record['previous'])}; undo: hbase2es alias --rollback --report FILE)")
    return f"alias {record['name']}: not cut over ({record.get('reason', '')})"


def summary_table(report: RunReport, full: bool = False) -> str:
    """The end-of-run table, short enough for a screen at any slice count.

    Up to SHORT_UP_TO slices (or with ``full``) every slice has its line. Beyond, only
    the failed ones (the first MOST_FAILED) and the SLOWEST slowest others; the totals,
    the slices per status, the achieved rate and Elasticsearch's push-back follow.
    """
    slices = report.slices
    shown, note = slices, None
    if not full and len(slices) > SHORT_UP_TO:
        failed = [s for s in slices if s.status == "failed"]
        slowest = sorted((s for s in slices if s.status != "failed"),
                         key=lambda s: s.seconds, reverse=True)[:SLOWEST]
        shown = failed[:MOST_FAILED] + slowest
        more = f" (first {MOST_FAILED} of {len(failed)})" if len(failed) > MOST_FAILED else ""
        note = (f"shown: the failed slices{more} and the {len(slowest)} slowest of "
                f"{len(slices)}; --summary full or --report FILE lists every slice")
    t, again = report.totals(), report.reexported()
    # The deleted column (soft deletes) only when the run deleted anything.
    names = ["rows", "indexed", "stale", "failed"] + (["deleted"] if t["deleted"] else [])
    total = (f"total ({len(slices) - again['slices']} slices)", "",
             *(str(t[n]) for n in names), f"{report.seconds:.1f}")
    lines = [render_table(("slice", "status", *names, "seconds"),
                          [_slice_line(s, names) for s in shown], total)]
    moved = sum(s.moved for s in slices)
    if moved:
        lines.append(f"moved: {moved} older copies of updated rows deleted from other indices "
                     "of the template")
    if again["slices"]:
        lines.append(f"re-exported ({again['slices']} done slices, --lookback; not in the "
                     f"total, their counts replace the earlier ones): rows={again['rows']} "
                     f"indexed={again['indexed']} stale={again['stale']} "
                     f"failed={again['failed']}")
    counts = {status: sum(1 for s in slices if s.status == status) for status in STATUSES}
    if slices:
        lines.append("slices: " + ", ".join(f"{n} {status}" for status, n in counts.items() if n))
    lines += [line for line in (_rate_line(report.throughput), _pressure_line(report.pressure),
                                note) if line]
    if report.alias is not None:
        lines.append(_alias_line(report.alias))
    return "\n".join(lines)


def _rate_line(throughput: dict | None) -> str | None:
    if not throughput or not throughput.get("sending_seconds"):
        return None
    size = throughput.get("bytes_per_second")
    line = (f"rate: {throughput['docs_per_second']:,.0f} docs/s, "
            f"{throughput['rows_per_second']:,.0f} rows read/s"
            + (f", {size / 1e6:,.2f} MB/s" if size is not None else "")
            + f" over {throughput['sending_seconds']:.1f}s of sending")
    given = throughput.get("limits") or {}
    limits = [f"{given[key]:,.0f} {unit}" for key, unit in LIMIT_UNITS.items() if given.get(key)]
    return line + (f" (limit {', '.join(limits)})" if limits else "")


def _pressure_line(pressure: dict | None) -> str | None:
    if not pressure or not (pressure["rejected_429"] or pressure["backoffs"]):
        return None
    line = f"Elasticsearch pushed back: {pressure['rejected_429']} x 429"
    if pressure.get("adaptive"):
        line += (f", {pressure['backoffs']} back-off(s): concurrent bulks went down to "
                 f"{pressure['lowest_concurrency']} of {pressure['ceiling']}, ended at "
                 f"{pressure['concurrency']}")
    return line


def read_json(path: str) -> dict:
    """A report ``write_json`` wrote; ConfigError when the file holds no JSON object."""
    try:
        with open(path, "rb") as f:
            data = orjson.loads(f.read())
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"--report: {path!r} is not a JSON report: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--report: {path!r} is not a JSON report")
    return data


def write_json(path: str, data: dict) -> None:
    """Write atomically: a reader (CI, a monitor) never sees half a report."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        f.write(b"\n")
    os.replace(tmp, path)
