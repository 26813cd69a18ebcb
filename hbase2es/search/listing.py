"""The documents of a time range, listed page by page for ``reconcile``.

A page holds each document's index, ``_id``, ``_version`` and ``_seq_no`` /
``_primary_term`` (what a delete needs to apply only to that revision), never its source.
Documents are chosen by the mapping's timestamp field, ``[start, end)`` as the slice.

How a listing walks the index, by engine:
- Elasticsearch 7.12 and later: a point-in-time and ``search_after`` on ``_shard_doc``,
  the order Elasticsearch recommends for walking a whole index (no sort field loaded);
- older 7.x (7.10 has no point-in-time without x-pack, and no ``_shard_doc``) and
  OpenSearch: a scroll in ``_doc`` order. Not ``search_after`` sorted on ``_id``: that
  loads the ``_id`` of every document of the shard into the heap (fielddata, refused by
  default since 8.0), which a large index cannot afford.
Both read one consistent view: documents deleted while the listing runs (by reconcile
itself) do not shift its pages.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


from ..timewindow import format_time
from . import engine

PAGE_SIZE = 1000
KEEP_ALIVE = "5m"  # between two pages; a page is checked against HBase in well under this
MAX_SAMPLE = 10_000  # index.max_result_window's default: one search returns at most this


@dataclass(frozen=True)
class Listed:
    """One listed document: where it is and which revision."""

    index: str
    id: str
    version: int | None
    seq_no: int
    primary_term: int
    routing: str | None = None  # what a delete of it must carry
    key_text: str | None = None  # the row-key field (the key of a "sha256:" or templated id)


def time_range_query(field: str, start_ms: int, end_ms: int) -> dict:
    """Documents whose ``field`` is in ``[start_ms, end_ms)``.

    ISO-8601 text, as the export writes the field: a date field parses it, and a keyword
    field compares it as text, which for this fixed-width form is time order too.
    """
    return {"range": {field: {"gte": format_time(start_ms), "lt": format_time(end_ms)}}}


def _listed(hit: dict, key_field: str | None = None) -> Listed:
    key = (hit.get("_source") or {}).get(key_field) if key_field else None
    return Listed(hit["_index"], hit["_id"], hit.get("_version"), hit["_seq_no"],
                  hit["_primary_term"], hit.get("_routing"), key if isinstance(key, str) else None)


def _request(query: dict, size: int, key_field: str | None) -> dict:
    return {"query": query, "size": size, "_source": [key_field] if key_field else False,
            "version": True, "seq_no_primary_term": True}


def walks_with_point_in_time(client: engine.Client) -> bool:
    """Whether the engine offers a point-in-time with ``_shard_doc`` (Elasticsearch 7.12+)."""
    found = client.engine
    if found.is_opensearch:
        return False
    try:
        major, minor = (int(x) for x in found.version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (7, 12)


def document_pages(client: engine.Client, names: list[str], query: dict, *,
                   page_size: int = PAGE_SIZE, point_in_time: bool = False,
                   key_field: str | None = None) -> Iterator[list[Listed]]:
    """Every document of the indices ``names`` that ``query`` selects, a page at a time;
    ``key_field`` of each source is read too (the only source field read).

    Indices that do not exist are skipped. The listing's server-side context is closed
    when the generator ends, also early.
    """
    index = ",".join(names)
    request = _request(query, page_size, key_field)
    pit = engine.open_point_in_time(client, index, KEEP_ALIVE) if point_in_time else None
    if pit is not None:
        yield from _pit_pages(client, pit, request, key_field)
    else:
        yield from _scroll_pages(client, index, request, key_field)


def _pit_pages(client: engine.Client, pit: str, request: dict, key_field: str | None
               ) -> Iterator[list[Listed]]:
    request["sort"] = [{"_shard_doc": "asc"}]
    try:
        while True:
            request["pit"] = {"id": pit, "keep_alive": KEEP_ALIVE}
            response = engine.search(client, None, request)
            pit = response.get("pit_id", pit)  # the id may change from one page to the next
            hits = response["hits"]["hits"]
            if not hits:
                return
            yield [_listed(hit, key_field) for hit in hits]
            request["search_after"] = hits[-1]["sort"]
    finally:
        engine.close_point_in_time(client, pit)


def _scroll_pages(client: engine.Client, index: str, request: dict, key_field: str | None
                  ) -> Iterator[list[Listed]]:
    request["sort"] = ["_doc"]
    response = engine.search(client, index, request, scroll=KEEP_ALIVE)
    scroll_id = response.get("_scroll_id")
    try:
        while True:
            hits = response["hits"]["hits"]
            if not hits:
                return
            yield [_listed(hit, key_field) for hit in hits]
            response = engine.scroll(client, scroll_id, KEEP_ALIVE)
            scroll_id = response.get("_scroll_id", scroll_id)
    finally:
        if scroll_id:
            engine.clear_scroll(client, scroll_id)


def random_documents(client: engine.Client, names: list[str], query: dict, count: int,
                     rng: random.Random | None = None, key_field: str | None = None
                     ) -> list[Listed]:
    """Up to ``count`` documents (at most MAX_SAMPLE) that ``query`` selects, drawn at
    random: a fresh seed each call, so two runs check different documents."""
    seed = (rng or random.Random()).randrange(2**31)
    scored = {"function_score": {"query": query,
                                 "random_score": {"seed": seed, "field": "_seq_no"}}}
    response = engine.search(client, ",".join(names),
                             _request(scored, min(count, MAX_SAMPLE), key_field))
    return [_listed(hit, key_field) for hit in response["hits"]["hits"]]
