"""Deletes as bulk actions: which rows are soft-deleted, and the NDJSON lines that delete.

Pure: no client, no network. Two kinds of delete reach the index:

- Soft deletes (``[mapping] delete_when``): a row whose marker column matches becomes a
  ``delete`` of its document instead of an ``index``, versioned like every write of the
  export, so that an older state of the row cannot bring the document back;
- orphans (``hbase2es reconcile``): documents whose row is gone from HBase, deleted only
  if the document is still exactly the revision that was listed (``if_seq_no``).

Why a soft delete carries version ``row time + 1``. Every index action of the export has
version = row time with ``external_gte``. With the cell time source the marker cell is
the row's newest, so the deleted state is newer than every state before it. With the
row-key time source (and a time column the delete does not touch) the deleted state has
the SAME row time as the live state before it: a delete at version ``t`` would let an
``index`` of the live state at ``t``, still in flight from a run that read the row just
before it was marked, land after the delete (``external_gte`` accepts an equal version).
At ``t + 1`` the delete outranks every state written at or before the row's time, and a
state with a newer row time (cell source: any later write) still replaces it.

Elasticsearch remembers a deleted document's version for ``index.gc_deletes`` only (60 s
by default). ``tombstone = true`` indexes a small document instead, ``{"@deleted": true}``
plus the row time, at the same version: it never expires, so an older state is refused
for good; searches then filter ``@deleted``.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from .search.chunking import delete_action, index_action
from .timecodec import parse_bytes
from .timewindow import format_time

TOMBSTONE_FIELD = "@deleted"
# How a tombstone's document line starts: index_action serializes the dict in order.
_TOMBSTONE_START = b'{"' + TOMBSTONE_FIELD.encode() + b'":true'
_DELETE_START = b'{"delete":'
DELETE_WHEN_KEYS = ("column", "equals", "present", "tombstone")


@dataclass(frozen=True)
class DeleteRule:
    """``[mapping] delete_when``: the marker column, and the value that means deleted
    (None: the column being there at all means deleted)."""

    column: bytes
    equals: bytes | None = None
    tombstone: bool = False

    @property
    def family(self) -> bytes:
        return self.column.partition(b":")[0]

    def matches(self, values: dict[bytes, bytes]) -> bool:
        """True when the row (its cells as the scan returned them) is soft-deleted."""
        value = values.get(self.column)
        if value is None:
            return False
        return self.equals is None or value == self.equals

    def describe(self) -> str:
        column = self.column.decode("utf-8", "backslashreplace")
        test = "is present" if self.equals is None else f"equals {self.equals!r}"
        return f"{column} {test}" + (" (tombstone)" if self.tombstone else "")


def parse_delete_when(raw: object) -> DeleteRule:
    """``{ column = "f:q", equals = "1" }`` or ``{ column = "f:q", present = true }``
    (+ ``tombstone = true``) as a DeleteRule; ValueError says what is wrong."""
    shape = ('{ column = "family:qualifier", equals = "value" } or '
             '{ column = "family:qualifier", present = true }')
    if not isinstance(raw, dict):
        raise ValueError(f"must be a table {shape}, got {raw!r}")
    unknown = sorted(set(raw) - set(DELETE_WHEN_KEYS))
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; known keys: {', '.join(DELETE_WHEN_KEYS)}")
    column = raw.get("column")
    if not isinstance(column, str) or not column.partition(":")[0] or ":" not in column:
        raise ValueError(f"column must be \"family:qualifier\", got {column!r}")
    if ("equals" in raw) == ("present" in raw):
        raise ValueError(f"give exactly one of equals and present: {shape}")
    tombstone = raw.get("tombstone", False)
    if not isinstance(tombstone, bool):
        raise ValueError(f"tombstone must be true or false, got {tombstone!r}")
    if "present" in raw:
        if raw["present"] is not True:
            raise ValueError(f"present must be true (leave delete_when out to delete nothing), "
                             f"got {raw['present']!r}")
        return DeleteRule(column.encode(), None, tombstone)
    equals = raw["equals"]
    if not isinstance(equals, str):
        raise ValueError(f"equals must be text, or \"hex:...\" for bytes, got {equals!r}")
    return DeleteRule(column.encode(), parse_bytes(equals, "equals"), tombstone)


def delete_version(row_time_ms: int) -> int:
    """The external version of a soft delete: above every state at the row's time."""
    return row_time_ms + 1


def soft_delete_action(rule: DeleteRule, index: str, doc_id: str, row_time_ms: int,
                       timestamp_field: str, routing: str | None = None) -> bytes:
    """The bulk item for a soft-deleted row: a versioned delete, or a tombstone document
    (not sent through the ingest pipeline: it is no row's document)."""
    version = delete_version(row_time_ms)
    if rule.tombstone:
        return index_action(index, doc_id, version,
                            {TOMBSTONE_FIELD: True, timestamp_field: format_time(row_time_ms)},
                            routing)
    return delete_action(index, doc_id, version, routing)


def delete_if_unchanged(index: str, doc_id: str, seq_no: int, primary_term: int,
                        routing: str | None = None) -> bytes:
    """A delete that applies only to the revision that was listed (reconcile's orphans).

    Any write since (a re-created row exported meanwhile) changed ``_seq_no``, so this
    delete gets a 409 instead of removing the new document.
    """
    header = {"_index": index, "_id": doc_id, "if_seq_no": seq_no,
              "if_primary_term": primary_term}
    if routing is not None:
        header["routing"] = routing
    return orjson.dumps({"delete": header}) + b"\n"


def item_kinds(payload: bytes) -> list[str]:
    """``index``, ``delete`` or ``tombstone`` for each item of a bulk body, in order."""
    lines = payload.split(b"\n")
    kinds = []
    i = 0
    while i < len(lines) - 1:  # the body ends with a newline: the last piece is empty
        if lines[i].startswith(_DELETE_START):
            kinds.append("delete")
            i += 1
        else:
            kinds.append("tombstone" if lines[i + 1].startswith(_TOMBSTONE_START) else "index")
            i += 2
    return kinds


def settle_deletes(payload: bytes, response: dict) -> int:
    """How many items of this bulk deleted their document; a versioned delete's 404 is
    made a 200 in ``response``.

    A 404 means there was nothing to delete, but Elasticsearch recorded the delete's
    version all the same (an older write is refused), so it is done, not failed.
    """
    deleted = 0
    for kind, item in zip(item_kinds(payload), response.get("items") or ()):
        if kind == "index":
            continue
        outcome = next(iter(item.values()))
        status = outcome.get("status", 0)
        if kind == "delete" and status == 404:
            outcome["status"] = status = 200
        if 200 <= status < 300:
            deleted += 1
    return deleted


class DeleteTally:
    """Wraps a bulk writer's ``send``: counts the deletes that landed."""

    def __init__(self, send):
        self.send_bulk = send
        self.deleted = 0

    def __call__(self, payload: bytes) -> dict:
        response = self.send_bulk(payload)
        self.deleted += settle_deletes(payload, response)
        return response


def dead_letter_parts(item: bytes) -> tuple[str, bytes | dict]:
    """The stage (``index`` or ``delete``) and the document of a refused bulk item, as
    the dead-letter file records them (a delete has no document: its action instead)."""
    if item.startswith(_DELETE_START):
        return "delete", orjson.loads(item)
    second = item.split(b"\n", 2)[1]
    return ("delete" if second.startswith(_TOMBSTONE_START) else "index"), item
