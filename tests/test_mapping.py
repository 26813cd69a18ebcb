"""Tests for hbase2es.mapping: value decoding, document ids, documents and index names."""

import base64
import pickle
import random
import struct
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import orjson
import pytest

from hbase2es.indexname import IndexTemplate
from hbase2es.mapping import (
    TYPES,
    ColumnSpec,
    DecodeError,
    FieldConflict,
    Mapping,
    build_document,
    decode_value,
    document_id,
    row_key_from_id,
    unmapped_field,
)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
PLUS2 = timezone(timedelta(hours=2))


def ms(*args, tz=UTC) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)


# --- decode_value: the encodings Java's Bytes.toBytes writes -------------------------


@pytest.mark.parametrize(
    "value, type_, expected",
    [
        (struct.pack(">q", -5), "long", -5),
        (struct.pack(">q", 2**63 - 1), "long", 2**63 - 1),
        (struct.pack(">q", -(2**63)), "long", -(2**63)),
        (struct.pack(">i", -123456), "int", -123456),
        (struct.pack(">i", 2**31 - 1), "int", 2**31 - 1),
        (b"\xff\xff\xff\xff", "int", -1),
        (struct.pack(">h", -2), "short", -2),
        (struct.pack(">h", 32767), "short", 32767),
        (struct.pack(">d", -2.5), "double", -2.5),
        (struct.pack(">d", 0.1), "double", 0.1),
        (struct.pack(">f", 0.5), "float", 0.5),
        (b"\xff", "boolean", True),  # Bytes.toBytes(true)
        (b"\x00", "boolean", False),  # Bytes.toBytes(false)
        (b"\x01", "boolean", True),
        (b"hello", "string", "hello"),
        (b"", "string", ""),
        (b'{"a": 1, "b": [true, null], "c": {"d": "x"}}', "json",
         {"a": 1, "b": [True, None], "c": {"d": "x"}}),
        (b"\x00\xfb\xff", "bytes", "APv/"),
        (b"", "bytes", ""),
        (b"42", "text_int", 42),
        (b"-7", "text_int", -7),
        (b"9223372036854775807", "text_int", 2**63 - 1),
        (b"-9223372036854775808", "text_int", -(2**63)),
        (b"-3.5", "text_float", -3.5),
        (b"1e3", "text_float", 1000.0),
        (b"42", "text_float", 42.0),
    ],
)
def test_decode_value(value, type_, expected):
    decoded = decode_value(value, type_)
    assert decoded == expected
    assert type(decoded) is type(expected)


def test_decode_float_shows_the_float32_as_written():
    # Widening 1.1f to a double gives 1.100000023841858; Java prints 1.1.
    assert decode_value(struct.pack(">f", 1.1), "float") == 1.1
    assert decode_value(struct.pack(">f", -3.14159), "float") == -3.14159
    assert decode_value(struct.pack(">f", 16777217.0), "float") == 16777216.0


def test_decode_float_keeps_every_float32_exact():
    rng = random.Random(3)
    # largest, most negative, smallest subnormal, -0.0, smallest normal
    extremes = [b"\x7f\x7f\xff\xff", b"\xff\x7f\xff\xff", b"\x00\x00\x00\x01", b"\x80\x00\x00\x00",
                b"\x00\x80\x00\x00"]
    samples = extremes + [rng.randbytes(4) for _ in range(5_000)]
    for packed in samples:
        original = struct.unpack(">f", packed)[0]
        if original != original or original in (float("inf"), float("-inf")):
            continue
        assert struct.pack(">f", decode_value(packed, "float")) == packed


def test_decode_string_non_ascii():
    text = "héllo wörld ✓ 日本語 🚀"
    assert decode_value(text.encode("utf-8"), "string") == text


