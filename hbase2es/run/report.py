"""What a run shows and leaves behind: progress bar, log lines, summary table, JSON report."""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field

import orjson
from tqdm import tqdm

from ..timewindow import Slice, format_time
from .pieces import Checkpoint

log = logging.getLogger("hbase2es")

COUNTS = ("rows", "indexed", "stale", "failed", "deleted")


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

    def to_dict(self) -> dict:
        out = {"index": self.slice.index, "start": format_time(self.slice.start_ms),
               "end": format_time(self.slice.end_ms), "rows": self.rows, "indexed": self.indexed,
               "stale": self.stale, "failed": self.failed, "deleted": self.deleted,
               "seconds": self.seconds,
               "status": self.status, "attempts": self.attempts, "rows_read": self.rows_read}
        if self.error:
            out["error"] = self.error
        if self.skipped_fields:
            out["skipped_fields"] = self.skipped_fields
        if self.resumed_after:
            out["resumed_after_rows"] = self.resumed_after
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

    def totals(self) -> dict[str, int]:
        return {name: sum(getattr(s, name) for s in self.slices) for name in COUNTS}

    def to_dict(self) -> dict:
        out = {"slices": [s.to_dict() for s in self.slices], "totals": self.totals(),
               "exit_code": int(self.exit_code), "interrupted": self.interrupted,
               "seconds": round(self.seconds, 3)}
        for name in ("region_split", "bulk_load", "spark"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.bulk_load_restore_failed:
            out["bulk_load_restore_failed"] = self.bulk_load_restore_failed
        return out


class TqdmHandler(logging.Handler):
    """Log lines written through tqdm so they do not tear the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


def setup_logging(level: str) -> None:
    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                           "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("hbase2es")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


class Progress:
    """A bar over slices with documents/s on a terminal; a log line per slice elsewhere."""

    def __init__(self, total_slices: int, *, quiet: bool = False, stream=None):
        stream = stream or sys.stderr
        self.use_bar = not quiet and hasattr(stream, "isatty") and stream.isatty()
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
            line = (f"slice {report.slice} {report.status}: rows={report.rows} "
                    f"indexed={report.indexed} stale={report.stale} failed={report.failed} "
                    + (f"deleted={report.deleted} " if report.deleted else "")
                    + f"in {report.seconds:.1f}s")
            if report.error:
                line += f" ({report.error})"
            (log.warning if report.status == "failed" else log.info)(line)

    def _postfix(self) -> None:
        if self.use_bar:
            elapsed = max(time.monotonic() - self.started, 1e-6)
            self.bar.set_postfix_str(f"{self.documents} docs, {self.documents / elapsed:,.0f} docs/s",
                                     refresh=False)
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


def summary_table(report: RunReport) -> str:
    """The end-of-run table: one line per slice, then totals (``deleted`` when any was)."""
    t = report.totals()
    names = ["rows", "indexed", "stale", "failed"] + (["deleted"] if t["deleted"] else [])
    rows = [(slice_window(s.slice.start_ms, s.slice.end_ms), s.status,
             *(str(getattr(s, n)) for n in names), f"{s.seconds:.1f}") for s in report.slices]
    total = (f"total ({len(report.slices)} slices)", "", *(str(t[n]) for n in names),
             f"{report.seconds:.1f}")
    return render_table(("slice", "status", *names, "seconds"), rows, total)


def write_json(path: str, data: dict) -> None:
    """Write atomically: a reader (CI, a monitor) never sees half a report."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        f.write(b"\n")
    os.replace(tmp, path)
