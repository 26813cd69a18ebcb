"""The engine contract of hbase2es, on every engine it supports.

Each ``sink`` test runs once per engine of `make servers-all` (HBASE2ES_TEST_ES_ES7,
_ES8, _ES9, _OS2, _OS3, from the environment or .devservers/env), against the session's
real HBase. A missing engine skips, or fails under HBASE2ES_REQUIRE_SERVERS=1 / CI=true.
Everything is read back through hbase2es's own engine layer (search/engine.py), so the
assertions hold whichever elasticsearch-py (if any) is installed.

Fakes only where no real engine can answer that way: the local http.server answers of
"an engine we do not support" (Elasticsearch 6, a web server, a node that wants
credentials; the dev engines run without security) and the per-document 429s, made by
wrapping the real bulk call.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import orjson
import pytest
from helpers import (ENGINE_KEYS, T0, drop_indices, engine_url, free_port, put_row, read_report,
                     run_cli, table_name, write_config)

from hbase2es.mapping import document_id
from hbase2es.run.slicejob import SliceExporter
from hbase2es.search import engine
from hbase2es.settings import ElasticsearchSettings, load_settings
from hbase2es.timewindow import Slice, format_time

pytestmark = [pytest.mark.integration, pytest.mark.sink]

HOUR = 3_600_000
START, END = T0, T0 + 3 * HOUR  # three one-hour slices
ROWS = 20
# The mapping of every job here: one typed column, the others as "cf:qualifier" text.
MAPPING = '\n[mapping.columns]\n"cf:n" = { field = "n", type = "text_int" }\n'
TIME_SOURCES = {
    "cell": "",
    "rowkey": '[window]\ntime_source = "rowkey"\n[window.rowkey]\nencoding = "epoch_ms_text"\n',
    "column": '[window]\ntime_source = "column"\n[window.column]\ncolumn = "cf:created"\n'
              'encoding = "epoch_ms_text"\n',
}
# What an engine names a document its mapping refuses: 8.x and 9.x renamed it.
MAPPING_ERRORS = {"mapper_parsing_exception", "document_parsing_exception"}


@dataclass
class Sink:
    key: str
    url: str
    client: engine.Client
    hbase: str  # host:port of the session's HBase Thrift server


@pytest.fixture(params=ENGINE_KEYS)
def sink(request, servers):
    """One engine (and the session's HBase, which every test here needs too)."""
    url = engine_url(request.param)
    client = engine.make_client(ElasticsearchSettings(hosts=(url,)))
    try:
        yield Sink(request.param, url, client, servers.hbase)
    finally:
        client.close()


@pytest.fixture
def sink_index(sink, unique_name):
    """An index name (and prefix) of this test's own on the engine, deleted afterwards."""
    name = unique_name.replace("_", "-")
    try:
        yield name
    finally:
        drop_indices(sink.client, name)


# --------------------------------------------------------------------------- helpers


def row_time(i: int) -> int:
    return START + 1000 + i * 7 * 60_000  # 20 rows over 2 h 13 min: three hourly slices


def row_key(i: int) -> str:
    return f"{row_time(i):013d}-{i:02d}"  # the time in the key, for the rowkey source


def load_rows(table, rows: int = ROWS) -> None:
    for i in range(rows):
        put_row(table, row_key(i), {"cf:n": str(i), "cf:name": f"name {i}",
                                    "cf:created": str(row_time(i))}, row_time(i))


def expected_documents(rows: int = ROWS) -> dict[str, tuple[dict, int]]:
    """_id -> (source, version) that the jobs here must write for load_rows' rows."""
    return {row_key(i): ({"n": i, "cf:name": f"name {i}", "cf:created": str(row_time(i)),
                          "@timestamp": format_time(row_time(i))}, row_time(i))
            for i in range(rows)}


def hour_index(prefix: str, ms: int) -> str:
    return f"{prefix}-{time.strftime('%Y.%m.%d.%H', time.gmtime(ms / 1000))}"


def read_docs(client: engine.Client, pattern: str) -> dict[str, dict]:
    """Every document of the indices ``pattern`` names: _id -> {index, source, version}."""
    engine.refresh(client, pattern, ignore_unavailable=True)
    response = engine.search(client, pattern, {"query": {"match_all": {}}, "size": 1000,
                                               "version": True})
    hits = response["hits"]["hits"]
    docs = {h["_id"]: {"index": h["_index"], "source": h["_source"], "version": h["_version"]}
            for h in hits}
    assert len(docs) == len(hits), f"one _id in two indices of {pattern}: {hits}"
    return docs


def sources_and_versions(docs: dict[str, dict]) -> dict[str, tuple[dict, int]]:
    return {doc_id: (d["source"], d["version"]) for doc_id, d in docs.items()}


def job_toml(sink, table, index: str, more: str = "") -> str:
    """A whole job file for an in-process exporter: servers, index, ``more`` lines of
    [elasticsearch] (and any table after them), this file's mapping."""
    host, port = sink.hbase.rsplit(":", 1)
    return (f'[hbase]\ntable = "{table_name(table)}"\nhost = "{host}"\nport = {port}\n'
            f'[elasticsearch]\nhosts = ["{sink.url}"]\nindex = "{index}"\n{more}\n{MAPPING}')


def export(hbase: str, url: str, table, index: str, *extra, start: int = START, end: int = END,
           expect_exit: int | None = 0, env: dict | None = None, tmp_path: Path,
           config: str = ""):
    """One ``hbase2es export`` to ``url`` with this file's mapping; (result, report)."""
    report = tmp_path / f"report-{time.monotonic_ns()}.json"
    cfg = write_config(tmp_path / f"job-{time.monotonic_ns()}.toml", config + MAPPING)
    result = run_cli(["export", "--config", cfg, "--hbase", hbase, "--table",
                      table_name(table), "--es", url, "--index", index, "--start", str(start),
                      "--end", str(end), "--slice", "1h", "--workers", "2", "--quiet",
                      "--report", report, *extra], expect_exit=expect_exit, env=env)
    return result, (read_report(report) if report.exists() else None)


# --------------------------------------------------------------------------- export


def test_each_time_source_writes_the_expected_documents_into_dated_indices(
        sink, sink_index, table, tmp_path):
    load_rows(table)
    want = expected_documents()
    for source, config in TIME_SOURCES.items():
        prefix = f"{sink_index}-{source}"
        _, report = export(sink.hbase, sink.url, table, prefix + "-{time:%Y.%m.%d.%H}",
                           tmp_path=tmp_path, config=config)
        assert (report["totals"]["indexed"], report["totals"]["failed"]) == (ROWS, 0), source
        docs = read_docs(sink.client, f"{prefix}-*")
        assert sources_and_versions(docs) == want, source
        assert {d: docs[d]["index"] for d in docs} == {
            row_key(i): hour_index(prefix, row_time(i)) for i in range(ROWS)}, source

    # With cell times an update moves row 0 to a later hour's index: the export deletes
    # the older copy (a versioned delete in the bulk body), so one document stays.
    prefix = f"{sink_index}-cell"
    moved = END - 60_000
    put_row(table, row_key(0), {"cf:n": "100"}, moved)
    _, report = export(sink.hbase, sink.url, table, prefix + "-{time:%Y.%m.%d.%H}",
                       tmp_path=tmp_path)
    assert sum(s.get("moved", 0) for s in report["slices"]) == 1
    doc = read_docs(sink.client, f"{prefix}-*")[row_key(0)]
    assert (doc["index"], doc["version"], doc["source"]["n"]) == (
        hour_index(prefix, moved), moved, 100)


def test_reexport_is_idempotent_and_an_older_state_is_counted_stale(sink, sink_index, table,
                                                                    tmp_path):
    load_rows(table)
    _, first = export(sink.hbase, sink.url, table, sink_index, tmp_path=tmp_path)
    before = read_docs(sink.client, sink_index)
    _, again = export(sink.hbase, sink.url, table, sink_index, tmp_path=tmp_path)
    assert first["totals"]["indexed"] == again["totals"]["indexed"] == ROWS
    assert read_docs(sink.client, sink_index) == before  # same ids, sources and versions

    newer = END - 60_000
    put_row(table, row_key(0), {"cf:n": "100"}, newer)
    export(sink.hbase, sink.url, table, sink_index, tmp_path=tmp_path)
    assert read_docs(sink.client, sink_index)[row_key(0)]["version"] == newer
    # The first slice alone sends row 0's older state: the engine refuses it (409).
    _, old = export(sink.hbase, sink.url, table, sink_index, end=START + HOUR, tmp_path=tmp_path)
    rows_in_first_hour = sum(1 for i in range(ROWS) if row_time(i) < START + HOUR)
    assert (old["totals"]["stale"], old["totals"]["indexed"]) == (1, rows_in_first_hour - 1)
    doc = read_docs(sink.client, sink_index)[row_key(0)]
    assert (doc["source"]["n"], doc["version"]) == (100, newer)


class BusyOnce:
    """Wraps engine.bulk: the documents named get a 429 the first time and are really
    left out of that request, so they land only if the writer sends them again."""

    def __init__(self, ids: set[str]):
        self.ids, self.rejected, self.resent = set(ids), [], []
        self.real = engine.bulk

    def __call__(self, client, payload: bytes, **kwargs):
        lines = payload.split(b"\n")[:-1]
        pairs = list(zip(lines[0::2], lines[1::2]))
        keep, fake = [], {}
        for position, (action, source) in enumerate(pairs):
            doc_id = orjson.loads(action)["index"]["_id"]
            if doc_id in self.ids:
                self.ids.discard(doc_id)
                self.rejected.append(doc_id)
                fake[position] = {"index": {"status": 429, "error": {
                    "type": "es_rejected_execution_exception", "reason": "injected"}}}
            else:
                self.resent += [doc_id] if doc_id in self.rejected else []
                keep.append(action + b"\n" + source + b"\n")
        if not fake:
            return self.real(client, payload, **kwargs)
        sent = self.real(client, b"".join(keep), **kwargs) if keep else {"items": []}
        real = iter(sent["items"])
        return {"errors": True,
                "items": [fake[p] if p in fake else next(real) for p in range(len(pairs))]}


@pytest.mark.timeout(120)
def test_busy_documents_are_resent_until_they_land(sink, sink_index, table, tmp_path,
                                                   monkeypatch):
    load_rows(table)
    cfg = write_config(tmp_path / "job.toml", job_toml(sink, table, sink_index, "bulk_docs = 6"))
    settings = load_settings(cfg, {"window.start": str(START), "window.end": str(END)},
                             now_ms=END)
    busy = BusyOnce({row_key(i) for i in range(0, ROWS, 3)})
    monkeypatch.setattr(engine, "bulk", busy)
    exporter = SliceExporter(settings)
    try:
        result = exporter.run(Slice(0, START, END))
    finally:
        exporter.close()
    assert sorted(busy.rejected) == sorted(busy.resent) == sorted(
        row_key(i) for i in range(0, ROWS, 3))
    assert (result.rows, result.indexed, result.failed) == (ROWS, ROWS, 0)
    assert sources_and_versions(read_docs(sink.client, sink_index)) == expected_documents()


# --------------------------------------------------------------------------- indices


CREATE_CONFIG = """
[elasticsearch.index_settings]
number_of_shards = 2
number_of_replicas = 0
refresh_interval = "3s"
[elasticsearch.mappings.properties]
n = { type = "long" }
"@timestamp" = { type = "date" }
"""


def test_create_index_applies_settings_and_mappings_and_refuses_a_conflict(
        sink, sink_index, table, tmp_path):
    load_rows(table, 6)
    put_row(table, "bad", {"cf:n": "x"}, START + 10)  # not a long: refused by the mapping
    put_row(table, "k" * 600, {"cf:n": "1"}, START + 20)  # a key over 512 bytes: sha256 id
    dead = tmp_path / "dead.ndjson"
    # cf:n as text, so that "x" is sent and the index's long mapping refuses it.
    config = CREATE_CONFIG + '[mapping.columns]\n"cf:n" = { field = "n", type = "string" }\n'
    cfg = write_config(tmp_path / "create.toml", config)
    run_cli(["export", "--config", cfg, "--hbase", sink.hbase, "--table", table_name(table),
             "--es", sink.url, "--index", sink_index, "--start", str(START), "--end", str(END),
             "--slice", "1h", "--quiet", "--create-index", "--dead-letter", dead,
             "--max-errors", "2"])
    flat = engine.get_settings(sink.client, sink_index)[sink_index]
    assert (flat["index.number_of_shards"], flat["index.refresh_interval"]) == ("2", "3s")
    properties = engine.get_mapping(sink.client, sink_index)[sink_index]["properties"]
    assert properties["n"] == {"type": "long"} and properties["@timestamp"]["type"] == "date"
    records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [r["row_key"] for r in records] == ["bad"]
    assert records[0]["error_type"] in MAPPING_ERRORS
    assert set(read_docs(sink.client, sink_index)) == {row_key(i) for i in range(6)} | {
        document_id(b"k" * 600)}

    # Another job maps n as keyword: stopped before anything is written, naming the field.
    conflict = write_config(tmp_path / "conflict.toml",
                            '[elasticsearch.mappings.properties]\nn = { type = "keyword" }\n')
    put_row(table, row_key(0), {"cf:n": "50"}, END - 10)
    result = run_cli(["export", "--config", conflict, "--hbase", sink.hbase, "--table",
                      table_name(table), "--es", sink.url, "--index", sink_index, "--start",
                      str(START), "--end", str(END), "--slice", "1h", "--create-index"],
                     expect_exit=2)
    assert "conflicts with existing indices" in result.stderr
    assert "n is long in the index, keyword in the config" in result.stderr
    assert read_docs(sink.client, sink_index)[row_key(0)]["source"]["n"] == "0"


def test_bulk_load_turns_refresh_and_replicas_off_and_puts_them_back(sink, sink_index, table,
                                                                     tmp_path, monkeypatch):
    load_rows(table)
    engine.create_index(sink.client, sink_index, {"number_of_shards": 1,
                                                  "number_of_replicas": 1,
                                                  "refresh_interval": "5s"}, {})
    seen: list[tuple[str, dict]] = []
    real = engine.put_settings

    def recording(client, names, values):
        seen.append((names, dict(values)))
        return real(client, names, values)

    monkeypatch.setattr(engine, "put_settings", recording)  # the parent process sets them
    _, report = export(sink.hbase, sink.url, table, sink_index, "--bulk-load", tmp_path=tmp_path)
    assert seen[0] == (sink_index, {"index.refresh_interval": "-1",
                                    "index.number_of_replicas": "0"})
    assert seen[-1] == (sink_index, {"index.refresh_interval": "5s",
                                     "index.number_of_replicas": "1"})
    assert report["bulk_load"]["restored"] is True
    flat = engine.get_settings(sink.client, sink_index)[sink_index]
    assert (flat["index.refresh_interval"], flat["index.number_of_replicas"]) == ("5s", "1")
    assert len(read_docs(sink.client, sink_index)) == ROWS


# --------------------------------------------------------------------------- verify


def test_verify_names_missing_and_older_documents(sink, sink_index, table, tmp_path):
    load_rows(table)
    export(sink.hbase, sink.url, table, sink_index, tmp_path=tmp_path)
    args = ["verify", "--hbase", sink.hbase, "--table", table_name(table), "--es", sink.url,
            "--index", sink_index, "--start", str(START), "--end", str(END), "--slice", "1h",
            "--json"]
    clean = orjson.loads(run_cli(args).stdout)
    assert (clean["totals"]["present"], clean["totals"]["missing"]) == (ROWS, 0)

    engine.call(sink.client, "DELETE", f"/{sink_index}/_doc/{row_key(3)}",
                params={"refresh": "true"})
    put_row(table, row_key(5), {"cf:n": "55"}, row_time(5) + 1)  # HBase is newer now
    data = orjson.loads(run_cli(args, expect_exit=1).stdout)
    assert (data["totals"]["missing"], data["totals"]["older"]) == (1, 1)
    assert data["missing_examples"] == [row_key(3)] and data["older_examples"] == [row_key(5)]


# --------------------------------------------------------------------------- issue 17

ROUTED_CONFIG = """
[elasticsearch]
routing = { column = "cf:n" }
[elasticsearch.index_settings]
number_of_shards = 3
number_of_replicas = 0
"""


def _verify(sink, table, index: str, *extra, expect_exit: int = 0, config: str = "") -> dict:
    args = ["verify", "--hbase", sink.hbase, "--table", table_name(table), "--es", sink.url,
            "--index", index, "--start", str(START), "--end", str(END), "--slice", "1h",
            "--json", *extra]
    if config:
        args += ["--config", config]
    return orjson.loads(run_cli(args, expect_exit=expect_exit).stdout)["totals"]


def test_routed_documents_are_stored_with_their_routing_and_found_by_verify(
        sink, sink_index, table, tmp_path):
    """Three shards, so a lookup without the routing would ask the wrong shard for most
    documents: verify finding all of them shows mget carries it."""
    load_rows(table)
    export(sink.hbase, sink.url, table, sink_index, "--create-index", tmp_path=tmp_path,
           config=ROUTED_CONFIG)
    engine.refresh(sink.client, sink_index)
    hits = engine.search(sink.client, sink_index, {"size": 100})["hits"]["hits"]
    assert {h["_id"]: h.get("_routing") for h in hits} == {
        row_key(i): str(i) for i in range(ROWS)}
    for i in (0, 7):
        got = engine.call(sink.client, "GET", f"/{sink_index}/_doc/{row_key(i)}",
                          params={"routing": str(i)})
        assert got["found"] and got["_source"]["n"] == i
    cfg = write_config(tmp_path / "routed.toml", ROUTED_CONFIG + MAPPING)
    totals = _verify(sink, table, sink_index, "--compare-fields", config=cfg)
    assert (totals["present"], totals["missing"], totals["differing"]) == (ROWS, 0, 0)
    # Without the routing, verify asks the shards the ids hash to: some are not found there.
    unrouted = _verify(sink, table, sink_index, expect_exit=1)
    assert unrouted["missing"] > 0


SET_INGESTED = {"set": {"field": "ingested", "value": "yes"}}
# Where painless runs: one row failed by a condition, the others enriched.
PIPELINE_BODY = {"processors": [
    {"fail": {"if": "ctx.n == 7", "message": "n is seven"}}, SET_INGESTED]}


def _can_ingest(sink) -> tuple[bool, bool, bool]:
    """(a node has the ingest role, the nodes have the ``set`` and ``fail`` processors,
    they run scripts: the ``script`` processor, painless for ``if`` conditions)."""
    roles = engine.call(sink.client, "GET", "/_nodes/ingest:true",
                        params={"filter_path": "_nodes.total"})["_nodes"]["total"] > 0
    nodes = engine.call(sink.client, "GET", "/_nodes",
                        params={"filter_path": "nodes.*.ingest.processors.type"}) or {}
    kinds = {p["type"] for n in nodes.get("nodes", {}).values()
             for p in n["ingest"]["processors"]}
    return roles, {"set", "fail"} <= kinds, "script" in kinds


def _pipeline_refused(sink, table, index: str, pipeline: str, tmp_path) -> str:
    """The one error line of an export whose pipeline cannot run; nothing was written."""
    result, _ = export(sink.hbase, sink.url, table, index, tmp_path=tmp_path, expect_exit=3,
                       config=f'[elasticsearch]\npipeline = "{pipeline}"\n')
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "elasticsearch.pipeline" in lines[0] and pipeline in lines[0]
    assert engine.get_mapping(sink.client, f"{index}*") == {}  # nothing written
    return lines[0]


def test_an_ingest_pipeline_runs_for_every_document_and_a_missing_one_exits_3(
        sink, sink_index, table, tmp_path):
    """What the dev servers can do decides how far this goes: 7.10 and OpenSearch,
    with the ingest role, run a pipeline that adds a field and fails one row by a painless
    condition; the dev 8 and 9 have set and fail but no painless (every row enriched, then
    a pipeline failing all of them); a cluster without the ingest role must stop at
    preflight, exit 3, instead of failing every bulk with a 500; with the role but no
    processors an empty pipeline still runs."""
    load_rows(table)
    pipeline = f"{sink_index}-pipe"
    roles, processors, scripts = _can_ingest(sink)
    body = ((PIPELINE_BODY if scripts else {"processors": [SET_INGESTED]}) if processors
            else {"processors": []})
    engine.call(sink.client, "PUT", f"/_ingest/pipeline/{pipeline}", body=body)
    try:
        if not roles:
            line = _pipeline_refused(sink, table, sink_index, pipeline, tmp_path)
            assert "no node of the cluster has the ingest role" in line
        elif processors and scripts:
            _export_through_pipeline(sink, sink_index, table, pipeline, tmp_path)
        elif processors:  # the dev Elasticsearch 8 and 9: set and fail, no painless
            _export_through_plain_pipeline(sink, sink_index, table, pipeline, tmp_path)
        else:
            _export_through_empty_pipeline(sink, sink_index, table, pipeline, tmp_path)
    finally:
        engine.call(sink.client, "DELETE", f"/_ingest/pipeline/{pipeline}")
    line = _pipeline_refused(sink, table, f"{sink_index}-other", pipeline, tmp_path)
    assert "does not exist" in line


def _export_through_plain_pipeline(sink, index: str, table, pipeline: str, tmp_path) -> None:
    """Every document enriched; then a pipeline that fails every document, since without
    painless no condition can pick one: each is a dead letter of stage "index"."""
    config = f'[elasticsearch]\npipeline = "{pipeline}"\n'
    _, report = export(sink.hbase, sink.url, table, index, tmp_path=tmp_path, config=config)
    assert (report["totals"]["indexed"], report["totals"]["failed"]) == (ROWS, 0)
    docs = read_docs(sink.client, index)
    assert len(docs) == ROWS and {d["source"]["ingested"] for d in docs.values()} == {"yes"}
    cfg = write_config(tmp_path / "pipe.toml", config + MAPPING)
    totals = _verify(sink, table, index, "--compare-fields", config=cfg)
    assert (totals["present"], totals["missing"], totals["differing"]) == (ROWS, 0, 0)
    failing = f"{pipeline}-fail"
    engine.call(sink.client, "PUT", f"/_ingest/pipeline/{failing}",
                body={"processors": [{"fail": {"message": "refused by the pipeline"}}]})
    try:
        dead = tmp_path / "dead.ndjson"
        _, report = export(sink.hbase, sink.url, table, f"{index}-fail", "--dead-letter", dead,
                           "--max-errors", str(ROWS), tmp_path=tmp_path,
                           config=f'[elasticsearch]\npipeline = "{failing}"\n')
        assert (report["totals"]["indexed"], report["totals"]["failed"]) == (0, ROWS)
        records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
        assert len(records) == ROWS and {r["stage"] for r in records} == {"index"}
        assert all("refused by the pipeline" in r["reason"] for r in records)
    finally:
        engine.call(sink.client, "DELETE", f"/_ingest/pipeline/{failing}")


def _export_through_empty_pipeline(sink, index: str, table, pipeline: str, tmp_path) -> None:
    config = f'[elasticsearch]\npipeline = "{pipeline}"\n'
    _, report = export(sink.hbase, sink.url, table, index, tmp_path=tmp_path, config=config)
    assert report["totals"]["indexed"] == ROWS
    # A field a pipeline would add (put here by hand): no difference with the pipeline set,
    # one without it.
    doc = row_key(2)
    engine.call(sink.client, "POST", f"/{index}/_update/{doc}", params={"refresh": "true"},
                body={"doc": {"ingested": "yes"}})
    cfg = write_config(tmp_path / "pipe.toml", config + MAPPING)
    totals = _verify(sink, table, index, "--compare-fields", config=cfg)
    assert (totals["present"], totals["differing"], totals["ahead"]) == (ROWS, 0, 0)
    strict = write_config(tmp_path / "strict.toml", MAPPING)
    totals = _verify(sink, table, index, "--compare-fields", expect_exit=1, config=strict)
    assert (totals["differing"], totals["ahead"]) == (0, 1)  # the edit raised its version
    _pipeline_failures_are_dead_letters(sink, index, table, f"{pipeline}-gone", tmp_path)


def _pipeline_failures_are_dead_letters(sink, index: str, table, pipeline: str,
                                        tmp_path) -> None:
    """Past preflight, a pipeline that fails a document (here: it was deleted) makes that
    document a dead letter of stage "index"; the slice goes on and is done."""
    dead = tmp_path / "pipeline-dead.ndjson"
    cfg = write_config(tmp_path / "gone.toml", job_toml(
        sink, table, f"{index}-gone", f'pipeline = "{pipeline}"\n[run]\ndead_letter = "{dead}"'))
    settings = load_settings(cfg, {"window.start": str(START), "window.end": str(END)},
                             now_ms=END)
    exporter = SliceExporter(settings)
    try:
        result = exporter.run(Slice(0, START, END))
    finally:
        exporter.close()
    assert (result.rows, result.indexed, result.failed) == (ROWS, 0, ROWS)
    records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert sorted(r["row_key"] for r in records) == sorted(row_key(i) for i in range(ROWS))
    assert {r["stage"] for r in records} == {"index"}
    assert all(pipeline in r["reason"] for r in records), records[0]


def _export_through_pipeline(sink, index: str, table, pipeline: str, tmp_path) -> None:
    dead = tmp_path / "dead.ndjson"
    config = f'[elasticsearch]\npipeline = "{pipeline}"\n'
    _, report = export(sink.hbase, sink.url, table, index, "--dead-letter", dead,
                       "--max-errors", "1", tmp_path=tmp_path, config=config)
    assert (report["totals"]["indexed"], report["totals"]["failed"]) == (ROWS - 1, 1)
    [record] = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert (record["stage"], record["row_key"]) == ("index", row_key(7))
    assert "n is seven" in record["reason"]
    docs = read_docs(sink.client, index)
    assert len(docs) == ROWS - 1
    assert {d["source"]["ingested"] for d in docs.values()} == {"yes"}
    # The field the pipeline added is no difference; the refused row is missing.
    cfg = write_config(tmp_path / "pipe.toml", config + MAPPING)
    totals = _verify(sink, table, index, "--compare-fields", expect_exit=1, config=cfg)
    assert (totals["present"], totals["missing"], totals["differing"]) == (ROWS - 1, 1, 0)


def test_a_600_byte_key_round_trips_through_export_verify_and_reconcile(
        sink, sink_index, table, tmp_path):
    load_rows(table, 4)
    long_key = ("L" * 600).encode()
    put_row(table, long_key, {"cf:n": "600"}, START + 50)
    _, report = export(sink.hbase, sink.url, table, sink_index, tmp_path=tmp_path)
    assert (report["totals"]["indexed"], report["totals"]["failed"]) == (5, 0)
    doc_id = document_id(long_key)
    assert doc_id.startswith("sha256:") and len(doc_id) == 71
    docs = read_docs(sink.client, sink_index)
    assert docs[doc_id]["source"]["@rowkey"] == long_key.decode()
    cfg = write_config(tmp_path / "long.toml", MAPPING)
    totals = _verify(sink, table, sink_index, "--compare-fields", config=cfg)
    assert (totals["present"], totals["missing"], totals["differing"]) == (5, 0, 0)
    reconcile = ["reconcile", "--hbase", sink.hbase, "--table", table_name(table), "--es",
                 sink.url, "--index", sink_index, "--start", str(START), "--end", str(END),
                 "--slice", "1h", "--json"]
    clean = orjson.loads(run_cli(reconcile).stdout)["totals"]
    assert (clean["checked"], clean["orphans"], clean["foreign"]) == (5, 0, 0)
    table.delete(long_key)  # now the long key's document is an orphan, found by @rowkey
    dry = orjson.loads(run_cli(reconcile, expect_exit=1).stdout)
    assert dry["totals"]["orphans"] == 1 and dry["orphan_examples"] == [doc_id]
    run_cli(reconcile + ["--apply"])
    assert doc_id not in read_docs(sink.client, sink_index)


# --------------------------------------------------------------------------- nodes


@pytest.mark.timeout(180)
def test_two_nodes_one_down_every_run_goes_ahead_and_warns(sink, sink_index, table, tmp_path):
    load_rows(table)
    dead = f"http://127.0.0.1:{free_port()}"
    for run in range(3):
        hosts = (dead, sink.url) if run % 2 == 0 else (sink.url, dead)
        result, report = export(sink.hbase, hosts[0], table, sink_index, "--es", hosts[1],
                                tmp_path=tmp_path)
        assert report["totals"]["indexed"] == ROWS, run
        warnings = [line for line in result.stderr.splitlines() if dead in line]
        assert len(warnings) == 1 and "going on with" in warnings[0], result.stderr
    assert sources_and_versions(read_docs(sink.client, sink_index)) == expected_documents()


def test_listing_by_point_in_time_or_scroll_sees_every_document(sink, sink_index):
    """The endpoints reconcile lists documents with: the point-in-time is /_pit on
    Elasticsearch and /_search/point_in_time on OpenSearch; 7.10 without x-pack has none."""
    ids = [f"d{i:02d}" for i in range(25)]
    payload = b"".join(b'{"index":{"_index":"%s","_id":"%s"}}\n{"i":1}\n'
                       % (sink_index.encode(), i.encode()) for i in ids)
    assert not engine.bulk(sink.client, payload)["errors"]
    engine.refresh(sink.client, sink_index)
    pit = engine.open_point_in_time(sink.client, sink_index, "1m")
    assert (pit is None) == (sink.key == "ES7")
    if pit is not None:
        seen, after = [], None
        sort = [{"_doc": "asc"}] if sink.client.engine.is_opensearch else [{"_shard_doc": "asc"}]
        while True:
            request = {"size": 10, "sort": sort, "pit": {"id": pit, "keep_alive": "1m"}}
            if after is not None:
                request["search_after"] = after
            hits = engine.search(sink.client, None, request)["hits"]["hits"]
            if not hits:
                break
            seen += [h["_id"] for h in hits]
            after = hits[-1]["sort"]
        engine.close_point_in_time(sink.client, pit)
        assert sorted(seen) == ids
    page = engine.search(sink.client, sink_index, {"size": 10, "sort": ["_doc"]}, scroll="1m")
    seen = [h["_id"] for h in page["hits"]["hits"]]
    while page["hits"]["hits"]:
        page = engine.scroll(sink.client, page["_scroll_id"], "1m")
        seen += [h["_id"] for h in page["hits"]["hits"]]
    engine.clear_scroll(sink.client, page["_scroll_id"])
    assert sorted(seen) == ids


# --------------------------------------------------------------------------- all engines


@pytest.mark.timeout(300)
def test_the_same_job_gives_the_same_documents_on_every_engine(servers, table, unique_name,
                                                               tmp_path):
    load_rows(table)
    urls = {key: engine_url(key) for key in ENGINE_KEYS}
    prefix = unique_name.replace("_", "-")
    found = {}
    for key, url in urls.items():
        client = engine.make_client(ElasticsearchSettings(hosts=(url,)))
        try:
            export(servers.hbase, url, table, prefix + "-{time:%Y.%m.%d.%H}", tmp_path=tmp_path,
                   config=TIME_SOURCES["rowkey"])
            found[key] = {d: (v["index"], v["source"], v["version"])
                          for d, v in read_docs(client, f"{prefix}-*").items()}
        finally:
            drop_indices(client, prefix)
            client.close()
    first = found[ENGINE_KEYS[0]]
    assert len(first) == ROWS
    for key, docs in found.items():
        assert docs == first, f"{key} differs from {ENGINE_KEYS[0]}"


# --------------------------------------------------------------------------- wrong engines


class Answering(http.server.BaseHTTPRequestHandler):
    """Answers every request with one canned response; records the headers it got."""

    status, headers_out, body, seen = 200, {}, b"", []

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(self.status)
        for name, value in self.headers_out.items():
            if name != "Server":  # send_response sent version_string()
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def version_string(self) -> str:
        return self.headers_out.get("Server", "canned")

    def log_message(self, *args):
        pass  # not on stderr: the CLI's stderr is what the tests read


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    """A plain static web server (http.server's own), not logging to stderr."""

    def log_message(self, *args):
        pass


def serve(handler, tls: tuple[str, str] | None = None):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def canned(status: int, body: dict | str, headers: dict | None = None):
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    ctype = "text/plain" if isinstance(body, str) else "application/json"
    return type("Canned", (Answering,), {"status": status, "body": raw, "seen": [],
                                         "headers_out": {"Content-Type": ctype,
                                                         **(headers or {})}})


ES6 = {"name": "n", "cluster_name": "old", "cluster_uuid": "u",
       "version": {"number": "6.8.23", "build_flavor": "default"},
       "tagline": "You Know, for Search"}
UNAUTHORIZED = {"error": {"type": "security_exception", "reason": "missing authentication "
                          "credentials for REST request [/]"}, "status": 401}


def _preflight_fails(servers, table, url: str, tmp_path, env=None, config: str = ""):
    result, _ = export(servers.hbase, url, table, "never-written", expect_exit=3, env=env,
                       tmp_path=tmp_path, config=config)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize("answer, named", [
    (canned(200, ES6), "runs Elasticsearch 6.8.23, which hbase2es does not support"),
    (canned(200, {"status": "ok"}), "is not Elasticsearch 7.x-9.x or OpenSearch 1.x-3.x"),
    (canned(404, "<html>no</html>", {"Server": "nginx/1.25"}), "HTTP 404, Server: nginx/1.25"),
], ids=["elasticsearch-6", "json-without-version", "web-server-404"])
def test_an_engine_hbase2es_does_not_support_exits_3_naming_what_answered(
        servers, table, tmp_path, answer, named):
    server = serve(answer)
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        line = _preflight_fails(servers, table, url, tmp_path)
    finally:
        server.shutdown()
    assert url in line and named in line


def test_a_plain_web_server_is_named_as_what_it_is(servers, table, tmp_path):
    (tmp_path / "www").mkdir()
    handler = partial(QuietFiles, directory=str(tmp_path / "www"))
    server = serve(handler)
    try:
        line = _preflight_fails(servers, table, f"http://127.0.0.1:{server.server_port}", tmp_path)
    finally:
        server.shutdown()
    assert "is not Elasticsearch" in line and "Server: SimpleHTTP" in line and "text/html" in line


def test_an_engine_that_wants_credentials_names_the_variables_to_set(servers, table, tmp_path):
    handler = canned(401, UNAUTHORIZED, {"WWW-Authenticate": 'Basic realm="security"'})
    server = serve(handler)
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        line = _preflight_fails(servers, table, url, tmp_path)
        assert "requires authentication (HTTP 401)" in line
        assert all(v in line for v in ("HBASE2ES_ES_API_KEY", "HBASE2ES_ES_USERNAME",
                                       "HBASE2ES_ES_PASSWORD"))
        line = _preflight_fails(servers, table, url, tmp_path,
                                config='[elasticsearch]\napi_key_env = "MY_ES_KEY"\n')
        assert "set MY_ES_KEY" in line
        line = _preflight_fails(servers, table, url, tmp_path,
                                env={"HBASE2ES_ES_API_KEY": "c2VjcmV0"})
        assert "refused the credentials from HBASE2ES_ES_API_KEY" in line
        assert "c2VjcmV0" not in line  # the secret itself is never printed
        assert handler.seen[-1].get("authorization") == "ApiKey c2VjcmV0"
    finally:
        server.shutdown()


def test_tls_is_verified_unless_a_ca_is_given(servers, table, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    server = serve(canned(200, ES6), tls=(str(cert), str(key)))
    url = f"https://127.0.0.1:{server.server_port}"
    try:
        line = _preflight_fails(servers, table, url, tmp_path)
        assert "TLS failed" in line and "ca_certs" in line
        # With the CA, the handshake passes and the engine itself is what is refused.
        line = _preflight_fails(servers, table, url, tmp_path,
                                config=f'[elasticsearch]\nca_certs = "{cert}"\n')
        assert "Elasticsearch 6.8.23" in line
    finally:
        server.shutdown()


def test_nodes_of_different_engines_are_refused_as_a_configuration_error(servers, table,
                                                                         tmp_path):
    es, opensearch = engine_url("ES7"), engine_url("OS2")
    result, _ = export(servers.hbase, es, table, "never-written", "--es", opensearch, expect_exit=2,
                       tmp_path=tmp_path)
    assert "are not one cluster" in result.stderr
    assert "Elasticsearch 7" in result.stderr and "OpenSearch 2" in result.stderr


# --------------------------------------------------------------------------- production indexing


def alias_indices(client: engine.Client, alias: str) -> frozenset[str] | None:
    """The indices ``alias`` points at now, as a reader resolving it finds them; None
    when no alias has the name."""
    answer = engine.call(client, "GET", f"/_alias/{alias}", ok=(404,))
    if not answer or "error" in answer:
        return None
    return frozenset(answer)


@pytest.mark.timeout(240)
def test_alias_cut_over_is_atomic_and_rolls_back(sink, sink_index, table, tmp_path):
    load_rows(table)
    alias, old, new = f"{sink_index}-live", f"{sink_index}-v1", f"{sink_index}-v2"
    try:
        _, first = export(sink.hbase, sink.url, table, old, "--alias", alias, tmp_path=tmp_path)
        assert first["alias"] == {"name": alias, "cut_over": True, "previous": [],
                                  "current": [old]}
        assert alias_indices(sink.client, alias) == {old}

        # A reader resolves the alias over and over while the second run swings it.
        seen: list[frozenset[str] | None] = []
        stop = threading.Event()

        def read() -> None:
            reader = engine.make_client(ElasticsearchSettings(hosts=(sink.url,)))
            try:
                deadline = time.monotonic() + 200
                while not stop.is_set() and time.monotonic() < deadline and len(seen) < 20_000:
                    seen.append(alias_indices(reader, alias))
            finally:
                reader.close()

        thread = threading.Thread(target=read)
        thread.start()
        try:
            _, second = export(sink.hbase, sink.url, table, new, "--alias", alias,
                               tmp_path=tmp_path)
            time.sleep(0.3)  # a few reads after the swap too
        finally:
            stop.set()
            thread.join(30)
        assert second["alias"]["previous"] == [old] and second["alias"]["current"] == [new]
        assert set(seen) == {frozenset({old}), frozenset({new})}, set(seen)  # never none
        first_new = seen.index(frozenset({new}))
        assert all(s == {new} for s in seen[first_new:])  # one swap, no flapping
        engine.refresh(sink.client, alias)
        assert engine.call(sink.client, "GET", f"/{alias}/_count")["count"] == ROWS

        report = tmp_path / "second.json"
        report.write_text(json.dumps(second))
        result = run_cli(["alias", "--rollback", "--report", report, "--es", sink.url])
        assert old in result.stdout
        assert alias_indices(sink.client, alias) == {old}
        # The alias no longer points where that run left it: a second rollback is refused.
        result = run_cli(["alias", "--rollback", "--report", report, "--es", sink.url],
                         expect_exit=2)
        assert len(result.stderr.strip().splitlines()) == 1 and alias in result.stderr
        assert alias_indices(sink.client, alias) == {old}
    finally:
        engine.call(sink.client, "DELETE", f"/_all/_alias/{alias}", ok=(404,))


def test_a_failed_run_leaves_the_alias_untouched(sink, sink_index, table, tmp_path):
    load_rows(table)
    alias, old, new = f"{sink_index}-live", f"{sink_index}-v1", f"{sink_index}-v2"
    try:
        export(sink.hbase, sink.url, table, old, "--alias", alias, tmp_path=tmp_path)
        # n as a date: every document of the second run is refused by its mapping.
        engine.create_index(sink.client, new, {}, {"properties": {"n": {"type": "date",
                                                                      "format": "yyyy"}}})
        put_row(table, row_key(0), {"cf:n": "not a year"}, row_time(0))
        _, report = export(sink.hbase, sink.url, table, new, "--alias", alias,
                           tmp_path=tmp_path, expect_exit=1)
        assert report["alias"]["cut_over"] is False
        assert "left as it was" in report["alias"]["reason"]
        assert alias_indices(sink.client, alias) == {old}
    finally:
        engine.call(sink.client, "DELETE", f"/_all/_alias/{alias}", ok=(404,))


def make_stream_template(client: engine.Client, pattern: str, name: str) -> bool:
    """An index template that makes ``pattern`` data streams; False on an engine without
    data streams (it refuses the template)."""
    try:
        engine.call(client, "PUT", f"/_index_template/{name}",
                    body={"index_patterns": [pattern], "data_stream": {}, "priority": 900})
    except engine.EngineError as exc:
        assert exc.status == 400 and "data_stream" in engine.error_reason(exc) + str(exc.body)
        return False
    return True


def streams_deletable(client: engine.Client) -> bool:
    """Whether the engine serves ``/_data_stream`` (delete included). Elasticsearch without
    its x-pack modules, as the dev servers run it, still makes data streams from templates
    but can never delete one."""
    try:
        engine.call(client, "GET", "/_data_stream")
    except engine.EngineError:
        return False
    return True


@pytest.mark.timeout(240)
def test_data_stream_writes_refuse_a_rerun_and_allow_duplicates_on_request(
        sink, sink_index, table, tmp_path):
    from hbase2es.search import targets

    load_rows(table)
    stream, template = f"{sink_index}-ds", f"{sink_index}-tpl"
    ledger = tmp_path / "job.db"
    if not make_stream_template(sink.client, f"{stream}*", template):
        # No data streams here (Elasticsearch 7 OSS): the name is a plain index, and the
        # run keeps its exactly-once versions, a re-run included.
        assert targets.stream_names(sink.client, [stream]) == {}
        for _ in range(2):
            _, report = export(sink.hbase, sink.url, table, stream, "--ledger", ledger,
                               tmp_path=tmp_path)
            assert report["totals"]["indexed"] == ROWS
        assert sources_and_versions(read_docs(sink.client, stream)) == expected_documents()
        return
    try:
        assert targets.stream_names(sink.client, [stream, f"{sink_index}-plain"]) == {
            stream: "@timestamp"}
        # A mapping that writes the row time elsewhere is refused before anything is written.
        result, _ = export(sink.hbase, sink.url, table, stream, "--log-level", "warning",
                           tmp_path=tmp_path, config='[mapping]\ntimestamp_field = "ts"\n',
                           expect_exit=2)
        assert len(result.stderr.strip().splitlines()) == 1
        assert "mapping.timestamp_field" in result.stderr and "@timestamp" in result.stderr
        assert targets.existing_streams(sink.client, [stream]) == {}
        _, report = export(sink.hbase, sink.url, table, stream, "--ledger", ledger,
                           tmp_path=tmp_path)
        assert report["totals"]["indexed"] == ROWS
        assert targets.existing_streams(sink.client, [stream]) == {stream: "@timestamp"}
        docs = read_docs(sink.client, stream)
        assert {d: v["source"] for d, v in docs.items()} == {
            d: source for d, (source, _) in expected_documents().items()}
        assert all(v["index"].startswith(".ds-") for v in docs.values())

        # Running the done slices again is refused before anything is written.
        result, _ = export(sink.hbase, sink.url, table, stream, "--ledger", ledger,
                           "--log-level", "warning", tmp_path=tmp_path, expect_exit=2)
        assert len(result.stderr.strip().splitlines()) == 1
        assert "--allow-duplicates" in result.stderr and stream in result.stderr
        # --resume skips them, so it is no re-run.
        _, report = export(sink.hbase, sink.url, table, stream, "--ledger", ledger,
                           "--resume", tmp_path=tmp_path)
        assert {s["status"] for s in report["slices"]} == {"skipped"}

        # After a rollover, the copies are what the refusal is about.
        engine.call(sink.client, "POST", f"/{stream}/_rollover")
        _, report = export(sink.hbase, sink.url, table, stream, "--ledger", ledger,
                           "--allow-duplicates", tmp_path=tmp_path)
        assert report["totals"]["indexed"] == ROWS
        engine.refresh(sink.client, stream)
        assert engine.call(sink.client, "GET", f"/{stream}/_count")["count"] == 2 * ROWS
    finally:
        # Without it (the dev Elasticsearch 8 and 9) the stream stays until the node
        # stops: devservers starts every node on fresh data, and the name is the test's.
        deletable = streams_deletable(sink.client)
        if deletable:
            engine.call(sink.client, "DELETE", f"/_data_stream/{stream}", ok=(400, 404, 405))
        # A template a live stream uses cannot go either.
        engine.call(sink.client, "DELETE", f"/_index_template/{template}",
                    ok=(404,) if deletable else (400, 404))
