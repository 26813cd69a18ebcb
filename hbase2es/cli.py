"""The command line: a thin layer that builds Settings, runs a task and returns an exit code.

Every error becomes an exit code in one place, ``Hbase2esGroup.invoke``: one line on
stderr, no traceback (``--log-level debug`` shows one).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback

import click
import orjson
from click.core import ParameterSource

from . import __version__
from .errors import ConfigError, ExitCode, Hbase2esError
from .run.report import setup_logging, summary_table, write_json
from .settings import EXECUTORS, LOG_LEVELS, Settings, load_settings, parse_bool

log = logging.getLogger("hbase2es")

# Sources that mean "the user said so": only these reach Settings, so a click default can
# never hide the TOML file, and an explicit false or 0 is not mistaken for "not given".
GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)

# Parameter name -> the Settings key (or keys, for a value click splits) it sets.
# Filled by _setting() as the options are declared, so the two cannot drift apart.
SETTING_OF: dict[str, str | tuple[str, ...]] = {}


def _env(name: str) -> str:
    return f"HBASE2ES_{name.upper()}"


def _hbase_address(ctx, param, value):
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def _spark_conf_pairs(ctx, param, values):
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


def _setting(key: str | tuple[str, ...], *decls: str, name: str, **attrs):
    """An option that sets Settings ``key``, also from HBASE2ES_<NAME>; no click default."""
    SETTING_OF[name] = key
    attrs.setdefault("envvar", _env(name))
    return click.option(*decls, name, default=None, **attrs)


def _switch(name: str, help: str):
    """A boolean setting ``run.<name>`` as ``--x/--no-x``, so the flag or env can say no."""
    flag = name.replace("_", "-")
    return _setting(f"run.{name}", f"--{flag}/--no-{flag}", name=name, type=Switch(), help=help)


def _options(*options):
    """Several options as one decorator, listed in --help in the order given."""
    def apply(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn
    return apply


# Options shared by every command that selects a table, an index and a window.
selection_options = _options(
    click.option("--config", "config", type=click.Path(dir_okay=False), envvar=_env("config"),
                 help="TOML config file (flags and HBASE2ES_* env vars override it)."),
    _setting(("hbase.host", "hbase.port"), "--hbase", name="hbase", callback=_hbase_address,
             metavar="HOST:PORT", help="HBase Thrift1 server."),
    _setting("hbase.table", "--table", name="table", help="HBase table to export."),
    _setting("elasticsearch.hosts", "--es", name="es_hosts", envvar=_env("es"), multiple=True,
             metavar="URL", help="Elasticsearch URL; repeat for several nodes."),
    _setting("elasticsearch.index", "--index", name="index", metavar="TEMPLATE",
             help="Index name or template such as 'events-{time:%Y.%m.%d}'."),
    _setting("window.start", "--start", name="start", metavar="TIME",
             help="Window start (inclusive): ISO-8601, date, epoch ms or now-2h."),
    _setting("window.end", "--end", name="end", metavar="TIME",
             help="Window end (exclusive): same forms as --start."),
    _setting("window.slice", "--slice", name="slice_", envvar=_env("slice"), metavar="DURATION",
             help="Slice length such as 15m, 1h, 1d."),
    _setting("window.tz", "--tz", name="tz", metavar="ZONE",
             help="Zone for dates without offset and for index names (default UTC)."),
    _setting("run.log_level", "--log-level", name="log_level", type=click.Choice(LOG_LEVELS),
             help="Log verbosity; debug also shows tracebacks."),
)

# Options of more than one command, declared once.
WORKERS = _setting("run.workers", "--workers", name="workers", type=click.IntRange(min=1),
                   help="Worker processes, each with its own HBase and Elasticsearch connection.")
REPORT = _setting("run.report", "--report", name="report", type=click.Path(dir_okay=False),
                  help="Write the result as a JSON report (every slice and the totals) to "
                       "this file.")
AS_JSON = click.option("--json", "as_json", is_flag=True,
                       help="Print the result as JSON instead of text.")
SPLIT_BY_REGION = _switch(
    "split_by_region",
    "Run each slice as one task per table region it touches, so several workers share "
    "a big slice (default: on for time_source = rowkey, off otherwise).")


def build_settings(ctx: click.Context, *, need_window: bool = True) -> Settings:
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
                             now_ms=int(time.time() * 1000), need_window=need_window)
    setup_logging(settings.run.log_level)
    return settings


def _check_output_dirs(settings: Settings) -> None:
    """A report or dead-letter file in a missing directory fails now, not after the export."""
    for key, path in (("run.report", settings.run.report),
                      ("run.dead_letter", settings.run.dead_letter),
                      ("run.ledger", settings.run.ledger)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise ConfigError(f"{key}: directory of {path!r} does not exist")


class Hbase2esGroup(click.Group):
    """Turns every error into one line on stderr and an exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.BadParameter as exc:
            envvar = _from_environment(exc)
            if envvar is None:  # a bad flag: click's usage text shows the command's form
                raise
            flags = "/".join([*exc.param.opts, *exc.param.secondary_opts])
            _fail(ctx, f"{envvar} (for {flags}): {exc.message.rstrip('.')}", ExitCode.USAGE)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Hbase2esError as exc:
            _fail(ctx, str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail(ctx, "interrupted", ExitCode.INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - the one place that maps everything
            code, message = _classify(exc)
            _fail(ctx, message, code)


def _from_environment(exc: click.BadParameter) -> str | None:
    """The variable a bad value came from, or None when it came from the command line.

    A usage screen would point at a flag the user never typed; one line names the variable.
    """
    param, sub = exc.param, exc.ctx
    if param is None or sub is None or not isinstance(param.envvar, str):
        return None
    if sub.get_parameter_source(param.name) != ParameterSource.ENVIRONMENT:
        return None
    return param.envvar


def _classify(exc: Exception) -> tuple[ExitCode, str]:
    """Third-party errors that reach the top: unreachable servers are exit 3."""
    from .search import engine

    # A local file the user named (report, ledger ...) is not a server: exit 2, not 3.
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError,
                        NotADirectoryError)) and exc.filename:
        return ExitCode.USAGE, f"cannot use file {exc.filename!r}: {exc.strerror}"
    if isinstance(exc, engine.CONNECTION_ERRORS) or isinstance(exc, (ConnectionError, OSError)):
        return ExitCode.UNAVAILABLE, f"server unreachable: {type(exc).__name__}: {exc}"[:500]
    return ExitCode.FAILED, f"unexpected {type(exc).__name__}: {exc} (--log-level debug for details)"


