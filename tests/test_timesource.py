"""Unit tests for time sources (cell, row key, column), their settings and region splitting.

Expected bytes are built independently of the code under test (struct, datetime, plain
string formatting), and range builders are checked against the definition: a stored
time is inside the bytes range [lo, hi) exactly when its time is inside the slice.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hbase2es.errors import ConfigError
from hbase2es.hbase.regions import region_bounds
from hbase2es.run.plan import describe_plan, slice_tasks
from hbase2es.run.pieces import (SliceTask, clip, clip_scan, merge_results, split_by_regions,
                                 wants_region_split)
from hbase2es.settings import ColumnSettings, RowKeySettings, WindowSettings, load_settings
from hbase2es.timesource import (NO_TIME, CellTimeSource, ColumnTimeSource, RowKeyTimeSource,
                                 ScanSpec, TimeSourceError, make_codec, show_bytes, time_source)
from hbase2es.timewindow import Slice

LONG_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
HOUR = 3_600_000


def utc_ms(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


# --- number codecs: exact stored bytes ---------------------------------------


@pytest.mark.parametrize("encoding, width, reversed_, ms, expected", [
    ("epoch_ms_be", 0, False, T0 + 123, struct.pack(">q", T0 + 123)),
    ("epoch_ms_be", 0, True, T0 + 123, struct.pack(">q", LONG_MAX - (T0 + 123))),
    ("epoch_s_be", 0, False, T0 + 999, struct.pack(">I", T0 // 1000)),
    ("epoch_s_be", 4, True, T0, struct.pack(">i", INT_MAX - T0 // 1000)),
    ("epoch_s_be", 8, False, T0, struct.pack(">q", T0 // 1000)),
    ("epoch_s_be", 8, True, T0, struct.pack(">q", LONG_MAX - T0 // 1000)),
    ("epoch_ms_text", 0, False, T0 + 7, b"1700000000007"),
    ("epoch_ms_text", 15, False, T0 + 7, b"001700000000007"),
    ("epoch_ms_text", 0, True, T0, str(LONG_MAX - T0).encode()),
    ("epoch_ms_text", 13, True, T0, str(9_999_999_999_999 - T0).encode()),
    ("epoch_s_text", 0, False, T0 + 1500, b"1700000001"),
    ("epoch_s_text", 0, True, T0, str(LONG_MAX - T0 // 1000).encode()),
])
def test_number_codec_stores_the_documented_bytes(encoding, width, reversed_, ms, expected):
    codec = make_codec(encoding, width, reversed_)
    assert codec.encode(ms) == expected
    assert codec.width == len(expected)
    unit = 1000 if encoding.startswith("epoch_s_") else 1
    assert codec.decode(expected) == ms // unit * unit


@pytest.mark.parametrize("encoding, reversed_, data", [
    ("epoch_ms_be", False, b"\x00" * 7),  # short
    ("epoch_ms_be", False, b"\x00" * 9),  # long
    ("epoch_ms_be", True, b"\xff" * 8),  # beyond Long.MAX_VALUE: a negative time
    ("epoch_s_be", False, b"\x01\x02\x03"),
    ("epoch_ms_text", False, b"17000000000x7"),
    ("epoch_ms_text", False, b"+700000000007"),
    ("epoch_ms_text", False, b" 700000000007"),
    ("epoch_s_text", False, b"170000000"),
    ("epoch_s_text", False, b"\xd9\xa1" * 5),  # non-ASCII digits must not parse
])
def test_number_codec_decodes_foreign_bytes_as_no_time(encoding, reversed_, data):
    assert make_codec(encoding, 0, reversed_).decode(data) == NO_TIME


def _in_range(value: bytes, bounds) -> bool:
    lo, hi = bounds
    return lo <= value and (hi is None or value < hi)


BOUNDARY_CODECS = [
    ("epoch_ms_be", 0, False), ("epoch_ms_be", 0, True),
    ("epoch_s_be", 4, False), ("epoch_s_be", 4, True),
    ("epoch_s_be", 8, False), ("epoch_s_be", 8, True),
    ("epoch_ms_text", 13, False), ("epoch_ms_text", 0, True), ("epoch_ms_text", 13, True),
    ("epoch_s_text", 10, False), ("epoch_s_text", 0, True),
    ("strftime:%Y%m%d%H%M%S", 0, False), ("strftime:%Y-%m-%dT%H:%M:%S.%f", 0, False),
    ("strftime:%Y%m%d%H", 0, False), ("strftime:%Y%j", 0, False), ("strftime:%Y%m", 0, False),
]


@pytest.mark.parametrize("encoding, width, reversed_", BOUNDARY_CODECS)
@pytest.mark.parametrize("start, end", [
    (T0, T0 + HOUR),  # whole seconds and hours
    (T0 + 1, T0 + HOUR - 1),  # off every unit boundary
    (T0 + 500, T0 + 1_700),  # less than two seconds
    (T0 + 200, T0 + 700),  # inside one second: seconds encodings have nothing here
    (utc_ms(2023, 12, 31, 23), utc_ms(2024, 1, 1, 1)),  # across a year
    (utc_ms(2024, 2, 28, 12), utc_ms(2024, 3, 1, 12)),  # across a leap day
    (0, 1000),  # at the epoch: the reversed stop is past the widest value
])
def test_bounds_hold_exactly_the_stored_times_of_the_slice(encoding, width, reversed_, start,
                                                          end):
    codec = make_codec(encoding, width, reversed_)
    bounds = codec.bounds(start, end)
    probes = {start, end, start - 1, end - 1, start + 1, end + 1, (start + end) // 2}
    for t in list(probes):
        probes |= {t - t % 1000, t - t % 1000 + 1000, t - t % HOUR, t - t % HOUR + HOUR}
    probes |= {utc_ms(2023, 12, 1), utc_ms(2024, 1, 1), utc_ms(2024, 2, 29), utc_ms(2024, 3, 1)}
    for t in sorted(p for p in probes if p >= 0):
        stored = codec.encode(t)
        t_key = codec.decode(stored)  # the key's own time: t truncated to the unit
        assert t_key <= t
        inside = start <= t_key < end
        got = bounds is not None and _in_range(stored, bounds)
        assert got == inside, (encoding, reversed_, t, t_key, stored, bounds)


def test_bounds_of_a_slice_with_no_whole_second_is_none():
    assert make_codec("epoch_s_be").bounds(T0 + 200, T0 + 700) is None
    assert make_codec("epoch_s_text", 0, True).bounds(T0 + 200, T0 + 700) is None
    assert make_codec("strftime:%Y%m%d").bounds(T0 + 1, T0 + HOUR) is None


def test_bounds_stop_is_open_when_the_end_does_not_fit_the_width():
    # 13 digits of milliseconds end in 2286; a window reaching past it reads to the end.
    codec = make_codec("epoch_ms_text", 13)
    assert codec.bounds(9_999_999_999_000, 10_000_000_000_500) == (b"9999999999000", None)
    assert codec.bounds(10_000_000_000_000, 10_000_000_000_500) is None
    # Reversed from the epoch: the stop is base + 1, which 13 nines cannot hold ...
    reversed_ms = make_codec("epoch_ms_text", 13, True)
    assert reversed_ms.bounds(0, 1000) == (b"9999999999000", None)
    # ... but 19 digits can hold Long.MAX_VALUE + 1.
    assert make_codec("epoch_ms_text", 0, True).bounds(0, 1000) == (
        str(LONG_MAX - 999).encode(), str(LONG_MAX + 1).encode())


# --- strftime -------------------------------------------------------------------


def test_strftime_codec_formats_in_utc_and_reads_back_the_period_start():
    codec = make_codec("strftime:%Y-%m-%dT%H:%M:%S")
    ms = utc_ms(2026, 3, 29, 1, 30, 5) + 250  # a DST change night in Europe: UTC ignores it
    assert codec.encode(ms) == b"2026-03-29T01:30:05"
    assert codec.decode(b"2026-03-29T01:30:05") == ms - 250
    assert codec.width == 19
    day = make_codec("strftime:%Y%j")
    assert day.encode(utc_ms(2024, 12, 31, 18)) == b"2024366"
    assert day.decode(b"2024366") == utc_ms(2024, 12, 31)
    micro = make_codec("strftime:%Y%m%d%H%M%S%f")
    assert micro.encode(T0 + 7) == b"20231114221320007000"
    assert micro.decode(b"20231114221320007999") == T0 + 7


@pytest.mark.parametrize("data", [
    b"2026-03-29T01:30:0",  # short
    b"2026-03-29 01:30:05",  # wrong literal
    b"2026-13-29T01:30:05",  # month 13
    b"2026-02-30T01:30:05",  # no such day
    b"2026-03-29T24:30:05",
    b"2026-03-29T01:3x:05",
])
def test_strftime_codec_decodes_foreign_text_as_no_time(data):
    assert make_codec("strftime:%Y-%m-%dT%H:%M:%S").decode(data) == NO_TIME


def test_strftime_day_of_year_out_of_range_is_no_time():
    codec = make_codec("strftime:%Y%j")
    assert codec.decode(b"2023366") == NO_TIME  # 2023 has 365 days
    assert codec.decode(b"2023000") == NO_TIME


@pytest.mark.parametrize("pattern, message", [
    ("%d%m%Y", "does not sort in time order"),
    ("%Y%d", "does not sort in time order"),
    ("%Y%m%H", "does not sort in time order"),
    ("%H%M", "does not sort in time order"),
    ("", "does not sort in time order"),
    ("%y%m%d", "%y is not supported"),
    ("%Y%m%d %Z", "%Z is not supported"),
    ("%s", "%s is not supported"),
])
def test_strftime_patterns_that_do_not_sort_are_refused(pattern, message):
    with pytest.raises(TimeSourceError, match=message) as info:
        make_codec(f"strftime:{pattern}")
    assert str(info.value).startswith("window.rowkey.encoding ")


def test_strftime_percent_literal_is_fixed_text():
    codec = make_codec("strftime:%Y%%%m")
    assert codec.encode(T0) == b"2023%11"
    assert codec.decode(b"2023%11") == utc_ms(2023, 11, 1)


# --- codec settings -----------------------------------------------------------


@pytest.mark.parametrize("encoding, width, reversed_, key, message", [
    ("epoch_ns_be", 0, False, "encoding", "must be one of epoch_ms_be, epoch_s_be"),
    ("epoch_ms_be", 4, False, "width", "of epoch_ms_be must be 8, got 4"),
    ("epoch_s_be", 6, False, "width", "of epoch_s_be must be 4 or 8, got 6"),
    ("epoch_ms_text", 12, False, "width", "of epoch_ms_text must be 13 to 19, got 12"),
    ("epoch_s_text", 20, False, "width", "must be 10 to 19, got 20"),
    ("strftime:%Y%m%d", 9, False, "width", "must be 8"),
    ("strftime:%Y%m%d", 0, True, "reversed", "works only with the epoch_* encodings"),
])
def test_codec_settings_errors_name_the_key(encoding, width, reversed_, key, message):
    with pytest.raises(TimeSourceError) as info:
        make_codec(encoding, width, reversed_, section="window.column")
    assert info.value.key == f"window.column.{key}"
    assert message in str(info.value)


# --- row-key source -------------------------------------------------------------


def rowkey_source(**options) -> RowKeyTimeSource:
    return RowKeyTimeSource.from_settings(RowKeySettings(**options))


SLICE = Slice(0, T0, T0 + HOUR)


def test_rowkey_ranges_without_salt_are_prefix_plus_encoded_bounds():
    source = rowkey_source(prefix="user42|")
    assert source.key_ranges(SLICE) == [
        (b"user42|" + struct.pack(">q", T0), b"user42|" + struct.pack(">q", T0 + HOUR))]
    assert source.scans(SLICE) == [ScanSpec(row_start=b"user42|" + struct.pack(">q", T0),
                                            row_stop=b"user42|" + struct.pack(">q", T0 + HOUR))]
    assert all(spec.timestamp is None and spec.filter is None for spec in source.scans(SLICE))


def test_rowkey_ranges_one_per_byte_salt_bucket_in_key_order():
    source = rowkey_source(encoding="epoch_s_be", prefix="hex:00ff", salt_buckets=3)
    s, e = struct.pack(">I", T0 // 1000), struct.pack(">I", (T0 + HOUR) // 1000)
    assert source.key_ranges(SLICE) == [
        (b"\x00\xff\x00" + s, b"\x00\xff\x00" + e),
        (b"\x00\xff\x01" + s, b"\x00\xff\x01" + e),
        (b"\x00\xff\x02" + s, b"\x00\xff\x02" + e)]


def test_rowkey_decimal_salt_is_zero_padded_with_separator():
    source = rowkey_source(encoding="epoch_ms_text", salt_buckets=12, salt_format="decimal",
                           salt_separator="|")
    ranges = source.key_ranges(SLICE)
    assert [r[0] for r in ranges] == [b"%02d|%d" % (i, T0) for i in range(12)]
    assert [r[1] for r in ranges] == [b"%02d|%d" % (i, T0 + HOUR) for i in range(12)]
    assert ranges == sorted(ranges)
    assert source.row_time(b"07|%d|rest" % (T0 + 5), {}, 0) == T0 + 5
    assert source.row_time(b"12|%d" % (T0 + 5), {}, 0) == NO_TIME  # no bucket 12
    assert source.row_time(b"07-%d" % (T0 + 5), {}, 0) == NO_TIME  # wrong separator


def test_rowkey_reversed_ranges_flip():
    source = rowkey_source(reversed=True, prefix="e|")
    lo, hi = source.key_ranges(SLICE)[0]
    # Newest time of the slice first: e - 1 ms is the first key, s - 1 ms the stop.
    assert lo == b"e|" + struct.pack(">q", LONG_MAX - (T0 + HOUR - 1))
    assert hi == b"e|" + struct.pack(">q", LONG_MAX - (T0 - 1))
    assert source.row_time(lo, {}, 0) == T0 + HOUR - 1
    assert source.row_time(b"e|" + struct.pack(">q", LONG_MAX - T0), {}, 0) == T0


def test_rowkey_open_stop_ends_at_the_prefix_not_the_table():
    source = rowkey_source(encoding="epoch_ms_text", width=13, prefix="a\xff", reversed=True)
    lo, hi = source.key_ranges(Slice(0, 0, 1000))[0]
    assert lo.startswith("a\xff".encode())
    assert hi == b"a\xc3\xc0"  # "a\xff" is UTF-8 b"a\xc3\xbf": the next prefix


def test_rowkey_without_prefix_and_open_stop_reads_to_the_end_of_the_table():
    source = rowkey_source(encoding="epoch_ms_text", width=13, reversed=True)
    assert source.key_ranges(Slice(0, 0, 1000)) == [(b"9999999999000", b"")]


@pytest.mark.parametrize("key", [
    b"other|" + struct.pack(">q", T0),  # another entity
    b"user42|" + struct.pack(">q", T0)[:5],  # shorter key
    b"user4",
    b"",
])
def test_rowkey_row_time_of_a_foreign_key_is_no_time(key):
    assert rowkey_source(prefix="user42|").row_time(key, {}, T0) == NO_TIME


def test_rowkey_row_time_ignores_what_follows_the_time():
    source = rowkey_source(prefix="u|", salt_buckets=4)
    key = b"u|\x03" + struct.pack(">q", T0 + 9) + b"#order-17"
    assert source.row_time(key, {b"cf:a": b"x"}, 12345) == T0 + 9
    assert source.row_time(b"u|\x04" + struct.pack(">q", T0 + 9), {}, 0) == NO_TIME


@pytest.mark.parametrize("options, key, message", [
    ({"salt_buckets": -1}, "salt_buckets", "must be 0 (no salt) or more"),
    ({"salt_buckets": 257}, "salt_buckets", "at most 256"),
    ({"salt_format": "hex"}, "salt_format", "must be one of byte, decimal"),
    ({"salt_separator": "|"}, "salt_separator", "needs window.rowkey.salt_buckets"),
    ({"prefix": "hex:0g"}, "prefix", "must be hex digits"),
    ({"salt_buckets": 2, "salt_separator": "hex:1"}, "salt_separator", "must be hex digits"),
])
def test_rowkey_settings_errors_name_the_key(options, key, message):
    with pytest.raises(TimeSourceError) as info:
        rowkey_source(**options)
    assert info.value.key == f"window.rowkey.{key}"
    assert message in str(info.value)


def test_rowkey_description_names_the_layout():
    text = rowkey_source(prefix="u|", salt_buckets=16, salt_separator="hex:00").description
    assert "epoch_ms_be (8 bytes)" in text and "'u|'" in text
    assert "16 salt buckets (byte) + '\\x00'" in text


# --- column source --------------------------------------------------------------


def test_column_filter_applies_both_bounds_with_binary_comparators():
    source = ColumnTimeSource.from_settings(ColumnSettings(column="cf:ts",
                                                           encoding="epoch_ms_text"))
    spec, = source.scans(SLICE)
    assert spec.filter == (
        b"SingleColumnValueFilter('cf', 'ts', >=, 'binary:%d', true, true) AND "
        b"SingleColumnValueFilter('cf', 'ts', <, 'binary:%d', true, true)" % (T0, T0 + HOUR))
    assert (spec.row_start, spec.row_stop, spec.timestamp) == (b"", b"", None)


def test_column_filter_doubles_single_quotes_and_keeps_other_bytes_raw():
    # 0x27 is a single quote: T0 + 0x27 ms puts one in the value's last byte.
    source = ColumnTimeSource.from_settings(ColumnSettings(column="c'f:t's"))
    spec, = source.scans(Slice(0, 0x27, 0x1_0000_0000))
    assert spec.filter == (
        b"SingleColumnValueFilter('c''f', 't''s', >=, 'binary:\x00\x00\x00\x00\x00\x00\x00''', "
        b"true, true) AND SingleColumnValueFilter('c''f', 't''s', <, "
        b"'binary:\x00\x00\x00\x01\x00\x00\x00\x00', true, true)")


def test_column_row_time_reads_the_column_value():
    source = ColumnTimeSource.from_settings(ColumnSettings(column="cf:ts", encoding="epoch_s_be",
                                                           width=8))
    assert source.row_time(b"k", {b"cf:ts": struct.pack(">q", 1_700_000_001)}, 0) == \
        1_700_000_001_000
    assert source.row_time(b"k", {b"cf:other": b"x"}, T0) == NO_TIME
    assert source.row_time(b"k", {b"cf:ts": b"\x01"}, T0) == NO_TIME


def test_column_reversed_filter_holds_the_flipped_range():
    source = ColumnTimeSource.from_settings(ColumnSettings(column="cf:ts", reversed=True))
    spec, = source.scans(SLICE)
    lo = struct.pack(">q", LONG_MAX - (T0 + HOUR - 1))
    hi = struct.pack(">q", LONG_MAX - (T0 - 1))
    assert b">=, 'binary:" + lo + b"'" in spec.filter
    assert b"<, 'binary:" + hi + b"'" in spec.filter


def test_column_slice_with_no_whole_second_has_no_scan():
    source = ColumnTimeSource.from_settings(ColumnSettings(column="cf:ts", encoding="epoch_s_be"))
    assert source.scans(Slice(0, T0 + 1, T0 + 999)) == []


@pytest.mark.parametrize("column, message", [
    ("", "is required with window.time_source = \"column\""),
    ("cfts", "must be \"family:qualifier\""),
    (":ts", "must be \"family:qualifier\""),
])
def test_column_settings_errors(column, message):
    with pytest.raises(TimeSourceError) as info:
        ColumnTimeSource.from_settings(ColumnSettings(column=column))
    assert info.value.key == "window.column.column"
    assert message in str(info.value)


# --- factory, helpers -------------------------------------------------------------


def test_time_source_factory_builds_each_source():
    assert isinstance(time_source(WindowSettings()), CellTimeSource)
    assert isinstance(time_source("cell"), CellTimeSource)
    assert isinstance(time_source(WindowSettings(time_source="rowkey")), RowKeyTimeSource)
    source = time_source(WindowSettings(time_source="column",
                                        column=ColumnSettings(column="cf:ts")))
    assert isinstance(source, ColumnTimeSource)
    with pytest.raises(TimeSourceError, match="window.time_source must be one of"):
        time_source(WindowSettings(time_source="thrift"))


def test_cell_source_is_unchanged():
    source = time_source(WindowSettings())
    assert source.scans(SLICE) == [ScanSpec(timestamp=T0 + HOUR, min_timestamp=T0)]
    assert source.row_time(b"k", {}, 42) == 42


def test_show_bytes_is_hbase_to_string_binary():
    assert show_bytes(b"ab|\x00\xff\\'") == "ab|\\x00\\xFF\\x5C'"


# --- settings -----------------------------------------------------------------------


BASE = """
[hbase]
table = "t"
[elasticsearch]
index = "i"
[window]
start = "2023-11-14T00:00:00Z"
end = "2023-11-15T00:00:00Z"
"""


def settings_from(tmp_path: Path, text: str):
    path = tmp_path / "job.toml"
    path.write_text(BASE + text)
    return load_settings(path, now_ms=T0), str(path)


def test_settings_read_the_rowkey_and_column_sub_tables(tmp_path):
    settings, _ = settings_from(tmp_path, """time_source = "rowkey"
