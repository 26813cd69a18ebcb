"""Turn one HBase row into one Elasticsearch document, and name its _id.

A row arrives as its key (bytes), its cells (``b"family:qualifier"`` -> value
bytes) and its time (epoch ms). Mapped columns are decoded by type into their
document field; other columns are copied as text (or base64) or dropped.
``build_document`` runs once per row, so the per-column work is prepared once
in ``Mapping``.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from dataclasses import dataclass, field

import orjson

from .timewindow import format_time

__all__ = [
    "DECODE_ERROR_POLICIES",
    "TYPES",
    "UNMAPPED_POLICIES",
    "ColumnSpec",
    "DecodeError",
    "Mapping",
    "build_document",
    "decode_value",
    "document_id",
    "row_key_from_id",
    "unmapped_field",
]

TYPES = (
    "string",
    "int",
    "long",
    "short",
    "float",
    "double",
    "boolean",
    "json",
    "bytes",
    "text_int",
    "text_float",
)
UNMAPPED_POLICIES = ("include", "skip")
DECODE_ERROR_POLICIES = ("dead-letter", "skip-field", "fail")

_B64_PREFIX = "b64:"
_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")
_FLOAT32 = struct.Struct(">f")
_FLOAT64 = struct.Struct(">d")


class DecodeError(ValueError):
    """A cell value that cannot be decoded as its column's type."""

    def __init__(self, column: str, type: str, reason: str) -> None:
        super().__init__(f"column {column}: cannot decode as {type}: {reason}")
        self.column = column
        self.type = type
        self.reason = reason

    def __reduce__(self):
        # The default would call DecodeError(message), which needs three arguments.
        return (self.__class__, (self.column, self.type, self.reason))


# --- value decoders: bytes -> JSON-ready value, ValueError(reason) on bad input ---


def _expect_length(value: bytes, size: int) -> None:
    if len(value) != size:
        unit = "byte" if size == 1 else "bytes"
        raise ValueError(f"expected {size} {unit}, got {len(value)}")


def _preview(value: bytes | str, limit: int = 40) -> str:
    """repr of a value, cut short so a huge cell cannot flood a message."""
    if len(value) <= limit:
        return repr(value)
    return repr(value[:limit]) + "..."


def _decode_string(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid UTF-8 at byte {exc.start}") from None


def _decode_short(value: bytes) -> int:
    _expect_length(value, 2)
    return _INT16.unpack(value)[0]


def _decode_int(value: bytes) -> int:
    _expect_length(value, 4)
    return _INT32.unpack(value)[0]


def _decode_long(value: bytes) -> int:
    _expect_length(value, 8)
    return _INT64.unpack(value)[0]


def _reject_non_finite(number: float) -> None:
    if not math.isfinite(number):
        raise ValueError(f"value is {number}, which JSON cannot hold")


def _decode_float(value: bytes) -> float:
    _expect_length(value, 4)
    number = _FLOAT32.unpack(value)[0]
    _reject_non_finite(number)
    return _shortest_float32(number, value)


def _shortest_float32(number: float, packed: bytes) -> float:
    """The shortest decimal that is still the same float32, as Java's Float.toString shows it.

    Widened to a double, 1.1f would otherwise appear as 1.100000023841858.
    """
    for digits in (6, 7, 8):
        candidate = float(f"{number:.{digits}g}")
        try:
            if _FLOAT32.pack(candidate) == packed:
                return candidate
        except OverflowError:
            pass  # rounding up past the largest float32; more digits will fit
    return number


def _decode_double(value: bytes) -> float:
    _expect_length(value, 8)
    number = _FLOAT64.unpack(value)[0]
    _reject_non_finite(number)
    return number


def _decode_boolean(value: bytes) -> bool:
    _expect_length(value, 1)
    return value != b"\x00"


_JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


def _decode_json(value: bytes) -> dict:
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if type(parsed) is not dict:
        # One field must keep one shape in Elasticsearch, so only objects are accepted.
        kind = _JSON_KINDS.get(type(parsed), "null")
        raise ValueError(f"expected a JSON object, got {kind}")
    return parsed


def _decode_bytes(value: bytes) -> str:
    return binascii.b2a_base64(value, newline=False).decode("ascii")


def _number_text(value: bytes) -> str:
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        # int() and float() would accept digits from other scripts, e.g. Arabic-Indic.
        raise ValueError(f"not a decimal number: {_preview(value)}") from None
    if "_" in text:
        raise ValueError(f"not a decimal number: {_preview(text)}")
    return text


def _decode_text_int(value: bytes) -> int:
    text = _number_text(value)
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"not a decimal integer: {_preview(text)}") from None
    if not _LONG_MIN <= number <= _LONG_MAX:
        # A long field cannot hold it, and orjson cannot even serialize it.
        raise ValueError(f"{_preview(text)} is outside the 64-bit long range")
    return number


