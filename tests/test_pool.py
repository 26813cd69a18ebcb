"""Tests of hbase2es.pool: results exactly once, crash safety, stop, parent death."""

from __future__ import annotations

import collections
import hashlib
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# Workers import the task functions by module name; spawn and forkserver
# children get the parent's sys.path, so these entries reach them too.
for entry in (str(HERE.parent), str(HERE)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import pool_tasks  # noqa: E402

from hbase2es.pool import (  # noqa: E402
    Finished, Outcome, Pool, Progress, Retrying, Started, WorkerStartupError)

TEST_TIMEOUT = 60
START_METHODS = ["spawn", "forkserver"]
# Any test running longer fails instead of hanging the session.
pytestmark = pytest.mark.timeout(TEST_TIMEOUT)


@pytest.fixture(params=START_METHODS)
def start_method(request):
    return request.param


def by_index(outcomes) -> dict[int, Outcome]:
    """Outcomes keyed by index, asserting that no index appears twice."""
    outcomes = list(outcomes)
    counts = collections.Counter(o.index for o in outcomes)
    assert not [i for i, n in counts.items() if n > 1], "task reported twice"
    return {o.index: o for o in outcomes}


def test_many_tiny_tasks(start_method):
    with Pool(2, start_method=start_method) as pool:
        outcomes = by_index(pool.run(pool_tasks.square, range(1000)))
    assert sorted(outcomes) == list(range(1000))
    assert all(o.status == "ok" and o.attempts == 1 for o in outcomes.values())
    assert all(o.value == i * i for i, o in outcomes.items())


def test_fork_is_refused():
    with pytest.raises(ValueError, match="fork"):
        Pool(2, start_method="fork")


def test_empty_task_list():
    with Pool(2) as pool:
        assert list(pool.run(pool_tasks.square, [])) == []


def test_random_kills(start_method):
    """Workers SIGKILLed 30 times at random moments: every task is still reported once, ok."""
    rng = random.Random(96062)
    tasks = [(i, rng.uniform(0.002, 0.006)) for i in range(300)]
    kills: list[int] = []
    started_pids = set()  # workers past their initializer
    done = threading.Event()

    def kill_one() -> None:
        candidates = sorted((set(pool.pids) & started_pids) - set(kills))
        if candidates:
            pid = rng.choice(candidates)
            os.kill(pid, signal.SIGKILL)
            kills.append(pid)

    def killer():
        while len(kills) < 24 and not done.is_set():
            time.sleep(rng.uniform(0.005, 0.05))
            kill_one()

    def on_event(event):
        if isinstance(event, Started):
            started_pids.add(event.pid)

    batches = []
    # The killer tends to hit the newest worker, which runs the task retried
    # last, so one task may absorb many kills: allow more attempts than kills.
    with Pool(2, max_attempts=31, start_method=start_method) as pool:
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            batches.append(by_index(pool.run(pool_tasks.sleep_echo, tasks, on_event)))
        finally:
            done.set()
            thread.join(10)
        # The remaining kills hit workers idle between runs, blocked on their
        # task pipes; the next run must notice and still finish.
        for _ in range(30):
            if len(kills) >= 30:
                break
            kill_one()
            time.sleep(rng.uniform(0, 0.05))
            kill_one()
            batches.append(by_index(pool.run(pool_tasks.sleep_echo, tasks[:20], on_event)))
    assert len(kills) == 30
    assert len(batches[0]) == 300
    for outcomes in batches:
        assert sorted(outcomes) == list(range(len(outcomes)))
        assert [o for o in outcomes.values() if o.status != "ok"] == []
        assert all(o.value == i for i, o in outcomes.items())
    # Every extra attempt was caused by one of the kills.
    assert sum(o.attempts - 1 for b in batches for o in b.values()) <= len(kills)


@pytest.mark.parametrize("task_fn", [pool_tasks.exit_on_die, pool_tasks.sigkill_on_die])
def test_task_that_always_kills_its_worker(start_method, task_fn):
    events = []
    tasks = ["a", "b", "die", "c", "d", "e", "f"]
    with Pool(2, max_attempts=3, start_method=start_method) as pool:
        outcomes = by_index(pool.run(task_fn, tasks, events.append))
        assert len(set(pool.pids)) == 2  # dead workers were replaced
    assert sorted(outcomes) == list(range(len(tasks)))
    dead = outcomes[2]
    assert dead.status == "failed"
    assert dead.attempts == 3
    assert dead.error.type == "WorkerDied"
    expected = "code 3" if task_fn is pool_tasks.exit_on_die else "SIGKILL"
    assert expected in dead.error.message
    assert [e.attempt for e in events if isinstance(e, Retrying)] == [2, 3]
    assert [e.attempt for e in events if isinstance(e, Started) and e.index == 2] == [1, 2, 3]
    for i, task in enumerate(tasks):
        if task != "die":
            assert outcomes[i].status == "ok" and outcomes[i].value == task


def test_result_sent_just_before_death_counts_once(start_method, tmp_path):
    # One worker, and the consumer dawdles after the first outcome, so the
    # parent finds the result and the death of task 1 at the same time.
    tasks = [(i, str(tmp_path / f"marker-{i}")) for i in range(4)]
    with Pool(1, max_attempts=3, start_method=start_method) as pool:
        outcomes = []
        for outcome in pool.run(pool_tasks.send_then_die, tasks):
            outcomes.append(outcome)
            if len(outcomes) == 1:
                time.sleep(0.6)
    outcomes = by_index(outcomes)
    assert sorted(outcomes) == [0, 1, 2, 3]
    # Every task returns at once and arranges its worker's death 0.2 s later,
    # so all results were sent before the death: none may run twice.
    assert all(o.status == "ok" and o.value == i for i, o in outcomes.items())
    assert all(o.attempts == 1 for o in outcomes.values())


def test_idle_workers_killed_between_runs(start_method):
    with Pool(2, start_method=start_method) as pool:
        first = by_index(pool.run(pool_tasks.pid_of_worker, range(10)))
        victims = pool.pids
        for pid in victims:
            os.kill(pid, signal.SIGKILL)  # both blocked reading their task pipes
        time.sleep(0.2)
        second = by_index(pool.run(pool_tasks.pid_of_worker, range(10)))
    assert all(o.status == "ok" for o in first.values())
    assert sorted(second) == list(range(10))
    assert all(o.status == "ok" and o.attempts == 1 for o in second.values())
    assert not set(victims) & {o.value for o in second.values()}


def test_worker_killed_while_writing_a_big_result(start_method):
    # The consumer holds the generator while the only worker blocks writing
    # 4 MiB into its pipe; killing it then leaves half a frame behind.
    events = []
    with Pool(1, max_attempts=3, start_method=start_method) as pool:
        outcomes = []
        for outcome in pool.run(pool_tasks.big_result, [10, 4 << 20, 20], events.append):
            outcomes.append(outcome)
            if len(outcomes) == 1:
                time.sleep(0.5)
                os.kill(pool.pids[0], signal.SIGKILL)
    outcomes = by_index(outcomes)
    assert sorted(outcomes) == [0, 1, 2]
    assert all(o.status == "ok" for o in outcomes.values())
    assert [len(outcomes[i].value) for i in range(3)] == [10, 4 << 20, 20]
    assert outcomes[1].attempts == 2
    assert Retrying in {type(e) for e in events}


def test_workers_ignore_sigint(start_method):
    # Ctrl-C in a terminal signals the whole process group; only the parent
    # decides what happens then.
    started = threading.Event()
    with Pool(2, start_method=start_method) as pool:
        def on_event(event):
            if isinstance(event, Started):
                started.set()

        def interrupt():
            started.wait(20)
            for pid in pool.pids:
                os.kill(pid, signal.SIGINT)

        thread = threading.Thread(target=interrupt)
        thread.start()
        outcomes = by_index(pool.run(pool_tasks.sleep_echo, [(i, 0.3) for i in range(4)],
                                     on_event))
        thread.join()
    assert all(o.status == "ok" and o.attempts == 1 for o in outcomes.values())


def test_worker_killed_during_startup_is_replaced(start_method):
    with Pool(2, initializer=pool_tasks.slow_init, initargs=(1.0,),
              start_method=start_method) as pool:
        time.sleep(0.5)
        victim = pool.pids[0]
        os.kill(victim, signal.SIGKILL)
        outcomes = by_index(pool.run(pool_tasks.pid_of_worker, range(10)))
    assert sorted(outcomes) == list(range(10))
    assert all(o.status == "ok" and o.attempts == 1 for o in outcomes.values())
    assert victim not in {o.value for o in outcomes.values()}


def test_initializer_and_finalizer(start_method, tmp_path):
    with Pool(2, initializer=pool_tasks.init_worker, initargs=(str(tmp_path), "tok"),
              finalizer=pool_tasks.finalize_worker, start_method=start_method) as pool:
        outcomes = list(pool.run(pool_tasks.worker_state, range(50)))
        outcomes += list(pool.run(pool_tasks.worker_state, range(50)))
        pids = set(pool.pids)
    assert all(o.status == "ok" for o in outcomes)
    assert {o.value[1:] for o in outcomes} == {("tok", 1)}  # initializer ran once per worker
    assert {o.value[0] for o in outcomes} <= pids
    for pid in pids:
        assert (tmp_path / f"init-{pid}").read_text() == "init\n"
        assert (tmp_path / f"final-{pid}").read_text() == "finalized\n"


def test_initializer_that_raises_fails_run(start_method):
    with Pool(2, initializer=pool_tasks.failing_init, start_method=start_method) as pool:
        with pytest.raises(WorkerStartupError, match="cannot reach HBase") as info:
            list(pool.run(pool_tasks.square, range(10)))
    assert info.value.error.type == "RuntimeError"
    assert "failing_init" in info.value.error.traceback


def test_initializer_that_kills_worker_fails_run(start_method):
    started = time.monotonic()
    with Pool(2, initializer=pool_tasks.exiting_init, start_method=start_method) as pool:
        with pytest.raises(WorkerStartupError, match="code 4"):
            list(pool.run(pool_tasks.square, range(10)))
    assert time.monotonic() - started < 30


def test_progress_events_in_order(start_method):
    events = []
    with Pool(2, start_method=start_method) as pool:
        outcomes = by_index(pool.run(pool_tasks.report_progress, [3, 0, 5], events.append))
    assert {i: o.value for i, o in outcomes.items()} == {0: 3, 1: 0, 2: 5}
    for index, steps in enumerate([3, 0, 5]):
        mine = [e for e in events if e.index == index]
        assert isinstance(mine[0], Started) and mine[0].attempt == 1
        assert mine[1:-1] == [Progress(index, ("step", s)) for s in range(steps)]
        assert mine[-1] == Finished(index)


def test_exceptions_are_failures(start_method):
    with Pool(2, start_method=start_method) as pool:
        [value_error] = pool.run(pool_tasks.raise_value_error, [7])
        [unpicklable_error] = pool.run(pool_tasks.raise_unpicklable, [1])
        [unpicklable_result] = pool.run(pool_tasks.return_unpicklable, [1])
        [fails_to_load] = pool.run(pool_tasks.return_fails_to_load, [1])
        [system_exit] = pool.run(pool_tasks.raise_system_exit, [1])
        [interrupt] = pool.run(pool_tasks.raise_keyboard_interrupt, [1])
        pids = set(pool.pids)
        after = by_index(pool.run(pool_tasks.square, range(20)))
        assert set(pool.pids) == pids  # no worker died on the way

    assert value_error.status == "failed" and value_error.attempts == 1
    assert value_error.error.type == "ValueError"
    assert value_error.error.message == "bad value 7"
    assert "raise_value_error" in value_error.error.traceback
    assert "ValueError: bad value 7" in value_error.error.traceback

    assert unpicklable_error.status == "failed"
    assert unpicklable_error.error.type == "UnpicklableError"
    assert "unpicklable failure" in unpicklable_error.error.message

    assert unpicklable_result.status == "failed"
    assert "could not be pickled" in unpicklable_result.error.message

    assert fails_to_load.status == "failed"
    assert "could not be unpickled" in fails_to_load.error.message
    assert "refuses to be unpickled" in fails_to_load.error.message

    assert system_exit.status == "failed" and system_exit.error.type == "SystemExit"
    assert interrupt.status == "failed" and interrupt.error.type == "KeyboardInterrupt"
    assert all(o.status == "ok" and o.value == i * i for i, o in after.items())


def test_big_result_and_big_task(start_method):
    with Pool(2, start_method=start_method) as pool:
        results = [o.value for o in pool.run(pool_tasks.big_result, [1 << 20] * 3)]
        blobs = [os.urandom(300_000) for _ in range(4)]
        digests = by_index(pool.run(pool_tasks.digest, blobs))
    assert [len(r) for r in results] == [1 << 20] * 3
    assert len(set(results)) == 3
    assert {i: o.value for i, o in digests.items()} == {
        i: hashlib.sha256(b).hexdigest() for i, b in enumerate(blobs)}


def test_request_stop_cancels_running_tasks(start_method):
    started = []
    both_started = threading.Event()

    def on_event(event):
        if isinstance(event, Started):
            started.append(event.index)
            if len(started) == 2:
                both_started.set()

    with Pool(2, start_method=start_method, grace_seconds=1.0) as pool:
        stopper = threading.Timer(0, lambda: both_started.wait(20) and pool.request_stop())
        stopper.start()
        began = time.monotonic()
        outcomes = by_index(pool.run(pool_tasks.sleep_echo,
                                     [(i, 30.0) for i in range(10)], on_event))
        elapsed = time.monotonic() - began
        stopper.join()
        assert pool.stopped
        assert list(pool.run(pool_tasks.square, range(3))) == []
    assert elapsed < 15
    assert sorted(outcomes) == sorted(started) and len(started) == 2
    for o in outcomes.values():
        assert o.status == "cancelled"
        assert o.error.type == "Cancelled"


def test_request_stop_lets_tasks_finish_within_grace(start_method, tmp_path):
    both_started = threading.Event()
    started = []

    def on_event(event):
        if isinstance(event, Started):
            started.append(event.index)
            if len(started) == 2:
                both_started.set()

    with Pool(2, start_method=start_method, grace_seconds=10.0,
              initializer=pool_tasks.init_worker, initargs=(str(tmp_path), "t"),
              finalizer=pool_tasks.finalize_worker) as pool:
        stopper = threading.Timer(0, lambda: both_started.wait(20) and pool.request_stop())
        stopper.start()
        began = time.monotonic()
        outcomes = by_index(pool.run(pool_tasks.sleep_echo,
                                     [(i, 0.5) for i in range(10)], on_event))
        elapsed = time.monotonic() - began
        stopper.join()
        pids = pool.pids
    assert elapsed < 5
    assert pids == []  # workers exited by themselves
    assert len(list(tmp_path.glob("final-*"))) == 2  # finalizers ran
    assert sorted(outcomes) == sorted(started)  # queued tasks never started
    assert 2 <= len(outcomes) < 10
    assert all(o.status == "ok" for o in outcomes.values())


def test_abandoned_run_leaves_pool_usable(start_method):
    with Pool(2, start_method=start_method) as pool:
        for outcome in pool.run(pool_tasks.sleep_echo, [(i, 0.05) for i in range(50)]):
            break
        outcomes = by_index(pool.run(pool_tasks.square, range(100)))
    assert sorted(outcomes) == list(range(100))
    assert all(o.status == "ok" for o in outcomes.values())


def test_tasks_are_consumed_lazily(start_method):
    pulled = []

    def tasks():
        for i in range(100):
            pulled.append(i)
            yield (i, 0.01)

    with Pool(2, start_method=start_method) as pool:
        seen = 0
        for outcome in pool.run(pool_tasks.sleep_echo, tasks()):
            if seen == 0:
                pulled_at_first = len(pulled)
            seen += 1
    assert pulled_at_first <= 2 * 3
    assert seen == 100 and len(pulled) == 100


# -- the parent dies ----------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie waiting for a (re)parent that does not reap is gone too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _read_line(proc, prefix: str, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(prefix):
            return line.split()[1:]
    raise AssertionError(f"parent never printed {prefix!r}")


@pytest.mark.parametrize("parent_signal", [signal.SIGKILL, signal.SIGTERM],
                         ids=["SIGKILL", "SIGTERM"])
def test_workers_exit_when_parent_dies(start_method, parent_signal):
    proc = subprocess.Popen([sys.executable, str(HERE / "pool_parent.py"), start_method],
                            stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        pids = [int(p) for p in _read_line(proc, "PIDS", 30)]
        assert len(pids) == 2
        proc.send_signal(parent_signal)
        if parent_signal == signal.SIGTERM:
            # The parent's handler calls request_stop: 1 s of grace, then the
            # running tasks are cancelled and the parent exits on its own.
            assert _read_line(proc, "OUTCOMES", 15) == ["cancelled", "cancelled"]
        assert proc.wait(15) == (0 if parent_signal == signal.SIGTERM else -signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in pids if not _gone(pid)] == []
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
        proc.wait()
        proc.stdout.close()
