"""Reading rows from HBase over its Thrift2 API, with the slice's time range on the server.

Thrift1 can only ask for cells older than a slice's end, so a cell-time slice reads every
older row and drops most of them in the client. Thrift2 takes a full time range, so a
slice ``[s, e)`` is read in two steps, both on the server:

1. a key-only scan with time range ``[s, e)`` finds the rows that have a cell in the
   slice. A row has a cell in ``[s, e)`` exactly when its newest cell older than ``e`` is
   at or after ``s``, which is the slice rule of the Thrift1 reader plus the slice job;
2. batched multi-gets with time range ``[0, e)`` fetch those rows whole: each column's
   newest value older than ``e``, as the Thrift1 scan returns it.

A scan without a lower bound is one plain time-ranged scan (there is nothing to skip).
The scanner handling matches the Thrift1 reader: the scanner is closed in ``finally``,
and after a lease expiry or a broken connection the scan is reopened just after the last
row key whose batch was handed out, with capped backoff.

The client speaks the project's own subset of HBase's Thrift2 IDL (``hbase2.thrift``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import thriftpy2
from thriftpy2.protocol import TBinaryProtocolFactory, TCompactProtocolFactory
from thriftpy2.protocol.exc import TProtocolException
from thriftpy2.rpc import make_client
from thriftpy2.thrift import TApplicationException, TClient, TException
from thriftpy2.transport import (TBufferedTransportFactory, TFramedTransportFactory,
                                 TTransportException)

from .errors import UnavailableError
from .hbase_reader import PROBE_TIMEOUT_MS, ThriftReader, _describe
from .settings import HBaseSettings


# The module name must end in "_thrift" and be unique, so that its structs pickle and do
# not clash with happybase's Thrift1 module.
hbase2 = thriftpy2.load(str(Path(__file__).with_name("hbase2.thrift")),
                        module_name="hbase2es_thrift2_thrift")

TRANSPORT_FACTORIES = {"buffered": TBufferedTransportFactory, "framed": TFramedTransportFactory}
PROTOCOL_FACTORIES = {"binary": TBinaryProtocolFactory, "compact": TCompactProtocolFactory}

# Step 1 needs only the row keys: one empty-valued cell per row crosses the wire.
KEY_ONLY_FILTER = b"KeyOnlyFilter() AND FirstKeyOnlyFilter()"
# HBase's "all time" upper bound (Long.MAX_VALUE) for a scan with a start but no end.
MAX_STAMP = 2 ** 63 - 1

# Errors after which reopening the scan from the last key can succeed. TIllegalArgument is
# how getScannerRows reports a scanner id the server has dropped (idle too long).
RECOVERABLE = (TTransportException, hbase2.TIOError, hbase2.TIllegalArgument, OSError,
               socket.timeout, EOFError)

STRATEGY = ("Thrift2: key-only scan of cells in [start, end) on the server, then multi-gets "
            "of those rows with cells older than end")


def connect_thrift2(host: str, port: int, *, timeout_ms: int, transport: str = "buffered",
                    protocol: str = "binary") -> TClient:
    """An open Thrift2 client; raw Thrift/socket errors propagate."""
    return make_client(hbase2.THBaseService, host, port, timeout=timeout_ms,
                       trans_factory=TRANSPORT_FACTORIES[transport](),
                       proto_factory=PROTOCOL_FACTORIES[protocol]())


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
    """A Thrift2 connection to one table, opened at once so a typo fails immediately."""

    API = "HBase Thrift2 server"
    RECOVERABLE = RECOVERABLE

    def __init__(self, settings: HBaseSettings):
        self.keys_scanned = 0  # row keys the time-ranged key-only scans found (step 1)
        super().__init__(settings)  # rows_read: whole rows fetched (step 2, or a plain scan)

    def _new_connection(self, timeout_ms: int) -> TClient:
        s = self.settings
        return connect_thrift2(s.host, s.port, timeout_ms=timeout_ms, transport=s.transport,
                               protocol=s.protocol)

    def _check_table(self) -> None:
        """Probe with a short timeout: a transport/protocol mismatch shows up as silence."""
        s = self.settings
        probe = self._new_connection(min(s.timeout_ms, PROBE_TIMEOUT_MS))
        try:
            exists = probe.tableExists(table_name(s.table))
        except TApplicationException as exc:
            if exc.type == TApplicationException.UNKNOWN_METHOD:
                raise UnavailableError(
                    f"{self.where} does not speak HBase's Thrift2 API ({_describe(exc)}): it "
                    f"is probably a Thrift1 server; set [hbase] api = \"thrift1\" or point "
                    f"[hbase] port at the Thrift2 server") from None
            raise self._mismatch(exc) from None
        except (TimeoutError, TTransportException, TProtocolException, EOFError) as exc:
            raise self._mismatch(exc) from None
        except hbase2.TIOError as exc:
            raise UnavailableError(f"{self.where} could not check table {s.table!r}: "
                                   f"{_describe(exc)}") from None
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

    def scan(self, *, row_start: bytes = b"", row_stop: bytes = b"", timestamp: int | None = None,
             min_timestamp: int | None = None, columns: list[bytes] | None = None,
             filter: bytes | None = None) -> Iterator[tuple[bytes, dict[bytes, bytes], int]]:
        """Yield ``(row key, {column: value}, newest cell timestamp)`` in key order.

        Rows with a cell in ``[min_timestamp, timestamp)``, each with every column's newest
        value older than ``timestamp``. ``filter`` (HBase filter language) applies to the
        rows as they are fetched whole, as it would in a Thrift1 scan.
        """
        if min_timestamp is not None and timestamp is not None and min_timestamp >= timestamp:
            return  # an empty range; HBase would refuse it
        two_step = bool(min_timestamp)  # a lower bound of 0 selects nothing less
        thrift_cols = thrift_columns(columns)
        fetch_range = time_range(None, timestamp)
        if two_step:
            find_range, find_filter = time_range(min_timestamp, timestamp), KEY_ONLY_FILTER
        else:
            find_range, find_filter = fetch_range, filter
        batch = self.settings.batch_size
        last: bytes | None = None
        failures = 0
        while True:
            start = row_start if last is None else last + b"\x00"  # the key right after last
            scanner = None
            try:
                if self._conn is None:
                    self._open()
                client = self._conn
                scanner = client.openScanner(self.table, hbase2.TScan(
                    startRow=start or None, stopRow=row_stop or None, columns=thrift_cols,
                    caching=batch, maxVersions=1, timeRange=find_range, filterString=find_filter))
                while True:
                    found = client.getScannerRows(scanner, batch)
                    if not found:
                        return
                    self.keys_scanned += len(found)
                    if two_step:
                        results = client.getMultiple(self.table, [
                            hbase2.TGet(row=r.row, columns=thrift_cols, timeRange=fetch_range,
                                        maxVersions=1, filterString=filter) for r in found])
                    else:
                        results = found
                    # A row deleted between the two steps comes back empty.
                    rows = [r for r in results if r is not None and r.columnValues]
                    self.rows_read += len(rows)
                    for result in rows:
                        values, newest = row_of(result)
                        yield result.row, values, newest
                    last = found[-1].row
                    failures = 0  # a batch went through: the next fault gets a fresh budget
            except RECOVERABLE as exc:
                scanner = None  # the server forgot it (lease) or the socket is gone
                failures += 1
                self._back_off(exc, failures, last)
            finally:
                if scanner is not None:
                    _close_scanner(self._conn, scanner)


def _close_scanner(client: TClient | None, scanner: int) -> None:
    try:
        client.closeScanner(scanner)
    except (TException, OSError, EOFError, AttributeError):
        pass  # an expired or lost scanner is already gone on the server
