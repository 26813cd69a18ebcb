"""--create-index, the mapping conflict check, the field-count pre-flight and --bulk-load."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hbase2es.search import engine as es_compat, indexsetup
from hbase2es.errors import ConfigError
from hbase2es.run.report import RunReport
from hbase2es.settings import load_settings
from helpers import (T0, clean_env, count_docs, export_args, put_row, read_index, read_report,
                     run_cli, table_name, write_config)

ROOT = Path(__file__).resolve().parent.parent
HOUR = 3_600_000
# T0 is 2023-11-14T22:13:20Z: four hours reach into the next day, so a daily template
# gives two indices.
START, END = T0, T0 + 4 * HOUR
DAY1, DAY2 = "2023.11.14", "2023.11.15"


def _load(table, rows: int = 8) -> None:
    for i in range(rows):
        put_row(table, f"row{i:02d}", {"cf:amount": str(i), "cf:name": f"name {i}"},
                T0 + i * (4 * HOUR // rows))


MAPPED = """
[mapping.columns]
"cf:amount" = { field = "amount", type = "text_int" }
"cf:name" = { field = "name" }
"""


def _settings(es, name: str) -> dict:
    """The index's own settings in flat form, read with the test's own client."""
    return es.indices.get_settings(index=name, flat_settings=True)[name]["settings"]


def _indexing_ops(es, name: str) -> int:
    stats = es.indices.stats(index=name, metric="indexing")
    return int(stats["indices"][name]["primaries"]["indexing"]["index_total"])


@pytest.mark.integration
def test_create_index_applies_settings_and_mappings(servers, table, index, es, tmp_path):
    _load(table)
    mappings = tmp_path / "mappings.json"
    # What dynamic mapping would not choose: integer (not long), keyword (not text).
    mappings.write_text(json.dumps({"mappings": {"properties": {
        "amount": {"type": "integer"}, "name": {"type": "keyword"}}}}))
    config = write_config(tmp_path / "job.toml", MAPPED + f"""
[elasticsearch]
mappings_file = "{mappings}"
[elasticsearch.index_settings]
number_of_shards = 2
number_of_replicas = 0
refresh_interval = "7s"
""")
    args = export_args(servers, table_name(table), index + "-{time:%Y.%m.%d}", START, END, "1h",
                       "--config", config, "--create-index", "--quiet")
    run_cli(args)
    for day in (DAY1, DAY2):
        name = f"{index}-{day}"
        flat = _settings(es, name)
        assert flat["index.number_of_shards"] == "2"
        assert flat["index.number_of_replicas"] == "0"
        assert flat["index.refresh_interval"] == "7s"
        props = es.indices.get_mapping(index=name)[name]["mappings"]["properties"]
        assert props["amount"] == {"type": "integer"} and props["name"] == {"type": "keyword"}
    assert len(read_index(es, index + "-*")) == 8
    run_cli(args)  # the indices now exist with these very mappings: no conflict


@pytest.mark.integration
def test_conflicting_mapping_is_reported_before_any_document_is_written(servers, table, index,
                                                                         es, tmp_path):
    _load(table)
    day1 = f"{index}-{DAY1}"
    es.indices.create(index=day1, mappings={"properties": {"amount": {"type": "keyword"}}})
    es.index(index=day1, id="someone-else", document={"amount": "x"}, refresh=True)
    config = write_config(tmp_path / "job.toml", MAPPED + """
[elasticsearch.mappings.properties]
amount = { type = "integer" }
""")
    result = run_cli(export_args(servers, table_name(table), index + "-{time:%Y.%m.%d}", START,
                                 END, "1h", "--config", config, "--create-index", "--quiet"),
                     expect_exit=2)
    assert f"index {day1}: amount is keyword in the index, integer in the config" \
        in result.stderr
    assert "nothing was written" in result.stderr
    assert count_docs(es, day1) == 1
    assert not es.indices.exists(index=f"{index}-{DAY2}")  # nothing created either


@pytest.mark.integration
def test_bulk_load_restores_settings_after_a_normal_run(servers, table, index, es, tmp_path):
    _load(table)
    day1, day2 = f"{index}-{DAY1}", f"{index}-{DAY2}"
    es.indices.create(index=day1, settings={"refresh_interval": "7s", "number_of_replicas": 2})
    # day2 is created by the run, with replicas but no refresh_interval of its own.
    config = write_config(tmp_path / "job.toml", """
