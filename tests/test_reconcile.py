"""`hbase2es reconcile` on the real servers: rows deleted from HBase after an export are
found as orphans, deleted with --apply, and never at the cost of a row that came back.

Every time source, over a window whose two slices write to two daily indices (an index
template), over Thrift1 and (cell source) Thrift2.
"""

from __future__ import annotations

import os
import signal

import orjson
import pytest
from deleting import HOUR, SOURCES, W0, job, load, now_ms, put, row_time
from faults import ExportProcess, run_process, wait_for
from helpers import count_docs, read_index, read_report, run_cli, table_name

from hbase2es.mapping import document_id
from hbase2es.run import reconcilejob
from hbase2es.run.ledger import Ledger
from hbase2es.run.reconcilejob import ReconcileOptions, SliceReconciler
from hbase2es.settings import load_settings
from hbase2es.timewindow import Slice

pytestmark = pytest.mark.integration

DELETED = (1, 4, 12, 15, 18)  # two rows of slice 0, three of slice 1
COME_BACK = 7  # deleted, then put again with a newer time


def _template(index: str) -> str:
    return index + "-{time:%Y.%m.%d}"


def _json(result) -> dict:
    return orjson.loads(result.stdout)


@pytest.mark.parametrize("source,api", [(s, "thrift1") for s in SOURCES] + [("cell", "thrift2")],
                         ids=[*SOURCES, "cell-thrift2"])
def test_rows_deleted_after_an_export_are_orphans_that_apply_deletes(
        servers, table, es, index, tmp_path, source, api, request):
    hbase = request.getfixturevalue("thrift2_address") if api == "thrift2" else None
    keys = [put(table, source, i, row_time(i)) for i in range(20)]
    config = job(tmp_path, servers, table_name(table), _template(index), source, hbase=hbase,
                 api=api)
    run_cli(["export", "--config", config])
    assert count_docs(es, index + "-*") == 20

    for i in DELETED:
        table.delete(keys[i])
    # Deleted, then written again: HBase hides cells older than a delete marker, so the
    # row comes back with cells newer than now (its row time, for the key and column
    # sources, stays in the window).
    table.delete(keys[COME_BACK])
    put(table, source, COME_BACK, row_time(COME_BACK), {"cf:v": "again"},
        cell_ts=now_ms() + 1000)
    orphans = {document_id(keys[i]) for i in DELETED}

    dry = run_cli(["reconcile", "--config", config, "--json"], expect_exit=1)
    data = _json(dry)
    assert data["totals"]["checked"] == 20 and data["totals"]["orphans"] == 5
    assert [s["orphans"] for s in data["slices"]] == [2, 3]
    assert set(data["orphan_examples"]) == orphans
    assert data["mode"] == "dry run" and data["totals"]["deleted"] == 0
    assert count_docs(es, index + "-*") == 20  # a dry run deletes nothing
    text = run_cli(["reconcile", "--config", config], expect_exit=1).stdout
    assert "ORPHANS: 5 documents" in text and "--apply" in text

    report = tmp_path / "apply.json"
    run_cli(["reconcile", "--config", config, "--apply", "--report", report])
    applied = read_report(report)
    assert applied["exit_code"] == 0 and applied["totals"]["deleted"] == 5
    assert [s["deleted"] for s in applied["slices"]] == [2, 3]
    assert applied["totals"]["failed"] == 0 and applied["totals"]["skipped"] == 0
    left = read_index(es, index + "-*")
    assert set(left) == {document_id(k) for i, k in enumerate(keys) if i not in DELETED}
    assert document_id(keys[COME_BACK]) in left

    again = _json(run_cli(["reconcile", "--config", config, "--json"]))
    assert again["totals"]["orphans"] == 0 and again["totals"]["checked"] == 15
    assert "OK: all 15 checked documents have their row" in \
        run_cli(["reconcile", "--config", config]).stdout
    # Deleted rows stay deleted: a new export of the window cannot read them back.
    run_cli(["export", "--config", config])
    assert count_docs(es, index + "-*") == 15


