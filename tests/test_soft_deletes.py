"""Soft deletes (`[mapping] delete_when`) on the real servers: a marked row's document
leaves the index on the next export, and no older state of the row brings it back.

For every time source; and, with `index.gc_deletes` at 0 s (Elasticsearch forgets a
delete at once, as it does after 60 s by default), the case only a tombstone survives.
"""

from __future__ import annotations

import base64
import struct
import time

import orjson
import pytest
from deleting import (CELL_TS, HOUR, MINUTE, SOURCES, TIME_COLUMN, W0, job, key_of, put,
                      row_time)
from helpers import put_row, read_index, read_report, run_cli, table_name

from hbase2es.mapping import document_id
from hbase2es.search.chunking import index_action

pytestmark = pytest.mark.integration

DELETE_WHEN = 'delete_when = { column = "meta:deleted", equals = "1" }'
MARKED = (2, 5)
NOT_EQUAL = 8  # meta:deleted = "0": not deleted
T_DELETE = W0 + HOUR + 10 * MINUTE  # when the cell and column sources' rows are marked
# Slices whose export deletes the marked rows: where the marked state's row time is.
DELETED_PER_SLICE = {"cell": [0, 2], "rowkey": [2, 0], "column": [0, 2]}


def mark(table, source: str, i: int, value: str = "1") -> None:
    """Set row i's marker the way an application would under each time source."""
    key = key_of(source, i, row_time(i))
    if source == "cell":  # a new cell: the row's newest, in slice 1
        put_row(table, key, {"meta:deleted": value}, T_DELETE + i)
    elif source == "rowkey":  # the row's time is its key's: it stays in slice 0
        put_row(table, key, {"meta:deleted": value}, CELL_TS + 5)
    else:  # the application's time column moves with the change, to slice 1
        put_row(table, key, {"meta:deleted": value, TIME_COLUMN: struct.pack(">q", T_DELETE + i)},
                CELL_TS + 5)


def export(config: str, tmp_path, name: str, *flags) -> dict:
    report = tmp_path / f"{name}.json"
    run_cli(["export", "--config", config, "--report", report, *flags])
    return read_report(report)


@pytest.mark.parametrize("source", SOURCES)
def test_soft_deleted_rows_leave_the_index_and_older_states_cannot_return(
        servers, table, es, index, tmp_path, source):
    keys = [put(table, source, i, row_time(i)) for i in range(10)]  # all in slice 0
    config = job(tmp_path, servers, table_name(table), index, source, mapping=DELETE_WHEN)
    first = export(config, tmp_path, "first")
    assert first["totals"]["indexed"] == 10 and first["totals"]["deleted"] == 0
    written = read_index(es, index)  # the live documents, as an in-flight write would carry
    for i in MARKED:
        mark(table, source, i)
    mark(table, source, NOT_EQUAL, "0")
    marked_ids = {document_id(keys[i]) for i in MARKED}

    # plan --sample shows the first slice with rows: the one with the marked states.
    where = ["--start", str(W0 + HOUR * DELETED_PER_SLICE[source].index(2))]
    plan = orjson.loads(run_cli(["plan", "--config", config, *where, "--sample", "20",
                                 "--json"]).stdout)
    assert {d["_id"] for d in plan["sample"] if d.get("delete")} == marked_ids
    assert ", delete)" in run_cli(["plan", "--config", config, *where, "--sample", "20"]).stdout

    second = export(config, tmp_path, "second")
    assert second["totals"]["deleted"] == 2, second
    assert [s["deleted"] for s in second["slices"]] == DELETED_PER_SLICE[source]
    assert set(read_index(es, index)) == {document_id(k) for k in keys} - marked_ids

    # An older state exported later: slice 0 alone again (the cell source reads the rows'
    # states before they were marked; the others read the marks again or nothing).
    again = export(config, tmp_path, "slice0", "--end", str(W0 + HOUR))
    if source == "cell":  # refused: the two deletes, and row 8's newer state from slice 1
        assert again["totals"]["stale"] == 3 and again["totals"]["deleted"] == 0
    # ... and one still in flight from a run that read the rows before they were marked.
    for i in MARKED:
        hit = written[document_id(keys[i])]
        body = index_action(index, hit["_id"], hit["_version"], hit["_source"])
        items = es.bulk(body=body, refresh=True)["items"]
        assert items[0]["index"]["status"] == 409, items
    assert set(read_index(es, index)) == {document_id(k) for k in keys} - marked_ids


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("rule", [DELETE_WHEN,
                                  'delete_when = { column = "meta:deleted", present = true }'])
