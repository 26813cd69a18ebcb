"""Row-key and column time sources, and region splitting, against the real servers.

Every row's key (or time column) is built here with struct / plain formatting, not with
the codecs under test. Times sit on the boundaries of a two-slice window that crosses
midnight UTC (one index per slice): one ms before the window, its first ms, one ms
before the slice boundary, exactly on it, the window's last ms and its end. Cells are
written in 1970, so a cell-timestamp reading would export nothing: every document's
@timestamp, version and index come from the key or the column.

Region tests need a table pre-split into 4 regions. Thrift1 cannot split or create
split tables, so the table is created by HBase's own RegionSplitter tool (a JVM run
against the local dev servers' configuration); where that is not available (servers
not started by tools/devservers.py) those tests skip, or fail under
HBASE2ES_REQUIRE_SERVERS=1 or CI=true.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pytest
from helpers import read_report, require_or_skip, run_cli, table_name, write_config

from hbase2es.mapping import row_key_from_id

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
LONG_MAX = 2**63 - 1
HOUR = 3_600_000
MINUTE = 60_000
W0 = int(datetime(2023, 11, 14, 23, tzinfo=timezone.utc).timestamp() * 1000)
CELL_TS = 1_000_000  # 1970-01-01T00:16:40Z: far outside every window


def probes(start: int) -> list[int]:
    """Times around a window [start, start + 2h) cut into two 1h slices."""
    return [start - 1, start, start + 30 * MINUTE + 7, start + HOUR - 1, start + HOUR,
            start + 2 * HOUR - 1, start + 2 * HOUR]


def slice_of(key_time: int, start: int) -> int | None:
    if start <= key_time < start + HOUR:
        return 0
    if start + HOUR <= key_time < start + 2 * HOUR:
        return 1
    return None


def iso(ms: int) -> str:
    dt = EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def day(ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ms)).strftime("%Y.%m.%d")


def strftime_utc(pattern: str) -> Callable[[int], bytes]:
    return lambda t: (EPOCH + timedelta(milliseconds=t)).strftime(pattern).encode()


def floor_s(t: int) -> int:
    return t // 1000 * 1000


@dataclass
class Layout:
    """One row-key or column layout: its config and an independent encoder."""

    name: str
    config: str  # body of [window.rowkey] / [window.column]
    encode: Callable[[int], bytes]  # time -> stored bytes
    key_time: Callable[[int], int] = lambda t: t  # the time the stored bytes name
    prefix: bytes = b""
    salts: list[bytes] = field(default_factory=lambda: [b""])  # salt + separator per bucket
    start: int = W0


def decimal_salts(n: int, sep: bytes = b"") -> list[bytes]:
    digits = len(str(n - 1))
    return [str(i).zfill(digits).encode() + sep for i in range(n)]


ROWKEY_LAYOUTS = [
    Layout("ms_be", 'prefix = "c01|"', lambda t: struct.pack(">q", t), prefix=b"c01|"),
    Layout("ms_be_byte_salt", 'prefix = "c02|"\nsalt_buckets = 4',
           lambda t: struct.pack(">q", t), prefix=b"c02|", salts=[bytes([i]) for i in range(4)]),
    Layout("ms_be_reversed_no_prefix", "reversed = true",
           lambda t: struct.pack(">q", LONG_MAX - t)),
    Layout("ms_be_reversed_hex_prefix_salt", 'prefix = "hex:c004ff"\nreversed = true\n'
           "salt_buckets = 3", lambda t: struct.pack(">q", LONG_MAX - t),
           prefix=b"\xc0\x04\xff", salts=[bytes([i]) for i in range(3)]),
    Layout("s_be", 'prefix = "c05|"\nencoding = "epoch_s_be"',
           lambda t: struct.pack(">I", t // 1000), floor_s, prefix=b"c05|"),
    Layout("s_be8_reversed_decimal_salt",
           'prefix = "c06|"\nencoding = "epoch_s_be"\nwidth = 8\nreversed = true\n'
           'salt_buckets = 12\nsalt_format = "decimal"\nsalt_separator = "|"',
           lambda t: struct.pack(">q", LONG_MAX - t // 1000), floor_s, prefix=b"c06|",
           salts=decimal_salts(12, b"|")),
    Layout("ms_text_decimal_salt",
           'prefix = "c07|"\nencoding = "epoch_ms_text"\nsalt_buckets = 10\n'
           'salt_format = "decimal"\nsalt_separator = "-"',
           lambda t: b"%013d" % t, prefix=b"c07|", salts=decimal_salts(10, b"-")),
    Layout("ms_text_reversed", 'prefix = "c08|"\nencoding = "epoch_ms_text"\nreversed = true',
           lambda t: b"%019d" % (LONG_MAX - t), prefix=b"c08|"),
    Layout("s_text", 'prefix = "c09|"\nencoding = "epoch_s_text"',
           lambda t: b"%010d" % (t // 1000), floor_s, prefix=b"c09|"),
    Layout("s_text_reversed_byte_salt_separator",
           'prefix = "c10|"\nencoding = "epoch_s_text"\nreversed = true\nsalt_buckets = 2\n'
           'salt_separator = "hex:00"',
           lambda t: b"%019d" % (LONG_MAX - t // 1000), floor_s, prefix=b"c10|",
           salts=[b"\x00\x00", b"\x01\x00"]),
    Layout("strftime_seconds", 'prefix = "c11|"\nencoding = "strftime:%Y%m%d%H%M%S"',
           strftime_utc("%Y%m%d%H%M%S"), floor_s, prefix=b"c11|"),
    Layout("strftime_millis_decimal_salt",
           'prefix = "c12|"\nencoding = "strftime:%Y-%m-%dT%H:%M:%S.%f"\nsalt_buckets = 3\n'
           'salt_format = "decimal"',
           strftime_utc("%Y-%m-%dT%H:%M:%S.%f"), prefix=b"c12|", salts=decimal_salts(3)),
]


def config_text(table: str, index: str, start: int, source: str, body: str, *,
                workers: int = 2, extra: str = "") -> str:
    return f"""
