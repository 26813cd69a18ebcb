"""Decoding one cell value by its column's type: the encodings Java's ``Bytes.toBytes`` writes.

Pure: bytes in, a JSON-ready value out, or ``ValueError(reason)``; ``mapping`` turns the
reason into a ``DecodeError`` that names the column.
"""

from __future__ import annotations

import binascii
import math
import struct

import orjson

__all__ = ["DECODERS", "TYPES", "DecodeError", "decode_value", "preview"]

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


def preview(value: bytes | str, limit: int = 40) -> str:
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
        raise ValueError(f"not a decimal number: {preview(value)}") from None
    if "_" in text:
        raise ValueError(f"not a decimal number: {preview(text)}")
    return text


def _decode_text_int(value: bytes) -> int:
    text = _number_text(value)
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"not a decimal integer: {preview(text)}") from None
    if not _LONG_MIN <= number <= _LONG_MAX:
        # A long field cannot hold it, and orjson cannot even serialize it.
        raise ValueError(f"{preview(text)} is outside the 64-bit long range")
    return number


def _decode_text_float(value: bytes) -> float:
    text = _number_text(value)
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"not a decimal number: {preview(text)}") from None
    _reject_non_finite(number)
    return number


DECODERS = {
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
assert set(DECODERS) == set(TYPES)


def decode_value(value: bytes, type: str) -> object:
    """Decode one cell value as a type from TYPES; ValueError says why it cannot."""
    try:
        decode = DECODERS[type]
    except KeyError:
        raise ValueError(f"unknown type {type!r}; expected one of {', '.join(TYPES)}") from None
    return decode(value)
