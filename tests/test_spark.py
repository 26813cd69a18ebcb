"""`hbase2es export --executor spark`: the same slice job as Spark tasks, in local mode.

Spark runs in this test process's JVM (``local[2]``, 2 cores like the machine), against
the real HBase and Elasticsearch. Failures are injected through ``spark_executor``'s
``slice_fn`` seam: a wrapper around ``run_slice`` defined here and shipped to the Spark
workers by value, which fails while a marker file of its slice exists.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers import T0, count_docs, export_args, put_row, read_index, read_report, \
    require_or_skip, run_cli, table_name, write_config

import hbase2es.run.export as export_module
from hbase2es.run.ledger import Ledger
from hbase2es.settings import load_settings
from hbase2es.run.slicejob import run_slice

SLICES = 6  # 1 s slices of [T0, T0 + 6 s)
END = T0 + SLICES * 1000
RUN_LIMIT_S = 240  # one export, JVM start included, on a busy 2-core machine


@pytest.fixture(scope="module")
def pyspark():
    """pyspark, which `make test` installs (test extra): missing skips, or fails under
    HBASE2ES_REQUIRE_SERVERS=1 / CI=true."""
    try:
        import pyspark as module
    except ImportError:
        require_or_skip("pyspark is not installed: pip install -e '.[test]'")
    from pyspark import cloudpickle

    # The failure-injecting wrappers below live in this test module, which Spark's Python
    # workers cannot import: send their code along instead.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield module
    # The runs of this module share one JVM (pyspark keeps it per process); the rest of
    # the test session should not carry it.
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is not None and SparkContext._active_spark_context is None:
        proc = getattr(gateway, "proc", None)
        gateway.shutdown()
        SparkContext._gateway = SparkContext._jvm = None
        if proc is not None:
            proc.stdin.close()  # the JVM exits at EOF on its stdin
            try:
                proc.wait(30)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
                proc.kill()
                proc.wait(10)


def _put_rows(table) -> dict[int, int]:
    """Rows in every slice (slice i holds 2 + 2i), a few outside the window; rows per slice."""
    per_slice = {}
    for s in range(SLICES):
        n = 2 + 2 * s
        per_slice[s] = n
        for j in range(n):
            ts = T0 + s * 1000 + j * (999 // n)
            key = f"s{s}-r{j:02d}".encode() + (b"\xff\x00" if j == 0 else b"")  # some binary keys
            put_row(table, key, {"cf:name": f"grüße {s}/{j}", "cf:n": str(j * 7),
                                 "meta:slice": str(s)}, ts)
            if j % 3 == 1:  # a newer cell in the same slice: the document shows the newest
                put_row(table, key, {"cf:n": f"updated {j}"}, ts + 1)
    put_row(table, "before", {"cf:name": "no"}, T0 - 1)
    put_row(table, "after", {"cf:name": "no"}, END)
    return per_slice


def _export(servers, table, index: str, tmp_path: Path, name: str, *extra, expect_exit=0):
    report = tmp_path / f"{name}.json"
    run_cli(export_args(servers, table_name(table), index, T0, END, "1s", "--quiet",
                        "--report", report, *extra), expect_exit=expect_exit)
    return read_report(report)


def _counts(report: dict) -> list[tuple]:
    return [(s["index"], s["status"], s["rows"], s["indexed"], s["stale"], s["failed"])
            for s in report["slices"]]


def _failing(marker_dir: Path):
    """run_slice, with failures of a slice chosen by marker files in ``marker_dir``.

    ``always-<index>``: the slice raises on every attempt. ``crash-<index>``: the first
    attempt exports the whole slice, removes the marker, then its Python worker dies
    before the result is sent, as when an executor is lost.
    """
    def run(task, settings, progress=None):
        always, crash = marker_dir / f"always-{task.index}", marker_dir / f"crash-{task.index}"
        if always.exists():
            raise RuntimeError(f"injected failure of slice {task.index}\nsecond line")
        result = run_slice(task, settings, progress)
        try:
            crash.unlink()
        except FileNotFoundError:
            return result
        os._exit(17)

    return run


def _use_slice_fn(monkeypatch, slice_fn) -> None:
    from hbase2es.run.spark import spark_executor

    monkeypatch.setitem(export_module.EXECUTORS, "spark", spark_executor(slice_fn))


# --------------------------------------------------------------------------- same result


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(2 * RUN_LIMIT_S)  # two exports
def test_spark_exports_the_same_documents_and_counts_as_the_local_pool(
        pyspark, servers, table, es, index, tmp_path):
    per_slice = _put_rows(table)

    local = _export(servers, table, f"{index}-local", tmp_path, "local", "--workers", "2")
    spark = _export(servers, table, f"{index}-spark", tmp_path, "spark", "--executor", "spark",
                    "--spark-master", "local[2]")

    assert [s["rows"] for s in spark["slices"]] == [per_slice[s] for s in range(SLICES)]
    assert _counts(spark) == _counts(local)
    assert spark["totals"] == local["totals"] == {
        "rows": sum(per_slice.values()), "indexed": sum(per_slice.values()), "stale": 0,
        "failed": 0, "deleted": 0}
    assert spark["spark"]["master"] == "local[2]" and spark["spark"]["application_id"]
    local_docs = read_index(es, f"{index}-local")
    spark_docs = read_index(es, f"{index}-spark")
    assert len(spark_docs) == sum(per_slice.values())
    assert {i: (h["_source"], h["_version"]) for i, h in spark_docs.items()} == \
        {i: (h["_source"], h["_version"]) for i, h in local_docs.items()}
    assert spark_docs["s3-r01"]["_source"]["cf:n"] == "updated 1"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(RUN_LIMIT_S)
def test_spark_run_cuts_the_alias_over_in_the_parent_after_the_job(
        pyspark, servers, table, index, tmp_path):
    from hbase2es.search import engine, targets
    from hbase2es.settings import ElasticsearchSettings

    per_slice = _put_rows(table)
    alias = f"{index}-live"
    report = _export(servers, table, f"{index}-v1", tmp_path, "alias", "--executor", "spark",
                     "--spark-master", "local[2]", "--alias", alias)
    assert report["totals"]["indexed"] == sum(per_slice.values())
    assert report["alias"] == {"name": alias, "cut_over": True, "previous": [],
                               "current": [f"{index}-v1"]}
    client = engine.make_client(ElasticsearchSettings(hosts=(servers.es,)))
    try:
        assert targets.alias_targets(client, alias) == [f"{index}-v1"]
    finally:
        client.close()


# --------------------------------------------------------------------------- retries


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(RUN_LIMIT_S)
def test_a_task_that_fails_once_is_retried_by_spark_and_counts_are_exact(
        pyspark, servers, table, es, index, tmp_path, monkeypatch):
    per_slice = _put_rows(table)
    markers = tmp_path / "markers"
    markers.mkdir()
    (markers / "crash-2").touch()  # slice 2 written, then its worker dies unreported
    _use_slice_fn(monkeypatch, _failing(markers))

    # local[2,3]: 2 cores, a task may fail 3 times before its job fails.
    report = _export(servers, table, index, tmp_path, "retry", "--executor", "spark",
                     "--spark-master", "local[2,3]")

    assert not (markers / "crash-2").exists(), "the injected failure never ran"
    slices = report["slices"]
    assert [s["status"] for s in slices] == ["done"] * SLICES
    assert slices[2]["attempts"] == 2
    assert [s["attempts"] for i, s in enumerate(slices) if i != 2] == [1] * (SLICES - 1)
    assert [s["rows"] for s in slices] == [per_slice[s] for s in range(SLICES)]
    assert report["totals"]["indexed"] == sum(per_slice.values())
    assert count_docs(es, index) == sum(per_slice.values())
    docs = read_index(es, index).values()
    assert len([d for d in docs if d["_source"]["meta:slice"] == "2"]) == per_slice[2]


# --------------------------------------------------------------------------- ledger, resume


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(3 * RUN_LIMIT_S)  # three exports
def test_a_slice_failing_every_attempt_is_failed_in_the_ledger_and_resume_completes(
        pyspark, servers, table, es, index, tmp_path, monkeypatch):
    per_slice = _put_rows(table)
    ledger = tmp_path / "job.ledger"
    markers = tmp_path / "markers"
    markers.mkdir()
    (markers / "always-4").touch()
    with monkeypatch.context() as patch:
        _use_slice_fn(patch, _failing(markers))
        first = _export(servers, table, index, tmp_path, "first", "--executor", "spark",
                        "--spark-master", "local[2,2]", "--ledger", ledger, expect_exit=1)

    failed = first["slices"][4]
    assert failed["status"] == "failed" and failed["attempts"] == 2
    # The Python error's first line, not the JVM's stack.
    assert failed["error"] == "RuntimeError: injected failure of slice 4"
    assert [s["status"] for i, s in enumerate(first["slices"]) if i != 4] == ["done"] * 5
    with Ledger(str(ledger), readonly=True) as book:
        states = {s.start_ms: s for s in book.slices()}
    assert states[T0 + 4000].status == "failed"
    assert "injected failure of slice 4" in states[T0 + 4000].error
    assert sorted(s.status for s in states.values()) == ["done"] * 5 + ["failed"]
    assert count_docs(es, index) == sum(per_slice.values()) - per_slice[4]

    # --resume runs only the failed slice, now with the real run_slice.
    resumed = _export(servers, table, index, tmp_path, "resumed", "--executor", "spark",
                      "--spark-master", "local[2]", "--ledger", ledger, "--resume")
    assert [s["status"] for s in resumed["slices"]] == ["skipped"] * 4 + ["done", "skipped"]
    assert resumed["slices"][4]["rows"] == per_slice[4]
    assert resumed["totals"]["indexed"] == per_slice[4]
    assert count_docs(es, index) == sum(per_slice.values())

    # Everything is done: a further --resume skips every slice and starts no Spark job.
    again = _export(servers, table, index, tmp_path, "again", "--executor", "spark",
                    "--spark-master", "local[2]", "--ledger", ledger, "--resume")
    assert [s["status"] for s in again["slices"]] == ["skipped"] * SLICES
    assert "spark" not in again
    with Ledger(str(ledger), readonly=True) as book:
        assert {s.status for s in book.slices()} == {"done"}


# --------------------------------------------------------------------------- no servers


def test_without_pyspark_the_spark_executor_exits_2_saying_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # makes `import pyspark` fail
    result = run_cli(export_args(_NO_SERVERS, "t", "i", T0, END, "1s", "--executor", "spark"),
                     expect_exit=2)
    assert "pip install 'hbase2es[spark]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


class _NoServers:
    hbase = "127.0.0.1:1"
    es = "http://127.0.0.1:1"


_NO_SERVERS = _NoServers()


def test_spark_flags_and_config_section(tmp_path):
    config = write_config(tmp_path / "job.toml", """
        [run]
        executor = "spark"
        [spark]
        master = "yarn"
        app_name = "nightly"
        [spark.conf]
        "spark.executor.memory" = "2g"
        spark.task.maxFailures = 8
        spark.dynamicAllocation.enabled = true
    """.replace("\n        ", "\n"))
    base = {"hbase.table": "t", "elasticsearch.index": "i", "window.start": str(T0),
            "window.end": str(END)}
    settings = load_settings(config, base, now_ms=END)
    assert settings.run.executor == "spark"
    assert (settings.spark.master, settings.spark.app_name) == ("yarn", "nightly")
    assert settings.spark.conf == {"spark.executor.memory": "2g", "spark.task.maxFailures": "8",
                                   "spark.dynamicAllocation.enabled": "true"}
    # Flags win over the file, key by key.
    flags = load_settings(config, {**base, "spark.master": "local[2]",
                                   "spark.conf": {"spark.executor.memory": "4g"}}, now_ms=END)
    assert flags.spark.master == "local[2]"
    assert flags.spark.conf["spark.executor.memory"] == "4g"
    assert flags.spark.conf["spark.task.maxFailures"] == "8"
    assert load_settings(None, base, now_ms=END).spark.master == ""


@pytest.mark.parametrize("flags, message", [
    (["--spark-conf", "spark.executor.memory"], "expected KEY=VALUE"),
    (["--spark-conf", "executor.memory=2g"], "'executor.memory' is not a Spark property"),
    (["--executor", "ray"], "'ray' is not one of"),
    (["--spark-master", "bogus://x"], "spark.master must be local, local[N]"),
])
def test_bad_spark_flags_exit_2_with_one_line(flags, message):
    result = run_cli(export_args(_NO_SERVERS, "t", "i", T0, END, "1s", "--executor", "spark",
                                 *flags), expect_exit=2)
    assert message in result.stderr