[window.rowkey]
encoding = "epoch_s_be"
width = 8
prefix = "hex:0a"
reversed = true
salt_buckets = 4
salt_format = "decimal"
salt_separator = "|"
[window.column]
column = "cf:ts"
[run]
split_by_region = false
""")
    assert settings.window.rowkey == RowKeySettings(
        encoding="epoch_s_be", width=8, prefix="hex:0a", reversed=True, salt_buckets=4,
        salt_format="decimal", salt_separator="|")
    assert settings.window.column.column == "cf:ts"
    assert settings.run.split_by_region is False
    assert not wants_region_split(settings)


@pytest.mark.parametrize("text, message", [
    ('time_source = "rowkey"\n[window.rowkey]\nencoding = "epoch_us"\n',
     "window.rowkey.encoding must be one of epoch_ms_be, epoch_s_be, epoch_ms_text, "
     "epoch_s_text, strftime:<pattern>, got 'epoch_us'"),
    ('time_source = "rowkey"\n[window.rowkey]\nsalt_format = "hex"\n',
     "window.rowkey.salt_format must be one of byte, decimal, got 'hex'"),
    ('time_source = "rowkey"\n[window.rowkey]\nwidth = "8"\nencoding = "epoch_s_be"\nprefixx = 1\n',
     "unknown key window.rowkey.prefixx"),
    ('time_source = "rowkey"\n[window.rowkey]\nreversed = "yes"\n',
     "window.rowkey.reversed must be true or false"),
    ('time_source = "column"\n', "window.column.column is required"),
    ('time_source = "column"\n[window.column]\ncolumn = "ts"\n',
     "window.column.column must be \"family:qualifier\""),
    ('time_source = "column"\ncolumn = "cf:ts"\n', "[window.column] must be a table"),
    ('time_source = "rows"\n', "window.time_source must be one of cell, rowkey, column"),
    ('[run]\nsplit_by_region = "on"\n', "run.split_by_region must be true or false"),
])
def test_settings_errors_name_the_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        settings_from(tmp_path, text)
    assert str(info.value).startswith(str(tmp_path / "job.toml") + ": ")
    assert message in str(info.value)


def test_region_split_defaults_on_for_rowkey_only(tmp_path):
    rowkey, _ = settings_from(tmp_path, 'time_source = "rowkey"\n')
    cell, _ = settings_from(tmp_path, "")
    assert wants_region_split(rowkey) and not wants_region_split(cell)
    forced = load_settings(tmp_path / "job.toml", {"run.split_by_region": True}, now_ms=T0)
    assert wants_region_split(forced)


# --- regions --------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, lo, hi, expected", [
    (b"b", b"d", b"", b"", (b"b", b"d")),
    (b"b", b"d", b"c", b"", (b"c", b"d")),
    (b"b", b"d", b"", b"c", (b"b", b"c")),
    (b"b", b"d", b"d", b"e", None),  # touching: stop is exclusive
    (b"b", b"d", b"a", b"b", None),
    (b"", b"", b"c", b"e", (b"c", b"e")),
    (b"", b"", b"c", b"", (b"c", b"")),
    (b"x", b"", b"", b"c", None),
    (b"b", b"b\x00", b"b", b"c", (b"b", b"b\x00")),
])
def test_clip(a, b, lo, hi, expected):
    assert clip(a, b, lo, hi) == expected


REGIONS = [{"start_key": b"m", "end_key": b""}, {"start_key": b"", "end_key": b"g"},
           {"start_key": b"g", "end_key": b"m"}]


def test_region_bounds_sorts_happybase_dicts():
    assert region_bounds(REGIONS) == [(b"", b"g"), (b"g", b"m"), (b"m", b"")]


def test_split_by_regions_gives_one_task_per_touched_region():
    slices = [Slice(0, 0, 10), Slice(1, 10, 20), Slice(2, 20, 30)]
    ranges = {0: [(b"a", b"b"), (b"h", b"i")], 1: [(b"", b"")], 2: []}
    bounds = region_bounds(REGIONS)
    tasks, owners = split_by_regions(slices, lambda s: ranges[s.index], bounds)
    assert tasks == [SliceTask(slices[0], b"", b"g"), SliceTask(slices[0], b"g", b"m"),
                     SliceTask(slices[1], b"", b"g"), SliceTask(slices[1], b"g", b"m"),
                     SliceTask(slices[1], b"m", b""), slices[2]]
    assert owners == [0, 0, 1, 1, 1, 2]


def test_region_pieces_cover_each_range_exactly_once():
    bounds = region_bounds(REGIONS)
    for start, stop in [(b"a", b"z"), (b"", b""), (b"f", b"g\x00"), (b"g", b"m"), (b"l", b"")]:
        pieces = [clip(start, stop, lo, hi) for lo, hi in bounds]
        pieces = [p for p in pieces if p is not None]
        for (_, s1), (s2, _) in zip(pieces, pieces[1:]):
            assert s1 == s2  # contiguous
        assert pieces[0][0] == start and pieces[-1][1] == stop


def test_clip_scan_keeps_the_time_bounds_and_filter():
    spec = ScanSpec(row_start=b"a", row_stop=b"z", timestamp=5, min_timestamp=1, filter=b"F")
    assert clip_scan(spec, b"g", b"m") == replace(spec, row_start=b"g", row_stop=b"m")
    assert clip_scan(spec, b"z", b"") is None


@dataclass
class Result:
    index: int
    start_ms: int
    end_ms: int
    rows: int = 0
    seconds: float = 0.0
    note: str = ""


def test_merge_results_sums_counts_and_seconds():
    merged = merge_results([Result(3, 10, 20, 5, 1.25, "a"), Result(3, 10, 20, 7, 0.5, "b")])
    assert merged == Result(3, 10, 20, 12, 1.75, "a")


# --- plan -----------------------------------------------------------------------------


def test_plan_shows_hex_key_ranges_and_region_pieces(tmp_path):
    settings, _ = settings_from(tmp_path, """slice = "12h"
