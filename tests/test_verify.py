"""`hbase2es verify` against the real servers: export, break Elasticsearch, see it named."""

from __future__ import annotations

import orjson
import pytest

from helpers import T0, export_args, put_row, read_index, run_cli, table_name, write_config

pytestmark = pytest.mark.integration

HOUR = 3_600_000
# Three one-hour slices, ten rows each.
START, END = T0, T0 + 3 * HOUR


def _load(table, rows: int = 30) -> list[str]:
    keys = []
    for i in range(rows):
        key = f"row{i:03d}"
        put_row(table, key, {"cf:amount": str(i), "cf:name": f"name {i}"},
                T0 + i * (3 * HOUR // rows))
        keys.append(key)
    return keys


def _verify_args(servers, table, index: str, *extra) -> list[str]:
    return ["verify", "--hbase", servers.hbase, "--table", table_name(table), "--es", servers.es,
            "--index", index, "--start", START, "--end", END, "--slice", "1h", *extra]


def _json(result) -> dict:
    return orjson.loads(result.stdout)


def test_verify_is_clean_after_export_and_names_deleted_documents(servers, table, index, es):
    keys = _load(table)
    # Newest cell in a later column than the first, and in the second slice while the
    # first column is older than the window: a FirstKeyOnlyFilter scan would see only the
    # old cell and drop the row from its slice, so verify would not miss its document.
    put_row(table, "trap", {"cf:a": "old"}, T0 - 10)
    put_row(table, "trap", {"meta:z": "new"}, T0 + HOUR + 5)
    keys.append("trap")
    target = index + "-{time:%Y.%m.%d.%H}"
    run_cli(export_args(servers, table_name(table), target, START, END, "1h", "--quiet"))
    assert set(read_index(es, index + "-*")) == set(keys)

    clean = _json(run_cli(_verify_args(servers, table, target, "--json")))
    assert clean["totals"]["rows"] == clean["totals"]["checked"] == len(keys)
    assert clean["totals"]["present"] == len(keys)
    assert clean["totals"]["missing"] == 0 and clean["exit_code"] == 0
    assert clean["mode"] == "all rows"

    hits = read_index(es, index + "-*")
    deleted = ["row000", "row011", "row017", "row029", "trap"]
    for doc_id in deleted:
        es.delete(index=hits[doc_id]["_index"], id=doc_id, refresh=True)
    result = run_cli(_verify_args(servers, table, target, "--workers", "2"), expect_exit=1)
    assert "MISSING: 5 documents" in result.stdout
    for doc_id in deleted:
        assert doc_id in result.stdout
    data = _json(run_cli(_verify_args(servers, table, target, "--json"), expect_exit=1))
    assert data["totals"]["missing"] == 5 and data["totals"]["present"] == len(keys) - 5
    assert sorted(data["missing_examples"]) == sorted(deleted)
    # Per slice: the trap row counts in the second slice, where its newest cell is.
    assert [s["missing"] for s in data["slices"]] == [1, 3, 1]
    assert "trap" in data["slices"][1]["missing_keys"]


def test_sample_finds_a_deleted_document_when_it_covers_every_row(servers, table, index, es,
                                                                  tmp_path):
    keys = _load(table)
    run_cli(export_args(servers, table_name(table), index, START, END, "1h", "--quiet"))
    es.delete(index=index, id="row014", refresh=True)

    report = tmp_path / "verify.json"
    result = run_cli(_verify_args(servers, table, index, "--sample", "10", "--report", report),
                     expect_exit=1)
    assert "SAMPLE" in result.stdout and "row014" in result.stdout
    data = orjson.loads(report.read_bytes())
    assert data["mode"] == "sample" and data["sample"] == 10
    assert data["totals"]["checked"] == len(keys) and data["missing_examples"] == ["row014"]

    # A smaller sample checks at most N rows per slice, and says so.
    small = _json(run_cli(_verify_args(servers, table, index, "--sample", "2", "--json"),
                          expect_exit=None))
    assert [s["checked"] for s in small["slices"]] == [2, 2, 2]
    assert [s["rows"] for s in small["slices"]] == [10, 10, 10]


def test_compare_fields_reports_a_field_changed_in_elasticsearch(servers, table, index, es,
                                                                 tmp_path):
    _load(table, rows=12)
    config = write_config(tmp_path / "job.toml", """
[mapping.columns]
"cf:amount" = { field = "amount", type = "text_int" }
""")
    run_cli(export_args(servers, table_name(table), index, START, END, "1h", "--quiet",
                        "--config", config))
    args = _verify_args(servers, table, index, "--config", config, "--compare-fields")
    clean = _json(run_cli([*args, "--json"]))
    assert clean["totals"]["compared"] == 12 and clean["totals"]["differing"] == 0

    # An ordinary update in Elasticsearch: its version moves on by one, past the row's
    # time, so no export can rewrite it ("ahead", not "differing").
    es.update(index=index, id="row005", doc={"amount": 999}, refresh=True)
    result = run_cli(args, expect_exit=1)
    assert "row005  amount: expected 5, actual 999" in result.stdout
    assert "AHEAD: 1 document is newer than the row" in result.stdout
    data = _json(run_cli([*args, "--json"], expect_exit=1))
    assert data["totals"]["ahead"] == 1 and data["totals"]["missing"] == 0
    assert data["totals"]["differing"] == 0 and data["ahead_examples"] == ["row005"]
    assert data["difference_examples"] == [
        {"id": "row005", "field": "amount", "expected": "5", "actual": "999"}]

    # The same version with other content: an export rewrites it ("differing").
    es.index(index=index, id="row007", document={"amount": 1}, version=T0 + 7 * HOUR // 4,
             version_type="external_gte", refresh=True)
    data = _json(run_cli([*args, "--json"], expect_exit=1))
    assert (data["totals"]["differing"], data["totals"]["ahead"]) == (1, 1)
    assert "DIFFERENT: 1 document differs from the row" in run_cli(args, expect_exit=1).stdout


def test_compare_fields_accepts_a_newer_state_written_by_a_later_slice(servers, table, index,
                                                                       es):
    # One static index: the row's later state (second slice) overwrites the first one.
    put_row(table, "r1", {"cf:v": "first"}, T0 + 10)
    put_row(table, "r1", {"cf:v": "second"}, T0 + HOUR + 10)
    run_cli(export_args(servers, table_name(table), index, START, END, "1h", "--quiet"))
    assert read_index(es, index)["r1"]["_source"]["cf:v"] == "second"
    data = _json(run_cli(_verify_args(servers, table, index, "--compare-fields", "--json")))
    assert data["totals"]["rows"] == 2 and data["totals"]["compared"] == 2
    assert data["totals"]["differing"] == 0 and data["totals"]["older"] == 0

    # The document holds the first state only: the second slice's state never arrived.
    es.indices.delete(index=index)
    es.index(index=index, id="r1", document={"cf:v": "first"}, version=T0 + 10,
             version_type="external_gte", refresh=True)
    data = _json(run_cli(_verify_args(servers, table, index, "--json"), expect_exit=1))
    assert data["totals"]["older"] == 1 and data["older_examples"] == ["r1"]
