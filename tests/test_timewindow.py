"""Tests for hbase2es.timewindow: parsing times, durations and zones; splitting windows."""

import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from hbase2es import timewindow
from hbase2es.timewindow import (
    MAX_SLICES,
    Slice,
    TimeError,
    format_duration,
    format_time,
    parse_duration,
    parse_time,
    parse_tz,
    split_window,
)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NOW = 1_793_527_200_000  # 2026-11-01T10:00:00Z


def ms(*args, tz=UTC) -> int:
    """Epoch ms of a wall-clock time in tz, computed independently of the code under test."""
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)


# --- parse_tz ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["UTC", "utc", "Z", " UTC ", "+00:00", "-0000"])
def test_parse_tz_utc_forms(name):
    assert parse_tz(name) is UTC


@pytest.mark.parametrize(
    "name, offset",
    [
        ("+02:00", timedelta(hours=2)),
        ("+0200", timedelta(hours=2)),
        ("+02", timedelta(hours=2)),
        ("-0530", -timedelta(hours=5, minutes=30)),
        ("-05:30", -timedelta(hours=5, minutes=30)),
        ("+05:45", timedelta(hours=5, minutes=45)),
    ],
)
def test_parse_tz_fixed_offsets(name, offset):
    assert parse_tz(name).utcoffset(None) == offset


def test_parse_tz_iana_name():
    assert parse_tz("Europe/Berlin") == BERLIN
    assert parse_tz("America/New_York").key == "America/New_York"


@pytest.mark.parametrize(
    "name", ["", "Mars/Olympus", "Europe/Berln", "+25:00", "+02:60", "2", "../etc/passwd", "GMT+2h"]
)
def test_parse_tz_rejects(name):
    with pytest.raises(TimeError) as info:
        parse_tz(name)
    message = str(info.value)
    assert "\n" not in message
    assert repr(name) in message


# --- parse_duration -----------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("500ms", 500),
        ("1ms", 1),
        ("30s", 30_000),
        ("15m", 900_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
        ("2w", 14 * 86_400_000),
        ("1h30m", 5_400_000),
        ("1d12h", 36 * 3_600_000),
        ("1m500ms", 60_500),
        ("90m", 5_400_000),
        (" 15m ", 900_000),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "15", "abc", "15 m", "1h 30m", "1.5h", "-5m", "+5m", "0s", "0ms", "0h0m", "5M", "5y", "m5",
     "15mx"],
)
def test_parse_duration_rejects(text):
    with pytest.raises(TimeError) as info:
        parse_duration(text)
    assert repr(text) in str(info.value)


def test_parse_duration_zero_message_says_positive():
    with pytest.raises(TimeError, match="greater than zero"):
        parse_duration("0s")


@pytest.mark.parametrize("ms_value", [1, 999, 1000, 60_000, 5_400_000, 90_061_001, 14 * 86_400_000])
def test_format_duration_round_trips(ms_value):
    assert parse_duration(format_duration(ms_value)) == ms_value


def test_format_duration_readable():
    assert format_duration(5_400_000) == "1h30m"
    assert format_duration(500) == "500ms"


# --- parse_time: absolute ------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-01T10:00:00Z", ms(2026, 11, 1, 10)),
        ("2026-11-01T10:00:00.123Z", ms(2026, 11, 1, 10) + 123),
        ("2026-11-01 10:00:00Z", ms(2026, 11, 1, 10)),
        ("2026-11-01T10:00:00+00:00", ms(2026, 11, 1, 10)),
        ("2026-11-01T10:00:00.123+02:00", ms(2026, 11, 1, 8) + 123),
        ("2026-11-01T10:00:00-0530", ms(2026, 11, 1, 15, 30)),
        ("  2026-11-01T10:00:00Z  ", ms(2026, 11, 1, 10)),
    ],
)
def test_parse_time_iso_with_offset_ignores_tz(text, expected):
    assert parse_time(text, tz=BERLIN, now_ms=NOW) == expected
    assert parse_time(text, tz=UTC, now_ms=NOW) == expected


def test_parse_time_sub_millisecond_digits_are_truncated():
    assert parse_time("2026-11-01T10:00:00.1239Z", tz=UTC, now_ms=NOW) == ms(2026, 11, 1, 10) + 123


def test_parse_time_iso_without_offset_uses_tz():
    assert parse_time("2026-11-01T10:00", tz=UTC, now_ms=NOW) == ms(2026, 11, 1, 10)
    assert parse_time("2026-11-01T10:00", tz=parse_tz("+02:00"), now_ms=NOW) == ms(2026, 11, 1, 8)
    # Berlin is on winter time (+01:00) on 1 November, summer time (+02:00) in July.
    assert parse_time("2026-11-01T10:00:00", tz=BERLIN, now_ms=NOW) == ms(2026, 11, 1, 9)
    assert parse_time("2026-07-01T10:00:00", tz=BERLIN, now_ms=NOW) == ms(2026, 7, 1, 8)


