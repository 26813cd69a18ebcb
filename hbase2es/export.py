"""The export run: plan the slices, hand them to the pool, turn results into a report."""

from __future__ import annotations

import logging
import signal
import time
from contextlib import contextmanager

from . import es_compat, slicejob
from .errors import ExitCode, UnavailableError
from .hbase_reader import open_reader
from .pool import Finished, Outcome, Pool, Progress as ProgressEvent
from .report import Progress, RunReport, SliceReport
from .settings import Settings
from .timewindow import Slice, split_window

log = logging.getLogger(__name__)


def plan_slices(settings: Settings) -> list[Slice]:
    return split_window(settings.start_ms, settings.end_ms, settings.slice_ms)


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

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_export(settings: Settings, *, slices: list[Slice] | None = None) -> RunReport:
    """Export every slice of the window and return the run's report (with its exit code)."""
    started = time.monotonic()
    slices = plan_slices(settings) if slices is None else slices
    report = RunReport([SliceReport(s) for s in slices])
    preflight(settings)
    run = settings.run
    progress = Progress(len(slices), quiet=run.quiet)
    announced: dict[int, int] = {}  # slice position -> documents its progress messages announced

    def on_event(event) -> None:
        if isinstance(event, ProgressEvent):
            announced[event.index] = announced.get(event.index, 0) + event.payload.get("indexed", 0)
            progress.rows_progress(event.payload)

    try:
        with Pool(min(run.workers, max(len(slices), 1)), initializer=slicejob.open_worker,
                  initargs=(settings,), finalizer=slicejob.close_worker,
                  max_attempts=run.max_attempts, start_method=run.start_method) as pool, \
                _stop_on_signals(pool, report):
            for outcome in pool.run(slicejob.export_slice, slices, on_event=on_event):
                entry = report.slices[outcome.index]
                _record(entry, outcome)
                progress.slice_finished(entry, announced.pop(outcome.index, 0))
    finally:
        progress.close()
    report.seconds = time.monotonic() - started
    report.exit_code = exit_code(report, run.max_errors)
    return report


def _record(entry: SliceReport, outcome: Outcome) -> None:
    entry.attempts = outcome.attempts
    if outcome.status == "ok":
        r = outcome.value
        entry.status = "done"
        entry.rows, entry.indexed, entry.stale, entry.failed = r.rows, r.indexed, r.stale, r.failed
        entry.seconds = r.seconds
    else:
        entry.status = "failed" if outcome.status == "failed" else "cancelled"
        if outcome.error is not None:
            entry.error = f"{outcome.error.type}: {outcome.error.message}"[:500]


def exit_code(report: RunReport, max_errors: int) -> ExitCode:
    if report.interrupted:
        return ExitCode.INTERRUPTED
    failed_slices = [s for s in report.slices if s.status not in ("done", "skipped")]
    if failed_slices or report.totals()["failed"] > max_errors:
        return ExitCode.FAILED
    return ExitCode.OK
