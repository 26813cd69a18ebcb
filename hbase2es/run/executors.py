"""Where slices run: our own process pool, or Spark tasks.

Every executor has the same shape, ``executor(settings, tasks, on_event, report, stop)``:
it yields one ``pool.Outcome`` per task (``index`` = position in ``tasks``) as each ends,
and reports ``Started`` / ``Progress`` / ``Retrying`` events through ``on_event``.
``RegionSplit`` (run.pieces) wraps any of them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from ..errors import ExitCode, Hbase2esError
from ..pool import Outcome, Pool, Retrying, WorkerStartupError
from ..settings import Settings
from . import slicejob
from .stopping import StopRequest

log = logging.getLogger(__name__)


def pool_outcomes(settings: Settings, fn, tasks: list, on_event, stop: StopRequest, *,
                  initializer, initargs: tuple, finalizer) -> Iterator[Outcome]:
    """Run ``fn`` over ``tasks`` on the pool with the run's settings and Ctrl-C handling.

    A worker that cannot open its connections becomes one error with the exit code of
    its cause. A task run again after its worker died is logged, naming the task.
    """
    run = settings.run

    def event(e) -> None:
        if isinstance(e, Retrying):
            log.warning("slice %s: %s; running it again (attempt %d of %d)",
                        _describe_task(tasks[e.index]), e.error.message, e.attempt,
                        run.max_attempts)
        on_event(e)

    try:
        with Pool(min(run.workers, len(tasks)), initializer=initializer, initargs=initargs,
                  finalizer=finalizer, max_attempts=run.max_attempts,
                  start_method=run.start_method, grace_seconds=run.grace_seconds) as pool, \
                stop.on_stop(pool.request_stop):
            yield from pool.run(fn, tasks, on_event=event)
    except WorkerStartupError as exc:
        err = exc.error
        code = ExitCode.UNAVAILABLE if err.type == "UnavailableError" else ExitCode.FAILED
        raise Hbase2esError(f"workers could not start: {err.message}", code) from None


def _describe_task(task) -> str:
    slice_ = getattr(task, "slice", task)
    key_range = getattr(task, "key_range", None)
    if key_range:
        return f"{slice_} region piece [{key_range[0].hex()}, {key_range[1].hex()})"
    return str(slice_)


def local_outcomes(settings: Settings, tasks: list, on_event, report,
                   stop: StopRequest) -> Iterator[Outcome]:
    """Run slices on our own process pool, yielding one Outcome per slice as it ends.

    The workers share the run's limiter (``report.limiter``, made with the pool's start
    method), handed to each through the initializer's arguments.
    """
    yield from pool_outcomes(settings, slicejob.export_slice, tasks, on_event, stop,
                             initializer=slicejob.open_worker,
                             initargs=(settings, getattr(report, "limiter", None)),
                             finalizer=slicejob.close_worker)


def spark_outcomes(settings: Settings, tasks: list, on_event, report,
                   stop: StopRequest) -> Iterator[Outcome]:
    """Run slices as Spark tasks (run.spark); pyspark is imported only there."""
    from .spark import spark_outcomes as run_on_spark

    yield from run_on_spark(settings, tasks, on_event, report, stop)


EXECUTORS = {"local": local_outcomes, "spark": spark_outcomes}
