"""Functions that spawned workers import by name, for test_throttle.py and
test_throttle_servers.py: processes sharing one RunLimiter, and the real slice job with
429s injected around the real bulk call. Keep it light: every worker imports it.
"""

from __future__ import annotations

import time

import orjson

from hbase2es.run import throttle
from hbase2es.search import engine

SEND_S = 0.3  # an injected bulk takes this long, so that concurrent bulks overlap
MAX_BULKS = 400  # slots of the per-bulk record


# --------------------------------------------------------------------------- no server


def take_docs(limiter, units: int, chunk: int, results) -> None:
    """Take ``units`` documents of the docs rate in chunks; put the times each chunk was
    granted on ``results``."""
    granted = []
    for _ in range(units // chunk):
        limiter.take(throttle.PAID_DOCS, limiter.docs_rate, chunk)
        granted.append(time.monotonic())
    results.put(granted)


def hold_a_permit_and_hang(limiter, ready) -> None:
    """Send a bulk that never ends (the test kills this process mid-bulk)."""
    def send(payload):
        ready.set()
        time.sleep(600)
        return {"items": []}

    limiter.around_send(send)(b'{"index":{}}\n{}\n')


# --------------------------------------------------------------------------- 429s


class Injection:
    """What the workers' injected bulk calls share: a record per bulk and per row.

    ``sent[i]``: how many times row i really reached Elasticsearch. Per bulk n (in the
    order they started): ``when[n]``, ``flying[n]`` (bulks in the injected call at its
    start, itself included), ``limit[n]`` (the limiter's limit then). The first
    ``reject_bulks`` bulks answer 429 for every document, without sending it.
    """

    def __init__(self, ctx, rows: int, reject_bulks: int):
        self.lock = ctx.Lock()
        self.sent = ctx.RawArray("i", rows)
        self.when = ctx.RawArray("d", MAX_BULKS)
        self.flying_at = ctx.RawArray("i", MAX_BULKS)
        self.limit_at = ctx.RawArray("i", MAX_BULKS)
        self.counts = ctx.RawArray("i", 3)  # bulks started, bulks flying now, items answered 429
        self.reject_bulks = reject_bulks

    def bulks(self) -> int:
        return min(self.counts[0], MAX_BULKS)


def open_injected_worker(settings, limiter, injection: Injection) -> None:
    """The pool initializer: the real open_worker, after wrapping the real bulk call."""
    from hbase2es.run import slicejob

    real = engine.bulk

    def bulk(client, payload: bytes, **kwargs):
        with injection.lock:
            n = injection.counts[0]
            injection.counts[0] += 1
            injection.counts[1] += 1
            if n < MAX_BULKS:
                injection.when[n] = time.monotonic()
                injection.flying_at[n] = injection.counts[1]
                injection.limit_at[n] = int(limiter._state[throttle.LIMIT])
        try:
            time.sleep(SEND_S)
            lines = payload.split(b"\n")
            ids = [orjson.loads(lines[i])["index"]["_id"] for i in range(0, len(lines) - 1, 2)]
            if n < injection.reject_bulks:
                with injection.lock:
                    injection.counts[2] += len(ids)
                return {"errors": True, "items": [
                    {"index": {"_id": i, "status": 429, "error": {
                        "type": "es_rejected_execution_exception", "reason": "injected"}}}
                    for i in ids]}
            response = real(client, payload, **kwargs)
            with injection.lock:
                for doc_id in ids:
                    injection.sent[int(doc_id.removeprefix("row"))] += 1
            return response
        finally:
            with injection.lock:
                injection.counts[1] -= 1

    engine.bulk = bulk
    slicejob.open_worker(settings, limiter)
