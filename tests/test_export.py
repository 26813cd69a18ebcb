"""`hbase2es export` end to end against the real HBase (Thrift1) and Elasticsearch.

Every test puts rows with explicit cell timestamps, runs the CLI in-process (CliRunner;
the export itself still runs in spawned worker processes), then reads back what
Elasticsearch holds. Windows are a few seconds of epoch ms cut into 1 s slices.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from helpers import (T0, clean_env, count_docs, export_args, free_port, put_row, read_index,
                     read_report, run_cli, table_name, write_config)

import hbase2es.run.executors as executors_module
import hbase2es.run.export as export_module
from hbase2es.mapping import row_key_from_id
from hbase2es.pool import Pool, Started

pytestmark = pytest.mark.integration

ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{ms % 1000:03d}Z"


def _export(servers, table, index, start, end, slice_="1s", *extra, expect_exit=0, tmp_path,
            report_name="report.json"):
    """Run an export with a JSON report; return (CliRunner result, report dict).

    One worker unless the test asks for more: spawning a second one costs a second of a
    2-core machine, and only the tests about parallel slices need it.
    """
    report = tmp_path / report_name
    if "--workers" not in extra:
        extra = ("--workers", "1", *extra)
    result = run_cli(export_args(servers, table_name(table), index, start, end, slice_,
                                 "--report", report, *extra), expect_exit=expect_exit)
    return result, read_report(report)


def _slice_counts(report: dict, name: str) -> list[int]:
    return [s[name] for s in report["slices"]]


# --------------------------------------------------------------------------- 1. half-open


def test_half_open_slices_export_each_boundary_row_exactly_once(servers, table, es, index,
                                                                tmp_path):
    start, end = T0, T0 + 3000  # slices [T0, T0+1s) [T0+1s, T0+2s) [T0+2s, T0+3s)
    rows = {
        "before_window": start - 1,  # none
        "window_start": start,  # slice 0
        "before_boundary": start + 999,  # slice 0
        "on_boundary": start + 1000,  # slice 1
        "second_boundary": start + 2000,  # slice 2
        "last_ms": end - 1,  # slice 2
        "window_end": end,  # none: the end is excluded
        "after_window": end + 5000,  # none
    }
    for key, ts in rows.items():
        put_row(table, key, {"cf:k": key}, ts)

    _, report = _export(servers, table, index, start, end, tmp_path=tmp_path)

    assert _slice_counts(report, "rows") == [2, 1, 2]
    assert _slice_counts(report, "indexed") == [2, 1, 2]
    assert report["totals"] == {"rows": 5, "indexed": 5, "stale": 0, "failed": 0, "deleted": 0}
    docs = read_index(es, index)
    expected = {"window_start", "before_boundary", "on_boundary", "second_boundary", "last_ms"}
    assert set(docs) == expected
    for key, hit in docs.items():
        source = hit["_source"]
        assert source["cf:k"] == key
        assert ISO_MS_Z.match(source["@timestamp"])
        assert source["@timestamp"] == _iso(rows[key])
        assert hit["_version"] == rows[key]
    assert docs["window_start"]["_source"]["@timestamp"] == "2023-11-14T22:13:20.000Z"
    assert docs["last_ms"]["_source"]["@timestamp"] == "2023-11-14T22:13:22.999Z"


# --------------------------------------------------------------------------- 2. idempotent


def test_rerun_is_idempotent_and_ids_are_row_keys(servers, table, es, index, tmp_path):
    binary_key = b"\xff\xfe\x00bin"  # not UTF-8: gets a "b64:" id
    keys = [b"plain", "grüße/1".encode(), binary_key]
    for i, key in enumerate(keys):
        put_row(table, key, {"cf:v": f"value {i}"}, T0 + 100 * i)

    _, first = _export(servers, table, index, T0, T0 + 2000, tmp_path=tmp_path)
    before = read_index(es, index)
    _, second = _export(servers, table, index, T0, T0 + 2000, tmp_path=tmp_path)
    after = read_index(es, index)

    assert first["totals"]["indexed"] == 3 and second["totals"]["rows"] == 3
    # Equal versions are accepted again (external_gte), so nothing is stale or failed.
    assert second["totals"] == {"rows": 3, "indexed": 3, "stale": 0, "failed": 0, "deleted": 0}
    assert count_docs(es, index) == 3
    b64_id = "b64:" + base64.urlsafe_b64encode(binary_key).decode()
    assert set(after) == {"plain", "grüße/1", b64_id}
    assert {k: (h["_source"], h["_version"]) for k, h in after.items()} == \
        {k: (h["_source"], h["_version"]) for k, h in before.items()}
    assert after[b64_id]["_source"]["cf:v"] == "value 2"
    assert {row_key_from_id(doc_id) for doc_id in after} == set(keys)


# --------------------------------------------------------------------------- 3. no stale overwrite


def test_updated_row_ends_in_newest_state_and_an_older_slice_rerun_is_stale(
        servers, table, es, index, tmp_path):
    t1, t2 = T0 + 100, T0 + 2100  # slice 0 and slice 2 of [T0, T0+3s)
    put_row(table, "u", {"cf:state": "old", "cf:since": "t1"}, t1)
    put_row(table, "u", {"cf:state": "new"}, t2)
    put_row(table, "other", {"cf:state": "only"}, T0 + 1100)

    # Per slice (one pass would count "u" in slice 2 only: tests/test_read_strategies.py).
    _, report = _export(servers, table, index, T0, T0 + 3000, "1s", "--workers", "2",
                        "--no-one-pass", tmp_path=tmp_path)
    # "u" belongs to slice 0 (state at t1) and to slice 2 (state at t2).
    assert _slice_counts(report, "rows") == [1, 1, 1]
    totals = report["totals"]
    assert totals["indexed"] + totals["stale"] == 3 and totals["failed"] == 0
    doc = read_index(es, index)["u"]
    assert doc["_source"] == {"cf:state": "new", "cf:since": "t1", "@timestamp": _iso(t2)}
    assert doc["_version"] == t2

    # Slice 0 alone builds the old state (cells older than its end) with version t1 < t2.
    _, rerun = _export(servers, table, index, T0, T0 + 1000, "1s", tmp_path=tmp_path,
                       report_name="rerun.json")
    assert rerun["slices"][0]["rows"] == 1
    assert rerun["totals"] == {"rows": 1, "indexed": 0, "stale": 1, "failed": 0, "deleted": 0}
    doc = read_index(es, index)["u"]
    assert doc["_source"]["cf:state"] == "new" and doc["_version"] == t2


def _put_updated_rows(table, n_rows: int, n_slices: int) -> tuple[dict, list[int]]:
    """Rows written in 1-3 of the slices; returns key -> (newest ts, value) and rows per slice."""
    newest: dict[str, tuple[int, str]] = {}
    per_slice = [0] * n_slices
    for i in range(n_rows):
        key = f"row{i:03d}"
        slices = sorted({i % n_slices, (i * 7 + 3) % n_slices, (i * 5 + 1) % n_slices}
                        )[: 1 + i % 3]
        for s in slices:
            ts = T0 + s * 1000 + (i * 37) % 1000
            put_row(table, key, {"cf:v": f"{key}@{s}", "cf:i": str(i)}, ts)
            per_slice[s] += 1
        last = max(slices)
        newest[key] = (T0 + last * 1000 + (i * 37) % 1000, f"{key}@{last}")
    return newest, per_slice


def _assert_newest(es, index, newest):
    docs = read_index(es, index)
    assert set(docs) == set(newest)
    wrong = {k: (h["_source"]["cf:v"], h["_version"]) for k, h in docs.items()
             if (h["_version"], h["_source"]["cf:v"]) != newest[k]}
    assert not wrong, f"documents not in their newest state: {wrong}"


def test_parallel_slices_always_end_in_the_newest_state(servers, table, es, index, tmp_path):
    newest, per_slice = _put_updated_rows(table, n_rows=60, n_slices=6)
    _, report = _export(servers, table, index, T0, T0 + 6000, "1s", "--workers", "2",
                        "--no-one-pass",
                        tmp_path=tmp_path)
    # A row belongs to every slice it has a cell in: cells older than a slice's end.
    assert _slice_counts(report, "rows") == per_slice
    for s in report["slices"]:
        assert s["indexed"] + s["stale"] == s["rows"] and s["failed"] == 0
    _assert_newest(es, index, newest)


def test_newest_slices_first_makes_every_older_state_stale(servers, table, es, index, tmp_path,
                                                           monkeypatch):
    """The worst order: each row's newest state is written first, then its older ones."""
    newest, per_slice = _put_updated_rows(table, n_rows=40, n_slices=4)
    plan_run = export_module.plan_run
    monkeypatch.setattr(export_module, "plan_run",
                        lambda settings, ledger: list(reversed(plan_run(settings, ledger))))
    _, report = _export(servers, table, index, T0, T0 + 4000, "1s", "--workers", "1",
                        tmp_path=tmp_path)
    assert [s["start"] for s in report["slices"]] == [_iso(T0 + k * 1000) for k in (3, 2, 1, 0)]
    assert report["totals"]["rows"] == sum(per_slice)
    assert report["totals"]["indexed"] == len(newest)
    assert report["totals"]["stale"] == sum(per_slice) - len(newest)
    _assert_newest(es, index, newest)