@pytest.mark.parametrize(
    "value, type_, reason",
    [
        (b"\x00\x00\x05", "long", "expected 8 bytes, got 3"),
        (struct.pack(">i", 5), "long", "expected 8 bytes, got 4"),
        (b"\x00\x00\x00", "int", "expected 4 bytes, got 3"),
        (struct.pack(">q", 5), "int", "expected 4 bytes, got 8"),
        (b"\x01", "short", "expected 2 bytes, got 1"),
        (b"\x00\x00\x00", "float", "expected 4 bytes, got 3"),
        (struct.pack(">f", 1.0), "double", "expected 8 bytes, got 4"),
        (b"", "boolean", "expected 1 byte, got 0"),
        (b"\x00\x01", "boolean", "expected 1 byte, got 2"),
        (struct.pack(">d", float("nan")), "double", "nan"),
        (struct.pack(">d", float("inf")), "double", "inf"),
        (struct.pack(">f", float("nan")), "float", "nan"),
        (struct.pack(">f", float("-inf")), "float", "-inf"),
        (b"caf\xe9", "string", "invalid UTF-8 at byte 3"),
        (b"[1, 2]", "json", "expected a JSON object, got an array"),
        (b'"text"', "json", "expected a JSON object, got a string"),
        (b"null", "json", "expected a JSON object, got null"),
        (b"{'a': 1}", "json", "invalid JSON"),
        (b'{"a": NaN}', "json", "invalid JSON"),
        (b"", "json", "invalid JSON"),
        (b"4.5", "text_int", "not a decimal integer"),
        (b"", "text_int", "not a decimal integer"),
        (b"0x10", "text_int", "not a decimal integer"),
        (b"4_2", "text_int", "not a decimal number"),
        ("٤٢".encode("utf-8"), "text_int", "not a decimal number"),
        (b"9223372036854775808", "text_int", "outside the 64-bit long range"),
        (b"abc", "text_float", "not a decimal number"),
        (b"nan", "text_float", "nan"),
        (b"inf", "text_float", "inf"),
        (b"1e999", "text_float", "inf"),
    ],
)
def test_decode_value_rejects(value, type_, reason):
    with pytest.raises(ValueError) as info:
        decode_value(value, type_)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_decode_value_huge_cell_message_stays_short():
    with pytest.raises(ValueError) as info:
        decode_value(b"x" * 100_000, "text_int")
    assert len(str(info.value)) < 120


def test_decode_value_unknown_type():
    with pytest.raises(ValueError, match="unknown type 'uuid'"):
        decode_value(b"x", "uuid")


# One cell per type, written as Java's Bytes.toBytes (or the text) would, and its value.
ONE_CELL_PER_TYPE = {
    "string": (b"caf\xc3\xa9", "café"),
    "int": (struct.pack(">i", -70_000), -70_000),
    "long": (struct.pack(">q", -(2**40)), -(2**40)),
    "short": (struct.pack(">h", -300), -300),
    "float": (struct.pack(">f", 1.5), 1.5),
    "double": (struct.pack(">d", -2.25), -2.25),
    "boolean": (b"\x01", True),
    "json": (b'{"a": [1, "x"]}', {"a": [1, "x"]}),
    "bytes": (b"\x00\xff", "AP8="),
    "text_int": (b"-12", -12),
    "text_float": (b"2.5", 2.5),
}


def test_every_type_has_a_decoder():
    assert set(ONE_CELL_PER_TYPE) == set(TYPES), "a type without a sample here is untested"
    for type_, (value, expected) in ONE_CELL_PER_TYPE.items():
        decoded = decode_value(value, type_)
        # type() too: True == 1 and 2.0 == 2, but a boolean must not come back an int.
        assert (type(decoded), decoded) == (type(expected), expected), type_


# --- DecodeError ------------------------------------------------------------------


def test_decode_error_message():
    error = DecodeError("cf:q", "long", "expected 8 bytes, got 3")
    assert str(error) == "column cf:q: cannot decode as long: expected 8 bytes, got 3"
    assert (error.column, error.type, error.reason) == ("cf:q", "long", "expected 8 bytes, got 3")
    assert isinstance(error, ValueError)


def test_decode_error_pickles():
    error = DecodeError("cf:q", "long", "expected 8 bytes, got 3")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is DecodeError
    assert str(copy) == str(error)
    assert (copy.column, copy.type, copy.reason) == (error.column, error.type, error.reason)


# --- document ids and field names ------------------------------------------------------


