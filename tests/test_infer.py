"""Pure tests of what `hbase2es init` guesses: column types (infer), the row-key time
layout, row estimate and slice (inferwindow), and the job file (jobfile) read back by
load_settings. Values and keys are built here with struct and formatting, not with the
codecs under test. No server."""

from __future__ import annotations

import json
import random
import struct
import tomllib

import pytest
from helpers import T0, write_config

from hbase2es.infer import ES_TYPES, field_names, fitting_types, guess_columns
from hbase2es.inferwindow import (RegionCount, RowKeyLayout, aligned_window, choose_slice,
                                  detect_rowkey, estimate_rows, head_layout)
from hbase2es.jobfile import MAX_COLUMNS, draft_job, index_from_table, render_job
from hbase2es.mapping import TYPES, decode_value
from hbase2es.settings import load_settings

MINUTE = 60_000
RNG = random.Random(22)


# --- one value ----------------------------------------------------------------------


@pytest.mark.parametrize("value, strongest", [
    (json.dumps({"a": 1, "b": [1, 2]}).encode(), "json"),
    (b"12345", "text_int"),
    (b"-7", "text_int"),
    (b"3.25", "text_float"),
    (b"-1.5e3", "text_float"),
    ("Zürich, 8001".encode(), "string"),
    (b"007", "string"),  # leading zeros: an identifier, not a number
    (b"[1, 2]", "string"),  # the json type takes objects only
    (b"", "string"),
    (struct.pack(">q", 123_456_789), "long"),
    (struct.pack(">q", -1), "long"),
    (struct.pack(">q", 1_700_000_000_000), "long"),
    (struct.pack(">q", 1_234_567_890_123_456_789), "long"),  # an id: its bits are no double
    (struct.pack(">d", 3.14159), "double"),
    (struct.pack(">d", -1234.5), "double"),
    (struct.pack(">d", 1.0), "double"),
    (struct.pack(">i", 42), "int"),
    (struct.pack(">i", -100_000), "int"),
    (struct.pack(">i", 1_700_000_000), "int"),  # epoch seconds: a huge float
    (struct.pack(">f", 2.5), "float"),
    (struct.pack(">f", -0.001), "float"),
    (struct.pack(">h", 12), "short"),
    (b"\x00", "boolean"),
    (b"\x01", "boolean"),
    (b"\x07", "bytes"),
    (b"\xff\xfe\x00\x01\x02", "bytes"),
])
def test_the_strongest_type_of_a_value(value, strongest):
    assert fitting_types(value)[0] == strongest


@pytest.mark.parametrize("seed", range(3))
def test_every_type_proposed_for_a_value_decodes_it(seed):
    # A value that "fits" must never fail the export: random values of every length.
    rng = random.Random(seed)
    for _ in range(3000):
        value = rng.randbytes(rng.choice([0, 1, 2, 4, 8, 3, 13]))
        types = fitting_types(value)
        assert types[-1] == "bytes"
        for t in types:
            decode_value(value, t)  # raises on a misfit


def test_zero_fits_both_long_and_double():
    assert fitting_types(bytes(8))[:2] == ("long", "double")
    assert fitting_types(bytes(4))[:2] == ("int", "float")


# --- one column -----------------------------------------------------------------------


def _guess(values):
    return guess_columns([{b"cf:c": v} for v in values])[0]


def test_a_column_of_one_encoding_fits_all_its_values():
    g = _guess([struct.pack(">d", i / 4) for i in range(1, 50)])
    assert (g.type, g.values, g.fits, g.misfits) == ("double", 49, 49, 0)
    assert g.example == "0.25"
    assert g.share == 1.0


def test_a_mixed_column_takes_what_most_values_fit_and_counts_the_misfits():
    values = [struct.pack(">q", i) for i in range(7)] + [b"n/a"] * 3
    g = _guess(values)
    assert (g.type, g.fits, g.misfits) == ("long", 7, 3)
    assert g.misfit_types == {"string": 3}
    assert g.misfit_example == '"n/a"'


def test_integers_and_decimals_as_text_are_text_float():
    g = _guess([b"1", b"2", b"3.5", b"40"])
    assert (g.type, g.misfits) == ("text_float", 0)


def test_numbers_and_words_as_text_are_string():
    g = _guess([b"12", b"13", b"n/a"])
    assert (g.type, g.misfits) == ("string", 0)


def test_random_bytes_stay_bytes_though_a_few_look_like_text():
    values = [RNG.randbytes(5) for _ in range(200)] + [b"abcde"] * 5
    assert _guess(values).type == "bytes"


