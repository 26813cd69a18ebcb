"""Alias cut-over and data streams beyond what every engine runs (tests/test_sinks.py):
index-name templates, --verify before the cut-over, the rollback's refusals, the bad input
that stops a run before anything is written, and the pure parts (template matching, the
create action). On the session's Elasticsearch; data-stream refusals on an OpenSearch
(which has the whole data-stream API) from the dev servers' environment."""

from __future__ import annotations

import json
import time

import orjson
import pytest
from helpers import (T0, drop_indices, engine_url, put_row, read_report, require_or_skip, run_cli,
                     table_name, write_config)

from hbase2es.search import engine, targets
from hbase2es.search.chunking import create_action, document_problem
from hbase2es.settings import ElasticsearchSettings

HOUR = 3_600_000
START, END = T0, T0 + 3 * HOUR
ROWS = 9  # three per hourly slice


def row_time(i: int) -> int:
    return START + 1000 + i * 20 * 60_000


def load_rows(table, rows: int = ROWS) -> None:
    for i in range(rows):
        put_row(table, f"row-{i:02d}", {"cf:n": str(i)}, row_time(i))


def hour_name(prefix: str, ms: int) -> str:
    return f"{prefix}-{time.strftime('%Y.%m.%d.%H', time.gmtime(ms / 1000))}"


@pytest.fixture
def client(servers):
    c = engine.make_client(ElasticsearchSettings(hosts=(servers.es,)))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def names(client, unique_name):
    """A prefix of this test's own; its indices and the alias ``<prefix>-live`` go after."""
    prefix = unique_name.replace("_", "-")
    try:
        yield prefix
    finally:
        engine.call(client, "DELETE", f"/_all/_alias/{prefix}-live", ok=(404,))
        drop_indices(client, prefix)


def export(servers, table, index: str, tmp_path, *extra, url: str | None = None,
           expect_exit: int = 0, config: str = ""):
    report = tmp_path / f"report-{time.monotonic_ns()}.json"
    cfg = write_config(tmp_path / f"job-{time.monotonic_ns()}.toml", config or "\n")
    result = run_cli(["export", "--config", cfg, "--hbase", servers.hbase, "--table",
                      table_name(table), "--es", url or servers.es, "--index", index,
                      "--start", START, "--end", END, "--slice", "1h", "--quiet",
                      "--log-level", "warning", "--report", report, *extra],
                     expect_exit=expect_exit)
    return result, (read_report(report) if report.exists() else None)


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# --------------------------------------------------------------------------- pure parts


def template(name: str, patterns, priority: int = 0, stream: dict | None = None) -> dict:
    body = {"index_patterns": patterns, "priority": priority}
    if stream is not None:
        body["data_stream"] = stream
    return {"name": name, "index_template": body}


def test_the_matching_template_of_highest_priority_decides_whether_a_stream_is_made():
    templates = [template("logs", ["logs-*"], 100, {}),
                 template("logs-plain", ["logs-plain-*"], 200),
                 template("metrics", "metrics-*", 5, {"timestamp_field": {"name": "ts"}})]
    assert targets.template_makes_stream("logs-app", templates) == "@timestamp"
    assert targets.template_makes_stream("logs-plain-app", templates) is None  # 200 wins
    assert targets.template_makes_stream("metrics-cpu", templates) == "ts"  # one pattern as text
    assert targets.template_makes_stream("other", templates) is None
    assert targets.template_makes_stream("logs-app", []) is None


def test_a_data_stream_document_is_created_without_a_version():
    item = create_action("logs-app", "row-1", {"@timestamp": "2023-11-14T22:13:20.000Z"})
    action, source, rest = item.split(b"\n")
    assert orjson.loads(action) == {"create": {"_index": "logs-app", "_id": "row-1"}}
    assert orjson.loads(source) == {"@timestamp": "2023-11-14T22:13:20.000Z"} and rest == b""
    # No version is sent, so a row time before 1970 is no problem there; the id limit stays.
    assert document_problem("row-1", None) is None
    assert document_problem("row-1", -1)[0] == "version_out_of_range"
    assert document_problem("x" * 513, None)[0] == "document_id_too_long"