def test_document_id_text_key_is_itself():
    assert document_id(b"user:42") == "user:42"
    assert document_id("ключ-✓".encode("utf-8")) == "ключ-✓"


def test_document_id_binary_key_is_base64():
    assert document_id(b"\xff\x00") == "b64:_wA="
    assert row_key_from_id("b64:_wA=") == b"\xff\x00"


def test_document_id_text_starting_with_prefix_is_base64():
    key = b"b64:abc"
    doc_id = document_id(key)
    assert doc_id == "b64:" + base64.urlsafe_b64encode(key).decode()
    assert row_key_from_id(doc_id) == key


def test_document_id_empty_key_is_not_an_empty_id():
    assert document_id(b"") == "b64:"
    assert row_key_from_id("b64:") == b""


def test_document_id_round_trip_random_keys_without_collisions():
    rng = random.Random(42)
    keys = {rng.randbytes(rng.randrange(0, 40)) for _ in range(1_000)}
    keys |= {b"b64:", b"b64:x", b"B64:x", b"b64", "b64:ünïcode".encode("utf-8"), b"\x80", b"\xc3"}
    keys |= {f"row-{n}".encode() for n in range(100)}
    # The base64 form of some keys, as a key of its own, must not meet that key's id.
    keys |= {document_id(key).encode("utf-8") for key in list(keys)}
    ids = {}
    for key in keys:
        doc_id = document_id(key)
        assert doc_id not in ids, f"{key!r} and {ids[doc_id]!r} share id {doc_id!r}"
        ids[doc_id] = key
        assert row_key_from_id(doc_id) == key
    assert any(not key.isascii() for key in keys)


@pytest.mark.parametrize("doc_id", ["b64:YWJj", "b64:!!!", "b64:_wA", "b64:_wA=x", "\ud800"])
def test_row_key_from_id_rejects_ids_hbase2es_never_writes(doc_id):
    with pytest.raises(ValueError, match="invalid document id"):
        row_key_from_id(doc_id)


def test_unmapped_field():
    assert unmapped_field(b"cf:name") == "cf:name"
    assert unmapped_field("cf:prénom".encode("utf-8")) == "cf:prénom"
    assert unmapped_field(b"cf:\xff") == "b64:" + base64.urlsafe_b64encode(b"cf:\xff").decode()


# --- ColumnSpec and Mapping validation -----------------------------------------------------


def test_column_spec_accepts_text_column():
    assert ColumnSpec("cf:q", "q", "string").column == b"cf:q"


def test_column_spec_allows_empty_qualifier():
    assert ColumnSpec(b"cf:", "whole", "string").column == b"cf:"


@pytest.mark.parametrize(
    "column, field_name, type_, message",
    [
        (b"cfq", "q", "string", "column cfq has no ':'"),
        (b":q", "q", "string", "column :q has an empty family"),
        (b"cf:q", "q", "longg", "column cf:q has unknown type 'longg'"),
        (b"cf:q", "", "string", "column cf:q needs a non-empty field name"),
        (42, "q", "string", "column must be bytes"),
    ],
)
def test_column_spec_rejects(column, field_name, type_, message):
    with pytest.raises(ValueError, match=message):
        ColumnSpec(column, field_name, type_)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"unmapped": "drop"}, "unmapped must be 'include' or 'skip', got 'drop'"),
        ({"on_decode_error": "ignore"}, "on_decode_error must be .* got 'ignore'"),
        (
            {"columns": (ColumnSpec(b"cf:a", "x", "string"), ColumnSpec(b"cf:b", "x", "long"))},
            "field 'x' of column cf:b is already used by column cf:a",
        ),
        (
            {"columns": (ColumnSpec(b"cf:a", "x", "string"), ColumnSpec(b"cf:a", "y", "long"))},
            "column cf:a is mapped twice",
        ),
        (
            {"columns": (ColumnSpec(b"cf:a", "@timestamp", "string"),)},
            "already the timestamp field",
        ),
        (
            {"rowkey_field": "id", "columns": (ColumnSpec(b"cf:a", "id", "string"),)},
            "already the rowkey field",
        ),
        ({"rowkey_field": "@timestamp"}, "both '@timestamp'"),
        ({"rowkey_field": ""}, "rowkey_field must be"),
        ({"timestamp_field": ""}, "timestamp_field must be"),
        ({"columns": ("cf:a",)}, "columns must be ColumnSpec"),
    ],
)
def test_mapping_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Mapping(**kwargs)


