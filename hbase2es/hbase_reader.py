"""Reading rows from HBase over Thrift1 (happybase's connection, our own scanner loop).

One reader per process. The scan generator closes its server-side scanner in
``finally`` even when the consumer stops early, and when a scanner lease expires
(slow bulk writes downstream) or the Thrift connection breaks (server restart), it
reconnects and reopens the scan just after the last row key it yielded, with the same
bounds, so no row is read twice or skipped.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Iterator

import happybase
from thriftpy2.protocol.exc import TProtocolException
from thriftpy2.thrift import TApplicationException, TClient, TException
from thriftpy2.transport import TBufferedTransport, TSocket, TTransportException

from .errors import UnavailableError
from .settings import HBaseSettings

from Hbase_thrift import (  # noqa: E402 - loaded by happybase
    Hbase, IllegalArgument, IOError as ThriftIOError, TScan)

log = logging.getLogger(__name__)

# How long a scan waits for a restarting Thrift server before the slice fails.
RECONNECT_ATTEMPTS = 8
RECONNECT_BASE_S = 0.5
RECONNECT_CAP_S = 8.0
PROBE_TIMEOUT_MS = 10_000


class ScannerExpired(Exception):
    """The Thrift server no longer knows the scanner id (it was idle too long)."""


# Errors after which reopening the scan from the last key can succeed.
RECOVERABLE = (TTransportException, ThriftIOError, OSError, socket.timeout, EOFError,
               ScannerExpired)


class ThriftReader:
    """What both Thrift readers share: connect at once, close, and back off after faults.

    A subclass names its API, opens one connection (``_new_connection``), checks the
    table with a short-timeout probe (``_check_table``) and lists what it can recover
    from (``RECOVERABLE``).
    """

    API = "HBase Thrift server"
    RECOVERABLE: tuple[type[BaseException], ...] = RECOVERABLE

    def __init__(self, settings: HBaseSettings):
        self.settings = settings
        self.table = settings.table.encode()
        self.rows_read = 0  # every row the server returned, exported or not
        self._conn = None
        self.connect(check_table=True)

    @property
    def where(self) -> str:
        return f"{self.API} {self.settings.host}:{self.settings.port}"

    def _new_connection(self, timeout_ms: int):
        raise NotImplementedError

    def _check_table(self) -> None:
        raise NotImplementedError

    def _open(self) -> None:
        """Open a fresh connection; raw Thrift/socket errors propagate."""
        self.close()
        self._conn = self._new_connection(self.settings.timeout_ms)

    def connect(self, check_table: bool = False) -> None:
        """Open a connection, turning failures into one clear UnavailableError."""
        try:
            if check_table:
                self._check_table()
            self._open()
        except UnavailableError:
            self.close()
            raise
        except (TTransportException, OSError) as exc:
            self.close()
            raise UnavailableError(f"cannot reach {self.where}: {_describe(exc)}") from None

    def _mismatch(self, exc: BaseException) -> UnavailableError:
        # A buffered client talking to a framed server (or binary to compact) waits for
        # an answer that never comes, reads garbage or sees the server hang up: the
        # server never says which, so name both settings.
        s = self.settings
        return UnavailableError(
            f"{self.where} accepted the connection but did not answer in Thrift "
            f"{s.transport}/{s.protocol} ({_describe(exc)}): check [hbase] transport and "
            f"protocol against the server's -f (framed) / -c (compact) flags")

    def _missing_table(self) -> UnavailableError:
        return UnavailableError(f"HBase table {self.settings.table!r} does not exist on "
                                f"{self.where}")

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken socket must not mask the cause
                pass
            self._conn = None

    def _back_off(self, exc: BaseException, failures: int, last: bytes | None) -> None:
        """After the ``failures``-th fault in a row: wait, drop the connection, or give up.

        The caller reopens its scan just after ``last`` at the top of its loop; a
        refused reconnection counts as one more failure.
        """
        if failures > RECONNECT_ATTEMPTS:
            raise UnavailableError(
                f"{self.API} scan of {self.settings.table!r} failed {failures} times in a "
                f"row, last: {_describe(exc)}") from None
        delay = min(RECONNECT_CAP_S, RECONNECT_BASE_S * 2 ** (failures - 1))
        log.warning("%s scan interrupted after row %r (%s); reopening in %.1fs",
                    self.API, last, _describe(exc), delay)
        time.sleep(delay * (0.5 + random.random() / 2))
        self.close()


# A scanner batch of 1000 rows is about a megabyte; thriftpy2's buffered transport fills
# its default 4 KiB read buffer with one Python-level recv() per 4 KiB. 64 KiB cut the
# client CPU of a scan by ~13% (make bench, issue 8).
READ_BUFFER_BYTES = 64 * 1024


def _widen_read_buffer(conn: happybase.Connection) -> None:
    """Give a not yet opened buffered connection a larger read buffer (framed: unchanged)."""
    if conn._transport_class is not TBufferedTransport:
        return
    socket_ = TSocket(host=conn.host, port=conn.port, socket_timeout=conn.timeout)
    conn.transport = TBufferedTransport(socket_, buf_size=READ_BUFFER_BYTES)
    conn.client = TClient(Hbase, conn._protocol_class(conn.transport, decode_response=False))


class HBaseReader(ThriftReader):
    """A Thrift1 connection (happybase) to one table, opened at once so a typo fails now."""

    def _new_connection(self, timeout_ms: int) -> happybase.Connection:
        s = self.settings
        conn = happybase.Connection(s.host, s.port, timeout=timeout_ms, autoconnect=False,
                                    transport=s.transport, protocol=s.protocol)
        _widen_read_buffer(conn)
        conn.open()
        return conn

    def _check_table(self) -> None:
        """Probe with a short timeout: a transport/protocol mismatch shows up as silence."""
        probe = self._new_connection(min(self.settings.timeout_ms, PROBE_TIMEOUT_MS))
        try:
            try:
                tables = probe.tables()
            except TTransportException as exc:
                # Connected, then hung up on at the first call: a binary server drops a
                # compact client this way, which is a mismatch, not an unreachable server.
                raise TProtocolException(message=str(exc)) from None
        except (TimeoutError, TProtocolException, TApplicationException, EOFError) as exc:
            raise self._mismatch(exc) from None
        finally:
            probe.close()
        if self.table not in tables:
            raise self._missing_table()

    def regions(self) -> list[dict]:
        return self._conn.table(self.table).regions()

    def scan(self, *, row_start: bytes = b"", row_stop: bytes = b"", timestamp: int | None = None,
             min_timestamp: int | None = None, columns: list[bytes] | None = None,
             filter: bytes | None = None) -> Iterator[tuple[bytes, dict[bytes, bytes], int]]:
        """Yield ``(row key, {column: value}, newest cell timestamp)`` in key order.

        ``timestamp`` is Thrift1's only time bound: cells strictly older than it.
        ``min_timestamp`` cannot be sent over Thrift1; the caller filters rows by it.
        """
        last: bytes | None = None
        failures = 0
        batch = self.settings.batch_size
        while True:
            start = row_start if last is None else last + b"\x00"  # the key right after last
            scan_id = None
            try:
                if self._conn is None:
                    self._open()
                client = self._conn.client
                scan = TScan(startRow=start or None, stopRow=row_stop or None, timestamp=timestamp,
                             columns=columns, caching=batch, filterString=filter)
                scan_id = client.scannerOpenWithScan(self.table, scan, {})
                while True:
                    try:
                        items = client.scannerGetList(scan_id, batch)
                    except IllegalArgument as exc:
                        # HBase 2's Thrift1 server drops a scanner left idle for twice its
                        # hbase.client.scanner.timeout.period, then calls its id invalid.
                        # (A region server lease expiry never shows: the HBase client in
                        # the Thrift server reopens the region scanner by itself.)
                        raise ScannerExpired(_describe(exc)) from None
                    if not items:
                        return
                    self.rows_read += len(items)
                    for item in items:
                        values = {}
                        newest = 0
                        for name, cell in item.columns.items():
                            values[name] = cell.value
                            if cell.timestamp > newest:
                                newest = cell.timestamp
                        yield item.row, values, newest
                        last = item.row
                    failures = 0  # a batch went through: the next fault gets a fresh budget
            except RECOVERABLE as exc:
                scan_id = None  # the server forgot it (lease) or the socket is gone
                failures += 1
                self._back_off(exc, failures, last)
            finally:
                if scan_id is not None:
                    _close_scanner(self._conn, scan_id)


def open_reader(settings: HBaseSettings) -> HBaseReader:
    """The reader for the configured HBase API, connected and with its table checked."""
    if settings.api == "thrift2":
        from .thrift2_reader import Thrift2Reader  # imports this module: load it late

        return Thrift2Reader(settings)
    return HBaseReader(settings)


def describe_strategy(settings: HBaseSettings, source) -> str:
    """One line for `plan`: how the configured API reads a slice of this time source."""
    if settings.api == "thrift2":
        from .thrift2_reader import describe_strategy as thrift2_strategy

        return thrift2_strategy(source)
    return source.description


def _close_scanner(conn, scan_id: int) -> None:
    try:
        conn.client.scannerClose(scan_id)
    except (TException, OSError, EOFError, AttributeError):
        pass  # an expired or lost scanner is already gone on the server


def _describe(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
