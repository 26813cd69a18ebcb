"""Secured HBase: Kerberos (SASL GSSAPI) on the socket and HTTPS + SPNEGO, against the real
KDC and servers of `make servers-secure` (tools/secureservers.py), with the Elasticsearch
of `make servers`.

The CLI runs as a subprocess here: Kerberos state (the ticket cache named by KRB5CCNAME,
the krb5.conf named by KRB5_CONFIG, each process's own login) must be the one a user's
shell would give it, and its stderr is what a user reads.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from helpers import clean_env, count_docs, free_port, require_or_skip, write_config

pytestmark = [pytest.mark.integration, pytest.mark.secure]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import secureservers  # noqa: E402

ROWS = 1000
WINDOW = ('[window]\nstart = "2026-01-01T00:00:00Z"\nend = "2026-02-01T00:00:00Z"\n'
          'slice = "1d"\n')


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def secure() -> dict[str, str]:
    """The secure servers' env lines (HBASE2ES_TEST_* from the environment or secure.env)."""
    env = secureservers.devservers.read_env(secureservers.ENV_FILE)
    env.update({k: v for k, v in os.environ.items() if k.startswith("HBASE2ES_TEST_")})
    if "HBASE2ES_TEST_HBASE_SASL" not in env:
        require_or_skip("no secured HBase for the Kerberos tests: run `make servers-secure`")
    if not shutil.which("kinit"):
        require_or_skip("no kinit: run tools/kerberos-packages.sh")
    return env


@pytest.fixture
def ccache(tmp_path) -> str:
    """A ticket cache of this test's own, empty until a test runs kinit into it."""
    return f"FILE:{tmp_path / 'krb5cc'}"


def kinit(secure: dict, ccache: str, *extra: str, keytab: str | None = None,
          principal: str | None = None) -> None:
    """kinit from a keytab into ``ccache``, as a user would before a run."""
    subprocess.run(["kinit", *extra, "-kt", keytab or secure["HBASE2ES_TEST_KEYTAB"],
                    principal or secure["HBASE2ES_TEST_CLIENT_PRINCIPAL"]],
                   env={**os.environ, "KRB5_CONFIG": secure["HBASE2ES_TEST_KRB5_CONFIG"],
                        "KRB5CCNAME": ccache}, check=True, capture_output=True, timeout=30)