# --------------------------------------------------------------------------- 4. per-column newest


def test_each_column_takes_its_newest_value_older_than_the_slice_end(servers, table, es, index,
                                                                     tmp_path):
    t1, t2, t3 = T0 + 100, T0 + 1100, T0 + 2100
    put_row(table, "r", {"cf:a": "a@t1"}, t1)
    put_row(table, "r", {"cf:b": "b@t2"}, t2)
    put_row(table, "r", {"cf:a": "a@t3"}, t3)

    _, report = _export(servers, table, index, t2 - 100, t3 - 100, "1s", tmp_path=tmp_path)
    assert report["totals"]["indexed"] == 1
    doc = read_index(es, index)["r"]
    assert doc["_source"] == {"cf:a": "a@t1", "cf:b": "b@t2", "@timestamp": _iso(t2)}
    assert doc["_version"] == t2


# --------------------------------------------------------------------------- 5. typed mapping


MAPPING = """
[mapping.columns]
"cf:n" = { field = "n", type = "long" }
"cf:x" = { field = "x", type = "double" }
"cf:j" = { field = "attrs", type = "json" }
"cf:name" = { field = "name", type = "string" }
"cf:flag" = { field = "flag", type = "boolean" }
"""


def test_typed_mapping_and_undecodable_rows_go_to_the_dead_letter_file(servers, table, es,
                                                                       index, tmp_path):
    put_row(table, "good1", {"cf:n": struct.pack(">q", -42), "cf:x": struct.pack(">d", 2.5),
                             "cf:j": json.dumps({"k": "ü", "m": [1, 2]}), "cf:name": "Zoë 東京",
                             "cf:flag": b"\x01", "meta:note": "free text"}, T0 + 10)
    put_row(table, "good2", {"cf:n": struct.pack(">q", 2**62), "meta:raw": b"\xff\x00"},
            T0 + 20)
    put_row(table, "bad", {"cf:n": b"\x00\x01\x02", "cf:name": "ok"}, T0 + 30)
    config = write_config(tmp_path / "job.toml", MAPPING)
    dead = tmp_path / "dead.ndjson"

    result, report = _export(servers, table, index, T0, T0 + 1000, "1s", "--config", config,
                             "--dead-letter", dead, expect_exit=1, tmp_path=tmp_path)
    assert report["exit_code"] == 1 == result.exit_code
    assert report["totals"] == {"rows": 3, "indexed": 2, "stale": 0, "failed": 1, "deleted": 0}
    assert report["slices"][0]["status"] == "done"
    docs = read_index(es, index)
    assert set(docs) == {"good1", "good2"}
    assert docs["good1"]["_source"] == {
        "n": -42, "x": 2.5, "attrs": {"k": "ü", "m": [1, 2]}, "name": "Zoë 東京", "flag": True,
        "meta:note": "free text", "@timestamp": _iso(T0 + 10)}
    assert docs["good2"]["_source"]["n"] == 2**62
    assert docs["good2"]["_source"]["meta:raw#b64"] == base64.b64encode(b"\xff\x00").decode()
    records = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(records) == 1
    record = records[0]
    assert record["stage"] == "decode" and record["row_key"] == "bad"
    assert record["row_key_b64"] == base64.b64encode(b"bad").decode()
    assert "cf:n" in record["reason"] and "long" in record["reason"]
    assert record["slice"] == {"start": _iso(T0), "end": _iso(T0 + 1000)}

    # One failed document is within a budget of 1.
    dead2 = tmp_path / "dead2.ndjson"
    result, report = _export(servers, table, index, T0, T0 + 1000, "1s", "--config", config,
                             "--dead-letter", dead2, "--max-errors", "1", expect_exit=0,
                             tmp_path=tmp_path, report_name="report2.json")
    assert report["exit_code"] == 0 and report["totals"]["failed"] == 1
    assert len(dead2.read_text().splitlines()) == 1
    assert "bad" not in read_index(es, index)


