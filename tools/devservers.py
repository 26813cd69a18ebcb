"""Start and stop a real HBase (standalone + Thrift) and Elasticsearch on loopback.

No Docker here: the servers come from Maven Central as jars (see servers/*/pom.xml)
and run as plain JVMs. State lives under .devservers/ in the repository:

    env        HBASE2ES_TEST_HBASE=host:port (Thrift1), HBASE2ES_TEST_ES=http://host:port,
               HBASE2ES_TEST_HBASE_THRIFT2=host:port (HBase's Thrift2 server); after
               `up --all` also HBASE2ES_TEST_ES_ES7 (the same node as HBASE2ES_TEST_ES),
               HBASE2ES_TEST_ES_ES8, _ES9, _OS2 and _OS3, one node of each engine
    pids.json  the PIDs this tool started, so `down` stops exactly those
    <name>/    each server's data, config and log

`up` starts HBase and Elasticsearch 7.10.2 (the default sink). `up --all` adds one node
each of Elasticsearch 8 and 9 and OpenSearch 2 and 3 (see ENGINES), beside a running set or
together with a new one. Nodes that already answer are reused.

`spark` starts a Spark standalone master and 2 workers from pyspark's jars beside them
(HBASE2ES_TEST_SPARK_MASTER in env); `spark-down` stops only that cluster, `down` all.

Usage: python tools/devservers.py up [--all] | down | status [--all] | spark | spark-down
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".devservers"
ENV_FILE = STATE / "env"
PIDS_FILE = STATE / "pids.json"
POMS = ROOT / "servers"

HOST = "127.0.0.1"
START_TIMEOUT_S = 240
STOP_TIMEOUT_S = 30
# The codelibs runner refuses HTTP ports above 9299 (its built-in maxHttpPort).
ES_PORT_RANGE = range(9200, 9299)

# From HBase's bin/hbase (add_jdk11_jvm_flags): HBase 2.6 reflects into the JDK.
HBASE_JVM_FLAGS = [
    "-XX:+IgnoreUnrecognizedVMOptions",
    *(f"--add-opens=java.base/{p}=ALL-UNNAMED" for p in (
        "java.lang", "java.lang.reflect", "java.io", "java.nio", "sun.nio.ch", "java.util",
        "java.util.concurrent", "java.util.concurrent.atomic", "java.net",
        "jdk.internal.misc", "jdk.internal.ref", "java.security")),
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    "--add-exports=java.base/sun.net.dns=ALL-UNNAMED",
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
    "-Dorg.apache.hbase.thirdparty.io.netty.tryReflectionSetAccessible=true",
    "-Dlog4j2.formatMsgNoLookups=true",
]

ES_JVM_FLAGS = [
    "-Des.distribution.flavor=default",
    "-Des.distribution.type=tar",
    "-Dlog4j2.formatMsgNoLookups=true",
    "-Djava.net.preferIPv4Stack=true",
]

# The poms that compile a small launcher of ours, and its sources: the Elasticsearch 8/9
# node (servers/es-node) and mains that give codelibs' runners' nodes the ingest role,
# which the runners leave out and take from no command-line flag or config file.
LAUNCHER_SOURCES = {"es8": POMS / "es-node" / "src", "es9": POMS / "es-node" / "src",
                    **{pom: POMS / "runner-roles" / "src"
                       for pom in ("elasticsearch", "opensearch2", "opensearch3")}}
COMPILED_POMS = tuple(LAUNCHER_SOURCES)
# servers/runner-roles' main, before a codelibs runner's class and the node roles it is to use.
RUNNER_WITH_ROLES = "hbase2es.devservers.RunnerWithRoles"
# JDKs looked at when the one on PATH / JAVA_HOME is too old for an engine.
JDK_DIRS = (Path("/usr/lib/jvm"),)

LOG4J2 = """status = warn
appender.file.type = Console
appender.file.name = console
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{ISO8601} %-5p [%t] %c{2}: %m%n
rootLogger = INFO,console
logger.zk.name = org.apache.zookeeper
logger.zk.level = WARN
logger.hadoop.name = org.apache.hadoop
logger.hadoop.level = WARN
logger.hbase.name = org.apache.hadoop.hbase
logger.hbase.level = INFO
"""


class StartError(RuntimeError):
    """A server did not come up; the message already holds its log tail."""


# ---------------------------------------------------------------------------- helpers

def log(msg: str) -> None:
    print(f"devservers: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) != 0


def read_env(path: Path = ENV_FILE) -> dict[str, str]:
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ours(pid: int) -> bool:
    """True when pid is a live process started by this tool (its command names STATE)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(STATE).encode() in cmd and alive(pid)


