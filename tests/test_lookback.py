"""`--lookback`: incremental runs also export again the done slices just before the
ledger's watermark, so rows written late with an older time are not silently skipped.

The first part needs no server: which slices a run exports again for given ledger
states, what the ledger and the report do with a re-export, what plan and status show,
and the bad input. The second part runs against the real servers: a writer thread puts
rows 20 s late while cron-like incremental runs repeat every few seconds; with
`--lookback 30s` every row has its document at the end, without it some are lost.
"""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path

import orjson
import pytest
from helpers import T0, free_port, read_index, read_report, run_cli, table_name, write_config

from hbase2es.run.export import _todo, _write_ledger, exit_code
from hbase2es.run.ledger import Ledger, contiguous_run, job_definition
from hbase2es.run.plan import lookback_slices, plan_run, reexported
from hbase2es.run.report import RunReport, SliceReport, summary_table
from hbase2es.run.status import ledger_status, render_status
from hbase2es.settings import load_settings
from hbase2es.timewindow import Slice, format_time

S = 5_000  # slice length of these tests, ms


def _settings(ledger: Path | None, *, start=T0, end=T0 + 60_000, lookback: str | None = None,
              incremental: bool = True):
    overrides = {"hbase.table": "t", "elasticsearch.index": "i", "window.start": str(start),
                 "window.end": str(end), "window.slice": "5s", "run.incremental": incremental,
                 "run.ledger": str(ledger) if ledger else None, "run.lookback": lookback}
    return load_settings(None, overrides, now_ms=T0 + 3_600_000)


def _ledger(path: Path, states: dict[tuple[int, int], str], rows: int = 7) -> None:
    """A ledger holding ``states``: (start, end) offsets from T0 in ms -> status."""
    with Ledger(str(path)) as ledger:
        ledger.bind_job(job_definition(_settings(path)))
        for (start, end), status in states.items():
            ledger.mark_finished(T0 + start, T0 + end, status, rows=rows, indexed=rows)


def _offsets(slices) -> list[tuple[int, int]]:
    return [(s.start_ms - T0, s.end_ms - T0) if isinstance(s, Slice) else (s[0] - T0, s[1] - T0)
            for s in slices]


DONE_TO_30S = {(k * S, (k + 1) * S): "done" for k in range(6)}


# --------------------------------------------------------------------------- which slices


def test_the_slices_exported_again_are_those_ending_within_the_lookback():
    run = [(T0 + k * S, T0 + (k + 1) * S) for k in range(6)]  # watermark T0 + 30 s
    end = T0 + 60_000
    # [15 s, 20 s) ends exactly the lookback before the watermark: no time of it is within.
    assert _offsets(lookback_slices(run, 10_000, end)) == [(20_000, 25_000), (25_000, 30_000)]
    # A millisecond more, and it is.
    assert _offsets(lookback_slices(run, 10_001, end))[0] == (15_000, 20_000)
    assert len(lookback_slices(run, 1, end)) == 1  # the last done slice, whatever its length
    assert lookback_slices(run, 3_600_000, end) == run  # longer than the job: all of it
    assert lookback_slices(run, 0, end) == [] and lookback_slices([], 10_000, end) == []
    # A window that ends before the watermark is not exported past its end.
    assert _offsets(lookback_slices(run, 30_000, T0 + 20_000)) == [(k * S, (k + 1) * S)
                                                                   for k in range(4)]


def test_the_contiguous_run_stops_at_a_gap_and_takes_the_longer_of_two_starts():
    done = {(T0, T0 + S), (T0 + S, T0 + 2 * S), (T0 + S, T0 + 3 * S), (T0 + 3 * S, T0 + 4 * S),
            (T0 + 5 * S, T0 + 6 * S), (T0 - S, T0)}
    assert _offsets(contiguous_run(done, T0)) == [(0, S), (S, 3 * S), (3 * S, 4 * S)]
    assert contiguous_run(done, T0 + 1) == []


