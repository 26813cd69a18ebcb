"""The source side: reading rows from HBase over its Thrift servers.

``open_reader`` gives the reader for the configured API (Thrift1 through happybase, or
Thrift2 with both time bounds on the server). Both share one base (``base``): the scan
loop that reopens after the last row key, backoff and closing. ``transport`` is the one
place a connection is made.
"""

from __future__ import annotations

from ..settings import HBaseSettings
from .base import ThriftReader
from .thrift1 import Thrift1Reader
from .thrift2 import Thrift2Reader
from .thrift2 import describe_strategy as _thrift2_strategy

__all__ = ["ThriftReader", "Thrift1Reader", "Thrift2Reader", "describe_strategy", "open_reader"]


def open_reader(settings: HBaseSettings) -> ThriftReader:
    """The reader for the configured HBase API, connected and with its table checked."""
    if settings.api == "thrift2":
        return Thrift2Reader(settings)
    return Thrift1Reader(settings)


def describe_strategy(settings: HBaseSettings, source) -> str:
    """One line for `plan`: how the configured API reads a slice of this time source."""
    if settings.api == "thrift2":
        return _thrift2_strategy(source)
    return source.description