[elasticsearch.index_settings]
number_of_replicas = 1
""")
    report = tmp_path / "run.json"
    run_cli(export_args(servers, table_name(table), index + "-{time:%Y.%m.%d}", START, END, "1h",
                        "--config", config, "--create-index", "--bulk-load", "--report", report,
                        "--quiet"))
    one, two = _settings(es, day1), _settings(es, day2)
    assert (one["index.refresh_interval"], one["index.number_of_replicas"]) == ("7s", "2")
    assert "index.refresh_interval" not in two and two["index.number_of_replicas"] == "1"
    data = read_report(report)
    assert data["bulk_load"]["restored"] is True
    assert data["bulk_load"]["previous"] == {
        day1: {"index.refresh_interval": "7s", "index.number_of_replicas": "2"},
        day2: {"index.refresh_interval": None, "index.number_of_replicas": "1"}}
    # The run ends with a refresh: every document is searchable without waiting 7s.
    total = sum(int(es.count(index=n)["count"]) for n in (day1, day2))
    assert total == 8


@pytest.mark.integration
def test_bulk_load_restores_settings_after_sigint(servers, table, index, es, tmp_path):
    slices = 600  # one-minute slices, one row each: far more than a few seconds of work
    for i in range(slices):
        with table.batch(timestamp=T0 + i * 60_000 + 1) as batch:
            batch.put(f"row{i:04d}".encode(), {b"cf:v": b"x"})
    es.indices.create(index=index, settings={"refresh_interval": "5s", "number_of_replicas": 1})
    report = tmp_path / "run.json"
    env = clean_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hbase2es",
         *export_args(servers, table_name(table), index, T0, T0 + slices * 60_000, "1m",
                      "--workers", "1", "--bulk-load", "--quiet", "--report", report,
                      "--no-one-pass")],  # per slice: one pass wrote all 600 before the signal
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _settings(es, index).get("index.refresh_interval") != "-1":
            assert proc.poll() is None, f"export ended before bulk-load mode was seen: " \
                                        f"{proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "bulk-load mode never appeared"
            time.sleep(0.05)
        assert _settings(es, index)["index.number_of_replicas"] == "0"
        while _indexing_ops(es, index) == 0:  # counted without a refresh, unlike _count
            assert proc.poll() is None and time.monotonic() < deadline, "no document written"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr.decode()[-2000:]
    flat = _settings(es, index)
    assert (flat["index.refresh_interval"], flat["index.number_of_replicas"]) == ("5s", "1")
    data = read_report(report)
    assert data["interrupted"] is True and data["bulk_load"]["restored"] is True
    assert 0 < data["totals"]["indexed"] < slices  # it really stopped part way


@pytest.mark.integration
def test_failed_restore_is_reported_with_a_command_that_works(servers, index, es):
    settings = load_settings(None, {"hbase.table": "t", "elasticsearch.hosts": [servers.es],
                                    "elasticsearch.index": index}, now_ms=T0, need_window=False)
    es.indices.create(index=index, settings={"refresh_interval": "9s"})
    client = es_compat.make_client(settings.elasticsearch)
    report = RunReport([])
    try:
        with indexsetup.bulk_load(client, settings, [index], report):
            assert _settings(es, index)["index.refresh_interval"] == "-1"
            # The index goes away and comes back with bulk-load values: restoring fails.
            es.indices.delete(index=index)
    finally:
        client.close()
    assert report.bulk_load["restored"] is False
    [command] = report.bulk_load_restore_failed
    es.indices.create(index=index, settings={"refresh_interval": "-1", "number_of_replicas": 0})
    subprocess.run(["bash", "-c", command], check=True, timeout=60, stdout=subprocess.DEVNULL)
    flat = _settings(es, index)
    assert (flat["index.refresh_interval"], flat["index.number_of_replicas"]) == ("9s", "1")


@pytest.mark.integration
def test_plan_sample_warns_when_fields_exceed_the_limit(servers, table, index, tmp_path):
    for i in range(3):
        put_row(table, f"r{i}", {f"cf:q{j}": "v" for j in range(4)}, T0 + i)
    config = write_config(tmp_path / "job.toml", """
