"""Tests of es_writer.py: per-item outcomes, retries of rejected documents only, deadlines.

Per-item 429s and whole-request failures cannot be had from a healthy server on demand,
so those are crafted through BulkWriter's ``send`` hook; each such behaviour is paired
with a test against the real Elasticsearch (the hook wraps the real bulk call and only
rewrites what the server answered), which checks that the documents really landed.
"""

from __future__ import annotations

import time

import orjson
import pytest
from helpers import count_docs, free_port, read_index

from hbase2es.search import engine as es_compat, writer as es_writer
from hbase2es.search.chunking import index_action
from hbase2es.errors import UnavailableError
from hbase2es.backoff import Backoff
from hbase2es.search.writer import BulkWriter, Rejection
from hbase2es.settings import ElasticsearchSettings


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    """Retries without the real (up to 30 s) jittered sleeps."""
    monkeypatch.setattr(es_writer, "BACKOFF", Backoff(base_s=0.001, cap_s=0.001))


def _item(doc_id: str, version: int = 1, index: str = "idx", **document) -> bytes:
    return index_action(index, doc_id, version, document or {"v": doc_id})


def _ids(payload: bytes) -> list[str]:
    lines = payload.split(b"\n")
    return [orjson.loads(line)["index"]["_id"] for line in lines[0::2] if line]


def _answer(*statuses: int, error_type: str = "mapper_parsing_exception") -> dict:
    items = []
    for status in statuses:
        outcome = {"status": status}
        if status >= 300:
            outcome["error"] = {"type": error_type if status == 400 else "x",
                                "reason": f"reason {status}"}
        items.append({"index": outcome})
    return {"errors": any(s >= 300 for s in statuses), "items": items}


