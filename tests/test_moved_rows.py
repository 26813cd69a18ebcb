"""A row whose time moves it to another index of a time-based template leaves one document.

With the cell (or column) time source, ``--index 'x-{time:%Y.%m.%d}'`` puts a row written
on one day and updated on the next in two indices: ``x-<day1>/id`` and ``x-<day2>/id``.
After each bulk the writer looks for copies of its documents over the template's indices
and deletes every copy but the newest (``search.copies``); ``verify`` counts copies. All
against the real servers, except the pure helpers at the top.
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
from helpers import T0, export_args, put_row, read_report, run_cli, table_name, write_config

import hbase2es.run.export as export_module
from hbase2es.indexname import IndexTemplate
from hbase2es.search.copies import Copy, older_copies

DAY = 86_400_000
D1 = 1_700_006_400_000  # 2023-11-15T00:00:00Z
T1, T2 = D1 + 10 * 3_600_000, D1 + DAY + 10 * 3_600_000  # 10:00 on the 15th, on the 16th
WINDOW = (D1, D1 + 2 * DAY)


# --------------------------------------------------------------------------- pure helpers


def test_wildcard_covers_every_name_and_matches_only_names_the_template_gives():
    daily = IndexTemplate("x-{time:%Y.%m.%d}")
    assert daily.wildcard() == "x-*.*.*"
    for t in (0, T0, T1, T2):
        assert daily.matches(daily.render(t))
    assert not daily.matches("x-archive") and not daily.matches("x-2023.11.15-old")
    assert not daily.matches("y-2023.11.15")
    two = IndexTemplate("logs-{time:%Y}-v2-{time:%m}.%")
    assert two.wildcard() == "logs-*-v2-*.%"
    assert two.matches(two.render(T1)) and not two.matches("logs-2023-v3-11.%")
    assert IndexTemplate("fixed").wildcard() == "fixed"
    assert IndexTemplate("fixed").matches("fixed") and not IndexTemplate("fixed").matches("fix")
    assert IndexTemplate("{time:%Y}{{x}}").wildcard() == "*{x}"


def test_older_copies_keeps_the_highest_version_and_breaks_ties_by_index_name():
    hits = [Copy("x-1", "a", 5), Copy("x-2", "a", 9), Copy("x-3", "a", 7),
            Copy("x-1", "b", 4), Copy("x-2", "b", 4), Copy("x-1", "c", 1)]
    deletes = older_copies(hits)
    assert sorted(deletes) == [(Copy("x-1", "a", 5), 9), (Copy("x-1", "b", 4), 4),
                               (Copy("x-3", "a", 7), 9)]


# --------------------------------------------------------------------------- real servers


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y.%m.%d")


def _docs(es, index: str) -> list[tuple[str, str, int, dict]]:
    """Every document of the template's indices: (index, id, version, source), sorted."""
    es.indices.refresh(index=f"{index}-*")
    hits = es.search(index=f"{index}-*", query={"match_all": {}}, size=1000,
                     version=True)["hits"]["hits"]
    return sorted((h["_index"], h["_id"], h["_version"], h["_source"]) for h in hits)


def _export(servers, table, target, tmp_path, name, *extra, window=WINDOW, expect_exit=0):
    report = tmp_path / f"{name}.json"
    if "--workers" not in extra:
        extra = ("--workers", "1", *extra)
    run_cli(export_args(servers, table_name(table), target, *window, "1d", "--report", report,
                        *extra), expect_exit=expect_exit)
    return read_report(report)


def _verify(servers, table, target, *extra, expect_exit=0, window=WINDOW) -> dict:
    result = run_cli(["verify", "--hbase", servers.hbase, "--table", table_name(table),
                      "--es", servers.es, "--index", target, "--start", window[0],
                      "--end", window[1], "--slice", "1d", "--json", "--workers", "1", *extra],
                     expect_exit=expect_exit)
    return orjson.loads(result.stdout)


def _put_order(table):
    put_row(table, "order-1", {"cf:state": "created", "cf:item": "book"}, T1)
    put_row(table, "order-1", {"cf:state": "shipped"}, T2)
    put_row(table, "order-2", {"cf:state": "created"}, T1 + 5)  # never updated


@pytest.mark.integration
@pytest.mark.parametrize("newest_first", [False, True], ids=["oldest-first", "newest-first"])
def test_an_updated_row_leaves_one_document_in_its_newest_state(
        servers, table, es, index, tmp_path, monkeypatch, newest_first):
    _put_order(table)
    if newest_first:
        plan_run = export_module.plan_run
        monkeypatch.setattr(export_module, "plan_run",
                            lambda settings, ledger: list(reversed(plan_run(settings, ledger))))
    target = f"{index}-{{time:%Y.%m.%d}}"
    # Per slice, so the row moves during the run (one pass writes it once, in its day).
    report = _export(servers, table, target, tmp_path, "export", "--no-one-pass")
    assert report["exit_code"] == 0
    assert report["totals"]["rows"] == 3  # order-1 in both slices, order-2 in the first
    day1, day2 = f"{index}-{_day(T1)}", f"{index}-{_day(T2)}"
    docs = _docs(es, index)
    assert [(i, d, v) for i, d, v, _ in docs] == [(day1, "order-2", T1 + 5),
                                                  (day2, "order-1", T2)]
    assert docs[1][3]["cf:state"] == "shipped" and docs[1][3]["cf:item"] == "book"
    assert sum(s["moved"] for s in report["slices"]) == 1

    clean = _verify(servers, table, target)
    assert clean["totals"]["copies"] == 0 and clean["totals"]["missing"] == 0
    assert clean["totals"]["present"] == 3 and clean["exit_code"] == 0

    # Exporting the first day again rewrites nothing in its index (the delete left a
    # newer tombstone) or, after gc_deletes, rewrites and removes the copy again.
    _export(servers, table, target, tmp_path, "again", window=(D1, D1 + DAY))
    assert [(i, d) for i, d, _, _ in _docs(es, index)] == [(day1, "order-2"), (day2, "order-1")]


