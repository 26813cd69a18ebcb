"""Smoke tests against the real HBase (Thrift1) and Elasticsearch servers.

They prove the servers are real and pin down the server behaviour the exporter relies on:
HBase time-range scans, scanner caching, key ranges and filters, the Thrift transport the
server speaks, and Elasticsearch bulk semantics (external_gte versions, per-item errors).
Every test writes through the server and asserts on what comes back.

They test the servers, not hbase2es: the ``contract`` marker says so. They run by default
(a server that changed under us should fail the build); ``-m "not contract"`` leaves them out.
"""

from __future__ import annotations

import time

import happybase
import orjson
import pytest
from helpers import ENGINE_KEYS, engine_url, es_client, free_port
from thriftpy2.thrift import TException
from thriftpy2.transport import TTransportException

from hbase2es.search import engine
from hbase2es.settings import ElasticsearchSettings

pytestmark = [pytest.mark.integration, pytest.mark.contract]


# --------------------------------------------------------------------------- helpers


def _ndjson(lines: list[dict]) -> bytes:
    """A bulk body: one JSON object a line, newline-terminated, built with orjson."""
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def _items(response: dict) -> list[tuple[str, int, str | None]]:
    """(_id, status, error type or None) for every item of a bulk response, in order."""
    out = []
    for item in response["items"]:
        (result,) = item.values()
        out.append((result["_id"], result["status"], (result.get("error") or {}).get("type")))
    return out


# --------------------------------------------------------------------------- HBase


def test_hbase_plain_scan_returns_newest_version_and_all_versions_are_kept(table):
    table.put(b"r1", {b"cf:a": b"v100"}, timestamp=100)
    table.put(b"r1", {b"cf:a": b"v300"}, timestamp=300)
    table.put(b"r1", {b"cf:a": b"v200"}, timestamp=200)  # written last, but older

    assert list(table.scan()) == [(b"r1", {b"cf:a": b"v300"})]
    assert table.row(b"r1") == {b"cf:a": b"v300"}
    # max_versions=3 on cf: the server kept all three, newest first.
    assert table.cells(b"r1", b"cf:a", versions=5, include_timestamp=True) == [
        (b"v300", 300), (b"v200", 200), (b"v100", 100)]


def test_hbase_scan_timestamp_is_strict_upper_bound(table):
    t = 1_700_000_000_000
    # r_below: versions at T-1 and T+1 -> only T-1 is < T.
    table.put(b"r_below", {b"cf:c": b"at T-1"}, timestamp=t - 1)
    table.put(b"r_below", {b"cf:c": b"at T+1"}, timestamp=t + 1)
    # r_all: T-1, T, T+1 -> T is excluded, T-1 wins.
    table.put(b"r_all", {b"cf:c": b"at T-1"}, timestamp=t - 1)
    table.put(b"r_all", {b"cf:c": b"at T"}, timestamp=t)
    table.put(b"r_all", {b"cf:c": b"at T+1"}, timestamp=t + 1)
    # r_at: only T and T+1 -> nothing strictly below T, so the row is absent.
    table.put(b"r_at", {b"cf:c": b"at T"}, timestamp=t)
    table.put(b"r_at", {b"cf:c": b"at T+1"}, timestamp=t + 1)

    got = dict(table.scan(timestamp=t, include_timestamp=True))
    assert got == {
        b"r_all": {b"cf:c": (b"at T-1", t - 1)},
        b"r_below": {b"cf:c": (b"at T-1", t - 1)},
    }
    assert b"r_at" not in got
    # One millisecond later the cell at T becomes visible (still strictly below T+1).
    later = dict(table.scan(timestamp=t + 1))
    assert later == {b"r_all": {b"cf:c": b"at T"}, b"r_at": {b"cf:c": b"at T"},
                     b"r_below": {b"cf:c": b"at T-1"}}
    # Without a bound, every row shows its newest cell.
    assert {k: v[b"cf:c"] for k, v in table.scan()} == {
        b"r_all": b"at T+1", b"r_at": b"at T+1", b"r_below": b"at T+1"}


