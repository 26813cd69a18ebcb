"""Issue 17, per document: routing, custom ids, and the checks around them.

The engine contract (routed documents, pipelines, 600-byte keys on every engine) is in
test_sinks.py; here are the rules that do not depend on the engine, on the default
Elasticsearch and the session's HBase: bad input stops before anything is written, a row
without its routing column follows ``on_decode_error``, ``[mapping] id`` templates round
trip through export, verify and reconcile, soft deletes carry the routing, and a ledger
refuses a change of id scheme or routing.
"""

from __future__ import annotations

import json

import orjson
import pytest
from helpers import T0, put_row, read_index, read_report, run_cli, table_name, write_config

from hbase2es.docaddress import Addressing, KeyTemplate, MissingValue, routing_template
from hbase2es.search.chunking import delete_action, index_action

COLUMNS = '[mapping.columns]\n"cf:tenant" = { field = "tenant", type = "string" }\n'
WINDOW = ["--start", str(T0), "--end", str(T0 + 1000), "--slice", "1s"]


# --------------------------------------------------------------------------- unit


def test_key_templates_take_key_slices_and_columns_and_refuse_what_cannot_work():
    template = KeyTemplate("{cf:tenant}/{key[0:3]}/{key[-2:]}")
    assert template.columns == (b"cf:tenant",)
    assert template.render(b"abcdef", {b"cf:tenant": b"t1"}, "mapping.id") == b"t1/abc/ef"
    with pytest.raises(MissingValue, match="mapping.id: the row has no value for column cf:tenant"):
        template.render(b"abc", {}, "mapping.id")
    for bad, says in [("constant", "names neither"), ("{nope}", "neither {key}"),
                      ("{key", "unbalanced"), ("a}b{key}", "unbalanced"), ("", "non-empty")]:
        with pytest.raises(ValueError, match=says):
            KeyTemplate(bad)
    assert routing_template({"column": "cf:tenant"}) == "{cf:tenant}"
    assert routing_template({"rowkey_prefix_bytes": 4}) == "{key[0:4]}"
    assert routing_template({}) is None
    for bad in ({"column": "nofamily"}, {"rowkey_prefix_bytes": 0}, {"colum": "d:t"},
                {"column": "d:t", "rowkey_prefix_bytes": 2}):
        with pytest.raises(ValueError):
            routing_template(bad)


def test_actions_carry_routing_and_pipeline_only_when_set():
    plain = orjson.loads(index_action("i", "a", 5, {"x": 1}).split(b"\n")[0])["index"]
    assert "routing" not in plain and "pipeline" not in plain
    routed = orjson.loads(index_action("i", "a", 5, {}, "t1", "p").split(b"\n")[0])["index"]
    assert (routed["routing"], routed["pipeline"], routed["version"]) == ("t1", "p", 5)
    assert orjson.loads(delete_action("i", "a", 5, "t1"))["delete"]["routing"] == "t1"
    binary = Addressing(routing=KeyTemplate("{key[0:2]}"))
    assert binary.route(b"\xff\xfe\x00", {}) == "b64:__4="  # not UTF-8: base64, like keys


# --------------------------------------------------------------------------- bad input


def _export(servers, table, index, tmp_path, config: str, *extra, expect_exit: int = 0):
    cfg = write_config(tmp_path / f"job{len(list(tmp_path.iterdir()))}.toml", config)
    report = tmp_path / f"report{len(list(tmp_path.iterdir()))}.json"
    result = run_cli(["export", "--config", cfg, "--hbase", servers.hbase, "--table",
                      table_name(table), "--es", servers.es, "--index", index, *WINDOW,
                      "--workers", "1", "--report", report, *extra], expect_exit=expect_exit)
    return result, (read_report(report) if report.exists() else None)