@pytest.mark.parametrize("states,lookback,expected_again,expected_new_start", [
    # All done to 30 s: the last two slices again, new work from the watermark.
    (DONE_TO_30S, "10s", [(20_000, 25_000), (25_000, 30_000)], 30_000),
    # No lookback: nothing again.
    (DONE_TO_30S, None, [], 30_000),
    # A failed slice is where the watermark stops; the lookback counts back from there.
    ({**DONE_TO_30S, (15_000, 20_000): "failed"}, "10s", [(5_000, 10_000), (10_000, 15_000)],
     15_000),
    # A slice left running by a killed run is not done either.
    ({**DONE_TO_30S, (25_000, 30_000): "running"}, "4s", [(20_000, 25_000)], 25_000),
    # Pending slices only: nothing done, nothing again.
    ({(0, S): "pending"}, "1h", [], 0),
    # Irregular slices (each cron run ends with a short one) are exported again as they are.
    ({(0, 5_000): "done", (5_000, 8_000): "done", (8_000, 13_000): "done",
      (13_000, 14_500): "done"}, "6s", [(8_000, 13_000), (13_000, 14_500)], 14_500),
])
def test_plan_run_puts_the_slices_exported_again_before_the_new_ones(
        tmp_path, states, lookback, expected_again, expected_new_start):
    path = tmp_path / "job.db"
    _ledger(path, states)
    settings = _settings(path, lookback=lookback)
    with Ledger(str(path), readonly=True) as ledger:
        slices = plan_run(settings, ledger)
        again = reexported(settings, ledger)
    assert _offsets(slices[:len(expected_again)]) == expected_again
    assert sorted(_offsets(again)) == expected_again
    assert slices[len(expected_again)].start_ms == T0 + expected_new_start
    assert slices[-1].end_ms == settings.end_ms
    assert [s.index for s in slices] == list(range(len(slices)))


def test_with_nothing_new_a_lookback_still_exports_the_last_slices_again(tmp_path):
    path = tmp_path / "job.db"
    _ledger(path, DONE_TO_30S)
    settings = _settings(path, end=T0 + 30_000, lookback="10s")
    with Ledger(str(path), readonly=True) as ledger:
        assert _offsets(plan_run(settings, ledger)) == [(20_000, 25_000), (25_000, 30_000)]
    without = _settings(path, end=T0 + 30_000)
    with Ledger(str(path), readonly=True) as ledger:
        assert plan_run(without, ledger) == []


def test_a_first_run_or_a_run_without_incremental_exports_nothing_again(tmp_path):
    settings = _settings(None, lookback="1h")  # no ledger yet
    assert plan_run(settings, None)[0].start_ms == T0 and reexported(settings, None) == set()
    path = tmp_path / "job.db"
    _ledger(path, DONE_TO_30S)
    plain = _settings(path, incremental=False)
    with Ledger(str(path), readonly=True) as ledger:
        assert plan_run(plain, ledger)[0].start_ms == T0 and reexported(plain, ledger) == set()


# --------------------------------------------------------------------------- bookkeeping


def _entries(path: Path, lookback: str | None = "10s"):
    settings = _settings(path, lookback=lookback)
    ledger = Ledger(str(path))
    report = RunReport([SliceReport(s) for s in plan_run(settings, ledger)])
    todo = _todo(report, ledger, resuming=True, again=reexported(settings, ledger))
    return ledger, report, todo


