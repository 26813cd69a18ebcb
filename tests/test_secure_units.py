"""The parts of secured HBase access that need no server: [hbase] key checks (exit 2),
keytab parsing, what a server's first bytes say it speaks, SASL layer names.
(test_secure.py runs the real thing against the KDC and servers of `make servers-secure`.)
"""

from __future__ import annotations

import struct

import pytest

from hbase2es.errors import ConfigError, ExitCode
from hbase2es.hbase import sniff
from hbase2es.hbase.kerberos import keytab_principals
from hbase2es.hbase.sasl import LAYERS, layer_names
from hbase2es.settings import load_settings

from helpers import write_config


def _load(tmp_path, hbase: str):
    config = write_config(tmp_path / "job.toml", f'[hbase]\ntable = "t"\n{hbase}\n'
                          '[elasticsearch]\nindex = "i"\n')
    return load_settings(config, now_ms=0, need_window=False)


@pytest.mark.parametrize("hbase, words", [
    ('auth = "kerberos"\ntransport = "framed"', "refuses SASL over framed"),
    ('do_as = "alice"', "do_as needs transport = \"http\""),
    ('transport = "http"', "needs hbase.url"),
    ('transport = "http"\nurl = "thrift.example.com:9090"', "needs hbase.url"),
    ('url = "https://thrift.example.com/"', "url is used only with transport = \"http\""),
    ('auth = "ldap"', "hbase.auth must be one of none, kerberos"),
    ('qop = "privacy"', "hbase.qop must be one of auth, auth-int, auth-conf"),
    ('transport = "http"\nurl = "https://h/"\nca_certs = "/nonexistent/ca.pem"',
     "hbase.ca_certs '/nonexistent/ca.pem' does not exist"),
])
def test_hbase_keys_that_disagree_stop_the_run_with_exit_2(tmp_path, hbase, words):
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, hbase)
    assert words in str(caught.value)
    assert caught.value.exit_code == ExitCode.USAGE


def test_a_secured_http_config_loads(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = _load(tmp_path, f'transport = "http"\nurl = "https://h:9090/"\nauth = "kerberos"\n'
                        f'ca_certs = "{ca}"\ndo_as = "alice"').hbase
    assert (s.transport, s.url, s.auth, s.do_as, s.verify_certs) == \
        ("http", "https://h:9090/", "kerberos", "alice", True)
    assert s.qop == "auth-conf" and s.principal == ""  # the defaults: privacy, hbase / HTTP


def _keytab_entry(components: list[str], realm: str, kvno: int = 1) -> bytes:
    def counted(text: str) -> bytes:
        return struct.pack(">H", len(text)) + text.encode()

    body = (struct.pack(">H", len(components)) + counted(realm)
            + b"".join(counted(c) for c in components)
            + struct.pack(">IIB", 1, 0, kvno) + struct.pack(">H", 18) + counted("k" * 32))
    return struct.pack(">i", len(body)) + body


def test_keytab_principals_in_order_once_each_past_holes():
    data = (b"\x05\x02" + _keytab_entry(["hbase", "node1.example.com"], "EXAMPLE.COM")
            + struct.pack(">i", -12) + b"\x00" * 12  # a hole a deleted entry left
            + _keytab_entry(["etl"], "EXAMPLE.COM")
            + _keytab_entry(["etl"], "EXAMPLE.COM", kvno=2))  # a second key of etl
    assert keytab_principals(data) == ["hbase/node1.example.com@EXAMPLE.COM",
                                       "etl@EXAMPLE.COM"]
    with pytest.raises(ValueError):
        keytab_principals(b"hello")


@pytest.mark.parametrize("reply, speaks", [
    (b"\x03\x00\x00\x00\x1bUnsupported mechanism type ", sniff.SASL),
    (b"\x04\x00\x00\x00\x05error", sniff.SASL),
    (b"\x80\x01\x00\x02\x00\x00\x00\rgetTableNames", sniff.THRIFT),
    (b"\x82\x41\x00\x0dgetTableNames", sniff.THRIFT),
    (b"HTTP/1.1 400 Bad Request\r\n", sniff.HTTP),
    (b"\x15\x03\x03\x00\x02\x02\x32", sniff.TLS),
    (b"", None),
    (b"\x04\xff\xff\xff\xff", None),  # no SASL frame is that long
])
def test_what_a_reply_says_the_server_speaks(reply, speaks):
    assert sniff.classify(reply) == speaks


def test_sasl_layer_names():
    assert layer_names(LAYERS["auth-conf"]) == ["auth-conf"]
    assert layer_names(LAYERS["auth"] | LAYERS["auth-int"]) == ["auth", "auth-int"]
    assert layer_names(0) == []
