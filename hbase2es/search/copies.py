"""One document per row across the indices of a time-based index template.

Why copies happen. With the cell or column time source and a template such as
``x-{time:%Y.%m.%d}``, a row's time can change: written on 11-01 and updated on 11-02,
its document goes to x-2026.11.01 first and to x-2026.11.02 later. Nothing in
Elasticsearch ties the two, so both would stay. (A row-key time never changes for a key,
and a fixed index name has one place per id: neither can have copies.)

The rule. Of all copies of an id in the indices the template produces, the one with the
highest ``_version`` is the document: versions are row times, so it holds the newest
state. Equal versions (only possible after the template or zone changed) go to the
greatest index name. Every other copy is deleted.

How, after each bulk (``CopyRemover.after_bulk``, called with the items it wrote):
1. refresh the indices the bulk wrote to, so that its documents are visible to searches;
2. one ``ids`` search over the template's wildcard (``_source: false``, ``version:
   true``), keeping only hits in indices the template produces (``x-archive`` matches
   ``x-*`` but is not ours and is never touched);
3. one bulk delete of every copy but the newest, each with ``version`` = the newest
   copy's version and ``version_type = external_gte``.

Why slices running side by side still end with one document in its newest state:
- Each bulk runs write, refresh, search, in that order. Of two bulks that wrote copies of
  one id, the one whose search comes last searches after the other's refresh, which came
  after the other's write: it sees both copies (and, by the same argument, every copy
  written before). So some search sees all the copies at once and deletes all but one.
- No delete removes the newest state. A delete carries the highest version its search
  saw, and ``external_gte`` refuses (409, counted as ``conflicts``) to delete a copy whose
  version is above it, that is, a copy rewritten with a newer state after that search;
  that newer write's own bulk searches again later. A copy is deleted only when a copy at
  least as new exists in the same view, and the tie rule is the same in every view, so two
  bulks never delete each other's keeper.
- A deleted copy leaves a tombstone at the newest version for ``index.gc_deletes`` (60 s):
  a slice that writes the older state there meanwhile gets a 409 (``stale``); after that
  the write lands again, and that bulk's own search deletes it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import orjson

from ..backoff import Backoff
from ..errors import UnavailableError
from ..indexname import IndexTemplate
from . import engine
from .chunking import delete_action

log = logging.getLogger(__name__)

SEARCH_SIZE = 10_000  # index.max_result_window by default: the most one search returns
BUSY_STATUSES = frozenset({429, 502, 503, 504})
BACKOFF = Backoff(base_s=0.5, cap_s=30.0, jitter=1.0)
FILTER_PATH = "errors,items.*.status,items.*.error.type,items.*.error.reason"


class Copy(NamedTuple):
    """One document of an id in one index."""

    index: str
    id: str
    version: int
    routing: str | None = None  # what a delete of it must carry


def newest_copies(copies: list[Copy]) -> dict[str, Copy]:
    """Per id, the copy that is the document: highest version, then greatest index name."""
    newest: dict[str, Copy] = {}
    for copy in copies:
        kept = newest.get(copy.id)
        if kept is None or (copy.version, copy.index) > (kept.version, kept.index):
            newest[copy.id] = copy
    return newest


def older_copies(copies: list[Copy]) -> list[tuple[Copy, int]]:
    """Every copy that is not its id's document, with the version to delete it at (the
    document's version: a copy written with a newer one meanwhile is then kept)."""
    newest = newest_copies(copies)
    return [(copy, newest[copy.id].version) for copy in copies if copy != newest[copy.id]]


def find_copies(client: engine.Client, template: IndexTemplate, ids: list[str]) -> list[Copy]:
    """Every copy of these ids in the indices the template produces (visible to search)."""
    if not ids:
        return []
    response = engine.find_ids(client, template.wildcard(), ids, size=SEARCH_SIZE)
    hits = response.get("hits", {})
    found = hits.get("hits") or []
    total = hits.get("total", {})
    total = total.get("value", 0) if isinstance(total, dict) else int(total or 0)
    if total > len(found) and len(ids) > 1:  # more copies than one answer holds
        middle = len(ids) // 2
        return (find_copies(client, template, ids[:middle])
                + find_copies(client, template, ids[middle:]))
    return [Copy(h["_index"], h["_id"], int(h["_version"]), h.get("_routing")) for h in found
            if template.matches(h["_index"])]


def _written(item: bytes) -> tuple[str, str]:
    """The index and id of an NDJSON index item."""
    action = orjson.loads(item[:item.index(b"\n")])
    header = next(iter(action.values()))
    return header["_index"], header["_id"]


class CopyRemover:
    """Deletes the older copies of what each bulk wrote; counts what it did."""

    def __init__(self, client: engine.Client, template: IndexTemplate,
                 retry_seconds: float = 300.0):
        self.client = client
        self.template = template
        self.retry_seconds = retry_seconds
        self.moved = 0  # older copies deleted
        self.conflicts = 0  # copies kept because a newer write reached them first (409)

    def after_bulk(self, items: list[bytes]) -> None:
        """The writer's on_written: refresh, search, delete (see the module docstring)."""
        written = [_written(item) for item in items]
        indices = sorted({index for index, _ in written})
        ids = sorted({doc_id for _, doc_id in written})
        self._call(lambda: engine.refresh(self.client, ",".join(indices)), "refresh")
        copies = self._call(lambda: find_copies(self.client, self.template, ids),
                            "search for copies")
        doomed = older_copies(copies)
        if doomed:
            payload = b"".join(delete_action(c.index, c.id, version, c.routing)
                               for c, version in doomed)
            response = self._call(lambda: engine.bulk(self.client, payload,
                                                      filter_path=FILTER_PATH), "delete copies")
            self._count(doomed, response)

    def _count(self, doomed: list[tuple[Copy, int]], response: dict) -> None:
        for (copy, _), result in zip(doomed, response.get("items") or ()):
            outcome = next(iter(result.values()))
            status = outcome.get("status", 0)
            if 200 <= status < 300:
                self.moved += 1
            elif status == 409:
                self.conflicts += 1
            elif status != 404:  # 404: another slice deleted it first
                # The copy stays; ``verify`` reports it, the next export of the row retries.
                error = outcome.get("error") or {}
                log.warning("could not delete the older copy %s/%s (HTTP %s %s: %s)",
                            copy.index, copy.id, status, error.get("type"),
                            str(error.get("reason"))[:200])

    def _call(self, request: Callable[[], object], what: str):
        """One request, retried while the cluster is unreachable or busy."""
        retry = BACKOFF.budget(seconds=self.retry_seconds)
        while True:
            try:
                return request()
            except engine.CONNECTION_ERRORS as exc:
                cause = f"{type(exc).__name__}: {exc}"
            except engine.API_ERRORS as exc:
                if engine.status_of(exc) not in BUSY_STATUSES:
                    raise
                cause = f"HTTP {engine.status_of(exc)}"
            if not retry.failed():
                raise UnavailableError(f"Elasticsearch {what} failed for "
                                       f"{self.retry_seconds:.0f}s; last error: {cause[:300]}")
            log.warning("%s failed (%s); retrying", what, cause[:200])
            retry.wait()