def test_sample_checks_n_random_documents_per_slice(servers, table, es, index, tmp_path):
    keys = [put(table, "cell", i, row_time(i)) for i in range(20)]
    config = job(tmp_path, servers, table_name(table), index, "cell")
    run_cli(["export", "--config", config])
    es.indices.refresh(index=index)
    for key in keys:  # every document an orphan: any sample finds exactly its size
        table.delete(key)
    data = _json(run_cli(["reconcile", "--config", config, "--sample", "3", "--json"],
                         expect_exit=1))
    assert [s["checked"] for s in data["slices"]] == [3, 3]
    assert [s["orphans"] for s in data["slices"]] == [3, 3]
    assert data["mode"] == "sample" and all(s["listing"] == "sample" for s in data["slices"])
    assert "SAMPLE" in run_cli(["reconcile", "--config", config, "--sample", "3"],
                               expect_exit=1).stdout

    result = run_cli(["reconcile", "--config", config, "--sample", "3", "--apply"],
                     expect_exit=2)
    assert result.stderr.count("\n") == 1 and "--apply cannot be combined with --sample" \
        in result.stderr
    assert count_docs(es, index) == 20


# --------------------------------------------------------------------------- the race


def _race_setup(servers, table, es, index, tmp_path):
    keys = [put(table, "cell", i, row_time(i)) for i in range(4)]
    config = job(tmp_path, servers, table_name(table), index, "cell")
    run_cli(["export", "--config", config])
    es.indices.refresh(index=index)  # what a listing sees: documents a refresh made visible
    table.delete(keys[1])
    settings = load_settings(config, {}, now_ms=now_ms())
    return keys, config, settings


def _lookups(monkeypatch, on_call):
    """Wrap the worker's HBase lookups; ``on_call(n)`` runs after lookup n's answer."""
    real = reconcilejob.existing_rows
    calls = []

    def lookup(reader, keys, probe=None):
        found = real(reader, keys, probe)
        calls.append(list(keys))
        on_call(len(calls))
        return found

    monkeypatch.setattr(reconcilejob, "existing_rows", lookup)
    return calls


def test_a_row_back_before_the_delete_is_sent_keeps_its_document(
        servers, table, es, index, tmp_path, monkeypatch):
    keys, config, settings = _race_setup(servers, table, es, index, tmp_path)
    # The row is put again between the listing's lookup and the lookup right before the
    # delete, with cells older than the window end: no incremental export would ever write
    # its document again.
    calls = _lookups(monkeypatch, lambda n: n == 1 and put(
        table, "cell", 1, row_time(1), {"cf:v": "restored"}, cell_ts=now_ms() + 1000))
    reconciler = SliceReconciler(settings, ReconcileOptions(apply=True))
    try:
        result = reconciler.run(Slice(0, W0, W0 + HOUR))
    finally:
        reconciler.close()
    assert len(calls) == 2 and calls[1] == [keys[1]]
    assert (result.orphans, result.deleted, result.skipped) == (1, 0, 1)
    assert document_id(keys[1]) in read_index(es, index)


def test_a_row_recreated_and_reexported_after_the_last_lookup_is_not_deleted(
        servers, table, es, index, tmp_path, monkeypatch):
    keys, config, settings = _race_setup(servers, table, es, index, tmp_path)
    later = now_ms() + 1000

    def recreate(n: int) -> None:
        if n == 2:  # after the lookup right before the delete: back, and exported at once
            put(table, "cell", 1, later, {"cf:v": "recreated"})
            run_cli(["export", "--config", config, "--start", str(later - 1000),
                     "--end", str(later + 1000), "--slice", "1h"])

    _lookups(monkeypatch, recreate)
    reconciler = SliceReconciler(settings, ReconcileOptions(apply=True))
    try:
        result = reconciler.run(Slice(0, W0, W0 + HOUR))
    finally:
        reconciler.close()
    # The delete named the listed revision (if_seq_no): Elasticsearch refused it (409).
    assert (result.orphans, result.deleted, result.skipped, result.failed) == (1, 0, 1, 0)
    doc = read_index(es, index)[document_id(keys[1])]
    assert doc["_version"] == later and doc["_source"]["cf:v"] == "recreated"


# --------------------------------------------------------------------------- refusals, lock


