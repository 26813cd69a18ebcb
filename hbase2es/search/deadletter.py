"""The dead-letter file: one NDJSON line per row that could not become a document.

Every worker appends to the same file. Each record is one ``write`` on a descriptor
opened with O_APPEND, so lines from different processes never interleave.

A Spark task runs on another machine than the user, so it keeps its slice's dead letters
in a ``DeadLetterBatch`` that travels back to the driver in the task's result, and the
driver appends them to the one file the user named. A batch holds at most
``BATCH_MAX_RECORDS`` records and ``BATCH_MAX_BYTES`` bytes (a task result must stay
small); the records after that stay on the executor, in a file next to where the user's
would be there (or in its temp directory), and the report names that host and path.
"""

from __future__ import annotations

import base64
import os
import socket
import tempfile
from dataclasses import dataclass

import orjson

from ..timewindow import Slice, format_time

BATCH_MAX_RECORDS = 1000
BATCH_MAX_BYTES = 1 << 20  # 1 MiB of NDJSON


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


def _line(record: dict) -> bytes:
    return orjson.dumps(record) + b"\n"


class DeadLetterFile:
    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, record: dict) -> None:
        self.write_line(_line(record))

    def write_line(self, line: bytes) -> None:
        """Append one NDJSON line (ending in a newline) in one write."""
        os.write(self._fd, line)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True)
class ReturnedDeadLetters:
    """A batch as it crosses back to the driver: the lines, and what stayed behind."""

    lines: list[bytes]
    left_records: int = 0  # records past the cap, in left_path on left_host
    left_host: str = ""
    left_path: str = ""


class DeadLetterBatch:
    """One Spark task's dead letters, kept for the driver up to the cap, the rest in a file.

    Once a record does not fit, it and every later one go to the executor's file, so the
    driver's file holds a slice's first records in order and the executor's the rest.
    """

    def __init__(self, left_path: str, max_records: int = BATCH_MAX_RECORDS,
                 max_bytes: int = BATCH_MAX_BYTES):
        self.left_path = left_path
        self.max_records, self.max_bytes = max_records, max_bytes
        self.lines: list[bytes] = []
        self.size = 0
        self.left_records = 0
        self._left: DeadLetterFile | None = None

    def write(self, record: dict) -> None:
        line = _line(record)
        if self._left is None and (len(self.lines) < self.max_records
                                   and self.size + len(line) <= self.max_bytes):
            self.lines.append(line)
            self.size += len(line)
            return
        if self._left is None:
            self._left = DeadLetterFile(self.left_path)
        self._left.write_line(line)
        self.left_records += 1

    def close(self) -> None:
        if self._left is not None:
            self._left.close()

    def returned(self) -> ReturnedDeadLetters:
        if not self.left_records:
            return ReturnedDeadLetters(self.lines)
        return ReturnedDeadLetters(self.lines, self.left_records, socket.gethostname(),
                                   os.path.abspath(self.left_path))


def executor_path(user_path: str, run_id: str, position: int, attempt: int) -> str:
    """Where a task's dead letters past the cap go on its executor: beside the user's file
    when that directory exists there, else in the executor's temp directory; one name per
    run, task and attempt, so that runs and retries never mix their lines."""
    folder, name = os.path.split(os.path.abspath(user_path))
    if not os.path.isdir(folder):
        folder = tempfile.gettempdir()
    return os.path.join(folder, f"{name}.{run_id}-task{position}-attempt{attempt}")