def test_mapping_is_a_frozen_value_that_pickles():
    mapping = Mapping(columns=[ColumnSpec(b"cf:n", "n", "long")], rowkey_field="id")
    assert mapping.columns == (ColumnSpec(b"cf:n", "n", "long"),)
    assert mapping == Mapping(columns=(ColumnSpec(b"cf:n", "n", "long"),), rowkey_field="id")
    same = Mapping(columns=(ColumnSpec(b"cf:n", "n", "long"),), rowkey_field="id")
    assert hash(mapping) == hash(same)
    copy = pickle.loads(pickle.dumps(mapping))
    assert copy == mapping
    assert build_document(b"r", {b"cf:n": struct.pack(">q", 9)}, 0, copy)[0]["n"] == 9
    with pytest.raises(AttributeError):
        mapping.unmapped = "skip"


# --- build_document ---------------------------------------------------------------------

ROW_TIME = ms(2026, 11, 1, 10) + 123
CELLS = {
    b"cf:count": struct.pack(">q", -5),
    b"cf:name": "Zoë".encode("utf-8"),
    b"cf:flag": b"\xff",
    b"cf:note": b"free text",
    b"cf:blob": b"\x00\xff\xfe",
    b"meta:payload": b'{"k": [1, 2]}',
}
MAPPED = (
    ColumnSpec(b"cf:count", "count", "long"),
    ColumnSpec(b"cf:name", "name", "string"),
    ColumnSpec(b"cf:flag", "flag", "boolean"),
    ColumnSpec(b"meta:payload", "payload", "json"),
)


def test_build_document_mapped_and_unmapped_included():
    document, errors = build_document(b"row-1", CELLS, ROW_TIME, Mapping(columns=MAPPED))
    assert errors == []
    assert document == {
        "count": -5,
        "name": "Zoë",
        "flag": True,
        "cf:note": "free text",
        "cf:blob#b64": "AP/+",
        "payload": {"k": [1, 2]},
        "@timestamp": "2026-11-01T10:00:00.123Z",
    }
    orjson.dumps(document)  # the bulk writer must be able to serialize it


def test_build_document_unmapped_skipped():
    mapping = Mapping(columns=MAPPED, unmapped="skip")
    document, errors = build_document(b"row-1", CELLS, ROW_TIME, mapping)
    assert errors == []
    assert set(document) == {"count", "name", "flag", "payload", "@timestamp"}


def test_build_document_unmapped_binary_column_name():
    document, _ = build_document(b"r", {b"cf:\xff": b"v"}, ROW_TIME, Mapping())
    assert document[unmapped_field(b"cf:\xff")] == "v"


def test_build_document_rowkey_and_timestamp_fields():
    mapping = Mapping(columns=MAPPED, rowkey_field="row", timestamp_field="ts", unmapped="skip")
    document, _ = build_document(b"\xffkey", CELLS, ms(2026, 1, 2, 3, 4, 5), mapping)
    assert document["row"] == "b64:_2tleQ=="
    assert row_key_from_id(document["row"]) == b"\xffkey"
    assert document["ts"] == "2026-01-02T03:04:05.000Z"
    assert "@timestamp" not in document


def test_build_document_without_rowkey_field_has_no_key():
    document, _ = build_document(b"row-1", {}, 0, Mapping())
    assert document == {"@timestamp": "1970-01-01T00:00:00.000Z"}


BAD_CELLS = {b"cf:count": b"\x00\x05", b"cf:name": b"ok", b"cf:ratio": b"NaN"}
BAD_COLUMNS = (
    ColumnSpec(b"cf:count", "count", "long"),
    ColumnSpec(b"cf:name", "name", "string"),
    ColumnSpec(b"cf:ratio", "ratio", "text_float"),
)