def classpath(name: str, java_home: str | None = None) -> str:
    """Resolve a server's jars with Maven once; the list is cached next to its data.

    A pom with Java sources of its own (LAUNCHER_SOURCES) is compiled too, with
    ``java_home``'s compiler, and its classes lead the classpath.
    """
    pom = POMS / name / "pom.xml"
    classes = POMS / name / "target" / "classes"
    sources = [pom, *LAUNCHER_SOURCES[name].rglob("*.java")] if name in COMPILED_POMS else [pom]
    out = STATE / f"{name}.classpath"
    if (out.exists() and all(out.stat().st_mtime >= f.stat().st_mtime for f in sources)
            and (name not in COMPILED_POMS or classes.is_dir())):
        return out.read_text().strip()
    log(f"resolving {name} jars with Maven (first time downloads them)")
    STATE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    goals = ["compile"] if name in COMPILED_POMS else []
    cmd = ["mvn", "-B", "-q", "-f", str(pom), *goals, "dependency:build-classpath",
           f"-Dmdep.outputFile={tmp}"]
    env = {**os.environ, "JAVA_HOME": java_home} if java_home else None
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise StartError(f"Maven could not resolve {name}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    if name in COMPILED_POMS:
        tmp.write_text(f"{classes}:{tmp.read_text().strip()}")
    tmp.replace(out)
    return out.read_text().strip()


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin/java").exists():
        return str(Path(home) / "bin/java")
    found = shutil.which("java")
    if not found:
        raise StartError("no java on PATH: install JDK 17 to run the local servers")
    return found


def spawn(name: str, argv: list[str], logfile: Path) -> subprocess.Popen:
    """Start a server detached from our session so `make` returning does not end it."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=logfile.parent)
    shown = logfile.relative_to(ROOT) if logfile.is_relative_to(ROOT) else logfile
    log(f"started {name} (pid {proc.pid}), log {shown}")
    return proc


def wait_until(what: str, check, proc: subprocess.Popen, logfile: Path,
               timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError(f"{what} exited with code {proc.returncode}; log tail:\n{tail(logfile)}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            pass
        time.sleep(1)
    raise StartError(f"{what} did not answer within {timeout:.0f}s; log tail:\n{tail(logfile)}")


# ---------------------------------------------------------------------------- probes

def hbase_answers(address: str) -> bool:
    import happybase  # only the Python side of the harness needs it

    host, port = address.rsplit(":", 1)
    conn = happybase.Connection(host, int(port), timeout=5000, autoconnect=True)
    try:
        conn.tables()
        return True
    finally:
        conn.close()


def hbase_thrift2_answers(address: str) -> bool:
    """True when a Thrift2 server answers and sees hbase:meta (so the master is up)."""
    from hbase2es.hbase.thrift2 import connect_thrift2, table_name  # the project's own IDL

    host, port = address.rsplit(":", 1)
    client = connect_thrift2(host, int(port), timeout_ms=5000)
    try:
        return bool(client.tableExists(table_name("hbase:meta")))
    finally:
        client.close()


def es_answers(url: str) -> bool:
    with urllib.request.urlopen(url + "/_cluster/health?wait_for_status=yellow&timeout=5s",
                                timeout=10) as resp:
        return json.load(resp).get("status") in ("green", "yellow")


def es_put(url: str, path: str, body: dict) -> None:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()


def running_env() -> dict[str, str] | None:
    """The env of servers that already answer, or None."""
    env = read_env()
    hbase, es = env.get("HBASE2ES_TEST_HBASE"), env.get("HBASE2ES_TEST_ES")
    thrift2 = env.get("HBASE2ES_TEST_HBASE_THRIFT2")
    if not (hbase and es and thrift2):
        return None
    try:
        if hbase_answers(hbase) and es_answers(es) and hbase_thrift2_answers(thrift2):
            return env
    except Exception:  # noqa: BLE001
        return None
    return None


# ---------------------------------------------------------------------------- servers

def hbase_site(data: Path, zk_port: int) -> str:
    props = {
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
        # Lease-expiry tests want a short scanner lease (they wait past it); override through
        # the environment. 20s is harmless otherwise: the HBase client inside the Thrift
        # servers reopens a region scanner whose lease expired, and the readers reopen a
        # scanner the Thrift server dropped (Thrift1 after 2x this, Thrift2 after 1x).
        "hbase.client.scanner.timeout.period":
            os.environ.get("HBASE2ES_DEVSERVERS_SCANNER_TIMEOUT_MS", "20000"),
        "hbase.regionserver.thrift.framed": "false",
    }
    body = "".join(f"  <property><name>{k}</name><value>{v}</value></property>\n"
                   for k, v in props.items())
    return f'<?xml version="1.0"?>\n<configuration>\n{body}</configuration>\n'


def hbase_jvm(conf: Path, cp: str) -> list[str]:
    """The java command line shared by the HBase master and both Thrift servers."""
    return [java_bin(), *HBASE_JVM_FLAGS, f"-Dlog4j.configurationFile={conf}/log4j2.properties",
            f"-Dhbase2es.devservers={STATE}", "-cp", f"{conf}:{cp}"]


def start_hbase_thrift2(pids: dict[str, int], conf: Path, cp: str) -> str:
    """HBase's Thrift2 server, a client of the running master through the same conf."""
    port = free_port()
    logfile = conf.parent / "thrift2.log"
    proc = spawn("HBase Thrift2", [*hbase_jvm(conf, cp), "-Xmx512m",
                                   "org.apache.hadoop.hbase.thrift2.ThriftServer",
                                   "-p", str(port), "--infoport", "-1", "-b", HOST, "start"],
                 logfile)
    pids["hbase-thrift2"] = proc.pid
    address = f"{HOST}:{port}"
    wait_until("HBase Thrift2 server", lambda: hbase_thrift2_answers(address), proc, logfile)
    return address


def start_thrift1(conf: Path, port: int, logfile: Path) -> subprocess.Popen:
    """A Thrift1 server for the HBase that ``conf`` points at; returns without waiting.

    Fault tests start PRIVATE ones (they kill and restart them) with the shared HBase's
    conf dir, or a copy of it with other client settings such as the scanner lease.
    """
    return spawn("HBase Thrift (private)", [
        *hbase_jvm(conf, classpath("hbase")), "-Xmx256m",
        "org.apache.hadoop.hbase.thrift.ThriftServer",
        "-p", str(port), "--infoport", "-1", "-b", HOST, "start"], logfile)


def start_hbase(pids: dict[str, int]) -> str:
    cp = classpath("hbase")
    base = STATE / "hbase"
    shutil.rmtree(base, ignore_errors=True)
    conf, data = base / "conf", base / "data"
    conf.mkdir(parents=True)
    data.mkdir()
    (conf / "hbase-site.xml").write_text(hbase_site(data, free_port()))
    (conf / "log4j2.properties").write_text(LOG4J2)
    jvm = hbase_jvm(conf, cp)

    master_log = base / "master.log"
    # Master, region server and ZooKeeper share this heap; 1g ran out while the benchmark
    # loaded 500k rows beside the tests.
    heap = os.environ.get("HBASE2ES_DEVSERVERS_HBASE_HEAP", "2g")
    master = spawn("HBase master", [*jvm, f"-Xmx{heap}", "org.apache.hadoop.hbase.master.HMaster",
                                    "start"], master_log)
    pids["hbase-master"] = master.pid
    thrift_port = free_port()
    thrift_log = base / "thrift.log"
    thrift = spawn("HBase Thrift", [*jvm, "-Xmx512m", "org.apache.hadoop.hbase.thrift.ThriftServer",
                                    "-p", str(thrift_port), "--infoport", "-1", "-b", HOST, "start"],
                   thrift_log)
    pids["hbase-thrift"] = thrift.pid
    address = f"{HOST}:{thrift_port}"
    # The Thrift server answers before the master has assigned meta; tables() needs both.
    wait_until("HBase master", lambda: master.poll() is None and hbase_answers(address),
               master, master_log)
    wait_until("HBase Thrift server", lambda: hbase_answers(address), thrift, thrift_log)
    return address


def start_es(pids: dict[str, int], base: Path | None = None, http_port: int | None = None,
             heap: str | None = None, fresh: bool = True) -> str:
    """Start Elasticsearch and wait until it answers; return its URL."""
    return launch_es(pids, base, http_port, heap, fresh, wait=True)[0]


def launch_es(pids: dict[str, int], base: Path | None = None, http_port: int | None = None,
              heap: str | None = None, fresh: bool = True, wait: bool = False
              ) -> tuple[str, subprocess.Popen, Path]:
    """Start Elasticsearch; return its URL, process and log (wait_for_es waits for it).

    Without ``base`` it is the shared dev server under STATE. Tests pass ``base`` (their own
    data dir), ``http_port`` (below 9300) and ``heap`` for a PRIVATE node they may kill;
    ``fresh=False`` keeps base's data, to start such a node again after a kill.
    """
    cp = classpath("elasticsearch")
    private = base is not None
    base = base or STATE / "elasticsearch"
    if fresh:
        shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True, exist_ok=True)
    if http_port is None:
        http_port = engine_port()
    # The runner keeps an existing elasticsearch.yml. Without single-node discovery a
    # node on loopback would find another one (a private test node, a second checkout's
    # servers) on 9300-9305 and try to join its cluster.
    config = base / "node" / "node_1" / "config"
    config.mkdir(parents=True, exist_ok=True)
    if not (config / "elasticsearch.yml").exists():
        (config / "elasticsearch.yml").write_text(
            f"discovery.type: single-node\ntransport.port: {free_port()}\n")
    logfile = base / "es.log"
    heap = heap or os.environ.get("HBASE2ES_DEVSERVERS_ES_HEAP", "1g")
    proc = spawn("Elasticsearch", [
        java_bin(), f"-Xms{heap}", f"-Xmx{heap}", *ES_JVM_FLAGS,
        # A private node lives for one test: the quick JIT tier starts it twice as fast.
        *(["-XX:TieredStopAtLevel=1"] if private else []),
        f"-Dhbase2es.devservers={base if private else STATE}",
        "-cp", cp, RUNNER_WITH_ROLES, "org.codelibs.elasticsearch.runner.ElasticsearchClusterRunner",
        "master,data,ingest",
        "-basePath", str(base / "node"), "-numOfNode", "1", "-baseHttpPort", str(http_port - 1),
        "-clusterName", f"hbase2es-private-{http_port}" if private else "hbase2es-dev",
        # A private node needs only HTTP: skipping the other modules halves its start time.
        *(["-moduleTypes", "org.elasticsearch.transport.Netty4Plugin"] if private else []),
    ], logfile)
    pids["elasticsearch"] = proc.pid
    url = f"http://{HOST}:{http_port}"
    if wait:
        wait_for_es(url, proc, logfile)
    return url, proc, logfile


