"""The benchmark's pure parts: ratio math, targets, the history-growth line's arithmetic.

No server: these take result dicts as `make bench` builds them and check what latest.json
says about them (issue 15's ratios, the "missed" marks and where they point).
"""

from __future__ import annotations

import pytest

from bench import history_line, report
from bench.datasets import WINDOW_MS, WINDOW_START_MS


def _run(docs_per_s: float, **extra) -> dict:
    return {"docs_per_s": docs_per_s, "min": docs_per_s, "max": docs_per_s, "seconds": 1.0,
            "peak_rss_mib": 50.0, "docs": 1000, "repeats": 1, **extra}


def _runs() -> dict:
    return {
        "scan_only": _run(20000),
        "bulk_only": _run(10000, best_of="bulk_only_w2"),
        "naive": _run(5000),
        "seed": _run(4000),
        "hbase2es_w1": _run(6000, cpu_us_per_doc=30.0, worker_rss_mib=60.0),
        "hbase2es_w2": _run(9000, cpu_us_per_doc=25.0, worker_rss_mib=66.0),
        "hbase2es_w2_bulk_load": _run(9500),  # other index settings: never "best"
        # Faster than every hbase2es_w* run: must not become "best hbase2es".
        report.DEFAULT_RUN: _run(12000, cpu_us_per_doc=5.0, rows_read_per_doc=1.0),
        report.DEFAULT_HOURLY_RUN: _run(3000, rows_read_per_doc=12.4),
    }


def test_ratio_keys_keep_the_old_ones_and_add_issue_15s():
    old = ("r_bulk", "r_serial", "vs_naive", "vs_seed", "scaling", "us_per_doc",
           "rss_mib_per_worker", "pool_vs_mp_pool")
    assert report.RATIO_KEYS[:len(old)] == old
    assert set(report.RATIO_KEYS) - set(old) == {"read_amp_default", "history_growth",
                                                 "default_vs_naive"}
    assert report.TARGETS["read_amp_default"] == ("<=", 1.1)
    assert report.TARGETS["history_growth"] == ("<=", 1.5)
    assert report.TARGETS["default_vs_naive"] == (">=", 2.0)
    assert report.TARGETS["us_per_doc"] == ("<=", 20.0)
    assert report.TARGETS["r_bulk"] == (">=", 0.9)
    assert set(report.EXPLAINED_BY) == set(report.RATIO_KEYS) - {"scaling"}


def test_ratios_from_runs_and_history():
    values, notes = report.ratios(_runs(), {"pool_vs_mp_pool": 2.0},
                                  {"history_growth": 1.23})
    assert tuple(values) == report.RATIO_KEYS
    # The issue 8 ratios still compare the best hbase2es_w* run, not the default runs.
    assert notes["best_hbase2es"] == "hbase2es_w2"
    assert values["r_bulk"] == 0.9
    assert values["vs_naive"] == 1.8
    assert values["us_per_doc"] == 25.0
    assert values["scaling"] == 1.5
    assert values["rss_mib_per_worker"] == 66.0
    # Issue 15's: the hourly default run's rows read, the 4-slice default run vs naive.
    assert values["read_amp_default"] == 12.4
    assert values["default_vs_naive"] == 2.4
    assert values["history_growth"] == 1.23


def test_ratios_missing_runs_are_not_measured():
    runs = {name: run for name, run in _runs().items() if not name.startswith("hbase2es_def")}
    values, _notes = report.ratios(runs, None)
    assert values["read_amp_default"] is None
    assert values["default_vs_naive"] is None
    assert values["history_growth"] is None
    checks = report.targets(values)
    for key in ("read_amp_default", "default_vs_naive", "history_growth", "pool_vs_mp_pool"):
        assert checks[key]["met"] is None
        assert checks[key]["status"] == "not measured"
        assert "explained_by" not in checks[key]


@pytest.mark.parametrize("key, value, met", [
    ("read_amp_default", 1.1, True), ("read_amp_default", 1.11, False),
    ("read_amp_default", 12.5, False), ("history_growth", 1.5, True),
    ("history_growth", 19.0, False), ("default_vs_naive", 2.0, True),
    ("default_vs_naive", 0.8, False), ("us_per_doc", 27.9, False), ("r_bulk", 0.84, False),
    ("r_bulk", 0.95, True),
])
def test_targets_met_and_missed(key, value, met):
    check = report.targets({key: value}, dataset="S")[key]
    assert check["met"] is met
    assert check["value"] == value
    assert check["status"] == ("met" if met else "missed")
    if met:
        assert "explained_by" not in check
    else:
        assert check["explained_by"].startswith(("datasets.S.", "history."))
        assert "<name>" not in check["explained_by"]


def test_scaling_has_no_target():
    assert "scaling" not in report.targets({"scaling": 1.4})


