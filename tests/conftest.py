"""Fixtures for tests against a real HBase (Thrift1) and a real Elasticsearch.

Where the servers come from, in order:
1. HBASE2ES_TEST_HBASE / HBASE2ES_TEST_ES (set by `make test`, or by you);
2. a Docker engine that answers: testcontainers starts both;
3. the local JVM servers that `make servers` runs (tools/devservers.py).
Under CI=true a missing server fails the integration tests loudly; elsewhere they skip.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import devservers  # noqa: E402


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


def _start_containers(stack):
    """HBase with Thrift and a single-node Elasticsearch in Docker (for contributors with Docker)."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    hbase = DockerContainer(os.environ.get("HBASE2ES_TEST_HBASE_IMAGE", "dajobe/hbase:latest"))
    hbase.with_exposed_ports(9090)
    stack.append(hbase.start())
    wait_for_logs(hbase, "Thrift", timeout=180)
    es = DockerContainer(os.environ.get(
        "HBASE2ES_TEST_ES_IMAGE", "docker.elastic.co/elasticsearch/elasticsearch:7.17.25"))
    es.with_env("discovery.type", "single-node").with_env("xpack.security.enabled", "false")
    es.with_env("ES_JAVA_OPTS", "-Xms1g -Xmx1g").with_exposed_ports(9200)
    stack.append(es.start())
    wait_for_logs(es, "started", timeout=180)
    return Servers(
        hbase=f"{hbase.get_container_host_ip()}:{hbase.get_exposed_port(9090)}",
        es=f"http://{es.get_container_host_ip()}:{es.get_exposed_port(9200)}",
    )


@pytest.fixture(scope="session")
def servers():
    """The real servers for this test session (see the module docstring)."""
    hbase, es = os.environ.get("HBASE2ES_TEST_HBASE"), os.environ.get("HBASE2ES_TEST_ES")
    containers: list = []
    started_local = False
    try:
        if hbase and es:
            found = Servers(hbase, es)
        elif _docker_answers():
            found = _start_containers(containers)
        else:
            # Stop afterwards only what this session started, not servers it found running.
            env, started_local = devservers.ensure()
            found = Servers(env["HBASE2ES_TEST_HBASE"], env["HBASE2ES_TEST_ES"])
    except Exception as exc:  # noqa: BLE001
        message = f"no HBase/Elasticsearch for integration tests: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    try:
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
    missing fails under CI=true and skips elsewhere.
    """
    address = (os.environ.get("HBASE2ES_TEST_HBASE_THRIFT2")
               or devservers.read_env().get("HBASE2ES_TEST_HBASE_THRIFT2"))
    if not address:
        message = ("no HBase Thrift2 server for integration tests: set "
                   "HBASE2ES_TEST_HBASE_THRIFT2=host:port or run `make servers`")
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
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
    from elasticsearch import Elasticsearch

    client = Elasticsearch([servers.es], request_timeout=60) if _client_major() >= 8 \
        else Elasticsearch([servers.es], timeout=60)
    try:
        yield client
    finally:
        client.close()


def _client_major() -> int:
    import elasticsearch

    return elasticsearch.__versionstr__ and int(elasticsearch.__versionstr__.split(".")[0])


@pytest.fixture
def index(es, unique_name):
    """An index name of this test's own; every index starting with it is deleted afterwards."""
    name = unique_name.replace("_", "-")
    try:
        yield name
    finally:
        es.indices.delete(index=f"{name}*", ignore_unavailable=True, allow_no_indices=True)
