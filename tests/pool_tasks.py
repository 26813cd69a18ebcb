"""Task, initializer and finalizer functions for test_pool.py.

They live in their own module, importable by name, because spawned and
forkserver workers unpickle functions by importing their module.  Keep this
module light: every worker imports it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time


def square(x, progress):
    return x * x


def echo(x, progress):
    return x


def sleep_echo(arg, progress):
    index, seconds = arg
    time.sleep(seconds)
    return index


def pid_of_worker(x, progress):
    return os.getpid()


def exit_on_die(x, progress):
    """Kills its own worker with os._exit for the task "die"."""
    if x == "die":
        os._exit(3)
    return x


def sigkill_on_die(x, progress):
    """Kills its own worker with SIGKILL for the task "die"."""
    if x == "die":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
    return x


def report_progress(steps, progress):
    for step in range(steps):
        progress(("step", step))
    return steps


def raise_value_error(x, progress):
    raise ValueError(f"bad value {x!r}")


class UnpicklableError(Exception):
    """Carries a lock, so pickling it fails."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def raise_unpicklable(x, progress):
    raise UnpicklableError(f"unpicklable failure {x!r}")


def return_unpicklable(x, progress):
    return threading.Lock()


def _refuse_to_load():
    raise RuntimeError("this object refuses to be unpickled")


class FailsToLoad:
    """Pickles fine in the worker, cannot be unpickled in the parent."""

    def __reduce__(self):
        return (_refuse_to_load, ())


def return_fails_to_load(x, progress):
    return FailsToLoad()


def raise_system_exit(x, progress):
    raise SystemExit(5)


def raise_keyboard_interrupt(x, progress):
    raise KeyboardInterrupt


def big_result(size, progress):
    return os.urandom(size)


def digest(data, progress):
    return hashlib.sha256(data).hexdigest()


def send_then_die(arg, progress):
    """Returns at once, then kills the worker 0.2 s later, after the result went out.

    Only the first run (marked by creating ``marker``) arranges the death, so
    a rerun would be visible as attempts == 2.
    """
    value, marker = arg
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return value
    os.close(fd)
    threading.Thread(target=lambda: (time.sleep(0.2), os._exit(9)), daemon=True).start()
    return value


# -- initializer / finalizer -------------------------------------------------

_STATE: dict = {}


def init_worker(directory, token):
    _STATE["init_calls"] = _STATE.get("init_calls", 0) + 1
    _STATE["token"] = token
    _STATE["directory"] = directory
    with open(os.path.join(directory, f"init-{os.getpid()}"), "a") as f:
        f.write("init\n")


def worker_state(x, progress):
    return os.getpid(), _STATE.get("token"), _STATE.get("init_calls")


def finalize_worker():
    with open(os.path.join(_STATE["directory"], f"final-{os.getpid()}"), "w") as f:
        f.write("finalized\n")


def failing_init():
    raise RuntimeError("cannot reach HBase")


def exiting_init():
    os._exit(4)


def slow_init(seconds):
    time.sleep(seconds)