def test_document_elasticsearch_rejects_goes_to_the_dead_letter_file(servers, table, es, index,
                                                                     tmp_path):
    # One bulk, one shard: "a" maps attrs.k as a long, so "b" (text) is refused with a 400.
    put_row(table, "a", {"cf:j": '{"k": 1}'}, T0 + 10)
    put_row(table, "b", {"cf:j": '{"k": "not a number"}'}, T0 + 20)
    config = write_config(tmp_path / "job.toml", MAPPING)
    dead = tmp_path / "dead.ndjson"
    _, report = _export(servers, table, index, T0, T0 + 1000, "1s", "--config", config,
                        "--dead-letter", dead, "--workers", "1", expect_exit=1,
                        tmp_path=tmp_path)
    assert report["totals"] == {"rows": 2, "indexed": 1, "stale": 0, "failed": 1, "deleted": 0}
    assert set(read_index(es, index)) == {"a"}
    (record,) = [json.loads(line) for line in dead.read_text().splitlines()]
    assert (record["stage"], record["row_key"]) == ("index", "b")
    assert record["error_type"] == "mapper_parsing_exception"
    assert record["document"]["attrs"] == {"k": "not a number"}


def test_decode_error_policy_fail_fails_the_slice_with_exit_1(servers, table, es, index,
                                                              tmp_path):
    put_row(table, "ok", {"cf:n": struct.pack(">q", 1)}, T0 + 10)
    put_row(table, "bad", {"cf:n": b"xyz"}, T0 + 1010)
    config = write_config(tmp_path / "job.toml",
                          '[mapping]\non_decode_error = "fail"\n' + MAPPING)
    result, report = _export(servers, table, index, T0, T0 + 2000, "1s", "--config", config,
                             "--no-one-pass", expect_exit=1, tmp_path=tmp_path)
    assert [s["status"] for s in report["slices"]] == ["done", "failed"]
    assert "cf:n" in report["slices"][1]["error"]
    assert report["exit_code"] == 1
    assert set(read_index(es, index)) == {"ok"}
    assert "Traceback" not in result.output
    # One pass reads both slices in one scan: the row fails the pass, so both slices.
    result, report = _export(servers, table, f"{index}-pass", T0, T0 + 2000, "1s", "--config",
                             config, expect_exit=1, tmp_path=tmp_path, report_name="pass.json")
    assert [s["status"] for s in report["slices"]] == ["failed", "failed"]
    assert all("cf:n" in s["error"] for s in report["slices"])
    assert "Traceback" not in result.output