def _decode_text_float(value: bytes) -> float:
    text = _number_text(value)
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"not a decimal number: {_preview(text)}") from None
    _reject_non_finite(number)
    return number


_DECODERS = {
    "string": _decode_string,
    "int": _decode_int,
    "long": _decode_long,
    "short": _decode_short,
    "float": _decode_float,
    "double": _decode_double,
    "boolean": _decode_boolean,
    "json": _decode_json,
    "bytes": _decode_bytes,
    "text_int": _decode_text_int,
    "text_float": _decode_text_float,
}
assert set(_DECODERS) == set(TYPES)


def decode_value(value: bytes, type: str) -> object:
    """Decode one cell value as a type from TYPES; ValueError says why it cannot."""
    try:
        decode = _DECODERS[type]
    except KeyError:
        raise ValueError(f"unknown type {type!r}; expected one of {', '.join(TYPES)}") from None
    return decode(value)


# --- names: document _id and field names -------------------------------------------


def _text_or_b64(raw: bytes) -> str:
    """raw as text when that is unambiguous, else "b64:" + URL-safe base64; never collides."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        # Text never starts with "b64:", so the two forms cannot be confused; an
        # empty key goes to "b64:" because Elasticsearch refuses an empty _id.
        if text and not text.startswith(_B64_PREFIX):
            return text
    return _B64_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii")


def document_id(row_key: bytes) -> str:
    """The document _id for a row key: the key as text, or "b64:" + URL-safe base64 of it."""
    return _text_or_b64(row_key)


def row_key_from_id(doc_id: str) -> bytes:
    """The row key a document _id was made from; ValueError if document_id cannot produce doc_id."""
    if doc_id.startswith(_B64_PREFIX):
        try:
            row_key = base64.urlsafe_b64decode(doc_id[len(_B64_PREFIX):].encode("ascii"))
        except ValueError:
            raise ValueError(
                f"invalid document id {_preview(doc_id)}: bad base64 after 'b64:'"
            ) from None
    else:
        try:
            row_key = doc_id.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"invalid document id {_preview(doc_id)}: not valid Unicode text"
            ) from None
    # Only the form document_id produces is accepted, so each key has exactly one id.
    if document_id(row_key) != doc_id:
        raise ValueError(f"invalid document id {_preview(doc_id)}: not in the form hbase2es writes")
    return row_key


def unmapped_field(column: bytes) -> str:
    """Field name for an unmapped column: "family:qualifier" as text, or "b64:" + base64."""
    return _text_or_b64(column)


# --- mapping -----------------------------------------------------------------


@dataclass(frozen=True)
class ColumnSpec:
    """How one column becomes one document field: column b"cf:qual", field name, type from TYPES."""

    column: bytes
    field: str
    type: str

    def __post_init__(self) -> None:
        if isinstance(self.column, str):
            object.__setattr__(self, "column", self.column.encode("utf-8"))
        if not isinstance(self.column, bytes):
            raise ValueError(f"mapping: column must be bytes like b'cf:qual', got {self.column!r}")
        label = unmapped_field(self.column)
        family, colon, _qualifier = self.column.partition(b":")
        if not colon:
            raise ValueError(f"mapping: column {label} has no ':' between family and qualifier")
        if not family:
            raise ValueError(f"mapping: column {label} has an empty family")
        if not isinstance(self.field, str) or not self.field:
            raise ValueError(
                f"mapping: column {label} needs a non-empty field name, got {self.field!r}"
            )
        if self.type not in TYPES:
            raise ValueError(
                f"mapping: column {label} has unknown type {self.type!r}; "
                f"expected one of {', '.join(TYPES)}"
            )


@dataclass(frozen=True)
class Mapping:
    """Which columns go to which fields, and what to do with unmapped columns and bad values."""

    columns: tuple[ColumnSpec, ...] = ()
    unmapped: str = "include"
    rowkey_field: str | None = None
    timestamp_field: str = "@timestamp"
    on_decode_error: str = "dead-letter"
    # column -> (field, decoder, column label, type), built once for build_document.
    _plan: dict = field(default=None, init=False, repr=False, compare=False, hash=False)
    _specs: dict = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        self._check_policies()
        self._check_system_fields()
        object.__setattr__(self, "_plan", self._make_plan())
        object.__setattr__(self, "_specs", {spec.column: spec for spec in self.columns})

    def _check_policies(self) -> None:
        if self.unmapped not in UNMAPPED_POLICIES:
            raise ValueError(
                f"mapping: unmapped must be 'include' or 'skip', got {self.unmapped!r}"
            )
        if self.on_decode_error not in DECODE_ERROR_POLICIES:
            raise ValueError(
                "mapping: on_decode_error must be 'dead-letter', 'skip-field' or 'fail', "
                f"got {self.on_decode_error!r}"
            )

    def _check_system_fields(self) -> None:
        if not isinstance(self.timestamp_field, str) or not self.timestamp_field:
            raise ValueError(
                f"mapping: timestamp_field must be a non-empty name, got {self.timestamp_field!r}"
            )
        if self.rowkey_field is None:
            return
        if not isinstance(self.rowkey_field, str) or not self.rowkey_field:
            raise ValueError(
                "mapping: rowkey_field must be a non-empty name or unset, "
                f"got {self.rowkey_field!r}"
            )
        if self.rowkey_field == self.timestamp_field:
            raise ValueError(
                f"mapping: rowkey_field and timestamp_field are both {self.rowkey_field!r}"
            )

    def _make_plan(self) -> dict:
        plan: dict[bytes, tuple] = {}
        owners = {self.timestamp_field: "the timestamp field"}
        if self.rowkey_field is not None:
            owners[self.rowkey_field] = "the rowkey field"
        for spec in self.columns:
            if not isinstance(spec, ColumnSpec):
                raise ValueError(f"mapping: columns must be ColumnSpec, got {spec!r}")
            label = unmapped_field(spec.column)
            if spec.column in plan:
                raise ValueError(f"mapping: column {label} is mapped twice")
            if spec.field in owners:
                raise ValueError(
                    f"mapping: field {spec.field!r} of column {label} "
                    f"is already {owners[spec.field]}"
                )
            owners[spec.field] = f"used by column {label}"
            plan[spec.column] = (spec.field, _DECODERS[spec.type], label, spec.type)
        return plan


# Column -> field name of unmapped columns. A table has few distinct columns, and naming
# them anew for every cell cost about a third of build_document (bench profile, issue 8).
_UNMAPPED_NAMES: dict[bytes, str] = {}
_UNMAPPED_NAMES_MAX = 4_096


def _add_unmapped(document: dict, column: bytes, value: bytes) -> None:
    name = _UNMAPPED_NAMES.get(column)
    if name is None:
        if len(_UNMAPPED_NAMES) >= _UNMAPPED_NAMES_MAX:
            _UNMAPPED_NAMES.clear()  # bounded: wide tables with dynamic qualifiers
        name = _UNMAPPED_NAMES[column] = unmapped_field(column)
    try:
        document[name] = value.decode("utf-8")
    except UnicodeDecodeError:
        # A separate field, so "name" never switches between text and base64.
        document[name + "#b64"] = binascii.b2a_base64(value, newline=False).decode("ascii")


def build_document(
    row_key: bytes, cells: dict[bytes, bytes], row_time_ms: int, mapping: Mapping
) -> tuple[dict, list[DecodeError]]:
    """The document for one row, and the decode errors its mapped columns produced.

    With on_decode_error "fail" the first error is raised instead; otherwise a
    column that fails to decode is left out of the document.
    """
    document: dict = {}
    errors: list[DecodeError] = []
    plan = mapping._plan
    include_unmapped = mapping.unmapped == "include"
    for column, value in cells.items():
        target = plan.get(column)
        if target is None:
            if include_unmapped:
                _add_unmapped(document, column, value)
            continue
        name, decode, label, type_ = target
        try:
            document[name] = decode(value)
        except ValueError as exc:
            error = DecodeError(label, type_, str(exc))
            if mapping.on_decode_error == "fail":
                raise error from None
            errors.append(error)
    # Set last so that no column can overwrite them.
    if mapping.rowkey_field is not None:
        document[mapping.rowkey_field] = document_id(row_key)
    document[mapping.timestamp_field] = format_time(row_time_ms)
    return document, errors