def wait_for_es(url: str, proc: subprocess.Popen, logfile: Path) -> None:
    wait_until("Elasticsearch", lambda: es_answers(url), proc, logfile)
    # Shared CI disks can be nearly full; a disk watermark must not turn indices read-only.
    es_put(url, "/_cluster/settings",
           {"persistent": {"cluster.routing.allocation.disk.threshold_enabled": False}})


# ---------------------------------------------------------------------------- more engines

@dataclass(frozen=True)
class Engine:
    """One search engine node that `up --all` runs beside the default Elasticsearch 7."""

    key: str      # env line HBASE2ES_TEST_ES_<key>; lower-cased, the folder under STATE
    pom: str      # its folder under servers/
    product: str  # "elasticsearch" or "opensearch", as GET / names it
    major: int
    java: int     # the oldest Java it runs on
    runner: bool  # codelibs' OpenSearch runner; else our own launcher (servers/es-node)

    @property
    def env_name(self) -> str:
        return f"HBASE2ES_TEST_ES_{self.key}"

    @property
    def label(self) -> str:
        return f"{'OpenSearch' if self.product == 'opensearch' else 'Elasticsearch'} {self.major}"


ENGINES = (
    Engine("ES8", "es8", "elasticsearch", 8, 17, runner=False),
    Engine("ES9", "es9", "elasticsearch", 9, 21, runner=False),
    Engine("OS2", "opensearch2", "opensearch", 2, 17, runner=True),
    Engine("OS3", "opensearch3", "opensearch", 3, 21, runner=True),
)
# The default sink under its engine name, so tests can loop over every HBASE2ES_TEST_ES_*.
ES7_ENV = "HBASE2ES_TEST_ES_ES7"
# HTTP ports handed out in this run: several nodes start at once and the codelibs runners
# only take ports up to 9299, so two of them must not pick the same free one.
_claimed_ports: set[int] = set()


