"""Every way of reading cell-time slices writes the same documents (issue 15).

The same table is exported through Thrift1 once per slice, Thrift1 in one pass (the
default), one pass split by region, Thrift2 chosen by ``api = "auto"``, and Thrift2 with
each key span forced to multi-gets (sparse) or to one range scan (dense); the documents
(source and version) must be identical. The data holds rows that changed in two
slices, rows changed after the window's end, rows only older or only newer than the
window, boundary rows, a dense key span (every row changed) and a sparse one (few did).
Also: one pass reads each row about once, a killed pass resumes to the same documents,
a Thrift2 server that does not answer is one warning, and plan's read warning.
"""

from __future__ import annotations

import os
import random
import signal

import pytest
from faults import ExportProcess, alive, load_rows, wait_for, worker_pids
from helpers import (T0, count_docs, export_args, free_port, put_row, read_index, read_report,
                     run_cli, table_name, write_config)

from hbase2es.errors import ExitCode
from hbase2es.run.export import run_export
from hbase2es.run.onepass import PassTask, group_passes, slot_finder
from hbase2es.run.pieces import Checkpoint, SliceTask
from hbase2es.run.slicejob import SliceExporter
from hbase2es.settings import load_settings
from hbase2es.timewindow import Slice, split_window

integration = pytest.mark.integration
START, SLICE_MS, N_SLICES = T0, 1000, 4
END = START + SLICE_MS * N_SLICES


# --------------------------------------------------------------------------- pure parts


def test_group_passes_joins_consecutive_slices_of_one_key_range():
    s = split_window(START, END, SLICE_MS)
    resumed = SliceTask(s[2], resume=Checkpoint(b"k", rows=3))
    tasks = [s[0], s[1], resumed, s[3]]
    passes, members = group_passes(tasks)
    # A resumed slice runs alone and breaks the run; a run of one stays a plain slice.
    assert passes == [PassTask((s[0], s[1])), resumed, s[3]]
    assert members == [[0, 1], [2], [3]]
    # Region pieces: one pass per key range, each over all the slices.
    pieces = [SliceTask(x, lo, hi) for x in s for lo, hi in ((b"", b"m"), (b"m", b""))]
    passes, members = group_passes(pieces)
    assert [(p.row_start, p.row_stop, len(p.slices)) for p in passes] == [
        (b"", b"m", 4), (b"m", b"", 4)]
    assert members == [[0, 2, 4, 6], [1, 3, 5, 7]]
    # A gap (a done slice in between) starts a new pass.
    passes, _ = group_passes([s[0], s[1], s[3]])
    assert passes == [PassTask((s[0], s[1])), s[3]]


def test_slot_finder_puts_a_time_in_its_slice_and_nothing_outside():
    s = tuple(split_window(START, END, SLICE_MS))
    slot = slot_finder(s)
    assert [slot(t) for t in (START, START + 999, START + 1000, END - 1)] == [0, 0, 1, 3]
    assert slot(START - 1) is None and slot(END) is None


def _plan(*extra, expect_exit=0):
    return run_cli(["plan", "--table", "t", "--index", "i", "--start", str(START), "--end",
                    str(START + 24 * 3_600_000), "--slice", "1h", *extra],
                   expect_exit=expect_exit)


def _read_warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if "rows per document" in line]


def test_plan_warns_once_when_the_path_reads_many_rows_per_document():
    result = _plan("--no-one-pass")
    [line] = _read_warnings(result)
    assert "~12.5 rows per document" in line and "one_pass = true" in line, line
    assert "thrift1 per slice: read ~24, write ~1" in result.stdout


def test_plan_does_not_warn_on_the_default_path_or_over_thrift2():
    for extra in ((), ("--thrift2", "127.0.0.1:9091"), ("--no-one-pass", "--thrift2",
                                                         "127.0.0.1:9091")):
        result = _plan(*extra)
        assert _read_warnings(result) == [], (extra, result.stderr)
        assert "read ~1, write ~1" in result.stdout
    assert "thrift2 [start, end)" in _plan("--thrift2", "127.0.0.1:9091").stdout


