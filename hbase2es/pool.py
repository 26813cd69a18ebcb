"""A crash-safe process pool built from pipes and process sentinels.

The shape follows CPython's ``multiprocessing.Pool``: the parent hands tasks to
worker processes over pipes, workers send ``(kind, index, payload)`` messages
back, and an empty message (Pool's ``None`` sentinel) tells a worker to run its
finalizer and exit.  It differs where ``multiprocessing.Pool`` breaks:

Why there are no shared locks: ``multiprocessing.Pool`` shares one task queue
and one result queue between all workers, each guarded by a lock.  A worker
killed while holding such a lock (or halfway through writing a message into the
shared pipe) leaves every other worker blocked or reading garbage forever
(cpython issue 96062).  Here every worker owns a private task pipe and a private
result pipe, so there is no cross-process lock a dead worker could hold, and a
half-written message can only corrupt the dead worker's own pipe, which the
parent drains and then discards.  The parent multiplexes the result pipes and
the process sentinels in one selector, so a death is noticed as soon as it
happens, even while the worker is idle.

Why tasks are acknowledged: each worker reports ``STARTED`` before it calls the
task function.  When a worker dies the parent first reads everything left in
its result pipe (a result sent just before dying still counts, exactly once),
then re-runs the task that had started (this burns one attempt) and the tasks
that were merely queued in its pipe (these burn none).

The pool never holds more than ``_PREFETCH`` tasks per worker, so the task
iterable is consumed lazily and the parent's writes to a task pipe never have
to wait for a worker (see ``_SMALL_TASK``), which could otherwise deadlock with
a worker blocked writing a large result to the parent.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import pickle
import select
import selectors
import signal
import struct
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Callable, Iterable, Iterator

__all__ = [
    "Pool",
    "Outcome",
    "TaskError",
    "Started",
    "Progress",
    "Retrying",
    "Finished",
    "PoolError",
    "WorkerStartupError",
]


@dataclass(frozen=True)
class TaskError:
    """Picklable description of why a task failed.

    ``type`` is the exception class name (``"ValueError"``), or ``"WorkerDied"``
    when the worker process vanished, or ``"Cancelled"`` when ``request_stop``
    terminated the worker.  ``traceback`` is the remote traceback text, ``""``
    when there is none.
    """

    type: str
    message: str
    traceback: str


@dataclass(frozen=True)
class Outcome:
    """Final result of one task: ``status`` is ``"ok"``, ``"failed"`` or ``"cancelled"``.

    ``index`` is the task's position in the input iterable, ``value`` the task
    function's return value when ok, ``error`` the last error otherwise, and
    ``attempts`` how many times the task was started.
    """

    index: int
    status: str
    value: object = None
    error: TaskError | None = None
    attempts: int = 1


@dataclass(frozen=True)
class Started:
    """Event: task ``index`` started on worker ``pid`` (``attempt`` counts from 1)."""

    index: int
    pid: int
    attempt: int


@dataclass(frozen=True)
class Progress:
    """Event: the running task ``index`` called ``progress(payload)``."""

    index: int
    payload: object


@dataclass(frozen=True)
class Retrying:
    """Event: the worker running task ``index`` died; it will run again as ``attempt``."""

    index: int
    attempt: int
    error: TaskError


@dataclass(frozen=True)
class Finished:
    """Event: task ``index`` is done; its ``Outcome`` is yielded right after."""

    index: int


class PoolError(RuntimeError):
    """The pool cannot go on (e.g. its workers cannot start)."""


class WorkerStartupError(PoolError):
    """A worker's initializer raised, or workers keep dying before they are ready.

    ``error`` is the ``TaskError`` describing the last failure.
    """

    def __init__(self, message: str, error: TaskError):
        super().__init__(message)
        self.error = error


# Worker -> parent messages are a fixed header followed by a pickle.  The index
# lives in the header so that a payload the parent cannot unpickle is still
# attributed to its task instead of being lost.
_HEADER = struct.Struct("!Bq")
_READY, _INIT_FAILED, _STARTED, _PROGRESS, _DONE_OK, _DONE_ERR = range(6)
# Flag on a result: the worker has also started the next task in its queue.
_AND_STARTED = 0x80

# Parent -> worker: task index, length of the pickled function, the pickled
# function, the pickled task.  The function's pickle is the same for the whole
# run, so the worker unpickles it only when it changes.  An empty message is
# the stop sentinel.
_TASK_HEADER = struct.Struct("!qI")
_QUIT = b""

# Tasks per worker that are sent but not finished: one running plus ones
# waiting in its pipe, so that a worker finds its next task there the moment
# it finishes one.
_PREFETCH = 3

# A pipe holds at least one page even when the system is short of pipe buffers,
# so up to _PREFETCH messages this small never block the parent's write.  A
# larger task goes only to a worker with nothing outstanding: that worker is
# blocked reading its task pipe, so it drains the write without needing the
# parent to read anything first.
_SMALL_TASK = 4096 // _PREFETCH - 64

# Exit status of a worker that noticed its parent is gone.
_EXIT_ORPHANED = 70


def _describe(exc: BaseException, prefix: str = "") -> TaskError:
    """Turn an exception into a TaskError; never raises, never pickles ``exc``."""
    try:
        message = str(exc)
    except BaseException:
        message = f"<unprintable {type(exc).__name__}>"
    try:
        text = "".join(traceback.format_exception(exc))
    except BaseException:
        text = ""
    return TaskError(type(exc).__name__, prefix + message, text)


def _pack(kind: int, index: int, payload: object = None) -> bytes:
    return _HEADER.pack(kind, index) + pickle.dumps(payload, pickle.HIGHEST_PROTOCOL)


# --------------------------------------------------------------------------
# Worker side


class _ProgressReporter:
    """The ``progress`` callable handed to the task function."""

    __slots__ = ("_send", "_index", "active")

    def __init__(self, send, index):
        self._send = send
        self._index = index
        self.active = True

    def __call__(self, payload: object) -> None:
        # A stray call after the task returned (e.g. from a thread it left
        # behind) must not be attributed to the next task.
        if self.active:
            self._send(_pack(_PROGRESS, self._index, payload))


def _watch_parent(death_conn, parent_pid: int) -> None:
    # The parent holds the only write end of death_conn, so EOF means it died
    # (even while the task function is busy and the task pipe is not being
    # read).  The ppid check covers fork-started workers, which also inherit
    # the write end.
    while True:
        if wait([death_conn], timeout=1.0) or os.getppid() != parent_pid:
            os._exit(_EXIT_ORPHANED)


def _run_task(data: bytes, send, cache: list) -> tuple[int, bytes]:
    """Run the task message ``data``; return the result's kind and pickled payload."""
    index, fn_len = _TASK_HEADER.unpack_from(data)
    start = _TASK_HEADER.size
    progress = _ProgressReporter(send, index)
    try:
        fn_bytes = data[start:start + fn_len]
        if fn_bytes != cache[0]:
            cache[:] = [fn_bytes, pickle.loads(fn_bytes)]
        task = pickle.loads(memoryview(data)[start + fn_len:])
        value = cache[1](task, progress)
    except BaseException as exc:  # SystemExit in a task is a failure too
        return _DONE_ERR, pickle.dumps(_describe(exc), pickle.HIGHEST_PROTOCOL)
    finally:
        progress.active = False
    try:
        return _DONE_OK, pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except BaseException as exc:
        return _DONE_ERR, pickle.dumps(_describe(exc, "result could not be pickled: "),
                                       pickle.HIGHEST_PROTOCOL)