def jdk_major(home: Path) -> int:
    """The feature release of the JDK at ``home`` (from its `release` file), 0 if unknown."""
    try:
        for line in (home / "release").read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                version = line.split("=", 1)[1].strip('"')
                return int(version.split(".")[0])
    except (OSError, ValueError):
        pass
    return 0


def java_home_for(minimum: int) -> Path:
    """A JDK of release ``minimum`` or newer: JAVA_HOME, the java on PATH, then JDK_DIRS."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]))
    if shutil.which("java"):
        candidates.append(Path(os.path.realpath(shutil.which("java"))).parent.parent)
    for folder in JDK_DIRS:
        if folder.is_dir():
            candidates.extend(sorted(folder.iterdir(), key=jdk_major, reverse=True))
    for home in candidates:
        if (home / "bin" / "java").exists() and jdk_major(home) >= minimum:
            return home
    raise StartError(f"no JDK {minimum}+ found (JAVA_HOME, PATH, {', '.join(map(str, JDK_DIRS))})")


def engine_port() -> int:
    """A free HTTP port in 9201-9299 that no node of this run has taken yet."""
    for port in range(ES_PORT_RANGE.start + 1, ES_PORT_RANGE.stop + 1):
        if port not in _claimed_ports and port_free(port):
            _claimed_ports.add(port)
            return port
    raise StartError("no free port for a search engine in 9201-9299")


def engine_root(url: str) -> dict:
    with urllib.request.urlopen(url + "/", timeout=10) as resp:
        return json.load(resp)


def engine_answers(url: str, engine: Engine) -> bool:
    """True when ``url`` is a healthy node of ``engine`` (GET / names the product and major)."""
    version = engine_root(url).get("version", {})
    product = version.get("distribution", "elasticsearch")
    return (product == engine.product and str(version.get("number", "")).startswith(f"{engine.major}.")
            and es_answers(url))


@dataclass
class Launched:
    """A node that was started and may not answer yet."""

    engine: Engine
    url: str
    proc: subprocess.Popen
    logfile: Path


def engine_heap() -> str:
    return os.environ.get("HBASE2ES_DEVSERVERS_ENGINE_HEAP", "512m")


def launch_engine(engine: Engine, pids: dict[str, int]) -> Launched:
    """Start one node of ``engine`` on fresh data under STATE; return without waiting."""
    home = java_home_for(engine.java)
    cp = classpath(engine.pom, str(home))
    base = STATE / engine.key.lower()
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    http_port = engine_port()
    cluster = f"hbase2es-dev-{engine.key.lower()}"
    # Each node has its own cluster name and single-node discovery so that nodes on
    # loopback never join each other.
    node = {"discovery.type": "single-node", "network.host": HOST,
            "transport.port": str(free_port()), "cluster.name": cluster,
            # Shared CI disks can be nearly full: a watermark must not make indices read-only.
            "cluster.routing.allocation.disk.threshold_enabled": "false"}
    jvm = [str(home / "bin" / "java"), f"-Xms{engine_heap()}", f"-Xmx{engine_heap()}",
           "-Dlog4j2.formatMsgNoLookups=true", "-Djava.net.preferIPv4Stack=true",
           # Lucene and the servers call into native code through java.lang.foreign.
           *(["--enable-native-access=ALL-UNNAMED"] if jdk_major(home) >= 21 else []),
           f"-Dhbase2es.devservers={STATE}"]
    if engine.runner:
        # The runner reads node_1/config/opensearch.yml and serves HTTP on baseHttpPort + 1.
        config = base / "node" / "node_1" / "config"
        config.mkdir(parents=True)
        (config / "opensearch.yml").write_text("".join(f"{k}: {v}\n" for k, v in node.items()))
        argv = [*jvm, "-cp", cp, RUNNER_WITH_ROLES, "org.codelibs.opensearch.runner.OpenSearchRunner",
                "cluster_manager,data,ingest",
                "-basePath", str(base / "node"), "-numOfNode", "1",
                "-baseHttpPort", str(http_port - 1), "-clusterName", cluster]
    else:
        # Ingest pipelines run, but on stand-ins for the set and fail processors only
        # (servers/es-node IngestStandInPlugin): the ingest-common module is not on Maven
        # Central for 8.x/9.x, neither as org.elasticsearch.plugin:ingest-common nor as
        # org.codelibs.elasticsearch.module:ingest-common (that copy ends at 7.x).
        node.update({"path.home": str(base), "path.data": str(base / "data"),
                     "path.logs": str(base / "logs"), "node.name": "node-1",
                     "http.port": str(http_port), "logger.level": "INFO"})
        argv = [*jvm, "-Des.distribution.type=tar", f"-Des.nativelibs.path={native_libs(base)}",
                # ES's own SIMD library (libvec) is not on Central either.
                "-Dorg.elasticsearch.nativeaccess.enableVectorLibrary=false",
                "-cp", cp, "hbase2es.devservers.EsNode",
                *(f"{k}={v}" for k, v in node.items())]
    logfile = base / "node.log"
    proc = spawn(f"{engine.label} (Java {jdk_major(home)})", argv, logfile)
    pids[engine.key.lower()] = proc.pid
    return Launched(engine, f"http://{HOST}:{http_port}", proc, logfile)


def native_libs(base: Path) -> Path:
    """A folder for Elasticsearch's es.nativelibs.path, with the system's libzstd in it.

    Central's jars carry no native libraries. Without the folder ES 9 disables native
    access altogether, and without zstd an index with index.codec=best_compression fails
    on its first refresh; the system's libzstd (1.5.x) has the calls ES makes.
    """
    folder = base / "native"
    folder.mkdir(parents=True, exist_ok=True)
    found = [p for pattern in ("/usr/lib/*/libzstd.so.1", "/usr/lib64/libzstd.so.1",
                               "/lib/*/libzstd.so.1", "/usr/lib/libzstd.so.1")
             for p in sorted(Path("/").glob(pattern.lstrip("/")))]
    if found:
        (folder / "libzstd.so").symlink_to(found[0])
    return folder


def wait_for_engine(node: Launched) -> None:
    wait_until(node.engine.label, lambda: engine_answers(node.url, node.engine), node.proc,
               node.logfile)


def prepare_engines(engines) -> None:
    """Resolve (and compile) every engine's jars first, so a Maven failure leaves no JVM."""
    for engine in engines:
        classpath(engine.pom, str(java_home_for(engine.java)))


