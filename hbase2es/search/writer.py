"""Writing documents to Elasticsearch in bulk, retrying only what was rejected.

Per-document outcomes of a bulk request:
- 2xx: indexed;
- 409 version conflict: the index already holds a newer state of the row (``stale``,
  not an error: a later slice wrote it);
- 429 / 502 / 503 / 504: the node is busy; only these documents are sent again, with
  capped, jittered exponential backoff, until the deadline;
- anything else (mapping errors, 400s): failed, handed to ``on_failure`` (dead letters).
A whole request that fails with a connection error or a busy status is retried the same
way; past the deadline the slice fails with UnavailableError.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from elasticsearch import Elasticsearch

from ..backoff import Backoff
from ..errors import UnavailableError
from . import engine
from .chunking import Chunk, Chunker

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Full jitter: many workers retrying one busy cluster must not come back in step.
BACKOFF = Backoff(base_s=0.5, cap_s=30.0, jitter=1.0)
# Smaller responses: a bulk answer only needs each item's status and error.
FILTER_PATH = "errors,items.*.status,items.*.error.type,items.*.error.reason"


@dataclass
class BulkCounts:
    indexed: int = 0
    stale: int = 0
    failed: int = 0
    retried: int = 0  # document sends repeated after a busy answer
    requests: int = 0


@dataclass(frozen=True)
class Rejection:
    """A document Elasticsearch refused for good."""

    key: object  # what the caller passed to add(): row key and slice context
    status: int
    error_type: str
    reason: str
    item: bytes  # the two NDJSON lines that were sent


class BulkWriter:
    """Buffers NDJSON items and sends them in bulk requests bounded by count and bytes."""

    def __init__(self, client: Elasticsearch, *, max_docs: int, max_bytes: int,
                 retry_seconds: float = 300.0,
                 on_failure: Callable[[Rejection], None] | None = None,
                 on_settled: Callable[[object], None] | None = None,
                 send: Callable[[bytes], dict] | None = None,
                 around_send: Callable[[Callable[[bytes], dict]], Callable[[bytes], dict]]
                 | None = None):
        self.client = client
        self.chunker = Chunker(max_docs, max_bytes)
        self.retry_seconds = retry_seconds
        self.on_failure = on_failure or (lambda rejection: None)
        # Called with the key of a chunk's last item once every item of the chunk is
        # indexed, stale or failed; chunks go out in order, so so is everything before it.
        self.on_settled = on_settled or (lambda key: None)
        # The one HTTP call; a test may wrap it to inject per-item rejections.
        self.send = send or (lambda payload: engine.bulk(client, payload,
                                                            filter_path=FILTER_PATH))
        # The run's rate and concurrency limits (run.limiter) wrap the call, retries included.
        if around_send is not None:
            self.send = around_send(self.send)
        self.counts = BulkCounts()

    def add(self, item: bytes, key: object) -> None:
        full = self.chunker.add(item, key)
        if full is not None:
            self._send_chunk(full)

    def flush(self) -> None:
        rest = self.chunker.drain()
        if rest is not None:
            self._send_chunk(rest)

    def _send_chunk(self, chunk: Chunk) -> None:
        last_key = chunk.keys[-1]
        # One deadline for the chunk, shared by whole-request retries and item retries.
        retry = BACKOFF.budget(seconds=self.retry_seconds)
        while chunk.items:
            response = self._request(chunk, retry)
            chunk = self._settle(chunk, response)
            if chunk.items:
                if not retry.failed():
                    raise UnavailableError(
                        f"Elasticsearch kept refusing {len(chunk)} documents as busy for "
                        f"{self.retry_seconds:.0f}s")
                self.counts.retried += len(chunk)
                retry.wait()
        self.on_settled(last_key)

    def _request(self, chunk: Chunk, retry) -> dict:
        """One bulk request, retried whole while the cluster is unreachable or busy."""
        payload = chunk.payload()
        while True:
            try:
                self.counts.requests += 1
                return self.send(payload)
            except engine.CONNECTION_ERRORS as exc:
                cause = f"{type(exc).__name__}: {exc}"
            except engine.API_ERRORS as exc:
                status = engine.status_of(exc)
                if status not in RETRY_STATUSES:
                    raise
                cause = f"HTTP {status}"
            if not retry.failed():
                raise UnavailableError(f"Elasticsearch bulk failed for {self.retry_seconds:.0f}s; "
                                       f"last error: {cause[:300]}")
            delay = retry.next_delay()
            log.warning("bulk request failed (%s); retrying in %.1fs", cause[:200], delay)
            retry.wait(delay)

    def _settle(self, chunk: Chunk, response: dict) -> Chunk:
        """Count a response's items; return the chunk of items to send again."""
        # Every document must be confirmed by its own item, even when "errors" is false.
        items = response.get("items") or ()
        if len(items) != len(chunk):
            raise UnavailableError(f"Elasticsearch answered {len(items)} items for a bulk of "
                                   f"{len(chunk)}")
        if not response.get("errors"):
            self.counts.indexed += len(chunk)
            return Chunk()
        again = Chunk()
        for result, item, key in zip(items, chunk.items, chunk.keys):
            outcome = next(iter(result.values()))
            status = outcome.get("status", 0)
            if 200 <= status < 300:
                self.counts.indexed += 1
            elif status == 409:
                self.counts.stale += 1
            elif status in RETRY_STATUSES:
                again.add(item, key)
            else:
                error = outcome.get("error") or {}
                self.counts.failed += 1
                self.on_failure(Rejection(key, status, str(error.get("type", "")),
                                          str(error.get("reason", ""))[:1000], item))
        return again
