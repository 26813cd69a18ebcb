"""What both Thrift readers share: connect at once, the scan loop that reopens after the
last row key, backing off after faults, and closing.

One reader per process. ``scan`` is a generator that closes its server-side scanner in
``finally``, even when the consumer stops early. When a scanner lease expires (slow bulk
writes downstream) or the connection breaks (a server restart), it reconnects and reopens
the scan just after the last row key of the last batch it handed out, with the same
bounds, so no row is read twice or skipped. A reader subclass only says how to open a
scanner, fetch its next batch, and close it.
"""

from __future__ import annotations

import logging
import socket
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from thriftpy2.thrift import TException
from thriftpy2.transport import TTransportException

from ..backoff import Backoff
from ..errors import UnavailableError
from ..settings import HBaseSettings
from .kerberos import AuthError
from .sniff import HTTP, SASL, THRIFT, TLS, what_speaks
from .transport import where as transport_where

log = logging.getLogger(__name__)

# How long a scan waits for a restarting Thrift server before the slice fails: 8 retries,
# 0.5 s doubling to 8 s, never less than half of that (one reader waiting for one server
# does not need full jitter): about 20-40 s in all.
RECONNECT_ATTEMPTS = 8
RECONNECT_BACKOFF = Backoff(base_s=0.5, cap_s=8.0, jitter=0.5)
PROBE_TIMEOUT_MS = 10_000

# Faults after which reopening the scan from the last key can succeed; each API adds its own.
RECOVERABLE: tuple[type[BaseException], ...] = (TTransportException, OSError, socket.timeout,
                                                EOFError)

Row = tuple[bytes, dict[bytes, bytes], int]  # (row key, {column: value}, newest cell time)


@dataclass(frozen=True)
class ScanQuery:
    """What one scan asks for, apart from where in the key space it (re)starts."""

    row_stop: bytes = b""
    timestamp: int | None = None  # cells strictly older than this
    min_timestamp: int | None = None  # cells at or after this (Thrift2 only)
    columns: list[bytes] | None = None
    filter: bytes | None = None