@pytest.mark.parametrize("policy", ["dead-letter", "skip-field"])
def test_build_document_returns_decode_errors(policy):
    mapping = Mapping(columns=BAD_COLUMNS, on_decode_error=policy)
    document, errors = build_document(b"row-1", BAD_CELLS, ROW_TIME, mapping)
    assert document == {"name": "ok", "@timestamp": "2026-11-01T10:00:00.123Z"}
    assert [str(error) for error in errors] == [
        "column cf:count: cannot decode as long: expected 8 bytes, got 2",
        "column cf:ratio: cannot decode as text_float: value is nan, which JSON cannot hold",
    ]
    assert all(isinstance(error, DecodeError) for error in errors)


def test_build_document_fail_raises_decode_error():
    mapping = Mapping(columns=BAD_COLUMNS, on_decode_error="fail")
    with pytest.raises(DecodeError) as info:
        build_document(b"row-1", BAD_CELLS, ROW_TIME, mapping)
    assert str(info.value) == "column cf:count: cannot decode as long: expected 8 bytes, got 2"
    assert (info.value.column, info.value.type) == ("cf:count", "long")


def test_build_document_error_names_binary_column():
    mapping = Mapping(columns=(ColumnSpec(b"cf:\xfe", "n", "int"),))
    _, errors = build_document(b"r", {b"cf:\xfe": b"\x01"}, 0, mapping)
    label = unmapped_field(b"cf:\xfe")
    assert str(errors[0]).startswith(f"column {label}: cannot decode as int")


# --- field names never collide (issue 23, item 2) ----------------------------------------


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def test_a_binary_value_and_a_column_named_like_its_b64_field_both_stay():
    # Before: cf:x's base64 went to "cf:x#b64", then the real column overwrote it.
    cells = {b"cf:x": b"\xff\x00", b"cf:x#b64": b"real"}
    document, errors = build_document(b"r", cells, ROW_TIME, Mapping())
    assert errors == []
    assert document["cf:x#b64"] == "real"  # a real column keeps its own name
    assert document["cf:x#b64#b64"] == _b64(b"\xff\x00")
    # The same document whatever order the cells come in.
    backwards = dict(reversed(list(cells.items())))
    assert build_document(b"r", backwards, ROW_TIME, Mapping())[0] == document


def test_two_binary_values_each_keep_their_own_b64_name_before_a_longer_one():
    cells = {b"cf:x": b"\xff", b"cf:x#b64": b"\xfe"}
    for order in (cells, dict(reversed(list(cells.items())))):
        document, _ = build_document(b"r", order, ROW_TIME, Mapping())
        assert document == {
            "cf:x#b64#b64": _b64(b"\xfe"),  # column cf:x#b64's own base64 field
            "cf:x#b64#b64#b64": _b64(b"\xff"),  # cf:x: its name is the column cf:x#b64's
            "@timestamp": "2026-11-01T10:00:00.123Z",
        }


def test_a_b64_field_never_takes_a_mapped_field_even_when_the_row_lacks_it():
    # Column cf:x#b64 is mapped (to its own name), so the field is the mapping's.
    mapping = Mapping(columns=(ColumnSpec(b"cf:x#b64", "cf:x#b64", "long"),))
    document, _ = build_document(b"r", {b"cf:x": b"\xff"}, ROW_TIME, mapping)
    assert document == {"cf:x#b64#b64": _b64(b"\xff"), "@timestamp": "2026-11-01T10:00:00.123Z"}


def test_a_b64_field_never_takes_the_rowkey_or_timestamp_field():
    # Allowed by the config: the columns of those names are mapped elsewhere.
    mapping = Mapping(columns=(ColumnSpec(b"cf:k#b64", "k", "string"),
                               ColumnSpec(b"cf:t#b64", "t", "string")),
                      rowkey_field="cf:k#b64", timestamp_field="cf:t#b64")
    cells = {b"cf:k": b"\xff", b"cf:t": b"\xfe"}
    document, _ = build_document(b"row-1", cells, ROW_TIME, mapping)
    assert document == {"cf:k#b64": "row-1", "cf:t#b64": "2026-11-01T10:00:00.123Z",
                        "cf:k#b64#b64": _b64(b"\xff"), "cf:t#b64#b64": _b64(b"\xfe")}


