"""Thrift over SASL GSSAPI on a socket, as HBase's Thrift servers speak it once
``hbase.thrift.security.qop`` is set (their TSaslServerTransport).

The handshake follows Thrift's SASL framing (a status byte and a 4-byte length before
each message: START with the mechanism name, then OK tokens until COMPLETE) and RFC 4752
for GSSAPI: Kerberos tokens until the security context is established, then the server
offers its security layers and the largest message it takes, and we pick the one
``[hbase] qop`` names. After that every message travels in length-prefixed frames:
as is under ``auth``, signed (``auth-int``) or encrypted (``auth-conf``).

A Kerberos security context lives as long as the service ticket: past it MIT refuses to
sign or encrypt. So the transport logs in again on a fresh socket before sending a
request once two thirds of the context's life have passed. This is safe between two
calls (the previous answer has been read whole) and keeps scanner ids valid: HBase's
Thrift servers keep scanners per server, not per connection.
"""

from __future__ import annotations

import logging
import struct
import time

from thriftpy2.transport import TTransportException

from .kerberos import AuthError, Login, explain, gssapi, shown
from .sniff import HTTP, THRIFT, TLS, what_speaks

log = logging.getLogger(__name__)

START, OK, BAD, ERROR, COMPLETE = 1, 2, 3, 4, 5
LAYERS = {"auth": 1, "auth-int": 2, "auth-conf": 4}  # RFC 4752 security layer bits
MAX_RECEIVE = 0xFFFFFF  # the largest wrapped message we accept (the 3 bytes RFC 4752 allow)
RENEW_AT_FRACTION = 2 / 3
MAX_HANDSHAKE_FRAME = 1 << 20


def layer_names(bits: int) -> list[str]:
    """The qop names of a layer bit mask, in RFC order."""
    return [name for name, bit in LAYERS.items() if bits & bit]


