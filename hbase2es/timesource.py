"""How a slice of time becomes HBase scans, and how a row's time is read back.

Pure: the slice job asks a time source for the scans of a slice and, for each row the
scans return, the row's time; a row belongs to slice ``[start, end)`` when that time
falls inside it. Three sources:

- ``cell``: the newest cell timestamp (Thrift1 bounds the end on the server, the start
  in the client, so every slice reads all rows older than its end);
- ``rowkey``: the time is encoded in the row key, after an optional constant prefix and
  salt; a slice becomes one key range per salt bucket, so HBase reads only its rows;
- ``column``: the time is the value of one column; each slice scans with a filter that
  applies both bounds on the server.

Times held in keys or cells are fixed-width and sort as bytes in time order (big-endian
unsigned numbers, zero-padded decimal text, or a strftime pattern whose fields run from
the year down). A slice boundary is turned into bytes as "the smallest stored value whose
time is at or after the boundary", so coarse encodings (seconds, days) stay half-open.
"""

from __future__ import annotations

from dataclasses import dataclass

from .timecodec import ENCODINGS, NO_TIME, TimeSourceError, make_codec, parse_bytes
from .timewindow import Slice

__all__ = [
    "ENCODINGS",
    "NO_TIME",
    "CellTimeSource",
    "ColumnTimeSource",
    "RowKeyTimeSource",
    "ScanSpec",
    "TimeSourceError",
    "make_codec",
    "show_bytes",
    "time_source",
]

SALT_FORMATS = ("byte", "decimal")
MAX_BYTE_SALT_BUCKETS = 256


@dataclass(frozen=True)
class ScanSpec:
    """Arguments of one HBase scan: a key range and the Thrift1 upper time bound."""

    row_start: bytes = b""
    row_stop: bytes = b""  # exclusive; empty means to the end of the table
    timestamp: int | None = None  # cells strictly older than this
    # Cells at or after this. Thrift1 cannot send it (the slice job filters rows in the
    # client instead); a reader that can (Thrift2's time range) applies it on the server.
    min_timestamp: int | None = None
    filter: bytes | None = None  # HBase filter language

    def scan_kwargs(self) -> dict:
        """Keyword arguments for a reader's ``scan``."""
        return {"row_start": self.row_start, "row_stop": self.row_stop,
                "timestamp": self.timestamp, "min_timestamp": self.min_timestamp,
                "filter": self.filter}


def show_bytes(data: bytes) -> str:
    """Bytes as HBase shows them (Bytes.toStringBinary): printable ASCII as is, others \\xNN."""
    return "".join(chr(b) if 32 <= b < 127 and b != 0x5C else f"\\x{b:02X}" for b in data)


def _after(head: bytes) -> bytes:
    """The first key after every key starting with ``head`` (b"" = end of table)."""
    stripped = head.rstrip(b"\xff")
    if not stripped:
        return b""
    return stripped[:-1] + bytes([stripped[-1] + 1])


# ----------------------------------------------------------------------------- sources


class CellTimeSource:
    """Row time = the newest cell timestamp older than the slice end.

    Thrift1 takes only an upper bound (``timestamp=end``: cells with ts < end), so the
    server returns, per row, each column's newest value before the end; the lower bound
    is applied to the row's newest cell here. A row updated in a later slice is thus
    exported by that slice too, with its newer state and a higher version.
    """

    name = "cell"
    description = "cell timestamps (Thrift1: end bound on the server, start bound in the client)"

    def scans(self, slice_: Slice) -> list[ScanSpec]:
        return [ScanSpec(timestamp=slice_.end_ms, min_timestamp=slice_.start_ms)]

    @staticmethod
    def row_time(row_key: bytes, values: dict[bytes, bytes], newest_cell_ms: int) -> int:
        return newest_cell_ms