def missing_engines(env: dict[str, str]) -> list[Engine]:
    """The engines whose env line is absent or does not point at a healthy node of them."""
    def answers(engine: Engine) -> bool:
        try:
            return engine_answers(env.get(engine.env_name, ""), engine)
        except Exception:  # noqa: BLE001 - any failure means "start it"
            return False
    return [e for e in ENGINES if not answers(e)]


def add_engines(env: dict[str, str]) -> bool:
    """Start the engines the running set lacks; True when it started any.

    On a failure it stops the nodes it started (others keep running) and raises.
    """
    env[ES7_ENV] = env["HBASE2ES_TEST_ES"]
    todo = missing_engines(env)
    if not todo:
        write_env(env)
        return False
    prepare_engines(todo)
    pids = json.loads(PIDS_FILE.read_text()) if PIDS_FILE.exists() else {}
    for engine in todo:  # alive but not answering: replace it
        old = pids.pop(engine.key.lower(), None)
        if old and ours(old):
            os.kill(old, signal.SIGKILL)
        env.pop(engine.env_name, None)
    started = time.monotonic()
    launched: list[Launched] = []
    try:
        for engine in todo:
            launched.append(launch_engine(engine, pids))
            PIDS_FILE.write_text(json.dumps(pids))
        for node in launched:
            wait_for_engine(node)
            env[node.engine.env_name] = node.url
    except BaseException:
        stop({n.engine.key.lower(): n.proc.pid for n in launched}, quiet=True)
        for node in launched:
            pids.pop(node.engine.key.lower(), None)
        PIDS_FILE.write_text(json.dumps(pids))
        write_env(env)  # without the lines of the engines that did not come up
        raise
    PIDS_FILE.write_text(json.dumps(pids))
    write_env(env)
    log(f"added {', '.join(f'{n.engine.label} {n.url}' for n in launched)} "
        f"in {time.monotonic() - started:.0f}s")
    return True


def write_env(env: dict[str, str]) -> None:
    ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in env.items()))


# ---------------------------------------------------------------------------- Spark standalone

# `spark` starts a Spark standalone master and SPARK_WORKERS workers on loopback from
# pyspark's own jars (bin/spark-class), for tests/test_spark_cluster.py; its URL goes to
# .devservers/env as SPARK_ENV. Each worker has 1 core, so 2 workers are 2 executors.
SPARK_ENV = "HBASE2ES_TEST_SPARK_MASTER"
SPARK_WORKERS = 2
SPARK_WORKER_MEMORY = "1g"  # what executors may take; the tests ask 512m each
SPARK_DAEMON_HEAP = "256m"  # master and workers only schedule and launch
SPARK_PID_PREFIX = "spark-"  # their names in pids.json
SPARK_JAVA = 17  # pyspark 4


