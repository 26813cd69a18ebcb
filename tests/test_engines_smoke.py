"""What hbase2es needs from every search engine it supports, asked over plain HTTP.

One node per engine runs under `make servers-all`; its address is HBASE2ES_TEST_ES_<KEY>
(in the environment or .devservers/env). urllib, not a client library, so that no client's
product check or compatibility header decides the outcome: these tests are about the
servers. A missing engine skips, or fails under HBASE2ES_REQUIRE_SERVERS=1 / CI=true.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid

import pytest

import devservers  # tools/ is on the path (conftest)
from helpers import require_or_skip

pytestmark = [pytest.mark.integration, pytest.mark.contract]

# key -> (product as GET / names it, major version)
ENGINES = {
    "ES7": ("elasticsearch", 7),
    "ES8": ("elasticsearch", 8),
    "ES9": ("elasticsearch", 9),
    "OS2": ("opensearch", 2),
    "OS3": ("opensearch", 3),
}
TIMEOUT_S = 30


def engine_url(key: str) -> str:
    """The engine's address, or a skip (a failure when servers are required)."""
    name = f"HBASE2ES_TEST_ES_{key}"
    url = os.environ.get(name) or devservers.read_env().get(name)
    if not url:
        require_or_skip(f"no {name}: run `make servers-all` or set it to http://host:port")
    return url.rstrip("/")


def call(method: str, url: str, body=None, ndjson: bool = False):
    """One HTTP request; returns (status, headers, parsed JSON body or None)."""
    if ndjson:
        data = "".join(json.dumps(line) + "\n" for line in body).encode()
        ctype = "application/x-ndjson"
    else:
        data = None if body is None else json.dumps(body).encode()
        ctype = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            status, headers, raw = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        status, headers, raw = err.code, err.headers, err.read()
    return status, headers, json.loads(raw) if raw else None


@pytest.fixture(params=sorted(ENGINES))
def engine(request):
    """(key, url) of one engine."""
    return request.param, engine_url(request.param)


@pytest.fixture
def index(engine):
    """A fresh one-shard index name on the engine, deleted afterwards."""
    key, url = engine
    name = f"t_engines_{key.lower()}_{uuid.uuid4().hex[:8]}"
    status, _, body = call("PUT", f"{url}/{name}",
                           {"settings": {"number_of_shards": 1, "number_of_replicas": 0}})
    assert status == 200, body
    yield name
    call("DELETE", f"{url}/{name}")


def test_root_names_the_engine_and_its_major(engine):
    key, url = engine
    product, major = ENGINES[key]
    status, headers, body = call("GET", f"{url}/")
    assert status == 200
    version = body["version"]
    assert version.get("distribution", "elasticsearch") == product
    assert version["number"].split(".")[0] == str(major)
    assert body["cluster_name"] and body["cluster_uuid"]
    if product == "elasticsearch":
        assert body["tagline"] == "You Know, for Search"
        assert version["build_flavor"] == "default"
        if major >= 8:  # elasticsearch-py 8/9 refuse a server without it
            assert headers.get("X-Elastic-Product") == "Elasticsearch"
    else:
        assert "OpenSearch" in body["tagline"]
    # ping() is HEAD /
    assert call("HEAD", f"{url}/")[0] == 200


def test_bulk_external_gte_keeps_the_newest_version(engine, index):
    _, url = engine

    def action(doc_id, version):
        return {"index": {"_index": index, "_id": doc_id,
                          "version": version, "version_type": "external_gte"}}

    status, _, body = call("POST", f"{url}/_bulk", [
        action("a", 5), {"v": "a5"},
        action("b", 7), {"v": "b7"},
    ], ndjson=True)
    assert status == 200 and body["errors"] is False, body
    assert [item["index"]["status"] for item in body["items"]] == [201, 201]

    # older: refused with 409; equal: accepted (that is what _gte means)
    status, _, body = call("POST", f"{url}/_bulk?refresh=true", [
        action("a", 3), {"v": "a3"},
        action("b", 7), {"v": "b7-again"},
    ], ndjson=True)
    assert status == 200 and body["errors"] is True
    older, equal = (item["index"] for item in body["items"])
    assert older["status"] == 409
    assert older["error"]["type"] == "version_conflict_engine_exception"
    assert equal["status"] == 200 and equal["_version"] == 7

    status, _, body = call("POST", f"{url}/{index}/_search?version=true",
                           {"query": {"match_all": {}}})
    assert status == 200, body
    # sorted here: ES 8+ refuses to sort on _id (no fielddata for it)
    hits = sorted(body["hits"]["hits"], key=lambda h: h["_id"])
    assert [(h["_id"], h["_version"], h["_source"]["v"]) for h in hits] == [
        ("a", 5, "a5"), ("b", 7, "b7-again")]


def test_best_compression_index_takes_documents(engine):
    """index.codec=best_compression (zstd on ES 8.14+): ES 9 from Central jars needs a native
    libzstd for it, which devservers links from the system."""
    _, url = engine
    name = f"t_engines_codec_{uuid.uuid4().hex[:8]}"
    status, _, body = call("PUT", f"{url}/{name}", {"settings": {
        "number_of_shards": 1, "number_of_replicas": 0, "index.codec": "best_compression"}})
    assert status == 200, body
    try:
        status, _, body = call("PUT", f"{url}/{name}/_doc/1?refresh=true", {"v": "x" * 100})
        assert status == 201, body
        status, _, body = call("POST", f"{url}/{name}/_flush")
        assert status == 200 and body["_shards"]["failed"] == 0, body
        assert call("GET", f"{url}/{name}/_doc/1")[2]["_source"] == {"v": "x" * 100}
    finally:
        call("DELETE", f"{url}/{name}")
