"""The export run: plan the slices, hand them to the pool, turn results into a report.

With a ledger, every slice's state is written as it changes (running when a worker
takes it, done/failed with counts when it ends), so ``--resume`` after any stop, even
a SIGKILL of this process, runs exactly the slices that are not done.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from . import es_compat, indexsetup, slicejob
from .errors import ConfigError, ExitCode, Hbase2esError, UnavailableError
from .hbase_reader import open_reader
from .ledger import Ledger
from .plan import slice_tasks, table_regions
from .pool import (Outcome, Pool, Progress as ProgressEvent, Retrying, Started, TaskError,
                   WorkerStartupError)
from .regions import SliceTask, merge_results, wants_region_split
from .report import Progress, RunReport, SliceReport
from .settings import Settings
from .signals import handling_stop_signals
from .timewindow import Slice, format_time, split_window

log = logging.getLogger(__name__)


def job_definition(settings: Settings) -> dict:
    """What determines the documents a job writes; a ledger belongs to exactly one."""
    window = dataclasses.asdict(settings.window)
    for key in ("start", "end", "slice"):  # the same job may be cut and extended freely
        window.pop(key, None)
    mapping = settings.mapping
    return {
        "table": settings.hbase.table,
        "index": settings.elasticsearch.index,
        "window": window,
        "mapping": {
            "columns": [[c.column.decode("utf-8", "backslashreplace"), c.field, c.type]
                        for c in mapping.columns],
            "unmapped": mapping.unmapped, "rowkey_field": mapping.rowkey_field,
            "timestamp_field": mapping.timestamp_field,
            "on_decode_error": mapping.on_decode_error,
        },
    }


def preflight(settings: Settings) -> None:
    """Fail in seconds, before any worker starts, when a server or the table is missing."""
    open_reader(settings.hbase).close()  # raises UnavailableError naming what is wrong
    client = es_compat.make_client(settings.elasticsearch)
    try:
        es_compat.info(client)
    except es_compat.CONNECTION_ERRORS as exc:
        hosts = ", ".join(settings.elasticsearch.hosts)
        raise UnavailableError(f"cannot reach Elasticsearch at {hosts}: "
                               f"{type(exc).__name__}") from None
    except es_compat.API_ERRORS as exc:
        status = es_compat.status_of(exc)
        raise UnavailableError(f"Elasticsearch refused the connection check (HTTP {status}): "
                               "check the credentials named in [elasticsearch]") from None
    finally:
        client.close()


@contextmanager
def _stop_on_signals(pool: Pool, report: RunReport):
    """Ctrl-C / SIGTERM: stop handing out slices; running ones finish within the grace time."""

    def stop(signum, frame):
        if not report.interrupted:
            log.warning("%s: finishing running slices, starting no new ones (again to force)",
                        signal.Signals(signum).name)
            report.interrupted = True
            pool.request_stop()
        else:
            raise KeyboardInterrupt

    with handling_stop_signals(stop):
        yield


def plan_run(settings: Settings, ledger: Ledger | None) -> list[Slice]:
    """The slices of this run: the window, or from the ledger's watermark with --incremental."""
    start = settings.start_ms
    if settings.run.incremental:
        start = ledger.watermark(settings.start_ms)
        if start >= settings.end_ms:
            log.info("nothing new: the ledger is done up to %s, the window ends at %s",
                     format_time(start), format_time(settings.end_ms))
            return []
        log.info("incremental: exporting [%s, %s)", format_time(start), format_time(settings.end_ms))
    return split_window(start, settings.end_ms, settings.slice_ms)


def run_export(settings: Settings) -> RunReport:
    """Export every slice of the window and return the run's report (with its exit code)."""
    started = time.monotonic()
    run = settings.run
    if (run.resume or run.incremental) and not run.ledger:
        flag = "--incremental" if run.incremental else "--resume"
        raise ConfigError(f"{flag} needs a ledger: give --ledger FILE or [run] ledger")
    with ExitStack() as stack:
        ledger = stack.enter_context(Ledger(run.ledger)) if run.ledger else None
        if ledger is not None:
            ledger.bind_job(job_definition(settings))
        slices = plan_run(settings, ledger)
        report = RunReport([SliceReport(s) for s in slices])
        skip = ledger.done() if ledger is not None and (run.resume or run.incremental) else set()
        todo = []
        for entry in report.slices:
            key = (entry.slice.start_ms, entry.slice.end_ms)
            if key in skip:
                entry.status = "skipped"
            else:
                todo.append(entry)
                if ledger is not None:
                    ledger.mark_pending(*key)
        if todo:
            preflight(settings)
            # --create-index / --bulk-load: indices ready before the first document,
            # bulk-load settings put back however the run ends.
            with indexsetup.prepared_indices(settings, [e.slice for e in todo], report):
                _run_slices(settings, todo, report, ledger)
        report.seconds = time.monotonic() - started
        report.exit_code = exit_code(report, run.max_errors)
        return report


