"""The Thrift2 reader: same rows as the Thrift1 reader, with the slice's time range on the server.

Integration tests read the same real table through HBase's Thrift1 server (Thrift1Reader)
and its Thrift2 server (Thrift2Reader), apply the slice job's rule
(``start <= newest cell < end``) to both, and compare the sequences of
``(row key, values, newest cell timestamp)``; where the data is simple enough they are
also compared with a model of the puts. Unit tests cover the pure helpers.
"""

from __future__ import annotations

import random
import socket

import pytest
from helpers import T0, free_port, put_row, read_index, table_name

from hbase2es.errors import ConfigError, ExitCode, UnavailableError
from hbase2es.hbase import thrift2 as thrift2_reader
from hbase2es.run.export import run_export
from hbase2es.hbase import Thrift1Reader, open_reader
from hbase2es.run.plan import describe_plan
from hbase2es.run.preview import render_plan
from hbase2es.settings import HBaseSettings, load_settings
from hbase2es.hbase.thrift2 import (MAX_STAMP, Thrift2Reader, connect_thrift2, hbase2,
                                     row_of, table_name as thrift_table_name, thrift_columns,
                                     time_range)
from hbase2es.timesource import time_source
from hbase2es.timewindow import Slice, split_window

integration = pytest.mark.integration
CELL = time_source("cell")


# --------------------------------------------------------------------------- helpers


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def _settings(address: str, table: str, api: str, **extra) -> HBaseSettings:
    host, port = _address(address)
    return HBaseSettings(host=host, port=port, table=table, api=api, **extra)


def _slice_rows(reader, slice_: Slice) -> list[tuple[bytes, dict, int]]:
    """The rows of a slice as the slice job keeps them: ``start <= newest < end``."""
    out = []
    for spec in CELL.scans(slice_):
        for key, values, newest in reader.scan(**spec.scan_kwargs()):
            if slice_.start_ms <= CELL.row_time(key, values, newest) < slice_.end_ms:
                out.append((key, values, newest))
    return out


def _model(puts: list[tuple[bytes, bytes, bytes, int]], slice_: Slice):
    """Expected rows of a slice from the puts (each column's newest value older than end)."""
    cells: dict[bytes, dict[bytes, tuple[int, bytes]]] = {}
    for key, column, value, ts in puts:
        if ts < slice_.end_ms:
            held = cells.setdefault(key, {})
            if column not in held or held[column][0] < ts:
                held[column] = (ts, value)
    out = []
    for key in sorted(cells):
        newest = max(ts for ts, _ in cells[key].values())
        if newest >= slice_.start_ms:
            out.append((key, {c: v for c, (_, v) in cells[key].items()}, newest))
    return out


@pytest.fixture
def readers(servers, thrift2_address, table):
    """(Thrift1 reader, Thrift2 reader) of the test's table, small batches to cross them."""
    name = table_name(table)
    one = open_reader(_settings(servers.hbase, name, "thrift1", batch_size=7))
    try:
        two = open_reader(_settings(thrift2_address, name, "thrift2", batch_size=7))
    except BaseException:
        one.close()
        raise
    try:
        yield one, two
    finally:
        one.close()
        two.close()


# --------------------------------------------------------------------------- unit


def test_table_name_splits_the_namespace():
    assert thrift_table_name("t1") == hbase2.TTableName(ns=None, qualifier=b"t1")
    assert thrift_table_name("ns:t1") == hbase2.TTableName(ns=b"ns", qualifier=b"t1")


def test_columns_follow_happybase_names():
    assert thrift_columns(None) is None and thrift_columns([]) is None
    got = thrift_columns([b"cf", b"cf:q", b"meta:", b"cf:a:b"])
    assert [(c.family, c.qualifier) for c in got] == [
        (b"cf", None), (b"cf", b"q"), (b"meta", b""), (b"cf", b"a:b")]