def _worker_loop(task_conn, result_conn, stop_conn, death_conn,
                 initializer, initargs, finalizer) -> None:
    # Ctrl-C reaches the whole process group; the parent decides what to do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(death_conn, os.getppid()),
                     name="pool-parent-watch", daemon=True).start()
    # One poll() call tells whether the next task is already waiting and
    # whether the parent closed the stop pipe (request_stop: queued tasks
    # are then skipped instead of started).
    poller = select.poll()
    poller.register(task_conn.fileno(), select.POLLIN)
    poller.register(stop_conn.fileno(), select.POLLIN)
    task_fd, stop_fd = task_conn.fileno(), stop_conn.fileno()
    lock = threading.Lock()  # progress() may be called from a task's thread

    def send(data: bytes) -> None:
        with lock:
            result_conn.send_bytes(data)

    try:
        if initializer is not None:
            try:
                initializer(*initargs)
            except BaseException as exc:
                send(_pack(_INIT_FAILED, -1, _describe(exc)))
                return
        send(_HEADER.pack(_READY, os.getpid()))
        cache = [None, None]  # the task function's pickle and the function
        data, announced = None, False
        while True:
            if data is None:
                try:
                    data = task_conn.recv_bytes()
                except (EOFError, OSError):
                    return  # the parent is gone
            if data == _QUIT:
                break
            index = _TASK_HEADER.unpack_from(data)[0]
            if not announced:
                if any(fd == stop_fd for fd, _ in poller.poll(0)):
                    data = None
                    continue
                send(_HEADER.pack(_STARTED, index))
            kind, payload = _run_task(data, send, cache)
            # If the next task is already waiting, take it now and announce
            # its start in the same message as this result: one write and one
            # parent wake-up per task instead of two.
            data, announced = None, False
            ready = {fd for fd, _ in poller.poll(0)}
            if task_fd in ready:
                data = task_conn.recv_bytes()
                announced = data != _QUIT and stop_fd not in ready
            if announced:
                kind |= _AND_STARTED
            send(_HEADER.pack(kind, index) + payload)
            payload = None
    except (OSError, EOFError):
        return  # the parent closed our pipes (it is gone or gave up on us)
    if finalizer is not None:
        finalizer()


