"""Bulk request bodies: NDJSON action lines and chunks bounded by documents AND bytes.

Pure: no client, no network. Each document is serialized once, here; a retry resends
the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import orjson


@lru_cache(maxsize=1024)
def _header_prefix(index: str) -> bytes:
    return b'{"index":{"_index":' + orjson.dumps(index) + b',"_id":'


def index_action(index: str, doc_id: str, version: int, document: dict) -> bytes:
    """The two NDJSON lines that index one document with an external version.

    ``external_gte`` lets a re-run write the same version again (idempotent) while a
    lower version, an older state of the row, is refused with a 409.
    """
    return b"".join((
        _header_prefix(index), orjson.dumps(doc_id), b',"version":', str(version).encode(),
        b',"version_type":"external_gte"}}\n', orjson.dumps(document), b"\n",
    ))


@dataclass
class Chunk:
    """Documents waiting for one bulk request; ``keys`` holds what each item came from."""

    items: list[bytes] = field(default_factory=list)
    keys: list[object] = field(default_factory=list)
    size: int = 0

    def add(self, item: bytes, key: object) -> None:
        self.items.append(item)
        self.keys.append(key)
        self.size += len(item)

    def __len__(self) -> int:
        return len(self.items)

    def payload(self) -> bytes:
        return b"".join(self.items)


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
        if cur.items and (len(cur) >= self.max_docs or cur.size + len(item) > self.max_bytes):
            full, self.current = cur, Chunk()
        self.current.add(item, key)
        return full

    def drain(self) -> Chunk | None:
        """The partial chunk, if any, leaving the chunker empty."""
        cur, self.current = self.current, Chunk()
        return cur if cur.items else None