def test_a_reexport_replaces_the_slice_counts_and_keeps_it_done(tmp_path):
    path = tmp_path / "job.db"
    _ledger(path, DONE_TO_30S, rows=7)
    ledger, report, todo = _entries(path)
    try:
        again = [e for e in todo if e.reexport]
        assert _offsets([e.slice for e in again]) == [(20_000, 25_000), (25_000, 30_000)]
        assert all(e.status == "pending" for e in again)  # to run, not skipped
        first, second = again
        first.status, first.rows, first.indexed = "done", 9, 9  # two late rows found
        _write_ledger(ledger, first)
        second.status, second.error = "failed", "UnavailableError: es down"
        _write_ledger(ledger, second)
        by_key = {(s.start_ms - T0, s.end_ms - T0): s for s in ledger.slices()}
    finally:
        ledger.close()
    assert (by_key[(20_000, 25_000)].status, by_key[(20_000, 25_000)].rows) == ("done", 9)
    # A failed re-export leaves the slice done with its old counts and says why.
    failed = by_key[(25_000, 30_000)]
    assert (failed.status, failed.rows) == ("done", 7)
    assert failed.error == "re-export: UnavailableError: es down"
    assert by_key[(0, S)].rows == 7
    status = ledger_status(str(path))
    assert status["watermark"] == format_time(T0 + 30_000)  # never falls back
    assert status["totals"]["rows"] == 7 * 5 + 9
    assert "re-export: UnavailableError" in render_status(status)


def test_a_reexport_that_succeeds_clears_an_earlier_reexport_error(tmp_path):
    path = tmp_path / "job.db"
    _ledger(path, DONE_TO_30S)
    with Ledger(str(path)) as ledger:
        ledger.note_reexport_failed(T0 + 25_000, T0 + 30_000, "cancelled")
        ledger.mark_reexported(T0 + 25_000, T0 + 30_000, rows=8, indexed=8, stale=0, failed=0)
        last = ledger.slices()[-1]
    assert (last.rows, last.error, last.status) == (8, None, "done")


def test_reexported_slices_are_not_new_work_in_the_report(tmp_path):
    path = tmp_path / "job.db"
    _ledger(path, DONE_TO_30S)
    ledger, report, todo = _entries(path)
    ledger.close()
    for n, entry in enumerate(todo):
        entry.status, entry.rows, entry.indexed = "done", 10 + n, 10 + n
    again = [e for e in todo if e.reexport]
    new = [e for e in todo if not e.reexport]
    data = report.to_dict()
    assert data["totals"]["rows"] == sum(e.rows for e in new)
    assert data["reexported"] == {"slices": 2, "rows": sum(e.rows for e in again),
                                  "indexed": sum(e.rows for e in again), "stale": 0, "failed": 0,
                                  "deleted": 0}
    assert [s.get("reexported", False) for s in data["slices"]] == [e.reexport for e in todo]
    table = summary_table(report)
    assert table.count("re-exported") == 3  # two slice lines and the line under the table
    assert f"total ({len(new)} slices)" in table
    # Documents that failed in a re-export still count against --max-errors.
    again[0].failed = 1
    assert exit_code(report, max_errors=0) == 1 and exit_code(report, max_errors=1) == 0


# --------------------------------------------------------------------------- plan and status


def _plan_args(path: Path, *extra) -> list[str]:
    return ["plan", "--table", "t", "--index", "i", "--start", str(T0), "--end",
            str(T0 + 60_000), "--slice", "5s", "--ledger", str(path), "--json", *extra]


def test_plan_incremental_lists_the_reexported_slices_and_leaves_the_ledger_alone(tmp_path):
    path = tmp_path / "job.db"
    _ledger(path, {**DONE_TO_30S, (35_000, 40_000): "done"})
    before = path.read_bytes()
    data = orjson.loads(run_cli(_plan_args(path, "--incremental", "--lookback", "10s")).stdout)
    assert data["incremental"] == {"ledger": str(path), "ledger_exists": True,
                                   "watermark": format_time(T0 + 30_000), "lookback": "10s",
                                   "reexported": 2}
    marks = [(s["start"], s.get("reexport", False), s.get("skip", False))
             for s in data["slices"]]
    assert marks[:3] == [(format_time(T0 + 20_000), True, False),
                         (format_time(T0 + 25_000), True, False),
                         (format_time(T0 + 30_000), False, False)]
    assert (format_time(T0 + 35_000), False, True) in marks  # done after the gap: skipped
    assert path.read_bytes() == before
    args = _plan_args(path, "--incremental", "--lookback", "10s")
    args.remove("--json")
    text = run_cli(args).stdout
    assert text.count("(again: lookback)") == 2
    assert f"watermark {format_time(T0 + 30_000)}, lookback 10s" in text