# --------------------------------------------------------------------------
# Parent side


class _Task:
    __slots__ = ("index", "message", "attempts", "error")

    def __init__(self, index: int, message: bytes):
        self.index = index
        self.message = message
        self.attempts = 0
        self.error = None


class _Worker:
    __slots__ = ("process", "pid", "task_conn", "result_conn", "queue",
                 "started", "ready", "quitting")

    def __init__(self, process, task_conn, result_conn):
        self.process = process
        self.pid = process.pid
        self.task_conn = task_conn
        self.result_conn = result_conn
        self.queue: collections.deque[_Task] = collections.deque()
        self.started = False  # queue[0] has started running
        self.ready = False    # the initializer has succeeded
        self.quitting = False


def _exit_description(pid: int, exitcode: int | None) -> str:
    if exitcode is None:
        return f"worker {pid} vanished (exit status unknown)"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker {pid} was killed by {name} (exit code {exitcode})"
    return f"worker {pid} exited with code {exitcode}"


class _Run:
    """State of one ``Pool.run`` call: tasks still to hand out and how they went."""

    def __init__(self, fn, tasks, on_event):
        self.fn_bytes = pickle.dumps(fn, pickle.HIGHEST_PROTOCOL)
        self.tasks = iter(tasks)
        self.exhausted = False
        self.next_index = 0
        self.retry: collections.deque[_Task] = collections.deque()
        self.held: _Task | None = None  # a large task waiting for an idle worker
        self.on_event = on_event
        self.outcomes: list[Outcome] = []

    def next_task(self) -> _Task | None:
        if self.held is not None:
            task, self.held = self.held, None
            return task
        if self.retry:
            return self.retry.popleft()
        if self.exhausted:
            return None
        try:
            item = next(self.tasks)
        except StopIteration:
            self.exhausted = True
            return None
        index = self.next_index
        self.next_index += 1
        fn_bytes = self.fn_bytes
        message = (_TASK_HEADER.pack(index, len(fn_bytes)) + fn_bytes
                   + pickle.dumps(item, pickle.HIGHEST_PROTOCOL))
        return _Task(index, message)

    def emit(self, event) -> None:
        if self.on_event is not None:
            self.on_event(event)