@dataclass
class SparkCluster:
    """A standalone master and its workers (names -> PIDs, as in pids.json)."""

    master: str  # spark://127.0.0.1:PORT
    ui: str  # the master's web UI: its /json/ says which workers are alive
    base: Path  # logs, work and local dirs
    pids: dict[str, int]
    marker: Path  # in the daemons' command lines: which PIDs are still these daemons

    def worker_pid(self, n: int) -> int:
        return self.pids[f"{SPARK_PID_PREFIX}worker-{n}"]

    def stop(self) -> None:
        """Stop the daemons by PID, then whatever they launched (executors, Python workers)."""
        stop_spark(self.pids, self.marker)


def spark_home() -> Path:
    """pyspark's package folder, which holds Spark's jars and bin/spark-class."""
    import importlib.util

    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise StartError("pyspark is not installed: pip install -e '.[test]'")
    home = Path(spec.origin).parent
    if not (home / "bin" / "spark-class").exists():
        raise StartError(f"pyspark at {home} has no bin/spark-class")
    return home


def spark_daemon_env(base: Path, marker: Path) -> dict[str, str]:
    """The environment of a master or worker (and so of the executors a worker starts)."""
    # hbase2es settings, secrets and PYTHONPATH of the caller's shell must not reach the
    # executors: what a run passes them (spark.executorEnv.*) is all they should have.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SPARK_", "PYSPARK_")) and k != "PYTHONPATH"
           and not (k.startswith("HBASE2ES_") and not k.startswith("HBASE2ES_TEST_"))}
    # The cmdline markers make ours() true; a worktree whose .devservers links to another
    # checkout's is marked with both paths, so either checkout's `down` stops them.
    markers = sorted({str(marker), str(marker.resolve())})
    env.update({
        "SPARK_HOME": str(spark_home()),
        "JAVA_HOME": str(java_home_for(SPARK_JAVA)),
        "SPARK_CONF_DIR": str(base / "conf"),  # empty: no spark-env.sh or defaults of the host
        "SPARK_LOG_DIR": str(base / "logs"),
        "SPARK_LOCAL_IP": HOST,
        "SPARK_DAEMON_MEMORY": SPARK_DAEMON_HEAP,
        "SPARK_DAEMON_JAVA_OPTS": " ".join(
            f"-Dhbase2es.devservers{'' if i == 0 else '.link'}={m}" for i, m in enumerate(markers)),
        # The REST submission server would take the fixed port 6066.
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
    })
    return env


def spark_state(ui: str) -> dict:
    with urllib.request.urlopen(ui + "/json/", timeout=10) as resp:
        return json.load(resp)


def spark_answers(master: str, ui: str, workers: int = SPARK_WORKERS) -> bool:
    """True when the master at ``ui`` is ALIVE, is ``master`` and has ``workers`` alive."""
    state = spark_state(ui)
    return (state.get("status") == "ALIVE" and state.get("url") == master
            and int(state.get("aliveworkers", 0)) >= workers)


