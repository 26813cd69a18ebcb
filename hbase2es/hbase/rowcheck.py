"""Which rows of a batch of keys exist, and whether a column family does: the HBase
checks of ``reconcile`` and of ``[mapping] delete_when``.

A row exists when it has at least one cell (what HBase means by it). Reading as little as
possible:
- Thrift2: one ``getMultiple`` per batch with ``KeyOnlyFilter() AND FirstKeyOnlyFilter()``
  on each get: one empty cell per existing row crosses the wire, a missing row comes back
  empty;
- Thrift1 (happybase's API) gets take no filter, so ``getRowsWithColumns`` reads whole
  rows. When the caller names a column every exported row had (the column time source's
  column), that column is asked for first and only the keys it does not find are read
  whole: a row that lost it is not taken for gone.

Both calls are plain reads: after a dropped connection the batch is simply asked again,
with the readers' reconnect backoff.

Cost: each key is a point get on the region server, several times the cost of a row of a
sequential key-only scan (what ``verify`` reads); make bench's ``reconcile_vs_verify``
measures it.
"""

from __future__ import annotations

import sys

from ..errors import UnavailableError
from .base import RECONNECT_ATTEMPTS, RECONNECT_BACKOFF, ThriftReader, describe
from .transport import thrift2_idl

KEY_ONLY_FILTER = b"KeyOnlyFilter() AND FirstKeyOnlyFilter()"
MISSING_FAMILY = "NoSuchColumnFamilyException"


def _call(reader: ThriftReader, what: str, fn):
    """``fn(connection)`` on the reader's connection, reconnecting after faults."""
    retry = RECONNECT_BACKOFF.budget(attempts=RECONNECT_ATTEMPTS)
    while True:
        try:
            if reader._conn is None:
                reader._open()
            return fn(reader._conn)
        except reader.RECOVERABLE as exc:
            if not retry.failed():
                raise UnavailableError(f"{reader.API} {what} on {reader.settings.table!r} "
                                       f"failed {retry.failures} times in a row, last: "
                                       f"{describe(exc)}") from None
            retry.wait()
            reader.close()


def _is_thrift2(reader: ThriftReader) -> bool:
    """isinstance(reader, Thrift2Reader), without importing that module (which parses the
    Thrift2 IDL) in a run that reads Thrift1: no Thrift2Reader exists before it is loaded."""
    thrift2 = sys.modules.get(f"{__package__}.thrift2")
    return thrift2 is not None and isinstance(reader, thrift2.Thrift2Reader)


def existing_rows(reader: ThriftReader, keys: list[bytes],
                  probe_columns: list[bytes] | None = None) -> set[bytes]:
    """The keys of ``keys`` whose row exists in the reader's table."""
    if not keys:
        return set()
    # In key order: the region server reads neighbouring keys from the same blocks.
    keys = sorted(keys)
    table = reader.table
    if _is_thrift2(reader):
        hbase2 = thrift2_idl()
        gets = [hbase2.TGet(row=key, maxVersions=1, filterString=KEY_ONLY_FILTER)
                for key in keys]
        results = _call(reader, "row lookup", lambda conn: conn.getMultiple(table, gets))
        return {key for key, r in zip(keys, results) if r is not None and r.columnValues}

    def rows(wanted: list[bytes], columns: list[bytes] | None) -> set[bytes]:
        found = _call(reader, "row lookup", lambda conn: conn.client.getRowsWithColumns(
            table, wanted, columns, {}))
        return {r.row for r in found}

    found = rows(keys, probe_columns) if probe_columns else set()
    rest = [key for key in keys if key not in found]
    return found | rows(rest, None) if rest else found


def has_family(reader: ThriftReader, family: bytes) -> bool:
    """Whether the table has the column family ``family``."""
    table = reader.table
    if _is_thrift2(reader):
        hbase2 = thrift2_idl()
        # Thrift2 has no table descriptor call in our IDL: a get naming the family fails
        # with NoSuchColumnFamilyException when there is none (a TIOError, which the
        # reader would otherwise retry as a server fault).
        get = hbase2.TGet(row=b"\x00", columns=[hbase2.TColumn(family=family)], maxVersions=1)

        def probe(conn) -> bool:
            try:
                conn.getMultiple(table, [get])
            except hbase2.TIOError as exc:
                if MISSING_FAMILY in str(exc.message or ""):
                    return False
                raise
            return True

        return _call(reader, "family check", probe)
    names = _call(reader, "family check", lambda conn: conn.client.getColumnDescriptors(table))
    return family + b":" in names