def test_decode_error_policy_skip_field_indexes_the_row_without_the_field_and_says_so(
        servers, table, es, index, tmp_path):
    put_row(table, "bad", {"cf:n": b"xyz", "cf:s": "kept"}, T0 + 10)
    config = write_config(tmp_path / "job.toml",
                          '[mapping]\non_decode_error = "skip-field"\n' + MAPPING)
    result, report = _export(servers, table, index, T0, T0 + 1000, "1s", "--config", config,
                             tmp_path=tmp_path)
    assert report["totals"]["indexed"] == 1 and report["totals"]["failed"] == 0
    document = read_index(es, index)["bad"]["_source"]
    assert "n" not in document and document["cf:s"] == "kept"
    assert report["slices"][0]["skipped_fields"] == 1
    assert "left 1 undecodable value(s) out" in result.stderr


# --------------------------------------------------------------------------- 6. index per day


def test_index_template_by_day_and_tz(servers, table, es, index, tmp_path):
    day = 1_699_920_000_000  # 2023-11-14T00:00:00Z
    put_row(table, "noon", {"cf:v": "1"}, day + 12 * 3_600_000)
    put_row(table, "late", {"cf:v": "2"}, day + 23 * 3_600_000 + 30 * 60_000)  # 23:30Z
    put_row(table, "next", {"cf:v": "3"}, day + 25 * 3_600_000)  # 01:00Z on the 15th
    window = (day, day + 2 * 86_400_000)

    _export(servers, table, f"{index}-utc-{{time:%Y.%m.%d}}", *window, "12h", tmp_path=tmp_path)
    assert set(read_index(es, f"{index}-utc-2023.11.14")) == {"noon", "late"}
    assert set(read_index(es, f"{index}-utc-2023.11.15")) == {"next"}

    _export(servers, table, f"{index}-tz-{{time:%Y.%m.%d}}", *window, "12h", "--tz", "+02:00",
            tmp_path=tmp_path, report_name="tz.json")
    assert set(read_index(es, f"{index}-tz-2023.11.14")) == {"noon"}
    assert set(read_index(es, f"{index}-tz-2023.11.15")) == {"late", "next"}
    # @timestamp stays UTC whatever the zone of the index names.
    late = read_index(es, f"{index}-tz-2023.11.15")["late"]
    assert late["_source"]["@timestamp"] == "2023-11-14T23:30:00.000Z"
    assert count_docs(es, f"{index}-*") == 6


