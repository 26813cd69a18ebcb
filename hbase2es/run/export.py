"""The export run: plan the slices, hand them to an executor, turn results into a report.

With a ledger, every slice's state is written as it changes (running when a worker takes
it, a checkpoint whenever a bulk has settled, done/failed with counts when it ends), so
``--resume`` after any stop, even a SIGKILL of this process, runs exactly the slices that
are not done, each from just after the last row key its checkpoint holds. A done slice
that ``--lookback`` exports again stays done throughout; when it finishes, its new counts
replace the old ones.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from dataclasses import replace

from ..errors import ExitCode, Hbase2esError
from ..hbase import choose_api, describe_strategy
from ..hbase.regions import table_regions
from ..pool import Outcome, Progress as ProgressEvent, Started
from ..search import engine, indexsetup
from ..settings import Settings
from ..timesource import time_source
from . import metrics
from .executors import EXECUTORS
from .ledger import Ledger, job_definition
from .cutover import check_alias, verify_then_cut_over
from .datastream import with_data_streams
from .limiter import RunLimiter
from .onepass import OnePass, splits_by_region, wants_one_pass
from .outcomes import outcome_error, outcome_status
from .pieces import Checkpoint, RegionSplit, SliceTask
from .plan import check_ledger_flags, plan_run, reexported, slice_ranges
from .preflight import preflight
from .readcost import read_path
from .report import Progress, RunReport, SliceReport, record_rates
from .stopping import StopRequest, stop_on_signals

log = logging.getLogger(__name__)


def run_export(settings: Settings, stop: StopRequest | None = None) -> RunReport:
    """Export every slice of the window and return the run's report (with its exit code).

    The report is returned however the run ends, also after a forced stop (a second
    Ctrl-C): running slices are then ``cancelled``, the others ``pending``. ``stop`` is
    the command's (``stopping.command_stop``), whose handlers outlive this call so the
    caller can write the report; without it, signals are handled for this call only.
    """
    started = time.monotonic()
    run = settings.run
    check_ledger_flags(settings)
    with ExitStack() as stack:
        ledger = stack.enter_context(Ledger(run.ledger)) if run.ledger else None
        if ledger is not None:
            ledger.bind_job(job_definition(settings))
            if run.incremental:  # what `status` shows as the lookback in force
                ledger.record_lookback(run.lookback)
        report = RunReport([SliceReport(s) for s in plan_run(settings, ledger)])
        todo = _todo(report, ledger, resuming=run.resume or run.incremental,
                     again=reexported(settings, ledger))
        if run.executor == "local":  # Spark tasks get their shares instead (run.spark)
            report.limiter = RunLimiter.for_run(settings, start_method=run.start_method)
        slice_run = _SliceRun(settings, todo, report, ledger)
        watch = _Metrics(settings, report, ledger, slice_run, started)
        try:
            _run_slices(settings, report, todo, ledger, slice_run, stack, stop)
        except BaseException as exc:
            watch.finish(_failure_code(exc))
            raise
        report.seconds = time.monotonic() - started
        report.exit_code = exit_code(report, run.max_errors)
        _finished(settings, report)
        verify_then_cut_over(settings, report, stop)
        watch.finish(report.exit_code)
        return report


def _run_slices(settings: Settings, report: RunReport, todo: list[SliceReport],
                ledger: Ledger | None, slice_run: _SliceRun, stack: ExitStack,
                stop: StopRequest | None) -> None:
    stop = stack.enter_context(stop_on_signals(report, stop=stop))
    try:
        with stop.running():
            if todo and not report.interrupted:
                preflight(settings)
                slice_run.settings = settings = _checked_targets(settings, todo, ledger)
                # --create-index / --bulk-load: indices ready before the first document,
                # bulk-load settings put back however the run ends.
                with indexsetup.prepared_indices(settings, [e.slice for e in todo], report):
                    slice_run.run(stop)
                refresh_written(settings, report)
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


def _checked_targets(settings: Settings, todo: list[SliceReport],
                     ledger: Ledger | None) -> Settings:
    """Preflight of what the index names are: the alias name, and data streams (the
    settings returned say whether the run writes to them)."""
    names = indexsetup.index_names(settings, [e.slice for e in todo])
    client = engine.make_client(settings.elasticsearch)
    try:
        check_alias(settings, client, names)
        return with_data_streams(settings, client, names, todo,
                                 ledger.done() if ledger is not None else set())
    finally:
        client.close()


def refresh_written(settings: Settings, report: RunReport) -> list[str]:
    """Refresh the indices this run wrote to, so a search right after the run finds its
    documents; returns the names asked for. A failure is a warning: the documents are
    written and become searchable at the next periodic refresh."""
    if not settings.run.refresh or report.interrupted:
        return []
    written = [e.slice for e in report.slices if e.indexed > 0]
    names = indexsetup.index_names(settings, written) if written else []
    if settings.run.bulk_load and report.bulk_load:  # restoring those refreshed them already
        names = [n for n in names if n not in set(report.bulk_load.get("indices", ()))]
    if not names:
        return []
    client = engine.make_client(settings.elasticsearch)
    try:
        step = indexsetup.NAMES_PER_REQUEST  # one call, unless the names would not fit a URL
        for i in range(0, len(names), step):
            engine.refresh(client, ",".join(names[i:i + step]), ignore_unavailable=True)
    except (*engine.API_ERRORS, *engine.CONNECTION_ERRORS) as exc:
        log.warning("could not refresh %s (%s: %s): the documents become searchable within "
                    "the indices' refresh interval", ", ".join(names[:5]), type(exc).__name__,
                    engine.error_reason(exc)[:200])
    finally:
        client.close()
    return names


def _finished(settings: Settings, report: RunReport) -> None:
    """The achieved rates and the push-back into the report; one line (event) in the log."""
    run, limiter = settings.run, report.limiter
    record_rates(report, {"max_docs_per_second": run.max_docs_per_second,
                          "max_bytes_per_second": run.max_bytes_per_second,
                          "max_rows_per_second": settings.hbase.max_rows_per_second},
                 limiter.counters() if limiter is not None else None, run.adaptive)
    t = report.totals()
    log.info("export finished: %d slices, rows=%d indexed=%d stale=%d failed=%d in %.1fs, "
             "exit %d", len(report.slices), t["rows"], t["indexed"], t["stale"], t["failed"],
             report.seconds, int(report.exit_code),
             extra={"event": "run_finished", "counts": t, "seconds": round(report.seconds, 3),
                    "exit_code": int(report.exit_code)})


def _failure_code(exc: BaseException) -> int:
    """The exit code an exception out of the run will end with (cli maps the same way)."""
    if isinstance(exc, Hbase2esError):
        return int(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return int(ExitCode.INTERRUPTED)
    return int(ExitCode.UNAVAILABLE if isinstance(exc, OSError) else ExitCode.FAILED)


class _Metrics:
    """--metrics-file: written every metrics_interval seconds while the slices run, and
    once at the end with the exit code. Without the option, nothing."""

    def __init__(self, settings: Settings, report: RunReport, ledger: Ledger | None,
                 slice_run: _SliceRun, started: float):
        run = settings.run
        self.report, self.slice_run, self.started = report, slice_run, started
        self.file = None
        if not run.metrics_file:
            return
        job = run.job or settings.elasticsearch.index
        self.watermark_from = ledger.watermark(settings.start_ms) if ledger is not None else None
        self.last_success = metrics.previous_success(run.metrics_file, job)
        self.file = metrics.MetricsFile(run.metrics_file, job, run.metrics_interval,
                                        self.samples).start()

    def samples(self, exit_code: int | None = None) -> list:
        with self.slice_run.counting:
            return metrics.collect(self.report, now=time.time(),
                                   run_seconds=round(time.monotonic() - self.started, 3),
                                   in_flight=self.slice_run.in_flight(),
                                   watermark_from=self.watermark_from, exit_code=exit_code,
                                   last_success=self.last_success)

    def finish(self, exit_code: int) -> None:
        if self.file is None:
            return
        if exit_code == ExitCode.OK:
            self.last_success = time.time()
        self.file.finish(self.samples(exit_code))


def _todo(report: RunReport, ledger: Ledger | None, *, resuming: bool,
          again: set[tuple[int, int]] = frozenset()) -> list[SliceReport]:
    """The slices to run: all, or those the ledger does not have as done (with their
    checkpoints, so each resumes after its last settled row key), and the done ones in
    ``again`` (--lookback), which run whole as re-exports."""
    skip = ledger.done() if ledger is not None and resuming else set()
    checkpoints = ledger.checkpoints() if ledger is not None and resuming else {}
    todo = []
    for entry in report.slices:
        key = (entry.slice.start_ms, entry.slice.end_ms)
        if key in again:
            entry.reexport = True
            todo.append(entry)
            continue
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
        self.progress: Progress | None = None
        self.announced: dict[int, int] = {}  # slice -> documents its progress messages announced
        self.announced_rows: dict[int, int] = {}  # slice -> rows, the same way
        self.counting = threading.Lock()  # the metrics thread reads the counts meanwhile

    def in_flight(self) -> tuple[int, int]:
        """Rows and documents that running slices have announced (for the metrics)."""
        return sum(list(self.announced_rows.values())), sum(list(self.announced.values()))

    def run(self, stop: StopRequest) -> None:
        self.progress = Progress(len(self.report.slices), quiet=self.settings.run.quiet,
                                 docs_limit=self.settings.run.max_docs_per_second)
        self.progress.bar.update(len(self.report.slices) - len(self.todo))  # skipped ones
        self.settings = settings = _settled_api(self.settings)
        self.report.read = {"api": settings.hbase.api, "path": read_path(settings)}
        executor = EXECUTORS[settings.run.executor]
        if wants_one_pass(settings):
            executor = OnePass(executor)
        if splits_by_region(settings, len(self.todo)):
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
            self.announced_rows[event.index] = (self.announced_rows.get(event.index, 0)
                                                + payload.get("rows", 0))
            self.progress.rows_progress(payload)
            # A re-export keeps its slice done: no checkpoint, so nothing to resume from.
            if self.ledger is not None and payload.get("checkpoint") and not entry.reexport:
                self.ledger.mark_progress(entry.slice.start_ms, entry.slice.end_ms,
                                          Checkpoint(**payload["checkpoint"]))
        elif isinstance(event, Started):
            entry.status = "running"
            if self.ledger is not None and not entry.reexport:
                self.ledger.mark_running(entry.slice.start_ms, entry.slice.end_ms)

    def finished(self, entry: SliceReport, outcome: Outcome) -> None:
        with self.counting:  # the metrics see the announced counts or the final ones, not both
            _record(entry, outcome)
            announced = self.announced.pop(outcome.index, 0)
            self.announced_rows.pop(outcome.index, None)
        if self.ledger is not None:
            _write_ledger(self.ledger, entry)
        before = entry.resume.indexed if entry.resume is not None and outcome.status == "ok" else 0
        self.progress.slice_finished(entry, announced + before)


def _settled_api(settings: Settings) -> Settings:
    """The settings with ``[hbase] api = "auto"`` settled (one probe, in the parent), so
    every worker reads through the same server; logs how slices are read."""
    hbase = choose_api(settings.hbase, settings.window.time_source)
    settings = replace(settings, hbase=hbase) if hbase != settings.hbase else settings
    log.info("reading slices: %s", describe_strategy(hbase, time_source(settings.window),
                                                     wants_one_pass(settings)))
    return settings


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
    entry.moved, entry.move_conflicts = r.moved, r.move_conflicts
    if r.skipped_fields:
        log.warning("slice %s: left %d undecodable value(s) out of their documents "
                    "(on_decode_error = skip-field)", entry.slice, r.skipped_fields)


def _write_ledger(ledger: Ledger, entry: SliceReport) -> None:
    if entry.reexport:
        # The slice stays done, so the watermark never falls back and the slices after it
        # are not exported as new work again; done, its new counts replace the old.
        if entry.status == "done":
            ledger.mark_reexported(entry.slice.start_ms, entry.slice.end_ms, rows=entry.rows,
                                   indexed=entry.indexed, stale=entry.stale,
                                   failed=entry.failed)
        else:
            ledger.note_reexport_failed(entry.slice.start_ms, entry.slice.end_ms,
                                        entry.error or entry.status)
        return
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
    failed_documents = report.totals()["failed"] + report.reexported()["failed"]
    if failed_slices or failed_documents > max_errors:
        return ExitCode.FAILED
    return ExitCode.OK