def test_time_range_is_half_open_and_open_ended():
    assert time_range(None, None) is None
    assert time_range(0, None) is None
    assert time_range(None, 50) == hbase2.TTimeRange(minStamp=0, maxStamp=50)
    assert time_range(10, 50) == hbase2.TTimeRange(minStamp=10, maxStamp=50)
    assert time_range(10, None) == hbase2.TTimeRange(minStamp=10, maxStamp=MAX_STAMP)


def test_row_of_joins_family_and_qualifier_and_takes_the_newest_cell():
    result = hbase2.TResult(row=b"r", columnValues=[
        hbase2.TColumnValue(family=b"cf", qualifier=b"a", value=b"1", timestamp=5),
        hbase2.TColumnValue(family=b"meta", qualifier=b"", value=b"2", timestamp=9),
        hbase2.TColumnValue(family=b"cf", qualifier=b"b", value=b"3", timestamp=7)])
    assert row_of(result) == ({b"cf:a": b"1", b"meta:": b"2", b"cf:b": b"3"}, 9)


def test_api_setting_defaults_to_auto_and_rejects_other_names():
    base = {"hbase.table": "t", "elasticsearch.index": "i", "window.start": str(T0),
            "window.end": str(T0 + 7_200_000)}
    assert load_settings(None, base, now_ms=T0).hbase.api == "auto"
    assert load_settings(None, {**base, "hbase.api": "thrift2"}, now_ms=T0).hbase.api == "thrift2"
    with pytest.raises(ConfigError) as info:
        load_settings(None, {**base, "hbase.api": "thrift3"}, now_ms=T0)
    assert info.value.exit_code == ExitCode.USAGE
    assert "hbase.api" in str(info.value) and "auto, thrift1, thrift2" in str(info.value)


def test_plan_names_the_api_and_the_server_side_strategy():
    base = {"hbase.table": "t", "elasticsearch.index": "i", "window.start": str(T0),
            "window.end": str(T0 + 7_200_000)}
    two = describe_plan(load_settings(None, {**base, "hbase.api": "thrift2"}, now_ms=T0))
    one = describe_plan(load_settings(None, {**base, "hbase.api": "thrift1"}, now_ms=T0))
    assert (one["api"], two["api"]) == ("thrift1", "thrift2")
    assert "Thrift2" in two["strategy"] and "[start, end)" in two["strategy"]
    assert "Thrift1" in one["strategy"]
    assert "HBase API: thrift2" in render_plan(two)


# --------------------------------------------------------------------------- integration


@integration
def test_open_reader_picks_the_reader_of_the_api(readers):
    one, two = readers
    assert type(one) is Thrift1Reader and type(two) is Thrift2Reader
    regions = two.regions()
    assert regions and regions[0]["start_key"] == b"" and regions[-1]["end_key"] == b""


