"""Run the slices of an export as Spark tasks (``--executor spark``).

The driver (this process) plans the slices and keeps the ledger, progress and report,
exactly as with the local pool. Each remaining slice becomes one partition of an RDD,
and each partition runs as a Spark job of its own, submitted from a small thread pool:
a job's result (the slice's counts) comes back the moment that slice is done, so
outcomes stream to the ledger while other slices still run. One job over all
partitions would return nothing before the last slice ends, and ``toLocalIterator``
runs its partitions one or two at a time.

Inside an executor a task calls ``slicejob.run_slice``: its own HBase connection and
Elasticsearch client, opened for the slice and closed after it. Documents never reach
the driver. Spark retries a failed task (``spark.task.maxFailures`` on a cluster, F in a
``local[N,F]`` master); a re-run slice is safe because documents are written by row-key
``_id`` with external versions. A slice whose task fails every attempt comes back as a
failed Outcome, and the ledger marks it failed, as locally.

pyspark is an optional dependency: it is imported inside the functions below, so that
``import hbase2es.run.spark`` works without it.

Dead letters. A task's dead-letter records travel back with its counts (up to the cap
in ``search.deadletter``, the rest stay on the executor and the report says where), and
the driver appends them to the one ``--dead-letter`` file, on the machine the user is on.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager

from ..errors import ConfigError, UnavailableError
from ..pool import Outcome, Started, TaskError
from ..search.deadletter import DeadLetterBatch, DeadLetterFile, ReturnedDeadLetters, \
    executor_path
from ..settings import Settings
from ..timewindow import format_time
from .report import RunReport
from .slicejob import dead_letters_to, run_slice
from .sparkconf import credential_conf, split_secrets
from .throttle import task_share

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'hbase2es[spark]'"
MIN_PYSPARK = (3, 5)
POLL_S = 0.5  # how often the driver looks at a Ctrl-C while jobs run
# Jobs submitted ahead of the free cores, so that a core never waits for the driver and
# dynamic allocation sees pending tasks; capped because each one holds a driver thread.
JOBS_PER_CORE = 2
MAX_JOBS_IN_FLIGHT = 256
PY_TRACEBACK = "Traceback (most recent call last):"

# Local mode only: Spark's own log lines at WARN from the first one on (sc.setLogLevel
# comes too late for the start-up chatter), and no console progress bar fighting ours.
_QUIET_LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n%ex
logger.hadoop.name = org.apache.hadoop.util.NativeCodeLoader
logger.hadoop.level = error
"""


def require_pyspark():
    """Return the pyspark module, or fail with exit 2 saying what to install."""
    try:
        import pyspark
    except ImportError:
        raise ConfigError(f"--executor spark needs pyspark: {INSTALL_HINT}") from None
    version = tuple(int(p) for p in re.findall(r"\d+", pyspark.__version__)[:2])
    if version < MIN_PYSPARK:
        raise ConfigError(f"--executor spark needs pyspark >= 3.5, found {pyspark.__version__}: "
                          f"{INSTALL_HINT}")
    return pyspark


def spark_executor(slice_fn: Callable = run_slice):
    """An executor for ``executors.EXECUTORS`` that runs ``slice_fn(task, settings)`` per slice.

    ``slice_fn`` must be importable (or picklable by value) on the executors; tests pass
    a wrapper around ``run_slice`` here to inject failures.
    """
    return functools.partial(spark_outcomes, slice_fn=slice_fn)


