"""The table's regions as key ranges, for splitting slices into region pieces."""

from __future__ import annotations

from collections.abc import Iterable

from ..settings import HBaseSettings
from . import open_reader


def region_bounds(regions: Iterable[dict]) -> list[tuple[bytes, bytes]]:
    """``(start_key, end_key)`` of happybase region dicts, in key order."""
    return sorted((r["start_key"], r["end_key"]) for r in regions)


def table_regions(settings: HBaseSettings) -> list[tuple[bytes, bytes]]:
    """The table's region key ranges ``(start, end)`` in key order (b"" = open end)."""
    reader = open_reader(settings)
    try:
        return region_bounds(reader.regions())
    finally:
        reader.close()
