"""Start and stop a secured HBase on loopback, beside the plain dev servers.

What `up` starts, each process stopped by its PID in `down`:

- a KDC (MIT krb5 from the distribution: tools/kerberos-packages.sh) for the realm
  HBASE2ES.TEST, with the principals hbase/localhost and HTTP/localhost (the servers'),
  hbase2es (the tests' client) and hbase2es-short, whose tickets live SHORT_LIFE_S only
  (the renewal test);
- a standalone HBase (master, region server and ZooKeeper in one JVM, own data dir and
  ZooKeeper port) with Kerberos authentication on;
- a Thrift1 server with SASL (buffered, threadpool server, qop auth-conf);
- a Thrift2 server the same way (the Thrift2 reader over SASL);
- a Thrift1 server in HTTP mode with TLS (a CA made here at start-up) and SPNEGO, with
  doAs allowed.

It creates and fills the table hbase2es_secure_demo: 1,000 rows, family d, cell times
in January 2026 (UTC). State, under .devservers/ (HBASE2ES_SECURE_ROOT moves it):

    secure.env     HBASE2ES_TEST_KRB5_CONFIG, _KEYTAB, _CLIENT_PRINCIPAL, _HBASE_SASL
                   (host:port), _HBASE_HTTPS (url), _CA, and more for the tests
    secure/        KDC database, keytabs, TLS files, HBase conf, data and logs, pids.json

Usage: python tools/secureservers.py up | down | status
`up` prints "started" or "reused" on stdout, like devservers.py.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
sys.path.insert(0, str(ROOT))  # the checkout's own hbase2es drives the probes and the load
sys.path.insert(0, str(TOOLS))

import devservers  # noqa: E402  (its jars, JVM flags and process helpers)
from devservers import StartError, alive, free_port, spawn  # noqa: E402

STATE_ROOT = Path(os.environ.get("HBASE2ES_SECURE_ROOT", ROOT / ".devservers"))
SECURE = STATE_ROOT / "secure"
ENV_FILE = STATE_ROOT / "secure.env"
PIDS_FILE = SECURE / "pids.json"

HOST = "127.0.0.1"
SERVICE_HOST = "localhost"  # the host part of the servers' principals and the clients' URLs
REALM = "HBASE2ES.TEST"
CLIENT = "hbase2es"
SHORT_CLIENT = "hbase2es-short"
SHORT_LIFE_S = 20
QOP = "auth-conf"
TABLE = "hbase2es_secure_demo"
ROWS = 1000
JANUARY_2026_MS = 1767225600000
JANUARY_MS = 31 * 86_400_000
START_TIMEOUT_S = 300
KERBEROS_BINARIES = ("/usr/sbin/krb5kdc", "/usr/sbin/kdb5_util", "/usr/sbin/kadmin.local")


# ---------------------------------------------------------------------------- helpers

def log(msg: str) -> None:
    print(f"secureservers: {msg}", file=sys.stderr, flush=True)


def run(argv: list[str], env: dict | None = None, what: str = "") -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise StartError(f"{what or argv[0]} failed ({proc.returncode}): "
                         f"{(proc.stderr or proc.stdout)[-2000:]}")
    return proc.stdout


def kerberos_env() -> dict[str, str]:
    kdc = SECURE / "kdc"
    return {**os.environ, "KRB5_CONFIG": str(kdc / "krb5.conf"),
            "KRB5_KDC_PROFILE": str(kdc / "kdc.conf")}


def ours(pid: int) -> bool:
    """A live process this tool started (its command line names SECURE)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(SECURE).encode() in cmd and alive(pid)


def free_port_both() -> int:
    """A loopback port free for TCP and UDP (the KDC listens on both)."""
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((HOST, port))
            except OSError:
                continue
        return port
    raise StartError("no loopback port free for both TCP and UDP")


def write_env(env: dict[str, str]) -> None:
    ENV_FILE.parent.mkdir(parents=True, exist_ok=True)
    ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in env.items()))