class ThriftReader:
    """A connection to one table, opened at once so a typo in a host name fails now.

    A subclass names its API, opens one connection (``_new_connection``), checks the table
    with a short-timeout probe (``_check_table``), lists what it can recover from
    (``RECOVERABLE``), and implements the three scanner calls.
    """

    API = "HBase Thrift server"
    RECOVERABLE = RECOVERABLE
    SPEAKS, OTHER = "thrift1", "thrift2"  # the [hbase] api values of this reader and the other

    def __init__(self, settings: HBaseSettings):
        self.settings = settings
        self.table = settings.table.encode()
        self.rows_read = 0  # every row the server returned, exported or not
        self._conn = None
        self.connect(check_table=True)

    @property
    def where(self) -> str:
        return f"{self.API} {transport_where(self.settings)}"

    # ------------------------------------------------------------- subclass hooks

    def _new_connection(self, timeout_ms: int):
        raise NotImplementedError

    def _check_table(self) -> None:
        raise NotImplementedError

    def _open_scanner(self, start: bytes, query: ScanQuery):
        """Open a server-side scanner from ``start``; returns its handle."""
        raise NotImplementedError

    def _next_rows(self, scanner, query: ScanQuery) -> tuple[Iterable[Row], bytes | None]:
        """The next batch's rows (made lazily: see thrift1._rows_of) and the last key the
        server returned (None: scan done)."""
        raise NotImplementedError

    def _close_scanner_call(self, scanner) -> None:
        raise NotImplementedError

    def _skip(self, query: ScanQuery) -> bool:
        """True when the query selects nothing (so no scanner is opened)."""
        return False

    # ------------------------------------------------------------- connection

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
            raise UnavailableError(f"cannot reach {self.where}: {describe(exc)}") from None

    def _mismatch(self, exc: BaseException) -> UnavailableError:
        # A buffered client talking to a framed server (or binary to compact) waits for
        # an answer that never comes, reads garbage or sees the server hang up: the
        # server never says which, so name both settings. A secured or HTTP server
        # does say what it speaks when asked (sniff), so that is asked first.
        s = self.settings
        host, port = _socket_of(s)
        other = self._speaks_other(what_speaks(host, port))
        if other is not None:
            return other
        return UnavailableError(
            f"{self.where} accepted the connection but did not answer in Thrift "
            f"{s.transport}/{s.protocol} ({describe(exc)}): check [hbase] transport and "
            f"protocol against the server's -f (framed) / -c (compact) flags")

    def _speaks_other(self, speaks: str | None) -> UnavailableError | None:
        """The error for a server that speaks SASL, plain Thrift or HTTP while we did not."""
        s = self.settings
        if s.transport == "http":
            if speaks not in (SASL, THRIFT):
                return None
            host, port = _socket_of(s)
            return UnavailableError(f"{self.where} is a {speaks} server on a socket, not HTTP: "
                                    f"set [hbase] transport = \"buffered\" and host/port = "
                                    f"{host}:{port}")
        if speaks == SASL and s.auth != "kerberos":
            return AuthError(f"{self.where} requires Kerberos (it answered with a SASL frame): "
                             f"set [hbase] auth = \"kerberos\" and qop to the server's "
                             f"hbase.thrift.security.qop")
        if speaks in (HTTP, TLS):
            scheme = "https" if speaks == TLS else "http"
            return UnavailableError(f"{self.where} speaks {speaks}, not Thrift on a socket: set "
                                    f"[hbase] transport = \"http\" and url = "
                                    f"\"{scheme}://{s.host}:{s.port}/\"")
        return None

    def _wrong_api(self, exc: BaseException) -> UnavailableError:
        """The server answered, but does not know our calls: it speaks the other API."""
        speaks, other = self.SPEAKS.capitalize(), self.OTHER.capitalize()
        return UnavailableError(
            f"{self.where} does not speak HBase's {speaks} API ({describe(exc)}): it is "
            f"probably a {other} server; set [hbase] api = \"{self.OTHER}\" or point [hbase] "
            f"port at the {speaks} server")

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

    # ------------------------------------------------------------- the scan

    def scan(self, *, row_start: bytes = b"", row_stop: bytes = b"", timestamp: int | None = None,
             min_timestamp: int | None = None, columns: list[bytes] | None = None,
             filter: bytes | None = None, after: bytes | None = None) -> Iterator[Row]:
        """Yield ``(row key, {column: value}, newest cell timestamp)`` in key order.

        Rows with keys in ``[row_start, row_stop)`` (b"" = open end), and, when ``after``
        is given, only keys after it (a resumed slice). ``timestamp`` bounds the cells
        from above (strictly older); ``min_timestamp`` from below where the API can.
        """
        query = ScanQuery(row_stop, timestamp, min_timestamp, columns, filter)
        if self._skip(query):
            return
        last = after
        retry = RECONNECT_BACKOFF.budget(attempts=RECONNECT_ATTEMPTS)
        while True:
            start = row_start if last is None else max(row_start, last + b"\x00")
            scanner = None
            try:
                if self._conn is None:
                    self._open()
                scanner = self._open_scanner(start, query)
                while True:
                    rows, batch_last = self._next_rows(scanner, query)
                    if batch_last is None:
                        return
                    yield from rows
                    last = batch_last
                    retry.reset()  # a batch went through: the next fault gets a fresh budget
            except self.RECOVERABLE as exc:
                scanner = None  # the server forgot it (lease) or the socket is gone
                self._back_off(exc, retry, last)
            finally:
                if scanner is not None:
                    self._close_scanner(scanner)

    def _back_off(self, exc: BaseException, retry, last: bytes | None) -> None:
        """After a fault: wait and drop the connection, or give up when the budget is spent.

        The scan loop reopens just after ``last``; a refused reconnection counts as one
        more fault.
        """
        if not retry.failed():
            raise UnavailableError(
                f"{self.API} scan of {self.settings.table!r} failed {retry.failures} times in "
                f"a row, last: {describe(exc)}") from None
        delay = retry.next_delay()
        log.warning("%s scan interrupted after row %r (%s); reopening in %.1fs",
                    self.API, last, describe(exc), delay)
        retry.wait(delay)
        self.close()

    def _close_scanner(self, scanner) -> None:
        try:
            self._close_scanner_call(scanner)
        except (TException, OSError, EOFError, AttributeError):
            pass  # an expired or lost scanner is already gone on the server


def _socket_of(settings: HBaseSettings) -> tuple[str, int]:
    """host and port of the server, also when it is named by an HTTP url."""
    if settings.transport != "http":
        return settings.host, settings.port
    parts = urllib.parse.urlsplit(settings.url or "")
    return parts.hostname or settings.host, parts.port or (443 if parts.scheme == "https" else 80)


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, short enough for one log or error line."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if isinstance(text, bytes):  # thriftpy2 keeps a server's message as it came: bytes
        text = text.decode("utf-8", errors="replace")
    text = str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