# --------------------------------------------------------------------------- 7. exit 3


def _unavailable(result, *needles):
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hbase2es: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert result.stdout == ""  # failed before any slice ran: no summary table


def test_unknown_table_exits_3(servers, index, tmp_path):
    result = run_cli(export_args(servers, "no_such_table_hbase2es", index, T0, T0 + 1000, "1s"),
                     expect_exit=3)
    _unavailable(result, "no_such_table_hbase2es", "does not exist")


def test_hbase_port_with_nothing_listening_exits_3(servers, table, index):
    port = free_port()
    args = export_args(servers, table_name(table), index, T0, T0 + 1000, "1s")
    args[args.index("--hbase") + 1] = f"127.0.0.1:{port}"
    started = time.monotonic()
    result = run_cli(args, expect_exit=3)
    assert time.monotonic() - started < 15
    _unavailable(result, f"127.0.0.1:{port}", "HBase")


def test_elasticsearch_with_nothing_listening_exits_3(servers, table, index):
    url = f"http://127.0.0.1:{free_port()}"
    args = export_args(servers, table_name(table), index, T0, T0 + 1000, "1s")
    args[args.index("--es") + 1] = url
    result = run_cli(args, expect_exit=3)
    _unavailable(result, url, "Elasticsearch")


@pytest.mark.slow
def test_framed_transport_against_a_buffered_server_exits_3_naming_transport(
        servers, table, index, tmp_path):
    config = write_config(tmp_path / "framed.toml", '[hbase]\ntransport = "framed"\n')
    args = export_args(servers, table_name(table), index, T0, T0 + 1000, "1s",
                       "--config", config)
    started = time.monotonic()
    result = run_cli(args, expect_exit=3)
    assert time.monotonic() - started < 30
    _unavailable(result, "transport", "framed")


def test_compact_protocol_against_a_binary_server_exits_3_naming_protocol(servers, table, index,
                                                                          tmp_path):
    # The binary server hangs up on compact bytes at once (no 10 s wait as with framed).
    config = write_config(tmp_path / "compact.toml", '[hbase]\nprotocol = "compact"\n')
    args = export_args(servers, table_name(table), index, T0, T0 + 1000, "1s",
                       "--config", config)
    result = run_cli(args, expect_exit=3)
    _unavailable(result, "protocol", "compact", "did not answer")


# --------------------------------------------------------------------------- 9. report