def test_a_few_stray_values_do_not_make_a_long_column_base64():
    values = [struct.pack(">q", i) for i in range(90)] + [b"\xff\x00\xfe"] * 10
    g = _guess(values)
    assert (g.type, g.misfits, g.misfit_types) == ("long", 10, {"bytes": 10})


def test_json_arrays_are_counted_for_the_comment():
    g = _guess([b'[1, 2]', b'["a"]'])
    assert (g.type, g.json_arrays) == ("string", 2)


def test_columns_come_sorted_and_count_only_their_own_values():
    rows = [{b"cf:b": b"x", b"cf:a": b"1"}, {b"cf:a": b"2"}]
    guesses = guess_columns(rows)
    assert [(g.column, g.values) for g in guesses] == [(b"cf:a", 2), (b"cf:b", 1)]


# --- field names and Elasticsearch types --------------------------------------------------


def test_field_names_are_qualifiers_unless_they_collide():
    names = field_names([b"cf:amount", b"cf:city", b"meta:city", b"cf:a.b", b"cf:_id",
                         b"cf:@timestamp", b"cf:"], reserved=("@timestamp",))
    assert names == {b"cf:amount": "amount", b"cf:city": "cf_city", b"meta:city": "meta_city",
                     b"cf:a.b": "a_b", b"cf:_id": "id", b"cf:@timestamp": "cf_@timestamp",
                     b"cf:": "cf"}
    assert len(set(names.values())) == len(names)


def test_every_type_has_an_elasticsearch_type():
    assert set(ES_TYPES) == set(TYPES)
    assert ES_TYPES["long"]["type"] == ES_TYPES["text_int"]["type"] == "long"
    assert ES_TYPES["float"]["type"] == "double"


# --- row-key time -----------------------------------------------------------------------


def _times(n=200):
    return [T0 + i * 7 * MINUTE + RNG.randrange(1000) for i in range(n)]


def test_epoch_ms_after_a_prefix_and_a_byte_salt():
    rows = [(b"dev|" + bytes([i % 8]) + struct.pack(">q", t) + b"#%d" % i, t + 3)
            for i, t in enumerate(_times())]
    layout = detect_rowkey(rows)
    assert layout is not None
    assert (layout.encoding, layout.reversed, layout.prefix) == ("epoch_ms_be", False, b"dev|")
    assert (layout.salt_buckets, layout.salt_format, layout.agreeing) == (8, "byte", 200)


def test_reversed_epoch_ms_without_prefix():
    rows = [(struct.pack(">q", 2**63 - 1 - t) + b"u%d" % i, t) for i, t in enumerate(_times())]
    layout = detect_rowkey(rows)
    assert (layout.encoding, layout.reversed, layout.prefix, layout.salt_buckets) == \
        ("epoch_ms_be", True, b"", 0)


