"""Guess the time source, the window and the slice length of a job from sampled rows. Pure.

- Row-key time (``detect_rowkey``): a fixed-width time in a known encoding, at a fixed
  offset after a constant prefix and an optional salt, that agrees with the row's newest
  cell time for nearly every sampled row. The layout found is checked by decoding every
  sampled key with the very time source an export would build from it.
- Rows (``estimate_rows``): each region's rows as counted from its start; a region whose
  count stopped early is extrapolated by how far into its key range the count got.
- Slice (``choose_slice``): a round length that gives about ``TARGET_ROWS`` per slice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import median

from .timecodec import NO_TIME, make_codec
from .timesource import RowKeyTimeSource, salt_keys

TARGET_ROWS = 100_000
DAY_MS = 86_400_000
# A key time within this of the row's newest cell time counts as the same time: a row is
# often written a little after the event its key names.
TOLERANCE_MS = DAY_MS
MATCH_SHARE = 0.9  # of sampled rows whose key time must agree
MAX_OFFSET = 64  # bytes of prefix and salt searched before the time
SHORTLIST_ROWS = 64  # rows a candidate must first agree on, before all rows are checked
PLAUSIBLE_MS = (631_152_000_000, 4_102_444_800_000)  # 1990 to 2100
# (encoding, width, reversed), most specific first: at one offset, milliseconds as text
# would also read as seconds from their first ten digits.
CANDIDATES = (("epoch_ms_be", 8, False), ("epoch_ms_be", 8, True),
              ("epoch_ms_text", 13, False), ("epoch_ms_text", 19, True),
              ("epoch_s_be", 8, False), ("epoch_s_be", 4, False), ("epoch_s_be", 4, True),
              ("epoch_s_text", 10, False), ("epoch_s_text", 19, True))
# Slice lengths proposed, shortest first.
ROUND_SLICES = ("1m", "5m", "15m", "30m", "1h", "2h", "3h", "6h", "12h", "1d", "7d", "30d")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": DAY_MS}


def _agrees(key_ms: int, cell_ms: int) -> bool:
    return (key_ms != NO_TIME and PLAUSIBLE_MS[0] <= key_ms < PLAUSIBLE_MS[1]
            and abs(key_ms - cell_ms) <= TOLERANCE_MS)


def setting_bytes(data: bytes) -> str:
    """Bytes as a [window.rowkey] prefix/separator value: text, or ``hex:`` when binary."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "hex:" + data.hex()
    if text.isprintable() and not text.startswith("hex:"):
        return text
    return "hex:" + data.hex()


@dataclass(frozen=True)
class RowKeyLayout:
    """A row-key time layout found in the sample, as ``[window.rowkey]`` keys."""

    encoding: str
    width: int
    reversed: bool
    prefix: bytes = b""
    salt_buckets: int = 0
    salt_format: str = "byte"
    salt_separator: bytes = b""
    agreeing: int = 0  # sampled rows whose key time agrees with their cell time
    rows: int = 0

    def settings(self) -> dict:
        """The ``[window.rowkey]`` table, as the settings read it."""
        out: dict = {"encoding": self.encoding, "width": self.width, "reversed": self.reversed,
                     "prefix": setting_bytes(self.prefix)}
        if self.salt_buckets:
            out.update(salt_buckets=self.salt_buckets, salt_format=self.salt_format,
                       salt_separator=setting_bytes(self.salt_separator))
        return out

    def source(self) -> RowKeyTimeSource:
        codec = make_codec(self.encoding, self.width, self.reversed)
        return RowKeyTimeSource(codec, self.prefix,
                                salt_keys(self.salt_buckets, self.salt_format),
                                self.salt_separator, self.salt_format)


def _common_prefix(items: Sequence[bytes]) -> bytes:
    first, last = min(items), max(items)
    n = 0
    while n < len(first) and first[n] == last[n]:
        n += 1
    return first[:n]


def _common_suffix(items: Sequence[bytes]) -> bytes:
    return _common_prefix([item[::-1] for item in items])[::-1]


def head_layout(heads: Sequence[bytes]) -> tuple[bytes, int, str, bytes] | None:
    """``(prefix, salt buckets, salt format, separator)`` of the key bytes before the time.

    Equal heads are a constant prefix. Otherwise the bytes that differ must be one salt:
    one byte (``byte``) or decimal digits (``decimal``), with buckets up to the largest
    salt seen. None otherwise.
    """
    distinct = sorted(set(heads))
    if len(distinct) == 1:
        return distinct[0], 0, "byte", b""
    prefix = _common_prefix(distinct)
    rests = [h[len(prefix):] for h in distinct]
    separator = _common_suffix(rests)
    if len(separator) >= min(len(r) for r in rests):  # heads of different lengths
        return None
    salts = {r[:len(r) - len(separator)] if separator else r for r in rests}
    width = len(next(iter(salts)))
    if any(len(s) != width for s in salts):
        return None
    if all(s.isdigit() for s in salts):
        # The salts differ in their first digit (equal digits went to the prefix), so the
        # largest has as many digits as len(str(buckets - 1)), the width the settings write.
        return prefix, max(int(s) for s in salts) + 1, "decimal", separator
    if width == 1:
        return prefix, max(s[0] for s in salts) + 1, "byte", separator
    return None