@integration
def test_boundary_rows_and_later_updates_match_thrift1_and_the_model(readers, table):
    start, end = T0, T0 + 3000  # slices [T0, +1s) [+1s, +2s) [+2s, +3s)
    puts = [
        (b"before_window", b"cf:k", b"x", start - 1),
        (b"window_start", b"cf:k", b"x", start),
        (b"ms_before_boundary", b"cf:k", b"x", start + 999),
        (b"on_boundary", b"cf:k", b"x", start + 1000),
        (b"ms_before_second", b"cf:k", b"x", start + 1999),
        (b"second_boundary", b"cf:k", b"x", start + 2000),
        (b"last_ms", b"cf:k", b"x", end - 1),
        (b"window_end", b"cf:k", b"x", end),
        (b"after_window", b"cf:k", b"x", end + 5000),
        # Updated in a later slice: the old state in slice 0, the new one in slice 2.
        (b"updated", b"cf:state", b"old", start + 100),
        (b"updated", b"cf:since", b"t1", start + 100),
        (b"updated", b"cf:state", b"new", start + 2100),
        # Per column: slice 1 holds a (from slice 0) and b.
        (b"per_column", b"cf:a", b"a0", start + 100),
        (b"per_column", b"meta:b", b"b1", start + 1100),
        # Old row touched again exactly on a boundary and after the window.
        (b"old_then_boundary", b"cf:k", b"old", start - 5000),
        (b"old_then_boundary", b"cf:k", b"new", start + 1000),
        (b"old_then_boundary", b"cf:k", b"later", end + 1),
    ]
    for key, column, value, ts in puts:
        put_row(table, key, {column: value}, ts)
    one, two = readers
    two.dense_factor = 0  # sparse: every changed row by multi-get (dense below)

    slices = split_window(start, end, 1000)
    got_one = [_slice_rows(one, s) for s in slices]
    got_two = [_slice_rows(two, s) for s in slices]

    expected = [_model(puts, s) for s in slices]
    assert got_one == expected
    assert got_two == expected
    assert [[k for k, _, _ in rows] for rows in got_two] == [
        [b"ms_before_boundary", b"per_column", b"updated", b"window_start"],
        [b"ms_before_second", b"old_then_boundary", b"on_boundary", b"per_column"],
        [b"last_ms", b"second_boundary", b"updated"],
    ]
    updated = {s.index: dict((k, (v, t)) for k, v, t in rows)[b"updated"]
               for s, rows in zip(slices, got_two) if any(k == b"updated" for k, _, _ in rows)}
    assert updated == {0: ({b"cf:state": b"old", b"cf:since": b"t1"}, start + 100),
                       2: ({b"cf:state": b"new", b"cf:since": b"t1"}, start + 2100)}
    # Thrift2 fetched only the rows of each slice; Thrift1 read every older row each time.
    assert two.rows_read == sum(map(len, expected)) == 11
    assert two.keys_scanned == two.rows_read
    assert one.rows_read > 2 * two.rows_read
    # Dense: every key span by one range scan gives the same rows.
    two.dense_factor = 10 ** 6
    assert [_slice_rows(two, s) for s in slices] == expected
    assert two.spans_scanned >= len(slices)


@integration
def test_many_versions_across_many_slices_give_the_same_rows_and_counts(readers, table):
    rng = random.Random(10)
    n_slices, slice_ms = 12, 1000
    start, end = T0, T0 + n_slices * slice_ms
    versions = 0
    for i in range(40):
        key = f"row{i:03d}"
        for _ in range(rng.randint(1, 9)):  # more versions than cf keeps (3) for many rows
            ts = rng.randrange(start - 3000, end + 3000)
            column = rng.choice(["cf:v", "cf:v", "cf:w", "meta:m"])
            put_row(table, key, {column: f"{key}@{ts}"}, ts)
            versions += 1
        if i % 7 == 3:  # some columns deleted (all versions up to a time inside the window)
            table.delete(key.encode(), columns=[b"cf:v"], timestamp=rng.randrange(start, end))
    one, two = readers
    two.dense_factor = 0  # sparse first: rows_read is then exactly the slices' rows

    slices = split_window(start, end, slice_ms)
    got_one = [_slice_rows(one, s) for s in slices]
    got_two = [_slice_rows(two, s) for s in slices]

    counts = [len(rows) for rows in got_two]
    assert [len(rows) for rows in got_one] == counts
    for s, a, b in zip(slices, got_one, got_two):
        assert a == b, f"slice {s}: Thrift1 and Thrift2 differ"
    assert sum(1 for c in counts if c) >= n_slices - 1 and sum(counts) > 40, counts
    assert two.rows_read == sum(counts)
    assert one.rows_read > 3 * two.rows_read, (one.rows_read, two.rows_read, versions)
    # The adaptive default and a forced range scan of every span give the same rows.
    for factor in (thrift2_reader.DENSE_FACTOR, 10 ** 6):
        two.dense_factor = factor
        assert [_slice_rows(two, s) for s in slices] == got_one, factor
    assert two.spans_scanned > 0


