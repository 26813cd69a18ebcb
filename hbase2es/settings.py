"""One frozen Settings object built from flags, environment, a TOML file and defaults.

Precedence: command-line flag > environment variable (HBASE2ES_<FLAG>) > TOML file >
default. The CLI hands in what the user gave as ``{"section.key": value}`` overrides;
everything is validated here so that a bad value fails before any server is contacted,
with a message naming the key and where it came from.

Secrets are never settings: the config names the environment variables that hold them
(``api_key_env`` ...) and the Elasticsearch client reads them when it is built.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .mapping import ColumnSpec, Mapping
from .timewindow import TimeError, parse_duration, parse_time, parse_tz

DEFAULT_HBASE_PORT = 9090
DEFAULT_ES_URL = "http://127.0.0.1:9200"
TRANSPORTS = ("buffered", "framed")
PROTOCOLS = ("binary", "compact")
TIME_SOURCES = ("cell",)
START_METHODS = ("spawn", "forkserver")


@dataclass(frozen=True)
class HBaseSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_HBASE_PORT
    table: str = ""
    transport: str = "buffered"
    protocol: str = "binary"
    timeout_ms: int = 60_000
    batch_size: int = 1000  # scanner caching: rows per Thrift round trip


@dataclass(frozen=True)
class ElasticsearchSettings:
    hosts: tuple[str, ...] = (DEFAULT_ES_URL,)
    index: str = ""
    # Names of environment variables, never the secrets themselves.
    api_key_env: str = "HBASE2ES_ES_API_KEY"
    username_env: str = "HBASE2ES_ES_USERNAME"
    password_env: str = "HBASE2ES_ES_PASSWORD"
    ca_certs: str | None = None
    verify_certs: bool = True
    bulk_docs: int = 5000
    bulk_bytes: int = 10 * 1024 * 1024
    request_timeout: float = 120.0
    retry_seconds: float = 300.0  # how long a slice retries a busy or unreachable cluster


@dataclass(frozen=True)
class WindowSettings:
    start: str | None = None
    end: str | None = None
    slice: str = "1h"
    tz: str = "UTC"
    time_source: str = "cell"


@dataclass(frozen=True)
class RunSettings:
    workers: int = 2
    report: str | None = None
    quiet: bool = False
    log_level: str = "info"
    max_attempts: int = 3  # runs of a slice whose worker died, before it counts as failed
    start_method: str = "spawn"
    dead_letter: str | None = None  # NDJSON file for rows that could not be indexed
    max_errors: int = 0  # failed documents tolerated before the run exits 1
    ledger: str | None = None  # SQLite file recording every slice of the job
    resume: bool = False  # skip slices the ledger has as done
    incremental: bool = False  # start at the ledger's watermark (cron)
    grace_seconds: float = 30.0  # after Ctrl-C/SIGTERM, how long running slices may finish


@dataclass(frozen=True)
class Settings:
    """Everything a run needs; picklable, so workers receive it whole."""

    hbase: HBaseSettings = field(default_factory=HBaseSettings)
    elasticsearch: ElasticsearchSettings = field(default_factory=ElasticsearchSettings)
    window: WindowSettings = field(default_factory=WindowSettings)
    mapping: Mapping = field(default_factory=Mapping)
    run: RunSettings = field(default_factory=RunSettings)
    # Resolved once in the parent so that "now-5m" means the same instant in every worker.
    start_ms: int = 0
    end_ms: int = 0
    slice_ms: int = 3_600_000

    @property
    def tzinfo(self):
        return parse_tz(self.window.tz)


SECTIONS = {
    "hbase": HBaseSettings,
    "elasticsearch": ElasticsearchSettings,
    "window": WindowSettings,
    "run": RunSettings,
}
MAPPING_KEYS = {"id", "rowkey_field", "timestamp_field", "unmapped", "on_decode_error", "columns"}
CHOICES = {
    "hbase.transport": TRANSPORTS,
    "hbase.protocol": PROTOCOLS,
    "window.time_source": TIME_SOURCES,
    "run.start_method": START_METHODS,
    "run.log_level": ("debug", "info", "warning", "error"),
}
POSITIVE = {"hbase.port", "hbase.timeout_ms", "hbase.batch_size", "elasticsearch.bulk_docs",
            "elasticsearch.bulk_bytes", "elasticsearch.request_timeout", "run.workers",
            "run.max_attempts", "elasticsearch.retry_seconds", "run.grace_seconds"}


def load_settings(config: str | Path | None = None, overrides: dict[str, Any] | None = None,
                  *, now_ms: int, need_window: bool = True) -> Settings:
    """Build Settings from a TOML file and ``{"section.key": value}`` overrides (flags/env)."""
    raw: dict[str, Any] = {}
    origin = "defaults"
    if config is not None:
        raw, origin = _read_toml(Path(config)), str(config)
    sections = {name: _section(raw, name, cls, origin) for name, cls in SECTIONS.items()}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, name = key.partition(".")
        sections[section][name] = _check(key, value, SECTIONS[section], "command line/environment")
    unknown = set(raw) - set(SECTIONS) - {"mapping"}
    if unknown:
        raise ConfigError(f"{origin}: unknown section [{sorted(unknown)[0]}]; "
                          f"expected one of {', '.join(sorted([*SECTIONS, 'mapping']))}")
    built = {name: SECTIONS[name](**values) for name, values in sections.items()}
    settings = Settings(mapping=_mapping(raw.get("mapping", {}), origin), **built)
    return _resolve(settings, now_ms, need_window)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _section(raw: dict, name: str, cls: type, origin: str) -> dict[str, Any]:
    values = raw.get(name, {})
    if not isinstance(values, dict):
        raise ConfigError(f"{origin}: [{name}] must be a table")
    known = {f.name for f in fields(cls)}
    out = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{origin}: unknown key {name}.{key}; "
                              f"known keys: {', '.join(sorted(known))}")
        out[key] = _check(f"{name}.{key}", value, cls, origin)
    return out


def _check(key: str, value: Any, cls: type, origin: str) -> Any:
    """Coerce and validate one value against its dataclass field."""
    name = key.split(".", 1)[1]
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
    elif not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{where} must be one of {', '.join(CHOICES[key])}, got {value!r}")
    if key == "run.max_errors" and value < 0:
        raise ConfigError(f"{where} must be 0 or more, got {value!r}")
    if key in POSITIVE and value <= 0:
        raise ConfigError(f"{where} must be greater than 0, got {value!r}")
    return value


def _mapping(raw: dict, origin: str) -> Mapping:
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: [mapping] must be a table")
    for key in raw:
        if key not in MAPPING_KEYS:
            raise ConfigError(f"{origin}: unknown key mapping.{key}; "
                              f"known keys: {', '.join(sorted(MAPPING_KEYS))}")
    if raw.get("id", "rowkey") != "rowkey":
        raise ConfigError(f"{origin}: mapping.id must be \"rowkey\", got {raw['id']!r}")
    columns = []
    for column, spec in raw.get("columns", {}).items():
        where = f"{origin}: mapping.columns.\"{column}\""
        if isinstance(spec, str):
            spec = {"type": spec}
        if not isinstance(spec, dict) or set(spec) - {"field", "type"}:
            raise ConfigError(f"{where} must be {{ field = \"name\", type = \"...\" }}")
        qualifier = column.split(":", 1)[-1]
        columns.append(ColumnSpec(column=column.encode(), field=spec.get("field", qualifier),
                                  type=spec.get("type", "string")))
    options = {k: raw[k] for k in ("rowkey_field", "timestamp_field", "unmapped", "on_decode_error")
               if k in raw}
    try:
        return Mapping(columns=tuple(columns), **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: [mapping]: {exc}") from None


def _resolve(settings: Settings, now_ms: int, need_window: bool) -> Settings:
    """Turn window text into epoch milliseconds and check what a run cannot do without."""
    w = settings.window
    try:
        tz = parse_tz(w.tz)
        slice_ms = parse_duration(w.slice)
    except TimeError as exc:
        raise ConfigError(f"window: {exc}") from None
    if not settings.hbase.table:
        raise ConfigError("no HBase table: give --table or [hbase] table")
    if not settings.elasticsearch.index:
        raise ConfigError("no Elasticsearch index: give --index or [elasticsearch] index")
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
    return replace(settings, start_ms=start_ms, end_ms=end_ms, slice_ms=slice_ms)
