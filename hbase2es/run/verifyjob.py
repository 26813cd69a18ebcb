"""The check one worker runs for one slice of ``hbase2es verify`` (the parent is ``run.verify``).

Each slice runs on the worker pool like an export: the worker scans the rows the slice
exports (same time source, same row-time check), keeping only what it needs, and asks
Elasticsearch for their documents with ``mget`` in batches. Only counts and at most ten
example keys per slice go back to the parent.

What a scan keeps. The cell time source needs each row's newest cell older than the slice
end, so the scan uses ``KeyOnlyFilter``: values are emptied on the server, every column's
timestamp is kept. ``FirstKeyOnlyFilter`` would be wrong here: it keeps the first column
only, whose timestamp need not be the newest, and rows would fall out of their slice. A
row-key source needs only the keys; a column source needs only its time column. With
``--compare-fields`` the rows are read whole, to rebuild their documents; so they are when
the ids or the routing are made from columns (``[mapping] id``, ``elasticsearch.routing``;
the column source reads just those columns besides its own).

A document's ``_version`` is the row time it was written from (external versioning), so
a version older than the row's time means the newer state never arrived ("older"); a
newer one was written by a later slice and counts as present.

Copies. Under a time-based index template a row's document may sit in another index
than its slice's (an update moved the row: ``search.copies``), and an older copy may have
been left behind. So each batch first asks for its ids over the template's indices (one
``ids`` search, refreshed documents only): the newest copy is the row's document, looked
up where it is, and every other copy counts in ``copies`` (verify then fails).

With ``--compare-fields`` a document whose fields differ is "differing" when an export
can still rewrite it, and "ahead" when its version is newer than every state of its row:
a column or cell deleted in HBase moved the row's time back, or the document was edited
in Elasticsearch. Every export of such a row is refused as stale; ``--repair`` rewrites
both kinds from their rows (``run.repair`` says with which version, and why).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import orjson

from ..deletes import delete_version
from ..errors import Hbase2esError
from ..hbase import open_reader
from ..indexname import IndexTemplate
from ..docaddress import Addressing, MissingValue
from ..mapping import build_document, key_text
from ..search import engine
from ..search.copies import find_copies, newest_copies
from ..search.deadletter import DeadLetterFile
from ..settings import Settings
from ..timesource import time_source
from ..timewindow import Slice
from .repair import Repairer
from .workerjob import JobResources, close_job, open_job, run_task

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
    repair: bool = False  # rewrite compared documents that differ (needs compare_fields)


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
    # Rows [mapping] delete_when marks: their document gone (or a tombstone or a newer
    # state in its place), or still the live one an export has yet to delete.
    deleted: int = 0
    undeleted: int = 0
    compared: int = 0  # documents compared field by field (--compare-fields)
    differing: int = 0  # compared documents with at least one differing field
    ahead: int = 0  # differing, and newer than every state of the row: export cannot fix it
    repaired: int = 0  # --repair: rewritten from their rows
    repair_conflicts: int = 0  # --repair refused with 409: a newer version arrived meanwhile
    repair_failed: int = 0  # --repair refused for good: in the dead letters
    missing_keys: list[str] = field(default_factory=list)  # document ids (text or b64:)
    older_keys: list[str] = field(default_factory=list)
    undeleted_keys: list[str] = field(default_factory=list)
    # Documents of checked rows in other indices than the row's newest one; like rows, a
    # row checked by two slices counts in both.
    copies: int = 0
    copy_keys: list[str] = field(default_factory=list)  # "index/id" of such copies
    ahead_keys: list[str] = field(default_factory=list)
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


def field_differences(expected: dict, actual: dict, *, both_only: bool = False
                      ) -> list[tuple[str, object, object]]:
    """``(field, expected, actual)`` for every top-level field that differs; ABSENT marks
    a field one side lacks. ``both_only`` (an ingest pipeline) compares only the fields
    both sides have."""
    out = []
    names = set(expected) & set(actual) if both_only else set(expected) | set(actual)
    for name in sorted(names):
        want, have = expected.get(name, ABSENT), actual.get(name, ABSENT)
        if want is ABSENT or have is ABSENT or want != have:
            out.append((name, want, have))
    return out


class SliceVerifier(JobResources):
    """The per-process resources and the check of one slice."""

    def __init__(self, settings: Settings, options: VerifyOptions):
        self.settings = settings
        self.options = options
        self.reader = open_reader(settings.hbase)
        try:
            self.client = engine.make_client(settings.elasticsearch)
        except BaseException:
            self.reader.close()
            raise
        self.template = IndexTemplate(settings.elasticsearch.index, settings.tzinfo)
        self.source = time_source(settings.window)
        self.rule = settings.delete_when
        self.dead_letters = (DeadLetterFile(settings.run.dead_letter)
                             if options.repair and settings.run.dead_letter else None)
        self.repairer: Repairer | None = None  # the running slice's, with --repair
        # A value that does not decode is left out of the rebuilt document, so it shows as
        # a difference instead of stopping the check.
        self.mapping = dataclasses.replace(settings.mapping, on_decode_error="skip-field")
        self.addressing = Addressing.of(settings)
        # An ingest pipeline may add, drop or rewrite fields: only the fields both the
        # rebuilt document and the stored one have are compared.
        self.lenient = bool(settings.elasticsearch.pipeline)

    def scan_kwargs(self, spec) -> dict:
        """The slice's scan, reading no more of each row than the row-time check needs."""
        kwargs = spec.scan_kwargs()
        needed = self.addressing.columns  # the id or the routing reads these
        if self.options.compare_fields or (needed and self.source.name != "column"):
            return kwargs
        if self.source.name in ("cell", "rowkey"):
            if self.rule is not None and self.rule.equals is not None:
                return kwargs  # KeyOnlyFilter would empty the marker value the rule tests
            # Not FirstKeyOnlyFilter: the cell source needs every column's timestamp.
            current = kwargs.get("filter")
            kwargs["filter"] = (b"(" + current + b") AND " + KEY_ONLY_FILTER if current
                                else KEY_ONLY_FILTER)
        elif self.source.name == "column":
            kwargs["columns"] = [self.source.column, *needed,
                                 *([self.rule.column] if self.rule else [])]
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
        if self.options.repair:
            self.repairer = Repairer(self.client, self.settings.elasticsearch, slice_,
                                     self.dead_letters)
        for spec in self.source.scans(slice_):
            for key, values, newest in self.reader.scan(**self.scan_kwargs(spec)):
                t = row_time(key, values, newest)
                if t < start_ms or t >= end_ms:
                    continue
                result.rows += 1
                gone = self.rule is not None and self.rule.matches(values)
                item = (key, t, values if keep_values else None, self._address(key, values),
                        gone)
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
        if self.repairer is not None:
            counts, self.repairer = self.repairer.finish(), None
            result.repaired, result.repair_conflicts = counts.repaired, counts.conflicts
            result.repair_failed = counts.failed
        if progress is not None and result.rows > reported:
            progress({"rows": result.rows - reported})
        result.rows_read = self.reader.rows_read - rows_read_before
        result.seconds = round(time.monotonic() - started, 3)
        return result

    def _locate(self, batch: list[tuple], result: VerifySliceResult) -> dict[bytes, str]:
        """Under a time-based template: the index of each row's newest copy, and every
        other copy counted in ``result``."""
        if self.template.is_static:
            return {}
        ids = {address[0]: key for key, _, _, address, _ in batch}
        copies = find_copies(self.client, self.template, sorted(ids))
        newest = newest_copies(copies)
        for copy in copies:
            if copy != newest[copy.id]:
                result.copies += 1
                if len(result.copy_keys) < MAX_EXAMPLES:
                    result.copy_keys.append(f"{copy.index}/{copy.id}")
        return {ids[doc_id]: copy.index for doc_id, copy in newest.items()}

    def _check(self, batch: list[tuple], result: VerifySliceResult) -> None:
        by_index: dict[str, list[tuple]] = {}
        render = self.template.render
        unaddressed = [item for item in batch if item[3][0] is None]
        if unaddressed:  # a missing id column: the export dead-lettered these rows
            batch = [item for item in batch if item[3][0] is not None]
            result.checked += len(unaddressed)
            result.missing += len(unaddressed)
            for key, *_ in unaddressed[:max(0, MAX_EXAMPLES - len(result.missing_keys))]:
                result.missing_keys.append(key_text(key))
        located = self._locate(batch, result)
        for item in batch:
            by_index.setdefault(located.get(item[0]) or render(item[1]), []).append(item)
        for index, items in by_index.items():
            ids = [address[0] for _, _, _, address, _ in items]
            routings = ([address[1] for _, _, _, address, _ in items]
                        if self.addressing.routing is not None else None)
            response = engine.mget(self.client, index, ids, source=self.options.compare_fields,
                                   routings=routings)
            for (key, t, values, address, gone), doc in zip(items, response["docs"]):
                doc_id = address[0]
                result.checked += 1
                error = doc.get("error")
                if error is not None and (error.get("type") if isinstance(error, dict) else
                                          None) != "index_not_found_exception":
                    reason = error.get("reason") if isinstance(error, dict) else error
                    raise Hbase2esError(f"Elasticsearch could not look up {index}/{doc_id}: "
                                        f"{reason}")
                if gone:
                    self._check_deleted(doc_id, doc, t, result)
                    continue
                if error is not None or not doc.get("found"):
                    if self._deleted_later(key, t):
                        result.deleted += 1
                        continue
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
                    self._judge(index, key, t, values, address, doc, result)

    @staticmethod
    def _check_deleted(doc_id: str, doc: dict, t: int, result: VerifySliceResult) -> None:
        """A soft-deleted row's document must be gone, or hold a version at or above the
        delete's (a tombstone, or a newer state of a row that came back); a lower version
        is the live document the delete has not reached yet."""
        version = doc.get("_version")
        if not doc.get("found") or (isinstance(version, int) and version >= delete_version(t)):
            result.deleted += 1
            return
        result.undeleted += 1
        if len(result.undeleted_keys) < MAX_EXAMPLES:
            result.undeleted_keys.append(doc_id)

    def _deleted_later(self, key: bytes, t: int) -> bool:
        """Whether a row whose document is gone has a newer state that delete_when marks:
        with the cell source an earlier slice still sees the state before the mark, and
        the later slice's export rightly deleted the document."""
        if self.rule is None or self.source.name != "cell":
            return False
        now = self._row(key)
        return now is not None and now[0] > t and self.rule.matches(now[1])

    def _address(self, key: bytes, values: dict) -> tuple[str | None, str | None]:
        """The row's ``(_id, routing)`` as the export made them; a row the export
        dead-lettered for a missing column gets the id None and counts as missing."""
        try:
            return (self.addressing.doc_id(key, values),
                    self.addressing.route(key, values, missing_ok=self.settings.mapping
                                          .on_decode_error == "skip-field"))
        except MissingValue:
            return None, None

    def _judge(self, index: str, key: bytes, t: int, values: dict, address: tuple,
               doc: dict, result: VerifySliceResult) -> None:
        """Compare a document with the row state its version stands for; queue a repair."""
        version = doc.get("_version")
        version = version if isinstance(version, int) else None
        state = self._state_for(key, t, values, version)
        if state is None:
            return
        row_time, row_values, ahead = state
        expected, _ = build_document(key, row_values, row_time, self.mapping)
        doc_id = address[0]
        if self._compare(expected, doc_id, doc.get("_source") or {}, ahead, result) \
                and self.repairer is not None:
            self.repairer.add(index, doc_id, key, expected, doc_version=version,
                              row_time=row_time, routing=address[1])

    def _state_for(self, key: bytes, t: int, values: dict, version: int | None
                   ) -> tuple[int, dict, bool] | None:
        """``(time, cells, ahead)`` of the row state to compare a document with, or None
        when another slice judges it.

        A version at or below the slice's row time: that state. A newer version, with the
        cell source, is a later slice's export when HBase holds a state at exactly that
        time: that state. When the row's newest cell is newer still, the slice of that
        newer state finds the document older. When no state of the row reaches the
        version, the document is ahead: compared with the row as it is now, in the one
        slice that holds the row's newest state of the window, so it counts once. With the
        other sources a row's time is its key's or its time column's: a newer version is
        ahead of the only state there is.
        """
        if version is None or version <= t:
            return t, values, False
        if self.source.name != "cell":
            return t, values, True
        now = self._row(key)
        if now is None:
            return None  # the row was deleted since the slice read it
        newest, current = now
        if newest == version:
            return newest, current, False
        if newest > version:
            at = self._row(key, before=version + 1)
            return (version, at[1], False) if at is not None and at[0] == version else None
        last = newest  # the row's newest time in the window: only its slice judges
        if newest >= self.settings.end_ms:  # the row changed again after the window
            in_window = self._row(key, before=self.settings.end_ms)
            last = in_window[0] if in_window is not None else None
        return (newest, current, True) if t == last else None

    def _row(self, key: bytes, before: int | None = None) -> tuple[int, dict] | None:
        """``(newest cell time, cells)`` of one row, with cells older than ``before`` only."""
        rows = list(self.reader.scan(row_start=key, row_stop=key + b"\x00", timestamp=before))
        return (rows[0][2], rows[0][1]) if rows else None

    def _compare(self, expected: dict, doc_id: str, source: dict, ahead: bool,
                 result: VerifySliceResult) -> bool:
        """Count the document as compared, and as differing or ahead; True if it differs."""
        result.compared += 1
        differences = field_differences(expected, source, both_only=self.lenient)
        if not differences:
            return False
        if ahead:
            result.ahead += 1
            if len(result.ahead_keys) < MAX_EXAMPLES:
                result.ahead_keys.append(doc_id)
        else:
            result.differing += 1
        for name, want, have in differences:
            if len(result.differences) >= MAX_EXAMPLES:
                break
            result.differences.append({"id": doc_id, "field": name,
                                       "expected": _show_value(want), "actual": _show_value(have)})
        return True


def open_verifier(settings: Settings, options: VerifyOptions) -> None:
    """Pool initializer of a verify: this process's SliceVerifier (``run.workerjob``)."""
    open_job(SliceVerifier, settings, options)


close_verifier = close_job  # pool finalizer
verify_slice = run_task  # what the pool runs for each slice
