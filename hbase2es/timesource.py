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
from datetime import date, datetime, timedelta, timezone

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

NO_TIME = -1
"""Row time of a row whose key or column does not hold a time: outside every window."""

LONG_MAX = 2**63 - 1
ENCODINGS = ("epoch_ms_be", "epoch_s_be", "epoch_ms_text", "epoch_s_text", "strftime:<pattern>")
SALT_FORMATS = ("byte", "decimal")
MAX_BYTE_SALT_BUCKETS = 256


class TimeSourceError(ValueError):
    """A bad ``[window.rowkey]`` / ``[window.column]`` setting; str() names the key."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key} {message}")
        self.key = key


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


# ----------------------------------------------------------------------------- codecs


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class NumberCodec:
    """Epoch seconds or milliseconds as big-endian unsigned bytes or zero-padded digits.

    ``reversed`` stores ``base - value`` so that newer rows sort first; ``base`` is the
    largest signed Java number of the width (Long.MAX_VALUE for 8 bytes,
    Integer.MAX_VALUE for 4), and for text Long.MAX_VALUE when it fits in the width
    (19 digits), else the all-nines number of the width.
    """

    def __init__(self, encoding: str, width: int, reversed_: bool):
        self.encoding = encoding
        self.unit_ms = 1000 if encoding.startswith("epoch_s_") else 1
        self.text = encoding.endswith("_text")
        self.width = width
        self.reversed = reversed_
        self.max_stored = 10**width - 1 if self.text else 256**width - 1
        self.base = min(LONG_MAX, self.max_stored) if self.text else 2 ** (8 * width - 1) - 1

    def describe(self) -> str:
        kind = f"{self.width} digits" if self.text else f"{self.width} bytes"
        return f"{self.encoding} ({kind}{', reversed' if self.reversed else ''})"

    def _pack(self, stored: int) -> bytes:
        if self.text:
            return b"%0*d" % (self.width, stored)
        return stored.to_bytes(self.width, "big")

    def encode(self, ms: int) -> bytes:
        """The stored form of a time (truncated to the unit)."""
        value = ms // self.unit_ms
        stored = self.base - value if self.reversed else value
        if not 0 <= stored <= self.max_stored:
            raise ValueError(f"time {ms} ms does not fit {self.describe()}")
        return self._pack(stored)

    def decode(self, data: bytes) -> int:
        """The time (epoch ms) stored in ``data``, or NO_TIME when it holds none."""
        if len(data) != self.width:
            return NO_TIME
        if self.text:
            if not data.isdigit():
                return NO_TIME
            stored = int(data)
        else:
            stored = int.from_bytes(data, "big")
        value = self.base - stored if self.reversed else stored
        return value * self.unit_ms if value >= 0 else NO_TIME

    def bounds(self, start_ms: int, end_ms: int) -> tuple[bytes, bytes | None] | None:
        """Stored bytes ``[lo, hi)`` of the times in ``[start_ms, end_ms)``.

        ``hi`` None means past every value the width can hold; None means no stored value
        has a time in the range (e.g. a 500 ms slice between two whole seconds).
        """
        # value v has time v*unit; v*unit >= t  <=>  v >= ceil(t / unit)
        first, stop = _ceil_div(start_ms, self.unit_ms), _ceil_div(end_ms, self.unit_ms)
        if first >= stop:
            return None
        if self.reversed:
            # first <= v < stop  <=>  base-stop < base-v <= base-first
            first, stop = max(self.base - stop + 1, 0), self.base - first + 1
            if stop <= 0:
                return None
        if first > self.max_stored:
            return None
        return self._pack(first), (None if stop > self.max_stored else self._pack(stop))


# strftime fields that sort in time order when they run from the year down.
_FIELD_WIDTH = {"Y": 4, "m": 2, "d": 2, "j": 3, "H": 2, "M": 2, "S": 2, "f": 6}
_FIELD_ORDERS = ("YmdHMSf", "YjHMSf")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)
_LAST_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc) - _EPOCH) // _ONE_MS


class StrftimeCodec:
    """A UTC wall-clock time written with a fixed-width strftime pattern.

    Only fields that keep byte order equal to time order are accepted: ``%Y`` then, in
    this order and without gaps, ``%m %d`` (or ``%j``) ``%H %M %S %f``; any literal text
    may sit between them. The time of a key is the start of the period it names (a key
    of ``%Y%m%d%H`` is the start of that hour).
    """

    reversed = False

    def __init__(self, pattern: str, key: str):
        self.pattern = pattern
        self.encoding = f"strftime:{pattern}"
        self.tokens: list[tuple[str, bytes]] = []  # ("lit", text) or (field, b"")
        literal = []
        i = 0
        while i < len(pattern):
            ch = pattern[i]
            if ch != "%":
                literal.append(ch)
                i += 1
                continue
            code = pattern[i + 1:i + 2]
            if code == "%":
                literal.append("%")
            elif code in _FIELD_WIDTH:
                if literal:
                    self.tokens.append(("lit", "".join(literal).encode()))
                    literal = []
                self.tokens.append((code, b""))
            else:
                raise TimeSourceError(key, f"pattern {pattern!r}: %{code} is not supported; use "
                                           "%Y %m %d %j %H %M %S %f (and %% for a percent sign)")
            i += 2
        if literal:
            self.tokens.append(("lit", "".join(literal).encode()))
        order = "".join(kind for kind, _ in self.tokens if kind != "lit")
        if not order or not any(o.startswith(order) for o in _FIELD_ORDERS):
            raise TimeSourceError(
                key, f"pattern {pattern!r} does not sort in time order: its fields must run "
                     "from %Y down without gaps, e.g. %Y%m%d%H%M%S or %Y-%m-%dT%H:%M")
        self.finest = order[-1]
        self.width = sum(len(text) if kind == "lit" else _FIELD_WIDTH[kind]
                         for kind, text in self.tokens)

    def describe(self) -> str:
        return f"{self.encoding} ({self.width} bytes, UTC)"

    def _format(self, dt: datetime) -> bytes:
        fields = {"Y": dt.year, "m": dt.month, "d": dt.day, "j": dt.timetuple().tm_yday,
                  "H": dt.hour, "M": dt.minute, "S": dt.second, "f": dt.microsecond}
        return b"".join(text if kind == "lit" else b"%0*d" % (_FIELD_WIDTH[kind], fields[kind])
                        for kind, text in self.tokens)

    def encode(self, ms: int) -> bytes:
        return self._format(_EPOCH + timedelta(milliseconds=ms))

    def decode(self, data: bytes) -> int:
        if len(data) != self.width:
            return NO_TIME
        fields = {"m": 1, "d": 1, "H": 0, "M": 0, "S": 0, "f": 0}
        offset = 0
        for kind, text in self.tokens:
            if kind == "lit":
                if data[offset:offset + len(text)] != text:
                    return NO_TIME
                offset += len(text)
                continue
            width = _FIELD_WIDTH[kind]
            digits = data[offset:offset + width]
            if not digits.isdigit():
                return NO_TIME
            fields[kind] = int(digits)
            offset += width
        try:
            if "j" in fields:
                day = date(fields["Y"], 1, 1) + timedelta(days=fields["j"] - 1)
                if fields["j"] < 1 or day.year != fields["Y"]:
                    return NO_TIME
                month, mday = day.month, day.day
            else:
                month, mday = fields["m"], fields["d"]
            dt = datetime(fields["Y"], month, mday, fields["H"], fields["M"], fields["S"],
                          fields["f"], tzinfo=timezone.utc)
        except (ValueError, OverflowError):
            return NO_TIME
        return (dt - _EPOCH) // _ONE_MS

    def _ceil(self, ms: int) -> int | None:
        """The first time at or after ``ms`` that a key can name; None past year 9999."""
        floor = self.decode(self.encode(ms))
        if floor == ms:
            return ms
        dt = _EPOCH + timedelta(milliseconds=floor)
        step = self.finest
        try:
            if step == "Y":
                dt = dt.replace(year=dt.year + 1)
            elif step == "m":
                dt = dt.replace(year=dt.year + dt.month // 12, month=dt.month % 12 + 1)
            else:
                dt += {"d": timedelta(days=1), "j": timedelta(days=1), "H": timedelta(hours=1),
                       "M": timedelta(minutes=1), "S": timedelta(seconds=1)}[step]
        except (ValueError, OverflowError):
            return None
        return (dt - _EPOCH) // _ONE_MS

    def bounds(self, start_ms: int, end_ms: int) -> tuple[bytes, bytes | None] | None:
        first = self._ceil(start_ms)
        if first is None:
            return None
        stop = self._ceil(end_ms) if end_ms <= _LAST_MS else None
        if stop is not None and first >= stop:
            return None
        return self.encode(first), (None if stop is None else self.encode(stop))


_DEFAULT_WIDTH = {"epoch_ms_be": 8, "epoch_s_be": 4, "epoch_ms_text": 13, "epoch_s_text": 10}
_ALLOWED_WIDTH = {"epoch_ms_be": (8,), "epoch_s_be": (4, 8), "epoch_ms_text": range(13, 20),
                  "epoch_s_text": range(10, 20)}


def make_codec(encoding: str, width: int = 0, reversed_: bool = False, *,
               section: str = "window.rowkey") -> NumberCodec | StrftimeCodec:
    """The codec for an ``encoding`` setting; ``width`` 0 means the encoding's default."""
    if encoding.startswith("strftime:"):
        codec = StrftimeCodec(encoding[len("strftime:"):], f"{section}.encoding")
        if reversed_:
            raise TimeSourceError(f"{section}.reversed", "works only with the epoch_* encodings")
        if width not in (0, codec.width):
            raise TimeSourceError(f"{section}.width", f"must be {codec.width} (the width of "
                                  f"{encoding!r}) or left out, got {width}")
        return codec
    if encoding not in _DEFAULT_WIDTH:
        raise TimeSourceError(f"{section}.encoding",
                              f"must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    allowed = _ALLOWED_WIDTH[encoding]
    if width == 0:
        # Long.MAX_VALUE - time written as text always has 19 digits.
        width = 19 if reversed_ and encoding.endswith("_text") else _DEFAULT_WIDTH[encoding]
    if width not in allowed:
        shown = " or ".join(map(str, allowed)) if len(allowed) < 3 \
            else f"{allowed[0]} to {allowed[-1]}"
        raise TimeSourceError(f"{section}.width", f"of {encoding} must be {shown}, got {width}")
    return NumberCodec(encoding, width, reversed_)


def parse_bytes(text: str, key: str) -> bytes:
    """A prefix/separator setting: UTF-8 text, or hex digits after ``hex:``."""
    if text.startswith("hex:"):
        try:
            return bytes.fromhex(text[4:])
        except ValueError:
            raise TimeSourceError(key, f"must be hex digits after 'hex:', got {text!r}") from None
    return text.encode()


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