@pytest.mark.integration
@pytest.mark.parametrize("config, says", [
    ('[elasticsearch]\nrouting = { column = "cf:other" }\n' + COLUMNS,
     "elasticsearch.routing: column cf:other is not in [mapping.columns]"),
    ('[elasticsearch]\nrouting = { shard = 1 }\n', "elasticsearch.routing: must be one of"),
    ('[elasticsearch]\nrouting = { rowkey_prefix_bytes = -1 }\n', "rowkey_prefix_bytes"),
    ('[elasticsearch]\npipeline = " "\n', "elasticsearch.pipeline"),
    ('[mapping]\nid = { template = "{cf:other}-{key}" }\n' + COLUMNS,
     "mapping.id: column cf:other is not in [mapping.columns]"),
    ('[mapping]\nid = { template = "fixed" }\n', "mapping.id: template 'fixed' names neither"),
    ('[mapping]\nid = "hash"\n', "mapping.id must be \"rowkey\" or"),
])
def test_bad_routing_ids_or_pipeline_exit_2_in_one_line_before_anything_is_written(
        servers, table, es, index, tmp_path, config, says):
    put_row(table, "r1", {"cf:tenant": "t1"}, T0 + 10)
    result, report = _export(servers, table, index, tmp_path, config, expect_exit=2)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert report is None and not es.indices.exists(index=index)


# --------------------------------------------------------------------------- routing


@pytest.mark.integration
@pytest.mark.parametrize("policy", ["dead-letter", "skip-field", "fail"])
def test_a_row_without_its_routing_column_follows_on_decode_error(
        servers, table, es, index, tmp_path, policy):
    put_row(table, "r1", {"cf:tenant": "t1"}, T0 + 10)
    put_row(table, "r2", {"cf:x": "no tenant"}, T0 + 20)
    dead = tmp_path / "dead.ndjson"
    config = (f'[elasticsearch]\nrouting = {{ column = "cf:tenant" }}\n'
              f'[mapping]\non_decode_error = "{policy}"\n' + COLUMNS)
    result, report = _export(servers, table, index, tmp_path, config, "--dead-letter", dead,
                             expect_exit={"dead-letter": 1, "skip-field": 0, "fail": 1}[policy])
    docs = read_index(es, index)
    if policy != "fail":
        assert docs["r1"]["_routing"] == "t1"
    if policy == "dead-letter":
        assert sorted(docs) == ["r1"] and report["totals"]["failed"] == 1
        [record] = [json.loads(line) for line in dead.read_text().splitlines()]
        assert (record["row_key"], record["stage"], record["error_type"]) == (
            "r2", "decode", "MissingValue")
        assert "elasticsearch.routing" in record["reason"] and "cf:tenant" in record["reason"]
    elif policy == "skip-field":
        assert sorted(docs) == ["r1", "r2"] and "_routing" not in docs["r2"]
    else:  # the slice fails at r2, before its bulk went out
        assert docs == {} and report["slices"][0]["status"] == "failed"
        assert "mapping.on_decode_error = fail" in result.stderr


@pytest.mark.integration
def test_soft_deletes_carry_the_routing_so_the_routed_document_goes(
        servers, table, es, index, tmp_path):
    es.indices.create(index=index, settings={"number_of_shards": 3, "number_of_replicas": 0})
    tenants = [f"t{i}" for i in range(8)]
    for i, tenant in enumerate(tenants):
        put_row(table, f"r{i}", {"cf:tenant": tenant}, T0 + 10 + i)
    config = ('[elasticsearch]\nrouting = { column = "cf:tenant" }\n[mapping]\n'
              'delete_when = { column = "cf:gone", present = true }\n' + COLUMNS)
    _export(servers, table, index, tmp_path, config)
    assert len(read_index(es, index)) == 8
    for i in range(8):
        put_row(table, f"r{i}", {"cf:gone": "1"}, T0 + 100 + i)
    _, report = _export(servers, table, index, tmp_path, config)
    assert report["totals"]["deleted"] == 8
    assert read_index(es, index) == {}  # every delete reached the routed shard