def test_missed_marks_in_the_tables():
    values = {"read_amp_default": 12.5, "history_growth": 1.2, "default_vs_naive": None}
    checks = report.targets(values)
    text = report.ratio_lines(values, checks)
    line = next(x for x in text.splitlines() if "read_amp_default" in x)
    assert "MISSED" in line and "hbase2es_default_1h" in line
    assert "ok" in next(x for x in text.splitlines() if "history_growth" in x)
    markdown = report.ratio_markdown(values, checks)
    rows = {row.split(" | ")[0].strip("| "): row for row in markdown.splitlines()[2:]}
    assert "| 12.5 | <= 1.1 | missed: see datasets.M.runs.hbase2es_default_1h" in \
        rows["read_amp_default"]
    assert rows["history_growth"].endswith("| 1.2 | <= 1.5 | met |")
    assert rows["default_vs_naive"].endswith("| - | >= 2 | not measured |")
    assert rows["scaling"].endswith("| - | - | |")


def test_history_growth_is_most_over_least_history():
    runs = {"cron_1x": _run(500, seconds=2.0), "cron_20x": _run(400, seconds=2.5),
            "thrift1_1x": _run(500, seconds=1.5), "thrift1_20x": _run(90, seconds=12.0),
            "thrift1_extra": _run(1)}
    assert history_line.series(runs, "cron") == [(1, 2.0), (20, 2.5)]
    assert history_line.growth(runs, "cron") == 1.25
    assert history_line.growth(runs, "thrift1") == 8.0
    assert history_line.growth({"cron_1x": runs["cron_1x"]}, "cron") is None
    unknown = {"cron_1x": {"seconds": 2.0}, "cron_20x": {"seconds": None}}
    assert history_line.growth(unknown, "cron") is None
    runs["cron_1x"]["slice_seconds"], runs["cron_20x"]["slice_seconds"] = 0.5, 0.6
    out = history_line.growths(runs, "cron (Thrift2)")
    assert out["history_growth"] == 1.25 and out["thrift1_growth"] == 8.0
    assert out["slice_seconds_growth"] == {"cron": 1.2, "thrift1": None}
    assert out["series"] == {"cron (Thrift2)": [(1, 2.0), (20, 2.5)],
                             "default config (Thrift1)": [(1, 1.5), (20, 12.0)]}
    points = report.history_points({"series": {"a": [(20, 3.0), (1, 1.0)], "empty": []}})
    assert points == {"a": [(1.0, 1.0), (20.0, 3.0)]}
    assert report.history_points(None) == {}


def test_cron_config_uses_the_new_key_when_there_is_one():
    env = {"HBASE2ES_TEST_HBASE_THRIFT2": "127.0.0.1:9095"}
    overrides, said = history_line.cron_overrides(env, {"host", "port", "api", "thrift2"})
    assert overrides == {"hbase.thrift2": "127.0.0.1:9095"}
    assert 'thrift2 = "127.0.0.1:9095"' in said
    overrides, said = history_line.cron_overrides(env, {"host", "port", "api"})
    assert overrides == {"hbase.api": "thrift2", "hbase.host": "127.0.0.1", "hbase.port": 9095}
    overrides, said = history_line.cron_overrides({}, {"host", "port", "api", "thrift2"})
    assert overrides == {} and "no Thrift2 server" in said


def test_history_window_rows_are_the_same_documents_in_both_tables():
    per_day, count = 2000, 400
    start, end = WINDOW_START_MS, WINDOW_START_MS + history_line.HOUR_MS
    changes, docs = history_line.window_rows(per_day, count, start)
    assert docs == count
    inside = [key for ts, rows in changes.items() if start <= ts < end for key, _v in rows]
    after = [key for ts, rows in changes.items() if ts >= end for key, _v in rows]
    assert len(inside) == len(set(inside)) == count
    assert after and not set(after) & set(inside)
    assert any(ts == start for ts in changes)  # some rows exactly on the window's start
    one_day = {key for rows in history_line.history_rows(per_day, 1, start).values()
               for key, _v in rows}
    updated = set(inside) & one_day
    assert len(updated) == count // 4  # updates only of rows the 1x table holds too
    older = history_line.history_rows(per_day, 3, start)
    assert max(older) < start and min(older) >= start - 3 * history_line.DAY_MS
    assert sum(len(rows) for rows in older.values()) == 3 * per_day


def test_sizes_scale_with_a_floor():
    assert history_line.sizes(1.0) == (history_line.HG_HISTORY_ROWS,
                                       history_line.HG_WINDOW_ROWS)
    assert history_line.sizes(0.1) == (5000, 2000)
    assert history_line.sizes(0.0001) == (history_line.HG_MIN_HISTORY,
                                          history_line.HG_MIN_WINDOW)


def test_window_slices_follow_the_slice_setting():
    from bench.run import window_slices

    hourly = window_slices(None)  # the default slice (1 h): issue 15's 24 hourly slices
    assert len(hourly) == 24
    assert hourly[0][0] == WINDOW_START_MS and hourly[-1][1] == WINDOW_START_MS + WINDOW_MS
    assert len(window_slices(f"{WINDOW_MS // 4}ms")) == 4


def test_bench_history_knob_is_checked(monkeypatch):
    from bench.run import BenchError, config

    monkeypatch.setenv("BENCH_HISTORY", "0")
    assert config()["history"] is False
    monkeypatch.setenv("BENCH_HISTORY", "maybe")
    with pytest.raises(BenchError, match="BENCH_HISTORY"):
        config()