def test_plan_incremental_without_a_ledger_file_plans_the_whole_window(tmp_path):
    path = tmp_path / "new.db"
    data = orjson.loads(run_cli(_plan_args(path, "--incremental", "--lookback", "10s")).stdout)
    assert data["incremental"]["ledger_exists"] is False
    assert data["slices"][0]["start"] == format_time(T0) and len(data["slices"]) == 12
    assert not path.exists()
    plain = orjson.loads(run_cli(_plan_args(path)).stdout)
    assert "incremental" not in plain and len(plain["slices"]) == 12


def test_plan_refuses_another_jobs_ledger(tmp_path):
    path = tmp_path / "job.db"
    _ledger(path, DONE_TO_30S)
    args = _plan_args(path, "--incremental")
    args[args.index("--index") + 1] = "other"
    result = run_cli(args, expect_exit=2)
    assert "belongs to another job" in result.stderr


def test_status_shows_the_watermark_and_the_last_runs_lookback(tmp_path):
    path = tmp_path / "job.db"
    _ledger(path, DONE_TO_30S)
    unknown = run_cli(["status", "--ledger", str(path)]).stdout
    assert "lookback: unknown" in unknown
    assert f"watermark: {format_time(T0 + 30_000)}" in unknown
    with Ledger(str(path)) as ledger:
        ledger.record_lookback("10s")
    data = orjson.loads(run_cli(["status", "--ledger", str(path), "--json"]).stdout)
    assert data["lookback"] == {"duration": "10s",
                                "reexports_slices_ending_after": format_time(T0 + 20_000)}
    assert f"lookback: 10s (last --incremental run): the next run exports again the done " \
           f"slices ending after {format_time(T0 + 20_000)}" in render_status(data)
    with Ledger(str(path)) as ledger:
        ledger.record_lookback(None)
    text = run_cli(["status", "--ledger", str(path)]).stdout
    assert "lookback: none (last --incremental run)" in text


# --------------------------------------------------------------------------- bad input


def _export_args(tmp_path: Path, *extra) -> list[str]:
    # Servers nobody listens on: a check that let the run through would end in exit 3.
    return ["export", "--table", "t", "--index", "i", "--start", str(T0), "--end",
            str(T0 + 60_000), "--slice", "5s", "--hbase", f"127.0.0.1:{free_port()}",
            "--es", f"http://127.0.0.1:{free_port()}", *extra]


def _one_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize("value", ["0s", "0ms", "-30s", "-1m"])
@pytest.mark.parametrize("command", ["export", "plan"])
def test_a_zero_or_negative_lookback_exits_2_in_one_line(tmp_path, value, command):
    ledger = str(tmp_path / "job.db")
    args = _export_args(tmp_path, "--ledger", ledger, "--incremental", f"--lookback={value}")
    args[0] = command
    line = _one_line(run_cli(args, expect_exit=2))
    assert "run.lookback" in line and repr(value) in line
    env = run_cli(args[:-1], expect_exit=2, env={"HBASE2ES_LOOKBACK": value})
    assert "run.lookback" in _one_line(env)
    assert not Path(ledger).exists()


@pytest.mark.parametrize("command", ["export", "plan"])
def test_a_lookback_needs_incremental_and_a_ledger_and_says_so(tmp_path, command):
    ledger = str(tmp_path / "job.db")
    cases = [(["--ledger", ledger, "--lookback", "30s"], "needs --incremental"),
             (["--lookback", "30s"], "needs --incremental"),
             (["--incremental", "--lookback", "30s"], "needs a ledger: give --ledger FILE")]
    for extra, needle in cases:
        args = _export_args(tmp_path, *extra)
        args[0] = command
        line = _one_line(run_cli(args, expect_exit=2))
        assert line.startswith("hbase2es: error: --lookback (run.lookback) ") and needle in line
    config = write_config(tmp_path / "job.toml", '[run]\nlookback = "30s"\n')
    args = _export_args(tmp_path, "--config", config, "--ledger", ledger)
    args[0] = command
    assert "needs --incremental" in _one_line(run_cli(args, expect_exit=2))
    assert not Path(ledger).exists()


