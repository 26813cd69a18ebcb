"""Fixtures for tests against a real HBase (Thrift1) and a real Elasticsearch.

Where the servers come from, in order:
1. HBASE2ES_TEST_HBASE / HBASE2ES_TEST_ES (set by `make test`, or by you);
2. a Docker engine that answers: testcontainers starts both;
3. the local JVM servers that `make servers` runs (tools/devservers.py).
A missing server skips the integration tests, or fails them under HBASE2ES_REQUIRE_SERVERS=1
or CI=true (helpers.require_or_skip). Only "no server here" is a skip: a bug in this file
or in devservers is an error like any other.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import es_client, require_or_skip
from thriftpy2.transport import TTransportException

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import devservers  # noqa: E402


class NoServer(Exception):
    """No HBase/Elasticsearch can be had here; the message says which and why."""


@dataclass(frozen=True)
class Servers:
    hbase: str  # host:port of the Thrift1 server
    es: str  # http://host:port

    @property
    def hbase_host(self) -> str:
        return self.hbase.rsplit(":", 1)[0]

    @property
    def hbase_port(self) -> int:
        return int(self.hbase.rsplit(":", 1)[1])


def _docker_answers() -> bool:
    try:
        import docker  # testcontainers brings it

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - no engine is the normal case here
        return False


def _given_servers(hbase: str, es: str) -> Servers:
    """The servers HBASE2ES_TEST_HBASE / HBASE2ES_TEST_ES name, once both answer."""
    try:
        devservers.hbase_answers(hbase)
    except (OSError, TTransportException) as exc:
        raise NoServer(f"HBase Thrift at {hbase} (HBASE2ES_TEST_HBASE) does not answer: "
                       f"{exc}") from exc
    try:
        healthy = devservers.es_answers(es)
    except OSError as exc:  # urllib's URLError and refused or timed-out sockets
        raise NoServer(f"Elasticsearch at {es} (HBASE2ES_TEST_ES) does not answer: "
                       f"{exc}") from exc
    if not healthy:
        raise NoServer(f"Elasticsearch at {es} (HBASE2ES_TEST_ES) is not yellow or green")
    return Servers(hbase, es)


def _start_containers(stack):
    """HBase with Thrift and a single-node Elasticsearch in Docker (for contributors with Docker)."""
    from docker.errors import DockerException
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    try:
        hbase = DockerContainer(os.environ.get("HBASE2ES_TEST_HBASE_IMAGE",
                                               "dajobe/hbase:latest"))
        hbase.with_exposed_ports(9090)
        stack.append(hbase.start())
        wait_for_logs(hbase, "Thrift", timeout=180)
        es = DockerContainer(os.environ.get(
            "HBASE2ES_TEST_ES_IMAGE", "docker.elastic.co/elasticsearch/elasticsearch:7.17.25"))
        es.with_env("discovery.type", "single-node").with_env("xpack.security.enabled", "false")
        es.with_env("ES_JAVA_OPTS", "-Xms1g -Xmx1g").with_exposed_ports(9200)
        stack.append(es.start())
        wait_for_logs(es, "started", timeout=180)
    except (DockerException, TimeoutError) as exc:  # no image, no pull, no start in time
        raise NoServer(f"Docker could not start the servers: {exc}") from exc
    return Servers(
        hbase=f"{hbase.get_container_host_ip()}:{hbase.get_exposed_port(9090)}",
        es=f"http://{es.get_container_host_ip()}:{es.get_exposed_port(9200)}",
    )


def _local_servers() -> tuple[Servers, bool]:
    """tools/devservers.py's servers, and whether this call started them."""
    try:
        env, started = devservers.ensure()
    except devservers.StartError as exc:  # no java, Maven failed, a server did not come up
        raise NoServer(f"the local servers did not start: {exc}") from exc
    except FileNotFoundError as exc:
        if exc.filename != "mvn":  # anything else missing is a bug, not a missing tool
            raise
        raise NoServer("the local servers need Maven (mvn) to fetch their jars") from exc
    return Servers(env["HBASE2ES_TEST_HBASE"], env["HBASE2ES_TEST_ES"]), started


@pytest.fixture(scope="session")
def servers():
    """The real servers for this test session (see the module docstring)."""
    hbase, es = os.environ.get("HBASE2ES_TEST_HBASE"), os.environ.get("HBASE2ES_TEST_ES")
    containers: list = []
    started_local = False
    missing = None
    try:
        try:
            if hbase and es:
                found = _given_servers(hbase, es)
            elif _docker_answers():
                found = _start_containers(containers)
            else:
                # Stop afterwards only what this session started, not servers it found running.
                found, started_local = _local_servers()
        except NoServer as exc:
            missing = str(exc)  # skipped or failed below, without this traceback chained on
        if missing is not None:
            require_or_skip(f"no HBase/Elasticsearch for integration tests: {missing}")
        yield found
    finally:
        for container in containers:
            container.stop()
        if started_local:
            devservers.down(quiet=True)


@pytest.fixture(scope="session")
def thrift2_address(servers) -> str:
    """host:port of HBase's Thrift2 server, beside the Thrift1 server of `servers`.

    From HBASE2ES_TEST_HBASE_THRIFT2, else from .devservers/env (`make servers` starts it);
    missing skips, or fails under HBASE2ES_REQUIRE_SERVERS=1 / CI=true.
    """
    address = (os.environ.get("HBASE2ES_TEST_HBASE_THRIFT2")
               or devservers.read_env().get("HBASE2ES_TEST_HBASE_THRIFT2"))
    if not address:
        require_or_skip("no HBase Thrift2 server for integration tests: set "
                        "HBASE2ES_TEST_HBASE_THRIFT2=host:port or run `make servers`")
    return address


@pytest.fixture
def unique_name(request) -> str:
    """A short name unique to this test, safe for HBase tables and ES indices."""
    stem = "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:30]
    return f"t_{stem}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def hbase(servers):
    """A happybase connection of this test's own, closed afterwards."""
    import happybase

    conn = happybase.Connection(servers.hbase_host, servers.hbase_port, timeout=30000)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def table(hbase, unique_name):
    """An empty table with families cf (3 versions) and meta, deleted afterwards."""
    name = unique_name
    hbase.create_table(name, {"cf": {"max_versions": 3}, "meta": {"max_versions": 1}})
    try:
        yield hbase.table(name)
    finally:
        try:
            hbase.delete_table(name, disable=True)
        except Exception:  # noqa: BLE001 - a test may have dropped it already
            pass


@pytest.fixture
def es(servers):
    """An Elasticsearch client for assertions."""
    client = es_client(servers.es, timeout=60)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def index(es, unique_name):
    """An index name of this test's own; every index starting with it is deleted afterwards."""
    name = unique_name.replace("_", "-")
    try:
        yield name
    finally:
        es.indices.delete(index=f"{name}*", ignore_unavailable=True, allow_no_indices=True)
