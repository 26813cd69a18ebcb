"""`hbase2es init` against the real servers: a table with a column per encoding, then the
job file it writes is used as it is, by plan, export and verify.

Values are written with struct and plain formatting, the way Java's Bytes.toBytes and
applications write them. Also here: the export's refresh at the end (the documents are
searchable right after it returns, on an index whose own refresh is off, so nothing else
could have made them searchable), and init's bad input.
"""

from __future__ import annotations

import json
import logging
import struct
import tomllib

import pytest
from helpers import T0, count_docs, free_port, put_row, run_cli, table_name, write_config

from hbase2es.jobfile import index_from_table
from hbase2es.settings import load_settings

pytestmark = pytest.mark.integration

ROWS = 60
MINUTE = 60_000
# Column -> (the type init must propose, the value of row i).
ENCODINGS = {
    "cf:long": ("long", lambda i: struct.pack(">q", i * 1_000_003 - 5)),
    "cf:int": ("int", lambda i: struct.pack(">i", -i * 77)),
    "cf:short": ("short", lambda i: struct.pack(">h", i)),
    "cf:double": ("double", lambda i: struct.pack(">d", i * 1.25 + 0.5)),
    "cf:float": ("float", lambda i: struct.pack(">f", i + 0.75)),
    "cf:flag": ("boolean", lambda i: bytes([i % 2])),
    "cf:attrs": ("json", lambda i: json.dumps({"n": i, "tags": ["a", "b"]}).encode()),
    "cf:count": ("text_int", lambda i: str(i * 13).encode()),
    "cf:price": ("text_float", lambda i: f"{i}.{i % 10}9".encode()),
    "meta:city": ("string", lambda i: f"Zürich {i}".encode()),
    "meta:blob": ("bytes", lambda i: bytes([0xFF, i % 256, 0x00, 0xFE, i * 3 % 256])),
    # Mostly longs; every sixth value is text: long, with misfits.
    "cf:mixed": ("long", lambda i: b"n/a" if i % 6 == 0 else struct.pack(">q", i)),
}
MISFITS = len([i for i in range(ROWS) if i % 6 == 0])


def _fill(table, rows: int = ROWS) -> None:
    for i in range(rows):
        cells = {column.encode(): value(i) for column, (_, value) in ENCODINGS.items()}
        put_row(table, b"user-%05d" % (i * 7919 % 100_000), cells, T0 + i * MINUTE)


def _init(servers, table, path, *extra, expect_exit=0):
    return run_cli(["init", "--hbase", servers.hbase, "--table", table_name(table),
                    "--es", servers.es, "-o", str(path), *extra], expect_exit=expect_exit)


@pytest.fixture
def job_index(es, table):
    """The index the job file names (from the table name), deleted afterwards."""
    name = index_from_table(table_name(table))
    try:
        yield name
    finally:
        es.indices.delete(index=f"{name}*", ignore_unavailable=True, allow_no_indices=True)


def _columns(path) -> dict[str, str]:
    data = tomllib.loads(path.read_text())
    return {column: spec["type"] for column, spec in data["mapping"]["columns"].items()}


def test_init_proposes_the_type_of_each_encoding(servers, table, es, job_index, tmp_path):
    _fill(table)
    job = tmp_path / "job.toml"
    out = _init(servers, table, job).stdout
    assert _columns(job) == {column: t for column, (t, _) in ENCODINGS.items()}
    mixed = next(line for line in job.read_text().splitlines() if line.startswith('"cf:mixed"'))
    assert f"{MISFITS} misfit(s) (string: {MISFITS})" in mixed and '"n/a"' in mixed
    # The job loads as an export loads it, and init wrote nothing to Elasticsearch.
    settings = load_settings(job, now_ms=T0)
    assert settings.window.time_source == "cell"
    assert settings.start_ms <= T0 < T0 + (ROWS - 1) * MINUTE < settings.end_ms
    assert settings.elasticsearch.index == job_index
    assert not es.indices.exists(index=job_index)
    assert out.splitlines()[-2:] == [f"  hbase2es plan --config {job} --sample 3",
                                     f"  hbase2es export --config {job}"]