def spark_outcomes(settings: Settings, slices: list, on_event, report: RunReport, stop, *,
                   slice_fn: Callable = run_slice) -> Iterator[Outcome]:
    """Run each slice as one Spark job; yield its Outcome as soon as its job ends.

    ``on_event`` gets ``Started`` when a slice's job is handed to Spark (``pid`` 0: the
    task runs wherever Spark places it). Spark reports nothing while a task runs, so
    there are no row-level ``Progress`` events: the progress bar moves per slice.
    """
    require_pyspark()
    if not slices:
        return
    with _spark_context(settings) as sc:
        report.spark = {"master": sc.master, "application_id": sc.applicationId,
                        "version": sc.version}
        # No memory is shared between Spark tasks: each gets its share of the rate limits.
        settings_bc = sc.broadcast(task_share(settings, min(sc.defaultParallelism, len(slices))))
        rdd = sc.parallelize(list(enumerate(slices)), len(slices))  # partition i = slice i
        run_id = uuid.uuid4().hex[:8]
        task = functools.partial(_run_partition, slice_fn, settings_bc, run_id)
        dead_letters = DriverDeadLetters(settings.run.dead_letter, report)
        # A second Ctrl-C cancels the running jobs (the loop below does it), a third quits.
        stop.soft_force = True
        try:
            for outcome, returned in _stream(sc, rdd, task, slices, run_id, on_event, report,
                                             stop, settings.run.grace_seconds):
                dead_letters.take(slices[outcome.index], returned)
                yield outcome
        finally:
            stop.soft_force = False
            dead_letters.close()


class DriverDeadLetters:
    """The driver's side of dead letters: the user's one file, fed from task results."""

    def __init__(self, path: str | None, report: RunReport):
        self.file = DeadLetterFile(path) if path else None
        self.summary = None
        if path:
            self.summary = {"file": path, "records": 0, "left_on_executors": []}
            report.spark["dead_letters"] = self.summary

    def take(self, task, returned: ReturnedDeadLetters | None) -> None:
        """Append a finished task's records; note (and warn about) those it left behind."""
        if returned is None or self.file is None:
            return
        for line in returned.lines:
            self.file.write_line(line)
        self.summary["records"] += len(returned.lines)
        if returned.left_records:
            slice_ = getattr(task, "slice", task)
            self.summary["left_on_executors"].append({
                "start": format_time(slice_.start_ms), "end": format_time(slice_.end_ms),
                "host": returned.left_host, "path": returned.left_path,
                "records": returned.left_records})
            log.warning("slice %s: %d dead letter(s) past the first %d stayed on executor "
                        "host %s in %s", slice_, returned.left_records, len(returned.lines),
                        returned.left_host, returned.left_path)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _stream(sc, rdd, task, slices: list, run_id: str, on_event, report: RunReport, stop,
            grace_seconds: float) -> Iterator[tuple[Outcome, ReturnedDeadLetters | None]]:
    waiting = deque(range(len(slices)))
    running: dict[Future, int] = {}
    cancelled = False
    threads = ThreadPoolExecutor(max_workers=min(MAX_JOBS_IN_FLIGHT, len(slices)),
                                 thread_name_prefix="hbase2es-spark")
    try:
        while running or (waiting and not report.interrupted):
            if not report.interrupted:
                room = min(MAX_JOBS_IN_FLIGHT, JOBS_PER_CORE * max(1, sc.defaultParallelism))
                while waiting and len(running) < room:
                    position = waiting.popleft()
                    on_event(Started(position, 0, 1))
                    job = threads.submit(_run_job, sc, rdd, task, position,
                                         _group(run_id, position),
                                         f"hbase2es slice {slices[position]}"[:200])
                    running[job] = position
            elif not cancelled and (stop.force or time.monotonic() >= stop.deadline(grace_seconds)):
                log.warning("cancelling %d running Spark job(s)", len(running))
                _cancel(sc, run_id, running.values())
                cancelled = True
            done, _ = wait(running, timeout=POLL_S, return_when=FIRST_COMPLETED)
            for job in done:
                position = running.pop(job)
                yield _outcome(sc, job, position, _group(run_id, position))
        # Slices still waiting were never handed to Spark: no outcome, so that the report
        # has them pending, as the local pool leaves the slices it never started.
    finally:
        if running:  # the consumer stopped early or an error escaped: leave nothing running
            try:
                _cancel(sc, run_id, running.values())
            except Exception:  # noqa: BLE001 - the JVM may already be gone
                pass
        threads.shutdown(wait=True, cancel_futures=True)


def _group(run_id: str, position: int) -> str:
    return f"hbase2es-{run_id}-{position}"


def _cancel(sc, run_id: str, positions) -> None:
    # By job group, not cancelAllJobs: a context we reuse may run jobs that are not ours.
    for position in list(positions):
        sc.cancelJobGroup(_group(run_id, position))


