"""A crash-safe process pool built from pipes and process sentinels.

The shape follows CPython's ``multiprocessing.Pool``: the parent hands tasks to
worker processes over pipes, workers send ``(kind, index, payload)`` messages
back, and an empty message (Pool's ``None`` sentinel) tells a worker to run its
finalizer and exit.  It differs where ``multiprocessing.Pool`` breaks:

No lock a dead worker could hold: ``multiprocessing.Pool`` shares one task
queue and one result queue between all workers, each guarded by a lock.  A
worker killed while holding such a lock (or halfway through writing into the
shared pipe) leaves the other workers blocked or reading garbage forever
(cpython issue 96062).  Here every worker owns a private task pipe and a
private result pipe, so there is no cross-process lock at all, and a
half-written message can only be in the dead worker's own pipe, which the
parent drains and then discards.  The parent waits on the result pipes and the
process sentinels together, so a death is noticed at once, even while the
worker is idle.

Tasks are acknowledged: a worker reports ``STARTED`` before it calls the task
function.  When a worker dies the parent first reads everything left in its
result pipe (a result sent just before dying counts, exactly once), then runs
again the task that had started (this burns an attempt) and the tasks merely
queued in its pipe (these burn none).

The parent never blocks on a worker, so a worker stuck writing a big result
can always make progress: results are read from non-blocking pipes into
per-worker buffers, and at most ``_PREFETCH`` small tasks per worker are
outstanding, so the parent's writes always fit in the pipe (see
``_SMALL_TASK``).  That bound also makes the task iterable consumed lazily.
"""

from __future__ import annotations

# long: one concept, the crash-safe pool; its worker and parent halves share the frame
# format and the STARTED protocol, so they are read best side by side.

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

    ``type`` is the exception class name (``"ValueError"``), ``"WorkerDied"``
    when the worker process vanished, or ``"Cancelled"`` when ``request_stop``
    had the worker terminated.  ``traceback`` is the remote traceback text,
    ``""`` when there is none.
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
    """Event: task ``index`` started on worker ``pid``; ``attempt`` counts from 1."""

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
    """The pool cannot be used (closed, or ``run`` is already active)."""


class WorkerStartupError(PoolError):
    """A worker's initializer raised, or workers keep dying before they are ready.

    ``error`` is the ``TaskError`` describing the last failure.
    """

    def __init__(self, message: str, error: TaskError):
        super().__init__(message)
        self.error = error


# Both directions carry frames: a 4-byte length, then the message.  The pool
# frames messages itself (instead of Connection.send_bytes) so that a reader
# can take whatever has arrived in one read() and split it: the parent never
# blocks on a half-written message, and a worker picks up all its queued tasks
# at once.
_LENGTH = struct.Struct("!I")

# Worker -> parent message: a kind, a task index, and a pickle.  The index is
# outside the pickle so that a payload the parent cannot unpickle is still
# attributed to its task.
_HEADER = struct.Struct("!Bq")
_FRAME = struct.Struct("!IBq")  # _LENGTH + _HEADER
_READY, _INIT_FAILED, _STARTED, _PROGRESS, _DONE_OK, _DONE_ERR = range(6)
# Flag on a result: the worker has also started the next task in its queue.
_AND_STARTED = 0x80

# Parent -> worker message: task index, length of the pickled function, the
# pickled function, the pickled task.  The function's pickle is the same for
# the whole run, so the worker unpickles it only when it changes.  An empty
# message is the stop sentinel (Pool's None).
_TASK_HEADER = struct.Struct("!qI")
_QUIT = b""

# Tasks per worker sent but not finished: one running plus the ones waiting in
# its pipe, so that a worker finds its next task there the moment it is done.
_PREFETCH = 3

# A pipe holds at least one page even when the system is short of pipe
# buffers, so _PREFETCH messages this small never block the parent's write.  A
# larger task goes only to a ready worker with nothing outstanding: that worker
# is blocked reading its task pipe and drains the write by itself.
_SMALL_TASK = 4096 // _PREFETCH - 64

_READ_SIZE = 1 << 16

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


def _dumps(obj: object) -> bytes:
    return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


def _frame(kind: int, index: int, payload: bytes = b"") -> bytes:
    return _FRAME.pack(_HEADER.size + len(payload), kind, index) + payload


def _split_frames(buffer: bytearray) -> list[bytearray]:
    """Remove the complete frames from the start of ``buffer``; return their messages."""
    messages = []
    start, end = 0, len(buffer)
    while end - start >= _LENGTH.size:
        stop = start + _LENGTH.size + _LENGTH.unpack_from(buffer, start)[0]
        if stop > end:
            break
        messages.append(buffer[start + _LENGTH.size:stop])
        start = stop
    del buffer[:start]
    return messages


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
            self._send(_frame(_PROGRESS, self._index, _dumps(payload)))