def test_parse_time_date_is_midnight_in_tz():
    assert parse_time("2026-11-01", tz=UTC, now_ms=NOW) == ms(2026, 11, 1)
    assert parse_time("2026-11-01", tz=parse_tz("-05:00"), now_ms=NOW) == ms(2026, 11, 1, 5)


def test_parse_time_dst_change_day_in_berlin():
    # 2026-03-29 is the day Berlin moves from +01:00 to +02:00 at 02:00 local time.
    assert parse_time("2026-03-29", tz=BERLIN, now_ms=NOW) == ms(2026, 3, 28, 23)
    assert parse_time("2026-03-30", tz=BERLIN, now_ms=NOW) == ms(2026, 3, 29, 22)
    assert parse_time("2026-03-29T03:00", tz=BERLIN, now_ms=NOW) == ms(2026, 3, 29, 1)


def test_parse_time_rejects_wall_time_skipped_by_dst():
    with pytest.raises(TimeError, match="does not exist in Europe/Berlin"):
        parse_time("2026-03-29T02:30", tz=BERLIN, now_ms=NOW)


def test_parse_time_repeated_wall_time_means_the_earlier_instant():
    # 02:30 happens twice on 2026-10-25 in Berlin: first at +02:00, then at +01:00.
    assert parse_time("2026-10-25T02:30", tz=BERLIN, now_ms=NOW) == ms(2026, 10, 25, 0, 30)


def test_parse_time_midnight_skipped_by_dst_is_first_instant_of_day():
    # Santiago moves clocks forward at local midnight: 2026-09-06 starts at 01:00 (-03:00).
    santiago = ZoneInfo("America/Santiago")
    assert parse_time("2026-09-06", tz=santiago, now_ms=NOW) == ms(2026, 9, 6, 4)


# --- parse_time: epoch and relative ---------------------------------------------


def test_parse_time_epoch_milliseconds():
    assert parse_time("1767225600000", tz=BERLIN, now_ms=NOW) == 1_767_225_600_000
    assert parse_time("100000000000", tz=UTC, now_ms=NOW) == 10**11


def test_parse_time_zero_is_the_epoch():
    assert parse_time("0", tz=UTC, now_ms=NOW) == 0


@pytest.mark.parametrize("text", ["1767225600", "1", "99999999999"])
def test_parse_time_rejects_epoch_seconds_with_hint(text):
    with pytest.raises(TimeError) as info:
        parse_time(text, tz=UTC, now_ms=NOW)
    message = str(info.value)
    assert "seconds" in message
    assert "append 000" in message
    assert f"{text}000" in message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("now", NOW),
        ("NOW", NOW),
        ("now-15m", NOW - 900_000),
        ("now+1h", NOW + 3_600_000),
        ("now-1h30m", NOW - 5_400_000),
        ("now - 1d", NOW - 86_400_000),
        ("now-500ms", NOW - 500),
    ],
)
def test_parse_time_relative(text, expected):
    assert parse_time(text, tz=BERLIN, now_ms=NOW) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "garbage",
        "yesterday",
        "2026-13-01",
        "2026-11-01T25:00",
        "2026/11/01",
        "01.11.2026",
        "now-",
        "now-15",
        "now*2h",
        "nowish",
        "now-0m",
        "1767225600000.5",
        "-1767225600000",
        "12345678901234567890",
        "1969-12-31T23:59:59Z",
        "now-100000w",
    ],
)
def test_parse_time_rejects(text):
    with pytest.raises(TimeError) as info:
        parse_time(text, tz=UTC, now_ms=NOW)
    message = str(info.value)
    assert "\n" not in message
    if text.strip():
        assert repr(text) in message


def test_time_error_is_value_error():
    assert issubclass(TimeError, ValueError)


# --- format_time ----------------------------------------------------------------


def test_format_time():
    assert format_time(ms(2026, 11, 1, 10)) == "2026-11-01T10:00:00.000Z"
    assert format_time(ms(2026, 11, 1, 10) + 7) == "2026-11-01T10:00:00.007Z"
    assert format_time(0) == "1970-01-01T00:00:00.000Z"
    assert format_time(-1) == "1969-12-31T23:59:59.999Z"


def test_format_time_matches_datetime_on_random_times():
    rng = random.Random(7)
    epoch = datetime(1970, 1, 1)
    samples = [rng.randrange(-(10**12), 253_402_300_799_999) for _ in range(2_000)]
    samples += [0, 999, 1_000, 86_399_999, 86_400_000, -86_400_000, -86_400_001]
    samples += [253_402_300_799_999]
    for value in samples:
        expected = (epoch + timedelta(milliseconds=value)).isoformat(timespec="milliseconds") + "Z"
        assert format_time(value) == expected