def test_the_job_file_exports_typed_documents_as_it_is(servers, table, es, job_index, tmp_path):
    _fill(table)
    job = tmp_path / "job.toml"
    _init(servers, table, job)
    before = job.read_text()
    plan = run_cli(["plan", "--config", job, "--sample", "3"]).stdout
    assert "sample " in plan
    run_cli(["export", "--config", job, "--quiet"])
    es.indices.refresh(index=job_index)
    hits = es.search(index=job_index, size=ROWS, query={"match_all": {}})["hits"]["hits"]
    assert len(hits) == ROWS
    doc = next(h["_source"] for h in hits if h["_id"] == "user-%05d" % (5 * 7919 % 100_000))
    assert doc["long"] == 5 * 1_000_003 - 5 and doc["int"] == -385 and doc["short"] == 5
    assert doc["double"] == 6.75 and doc["float"] == 5.75 and doc["flag"] is True
    assert doc["attrs"] == {"n": 5, "tags": ["a", "b"]}
    assert doc["count"] == 65 and doc["price"] == 5.59 and doc["city"] == "Zürich 5"
    assert doc["blob"] == "/wUA/g8=" and doc["mixed"] == 5
    assert doc["@timestamp"] == "2023-11-14T22:18:20.000Z"
    # A misfit value is left out of its document; the rest of the row is there.
    first = next(h["_source"] for h in hits if h["_id"] == "user-00000")
    assert "mixed" not in first and first["long"] == -5
    mapping = es.indices.get_mapping(index=job_index)[job_index]["mappings"]["properties"]
    assert mapping["count"]["type"] == "long" and mapping["@timestamp"]["type"] == "date"
    assert mapping["city"]["type"] == "keyword"
    result = run_cli(["verify", "--config", job, "--compare-fields"])
    assert f"all {ROWS} checked rows have their document with the same fields" in result.stdout
    assert job.read_text() == before