def test_report_json_has_the_documented_shape_and_matches_the_exit_code(servers, table, es,
                                                                        index, tmp_path):
    for i in range(7):
        put_row(table, f"r{i}", {"cf:v": str(i)}, T0 + i * 450)  # 0..2700 ms: 3 slices
    result, report = _export(servers, table, index, T0, T0 + 3000, tmp_path=tmp_path)
    assert {"slices", "totals", "exit_code"} <= set(report)
    assert report["exit_code"] == result.exit_code == 0
    assert set(report["totals"]) == {"rows", "indexed", "stale", "failed", "deleted"}
    assert len(report["slices"]) == 3
    for s, k in zip(report["slices"], range(3)):
        assert {"start", "end", "rows", "indexed", "stale", "failed", "seconds", "status"} \
            <= set(s)
        assert s["status"] == "done"
        assert (s["start"], s["end"]) == (_iso(T0 + k * 1000), _iso(T0 + (k + 1) * 1000))
        assert isinstance(s["seconds"], (int, float)) and s["seconds"] >= 0
    for name in ("rows", "indexed", "stale", "failed"):
        assert report["totals"][name] == sum(s[name] for s in report["slices"])
    assert _slice_counts(report, "rows") == [3, 2, 2]
    assert report["totals"]["indexed"] == count_docs(es, index) == 7
    # Not a terminal (and no --quiet): a log line per slice instead of a progress bar.
    assert len([line for line in result.stderr.splitlines() if " done: rows=" in line]) == 3


# --------------------------------------------------------------------------- 12. progress


def test_progress_log_line_per_slice_and_summary_table(servers, table, index, tmp_path):
    for i in range(4):
        put_row(table, f"r{i}", {"cf:v": str(i)}, T0 + i * 700)  # 0, 700, 1400, 2100
    result, _ = _export(servers, table, index, T0, T0 + 3000, "1s", "--quiet",
                        tmp_path=tmp_path)
    lines = [line for line in result.stderr.splitlines() if " slice [" in line]
    expected = {f"slice [{_iso(T0 + k * 1000)}, {_iso(T0 + (k + 1) * 1000)}) done: "
                f"rows={n} indexed={n} stale=0 failed=0" for k, n in enumerate([2, 1, 1])}
    assert {line.split(" INFO ", 1)[1].rsplit(" in ", 1)[0] for line in lines} == expected
    assert len(lines) == 3
    out = result.stdout.splitlines()
    assert re.match(r"^slice\s+status\s+rows\s+indexed\s+stale\s+failed\s+seconds$", out[0])
    assert sum(1 for line in out if " done " in line) == 3
    total = [line for line in out if line.startswith("total (3 slices)")]
    assert len(total) == 1 and total[0].split()[3:7] == ["4", "4", "0", "0"]


# --------------------------------------------------------------------------- workers


def test_two_workers_share_the_slices(servers, table, es, index, tmp_path, monkeypatch):
    pids: dict[int, int] = {}

    class RecordingPool(Pool):
        def run(self, fn, tasks, on_event=None):
            def record(event):
                if isinstance(event, Started):
                    pids[event.index] = event.pid
                if on_event is not None:
                    on_event(event)
            return super().run(fn, tasks, on_event=record)

    monkeypatch.setattr(executors_module, "Pool", RecordingPool)
    for i in range(6):
        put_row(table, f"r{i}", {"cf:v": str(i)}, T0 + i * 1000 + 5)
    _, report = _export(servers, table, index, T0, T0 + 6000, "1s", "--workers", "2",
                        "--no-one-pass",
                        tmp_path=tmp_path)
    assert report["totals"]["indexed"] == 6 == count_docs(es, index)
    assert sorted(pids) == list(range(6))
    assert len(set(pids.values())) == 2
    assert os.getpid() not in pids.values()


# --------------------------------------------------------------------------- real process


def test_console_entry_point_in_a_real_process(servers, table, es, index, tmp_path):
    """`python -m hbase2es` outside CliRunner: real stdio, real exit status, spawn workers."""
    for i in range(3):
        put_row(table, f"p{i}", {"cf:v": str(i)}, T0 + i * 900)
    report = tmp_path / "report.json"
    env = clean_env()
    proc = subprocess.run(
        [sys.executable, "-m", "hbase2es",
         *export_args(servers, table_name(table), index, T0, T0 + 3000, "1s",
                      "--workers", "2", "--report", str(report))],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "total (3 slices)" in proc.stdout
    assert len([line for line in proc.stderr.splitlines() if " done: rows=" in line]) == 3
    assert read_report(report)["exit_code"] == 0
    assert set(read_index(es, index)) == {"p0", "p1", "p2"}

    proc = subprocess.run(
        [sys.executable, "-m", "hbase2es",
         *export_args(servers, "no_such_table_hbase2es", index, T0, T0 + 1000, "1s")],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 3
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