def test_format_time_round_trips_through_parse_time():
    for value in (0, 10**11, 1_793_527_200_123, 253_402_300_799_999):
        assert parse_time(format_time(value), tz=BERLIN, now_ms=NOW) == value


def test_format_time_out_of_range():
    with pytest.raises(TimeError, match="outside"):
        format_time(10**20)


# --- Slice and split_window ---------------------------------------------------------


def test_slice_str_is_half_open_interval():
    piece = Slice(0, ms(2026, 11, 1, 10), ms(2026, 11, 1, 11))
    assert str(piece) == "[2026-11-01T10:00:00.000Z, 2026-11-01T11:00:00.000Z)"
    assert piece.duration_ms == 3_600_000


def test_slices_order_by_index():
    assert sorted([Slice(2, 20, 30), Slice(0, 0, 10), Slice(1, 10, 20)])[0] == Slice(0, 0, 10)


def test_split_window_even():
    start = ms(2026, 11, 1)
    pieces = split_window(start, start + 3 * 3_600_000, 3_600_000)
    assert pieces == [
        Slice(0, start, start + 3_600_000),
        Slice(1, start + 3_600_000, start + 7_200_000),
        Slice(2, start + 7_200_000, start + 10_800_000),
    ]


def test_split_window_last_slice_truncated():
    pieces = split_window(1_000, 3_500, 1_000)
    bounds = [(p.start_ms, p.end_ms) for p in pieces]
    assert bounds == [(1_000, 2_000), (2_000, 3_000), (3_000, 3_500)]
    assert pieces[-1].duration_ms == 500


def test_split_window_slice_larger_than_window():
    assert split_window(10, 15, 1_000) == [Slice(0, 10, 15)]


def test_split_window_one_millisecond_window():
    assert split_window(10, 11, 1) == [Slice(0, 10, 11)]


@pytest.mark.parametrize(
    "start, end, step",
    [(0, 1, 1), (0, 10, 3), (5, 1_000_003, 7_919), (ms(2026, 3, 28), ms(2026, 3, 31), 3_600_000)],
)
def test_split_window_contiguous_and_exact_cover(start, end, step):
    pieces = split_window(start, end, step)
    assert pieces[0].start_ms == start
    assert pieces[-1].end_ms == end
    assert [p.index for p in pieces] == list(range(len(pieces)))
    for before, after in zip(pieces, pieces[1:]):
        assert before.end_ms == after.start_ms  # no gap, no overlap
    assert all(p.start_ms < p.end_ms for p in pieces)
    assert all(p.duration_ms == step for p in pieces[:-1])
    assert 0 < pieces[-1].duration_ms <= step
    assert sum(p.duration_ms for p in pieces) == end - start


def test_split_window_every_time_in_exactly_one_slice():
    pieces = split_window(100, 137, 10)
    for t in range(90, 150):
        owners = [p for p in pieces if p.start_ms <= t < p.end_ms]
        assert len(owners) == (1 if 100 <= t < 137 else 0)


def test_split_window_boundaries_exact_across_dst():
    # Slices are fixed UTC lengths: the DST change in Berlin does not bend them.
    start = parse_time("2026-03-29", tz=BERLIN, now_ms=NOW)
    end = parse_time("2026-03-30", tz=BERLIN, now_ms=NOW)
    pieces = split_window(start, end, 3_600_000)
    assert len(pieces) == 23
    assert str(pieces[0]) == "[2026-03-28T23:00:00.000Z, 2026-03-29T00:00:00.000Z)"
    assert str(pieces[-1]) == "[2026-03-29T21:00:00.000Z, 2026-03-29T22:00:00.000Z)"


@pytest.mark.parametrize("start, end", [(1_000, 1_000), (2_000, 1_000)])
def test_split_window_rejects_empty_window_naming_both_ends(start, end):
    with pytest.raises(TimeError) as info:
        split_window(start, end, 10)
    message = str(info.value)
    assert format_time(start) in message
    assert format_time(end) in message


@pytest.mark.parametrize("step", [0, -1])
def test_split_window_rejects_non_positive_slice(step):
    with pytest.raises(TimeError, match=str(step)):
        split_window(0, 10, step)


def test_split_window_limits_slice_count():
    with pytest.raises(TimeError, match="larger slice") as info:
        split_window(0, MAX_SLICES + 1, 1)
    assert str(MAX_SLICES + 1) in str(info.value)


def test_split_window_allows_exactly_the_limit(monkeypatch):
    monkeypatch.setattr(timewindow, "MAX_SLICES", 10)
    assert len(split_window(0, 10, 1)) == 10
    with pytest.raises(TimeError, match="limit 10"):
        split_window(0, 11, 1)
