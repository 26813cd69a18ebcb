"""Documents newer than their rows (issue 23, item 3), on the real servers.

A column deleted in HBase leaves the row's newest cell older than the version its
document was written with, so every later export of that state is refused as stale and
the document keeps the deleted column forever. The same holds for a document edited in
Elasticsearch or written with a higher external version. ``verify --compare-fields``
names them "ahead"; ``--repair`` rewrites them with a version that wins now and still
loses to any later change of the row.
"""

from __future__ import annotations

import orjson
import pytest

from hbase2es.search import engine
from hbase2es.timewindow import format_time
from helpers import (T0, export_args, put_row, read_index, read_report, run_cli, table_name,
                     write_config)

MINUTE = 60_000
HOUR = 60 * MINUTE
START, END = T0, T0 + 2 * HOUR  # two one-hour slices
A, B, C = T0 + 10 * MINUTE, T0 + 20 * MINUTE, T0 + 40 * MINUTE  # "01:00", "02:00", later


def _export(servers, table, index, tmp_path, *extra) -> dict:
    report = tmp_path / "export.json"
    run_cli(export_args(servers, table_name(table), index, START, END, "1h", "--quiet",
                        "--report", report, *extra))
    return read_report(report)["totals"]


def _verify(servers, table, index, *extra, expect_exit: int | None = 0):
    return run_cli(["verify", "--hbase", servers.hbase, "--table", table_name(table), "--es",
                    servers.es, "--index", index, "--start", START, "--end", END, "--slice",
                    "1h", "--compare-fields", *extra], expect_exit=expect_exit)


def _verify_json(servers, table, index, *extra, expect_exit: int | None = 0) -> dict:
    return orjson.loads(_verify(servers, table, index, "--json", *extra,
                                expect_exit=expect_exit).stdout)


@pytest.mark.integration
def test_a_deleted_column_is_named_ahead_repaired_and_a_later_change_still_wins(
        servers, table, index, es, tmp_path):
    put_row(table, "r1", {"cf:a": "1"}, A)
    put_row(table, "r1", {"cf:b": "2"}, B)
    put_row(table, "r2", {"cf:a": "ok"}, A)
    assert _export(servers, table, index, tmp_path)["indexed"] == 2

    # The repro: the row's newest cell is now A < the document's version B.
    table.delete(b"r1", columns=[b"cf:b"])
    assert _export(servers, table, index, tmp_path)["stale"] == 1
    stuck = read_index(es, index)["r1"]
    assert stuck["_source"]["cf:b"] == "2" and stuck["_source"]["@timestamp"] == format_time(B)

    # verify names the case as its own category, and exits 1.
    result = _verify(servers, table, index, expect_exit=1)
    assert "AHEAD: 1 document" in result.stdout and "r1" in result.stdout
    assert "--repair" in result.stdout
    data = _verify_json(servers, table, index, expect_exit=1)
    assert data["totals"]["ahead"] == 1 and data["totals"]["differing"] == 0
    assert data["ahead_examples"] == ["r1"]
    assert {"id": "r1", "field": "cf:b", "expected": "(absent)", "actual": '"2"'} in \
        data["difference_examples"]

    # --repair rewrites it from the row, keeping the document's (higher) version.
    repaired = _verify_json(servers, table, index, "--repair")
    assert repaired["repair"] is True
    assert (repaired["totals"]["repaired"], repaired["totals"]["repair_conflicts"],
            repaired["totals"]["repair_failed"]) == (1, 0, 0)
    fixed = read_index(es, index)["r1"]
    assert fixed["_source"] == {"cf:a": "1", "@timestamp": format_time(A)}
    assert fixed["_version"] == B
    again = _verify(servers, table, index)
    assert "OK: all 2 checked rows have their document with the same fields" in again.stdout

    # Versions stay monotonic: an older state in flight is still refused ...
    with pytest.raises(Exception) as info:
        es.index(index=index, id="r1", document={"cf:a": "old"}, version=A,
                 version_type="external_gte")
    assert engine.status_of(info.value) == 409
    # ... and a later change of the row (a cell newer than the stored version) wins.
    put_row(table, "r1", {"cf:a": "3"}, C)
    assert _export(servers, table, index, tmp_path)["stale"] == 0
    later = read_index(es, index)["r1"]
    assert later["_source"] == {"cf:a": "3", "@timestamp": format_time(C)}
    assert later["_version"] == C
    _verify(servers, table, index)


@pytest.mark.integration
def test_edits_in_elasticsearch_are_ahead_and_only_repair_fixes_them(servers, table, index, es,
                                                                     tmp_path):
    for key in ("r1", "r2", "r3", "r4"):
        put_row(table, key, {"cf:a": f"value {key}"}, A)
    _export(servers, table, index, tmp_path)
    es.update(index=index, id="r1", doc={"cf:a": "edited"}, refresh=True)  # version A + 1
    es.index(index=index, id="r2", document={"cf:a": "foreign"}, version=A + 5000,
             version_type="external", refresh=True)
    # Same version, other content: a re-export repairs this one (external_gte).
    es.index(index=index, id="r3", document={"cf:a": "same version"}, version=A,
             version_type="external_gte", refresh=True)

    data = _verify_json(servers, table, index, expect_exit=1)
    assert (data["totals"]["ahead"], data["totals"]["differing"]) == (2, 1)
    assert sorted(data["ahead_examples"]) == ["r1", "r2"]

    assert _export(servers, table, index, tmp_path)["stale"] == 2  # r1 and r2 refused
    data = _verify_json(servers, table, index, expect_exit=1)
    assert (data["totals"]["ahead"], data["totals"]["differing"]) == (2, 0)

    repaired = _verify_json(servers, table, index, "--repair")
    assert repaired["totals"]["repaired"] == 2
    docs = read_index(es, index)
    assert docs["r1"]["_source"]["cf:a"] == "value r1" and docs["r1"]["_version"] == A + 1
    assert docs["r2"]["_source"]["cf:a"] == "value r2" and docs["r2"]["_version"] == A + 5000
    _verify(servers, table, index)