class FakeSend:
    """Answers bulk requests from a script and records every payload it was sent."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.payloads: list[bytes] = []

    def __call__(self, payload: bytes) -> dict:
        self.payloads.append(payload)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer(payload) if callable(answer) else answer


def _writer(send, *, max_docs=100, max_bytes=10**6, retry_seconds=5.0, failures=None):
    return BulkWriter(None, max_docs=max_docs, max_bytes=max_bytes, retry_seconds=retry_seconds,
                      on_failure=(failures.append if failures is not None else None), send=send)


def _connection_error():
    """What the transport raises for a refused connection (the cause rides in errors)."""
    return es_compat.CONNECTION_ERRORS[0]("refused",
                                          errors=(ConnectionRefusedError("connection refused"),))


def _api_error(status: int):
    return es_compat.EngineError(status, {})


# --------------------------------------------------------------------------- unit


def test_all_indexed_in_one_request():
    send = FakeSend(_answer(*[201] * 5))
    writer = _writer(send)
    for i in range(5):
        writer.add(_item(f"r{i}"), f"r{i}".encode())
    assert send.payloads == []  # nothing is sent before a chunk is full or flushed
    writer.flush()
    assert len(send.payloads) == 1 and _ids(send.payloads[0]) == [f"r{i}" for i in range(5)]
    c = writer.counts
    assert (c.indexed, c.stale, c.failed, c.retried, c.requests) == (5, 0, 0, 0, 1)


def test_an_answer_without_one_item_per_document_is_not_counted_as_indexed():
    # A proxy or stub answering {"errors": false} alone must not make documents count
    # as indexed without the cluster having confirmed each one.
    writer = _writer(FakeSend({"errors": False}))
    writer.add(_item("a"), "a")
    with pytest.raises(UnavailableError, match="0 items for a bulk of 1"):
        writer.flush()
    assert writer.counts.indexed == 0


def test_flush_without_documents_sends_nothing():
    send = FakeSend()
    writer = _writer(send)
    writer.flush()
    assert send.payloads == [] and writer.counts.requests == 0


def test_chunks_are_bounded_by_documents():
    send = FakeSend(_answer(201, 201), _answer(201, 201), _answer(201))
    writer = _writer(send, max_docs=2)
    for i in range(5):
        writer.add(_item(f"r{i}"), i)
    writer.flush()
    assert [_ids(p) for p in send.payloads] == [["r0", "r1"], ["r2", "r3"], ["r4"]]
    assert writer.counts.indexed == 5


def test_conflict_is_stale_and_other_errors_fail_with_a_rejection():
    failures: list[Rejection] = []
    send = FakeSend(_answer(201, 409, 400, 200))
    writer = _writer(send, failures=failures)
    items = [_item(f"r{i}") for i in range(4)]
    for i, item in enumerate(items):
        writer.add(item, f"key{i}")
    writer.flush()
    c = writer.counts
    assert (c.indexed, c.stale, c.failed, c.requests) == (2, 1, 1, 1)
    assert failures == [Rejection("key2", 400, "mapper_parsing_exception", "reason 400", items[2])]


def test_only_busy_items_are_sent_again_until_they_succeed():
    send = FakeSend(_answer(201, 429, 201, 503, 429), _answer(429, 201, 201), _answer(201))
    writer = _writer(send)
    for i in range(5):
        writer.add(_item(f"r{i}"), i)
    writer.flush()
    assert [_ids(p) for p in send.payloads] == [
        ["r0", "r1", "r2", "r3", "r4"], ["r1", "r3", "r4"], ["r1"]]
    c = writer.counts
    assert (c.indexed, c.stale, c.failed, c.retried, c.requests) == (5, 0, 0, 4, 3)


def test_retried_items_are_resent_byte_for_byte():
    original = _item("r1", version=77, name="Zoë")
    send = FakeSend(_answer(429), _answer(200))
    writer = _writer(send)
    writer.add(original, "r1")
    writer.flush()
    assert send.payloads == [original, original]


def test_busy_past_the_deadline_raises_unavailable():
    send = FakeSend(*[_answer(429, 201)] + [_answer(429)] * 10_000)
    writer = _writer(send, retry_seconds=0.2)
    writer.add(_item("a"), "a")
    writer.add(_item("b"), "b")
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="busy"):
        writer.flush()
    assert time.monotonic() - started < 5
    assert writer.counts.indexed == 1 and len(send.payloads) >= 2


def test_whole_request_connection_errors_are_retried():
    send = FakeSend(_connection_error(), _connection_error(), _answer(201))
    writer = _writer(send)
    writer.add(_item("a"), "a")
    writer.flush()
    assert writer.counts.indexed == 1 and writer.counts.requests == 3
    assert send.payloads[0] == send.payloads[2]


def test_whole_request_busy_status_is_retried_but_a_refused_request_is_not():
    send = FakeSend(_api_error(503), _answer(201))
    writer = _writer(send)
    writer.add(_item("a"), "a")
    writer.flush()
    assert writer.counts.indexed == 1 and writer.counts.requests == 2

    # A 400 about a bulk of one document is that document's failure, never retried.
    failures: list[Rejection] = []
    bad = FakeSend(_api_error(400))
    writer = _writer(bad, failures=failures)
    writer.add(_item("a"), "a")
    writer.flush()
    assert len(bad.payloads) == 1 and writer.counts.failed == 1
    assert [(f.key, f.status) for f in failures] == [("a", 400)]

    # Credentials are not a document's fault: raised, nothing counted.
    for status in (401, 403, 406):
        denied = FakeSend(_api_error(status))
        writer = _writer(denied)
        writer.add(_item("a"), "a")
        with pytest.raises(es_compat.API_ERRORS):
            writer.flush()
        assert len(denied.payloads) == 1 and writer.counts.failed == 0


def test_whole_request_400_is_halved_until_the_document_it_is_about_is_alone():
    """The fake answers 400 to any bulk holding r5, as Elasticsearch does for an action it
    validates per request; the rest must be indexed and settled once, at the last key."""
    def answer(payload):
        ids = _ids(payload)
        if "r5" in ids:
            raise _api_error(400)
        return _answer(*[201] * len(ids))

    send = FakeSend(*[answer] * 50)
    failures: list[Rejection] = []
    settled: list = []
    writer = _writer(send, failures=failures)
    writer.on_settled = settled.append
    for i in range(8):
        writer.add(_item(f"r{i}"), f"r{i}")
    writer.flush()
    c = writer.counts
    assert (c.indexed, c.failed) == (7, 1) and [f.key for f in failures] == ["r5"]
    assert settled == ["r7"]
    assert [_ids(p) for p in send.payloads] == [
        [f"r{i}" for i in range(8)], ["r0", "r1", "r2", "r3"], ["r4", "r5", "r6", "r7"],
        ["r4", "r5"], ["r4"], ["r5"], ["r6", "r7"]]


def test_unreachable_past_the_deadline_raises_unavailable_naming_the_cause():
    send = FakeSend(*[_connection_error()] * 10_000)
    writer = _writer(send, retry_seconds=0.2)
    writer.add(_item("a"), "a")
    with pytest.raises(UnavailableError, match="connection refused"):
        writer.flush()


def test_answer_with_wrong_item_count_is_an_error_not_a_silent_loss():
    send = FakeSend(_answer(201, 429))
    writer = _writer(send)
    for key in "abc":
        writer.add(_item(key), key)
    with pytest.raises(UnavailableError, match="2 items for a bulk of 3"):
        writer.flush()


def test_writer_backs_off_with_full_jitter(monkeypatch):
    monkeypatch.undo()  # the real pacing: workers retrying one cluster must not be in step
    assert es_writer.BACKOFF.jitter == 1.0 and es_writer.BACKOFF.cap_s == 30.0


# --------------------------------------------------------------------------- real server


def _client(url: str, **kwargs):
    return es_compat.make_client(ElasticsearchSettings(hosts=(url,), **kwargs))


@pytest.mark.integration
def test_real_per_item_429_documents_are_resent_and_land(servers, es, index):
    """The first answer of the real server is rewritten: 2 documents are held back and
    reported busy. Unless the writer sends exactly those again, they are missing."""
    client = _client(servers.es)
    payloads: list[bytes] = []
    busy = {"r1", "r3"}

    def send(payload: bytes) -> dict:
        payloads.append(payload)
        if len(payloads) > 1:
            return es_compat.bulk(client, payload, filter_path=es_writer.FILTER_PATH)
        lines = payload.split(b"\n")[:-1]
        pairs = list(zip(lines[0::2], lines[1::2]))
        kept = [p for p in pairs if orjson.loads(p[0])["index"]["_id"] not in busy]
        real = es_compat.bulk(client, b"".join(h + b"\n" + d + b"\n" for h, d in kept),
                              filter_path=es_writer.FILTER_PATH)
        answers = iter(real["items"])
        items = [{"index": {"status": 429, "error": {"type": "es_rejected_execution_exception",
                                                     "reason": "queue full"}}}
                 if orjson.loads(h)["index"]["_id"] in busy else next(answers)
                 for h, _ in pairs]
        return {"errors": True, "items": items}

    try:
        writer = BulkWriter(client, max_docs=100, max_bytes=10**6, send=send)
        for i in range(5):
            writer.add(_item(f"r{i}", version=1000 + i, index=index, n=i), f"r{i}")
        writer.flush()
    finally:
        client.close()
    assert sorted(_ids(payloads[1])) == sorted(busy)
    assert len(payloads) == 2
    assert writer.counts.indexed == 5 and writer.counts.retried == 2
    docs = read_index(es, index)
    assert {d: (h["_version"], h["_source"]["n"]) for d, h in docs.items()} == {
        f"r{i}": (1000 + i, i) for i in range(5)}


@pytest.mark.integration
def test_real_older_version_is_stale_and_equal_version_is_idempotent(servers, es, index):
    client = _client(servers.es)
    try:
        first = BulkWriter(client, max_docs=10, max_bytes=10**6)
        first.add(_item("row", version=2000, index=index, state="new"), "row")
        first.flush()
        again = BulkWriter(client, max_docs=10, max_bytes=10**6)
        again.add(_item("row", version=1000, index=index, state="old"), "row")  # older
        again.add(_item("row2", version=5, index=index, state="x"), "row2")
        again.add(_item("row", version=2000, index=index, state="new"), "row")  # same again
        again.flush()
    finally:
        client.close()
    assert (first.counts.indexed, first.counts.stale) == (1, 0)
    assert (again.counts.indexed, again.counts.stale, again.counts.failed) == (2, 1, 0)
    docs = read_index(es, index)
    assert docs["row"]["_source"] == {"state": "new"} and docs["row"]["_version"] == 2000
    assert count_docs(es, index) == 2


@pytest.mark.integration
def test_real_mapping_conflict_fails_one_document_and_reports_why(servers, es, index):
    client = _client(servers.es)
    failures: list[Rejection] = []
    try:
        writer = BulkWriter(client, max_docs=10, max_bytes=10**6, on_failure=failures.append)
        writer.add(_item("a", index=index, n=1), b"a")
        writer.flush()  # the index now maps n as a long
        writer.add(_item("b", index=index, n="not a number"), b"b")
        writer.add(_item("c", index=index, n=3), b"c")
        writer.flush()
    finally:
        client.close()
    assert (writer.counts.indexed, writer.counts.failed) == (2, 1)
    assert len(failures) == 1
    rejection = failures[0]
    assert rejection.key == b"b" and rejection.status == 400
    assert rejection.error_type == "mapper_parsing_exception"
    assert _ids(rejection.item) == ["b"]
    assert sorted(read_index(es, index)) == ["a", "c"]


@pytest.mark.integration
def test_real_unreachable_cluster_gives_up_after_the_deadline():
    client = _client(f"http://127.0.0.1:{free_port()}", request_timeout=2.0)
    try:
        writer = BulkWriter(client, max_docs=10, max_bytes=10**6, retry_seconds=0.5)
        writer.add(_item("a"), "a")
        started = time.monotonic()
        with pytest.raises(UnavailableError, match="bulk failed"):
            writer.flush()
        assert time.monotonic() - started < 10
        assert writer.counts.requests >= 2  # it did retry before giving up
    finally:
        client.close()
