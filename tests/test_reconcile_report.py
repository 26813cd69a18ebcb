"""reconcile's exit codes and text, from reports built by hand (no server)."""

from __future__ import annotations

import pytest

from hbase2es.run.reconcile import (ReconcileEntry, ReconcileReport, exit_code,
                                    render_reconcile)
from hbase2es.run.reconcilejob import ReconcileOptions, ReconcileSliceResult
from hbase2es.timewindow import Slice

T = 1_700_000_000_000


def report(apply: bool, *, orphans: int = 0, failed: int = 0, status: str = "done",
           interrupted: bool = False) -> ReconcileReport:
    result = ReconcileSliceResult(0, T, T + 1000, checked=10, orphans=orphans,
                                  deleted=orphans - failed if apply else 0, failed=failed,
                                  orphan_ids=[f"row{i}" for i in range(orphans)][:10])
    entry = ReconcileEntry(Slice(0, T, T + 1000), status=status,
                           result=result if status == "done" else None)
    return ReconcileReport("t", "i", T, T + 1000, ReconcileOptions(apply=apply), [entry],
                           interrupted=interrupted)


@pytest.mark.parametrize("apply,orphans,failed,status,interrupted,max_errors,expected", [
    (False, 0, 0, "done", False, 0, 0),
    (False, 3, 0, "done", False, 0, 1),  # a dry run that found orphans
    (True, 3, 0, "done", False, 0, 0),  # ... all deleted
    (True, 3, 2, "done", False, 0, 1),  # refused deletes beyond the budget
    (True, 3, 2, "done", False, 2, 0),  # ... within it
    (False, 0, 0, "failed", False, 0, 1),
    (True, 3, 0, "done", True, 0, 130),
])
def test_exit_codes(apply, orphans, failed, status, interrupted, max_errors, expected):
    r = report(apply, orphans=orphans, failed=failed, status=status, interrupted=interrupted)
    assert exit_code(r, max_errors) == expected


def test_the_text_names_orphans_and_says_a_dry_run_deleted_nothing():
    r = report(False, orphans=2)
    r.exit_code = exit_code(r, 0)
    text = render_reconcile(r.to_dict())
    assert "dry run, nothing deleted" in text
    assert "ORPHANS: 2 documents whose row is gone from HBase, e.g. row0, row1" in text
    assert "run again with --apply" in text
    clean = report(False)
    clean.exit_code = exit_code(clean, 0)
    assert "OK: all 10 checked documents have their row" in render_reconcile(clean.to_dict())
    applied = report(True, orphans=2)
    applied.exit_code = exit_code(applied, 0)
    data = applied.to_dict()
    assert data["mode"] == "apply" and data["totals"]["deleted"] == 2
    assert "deleted 2, skipped 0" in render_reconcile(data)


def test_unreachable_servers_exit_3_with_one_line():
    from helpers import free_port, run_cli

    result = run_cli(["reconcile", "--hbase", f"127.0.0.1:{free_port()}", "--table", "t",
                      "--es", f"http://127.0.0.1:{free_port()}", "--index", "i",
                      "--start", str(T), "--end", str(T + 1000), "--slice", "1s"],
                     expect_exit=3)
    assert result.stderr.count("\n") == 1 and "cannot reach" in result.stderr
