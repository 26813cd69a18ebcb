"""Reading rows from HBase over its Thrift2 API, with the slice's time range on the server.

Thrift1 can only ask for cells older than a slice's end, so a cell-time slice reads every
older row and drops most of them in the client. Thrift2 takes a full time range, so a
slice ``[s, e)`` is read in two steps, both on the server:

1. a key-only scan with time range ``[s, e)`` finds the rows that have a cell in the
   slice. A row has a cell in ``[s, e)`` exactly when its newest cell older than ``e`` is
   at or after ``s``, which is the slice rule of the Thrift1 reader plus the slice job;
2. those rows are fetched whole with time range ``[0, e)``: each column's newest value
   older than ``e``, as the Thrift1 scan returns it. Per batch of keys step 1 found (a
   key span), either by multi-gets (few changed rows), or by one range scan over the
   span (many): a scanned row costs the server ~20x less than a got one, so when most
   rows of a span changed, scanning them all is cheaper. The switch is made per span
   from what step 1 found: the span is scanned until it has given ``DENSE_FACTOR`` rows
   per found key; if it ends before, it was dense and the scan gave every row; if not,
   the found keys not reached yet are got. The scan reads at most that many rows per
   found key (the rows it read are used, never read twice), and keeps only the found
   keys, so the rows are the same either way. After a sparse span the next 1, 2, 4 ...
   (up to 16) spans go to multi-gets without a scan, so sparse data scans little.

A scan without a lower bound is one plain time-ranged scan (there is nothing to skip).
The scan loop, its reopening after faults and its backoff are the base class's
(``hbase.base``). The client speaks the project's own subset of HBase's Thrift2 IDL
(``hbase2.thrift``, loaded in ``hbase.transport``).
"""

from __future__ import annotations

from collections.abc import Iterator

from thriftpy2.protocol.exc import TProtocolException
from thriftpy2.thrift import TApplicationException, TClient
from thriftpy2.transport import TTransportException

from ..errors import UnavailableError
from .base import PROBE_TIMEOUT_MS, RECOVERABLE, Row, ScanQuery, ThriftReader, describe
from .transport import connect_thrift2, hbase2

# Step 1 needs only the row keys: one empty-valued cell per row crosses the wire.
KEY_ONLY_FILTER = b"KeyOnlyFilter() AND FirstKeyOnlyFilter()"
# HBase's "all time" upper bound (Long.MAX_VALUE) for a scan with a start but no end.
MAX_STAMP = 2 ** 63 - 1

# A span is range-scanned while it yields at most this many rows per key step 1 found
# there: below ~1 changed row in 20 multi-gets are cheaper; 8 leaves a margin for the
# rows of other slices a range scan carries.
DENSE_FACTOR = 8
# After a span turned out sparse, the next spans skip the range scan: 1, 2, 4 ... up to
# this many, so sparse data wastes almost no scanned rows and dense data is found again.
MAX_SPANS_SKIPPED = 16

STRATEGY = ("Thrift2: key-only scan of cells in [start, end) on the server, then those rows "
            "with cells older than end, by multi-gets where few rows changed and by a range "
            "scan of the key span where many did")


def table_name(name: str) -> "hbase2.TTableName":
    """``ns:table`` or ``table`` (the default namespace) as a TTableName."""
    ns, sep, qualifier = name.partition(":")
    if not sep:
        return hbase2.TTableName(ns=None, qualifier=name.encode())
    return hbase2.TTableName(ns=ns.encode(), qualifier=qualifier.encode())


def thrift_columns(columns: list[bytes] | None) -> list | None:
    """``b"family"`` / ``b"family:qualifier"`` names (happybase's form) as TColumns."""
    if not columns:
        return None
    out = []
    for column in columns:
        family, sep, qualifier = column.partition(b":")
        # "family:" names the empty qualifier, as in Thrift1; a bare family means all of it.
        out.append(hbase2.TColumn(family=family, qualifier=qualifier if sep else None))
    return out


