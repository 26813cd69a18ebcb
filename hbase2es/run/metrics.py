"""``--metrics-file``: the run's numbers in Prometheus' text format, for node_exporter's
textfile collector (or any scraper that reads a file).

The file is written whole and renamed into place (a reader never sees half of it),
every ``[run] metrics_interval`` seconds while the run goes on and once at the end, with
the exit code. Every sample has the ``job`` label (``[run] job``, default the index name).
While the run goes on, the document and row counters include what running slices have
announced; the last file holds the exact totals of the report.

The format is small enough to write here (``# HELP``, ``# TYPE``, ``name{labels} value``),
which spares the run a dependency.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .report import RunReport

log = logging.getLogger(__name__)

PREFIX = "hbase2es_"
LAST_SUCCESS = "last_success_timestamp_seconds"
DONE = ("done", "skipped")  # statuses that move the watermark


@dataclass(frozen=True)
class Sample:
    name: str  # without PREFIX
    kind: str  # counter | gauge
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()
                                  and abs(value) < 2**53):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render(job: str, samples: list[Sample]) -> str:
    """The text format: HELP and TYPE once per metric, then its samples."""
    lines: list[str] = []
    seen: set[str] = set()
    for s in samples:
        name = PREFIX + s.name
        if name not in seen:
            seen.add(name)
            lines += [f"# HELP {name} {s.help.replace(chr(92), chr(92) * 2)}",
                      f"# TYPE {name} {s.kind}"]
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in (("job", job), *s.labels))
        lines.append(f"{name}{{{labels}}} {_number(s.value)}")
    return "\n".join(lines) + "\n"


def watermark(report: RunReport, origin_ms: int) -> int:
    """End of the contiguous run of done (or skipped) slices that starts at ``origin_ms``."""
    ends = {s.slice.start_ms: s.slice.end_ms for s in report.slices if s.status in DONE}
    mark = origin_ms
    while mark in ends:
        mark = ends[mark]
    return mark


def collect(report: RunReport, *, now: float, run_seconds: float,
            in_flight: tuple[int, int] = (0, 0), watermark_from: int | None = None,
            exit_code: int | None = None, last_success: float | None = None) -> list[Sample]:
    """The samples of a run at wall-clock time ``now``.

    ``in_flight``: (rows, documents) that running slices have announced so far.
    ``watermark_from``: the ledger's watermark when the run began (None: no ledger).
    """
    t = report.totals()
    rows_in_flight, indexed_in_flight = in_flight
    deleted = sum(getattr(s, "deleted", 0) for s in report.slices)
    out = [
        Sample("rows_total", "counter", "Rows of the run's slices: each became a document "
               "indexed, stale or failed.", t["rows"] + rows_in_flight),
        Sample("rows_read_total", "counter", "Rows the HBase scans returned, also those "
               "outside the slices.",
               sum(s.rows_read for s in report.slices) + rows_in_flight),
        Sample("docs_indexed_total", "counter", "Documents Elasticsearch indexed.",
               t["indexed"] + indexed_in_flight),
        Sample("docs_stale_total", "counter", "Documents not written because the index holds "
               "a newer state of the row.", t["stale"]),
        Sample("docs_failed_total", "counter", "Rows that could not be indexed (dead letters).",
               t["failed"]),
        Sample("docs_deleted_total", "counter", "Documents deleted from the index.", deleted),
    ]
    for status in ("done", "failed", "skipped", "running", "pending", "cancelled"):
        out.append(Sample("slices", "gauge", "Slices of the run by status.",
                          sum(1 for s in report.slices if s.status == status),
                          (("status", status),)))
    out += _pressure(report)
    out += [Sample("run_seconds", "gauge", "Seconds the run has taken so far.", run_seconds),
            Sample("running", "gauge", "1 while the run goes on, 0 once it has ended.",
                   int(exit_code is None))]
    if watermark_from is not None:
        mark = watermark(report, watermark_from) / 1000
        out += [Sample("watermark_timestamp_seconds", "gauge", "End of the contiguous done "
                       "slices in the ledger (epoch seconds): everything before is exported.",
                       mark),
                Sample("watermark_lag_seconds", "gauge", "How far the watermark is behind "
                       "now, in seconds.", max(0.0, round(now - mark, 3)))]
    if last_success is not None:
        out.append(Sample(LAST_SUCCESS, "gauge", "When a run of this job last ended with exit "
                          "code 0 (epoch seconds).", last_success))
    if exit_code is not None:
        out.append(Sample("exit_code", "gauge", "Exit code of the run (0 ok, 1 failed, 2 usage, "
                          "3 unavailable, 130 interrupted).", int(exit_code)))
    return out


def _pressure(report: RunReport) -> list[Sample]:
    limiter = report.limiter
    if limiter is None:
        return []
    c = limiter.counters()
    sending = c["sending_seconds"]
    return [
        Sample("bulk_requests_total", "counter", "Bulk requests sent.", c["requests"]),
        Sample("bulk_retries_total", "counter", "Bulk requests that had to be sent again "
               "(busy answers, lost connections).", c["bulk_retries"]),
        Sample("bulk_429_total", "counter", "429 Too Many Requests answers: whole bulk "
               "requests and single documents.", c["rejected_429"]),
        Sample("adaptive_backoffs_total", "counter", "Times the adaptive limit lowered the "
               "concurrent bulks.", c["backoffs"]),
        Sample("bulk_concurrency", "gauge", "Bulks allowed in flight at once now.",
               c["concurrency"]),
        Sample("bytes_sent_total", "counter", "Bytes of bulk requests sent.", c["bytes_sent"]),
        Sample("docs_per_second", "gauge", "Documents sent per second while sending.",
               round(c["docs_sent"] / sending, 3) if sending else 0),
    ]


def previous_success(path: str, job: str) -> float | None:
    """The last-success time an earlier run of ``job`` left in ``path``, if any."""
    pattern = re.compile(rf'^{PREFIX}{LAST_SUCCESS}\{{job="{re.escape(_escape(job))}"\}} (\S+)$')
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                match = pattern.match(line.rstrip("\n"))
                if match:
                    return float(match.group(1))
    except (OSError, ValueError):
        return None
    return None


def write_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file, then a rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)  # node_exporter usually runs as another user
    os.replace(tmp, path)


class MetricsFile:
    """Writes ``render(job, samples())`` to ``path`` every ``interval`` s from a thread."""

    def __init__(self, path: str, job: str, interval: float,
                 samples: Callable[[], list[Sample]]):
        self.path, self.job, self.interval, self.samples = path, job, interval, samples
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def write(self, samples: list[Sample]) -> None:
        try:
            write_file(self.path, render(self.job, samples))
        except OSError as exc:
            if not self._warned:  # a full disk must not stop the export; say it once
                log.warning("cannot write the metrics file %s: %s", self.path, exc.strerror)
                self._warned = True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.write(self.samples())
            except Exception:  # noqa: BLE001 - a metrics bug must not end the run
                log.exception("writing the metrics file failed")

    def start(self) -> MetricsFile:
        self.write(self.samples())
        self._thread = threading.Thread(target=self._loop, name="hbase2es-metrics", daemon=True)
        self._thread.start()
        return self

    def finish(self, samples: list[Sample]) -> None:
        """Stop the periodic writes and write the final file."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.write(samples)
