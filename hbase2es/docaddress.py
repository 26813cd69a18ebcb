"""Where a row's document goes: its ``_id`` and its routing, from the row key and columns.

Pure: no client, no network. Both are key templates: text with ``{key}`` (the whole row
key), ``{key[a:b]}`` (bytes a to b of it, Python slice rules) and ``{family:qualifier}``
(the newest value of a column) between literal text. A part that is not UTF-8 is written
as ``b64:`` + URL-safe base64, as row keys are (``mapping.document_id``).

- ``_id``: the row key (``mapping.document_id``) unless ``[mapping] id = { template }``;
  an id over 512 bytes becomes ``sha256:`` + hex, and the document then carries the row
  key in its row-key field, so ``reconcile`` can find the row back.
- routing: ``[elasticsearch] routing = { column = "d:tenant" }``, ``{ rowkey_prefix_bytes
  = 4 }`` or ``{ template = "..." }``; sent with every index, delete and mget.

A row that lacks a column a template names raises ``MissingValue``; the export applies
``mapping.on_decode_error`` to it (``skip-field``: routing is left out; an id cannot be).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .mapping import document_id, hashed_id, key_text

ROUTING_KEYS = ("column", "rowkey_prefix_bytes", "template")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_KEY_PART = re.compile(r"key(?:\[(-?\d*):(-?\d*)\])?")


class MissingValue(ValueError):
    """A row has no value for a column a key template names."""

    def __init__(self, what: str, column: bytes) -> None:
        label = column.decode("utf-8", "backslashreplace")
        super().__init__(f"{what}: the row has no value for column {label}")
        self.what = what
        self.column = column

    def __reduce__(self):
        return (self.__class__, (self.what, self.column))


@dataclass(frozen=True)
class KeyTemplate:
    """A parsed key template; ``parts`` are literal text (str), ``(start, stop)`` key
    slices or column names (bytes)."""

    text: str
    parts: tuple = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", _parse(self.text))

    @property
    def columns(self) -> tuple[bytes, ...]:
        return tuple(p for p in self.parts if isinstance(p, bytes))

    def render(self, row_key: bytes, values: dict[bytes, bytes], what: str) -> bytes:
        out = []
        for part in self.parts:
            if isinstance(part, tuple):
                out.append(row_key[part[0]:part[1]])
            elif isinstance(part, str):
                out.append(part.encode("utf-8"))
            else:
                value = values.get(part)
                if value is None:
                    raise MissingValue(what, part)
                out.append(value)
        return b"".join(out)


def _parse(text: str) -> tuple:
    """The parts of a template; ValueError naming what is wrong."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"must be a non-empty template text, got {text!r}")
    parts: list = []
    at = 0
    for match in _PLACEHOLDER.finditer(text):
        literal = text[at:match.start()]
        if "{" in literal or "}" in literal:
            raise ValueError(f"unbalanced brace in template {text!r}")
        if literal:
            parts.append(literal)
        parts.append(_placeholder(match.group(1), text))
        at = match.end()
    rest = text[at:]
    if "{" in rest or "}" in rest:
        raise ValueError(f"unbalanced brace in template {text!r}")
    if rest:
        parts.append(rest)
    if all(isinstance(p, str) for p in parts):
        raise ValueError(f"template {text!r} names neither {{key}} nor a column: every row "
                         f"would get the same value")
    return tuple(parts)


def _placeholder(inner: str, text: str):
    key = _KEY_PART.fullmatch(inner)
    if key is not None:
        return (int(key.group(1)) if key.group(1) else None,
                int(key.group(2)) if key.group(2) else None)
    family, colon, _qualifier = inner.partition(":")
    if not colon or not family:
        raise ValueError(f"{{{inner}}} in template {text!r} is neither {{key}}, "
                         f"{{key[start:stop]}} nor {{family:qualifier}}")
    return inner.encode("utf-8")


def routing_template(raw: dict) -> str | None:
    """``[elasticsearch] routing`` as one template text (None: no routing); ValueError if bad."""
    if not raw:
        return None
    unknown = sorted(set(raw) - set(ROUTING_KEYS))
    if unknown or len(raw) != 1:
        raise ValueError("must be one of { column = \"family:qualifier\" }, "
                         "{ rowkey_prefix_bytes = N } or { template = \"...\" }, got "
                         f"{raw!r}")
    if "column" in raw:
        column = raw["column"]
        if not isinstance(column, str) or ":" not in column or column.startswith(":"):
            raise ValueError(f"column must be \"family:qualifier\", got {column!r}")
        return "{" + column + "}"
    if "rowkey_prefix_bytes" in raw:
        size = raw["rowkey_prefix_bytes"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"rowkey_prefix_bytes must be a whole number above 0, got {size!r}")
        return f"{{key[0:{size}]}}"
    KeyTemplate(raw["template"])  # raises if bad
    return raw["template"]


