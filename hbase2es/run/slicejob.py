"""The one job a worker (or a Spark task) runs: export one slice, return its counts.

A worker opens its HBase reader and Elasticsearch client once (``open_worker``), then
for every slice it is handed streams rows from its own scanner straight into bulk
requests. Documents never leave the process; only a SliceResult and small progress
messages go back to the parent.

Checkpoints. Each time a bulk has settled (every document in it indexed, stale or a
counted failure), the progress message carries a checkpoint: the last row key of that
bulk and the slice's counts up to it. Bulks go out in key order, so every row up to that
key is settled. The parent writes it to the ledger, and ``--resume`` starts the slice
just after that key with those counts, so rows read before and after a cut are each
counted once.

Moved rows. When rows can move between indices (a time-based index template with the cell
or column time source), every bulk also deletes the older copies of what it wrote from
the template's other indices (``search.copies``), before its checkpoint: ``moved`` counts
them. It counts this attempt's deletions only (a resumed slice does not carry it over).

Soft deletes. With ``[mapping] delete_when``, a row that matches becomes a versioned
``delete`` (or a tombstone) in the same bulk stream instead of an ``index``
(``hbase2es.deletes`` says why its version is the row time + 1); it counts as ``deleted``.
A checkpoint has no ``deleted`` count, so the deletes before a resume point count as
``indexed`` in the resumed slice's totals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

from ..deletes import DeleteTally, dead_letter_parts, soft_delete_action
from ..errors import Hbase2esError
from ..hbase import open_reader
from ..indexname import IndexTemplate
from ..docaddress import Addressing, MissingValue
from ..mapping import DecodeError, build_document, document_id
from ..search import engine
from ..search.copies import CopyRemover
from ..search.deadletter import DeadLetterFile, dead_letter_record
from ..search.writer import FILTER_PATH, BulkWriter, Rejection
from ..settings import Settings
from ..timesource import time_source
from ..timewindow import Slice
from .limiter import RunLimiter
from .workerjob import JobResources, close_job, open_job, run_task
from .onepass import PassTask, slot_finder
from .pieces import Checkpoint, SliceTask, clip_scan
from .throttle import bulk_caps, read_batch

log = logging.getLogger(__name__)

PROGRESS_EVERY_ROWS = 2048
PROGRESS_EVERY_S = 0.5
MAX_KEY_IN_MESSAGE = 1024  # progress messages stay small: longer keys get no checkpoint

# Where the slices exported inside this block send their dead letters instead of opening
# [run] dead_letter themselves: a Spark task keeps them to send back to the driver, which
# writes the user's file (run.spark). A context variable, so that ``slice_fn`` wrappers
# around run_slice keep their (task, settings) shape.
_dead_letter_sink: ContextVar = ContextVar("dead_letter_sink", default=None)


@contextmanager
def dead_letters_to(sink):
    """Within the block, exporters write dead letters to ``sink`` (``write(record)``,
    ``close()``) rather than to the [run] dead_letter file; None changes nothing."""
    token = _dead_letter_sink.set(sink)
    try:
        yield sink
    finally:
        _dead_letter_sink.reset(token)


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
    deleted: int = 0  # soft-deleted rows whose document was deleted (or tombstoned)
    rows_read: int = 0  # rows the server returned, including those older than the slice
    seconds: float = 0.0
    resumed_after: int = 0  # rows of the counts above that an earlier run had settled
    moved: int = 0  # older copies of the slice's rows deleted from other indices
    move_conflicts: int = 0  # copies kept because a newer write reached them first

    def to_dict(self) -> dict:
        return asdict(self)


class _Mark(NamedTuple):
    """What the writer carries per document: its row, and the slice's counts at that row.

    A named tuple, not a frozen dataclass: one is made per document, and a tuple is made
    in a third of the time.
    """

    key: bytes
    rows: int
    decode_failed: int
    skipped_fields: int
    slot: int | None = None  # in a pass: the position of the row's slice


class _SliceCounts:
    """The running counts of one slice attempt, and the checkpoints it sends.

    In a pass (run.onepass) there is one per slice, ``slot`` its position: its messages
    name it and carry no checkpoint, and its document counts are the writer's group.
    """

    def __init__(self, base: Checkpoint | None, progress: Callable[[dict], None] | None,
                 slice_: Slice, slot: int | None = None):
        self.base = base or Checkpoint(b"")
        self.progress = progress
        self.slice = slice_
        self.slot = slot
        self.rows = 0
        self.decode_failed = 0  # rows dead-lettered before reaching the writer
        self.skipped_fields = 0  # on_decode_error = skip-field: counted and logged, not silent
        self.sent = (0, 0)  # rows and indexed already reported as progress
        self.last_report = time.monotonic()
        self.writer: BulkWriter | None = None
        self.deletes: DeleteTally | None = None  # with [mapping] delete_when

    @property
    def tally(self):
        """The writer's counts of this slice's documents."""
        return self.writer.counts if self.slot is None else self.writer.group(self.slot)

    def mark(self, key: bytes) -> _Mark:
        return _Mark(key, self.rows, self.decode_failed, self.skipped_fields, self.slot)

    def settled(self, mark: _Mark) -> None:
        """The writer's on_settled: send a checkpoint at the bulk's last row."""
        if self.progress is None or len(mark.key) > MAX_KEY_IN_MESSAGE:
            return
        c, b = self.writer.counts, self.base
        checkpoint = Checkpoint(mark.key, b.rows + mark.rows, b.indexed + c.indexed,
                                b.stale + c.stale, b.failed + c.failed + mark.decode_failed,
                                b.skipped_fields + mark.skipped_fields)
        self.report(checkpoint)

    def maybe_report(self) -> None:
        """Progress every PROGRESS_EVERY_S; the loop calls it every PROGRESS_EVERY_ROWS rows."""
        if self.progress is not None and time.monotonic() - self.last_report >= PROGRESS_EVERY_S:
            self.report(None)

    def report(self, checkpoint: Checkpoint | None) -> None:
        """Send what changed since the last message, so the parent can simply add."""
        if self.progress is None:
            return
        indexed = self.tally.indexed
        if (self.rows, indexed) == self.sent and checkpoint is None:
            return
        message = {"rows": self.rows - self.sent[0], "indexed": indexed - self.sent[1],
                   "checkpoint": asdict(checkpoint) if checkpoint is not None else None}
        if self.slot is not None:
            message["slot"] = self.slot
        self.progress(message)
        self.sent = (self.rows, indexed)
        self.last_report = time.monotonic()


class SliceExporter(JobResources):
    """The per-process resources and the export loop."""

    def __init__(self, settings: Settings, limiter: RunLimiter | None = None):
        self.settings = settings
        self.limiter = limiter
        hbase = settings.hbase  # under a row limit, smaller Thrift batches: no bursts
        self.reader = open_reader(replace(hbase, batch_size=read_batch(
            hbase.batch_size, hbase.max_rows_per_second)))
        self.take_row = limiter.row_gate() if limiter is not None else None
        try:
            self.client = engine.make_client(settings.elasticsearch)
            sink = _dead_letter_sink.get()
            if not settings.run.dead_letter:
                self.dead_letters = None
            else:
                self.dead_letters = (sink if sink is not None
                                     else DeadLetterFile(settings.run.dead_letter))
        except BaseException:
            self.reader.close()
            raise
        self.template = IndexTemplate(settings.elasticsearch.index, settings.tzinfo)
        self.addressing = Addressing.of(settings)
        self.source = time_source(settings.window)

    def rows_can_move(self) -> bool:
        """True when a row's index can change: its time comes from cells or a column (an
        update changes it) and the template turns times into different names. A row-key
        time never changes for a key."""
        # A data stream deletes no document by id: its rows stay where they were written.
        return (not self.template.is_static and self.source.name in ("cell", "column")
                and not self.settings.data_stream)

    def _scans(self, task: SliceTask | PassTask) -> list:
        """The slice's scans in key order, clipped to the task's key range and its resume
        point (keys after ``resume.last_key``)."""
        scans = sorted(self.source.scans(task.slice), key=lambda spec: spec.row_start)
        if task.key_range is not None:
            scans = [c for c in (clip_scan(spec, *task.key_range) for spec in scans)
                     if c is not None]
        resume = getattr(task, "resume", None)
        if resume is not None:
            after = resume.last_key + b"\x00"  # the first key a resumed scan may read
            scans = [spec for spec in scans if not spec.row_stop or spec.row_stop > after]
        return scans

    def run(self, task: Slice | SliceTask | PassTask,
            progress: Callable[[dict], None] | None = None) -> SliceResult | list[SliceResult]:
        """Export the rows of a slice, a region piece of one, a resumed slice, or a pass
        over consecutive slices (a list of results, one per slice)."""
        started = time.monotonic()
        task = task if isinstance(task, (SliceTask, PassTask)) else SliceTask(task)
        if isinstance(task, PassTask):
            slots = [_SliceCounts(None, progress, s, i) for i, s in enumerate(task.slices)]
            find = slot_finder(task.slices)

            def counts_at(t: int) -> _SliceCounts | None:
                i = find(t)
                return None if i is None else slots[i]
            resume = None
        else:
            slots = [_SliceCounts(task.resume, progress, task.slice)]
            lo, hi = task.slice.start_ms, task.slice.end_ms

            def counts_at(t: int) -> _SliceCounts | None:
                return slots[0] if lo <= t < hi else None
            resume = task.resume
        writer, copies = self._writer(slots)
        rows_read_before = self.reader.rows_read
        after = resume.last_key if resume is not None else None
        for spec in self._scans(task):
            self._export_scan(spec, after, writer, counts_at)
        writer.flush()
        results = [self._result(counts) for counts in slots]
        # What the pass read and how long it took belong to all its slices: the reads and
        # the moves go to the last one (totals stay right), the seconds are shared.
        last = results[-1]
        last.rows_read = self.reader.rows_read - rows_read_before
        if copies is not None:
            last.moved, last.move_conflicts = copies.moved, copies.conflicts
        seconds = round((time.monotonic() - started) / len(results), 3)
        for result in results:
            result.seconds = seconds
        return results if isinstance(task, PassTask) else last

    def _writer(self, slots: list[_SliceCounts]) -> tuple[BulkWriter, CopyRemover | None]:
        """The bulk writer all of a task's slices share, and its copy remover."""
        es, run = self.settings.elasticsearch, self.settings.run

        def rejected(rejection: Rejection) -> None:
            stage, document = dead_letter_parts(rejection.item)
            self._dead_letter(rejection.key.key, slots[rejection.key.slot or 0].slice, stage,
                              rejection.error_type or f"HTTP {rejection.status}",
                              rejection.reason, document)

        copies = (CopyRemover(self.client, self.template, es.retry_seconds)
                  if self.rows_can_move() else None)
        deletes = None
        if self.settings.delete_when is not None:
            client = self.client
            deletes = DeleteTally(lambda payload: engine.bulk(
                client, payload, filter_path=FILTER_PATH))
        if len(slots) == 1:
            on_settled, group_of = slots[0].settled, None
        else:  # a pass: progress for each slice, no checkpoint
            def on_settled(mark: _Mark) -> None:
                for counts in slots:
                    counts.report(None)
            group_of = _slot_of
        max_docs, max_bytes = bulk_caps(es.bulk_docs, es.bulk_bytes, run.max_docs_per_second,
                                        run.max_bytes_per_second)
        writer = BulkWriter(self.client, max_docs=max_docs, max_bytes=max_bytes,
                            retry_seconds=es.retry_seconds, on_failure=rejected,
                            on_settled=on_settled, send=deletes, group_of=group_of,
                            on_written=copies.after_bulk if copies is not None else None,
                            around_send=self.limiter.around_send if self.limiter else None,
                            create=self.settings.data_stream)
        for counts in slots:
            counts.writer, counts.deletes = writer, deletes
        return writer, copies

    def _export_scan(self, spec, after: bytes | None, writer: BulkWriter, counts_at) -> None:
        """Export the rows of one scan; ``counts_at(row time)`` is the counts of the slice
        the row belongs to, None for a row outside the task's slices."""
        mapping = self.settings.mapping
        rule = self.settings.delete_when
        drop_on_decode = mapping.on_decode_error == "dead-letter"
        render, row_time = self.template.render, self.source.row_time
        pipeline = self.addressing.pipeline
        plain = self.addressing.id_template is None and self.addressing.routing is None
        take_row = self.take_row
        for key, values, newest in self.reader.scan(**spec.scan_kwargs(), after=after):
            if take_row is not None:  # [hbase] max_rows_per_second, for every row read
                take_row()
            t = row_time(key, values, newest)
            counts = counts_at(t)
            if counts is None:
                continue
            counts.rows += 1
            if plain:  # the usual job: no column is needed to address the row
                doc_id, routing = document_id(key), None
            else:
                address = self._address(key, values, counts)
                if address is None:
                    continue
                doc_id, routing = address
            if rule is not None and rule.matches(values):
                writer.add(soft_delete_action(rule, render(t), doc_id, t,
                                              mapping.timestamp_field, routing),
                           counts.mark(key))
                if counts.rows % PROGRESS_EVERY_ROWS == 0:
                    counts.maybe_report()
                continue
            try:
                document, errors = build_document(key, values, t, mapping)
            except DecodeError as exc:
                raise Hbase2esError(f"row {key!r}: {exc} (mapping.on_decode_error = fail)") \
                    from None
            if errors:
                if drop_on_decode:
                    counts.decode_failed += 1
                    self._dead_letter(key, counts.slice, "decode", "DecodeError",
                                      "; ".join(str(e) for e in errors), document)
                    continue
                counts.skipped_fields += len(errors)
            writer.index(render(t), doc_id, t, document, counts.mark(key), routing, pipeline)
            if counts.rows % PROGRESS_EVERY_ROWS == 0:  # a method call per row costs more
                counts.maybe_report()

    def _address(self, key: bytes, values: dict,
                 counts: _SliceCounts) -> tuple[str, str | None] | None:
        """The row's ``(_id, routing)``, or None when a column they need is missing and
        ``mapping.on_decode_error`` sends the row to the dead letters (``skip-field``
        leaves the routing out; an id cannot be left out)."""
        addressing = self.addressing
        policy = self.settings.mapping.on_decode_error
        try:
            return (addressing.doc_id(key, values),
                    addressing.route(key, values, missing_ok=policy == "skip-field"))
        except MissingValue as exc:
            if policy == "fail":
                raise Hbase2esError(f"row {key!r}: {exc} (mapping.on_decode_error = fail)") \
                    from None
            counts.decode_failed += 1
            self._dead_letter(key, counts.slice, "decode", "MissingValue", str(exc), None)
            return None

    def _result(self, counts: _SliceCounts) -> SliceResult:
        c, base = counts.tally, counts.base
        failed = c.failed + counts.decode_failed
        # Every row of the slice ends as indexed (a soft delete that landed counts here too),
        # stale or a counted failure: a row that is none of these would be a document lost
        # without a trace, so the slice is not done.
        accounted = c.indexed + c.stale + failed
        if accounted != counts.rows:
            raise Hbase2esError(f"slice {counts.slice}: {counts.rows} rows read but only "
                                f"{accounted} indexed, stale or failed; the slice is not done")
        counts.report(None)
        s = counts.slice
        deleted = counts.deletes.deleted if counts.deletes is not None else 0
        return SliceResult(
            s.index, s.start_ms, s.end_ms, rows=base.rows + counts.rows,
            indexed=base.indexed + c.indexed - deleted, deleted=deleted,
            stale=base.stale + c.stale,
            failed=base.failed + failed, skipped_fields=base.skipped_fields + counts.skipped_fields,
            resumed_after=base.rows)

    def _dead_letter(self, key: bytes, slice_: Slice, stage: str, error_type: str, reason: str,
                     document) -> None:
        if self.dead_letters is not None:
            self.dead_letters.write(dead_letter_record(key, slice_, stage, error_type, reason,
                                                       document))
        else:
            log.warning("slice %s: row %r not indexed (%s: %s); give --dead-letter FILE to keep "
                        "such rows", slice_, key[:100], error_type, reason[:200])


def _slot_of(mark: _Mark) -> int:
    return mark.slot


def open_worker(settings: Settings, limiter: RunLimiter | None = None) -> None:
    """Pool initializer of an export: this process's SliceExporter (``run.workerjob``).

    ``limiter`` is the run's shared one (rates, concurrent bulks), made by the parent.
    """
    open_job(SliceExporter, settings, limiter)


close_worker = close_job  # pool finalizer
export_slice = run_task  # what the pool runs for each slice, region piece or resumed slice


def run_slice(task: Slice | SliceTask, settings: Settings,
              progress: Callable[[dict], None] | None = None) -> SliceResult:
    """Export one slice task with resources of its own (for other executors).

    Its limits are its own too: an executor that runs several at once hands each its
    share (``throttle.task_share``).
    """
    exporter = SliceExporter(settings, RunLimiter.for_run(settings, ceiling=1))
    try:
        return exporter.run(task, progress)
    finally:
        exporter.close()