def test_many_binary_columns_with_colliding_names_lose_nothing():
    rng = random.Random(23)
    names = [b"cf:x", b"cf:x#b64", b"cf:x#b64#b64", b"cf:y", b"cf:y#b64"]
    for _ in range(200):
        cells = {name: (b"\xff" + bytes([rng.randrange(256)]) if rng.random() < 0.6
                        else b"t%d" % rng.randrange(10))
                 for name in rng.sample(names, rng.randrange(1, len(names) + 1))}
        document, _ = build_document(b"r", cells, ROW_TIME, Mapping())
        values = sorted(v for k, v in document.items() if k != "@timestamp")
        expected = sorted(v.decode() if not v.startswith(b"\xff") else _b64(v)
                          for v in cells.values())
        assert values == expected, cells
        shuffled = list(cells.items())
        rng.shuffle(shuffled)
        assert build_document(b"r", dict(shuffled), ROW_TIME, Mapping())[0] == document


@pytest.mark.parametrize("kwargs, first, second", [
    ({"columns": (ColumnSpec(b"cf:a", "cf:other", "string"),)},
     ("column", b"cf:a"), ("unmapped", b"cf:other")),
    ({"rowkey_field": "cf:key"}, ("rowkey_field", None), ("unmapped", b"cf:key")),
    ({"timestamp_field": "meta:time"}, ("timestamp_field", None), ("unmapped", b"meta:time")),
    # The b64: name of a column whose name is not UTF-8.
    ({"rowkey_field": unmapped_field(b"cf:\xff")}, ("rowkey_field", None),
     ("unmapped", b"cf:\xff")),
    ({"columns": (ColumnSpec(b"cf:a", "x", "string"), ColumnSpec(b"cf:b", "x", "long"))},
     ("column", b"cf:b"), ("column", b"cf:a")),
    ({"rowkey_field": "id", "columns": (ColumnSpec(b"cf:a", "id", "string"),)},
     ("column", b"cf:a"), ("rowkey_field", None)),
    ({"rowkey_field": "@timestamp"}, ("rowkey_field", None), ("timestamp_field", None)),
])
def test_a_field_two_parts_of_the_mapping_would_write_is_refused(kwargs, first, second):
    with pytest.raises(FieldConflict) as info:
        Mapping(**kwargs)
    assert {info.value.first, info.value.second} == {first, second}
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs", [
    # Unmapped columns are dropped: nothing else writes "cf:other".
    {"columns": (ColumnSpec(b"cf:a", "cf:other", "string"),), "unmapped": "skip"},
    # cf:other is mapped, so it never gets a field of its own name.
    {"columns": (ColumnSpec(b"cf:a", "cf:other", "string"),
                 ColumnSpec(b"cf:other", "other", "string"))},
    {"columns": (ColumnSpec(b"cf:a", "cf:a", "long"),)},  # a column under its own name
    {"rowkey_field": ":key", "timestamp_field": "a.b"},  # no column has an empty family
])
def test_field_names_no_unmapped_column_can_have_are_accepted(kwargs):
    Mapping(**kwargs)


# --- IndexTemplate -------------------------------------------------------------------------


def test_index_template_static():
    template = IndexTemplate("events")
    assert template.is_static
    assert template.render(ROW_TIME) == "events"
    assert template.names_between(0, ms(2030, 1, 1)) == ["events"]


def test_index_template_daily():
    template = IndexTemplate("events-{time:%Y.%m.%d}")
    assert not template.is_static
    assert template.render(ms(2026, 11, 1, 0)) == "events-2026.11.01"
    assert template.render(ms(2026, 11, 1, 23, 59, 59) + 999) == "events-2026.11.01"
    assert template.render(ms(2026, 11, 2)) == "events-2026.11.02"


def test_index_template_hourly_and_multiple_placeholders():
    template = IndexTemplate("logs-{time:%Y}-{time:%m%d.%H}")
    assert template.render(ms(2026, 11, 1, 9, 59)) == "logs-2026-1101.09"
    assert template.render(ms(2026, 11, 1, 10, 0)) == "logs-2026-1101.10"