def test_plan_of_an_increment_over_thrift1_warns_about_history(tmp_path):
    ledger = ["--incremental", "--ledger", str(tmp_path / "job.db")]
    [line] = [w for w in _plan(*ledger).stderr.splitlines() if "whole history" in w]
    assert "thrift2" in line, line
    result = _plan(*ledger, "--thrift2", "127.0.0.1:9091")
    assert "whole history" not in result.stderr and not _read_warnings(result)


def test_plan_under_spark_warns_and_names_thrift2(tmp_path):
    config = write_config(tmp_path / "spark.toml", '[run]\nexecutor = "spark"\n')
    [line] = _read_warnings(_plan("--config", config))
    assert "thrift2" in line and "Spark" in line, line


def test_a_bad_thrift2_address_is_one_line_and_exit_2():
    result = _plan("--thrift2", "nohostport", expect_exit=2)
    assert "hbase.thrift2" in result.stderr and "Traceback" not in result.output


# --------------------------------------------------------------------------- integration


def _load(table) -> None:
    """Rows the strategies could disagree on, in two key spans: dense and sparse."""
    rng = random.Random(15)
    puts = [
        ("b_before_window", {"cf:k": "x"}, START - 1),
        ("b_window_start", {"cf:k": "x"}, START),
        ("b_on_boundary", {"cf:k": "x"}, START + SLICE_MS),
        ("b_last_ms", {"cf:k": "x"}, END - 1),
        ("b_window_end", {"cf:k": "x"}, END),
        # Changed in two slices: one pass counts it in slice 2 only; same document.
        ("c_two_slices", {"cf:state": "old", "cf:since": "s0"}, START + 100),
        ("c_two_slices", {"cf:state": "new"}, START + 2 * SLICE_MS + 100),
        # Changed in the window and after its end: the state as of the end.
        ("c_after_end", {"cf:state": "in"}, START + SLICE_MS + 5),
        ("c_after_end", {"cf:state": "after"}, END + 500),
        ("c_old_then_after", {"cf:state": "old"}, START - 5000),
        ("c_old_then_after", {"cf:state": "after"}, END + 1),
    ]
    for i in range(40):  # dense: every row changed in the window, over older versions
        key = f"d{i:03d}"
        puts.append((key, {"cf:v": f"{key}-old", "meta:m": "m"}, START - 3000))
        for _ in range(rng.randint(1, 3)):
            ts = rng.randrange(START, END + 800)
            puts.append((key, {rng.choice(["cf:v", "cf:w"]): f"{key}@{ts}"}, ts))
    for i in range(120):  # sparse: old rows, a few changed in the window
        key = f"s{i:03d}"
        puts.append((key, {"cf:v": f"{key}-old"}, START - 10_000 + i))
        if i % 30 == 7:
            puts.append((key, {"cf:v": f"{key}-new"}, START + rng.randrange(0, END - START)))
    for key, cells, ts in puts:
        put_row(table, key, cells, ts)


def _settings(servers, table, index: str, **keys):
    host, port = servers.hbase.rsplit(":", 1)
    return load_settings(None, {
        "hbase.host": host, "hbase.port": int(port), "hbase.table": table_name(table),
        "elasticsearch.hosts": [servers.es], "elasticsearch.index": index,
        "window.start": str(START), "window.end": str(END), "window.slice": "1s",
        "run.workers": 2, "run.quiet": True, "hbase.batch_size": 7, **keys}, now_ms=T0)


def _docs(es, index: str) -> dict:
    return {k: (h["_source"], h["_version"]) for k, h in read_index(es, index).items()}


def _in_process(settings, dense_factor: int) -> list:
    """Export slice by slice in this process, so the Thrift2 reader's path can be forced."""
    exporter = SliceExporter(settings)
    try:
        exporter.reader.dense_factor = dense_factor
        results = [exporter.run(s) for s in split_window(START, END, SLICE_MS)]
        return results, exporter.reader.spans_scanned
    finally:
        exporter.close()


