"""One document Elasticsearch validates per request must not take its slice down.

A row key whose text is over 512 bytes gets the id "sha256:" + hex of the key (issue 17)
and keeps its key in the row-key field; only ids handed to the writer ready-made can still
be too long, and those are refused before sending.

Elasticsearch (7.10 and OpenSearch alike) validates some fields of every action before it
runs any of a bulk: an ``_id`` over 512 bytes or a negative external version makes it
refuse the WHOLE request with 400 ``action_request_validation_exception``. The writer
checks those before sending, and splits a bulk that is refused as a whole anyway; both
are tested here against the real servers.
"""

from __future__ import annotations

import base64
import hashlib
import json

import orjson
import pytest
from helpers import T0, export_args, put_row, read_index, read_report, run_cli, table_name

from hbase2es.backoff import Backoff
from hbase2es.mapping import document_id
from hbase2es.search import engine, writer as es_writer
from hbase2es.search.chunking import document_problem, index_action
from hbase2es.search.writer import BulkWriter, Rejection
from hbase2es.settings import ElasticsearchSettings

LONG_TEXT_KEY = "k" * 513  # 513 bytes of UTF-8
BINARY_KEY = b"\xff" * 400  # not UTF-8: its id is "b64:" + 536 characters
NORMAL = [f"row{i:02d}" for i in range(8)]


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(es_writer, "BACKOFF", Backoff(base_s=0.001, cap_s=0.001))


def _ids(payload: bytes) -> list[str]:
    lines = payload.split(b"\n")
    return [next(iter(orjson.loads(line).values()))["_id"] for line in lines[0::2] if line]


# --------------------------------------------------------------------------- unit


def test_document_problem_names_what_elasticsearch_would_refuse_for_the_whole_bulk():
    assert document_problem("a" * 512, 0) is None
    assert document_problem("é" * 256, 2**63 - 1) is None  # 512 bytes, the largest version
    kind, reason = document_problem("é" * 257, 1)
    assert kind == "document_id_too_long" and "514 bytes" in reason and "512" in reason
    assert document_problem("", 1)[0] == "document_id_empty"
    assert document_problem("x", -1)[0] == "version_out_of_range"
    assert document_problem("x", 2**63)[0] == "version_out_of_range"
    assert document_id(BINARY_KEY) == "sha256:" + hashlib.sha256(BINARY_KEY).hexdigest()
    assert document_problem(document_id(BINARY_KEY), 1) is None
    assert document_id(b"k" * 512) == "k" * 512  # 512 bytes: still the key itself
    assert document_id(b"k" * 513).startswith("sha256:")


def test_refused_documents_are_settled_with_their_chunk_in_order():
    """A refused document never reaches a request, and is counted only when the chunk it
    sits in settles: a checkpoint at an earlier key must not count it already."""
    sent: list[list[str]] = []

    def send(payload: bytes) -> dict:
        sent.append(_ids(payload))
        return {"errors": False, "items": [{"index": {"status": 201}}] * len(sent[-1])}

    failures: list[Rejection] = []
    settled: list[tuple] = []
    writer = BulkWriter(None, max_docs=2, max_bytes=10**6, send=send,
                        on_failure=failures.append)
    writer.on_settled = lambda key: settled.append((key, writer.counts.indexed,
                                                    writer.counts.failed))
    writer.index("i", "a", 1, {}, "a")
    writer.index("i", "b", 1, {}, "b")
    writer.index("i", "x" * 513, 1, {}, "long")  # after b: belongs to the next chunk
    writer.index("i", "c", 1, {}, "c")
    writer.index("i", "", 1, {}, "empty")
    writer.flush()
    assert sent == [["a", "b"], ["c"]]
    # "long" came after "b", so the first checkpoint does not count it; "c"'s does.
    assert settled == [("b", 2, 0), ("c", 3, 1), ("empty", 3, 2)]
    assert [(f.key, f.status, f.error_type) for f in failures] == [
        ("long", 0, "document_id_too_long"), ("empty", 0, "document_id_empty")]
    c = writer.counts
    assert (c.indexed, c.failed, c.requests) == (3, 2, 2)


def test_a_chunk_of_refused_documents_only_sends_nothing_and_still_settles():
    writer = BulkWriter(None, max_docs=10, max_bytes=10**6, send=lambda payload: 1 / 0)
    settled = []
    writer.on_settled = settled.append
    writer.index("i", "x" * 600, 1, {}, "k1")
    writer.index("i", "y", -3, {}, "k2")
    writer.flush()
    assert settled == ["k2"] and writer.counts.failed == 2 and writer.counts.requests == 0


# --------------------------------------------------------------------------- real server


def _client(url: str):
    return engine.make_client(ElasticsearchSettings(hosts=(url,)))