def test_index_template_zone_moves_late_rows_to_next_day():
    late = ms(2026, 11, 1, 23, 30)
    assert IndexTemplate("events-{time:%Y.%m.%d}").render(late) == "events-2026.11.01"
    assert IndexTemplate("events-{time:%Y.%m.%d}", PLUS2).render(late) == "events-2026.11.02"
    # Berlin is +01:00 in November: 23:30Z is 00:30 the next day.
    assert IndexTemplate("events-{time:%Y.%m.%d}", BERLIN).render(late) == "events-2026.11.02"
    # In July it is +02:00: the day changes at 22:00Z.
    berlin = IndexTemplate("events-{time:%Y.%m.%d}", BERLIN)
    assert berlin.render(ms(2026, 7, 1, 21, 59)) == "events-2026.07.01"
    assert berlin.render(ms(2026, 7, 1, 22, 0)) == "events-2026.07.02"


def test_index_template_literal_braces_and_percent():
    template = IndexTemplate("{{raw}}-{time:%Y}-100%")
    assert template.render(ms(2026, 5, 5)) == "{raw}-2026-100%"
    static = IndexTemplate("a{{b}}c")
    assert static.is_static
    assert static.render(0) == "a{b}c"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("events-{date:%Y}", "unknown placeholder {date:%Y}"),
        ("events-{}", "unknown placeholder {}"),
        ("events-{time}", "needs a strftime format"),
        ("events-{time:}", "needs a strftime format"),
        ("events-{time:abc}", "has no time directive"),
        ("events-{time:%Y", "unclosed '{'"),
        ("events-{time:{%Y}", "unclosed '{'"),
        ("events-}", "unmatched '}'"),
        ("events-{time:%Y}}", "unmatched '}'"),
        ("Events-{time:%Y}", "must be lower case, found 'E'"),
        ("events-{time:%b}", "unsupported time directive %b"),
        ("events-{time:%Y/%m}", "'/' is not allowed"),
        ("events {time:%Y}", "' ' is not allowed"),
        ("ev*", "'*' is not allowed"),
        ("ev#1", "'#' is not allowed"),
        ("a,b", "',' is not allowed"),
        ("cluster:events", "':' is not allowed"),
        ("-events", "must not start with '-'"),
        ("_events", "must not start with '_'"),
        ("..", "not a valid index name"),
        ("e" * 256, "255 bytes"),
    ],
)
def test_index_template_rejects(text, message):
    with pytest.raises(ValueError) as info:
        IndexTemplate(text)
    assert message in str(info.value)
    assert repr(text) in str(info.value)