# --------------------------------------------------------------------------- real servers


def _status(ledger: Path) -> dict:
    return orjson.loads(run_cli(["status", "--ledger", str(ledger), "--json"]).stdout)


def _final_counts(reports: list[dict]) -> dict[str, dict]:
    """Slice start -> its counts after all runs: new work once per slice, each re-export
    replacing what the slice had. Fails if a slice is new work twice or re-exported
    before it was ever done."""
    final: dict[str, dict] = {}
    for report in reports:
        for s in report["slices"]:
            if s["status"] == "skipped":
                continue
            assert s["status"] == "done", s
            key = s["start"]
            if s.get("reexported"):
                assert key in final, f"slice {key} re-exported before it was ever exported"
            else:
                assert key not in final, f"slice {key} was new work twice"
            final[key] = s
    return final


class LateWriter(threading.Thread):
    """Puts one on-time row and one row 20 s late every ``every`` seconds for ``seconds``,
    on its own happybase connection (they are not thread-safe)."""

    LATE_MS = 20_000

    def __init__(self, servers, name: str, seconds: float, every: float = 0.25):
        super().__init__(daemon=True)
        self.servers, self.name, self.seconds, self.every = servers, name, seconds, every
        self.on_time: dict[str, int] = {}
        self.late: dict[str, int] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        import happybase

        conn = happybase.Connection(self.servers.hbase_host, self.servers.hbase_port,
                                    timeout=30000)
        try:
            table = conn.table(self.name)
            deadline = time.monotonic() + self.seconds
            n = 0
            while time.monotonic() < deadline:
                now = int(time.time() * 1000)
                for key, ts, rows in ((f"on-{n:05d}", now, self.on_time),
                                      (f"late-{n:05d}", now - self.LATE_MS, self.late)):
                    table.put(key.encode(), {b"cf:v": b"%d" % n}, timestamp=ts)
                    rows[key] = ts  # recorded once HBase has acknowledged it
                n += 1
                time.sleep(self.every)
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost
            self.error = exc
        finally:
            conn.close()


def _cron_run(servers, name: str, index: str, start: int, ledger: Path, report: Path,
              *extra) -> dict:
    run_cli(["export", "--hbase", servers.hbase, "--table", name, "--es", servers.es,
             "--index", index, "--start", str(start), "--end", "now-3s", "--slice", "5s",
             "--workers", "1", "--quiet", "--incremental", "--ledger", ledger,
             "--report", report, *extra])
    return read_report(report)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_late_rows_all_arrive_with_lookback_and_some_are_lost_without(servers, table, es,
                                                                     index, tmp_path):
    name = table_name(table)
    start = (int(time.time()) - 60) * 1000  # before any row, even the late ones
    jobs = {"lookback": ["--lookback", "30s"], "plain": []}
    reports: dict[str, list[dict]] = {job: [] for job in jobs}

    def run_both(n: int) -> None:
        for job, extra in jobs.items():
            reports[job].append(_cron_run(servers, name, f"{index}-{job}", start,
                                          tmp_path / f"{job}.db", tmp_path / f"{job}-{n}.json",
                                          *extra))

    writer = LateWriter(servers, name, seconds=40)
    writer.start()
    runs = 0
    while writer.is_alive() and runs < 10:  # cron: every few seconds, while rows arrive
        begun = time.monotonic()
        run_both(runs)
        runs += 1
        time.sleep(max(0.0, 4 - (time.monotonic() - begun)))
    writer.join(timeout=30)
    assert not writer.is_alive() and writer.error is None, writer.error
    assert runs >= 5, f"only {runs} runs while the writer wrote: the machine is too slow"
    # The last run: after the writer stopped and once now-3s has passed the newest row.
    newest = max(writer.on_time.values())
    time.sleep(max(0.0, (newest + 3_500) / 1000 - time.time()))
    run_both(runs)

    written = {**writer.on_time, **writer.late}
    assert len(writer.late) >= 100
    in_index = {job: set(read_index(es, f"{index}-{job}")) for job in jobs}

    # With the lookback: every row has its document, and each slice's last counts (new
    # work once, every re-export replacing them) add up to the rows, as in the ledger.
    assert in_index["lookback"] == set(written)
    final = _final_counts(reports["lookback"])
    assert sum(s["rows"] for s in final.values()) == len(written)
    assert sum(s["indexed"] for s in final.values()) == len(written)
    assert sum(r["reexported"]["slices"] for r in reports["lookback"]) >= runs
    assert _status(tmp_path / "lookback.db")["totals"]["rows"] == len(written)
    # Rows that came late were found by re-exports, not by new work: that is the loss
    # the plain job shows.
    new_work = sum(r["totals"]["rows"] for r in reports["lookback"])
    assert new_work < len(written)

    # Without it: every on-time row, but late rows whose time the watermark had passed
    # are missing, and its reports count exactly what it exported.
    plain = in_index["plain"]
    missing = set(written) - plain
    assert set(writer.on_time) <= plain
    assert missing and missing <= set(writer.late), sorted(missing)[:5]
    assert sum(r["totals"]["rows"] for r in reports["plain"]) == len(plain)
    assert all(r["reexported"]["slices"] == 0 for r in reports["plain"])
    assert _status(tmp_path / "plain.db")["totals"]["rows"] == len(plain)