@integration
def test_every_strategy_writes_the_same_documents(servers, thrift2_address, table, es, index):
    _load(table)
    reports = {}
    for name, keys in (("perslice", {"hbase.api": "thrift1", "run.one_pass": False}),
                       ("onepass", {}),
                       ("regions", {"run.split_by_region": True}),
                       ("auto2", {"hbase.thrift2": thrift2_address})):
        report = run_export(_settings(servers, table, f"{index}-{name}", **keys))
        assert report.exit_code == ExitCode.OK, name
        reports[name] = report
    assert reports["auto2"].read == {"api": "thrift2", "path": "thrift2 [start, end)"}
    assert reports["onepass"].read == reports["regions"].read == {
        "api": "thrift1", "path": "thrift1 one pass"}
    host, port = thrift2_address.rsplit(":", 1)
    for name, factor in (("sparse", 0), ("dense", 10 ** 6)):
        settings = _settings(servers, table, f"{index}-{name}", **{
            "hbase.api": "thrift2", "hbase.host": host, "hbase.port": int(port)})
        results, spans = _in_process(settings, factor)
        assert (spans > 0) == (name == "dense"), (name, spans)
        reports[name] = results

    docs = {name: _docs(es, f"{index}-{name}") for name in reports}
    expected = docs["perslice"]
    assert {"b_window_start", "b_on_boundary", "b_last_ms", "c_two_slices", "c_after_end",
            "s007", "s037", "s067", "s097"} <= set(expected)
    assert len([k for k in expected if k.startswith("d")]) >= 30  # the dense span
    assert not {"b_before_window", "b_window_end", "c_old_then_after", "s000"} & set(expected)
    assert expected["c_after_end"][0]["cf:state"] == "in"
    assert expected["c_two_slices"][0]["cf:state"] == "new"
    for name, got in docs.items():
        assert got == expected, f"{name} differs from the per-slice export"

    def rows(name):
        r = reports[name]
        return [s.rows for s in (r.slices if hasattr(r, "slices") else r)]
    # Per slice, a row that changed in two slices counts in both; one pass counts each
    # row once, in the slice of its newest cell before the end (like Thrift2 does not).
    assert rows("perslice") == rows("sparse") == rows("dense")
    assert sum(rows("onepass")) == sum(rows("regions")) == len(expected) < sum(rows("perslice"))


@integration
def test_one_pass_reads_each_row_about_once(servers, table, tmp_path, index):
    n_slices = 8
    load_rows(table, 400, START, n_slices, SLICE_MS)
    read = {}
    for name, extra in (("onepass", []), ("perslice", ["--no-one-pass"])):
        report = tmp_path / f"{name}.json"
        run_cli(export_args(servers, table_name(table), f"{index}-{name}", START,
                            START + n_slices * SLICE_MS, "1s", "--quiet", "--report", report,
                            *extra))
        data = read_report(report)
        assert data["read"] == {"api": "thrift1", "path": {
            "onepass": "thrift1 one pass", "perslice": "thrift1 per slice"}[name]}
        slices = data["slices"]
        docs = sum(s["indexed"] for s in slices)
        assert docs == 400, name
        read[name] = sum(s["rows_read"] for s in slices) / docs
    assert read["onepass"] <= 1.1, read
    assert read["perslice"] >= 4, read  # (8 + 1) / 2 over a table holding only the window


@integration
def test_a_thrift2_server_that_does_not_answer_is_one_warning(servers, table, es, index,
                                                               tmp_path):
    put_row(table, "r1", {"cf:a": "x"}, START + 10)
    port = free_port()
    report = tmp_path / "report.json"
    result = run_cli(export_args(servers, table_name(table), index, START, END, "1s",
                                 "--quiet", "--thrift2", f"127.0.0.1:{port}", "--report", report))
    assert read_report(report)["read"] == {"api": "thrift1", "path": "thrift1 one pass"}
    lines = [line for line in result.stderr.splitlines() if "did not answer" in line]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert set(read_index(es, index)) == {"r1"}


