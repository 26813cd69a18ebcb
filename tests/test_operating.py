"""Operating it: bad limits, the short summary, the metrics file, JSON logs and secrets.

The first part needs no server (settings, the summary table, the text format, the log
formatters); the second runs real exports and reads what they leave behind.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import promtext
from helpers import T0, clean_env, count_docs, export_args, free_port, put_row, read_report, \
    run_cli, table_name, write_config

from hbase2es.run import logformat
from hbase2es.run.metrics import Sample, collect, render, watermark
from hbase2es.run.report import RunReport, SliceReport, summary_table
from hbase2es.timewindow import Slice

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sekrit-api-key-4f1c9"
PASSWORD = "pa55-word-77e2"
SECRET_ENV = {"HBASE2ES_ES_API_KEY": API_KEY, "HBASE2ES_ES_PASSWORD": PASSWORD}


def _offline_export(tmp_path, *extra, env=None):
    """An export that must stop at its settings: with nobody on the ports it would exit 3."""
    args = ["export", "--hbase", f"127.0.0.1:{free_port()}", "--table", "t",
            "--es", f"http://127.0.0.1:{free_port()}", "--index", "i", "--start", str(T0),
            "--end", str(T0 + 3000), "--slice", "1s", *extra]
    return run_cli(args, expect_exit=2, env=env)


def _one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args,key", [
    (["--max-docs-per-second", "0"], "run.max_docs_per_second"),
    (["--max-docs-per-second", "-5"], "run.max_docs_per_second"),
    (["--max-docs-per-second", "many"], "run.max_docs_per_second"),
    (["--max-docs-per-second", "inf"], "run.max_docs_per_second"),
    (["--max-bytes-per-second", "0"], "run.max_bytes_per_second"),
    (["--max-rows-per-second", "-1"], "hbase.max_rows_per_second"),
    (["--metrics-interval", "0"], "run.metrics_interval"),
])
def test_a_zero_negative_or_bad_limit_is_one_line_and_exit_2(tmp_path, args, key):
    line = _one_line(_offline_export(tmp_path, *args))
    assert line.startswith("hbase2es: error: ") and key in line, line


def test_limits_from_the_file_and_the_environment_are_checked_the_same_way(tmp_path):
    config = write_config(tmp_path / "job.toml", "[hbase]\nmax_rows_per_second = 0\n")
    assert "hbase.max_rows_per_second must be greater than 0" in _one_line(
        _offline_export(tmp_path, "--config", config))
    line = _one_line(_offline_export(tmp_path, env={"HBASE2ES_MAX_BYTES_PER_SECOND": "-3"}))
    assert "run.max_bytes_per_second must be greater than 0" in line


def test_a_metrics_file_in_a_missing_directory_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "job.prom"
    line = _one_line(_offline_export(tmp_path, "--metrics-file", str(path)))
    assert "run.metrics_file" in line and "does not exist" in line


# --------------------------------------------------------------------------- the summary


def _week_of_slices(failed=(7, 300, 301)) -> RunReport:
    """672 slices of 15 minutes; three failed, one (index 500) slow."""
    minutes15 = 15 * 60_000
    entries = []
    for i in range(672):
        e = SliceReport(Slice(i, T0 + i * minutes15, T0 + (i + 1) * minutes15), status="done",
                        rows=10, indexed=10, seconds=1.0 + (i % 10) / 100)
        if i in failed:
            e.status, e.indexed, e.failed, e.error = "failed", 0, 10, "boom"
        entries.append(e)
    entries[500].seconds = 99.0
    report = RunReport(entries, seconds=123.0)
    return report


def test_the_summary_of_a_week_in_15_minute_slices_fits_a_screen():
    report = _week_of_slices()
    lines = summary_table(report).splitlines()
    assert len(lines) <= 25, "\n".join(lines)
    body = [line for line in lines if " .. " in line]
    assert sum(" failed " in line for line in body) == 3
    assert len(body) == 3 + 5  # the failed ones and the five slowest
    assert "99.0" in body[3]  # the slowest first
    total = next(line for line in lines if line.startswith("total (672 slices)"))
    assert total.split()[3:7] == ["6720", "6690", "0", "30"]
    assert "slices: 669 done, 3 failed" in lines
    assert any("--summary full" in line for line in lines)


def test_summary_full_lists_every_slice_and_many_failures_are_cut_short():
    assert sum(" .. " in line for line in summary_table(_week_of_slices(), full=True)
               .splitlines()) == 672
    many = summary_table(_week_of_slices(failed=range(0, 600, 2))).splitlines()
    assert sum(" failed " in line for line in many if " .. " in line) == 10
    assert any("first 10 of 300" in line for line in many)


def test_a_small_run_still_shows_every_slice():
    report = _week_of_slices(failed=())
    report.slices = report.slices[:4]
    lines = summary_table(report).splitlines()
    assert sum(" .. " in line for line in lines) == 4 and "slices: 4 done" in lines


def test_the_summary_shows_the_achieved_rate_and_how_often_it_backed_off():
    from hbase2es.run.report import record_rates

    report = _week_of_slices(failed=())
    report.slices = report.slices[:4]
    for s in report.slices:
        s.rows_read = 20
    counters = {"sending_seconds": 0.02, "bytes_sent": 40_000, "rejected_429": 7,
                "bulk_retries": 3, "backoffs": 2, "increases": 2, "pressured_bulks": 3,
                "concurrency": 4, "lowest_concurrency": 1, "ceiling": 4, "requests": 9}
    record_rates(report, {"max_docs_per_second": 2000.0, "max_rows_per_second": None},
                 counters, adaptive=True)
    assert report.throughput == {"docs_per_second": 2000.0, "rows_per_second": 4000.0,
                                 "bytes_per_second": 2_000_000.0, "sending_seconds": 0.02,
                                 "limits": {"max_docs_per_second": 2000.0}}
    assert report.to_dict()["pressure"]["backoffs"] == 2
    lines = summary_table(report).splitlines()
    assert "rate: 2,000 docs/s, 4,000 rows read/s, 2.00 MB/s over 0.0s of sending " \
        "(limit 2,000 docs/s)" in lines
    assert "Elasticsearch pushed back: 7 x 429, 2 back-off(s): concurrent bulks went down " \
        "to 1 of 4, ended at 4" in lines


# --------------------------------------------------------------------------- text format


def test_the_metrics_text_parses_strictly_and_escapes_labels():
    report = _week_of_slices()
    report.slices[0].rows_read = 25
    samples = collect(report, now=1_800_000_000.0, run_seconds=12.5, in_flight=(3, 2),
                      watermark_from=T0, exit_code=1, last_success=1_700_000_500.0)
    text = render('ev"ents\\{time}\n', samples)
    types, values = promtext.parse(text)
    job = 'ev"ents\\{time}\n'
    assert promtext.value(values, "hbase2es_docs_indexed_total", job=job) == 6690 + 2
    assert promtext.value(values, "hbase2es_rows_total", job=job) == 6720 + 3
    assert promtext.value(values, "hbase2es_docs_failed_total", job=job) == 30
    assert promtext.value(values, "hbase2es_slices", job=job, status="failed") == 3
    assert promtext.value(values, "hbase2es_exit_code", job=job) == 1
    assert promtext.value(values, "hbase2es_running", job=job) == 0
    assert promtext.value(values, "hbase2es_run_seconds", job=job) == 12.5
    # Slices 0..6 are done, 7 failed: the watermark stops at the start of slice 7.
    mark = watermark(report, T0)
    assert mark == report.slices[7].slice.start_ms
    assert promtext.value(values, "hbase2es_watermark_timestamp_seconds", job=job) == mark / 1000
    assert promtext.value(values, "hbase2es_watermark_lag_seconds", job=job) == \
        pytest.approx(1_800_000_000.0 - mark / 1000)
    assert types["hbase2es_docs_indexed_total"] == "counter"


@pytest.mark.parametrize("bad", [
    "# TYPE a_total counter\na_total{job=\"x\"} 1",  # no final newline
    "a_total 1\n",  # no TYPE
    "# TYPE a counter\na 1\n",  # a counter without _total
    "# TYPE a gauge\na{job=\"x} 1\n",  # unterminated label
    "# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"1\"} 2\n",  # a's samples apart
    "# TYPE a gauge\na 1\na 2\n",  # a series twice
    "# TYPE a gauge\na one\n",
])
def test_the_strict_parser_refuses_a_bad_file(bad):
    with pytest.raises(promtext.ParseError):
        promtext.parse(bad)


def test_render_keeps_one_help_and_type_per_metric():
    text = render("j", [Sample("slices", "gauge", "h", 1, (("status", "done"),)),
                        Sample("slices", "gauge", "h", 2, (("status", "failed"),))])
    assert text.count("# TYPE hbase2es_slices gauge") == 1
    assert promtext.parse(text)[1][("hbase2es_slices",
                                    frozenset({("job", "j"), ("status", "failed")}))] == 2


# --------------------------------------------------------------------------- formatters


def _record(message: str, *args, **extra) -> logging.LogRecord:
    record = logging.LogRecord("hbase2es.run.x", logging.WARNING, __file__, 1, message, args,
                               None)
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize("fmt", ["human", "json"])
def test_both_formats_scrub_url_passwords_and_secret_values(fmt, monkeypatch):
    monkeypatch.setattr(logformat, "_secrets", (API_KEY, PASSWORD))
    formatter = logformat.JsonFormatter() if fmt == "json" else logformat.HumanFormatter()
    line = formatter.format(_record("cannot reach %s with key %s (\"%s\")",
                                    f"http://elastic:{PASSWORD}@es:9200", API_KEY, PASSWORD,
                                    error=f"token {API_KEY}"))
    assert API_KEY not in line and PASSWORD not in line and "elastic:" not in line
    assert "http://***@es:9200" in line
    if fmt == "json":
        data = orjson.loads(line)
        assert data["level"] == "warning" and data["event"] == "message"
        assert data["error"] == "token ***"


def test_the_secrets_are_the_values_of_the_variables_the_settings_name(monkeypatch):
    from hbase2es.settings import ElasticsearchSettings

    monkeypatch.setenv("MY_KEY", API_KEY)
    monkeypatch.setenv("HBASE2ES_ES_PASSWORD", PASSWORD)
    found = logformat.secrets_of(ElasticsearchSettings(api_key_env="MY_KEY"))
    assert API_KEY in found and PASSWORD in found
    monkeypatch.setenv("MY_KEY", "ab")  # too short to scrub without mangling words
    assert "ab" not in logformat.secrets_of(ElasticsearchSettings(api_key_env="MY_KEY"))


# --------------------------------------------------------------------------- real runs


def _rows(table, n: int, start: int, step: int) -> None:
    for i in range(n):
        put_row(table, f"r{i:03d}", {"cf:n": str(i)}, start + i * step)


@pytest.mark.integration
def test_metrics_file_of_an_incremental_run_and_of_a_failed_one(servers, table, es, index,
                                                                 tmp_path):
    _rows(table, 6, T0, 500)  # 2 rows per 1 s slice
    ledger, prom = tmp_path / "job.db", tmp_path / "job.prom"
    base = export_args(servers, table_name(table), index, T0, T0 + 3000, "1s", "--workers", "1",
                       "--ledger", ledger, "--incremental", "--metrics-file", prom,
                       "--report", tmp_path / "r.json")
    before = time.time()
    run_cli(base)
    after = time.time()
    types, values = promtext.parse(prom.read_text())
    job = {"job": index}  # [run] job defaults to the index name
    report = read_report(tmp_path / "r.json")
    assert promtext.value(values, "hbase2es_docs_indexed_total", **job) == 6 == count_docs(es, index)
    assert promtext.value(values, "hbase2es_rows_total", **job) == 6
    assert promtext.value(values, "hbase2es_rows_read_total", **job) == \
        sum(s["rows_read"] for s in report["slices"]) >= 6
    assert promtext.value(values, "hbase2es_slices", status="done", **job) == 3
    assert promtext.value(values, "hbase2es_slices", status="failed", **job) == 0
    assert promtext.value(values, "hbase2es_docs_failed_total", **job) == 0
    # One pass: the three slices share one scan and one bulk.
    assert promtext.value(values, "hbase2es_bulk_requests_total", **job) == 1
    assert promtext.value(values, "hbase2es_bulk_429_total", **job) == 0
    assert promtext.value(values, "hbase2es_exit_code", **job) == 0
    assert promtext.value(values, "hbase2es_running", **job) == 0
    assert 0 < promtext.value(values, "hbase2es_run_seconds", **job) <= after - before
    success = promtext.value(values, "hbase2es_last_success_timestamp_seconds", **job)
    assert before <= success <= after
    mark = promtext.value(values, "hbase2es_watermark_timestamp_seconds", **job)
    assert mark == (T0 + 3000) / 1000
    lag = promtext.value(values, "hbase2es_watermark_lag_seconds", **job)
    assert before - mark - 1 <= lag <= after - mark + 1
    assert not list(tmp_path.glob("job.prom.tmp*"))

    # The next run finds Elasticsearch gone: exit 3, and the last success stays the first's.
    failing = [a if a != servers.es else f"http://127.0.0.1:{free_port()}" for a in base]
    failing[failing.index("--end") + 1] = str(T0 + 4000)
    put_row(table, "late", {"cf:n": "9"}, T0 + 3500)
    run_cli(failing, expect_exit=3)
    _, values = promtext.parse(prom.read_text())
    assert promtext.value(values, "hbase2es_exit_code", **job) == 3
    assert promtext.value(values, "hbase2es_last_success_timestamp_seconds", **job) == success
    assert promtext.value(values, "hbase2es_watermark_timestamp_seconds", **job) == mark


MAPPING_TOML = """
[run]
job = "nightly events"
[mapping.columns]
"cf:n" = { field = "n", type = "string" }
"""


@pytest.mark.integration
def test_json_logs_from_parent_and_workers_parse_and_hold_no_secret(servers, table, es, index,
                                                                    tmp_path):
    # "n" is a long in the index: the row whose n is not a number is refused, and the
    # worker that sent it says so in a log line of its own.
    es.indices.create(index=index, mappings={"properties": {"n": {"type": "long"}}})
    _rows(table, 4, T0, 700)
    put_row(table, "bad", {"cf:n": "not a number"}, T0 + 100)
    config = write_config(tmp_path / "job.toml", MAPPING_TOML)
    es_url = servers.es
    prom, report = tmp_path / "m.prom", tmp_path / "r.json"
    args = ["export", "--config", config, "--hbase", servers.hbase, "--table", table_name(table),
            "--es", es_url, "--index", index, "--start", str(T0), "--end", str(T0 + 3000),
            "--slice", "1s", "--workers", "2", "--max-errors", "1", "--metrics-file", prom,
            "--report", report]
    # A real process: the workers' lines reach its stderr, not CliRunner's.
    result = _run_process([*args, "--log-format", "json"], 0)
    lines = [orjson.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert all({"time", "level", "event", "message"} <= set(line) for line in lines)
    finished = [line for line in lines if line["event"] == "slice_finished"]
    assert len(finished) == 3
    assert {line["slice"]["index"] for line in finished} == {0, 1, 2}
    assert sum(line["counts"]["failed"] for line in finished) == 1
    assert all(line["status"] == "done" and "T" in line["slice"]["start"] for line in finished)
    from_workers = [line for line in lines if "worker" in line]
    assert from_workers and from_workers[0]["level"] == "warning"
    assert "bad" in from_workers[0]["message"]
    run = [line for line in lines if line["event"] == "run_finished"]
    assert len(run) == 1 and run[0]["counts"]["indexed"] == 4 and run[0]["exit_code"] == 0
    assert '{job="nightly events"}' in prom.read_text()

    human = _run_process(args, 0)
    assert " slice [" in human.stderr and "[worker " in human.stderr
    # Credentials in an --es URL are refused (exit 2), and the line that says so masks them.
    port = free_port()
    in_url = [a if a != es_url else f"http://elastic:{PASSWORD}@127.0.0.1:{port}" for a in args]
    failures = [_run_process(in_url, 2), _run_process([*in_url, "--log-format", "json"], 2)]
    assert f"http://***@127.0.0.1:{port}" in failures[0].stderr
    assert orjson.loads(failures[1].stderr)["exit_code"] == 2
    # Elasticsearch gone: one error line, in either format.
    gone = [a if a != es_url else f"http://127.0.0.1:{port}" for a in args]
    failures += [_run_process(gone, 3), _run_process([*gone, "--log-format", "json"], 3)]
    assert failures[2].stderr.startswith("hbase2es: error: ")
    assert orjson.loads(failures[3].stderr)["exit_code"] == 3
    for text in [result.stdout, result.stderr, human.stdout, human.stderr,
                 *(f.stdout + f.stderr for f in failures), prom.read_text(), report.read_text()]:
        assert API_KEY not in text and PASSWORD not in text


def _run_process(args: list, code: int) -> subprocess.CompletedProcess:
    """``python -m hbase2es ARGS`` with the secrets in its environment; check its exit code."""
    env = {**clean_env(), **SECRET_ENV, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "hbase2es", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc
