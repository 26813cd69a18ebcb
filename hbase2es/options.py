"""The command line's options: each declared once, each mapped to its Settings key, and
the one function that turns what the user gave into Settings.

Precedence flag > env > file > default is decided here, from click's parameter source:
only a value that came from the command line or the environment reaches Settings.
"""

from __future__ import annotations

import os
import time

import click
from click.core import ParameterSource

from .errors import ConfigError
from .run.logformat import secrets_of
from .run.report import setup_logging
from .settings import LOG_FORMATS, LOG_LEVELS, Settings, load_settings, parse_bool

# Sources that mean "the user said so": only these reach Settings, so a click default can
# never hide the TOML file, and an explicit false or 0 is not mistaken for "not given".
GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)

# Parameter name -> the Settings key (or keys, for a value click splits) it sets.
# Filled by setting_option() as the options are declared, so the two cannot drift apart.
SETTING_OF: dict[str, str | tuple[str, ...]] = {}


def env_name(name: str) -> str:
    return f"HBASE2ES_{name.upper()}"


def hbase_address(ctx, param, value):
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def spark_conf_pairs(ctx, param, values):
    """``--spark-conf KEY=VALUE`` (repeatable) -> {KEY: VALUE}; None when not given."""
    if not values:
        return None
    conf = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        conf[key.strip()] = value
    return conf


class Switch(click.types.BoolParamType):
    """A ``--x/--no-x`` value: the flags give a bool, HBASE2ES_X one of BOOLEAN_WORDS."""

    def convert(self, value, param, ctx):
        if isinstance(value, bool):
            return value
        try:
            return parse_bool(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def setting_option(key: str | tuple[str, ...], *decls: str, name: str, **attrs):
    """An option that sets Settings ``key``, also from HBASE2ES_<NAME>; no click default."""
    SETTING_OF[name] = key
    attrs.setdefault("envvar", env_name(name))
    return click.option(*decls, name, default=None, **attrs)


def switch_option(name: str, help: str):
    """A boolean setting ``run.<name>`` as ``--x/--no-x``, so the flag or env can say no."""
    flag = name.replace("_", "-")
    return setting_option(f"run.{name}", f"--{flag}/--no-{flag}", name=name, type=Switch(), help=help)


def _options(*options):
    """Several options as one decorator, listed in --help in the order given."""
    def apply(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return apply


# Options shared by every command that selects a table, an index and a window.
selection_options = _options(
    click.option("--config", "config", type=click.Path(dir_okay=False), envvar=env_name("config"),
                 help="TOML config file (flags and HBASE2ES_* env vars override it)."),
    setting_option(("hbase.host", "hbase.port"), "--hbase", name="hbase", callback=hbase_address,
             metavar="HOST:PORT", help="HBase Thrift1 server."),
    setting_option("hbase.table", "--table", name="table", help="HBase table to export."),
    setting_option("elasticsearch.hosts", "--es", name="es_hosts", envvar=env_name("es"), multiple=True,
             metavar="URL", help="Elasticsearch URL; repeat for several nodes."),
    setting_option("elasticsearch.index", "--index", name="index", metavar="TEMPLATE",
             help="Index name or template such as 'events-{time:%Y.%m.%d}'."),
    setting_option("window.start", "--start", name="start", metavar="TIME",
             help="Window start (inclusive): ISO-8601, date, epoch ms or now-2h."),
    setting_option("window.end", "--end", name="end", metavar="TIME",
             help="Window end (exclusive): same forms as --start."),
    setting_option("window.slice", "--slice", name="slice_", envvar=env_name("slice"), metavar="DURATION",
             help="Slice length such as 15m, 1h, 1d."),
    setting_option("window.tz", "--tz", name="tz", metavar="ZONE",
             help="Zone for dates without offset and for index names (default UTC)."),
    setting_option("run.log_level", "--log-level", name="log_level", type=click.Choice(LOG_LEVELS),
             help="Log verbosity; debug also shows tracebacks."),
    setting_option("run.log_format", "--log-format", name="log_format", type=click.Choice(LOG_FORMATS),
             help="Log lines as text (human, the default) or one JSON object per line."),
)

# Options of more than one command, declared once.
WORKERS = setting_option("run.workers", "--workers", name="workers", type=click.IntRange(min=1),
                   help="Worker processes, each with its own HBase and Elasticsearch connection.")
REPORT = setting_option("run.report", "--report", name="report", type=click.Path(dir_okay=False),
                  help="Write the result as a JSON report (every slice and the totals) to "
                       "this file.")
AS_JSON = click.option("--json", "as_json", is_flag=True,
                       help="Print the result as JSON instead of text.")
LEDGER = setting_option("run.ledger", "--ledger", name="ledger", type=click.Path(dir_okay=False),
                  help="SQLite file recording every slice of this job (for --resume, "
                       "--incremental).")
INCREMENTAL = switch_option("incremental", "Start at the ledger's watermark: export only what is "
                                     "new (for cron).")
LOOKBACK = setting_option(
    "run.lookback", "--lookback", name="lookback", metavar="DURATION",
    help="With --incremental, also export again the done slices ending less than DURATION "
         "(e.g. 30s, 10m) before the watermark, for rows written late with an older time.")
SPLIT_BY_REGION = switch_option(
    "split_by_region",
    "Run each slice as one task per table region it touches, so several workers share "
    "a big slice (default: on for time_source = rowkey, off otherwise).")

ONE_PASS = switch_option(
    "one_pass",
    "Cell time over Thrift1: read each key range once for all consecutive slices, not once "
    "per slice (default on).")
THRIFT2 = setting_option(
    "hbase.thrift2", "--thrift2", name="thrift2", metavar="HOST:PORT",
    help="HBase Thrift2 server beside the Thrift1 one: with api = auto, cell-time slices are "
         "read through it, both time bounds on the server.")


def build_settings(ctx: click.Context, *, need_window: bool = True,
                   need_job: bool = True) -> Settings:
    """What the user gave (flag, else env, as click resolved it) over the file over defaults.

    A parameter counts only when its source is the command line or the environment, so
    ``--no-resume`` or ``HBASE2ES_RESUME=false`` beats ``resume = true`` in the file.
    """
    overrides: dict[str, object] = {}
    for name, key in SETTING_OF.items():
        if name not in ctx.params or ctx.get_parameter_source(name) not in GIVEN:
            continue
        value = ctx.params[name]
        if isinstance(key, tuple):  # one flag, several keys: --hbase HOST:PORT
            overrides.update(zip(key, value))
        else:
            overrides[key] = value
    settings = load_settings(ctx.params.get("config"), overrides,
                             now_ms=int(time.time() * 1000), need_window=need_window,
                             need_job=need_job)
    setup_logging(settings.run.log_level, settings.run.log_format,
                  secrets_of(settings.elasticsearch))
    return settings


def check_output_dirs(settings: Settings) -> None:
    """A report or dead-letter file in a missing directory fails now, not after the export."""
    for key, path in (("run.report", settings.run.report),
                      ("run.dead_letter", settings.run.dead_letter),
                      ("run.ledger", settings.run.ledger),
                      ("run.metrics_file", settings.run.metrics_file)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise ConfigError(f"{key}: directory of {path!r} does not exist")