def _run_job(sc, rdd, task, position: int, group: str, description: str) -> list:
    """Driver thread: one Spark job over the slice's partition; blocks until it ends."""
    sc.setJobGroup(group, description, interruptOnCancel=True)
    return sc.runJob(rdd, task, partitions=[position])


def _run_partition(slice_fn, settings_bc, run_id: str, items):
    """Executor side: export the partition's slice; return its counts and dead letters."""
    from pyspark import TaskContext

    context = TaskContext.get()
    attempt = context.attemptNumber() + 1 if context is not None else 1
    settings = settings_bc.value
    path = settings.run.dead_letter
    for position, task in items:
        batch = (DeadLetterBatch(executor_path(path, run_id, position, attempt))
                 if path else None)
        with dead_letters_to(batch):
            value = slice_fn(task, settings)
        yield position, value, attempt, batch.returned() if batch is not None else None


def _outcome(sc, job: Future, position: int, group: str
             ) -> tuple[Outcome, ReturnedDeadLetters | None]:
    exc = job.exception()
    if exc is None:
        results = job.result()
        if len(results) != 1 or results[0][0] != position:
            error = TaskError("SparkError", f"partition {position} returned {len(results)} "
                              "results instead of one", "")
            return Outcome(position, "failed", None, error, 1), None
        _, value, attempt, returned = results[0]
        return Outcome(position, "ok", value, None, attempt), returned
    status, error = task_error(exc)
    attempts = _failed_attempts(sc, group) if status == "failed" else 1
    return Outcome(position, status, None, error, attempts), None


def task_error(exc: BaseException) -> tuple[str, TaskError]:
    """("failed" or "cancelled", TaskError) for the exception a Spark job raised.

    A Python exception in the task comes back inside Java exceptions; the slice's error
    is the Python one (type and the first line of its message), the traceback is kept.
    """
    text = _java_message(exc) or str(exc)
    if PY_TRACEBACK in text:
        block = PY_TRACEBACK + text.rsplit(PY_TRACEBACK, 1)[1]
        block = re.split(r"\n\tat |\n SQLSTATE: ", block, maxsplit=1)[0]
        for line in block.splitlines()[1:]:
            if line and not line[0].isspace():  # the exception line ends the frames
                name, sep, message = line.partition(": ")
                return "failed", TaskError(name.rsplit(".", 1)[-1] if sep else "PythonError",
                                           message if sep else line, block)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    first = first.split(" SQLSTATE: ")[0]  # Spark's error-class suffix says nothing to a user
    if "cancelled" in first.lower() and "job" in first.lower():
        return "cancelled", TaskError("Cancelled", first, "")
    return "failed", TaskError(_java_class(exc) or type(exc).__name__, first, text[:4000])


def _java_message(exc: BaseException) -> str | None:
    java = getattr(exc, "java_exception", None)
    if java is None:
        return None
    try:
        return str(java.getMessage())
    except Exception:  # noqa: BLE001 - py4j: the gateway may be gone
        return None


def _java_class(exc: BaseException) -> str | None:
    java = getattr(exc, "java_exception", None)
    try:
        return str(java.getClass().getSimpleName()) if java is not None else None
    except Exception:  # noqa: BLE001
        return None


def _failed_attempts(sc, group: str) -> int:
    """Attempts Spark made of a slice whose job failed: its failed tasks, from the status store."""
    tracker = sc.statusTracker()
    deadline = time.monotonic() + 2.0  # the status store hears of the last failure a bit later
    while True:
        failed = 0
        try:
            for job_id in tracker.getJobIdsForGroup(group):
                info = tracker.getJobInfo(job_id)
                for stage_id in (info.stageIds if info else []):
                    stage = tracker.getStageInfo(stage_id)
                    failed += stage.numFailedTasks if stage else 0
        except Exception:  # noqa: BLE001 - the context may be stopping
            return 1
        if failed or time.monotonic() >= deadline:
            return max(failed, 1)
        time.sleep(0.1)


def _is_local(master: str) -> bool:
    return master == "local" or master.startswith("local[")