def _shortlist(rows: Sequence[tuple[bytes, int]]) -> list[tuple[int, tuple]]:
    """(offset, candidate) pairs on which nearly all of the first rows agree, in order."""
    head = rows[:SHORTLIST_ROWS]
    shortest = min(len(key) for key, _ in head)
    needed = MATCH_SHARE * len(head)
    out = []
    for offset in range(0, min(MAX_OFFSET, shortest) + 1):
        for candidate in CANDIDATES:
            encoding, width, reversed_ = candidate
            if offset + width > shortest:
                continue
            codec = make_codec(encoding, width, reversed_)
            agree = sum(_agrees(codec.decode(key[offset:offset + width]), cell)
                        for key, cell in head)
            if agree >= needed:
                out.append((offset, candidate))
    return out


def detect_rowkey(rows: Sequence[tuple[bytes, int]]) -> RowKeyLayout | None:
    """The row-key layout whose key times agree with the cell times of ``rows``
    (``(row key, newest cell ms)``), or None: then the cell time source it is."""
    rows = [(key, cell) for key, cell in rows if key]
    if not rows:
        return None
    for offset, (encoding, width, reversed_) in _shortlist(rows):
        heads = [key[:offset] for key, _ in rows if len(key) >= offset + width]
        found = head_layout(heads) if heads else None
        if found is None or found[1] > 256 and found[2] == "byte":
            continue
        prefix, buckets, salt_format, separator = found
        layout = RowKeyLayout(encoding, width, reversed_, prefix, buckets, salt_format,
                              separator)
        source = layout.source()
        agreeing = sum(_agrees(source.row_time(key, {}, cell), cell) for key, cell in rows)
        if agreeing >= MATCH_SHARE * len(rows):
            return RowKeyLayout(encoding, width, reversed_, prefix, buckets, salt_format,
                                separator, agreeing, len(rows))
    return None


# --- how many rows, and how long a slice ---------------------------------------------


@dataclass(frozen=True)
class RegionCount:
    """Rows counted from the start of one region; ``complete`` when the count reached its end."""

    start_key: bytes
    end_key: bytes
    counted: int
    complete: bool
    first_key: bytes = b""  # first and last key counted
    last_key: bytes = b""


@dataclass(frozen=True)
class RowEstimate:
    rows: int
    exact: bool  # every region was counted to its end
    lower_bound: bool  # some region could not be extrapolated: it holds at least this


def _position(key: bytes, skip: int) -> int:
    """A key as a number, from byte ``skip`` on, for interpolating within a key range."""
    return int.from_bytes((key[skip:] + bytes(8))[:8], "big")


def _extrapolated(region: RegionCount) -> int | None:
    """Rows of a region whose count stopped early, from the share of its key range
    counted; None when an open end (first or last region) leaves the range unknown."""
    if not region.end_key or not region.counted:
        return None
    start = region.start_key or region.first_key
    skip = len(_common_prefix([start, region.end_key, region.last_key]))
    low, high = _position(start, skip), _position(region.end_key, skip)
    done = _position(region.last_key, skip) - low
    if high <= low or done <= 0:
        return None
    return max(region.counted, round(region.counted * (high - low) / done))


def estimate_rows(regions: Iterable[RegionCount]) -> RowEstimate:
    """The table's rows: counts of complete regions, extrapolations of the others
    (the median of the extrapolated ones for a region with an open end)."""
    regions = list(regions)
    total = sum(r.counted for r in regions if r.complete)
    partial = [r for r in regions if not r.complete]
    guesses = {id(r): _extrapolated(r) for r in partial}
    known = [g for g in guesses.values() if g is not None]
    fallback = median(known) if known else None
    lower_bound = False
    for r in partial:
        guess = guesses[id(r)] if guesses[id(r)] is not None else fallback
        if guess is None:
            guess, lower_bound = r.counted, True
        total += max(r.counted, int(guess))
    return RowEstimate(total, exact=not partial, lower_bound=lower_bound)


def slice_ms(text: str) -> int:
    return int(text[:-1]) * _UNIT_MS[text[-1]]


def choose_slice(window_ms: int, rows: int, target: int = TARGET_ROWS) -> str:
    """The longest round slice length that holds about ``target`` rows or fewer; for a
    window with fewer rows, the shortest round length that covers it in one slice."""
    if rows <= target:
        return next((s for s in ROUND_SLICES if slice_ms(s) >= window_ms), ROUND_SLICES[-1])
    wanted = window_ms * target / rows
    fitting = [s for s in ROUND_SLICES if slice_ms(s) <= wanted]
    return fitting[-1] if fitting else ROUND_SLICES[0]


def aligned_window(first_ms: int, last_ms: int, slice_text: str) -> tuple[int, int]:
    """``[start, end)`` holding ``first_ms`` and ``last_ms``, on whole slices (UTC days
    for slices of a day or more, so that daily index names start with a slice)."""
    step = min(slice_ms(slice_text), DAY_MS)
    start = first_ms // step * step
    end = -(-(last_ms + 1) // step) * step
    return start, end
