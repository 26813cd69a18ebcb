"""What one worker does for one slice of ``hbase2es reconcile`` (the parent is
``run.reconcile``): find the slice's documents whose row is gone from HBase ("orphans"),
and with ``--apply`` delete them.

Per page of listed documents (``search.listing``: the documents whose timestamp field is
in the slice, in the slice's index names): the row keys (``row_key_from_id``) are looked
up in HBase in one batch (``hbase.rowcheck``, key-only where the API allows). Only counts
and at most ten example ids go back to the parent.

The race ``--apply`` closes. Between the listing and the delete, the row may come back:
re-put by the application, and perhaps re-exported by a cron export running meanwhile.
Two guards, and both are needed:
1. The orphans of a page are looked up in HBase a second time right before their bulk
   delete is sent. A row that is back is skipped. Without this, a row restored with its
   old cell times (which an incremental export never reads again) would lose its
   document for good.
2. Each delete carries the ``_seq_no`` / ``_primary_term`` of the listed revision
   (``if_seq_no``). A row re-created after the second lookup and re-exported before the
   delete arrives has a newer revision: Elasticsearch answers 409 and the new document
   stays (counted ``skipped``). A row re-created but not yet re-exported loses the old
   document, and the export that reads it writes it again.
A delete that way is an internal-version delete: the tombstone's version is the listed
version + 1, so an older state of the row still in flight is refused (for
``index.gc_deletes``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import orjson

from ..deletes import delete_if_unchanged
from ..hbase import open_reader
from ..hbase.rowcheck import existing_rows
from ..indexname import IndexTemplate
from ..mapping import document_id, is_hashed, key_from_text, row_key_from_id
from ..search import engine, listing
from ..search.deadletter import DeadLetterFile, dead_letter_record
from ..search.writer import BulkWriter, Rejection
from ..settings import Settings
from ..timesource import time_source
from ..timewindow import Slice
from .workerjob import JobResources, close_job, open_job, run_task

log = logging.getLogger(__name__)

MAX_EXAMPLES = 10  # orphan ids per slice that cross the pipe


@dataclass(frozen=True)
class ReconcileOptions:
    apply: bool = False
    sample: int | None = None  # random documents per slice; None lists every document
    page_size: int = listing.PAGE_SIZE


@dataclass
class ReconcileSliceResult:
    """What one slice's reconcile found and did; small enough to cross the result pipe."""

    index: int
    start_ms: int
    end_ms: int
    checked: int = 0  # documents whose row was looked up
    orphans: int = 0  # ... and found missing
    deleted: int = 0  # orphans deleted (--apply)
    skipped: int = 0  # orphans left alone: the row came back, or the document changed
    failed: int = 0  # deletes Elasticsearch refused (dead-lettered)
    foreign: int = 0  # documents whose _id hbase2es cannot have written (left alone)
    orphan_ids: list[str] = field(default_factory=list)
    listing: str = ""  # how the documents were listed: point-in-time, scroll or sample
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class SliceReconciler(JobResources):
    """The per-process resources and the reconcile of one slice."""

    def __init__(self, settings: Settings, options: ReconcileOptions):
        self.settings = settings
        self.options = options
        self.reader = open_reader(settings.hbase)
        try:
            self.client = engine.make_client(settings.elasticsearch)
            self.point_in_time = listing.walks_with_point_in_time(self.client)
            self.dead_letters = (DeadLetterFile(settings.run.dead_letter)
                                 if settings.run.dead_letter and options.apply else None)
        except BaseException:
            self.close()
            raise
        self.template = IndexTemplate(settings.elasticsearch.index, settings.tzinfo)
        # Listed with each document: its row key when the _id does not say it.
        self.key_field = settings.mapping.key_field
        source = time_source(settings.window)
        # Every row the column source exported has its time column: asking for that column
        # first spares reading whole rows over Thrift1 (hbase.rowcheck).
        self.probe = [source.column] if source.name == "column" else None

    def run(self, slice_: Slice, progress: Callable[[dict], None] | None = None
            ) -> ReconcileSliceResult:
        started = time.monotonic()
        result = ReconcileSliceResult(slice_.index, slice_.start_ms, slice_.end_ms)
        names = self.template.names_between(slice_.start_ms, slice_.end_ms)
        query = listing.time_range_query(self.settings.mapping.timestamp_field,
                                         slice_.start_ms, slice_.end_ms)
        writer = self._writer(slice_) if self.options.apply else None
        pages = self._pages(names, query, result)
        try:
            for page in pages:
                self._check(page, result, writer)
                if progress is not None:
                    progress({"checked": len(page)})
        finally:
            pages.close()  # frees the listing's point-in-time or scroll at once
        if writer is not None:
            result.deleted, result.failed = writer.counts.indexed, writer.counts.failed
            result.skipped += writer.counts.stale
        result.seconds = round(time.monotonic() - started, 3)
        return result

    def _pages(self, names: list[str], query: dict, result: ReconcileSliceResult
               ) -> Iterator[list[listing.Listed]]:
        if self.options.sample is not None:
            result.listing = "sample"
            yield listing.random_documents(self.client, names, query, self.options.sample,
                                           key_field=self.key_field)
            return
        result.listing = "point-in-time" if self.point_in_time else "scroll"
        yield from listing.document_pages(self.client, names, query, key_field=self.key_field,
                                          page_size=self.options.page_size,
                                          point_in_time=self.point_in_time)

    def _writer(self, slice_: Slice) -> BulkWriter:
        es = self.settings.elasticsearch

        def refused(rejection: Rejection) -> None:
            key, doc_id = rejection.key
            error = rejection.error_type or f"HTTP {rejection.status}"
            if self.dead_letters is None:
                log.warning("slice %s: Elasticsearch refused to delete %s (%s: %s); give "
                            "--dead-letter FILE to keep such documents", slice_, doc_id, error,
                            rejection.reason[:200])
                return
            # The delete action is what would have to be sent again.
            self.dead_letters.write(dead_letter_record(key, slice_, "delete", error,
                                                       rejection.reason,
                                                       orjson.loads(rejection.item)))

        return BulkWriter(self.client, max_docs=es.bulk_docs, max_bytes=es.bulk_bytes,
                          retry_seconds=es.retry_seconds, on_failure=refused)

    def _row_key(self, doc: listing.Listed) -> bytes:
        """The row a document is of: its _id says it, unless the id is hashed or made by
        ``mapping.id``; then its row-key field does. ValueError: not a document of ours."""
        if self.settings.mapping.id_template is None and not is_hashed(doc.id):
            return row_key_from_id(doc.id)
        if doc.key_text is None:
            raise ValueError(f"document {doc.id} has no {self.key_field} field")
        key = key_from_text(doc.key_text)
        if self.settings.mapping.id_template is None and document_id(key) != doc.id:
            raise ValueError(f"document {doc.id} is not the document of its {self.key_field}")
        return key

    def _check(self, page: list[listing.Listed], result: ReconcileSliceResult,
               writer: BulkWriter | None) -> None:
        keyed = []
        for doc in page:
            try:
                keyed.append((self._row_key(doc), doc))
            except ValueError:
                result.foreign += 1
        result.checked += len(keyed)
        present = existing_rows(self.reader, [key for key, _ in keyed], self.probe)
        orphans = [(key, doc) for key, doc in keyed if key not in present]
        result.orphans += len(orphans)
        for _, doc in orphans[:MAX_EXAMPLES - len(result.orphan_ids)]:
            result.orphan_ids.append(doc.id)
        if writer is None or not orphans:
            return
        # Guard 1 (module docstring): look again right before the delete is sent.
        back = existing_rows(self.reader, [key for key, _ in orphans], self.probe)
        for key, doc in orphans:
            if key in back:
                result.skipped += 1
                continue
            # Guard 2: only the revision that was listed.
            writer.add(delete_if_unchanged(doc.index, doc.id, doc.seq_no, doc.primary_term,
                                           doc.routing), (key, doc.id))
        writer.flush()


def open_reconciler(settings: Settings, options: ReconcileOptions) -> None:
    """Pool initializer of a reconcile: this process's SliceReconciler (``run.workerjob``)."""
    open_job(SliceReconciler, settings, options)


close_reconciler = close_job  # pool finalizer
reconcile_slice = run_task  # what the pool runs for each slice
