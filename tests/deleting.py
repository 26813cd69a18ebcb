"""What the delete tests share: one job per time source, rows put the way each source
reads them, and the documents Elasticsearch holds.

The window [W0, W0 + 2h) crosses midnight UTC, so with the ``-{time:%Y.%m.%d}`` index
template its two one-hour slices write to two indices. Row keys and time columns are
built here with struct, not with the codecs under test; row-key and column rows carry
cell timestamps from 1970, so a cell-time reading would find none of them.
"""

from __future__ import annotations

import struct
import time
from datetime import datetime, timezone
from pathlib import Path

from helpers import put_row, write_config

HOUR = 3_600_000
MINUTE = 60_000
W0 = int(datetime(2023, 11, 14, 23, tzinfo=timezone.utc).timestamp() * 1000)
W_END = W0 + 2 * HOUR
CELL_TS = 1_000_000  # 1970: outside every window
SOURCES = ("cell", "rowkey", "column")
ROWKEY_PREFIX = b"k|"
TIME_COLUMN = "cf:t"

SOURCE_CONFIG = {
    "cell": 'time_source = "cell"',
    "rowkey": f'time_source = "rowkey"\n[window.rowkey]\nprefix = "{ROWKEY_PREFIX.decode()}"',
    "column": f'time_source = "column"\n[window.column]\ncolumn = "{TIME_COLUMN}"',
}


def now_ms() -> int:
    return int(time.time() * 1000)


def row_time(i: int, rows: int = 20) -> int:
    """Row i of ``rows`` spread over the window: the first half in slice 0."""
    return W0 + i * (2 * HOUR // rows) + 7


def key_of(source: str, i: int, t: int) -> bytes:
    """The row key of row i at time t: text for cell and column, binary for rowkey."""
    if source == "rowkey":
        return ROWKEY_PREFIX + struct.pack(">q", t) + b"#%02d" % i
    return b"row%02d" % i


def put(table, source: str, i: int, t: int, cells: dict | None = None,
        cell_ts: int | None = None) -> bytes:
    """Put row i so that ``source`` reads time t from it; returns its key."""
    key = key_of(source, i, t)
    values = {"cf:v": f"value {i}", **(cells or {})}
    if source == "column":
        values[TIME_COLUMN] = struct.pack(">q", t)
    ts = cell_ts if cell_ts is not None else (t if source == "cell" else CELL_TS)
    put_row(table, key, values, ts)
    return key


def load(table, source: str, times: list[int]) -> list[bytes]:
    """Rows 0..n-1 at ``times`` in batches (fast for thousands of rows); their keys."""
    keys = []
    by_ts: dict[int, list[tuple[bytes, dict]]] = {}
    for i, t in enumerate(times):
        key = key_of(source, i, t)
        values = {b"cf:v": b"value %d" % i}
        if source == "column":
            values[TIME_COLUMN.encode()] = struct.pack(">q", t)
        by_ts.setdefault(t if source == "cell" else CELL_TS, []).append((key, values))
        keys.append(key)
    for ts, rows in by_ts.items():
        with table.batch(timestamp=ts, batch_size=2000) as batch:
            for key, values in rows:
                batch.put(key, values)
    return keys


def job(tmp_path: Path, servers, table: str, index: str, source: str, *, hbase: str | None = None,
        api: str = "thrift1", start: int = W0, end: int = W_END, slice_: str = "1h",
        mapping: str = "", es_extra: str = "", run_extra: str = "", name: str = "job") -> str:
    """A job file for ``source``; ``*_extra`` are lines of [elasticsearch] and [run]."""
    host, port = (hbase or servers.hbase).rsplit(":", 1)
    return write_config(tmp_path / f"{name}.toml", f"""
[hbase]
host = "{host}"
port = {port}
table = "{table}"
api = "{api}"
[elasticsearch]
hosts = ["{servers.es}"]
index = "{index}"
{es_extra}
[window]
start = "{start}"
end = "{end}"
slice = "{slice_}"
{SOURCE_CONFIG[source]}
[run]
workers = 2
quiet = true
{run_extra}
[mapping]
{mapping}
""")
