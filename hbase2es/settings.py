"""One frozen Settings object built from flags, environment, a TOML file and defaults.

Precedence, for every key: command-line flag > environment variable (HBASE2ES_<FLAG>) >
TOML file > default. The CLI hands in only what the user gave, as ``{"section.key": value}``
overrides, so an explicit false or 0 beats the file; everything is validated here so that a
bad value fails before any server is contacted, with a message naming the key and where it
came from. The allowed choices and boolean words live here, and the CLI takes them from here.

Secrets are never settings: the config names the environment variables that hold them
(``api_key_env`` ...) and the Elasticsearch client reads them when it is built.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .deletes import DeleteRule
from .errors import ConfigError
from .indexname import IndexTemplate
from .mapping import Mapping
from .hbaseconfig import check_hbase
from .mappingconfig import read_delete_when, read_mapping
from .timesource import SALT_FORMATS, TimeSourceError, time_source
from .timewindow import MAX_SLICES, TimeError, parse_duration, parse_time, parse_tz

DEFAULT_HBASE_PORT = 9090
DEFAULT_ES_URL = "http://127.0.0.1:9200"
TRANSPORTS = ("buffered", "framed", "http")
HBASE_AUTHS = ("none", "kerberos")
QOPS = ("auth", "auth-int", "auth-conf")  # SASL: authentication only, + integrity, + privacy
PROTOCOLS = ("binary", "compact")
HBASE_APIS = ("thrift1", "thrift2")
TIME_SOURCES = ("cell", "rowkey", "column")
START_METHODS = ("spawn", "forkserver")
EXECUTORS = ("local", "spark")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("human", "json")
SUMMARIES = ("short", "full")  # end-of-run table: totals, failed and slowest slices, or all
SPARK_MASTERS = ("local", "yarn", "spark://", "k8s://")  # how a Spark master URL starts
# How a boolean is written where only text exists (HBASE2ES_QUIET=off), case-insensitive.
# Deliberately fewer than click's list: "t", "n" or "" are more likely typos than answers.
BOOLEAN_WORDS = {"true": True, "1": True, "yes": True, "on": True,
                 "false": False, "0": False, "no": False, "off": False}


@dataclass(frozen=True)
class HBaseSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_HBASE_PORT
    table: str = ""
    transport: str = "buffered"
    protocol: str = "binary"
    timeout_ms: int = 60_000
    batch_size: int = 1000  # scanner caching: rows per Thrift round trip
    # What the server at host:port speaks: HBase's Thrift1 server (happybase) or its
    # Thrift2 server, which applies both bounds of a cell-time slice on the server.
    api: str = "thrift1"
    # Rows per second all readers of the run may take from the scans together (None: no
    # limit), in case the region servers are the fragile side.
    max_rows_per_second: float | None = None
    # Secured servers. "kerberos": SASL GSSAPI on the socket, SPNEGO over HTTP.
    auth: str = "none"
    # The server's Kerberos service: a primary ("" = hbase on a socket, HTTP over HTTP,
    # with [hbase] host or the url's host) or a whole principal ("hbase/node1@REALM").
    principal: str = ""
    qop: str = "auth-conf"  # the SASL layer; must be the server's hbase.thrift.security.qop
    keytab: str | None = None  # without it: the ticket cache kinit filled (KRB5CCNAME)
    client_principal: str | None = None  # default: the keytab's first / the cache's
    url: str | None = None  # transport = "http": "https://host:port/"
    ca_certs: str | None = None  # CA file for the HTTPS server's certificate
    verify_certs: bool = True
    do_as: str | None = None  # HTTP only: act as this user (server's proxyuser rules)


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
    # Used by --create-index for indices that do not exist yet (the bodies of
    # PUT /<index>: "settings" and "mappings"). mappings_file is a JSON file with the
    # mappings (or {"mappings": ...}); load_settings reads it into mappings.
    index_settings: dict = field(default_factory=dict)
    mappings: dict = field(default_factory=dict)
    mappings_file: str | None = None


@dataclass(frozen=True)
class RowKeySettings:
    """``[window.rowkey]``: row keys laid out as prefix + salt + separator + time + rest."""

    encoding: str = "epoch_ms_be"  # or epoch_s_be, epoch_ms_text, epoch_s_text, strftime:<pattern>
    width: int = 0  # bytes/digits of the time; 0 = the encoding's default
    prefix: str = ""  # constant bytes before the salt: UTF-8 text, or "hex:0a0b"
    reversed: bool = False  # Long.MAX_VALUE - time (Integer.MAX_VALUE for 4-byte seconds)
    salt_buckets: int = 0  # 0 = no salt
    salt_format: str = "byte"  # one byte 0..N-1, or "decimal": zero-padded digits
    salt_separator: str = ""  # bytes between salt and time: text or "hex:..."


@dataclass(frozen=True)
class ColumnSettings:
    """``[window.column]``: the row time is the newest value of one column."""

    column: str = ""  # "family:qualifier"
    encoding: str = "epoch_ms_be"
    width: int = 0
    reversed: bool = False


@dataclass(frozen=True)
class WindowSettings:
    start: str | None = None
    end: str | None = None
    slice: str = "1h"
    tz: str = "UTC"
    time_source: str = "cell"
    rowkey: RowKeySettings = field(default_factory=RowKeySettings)
    column: ColumnSettings = field(default_factory=ColumnSettings)


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
    # With incremental: also export again the done slices ending this long before the
    # watermark, for rows written late with an older time ("30s", "10m"); None = none.
    lookback: str | None = None
    grace_seconds: float = 30.0  # after Ctrl-C/SIGTERM, how long running slices may finish
    create_index: bool = False  # create missing indices with index_settings and mappings
    bulk_load: bool = False  # no refresh, no replicas while the run writes; restored after
    executor: str = "local"  # where slices run: our own process pool, or "spark"
    # One task per table region a slice touches; None = on for the rowkey source only.
    split_by_region: bool | None = None
    refresh: bool = True  # refresh the indices written to when the export ends
    # Documents and bulk bytes per second sent by all workers together (None: no limit).
    max_docs_per_second: float | None = None
    max_bytes_per_second: float | None = None
    # Fewer concurrent bulks when Elasticsearch answers 429 or slows down (AIMD).
    adaptive: bool = True
    metrics_file: str | None = None  # Prometheus text format, for node_exporter's textfile
    metrics_interval: float = 15.0  # seconds between metrics file writes while running
    job: str = ""  # the metrics' job label; "" = the index name
    log_format: str = "human"
    summary: str = "short"


@dataclass(frozen=True)
class SparkSettings:
    """``[spark]``: where ``run.executor = "spark"`` runs the slices."""

    # "" = the master spark-submit was given, else local[*]; "local[N,F]" retries a
    # failed task F-1 times, on a cluster spark.task.maxFailures does.
    master: str = ""
    conf: dict = field(default_factory=dict)  # spark.* key -> value, as --conf of spark-submit
    app_name: str = "hbase2es"


@dataclass(frozen=True)
class Settings:
    """Everything a run needs; picklable, so workers receive it whole."""

    hbase: HBaseSettings = field(default_factory=HBaseSettings)
    elasticsearch: ElasticsearchSettings = field(default_factory=ElasticsearchSettings)
    window: WindowSettings = field(default_factory=WindowSettings)
    mapping: Mapping = field(default_factory=Mapping)
    # [mapping] delete_when: rows that become delete actions (hbase2es.deletes).
    delete_when: DeleteRule | None = None
    run: RunSettings = field(default_factory=RunSettings)
    spark: SparkSettings = field(default_factory=SparkSettings)
    # Resolved once in the parent so that "now-5m" means the same instant in every worker.
    start_ms: int = 0
    end_ms: int = 0
    slice_ms: int = 3_600_000
    lookback_ms: int = 0  # run.lookback in ms; 0 = no lookback

    @property
    def tzinfo(self):
        return parse_tz(self.window.tz)


SECTIONS = {
    "hbase": HBaseSettings,
    "elasticsearch": ElasticsearchSettings,
    "window": WindowSettings,
    "run": RunSettings,
    "spark": SparkSettings,
}
SUBSECTIONS = {"window.rowkey": RowKeySettings, "window.column": ColumnSettings}
CHOICES = {
    "hbase.transport": TRANSPORTS,
    "hbase.protocol": PROTOCOLS,
    "hbase.api": HBASE_APIS,
    "hbase.auth": HBASE_AUTHS,
    "hbase.qop": QOPS,
    "window.time_source": TIME_SOURCES,
    "window.rowkey.salt_format": SALT_FORMATS,
    "run.start_method": START_METHODS,
    "run.executor": EXECUTORS,
    "run.log_level": LOG_LEVELS,
    "run.log_format": LOG_FORMATS,
    "run.summary": SUMMARIES,
}
POSITIVE = {"hbase.port", "hbase.timeout_ms", "hbase.batch_size", "elasticsearch.bulk_docs",
            "elasticsearch.bulk_bytes", "elasticsearch.request_timeout", "run.workers",
            "run.max_attempts", "elasticsearch.retry_seconds", "run.grace_seconds",
            "run.max_docs_per_second", "run.max_bytes_per_second", "hbase.max_rows_per_second",
            "run.metrics_interval"}


def parse_bool(text: str) -> bool:
    """``true/1/yes/on`` -> True, ``false/0/no/off`` -> False (any case); ValueError otherwise."""
    try:
        return BOOLEAN_WORDS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"{text!r} is not a boolean: use true/false, 1/0, yes/no or "
                         f"on/off") from None


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
    check_hbase(settings.hbase)
    return _resolve(settings, now_ms, need_window)


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
    try:
        # Checked here so a bad name fails before any server is contacted, not in the workers.
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