def _watch_parent(death_conn, parent_pid: int) -> None:
    # The parent holds the only write end of death_conn, so EOF means it died,
    # even while the task function is busy and the task pipe is not read.
    # The ppid check is a fallback in case a process the parent forked (not
    # through this pool) inherited the write end.
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
    except BaseException as exc:  # SystemExit in a task is a task failure too
        return _DONE_ERR, _dumps(_describe(exc))
    finally:
        progress.active = False
    try:
        return _DONE_OK, _dumps(value)
    except BaseException as exc:
        return _DONE_ERR, _dumps(_describe(exc, "result could not be pickled: "))


def _worker_loop(task_conn, result_conn, stop_conn, death_conn,
                 initializer, initargs, finalizer) -> None:
    # long: a worker's whole life (start-up, the task loop, the exit) in one place, as in
    # CPython's multiprocessing.pool.worker; its pieces share the pipe buffers.
    # Ctrl-C reaches the whole process group; the parent decides what to do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(death_conn, os.getppid()),
                     name="pool-parent-watch", daemon=True).start()
    task_fd, result_fd, stop_fd = task_conn.fileno(), result_conn.fileno(), stop_conn.fileno()
    # One poll() tells whether more tasks have arrived and whether the parent
    # closed the stop pipe (request_stop: skip the queued tasks).
    poller = select.poll()
    poller.register(task_fd, select.POLLIN)
    poller.register(stop_fd, select.POLLIN)
    lock = threading.Lock()  # progress() may be called from a task's thread
    buffer = bytearray()
    tasks: collections.deque[bytearray] = collections.deque()  # received, not run

    def send(frame: bytes) -> None:
        with lock:
            _write_all(result_fd, frame)

    def receive() -> None:
        chunk = os.read(task_fd, _READ_SIZE)
        if not chunk:
            raise EOFError  # the parent is gone
        buffer.extend(chunk)
        tasks.extend(_split_frames(buffer))

    try:
        if initializer is not None:
            try:
                initializer(*initargs)
            except BaseException as exc:
                send(_frame(_INIT_FAILED, -1, _dumps(_describe(exc))))
                return
        send(_frame(_READY, os.getpid()))
        cache = [None, None]  # the task function's pickle, and the function
        announced = False  # the parent was told that tasks[0] started
        while True:
            while not tasks:
                receive()
            data = tasks.popleft()
            if data == _QUIT:
                break
            index = _TASK_HEADER.unpack_from(data)[0]
            if not announced:
                if any(fd == stop_fd for fd, _ in poller.poll(0)):
                    continue
                send(_frame(_STARTED, index))
            kind, payload = _run_task(data, send, cache)
            # If the next task is already here, announce its start in the
            # same frame as this result: one write and one parent wake-up per
            # task instead of two.
            ready = [fd for fd, _ in poller.poll(0)]
            if task_fd in ready:
                receive()
            announced = bool(tasks) and tasks[0] != _QUIT and stop_fd not in ready
            send(_frame(kind | (_AND_STARTED if announced else 0), index, payload))
            data = payload = None
    except (OSError, EOFError):
        return  # the parent closed our pipes: it is gone, or gave up on us
    if finalizer is not None:
        finalizer()


# --------------------------------------------------------------------------
# Parent side


class _Task:
    __slots__ = ("index", "message", "attempts")

    def __init__(self, index: int, message: bytes):
        self.index = index
        self.message = message
        self.attempts = 0


class _Worker:
    __slots__ = ("process", "pid", "task_conn", "result_conn", "task_fd", "result_fd",
                 "buffer", "queue", "started", "ready", "quitting")

    def __init__(self, process, task_conn, result_conn):
        self.process = process
        self.pid = process.pid
        # The Connection objects own the pipe ends; the pool uses the fds.
        self.task_conn = task_conn
        self.result_conn = result_conn
        self.task_fd = task_conn.fileno()
        self.result_fd = result_conn.fileno()
        os.set_blocking(self.result_fd, False)
        self.buffer = bytearray()  # received bytes not yet forming a whole frame
        self.queue: collections.deque[_Task] = collections.deque()  # sent, not done
        self.started = False  # queue[0] is running
        self.ready = False    # the initializer has succeeded
        self.quitting = False  # sent the stop sentinel, or found dead


