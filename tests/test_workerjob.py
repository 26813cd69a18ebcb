"""The worker process's job holder (hbase2es.run.workerjob), without servers."""

from __future__ import annotations

import gc

from hbase2es.run import logformat, workerjob
from hbase2es.settings import Settings


def test_open_job_collects_young_garbage_rarely(monkeypatch):
    # A scan's decoded rows are short-lived and acyclic; at the default young-generation
    # threshold the collector cost a quarter of a worker's read CPU (make bench).
    monkeypatch.setattr(logformat, "configure", lambda *args, **kwargs: None)
    before = gc.get_threshold()
    opened = []
    try:
        workerjob.open_job(lambda settings: opened.append(settings) or "job", Settings())
        assert gc.get_threshold() == (workerjob.YOUNG_GC_THRESHOLD, *before[1:])
        assert workerjob.YOUNG_GC_THRESHOLD > 100 * 700
        assert workerjob._job == "job"
    finally:
        gc.set_threshold(*before)
        workerjob._job = None
    assert len(opened) == 1