@dataclass(frozen=True)
class Addressing:
    """How every document of a job is addressed: id scheme, routing, ingest pipeline."""

    id_template: KeyTemplate | None = None
    routing: KeyTemplate | None = None
    pipeline: str | None = None

    @classmethod
    def of(cls, settings) -> "Addressing":
        ids, routing = settings.mapping.id_template, routing_template(settings.elasticsearch.routing)
        return cls(KeyTemplate(ids) if ids else None,
                   KeyTemplate(routing) if routing else None,
                   settings.elasticsearch.pipeline or None)

    @property
    def columns(self) -> tuple[bytes, ...]:
        """The columns a scan must read to address a row."""
        found: list[bytes] = []
        for template in (self.id_template, self.routing):
            if template is not None:
                found += [c for c in template.columns if c not in found]
        return tuple(found)

    def doc_id(self, row_key: bytes, values: dict[bytes, bytes]) -> str:
        if self.id_template is None:
            return document_id(row_key)
        return hashed_id(self.id_template.render(row_key, values, "mapping.id"))

    def route(self, row_key: bytes, values: dict[bytes, bytes], *,
              missing_ok: bool = False) -> str | None:
        """The routing value, or None without routing (or, ``missing_ok``, a missing column)."""
        if self.routing is None:
            return None
        try:
            return key_text(self.routing.render(row_key, values, "elasticsearch.routing"))
        except MissingValue:
            if missing_ok:
                return None
            raise


def id_scheme(mapping) -> str:
    """What the job fingerprint records of the id scheme."""
    return f"template:{mapping.id_template}" if mapping.id_template else "rowkey"


def check_addressing(mapping, routing: dict, pipeline: str | None) -> None:
    """ValueError "key: reason" when the id template, routing or pipeline cannot work.

    A template may name mapped columns only ([mapping.columns]): a typo in a column name
    would otherwise send every row to the dead letters, or route them all alike.
    """
    try:
        routing_text = routing_template(routing)
    except ValueError as exc:
        raise ValueError(f"elasticsearch.routing: {exc}") from None
    mapped = {spec.column for spec in mapping.columns}
    for key, text in (("mapping.id", mapping.id_template), ("elasticsearch.routing", routing_text)):
        for column in (KeyTemplate(text).columns if text else ()):
            if column not in mapped:
                label = column.decode("utf-8", "backslashreplace")
                raise ValueError(f"{key}: column {label} is not in [mapping.columns]; map it "
                                 f"(a template reads mapped columns only)")
    if pipeline is not None and not pipeline.strip():
        raise ValueError("elasticsearch.pipeline must be a pipeline name, got an empty one")


META_KEY = "hbase2es"  # under the index mapping's _meta


def addressing_meta(settings) -> dict:
    """What an index hbase2es creates records of how its documents are addressed."""
    return {"id": id_scheme(settings.mapping),
            "routing": routing_template(settings.elasticsearch.routing) or ""}


def with_addressing_meta(mappings: dict, settings) -> dict:
    """The mappings of an index to create, with ``_meta.hbase2es`` added."""
    meta = dict(mappings.get("_meta") or {})
    meta[META_KEY] = addressing_meta(settings)
    return {**mappings, "_meta": meta}


def addressing_conflicts(existing: dict[str, dict], settings) -> list[str]:
    """Existing indices (name -> mappings) whose ``_meta`` records another id scheme or
    routing than this job's: writing there would leave their documents stranded."""
    want = addressing_meta(settings)
    out = []
    for name, mappings in existing.items():
        have = ((mappings or {}).get("_meta") or {}).get(META_KEY)
        if not isinstance(have, dict):
            continue  # not created by hbase2es (or before issue 17): nothing recorded
        for key, setting in (("id", "mapping.id"), ("routing", "elasticsearch.routing")):
            if have.get(key, want[key]) != want[key]:
                out.append(f"{setting}: index {name} was written with {key} "
                           f"{have[key] or 'none'!r}, this job's is {want[key] or 'none'!r}")
    return out