def test_index_template_render_matches_strftime_on_random_times():
    rng = random.Random(11)
    zones = [
        UTC,
        PLUS2,
        timezone(-timedelta(hours=5, minutes=30)),
        BERLIN,
        ZoneInfo("Australia/Lord_Howe"),
        ZoneInfo("America/Santiago"),
    ]
    patterns = ["%Y.%m.%d", "%Y.%m.%d.%H", "%Y%m%d-%H%M", "%Y-%j-%H%M%S", "%G.%V"]
    for tz in zones:
        for pattern in patterns:
            template = IndexTemplate(f"i-{{time:{pattern}}}", tz)
            # Clustered times exercise the cache, scattered ones the misses.
            base = rng.randrange(0, ms(2035, 1, 1))
            times = [base + rng.randrange(0, 3 * 86_400_000) for _ in range(300)]
            times += [rng.randrange(0, ms(2035, 1, 1)) for _ in range(100)]
            for moment in times:
                expected = "i-" + datetime.fromtimestamp(moment // 1000, tz).strftime(pattern)
                assert template.render(moment) == expected, (tz, pattern, moment)


def test_index_template_render_across_dst_changes():
    hourly = IndexTemplate("h-{time:%Y.%m.%d.%H}", BERLIN)
    # Spring forward: 01:59 +01:00 is followed by 03:00 +02:00.
    assert hourly.render(ms(2026, 3, 29, 0, 59)) == "h-2026.03.29.01"
    assert hourly.render(ms(2026, 3, 29, 1, 0)) == "h-2026.03.29.03"
    # Fall back: 02:00-02:59 happens twice.
    assert hourly.render(ms(2026, 10, 25, 0, 30)) == "h-2026.10.25.02"
    assert hourly.render(ms(2026, 10, 25, 1, 30)) == "h-2026.10.25.02"
    assert hourly.render(ms(2026, 10, 25, 2, 0)) == "h-2026.10.25.03"


def test_names_between_daily():
    template = IndexTemplate("events-{time:%Y.%m.%d}")
    assert template.names_between(ms(2026, 10, 30, 12), ms(2026, 11, 2)) == [
        "events-2026.10.30",
        "events-2026.10.31",
        "events-2026.11.01",
    ]
    # The end is exclusive: a range ending at midnight does not reach the next day.
    assert template.names_between(ms(2026, 11, 1), ms(2026, 11, 2)) == ["events-2026.11.01"]
    assert template.names_between(ms(2026, 11, 1), ms(2026, 11, 2) + 1) == [
        "events-2026.11.01",
        "events-2026.11.02",
    ]


def test_names_between_in_zone():
    template = IndexTemplate("events-{time:%Y.%m.%d}", PLUS2)
    names = template.names_between(ms(2026, 11, 1, 21), ms(2026, 11, 1, 23))
    assert names == ["events-2026.11.01", "events-2026.11.02"]


def test_names_between_empty_range():
    assert IndexTemplate("events-{time:%Y}").names_between(10, 10) == []
    assert IndexTemplate("events").names_between(10, 5) == []


def test_names_between_hourly_across_dst_in_berlin():
    template = IndexTemplate("h-{time:%d.%H}", BERLIN)
    spring = template.names_between(ms(2026, 3, 28, 23), ms(2026, 3, 29, 3))
    assert spring == ["h-29.00", "h-29.01", "h-29.03", "h-29.04"]
    autumn = template.names_between(ms(2026, 10, 24, 23), ms(2026, 10, 25, 3))
    assert autumn == ["h-25.01", "h-25.02", "h-25.03"]


@pytest.mark.parametrize(
    "zone, pattern, start, hours",
    [
        (BERLIN, "%Y.%m.%d.%H", ms(2026, 3, 28, 20), 10),
        (BERLIN, "%Y.%m.%d.%H%M", ms(2026, 10, 25, 0), 3),
        # Daily: the offset changes in the middle of a day, not at a name boundary.
        (BERLIN, "%Y.%m.%d", ms(2026, 3, 27), 96),
        (BERLIN, "%Y.%m.%d", ms(2026, 10, 23), 96),
        # Lord Howe moves by half an hour: +10:30 -> +11:00 and back.
        (ZoneInfo("Australia/Lord_Howe"), "%Y.%m.%d.%H", ms(2026, 10, 3, 12), 8),
        (ZoneInfo("Australia/Lord_Howe"), "%Y.%m.%d.%H", ms(2026, 4, 4, 12), 8),
        (ZoneInfo("Asia/Kathmandu"), "%Y.%m.%d.%H", ms(1985, 12, 31, 16), 6),  # +05:30 -> +05:45
        (ZoneInfo("America/Santiago"), "%Y.%m.%d", ms(2026, 9, 4), 72),
        (PLUS2, "%Y.%m.%d.%H", ms(2026, 1, 1), 30),
    ],
)
def test_names_between_matches_minute_by_minute_scan(zone, pattern, start, hours):
    template = IndexTemplate(f"i-{{time:{pattern}}}", zone)
    end = start + hours * 3_600_000 + 17
    expected = {}
    for moment in range(start, end, 60_000):
        expected["i-" + datetime.fromtimestamp(moment // 1000, zone).strftime(pattern)] = None
    expected["i-" + datetime.fromtimestamp((end - 1) // 1000, zone).strftime(pattern)] = None
    assert template.names_between(start, end) == list(expected)


def test_names_between_limits_the_work():
    template = IndexTemplate("s-{time:%Y%m%d%H%M%S}")
    with pytest.raises(ValueError, match="coarser template"):
        template.names_between(0, 7 * 86_400_000)
    assert len(IndexTemplate("d-{time:%Y.%m.%d}").names_between(0, 365 * 86_400_000)) == 365
