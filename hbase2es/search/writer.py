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

One document must not take its bulk down. ``index()`` checks each document for what the
engines validate per request (``chunking.document_problem``: id over 512 bytes, a version
out of range) and never sends one that would fail: it fails alone, with its chunk. A bulk
refused as a whole with 400 or 413 anyway is cut in halves, and the halves again, until
the documents the refusal is about are alone; each of those fails with the refusal's
error, the others are sent as usual. Other whole-request 4xx (401/403 credentials, 404,
405, 406 wrong client or endpoint) are about the request, not a document: they are raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..backoff import Backoff
from ..errors import UnavailableError
from . import engine
from .chunking import Chunk, Chunker, create_action, document_problem, index_action

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
# A whole bulk refused with these may be refused for one of its documents: split it.
SPLIT_STATUSES = frozenset({400, 413})
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
    status: int  # 0: never sent (index() found what the engine would refuse)
    error_type: str
    reason: str
    item: bytes  # the two NDJSON lines that were sent


class BulkWriter:
    """Buffers NDJSON items and sends them in bulk requests bounded by count and bytes."""

    def __init__(self, client: engine.Client, *, max_docs: int, max_bytes: int,
                 retry_seconds: float = 300.0,
                 on_failure: Callable[[Rejection], None] | None = None,
                 on_settled: Callable[[object], None] | None = None,
                 send: Callable[[bytes], dict] | None = None,
                 on_written: Callable[[list[bytes]], None] | None = None,

                 around_send: Callable[[Callable[[bytes], dict]], Callable[[bytes], dict]]
                 | None = None,
                 group_of: Callable[[object], object] | None = None, create: bool = False):
        self.client = client
        self.create = create  # a data stream: op_type create, no version (chunking)
        self.chunker = Chunker(max_docs, max_bytes)
        self.retry_seconds = retry_seconds
        self.on_failure = on_failure or (lambda rejection: None)
        # Called with the key of a chunk's last item once every item of the chunk is
        # indexed, stale or failed; chunks go out in order, so so is everything before it.
        self.on_settled = on_settled or (lambda key: None)
        # Called with the items of a chunk that were written (2xx), after every item of the
        # chunk is settled and before on_settled: the place to act on what was written.
        self.on_written = on_written
        # The one HTTP call; a test may wrap it to inject per-item rejections.
        self.send = send or (lambda payload: engine.bulk(client, payload,
                                                            filter_path=FILTER_PATH))
        # The run's rate and concurrency limits (run.limiter) wrap the call, retries included.
        if around_send is not None:
            self.send = around_send(self.send)
        self.counts = BulkCounts()
        # Counts per group as well (``group_of(key)``): one writer for several slices.
        self.group_of = group_of
        self.groups: dict[object, BulkCounts] = {}

    def group(self, name: object) -> BulkCounts:
        """The counts of one group (``group_of``); zero until a document of it settles."""
        return self.groups.setdefault(name, BulkCounts())

    def _tally(self, key: object, outcome: str) -> None:
        setattr(self.counts, outcome, getattr(self.counts, outcome) + 1)
        if self.group_of is not None:
            counts = self.group(self.group_of(key))
            setattr(counts, outcome, getattr(counts, outcome) + 1)

    def index(self, index: str, doc_id: str, version: int, document: dict, key: object,
              routing: str | None = None, pipeline: str | None = None) -> None:
        """Add one document, unless the engine would refuse its action: then it fails
        (``on_failure``, status 0) when the chunk it sits in settles, and is never sent."""
        if self.create:
            item, problem = (create_action(index, doc_id, document, routing, pipeline),
                             document_problem(doc_id, None))
        else:
            item, problem = (index_action(index, doc_id, version, document, routing, pipeline),
                             document_problem(doc_id, version))
        if problem is None:  # self.add, without a second call per document
            full = self.chunker.add(item, key)
        else:
            full = self.chunker.refuse(Rejection(key, 0, problem[0], problem[1], item), key)
        if full is not None:
            self._send_chunk(full)

    def add(self, item: bytes, key: object) -> None:
        """Add a ready NDJSON item (sent as it is, not checked)."""
        full = self.chunker.add(item, key)
        if full is not None:
            self._send_chunk(full)

    def flush(self) -> None:
        rest = self.chunker.drain()
        if rest is not None:
            self._send_chunk(rest)

    def _send_chunk(self, chunk: Chunk) -> None:
        # One deadline for the chunk, shared by whole-request retries and item retries.
        retry = BACKOFF.budget(seconds=self.retry_seconds)
        written: list[bytes] = []
        parts = [chunk] if chunk.items else []
        while parts:
            part = parts.pop()
            try:
                response = self._request(part, retry)
            except engine.API_ERRORS as exc:
                if engine.status_of(exc) not in SPLIT_STATUSES:
                    raise
                parts.extend(self._split(part, exc))
                continue
            again = self._settle(part, response, written)
            if again.items:
                if not retry.failed():
                    raise UnavailableError(
                        f"Elasticsearch kept refusing {len(again)} documents as busy for "
                        f"{self.retry_seconds:.0f}s")
                self.counts.retried += len(again)
                retry.wait()
                parts.append(again)
        for rejection in chunk.refused:
            self._fail(rejection)
        if written and self.on_written is not None:
            self.on_written(written)
        self.on_settled(chunk.last_key)

    def _split(self, part: Chunk, exc: BaseException) -> list[Chunk]:
        """The halves of a bulk refused as a whole (second half first: parts is a stack),
        or nothing when the refusal is about its only document, which then fails."""
        if len(part) > 1:
            first, second = part.halves()
            log.warning("a bulk of %d documents was refused as a whole (HTTP %s: %s); "
                        "sending it in halves to find the documents it is about", len(part),
                        engine.status_of(exc), engine.error_reason(exc)[:200])
            return [second, first]
        status = engine.status_of(exc) or 0
        self._fail(Rejection(part.keys[0], status, engine.error_type(exc) or f"HTTP {status}",
                             engine.error_reason(exc)[:1000], part.items[0]))
        return []

    def _fail(self, rejection: Rejection) -> None:
        self._tally(rejection.key, "failed")
        self.on_failure(rejection)

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

    def _settle(self, chunk: Chunk, response: dict, written: list[bytes]) -> Chunk:
        """Count a response's items, adding the written ones to ``written``; return the
        chunk of items to send again."""
        # Every document must be confirmed by its own item, even when "errors" is false.
        items = response.get("items") or ()
        if len(items) != len(chunk):
            raise UnavailableError(f"Elasticsearch answered {len(items)} items for a bulk of "
                                   f"{len(chunk)}")
        if not response.get("errors"):
            self.counts.indexed += len(chunk)
            if self.group_of is not None:
                for key in chunk.keys:
                    self.group(self.group_of(key)).indexed += 1
            written.extend(chunk.items)
            return Chunk()
        again = Chunk()
        for result, item, key in zip(items, chunk.items, chunk.keys):
            outcome = next(iter(result.values()))
            status = outcome.get("status", 0)
            if 200 <= status < 300:
                self._tally(key, "indexed")
                written.append(item)
            elif status == 409:
                self._tally(key, "stale")
            elif status in RETRY_STATUSES:
                again.add(item, key)
            else:
                error = outcome.get("error") or {}
                self._fail(Rejection(key, status, str(error.get("type", "")),
                                     str(error.get("reason", ""))[:1000], item))
        return again