[elasticsearch.index_settings]
"index.mapping.total_fields.limit" = 4
""")
    args = ["plan", "--hbase", servers.hbase, "--table", table_name(table), "--es", servers.es,
            "--index", index, "--start", T0, "--end", T0 + HOUR, "--config", config,
            "--sample", "3"]
    result = run_cli(args)
    # @timestamp + cf:q0..cf:q3
    assert "5 fields would be mapped" in result.stderr
    assert "index.mapping.total_fields.limit = 4" in result.stderr
    config = write_config(tmp_path / "job.toml", '[elasticsearch.index_settings]\n'
                          '"index.mapping.total_fields.limit" = 5\n')
    assert "fields would be mapped" not in run_cli(args).stderr


# --- settings (no servers) -----------------------------------------------------------


def _load_config(tmp_path, text: str):
    path = write_config(tmp_path / "job.toml", text)
    return load_settings(path, {"hbase.table": "t", "elasticsearch.index": "i"}, now_ms=T0,
                         need_window=False)


def test_index_settings_and_mappings_come_from_toml_and_json(tmp_path):
    s = _load_config(tmp_path, """
[elasticsearch.index_settings]
number_of_shards = 3
[elasticsearch.mappings.properties.amount]
type = "long"
""")
    assert s.elasticsearch.index_settings == {"number_of_shards": 3}
    assert s.elasticsearch.mappings == {"properties": {"amount": {"type": "long"}}}
    (tmp_path / "m.json").write_text('{"properties": {"a": {"type": "keyword"}}}')
    s = _load_config(tmp_path, f'[elasticsearch]\nmappings_file = "{tmp_path / "m.json"}"\n')
    assert s.elasticsearch.mappings == {"properties": {"a": {"type": "keyword"}}}


@pytest.mark.parametrize("text, message", [
    ('[elasticsearch]\nindex_settings = "x"\n', "elasticsearch.index_settings must be a table"),
    ('[elasticsearch]\nmappings = 3\n', "elasticsearch.mappings must be a table"),
    ('[elasticsearch]\nmappings_file = "/nonexistent/m.json"\n',
     "elasticsearch.mappings_file: cannot read '/nonexistent/m.json'"),
    ('[elasticsearch]\nmappings_file = "{bad}"\n[elasticsearch.mappings]\nx = 1\n',
     "give either elasticsearch.mappings or mappings_file"),
    ('[elasticsearch]\nmappings_file = "{bad}"\n', "is not valid JSON"),
    ('[run]\nbulk_load = "yes"\n', "run.bulk_load must be true or false"),
])
def test_bad_index_setup_keys_name_the_key(tmp_path, text, message):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError) as err:
        _load_config(tmp_path, text.replace("{bad}", str(bad)))
    assert message in str(err.value)
    assert "job.toml" in str(err.value) or "mappings_file" in str(err.value)


def test_bad_index_settings_exit_2_on_the_command_line(tmp_path):
    config = write_config(tmp_path / "job.toml", '[elasticsearch]\nindex_settings = [1]\n')
    result = run_cli(["export", "--config", config, "--table", "t", "--index", "i", "--start",
                      T0, "--end", T0 + HOUR, "--create-index"], expect_exit=2)
    assert "elasticsearch.index_settings must be a table" in result.stderr


def test_mapping_conflicts_compare_types_down_the_tree():
    existing = {"properties": {"a": {"type": "keyword"}, "o": {"properties": {
        "x": {"type": "long"}}}, "t": {"type": "text", "fields": {"raw": {"type": "keyword"}}}}}
    wanted = {"properties": {"a": {"type": "keyword"}, "new": {"type": "long"},
                             "o": {"properties": {"x": {"type": "integer"}}},
                             "t": {"type": "text", "fields": {"raw": {"type": "wildcard"}}}}}
    assert indexsetup.mapping_conflicts(existing, wanted) == [
        "o.x is long in the index, integer in the config",
        "t.raw is keyword in the index, wildcard in the config"]
    assert indexsetup.mapping_conflicts(existing, {"properties": {"a": {"type": "long"}}}) == [
        "a is keyword in the index, long in the config"]


def test_restore_command_never_carries_a_password_from_the_url():
    from hbase2es.settings import ElasticsearchSettings

    es = ElasticsearchSettings(hosts=("https://admin:s3cret@es.example:9200",))
    command = indexsetup.restore_command(es, ["events-1"], {"index.refresh_interval": None})
    assert "s3cret" not in command and "admin" not in command
    assert "https://es.example:9200/events-1/_settings" in command