def test_hbase_include_timestamp_returns_value_ts_pairs(table):
    table.put(b"k1", {b"cf:a": b"x", b"meta:m": b"y"}, timestamp=1234)
    table.put(b"k2", {b"cf:a": b"z"}, timestamp=5678)

    rows = list(table.scan(include_timestamp=True))
    assert rows == [
        (b"k1", {b"cf:a": (b"x", 1234), b"meta:m": (b"y", 1234)}),
        (b"k2", {b"cf:a": (b"z", 5678)}),
    ]
    # Without include_timestamp the values are bare bytes.
    assert list(table.scan()) == [(b"k1", {b"cf:a": b"x", b"meta:m": b"y"}), (b"k2", {b"cf:a": b"z"})]


def test_hbase_row_start_row_stop_are_half_open(table):
    with table.batch() as batch:
        for key in (b"a", b"b", b"b\x00", b"c", b"d"):
            batch.put(key, {b"cf:q": key})

    keys = [k for k, _ in table.scan(row_start=b"b", row_stop=b"d")]
    assert keys == [b"b", b"b\x00", b"c"]  # start included, stop excluded
    assert [k for k, _ in table.scan(row_start=b"b", row_stop=b"b\x00")] == [b"b"]
    assert [k for k, _ in table.scan(row_start=b"c")] == [b"c", b"d"]
    assert [k for k, _ in table.scan(row_stop=b"b")] == [b"a"]


def test_hbase_batch_size_does_not_change_results(table):
    n = 2500
    expected = sorted(b"row%05d" % i for i in range(n))
    with table.batch(batch_size=500) as batch:
        for i in reversed(range(n)):  # written out of order on purpose
            batch.put(b"row%05d" % i, {b"cf:v": str(i).encode()})

    results = {}
    for batch_size in (1, 10, 1000):
        rows = list(table.scan(batch_size=batch_size))
        results[batch_size] = rows
        assert [k for k, _ in rows] == expected  # every row, once, in key order
    assert results[1] == results[10] == results[1000]
    assert results[1][1234] == (b"row01234", {b"cf:v": b"1234"})


def test_hbase_columns_limits_to_a_family(table):
    table.put(b"r", {b"cf:a": b"1", b"cf:b": b"2", b"meta:m": b"3"})
    table.put(b"only_meta", {b"meta:m": b"4"})

    assert list(table.scan(columns=[b"cf"])) == [(b"r", {b"cf:a": b"1", b"cf:b": b"2"})]
    assert list(table.scan(columns=[b"meta"])) == [
        (b"only_meta", {b"meta:m": b"4"}), (b"r", {b"meta:m": b"3"})]
    assert list(table.scan(columns=[b"cf:b"])) == [(b"r", {b"cf:b": b"2"})]


def test_hbase_key_only_filter_returns_keys_with_empty_values(table):
    with table.batch() as batch:
        for i in range(5):
            batch.put(b"k%d" % i, {b"cf:a": b"long value %d" % i, b"cf:b": b"x", b"meta:m": b"y"})

    rows = list(table.scan(filter=b"KeyOnlyFilter() AND FirstKeyOnlyFilter()"))
    assert [k for k, _ in rows] == [b"k0", b"k1", b"k2", b"k3", b"k4"]
    for _, data in rows:
        assert len(data) == 1  # first cell only
        assert list(data.values()) == [b""]  # value stripped


def test_hbase_regions_and_tables_list_the_fixture_table(hbase, table):
    name = table.name
    assert name in hbase.tables()
    table.put(b"x", {b"cf:a": b"1"})

    regions = table.regions()
    assert len(regions) >= 1
    for region in regions:
        assert {"start_key", "end_key", "name", "server_name"} <= set(region)
        assert isinstance(region["start_key"], bytes) and isinstance(region["end_key"], bytes)
    # Together the regions cover the whole key space: first starts at b"", last ends at b"".
    ordered = sorted(regions, key=lambda r: r["start_key"])
    assert ordered[0]["start_key"] == b""
    assert ordered[-1]["end_key"] == b""
    for left, right in zip(ordered, ordered[1:]):
        assert left["end_key"] == right["start_key"]