time_source = "rowkey"
[window.rowkey]
encoding = "epoch_s_text"
salt_buckets = 2
salt_format = "decimal"
""")
    start, mid, end = utc_ms(2023, 11, 14), utc_ms(2023, 11, 14, 12), utc_ms(2023, 11, 15)
    plain = describe_plan(settings)
    first = plain["slices"][0]
    assert first["ranges"] == [[(b"0%d" % (start // 1000)).hex(), (b"0%d" % (mid // 1000)).hex()],
                               [(b"1%d" % (start // 1000)).hex(), (b"1%d" % (mid // 1000)).hex()]]
    # Export will split by region (the rowkey default); plan lists pieces only when given
    # the regions, so a plain plan never contacts HBase.
    assert plain["split_by_region"] is True and plain["regions"] is None
    assert "pieces" not in first
    assert "row key time epoch_s_text (10 digits)" in plain["strategy"]
    regions = [(b"", b"1"), (b"1", b"")]
    split = describe_plan(settings, regions)
    assert split["regions"] == 2
    assert [s["pieces"] for s in split["slices"]] == [[["", "31"], ["31", ""]]] * 2
    tasks, owners = slice_tasks(settings, [Slice(0, start, mid), Slice(1, mid, end)], regions)
    assert owners == [0, 0, 1, 1] and all(isinstance(t, SliceTask) for t in tasks)


def test_plan_shows_the_column_filter(tmp_path):
    settings, _ = settings_from(tmp_path, """slice = "1d"
