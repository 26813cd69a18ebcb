"""Thrift over HTTP(S), as HBase's Thrift servers speak it with
``hbase.regionserver.thrift.http = true``: one POST per call, TLS verified by default,
and with Kerberos a SPNEGO token (``Authorization: Negotiate``) on every request, which
HBase's servlet asks for each time.

thriftpy2's THttpClient would read a 401 page as a Thrift answer, so this transport
checks the status and turns refusals into one line that says what to do.
"""

from __future__ import annotations

import base64
import http.client
import logging
import ssl
import time
import urllib.parse

from thriftpy2.transport import TTransportException

from ..errors import UnavailableError
from .kerberos import AuthError, Login, explain, gssapi, shown
from .sniff import SASL, THRIFT, what_speaks

log = logging.getLogger(__name__)

SPNEGO = "1.3.6.1.5.5.2"
# A kept-alive connection idle longer than this is replaced before the next call: a
# server that closed it meanwhile would fail a call that must not be sent twice.
IDLE_REUSE_S = 5.0
RETRY_STATUSES = (502, 503, 504)  # a proxy or a restarting server: the scan may reopen
_warned_unverified = False


def tls_context(ca_certs: str | None, verify: bool) -> ssl.SSLContext:
    """Verified TLS (the system's CAs, or ``ca_certs``); ``verify=False`` only on request."""
    global _warned_unverified
    context = ssl.create_default_context(cafile=ca_certs)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if not _warned_unverified:
            log.warning("[hbase] verify_certs = false: the Thrift server's TLS certificate is "
                        "not checked, so anyone on the path can read the data")
            _warned_unverified = True
    return context


class Negotiator:
    """A fresh SPNEGO token per request, and a check of the server's answer token."""

    def __init__(self, login: Login, service):
        self.login = login
        self.service = service
        self._ctx = None

    def header(self) -> str:
        gss = gssapi()
        try:
            self._ctx = gss.SecurityContext(
                name=self.service, creds=self.login.credentials(), usage="initiate",
                mech=gss.OID.from_int_seq(SPNEGO),
                flags=[gss.RequirementFlag.mutual_authentication])
            token = self._ctx.step()
        except gss.exceptions.GSSError as exc:
            raise explain(exc, self.login, self.service) from None
        return "Negotiate " + base64.b64encode(token).decode("ascii")

    def check_answer(self, header: str | None, where: str) -> None:
        """The server proves who it is with its answer token (mutual authentication)."""
        token = _negotiate_token(header)
        if token is None:
            raise AuthError(f"{where} answered without Kerberos (no Negotiate token): it is not "
                            f"secured; set [hbase] auth = \"none\"")
        gss = gssapi()
        try:
            if self._ctx is not None and not self._ctx.complete:
                self._ctx.step(token)
        except gss.exceptions.GSSError as exc:
            raise AuthError(f"{where} did not prove it is {shown(self.service)} "
                            f"({exc.gen_message().splitlines()[-1]}): check [hbase] url and "
                            f"principal") from None


def _negotiate_token(header: str | None) -> bytes | None:
    for part in (header or "").split(","):
        scheme, _, value = part.strip().partition(" ")
        if scheme.lower() == "negotiate" and value.strip():
            return base64.b64decode(value.strip())
    return None