def _run_slices(settings: Settings, todo: list[SliceReport], report: RunReport,
                ledger: Ledger | None) -> None:
    run = settings.run
    progress = Progress(len(report.slices), quiet=run.quiet)
    progress.bar.update(len(report.slices) - len(todo))  # skipped ones
    announced: dict[int, int] = {}  # task -> documents its progress messages announced

    def on_event(event) -> None:
        if isinstance(event, ProgressEvent):
            announced[event.index] = announced.get(event.index, 0) + event.payload.get("indexed", 0)
            progress.rows_progress(event.payload)
            if ledger is not None and event.payload.get("last_key") is not None:
                s = todo[event.index].slice
                ledger.mark_progress(s.start_ms, s.end_ms, event.payload["last_key"])
        elif isinstance(event, Started) and ledger is not None:
            s = todo[event.index].slice
            ledger.mark_running(s.start_ms, s.end_ms)

    executor = EXECUTORS[run.executor]
    if wants_region_split(settings):
        executor = by_region(executor, table_regions(settings))
    try:
        for outcome in executor(settings, [e.slice for e in todo], on_event, report):
            entry = todo[outcome.index]
            _record(entry, outcome)
            if ledger is not None:
                _write_ledger(ledger, entry)
            progress.slice_finished(entry, announced.pop(outcome.index, 0))
    finally:
        progress.close()


def local_outcomes(settings: Settings, slices: list[Slice], on_event,
                   report: RunReport) -> Iterator[Outcome]:
    """Run slices on our own process pool, yielding one Outcome per slice as it ends."""
    yield from pool_outcomes(settings, slicejob.export_slice, slices, on_event, report,
                             initializer=slicejob.open_worker, initargs=(settings,),
                             finalizer=slicejob.close_worker)


def pool_outcomes(settings: Settings, fn, tasks: list, on_event, report, *, initializer,
                  initargs: tuple, finalizer) -> Iterator[Outcome]:
    """Run ``fn`` over ``tasks`` on the pool with the run's settings and Ctrl-C handling.

    ``report`` needs an ``interrupted`` attribute; a worker that cannot open its
    connections becomes one error with the exit code of its cause.
    """
    run = settings.run
    try:
        with Pool(min(run.workers, len(tasks)), initializer=initializer, initargs=initargs,
                  finalizer=finalizer, max_attempts=run.max_attempts,
                  start_method=run.start_method, grace_seconds=run.grace_seconds) as pool, \
                _stop_on_signals(pool, report):
            yield from pool.run(fn, tasks, on_event=on_event)
    except WorkerStartupError as exc:
        err = exc.error
        code = ExitCode.UNAVAILABLE if err.type == "UnavailableError" else ExitCode.FAILED
        raise Hbase2esError(f"workers could not start: {err.message}", code) from None


def spark_outcomes(settings: Settings, slices: list[Slice], on_event,
                   report: RunReport) -> Iterator[Outcome]:
    """Run slices as Spark tasks (hbase2es.spark_executor); pyspark is imported only here."""
    from .spark_executor import spark_outcomes as run_on_spark

    yield from run_on_spark(settings, slices, on_event, report)


# Where slices run. Each executor yields pool.Outcome objects (index = position in the
# slice list) and reports Started/Progress events through on_event.
EXECUTORS = {"local": local_outcomes, "spark": spark_outcomes}