# --------------------------------------------------------------------------- alias cut-over


def test_the_alias_points_at_every_index_of_a_templated_window_after_verify(
        servers, table, client, names, tmp_path):
    load_rows(table)
    alias = f"{names}-live"
    template_name = f"{names}-{{time:%Y.%m.%d.%H}}"
    result, report = export(servers, table, template_name, tmp_path, "--alias", alias,
                            "--verify")
    hours = [hour_name(names, START + h * HOUR) for h in range(3)]
    assert f"alias {alias}: now {', '.join(sorted(hours))} (was nothing;" in result.stdout
    assert report["verify"]["exit_code"] == 0 and report["verify"]["totals"]["missing"] == 0
    assert report["alias"] == {"name": alias, "cut_over": True, "previous": [],
                               "current": sorted(hours)}
    assert targets.alias_targets(client, alias) == sorted(hours)
    engine.refresh(client, alias)
    assert engine.call(client, "GET", f"/{alias}/_count")["count"] == ROWS

    # Rollback of a first cut-over: the alias had no target, so it goes away.
    path = tmp_path / "first.json"
    path.write_text(json.dumps(report))
    run_cli(["alias", "--rollback", "--report", path, "--es", servers.es])
    assert targets.alias_targets(client, alias) == []


def test_a_failed_verify_leaves_the_alias_where_it_was(servers, table, client, names,
                                                       tmp_path):
    load_rows(table)
    alias, old, new = f"{names}-live", f"{names}-v1", f"{names}-v2"
    export(servers, table, old, tmp_path, "--alias", alias)
    # One document of the second run is refused, which --max-errors lets pass: the export
    # succeeds, verify finds the document missing, and the alias stays on the old index.
    engine.create_index(client, new, {}, {"properties": {"cf:n": {"type": "integer"}}})
    put_row(table, "row-00", {"cf:n": "not a number"}, row_time(0))
    result, report = export(servers, table, new, tmp_path, "--alias", alias, "--verify",
                            "--max-errors", "1", "--log-format", "json", expect_exit=1)
    said = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    left = [e for e in said if e["event"] == "alias_not_cut_over"]
    assert len(left) == 1 and left[0]["alias"]["name"] == alias
    assert "verify failed" in left[0]["message"]
    assert report["totals"]["failed"] == 1 and report["verify"]["exit_code"] == 1
    assert report["exit_code"] == 1
    assert report["alias"]["cut_over"] is False and "verify failed" in report["alias"]["reason"]
    assert f"alias {alias}: not cut over (verify failed" in result.stdout
    assert targets.alias_targets(client, alias) == [old]


def test_an_alias_name_that_is_an_index_stops_the_run_before_anything_is_written(
        servers, table, client, names, tmp_path):
    load_rows(table)
    taken, target = f"{names}-taken", f"{names}-target"
    engine.create_index(client, taken, {}, {})
    for alias in (taken, target):
        result, report = export(servers, table, target, tmp_path, "--alias", alias,
                                "--create-index", expect_exit=2)
        assert "run.alias" in one_error_line(result) and alias in result.stderr
        assert report is None
        assert not engine.index_exists(client, target)  # --create-index did not run either


def test_rollback_refuses_a_report_without_a_cut_over(servers, table, names, tmp_path):
    load_rows(table)
    _, report = export(servers, table, f"{names}-v1", tmp_path)
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(report))
    result = run_cli(["alias", "--rollback", "--report", path, "--es", servers.es],
                     expect_exit=2)
    assert "no alias cut-over" in one_error_line(result)
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json")
    result = run_cli(["alias", "--rollback", "--report", garbage, "--es", servers.es],
                     expect_exit=2)
    assert "not a JSON report" in one_error_line(result)