class HttpTransport:
    """POSTs each Thrift call to ``url`` and reads the answer, as HBase's servlet expects."""

    def __init__(self, url: str, *, timeout_ms: int, context: ssl.SSLContext | None,
                 negotiator: Negotiator | None, do_as: str | None, where: str):
        parts = urllib.parse.urlsplit(url)
        self.scheme, self.host = parts.scheme, parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout_ms / 1000
        self._context = context
        self._negotiator = negotiator
        self._do_as = do_as
        self._where = where
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0
        self._wbuf: list[bytes] = []
        self._rbuf = b""
        self._rpos = 0
        self._open = False

    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._open = False

    def write(self, data: bytes) -> None:
        self._wbuf.append(bytes(data))

    def read(self, size: int) -> bytes:
        chunk = self._rbuf[self._rpos:self._rpos + size]
        self._rpos += len(chunk)
        if not chunk and size:
            raise TTransportException(TTransportException.END_OF_FILE,
                                      f"{self._where} sent a short answer")
        return chunk

    def flush(self) -> None:
        body = b"".join(self._wbuf)
        self._wbuf.clear()
        if not body:
            return
        headers = {"Content-Type": "application/x-thrift", "Accept": "application/x-thrift"}
        if self._negotiator is not None:
            headers["Authorization"] = self._negotiator.header()
        if self._do_as:
            headers["doAs"] = self._do_as
        response = self._post(body, headers)
        data = response.read()
        self._check(response, data)
        self._rbuf, self._rpos = data, 0

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is not None and time.monotonic() - self._last_used > IDLE_REUSE_S:
            self._conn.close()
            self._conn = None
        if self._conn is None:
            if self.scheme == "https":
                self._conn = http.client.HTTPSConnection(self.host, self.port,
                                                         timeout=self._timeout,
                                                         context=self._context)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port,
                                                        timeout=self._timeout)
        return self._conn

    def _post(self, body: bytes, headers: dict) -> http.client.HTTPResponse:
        conn = self._connection()
        try:
            conn.request("POST", self.path, body=body, headers=headers)
            response = conn.getresponse()
        except ssl.SSLCertVerificationError as exc:
            self.close()
            raise AuthError(f"the TLS certificate of {self._where} does not verify "
                            f"({exc.verify_message}): set [hbase] ca_certs to the file of the CA "
                            f"that signed it") from None
        except ssl.SSLError as exc:
            self.close()
            raise self._not_http(exc, tls=True) from None
        except (http.client.BadStatusLine, ConnectionResetError) as exc:
            self.close()
            raise self._not_http(exc, tls=False) from None
        except TimeoutError as exc:
            # A socket server reads an HTTP request (or a TLS hello) as the start of a huge
            # message and waits: ask it what it speaks before calling it slow.
            self.close()
            speaks = what_speaks(self.host, self.port)
            if speaks in (SASL, THRIFT):
                raise self._not_http(exc, tls=False) from None
            raise TTransportException(TTransportException.TIMED_OUT,
                                      f"{self._where}: no answer within {self._timeout:.0f}s"
                                      ) from None
        except (http.client.HTTPException, OSError) as exc:
            self.close()
            raise TTransportException(TTransportException.UNKNOWN,
                                      f"{self._where}: {type(exc).__name__}: {exc}") from None
        self._last_used = time.monotonic()
        return response

    def _check(self, response: http.client.HTTPResponse, data: bytes) -> None:
        status = response.status
        if status == 200:
            if self._negotiator is not None:
                self._negotiator.check_answer(response.getheader("WWW-Authenticate"),
                                              self._where)
            return
        self.close()
        reason = _reason(response, data)
        if status == 401 and self._negotiator is None:
            raise AuthError(f"{self._where} requires Kerberos (HTTP 401, "
                            f"{response.getheader('WWW-Authenticate') or 'no scheme'}): set "
                            f"[hbase] auth = \"kerberos\"")
        if status == 401:
            raise AuthError(f"{self._where} refused the Kerberos login as "
                            f"{shown(self._negotiator.service)} (HTTP 401{reason}): check [hbase] "
                            f"principal against the server's hbase.thrift.spnego.principal")
        if status == 403:
            raise AuthError(f"{self._where} refused the call (HTTP 403{reason}): the user, or "
                            f"[hbase] do_as, is not allowed")
        if status in RETRY_STATUSES:
            raise TTransportException(TTransportException.UNKNOWN,
                                      f"{self._where} answered HTTP {status}{reason}")
        raise UnavailableError(f"{self._where} answered HTTP {status}{reason}: check [hbase] url "
                               f"(the Thrift server's HTTP endpoint)")

    def _not_http(self, exc: BaseException, *, tls: bool) -> UnavailableError:
        speaks = what_speaks(self.host, self.port)
        if speaks in (SASL, THRIFT):
            return UnavailableError(
                f"{self._where} is a {speaks} server on a socket, not HTTP ({type(exc).__name__}):"
                f" set [hbase] transport = \"buffered\" and host/port = {self.host}:{self.port}")
        if tls:
            return UnavailableError(f"TLS with {self._where} failed ({exc}): check [hbase] url "
                                    f"(http:// for a server without TLS)")
        return UnavailableError(f"{self._where} did not answer in HTTP ({type(exc).__name__}): "
                                f"check [hbase] url")


def _reason(response: http.client.HTTPResponse, data: bytes) -> str:
    """`` <reason>``: the status text, or the servlet's message from the error page."""
    text = (response.reason or "").strip()
    if "Authentication Error" in data.decode("utf-8", "replace"):
        text = "Authentication Error"
    return f" {text}" if text else ""
