"""What a server on a socket speaks, found with at most two harmless requests.

Used only after a connection failed, to say which setting is wrong instead of "no answer":
a secured server met without Kerberos, a plain one met with it, an HTTP server met on a
socket or the other way round. Neither request changes anything on any server:

1. a SASL START message that names no mechanism, which a SASL transport refuses at once
   with a BAD frame (a plain Thrift server reads it as the start of a long message and
   waits until we give up; an HTTP server answers 400);
2. a Thrift1 ``getTableNames`` call in the binary protocol, which a plain server answers.

The order matters: HBase's SASL transport reads a whole header's worth of payload before it
looks at the status, so it would wait for megabytes after the Thrift call.
"""

from __future__ import annotations

import socket
import struct

SASL, THRIFT, HTTP, TLS = "SASL-secured Thrift", "plain Thrift", "HTTP", "TLS"

_NAME = b"getTableNames"
PLAIN_CALL = b"\x80\x01\x00\x01" + struct.pack(">i", len(_NAME)) + _NAME + b"\x00" * 4 + b"\x00"
SASL_START = b"\x01\x00\x00\x00\x00"  # status START, an empty mechanism name
_SASL_BAD, _SASL_ERROR = 3, 4  # a SASL server's answer to a frame it cannot read


def what_speaks(host: str, port: int, timeout_s: float = 3.0) -> str | None:
    """SASL, THRIFT, HTTP or TLS for the server at host:port, or None when unclear."""
    for request in (SASL_START, PLAIN_CALL):
        speaks = classify(_ask(host, port, request, timeout_s))
        if speaks is not None:
            return speaks
    return None


def _ask(host: str, port: int, request: bytes, timeout_s: float) -> bytes:
    """The first bytes the server sends back to ``request`` (b"" if it hangs up or waits)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(request)
            return _read_some(sock, 8)
    except OSError:
        return b""


def classify(reply: bytes) -> str | None:
    """What the first bytes of a server's reply to PLAIN_CALL say it speaks."""
    if len(reply) >= 5 and reply[0] in (_SASL_BAD, _SASL_ERROR):
        # A SASL transport refuses an unknown mechanism with a frame: status, 4-byte
        # length, a short text ("Unsupported mechanism type").
        if struct.unpack(">I", reply[1:5])[0] < 65536:
            return SASL
    if reply[:2] == b"\x80\x01" or reply[:1] == b"\x82":  # a binary / compact Thrift reply
        return THRIFT
    if reply.startswith(b"HTTP/"):
        return HTTP
    if reply[:2] == b"\x15\x03":  # a TLS alert record
        return TLS
    return None


def _read_some(sock: socket.socket, want: int) -> bytes:
    data = b""
    while len(data) < want:
        try:
            chunk = sock.recv(want - len(data))
        except OSError:  # a timeout after a first part still tells something
            break
        if not chunk:
            break
        data += chunk
    return data