class SaslTransport:
    """A socket transport that authenticates with Kerberos and signs or seals the frames.

    ``socket`` is a thriftpy2 TSocket (not open); ``service`` the server's GSSAPI name.
    """

    def __init__(self, socket, *, login: Login, service, qop: str, where: str):
        self._sock = socket
        self._login = login
        self._service = service
        self._qop = qop
        self._where = where
        self._ctx = None
        self._layer = LAYERS[qop]
        self._chunk = 1 << 16  # the most plain bytes per wrapped frame, set by the server
        self._wbuf: list[bytes] = []
        self._rbuf = b""
        self._rpos = 0
        self._renew_at: float | None = None

    # ------------------------------------------------------------- transport API

    def is_open(self) -> bool:
        return self._sock.is_open() and self._ctx is not None

    def open(self) -> None:
        if not self._sock.is_open():
            self._sock.open()
        try:
            self._authenticate()
        except BaseException:
            self._sock.close()
            raise

    def close(self) -> None:
        self._sock.close()
        self._ctx = None
        self._wbuf.clear()
        self._rbuf, self._rpos = b"", 0

    def write(self, data: bytes) -> None:
        self._wbuf.append(bytes(data))

    def flush(self) -> None:
        data = b"".join(self._wbuf)
        self._wbuf.clear()
        if not data:
            return
        if self._renew_at is not None and time.monotonic() >= self._renew_at:
            self._log_in_again()
        self._sock.write(self._frames(data))

    def read(self, size: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            self._read_frame()
        chunk = self._rbuf[self._rpos:self._rpos + size]
        self._rpos += len(chunk)
        return chunk

    # ------------------------------------------------------------- frames

    def _frames(self, data: bytes) -> bytes:
        if self._layer == LAYERS["auth"]:
            return struct.pack(">I", len(data)) + data
        out = []
        for at in range(0, len(data), self._chunk):
            token = self._wrap(data[at:at + self._chunk])
            out.append(struct.pack(">I", len(token)) + token)
        return b"".join(out)

    def _wrap(self, data: bytes) -> bytes:
        gss = gssapi()
        try:
            return self._ctx.wrap(data, self._layer == LAYERS["auth-conf"]).message
        except gss.exceptions.GSSError as exc:
            # An expired context (a ticket outliving our renewal): the reader reconnects.
            raise TTransportException(TTransportException.UNKNOWN,
                                      f"Kerberos could not protect a message: {exc}") from None

    def _read_frame(self) -> None:
        (length,) = struct.unpack(">I", self._read_exact(4))
        body = self._read_exact(length)
        if self._layer != LAYERS["auth"]:
            gss = gssapi()
            try:
                result = self._ctx.unwrap(body)
            except gss.exceptions.GSSError as exc:
                raise TTransportException(TTransportException.UNKNOWN,
                                          f"Kerberos could not check a message: {exc}") from None
            if self._layer == LAYERS["auth-conf"] and not result.encrypted:
                raise AuthError(f"{self._where} sent an unencrypted message although qop is "
                                f"auth-conf")
            body = result.message
        self._rbuf, self._rpos = body, 0

    def _read_exact(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            data += self._sock.read(size - len(data))
        return bytes(data)

    # ------------------------------------------------------------- the handshake

    def _log_in_again(self) -> None:
        log.debug("Kerberos: the security context with %s is near its end; logging in again",
                  self._where)
        self._sock.close()
        self._ctx = None
        self.open()

    def _authenticate(self) -> None:
        try:
            self._handshake()
        except AuthError:
            raise
        except (TTransportException, OSError, EOFError) as exc:
            raise self._no_sasl_answer(exc) from None

    def _handshake(self) -> None:
        gss = gssapi()
        creds = self._login.credentials()
        flags = [gss.RequirementFlag.mutual_authentication, gss.RequirementFlag.integrity,
                 gss.RequirementFlag.confidentiality]
        try:
            ctx = gss.SecurityContext(name=self._service, creds=creds, usage="initiate",
                                      flags=flags)
            token = ctx.step()
        except gss.exceptions.GSSError as exc:
            raise explain(exc, self._login, self._service) from None
        self._send(START, b"GSSAPI")
        self._send(OK, token or b"")
        negotiated = False
        while True:
            status, payload = self._receive()
            if status == COMPLETE and negotiated:
                break
            if status != OK:
                raise self._refused(status, payload)
            if not ctx.complete:
                try:
                    token = ctx.step(payload)
                except gss.exceptions.GSSError as exc:
                    raise explain(exc, self._login, self._service) from None
                self._send(OK, token or b"")
            else:
                self._send(OK, self._choose_layer(ctx, payload))
                negotiated = True
        self._ctx = ctx
        life = ctx.lifetime
        self._renew_at = (time.monotonic() + life * RENEW_AT_FRACTION) if life else None

    def _choose_layer(self, ctx, challenge: bytes) -> bytes:
        """Answer the server's offer of security layers with the one qop names."""
        offer = ctx.unwrap(challenge).message
        if len(offer) != 4:
            raise AuthError(f"{self._where} sent a malformed SASL security layer offer")
        offered, server_max = offer[0], int.from_bytes(offer[1:4], "big")
        if not offered & self._layer:
            names = layer_names(offered)
            raise AuthError(
                f"QoP mismatch: {self._where} takes qop {' or '.join(names) or 'none'}, the "
                f"config says {self._qop}: set [hbase] qop = \"{names[0] if names else 'auth'}\" "
                f"(the server's hbase.thrift.security.qop)")
        encrypt = self._layer == LAYERS["auth-conf"]
        if self._layer != LAYERS["auth"] and server_max:
            self._chunk = max(1024, ctx.get_wrap_size_limit(server_max, encrypt))
        most = MAX_RECEIVE if self._layer != LAYERS["auth"] else 0
        answer = bytes([self._layer]) + most.to_bytes(3, "big") + str(ctx.initiator_name).encode()
        return ctx.wrap(answer, False).message

    def _send(self, status: int, payload: bytes) -> None:
        self._sock.write(struct.pack(">BI", status, len(payload)) + payload)

    def _receive(self) -> tuple[int, bytes]:
        status, length = struct.unpack(">BI", self._read_exact(5))
        if status not in (START, OK, BAD, ERROR, COMPLETE) or length > MAX_HANDSHAKE_FRAME:
            raise TTransportException(TTransportException.UNKNOWN,
                                      f"not a SASL answer (status byte {status})")
        return status, self._read_exact(length)

    def _refused(self, status: int, payload: bytes) -> AuthError:
        text = payload.decode("utf-8", "replace").strip() or f"status {status}"
        return AuthError(f"{self._where} refused the Kerberos login of {self._login.who} as "
                         f"{shown(self._service)} ({text[:200]}): check [hbase] principal "
                         f"against the server's hbase.thrift.kerberos.principal")

    def _no_sasl_answer(self, exc: BaseException) -> BaseException:
        """The server hung up or said nothing SASL: find out what it speaks instead."""
        host, port = self._sock.host, self._sock.port
        speaks = what_speaks(host, port) if host and port else None
        if speaks == THRIFT:
            return AuthError(f"{self._where} is not secured (it answered a plain Thrift call, "
                             f"not the Kerberos handshake): set [hbase] auth = \"none\", or "
                             f"point [hbase] host/port at the secured Thrift server")
        if speaks in (HTTP, TLS):
            return AuthError(f"{self._where} speaks {speaks}, not Thrift on a socket: set [hbase] "
                             f"transport = \"http\" and url = \"https://{host}:{port}/\"")
        return exc