class Pool:
    """A process pool that survives workers dying at any moment.

    ``initializer(*initargs)`` runs once in each worker when it starts,
    ``finalizer()`` when it is told to exit.  A task whose worker dies is run
    again on another worker, up to ``max_attempts`` times.  ``request_stop``
    gives running tasks ``grace_seconds`` before their workers are terminated.
    Use as a context manager; leaving it stops and reaps the workers.
    """

    def __init__(self, processes: int, initializer: Callable | None = None,
                 initargs: tuple = (), finalizer: Callable | None = None,
                 max_attempts: int = 3, start_method: str = "spawn",
                 grace_seconds: float = 10.0):
        if processes < 1:
            raise ValueError("processes must be at least 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._ctx = multiprocessing.get_context(start_method)
        self._processes = processes
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._finalizer = finalizer
        self._max_attempts = max_attempts
        self._grace = grace_seconds
        self._workers: list[_Worker] = []
        self._startup_deaths = 0
        self._stop_requested = False
        self._stop_time = 0.0
        self._stopping = False
        self._closed = False
        self._active_run = False
        self._selector = selectors.DefaultSelector()
        # request_stop may run in a signal handler while the parent sleeps in
        # select(); a byte on this pipe wakes it up.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop_r, self._stop_w = self._ctx.Pipe(duplex=False)
        self._death_r, self._death_w = self._ctx.Pipe(duplex=False)

    # -- public API ---------------------------------------------------------

    def __enter__(self) -> "Pool":
        self._start_workers()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()

    @property
    def stopped(self) -> bool:
        """True once ``request_stop`` has been called."""
        return self._stop_requested

    @property
    def pids(self) -> list[int]:
        """PIDs of the current worker processes."""
        return [w.pid for w in self._workers]

    def request_stop(self) -> None:
        """Stop handing out tasks and let running ones finish within the grace period.

        Safe to call from a signal handler or another thread: it only sets a
        flag and wakes the parent loop, which does the rest.
        """
        if not self._stop_requested:
            self._stop_time = time.monotonic()
            self._stop_requested = True
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass  # the pipe is full (already woken) or the pool is closed

    def run(self, fn: Callable, tasks: Iterable, on_event: Callable | None = None
            ) -> Iterator[Outcome]:
        """Run ``fn(task, progress)`` for each task in worker processes.

        A generator yielding one ``Outcome`` per started task as tasks finish,
        in any order.  ``tasks`` is consumed lazily.  ``on_event`` is called in
        this process with ``Started``, ``Progress``, ``Retrying`` and
        ``Finished`` events.  Raises ``WorkerStartupError`` if workers cannot
        start.  Abandoning the generator early terminates the workers that
        still hold its tasks.
        """
        if self._closed:
            raise PoolError("the pool is closed")
        if self._active_run:
            raise PoolError("run() is already active on this pool")
        if self._stop_requested:
            return
        self._active_run = True
        job = _Run(fn, tasks, on_event)
        completed = False
        try:
            self._start_workers()
            while True:
                if self._stop_requested and not self._stopping:
                    self._begin_stop()
                if not self._stopping:
                    self._dispatch(job)
                if not self._stopping and job.exhausted and not job.retry \
                        and job.held is None and not any(w.queue for w in self._workers):
                    break
                if self._stopping and not self._workers:
                    break
                self._poll(job)
                outcomes, job.outcomes = job.outcomes, []
                for outcome in outcomes:
                    job.emit(Finished(outcome.index))
                    yield outcome
            completed = True
        finally:
            self._active_run = False
            if not completed:
                # Abandoned (or failed) mid-run: workers still busy with this
                # run's tasks would report into the next run, so replace them.
                for w in list(self._workers):
                    if w.queue:
                        self._discard(w, kill=True)

    def close(self) -> None:
        """Let idle workers run their finalizer and exit; terminate the rest after the grace period."""
        if self._closed:
            return
        self._closed = True
        self._signal_stop()
        for w in self._workers:
            self._send_quit(w)
        deadline = time.monotonic() + self._grace
        for w in self._workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
        self._shutdown()

    def terminate(self) -> None:
        """Terminate all workers at once (no finalizers) and release the pool's resources."""
        if self._closed:
            return
        self._closed = True
        self._signal_stop()
        self._shutdown()

    # -- worker management --------------------------------------------------

    def _start_workers(self) -> None:
        while len(self._workers) < self._processes and not self._closed \
                and not self._stopping:
            self._spawn()

    def _spawn(self) -> None:
        task_r, task_w = self._ctx.Pipe(duplex=False)
        result_r, result_w = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_worker_loop,
            args=(task_r, result_w, self._stop_r, self._death_r,
                  self._initializer, self._initargs, self._finalizer),
            name="hbase2es-pool-worker", daemon=True)
        try:
            process.start()
        finally:
            # Only the child may hold these ends: a dead child must show up
            # as EOF/EPIPE on the parent's side of its pipes.
            task_r.close()
            result_w.close()
        worker = _Worker(process, task_w, result_r)
        self._workers.append(worker)
        self._selector.register(result_r, selectors.EVENT_READ, worker)
        self._selector.register(process.sentinel, selectors.EVENT_READ, worker)

    @staticmethod
    def _kill(w: _Worker) -> None:
        if w.process.exitcode is None:
            w.process.terminate()
            w.process.join(1.0)
            if w.process.exitcode is None:
                w.process.kill()

    def _discard(self, w: _Worker, kill: bool = False) -> int | None:
        """Forget a worker: reap it (killing it first if asked) and close its pipes."""
        if kill:
            self._kill(w)
        w.process.join(5.0)
        exitcode = w.process.exitcode
        for obj in (w.result_conn, w.process.sentinel):
            try:
                self._selector.unregister(obj)
            except (KeyError, ValueError):
                pass
        w.task_conn.close()
        w.result_conn.close()
        if exitcode is not None:
            w.process.close()
        if w in self._workers:
            self._workers.remove(w)
        return exitcode

    def _send_quit(self, w: _Worker) -> None:
        if not w.quitting:
            w.quitting = True
            try:
                w.task_conn.send_bytes(_QUIT)
            except OSError:
                pass  # already dead; its sentinel will tell

    def _signal_stop(self) -> None:
        if self._stop_w is not None:
            self._stop_w.close()
            self._stop_w = None

    def _begin_stop(self) -> None:
        self._stopping = True
        self._signal_stop()
        for w in self._workers:
            self._send_quit(w)

    def _shutdown(self) -> None:
        for w in list(self._workers):
            self._discard(w, kill=True)
        self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        for conn in (self._stop_r, self._death_r, self._death_w):
            conn.close()

    # -- the parent loop ----------------------------------------------------

    def _dispatch(self, job: _Run) -> None:
        """Top up every worker to _PREFETCH outstanding tasks, running slots first."""
        for depth in range(1, _PREFETCH + 1):
            for w in self._workers:
                if len(w.queue) >= depth or w.quitting:
                    continue
                task = job.next_task()
                if task is None:
                    return
                if len(task.message) > _SMALL_TASK and w.queue:
                    job.held = task
                    continue
                try:
                    w.task_conn.send_bytes(task.message)
                except OSError:
                    # Dead already; put the task back and let the sentinel
                    # handler deal with the worker.
                    job.held = task
                    w.quitting = True
                    continue
                w.queue.append(task)

    def _poll(self, job: _Run) -> None:
        timeout = None
        if self._stopping:
            timeout = max(0.0, self._stop_time + self._grace - time.monotonic())
        events = self._selector.select(timeout)
        for key, _ in events:
            w = key.data
            if w is None:
                try:
                    os.read(self._wake_r, 512)
                except BlockingIOError:
                    pass
            elif w not in self._workers:
                continue  # handled earlier in this batch
            elif key.fileobj is w.result_conn:
                try:
                    data = w.result_conn.recv_bytes()
                except (EOFError, OSError):
                    continue  # died mid-message; its sentinel will fire
                self._on_message(job, w, data)
            else:
                self._on_exit(job, w)
        if self._stopping and time.monotonic() >= self._stop_time + self._grace:
            for w in list(self._workers):
                self._on_exit(job, w, cancelled=True)

    def _on_started(self, job: _Run, w: _Worker) -> None:
        task = w.queue[0]
        task.attempts += 1
        w.started = True
        if job.on_event is not None:
            job.emit(Started(task.index, w.pid, task.attempts))

    def _on_message(self, job: _Run, w: _Worker, data: bytes) -> None:
        kind, index = _HEADER.unpack_from(data)
        and_started = kind & _AND_STARTED
        kind &= ~_AND_STARTED
        if kind == _STARTED:
            self._on_started(job, w)
        elif kind == _PROGRESS:
            if job.on_event is not None:
                try:
                    payload = pickle.loads(memoryview(data)[_HEADER.size:])
                except Exception as exc:
                    payload = _describe(exc, "progress payload could not be unpickled: ")
                job.emit(Progress(index, payload))
        elif kind == _DONE_OK or kind == _DONE_ERR:
            task = w.queue.popleft()
            w.started = False
            try:
                payload = pickle.loads(memoryview(data)[_HEADER.size:])
            except Exception as exc:
                kind = _DONE_ERR
                payload = _describe(exc, "result could not be unpickled: ")
            if kind == _DONE_OK:
                job.outcomes.append(Outcome(index, "ok", payload, None, task.attempts))
            else:
                job.outcomes.append(Outcome(index, "failed", None, payload, task.attempts))
            if and_started:
                self._on_started(job, w)
        elif kind == _READY:
            w.ready = True
            self._startup_deaths = 0
        elif kind == _INIT_FAILED:
            error = pickle.loads(memoryview(data)[_HEADER.size:])
            raise WorkerStartupError(
                f"worker initializer failed: {error.type}: {error.message}", error)

    def _on_exit(self, job: _Run, w: _Worker, cancelled: bool = False) -> None:
        """Account for a worker that exited (or is terminated after the grace period)."""
        if cancelled:
            self._kill(w)
        # A result written just before dying is still in the pipe: read it
        # first so that the task counts as done and is not run again.
        try:
            while w.result_conn.poll():
                self._on_message(job, w, w.result_conn.recv_bytes())
        except (EOFError, OSError):
            pass
        exitcode = self._discard(w)
        if cancelled:
            error = TaskError("Cancelled", f"stop requested; worker {w.pid} was "
                              f"terminated after the {self._grace:g}s grace period", "")
        else:
            error = TaskError("WorkerDied", _exit_description(w.pid, exitcode), "")
        if not w.ready and not self._stopping:
            self._startup_deaths += 1
            if self._startup_deaths >= max(3, self._max_attempts) * self._processes:
                raise WorkerStartupError(
                    f"{self._startup_deaths} workers in a row died before their "
                    f"initializer finished; last: {error.message}", error)
        again = []
        for position, task in enumerate(w.queue):
            if position == 0 and w.started:
                task.error = error
                if self._stopping:
                    job.outcomes.append(Outcome(task.index, "cancelled", None, error,
                                                task.attempts))
                elif task.attempts >= self._max_attempts:
                    job.outcomes.append(Outcome(task.index, "failed", None, error,
                                                task.attempts))
                else:
                    job.emit(Retrying(task.index, task.attempts + 1, error))
                    again.append(task)
            elif not self._stopping:
                again.append(task)  # never started: costs no attempt
        w.queue.clear()
        job.retry.extendleft(reversed(again))
        self._start_workers()