[hbase]
table = "{table}"
[elasticsearch]
index = "{index}-{{time:%Y.%m.%d}}"
[window]
start = "{start}"
end = "{start + 2 * HOUR}"
slice = "1h"
time_source = "{source}"
{f"[window.{source}]" if body else ""}
{body}
[run]
workers = {workers}
quiet = true
{extra}
"""


def export(servers, tmp_path: Path, config: str, *flags, name: str = "job") -> dict:
    """Run `hbase2es export` with a config file; return its JSON report."""
    path = write_config(tmp_path / f"{name}.toml", config)
    report = tmp_path / f"{name}.report.json"
    run_cli(["export", "--config", path, "--hbase", servers.hbase, "--es", servers.es,
             "--report", report, *flags])
    return read_report(report)


def es_docs(es, index: str) -> dict[bytes, dict]:
    """Row key -> hit, for every document of the indices of ``index``."""
    es.indices.refresh(index=f"{index}-*", ignore_unavailable=True, allow_no_indices=True)
    resp = es.search(index=f"{index}-*", query={"match_all": {}}, size=1000, version=True,
                     ignore_unavailable=True, allow_no_indices=True)
    hits = resp["hits"]["hits"]
    docs = {row_key_from_id(h["_id"]): h for h in hits}
    assert len(docs) == len(hits), "a row key became two documents"
    return docs


def check_documents(es, index: str, expected: dict[bytes, int]) -> None:
    """ES holds exactly the expected rows, each dated, versioned and indexed by its own time."""
    docs = es_docs(es, index)
    assert sorted(docs) == sorted(expected)
    for key, key_time in expected.items():
        hit = docs[key]
        assert hit["_source"]["@timestamp"] == iso(key_time), key
        assert hit["_version"] == key_time, key
        assert hit["_index"] == f"{index}-{day(key_time)}", key


def drop_table(servers, name: str) -> None:
    """Delete a module's table on a fresh connection: the Thrift server closes idle ones."""
    import happybase

    conn = happybase.Connection(servers.hbase_host, servers.hbase_port, timeout=30000)
    try:
        if name.encode() in conn.tables():
            conn.delete_table(name, disable=True)
    finally:
        conn.close()


# --------------------------------------------------------------------------- row key