def _fail(ctx, message: str, code: ExitCode):
    if log.isEnabledFor(logging.DEBUG) and sys.exc_info()[0] is not None:
        traceback.print_exc()
    click.echo(f"hbase2es: error: {message}", err=True)
    ctx.exit(int(code))


@click.group(cls=Hbase2esGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                  "max_content_width": 100})
@click.version_option(__version__, prog_name="hbase2es")
def cli():
    """Export HBase rows into Elasticsearch in parallel time slices, exactly once per document."""


@cli.command()
@selection_options
@WORKERS
@REPORT
@_setting("run.dead_letter", "--dead-letter", name="dead_letter",
          type=click.Path(dir_okay=False),
          help="Append rows that could not be indexed to this NDJSON file.")
@_setting("run.max_errors", "--max-errors", name="max_errors", type=click.IntRange(min=0),
          help="Failed documents tolerated before the exit code is 1 (default 0).")
@_switch("quiet", "No progress bar: one log line per finished slice.")
@_setting("run.ledger", "--ledger", name="ledger", type=click.Path(dir_okay=False),
          help="SQLite file recording every slice of this job (for --resume, --incremental).")
@_switch("resume", "Skip slices the ledger has as done.")
@_switch("incremental", "Start at the ledger's watermark: export only what is new (for cron).")
@_switch("create_index",
         "Create missing indices with [elasticsearch] index_settings and mappings; "
         "stop before writing when an existing index's mapping conflicts.")
@_switch("bulk_load",
         "No refresh and no replicas while writing; the previous settings are put "
         "back when the run ends, also after a failure or Ctrl-C.")
@SPLIT_BY_REGION
@_setting("run.executor", "--executor", name="executor", type=click.Choice(EXECUTORS),
          help="Where slices run: our own worker processes (local, the default) or Spark "
               "tasks (needs pip install 'hbase2es[spark]').")
@_setting("spark.master", "--spark-master", name="spark_master", metavar="URL",
          help="Spark master for --executor spark: local[N], local[N,MAX_FAILURES], yarn, "
               "spark://HOST:PORT, k8s://... (default: spark-submit's, else local[*]).")
@_setting("spark.conf", "--spark-conf", name="spark_conf", multiple=True,
          callback=_spark_conf_pairs, metavar="KEY=VALUE",
          help="A Spark property for --executor spark, e.g. spark.executor.memory=2g; "
               "repeat for several.")
def export(**params):
    """Export the rows of a time window from HBase into Elasticsearch."""
    from .run.export import run_export

    settings = build_settings(click.get_current_context())
    _check_output_dirs(settings)
    if settings.run.executor == "spark":  # missing pyspark: exit 2 before any server is asked
        from .run.spark import require_pyspark

        require_pyspark()
    report = run_export(settings)
    click.echo(summary_table(report))
    if settings.run.report:
        write_json(settings.run.report, report.to_dict())
    if report.exit_code == ExitCode.INTERRUPTED:
        click.echo("hbase2es: interrupted; running slices were finished or stopped", err=True)
    sys.exit(int(report.exit_code))