def _exit_description(pid: int, exitcode: int | None) -> str:
    if exitcode is None:
        return f"worker {pid} vanished (exit status unknown)"
    if exitcode < 0:
        try:
            name = f" ({signal.Signals(-exitcode).name})"
        except ValueError:
            name = ""
        return f"worker {pid} died with signal {-exitcode}{name}"
    return f"worker {pid} exited with code {exitcode}"


class _Run:
    """State of one ``Pool.run`` call: tasks still to hand out and finished outcomes."""

    def __init__(self, fn, tasks, on_event):
        self.fn_bytes = _dumps(fn)
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
        body = _TASK_HEADER.pack(index, len(self.fn_bytes)) + self.fn_bytes + _dumps(item)
        return _Task(index, _LENGTH.pack(len(body)) + body)

    def emit(self, event) -> None:
        if self.on_event is not None:
            self.on_event(event)


class Pool:
    """A process pool that survives workers dying at any moment.

    ``initializer(*initargs)`` runs once in each worker when it starts,
    ``finalizer()`` when it is told to exit.  A task whose worker dies runs
    again on another worker, up to ``max_attempts`` times.  ``request_stop``
    gives running tasks ``grace_seconds`` before their workers are terminated.
    Use it as a context manager: leaving it stops and reaps the workers.
    """

    def __init__(self, processes: int, initializer: Callable | None = None,
                 initargs: tuple = (), finalizer: Callable | None = None,
                 max_attempts: int = 3, start_method: str = "spawn",
                 grace_seconds: float = 10.0):
        if processes < 1:
            raise ValueError("processes must be at least 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if start_method == "fork":
            # Forked workers would inherit the parent's ends of every pipe, so
            # closing them would no longer mean EOF for the workers.
            raise ValueError("start_method 'fork' is not supported; use 'spawn' or 'forkserver'")
        self._ctx = multiprocessing.get_context(start_method)
        self._processes = processes
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._finalizer = finalizer
        self._max_attempts = max_attempts
        self._grace = grace_seconds
        self._workers: list[_Worker] = []
        self._startup_deaths = 0  # workers in a row that died before ready
        self._stop_requested = False
        self._stop_time = 0.0
        self._stopping = False
        self._closed = False
        self._active_run = False
        # What connection.wait() does, but registered once instead of per
        # call: result pipes, process sentinels and the wake-up pipe.
        self._selector = selectors.DefaultSelector()
        # request_stop may run in a signal handler while the parent sleeps in
        # select(); a byte on this pipe wakes it up.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        # Closing our end of the stop pipe tells every worker not to start
        # queued tasks.  Our end of the death pipe stays open until the
        # workers are gone, so EOF on it tells them that this process died.
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
        """Stop handing out tasks; running ones get the grace period, then are cancelled.

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
        """Run ``fn(task, progress)`` for each task in the worker processes.

        A generator yielding one ``Outcome`` per started task, as tasks finish
        (in any order).  ``tasks`` is consumed lazily.  ``progress(payload)``
        sends a ``Progress`` event for the running task (keep payloads small
        and picklable).  ``on_event`` is called in this process with
        ``Started``, ``Progress``, ``Retrying`` and ``Finished`` events.
        After ``request_stop`` nothing more starts, and the generator ends
        once the running tasks have finished or been cancelled.  Raises
        ``WorkerStartupError`` if workers cannot start.  Abandoning the
        generator early terminates the workers still busy with its tasks.
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
                if self._stopping:
                    if not self._workers:
                        break
                else:
                    self._dispatch(job)
                    if job.exhausted and not job.retry and job.held is None \
                            and not any(w.queue for w in self._workers):
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
                # Abandoned or failed mid-run: workers still busy with this
                # run's tasks would report them into the next run.
                for w in list(self._workers):
                    if w.queue:
                        self._discard(w, kill=True)

    def close(self) -> None:
        """Let workers run their finalizer and exit; terminate any left after the grace period."""
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
        """Terminate all workers now (no finalizers) and release the pool's resources."""
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
            # Only the child may hold these ends: its death must show up as
            # EOF / EPIPE on ours.
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
                w.process.join(5.0)

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
                pass  # already unregistered at EOF
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
                _write_all(w.task_fd, _LENGTH.pack(len(_QUIT)))
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
        wake_w, self._wake_w = self._wake_w, -1  # a late request_stop must not hit a reused fd
        os.close(wake_w)
        os.close(self._wake_r)
        for conn in (self._stop_r, self._death_r, self._death_w):
            conn.close()

    # -- the parent loop ----------------------------------------------------

    def _dispatch(self, job: _Run) -> None:
        """Top up every worker to _PREFETCH outstanding tasks, running slots first."""
        batches: dict[_Worker, list[bytes]] = {}
        for depth in range(1, _PREFETCH + 1):
            for w in self._workers:
                if len(w.queue) >= depth or w.quitting:
                    continue
                task = job.next_task()
                if task is None:
                    break
                if len(task.message) > _SMALL_TASK and (w.queue or not w.ready):
                    job.held = task
                    continue
                w.queue.append(task)
                batches.setdefault(w, []).append(task.message)
        for w, messages in batches.items():
            try:
                _write_all(w.task_fd, b"".join(messages))
            except OSError:
                # Dead already: its sentinel will fire, and these tasks,
                # never started, go back to the run's queue.
                w.quitting = True

    def _poll(self, job: _Run) -> None:
        timeout = None
        if self._stopping:
            timeout = max(0.0, self._stop_time + self._grace - time.monotonic())
        for key, _ in self._selector.select(timeout):
            w = key.data
            if w is None:
                try:
                    os.read(self._wake_r, 512)
                except BlockingIOError:
                    pass
            elif w not in self._workers:
                continue  # it exited earlier in this batch
            elif key.fileobj is w.result_conn:
                if self._read(job, w) == 0:
                    # EOF: the worker is gone, and its sentinel will say so.
                    self._selector.unregister(w.result_conn)
            else:
                self._on_exit(job, w)
        if self._stopping and time.monotonic() >= self._stop_time + self._grace:
            for w in list(self._workers):
                self._on_exit(job, w, cancelled=True)

    def _read(self, job: _Run, w: _Worker) -> int | None:
        """Handle the messages that have arrived from ``w``.

        Returns the number of bytes read: 0 at EOF, None if nothing was there.
        """
        try:
            chunk = os.read(w.result_fd, _READ_SIZE)
        except BlockingIOError:
            return None
        except OSError:
            return 0
        if chunk:
            w.buffer += chunk
            for message in _split_frames(w.buffer):
                self._on_message(job, w, message)
        return len(chunk)

    def _on_started(self, job: _Run, w: _Worker) -> None:
        task = w.queue[0]
        task.attempts += 1
        w.started = True
        if job.on_event is not None:
            job.emit(Started(task.index, w.pid, task.attempts))

    def _on_message(self, job: _Run, w: _Worker, message: bytearray) -> None:
        flags, index = _HEADER.unpack_from(message)
        kind = flags & ~_AND_STARTED
        payload = memoryview(message)[_HEADER.size:]
        if kind == _STARTED:
            self._on_started(job, w)
        elif kind == _DONE_OK or kind == _DONE_ERR:
            task = w.queue.popleft()
            w.started = False
            try:
                value = pickle.loads(payload)
            except Exception as exc:
                value = _describe(exc, "result could not be unpickled: ")
                kind = _DONE_ERR
            if kind == _DONE_OK:
                job.outcomes.append(Outcome(index, "ok", value, None, task.attempts))
            else:
                job.outcomes.append(Outcome(index, "failed", None, value, task.attempts))
            if flags & _AND_STARTED:
                self._on_started(job, w)
        elif kind == _PROGRESS:
            if job.on_event is not None:
                try:
                    value = pickle.loads(payload)
                except Exception as exc:
                    value = _describe(exc, "progress payload could not be unpickled: ")
                job.emit(Progress(index, value))
        elif kind == _READY:
            w.ready = True
            self._startup_deaths = 0
        elif kind == _INIT_FAILED:
            error = pickle.loads(payload)
            raise WorkerStartupError(
                f"worker initializer failed: {error.type}: {error.message}", error)

    def _on_exit(self, job: _Run, w: _Worker, cancelled: bool = False) -> None:
        """Account for a worker that exited, or that the grace period ran out on."""
        if cancelled:
            self._kill(w)
        # A result written just before dying is still in the pipe: take it
        # first so that its task counts as done and is not run again.
        while self._read(job, w):
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
                if self._stopping:
                    job.outcomes.append(
                        Outcome(task.index, "cancelled", None, error, task.attempts))
                elif task.attempts >= self._max_attempts:
                    job.outcomes.append(
                        Outcome(task.index, "failed", None, error, task.attempts))
                else:
                    job.emit(Retrying(task.index, task.attempts + 1, error))
                    again.append(task)
            elif not self._stopping:
                again.append(task)  # never started: costs no attempt
        w.queue.clear()
        job.retry.extendleft(reversed(again))
        self._start_workers()