@pytest.fixture(scope="module")
def rowkey_table(servers):
    """One table holding every layout's rows (each layout's rows are the others' foreign
    rows), created once for the module; {layout name: {row key: key time or None}}."""
    import happybase

    name = f"t_rowkey_layouts_{uuid.uuid4().hex[:8]}"
    conn = happybase.Connection(servers.hbase_host, servers.hbase_port, timeout=30000)
    conn.create_table(name, {"cf": {"max_versions": 1}})
    table = conn.table(name)
    rows: dict[str, dict[bytes, int | None]] = {}
    try:
        with table.batch(timestamp=CELL_TS) as batch:
            for layout in ROWKEY_LAYOUTS:
                mine = rows[layout.name] = {}
                n = len(layout.salts)
                for j, t in enumerate(probes(layout.start)):
                    # Two rows per time in two buckets, so every bucket's range is read.
                    for bucket in sorted({j % n, (j + 1) % n}):
                        key = layout.prefix + layout.salts[bucket] + layout.encode(t) + b"#%d" % j
                        batch.put(key, {b"cf:v": b"%s-%d" % (layout.name.encode(), j)})
                        kt = layout.key_time(t)
                        mine[key] = kt if slice_of(kt, layout.start) is not None else None
                mid = layout.encode(layout.start + 30 * MINUTE)
                foreign = [layout.prefix + layout.salts[0] + mid[:-1]]  # a key one byte short
                if layout.prefix:  # another entity: same layout behind another prefix
                    foreign.append(layout.prefix[:-1] + b"#" + layout.salts[0] + mid)
                for key in foreign:
                    batch.put(key, {b"cf:v": b"foreign"})
                    mine[key] = None
        yield name, rows
    finally:
        conn.close()
        drop_table(servers, name)


@pytest.mark.parametrize("layout", ROWKEY_LAYOUTS, ids=[x.name for x in ROWKEY_LAYOUTS])
def test_rowkey_layout_exports_exactly_the_rows_of_each_slice(servers, es, index, tmp_path,
                                                             rowkey_table, layout):
    name, rows = rowkey_table
    expected = {k: t for k, t in rows[layout.name].items() if t is not None}
    per_slice = [sum(1 for t in expected.values() if slice_of(t, layout.start) == i)
                 for i in (0, 1)]
    assert per_slice[0] >= 2 and per_slice[1] >= 2  # the probes reach both slices

    # One worker: the slices' results do not depend on parallelism, and CPU is scarce.
    report = export(servers, tmp_path, config_text(name, index, layout.start, "rowkey",
                                                   layout.config, workers=1))

    assert report["exit_code"] == 0
    assert [s["rows"] for s in report["slices"]] == per_slice
    assert [s["indexed"] for s in report["slices"]] == per_slice
    assert report["region_split"]["regions"] == 1  # default on for row keys; one region here
    check_documents(es, index, expected)


def test_rowkey_plan_json_shows_hex_key_ranges_per_salt_bucket(servers, tmp_path, rowkey_table):
    name, _ = rowkey_table
    layout = next(x for x in ROWKEY_LAYOUTS if x.name == "ms_be_byte_salt")
    path = write_config(tmp_path / "plan.toml",
                        config_text(name, "plan", layout.start, "rowkey", layout.config))
    result = run_cli(["plan", "--config", path, "--hbase", servers.hbase, "--json",
                      "--split-by-region"])
    data = json.loads(result.stdout)
    assert data["time_source"] == "rowkey"
    s0, s1 = data["slices"]
    assert s0["ranges"] == [[(layout.prefix + bytes([i]) + struct.pack(">q", a)).hex(),
                             (layout.prefix + bytes([i]) + struct.pack(">q", b)).hex()]
                            for i in range(4) for a, b in [(W0, W0 + HOUR)]]
    assert s1["ranges"][3][1] == (layout.prefix + b"\x03" + struct.pack(">q", W0 + 2 * HOUR)).hex()
    # --split-by-region makes plan list the region tasks: the table's one region, one task.
    assert data["split_by_region"] is True and data["regions"] == 1
    assert s0["pieces"] == [["", ""]]


# --------------------------------------------------------------------------- column

