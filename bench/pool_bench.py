"""Throughput of no-op tasks: hbase2es.pool.Pool vs multiprocessing.Pool.imap(chunksize=1).

Usage: python bench/pool_bench.py [--tasks N] [--processes P] [--repeat R]
       [--start-method spawn|forkserver]

Both pools are started and warmed up before timing, so only dispatch is
measured.  ``measure()`` is importable by larger benchmarks.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time

if __package__ in (None, ""):
    # Run as a script: make the project importable (here and in workers).
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hbase2es.pool import Pool  # noqa: E402


def noop_task(task, progress):
    """No-op task for hbase2es.pool.Pool."""
    return task


def noop(task):
    """No-op task for multiprocessing.Pool."""
    return task


def _time_pool(pool: Pool, tasks: int) -> float:
    start = time.perf_counter()
    count = 0
    for outcome in pool.run(noop_task, range(tasks)):
        if outcome.status != "ok":
            raise RuntimeError(f"benchmark task failed: {outcome}")
        count += 1
    elapsed = time.perf_counter() - start
    assert count == tasks
    return tasks / elapsed


def _time_mp_pool(pool, tasks: int) -> float:
    start = time.perf_counter()
    count = sum(1 for _ in pool.imap(noop, range(tasks), chunksize=1))
    elapsed = time.perf_counter() - start
    assert count == tasks
    return tasks / elapsed


def measure(tasks: int = 20000, processes: int = 2, repeat: int = 5,
            start_method: str = "spawn") -> dict:
    """Return median tasks/s of both pools over ``repeat`` alternating runs, and their ratio."""
    ctx = multiprocessing.get_context(start_method)
    ours, theirs = [], []
    with Pool(processes, start_method=start_method) as pool, \
            ctx.Pool(processes) as mp_pool:
        # Warm up: wait for workers to boot and imports to settle.
        _time_pool(pool, processes * 20)
        _time_mp_pool(mp_pool, processes * 20)
        for _ in range(repeat):
            ours.append(_time_pool(pool, tasks))
            theirs.append(_time_mp_pool(mp_pool, tasks))
    pool_rate = statistics.median(ours)
    mp_rate = statistics.median(theirs)
    return {
        "pool_tasks_per_s": pool_rate,
        "mp_pool_tasks_per_s": mp_rate,
        "pool_vs_mp_pool": pool_rate / mp_rate,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--start-method", default="spawn",
                        choices=["spawn", "forkserver"])
    args = parser.parse_args(argv)
    result = measure(args.tasks, args.processes, args.repeat, args.start_method)
    print(f"tasks={args.tasks} processes={args.processes} repeat={args.repeat} "
          f"start_method={args.start_method}")
    print(f"pool_tasks_per_s     {result['pool_tasks_per_s']:12.0f}")
    print(f"mp_pool_tasks_per_s  {result['mp_pool_tasks_per_s']:12.0f}")
    print(f"pool_vs_mp_pool      {result['pool_vs_mp_pool']:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
