"""The one place where a connection to an HBase Thrift server is made: socket, transport,
protocol and client, for both Thrift APIs.

Security (SASL, Thrift over HTTP) plugs in here: a reader asks for a client and never
builds a socket itself.

Why the Thrift1 client is built here and handed to happybase: a scanner batch of 1000 rows
is about a megabyte, and thriftpy2's buffered transport reads its default 4 KiB buffer with
one Python-level ``recv()`` per 4 KiB. A 64 KiB buffer cut the client CPU of a scan by ~13%
(make bench, issue 8). happybase builds its transport with the default size, so we build
the transport and client and give them to a ``happybase.Connection`` through its public
``transport`` and ``client`` attributes; happybase still owns the connection API
(``open``, ``tables``, ``table(...).regions()``) that the readers use.
"""

from __future__ import annotations

from importlib import resources

import happybase
import thriftpy2
from thriftpy2.protocol import TBinaryProtocol, TCompactProtocol
from thriftpy2.thrift import TClient
from thriftpy2.transport import TBufferedTransport, TFramedTransport, TSocket

READ_BUFFER_BYTES = 64 * 1024

# happybase's own IDL, loaded under the module name happybase gives it: thriftpy2 caches
# modules by name, so this is the very module happybase uses, named explicitly rather than
# found in sys.modules as a side effect of importing happybase.
Hbase_thrift = thriftpy2.load(str(resources.files("happybase") / "Hbase.thrift"),
                              module_name="Hbase_thrift")

# Our subset of HBase's Thrift2 IDL. The module name must end in "_thrift" and be unique,
# so that its structs pickle and do not clash with happybase's Thrift1 module.
hbase2 = thriftpy2.load(str(resources.files("hbase2es.hbase") / "hbase2.thrift"),
                        module_name="hbase2es_thrift2_thrift")

PROTOCOLS = {"binary": TBinaryProtocol, "compact": TCompactProtocol}


def _socket_transport(host: str, port: int, timeout_ms: int, transport: str):
    sock = TSocket(host=host, port=port, socket_timeout=timeout_ms, connect_timeout=timeout_ms)
    if transport == "framed":
        return TFramedTransport(sock)
    return TBufferedTransport(sock, buf_size=READ_BUFFER_BYTES)


def connect_thrift1(host: str, port: int, *, timeout_ms: int, transport: str = "buffered",
                    protocol: str = "binary") -> happybase.Connection:
    """An open happybase connection over our transport; raw Thrift/socket errors propagate."""
    conn = happybase.Connection(host, port, timeout=timeout_ms, autoconnect=False,
                                transport=transport, protocol=protocol)
    conn.transport = _socket_transport(host, port, timeout_ms, transport)
    conn.client = TClient(Hbase_thrift.Hbase,
                          PROTOCOLS[protocol](conn.transport, decode_response=False))
    conn.open()
    return conn


def connect_thrift2(host: str, port: int, *, timeout_ms: int, transport: str = "buffered",
                    protocol: str = "binary") -> TClient:
    """An open Thrift2 client (``close()`` closes its socket); raw errors propagate."""
    trans = _socket_transport(host, port, timeout_ms, transport)
    trans.open()
    return TClient(hbase2.THBaseService, PROTOCOLS[protocol](trans))
