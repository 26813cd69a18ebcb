"""Guess how each column's bytes are encoded, from a sample of its values. Pure.

HBase stores bytes, so the type of a column is a guess. Each sampled value lists the
types it plausibly holds, strongest first (``fitting_types``): a JSON object, decimal
text, printable UTF-8, then the Java encodings by length (8 bytes long or double, 4 int
or float, 2 short, 1 boolean), and ``bytes``, which holds anything. A column takes the
type that fits the most of its values among the types its values prefer, or ``bytes``
when even that one fits half of them or fewer; so a few stray values do not turn a long
column into base64. Every type proposed for a value also decodes it (``mapping.decode_value``), so
values that fit never fail an export; the others are counted as misfits.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from .mapping import TYPES, decode_value

# Strongest first: a value that fits several types is proposed as the first of them.
ORDER = ("json", "text_int", "text_float", "string", "long", "double", "int", "float",
         "short", "boolean", "bytes")
assert set(ORDER) == set(TYPES)

# Past 2**53 a long is more likely the bits of a double (or a random id) than a count.
SMALL_LONG = 2**53
SMALL_INT = 2**24  # the same for 4 bytes: a float's bits read as an int are large
# Doubles and floats of these magnitudes (or zero) look like measured values; the bits of
# a small integer read as a double are denormal, those of text are astronomically large.
DOUBLE_RANGE = (1e-9, 1e15)
FLOAT_RANGE = (1e-6, 1e9)
MAX_TEXT_FLOAT_DIGITS = 17  # beyond this a double no longer holds the digits
EXAMPLE_CHARS = 60

_INT_TEXT = re.compile(rb"-?(0|[1-9][0-9]*)")
_FLOAT_TEXT = re.compile(rb"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]{1,3})?")
_NOT_PRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
_FLOAT64 = struct.Struct(">d")
_FLOAT32 = struct.Struct(">f")


def _plausible_real(number: float, low: float, high: float) -> bool:
    """Finite, not denormal and of an everyday magnitude, or exactly zero."""
    return number == 0.0 or (math.isfinite(number) and low <= abs(number) < high)


def _text_types(value: bytes) -> list[str]:
    out = []
    if value.lstrip()[:1] == b"{":
        try:
            if isinstance(orjson.loads(value), dict):
                out.append("json")
        except orjson.JSONDecodeError:
            pass
    # Leading zeros ("007") mean an identifier: a number would drop them.
    if _INT_TEXT.fullmatch(value) and len(value) <= 19:
        try:
            decode_value(value, "text_int")
            out.append("text_int")
        except ValueError:
            pass  # outside the long range
    if _FLOAT_TEXT.fullmatch(value) and sum(c.isdigit() for c in value.decode()) \
            <= MAX_TEXT_FLOAT_DIGITS:
        try:
            decode_value(value, "text_float")
            out.append("text_float")
        except ValueError:
            pass  # e.g. 1e999
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return out
    if not _NOT_PRINTABLE.search(text):
        out.append("string")
    return out


def _binary_types(value: bytes) -> list[str]:
    size = len(value)
    if size == 8:
        as_long = int.from_bytes(value, "big", signed=True)
        double_ok = _plausible_real(_FLOAT64.unpack(value)[0], *DOUBLE_RANGE)
        long_ok = abs(as_long) < SMALL_LONG or not double_ok
        return [t for t, ok in (("long", long_ok), ("double", double_ok)) if ok]
    if size == 4:
        as_int = int.from_bytes(value, "big", signed=True)
        float_ok = _plausible_real(_FLOAT32.unpack(value)[0], *FLOAT_RANGE)
        int_ok = abs(as_int) < SMALL_INT or not float_ok
        return [t for t, ok in (("int", int_ok), ("float", float_ok)) if ok]
    if size == 2:
        return ["short"]
    if size == 1 and value in (b"\x00", b"\x01"):
        return ["boolean"]
    return []


def fitting_types(value: bytes) -> tuple[str, ...]:
    """The types ``value`` plausibly holds, strongest first; the last is always ``bytes``."""
    return (*_text_types(value), *_binary_types(value), "bytes")


def show_value(value: bytes, type_: str, limit: int = EXAMPLE_CHARS) -> str:
    """One value as decoded for a comment: JSON text, cut short, on one line."""
    try:
        shown = orjson.dumps(decode_value(value, type_)).decode()
    except ValueError:
        shown = orjson.dumps(decode_value(value, "bytes")).decode() + " (base64)"
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


@dataclass(frozen=True)
class ColumnGuess:
    """The proposed type of one column and how well the sample supports it."""

    column: bytes
    type: str
    values: int  # sampled values of the column
    fits: int  # of them that decode as ``type``
    example: str  # a decoded value of the type, for a comment
    # Misfits by the type they would prefer, and one of them shown, for a comment.
    misfit_types: dict[str, int] = field(default_factory=dict)
    misfit_example: str = ""
    json_arrays: int = 0  # values that are JSON arrays (the json type takes objects only)

    @property
    def misfits(self) -> int:
        return self.values - self.fits

    @property
    def share(self) -> float:
        return self.fits / self.values if self.values else 0.0


class _ColumnTally:
    """What the sample says about one column, value by value."""

    __slots__ = ("values", "votes", "fits", "examples", "misfits", "misfit_examples",
                 "json_arrays")

    def __init__(self) -> None:
        self.values = 0
        self.votes: dict[str, int] = {}  # type -> values whose strongest type it is
        self.fits: dict[str, int] = {}  # type -> values it fits
        self.examples: dict[str, bytes] = {}  # type -> first value it fits
        # type -> {strongest type of a value it does not fit: count}, and one such value
        self.misfits: dict[str, dict[str, int]] = {t: {} for t in ORDER}
        self.misfit_examples: dict[str, tuple[bytes, str]] = {}
        self.json_arrays = 0

    def add(self, value: bytes) -> None:
        types = fitting_types(value)
        strongest = types[0]
        self.values += 1
        self.votes[strongest] = self.votes.get(strongest, 0) + 1
        for t in ORDER:
            if t in types:
                self.fits[t] = self.fits.get(t, 0) + 1
                self.examples.setdefault(t, value)
            else:
                self.misfits[t][strongest] = self.misfits[t].get(strongest, 0) + 1
                self.misfit_examples.setdefault(t, (value, strongest))
        if strongest == "string" and value.lstrip()[:1] == b"[":
            try:
                self.json_arrays += isinstance(orjson.loads(value), list)
            except orjson.JSONDecodeError:
                pass

    def guess(self, column: bytes) -> ColumnGuess:
        # bytes fits every value, so it wins only when no other type fits most values.
        typed = [t for t in self.votes if t != "bytes"]
        best = max(typed, key=lambda t: (self.fits[t], -ORDER.index(t))) if typed else "bytes"
        if 2 * self.fits[best] <= self.values:
            best = "bytes"
        misfit = self.misfit_examples.get(best)
        return ColumnGuess(column, best, self.values, self.fits[best],
                           show_value(self.examples[best], best), dict(self.misfits[best]),
                           show_value(*misfit) if misfit else "", self.json_arrays)


def guess_columns(rows: Iterable[dict[bytes, bytes]]) -> list[ColumnGuess]:
    """One guess per column seen in ``rows`` (``{b"family:qualifier": value}``), by name."""
    tallies: dict[bytes, _ColumnTally] = {}
    for cells in rows:
        for column, value in cells.items():
            tally = tallies.get(column)
            if tally is None:
                tally = tallies[column] = _ColumnTally()
            tally.add(value)
    return [tallies[c].guess(c) for c in sorted(tallies)]


# --- document fields and Elasticsearch types ------------------------------------------

# What --create-index maps each column type to. A keyword longer than 32766 bytes makes
# Lucene reject the whole document; ignore_above 8191 characters (4 bytes each at most)
# keeps such a value in _source, unindexed.
ES_TYPES = {
    "string": {"type": "keyword", "ignore_above": 8191},
    "int": {"type": "long"}, "long": {"type": "long"}, "short": {"type": "long"},
    "text_int": {"type": "long"},
    "float": {"type": "double"}, "double": {"type": "double"}, "text_float": {"type": "double"},
    "boolean": {"type": "boolean"},
    "json": {"type": "object"},
    "bytes": {"type": "binary"},
}
assert set(ES_TYPES) == set(TYPES)
_FIELD_CHARS = re.compile(r"[^\w\-@]+")


def _field_name(text: str) -> str:
    # A dot would make Elasticsearch read an object path ("a.b" inside "a").
    return _FIELD_CHARS.sub("_", text).strip("_")


def field_names(columns: Iterable[bytes], reserved: Iterable[str] = ()) -> dict[bytes, str]:
    """A document field per column: its qualifier, or family_qualifier where that collides.

    Names hold letters, digits, ``_ - @`` only; a leading underscore (Elasticsearch's
    metadata fields) and the ``reserved`` names (the timestamp field) are avoided.
    """
    columns = list(columns)
    taken = set(reserved)
    plain: dict[bytes, str] = {}
    for column in columns:
        family, _, qualifier = column.decode("utf-8", "replace").partition(":")
        plain[column] = _field_name(qualifier) or _field_name(family) or "column"
    counts: dict[str, int] = {}
    for name in plain.values():
        counts[name] = counts.get(name, 0) + 1
    out: dict[bytes, str] = {}
    for column in columns:
        family = _field_name(column.decode("utf-8", "replace").partition(":")[0])
        name = plain[column]
        if counts[name] > 1 or name in taken:
            name = f"{family}_{name}" if family else name
        base, n = name, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        out[column] = name
    return out


def es_mappings(fields: dict[str, str], timestamp_field: str) -> dict:
    """The ``mappings`` body --create-index would use: ``{field: type}`` plus a date."""
    properties = {timestamp_field: {"type": "date"}}
    properties.update({name: dict(ES_TYPES[t]) for name, t in fields.items()})
    return {"properties": properties}