# --------------------------------------------------------------------------- data streams


@pytest.fixture
def stream(servers, unique_name):
    """A data-stream name of this test's own on an engine with the whole data-stream API
    (OpenSearch 2 of the dev servers), made a data stream by an index template; (url,
    client, name), the stream and its template deleted afterwards."""
    try:
        url = engine_url("OS2")
    except Exception as exc:  # noqa: BLE001 - the helper says which variable is missing
        require_or_skip(f"no OpenSearch 2 for data-stream tests: {exc}")
    c = engine.make_client(ElasticsearchSettings(hosts=(url,)))
    name = unique_name.replace("_", "-") + "-ds"
    engine.call(c, "PUT", f"/_index_template/{name}-tpl",
                body={"index_patterns": [f"{name}*"], "data_stream": {}, "priority": 900})
    try:
        yield url, c, name
    finally:
        engine.call(c, "DELETE", f"/_data_stream/{name}", ok=(404,))
        engine.call(c, "DELETE", f"/_index_template/{name}-tpl", ok=(404,))
        c.close()


@pytest.mark.parametrize("extra, config, key", [
    (["--alias", "{stream}-live"], "", "run.alias"),
    (["--create-index"], "", "run.create_index"),
    (["--verify"], "", "run.verify"),
    ([], '[mapping.delete_when]\ncolumn = "cf:gone"\npresent = true\n', "mapping.delete_when"),
])
def test_what_a_data_stream_cannot_take_is_refused_before_writing(
        servers, table, stream, tmp_path, extra, config, key):
    url, c, name = stream
    load_rows(table)
    result, report = export(servers, table, name, tmp_path,
                            *[e.format(stream=name) for e in extra], url=url, config=config,
                            expect_exit=2)
    assert one_error_line(result).startswith(f"hbase2es: error: {key}:"), result.stderr
    assert report is None and targets.existing_streams(c, [name]) == {}


def test_without_a_ledger_a_window_the_stream_holds_is_refused(servers, table, stream,
                                                               tmp_path):
    url, c, name = stream
    load_rows(table)
    _, report = export(servers, table, name, tmp_path, url=url)
    assert report["totals"]["indexed"] == ROWS
    result, _ = export(servers, table, name, tmp_path, url=url, expect_exit=2)
    line = one_error_line(result)
    assert "run.allow_duplicates" in line and f"holds {ROWS} document" in line
    _, report = export(servers, table, name, tmp_path, "--allow-duplicates", url=url)
    # Same backing index: the row key as _id makes it refuse the copies (stale).
    assert (report["totals"]["indexed"], report["totals"]["stale"]) == (0, ROWS)
    engine.refresh(c, name)
    assert engine.call(c, "GET", f"/{name}/_count")["count"] == ROWS


def test_a_verify_that_cannot_run_keeps_the_report_and_the_alias(servers, table, client, names,
                                                                tmp_path, monkeypatch):
    """HBase going away between export and verify cannot be made on demand: verify's
    start is made to fail as it would, the export before it is real."""
    import hbase2es.run.verify as verify_module
    from hbase2es.errors import UnavailableError

    def gone(*args, **kwargs):
        raise UnavailableError("HBase Thrift server 127.0.0.1:1 unreachable")

    monkeypatch.setattr(verify_module, "run_verify", gone)
    load_rows(table)
    alias = f"{names}-live"
    _, report = export(servers, table, f"{names}-v1", tmp_path, "--alias", alias, "--verify",
                       expect_exit=3)
    assert report["totals"]["indexed"] == ROWS  # the export's report is there
    assert report["verify"] == {"exit_code": 3,
                                "error": "HBase Thrift server 127.0.0.1:1 unreachable"}
    assert report["alias"]["cut_over"] is False and "verify failed" in report["alias"]["reason"]
    assert targets.alias_targets(client, alias) == []