def time_range(min_stamp: int | None, max_stamp: int | None) -> "hbase2.TTimeRange | None":
    """The TTimeRange for cells in ``[min_stamp, max_stamp)``; None when unbounded."""
    if not min_stamp and max_stamp is None:
        return None
    return hbase2.TTimeRange(minStamp=min_stamp or 0,
                             maxStamp=MAX_STAMP if max_stamp is None else max_stamp)


def row_of(result) -> tuple[dict[bytes, bytes], int]:
    """``({b"family:qualifier": value}, newest cell timestamp)`` of one TResult."""
    values = {}
    newest = 0
    for cell in result.columnValues:
        values[cell.family + b":" + cell.qualifier] = cell.value
        if cell.timestamp is not None and cell.timestamp > newest:
            newest = cell.timestamp
    return values, newest


def describe_strategy(source) -> str:
    """One line for `plan`: how a slice of this time source is read over Thrift2."""
    if source.name == "cell":
        return f"cell timestamps ({STRATEGY})"
    return source.description


class Thrift2Reader(ThriftReader):
    """A Thrift2 connection to one table."""

    API = "HBase Thrift2 server"
    # TIllegalArgument is how getScannerRows reports a scanner id the server has dropped
    # (idle too long).
    RECOVERABLE = (*RECOVERABLE, hbase2.TIOError, hbase2.TIllegalArgument)
    SPEAKS, OTHER = "thrift2", "thrift1"

    def __init__(self, settings):
        self.keys_scanned = 0  # row keys the time-ranged key-only scans found (step 1)
        self.dense_factor = DENSE_FACTOR  # 0: multi-gets only (tests force either path)
        self.spans_scanned = 0  # key spans of step 2 read by a range scan, not multi-gets
        self._skipped, self._to_skip = 0, 0  # range scans left out after a sparse span
        super().__init__(settings)  # rows_read: whole rows fetched (step 2, or a plain scan)

    def _new_connection(self, timeout_ms: int) -> TClient:
        return connect_thrift2(self.settings, timeout_ms=timeout_ms)

    def _check_table(self) -> None:
        """Probe with a short timeout: a transport/protocol mismatch shows up as silence."""
        s = self.settings
        probe = self._new_connection(min(s.timeout_ms, PROBE_TIMEOUT_MS))
        try:
            exists = probe.tableExists(table_name(s.table))
        except TApplicationException as exc:
            if exc.type == TApplicationException.UNKNOWN_METHOD:
                raise self._wrong_api(exc) from None
            raise self._mismatch(exc) from None
        except (TimeoutError, TTransportException, TProtocolException, EOFError) as exc:
            raise self._mismatch(exc) from None
        except hbase2.TIOError as exc:
            raise UnavailableError(f"{self.where} could not check table {s.table!r}: "
                                   f"{describe(exc)}") from None
        finally:
            probe.close()
        if not exists:
            raise self._missing_table()

    def regions(self) -> list[dict]:
        """The table's regions in key order, in the shape of happybase's ``Table.regions()``."""
        if self._conn is None:
            self._open()
        locations = self._conn.getAllRegionLocations(self.table)
        out = [{"start_key": info.startKey or b"", "end_key": info.endKey or b"",
                "id": info.regionId, "replica_id": info.replicaId or 0,
                "server_name": loc.serverName.hostName.encode(), "port": loc.serverName.port}
               for loc in locations for info in (loc.regionInfo,)]
        return sorted((r for r in out if not r["replica_id"]), key=lambda r: r["start_key"])

    # Rows with a cell in [min_timestamp, timestamp), each with every column's newest value
    # older than timestamp. The filter (HBase filter language) applies to the rows as they
    # are fetched whole, as it would in a Thrift1 scan.

    def _skip(self, query: ScanQuery) -> bool:
        # An empty range; HBase would refuse it.
        return (query.min_timestamp is not None and query.timestamp is not None
                and query.min_timestamp >= query.timestamp)

    @staticmethod
    def _two_step(query: ScanQuery) -> bool:
        return bool(query.min_timestamp)  # a lower bound of 0 selects nothing less

    def _open_scanner(self, start: bytes, query: ScanQuery) -> int:
        if self._two_step(query):
            find_range = time_range(query.min_timestamp, query.timestamp)
            find_filter = KEY_ONLY_FILTER
        else:
            find_range, find_filter = time_range(None, query.timestamp), query.filter
        return self._conn.openScanner(self.table, hbase2.TScan(
            startRow=start or None, stopRow=query.row_stop or None,
            columns=thrift_columns(query.columns), caching=self.settings.batch_size,
            maxVersions=1, timeRange=find_range, filterString=find_filter,
            cacheBlocks=self.settings.cache_blocks))

    def _next_rows(self, scanner: int, query: ScanQuery) -> tuple[Iterator[Row], bytes | None]:
        found = self._conn.getScannerRows(scanner, self.settings.batch_size)
        if not found:
            return [], None
        self.keys_scanned += len(found)
        if self._two_step(query):
            results = self._fetch([r.row for r in found], query)
        else:
            results = found
            self.rows_read += len(found)
        # A row deleted between the two steps comes back empty. Rows are made as they are
        # used, not as a list first (see thrift1._rows_of).
        rows = ((r.row, *row_of(r)) for r in results if r is not None and r.columnValues)
        return rows, found[-1].row

    def _fetch(self, keys: list[bytes], query: ScanQuery) -> list:
        """Step 2 for one span of found keys: the rows whole, in key order."""
        scanned, rest = [], keys
        if self.dense_factor > 0 and self._to_skip == 0:
            scanned, rest = self._scan_span(keys, query)
            # Sparse (keys left): leave the next 1, 2, 4 ... spans to multi-gets.
            self._skipped = min(2 * self._skipped or 1, MAX_SPANS_SKIPPED) if rest else 0
            self._to_skip = self._skipped
        elif self._to_skip:
            self._to_skip -= 1
        if not rest:
            return scanned
        got = self._conn.getMultiple(self.table, [
            hbase2.TGet(row=key, columns=thrift_columns(query.columns),
                        timeRange=time_range(None, query.timestamp), maxVersions=1,
                        filterString=query.filter) for key in rest])
        self.rows_read += sum(1 for r in got if r is not None and r.columnValues)
        return scanned + got

    def _scan_span(self, keys: list[bytes], query: ScanQuery) -> tuple[list, list[bytes]]:
        """Range-scan ``[keys[0], keys[-1]]`` with cells older than the end, for at most
        ``dense_factor`` rows per key: the found rows it gave, and the keys it did not reach."""
        wanted, budget = set(keys), self.dense_factor * len(keys)
        out: list = []
        reached = b""
        scanner = self._conn.openScanner(self.table, hbase2.TScan(
            startRow=keys[0], stopRow=keys[-1] + b"\x00", columns=thrift_columns(query.columns),
            caching=min(self.settings.batch_size, budget), maxVersions=1,
            timeRange=time_range(None, query.timestamp), filterString=query.filter,
            cacheBlocks=self.settings.cache_blocks))
        try:
            read = 0
            while read < budget:
                batch = self._conn.getScannerRows(scanner, min(self.settings.batch_size,
                                                               budget - read))
                if not batch:
                    self.spans_scanned += 1
                    return out, []
                read += len(batch)
                self.rows_read += len(batch)
                out.extend(r for r in batch if r.row in wanted)
                reached = batch[-1].row
        finally:
            self._close_scanner(scanner)
        return out, [key for key in keys if key > reached]

    def _close_scanner_call(self, scanner: int) -> None:
        self._conn.closeScanner(scanner)
