"""A parent process for test_pool.py's parent-death tests.

Usage: python tests/pool_parent.py START_METHOD

Runs long tasks on a 2-worker pool, prints "PIDS <pid> <pid>" once both
workers have started a task, and on SIGTERM asks the pool to stop; after run()
ends it prints "OUTCOMES <status>..." and exits.
"""

import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from hbase2es.pool import Pool, Started  # noqa: E402

import pool_tasks  # noqa: E402


def main(start_method: str) -> None:
    with Pool(2, start_method=start_method, grace_seconds=1.0) as pool:
        signal.signal(signal.SIGTERM, lambda signum, frame: pool.request_stop())
        started = set()

        def on_event(event):
            if isinstance(event, Started):
                started.add(event.pid)
                if len(started) == 2:
                    print("PIDS", *sorted(started), flush=True)

        tasks = [(i, 60.0) for i in range(6)]
        statuses = [o.status for o in pool.run(pool_tasks.sleep_echo, tasks, on_event)]
        print("OUTCOMES", *statuses, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
