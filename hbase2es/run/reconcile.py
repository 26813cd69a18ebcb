"""``hbase2es reconcile``: find (and with ``--apply`` delete) the documents of a window
whose row is gone from HBase.

Scans never see deleted rows, so an export alone never removes a document. The parent
side is here: the slices run on the worker pool (``run.reconcilejob`` is what each worker
does), their counts become the report, the table and the exit code. With ``--ledger`` it
holds the job's ledger lock for the whole run, so it never overlaps the job's export
(exit 75 when an export holds it).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass

from ..errors import ConfigError, ExitCode
from ..settings import Settings
from ..timewindow import split_window
from .checkrun import render_check_table, run_check_slices
from .ledger import Ledger, job_definition
from .outcomes import CheckEntry, CheckReport
from .reconcilejob import (MAX_EXAMPLES, ReconcileOptions, close_reconciler,
                           open_reconciler, reconcile_slice)
from .stopping import StopRequest

TOTALS = ("checked", "orphans", "deleted", "skipped", "failed", "foreign")


ReconcileEntry = CheckEntry


@dataclass
class ReconcileReport(CheckReport):
    TOTALS = TOTALS
    MAX_EXAMPLES = MAX_EXAMPLES

    def result_dict(self, result) -> dict:
        return {"orphan_ids": result.orphan_ids, "listing": result.listing,
                "seconds": result.seconds}

    def to_dict(self) -> dict:
        mode = "sample" if self.options.sample is not None else (
            "apply" if self.options.apply else "dry run")
        return {**self.window_dict(),
                "mode": mode, "apply": self.options.apply, "sample": self.options.sample,
                "slices": self.slice_dicts(), "totals": self.totals(),
                "orphan_examples": self.examples("orphan_ids"), **self.end_dict()}


def exit_code(report: ReconcileReport, max_errors: int) -> ExitCode:
    """130 interrupted; 1 a slice not done, orphans left by a dry run, or more refused
    deletes than ``--max-errors``; else 0."""
    if report.interrupted:
        return ExitCode.INTERRUPTED
    t = report.totals()
    if any(e.status != "done" for e in report.slices):
        return ExitCode.FAILED
    if report.options.apply:
        return ExitCode.FAILED if t["failed"] > max_errors else ExitCode.OK
    return ExitCode.FAILED if t["orphans"] else ExitCode.OK


def run_reconcile(settings: Settings, *, apply: bool = False, sample: int | None = None,
                  stop: StopRequest | None = None) -> ReconcileReport:
    """Reconcile every slice of the window on the worker pool; the report carries the
    exit code. ``stop`` as for ``run_export``: the command's, so its handlers outlive this
    call."""
    if apply and sample is not None:
        raise ConfigError("--apply cannot be combined with --sample: a sample finds orphans, "
                          "it does not find them all; drop --sample to delete them")
    started = time.monotonic()
    options = ReconcileOptions(apply=apply, sample=sample)
    slices = split_window(settings.start_ms, settings.end_ms, settings.slice_ms)
    report = ReconcileReport(settings.hbase.table, settings.elasticsearch.index,
                             settings.start_ms, settings.end_ms, options,
                             [ReconcileEntry(s) for s in slices])
    with ExitStack() as stack:
        if settings.run.ledger:
            # The lock only: the ledger's slices are the export's; reconcile records none.
            ledger = stack.enter_context(Ledger(settings.run.ledger))
            ledger.bind_job(job_definition(settings))
        run_check_slices(settings, slices, report, job=reconcile_slice,
                         opener=open_reconciler, closer=close_reconciler,
                         initargs=(settings, options), desc="reconcile", counted="checked",
                         stop=stop)
    report.seconds = time.monotonic() - started
    report.exit_code = exit_code(report, settings.run.max_errors)
    return report


def render_reconcile(data: dict) -> str:
    """The table printed at the end of ``reconcile`` (from ``ReconcileReport.to_dict()``)."""
    mode = {"dry run": "dry run, nothing deleted", "apply": "--apply: orphans deleted",
            "sample": f"SAMPLE: up to {data['sample']} random documents per slice checked, "
                      "not every document; nothing deleted"}[data["mode"]]
    lines = [f"reconcile {data['index']} against {data['table']}, window "
             f"[{data['window']['start']}, {data['window']['end']}), {len(data['slices'])} "
             f"slices; {mode}"]
    names = ["checked", "orphans"] + (["deleted", "skipped", "failed"] if data["apply"] else [])
    lines.extend(render_check_table(data, names))
    lines.extend(_outcome_lines(data))
    return "\n".join(lines)


def _outcome_lines(data: dict) -> list[str]:
    t = data["totals"]
    lines = []
    if t["orphans"]:
        lines.append(f"ORPHANS: {t['orphans']} documents whose row is gone from HBase, e.g. "
                     f"{', '.join(data['orphan_examples'])}")
        if not data["apply"]:
            lines.append("  nothing was deleted: run again with --apply to delete them")
    if data["apply"] and t["orphans"]:
        lines.append(f"deleted {t['deleted']}, skipped {t['skipped']} (the row came back or "
                     f"the document changed since it was listed), failed {t['failed']}")
    if t["foreign"]:
        lines.append(f"{t['foreign']} documents have an _id hbase2es does not write; left alone")
    if not t["orphans"] and data["exit_code"] == 0:
        lines.append(f"OK: all {t['checked']} checked documents have their row")
    return lines


def problem_summary(data: dict) -> str:
    """Lines for stderr when ``--json`` owns stdout."""
    return "\n".join(_outcome_lines(data)[:2]) if data["totals"]["orphans"] else ""