def test_hbase_missing_table_raises_thrift_ioerror(hbase, unique_name):
    from Hbase_thrift import IOError as HBaseIOError  # generated by happybase's Hbase.thrift

    missing = hbase.table(unique_name + "_missing")
    # Observed: Hbase_thrift.IOError (a thriftpy2.thrift.TException subclass) whose
    # .message is bytes starting with "org.apache.hadoop.hbase.TableNotFoundException".
    with pytest.raises(HBaseIOError) as info:
        list(missing.scan(limit=1))
    assert isinstance(info.value, TException)
    assert b"TableNotFoundException" in info.value.message
    assert unique_name.encode() + b"_missing" in info.value.message
    assert unique_name + "_missing" not in [t.decode() for t in hbase.tables()]


# --------------------------------------------------------------------------- Thrift transport


def test_thrift_buffered_binary_connection_works(servers, table):
    table.put(b"via-fixture", {b"cf:a": b"hello"}, timestamp=42)

    conn = happybase.Connection(servers.hbase_host, servers.hbase_port,
                                transport="buffered", protocol="binary", timeout=10000)
    try:
        assert table.name in conn.tables()
        other = conn.table(table.name)
        assert other.row(b"via-fixture", include_timestamp=True) == {b"cf:a": (b"hello", 42)}
    finally:
        conn.close()


def test_thrift_framed_transport_against_buffered_server_fails(servers):
    started = time.monotonic()
    # Observed: TimeoutError ("timed out", i.e. socket.timeout) after the 3 s timeout - the
    # buffered server reads the 4-byte frame length as a message header and waits for more.
    # A closed connection (thriftpy2 TTransportException) would be the other plausible outcome.
    with pytest.raises((TimeoutError, OSError, TTransportException, TException)):
        conn = happybase.Connection(servers.hbase_host, servers.hbase_port,
                                    transport="framed", protocol="binary", timeout=3000)
        try:
            conn.tables()
        finally:
            conn.close()
    assert time.monotonic() - started < 15


# --------------------------------------------------------------------------- Elasticsearch


def test_es_bulk_ndjson_then_count_is_exact(es, index):
    info = es.info()
    assert info["tagline"] == "You Know, for Search"
    assert int(info["version"]["number"].split(".")[0]) >= 7

    n = 137
    lines: list[dict] = []
    for i in range(n):
        lines.append({"index": {"_index": index, "_id": f"doc-{i}"}})
        lines.append({"n": i, "name": f"row {i}"})
    response = es.bulk(body=_ndjson(lines))
    assert response["errors"] is False
    assert [status for _, status, _ in _items(response)] == [201] * n

    es.indices.refresh(index=index)
    assert es.count(index=index)["count"] == n
    assert es.count(index=index, body={"query": {"range": {"n": {"gte": 100}}}})["count"] == 37


def test_es_mget_reports_found_and_not_found(es, index):
    body = _ndjson([
        {"index": {"_index": index, "_id": "a"}}, {"v": 1},
        {"index": {"_index": index, "_id": "b"}}, {"v": 2},
    ])
    assert es.bulk(body=body, refresh="true")["errors"] is False

    docs = es.mget(index=index, body={"ids": ["a", "missing", "b"]})["docs"]
    assert [(d["_id"], d["found"]) for d in docs] == [("a", True), ("missing", False), ("b", True)]
    assert docs[0]["_source"] == {"v": 1}
    assert docs[2]["_source"] == {"v": 2}
    assert "_source" not in docs[1]


def test_es_external_gte_rejects_lower_accepts_equal_version(es, index):
    def write(version: int, value: str) -> tuple[str, int, str | None]:
        body = _ndjson([
            {"index": {"_index": index, "_id": "doc", "version": version,
                       "version_type": "external_gte"}},
            {"value": value},
        ])
        (item,) = _items(es.bulk(body=body))
        return item

    assert write(5, "v5") == ("doc", 201, None)
    # Lower version: per-item 409, the document is left alone.
    assert write(3, "v3") == ("doc", 409, "version_conflict_engine_exception")
    got = es.get(index=index, id="doc")
    assert (got["_version"], got["_source"]) == (5, {"value": "v5"})
    # Equal version: accepted (that is the "gte"), the content is replaced.
    assert write(5, "v5-again") == ("doc", 200, None)
    got = es.get(index=index, id="doc")
    assert (got["_version"], got["_source"]) == (5, {"value": "v5-again"})
    # Higher version: accepted too.
    assert write(9, "v9") == ("doc", 200, None)
    assert es.get(index=index, id="doc")["_version"] == 9