def test_verify_expects_no_live_document_for_a_row_marked_deleted(
        servers, table, es, index, tmp_path, source, rule):
    """verify reads the marker the way export does (its value, or only its presence) and
    fails while a marked row's live document is still there, not after the export that
    deletes it."""
    keys = [put(table, source, i, row_time(i)) for i in range(10)]
    config = job(tmp_path, servers, table_name(table), index, source, mapping=rule)
    export(config, tmp_path, "first")
    for i in MARKED:
        mark(table, source, i)
    before = tmp_path / "before.json"
    result = run_cli(["verify", "--config", config, "--report", before], expect_exit=1)
    totals = read_report(before)["totals"]
    assert (totals["undeleted"], totals["deleted"], totals["missing"]) == (2, 0, 0), totals
    assert set(read_report(before)["undeleted_examples"]) == {document_id(keys[i])
                                                               for i in MARKED}
    assert "NOT DELETED: 2 rows" in result.stdout

    export(config, tmp_path, "second")
    after = tmp_path / "after.json"
    result = run_cli(["verify", "--config", config, "--report", after])
    totals = read_report(after)["totals"]
    # With the cell source the first slice still reads the marked rows' older states:
    # checked twice, gone both times, counted deleted in both.
    twice = 2 if source == "cell" else 1
    assert (totals["undeleted"], totals["deleted"], totals["missing"]) == (0, 2 * twice, 0)
    assert totals["present"] == 8, totals
    assert f"the {2 * twice} rows marked deleted are deleted" in result.stdout


def _wait_for_forgotten_deletes(es, index: str) -> None:
    # With index.gc_deletes = 0s a refresh prunes the remembered deletes.
    es.indices.refresh(index=index)
    time.sleep(1.0)
    es.indices.refresh(index=index)


@pytest.mark.parametrize("tombstone", [False, True], ids=["delete", "tombstone"])
def test_after_gc_deletes_only_a_tombstone_keeps_an_older_state_out(
        servers, table, es, index, tmp_path, tombstone):
    keys = [put(table, "cell", i, row_time(i)) for i in range(4)]
    rule = 'delete_when = { column = "meta:deleted", equals = "1"%s }' % (
        ", tombstone = true" if tombstone else "")
    config = job(tmp_path, servers, table_name(table), index, "cell", mapping=rule,
                 es_extra='index_settings = { "index.gc_deletes" = "0s", '
                          '"index.number_of_replicas" = 0 }')
    export(config, tmp_path, "first", "--create-index")
    mark(table, "cell", 2)
    second = export(config, tmp_path, "second")
    assert second["totals"]["deleted"] == 1
    doc_id = document_id(keys[2])

    # Elasticsearch has forgotten the delete: the row's older state, exported again (a
    # backfill of slice 0), is refused only by a tombstone. A few tries, as pruning runs
    # when Elasticsearch gets to it.
    back = False
    for attempt in range(4):
        _wait_for_forgotten_deletes(es, index)
        report = export(config, tmp_path, f"backfill{attempt}", "--end", str(W0 + HOUR))
        hit = read_index(es, index).get(doc_id)
        if hit is not None and not hit["_source"].get("@deleted"):
            back = True
            break
        assert report["totals"]["stale"] == 1, report
    if tombstone:
        assert not back, "an older state replaced the tombstone"
        hit = read_index(es, index)[doc_id]
        assert hit["_source"] == {"@deleted": True, "@timestamp": "2023-11-15T00:10:00.002Z"}
        assert hit["_version"] == T_DELETE + 2 + 1
    else:  # the documented risk: after index.gc_deletes a plain delete is forgotten
        assert back, "Elasticsearch kept the delete: this test shows nothing"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("rule,needle", [
    ('{ column = "meta:deleted", equals = 1 }', "equals must be text"),
    ('{ column = "meta:deleted", present = false }', "present must be true"),
    ('{ column = "meta:deleted", equals = "1", present = true }', "exactly one of"),
    ('{ column = "deleted", equals = "1" }', "family:qualifier"),
    ('{ column = "meta:deleted", equals = "1", when = "now" }', "unknown key 'when'"),
    ('"meta:deleted"', "must be a table"),
])
def test_a_bad_delete_when_exits_2_with_one_line(tmp_path, rule, needle):
    config = tmp_path / "job.toml"
    config.write_text(f"""
[hbase]
table = "t"
[elasticsearch]
index = "i"
[window]
start = "{W0}"
end = "{W0 + HOUR}"
[mapping]
delete_when = {rule}
""")
    result = run_cli(["plan", "--config", config], expect_exit=2)
    assert "mapping.delete_when" in result.stderr and needle in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("api", ["thrift1", "thrift2"])