def by_region(executor, regions: list[tuple[bytes, bytes]]):
    """Wrap an executor so that each slice runs as one task per table region it touches.

    The wrapped executor still yields one Outcome per slice: done when every piece is,
    failed when one failed (its error names the piece's key range), cancelled when a
    piece was cancelled or never started. Counts and seconds are summed
    (regions.merge_results); attempts is the most any piece needed. Events carry the
    slice's position; a piece's last row key is left out (pieces of one slice advance
    side by side, so no single key says how far the slice got).
    """

    def run(settings: Settings, slices: list[Slice], on_event, report: RunReport
            ) -> Iterator[Outcome]:
        tasks, owners = slice_tasks(settings, slices, regions)
        left = collections.Counter(owners)
        finished: dict[int, list[Outcome]] = {}
        workers: dict[int, set[int]] = collections.defaultdict(set)
        report.extra["region_split"] = {
            "regions": len(regions), "tasks": len(tasks),
            "slices": [{"index": s.index, "pieces": left[i], "workers": 0}
                       for i, s in enumerate(slices)]}

        def piece_event(event) -> None:
            if isinstance(event, Started):
                workers[owners[event.index]].add(event.pid)
            elif isinstance(event, ProgressEvent) and isinstance(event.payload, dict):
                event = dataclasses.replace(event, payload={**event.payload, "last_key": None})
            elif not isinstance(event, Retrying):
                return  # Finished: the merged outcome is yielded when the last piece ends
            on_event(dataclasses.replace(event, index=owners[event.index]))

        def merged(position: int) -> Outcome:
            pieces = finished.pop(position, [])
            report.extra["region_split"]["slices"][position]["workers"] = len(workers[position])
            attempts = max((o.attempts for o in pieces), default=0)
            bad = [o for o in pieces if o.status == "failed"] or \
                [o for o in pieces if o.status != "ok"]
            if bad:
                task = tasks[bad[0].index]
                where = (f"region piece [{task.row_start.hex()}, {task.row_stop.hex()}): "
                         if isinstance(task, SliceTask) else "")
                error = bad[0].error and dataclasses.replace(
                    bad[0].error, message=where + bad[0].error.message)
                return Outcome(position, bad[0].status, None, error, attempts)
            if left[position]:
                error = TaskError("Cancelled", f"{left[position]} of its region pieces did not "
                                  "run", "")
                return Outcome(position, "cancelled", None, error, attempts)
            return Outcome(position, "ok", merge_results([o.value for o in pieces]), None,
                           attempts)

        for outcome in executor(settings, tasks, piece_event, report):
            position = owners[outcome.index]
            finished.setdefault(position, []).append(outcome)
            left[position] -= 1
            if not left[position]:
                yield merged(position)
        for position in list(finished):  # stopped early: some pieces never started
            yield merged(position)

    return run


def _record(entry: SliceReport, outcome: Outcome) -> None:
    entry.attempts = outcome.attempts
    if outcome.status == "ok":
        r = outcome.value
        entry.status = "done"
        entry.rows, entry.indexed, entry.stale, entry.failed = r.rows, r.indexed, r.stale, r.failed
        entry.seconds = r.seconds
        entry.skipped_fields = r.skipped_fields
        if r.skipped_fields:
            log.warning("slice %s: left %d undecodable value(s) out of their documents "
                        "(on_decode_error = skip-field)", entry.slice, r.skipped_fields)
    else:
        entry.status = "failed" if outcome.status == "failed" else "cancelled"
        if outcome.error is not None:
            entry.error = f"{outcome.error.type}: {outcome.error.message}"[:500]


def _write_ledger(ledger: Ledger, entry: SliceReport) -> None:
    # A cancelled slice is simply not done: the next --resume runs it again.
    status = {"done": "done", "failed": "failed"}.get(entry.status, "pending")
    ledger.mark_finished(entry.slice.start_ms, entry.slice.end_ms, status, rows=entry.rows,
                         indexed=entry.indexed, stale=entry.stale, failed=entry.failed,
                         error=entry.error)


def exit_code(report: RunReport, max_errors: int) -> ExitCode:
    if report.interrupted:
        return ExitCode.INTERRUPTED
    if report.extra.get("bulk_load_restore_failed"):  # indices left without refresh/replicas
        return ExitCode.FAILED
    failed_slices = [s for s in report.slices if s.status not in ("done", "skipped")]
    if failed_slices or report.totals()["failed"] > max_errors:
        return ExitCode.FAILED
    return ExitCode.OK