def save_pids(pids: dict[str, int]) -> None:
    PIDS_FILE.write_text(json.dumps(pids))


# ---------------------------------------------------------------------------- the KDC

def krb5_conf(port: int) -> str:
    # Small clock skew so that an expired ticket is refused within seconds (the expiry
    # tests), TCP only (the JVM and MIT agree on it), no DNS anywhere.
    return f"""[libdefaults]
  default_realm = {REALM}
  dns_lookup_kdc = false
  dns_lookup_realm = false
  rdns = false
  dns_canonicalize_hostname = false
  udp_preference_limit = 1
  clockskew = 5
  forwardable = false
  ticket_lifetime = 10h
[realms]
  {REALM} = {{
    kdc = {HOST}:{port}
  }}
[domain_realm]
  {SERVICE_HOST} = {REALM}
"""


def kdc_conf(kdc: Path, port: int) -> str:
    return f"""[kdcdefaults]
  kdc_listen = {HOST}:{port}
  kdc_tcp_listen = {HOST}:{port}
[realms]
  {REALM} = {{
    database_name = {kdc}/db/principal
    key_stash_file = {kdc}/db/stash
    acl_file = {kdc}/kadm5.acl
    max_life = 10h
    max_renewable_life = 1d
    supported_enctypes = aes256-cts:normal aes128-cts:normal
  }}
[logging]
  kdc = FILE:{kdc}/kdc.log
"""


def start_kdc(pids: dict[str, int]) -> int:
    """A fresh realm with its principals and keytabs; returns the KDC port."""
    missing = [b for b in KERBEROS_BINARIES if not Path(b).exists()]
    if missing or not shutil.which("kinit"):
        raise StartError("MIT Kerberos is not installed: run tools/kerberos-packages.sh as root "
                         "(make servers-secure does)")
    kdc = SECURE / "kdc"
    (kdc / "db").mkdir(parents=True)
    port = free_port_both()
    (kdc / "krb5.conf").write_text(krb5_conf(port))
    (kdc / "kdc.conf").write_text(kdc_conf(kdc, port))
    (kdc / "kadm5.acl").write_text("")
    env = kerberos_env()
    # The master password only protects the test database; it is never shown.
    run(["/usr/sbin/kdb5_util", "create", "-s", "-r", REALM, "-P", secrets.token_hex(16)],
        env, "kdb5_util create")
    logfile = kdc / "kdc.out"
    proc = _spawn_env("KDC", ["/usr/sbin/krb5kdc", "-n", "-P", str(kdc / "kdc.pid")], logfile,
                      env)
    pids["kdc"] = proc.pid
    save_pids(pids)
    devservers.wait_until("KDC", lambda: _accepts(port), proc, logfile, 30)
    admin = ["/usr/sbin/kadmin.local", "-r", REALM, "-q"]
    for principal in (f"hbase/{SERVICE_HOST}", f"HTTP/{SERVICE_HOST}", CLIENT):
        run([*admin, f"addprinc -randkey {principal}"], env, f"addprinc {principal}")
    run([*admin, f"addprinc -randkey -maxlife {SHORT_LIFE_S}s {SHORT_CLIENT}"], env)
    run([*admin, f"ktadd -k {SECURE}/service.keytab hbase/{SERVICE_HOST} HTTP/{SERVICE_HOST}"],
        env, "ktadd service")
    run([*admin, f"ktadd -k {SECURE}/client.keytab {CLIENT}"], env, "ktadd client")
    run([*admin, f"ktadd -k {SECURE}/short.keytab {SHORT_CLIENT}"], env, "ktadd short")
    return port


