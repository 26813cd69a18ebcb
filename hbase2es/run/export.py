"""The export run: plan the slices, hand them to an executor, turn results into a report.

With a ledger, every slice's state is written as it changes (running when a worker takes
it, a checkpoint whenever a bulk has settled, done/failed with counts when it ends), so
``--resume`` after any stop, even a SIGKILL of this process, runs exactly the slices that
are not done, each from just after the last row key its checkpoint holds.
"""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack

from ..errors import ConfigError, ExitCode
from ..hbase.regions import table_regions
from ..pool import Outcome, Progress as ProgressEvent, Started
from ..search import indexsetup
from ..settings import Settings
from .executors import EXECUTORS
from .ledger import Ledger, job_definition
from .outcomes import outcome_error, outcome_status
from .pieces import Checkpoint, RegionSplit, SliceTask, wants_region_split
from .plan import plan_run, slice_ranges
from .preflight import preflight
from .report import Progress, RunReport, SliceReport
from .stopping import StopRequest, stop_on_signals

log = logging.getLogger(__name__)


def run_export(settings: Settings) -> RunReport:
    """Export every slice of the window and return the run's report (with its exit code).

    The report is returned however the run ends, also after a forced stop (a second
    Ctrl-C): running slices are then ``cancelled``, the others ``pending``.
    """
    started = time.monotonic()
    run = settings.run
    if (run.resume or run.incremental) and not run.ledger:
        flag = "--incremental" if run.incremental else "--resume"
        raise ConfigError(f"{flag} needs a ledger: give --ledger FILE or [run] ledger")
    with ExitStack() as stack:
        ledger = stack.enter_context(Ledger(run.ledger)) if run.ledger else None
        if ledger is not None:
            ledger.bind_job(job_definition(settings))
        report = RunReport([SliceReport(s) for s in plan_run(settings, ledger)])
        todo = _todo(report, ledger, resuming=run.resume or run.incremental)
        stop = stack.enter_context(stop_on_signals(report))
        try:
            if todo and not report.interrupted:
                preflight(settings)
                # --create-index / --bulk-load: indices ready before the first document,
                # bulk-load settings put back however the run ends.
                with indexsetup.prepared_indices(settings, [e.slice for e in todo], report):
                    _SliceRun(settings, todo, report, ledger).run(stop)
        except KeyboardInterrupt:  # forced stop: the report still tells the truth
            report.interrupted = True
            for entry in todo:
                if entry.status == "running":
                    entry.status = "cancelled"
                    if ledger is not None:
                        _write_ledger(ledger, entry)
        for entry in report.slices:
            if entry.status == "running":  # started, but its outcome never came
                entry.status = "cancelled"
        report.seconds = time.monotonic() - started
        report.exit_code = exit_code(report, run.max_errors)
        return report


def _todo(report: RunReport, ledger: Ledger | None, *, resuming: bool) -> list[SliceReport]:
    """The slices to run: all, or those the ledger does not have as done (with their
    checkpoints, so each resumes after its last settled row key)."""
    skip = ledger.done() if ledger is not None and resuming else set()
    checkpoints = ledger.checkpoints() if ledger is not None and resuming else {}
    todo = []
    for entry in report.slices:
        key = (entry.slice.start_ms, entry.slice.end_ms)
        if key in skip:
            entry.status = "skipped"
            continue
        entry.resume = checkpoints.get(key)
        todo.append(entry)
        if ledger is not None:
            ledger.mark_pending(*key)
    return todo


class _SliceRun:
    """One executor run over the slices to do: events to the progress bar and the ledger,
    outcomes to the report."""

    def __init__(self, settings: Settings, todo: list[SliceReport], report: RunReport,
                 ledger: Ledger | None):
        self.settings = settings
        self.todo = todo
        self.report = report
        self.ledger = ledger
        self.progress = Progress(len(report.slices), quiet=settings.run.quiet)
        self.progress.bar.update(len(report.slices) - len(todo))  # skipped ones
        self.announced: dict[int, int] = {}  # slice -> documents its progress messages announced

    def run(self, stop: StopRequest) -> None:
        executor = EXECUTORS[self.settings.run.executor]
        if wants_region_split(self.settings):
            executor = RegionSplit(executor, table_regions(self.settings.hbase),
                                   slice_ranges(self.settings))
        tasks = [SliceTask(e.slice, resume=e.resume) if e.resume else e.slice for e in self.todo]
        for entry in self.todo:
            if entry.resume is not None:
                log.info("slice %s: resuming after row %r (%d rows done before)", entry.slice,
                         entry.resume.last_key[:100], entry.resume.rows)
        try:
            for outcome in executor(self.settings, tasks, self.on_event, self.report, stop):
                self.finished(self.todo[outcome.index], outcome)
        finally:
            self.progress.close()

    def on_event(self, event) -> None:
        entry = self.todo[event.index]
        if isinstance(event, ProgressEvent):
            payload = event.payload
            self.announced[event.index] = (self.announced.get(event.index, 0)
                                           + payload.get("indexed", 0))
            self.progress.rows_progress(payload)
            if self.ledger is not None and payload.get("checkpoint"):
                self.ledger.mark_progress(entry.slice.start_ms, entry.slice.end_ms,
                                          Checkpoint(**payload["checkpoint"]))
        elif isinstance(event, Started):
            entry.status = "running"
            if self.ledger is not None:
                self.ledger.mark_running(entry.slice.start_ms, entry.slice.end_ms)

    def finished(self, entry: SliceReport, outcome: Outcome) -> None:
        _record(entry, outcome)
        if self.ledger is not None:
            _write_ledger(self.ledger, entry)
        before = entry.resume.indexed if entry.resume is not None and outcome.status == "ok" else 0
        self.progress.slice_finished(entry, self.announced.pop(outcome.index, 0) + before)


def _record(entry: SliceReport, outcome: Outcome) -> None:
    entry.attempts = outcome.attempts
    entry.status = outcome_status(outcome)
    entry.error = outcome_error(outcome)
    if outcome.status != "ok":
        return
    r = outcome.value
    entry.rows, entry.indexed, entry.stale, entry.failed = r.rows, r.indexed, r.stale, r.failed
    entry.deleted = r.deleted
    entry.seconds = r.seconds
    entry.skipped_fields = r.skipped_fields
    entry.resumed_after = r.resumed_after
    entry.rows_read = r.rows_read
    if r.skipped_fields:
        log.warning("slice %s: left %d undecodable value(s) out of their documents "
                    "(on_decode_error = skip-field)", entry.slice, r.skipped_fields)


def _write_ledger(ledger: Ledger, entry: SliceReport) -> None:
    # A cancelled slice is simply not done: the next --resume runs it again.
    status = {"done": "done", "failed": "failed"}.get(entry.status, "pending")
    ledger.mark_finished(entry.slice.start_ms, entry.slice.end_ms, status, rows=entry.rows,
                         indexed=entry.indexed, stale=entry.stale, failed=entry.failed,
                         error=entry.error)


def exit_code(report: RunReport, max_errors: int) -> ExitCode:
    if report.interrupted:
        return ExitCode.INTERRUPTED
    if report.bulk_load_restore_failed:  # indices left without refresh/replicas
        return ExitCode.FAILED
    failed_slices = [s for s in report.slices if s.status not in ("done", "skipped")]
    if failed_slices or report.totals()["failed"] > max_errors:
        return ExitCode.FAILED
    return ExitCode.OK

