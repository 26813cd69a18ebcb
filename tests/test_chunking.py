"""Unit tests of chunking.py: the NDJSON bulk lines and chunks bounded by documents and bytes."""

from __future__ import annotations

import orjson
import pytest

from hbase2es.search.chunking import Chunk, Chunker, index_action


def _lines(item: bytes) -> tuple[dict, dict]:
    assert item.endswith(b"\n")
    header, document, rest = item.split(b"\n")
    assert rest == b""
    return orjson.loads(header), orjson.loads(document)


def test_index_action_is_two_ndjson_lines_with_external_gte_version():
    item = index_action("events-2023.11.14", "row-1", 1_700_000_000_123,
                        {"n": 5, "name": "Zoë", "@timestamp": "2023-11-14T22:13:20.123Z"})
    header, document = _lines(item)
    assert header == {"index": {"_index": "events-2023.11.14", "_id": "row-1",
                                "version": 1_700_000_000_123, "version_type": "external_gte"}}
    assert document == {"n": 5, "name": "Zoë", "@timestamp": "2023-11-14T22:13:20.123Z"}


def test_index_action_escapes_ids_and_index_names_as_json():
    # An id with quotes, a backslash and a newline must not break the NDJSON framing.
    doc_id = 'a"b\\c\nd'
    item = index_action('idx"x', doc_id, 1, {})
    header, document = _lines(item)
    assert header["index"]["_id"] == doc_id
    assert header["index"]["_index"] == 'idx"x'
    assert document == {}


def test_index_action_header_cache_does_not_mix_indices():
    a = _lines(index_action("a", "1", 1, {}))[0]
    b = _lines(index_action("b", "1", 1, {}))[0]
    assert (a["index"]["_index"], b["index"]["_index"]) == ("a", "b")


def test_chunk_tracks_items_keys_and_size():
    chunk = Chunk()
    chunk.add(b"xx\n", "k1")
    chunk.add(b"yyy\n", "k2")
    assert len(chunk) == 2
    assert chunk.keys == ["k1", "k2"]
    assert chunk.size == 7
    assert chunk.payload() == b"xx\nyyy\n"


def test_chunker_cuts_by_document_count():
    chunker = Chunker(max_docs=3, max_bytes=10**6)
    full = [chunker.add(f"{i}\n".encode(), i) for i in range(7)]
    sent = [c for c in full if c is not None]
    assert [c.keys for c in sent] == [[0, 1, 2], [3, 4, 5]]
    rest = chunker.drain()
    assert rest.keys == [6]
    assert chunker.drain() is None


def test_chunker_cuts_by_bytes_before_the_item_that_would_not_fit():
    chunker = Chunker(max_docs=100, max_bytes=10)
    assert chunker.add(b"aaaa", 1) is None  # 4 bytes
    assert chunker.add(b"bbbb", 2) is None  # 8 bytes
    full = chunker.add(b"ccc", 3)  # 11 > 10: the first two go out first
    assert full is not None and full.keys == [1, 2] and full.size == 8
    assert chunker.drain().keys == [3]


def test_chunker_exact_byte_bound_still_fits():
    chunker = Chunker(max_docs=100, max_bytes=8)
    assert chunker.add(b"aaaa", 1) is None
    assert chunker.add(b"bbbb", 2) is None  # exactly 8
    assert chunker.add(b"c", 3).keys == [1, 2]


def test_chunker_sends_an_oversized_item_alone_instead_of_dropping_it():
    chunker = Chunker(max_docs=100, max_bytes=5)
    assert chunker.add(b"x" * 50, "big") is None  # an empty chunk always takes one item
    full = chunker.add(b"y", "small")
    assert full.keys == ["big"] and full.size == 50
    assert chunker.drain().keys == ["small"]


def test_chunker_every_item_comes_out_exactly_once_in_order():
    chunker = Chunker(max_docs=4, max_bytes=30)
    items = [(b"z" * (i % 9 + 1), i) for i in range(100)]
    out = []
    for item, key in items:
        full = chunker.add(item, key)
        if full is not None:
            assert len(full) <= 4
            assert full.size <= 30 or len(full) == 1
            out.extend(full.keys)
    rest = chunker.drain()
    if rest is not None:
        out.extend(rest.keys)
    assert out == list(range(100))


@pytest.mark.parametrize("docs,size", [(0, 10), (10, 0), (-1, 10)])
def test_chunker_refuses_non_positive_bounds(docs, size):
    with pytest.raises(ValueError, match="positive"):
        Chunker(docs, size)