def _spawn_env(name: str, argv: list[str], logfile: Path, env: dict) -> subprocess.Popen:
    """devservers.spawn with an environment of its own (the KDC reads KRB5_KDC_PROFILE)."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=logfile.parent, env=env)
    log(f"started {name} (pid {proc.pid}), log {logfile}")
    return proc


def _accepts(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=1):
        return True


# ---------------------------------------------------------------------------- TLS

def make_tls() -> tuple[Path, str]:
    """A CA and a localhost server certificate it signed; returns (CA file, store password)."""
    tls = SECURE / "tls"
    tls.mkdir()
    password = secrets.token_hex(12)
    (tls / "server.ext").write_text(
        f"subjectAltName = DNS:{SERVICE_HOST}, IP:{HOST}\nbasicConstraints = CA:FALSE\n"
        "keyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n")
    openssl = ["openssl"]
    run([*openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-keyout", str(tls / "ca.key"), "-out", str(tls / "ca.pem"),
         "-subj", "/CN=hbase2es secure test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"], what="openssl CA")
    run([*openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tls / "server.key"),
         "-out", str(tls / "server.csr"), "-subj", f"/CN={SERVICE_HOST}"], what="openssl csr")
    run([*openssl, "x509", "-req", "-in", str(tls / "server.csr"), "-CA", str(tls / "ca.pem"),
         "-CAkey", str(tls / "ca.key"), "-CAcreateserial", "-days", "30",
         "-extfile", str(tls / "server.ext"), "-out", str(tls / "server.pem")],
        what="openssl sign")
    run([*openssl, "pkcs12", "-export", "-in", str(tls / "server.pem"),
         "-inkey", str(tls / "server.key"), "-certfile", str(tls / "ca.pem"), "-name", "thrift",
         "-out", str(tls / "server.p12"), "-passout", f"pass:{password}"], what="openssl pkcs12")
    return tls / "ca.pem", password


# ---------------------------------------------------------------------------- HBase

def site(props: dict[str, str]) -> str:
    body = "".join(f"  <property><name>{k}</name><value>{v}</value></property>\n"
                   for k, v in props.items())
    return f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n'


def hbase_props(data: Path, zk_port: int) -> dict[str, str]:
    keytab = str(SECURE / "service.keytab")
    principal = f"hbase/{SERVICE_HOST}@{REALM}"
    return {
        "hbase.cluster.distributed": "false",
        "hbase.rootdir": f"file://{data}/hbase",
        "hbase.zookeeper.property.dataDir": f"{data}/zookeeper",
        "hbase.zookeeper.quorum": HOST,
        "hbase.zookeeper.property.clientPort": str(zk_port),
        "hbase.unsafe.stream.capability.enforce": "false",
        "hbase.master.info.port": "-1",
        "hbase.regionserver.info.port": "-1",
        "hbase.master.port": "0",
        "hbase.regionserver.port": "0",
        "hbase.master.hostname": HOST,
        "hbase.regionserver.hostname": HOST,
        # Both switches: the Thrift servers go secure only when Hadoop and HBase both are.
        "hadoop.security.authentication": "kerberos",
        "hbase.security.authentication": "kerberos",
        "hadoop.security.authorization": "true",
        "hbase.security.authorization": "true",
        "hbase.master.kerberos.principal": principal,
        "hbase.master.keytab.file": keytab,
        "hbase.regionserver.kerberos.principal": principal,
        "hbase.regionserver.keytab.file": keytab,
        "hbase.thrift.kerberos.principal": principal,
        "hbase.thrift.keytab.file": keytab,
        "hbase.regionserver.thrift.framed": "false",
        "hbase.regionserver.thrift.server.type": "threadpool",
        # The Thrift servers act for their callers: the hbase principal may impersonate.
        "hadoop.proxyuser.hbase.hosts": "*",
        "hadoop.proxyuser.hbase.groups": "*",
        # ... and so may the test client, for doAs over HTTP.
        "hadoop.proxyuser.hbase2es.hosts": "*",
        "hadoop.proxyuser.hbase2es.groups": "*",
        "hadoop.security.auth_to_local": "DEFAULT",
    }


def http_props(password: str) -> dict[str, str]:
    tls = SECURE / "tls"
    return {
        "hbase.regionserver.thrift.http": "true",
        "hbase.thrift.spnego.principal": f"HTTP/{SERVICE_HOST}@{REALM}",
        "hbase.thrift.spnego.keytab.file": str(SECURE / "service.keytab"),
        "hbase.thrift.ssl.enabled": "true",
        "hbase.thrift.ssl.keystore.store": str(tls / "server.p12"),
        "hbase.thrift.ssl.keystore.password": password,
        "hbase.thrift.ssl.keystore.keypassword": password,
        "hbase.thrift.ssl.keystore.type": "pkcs12",
        "hbase.thrift.support.proxyuser": "true",
    }


def write_conf(name: str, props: dict[str, str]) -> Path:
    conf = SECURE / name
    conf.mkdir(parents=True)
    (conf / "hbase-site.xml").write_text(site(props))
    # Hadoop's own classes (UGI, ProxyUsers) read core-site.xml, not hbase-site.xml.
    core = {k: v for k, v in props.items() if k.startswith("hadoop.")}
    (conf / "core-site.xml").write_text(site(core))
    (conf / "log4j2.properties").write_text(devservers.LOG4J2)
    return conf


def jvm(conf: Path, cp: str) -> list[str]:
    # A hosts file of our own, so that the JVM's own name is "localhost" on any machine: the
    # Thrift servers build their SASL service name from it (DNS.getDefaultHost).
    return [devservers.java_bin(), *devservers.HBASE_JVM_FLAGS,
            f"-Djava.security.krb5.conf={SECURE}/kdc/krb5.conf",
            f"-Djdk.net.hosts.file={SECURE}/hosts",
            f"-Dlog4j.configurationFile={conf}/log4j2.properties",
            f"-Dhbase2es.secureservers={SECURE}", "-cp", f"{conf}:{cp}"]


def start_hbase(pids: dict[str, int], password: str) -> dict[str, str]:
    """Master, Thrift1 SASL, Thrift2 SASL and Thrift1 HTTPS; returns their addresses."""
    cp = devservers.classpath("hbase")
    data = SECURE / "data"
    data.mkdir()
    (SECURE / "hosts").write_text(f"{HOST} {SERVICE_HOST} {socket.gethostname()}\n")
    props = hbase_props(data, free_port())
    conf = write_conf("conf", {**props, "hbase.thrift.security.qop": QOP})
    conf_http = write_conf("conf-http", {**props, **http_props(password)})
    heap = os.environ.get("HBASE2ES_SECURE_HBASE_HEAP", "768m")
    procs = {"hbase-master": spawn("secure HBase master", [
        *jvm(conf, cp), f"-Xmx{heap}", "org.apache.hadoop.hbase.master.HMaster", "start"],
        SECURE / "master.log")}
    ports = {"sasl": free_port(), "sasl2": free_port(), "https": free_port()}
    servers = (("thrift-sasl", conf, "org.apache.hadoop.hbase.thrift.ThriftServer", "sasl"),
               ("thrift2-sasl", conf, "org.apache.hadoop.hbase.thrift2.ThriftServer", "sasl2"),
               ("thrift-https", conf_http, "org.apache.hadoop.hbase.thrift.ThriftServer", "https"))
    for name, where, main, key in servers:
        procs[name] = spawn(f"secure HBase {name}", [
            *jvm(where, cp), "-Xmx256m", main, "-p", str(ports[key]), "--infoport", "-1",
            "-b", HOST, "start"], SECURE / f"{name}.log")
    pids.update({name: proc.pid for name, proc in procs.items()})
    save_pids(pids)
    return {"procs": procs, **{k: str(v) for k, v in ports.items()}}


# ---------------------------------------------------------------------------- probes, load

def settings_for(env: dict[str, str], target: str, **extra):
    """HBaseSettings for one of the secure servers, logged in from the client keytab."""
    from hbase2es.settings import HBaseSettings

    base = dict(auth="kerberos", keytab=env["HBASE2ES_TEST_KEYTAB"],
                client_principal=env["HBASE2ES_TEST_CLIENT_PRINCIPAL"], timeout_ms=20_000)
    if target.startswith("https://"):
        return HBaseSettings(transport="http", url=target, ca_certs=env["HBASE2ES_TEST_CA"],
                             **base, **extra)
    host, port = target.rsplit(":", 1)
    return HBaseSettings(host=host, port=int(port), qop=QOP, **base, **extra)


def tables(env: dict[str, str], target: str) -> list[bytes]:
    from hbase2es.hbase.transport import connect_thrift1

    conn = connect_thrift1(settings_for(env, target), timeout_ms=10_000)
    try:
        return conn.tables()
    finally:
        conn.close()


def thrift2_answers(env: dict[str, str], target: str) -> bool:
    from hbase2es.hbase.thrift2 import connect_thrift2, table_name

    client = connect_thrift2(settings_for(env, target, api="thrift2"), timeout_ms=10_000)
    try:
        return bool(client.tableExists(table_name("hbase:meta")))
    finally:
        client.close()


def load_demo(env: dict[str, str]) -> None:
    """hbase2es_secure_demo: ROWS rows, family d, one cell time per row across January 2026."""
    from hbase2es.hbase.transport import connect_thrift1

    conn = connect_thrift1(settings_for(env, env["HBASE2ES_TEST_HBASE_SASL"]), timeout_ms=60_000)
    try:
        if TABLE.encode() not in conn.tables():
            conn.create_table(TABLE, {"d": {}})
        table = conn.table(TABLE)
        step = JANUARY_MS // ROWS
        for i in range(ROWS):
            table.put(f"row-{i:04d}".encode(),
                      {b"d:n": str(i).encode(), b"d:name": f"secure row {i}".encode()},
                      timestamp=JANUARY_2026_MS + i * step)
    finally:
        conn.close()


def answers(env: dict[str, str]) -> bool:
    try:
        os.environ["KRB5_CONFIG"] = env["HBASE2ES_TEST_KRB5_CONFIG"]
        return (TABLE.encode() in tables(env, env["HBASE2ES_TEST_HBASE_SASL"])
                and TABLE.encode() in tables(env, env["HBASE2ES_TEST_HBASE_HTTPS"])
                and thrift2_answers(env, env["HBASE2ES_TEST_HBASE_THRIFT2_SASL"]))
    except Exception:  # noqa: BLE001 - any failure means "start afresh"
        return False


# ---------------------------------------------------------------------------- commands

def up() -> str:
    """Reuse the secure servers when they answer, else start them; "reused" / "started"."""
    env = devservers.read_env(ENV_FILE)
    if env and answers(env):
        log(f"reusing secure servers: SASL {env['HBASE2ES_TEST_HBASE_SASL']}, "
            f"HTTPS {env['HBASE2ES_TEST_HBASE_HTTPS']}")
        return "reused"
    start()
    return "started"


def start() -> dict[str, str]:
    down(quiet=True)
    started = time.monotonic()
    shutil.rmtree(SECURE, ignore_errors=True)
    SECURE.mkdir(parents=True)
    pids: dict[str, int] = {}
    try:
        devservers.classpath("hbase")  # a Maven failure leaves no process behind
        kdc_port = start_kdc(pids)
        os.environ["KRB5_CONFIG"] = str(SECURE / "kdc" / "krb5.conf")
        ca, password = make_tls()
        hbase = start_hbase(pids, password)
        env = {
            "HBASE2ES_TEST_KRB5_CONFIG": str(SECURE / "kdc" / "krb5.conf"),
            "HBASE2ES_TEST_KEYTAB": str(SECURE / "client.keytab"),
            "HBASE2ES_TEST_CLIENT_PRINCIPAL": f"{CLIENT}@{REALM}",
            "HBASE2ES_TEST_HBASE_SASL": f"{SERVICE_HOST}:{hbase['sasl']}",
            "HBASE2ES_TEST_HBASE_THRIFT2_SASL": f"{SERVICE_HOST}:{hbase['sasl2']}",
            "HBASE2ES_TEST_HBASE_HTTPS": f"https://{SERVICE_HOST}:{hbase['https']}/",
            "HBASE2ES_TEST_CA": str(ca),
            "HBASE2ES_TEST_SECURE_QOP": QOP,
            "HBASE2ES_TEST_SECURE_TABLE": TABLE,
            "HBASE2ES_TEST_SHORT_KEYTAB": str(SECURE / "short.keytab"),
            "HBASE2ES_TEST_SHORT_PRINCIPAL": f"{SHORT_CLIENT}@{REALM}",
            "HBASE2ES_TEST_SHORT_LIFE_S": str(SHORT_LIFE_S),
            "HBASE2ES_TEST_KDC": f"{HOST}:{kdc_port}",
            "HBASE2ES_TEST_SECURE_LOGS": str(SECURE),
        }
        wait_for_hbase(env, hbase["procs"])
        load_demo(env)
    except BaseException:
        down(quiet=True)
        raise
    write_env(env)
    log(f"secure servers up in {time.monotonic() - started:.0f}s: SASL "
        f"{env['HBASE2ES_TEST_HBASE_SASL']}, Thrift2 SASL {env['HBASE2ES_TEST_HBASE_THRIFT2_SASL']}"
        f", HTTPS {env['HBASE2ES_TEST_HBASE_HTTPS']}, KDC {env['HBASE2ES_TEST_KDC']}")
    return env


def wait_for_hbase(env: dict[str, str], procs: dict[str, subprocess.Popen]) -> None:
    master = procs["hbase-master"]
    sasl = env["HBASE2ES_TEST_HBASE_SASL"]
    checks = (
        ("secure HBase master", lambda: tables(env, sasl) is not None, master, "master.log"),
        ("secure Thrift SASL server", lambda: tables(env, sasl) is not None,
         procs["thrift-sasl"], "thrift-sasl.log"),
        ("secure Thrift2 SASL server",
         lambda: thrift2_answers(env, env["HBASE2ES_TEST_HBASE_THRIFT2_SASL"]),
         procs["thrift2-sasl"], "thrift2-sasl.log"),
        ("secure Thrift HTTPS server",
         lambda: tables(env, env["HBASE2ES_TEST_HBASE_HTTPS"]) is not None,
         procs["thrift-https"], "thrift-https.log"),
    )
    for what, check, proc, logname in checks:
        devservers.wait_until(what, lambda c=check: master.poll() is None and c(), proc,
                              SECURE / logname, START_TIMEOUT_S)


def down(quiet: bool = False) -> None:
    """Stop exactly the processes `up` started, by PID."""
    try:
        pids = json.loads(PIDS_FILE.read_text())
    except (OSError, ValueError):
        pids = {}
    mine = {name: pid for name, pid in pids.items() if ours(pid)}
    for pid in mine.values():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + devservers.STOP_TIMEOUT_S
    while any(alive(p) for p in mine.values()) and time.monotonic() < deadline:
        time.sleep(0.3)
    for name, pid in mine.items():
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        if not quiet:
            log(f"stopped {name} (pid {pid})")
    PIDS_FILE.unlink(missing_ok=True)
    ENV_FILE.unlink(missing_ok=True)


def status() -> int:
    env = devservers.read_env(ENV_FILE)
    if not (env and answers(env)):
        print("not running")
        return 1
    print("".join(f"{k}={v}\n" for k, v in env.items()), end="")
    return 0


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "up"
    if cmd not in ("up", "down", "status") or len(argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if cmd == "up":
            print(up())
        elif cmd == "down":
            down()
        else:
            return status()
    except StartError as exc:
        log(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
