"""What the ``[hbase]`` keys of a secured server must agree on, checked when the settings
are loaded, so that a bad combination or an unreadable file stops the run (exit 2) before
any server or KDC is contacted."""

from __future__ import annotations

from .errors import ConfigError


def check_hbase(hbase) -> None:
    """What the keys of ``hbase`` (HBaseSettings) must agree on, and files that must be
    readable (exit 2)."""
    if hbase.transport == "http":
        if not hbase.url or not hbase.url.startswith(("http://", "https://")):
            raise ConfigError("hbase.transport = \"http\" needs hbase.url, e.g. "
                              "\"https://thrift.example.com:9090/\"")
    elif hbase.url:
        raise ConfigError(f"hbase.url is used only with transport = \"http\" (transport is "
                          f"{hbase.transport!r})")
    if hbase.auth == "kerberos" and hbase.transport == "framed":
        raise ConfigError("hbase.auth = \"kerberos\" needs transport = \"buffered\" or \"http\": "
                          "HBase's Thrift server refuses SASL over framed transport")
    if hbase.do_as and hbase.transport != "http":
        raise ConfigError("hbase.do_as needs transport = \"http\": HBase takes doAs only over "
                          "HTTP (hbase.thrift.support.proxyuser)")
    if hbase.thrift2:
        thrift2_address(hbase.thrift2)
    if hbase.keytab:
        _check_keytab(hbase.keytab)
    if hbase.ca_certs:
        _check_readable("hbase.ca_certs", hbase.ca_certs)


def thrift2_address(text: str) -> tuple[str, int]:
    """``[hbase] thrift2 = "host:port"`` as (host, port); ConfigError (exit 2) if not."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"hbase.thrift2 must be \"host:port\" of a Thrift2 server, "
                          f"got {text!r}")
    return host, int(port)


def _check_keytab(path: str) -> None:
    """A keytab that is missing, unreadable or not a keytab stops the run here (exit 2)."""
    head = _check_readable("hbase.keytab", path)
    if head[:1] != b"\x05" or head[1:2] not in (b"\x01", b"\x02"):
        raise ConfigError(f"hbase.keytab {path!r} is not a Kerberos keytab (export one with "
                          f"ktadd or ipa-getkeytab)")


def _check_readable(key: str, path: str) -> bytes:
    """The first bytes of the file at ``path``; ConfigError naming ``key`` if unreadable."""
    try:
        with open(path, "rb") as f:
            return f.read(2)
    except FileNotFoundError:
        raise ConfigError(f"{key} {path!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{key} {path!r} cannot be read: {exc.strerror or exc}") from None