def hbase2es(secure: dict, args: list, *, ccache: str, timeout: float = 240):
    """Run the CLI the way a user's shell does, with the test realm's krb5.conf."""
    env = {**clean_env(), "KRB5_CONFIG": secure["HBASE2ES_TEST_KRB5_CONFIG"],
           "KRB5CCNAME": ccache,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "hbase2es", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def sasl_hbase(secure: dict, address: str | None = None, **keys) -> dict:
    host, port = (address or secure["HBASE2ES_TEST_HBASE_SASL"]).rsplit(":", 1)
    return {"host": host, "port": int(port), "auth": "kerberos",
            "qop": secure["HBASE2ES_TEST_SECURE_QOP"], **keys}


def https_hbase(secure: dict, **keys) -> dict:
    return {"transport": "http", "url": secure["HBASE2ES_TEST_HBASE_HTTPS"], "auth": "kerberos",
            "ca_certs": secure["HBASE2ES_TEST_CA"], **keys}


def from_keytab(secure: dict) -> dict:
    return {"keytab": secure["HBASE2ES_TEST_KEYTAB"],
            "client_principal": secure["HBASE2ES_TEST_CLIENT_PRINCIPAL"]}


def job(tmp_path: Path, servers, index: str, hbase: dict, *, workers: int = 2,
        table: str = secureservers.TABLE) -> str:
    """A job file for the secure demo table: [hbase] as given, the whole of January 2026."""
    def value(v):
        return str(v).lower() if isinstance(v, bool) else (v if isinstance(v, int) else f'"{v}"')

    lines = [f"{k} = {value(v)}" for k, v in {"table": table, **hbase}.items()]
    return write_config(tmp_path / "job.toml", "[hbase]\n" + "\n".join(lines) + "\n"
                        f'[elasticsearch]\nhosts = ["{servers.es}"]\nindex = "{index}"\n'
                        f"{WINDOW}[run]\nworkers = {workers}\n")


def one_error_line(result, code: int, *needles: str) -> str:
    """The run failed with ``code`` and exactly one stderr line holding every needle."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("hbase2es: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def exported(result, es, index: str) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert count_docs(es, index) == ROWS


def verified(secure: dict, config: str, ccache: str) -> dict:
    result = hbase2es(secure, ["verify", "--config", config, "--json"], ccache=ccache)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return orjson.loads(result.stdout)["totals"]


class SlowProxy:
    """A loopback TCP forwarder that holds back each client->server chunk ``delay_s``.

    A real server cannot be made slow on demand; this makes a run outlast a short ticket
    lifetime with every byte still going to the real secure Thrift server.
    """

    def __init__(self, target: tuple[str, int], delay_s: float):
        self.target, self.delay_s = target, delay_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target, timeout=60)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, self.delay_s),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, 0), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delay_s: float) -> None:
        try:
            while not self.stopped.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if delay_s:
                    time.sleep(delay_s)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        for sock in self.sockets:
            sock.close()


# --------------------------------------------------------------------------- it works

@pytest.mark.timeout(300)
def test_export_and_verify_through_sasl_auth_conf_from_a_keytab(secure, servers, es, index,
                                                                tmp_path, ccache):
    # The ticket cache stays empty: only the keytab can have logged in.
    config = job(tmp_path, servers, index, sasl_hbase(secure, **from_keytab(secure)))
    exported(hbase2es(secure, ["export", "--config", config, "--quiet"], ccache=ccache), es,
             index)
    totals = verified(secure, config, ccache)
    assert totals["rows"] == totals["present"] == ROWS and totals["missing"] == 0


@pytest.mark.timeout(300)
def test_export_and_verify_through_sasl_from_the_ticket_cache(secure, servers, es, index,
                                                              tmp_path, ccache):
    kinit(secure, ccache)
    config = job(tmp_path, servers, index, sasl_hbase(secure))  # no keytab: kinit's ticket
    exported(hbase2es(secure, ["export", "--config", config, "--quiet"], ccache=ccache), es,
             index)
    totals = verified(secure, config, ccache)
    assert totals["present"] == ROWS and totals["missing"] == 0


@pytest.mark.timeout(300)
def test_the_thrift2_reader_authenticates_too(secure, servers, es, index, tmp_path, ccache):
    hbase = sasl_hbase(secure, secure["HBASE2ES_TEST_HBASE_THRIFT2_SASL"], api="thrift2",
                       **from_keytab(secure))
    config = job(tmp_path, servers, index, hbase)
    exported(hbase2es(secure, ["export", "--config", config, "--quiet"], ccache=ccache), es,
             index)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_spark_executors_log_in_from_the_keytab(secure, servers, es, index, tmp_path, ccache):
    try:
        import pyspark  # noqa: F401
    except ImportError:
        require_or_skip("pyspark is not installed: pip install -e '.[test]'")
    config = job(tmp_path, servers, index, sasl_hbase(secure, **from_keytab(secure)))
    result = hbase2es(secure, ["export", "--config", config, "--quiet", "--executor", "spark",
                               "--spark-master", "local[2]"], ccache=ccache, timeout=360)
    exported(result, es, index)


@pytest.mark.timeout(300)
def test_export_through_https_and_spnego_with_the_generated_ca(secure, servers, es, index,
                                                               tmp_path, ccache):
    config = job(tmp_path, servers, index, https_hbase(secure, **from_keytab(secure)))
    result = hbase2es(secure, ["export", "--config", config, "--log-level", "debug"],
                      ccache=ccache)
    exported(result, es, index)
    # Nothing secret in a debug log: no Negotiate header, no SPNEGO token (base64 "YII...").
    assert "Negotiate " not in result.stderr and "YII" not in result.stderr


@pytest.mark.timeout(300)
def test_do_as_over_https_acts_as_the_named_user(secure, servers, es, index, tmp_path, ccache):
    user = f"alice{os.getpid()}"
    config = job(tmp_path, servers, index, https_hbase(secure, do_as=user, **from_keytab(secure)))
    exported(hbase2es(secure, ["export", "--config", config, "--quiet"], ccache=ccache), es,
             index)
    # The server's own record: HBase saw the calls as that user, through the hbase principal.
    master_log = Path(secure["HBASE2ES_TEST_SECURE_LOGS"]) / "master.log"
    assert f"ugi={user} (auth:PROXY) via hbase/" in master_log.read_text(errors="replace")


@pytest.mark.timeout(400)
def test_a_keytab_login_is_renewed_when_the_run_outlasts_the_ticket(secure, servers, es, index,
                                                                    tmp_path, ccache):
    life = int(secure["HBASE2ES_TEST_SHORT_LIFE_S"])
    host, port = secure["HBASE2ES_TEST_HBASE_SASL"].rsplit(":", 1)
    proxy = SlowProxy(("127.0.0.1", int(port)), delay_s=0.25)
    try:
        # About 270 calls over 31 slices at 0.25 s each, on 2 workers: twice `life` or more.
        hbase = sasl_hbase(secure, f"{host}:{proxy.port}", batch_size=100,
                           keytab=secure["HBASE2ES_TEST_SHORT_KEYTAB"],
                           client_principal=secure["HBASE2ES_TEST_SHORT_PRINCIPAL"])
        config = job(tmp_path, servers, index, hbase)
        started = time.monotonic()
        # Per slice: each slice's own scan makes the calls counted above (one pass, fewer).
        result = hbase2es(secure, ["export", "--config", config, "--quiet", "--no-one-pass"],
                          ccache=ccache, timeout=360)
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
    exported(result, es, index)
    # Longer than a ticket lives, even with the KDC's 5 s clock skew allowance.
    assert elapsed > life + 5, f"the run took {elapsed:.0f}s: too short to prove renewal"
    assert result.stderr.count("Kerberos: renewed the login of") >= 2, result.stderr  # each worker
    # Renewed before the security context ran out, not after a failed call.
    assert "scan interrupted" not in result.stderr, result.stderr


# --------------------------------------------------------------------------- clear failures

def _export(secure, servers, index, tmp_path, ccache, hbase: dict):
    return hbase2es(secure, ["export", "--config", job(tmp_path, servers, index, hbase),
                             "--quiet"], ccache=ccache)


@pytest.mark.timeout(120)
def test_no_ticket_and_no_keytab(secure, servers, index, tmp_path, ccache):
    result = _export(secure, servers, index, tmp_path, ccache, sasl_hbase(secure))
    one_error_line(result, 3, "no Kerberos ticket", "run kinit", "[hbase] keytab")


@pytest.mark.timeout(120)
def test_a_wrong_service_principal(secure, servers, index, tmp_path, ccache):
    hbase = sasl_hbase(secure, principal="hbase-typo", **from_keytab(secure))
    result = _export(secure, servers, index, tmp_path, ccache, hbase)
    one_error_line(result, 3, "does not know the service principal hbase-typo/localhost",
                   "[hbase] principal")


@pytest.mark.timeout(120)
def test_a_client_principal_the_keytab_does_not_hold(secure, servers, index, tmp_path, ccache):
    hbase = sasl_hbase(secure, keytab=secure["HBASE2ES_TEST_KEYTAB"], client_principal="mallory")
    result = _export(secure, servers, index, tmp_path, ccache, hbase)
    one_error_line(result, 3, "holds no key for mallory", "[hbase] client_principal",
                   f"it holds {secure['HBASE2ES_TEST_CLIENT_PRINCIPAL']}")


@pytest.mark.timeout(120)
def test_a_kdc_that_does_not_answer(secure, servers, index, tmp_path, ccache):
    conf = tmp_path / "krb5.conf"
    kdc = secure["HBASE2ES_TEST_KDC"]
    conf.write_text(Path(secure["HBASE2ES_TEST_KRB5_CONFIG"]).read_text().replace(
        kdc, f"127.0.0.1:{free_port()}"))
    result = _export({**secure, "HBASE2ES_TEST_KRB5_CONFIG": str(conf)}, servers, index,
                     tmp_path, ccache, sasl_hbase(secure, **from_keytab(secure)))
    one_error_line(result, 3, "cannot reach the KDC", str(conf))


@pytest.mark.timeout(120)
def test_an_expired_ticket(secure, servers, index, tmp_path, ccache):
    kinit(secure, ccache, "-l", "2s")
    time.sleep(3)
    result = _export(secure, servers, index, tmp_path, ccache, sasl_hbase(secure))
    one_error_line(result, 3, "has expired", "run kinit again")


@pytest.mark.timeout(120)
def test_a_qop_mismatch(secure, servers, index, tmp_path, ccache):
    hbase = sasl_hbase(secure, **from_keytab(secure))
    hbase["qop"] = "auth"
    result = _export(secure, servers, index, tmp_path, ccache, hbase)
    one_error_line(result, 3, "QoP mismatch", f'qop = "{secure["HBASE2ES_TEST_SECURE_QOP"]}"')


@pytest.mark.timeout(120)
def test_a_tls_certificate_that_does_not_verify(secure, servers, index, tmp_path, ccache):
    hbase = https_hbase(secure, **from_keytab(secure))
    del hbase["ca_certs"]  # the system's CAs never signed the test CA
    result = _export(secure, servers, index, tmp_path, ccache, hbase)
    one_error_line(result, 3, "TLS certificate", "does not verify", "[hbase] ca_certs")


@pytest.mark.timeout(120)
def test_a_secured_socket_server_with_auth_none(secure, servers, index, tmp_path, ccache):
    host, port = secure["HBASE2ES_TEST_HBASE_SASL"].rsplit(":", 1)
    hbase = {"host": host, "port": int(port), "timeout_ms": 5000}
    result = _export(secure, servers, index, tmp_path, ccache, hbase)
    one_error_line(result, 3, "requires Kerberos", 'auth = "kerberos"')


@pytest.mark.timeout(120)
def test_a_secured_https_server_with_auth_none(secure, servers, index, tmp_path, ccache):
    hbase = https_hbase(secure)
    del hbase["auth"]
    result = _export(secure, servers, index, tmp_path, ccache, hbase)
    one_error_line(result, 3, "requires Kerberos", "HTTP 401", 'auth = "kerberos"')


@pytest.mark.timeout(120)
def test_kerberos_against_a_server_that_is_not_secured(secure, servers, index, tmp_path, ccache):
    port = servers.hbase_port  # the plain dev HBase; "localhost" is the realm's host name
    hbase = sasl_hbase(secure, f"localhost:{port}", timeout_ms=5000, **from_keytab(secure))
    result = _export(secure, servers, index, tmp_path, ccache, hbase)
    one_error_line(result, 3, "is not secured", 'auth = "none"')


@pytest.mark.timeout(120)
def test_http_config_pointed_at_a_socket_server(secure, servers, index, tmp_path, ccache):
    hbase = {"transport": "http", "url": f"http://{servers.hbase}/", "timeout_ms": 5000}
    result = _export(secure, servers, index, tmp_path, ccache, hbase)
    one_error_line(result, 3, "on a socket, not HTTP", 'transport = "buffered"', servers.hbase)


@pytest.mark.timeout(60)
def test_a_keytab_that_is_missing_or_unreadable_exits_2(secure, servers, index, tmp_path,
                                                        ccache):
    not_a_keytab = tmp_path / "notes.txt"
    not_a_keytab.write_text("hello")
    cases = {str(tmp_path / "missing.keytab"): "does not exist",
             str(tmp_path): "cannot be read",  # a directory: open() fails even for root
             str(not_a_keytab): "is not a Kerberos keytab"}
    for keytab, words in cases.items():
        hbase = sasl_hbase(secure, keytab=keytab)
        result = _export(secure, servers, index, tmp_path, ccache, hbase)
        one_error_line(result, 2, "hbase.keytab", words)

