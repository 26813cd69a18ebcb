"""The source side: reading rows from HBase over its Thrift servers.

``open_reader`` gives the reader for the configured API (Thrift1 through happybase, or
Thrift2 with both time bounds on the server). Both share one base (``base``): the scan
loop that reopens after the last row key, backoff and closing. ``transport`` is the one
place a connection is made. ``choose_api`` settles ``api = "auto"`` once per run.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from thriftpy2.thrift import TException

from ..errors import Hbase2esError
from ..hbaseconfig import thrift2_address
from ..settings import HBaseSettings
from .base import ThriftReader, describe
from .thrift1 import Thrift1Reader

__all__ = ["ThriftReader", "Thrift1Reader", "Thrift2Reader", "choose_api", "describe_strategy",
           "open_reader", "thrift2_settings"]

log = logging.getLogger(__name__)

THRIFT1_CELL = ("Thrift1: each slice scans every row with a cell older than its end and "
                "keeps those whose newest such cell is in the slice")
THRIFT1_ONE_PASS = ("Thrift1 one pass: each task scans its key range once for a run of "
                    "consecutive slices and counts every row in the slice of its newest cell")


def open_reader(settings: HBaseSettings) -> ThriftReader:
    """The reader for the configured HBase API, connected and with its table checked.

    ``api = "auto"`` not settled by ``choose_api`` reads over Thrift1 at host:port.
    """
    if settings.api == "thrift2":
        from .thrift2 import Thrift2Reader  # its IDL is parsed only by who reads Thrift2

        return Thrift2Reader(settings)
    return Thrift1Reader(settings)


def thrift2_settings(settings: HBaseSettings) -> HBaseSettings:
    """The settings of the Thrift2 server at ``[hbase] thrift2`` (same transport and auth)."""
    host, port = thrift2_address(settings.thrift2)
    return replace(settings, host=host, port=port, api="thrift2")


def choose_api(settings: HBaseSettings, time_source: str) -> HBaseSettings:
    """``settings`` with ``api = "auto"`` settled to thrift1 or thrift2 for this run.

    auto probes one thing: the Thrift2 server at ``[hbase] thrift2``, when it is set and
    the slices are cell-time ones (the only source Thrift2's lower time bound helps). If
    it answers and has the table, the run reads through it; if not, one warning and
    Thrift1 at host:port. It never scans host:port for what it speaks: a Thrift2 server
    there without ``api = "thrift2"`` stays an error that names the setting.
    """
    if settings.api != "auto":
        return settings
    if time_source != "cell" or not settings.thrift2:
        return replace(settings, api="thrift1")
    from .thrift2 import Thrift2Reader  # see __getattr__

    thrift2 = thrift2_settings(settings)
    try:
        Thrift2Reader(thrift2).close()
    except (Hbase2esError, TException, OSError) as exc:
        log.warning("[hbase] thrift2 = %s did not answer (%s); reading over Thrift1 at %s:%d",
                    settings.thrift2, describe(exc), settings.host, settings.port)
        return replace(settings, api="thrift1")
    return thrift2


def describe_strategy(settings: HBaseSettings, source, one_pass: bool = False) -> str:
    """One line for `plan`: how the configured API reads a slice of this time source."""
    from .thrift2 import describe_strategy as thrift2_strategy  # see __getattr__

    api = settings.api
    if api == "auto" and source.name == "cell" and settings.thrift2:
        return (f"auto: {thrift2_strategy(source)} at {settings.thrift2}, if it answers; "
                f"else {THRIFT1_ONE_PASS if one_pass else THRIFT1_CELL}")
    if api == "thrift2":
        return thrift2_strategy(source)
    if source.name == "cell":
        return f"cell timestamps ({THRIFT1_ONE_PASS if one_pass else THRIFT1_CELL})"
    return source.description


def __getattr__(name: str):
    """``Thrift2Reader`` on first use: importing ``thrift2`` parses its IDL (~30 ms of
    CPU in every worker of a Thrift1 run otherwise)."""
    if name == "Thrift2Reader":
        from .thrift2 import Thrift2Reader

        return Thrift2Reader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