@pytest.mark.integration
def test_reconcile_deletes_routed_orphans_on_their_shard(servers, table, es, index, tmp_path):
    es.indices.create(index=index, settings={"number_of_shards": 3, "number_of_replicas": 0})
    for i in range(6):
        put_row(table, f"r{i}", {"cf:tenant": f"t{i}"}, T0 + 10 + i)
    config = '[elasticsearch]\nrouting = { column = "cf:tenant" }\n' + COLUMNS
    _export(servers, table, index, tmp_path, config)
    for i in range(1, 6):
        table.delete(f"r{i}".encode())
    cfg = write_config(tmp_path / "reconcile.toml", config)
    run_cli(["reconcile", "--config", cfg, "--hbase", servers.hbase, "--table",
             table_name(table), "--es", servers.es, "--index", index, *WINDOW, "--apply"])
    assert sorted(read_index(es, index)) == ["r0"]


# --------------------------------------------------------------------------- ids


@pytest.mark.integration
def test_template_ids_round_trip_through_export_verify_and_reconcile(
        servers, table, es, index, tmp_path):
    put_row(table, "row-1", {"cf:tenant": "acme"}, T0 + 10)
    put_row(table, "row-2", {"cf:tenant": "beta"}, T0 + 20)
    put_row(table, "row-3", {"cf:x": "no tenant"}, T0 + 30)  # no id: a dead letter
    config = ('[mapping]\nid = { template = "{cf:tenant}:{key[4:]}" }\n' + COLUMNS)
    dead = tmp_path / "dead.ndjson"
    _, report = _export(servers, table, index, tmp_path, config, "--dead-letter", dead,
                        "--max-errors", "1")
    assert (report["totals"]["indexed"], report["totals"]["failed"]) == (2, 1)
    docs = read_index(es, index)
    assert {d: h["_source"]["@rowkey"] for d, h in docs.items()} == {
        "acme:1": "row-1", "beta:2": "row-2"}
    cfg = write_config(tmp_path / "check.toml", config)
    common = ["--config", cfg, "--hbase", servers.hbase, "--table", table_name(table), "--es",
              servers.es, "--index", index, *WINDOW, "--json"]
    verified = json.loads(run_cli(["verify", *common, "--compare-fields"],
                                  expect_exit=1).stdout)["totals"]
    assert (verified["present"], verified["missing"], verified["differing"]) == (2, 1, 0)
    clean = json.loads(run_cli(["reconcile", *common]).stdout)["totals"]
    assert (clean["checked"], clean["orphans"], clean["foreign"]) == (2, 0, 0)
    table.delete(b"row-2")
    run_cli(["reconcile", *common, "--apply"])
    assert sorted(read_index(es, index)) == ["acme:1"]


@pytest.mark.integration
@pytest.mark.parametrize("change, differs", [
    ('[mapping]\nid = { template = "{cf:tenant}-{key}" }\n', "id"),
    ('[elasticsearch]\nrouting = { rowkey_prefix_bytes = 2 }\n', "routing"),
])
def test_a_ledger_refuses_another_id_scheme_or_routing(servers, table, es, index, tmp_path,
                                                        change, differs):
    """Documents written under one id or routing would be stranded by another: the job's
    fingerprint holds both, so a changed job needs a new ledger (and index)."""
    put_row(table, "r1", {"cf:tenant": "t1"}, T0 + 10)
    ledger = tmp_path / "ledger.db"
    _export(servers, table, index, tmp_path, COLUMNS, "--ledger", ledger)
    before = read_index(es, index)
    result, _ = _export(servers, table, index, tmp_path, change + COLUMNS, "--ledger", ledger,
                        expect_exit=2)
    assert f"belongs to another job (differs in: {differs})" in result.stderr
    assert read_index(es, index).keys() == before.keys()


