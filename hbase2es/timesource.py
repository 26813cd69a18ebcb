"""How a slice of time becomes HBase scans, and how a row's time is read back.

Pure: the slice job asks a time source for the scans of a slice and, for each row the
scans return, the row's time; a row belongs to slice ``[start, end)`` when that time
falls inside it. The cell source is here; row-key and column sources plug in beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .timewindow import Slice


@dataclass(frozen=True)
class ScanSpec:
    """Arguments of one HBase scan: a key range and the Thrift1 upper time bound."""

    row_start: bytes = b""
    row_stop: bytes = b""  # exclusive; empty means to the end of the table
    timestamp: int | None = None  # cells strictly older than this
    # Cells at or after this. Thrift1 cannot send it (the slice job filters rows in the
    # client instead); a reader that can (Thrift2's time range) applies it on the server.
    min_timestamp: int | None = None
    filter: bytes | None = None  # HBase filter language

    def scan_kwargs(self) -> dict:
        """Keyword arguments for a reader's ``scan``."""
        return {"row_start": self.row_start, "row_stop": self.row_stop,
                "timestamp": self.timestamp, "min_timestamp": self.min_timestamp,
                "filter": self.filter}


class CellTimeSource:
    """Row time = the newest cell timestamp older than the slice end.

    Thrift1 takes only an upper bound (``timestamp=end``: cells with ts < end), so the
    server returns, per row, each column's newest value before the end; the lower bound
    is applied to the row's newest cell here. A row updated in a later slice is thus
    exported by that slice too, with its newer state and a higher version.
    """

    name = "cell"
    description = "cell timestamps (Thrift1: end bound on the server, start bound in the client)"

    def scans(self, slice_: Slice) -> list[ScanSpec]:
        return [ScanSpec(timestamp=slice_.end_ms, min_timestamp=slice_.start_ms)]

    @staticmethod
    def row_time(row_key: bytes, values: dict[bytes, bytes], newest_cell_ms: int) -> int:
        return newest_cell_ms


def time_source(name: str) -> CellTimeSource:
    """The time source named by ``[window] time_source``."""
    if name == "cell":
        return CellTimeSource()
    raise ValueError(f"unknown time source {name!r}")
