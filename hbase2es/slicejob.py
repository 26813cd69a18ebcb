"""The one job a worker (or a Spark task) runs: export one slice, return its counts.

A worker opens its HBase reader and Elasticsearch client once (``open_worker``), then
for every slice it is handed streams rows from its own scanner straight into bulk
requests. Documents never leave the process; only a SliceResult and small progress
messages go back to the parent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from . import es_compat
from .chunking import index_action
from .deadletter import DeadLetterFile, dead_letter_record
from .errors import Hbase2esError
from .es_writer import BulkWriter, Rejection
from .hbase_reader import open_reader
from .mapping import DecodeError, IndexTemplate, build_document, document_id
from .regions import SliceTask, clip_scan
from .settings import Settings
from .timesource import time_source
from .timewindow import Slice

log = logging.getLogger(__name__)

PROGRESS_EVERY_ROWS = 2048
PROGRESS_EVERY_S = 0.5
MAX_KEY_IN_MESSAGE = 1024  # progress messages stay small whatever the key length


@dataclass
class SliceResult:
    """Counts of one slice, small enough to cross the result pipe."""

    index: int
    start_ms: int
    end_ms: int
    rows: int = 0  # rows of the slice: each became a document or a failure
    indexed: int = 0
    stale: int = 0  # refused because the index holds a newer state of the row
    failed: int = 0
    skipped_fields: int = 0  # values left out under on_decode_error = skip-field
    rows_read: int = 0  # rows the server returned, including those older than the slice
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class SliceExporter:
    """The per-process resources and the export loop."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.reader = open_reader(settings.hbase)
        try:
            self.client = es_compat.make_client(settings.elasticsearch)
            self.dead_letters = (DeadLetterFile(settings.run.dead_letter)
                                 if settings.run.dead_letter else None)
        except BaseException:
            self.reader.close()
            raise
        self.template = IndexTemplate(settings.elasticsearch.index, settings.tzinfo)
        self.source = time_source(settings.window)

    def close(self) -> None:
        self.reader.close()
        if self.dead_letters is not None:
            self.dead_letters.close()
        try:
            self.client.close()
        except Exception:  # noqa: BLE001
            pass

    def run(self, slice_: Slice, progress: Callable[[dict], None] | None = None,
            key_range: tuple[bytes, bytes] | None = None) -> SliceResult:
        """Export the rows of a slice; ``key_range`` limits it to one region's piece."""
        started = time.monotonic()
        result = SliceResult(slice_.index, slice_.start_ms, slice_.end_ms)
        es = self.settings.elasticsearch
        mapping = self.settings.mapping
        drop_on_decode = mapping.on_decode_error == "dead-letter"

        def rejected(rejection: Rejection) -> None:
            self._dead_letter(rejection.key, slice_, "index", rejection.error_type or
                              f"HTTP {rejection.status}", rejection.reason, rejection.item)

        writer = BulkWriter(self.client, max_docs=es.bulk_docs, max_bytes=es.bulk_bytes,
                            retry_seconds=es.retry_seconds, on_failure=rejected)
        reader, render, row_time = self.reader, self.template.render, self.source.row_time
        start_ms, end_ms = slice_.start_ms, slice_.end_ms
        rows_read_before = reader.rows_read
        sent = (0, 0)  # rows and indexed already reported as progress
        last_report = started
        rows = 0
        skipped_fields = 0  # on_decode_error = skip-field: counted and logged, not silent
        scans = self.source.scans(slice_)
        if key_range is not None:
            scans = [c for c in (clip_scan(spec, *key_range) for spec in scans) if c is not None]
        for spec in scans:
            for key, values, newest in reader.scan(**spec.scan_kwargs()):
                t = row_time(key, values, newest)
                if t < start_ms or t >= end_ms:
                    continue
                rows += 1
                try:
                    document, errors = build_document(key, values, t, mapping)
                except DecodeError as exc:
                    raise Hbase2esError(f"row {key!r}: {exc} (mapping.on_decode_error = fail)") \
                        from None
                if errors:
                    if drop_on_decode:
                        writer.counts.failed += 1
                        self._dead_letter(key, slice_, "decode", "DecodeError",
                                          "; ".join(str(e) for e in errors), document)
                        continue
                    skipped_fields += len(errors)
                writer.add(index_action(render(t), document_id(key), t, document), key)
                if progress is not None and rows % PROGRESS_EVERY_ROWS == 0:
                    now = time.monotonic()
                    if now - last_report >= PROGRESS_EVERY_S:
                        last_report = now
                        sent = self._report(progress, rows, writer.counts.indexed, sent, key)
        writer.flush()
        counts = writer.counts
        # Every row of the slice ends as indexed, stale or a counted failure: a row that is
        # none of these would be a document lost without a trace, so the slice is not done.
        accounted = counts.indexed + counts.stale + counts.failed
        if accounted != rows:
            raise Hbase2esError(f"slice {slice_}: {rows} rows read but only {accounted} "
                                "indexed, stale or failed; the slice is not done")
        result.skipped_fields = skipped_fields
        result.rows = rows
        result.indexed, result.stale, result.failed = counts.indexed, counts.stale, counts.failed
        result.rows_read = reader.rows_read - rows_read_before
        result.seconds = round(time.monotonic() - started, 3)
        if progress is not None:
            self._report(progress, rows, counts.indexed, sent, None)
        return result

    @staticmethod
    def _report(progress, rows: int, indexed: int, sent: tuple[int, int],
                last_key: bytes | None) -> tuple[int, int]:
        """Send what changed since the last message, so the parent can simply add."""
        if (rows, indexed) != sent:
            progress({"rows": rows - sent[0], "indexed": indexed - sent[1],
                      "last_key": last_key[:MAX_KEY_IN_MESSAGE] if last_key else None})
        return rows, indexed

    def _dead_letter(self, key: bytes, slice_: Slice, stage: str, error_type: str, reason: str,
                     document) -> None:
        if self.dead_letters is not None:
            self.dead_letters.write(dead_letter_record(key, slice_, stage, error_type, reason,
                                                       document))
        else:
            log.warning("slice %s: row %r not indexed (%s: %s); give --dead-letter FILE to keep "
                        "such rows", slice_, key[:100], error_type, reason[:200])