@integration
@pytest.mark.slow
def test_a_killed_pass_resumes_to_the_same_documents(servers, table, es, index, tmp_path):
    rows, slice_ms = 3000, 60_000
    start = START - START % slice_ms
    load_rows(table, rows, start, 4, slice_ms)
    config = write_config(tmp_path / "job.toml", """
[elasticsearch]
bulk_docs = 100
[run]
max_attempts = 1
max_docs_per_second = 400
""")
    ledger = tmp_path / "job.db"
    args = ["export", "--config", config, "--hbase", servers.hbase, "--table", table_name(table),
            "--es", servers.es, "--index", f"{index}-pass", "--start", str(start),
            "--end", str(start + 4 * slice_ms), "--slice", "1m", "--workers", "1",
            "--ledger", ledger, "--quiet"]
    with ExportProcess(args, tmp_path, "killed") as run:
        [worker] = wait_for(lambda: worker_pids(run.pid), 60, "the worker")
        wait_for(lambda: (not run.running()) or count_docs(es, f"{index}-pass") >= 500, 60,
                 "500 documents", interval=0.2)
        assert run.running(), f"the export ended before the kill\n{run.output()}"
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: not alive(worker), 10, "the worker to die")
        assert run.wait(60) == 1, run.output()
    assert count_docs(es, f"{index}-pass") < rows
    report = tmp_path / "resumed.json"
    with ExportProcess(args + ["--resume", "--report", report], tmp_path, "resume") as again:
        assert again.wait(120) == 0, again.output()
    slices = read_report(report)["slices"]
    # No slice of the pass was done at the kill: all four ran again, as one pass.
    assert [s["status"] for s in slices] == ["done"] * 4
    assert sum(s["rows"] for s in slices) == rows
    reference = tmp_path / "reference.json"
    run_cli(export_args(servers, table_name(table), f"{index}-ref", start,
                        start + 4 * slice_ms, "1m", "--quiet", "--no-one-pass",
                        "--report", reference))
    assert count_docs(es, f"{index}-pass") == count_docs(es, f"{index}-ref") == rows
    got = es.search(index=f"{index}-pass", size=rows, version=True, sort=["_doc"])["hits"]["hits"]
    ref = es.search(index=f"{index}-ref", size=rows, version=True, sort=["_doc"])["hits"]["hits"]
    assert ({h["_id"]: (h["_source"], h["_version"]) for h in got}
            == {h["_id"]: (h["_source"], h["_version"]) for h in ref})


@integration
@pytest.mark.parametrize("cache_blocks", [False, True])
def test_slice_scans_send_cache_blocks_to_both_apis(servers, thrift2_address, table,
                                                    cache_blocks):
    """The scans reach the real servers with the setting (recorded on the way there)."""
    from hbase2es.hbase import open_reader
    from hbase2es.settings import HBaseSettings

    put_row(table, "r1", {"cf:a": "x"}, START + 10)
    sent = []
    for api, address in (("thrift1", servers.hbase), ("thrift2", thrift2_address)):
        host, port = address.rsplit(":", 1)
        reader = open_reader(HBaseSettings(host=host, port=int(port), table=table_name(table),
                                           api=api, cache_blocks=cache_blocks))
        try:
            reader._open()
            client = reader._conn.client if api == "thrift1" else reader._conn
            name = "scannerOpenWithScan" if api == "thrift1" else "openScanner"
            real = getattr(client, name)

            def record(table_name_, scan, *rest, real=real):
                sent.append((api, scan.cacheBlocks))
                return real(table_name_, scan, *rest)
            setattr(client, name, record)
            rows = list(reader.scan(timestamp=END, min_timestamp=START))
        finally:
            reader.close()
        assert [key for key, _, _ in rows] == [b"r1"], api
    # Thrift2: the key-only scan and the span's range scan; Thrift1: the one scan.
    assert {a for a, _ in sent} == {"thrift1", "thrift2"}
    assert all(flag is cache_blocks for _, flag in sent), sent


def test_cache_blocks_is_off_unless_the_file_says_so(tmp_path):
    base = {"hbase.table": "t", "elasticsearch.index": "i", "window.start": str(START),
            "window.end": str(END)}
    assert load_settings(None, base, now_ms=T0).hbase.cache_blocks is False
    config = write_config(tmp_path / "c.toml", "[hbase]\ncache_blocks = true\n")
    assert load_settings(config, base, now_ms=T0).hbase.cache_blocks is True