@pytest.mark.parametrize("layout", ["byte-salt", "decimal-salt"])
def test_a_row_key_time_is_found_with_its_salt_and_prefix(servers, table, es, job_index,
                                                          tmp_path, layout):
    for i in range(ROWS):
        t = T0 + i * 7 * MINUTE + i
        if layout == "byte-salt":
            key = b"evt|" + bytes([i % 6]) + struct.pack(">q", t) + b"#%d" % i
        else:
            key = b"%02d|%d|dev%d" % (i % 12, t // 1000, i)
        put_row(table, key, {"cf:v": b"%d" % i}, t + 250)
    job = tmp_path / "job.toml"
    _init(servers, table, job)
    window = tomllib.loads(job.read_text())["window"]
    assert window["time_source"] == "rowkey"
    expected = ({"encoding": "epoch_ms_be", "prefix": "evt|", "salt_buckets": 6,
                 "salt_format": "byte", "salt_separator": ""} if layout == "byte-salt" else
                {"encoding": "epoch_s_text", "prefix": "", "salt_buckets": 12,
                 "salt_format": "decimal", "salt_separator": "|"})
    assert {k: window["rowkey"][k] for k in expected} == expected
    run_cli(["export", "--config", job, "--quiet"])
    assert count_docs(es, job_index) == ROWS


def _no_refresh_index(es, name: str) -> None:
    es.indices.create(index=name, settings={"refresh_interval": "-1"})


def test_documents_are_searchable_when_the_export_returns(servers, table, es, job_index,
                                                          tmp_path):
    _fill(table, 20)
    job = tmp_path / "job.toml"
    _init(servers, table, job)
    # Refresh off on the index itself: only the export's refresh can show the documents.
    _no_refresh_index(es, job_index)
    run_cli(["export", "--config", job, "--quiet"])
    assert es.count(index=job_index)["count"] == 20
    hits = es.search(index=job_index, query={"range": {"long": {"gte": 5 * 1_000_003 - 5}}},
                     size=50)["hits"]["hits"]
    assert len(hits) == 15  # numbers were sent as numbers: rows 5 to 19


def test_no_refresh_leaves_the_documents_unsearchable(servers, table, es, job_index, tmp_path):
    _fill(table, 20)
    job = tmp_path / "job.toml"
    _init(servers, table, job)
    _no_refresh_index(es, job_index)
    run_cli(["export", "--config", job, "--quiet", "--no-refresh"])
    assert es.count(index=job_index)["count"] == 0
    assert count_docs(es, job_index) == 20  # after a refresh of our own


def test_refresh_can_be_turned_off_in_the_file(servers, table, es, job_index, tmp_path):
    _fill(table, 5)
    job = tmp_path / "job.toml"
    _init(servers, table, job)
    _no_refresh_index(es, job_index)
    config = write_config(tmp_path / "off.toml",
                          job.read_text().replace("[run]\n", "[run]\nrefresh = false\n"))
    run_cli(["export", "--config", config, "--quiet"])
    assert es.count(index=job_index)["count"] == 0


# --------------------------------------------------------------------------- bad input


def test_an_existing_job_file_needs_force(servers, table, tmp_path):
    _fill(table, 3)
    job = tmp_path / "job.toml"
    job.write_text("# mine\n")
    result = _init(servers, table, job, expect_exit=2)
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert job.read_text() == "# mine\n"
    _init(servers, table, job, "--force")
    assert "cf:long" in _columns(job)


def test_unreachable_servers_and_a_missing_table_exit_3(servers, table, tmp_path):
    _fill(table, 3)
    job = tmp_path / "job.toml"
    result = run_cli(["init", "--hbase", f"127.0.0.1:{free_port()}", "--table", "t",
                      "-o", job], expect_exit=3)
    assert "cannot reach" in result.stderr
    result = run_cli(["init", "--hbase", servers.hbase, "--table", "no_such_table_22",
                      "-o", job], expect_exit=3)
    assert "does not exist" in result.stderr
    result = run_cli(["init", "--hbase", servers.hbase, "--table", table_name(table),
                      "--es", f"http://127.0.0.1:{free_port()}", "-o", job], expect_exit=3)
    assert "Elasticsearch" in result.stderr
    assert not job.exists()


@pytest.mark.parametrize("sample", ["0", "-5", "many"])
def test_a_sample_size_below_one_exits_2(tmp_path, sample):
    result = run_cli(["init", "--hbase", f"127.0.0.1:{free_port()}", "--table", "t",
                      "--sample", sample, "-o", tmp_path / "job.toml"], expect_exit=2)
    assert "--sample" in result.stderr


def test_an_empty_table_still_gives_a_job_that_runs(servers, table, es, job_index, tmp_path):
    job = tmp_path / "job.toml"
    out = _init(servers, table, job).stdout
    assert "no rows (empty table)" in out
    assert "No rows were sampled" in job.read_text()
    run_cli(["export", "--config", job, "--quiet"])
    assert count_docs(es, job_index) == 0


def test_a_small_sample_counts_the_whole_table(servers, table, job_index, tmp_path):
    _fill(table, 300)
    job = tmp_path / "job.toml"
    out = _init(servers, table, job, "--sample", "40").stdout
    assert "from 40 sampled rows" in out
    assert "for 300 rows in the table (counted exactly)" in job.read_text()


def test_wide_rows_list_500_columns_and_include_the_rest(servers, table, job_index, tmp_path):
    for r in range(3):
        put_row(table, f"wide{r}", {f"cf:q{q:04d}": str(q) for q in range(620)}, T0 + r)
    job = tmp_path / "job.toml"
    _init(servers, table, job)
    text = job.read_text()
    assert len(_columns(job)) == 500
    assert "120 more column(s) seen are not listed" in text
    assert tomllib.loads(text)["mapping"]["unmapped"] == "include"
    assert len(load_settings(job, now_ms=T0).mapping.columns) == 500


def test_a_failed_refresh_is_a_warning_not_a_failure():
    # Documents written, then the cluster is gone: the run's result stands.
    from hbase2es.run.export import refresh_written
    from hbase2es.run.report import RunReport, SliceReport
    from hbase2es.timewindow import Slice

    settings = load_settings(None, {"hbase.table": "t", "elasticsearch.index": "i",
                                    "elasticsearch.hosts": (f"http://127.0.0.1:{free_port()}",),
                                    "window.start": str(T0), "window.end": str(T0 + 2000)},
                             now_ms=T0)
    written, empty = SliceReport(Slice(0, T0, T0 + 1000)), SliceReport(Slice(1, T0 + 1000,
                                                                              T0 + 2000))
    written.indexed = 3
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger = logging.getLogger("hbase2es")
    logger.addHandler(handler)
    try:
        assert refresh_written(settings, RunReport([written, empty])) == ["i"]
    finally:
        logger.removeHandler(handler)
    assert [r.levelno for r in seen] == [logging.WARNING]
    assert "could not refresh i" in seen[0].getMessage()
    assert refresh_written(settings, RunReport([empty])) == []  # nothing written: no call