@integration
def test_scan_without_lower_bound_and_with_columns_equals_thrift1(readers, table):
    for i in range(15):
        put_row(table, f"k{i:02d}", {"cf:a": f"a{i}", "meta:b": f"b{i}"}, T0 + i * 10)
    one, two = readers
    for kwargs in ({}, {"timestamp": T0 + 75}, {"columns": [b"meta"]},
                   {"columns": [b"cf:a"], "timestamp": T0 + 75, "row_start": b"k03",
                    "row_stop": b"k12"},
                   {"filter": b"PrefixFilter('k1')", "timestamp": T0 + 120}):
        expected = list(one.scan(**kwargs))
        assert expected, kwargs
        assert list(two.scan(**kwargs)) == expected, kwargs
    # A time range with columns and a filter: step 1 on the columns, the filter on the rows.
    got = list(two.scan(timestamp=T0 + 120, min_timestamp=T0 + 50, columns=[b"cf:a"],
                        filter=b"PrefixFilter('k1')"))
    assert [(k, v, t) for k, v, t in got] == [
        (f"k{i:02d}".encode(), {b"cf:a": f"a{i}".encode()}, T0 + i * 10) for i in (10, 11)]


class _RecordingClient:
    """Passes calls to a real Thrift2 client and remembers the scanner ids it opened."""

    def __init__(self, client, scanners: list[int]):
        self.client = client
        self.scanners = scanners

    def openScanner(self, *args):
        scanner = self.client.openScanner(*args)
        self.scanners.append(scanner)
        return scanner

    def __getattr__(self, name):
        return getattr(self.client, name)


@integration
def test_scan_reopens_after_the_server_drops_the_scanner(readers, table, thrift2_address,
                                                         monkeypatch):
    puts = [(f"r{i:02d}".encode(), b"cf:v", f"v{i}".encode(), T0 + 1000 + i) for i in range(20)]
    for key, column, value, ts in puts:
        put_row(table, key, {column: value}, ts)
    puts.append((b"r05", b"cf:v", b"older", T0 - 1))  # an older version the slice must not show
    put_row(table, b"r05", {b"cf:v": b"older"}, T0 - 1)
    _, two = readers
    two.dense_factor = 0  # multi-gets: the only scanner is the key-only one being dropped
    scanners: list[int] = []
    connect = thrift2_reader.connect_thrift2
    monkeypatch.setattr(thrift2_reader, "connect_thrift2",
                        lambda *a, **kw: _RecordingClient(connect(*a, **kw), scanners))
    two.close()  # the next scan connects through the recorder
    slice_ = Slice(0, T0, T0 + 2000)

    other = connect_thrift2(*_address(thrift2_address), timeout_ms=10_000)
    got = []
    try:
        for row in two.scan(**CELL.scans(slice_)[0].scan_kwargs()):
            got.append(row)
            if len(got) == 9:  # inside the second batch of 7
                other.closeScanner(scanners[-1])  # as a lease expiry would
    finally:
        other.close()

    assert got == _model(puts, slice_)
    assert len(scanners) == 2  # reopened once, after r13, the last row of batch 2
    assert two.rows_read == 20  # the reopened scan starts after the rows already handed out


@integration
def test_scan_reconnects_after_the_connection_breaks(readers, table, caplog):
    puts = [(f"r{i:02d}".encode(), b"cf:v", f"v{i}".encode(), T0 + 1000 + i) for i in range(20)]
    for key, column, value, ts in puts:
        put_row(table, key, {column: value}, ts)
    _, two = readers
    slice_ = Slice(0, T0, T0 + 2000)
    got = []
    rows = two.scan(**CELL.scans(slice_)[0].scan_kwargs())
    for row in rows:
        got.append(row)
        if len(got) == 3:
            # The socket dies under the client (a server restart or a network cut).
            two._conn._oprot.trans.sock.shutdown(socket.SHUT_RDWR)
    assert got == _model(puts, slice_)
    assert len({k for k, _, _ in got}) == 20
    # Reopened after the last row of the first batch of 7, which was handed out whole.
    assert ["interrupted after row b'r06'" in r.getMessage() for r in caplog.records] == [True]


