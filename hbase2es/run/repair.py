"""``verify --compare-fields --repair``: rewrite documents that differ from their rows.

Why a repair is needed at all. Export writes each document with the row's time as its
external version (``external_gte``). When a column or a cell is deleted in HBase, the
row's newest time goes back, below the version its document already has; when a
document is edited in Elasticsearch (or written with a higher external version), its
version moves past the row's. Either way every export of the row is refused as stale,
and the document never changes again. Verify calls such documents "ahead".

Why the repair version keeps later exports right. A repaired document is written from
the row as HBase holds it now, with ``version = max(document _version, row time)`` and
``external_gte``. A version never goes down, so:
- the repair itself is accepted: its version equals (or passes) the stored one;
- a later change of the row is a new cell, stamped later than the times written so far
  (row times, or a row time plus the few increments of edits in Elasticsearch), so its
  time is above the stored version and its export wins as usual;
- an export of an older state still in flight carries a lower version and is refused
  (409), as before.
A version some other writer set in the future stays: the next ``--repair`` rewrites the
document again until the row's cells pass it. If someone writes a newer version between
verify's read and the repair, the repair is refused with 409: counted as a conflict, not
an error (the newer write stands).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..search.chunking import index_action
from ..search.deadletter import DeadLetterFile, dead_letter_record
from ..search.writer import BulkWriter, Rejection
from ..settings import ElasticsearchSettings
from ..timewindow import Slice

if TYPE_CHECKING:  # only the engine module talks to the engine itself
    from ..search.engine import Client

log = logging.getLogger(__name__)


@dataclass
class RepairCounts:
    repaired: int = 0  # rewritten from their rows
    conflicts: int = 0  # refused with 409: a newer version arrived meanwhile
    failed: int = 0  # refused for good (mapping errors ...): in the dead letters


class Repairer:
    """The repairs of one slice's check, sent through the export's bulk writer."""

    def __init__(self, client: Client, es: ElasticsearchSettings, slice_: Slice,
                 dead_letters: DeadLetterFile | None):
        self.slice = slice_
        self.dead_letters = dead_letters
        self.pipeline = es.pipeline or None  # a repair is an export of the row
        self.writer = BulkWriter(client, max_docs=es.bulk_docs, max_bytes=es.bulk_bytes,
                                 retry_seconds=es.retry_seconds, on_failure=self._rejected)

    def add(self, index: str, doc_id: str, row_key: bytes, document: dict, *,
            doc_version: int | None, row_time: int, routing: str | None = None) -> None:
        """Queue one document rebuilt from its row (the module docstring says why this version)."""
        version = row_time if doc_version is None else max(doc_version, row_time)
        self.writer.add(index_action(index, doc_id, version, document, routing,
                                     self.pipeline), row_key)

    def finish(self) -> RepairCounts:
        """Send what is queued and return what became of every repair."""
        self.writer.flush()
        c = self.writer.counts
        return RepairCounts(repaired=c.indexed, conflicts=c.stale, failed=c.failed)

    def _rejected(self, rejection: Rejection) -> None:
        error_type = rejection.error_type or f"HTTP {rejection.status}"
        if self.dead_letters is not None:
            self.dead_letters.write(dead_letter_record(rejection.key, self.slice, "repair",
                                                       error_type, rejection.reason,
                                                       rejection.item))
        else:
            log.warning("slice %s: repair of row %r refused (%s: %s); set [run] dead_letter to "
                        "keep such rows", self.slice, rejection.key[:100], error_type,
                        rejection.reason[:200])
