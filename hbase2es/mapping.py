"""Turn one HBase row into one Elasticsearch document, and name its _id.

A row arrives as its key (bytes), its cells (``b"family:qualifier"`` -> value
bytes) and its time (epoch ms). Mapped columns are decoded by type (``decoders``) into
their document field; other columns are copied as text (or base64) or dropped.
``build_document`` runs once per row, so the per-column work is prepared once
in ``Mapping``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field

from .decoders import DECODERS, TYPES, DecodeError, decode_value, preview
from .timewindow import format_time

__all__ = [
    "DECODE_ERROR_POLICIES",
    "TYPES",
    "UNMAPPED_POLICIES",
    "ColumnSpec",
    "DecodeError",
    "FieldConflict",
    "Mapping",
    "build_document",
    "column_of_field",
    "decode_value",
    "document_id",
    "hashed_id",
    "key_from_text",
    "key_text",
    "row_key_from_id",
    "unmapped_field",
]

UNMAPPED_POLICIES = ("include", "skip")
DECODE_ERROR_POLICIES = ("dead-letter", "skip-field", "fail")

_B64_PREFIX = "b64:"
_SHA256_PREFIX = "sha256:"
MAX_ID_BYTES = 512  # what Elasticsearch and OpenSearch accept as an _id
ROWKEY_FALLBACK_FIELD = "@rowkey"  # the row key of a hashed or templated id, without rowkey_field


class FieldConflict(ValueError):
    """Two parts of a mapping would write the same document field.

    ``first`` and ``second`` say which: ``("column", b"cf:a")`` (a mapped column's field),
    ``("rowkey_field", None)``, ``("timestamp_field", None)`` or ``("unmapped", b"cf:x")``
    (the field an unmapped column gets); settings turns them into config keys.
    """

    def __init__(self, message: str, name: str, first: tuple, second: tuple) -> None:
        super().__init__(message)
        self.name = name
        self.first = first
        self.second = second


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


def key_text(row_key: bytes) -> str:
    """The row key as text, or "b64:" + URL-safe base64 of it: what the row-key field holds."""
    return _text_or_b64(row_key)


def hashed_id(raw: bytes) -> str:
    """``raw`` as an _id: its text (or "b64:" form), or "sha256:" + hex of it when that text
    is over 512 bytes, which every engine refuses; text starting "sha256:" is written in the
    "b64:" form, so a hashed id can never be some row's key."""
    text = _text_or_b64(raw)
    if text.startswith(_SHA256_PREFIX):
        text = _B64_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii")
    if len(text) > MAX_ID_BYTES // 4 and len(text.encode("utf-8")) > MAX_ID_BYTES:
        return _SHA256_PREFIX + hashlib.sha256(raw).hexdigest()
    return text


def document_id(row_key: bytes) -> str:
    """The document _id for a row key: the key as text, "b64:" + URL-safe base64 of it, or
    "sha256:" + hex of it for a key whose text is over 512 bytes."""
    return hashed_id(row_key)


def is_hashed(doc_id: str) -> bool:
    """Whether the row key cannot be read back from this _id (see the row-key field)."""
    return doc_id.startswith(_SHA256_PREFIX)


def key_from_text(text: str) -> bytes:
    """The row key ``key_text`` made ``text`` from; ValueError if it cannot have."""
    if text.startswith(_B64_PREFIX):
        try:
            row_key = base64.urlsafe_b64decode(text[len(_B64_PREFIX):].encode("ascii"))
        except ValueError:
            raise ValueError(
                f"invalid document id {preview(text)}: bad base64 after 'b64:'"
            ) from None
    else:
        try:
            row_key = text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"invalid document id {preview(text)}: not valid Unicode text"
            ) from None
    # Only the form key_text produces is accepted, so each key has exactly one text.
    if _text_or_b64(row_key) != text:
        raise ValueError(f"invalid document id {preview(text)}: not in the form hbase2es writes")
    return row_key


def row_key_from_id(doc_id: str) -> bytes:
    """The row key a document _id was made from; ValueError if document_id cannot produce
    doc_id (a "sha256:" id included: its key is in the document's row-key field)."""
    row_key = key_from_text(doc_id)
    if document_id(row_key) != doc_id:
        raise ValueError(f"invalid document id {preview(doc_id)}: not in the form hbase2es writes")
    return row_key


def unmapped_field(column: bytes) -> str:
    """Field name for an unmapped column: "family:qualifier" as text, or "b64:" + base64."""
    return _text_or_b64(column)