@pytest.mark.integration
def test_plan_sample_shows_the_id_routing_and_pipeline_the_export_sends(
        servers, table, es, index, tmp_path):
    put_row(table, "row-1", {"cf:tenant": "acme"}, T0 + 10)
    cfg = write_config(tmp_path / "plan.toml", (
        '[elasticsearch]\nrouting = { column = "cf:tenant" }\npipeline = "p1"\n'
        '[mapping]\nid = { template = "{cf:tenant}:{key}" }\n' + COLUMNS))
    args = ["plan", "--config", cfg, "--hbase", servers.hbase, "--es", servers.es, "--table",
            table_name(table), "--index", index, *WINDOW, "--sample", "1"]
    [doc] = orjson.loads(run_cli([*args, "--json"]).stdout)["sample"]
    assert (doc["_id"], doc["routing"], doc["pipeline"]) == ("acme:row-1", "acme", "p1")
    action = next(line for line in run_cli(args).stdout.splitlines()
                  if line.startswith('{"index"'))
    header = orjson.loads(action)["index"]
    assert (header["_id"], header["routing"], header["pipeline"]) == ("acme:row-1", "acme", "p1")


@pytest.mark.integration
def test_a_routed_row_moved_to_another_daily_index_leaves_one_document(
        servers, table, es, index, tmp_path):
    """The older copy is deleted with the routing it was written with: on three shards a
    delete without it would mostly miss (and leave two documents of one row)."""
    day1, day = 1_700_006_400_000 + 36_000_000, 86_400_000  # 10:00 on 2023-11-15
    rows = [f"r{i}" for i in range(8)]
    for i, key in enumerate(rows):
        put_row(table, key, {"cf:tenant": f"t{i}"}, day1 + i)
    config = ('[elasticsearch]\nrouting = { column = "cf:tenant" }\n'
              '[elasticsearch.index_settings]\nnumber_of_shards = 3\nnumber_of_replicas = 0\n'
              + COLUMNS)
    cfg = write_config(tmp_path / "moved.toml", config)
    args = ["export", "--config", cfg, "--hbase", servers.hbase, "--table", table_name(table),
            "--es", servers.es, "--index", f"{index}-{{time:%Y.%m.%d}}", "--start",
            str(day1 - 36_000_000), "--end", str(day1 + 2 * day), "--slice", "1d",
            "--workers", "1", "--create-index"]
    run_cli(args)
    for i, key in enumerate(rows):
        put_row(table, key, {"cf:x": "updated"}, day1 + day + i)
    run_cli(args)
    docs = read_index(es, f"{index}-*")
    assert sorted(docs) == rows  # one document per row
    assert {h["_index"] for h in docs.values()} == {f"{index}-2023.11.16"}
    assert {d: h["_routing"] for d, h in docs.items()} == {k: f"t{i}" for i, k in enumerate(rows)}


@pytest.mark.integration
def test_an_index_created_by_hbase2es_refuses_another_id_scheme_or_routing_without_a_ledger(
        servers, table, es, index, tmp_path):
    put_row(table, "r1", {"cf:tenant": "t1"}, T0 + 10)
    routed = '[elasticsearch]\nrouting = { column = "cf:tenant" }\n' + COLUMNS
    _export(servers, table, index, tmp_path, routed, "--create-index")
    meta = es.indices.get_mapping(index=index)[index]["mappings"]["_meta"]["hbase2es"]
    assert meta == {"id": "rowkey", "routing": "{cf:tenant}"}
    before = read_index(es, index)
    for config, says in [
            (COLUMNS, "elasticsearch.routing: index " + index + " was written with routing "
                      "'{cf:tenant}', this job's is 'none'"),
            ('[mapping]\nid = { template = "{cf:tenant}-{key}" }\n' + routed,
             "mapping.id: index " + index + " was written with id 'rowkey'")]:
        put_row(table, "r1", {"cf:tenant": "t1", "cf:n": "again"}, T0 + 20)
        result, _ = _export(servers, table, index, tmp_path, config, expect_exit=2)
        lines = [line for line in result.stderr.splitlines() if "error" in line]
        assert len(lines) == 1 and says in lines[0], result.stderr
        assert read_index(es, index) == before  # nothing written
    _export(servers, table, index, tmp_path, routed)  # the same job goes on
    assert read_index(es, index)["r1"]["_version"] == T0 + 20