time_source = "column"
[window.column]
column = "cf:ts"
""")
    data = describe_plan(settings)
    assert data["slices"][0]["ranges"] == [["", ""]]
    assert data["slices"][0]["filter"].startswith(
        "SingleColumnValueFilter('cf', 'ts', >=, 'binary:\\x00\\x00\\x01\\x8B")


def test_every_combination_of_codec_options_round_trips():
    for encoding, reversed_ in itertools.product(
            ["epoch_ms_be", "epoch_s_be", "epoch_ms_text", "epoch_s_text"], [False, True]):
        codec = make_codec(encoding, 0, reversed_)
        for t in (0, 999, 1000, T0, T0 + 1, utc_ms(2038, 1, 19)):
            unit = codec.unit_ms
            assert codec.decode(codec.encode(t)) == t // unit * unit, (encoding, reversed_, t)
    # Integer.MAX_VALUE - seconds runs out in 2038; plain unsigned 4-byte seconds in 2106.
    plain = make_codec("epoch_s_be")
    assert plain.decode(plain.encode(utc_ms(2100, 1, 1))) == utc_ms(2100, 1, 1)
    with pytest.raises(ValueError, match="does not fit epoch_s_be"):
        make_codec("epoch_s_be", 4, True).encode(utc_ms(2038, 1, 20))


def test_example_configs_load_and_plan_offline(tmp_path):
    """configs/{cell,rowkey,column}.toml are valid and `plan` needs no server for them."""
    from helpers import run_cli

    root = Path(__file__).resolve().parent.parent / "configs"
    for name, source in [("cell", "cell"), ("rowkey", "rowkey"), ("column", "column")]:
        settings = load_settings(root / f"{name}.toml", now_ms=T0)
        assert settings.window.time_source == source
        assert time_source(settings.window).name == source
        result = run_cli(["plan", "--config", root / f"{name}.toml", "--hbase", "127.0.0.1:1"])
        assert "slices:" in result.stdout
    out = run_cli(["plan", "--config", root / "rowkey.toml", "--hbase", "127.0.0.1:1"]).stdout
    assert "(16 key ranges)" in out and "split by region: on" in out


# --- export: pieces aggregate back into slices -------------------------------------------


def _piece_settings(tmp_path):
    settings, _ = settings_from(tmp_path, 'slice = "12h"\ntime_source = "rowkey"\n')
    return settings


def _fake_executor(statuses: dict[int, str], seen: list):
    """An executor that 'runs' each task in order: one Started event, then its outcome."""
    from hbase2es.pool import Outcome, Progress, Started, TaskError
    from hbase2es.run.slicejob import SliceResult

    def run(settings, tasks, on_event, report, stop=None):
        seen.extend(tasks)
        for i, task in enumerate(tasks):
            if statuses.get(i) == "never":
                return  # stopped before this task started
            on_event(Started(i, 100 + i % 2, 1))
            on_event(Progress(i, {"rows": 1, "indexed": 1, "checkpoint": {"last_key": b"k"}}))
            s = task.slice if isinstance(task, SliceTask) else task
            status = statuses.get(i, "ok")
            if status == "ok":
                yield Outcome(i, "ok", SliceResult(s.index, s.start_ms, s.end_ms, rows=i + 1,
                                                   indexed=i + 1, seconds=0.5), None, 1 + i % 2)
            else:
                yield Outcome(i, status, None, TaskError("Boom", f"piece {i}", ""), 2)
    return run


def _regions_cutting_each_slice(start: int) -> list[tuple[bytes, bytes]]:
    """Three regions, split 6 h into each 12 h slice: two pieces per slice."""
    a, b = struct.pack(">q", start + 6 * HOUR), struct.pack(">q", start + 18 * HOUR)
    return [(b"", a), (a, b), (b, b"")]


def test_region_split_merges_pieces_into_one_outcome_per_slice(tmp_path):
    from hbase2es.pool import Progress, Started
    from hbase2es.run.pieces import RegionSplit
    from hbase2es.run.plan import slice_ranges
    from hbase2es.run.report import RunReport

    settings = _piece_settings(tmp_path)
    slices = [Slice(0, settings.start_ms, settings.start_ms + 12 * HOUR),
              Slice(1, settings.start_ms + 12 * HOUR, settings.end_ms)]
    regions = _regions_cutting_each_slice(settings.start_ms)
    events, seen = [], []
    report = RunReport([])
    run = RegionSplit(_fake_executor({}, seen), regions, slice_ranges(settings))
    outcomes = list(run(settings, slices, events.append, report, None))
    assert len(seen) == 4 and all(isinstance(t, SliceTask) for t in seen)
    assert [o.index for o in outcomes] == [0, 1]
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert [o.value.rows for o in outcomes] == [1 + 2, 3 + 4]
    assert [o.value.seconds for o in outcomes] == [1.0, 1.0]
    assert [o.attempts for o in outcomes] == [2, 2]
    # Events name the slice, and a piece's checkpoint is not passed on.
    assert {e.index for e in events} == {0, 1}
    assert all(e.payload["checkpoint"] is None for e in events if isinstance(e, Progress))
    assert sum(isinstance(e, Started) for e in events) == 4
    assert report.region_split == {
        "regions": 3, "tasks": 4, "slices": [{"index": 0, "pieces": 2, "workers": 2},
                                             {"index": 1, "pieces": 2, "workers": 2}]}


def test_region_split_slice_fails_when_a_piece_fails_and_is_cancelled_when_one_never_ran(tmp_path):
    from hbase2es.run.pieces import RegionSplit
    from hbase2es.run.plan import slice_ranges
    from hbase2es.run.report import RunReport

    settings = _piece_settings(tmp_path)
    slices = [Slice(0, settings.start_ms, settings.start_ms + 12 * HOUR),
              Slice(1, settings.start_ms + 12 * HOUR, settings.end_ms)]
    regions = _regions_cutting_each_slice(settings.start_ms)
    run = RegionSplit(_fake_executor({1: "failed", 3: "never"}, []), regions,
                      slice_ranges(settings))
    failed, cancelled = list(run(settings, slices, lambda e: None, RunReport([]), None))
    assert (failed.index, failed.status) == (0, "failed")
    lo, hi = regions[1]
    assert failed.error.message == f"region piece [{lo.hex()}, {hi.hex()}): piece 1"
    assert (cancelled.index, cancelled.status) == (1, "cancelled")
    assert "1 of its region pieces did not run" in cancelled.error.message