def test_delete_when_in_a_family_the_table_lacks_exits_2_before_writing(
        servers, table, es, index, tmp_path, api, request):
    hbase = request.getfixturevalue("thrift2_address") if api == "thrift2" else None
    put(table, "cell", 0, row_time(0))
    config = job(tmp_path, servers, table_name(table), index, "cell", hbase=hbase, api=api,
                 mapping='delete_when = { column = "gone:deleted", present = true }')
    started = time.monotonic()
    result = run_cli(["export", "--config", config], expect_exit=2)
    assert "has no column family 'gone'" in result.stderr and result.stderr.count("\n") == 1
    assert time.monotonic() - started < 20  # not the readers' reconnect backoff
    assert not es.indices.exists(index=index)
    # The same rule with the table's own family is fine.
    ok = job(tmp_path, servers, table_name(table), index, "cell", hbase=hbase, api=api,
             mapping='delete_when = { column = "meta:deleted", present = true }', name="ok")
    run_cli(["export", "--config", ok])


def test_deletes_a_read_only_index_refuses_are_dead_lettered_as_deletes(
        servers, table, es, index, tmp_path):
    keys = [put(table, "rowkey", i, row_time(i)) for i in range(4)]
    config = job(tmp_path, servers, table_name(table), index, "rowkey", mapping=DELETE_WHEN)
    export(config, tmp_path, "first")
    mark(table, "rowkey", 2)
    es.indices.put_settings(index=index, body={"index.blocks.write": True})
    try:
        dead = tmp_path / "dead.ndjson"
        report = tmp_path / "refused.json"
        run_cli(["export", "--config", config, "--dead-letter", dead, "--report", report,
                 "--max-errors", "3"], expect_exit=1)
        data = read_report(report)
        assert data["totals"]["failed"] == 4 and data["totals"]["deleted"] == 0
        records = {r["row_key_b64"]: r for r in map(orjson.loads, dead.read_bytes().splitlines())}
        assert len(records) == 4
        stages = {k: r["stage"] for k, r in records.items()}
        marked = base64.b64encode(keys[2]).decode()
        assert stages.pop(marked) == "delete" and set(stages.values()) == {"index"}
        assert records[marked]["document"]["delete"]["version"] == row_time(2) + 1
        assert {r["error_type"] for r in records.values()} == {"cluster_block_exception"}
    finally:
        es.indices.put_settings(index=index, body={"index.blocks.write": None})
    assert document_id(keys[2]) in read_index(es, index)  # refused: still there
