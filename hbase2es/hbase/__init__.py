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

__all__ = ["ThriftReader", "Thrift1Reader", "Thrift2Reader", "describe_strategy", "open_reader"]


def open_reader(settings: HBaseSettings) -> ThriftReader:
    """The reader for the configured HBase API, connected and with its table checked."""
    if settings.api == "thrift2":
        from .thrift2 import Thrift2Reader  # its IDL is parsed only by who reads Thrift2

        return Thrift2Reader(settings)
    return Thrift1Reader(settings)


def describe_strategy(settings: HBaseSettings, source) -> str:
    """One line for `plan`: how the configured API reads a slice of this time source."""
    if settings.api == "thrift2":
        from .thrift2 import describe_strategy as thrift2_strategy

        return thrift2_strategy(source)
    return source.description


def __getattr__(name: str):
    """``Thrift2Reader`` on first use: importing ``thrift2`` parses its IDL (~30 ms of
    CPU in every worker of a Thrift1 run otherwise)."""
    if name == "Thrift2Reader":
        from .thrift2 import Thrift2Reader

        return Thrift2Reader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