@pytest.mark.integration
def test_real_whole_request_400_is_split_until_the_bad_documents_are_alone(servers, es, index):
    """add() takes ready items without checking them, so the real server refuses this bulk
    as a whole; halving it must isolate exactly the two bad documents."""
    client = _client(servers.es)
    payloads: list[bytes] = []

    def send(payload: bytes) -> dict:
        payloads.append(payload)
        return engine.bulk(client, payload, filter_path=es_writer.FILTER_PATH)

    failures: list[Rejection] = []
    settled = []
    try:
        writer = BulkWriter(client, max_docs=100, max_bytes=10**6, send=send,
                            on_failure=failures.append, on_settled=settled.append)
        keys = [f"d{i}" for i in range(10)]
        bad = {"d3": "z" * 513, "d8": "d8"}
        for key in keys:
            version = -1 if key == "d8" else 100
            writer.add(index_action(index, bad.get(key, key), version, {"k": key}), key)
        writer.flush()
    finally:
        client.close()
    c = writer.counts
    assert (c.indexed, c.stale, c.failed) == (8, 0, 2)
    assert sorted(f.key for f in failures) == ["d3", "d8"]
    assert {f.status for f in failures} == {400}
    assert {f.error_type for f in failures} == {"action_request_validation_exception"}
    assert any("too long" in f.reason for f in failures)
    assert any("illegal version value" in f.reason for f in failures)
    assert settled == ["d9"]  # settled once, after every part
    assert len(payloads) <= 1 + 2 * 2 * 4  # halving: a few requests per bad document
    assert sorted(read_index(es, index)) == sorted(k for k in keys if k not in bad)


@pytest.mark.integration
def test_real_bulk_refused_as_too_large_is_split_and_every_document_lands(servers, es, index):
    """A proxy in front of the cluster answers 413 to bodies over 300 bytes; the real send
    is wrapped to play that proxy."""
    client = _client(servers.es)
    sizes: list[int] = []

    def send(payload: bytes) -> dict:
        sizes.append(len(payload))
        if len(payload) > 300:
            raise _api_error(413)
        return engine.bulk(client, payload, filter_path=es_writer.FILTER_PATH)

    try:
        writer = BulkWriter(client, max_docs=100, max_bytes=10**6, send=send)
        for i in range(6):
            writer.index(index, f"r{i}", 7, {"n": i}, f"r{i}")
        writer.flush()
    finally:
        client.close()
    assert writer.counts.indexed == 6 and writer.counts.failed == 0
    # Each document went out exactly once in a request small enough to pass.
    assert sizes[0] > 300 and sum(s for s in sizes if s <= 300) == sizes[0]
    assert {d: h["_source"]["n"] for d, h in read_index(es, index).items()} == {
        f"r{i}": i for i in range(6)}


def _api_error(status: int):
    return engine.EngineError(status, {})


def _load(table) -> None:
    for i, key in enumerate(NORMAL):
        put_row(table, key, {"cf:v": str(i)}, T0 + 10 + i)
    put_row(table, LONG_TEXT_KEY, {"cf:v": "long"}, T0 + 100)
    put_row(table, BINARY_KEY, {"cf:v": "binary"}, T0 + 200)


def _export(servers, table, index, tmp_path, name: str, *extra, expect_exit: int):
    report = tmp_path / f"{name}.json"
    run_cli(export_args(servers, table_name(table), index, T0, T0 + 1000, "1s", "--workers", "1",
                        "--report", report, *extra), expect_exit=expect_exit)
    return read_report(report)


@pytest.mark.integration
def test_oversized_keys_are_indexed_under_sha256_ids_and_keep_their_key(
        servers, table, es, index, tmp_path):
    """Until issue 17 these two rows were dead letters; now every row of the slice lands,
    the long ones under "sha256:" ids with the whole key in @rowkey, and verify finds them."""
    _load(table)
    dead = tmp_path / "dead.ndjson"
    ledger = tmp_path / "ledger.db"
    report = _export(servers, table, index, tmp_path, "first", "--dead-letter", dead,
                     "--ledger", ledger, expect_exit=0)
    assert report["totals"] == {"rows": 10, "indexed": 10, "stale": 0, "failed": 0,
                                "deleted": 0}
    assert not dead.exists() or dead.read_text() == ""
    docs = read_index(es, index)
    hashed = {"sha256:" + hashlib.sha256(k).hexdigest(): k
              for k in (LONG_TEXT_KEY.encode(), BINARY_KEY)}
    assert sorted(docs) == sorted(NORMAL + list(hashed))
    for doc_id, key in hashed.items():
        text = docs[doc_id]["_source"]["@rowkey"]
        assert (text.encode() if not text.startswith("b64:")
                else base64.urlsafe_b64decode(text[4:])) == key
    assert "@rowkey" not in docs[NORMAL[0]]["_source"]  # a short key needs no copy
    verified = run_cli(["verify", "--hbase", servers.hbase, "--table", table_name(table),
                        "--es", servers.es, "--index", index, "--start", str(T0), "--end",
                        str(T0 + 1000), "--slice", "1s", "--compare-fields", "--json"])
    totals = json.loads(verified.stdout)["totals"]
    assert (totals["present"], totals["missing"], totals["differing"]) == (10, 0, 0)
