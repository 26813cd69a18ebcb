"""One frozen Settings object built from flags, environment, a TOML file and defaults.

Precedence, for every key: command-line flag > environment variable (HBASE2ES_<FLAG>) >
TOML file > default. The CLI hands in only what the user gave, as ``{"section.key": value}``
overrides, so an explicit false or 0 beats the file; everything is validated here so that a
bad value fails before any server is contacted, with a message naming the key and where it
came from. The allowed choices and boolean words live in hbase2es.sections, with the section
types; the CLI takes them from here.

Secrets are never settings: the config names the environment variables that hold them
(``api_key_env`` ...) and the Elasticsearch client reads them when it is built.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from .docaddress import check_addressing
from .errors import ConfigError
from .indexname import IndexTemplate
from .hbaseconfig import check_hbase
from .mappingconfig import read_delete_when, read_mapping
from .timesource import TimeSourceError, time_source
from .timewindow import MAX_SLICES, TimeError, parse_duration, parse_time, parse_tz
# The section types and choices are defined in hbase2es.sections; callers import them from
# here, with the loader.
from .sections import (  # noqa: F401
    DEFAULT_HBASE_PORT, DEFAULT_ES_URL, TRANSPORTS, HBASE_AUTHS, QOPS, PROTOCOLS,
    HBASE_APIS, TIME_SOURCES, START_METHODS, EXECUTORS, LOG_LEVELS, LOG_FORMATS, SUMMARIES,
    SPARK_MASTERS, BOOLEAN_WORDS, HBaseSettings, ElasticsearchSettings, RowKeySettings,
    ColumnSettings, WindowSettings, RunSettings, SparkSettings, Settings, SECTIONS,
    SUBSECTIONS, CHOICES, POSITIVE)


def parse_bool(text: str) -> bool:
    """``true/1/yes/on`` -> True, ``false/0/no/off`` -> False (any case); ValueError otherwise."""
    try:
        return BOOLEAN_WORDS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"{text!r} is not a boolean: use true/false, 1/0, yes/no or "
                         f"on/off") from None


def load_settings(config: str | Path | None = None, overrides: dict[str, Any] | None = None,
                  *, now_ms: int, need_window: bool = True, need_job: bool = True) -> Settings:
    """Build Settings from a TOML file and ``{"section.key": value}`` overrides (flags/env);
    ``need_job`` False for a command that only talks to the cluster (no table, no index)."""
    raw: dict[str, Any] = {}
    origin = "defaults"
    if config is not None:
        raw, origin = _read_toml(Path(config)), str(config)
    sections = {name: _section(raw, name, cls, origin) for name, cls in SECTIONS.items()}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, name = key.partition(".")
        if key == "spark.conf":  # --spark-conf adds to the file's [spark] conf, key by key
            value = {**sections["spark"].get("conf", {}), **value}
        sections[section][name] = _check(key, value, SECTIONS[section], "command line/environment")
    unknown = set(raw) - set(SECTIONS) - {"mapping"}
    if unknown:
        raise ConfigError(f"{origin}: unknown section [{sorted(unknown)[0]}]; "
                          f"expected one of {', '.join(sorted([*SECTIONS, 'mapping']))}")
    built = {name: SECTIONS[name](**values) for name, values in sections.items()}
    settings = Settings(mapping=read_mapping(raw.get("mapping", {}), origin),
                        delete_when=read_delete_when(raw.get("mapping", {}), origin), **built)
    _check_time_source(settings.window, origin)
    try:
        check_addressing(settings.mapping, settings.elasticsearch.routing,
                         settings.elasticsearch.pipeline)
    except ValueError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    check_hbase(settings.hbase)
    return _resolve(settings, now_ms, need_window, need_job)


def _check_time_source(window: WindowSettings, origin: str) -> None:
    """Build the chosen time source once, so a bad [window.rowkey]/[window.column] fails here."""
    try:
        time_source(window)
    except TimeSourceError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _section(raw: dict, name: str, cls: type, origin: str,
             path: str | None = None) -> dict[str, Any]:
    path = path or name  # dotted name of a sub-table, e.g. window.rowkey
    values = raw.get(name, {})
    if not isinstance(values, dict):
        raise ConfigError(f"{origin}: [{path}] must be a table")
    known = {f.name for f in fields(cls)}
    out = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{origin}: unknown key {path}.{key}; "
                              f"known keys: {', '.join(sorted(known))}")
        sub = SUBSECTIONS.get(f"{path}.{key}")
        if sub is not None:
            out[key] = sub(**_section(values, key, sub, origin, f"{path}.{key}"))
            continue
        out[key] = _check(f"{path}.{key}", value, cls, origin)
    return out


def _check(key: str, value: Any, cls: type, origin: str) -> Any:
    """Coerce and validate one value against its dataclass field."""
    name = key.rsplit(".", 1)[1]
    default = next(f for f in fields(cls) if f.name == name)
    expected = default.type
    where = f"{origin}: {key}"
    if "tuple" in expected:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value) \
                or not value:
            raise ConfigError(f"{where} must be a non-empty list of strings, got {value!r}")
        value = tuple(value)
    elif expected == "dict":
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        if key == "spark.conf":
            value = _spark_conf(value, where)
    elif "bool" in expected:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    elif "int" in expected and "float" not in expected:
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                value = int(str(value))
            except ValueError:
                raise ConfigError(f"{where} must be a whole number, got {value!r}") from None
    elif "float" in expected:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(str(value))
            except ValueError:
                raise ConfigError(f"{where} must be a number, got {value!r}") from None
        if not math.isfinite(value):  # "inf" or "nan" would disable a limit or a timeout
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
    elif not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{where} must be one of {', '.join(CHOICES[key])}, got {value!r}")
    if key == "run.max_errors" and value < 0:
        raise ConfigError(f"{where} must be 0 or more, got {value!r}")
    if key == "spark.master" and value and not value.startswith(SPARK_MASTERS):
        # Spark's own message comes only after a JVM start, as a stack trace.
        raise ConfigError(f"{where} must be local, local[N], local[N,MAX_FAILURES], yarn, "
                          f"spark://HOST:PORT or k8s://URL, got {value!r}")
    if key == "run.lookback":
        _lookback_ms(value, where)
    if key in POSITIVE and value <= 0:
        raise ConfigError(f"{where} must be greater than 0, got {value!r}")
    return value


def _lookback_ms(text: str, where: str) -> int:
    """``run.lookback`` in ms; a zero or negative one is refused, as is any non-duration."""
    if text.strip().startswith("-"):  # parse_duration would only say "not a duration"
        raise ConfigError(f"{where} must be greater than 0, got {text!r}")
    try:
        return parse_duration(text)
    except TimeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _spark_conf(table: dict, where: str, prefix: str = "") -> dict[str, str]:
    """Spark properties as strings; unquoted dotted TOML keys (nested tables) are joined back."""
    out: dict[str, str] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            out.update(_spark_conf(value, where, f"{key}."))
            continue
        if not key.startswith("spark."):
            raise ConfigError(f"{where}: {key!r} is not a Spark property (they start with "
                              f"\"spark.\")")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, (int, float)):
            value = str(value)
        elif not isinstance(value, str):
            raise ConfigError(f"{where}.{key} must be a string, got {value!r}")
        out[key] = value
    return out


def _resolve(settings: Settings, now_ms: int, need_window: bool,
             need_job: bool = True) -> Settings:
    """Turn window text into epoch milliseconds and check what a run cannot do without."""
    w = settings.window
    try:
        tz = parse_tz(w.tz)
        slice_ms = parse_duration(w.slice)
    except TimeError as exc:
        raise ConfigError(f"window: {exc}") from None
    if need_job and not settings.hbase.table:
        raise ConfigError("no HBase table: give --table or [hbase] table")
    if need_job and not settings.elasticsearch.index:
        raise ConfigError("no Elasticsearch index: give --index or [elasticsearch] index")
    try:
        # Checked here so a bad name fails before any server is contacted, not in the workers.
        if settings.elasticsearch.index or need_job:
            IndexTemplate(settings.elasticsearch.index, tz)
    except ValueError as exc:
        raise ConfigError(f"elasticsearch.index: {exc}") from None
    settings = _with_mappings_file(settings)
    start_ms = end_ms = 0
    if need_window:
        if w.start is None or w.end is None:
            missing = "start" if w.start is None else "end"
            raise ConfigError(f"no window {missing}: give --{missing} or [window] {missing}")
        try:
            start_ms = parse_time(w.start, tz=tz, now_ms=now_ms)
            end_ms = parse_time(w.end, tz=tz, now_ms=now_ms)
        except TimeError as exc:
            raise ConfigError(f"window: {exc}") from None
        if start_ms >= end_ms:
            raise ConfigError(f"window: start {w.start!r} is not before end {w.end!r}")
        if -(-(end_ms - start_ms) // slice_ms) > MAX_SLICES:  # a typo, such as 1ms for 1m
            raise ConfigError(f"window: {w.start!r} to {w.end!r} would need more than "
                              f"{MAX_SLICES} slices of {w.slice}: use a larger window.slice")
    lookback_ms = _lookback_ms(settings.run.lookback, "run.lookback") \
        if settings.run.lookback is not None else 0
    return replace(settings, start_ms=start_ms, end_ms=end_ms, slice_ms=slice_ms,
                   lookback_ms=lookback_ms)


def _with_mappings_file(settings: Settings) -> Settings:
    """Read ``elasticsearch.mappings_file`` into ``mappings`` (a path relative to the cwd)."""
    es = settings.elasticsearch
    if not es.mappings_file:
        return settings
    key = "elasticsearch.mappings_file"
    if es.mappings:
        raise ConfigError(f"{key}: give either elasticsearch.mappings or mappings_file, not both")
    try:
        data = json.loads(Path(es.mappings_file).read_bytes())
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {es.mappings_file!r}: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{key}: {es.mappings_file!r} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and set(data) == {"mappings"}:
        data = data["mappings"]  # the body of a create-index request, as Kibana shows it
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: {es.mappings_file!r} must hold a JSON object of mappings")
    return replace(settings, elasticsearch=replace(es, mappings=data))
