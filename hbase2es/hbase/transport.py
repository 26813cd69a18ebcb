"""The one place where a connection to an HBase Thrift server is made: socket, transport,
protocol and client, for both Thrift APIs.

What ``[hbase]`` asks for is put together here, and only here:

- ``transport = "buffered"`` / ``"framed"``: a plain socket;
- ``auth = "kerberos"`` on a socket: SASL GSSAPI with the ``qop`` layer (``sasl``);
  HBase refuses SASL over framed transport;
- ``transport = "http"``: one POST per call to ``url`` (``httpthrift``), TLS verified
  against ``ca_certs`` or the system's CAs, with Kerberos a SPNEGO token per request and
  ``do_as`` as HBase's doAs header.

Every reader, ``plan``, ``verify`` and every worker (spawned processes, Spark executors)
connects through here, so all of them authenticate; each process keeps its own Kerberos
login (``kerberos.login_for``), renewed from the keytab in time.

Why the Thrift1 client is built here and handed to happybase: a scanner batch of 1000 rows
is about a megabyte, and thriftpy2's buffered transport reads its default 4 KiB buffer with
one Python-level ``recv()`` per 4 KiB. A 64 KiB buffer cut the client CPU of a scan by ~13%
(make bench, issue 8). happybase builds its transport with the default size, so we build
the transport and client and give them to a ``happybase.Connection`` through its public
``transport`` and ``client`` attributes; happybase still owns the connection API
(``open``, ``tables``, ``table(...).regions()``) that the readers use.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import replace
from importlib import resources

import happybase
import thriftpy2
from thriftpy2.protocol import TBinaryProtocol, TCompactProtocol
from thriftpy2.thrift import TClient
from thriftpy2.transport import TBufferedTransport, TFramedTransport, TSocket

from ..settings import HBaseSettings
from .kerberos import login_for, service_name

READ_BUFFER_BYTES = 64 * 1024

# happybase's own IDL, loaded under the module name happybase gives it: thriftpy2 caches
# modules by name, so this is the very module happybase uses, named explicitly rather than
# found in sys.modules as a side effect of importing happybase.
Hbase_thrift = thriftpy2.load(str(resources.files("happybase") / "Hbase.thrift"),
                              module_name="Hbase_thrift")



def thrift2_idl():
    """Our subset of HBase's Thrift2 IDL (``hbase2``), parsed on first use.

    Parsing it costs ~30 ms of CPU, and every worker imports this module while most runs
    read over Thrift1 (``make bench``): only a process that touches Thrift2 pays. The
    module name must end in "_thrift" and be unique, so that its structs pickle and do
    not clash with happybase's Thrift1 module.
    """
    module = globals().get("hbase2")
    if module is None:
        module = thriftpy2.load(str(resources.files("hbase2es.hbase") / "hbase2.thrift"),
                                module_name="hbase2es_thrift2_thrift")
        globals()["hbase2"] = module  # later lookups of the attribute skip __getattr__
    return module


def __getattr__(name: str):
    """``transport.hbase2`` (``from .transport import hbase2``) is the lazy Thrift2 IDL."""
    if name == "hbase2":
        return thrift2_idl()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# The Thrift1 scan with HBase 2's cacheBlocks field, which happybase's IDL lacks; thriftpy2
# writes a struct by its own spec, so scannerOpenWithScan sends it as it is.
hbase1scan = thriftpy2.load(str(resources.files("hbase2es.hbase") / "hbase1scan.thrift"),
                            module_name="hbase2es_thrift1scan_thrift")

PROTOCOLS = {"binary": TBinaryProtocol, "compact": TCompactProtocol}


def where(settings: HBaseSettings) -> str:
    """The server as messages name it: ``host:port`` or the HTTP url."""
    if settings.transport == "http":
        return settings.url or ""
    return f"{settings.host}:{settings.port}"


def open_transport(settings: HBaseSettings, timeout_ms: int, label: str = "HBase Thrift server"):
    """The transport to the configured server, not yet open."""
    s = settings
    shown = f"{label} {where(s)}"
    # httpthrift and sasl are imported only by a process that uses them: every worker
    # imports this module, and most connect over a plain socket.
    if s.transport == "http":
        from .httpthrift import HttpTransport, Negotiator, tls_context

        negotiator = None
        if s.auth == "kerberos":
            host = urllib.parse.urlsplit(s.url or "").hostname or s.host
            negotiator = Negotiator(_login(s), service_name(s.principal or "HTTP", host))
        context = tls_context(s.ca_certs, s.verify_certs) if (s.url or "").startswith("https") \
            else None
        http = HttpTransport(s.url or "", timeout_ms=timeout_ms, context=context,
                             negotiator=negotiator, do_as=s.do_as, where=shown)
        return TBufferedTransport(http, buf_size=READ_BUFFER_BYTES)
    sock = TSocket(host=s.host, port=s.port, socket_timeout=timeout_ms, connect_timeout=timeout_ms)
    if s.transport == "framed":
        return TFramedTransport(sock)
    if s.auth == "kerberos":
        from .sasl import SaslTransport

        sock = SaslTransport(sock, login=_login(s), qop=s.qop, where=shown,
                             service=service_name(s.principal or "hbase", s.host))
    return TBufferedTransport(sock, buf_size=READ_BUFFER_BYTES)


def _login(s: HBaseSettings):
    return login_for(s.keytab, s.client_principal)


def _settings(target, port, overrides) -> HBaseSettings:
    """Settings from either HBaseSettings or the older ``host, port, transport=...`` form."""
    if isinstance(target, HBaseSettings):
        return replace(target, **overrides) if overrides else target
    return HBaseSettings(host=target, port=port, **overrides)


def connect_thrift1(target: HBaseSettings | str, port: int | None = None, *, timeout_ms: int,
                    **overrides) -> happybase.Connection:
    """An open happybase connection to the configured server; raw Thrift/socket errors
    propagate, authentication failures are AuthError (exit 3)."""
    s = _settings(target, port, overrides)
    conn = happybase.Connection(s.host, s.port, timeout=timeout_ms, autoconnect=False,
                                transport="buffered" if s.transport == "http" else s.transport,
                                protocol=s.protocol)
    conn.transport = open_transport(s, timeout_ms)
    conn.client = TClient(Hbase_thrift.Hbase,
                          PROTOCOLS[s.protocol](conn.transport, decode_response=False))
    conn.open()
    return conn


def connect_thrift2(target: HBaseSettings | str, port: int | None = None, *, timeout_ms: int,
                    **overrides) -> TClient:
    """An open Thrift2 client (``close()`` closes its transport); raw errors propagate."""
    s = _settings(target, port, overrides)
    trans = open_transport(s, timeout_ms, "HBase Thrift2 server")
    trans.open()
    return TClient(thrift2_idl().THBaseService, PROTOCOLS[s.protocol](trans))