def _spark_conf(settings: Settings, conf):
    """The run's SparkConf without its secrets, and the secrets (sparkconf.split_secrets)."""
    spark = settings.spark
    conf.setAppName(spark.app_name)
    if spark.master:  # otherwise spark-submit's --master, spark-defaults.conf, or local[*]
        conf.setMaster(spark.master)
    properties = {**spark.conf, **credential_conf(settings, spark.conf, os.environ)}
    public, secrets = split_secrets(properties, settings)
    for key, value in public.items():
        conf.set(key, value)
    conf.setIfMissing("spark.ui.showConsoleProgress", "false")  # our bar owns the terminal
    return conf, secrets


@contextmanager
def _spark_context(settings: Settings):
    """A SparkContext for this run, stopped at the end (one already running is reused and kept)."""
    from pyspark import SparkConf, SparkContext

    active = SparkContext._active_spark_context
    if active is not None:  # e.g. run_export called from a notebook: not ours to stop
        yield active
        return
    spark = settings.spark
    conf, secrets = _spark_conf(settings, SparkConf(loadDefaults=False))
    env = {
        # Executors run run_slice: they need a Python that has hbase2es. Spark reads the
        # worker Python from this variable only; spark.pyspark.python is honoured here.
        "PYSPARK_PYTHON": spark.conf.get("spark.pyspark.python")
        or os.environ.get("PYSPARK_PYTHON") or sys.executable,
    }
    tmp = None
    if _is_local(spark.master):
        # Everything in this process's JVM: stay on loopback, skip the web UI, start quiet.
        env.setdefault("SPARK_LOCAL_IP", os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"))
        conf.setIfMissing("spark.driver.host", "127.0.0.1")
        conf.setIfMissing("spark.driver.bindAddress", "127.0.0.1")
        conf.setIfMissing("spark.ui.enabled", "false")
        if not conf.contains("spark.driver.extraJavaOptions"):
            tmp = tempfile.TemporaryDirectory(prefix="hbase2es-spark-")
            path = os.path.join(tmp.name, "log4j2.properties")
            with open(path, "w") as f:
                f.write(_QUIET_LOG4J2)
            conf.set("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{path}")
    saved_env = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    # SparkContext sets a SIGINT handler of its own (cancel all, raise KeyboardInterrupt),
    # which would make the first Ctrl-C cancel the running slices: the run's is put back.
    saved_sigint = signal.getsignal(signal.SIGINT)
    main_thread = threading.current_thread() is threading.main_thread()
    sc = None
    try:
        sc = _start(conf, secrets, spark.master)
        if main_thread:
            signal.signal(signal.SIGINT, saved_sigint)
        sc.setLogLevel("INFO" if settings.run.log_level == "debug" else "WARN")
        log.info("Spark %s: master %s, application %s", sc.version, sc.master, sc.applicationId)
        yield sc
    finally:
        try:
            if sc is not None:
                sc.stop()
        finally:
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            if main_thread:
                signal.signal(signal.SIGINT, saved_sigint)
            if tmp is not None:
                tmp.cleanup()


def _start(conf, secrets: dict[str, str], master: str):
    """A SparkContext with ``conf``, and ``secrets`` set only once its JVM runs."""
    from pyspark import SparkContext

    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise ConfigError("--executor spark needs a Java runtime (17+ for pyspark 4): none "
                          "on PATH and JAVA_HOME is not set")
    try:
        # pyspark starts its JVM with every property on the command line (spark-submit
        # --conf): start it first without the secrets, then hand them over through py4j.
        SparkContext._ensure_initialized(conf=conf)
        for key, value in secrets.items():
            conf.set(key, value)
        return SparkContext(conf=conf)
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a JVM stack trace
        text = _java_message(exc) or str(exc)
        first = next((line.strip() for line in text.splitlines() if line.strip()),
                     type(exc).__name__)
        if "master url" in text.lower():
            raise ConfigError(f"spark.master: {first}") from None
        if "JAVA_GATEWAY_EXITED" in text:  # spark-submit printed why, just above
            raise ConfigError("Spark's JVM exited while starting (its error is above); pyspark 4 "
                              "needs Java 17+") from None
        raise UnavailableError(f"cannot start Spark (master {master or 'default'}): "
                               f"{first}"[:500]) from None