class RowKeyTimeSource:
    """Row time = the time encoded in the row key: ``prefix + salt + separator + time + ...``.

    A slice ``[s, e)`` becomes one key range per salt bucket,
    ``[head + enc(s), head + enc(e))`` with ``head = prefix + salt + separator``; for
    reversed keys ``[head + enc(e - 1 unit), head + enc(s - 1 unit))``. Every key of a
    range starts with its head, so rows of other prefixes are never read. No cell-time
    bound is sent: a document holds each column's newest value.
    """

    name = "rowkey"

    def __init__(self, codec, prefix: bytes = b"", salts: tuple[bytes, ...] = (),
                 separator: bytes = b"", salt_format: str = "byte"):
        self.codec = codec
        self.prefix = prefix
        self.salts = tuple(salts)
        self.separator = separator if salts else b""
        self.salt_width = len(salts[0]) if salts else 0
        self._salt_set = frozenset(self.salts)
        self.heads = tuple(prefix + s + self.separator for s in salts) if salts else (prefix,)
        parts = [f"row key time {codec.describe()}"]
        if prefix:
            parts.append(f"after prefix '{show_bytes(prefix)}'")
        if salts:
            sep = f" + '{show_bytes(self.separator)}'" if self.separator else ""
            parts.append(f"{'and' if prefix else 'after'} {len(salts)} salt buckets "
                         f"({salt_format}){sep}")
        self.description = " ".join(parts) + "; one key range per salt bucket"

    @classmethod
    def from_settings(cls, rowkey) -> "RowKeyTimeSource":
        """Build from ``[window.rowkey]`` (settings.RowKeySettings); raises TimeSourceError."""
        s = "window.rowkey"
        codec = make_codec(rowkey.encoding, rowkey.width, rowkey.reversed, section=s)
        prefix = parse_bytes(rowkey.prefix, f"{s}.prefix")
        separator = parse_bytes(rowkey.salt_separator, f"{s}.salt_separator")
        buckets = rowkey.salt_buckets
        if buckets < 0:
            raise TimeSourceError(f"{s}.salt_buckets",
                                  f"must be 0 (no salt) or more, got {buckets}")
        if rowkey.salt_format not in SALT_FORMATS:
            raise TimeSourceError(f"{s}.salt_format", f"must be one of {', '.join(SALT_FORMATS)}, "
                                  f"got {rowkey.salt_format!r}")
        if separator and not buckets:
            raise TimeSourceError(f"{s}.salt_separator", "needs window.rowkey.salt_buckets; a "
                                  "separator before the time belongs at the end of the prefix")
        return cls(codec, prefix, salt_keys(buckets, rowkey.salt_format), separator,
                   rowkey.salt_format)

    def key_ranges(self, slice_: Slice) -> list[tuple[bytes, bytes]]:
        """The key ranges ``[start, stop)`` of a slice, in key order; b"" stop = end of table."""
        bounds = self.codec.bounds(slice_.start_ms, slice_.end_ms)
        if bounds is None:
            return []
        lo, hi = bounds
        return [(head + lo, head + hi if hi is not None else _after(head)) for head in self.heads]

    def scans(self, slice_: Slice) -> list[ScanSpec]:
        return [ScanSpec(row_start=a, row_stop=b) for a, b in self.key_ranges(slice_)]

    def row_time(self, row_key: bytes, values: dict[bytes, bytes], newest_cell_ms: int) -> int:
        """The time in the key; NO_TIME for a key of another layout (never raises)."""
        prefix = self.prefix
        if not row_key.startswith(prefix):
            return NO_TIME
        offset = len(prefix)
        if self.salt_width:
            if row_key[offset:offset + self.salt_width] not in self._salt_set:
                return NO_TIME
            offset += self.salt_width
            if not row_key.startswith(self.separator, offset):
                return NO_TIME
            offset += len(self.separator)
        return self.codec.decode(row_key[offset:offset + self.codec.width])