@cli.command()
@selection_options
@AS_JSON
# --sample of plan and of verify share a name, not a meaning: documents vs. rows per slice.
@click.option("--sample", type=click.IntRange(min=1), metavar="N",
              help="Also print N documents built from the first non-empty slice.")
@SPLIT_BY_REGION
def plan(as_json: bool, sample: int | None, **params):
    """Show the slices and index names of a window without writing anything."""
    from .hbase.regions import table_regions
    from .run.plan import describe_plan
    from .run.preview import render_plan, sample_documents

    settings = build_settings(click.get_current_context())
    # Region pieces need the table's regions. Only an explicit --split-by-region (or
    # [run] split_by_region = true) asks HBase for them, so a plain plan stays offline.
    regions = table_regions(settings.hbase) if settings.run.split_by_region else None
    data = describe_plan(settings, regions)
    if sample:
        data["sample"] = sample_documents(settings, sample)
        from .search.indexsetup import warn_field_count  # fields of the sample vs. the field limit

        warn_field_count(settings, [doc["document"] for doc in data["sample"]])
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(render_plan(data))


@cli.command()
@selection_options
@WORKERS
@click.option("--sample", type=click.IntRange(min=1), metavar="N",
              help="Check a random sample of N rows per slice instead of every row.")
@click.option("--compare-fields", is_flag=True,
              help="Also rebuild each checked row's document and compare it field by field "
                   "with the stored _source (reads whole rows).")
@AS_JSON
@REPORT
def verify(sample: int | None, compare_fields: bool, as_json: bool, **params):
    """Check that every row of the window has its document in Elasticsearch (exit 1 if not)."""
    from .run.verify import problem_summary, render_verify, run_verify

    settings = build_settings(click.get_current_context())
    _check_output_dirs(settings)
    data = run_verify(settings, sample=sample, compare_fields=compare_fields).to_dict()
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        if data["exit_code"] == ExitCode.FAILED and problem_summary(data):
            click.echo(f"hbase2es: {problem_summary(data)}", err=True)
    else:
        click.echo(render_verify(data))
    if settings.run.report:
        write_json(settings.run.report, data)
    if data["interrupted"]:
        click.echo("hbase2es: interrupted; the result covers the slices checked so far", err=True)
    sys.exit(int(data["exit_code"]))


@cli.command()
@selection_options
@WORKERS
@click.option("--apply", is_flag=True,
              help="Delete the orphans found (default: a dry run that only counts them). "
                   "A document whose row came back meanwhile is left alone.")
@click.option("--sample", type=click.IntRange(min=1), metavar="N",
              help="Check N random documents per slice instead of every document "
                   "(not with --apply).")
@REPORT
@_setting("run.dead_letter", "--dead-letter", name="dead_letter",
          type=click.Path(dir_okay=False),
          help="Append the documents Elasticsearch refused to delete to this NDJSON file "
               "(stage \"delete\").")
@_setting("run.max_errors", "--max-errors", name="max_errors", type=click.IntRange(min=0),
          help="Refused deletes tolerated before the exit code is 1 (default 0).")
@_setting("run.ledger", "--ledger", name="ledger", type=click.Path(dir_okay=False),
          help="The job's ledger: held for the run, so reconcile and export of one job never "
               "overlap (exit 75 while the other runs).")
@_switch("quiet", "No progress bar.")
@AS_JSON
def reconcile(apply: bool, sample: int | None, as_json: bool, **params):
    """Find the documents of the window whose row is gone from HBase (exit 1 if any);
    with --apply, delete them."""
    from .run.reconcile import problem_summary, render_reconcile, run_reconcile

    settings = build_settings(click.get_current_context())
    _check_output_dirs(settings)
    data = run_reconcile(settings, apply=apply, sample=sample).to_dict()
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        if problem_summary(data):
            click.echo(f"hbase2es: {problem_summary(data)}", err=True)
    else:
        click.echo(render_reconcile(data))
    if settings.run.report:
        write_json(settings.run.report, data)
    if data["interrupted"]:
        click.echo("hbase2es: interrupted; the result covers the slices reconciled so far",
                   err=True)
    sys.exit(int(data["exit_code"]))


@cli.command()
# Not the export's --ledger: status reads an existing file and sets no Settings key.
@click.option("--ledger", type=click.Path(dir_okay=False, exists=True), required=True,
              envvar=_env("ledger"), help="The ledger file of a job.")
@AS_JSON
def status(ledger: str, as_json: bool):
    """Show what a job's ledger holds: done, failed and pending slices, and the watermark."""
    from .run.status import ledger_status, render_status

    data = ledger_status(ledger)
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if as_json
               else render_status(data))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="hbase2es")


__all__ = ["cli", "main", "ConfigError"]