def test_es_mapping_conflict_is_a_per_item_400(es, index):
    es.indices.create(index=index, mappings={"properties": {"n": {"type": "long"}}})
    body = _ndjson([
        {"index": {"_index": index, "_id": "ok1"}}, {"n": 1},
        {"index": {"_index": index, "_id": "bad"}}, {"n": "not a number"},
        {"index": {"_index": index, "_id": "ok2"}}, {"n": 2},
    ])
    response = es.bulk(body=body)
    assert response["errors"] is True
    assert _items(response) == [
        ("ok1", 201, None),
        ("bad", 400, "mapper_parsing_exception"),
        ("ok2", 201, None),
    ]
    es.indices.refresh(index=index)
    assert es.count(index=index)["count"] == 2
    docs = es.mget(index=index, body={"ids": ["ok1", "bad", "ok2"]})["docs"]
    assert [d["found"] for d in docs] == [True, False, True]


def test_es_unreachable_raises_connection_error(servers):
    from elasticsearch.exceptions import ConnectionError as ESConnectionError

    client = es_client(f"http://127.0.0.1:{free_port()}", timeout=2, max_retries=0)
    started = time.monotonic()
    try:
        # Observed: elasticsearch.exceptions.ConnectionError (a TransportError) - connection refused.
        with pytest.raises(ESConnectionError):
            client.info()
        with pytest.raises(ESConnectionError):
            client.bulk(body=_ndjson([{"index": {"_index": "x", "_id": "1"}}, {"a": 1}]))
    finally:
        client.close()
    assert time.monotonic() - started < 10


# --------------------------------------------------------------------------- ingest pipelines


@pytest.fixture(params=ENGINE_KEYS)
def engine_client(request):
    """A client of one engine that `make servers-all` runs, closed afterwards."""
    client = engine.make_client(ElasticsearchSettings(hosts=(engine_url(request.param),)))
    try:
        yield client
    finally:
        client.close()


def test_engine_runs_set_and_fail_pipelines(engine_client, unique_name):
    """[elasticsearch] pipeline (issue 17) needs a node with the ingest role and the set and
    fail processors: the dev runners left the role out, and ES 8/9 run stand-ins for the two
    processors (servers/es-node IngestStandInPlugin), as Central has no ingest-common for them."""
    name = unique_name.replace("_", "-")
    nodes = engine.call(engine_client, "GET", "/_nodes",
                        params={"filter_path": "nodes.*.roles,nodes.*.ingest.processors.type"})
    (node,) = nodes["nodes"].values()
    assert "ingest" in node["roles"]
    processors = {p["type"] for p in node.get("ingest", {}).get("processors", [])}
    assert {"set", "fail"} <= processors

    adds, refuses = f"{name}-adds", f"{name}-refuses"
    try:
        engine.call(engine_client, "PUT", f"/_ingest/pipeline/{adds}", body={"processors": [
            {"set": {"field": "added_by", "value": "pipeline"}}]})
        engine.call(engine_client, "PUT", f"/_ingest/pipeline/{refuses}", body={"processors": [
            {"fail": {"message": "refused by the pipeline"}}]})
        engine.call(engine_client, "PUT", f"/{name}/_doc/a",
                    params={"pipeline": adds, "refresh": "true"}, body={"n": 1})
        got = engine.call(engine_client, "GET", f"/{name}/_doc/a")
        assert got["_source"] == {"n": 1, "added_by": "pipeline"}

        with pytest.raises(engine.EngineError, match="refused by the pipeline"):
            engine.call(engine_client, "PUT", f"/{name}/_doc/b",
                        params={"pipeline": refuses, "refresh": "true"}, body={"n": 2})
        assert engine.call(engine_client, "GET", f"/{name}/_doc/b", ok=(404,))["found"] is False
    finally:
        engine.call(engine_client, "DELETE", f"/{name}", ok=(404,))
        for pipeline in (adds, refuses):
            engine.call(engine_client, "DELETE", f"/_ingest/pipeline/{pipeline}", ok=(404,))