def salt_keys(buckets: int, salt_format: str) -> tuple[bytes, ...]:
    """The salt of each bucket in key order: one byte 0..N-1, or zero-padded decimal text."""
    if buckets <= 0:
        return ()
    if salt_format == "byte":
        if buckets > MAX_BYTE_SALT_BUCKETS:
            raise TimeSourceError("window.rowkey.salt_buckets",
                                  f"must be at most {MAX_BYTE_SALT_BUCKETS} with "
                                  f"salt_format = \"byte\", got {buckets}")
        return tuple(bytes([i]) for i in range(buckets))
    digits = len(str(buckets - 1))
    return tuple(b"%0*d" % (digits, i) for i in range(buckets))


def _quote(data: bytes) -> bytes:
    """A filter-language string literal: single quotes, inner quotes doubled, bytes raw."""
    return b"'" + data.replace(b"'", b"''") + b"'"


class ColumnTimeSource:
    """Row time = the value of one column, both bounds applied by the server.

    Each slice scans the whole table with two SingleColumnValueFilters (binary
    comparators, which compare bytes, i.e. time order for these encodings) on the
    column's newest value; rows lacking the column are dropped by the server
    (filterIfMissing). No cell-time bound is sent.
    """

    name = "column"

    def __init__(self, column: bytes, codec):
        family, _, qualifier = column.partition(b":")
        self.column = column
        self.family, self.qualifier = family, qualifier
        self.codec = codec
        self.description = (f"column {show_bytes(column)} holds the time, {codec.describe()}; "
                            "both bounds filtered on the server")

    @classmethod
    def from_settings(cls, column) -> "ColumnTimeSource":
        """Build from ``[window.column]`` (settings.ColumnSettings); raises TimeSourceError."""
        s = "window.column"
        family, sep, qualifier = column.column.partition(":")
        if not column.column:
            raise TimeSourceError(f"{s}.column", "is required with window.time_source = "
                                  "\"column\": give \"family:qualifier\"")
        if not sep or not family:
            raise TimeSourceError(f"{s}.column", f"must be \"family:qualifier\", "
                                  f"got {column.column!r}")
        codec = make_codec(column.encoding, column.width, column.reversed, section=s)
        return cls(column.column.encode(), codec)

    def filter_for(self, slice_: Slice) -> bytes | None:
        """The filter string of a slice; None when no stored value can be in it."""
        bounds = self.codec.bounds(slice_.start_ms, slice_.end_ms)
        if bounds is None:
            return None
        lo, hi = bounds
        fam, qual = _quote(self.family), _quote(self.qualifier)
        parts = [b"SingleColumnValueFilter(%s, %s, >=, %s, true, true)"
                 % (fam, qual, _quote(b"binary:" + lo))]
        if hi is not None:
            parts.append(b"SingleColumnValueFilter(%s, %s, <, %s, true, true)"
                         % (fam, qual, _quote(b"binary:" + hi)))
        return b" AND ".join(parts)

    def scans(self, slice_: Slice) -> list[ScanSpec]:
        text = self.filter_for(slice_)
        return [] if text is None else [ScanSpec(filter=text)]

    def row_time(self, row_key: bytes, values: dict[bytes, bytes], newest_cell_ms: int) -> int:
        data = values.get(self.column)
        return NO_TIME if data is None else self.codec.decode(data)


TimeSource = CellTimeSource | RowKeyTimeSource | ColumnTimeSource


def time_source(window) -> TimeSource:
    """The time source ``[window] time_source`` names, built from its sub-table.

    ``window`` is the run's WindowSettings (a plain "cell" is accepted too). Raises
    TimeSourceError naming the bad ``window.*`` key.
    """
    name = window if isinstance(window, str) else window.time_source
    if name == "cell":
        return CellTimeSource()
    if name == "rowkey" and not isinstance(window, str):
        return RowKeyTimeSource.from_settings(window.rowkey)
    if name == "column" and not isinstance(window, str):
        return ColumnTimeSource.from_settings(window.column)
    raise TimeSourceError("window.time_source",
                          f"must be one of cell, rowkey, column, got {name!r}")
