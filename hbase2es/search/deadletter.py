"""The dead-letter file: one NDJSON line per row that could not become a document.

Every worker appends to the same file. Each record is one ``write`` on a descriptor
opened with O_APPEND, so lines from different processes never interleave.
"""

from __future__ import annotations

import base64
import os

import orjson

from ..timewindow import Slice, format_time


def dead_letter_record(row_key: bytes, slice_: Slice, stage: str, error_type: str, reason: str,
                       document: bytes | dict | None = None) -> dict:
    """What a user needs to find the row again and see why it failed."""
    record = {
        "row_key_b64": base64.b64encode(row_key).decode(),
        "slice": {"start": format_time(slice_.start_ms), "end": format_time(slice_.end_ms)},
        "stage": stage,
        "error_type": error_type,
        "reason": reason,
    }
    try:
        record["row_key"] = row_key.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if isinstance(document, bytes):
        # An NDJSON bulk item: the action line, then the document line.
        document = orjson.loads(document.split(b"\n", 2)[1])
    if document is not None:
        record["document"] = document
    return record


class DeadLetterFile:
    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, record: dict) -> None:
        os.write(self._fd, orjson.dumps(record) + b"\n")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