@integration
def test_missing_table_and_wrong_server_are_one_clear_line(servers, thrift2_address, unique_name):
    with pytest.raises(UnavailableError) as info:
        open_reader(_settings(thrift2_address, unique_name, "thrift2"))
    assert f"HBase table {unique_name!r} does not exist" in str(info.value)
    assert info.value.exit_code == ExitCode.UNAVAILABLE

    with pytest.raises(UnavailableError) as info:  # the Thrift1 server's port
        open_reader(_settings(servers.hbase, unique_name, "thrift2", timeout_ms=5000))
    assert "does not speak HBase's Thrift2 API" in str(info.value)
    assert 'api = "thrift1"' in str(info.value)

    with pytest.raises(UnavailableError) as info:  # the server is buffered/binary
        open_reader(_settings(thrift2_address, unique_name, "thrift2", protocol="compact",
                              timeout_ms=3000))
    assert "buffered/compact" in str(info.value) and "\n" not in str(info.value)

    port = free_port()
    with pytest.raises(UnavailableError) as info:
        open_reader(_settings(f"127.0.0.1:{port}", unique_name, "thrift2"))
    assert str(info.value).startswith(f"cannot reach HBase Thrift2 server 127.0.0.1:{port}")


@integration
def test_export_through_thrift2_writes_the_same_documents_as_thrift1(
        servers, thrift2_address, table, es, index):
    start, end = T0, T0 + 4000
    rng = random.Random(7)
    for i in range(30):
        key = f"doc{i:02d}"
        for _ in range(rng.randint(1, 4)):
            ts = rng.randrange(start - 1500, end + 1500)
            put_row(table, key, {rng.choice(["cf:a", "cf:b", "meta:c"]): f"{key}@{ts}"}, ts)
    put_row(table, "on_boundary", {"cf:a": "x"}, start + 2000)
    put_row(table, "at_end", {"cf:a": "x"}, end)

    reports = {}
    # "thrift1": once per slice; "onepass": the Thrift1 default, one scan for all slices.
    for name, api, address in (("thrift1", "thrift1", servers.hbase),
                               ("onepass", "thrift1", servers.hbase),
                               ("thrift2", "thrift2", thrift2_address)):
        host, port = _address(address)
        settings = load_settings(None, {
            "hbase.host": host, "hbase.port": port, "hbase.table": table_name(table),
            "hbase.api": api, "elasticsearch.hosts": [servers.es],
            "elasticsearch.index": f"{index}-{name}", "window.start": str(start),
            "window.end": str(end), "window.slice": "1s", "run.workers": 2, "run.quiet": True,
            "run.one_pass": name == "onepass",
        }, now_ms=T0)
        report = run_export(settings)
        assert report.exit_code == ExitCode.OK, name
        reports[name] = report

    docs = {name: {k: (h["_source"], h["_version"]) for k, h in
                   read_index(es, f"{index}-{name}").items()} for name in reports}
    assert docs["thrift1"] == docs["thrift2"] == docs["onepass"]
    assert "on_boundary" in docs["thrift2"] and "at_end" not in docs["thrift2"]
    assert len(docs["thrift2"]) >= 20
    rows = {api: [(s.rows, s.indexed + s.stale) for s in r.slices] for api, r in reports.items()}
    assert rows["thrift1"] == rows["thrift2"]
    # One pass counts a row once, in the slice of its newest cell: as many rows as documents.
    assert sum(n for n, _ in rows["onepass"]) == len(docs["onepass"])
    assert all(n for n, _ in rows["thrift2"])
