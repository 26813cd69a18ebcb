"""Parse times, durations and zones, and cut a time window into half-open slices.

All times are integer epoch milliseconds (UTC), the unit HBase uses for cell
timestamps. A window ``[start, end)`` includes ``start`` and excludes ``end``;
so does every slice, which lets consecutive slices share a boundary without
reading any row twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "MAX_SLICES",
    "Slice",
    "TimeError",
    "format_duration",
    "format_time",
    "parse_duration",
    "parse_time",
    "parse_tz",
    "split_window",
]

MAX_SLICES = 1_000_000
"""More slices than this is almost surely a typo in the slice size."""

_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)
# Largest time format_time can show: 9999-12-31T23:59:59.999Z.
_MAX_MS = 253_402_300_799_999
# Plain digits below this (1973-03-03 as ms) are far more likely epoch seconds.
_SECONDS_LOOKALIKE = 10**11

_UNIT_MS = {
    "ms": 1,
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}
# "ms" must be tried before "m", or "500ms" would read as 500 minutes + "s".
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_OFFSET = re.compile(r"([+-])(\d{2})(?::?(\d{2}))?")
_RELATIVE = re.compile(r"now\s*(?:([+-])\s*(.*))?", re.IGNORECASE | re.DOTALL)


class TimeError(ValueError):
    """A time, duration or zone that cannot be parsed; str() is a one-line message for users."""


def parse_tz(name: str) -> tzinfo:
    """Return the zone for "UTC", an IANA name ("Europe/Berlin") or an offset ("+02:00", "Z")."""
    text = name.strip()
    if text.upper() in ("UTC", "Z"):
        return timezone.utc
    match = _OFFSET.fullmatch(text)
    if match:
        return _fixed_offset(name, *match.groups())
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError covers keys zoneinfo refuses outright, such as "" or "../x".
        raise TimeError(
            f"unknown time zone {name!r}: use UTC, an IANA name like Europe/Berlin, "
            "or an offset like +02:00"
        ) from None


def _fixed_offset(name: str, sign: str, hours: str, minutes: str | None) -> timezone:
    hh, mm = int(hours), int(minutes or 0)
    if hh > 23 or mm > 59:
        raise TimeError(f"invalid UTC offset {name!r}: hours must be 00-23 and minutes 00-59")
    offset = timedelta(hours=hh, minutes=mm)
    if not offset:
        return timezone.utc
    return timezone(-offset if sign == "-" else offset)


def parse_duration(text: str) -> int:
    """Return a positive duration in ms: "500ms", "30s", "15m", "1h", "1d", "2w", "1h30m"."""
    compact = text.strip()
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(n + unit for n, unit in parts) != compact:
        raise TimeError(
            f"invalid duration {text!r}: expected a number with a unit "
            "(ms, s, m, h, d, w), e.g. 15m or 1h30m"
        )
    total = sum(int(n) * _UNIT_MS[unit] for n, unit in parts)
    if total <= 0:
        raise TimeError(f"invalid duration {text!r}: must be greater than zero")
    return total


def format_duration(ms: int) -> str:
    """Show milliseconds in the form parse_duration reads back, e.g. 5400000 -> "1h30m"."""
    if ms <= 0:
        return f"{ms}ms"
    parts = []
    rest = ms
    for unit in ("w", "d", "h", "m", "s", "ms"):
        count, rest = divmod(rest, _UNIT_MS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_time(text: str, *, tz: tzinfo, now_ms: int) -> int:
    """Return epoch milliseconds for an ISO-8601 time or date, epoch ms, or "now[+-duration]".

    ISO times without an offset, and plain dates (midnight), are read in ``tz``.
    A wall-clock time that occurs twice when clocks go back means the earlier
    instant; one skipped when clocks go forward is an error.
    """
    stripped = text.strip()
    if not stripped:
        raise TimeError("empty time: expected an ISO-8601 time, epoch milliseconds, or now-15m")
    if stripped.isascii() and stripped.isdigit():
        ms = _parse_epoch_ms(text, stripped)
    elif stripped[:3].lower() == "now":
        ms = _parse_relative(text, stripped, now_ms)
    else:
        ms = _parse_iso(text, stripped, tz)
    return _check_range(text, ms)


def _parse_epoch_ms(text: str, digits: str) -> int:
    ms = int(digits)
    # 0 means the same instant in seconds and milliseconds, so it is not ambiguous.
    if 0 < ms < _SECONDS_LOOKALIKE:
        raise TimeError(
            f"time {text!r} looks like epoch seconds, but epoch times must be in "
            f"milliseconds: append 000 ({digits}000)"
        )
    return ms


def _parse_relative(text: str, stripped: str, now_ms: int) -> int:
    match = _RELATIVE.fullmatch(stripped)
    if not match:
        raise TimeError(f"invalid relative time {text!r}: expected now, now-15m or now+1h")
    sign, amount = match.groups()
    if sign is None:
        return now_ms
    try:
        delta = parse_duration(amount)
    except TimeError:
        raise TimeError(
            f"invalid relative time {text!r}: {amount.strip()!r} is not a duration "
            "like 15m or 1h30m"
        ) from None
    return now_ms - delta if sign == "-" else now_ms + delta


def _parse_iso(text: str, stripped: str, tz: tzinfo) -> int:
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        raise TimeError(
            f"invalid time {text!r}: expected ISO-8601 like 2026-11-01T10:00:00Z or "
            "2026-11-01, epoch milliseconds, or now-15m"
        ) from None
    if parsed.tzinfo is None:
        if not _is_date_only(stripped):
            _reject_skipped_wall_time(text, parsed, tz)
        # For a date whose midnight was skipped, fold=0 lands on the first instant of that day.
        parsed = parsed.replace(tzinfo=tz)
    return (parsed - _EPOCH_UTC) // _ONE_MS


def _is_date_only(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _reject_skipped_wall_time(text: str, wall: datetime, tz: tzinfo) -> None:
    # A skipped wall time does not survive the round trip through UTC.
    back = wall.replace(tzinfo=tz).astimezone(timezone.utc).astimezone(tz)
    if back.replace(tzinfo=None) != wall:
        raise TimeError(
            f"time {text!r} does not exist in {tz} (clocks skip it for daylight saving): "
            "give an explicit offset such as +01:00"
        )


def _check_range(text: str, ms: int) -> int:
    if ms < 0:
        raise TimeError(f"time {text!r} is before 1970-01-01T00:00:00Z; HBase times start at 0")
    if ms > _MAX_MS:
        raise TimeError(f"time {text!r} is after the year 9999")
    return ms


# format_time runs once per exported row; gluing cached pieces is about three
# times faster than datetime arithmetic plus isoformat().
_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_HOUR_TEXT = tuple(f"T{hour:02d}:" for hour in range(24))
_MINUTE_SECOND_TEXT = tuple(f"{m:02d}:{s:02d}." for m in range(60) for s in range(60))
_MILLISECOND_TEXT = tuple(f"{milli:03d}Z" for milli in range(1000))
_DATE_TEXT: dict[int, str] = {}


def format_time(ms: int) -> str:
    """Show epoch milliseconds as ISO-8601 UTC with milliseconds: "2026-11-01T10:00:00.000Z"."""
    days, rest = divmod(ms, _DAY_MS)
    day_text = _DATE_TEXT.get(days)
    if day_text is None:
        day_text = _date_text(ms, days)
    hour, rest = divmod(rest, _HOUR_MS)
    second, milli = divmod(rest, 1000)
    return day_text + _HOUR_TEXT[hour] + _MINUTE_SECOND_TEXT[second] + _MILLISECOND_TEXT[milli]


def _date_text(ms: int, days: int) -> str:
    try:
        text = date.fromordinal(_EPOCH_ORDINAL + days).isoformat()
    except (ValueError, OverflowError):
        raise TimeError(f"time {ms} ms is outside the years 1 to 9999") from None
    if len(_DATE_TEXT) >= 4096:
        _DATE_TEXT.clear()  # bounded; a long export touches few distinct days at a time
    _DATE_TEXT[days] = text
    return text


@dataclass(frozen=True, order=True)
class Slice:
    """One half-open piece [start_ms, end_ms) of a window; index is its 0-based position."""

    index: int
    start_ms: int
    end_ms: int

    @property
    def duration_ms(self) -> int:
        """Length of the slice in milliseconds."""
        return self.end_ms - self.start_ms

    def __str__(self) -> str:
        return f"[{format_time(self.start_ms)}, {format_time(self.end_ms)})"


def split_window(start_ms: int, end_ms: int, slice_ms: int) -> list[Slice]:
    """Cut [start_ms, end_ms) into consecutive slices of slice_ms; the last may be shorter."""
    if slice_ms <= 0:
        raise TimeError(f"invalid slice size {slice_ms} ms: must be greater than zero")
    if start_ms >= end_ms:
        raise TimeError(
            f"empty time window: start {_show(start_ms)} is not before end {_show(end_ms)}"
        )
    count = -(-(end_ms - start_ms) // slice_ms)
    if count > MAX_SLICES:
        raise TimeError(
            f"window {_show(start_ms)} to {_show(end_ms)} would need {count} slices of "
            f"{format_duration(slice_ms)} (limit {MAX_SLICES}): use a larger slice"
        )
    return [
        Slice(index, start, min(start + slice_ms, end_ms))
        for index, start in enumerate(range(start_ms, end_ms, slice_ms))
    ]


def _show(ms: int) -> str:
    """Readable form of a time for messages, even when it is out of range."""
    try:
        return format_time(ms)
    except TimeError:
        return f"{ms} ms"