@pytest.mark.integration
def test_two_workers_racing_on_the_days_of_many_rows_leave_one_newest_document_each(
        servers, table, es, index, tmp_path):
    keys = [f"o{i:02d}" for i in range(30)]
    for i, key in enumerate(keys):
        put_row(table, key, {"cf:v": "day1"}, T1 + i)
        if i % 3:  # two rows in three move to the second day
            put_row(table, key, {"cf:v": "day2"}, T2 + i)
    target = f"{index}-{{time:%Y.%m.%d}}"
    report = _export(servers, table, target, tmp_path, "race", "--workers", "2",
                     "--no-one-pass")
    assert report["exit_code"] == 0
    docs = _docs(es, index)
    assert sorted(d for _, d, _, _ in docs) == keys  # one document per row
    for name, doc_id, version, source in docs:
        i = keys.index(doc_id)
        expected = (T2 + i, "day2") if i % 3 else (T1 + i, "day1")
        assert (version, source["cf:v"]) == expected, doc_id
        assert name == f"{index}-{_day(expected[0])}"
    assert sum(s["moved"] for s in report["slices"]) == 20
    assert _verify(servers, table, target)["totals"]["copies"] == 0


@pytest.mark.integration
def test_column_time_source_row_moved_by_a_later_run_leaves_one_document(
        servers, table, es, index, tmp_path):
    config = write_config(tmp_path / "job.toml", """
[window]
time_source = "column"
[window.column]
column = "cf:updated"
encoding = "epoch_ms_text"
""")
    put_row(table, "order-1", {"cf:state": "created", "cf:updated": str(T1)}, T1)
    target = f"{index}-{{time:%Y.%m.%d}}"
    _export(servers, table, target, tmp_path, "day1", "--config", config, window=(D1, D1 + DAY))
    put_row(table, "order-1", {"cf:state": "shipped", "cf:updated": str(T2)}, T2)
    report = _export(servers, table, target, tmp_path, "day2", "--config", config)
    assert report["totals"]["rows"] == 1
    docs = _docs(es, index)
    assert [(i, d, v, s["cf:state"]) for i, d, v, s in docs] == [
        (f"{index}-{_day(T2)}", "order-1", T2, "shipped")]
    assert sum(s["moved"] for s in report["slices"]) == 1
    assert _verify(servers, table, target, "--config", config)["totals"]["copies"] == 0


@pytest.mark.integration
def test_verify_reports_a_copy_made_by_hand_and_leaves_foreign_indices_alone(
        servers, table, es, index, tmp_path):
    _put_order(table)
    target = f"{index}-{{time:%Y.%m.%d}}"
    _export(servers, table, target, tmp_path, "export")
    # A stray older copy in an index the template produces, and a document with the same
    # id in an index that only the wildcard matches (not ours: never counted or deleted).
    stray = f"{index}-2023.11.20"
    foreign = f"{index}-archive"
    es.index(index=stray, id="order-1", document={"cf:state": "created"}, version=T1,
             version_type="external", refresh=True)
    es.index(index=foreign, id="order-1", document={"cf:state": "archived"}, refresh=True)

    data = _verify(servers, table, target, expect_exit=1)
    # order-1 is checked by both slices (its state on each day), like it counts in "rows".
    assert [s["copies"] for s in data["slices"]] == [1, 1]
    assert data["totals"]["copies"] == 2
    assert data["copy_examples"] == [f"{stray}/order-1"]
    assert data["totals"]["missing"] == 0 and data["totals"]["older"] == 0
    text = run_cli(["verify", "--hbase", servers.hbase, "--table", table_name(table),
                    "--es", servers.es, "--index", target, "--start", WINDOW[0],
                    "--end", WINDOW[1], "--slice", "1d", "--workers", "1"], expect_exit=1).stdout
    assert "COPIES: 2" in text and f"{stray}/order-1" in text

    # The next export of the row removes the stray copy; the foreign document stays.
    _export(servers, table, target, tmp_path, "heal", window=(D1 + DAY, D1 + 2 * DAY))
    assert [(i, d) for i, d, _, _ in _docs(es, index)] == sorted([
        (foreign, "order-1"), (f"{index}-{_day(T1)}", "order-2"),
        (f"{index}-{_day(T2)}", "order-1")])
    assert _verify(servers, table, target)["totals"]["copies"] == 0