def column_of_field(name: str) -> bytes | None:
    """The column whose unmapped field ``name`` is (its text field, not a "#b64" one), or None."""
    try:
        column = key_from_text(name)  # the same text-or-b64 naming, so the same inverse
    except ValueError:
        return None
    family, colon, _qualifier = column.partition(b":")
    return column if colon and family else None  # HBase columns always have a family


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
    # [mapping] id = { template = "..." } (hbase2es.docaddress); None: the row key.
    id_template: str | None = None
    # column -> (field, decoder, column label, type), built once for build_document.
    _plan: dict = field(default=None, init=False, repr=False, compare=False, hash=False)
    _specs: dict = field(default=None, init=False, repr=False, compare=False, hash=False)
    # Every field the mapping itself writes, mapped or system; a base64 field avoids them.
    _fields: frozenset = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        self._check_policies()
        self._check_system_fields()
        object.__setattr__(self, "_plan", self._make_plan())
        object.__setattr__(self, "_specs", {spec.column: spec for spec in self.columns})
        object.__setattr__(self, "_fields", frozenset(
            [spec.field for spec in self.columns] + list(self._system_owners())))

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
            raise FieldConflict(
                f"mapping: rowkey_field and timestamp_field are both {self.rowkey_field!r}",
                self.rowkey_field, ("rowkey_field", None), ("timestamp_field", None),
            )

    def _make_plan(self) -> dict:
        plan: dict[bytes, tuple] = {}
        owners = self._system_owners()
        for spec in self.columns:
            if not isinstance(spec, ColumnSpec):
                raise ValueError(f"mapping: columns must be ColumnSpec, got {spec!r}")
            label = unmapped_field(spec.column)
            if spec.column in plan:
                raise ValueError(f"mapping: column {label} is mapped twice")
            owner = ("column", spec.column)
            if spec.field in owners:
                first = owners[spec.field]
                what = (f"used by column {unmapped_field(first[1])}" if first[0] == "column"
                        else f"the {first[0].replace('_field', '')} field")
                raise FieldConflict(
                    f"mapping: field {spec.field!r} of column {label} is already {what}",
                    spec.field, first, owner,
                )
            owners[spec.field] = owner
            plan[spec.column] = (spec.field, DECODERS[spec.type], label, spec.type)
        if self.unmapped == "include":
            self._check_unmapped_names(owners, plan)
        return plan

    def _system_owners(self) -> dict[str, tuple]:
        owners = {self.timestamp_field: ("timestamp_field", None)}
        owners[self.key_field] = ("rowkey_field", None)
        return owners

    @property
    def key_field(self) -> str:
        """Where a document keeps its row key: always with rowkey_field, and without it when
        the _id does not say the key (hashed or templated ids)."""
        return self.rowkey_field if self.rowkey_field is not None else ROWKEY_FALLBACK_FIELD

    @staticmethod
    def _check_unmapped_names(owners: dict[str, tuple], plan: dict) -> None:
        """Refuse a field that an unmapped column would also write, one value over the other.

        Only the column's own name can clash here; its "#b64" name gives way when taken
        (see _place_base64), so it needs no rule in the config.
        """
        for name, owner in owners.items():
            column = column_of_field(name)
            if column is None or column in plan:
                continue  # no column has that name, or that column is mapped elsewhere
            who = (f"field {name!r} of column {unmapped_field(owner[1])}" if owner[0] == "column"
                   else f"{owner[0]} {name!r}")
            raise FieldConflict(
                f"mapping: {who} is also the field of unmapped column "
                f"{unmapped_field(column)} (unmapped = 'include')",
                name, owner, ("unmapped", column),
            )


# Column -> field name of unmapped columns. A table has few distinct columns, and naming
# them anew for every cell cost about a third of build_document (bench profile, issue 8).
_UNMAPPED_NAMES: dict[bytes, str] = {}
_UNMAPPED_NAMES_MAX = 4_096
_B64_SUFFIX = "#b64"
# The longest key whose text or "b64:" form always fits an _id: 4 + 4 * ceil(381 / 3) = 512.
_LONGEST_PLAIN_KEY = 381


def _name_unmapped(column: bytes) -> str:
    if len(_UNMAPPED_NAMES) >= _UNMAPPED_NAMES_MAX:
        _UNMAPPED_NAMES.clear()  # bounded: wide tables with dynamic qualifiers
    name = _UNMAPPED_NAMES[column] = unmapped_field(column)
    return name


def _place_base64(document: dict, pending: list, cells: dict, reserved: frozenset) -> None:
    """Give each unmapped value that is not UTF-8 its base64 field, taking no other field.

    The field is "<column's field>#b64". A name is taken when the document has it (a
    column's text, the rowkey or timestamp field), the mapping has it, or the row has a
    column literally named so: a real column always keeps its own name. A taken name
    gets "#b64" again until it is free. Own "#b64" names are placed before longer ones,
    and both in column order, so the result does not depend on the order of the cells.
    Runs only for rows that have such values: the usual row never gets here.
    """
    def taken(name: str) -> bool:
        return name in document or name in reserved or name.encode("utf-8") in cells

    if len(pending) > 1:
        pending.sort()
    moved = []
    for _column, name, value in pending:
        text = binascii.b2a_base64(value, newline=False).decode("ascii")
        name += _B64_SUFFIX
        if taken(name):
            moved.append((name, text))
        else:
            document[name] = text
    for name, text in moved:
        name += _B64_SUFFIX
        while taken(name):
            name += _B64_SUFFIX
        document[name] = text


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
    names = _UNMAPPED_NAMES
    include_unmapped = mapping.unmapped == "include"
    pending = None  # unmapped values that are not UTF-8: named once every other field is known
    for column, value in cells.items():
        target = plan.get(column)
        if target is None:
            if include_unmapped:
                name = names.get(column) or _name_unmapped(column)
                try:
                    document[name] = value.decode("utf-8")
                except UnicodeDecodeError:
                    # A separate field, so "name" never switches between text and base64.
                    if pending is None:
                        pending = []
                    pending.append((column, name, value))
            continue
        name, decode, label, type_ = target
        try:
            document[name] = decode(value)
        except ValueError as exc:
            error = DecodeError(label, type_, str(exc))
            if mapping.on_decode_error == "fail":
                raise error from None
            errors.append(error)
    # The mapping refuses a rowkey or timestamp field that a column's field could be.
    if mapping.rowkey_field is not None:
        document[mapping.rowkey_field] = _text_or_b64(row_key)
    elif mapping.id_template is not None or len(row_key) > _LONGEST_PLAIN_KEY:
        text = _text_or_b64(row_key)
        if mapping.id_template is not None or is_hashed(hashed_id(row_key)):
            document[ROWKEY_FALLBACK_FIELD] = text
    document[mapping.timestamp_field] = format_time(row_time_ms)
    if pending is not None:
        _place_base64(document, pending, cells, mapping._fields)
    return document, errors