# The ms column's window starts on a millisecond whose last byte is 0x27, a single quote:
# the filter string carries it (doubled) and 0x00 bytes to the server.
QUOTE_START = W0 - W0 % 256 + 0x27

COLUMN_LAYOUTS = [
    Layout("ms_be_quote", 'column = "cf:t1"', lambda t: struct.pack(">q", t), start=QUOTE_START),
    Layout("s_be", 'column = "cf:t2"\nencoding = "epoch_s_be"',
           lambda t: struct.pack(">I", t // 1000), floor_s),
    Layout("ms_text", 'column = "cf:t3"\nencoding = "epoch_ms_text"', lambda t: b"%013d" % t),
    Layout("strftime_off_second_window", 'column = "cf:t4"\nencoding = "strftime:%Y%m%d%H%M%S"',
           strftime_utc("%Y%m%d%H%M%S"), floor_s, start=W0 + 500),
    Layout("ms_be_reversed", 'column = "cf:t5"\nreversed = true',
           lambda t: struct.pack(">q", LONG_MAX - t)),
]


def test_column_layouts_export_exactly_the_rows_of_each_slice(servers, table, es, index,
                                                             tmp_path):
    assert struct.pack(">q", QUOTE_START)[-1:] == b"'" and b"\x00" in struct.pack(">q", QUOTE_START)
    expected: dict[str, dict[bytes, int]] = {}
    with table.batch(timestamp=CELL_TS) as batch:
        for n, layout in enumerate(COLUMN_LAYOUTS, start=1):
            column = b"cf:t%d" % n
            mine = expected[layout.name] = {}
            for j, t in enumerate(probes(layout.start)):
                key = uuid.uuid4().bytes  # random binary keys: no order to lean on
                batch.put(key, {column: layout.encode(t), b"cf:v": b"%d" % j})
                kt = layout.key_time(t)
                if slice_of(kt, layout.start) is not None:
                    mine[key] = kt
            # No time column, an undecodable one, and the time in another family.
            batch.put(uuid.uuid4().bytes, {b"cf:v": b"no time"})
            batch.put(uuid.uuid4().bytes, {column: layout.encode(layout.start)[:-1]})
            batch.put(uuid.uuid4().bytes, {b"meta:t%d" % n: layout.encode(layout.start)})

    for layout in COLUMN_LAYOUTS:
        # The strftime window starts 500 ms after a whole second: its first probe's key
        # names the second before the window, and the slice boundary rows shift likewise.
        mine = expected[layout.name]
        per_slice = [sum(1 for t in mine.values() if slice_of(t, layout.start) == i)
                     for i in (0, 1)]
        assert min(per_slice) >= 2
        job_index = f"{index}-{layout.name.replace('_', '-')}"
        report = export(servers, tmp_path, config_text(table_name(table), job_index,
                                                       layout.start, "column", layout.config,
                                                       workers=1),
                        name=layout.name)
        assert report["exit_code"] == 0, layout.name
        assert [s["rows"] for s in report["slices"]] == per_slice, layout.name
        assert "region_split" not in report  # off by default for the column source
        check_documents(es, job_index, mine)


# --------------------------------------------------------------------------- regions


def _region_splitter_command(name: str, first: bytes, last: bytes) -> list[str] | None:
    """HBase's RegionSplitter against the dev servers' config, or None if unavailable."""
    import devservers  # tools/ is on sys.path (conftest)

    conf = devservers.STATE / "hbase" / "conf"
    cp_file = devservers.STATE / "hbase.classpath"
    env = devservers.read_env()
    if not (conf.is_dir() and cp_file.exists()
            and env.get("HBASE2ES_TEST_HBASE") == os.environ.get("HBASE2ES_TEST_HBASE")):
        return None
    try:
        java = devservers.java_bin()
    except devservers.StartError:
        return None

    def binary(data: bytes) -> str:  # Bytes.toBytesBinary reads \xNN escapes
        return "".join(chr(b) if 32 <= b < 127 and b != 0x5C else f"\\x{b:02X}" for b in data)

    return [java, *devservers.HBASE_JVM_FLAGS, "-Xmx256m", "-cp",
            f"{conf}:{cp_file.read_text().strip()}", "org.apache.hadoop.hbase.util.RegionSplitter",
            name, "UniformSplit", "-c", "4", "-f", "cf", "--firstrow", binary(first),
            "--lastrow", binary(last)]


@pytest.fixture(scope="module")
def split_table(servers):
    """A table pre-split into 4 regions between the keys of W0 and W0 + 2h, holding rows
    keyed by 8-byte ms times whose cell timestamp is that same time.

    Yields (table name, region list, {row key: time}).
    """
    import happybase

    name = f"t_split_{uuid.uuid4().hex[:8]}"
    command = _region_splitter_command(name, struct.pack(">q", W0),
                                       struct.pack(">q", W0 + 2 * HOUR))
    if command is None:
        require_or_skip("needs the dev servers' HBase config and jars (RegionSplitter) "
                        "to pre-split a table")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=180)
    conn = happybase.Connection(servers.hbase_host, servers.hbase_port, timeout=30000)
    try:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        table = conn.table(name)
        deadline = time.monotonic() + 60
        while len(table.regions()) != 4 and time.monotonic() < deadline:
            time.sleep(0.5)
        regions = sorted(table.regions(), key=lambda r: r["start_key"])
        assert len(regions) == 4
        times = list(range(W0 - 10 * MINUTE, W0 + 2 * HOUR + 10 * MINUTE, 7 * MINUTE + 13))
        times += probes(W0)
        for region in regions[1:]:  # rows exactly on each region boundary and 1 ms before
            at = struct.unpack(">q", region["start_key"][:8].ljust(8, b"\x00"))[0]
            times += [at, at - 1]
        rows = {}
        for t in sorted(set(times)):  # cell timestamp = key time: the cell source agrees
            key = struct.pack(">q", t)
            table.put(key, {b"cf:v": b"%d" % t}, timestamp=t)
            rows[key] = t
        yield name, regions, rows
    finally:
        conn.close()
        drop_table(servers, name)


@pytest.mark.slow
@pytest.mark.parametrize("source, flag", [
    ("rowkey", None),  # default: split
    ("rowkey", "--no-split-by-region"),
    ("cell", "--split-by-region"),
    ("cell", None),  # default: one pass per region
    ("cell", "--no-one-pass"),  # per slice: not split by default
])
def test_region_split_counts_are_exact_and_pieces_spread_over_workers(
        servers, es, index, tmp_path, split_table, source, flag):
    name, regions, rows = split_table
    expected = {k: t for k, t in rows.items() if slice_of(t, W0) is not None}
    per_slice = [sum(1 for t in expected.values() if slice_of(t, W0) == i) for i in (0, 1)]
    body = 'encoding = "epoch_ms_be"' if source == "rowkey" else ""
    config = config_text(name, index, W0, source, body)
    report = export(servers, tmp_path, config, *([flag] if flag else []))

    assert report["exit_code"] == 0
    assert [s["rows"] for s in report["slices"]] == per_slice
    assert [s["indexed"] for s in report["slices"]] == per_slice
    assert all(s["status"] == "done" for s in report["slices"])
    split = report.get("region_split")
    if flag in ("--no-split-by-region", "--no-one-pass"):
        assert split is None
    else:
        assert split["regions"] == 4
        bounds = [(r["start_key"], r["end_key"]) for r in regions]
        if source == "cell":  # the whole-table scan of each slice: one piece per region
            assert [s["pieces"] for s in split["slices"]] == [4, 4]
        else:  # only the regions a slice's key range touches
            want = [sum(1 for lo, hi in bounds
                        if (not hi or struct.pack(">q", a) < hi) and lo < struct.pack(">q", b))
                    for a, b in [(W0, W0 + HOUR), (W0 + HOUR, W0 + 2 * HOUR)]]
            assert [s["pieces"] for s in split["slices"]] == want
            assert sum(want) > 2  # a region boundary falls inside a slice
        # Pieces of one slice ran on both workers.
        assert max(s["workers"] for s in split["slices"]) == 2
    docs = es_docs(es, index)
    assert sorted(docs) == sorted(expected)
    for key, t in expected.items():
        assert docs[key]["_version"] == t