@pytest.mark.integration
def test_a_row_in_two_slices_is_judged_once_by_the_slice_of_its_newest_state(
        servers, table, index, es, tmp_path):
    put_row(table, "r1", {"cf:a": "first"}, A)  # slice 1
    put_row(table, "r1", {"cf:a": "second"}, T0 + 70 * MINUTE)  # slice 2
    put_row(table, "r1", {"meta:gone": "x"}, T0 + 80 * MINUTE)  # slice 2, deleted below
    _export(servers, table, index, tmp_path)
    table.delete(b"r1", columns=[b"meta:gone"])

    data = _verify_json(servers, table, index, expect_exit=1)
    assert [s["ahead"] for s in data["slices"]] == [0, 1]
    assert data["totals"]["differing"] == 0
    repaired = _verify_json(servers, table, index, "--repair")
    assert repaired["totals"]["repaired"] == 1
    doc = read_index(es, index)["r1"]
    assert doc["_source"] == {"cf:a": "second", "@timestamp": format_time(T0 + 70 * MINUTE)}
    _verify(servers, table, index)


@pytest.mark.integration
def test_with_the_column_source_a_time_moved_back_or_an_edit_is_ahead(servers, table, index,
                                                                      es, tmp_path):
    config = write_config(tmp_path / "column.toml", """
[window]
time_source = "column"
[window.column]
column = "meta:t"
encoding = "epoch_ms_text"
""")
    put_row(table, "r1", {"meta:t": str(A), "cf:v": "one"}, A)
    put_row(table, "r2", {"meta:t": str(B), "cf:v": "two"}, B)
    _export(servers, table, index, tmp_path, "--config", config)
    es.update(index=index, id="r1", doc={"cf:v": "edited"}, refresh=True)
    put_row(table, "r2", {"meta:t": str(A)}, C)  # the row's time corrected backwards
    assert _export(servers, table, index, tmp_path, "--config", config)["stale"] == 2

    data = _verify_json(servers, table, index, "--config", config, expect_exit=1)
    assert data["totals"]["ahead"] == 2 and sorted(data["ahead_examples"]) == ["r1", "r2"]
    repaired = _verify_json(servers, table, index, "--config", config, "--repair")
    assert repaired["totals"]["repaired"] == 2
    docs = read_index(es, index)
    assert docs["r1"]["_source"]["cf:v"] == "one"
    assert docs["r2"]["_source"]["@timestamp"] == format_time(A)
    assert docs["r2"]["_version"] == B
    _verify(servers, table, index, "--config", config)


@pytest.mark.integration
def test_a_repair_write_refused_as_conflict_is_counted_and_a_bad_one_dead_lettered(
        servers, es, index, tmp_path):
    from hbase2es.run.repair import Repairer
    from hbase2es.search.deadletter import DeadLetterFile
    from hbase2es.settings import ElasticsearchSettings
    from hbase2es.timewindow import Slice

    es.indices.create(index=index, mappings={"properties": {"n": {"type": "long"}}})
    for doc_id in ("a", "b", "c"):
        es.index(index=index, id=doc_id, document={"n": 1}, version=100,
                 version_type="external")
    settings = ElasticsearchSettings(hosts=(servers.es,), index=index)
    client = engine.make_client(settings)
    dead = tmp_path / "dead.ndjson"
    letters = DeadLetterFile(str(dead))
    try:
        repairer = Repairer(client, settings, Slice(0, START, END), letters)
        repairer.add(index, "a", b"a", {"n": 2}, doc_version=100, row_time=50)
        repairer.add(index, "b", b"b", {"n": 3}, doc_version=100, row_time=50)
        repairer.add(index, "c", b"c", {"n": "not a number"}, doc_version=100, row_time=50)
        # Someone writes a newer state of b after verify read it, before the repair lands.
        es.index(index=index, id="b", document={"n": 9}, version=300, version_type="external")
        counts = repairer.finish()
    finally:
        letters.close()
        client.close()
    assert (counts.repaired, counts.conflicts, counts.failed) == (1, 1, 1)
    docs = read_index(es, index)
    assert (docs["a"]["_source"], docs["a"]["_version"]) == ({"n": 2}, 100)
    assert (docs["b"]["_source"], docs["b"]["_version"]) == ({"n": 9}, 300)
    records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [(r["row_key"], r["stage"]) for r in records] == [("c", "repair")]
    assert records[0]["document"] == {"n": "not a number"}


def test_repair_without_compare_fields_is_refused_with_one_line(tmp_path):
    config = write_config(tmp_path / "job.toml", "")
    result = run_cli(["verify", "--config", config, "--repair", "--hbase", "127.0.0.1:1",
                      "--es", "http://127.0.0.1:1", "--table", "t", "--index", "i",
                      "--start", START, "--end", END], expect_exit=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--repair" in lines[0] and "--compare-fields" in lines[0]