def _spawn_spark(name: str, argv: list[str], logfile: Path, env: dict[str, str]
                 ) -> subprocess.Popen:
    """spark-class execs the JVM, so the PID is the daemon's; its own session, so that
    `make` returning does not end it and its executors can be found by session id."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=logfile.parent, env=env)
    log(f"started {name} (pid {proc.pid}), log {logfile}")
    return proc


def launch_spark(base: Path, workers: int = SPARK_WORKERS, marker: Path | None = None
                 ) -> SparkCluster:
    """Start a master and ``workers`` workers under ``base`` (fresh) and wait for them.

    The shared cluster lives under STATE/spark; a test that kills a worker starts a
    PRIVATE one under its tmp_path. On a failure every daemon started is stopped.
    """
    shutil.rmtree(base, ignore_errors=True)
    (base / "conf").mkdir(parents=True)
    env = spark_daemon_env(base, marker or base)
    spark_class = str(spark_home() / "bin" / "spark-class")
    port, ui_port = free_port(), free_port()
    master, ui = f"spark://{HOST}:{port}", f"http://{HOST}:{ui_port}"
    pids: dict[str, int] = {}
    cluster = SparkCluster(master, ui, base, pids, marker or base)
    try:
        log_master = base / "master.log"
        proc = _spawn_spark("Spark master", [
            spark_class, "org.apache.spark.deploy.master.Master", "--host", HOST,
            "--port", str(port), "--webui-port", str(ui_port)], log_master, env)
        pids[f"{SPARK_PID_PREFIX}master"] = proc.pid
        wait_until("Spark master", lambda: spark_answers(master, ui, 0), proc, log_master)
        procs = []
        for n in range(1, workers + 1):
            folder = base / f"worker-{n}"
            (folder / "local").mkdir(parents=True)
            procs.append(_spawn_spark(f"Spark worker {n}", [
                spark_class, "org.apache.spark.deploy.worker.Worker", master, "--host", HOST,
                "--cores", "1", "--memory", SPARK_WORKER_MEMORY, "--webui-port", "0",
                "--work-dir", str(folder / "work")], folder / "worker.log",
                {**env, "SPARK_LOCAL_DIRS": str(folder / "local")}))
            pids[f"{SPARK_PID_PREFIX}worker-{n}"] = procs[-1].pid
        for n, worker in enumerate(procs, 1):
            wait_until(f"Spark worker {n}", lambda: spark_answers(master, ui, workers), worker,
                       base / f"worker-{n}" / "worker.log")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def session_members(sessions: set[int]) -> list[int]:
    """Live processes of these sessions that run Spark code: a worker's executors and
    their Python workers, also once the worker itself is gone."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) in sessions and b"pyspark" in cmd and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def marked(pid: int, marker: Path) -> bool:
    """True when ``pid`` is alive and its command line names ``marker``."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(marker).encode() in cmd and alive(pid)


def stop_spark(pids: dict[str, int], marker: Path) -> None:
    """SIGTERM the Spark daemons that are still ours (a worker stops its executors),
    SIGKILL what outlives STOP_TIMEOUT_S, then what is left in their sessions: the
    executors of a worker that was killed."""
    sessions = set(pids.values())  # each daemon leads its own session (_spawn_spark)
    mine = {name: pid for name, pid in pids.items() if marked(pid, marker)}
    for pid in mine.values():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(alive(p) for p in mine.values()) and time.monotonic() < deadline:
        time.sleep(0.3)
    for name, pid in mine.items():
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        log(f"stopped {name} (pid {pid})")
    for pid in session_members(sessions):
        os.kill(pid, signal.SIGKILL)


def shared_spark() -> SparkCluster | None:
    """The cluster `spark` started, from .devservers (None when none is recorded)."""
    try:
        state = json.loads((STATE / "spark" / "cluster.json").read_text())
        pids = json.loads(PIDS_FILE.read_text())
    except (OSError, ValueError):
        return None
    mine = {k: v for k, v in pids.items() if k.startswith(SPARK_PID_PREFIX)}
    return SparkCluster(state["master"], state["ui"], STATE / "spark", mine, STATE)


def ensure_spark() -> tuple[str, str]:
    """The shared cluster's master URL, and "started" or "reused" (only a caller that
    started it stops it: down_spark)."""
    cluster = shared_spark()
    url = read_env().get(SPARK_ENV)
    try:
        if cluster and url == cluster.master and spark_answers(cluster.master, cluster.ui) \
                and all(ours(pid) for pid in cluster.pids.values()) and cluster.pids:
            log(f"reusing Spark master {url}")
            return url, "reused"
    except Exception:  # noqa: BLE001 - not answering: start afresh
        pass
    down_spark(quiet=True)  # a half-alive earlier cluster must not linger
    started = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)
    cluster = launch_spark(STATE / "spark", marker=STATE)
    (cluster.base / "cluster.json").write_text(json.dumps({"master": cluster.master,
                                                           "ui": cluster.ui}))
    _record_spark(cluster.pids, cluster.master)
    log(f"Spark master {cluster.master} with {SPARK_WORKERS} workers up in "
        f"{time.monotonic() - started:.0f}s")
    return cluster.master, "started"


def _record_spark(pids: dict[str, int], master: str | None) -> None:
    """Put the cluster's PIDs and env line in (or, with no master, take them out of)
    pids.json and env, keeping every other server's lines."""
    recorded = json.loads(PIDS_FILE.read_text()) if PIDS_FILE.exists() else {}
    recorded = {k: v for k, v in recorded.items() if not k.startswith(SPARK_PID_PREFIX)}
    recorded.update(pids)
    if recorded or PIDS_FILE.exists():
        PIDS_FILE.write_text(json.dumps(recorded))
    env = {k: v for k, v in read_env().items() if k != SPARK_ENV}
    if master:
        env[SPARK_ENV] = master
    if env or ENV_FILE.exists():
        write_env(env)


def down_spark(quiet: bool = False) -> None:
    """Stop the shared cluster only (other servers keep running) and drop its env line."""
    cluster = shared_spark()
    if cluster is None or not cluster.pids:
        if not quiet:
            log("no Spark cluster to stop")
    else:
        cluster.stop()
    _record_spark({}, None)


# ---------------------------------------------------------------------------- commands

def add_thrift2() -> dict[str, str] | None:
    """Start only the Thrift2 server beside an HBase and Elasticsearch that already answer.

    Servers started before the Thrift2 server joined the set keep running (others may be
    using them); None when they do not answer, so `up` starts everything afresh.
    """
    env = read_env()
    hbase, es = env.get("HBASE2ES_TEST_HBASE"), env.get("HBASE2ES_TEST_ES")
    conf = STATE / "hbase" / "conf"
    try:
        pids = json.loads(PIDS_FILE.read_text())
        if not (hbase and es and (conf / "hbase-site.xml").exists()
                and ours(pids.get("hbase-master", 0)) and hbase_answers(hbase) and es_answers(es)):
            return None
    except Exception:  # noqa: BLE001 - anything missing means "start afresh"
        return None
    old = pids.pop("hbase-thrift2", None)
    if old and ours(old):  # alive but not answering: replace it
        os.kill(old, signal.SIGKILL)
    try:
        env["HBASE2ES_TEST_HBASE_THRIFT2"] = start_hbase_thrift2(pids, conf, classpath("hbase"))
    finally:
        PIDS_FILE.write_text(json.dumps(pids))
    ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    log(f"added HBase Thrift2 {env['HBASE2ES_TEST_HBASE_THRIFT2']} to the running servers")
    return env


def up(all_engines: bool = False) -> dict[str, str]:
    """Start the servers, or reuse the ones named in .devservers/env when they answer."""
    return ensure_state(all_engines)[0]


