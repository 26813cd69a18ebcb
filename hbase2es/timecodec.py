"""Times held in row keys: the encodings a row-key time source reads and writes.

Pure. A codec turns an epoch-ms time into the bytes a key holds and back, for
fixed-width encodings that sort as bytes in time order: big-endian unsigned numbers,
zero-padded decimal text, or a strftime pattern whose fields run from the year down.
``bounds`` turns a slice into key bytes: "the smallest stored value whose time
is at or after the boundary", so coarse encodings (seconds, days) stay half-open.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

NO_TIME = -1
"""Row time of a row whose key or column does not hold a time: outside every window."""

LONG_MAX = 2**63 - 1
ENCODINGS = ("epoch_ms_be", "epoch_s_be", "epoch_ms_text", "epoch_s_text", "strftime:<pattern>")


class TimeSourceError(ValueError):
    """A bad ``[window.rowkey]`` / ``[window.column]`` setting; str() names the key."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key} {message}")
        self.key = key





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