def test_a_read_only_index_refuses_deletes_into_the_dead_letter_file(
        servers, table, es, index, tmp_path):
    keys = [put(table, "cell", i, row_time(i)) for i in range(6)]
    config = job(tmp_path, servers, table_name(table), index, "cell")
    run_cli(["export", "--config", config])
    es.indices.refresh(index=index)
    for key in keys[:3]:
        table.delete(key)
    es.indices.put_settings(index=index, body={"index.blocks.write": True})
    try:
        dead = tmp_path / "dead.ndjson"
        report = tmp_path / "refused.json"
        run_cli(["reconcile", "--config", config, "--apply", "--dead-letter", dead,
                 "--report", report], expect_exit=1)
        data = read_report(report)
        assert data["totals"]["orphans"] == 3 and data["totals"]["failed"] == 3
        assert data["totals"]["deleted"] == 0
        records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
        assert sorted(r["row_key"] for r in records) == ["row00", "row01", "row02"]
        assert {r["stage"] for r in records} == {"delete"}
        assert {r["error_type"] for r in records} == {"cluster_block_exception"}
        assert all(r["document"]["delete"]["_index"] == index for r in records)
        # Within the error budget the same refusals are exit 0.
        run_cli(["reconcile", "--config", config, "--apply", "--max-errors", "3"])
    finally:
        es.indices.put_settings(index=index, body={"index.blocks.write": None})
    assert count_docs(es, index) == 6


def test_reconcile_waits_for_the_ledger_of_a_running_export(servers, table, es, index,
                                                            tmp_path):
    put(table, "cell", 0, row_time(0))
    config = job(tmp_path, servers, table_name(table), index, "cell")
    ledger = tmp_path / "job.db"
    run_cli(["export", "--config", config, "--ledger", ledger])
    with Ledger(str(ledger)):  # an export holding the job's ledger
        result = run_cli(["reconcile", "--config", config, "--ledger", ledger], expect_exit=75)
        assert "in use by another run" in result.stderr
    run_cli(["reconcile", "--config", config, "--ledger", ledger])


# --------------------------------------------------------------------------- Ctrl-C


ROWS = 3000
SLICES = 30
SLICE_MS = 60_000


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("source", SOURCES)
def test_ctrl_c_during_apply_exits_130_and_a_second_run_finishes(servers, table, es, index,
                                                                 tmp_path, source):
    times = [W0 + (i % SLICES) * SLICE_MS + i // SLICES for i in range(ROWS)]
    keys = load(table, source, times)
    config = job(tmp_path, servers, table_name(table), index, source, end=W0 + SLICES * SLICE_MS,
                 slice_="1m", es_extra="bulk_docs = 10", run_extra="grace_seconds = 0.5")
    run_cli(["export", "--config", config])
    assert count_docs(es, index) == ROWS
    gone = [k for i, k in enumerate(keys) if i % 5]  # four rows in five deleted
    kept = {document_id(k) for i, k in enumerate(keys) if not i % 5}
    with table.batch(batch_size=2000) as batch:
        for key in gone:
            batch.delete(key)

    report = tmp_path / "interrupted.json"
    args = ["reconcile", "--config", config, "--apply", "--workers", "1", "--report", report]
    with ExportProcess(args, tmp_path, "interrupted") as run:
        wait_for(lambda: run.running() and count_docs(es, index) < ROWS or not run.running(),
                 120, "the first deletes")
        assert run.running(), f"reconcile ended before Ctrl-C\n{run.output()}"
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        rc = run.wait(60)
    assert rc == 130, run.output()
    data = read_report(report)
    assert data["interrupted"] is True and data["exit_code"] == 130
    left = count_docs(es, index)
    assert len(kept) < left < ROWS, "Ctrl-C came too late or too early to test anything"
    assert kept <= set(read_index_ids(es, index)), "a document whose row exists was deleted"

    second = run_process(["reconcile", "--config", config, "--apply"], tmp_path, "second", 180)
    assert second.proc.returncode == 0, second.output()
    assert set(read_index_ids(es, index)) == kept
    final = run_process(["reconcile", "--config", config, "--json"], tmp_path, "final", 180)
    assert final.proc.returncode == 0, final.output()
    assert orjson.loads(final.stdout)["totals"]["orphans"] == 0


def read_index_ids(es, index: str) -> list[str]:
    """Every _id of ``index`` (more than a search page holds)."""
    es.indices.refresh(index=index)
    ids = []
    response = es.search(index=index, size=1000, scroll="1m", _source=False,
                         query={"match_all": {}})
    try:
        while response["hits"]["hits"]:
            ids.extend(hit["_id"] for hit in response["hits"]["hits"])
            response = es.scroll(scroll_id=response["_scroll_id"], scroll="1m")
    finally:
        es.clear_scroll(scroll_id=response["_scroll_id"])
    return ids