# One late row per time source: the slices are the same, only which slices run changes.
SOURCES = {
    "cell": ("", lambda t: (f"r{t}".encode(), {b"cf:v": b"x"}, t)),
    "rowkey": ('[window]\ntime_source = "rowkey"\n',
               lambda t: (struct.pack(">q", t) + b"#r", {b"cf:v": b"x"}, None)),
    "column": ('[window]\ntime_source = "column"\n[window.column]\ncolumn = "cf:t"\n',
               lambda t: (f"r{t}".encode(), {b"cf:t": struct.pack(">q", t)}, None)),
}


@pytest.mark.integration
@pytest.mark.timeout(180)
@pytest.mark.parametrize("source", list(SOURCES))
def test_a_late_row_reaches_the_index_by_lookback_for_every_time_source(
        servers, table, es, index, tmp_path, source):
    config_text, row = SOURCES[source]
    config = write_config(tmp_path / "job.toml", config_text + "[run]\nworkers = 1\nquiet = true\n")
    ledger = tmp_path / "job.db"

    def put(t: int) -> None:
        key, cells, ts = row(t)  # ts None: the server's time; the row time is in the data
        if ts is None:
            table.put(key, cells)
        else:
            table.put(key, cells, timestamp=ts)

    def run(end: int, name: str, *extra) -> dict:
        report = tmp_path / f"{name}.json"
        run_cli(["export", "--config", config, "--hbase", servers.hbase, "--table",
                 table_name(table), "--es", servers.es, "--index", index, "--start", str(T0),
                 "--end", str(end), "--slice", "5s", "--incremental", "--ledger", ledger,
                 "--report", report, *extra])
        return read_report(report)

    for t in (T0 + 1_000, T0 + 12_000, T0 + 27_000):
        put(t)
    first = run(T0 + 30_000, "first")
    assert first["totals"]["rows"] == 3 and first["reexported"]["slices"] == 0
    put(T0 + 22_000)  # late: the watermark (T0 + 30 s) has passed its time
    second = run(T0 + 40_000, "second", "--lookback", "10s")
    again = [s for s in second["slices"] if s.get("reexported")]
    assert [s["start"] for s in again] == [format_time(T0 + 20_000), format_time(T0 + 25_000)]
    assert [s["rows"] for s in again] == [1, 1]  # the late row, and the one already there
    assert second["reexported"]["rows"] == 2 and second["totals"]["rows"] == 0
    assert len(read_index(es, index)) == 4
    status = _status(ledger)
    assert status["totals"]["rows"] == 4  # replaced, not added: [25 s, 30 s) counts once
    assert status["lookback"]["duration"] == "10s"
