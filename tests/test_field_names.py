"""Field names that would collide (issue 23, item 2), on the real servers and at the CLI.

A value that is not UTF-8 goes to "<column>#b64"; a table may also hold a column of
exactly that name. Both values must reach Elasticsearch. A config in which two parts of
the mapping would write one field is refused before any server is asked.
"""

from __future__ import annotations

import base64

import pytest

from helpers import (T0, export_args, put_row, read_index, read_report, run_cli, table_name,
                     write_config)

HOUR = 3_600_000


@pytest.mark.integration
def test_a_binary_value_and_a_column_named_like_its_b64_field_are_both_indexed(
        servers, table, index, es, tmp_path):
    put_row(table, "r1", {b"cf:x": b"\xff\x00binary", b"cf:x#b64": b"real text",
                          b"cf:y": b"plain"}, T0 + 10)
    put_row(table, "r2", {b"cf:x": b"\xfe"}, T0 + 20)  # no colliding column: the usual name
    run_cli(export_args(servers, table_name(table), index, T0, T0 + HOUR, "1h", "--quiet",
                        "--report", tmp_path / "report.json"))
    totals = read_report(tmp_path / "report.json")["totals"]
    assert (totals["indexed"], totals["failed"]) == (2, 0)
    docs = read_index(es, index)
    one = docs["r1"]["_source"]
    assert one["cf:x#b64"] == "real text"
    assert one["cf:x#b64#b64"] == base64.b64encode(b"\xff\x00binary").decode()
    assert one["cf:y"] == "plain"
    assert docs["r2"]["_source"]["cf:x#b64"] == base64.b64encode(b"\xfe").decode()


@pytest.mark.parametrize("toml, keys", [
    ("[mapping.columns]\n\"cf:a\" = { field = \"cf:other\" }\n",
     ["mapping.columns.\"cf:a\".field", "mapping.unmapped", "cf:other"]),
    ("[mapping]\nrowkey_field = \"cf:key\"\n", ["mapping.rowkey_field", "mapping.unmapped"]),
])
def test_export_refuses_a_field_written_twice_with_one_line(tmp_path, toml, keys):
    config = write_config(tmp_path / "job.toml", toml)
    # An address nobody listens on: the config must fail before any server is asked.
    result = run_cli(["export", "--config", config, "--hbase", "127.0.0.1:1", "--es",
                      "http://127.0.0.1:1", "--table", "t", "--index", "i", "--start", T0,
                      "--end", T0 + HOUR], expect_exit=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hbase2es: error: "), result.stderr
    for key in keys:
        assert key in lines[0]
