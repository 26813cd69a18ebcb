"""``--resume`` starts a slice after the last row key its ledger checkpoint holds.

A worker is SIGKILLed mid-slice after some bulks have landed (the ledger shows a
checkpoint); the slice fails (one attempt allowed); ``--resume`` then reads only the rows
after the checkpoint's key, and the slice's counts add up to every row exactly once.
"""

from __future__ import annotations

import os
import signal
import sqlite3

import orjson
import pytest
from faults import ExportProcess, alive, load_rows, row_key, wait_for, worker_pids
from helpers import T0, count_docs, read_report, table_name, write_config

from hbase2es.timewindow import format_time

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 6000
BULK = 100
SLICE_MS = 60_000


def _checkpoint(ledger) -> tuple[bytes, dict] | None:
    """The slice's checkpoint, read beside the running export (WAL allows it)."""
    if not os.path.exists(ledger):
        return None
    db = sqlite3.connect(ledger, timeout=10)
    try:
        row = db.execute("SELECT last_row_key, checkpoint FROM slices "
                         "WHERE checkpoint IS NOT NULL").fetchone()
    except sqlite3.OperationalError:  # tables not created yet
        return None
    finally:
        db.close()
    return (bytes(row[0]), orjson.loads(row[1])) if row else None


def test_resume_starts_after_the_checkpoint_and_counts_each_row_once(servers, table, es, index,
                                                                     tmp_path):
    start = T0 - T0 % SLICE_MS
    load_rows(table, ROWS, start, 1, SLICE_MS)
    config = write_config(tmp_path / "job.toml", f"""
[elasticsearch]
bulk_docs = {BULK}
[run]
max_attempts = 1
""")
    ledger, report = tmp_path / "job.db", tmp_path / "report.json"
    args = ["export", "--config", config, "--hbase", servers.hbase, "--table", table_name(table),
            "--es", servers.es, "--index", index, "--start", str(start),
            "--end", str(start + SLICE_MS), "--slice", "1m", "--workers", "1",
            "--ledger", ledger, "--quiet"]
    with ExportProcess(args, tmp_path, "killed") as run:
        [worker] = wait_for(lambda: worker_pids(run.pid), 60, "the worker")
        wait_for(lambda: (not run.running()) or (_checkpoint(ledger) or (0, {}))[1].get(
            "rows", 0) >= 5 * BULK, 60, "a checkpoint after five bulks", interval=0.01)
        assert run.running(), f"the export ended before the kill\n{run.output()}"
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: not alive(worker), 10, "the worker to die")
        assert run.wait(60) == 1, run.output()
    assert "WorkerDied" in run.stderr, run.output()

    key, before = _checkpoint(ledger)
    assert before["rows"] < ROWS and before["rows"] == before["indexed"] + before["stale"] \
        + before["failed"], before
    # Rows come in key order, so the checkpoint's key is the (rows)-th key of the table.
    assert key == row_key(before["rows"] - 1)

    resumed = ExportProcess(args + ["--resume", "--report", report], tmp_path, "resume")
    with resumed:
        assert resumed.wait(120) == 0, resumed.output()
    [entry] = read_report(report)["slices"]
    assert entry["start"] == format_time(start) and entry["status"] == "done"
    assert entry["resumed_after_rows"] == before["rows"]
    # The resumed scan read only the rows after the checkpoint's key...
    assert entry["rows_read"] == ROWS - before["rows"], entry
    # ... and the slice's counts hold every row once: before the cut and after it. (The
    # bulk in flight at the kill may have landed unrecorded; sent again with the same
    # version, external_gte indexes it again rather than calling it stale.)
    assert (entry["rows"], entry["indexed"], entry["stale"], entry["failed"]) == (ROWS, ROWS, 0, 0)
    assert f"resuming after row {row_key(before['rows'] - 1)!r}" in resumed.stderr
    assert count_docs(es, index) == ROWS
