"""Bulk request bodies: NDJSON action lines and chunks bounded by documents AND bytes.

Pure: no client, no network. Each document is serialized once, here; a retry resends
the same bytes.

Elasticsearch (7.x to 9.x) and OpenSearch validate a few fields of every action before
they run any of a bulk, and refuse the WHOLE request (400
``action_request_validation_exception``) when one action fails: an ``_id`` longer than
512 bytes of UTF-8, a version an external version type does not allow (negative), or
one that is not a long. ``document_problem`` checks exactly those, so one such row never
reaches a request; an empty ``_id`` is refused per item only, but it is checked too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import orjson

from ..mapping import MAX_ID_BYTES


@lru_cache(maxsize=1024)
def _header_prefix(index: str) -> bytes:
    return b'{"index":{"_index":' + orjson.dumps(index) + b',"_id":'


MAX_VERSION = 2**63 - 1  # a Java long


def document_problem(doc_id: str, version: int | None) -> tuple[str, str] | None:
    """``(error type, reason)`` when an engine would refuse this document's action, or None;
    ``version`` None for an action that sends none (``create_action``)."""
    if (version is None or 0 <= version <= MAX_VERSION) and 0 < len(doc_id) <= MAX_ID_BYTES // 4:
        return None  # the common case, checked per document: 4 bytes of UTF-8 at most a char
    if not doc_id:
        return "document_id_empty", "the document id is empty (not sent)"
    size = len(doc_id.encode("utf-8"))
    if size > MAX_ID_BYTES:
        return ("document_id_too_long",
                f"the document id is {size} bytes of UTF-8; Elasticsearch allows at most "
                f"{MAX_ID_BYTES} (not sent; a bulk holding it would be refused as a whole)")
    if version is not None and not 0 <= version <= MAX_VERSION:
        return ("version_out_of_range",
                f"the row time {version} ms is not a valid external version (0 to "
                f"{MAX_VERSION}); rows before 1970 cannot be versioned (not sent)")
    return None


def _extra(routing: str | None, pipeline: str | None = None) -> bytes:
    """The optional ``routing`` and ``pipeline`` members of an action (issue 17)."""
    out = b""
    if routing is not None:
        out = b',"routing":' + orjson.dumps(routing)
    if pipeline is not None:
        out += b',"pipeline":' + orjson.dumps(pipeline)
    return out


def index_action(index: str, doc_id: str, version: int, document: dict,
                 routing: str | None = None, pipeline: str | None = None) -> bytes:
    """The two NDJSON lines that index one document with an external version.

    ``external_gte`` lets a re-run write the same version again (idempotent) while a
    lower version, an older state of the row, is refused with a 409.
    """
    return b"".join((
        _header_prefix(index), orjson.dumps(doc_id), b',"version":', str(version).encode(),
        b',"version_type":"external_gte"', _extra(routing, pipeline), b'}}\n',
        orjson.dumps(document), b"\n",
    ))


def create_action(index: str, doc_id: str, document: dict, routing: str | None = None,
                  pipeline: str | None = None) -> bytes:
    """The two NDJSON lines that add one document to a data stream, which accepts only
    ``op_type: create`` and no external version: the row key as ``_id`` makes the
    backing index that takes writes refuse a second copy (409), a later one cannot."""
    return b"".join((
        b'{"create":{"_index":', orjson.dumps(index), b',"_id":', orjson.dumps(doc_id),
        _extra(routing, pipeline), b"}}\n", orjson.dumps(document), b"\n",
    ))


def delete_action(index: str, doc_id: str, version: int, routing: str | None = None) -> bytes:
    """The NDJSON line that deletes one document unless it holds a version above ``version``.

    With ``external_gte`` a copy written meanwhile with a newer version is kept (409).
    """
    return b"".join((
        b'{"delete":{"_index":', orjson.dumps(index), b',"_id":', orjson.dumps(doc_id),
        b',"version":', str(version).encode(), b',"version_type":"external_gte"',
        _extra(routing), b'}}\n'))


@dataclass
class Chunk:
    """Documents waiting for one bulk request; ``keys`` holds what each item came from.

    ``refused`` holds documents of the same stretch of rows that were never sent (their
    action would be refused); they settle with the chunk, so a checkpoint never counts
    a row before the rows ahead of it are settled. ``last_key`` is the key of the last
    document added, sent or not.
    """

    items: list[bytes] = field(default_factory=list)
    keys: list[object] = field(default_factory=list)
    size: int = 0
    refused: list = field(default_factory=list)
    last_key: object = None

    def add(self, item: bytes, key: object) -> None:
        self.items.append(item)
        self.keys.append(key)
        self.size += len(item)
        self.last_key = key

    def refuse(self, refusal, key: object) -> None:
        self.refused.append(refusal)
        self.last_key = key

    def __len__(self) -> int:
        return len(self.items)

    def documents(self) -> int:
        """Documents in the chunk, sent or not."""
        return len(self.items) + len(self.refused)

    def payload(self) -> bytes:
        return b"".join(self.items)

    def halves(self) -> tuple["Chunk", "Chunk"]:
        """The items split in two (to find which one a whole-request rejection is about)."""
        middle = len(self.items) // 2
        first, second = Chunk(), Chunk()
        for part, items, keys in ((first, self.items[:middle], self.keys[:middle]),
                                  (second, self.items[middle:], self.keys[middle:])):
            for item, key in zip(items, keys):
                part.add(item, key)
        return first, second


class Chunker:
    """Collects items and hands back a full chunk when adding one more would exceed a bound."""

    def __init__(self, max_docs: int, max_bytes: int):
        if max_docs < 1 or max_bytes < 1:
            raise ValueError("bulk bounds must be positive")
        self.max_docs = max_docs
        self.max_bytes = max_bytes
        self.current = Chunk()

    def add(self, item: bytes, key: object) -> Chunk | None:
        """Add one item; return the chunk to send first when this item would not fit."""
        full = None
        cur = self.current
        documents = len(cur.items) + len(cur.refused)  # cur.documents(), once per item
        if documents and (documents >= self.max_docs or cur.size + len(item) > self.max_bytes):
            full, self.current = cur, Chunk()
        self.current.add(item, key)
        return full

    def refuse(self, refusal, key: object) -> Chunk | None:
        """Add a document that is not to be sent; return a full chunk to send first.

        Refused documents count against ``max_docs`` so that a long run of them still
        settles (and checkpoints) every ``max_docs`` documents.
        """
        full = None
        if self.current.documents() >= self.max_docs:
            full, self.current = self.current, Chunk()
        self.current.refuse(refusal, key)
        return full

    def drain(self) -> Chunk | None:
        """The partial chunk, if any, leaving the chunker empty."""
        cur, self.current = self.current, Chunk()
        return cur if cur.documents() else None