def ensure() -> tuple[dict[str, str], bool]:
    """Like up(), and whether this call started the servers, so that its caller (and only
    its caller) stops them: a slow answer to a status check must not make a caller stop
    servers that someone else started."""
    env, state = ensure_state()
    return env, state == "started"


def ensure_state(all_engines: bool = False) -> tuple[dict[str, str], str]:
    """Like up(); the state says what this call did: "started" the whole set, "added"
    engines beside a running HBase and Elasticsearch 7, or "reused" everything."""
    env = running_env()
    if env:
        log(f"reusing running servers: {env['HBASE2ES_TEST_HBASE']}, {env['HBASE2ES_TEST_ES']}, "
            f"Thrift2 {env['HBASE2ES_TEST_HBASE_THRIFT2']}")
    else:
        env = add_thrift2()
    if env:
        added = all_engines and add_engines(env)
        if all_engines and not added:
            log("reusing running engines: " + ", ".join(
                f"{e.key} {env[e.env_name]}" for e in ENGINES))
        return env, "added" if added else "reused"
    return start_all(ENGINES if all_engines else ()), "started"


def start_all(engines) -> dict[str, str]:
    """Start HBase, Elasticsearch 7 and ``engines`` afresh; the JVMs boot side by side."""
    down(quiet=True)  # a half-alive earlier set must not linger beside the new one
    STATE.mkdir(parents=True, exist_ok=True)
    pids: dict[str, int] = {}
    started = time.monotonic()
    try:
        # Resolve every classpath before starting anything, so a Maven failure leaves no JVM.
        classpath("hbase")
        classpath("elasticsearch")
        prepare_engines(engines)
        # The search engines boot while HBase does: together they take little more than HBase.
        es, es_proc, es_log = launch_es(pids)
        launched = [launch_engine(engine, pids) for engine in engines]
        PIDS_FILE.write_text(json.dumps(pids))
        hbase = start_hbase(pids)
        PIDS_FILE.write_text(json.dumps(pids))
        thrift2 = start_hbase_thrift2(pids, STATE / "hbase" / "conf", classpath("hbase"))
        PIDS_FILE.write_text(json.dumps(pids))
        wait_for_es(es, es_proc, es_log)
        for node in launched:
            wait_for_engine(node)
    except BaseException:
        PIDS_FILE.write_text(json.dumps(pids))
        down(quiet=True)
        raise
    env = {"HBASE2ES_TEST_HBASE": hbase, "HBASE2ES_TEST_ES": es,
           "HBASE2ES_TEST_HBASE_THRIFT2": thrift2}
    if engines:
        env[ES7_ENV] = es
        env.update({node.engine.env_name: node.url for node in launched})
    write_env(env)
    log(f"servers up in {time.monotonic() - started:.0f}s: HBase Thrift {hbase}, "
        f"Thrift2 {thrift2}, Elasticsearch {es}"
        + "".join(f", {node.engine.label} {node.url}" for node in launched))
    return env


def stop(pids: dict[str, int], quiet: bool = False) -> None:
    """SIGTERM each of ``pids`` that this tool started, SIGKILL what outlives STOP_TIMEOUT_S."""
    mine = {name: pid for name, pid in pids.items() if ours(pid)}
    for name, pid in mine.items():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(alive(p) for p in mine.values()) and time.monotonic() < deadline:
        time.sleep(0.3)
    for name, pid in mine.items():
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        if not quiet:
            log(f"stopped {name} (pid {pid})")
    if not quiet and not mine:
        log("nothing to stop")


def down(quiet: bool = False) -> None:
    """Stop exactly the processes `up` started, by PID."""
    try:
        pids = json.loads(PIDS_FILE.read_text())
    except (OSError, ValueError):
        pids = {}
    stop(pids, quiet)
    for path in (PIDS_FILE, ENV_FILE):
        path.unlink(missing_ok=True)


def status(all_engines: bool) -> int:
    env = running_env()
    if env and all_engines and missing_engines(env):
        env = None
    if not env:
        print("not running")
        return 1
    names = {"HBASE2ES_TEST_HBASE", "HBASE2ES_TEST_ES", "HBASE2ES_TEST_HBASE_THRIFT2"}
    if all_engines:
        names |= {ES7_ENV, *(e.env_name for e in ENGINES)}
    print("\n".join(f"{k}={v}" for k, v in env.items() if k in names))
    return 0


def spark_command(cmd: str) -> int:
    """`spark`: start (or reuse) the shared Spark cluster, printing started/reused;
    `spark-down`: stop it, leaving the other servers running."""
    try:
        if cmd == "spark":
            print(ensure_spark()[1])
        else:
            down_spark()
    except StartError as exc:
        log(str(exc))
        return 1
    return 0


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "up"
    flags = argv[2:]
    if cmd in ("spark", "spark-down") and not flags:
        return spark_command(cmd)
    if cmd not in ("up", "down", "status") or flags not in ([], ["--all"]) or (
            cmd == "down" and flags):
        print(__doc__, file=sys.stderr)
        return 2
    all_engines = flags == ["--all"]
    try:
        if cmd == "up":
            # stdout says what this call started (`make test` stops only what it started).
            print(ensure_state(all_engines)[1])
        elif cmd == "down":
            down()
        else:
            return status(all_engines)
    except StartError as exc:
        log(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
