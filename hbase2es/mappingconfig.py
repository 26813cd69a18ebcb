"""The ``[mapping]`` table of a job file, read into a Mapping with errors that name the key."""

from __future__ import annotations

import json

from .deletes import DeleteRule, parse_delete_when
from .docaddress import KeyTemplate
from .errors import ConfigError
from .mapping import ColumnSpec, FieldConflict, Mapping, unmapped_field

MAPPING_KEYS = {"id", "rowkey_field", "timestamp_field", "unmapped", "on_decode_error", "columns",
                "delete_when"}


def read_mapping(raw: dict, origin: str) -> Mapping:
    """``[mapping]`` of ``origin`` (a file name, for messages) as a Mapping; ConfigError if bad."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: [mapping] must be a table")
    for key in raw:
        if key not in MAPPING_KEYS:
            raise ConfigError(f"{origin}: unknown key mapping.{key}; "
                              f"known keys: {', '.join(sorted(MAPPING_KEYS))}")
    id_template = _id_template(raw.get("id", "rowkey"), origin)
    columns = []
    if not isinstance(raw.get("columns", {}), dict):
        raise ConfigError(f"{origin}: [mapping.columns] must be a table of \"family:qualifier\" "
                          f"= {{ field = \"name\", type = \"...\" }}")
    for column, spec in raw.get("columns", {}).items():
        where = f"{origin}: mapping.columns.\"{column}\""
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, dict) or set(spec) - {"field", "type"}:
            raise ConfigError(f"{where} must be {{ field = \"name\", type = \"...\" }}")
        qualifier = column.split(":", 1)[-1]
        try:
            columns.append(ColumnSpec(column=column.encode(), field=spec.get("field", qualifier),
                                      type=spec.get("type", "string")))
        except ValueError as exc:  # unknown type, no family, empty field: exit 2, not 1
            raise ConfigError(f"{where}: {exc}") from None
    options = {k: raw[k] for k in ("rowkey_field", "timestamp_field", "unmapped", "on_decode_error")
               if k in raw}
    try:
        return Mapping(columns=tuple(columns), id_template=id_template, **options)
    except FieldConflict as exc:
        raise ConfigError(f"{origin}: {_field_conflict(exc)}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: [mapping]: {exc}") from None


def _id_template(raw: object, origin: str) -> str | None:
    """``mapping.id``: "rowkey" (None) or ``{ template = "..." }`` (its text, checked)."""
    if raw == "rowkey":
        return None
    if not isinstance(raw, dict) or set(raw) != {"template"}:
        raise ConfigError(f"{origin}: mapping.id must be \"rowkey\" or {{ template = \"...\" }}, "
                          f"got {raw!r}")
    try:
        KeyTemplate(raw["template"])
    except ValueError as exc:
        raise ConfigError(f"{origin}: mapping.id: {exc}") from None
    return raw["template"]


def _field_conflict(exc: FieldConflict) -> str:
    """One line naming the two config keys that would write the same field, and the way out."""
    def key(owner: tuple) -> str:
        kind, column = owner
        if kind == "column":
            return f'mapping.columns."{column.decode("utf-8")}".field'
        return f"mapping.{kind}"

    name = json.dumps(exc.name)  # as TOML writes it
    if exc.second[0] == "unmapped":
        column = unmapped_field(exc.second[1])
        return (f"{key(exc.first)} = {name} is also the field that mapping.unmapped = "
                f"\"include\" gives column {column}, so one value would overwrite the other: "
                f"choose another field name, map {column}, or set unmapped = \"skip\"")
    one, other = sorted((exc.first, exc.second), key=lambda owner: owner[0] != "column")
    return f"{key(one)} and {key(other)} are both {name}; one document field cannot hold two values"


def read_delete_when(raw: dict, origin: str) -> DeleteRule | None:
    """``[mapping] delete_when`` (None when not given); a bad table is exit 2 naming the key."""
    if "delete_when" not in raw:
        return None
    try:
        return parse_delete_when(raw["delete_when"])
    except ValueError as exc:
        raise ConfigError(f"{origin}: mapping.delete_when: {exc}") from None