# One exporter per worker process, opened by the pool's initializer.
_exporter: SliceExporter | None = None


def open_worker(settings: Settings) -> None:
    """Pool initializer: open this process's HBase connection and Elasticsearch client."""
    global _exporter
    # A spawned worker starts with logging unset; its warnings (a scan reopened, a bulk
    # retried) go to the run's stderr, marked with the worker's PID.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s [worker %(process)d] %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger("hbase2es")
    root.handlers[:] = [handler]
    root.setLevel(settings.run.log_level.upper())
    root.propagate = False
    _exporter = SliceExporter(settings)


def close_worker() -> None:
    """Pool finalizer."""
    global _exporter
    if _exporter is not None:
        _exporter.close()
        _exporter = None


def export_slice(task: Slice | SliceTask, progress: Callable[[dict], None]) -> SliceResult:
    """The function the pool runs for each slice, or each region's piece of a slice."""
    if isinstance(task, SliceTask):
        return _exporter.run(task.slice, progress, (task.row_start, task.row_stop))
    return _exporter.run(task, progress)


def run_slice(slice_: Slice | SliceTask, settings: Settings,
              progress: Callable[[dict], None] | None = None) -> SliceResult:
    """Export one slice (or region piece) with resources of its own (for other executors)."""
    exporter = SliceExporter(settings)
    try:
        if isinstance(slice_, SliceTask):
            return exporter.run(slice_.slice, progress, (slice_.row_start, slice_.row_stop))
        return exporter.run(slice_, progress)
    finally:
        exporter.close()
