"""The one job object a pool worker process holds, for export, verify and reconcile alike.

The pool's initializer opens it (``open_job``: the worker's logging, then the job's own
HBase reader and Elasticsearch client), every task runs through it (``run_task``), and
the finalizer closes it. The job's class is passed by reference, so it pickles across
the pool's pipes; the object itself never leaves its process.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable

from ..settings import Settings
from . import logformat

_job = None  # this process's job: a SliceExporter, SliceVerifier or SliceReconciler

# A worker decodes ~12 GC-tracked objects per row (a Thrift1 row of 10 cells), all alive
# until its batch of 1000 is used. At CPython's default threshold of 700 the young
# generation is collected ~16 times per batch and the survivors are pushed on into full
# collections of the whole heap: about 8 us of CPU per row, a quarter of the read (a
# 50k-row scan, this machine, medians of 8: 35 against 27 us/row). Rows hold no cycles,
# so collecting ~140 times less often only lets the rare cyclic garbage wait longer.
YOUNG_GC_THRESHOLD = 100_000


def collect_garbage_as_a_worker() -> None:
    """Collect the young generation at YOUNG_GC_THRESHOLD (the bench's children use it too)."""
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])


def open_job(factory: Callable, settings: Settings, *args) -> None:
    """Pool initializer: log like the run (its format, with the worker's PID, secrets
    masked), then open ``factory(settings, *args)`` for this process."""
    global _job
    collect_garbage_as_a_worker()
    logformat.configure(logging.StreamHandler(), settings.run.log_level, settings.run.log_format,
                        secrets=logformat.secrets_of(settings.elasticsearch), worker=True)
    _job = factory(settings, *args)


def close_job() -> None:
    """Pool finalizer."""
    global _job
    if _job is not None:
        _job.close()
        _job = None


def run_task(task, progress: Callable[[dict], None]):
    """The function the pool runs for each task: the job's ``run``."""
    return _job.run(task, progress)


class JobResources:
    """What a job opens in its process: the HBase reader, the Elasticsearch client, and
    maybe a dead-letter file; ``close`` closes whichever were opened, never masking why."""

    reader = None
    client = None
    dead_letters = None

    def close(self) -> None:
        for resource in (self.reader, self.dead_letters, self.client):
            try:
                if resource is not None:
                    resource.close()
            except Exception:  # noqa: BLE001 - closing must not mask the cause
                pass