def test_seconds_as_text_after_a_decimal_salt_and_separator():
    rows = [(b"%02d|%d|item%d" % (i % 16, t // 1000, i), t) for i, t in enumerate(_times())]
    layout = detect_rowkey(rows)
    assert layout.settings() == {"encoding": "epoch_s_text", "width": 10, "reversed": False,
                                 "prefix": "", "salt_buckets": 16, "salt_format": "decimal",
                                 "salt_separator": "|"}


def test_milliseconds_as_text_are_not_taken_for_seconds():
    rows = [(b"evt-%d-x" % t, t) for t in _times()]
    assert detect_rowkey(rows).encoding == "epoch_ms_text"


def test_seconds_as_four_bytes():
    rows = [(b"\x01" + struct.pack(">I", t // 1000) + b"k", t) for t in _times()]
    layout = detect_rowkey(rows)
    assert (layout.encoding, layout.width, layout.prefix) == ("epoch_s_be", 4, b"\x01")
    assert layout.settings()["prefix"] == "hex:01"


def test_a_key_time_that_disagrees_with_the_cell_times_is_not_the_row_time():
    # Keys hold times of 2023, cells were written in 2025: not the same time.
    rows = [(b"k" + struct.pack(">q", t), t + 400 * 86_400_000) for t in _times()]
    assert detect_rowkey(rows) is None


def test_keys_without_a_time_are_cell_time():
    assert detect_rowkey([(b"user-%05d" % i, t) for i, t in enumerate(_times())]) is None
    assert detect_rowkey([]) is None


def test_a_few_keys_of_another_layout_do_not_hide_the_time():
    rows = [(b"e|" + struct.pack(">q", t), t) for t in _times(190)]
    rows += [(b"e|meta%d" % i, T0) for i in range(10)]
    assert detect_rowkey(rows).prefix == b"e|"


@pytest.mark.parametrize("heads, expected", [
    ([b"p|", b"p|"], (b"p|", 0, "byte", b"")),
    ([b"p\x00", b"p\x03"], (b"p", 4, "byte", b"")),
    ([b"03:", b"05:"], (b"0", 6, "decimal", b":")),  # one digit differs: "0" is the prefix
    ([b"03:", b"12:"], (b"", 13, "decimal", b":")),
    ([b"003", b"017"], (b"0", 18, "decimal", b"")),
    ([b"x07", b"x10"], (b"x", 11, "decimal", b"")),
    ([b"x10", b"x12"], (b"x1", 3, "decimal", b"")),
    ([b"ab|", b"cd|"], None),  # a salt of two bytes: not a layout the settings know
])
def test_head_layouts(heads, expected):
    assert head_layout(heads) == expected


# --- rows and slices ------------------------------------------------------------------------


def test_complete_regions_are_counted_exactly():
    est = estimate_rows([RegionCount(b"", b"m", 10, True), RegionCount(b"m", b"", 5, True)])
    assert (est.rows, est.exact, est.lower_bound) == (15, True, False)


def test_a_region_counted_halfway_through_its_key_range_holds_twice_as_many():
    middle = RegionCount(b"\x10", b"\x30", 1000, False, b"\x10\x01", b"\x20")
    est = estimate_rows([middle])
    assert abs(est.rows - 2000) <= 2 and not est.exact and not est.lower_bound


def test_open_ended_regions_take_the_median_of_the_others():
    regions = [RegionCount(b"", b"\x10", 100, False, b"\x00\x01", b"\x00\x05"),
               RegionCount(b"\x10", b"\x20", 1000, False, b"\x10", b"\x18"),
               RegionCount(b"\x20", b"\x30", 500, True, b"\x20", b"\x2f"),
               RegionCount(b"\x30", b"", 100, False, b"\x30", b"\x31")]
    est = estimate_rows(regions)
    # First region: extrapolated from its first key on; last: the median of the others.
    first = round(100 * (0x10_00 - 0x00_01) / (0x00_05 - 0x00_01))
    assert est.rows == first + 2000 + 500 + int((first + 2000) / 2)
    assert not est.lower_bound


def test_a_single_unfinished_region_is_a_lower_bound():
    est = estimate_rows([RegionCount(b"", b"", 5000, False, b"a", b"b")])
    assert (est.rows, est.exact, est.lower_bound) == (5000, False, True)


@pytest.mark.parametrize("window_ms, rows, expected", [
    (86_400_000, 2_400_000, "1h"),  # 100k per hour
    (86_400_000, 4_000_000, "30m"),
    (86_400_000, 50_000, "1d"),  # fewer than 100k: one slice
    (3 * 3_600_000, 10, "3h"),
    (3_600_000, 10**12, "1m"),  # never shorter than a minute
    (10**12, 10, "30d"),
])
def test_choose_slice(window_ms, rows, expected):
    assert choose_slice(window_ms, rows) == expected


def test_the_window_is_whole_slices_around_the_row_times():
    start, end = aligned_window(T0 + 5, T0 + 2 * 3_600_000, "1h")
    assert start <= T0 + 5 and end > T0 + 2 * 3_600_000
    assert start % 3_600_000 == 0 and end % 3_600_000 == 0
    day_start, day_end = aligned_window(T0, T0, "7d")
    assert day_start % 86_400_000 == 0 and day_end - day_start == 86_400_000


# --- the job file, read back as an export reads it ---------------------------------------


def _load(tmp_path, text):
    return load_settings(write_config(tmp_path / "job.toml", text), now_ms=T0)


def _draft(rows, **kw):
    args = dict(hbase=("hb.example", 9090), table="ns:Events", es_hosts=["http://es:9200"],
                workers=3, rows=[cells for _, cells, _ in rows], regions=1,
                layout=detect_rowkey([(k, t) for k, _, t in rows]),
                time_range=(min(t for *_, t in rows), max(t for *_, t in rows)) if rows else None,
                estimate=estimate_rows([RegionCount(b"", b"", len(rows), True)]) if rows else None,
                now_ms=T0 + 86_400_000)
    args.update(kw)
    return draft_job(**args)


def test_index_names_from_table_names():
    assert index_from_table("ns:Events") == "ns-events"
    assert index_from_table("_tmp table") == "tmp-table"
    assert index_from_table("...") == "hbase-table"


def test_the_job_file_loads_with_every_guess(tmp_path):
    rows = [(b"row%03d" % i, {b"cf:n": struct.pack(">q", i), b"cf:x": struct.pack(">d", i + .5),
                              b"cf:mixed": struct.pack(">q", i) if i % 5 else b"?"},
             T0 + i * MINUTE) for i in range(50)]
    text = render_job(_draft(rows))
    s = _load(tmp_path, text)
    assert (s.hbase.host, s.hbase.port, s.hbase.table) == ("hb.example", 9090, "ns:Events")
    assert (s.elasticsearch.hosts, s.elasticsearch.index) == (("http://es:9200",), "ns-events")
    assert {c.column: (c.field, c.type) for c in s.mapping.columns} == {
        b"cf:n": ("n", "long"), b"cf:x": ("x", "double"), b"cf:mixed": ("mixed", "long")}
    assert s.mapping.on_decode_error == "skip-field"  # the mixed column has misfits
    assert s.window.time_source == "cell"
    assert s.start_ms <= T0 and s.end_ms > T0 + 49 * MINUTE
    assert (s.run.workers, s.run.create_index) == (3, True)
    props = s.elasticsearch.mappings["properties"]
    assert props["@timestamp"] == {"type": "date"} and props["x"] == {"type": "double"}
    assert "10 misfit(s) (string: 10)" in next(line for line in text.splitlines()
                                              if line.startswith('"cf:mixed"'))


def test_a_rowkey_job_file_loads_the_layout(tmp_path):
    rows = [(b"d|" + bytes([i % 4]) + struct.pack(">q", t), {b"cf:v": b"x"}, t)
            for i, t in enumerate(_times(100))]
    s = _load(tmp_path, render_job(_draft(rows)))
    assert s.window.time_source == "rowkey"
    rk = s.window.rowkey
    assert (rk.encoding, rk.prefix, rk.salt_buckets, rk.salt_format) == \
        ("epoch_ms_be", "d|", 4, "byte")
    assert s.mapping.on_decode_error == "dead-letter"  # nothing misfit: the default stays


def test_without_es_no_mappings_and_no_create_index(tmp_path):
    rows = [(b"r1", {b"cf:v": b"1"}, T0)]
    text = render_job(_draft(rows, es_hosts=None))
    s = _load(tmp_path, text)
    assert s.elasticsearch.mappings == {} and s.run.create_index is False
    assert "no --es was given" in text


def test_an_empty_table_still_gives_a_job_file_that_loads(tmp_path):
    text = render_job(_draft([]))
    assert "No rows were sampled" in text
    s = _load(tmp_path, text)
    assert s.mapping.columns == () and s.window.time_source == "cell"
    assert s.end_ms - s.start_ms == 86_400_000  # the placeholder: the last day


def test_wide_rows_list_500_columns_and_leave_the_rest_unmapped(tmp_path):
    rows = [(b"r%d" % r, {b"cf:q%04d" % q: b"%d" % q for q in range(700)}, T0) for r in range(2)]
    rows.append((b"r9", {b"cf:q%04d" % q: b"x" for q in range(300)}, T0))  # seen more often
    text = render_job(_draft(rows))
    s = _load(tmp_path, text)
    listed = {c.column for c in s.mapping.columns}
    assert len(listed) == MAX_COLUMNS and {b"cf:q%04d" % q for q in range(300)} <= listed
    assert s.mapping.unmapped == "include"
    assert "200 more column(s) seen are not listed" in text


def test_awkward_column_names_and_values_survive_the_toml(tmp_path):
    names = ['cf:quote"d', "cf:back\\slash", "cf:tab\there", "cf:del\x7f", "cf:ünï", "cf:a b"]
    rows = [(b"r", {n.encode(): b"\x00\x7f\n\"\\ text" for n in names}, T0),
            (b"s", {b"\xff\xfe:bin": b"1"}, T0)]
    text = render_job(_draft(rows))
    tomllib.loads(text)  # valid TOML, comments with their control characters escaped
    s = _load(tmp_path, text)
    assert {c.column for c in s.mapping.columns} == {n.encode() for n in names}
    assert "1 more column(s) seen are not listed" in text and "not UTF-8" in text


def test_a_rowkey_layout_builds_the_source_an_export_builds():
    layout = RowKeyLayout("epoch_s_text", 10, False, b"p", 12, "decimal", b"|")
    key = b"p07|1700000000rest"
    assert layout.source().row_time(key, {}, 0) == 1_700_000_000_000
