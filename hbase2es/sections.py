"""The shape of the settings: one frozen dataclass per TOML section, the allowed choices
and the keys that must be positive. Only data lives here; reading, coercing and checking
the values is hbase2es.settings' job, so each can grow without crowding the other."""

from __future__ import annotations

from dataclasses import dataclass, field

from .deletes import DeleteRule
from .mapping import Mapping
from .timesource import SALT_FORMATS
from .timewindow import parse_tz

DEFAULT_HBASE_PORT = 9090
DEFAULT_ES_URL = "http://127.0.0.1:9200"
TRANSPORTS = ("buffered", "framed", "http")
HBASE_AUTHS = ("none", "kerberos")
QOPS = ("auth", "auth-int", "auth-conf")  # SASL: authentication only, + integrity, + privacy
PROTOCOLS = ("binary", "compact")
HBASE_APIS = ("auto", "thrift1", "thrift2")
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
    # "auto": Thrift1 at host:port, and cell-time slices through the Thrift2 server at
    # ``thrift2`` when it is set and answers (hbase.choose_api).
    api: str = "auto"
    thrift2: str = ""  # "host:port" of a Thrift2 server beside the Thrift1 one (same auth)
    # Scans that read a whole slice ask the region servers not to keep its blocks in their
    # block cache, which online readers need more than a one-time export does.
    cache_blocks: bool = False
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
    # Issue 17, per document (hbase2es.docaddress): routing is { column = "f:q" },
    # { rowkey_prefix_bytes = N } or { template = "..." }, sent with every index, delete and
    # mget; pipeline names the ingest pipeline every indexed document goes through.
    routing: dict = field(default_factory=dict)
    pipeline: str | None = None


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
    # Cell time over Thrift1: a task reads its key range once for a run of consecutive
    # slices instead of once per slice (run.onepass); false = once per slice.
    one_pass: bool = True
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
    # Alias cut-over (run.cutover): after a run without failed slices (and a passed
    # --verify), point this alias at the run's indices, away from its previous ones.
    alias: str | None = None
    verify: bool = False  # verify the window after the export, before any cut-over
    # Data streams take no external version: let a done slice run into one again anyway.
    allow_duplicates: bool = False


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
    # Found by the export's preflight (run.datastream), not set by the user: the index
    # names are data streams, written with op_type create and no version.
    data_stream: bool = False

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
