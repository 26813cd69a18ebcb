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

from . import __version__
from .errors import ConfigError, ExitCode, Hbase2esError
from .run.report import setup_logging, summary_table, write_json
from .settings import Settings, load_settings

log = logging.getLogger("hbase2es")


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


# Options shared by every command that selects a table, an index and a window.
SELECTION_OPTIONS = [
    click.option("--config", "config", type=click.Path(dir_okay=False), envvar=_env("config"),
                 help="TOML config file (flags and HBASE2ES_* env vars override it)."),
    click.option("--hbase", callback=_hbase_address, envvar=_env("hbase"), metavar="HOST:PORT",
                 help="HBase Thrift1 server."),
    click.option("--table", envvar=_env("table"), help="HBase table to export."),
    click.option("--es", "es_hosts", multiple=True, envvar=_env("es"), metavar="URL",
                 help="Elasticsearch URL; repeat for several nodes."),
    click.option("--index", envvar=_env("index"), metavar="TEMPLATE",
                 help="Index name or template such as 'events-{time:%Y.%m.%d}'."),
    click.option("--start", envvar=_env("start"), metavar="TIME",
                 help="Window start (inclusive): ISO-8601, date, epoch ms or now-2h."),
    click.option("--end", envvar=_env("end"), metavar="TIME",
                 help="Window end (exclusive): same forms as --start."),
    click.option("--slice", "slice_", envvar=_env("slice"), metavar="DURATION",
                 help="Slice length such as 15m, 1h, 1d."),
    click.option("--tz", envvar=_env("tz"), metavar="ZONE",
                 help="Zone for dates without offset and for index names (default UTC)."),
    click.option("--log-level", envvar=_env("log_level"),
                 type=click.Choice(["debug", "info", "warning", "error"]),
                 help="Log verbosity; debug also shows tracebacks."),
]


SPLIT_BY_REGION = click.option(
    "--split-by-region/--no-split-by-region", "split_by_region", default=None,
    envvar=_env("split_by_region"),
    help="Run each slice as one task per table region it touches, so several workers share "
         "a big slice (default: on for time_source = rowkey, off otherwise).")


def selection_options(fn):
    for option in reversed(SELECTION_OPTIONS):
        fn = option(fn)
    return fn


def build_settings(params: dict, *, need_window: bool = True) -> Settings:
    """Flags and env (already merged by click) over the config file over defaults."""
    hbase = params.get("hbase")
    overrides = {
        "hbase.host": hbase[0] if hbase else None,
        "hbase.port": hbase[1] if hbase else None,
        "hbase.table": params.get("table"),
        "elasticsearch.hosts": list(params["es_hosts"]) if params.get("es_hosts") else None,
        "elasticsearch.index": params.get("index"),
        "window.start": params.get("start"),
        "window.end": params.get("end"),
        "window.slice": params.get("slice_"),
        "window.tz": params.get("tz"),
        "run.log_level": params.get("log_level"),
        "run.workers": params.get("workers"),
        "run.report": params.get("report"),
        "run.quiet": params.get("quiet") or None,
        "run.dead_letter": params.get("dead_letter"),
        "run.max_errors": params.get("max_errors"),
        "run.ledger": params.get("ledger"),
        "run.resume": params.get("resume") or None,
        "run.incremental": params.get("incremental") or None,
        "run.create_index": params.get("create_index") or None,
        "run.bulk_load": params.get("bulk_load") or None,
        "run.split_by_region": params.get("split_by_region"),
        "run.executor": params.get("executor"),
        "spark.master": params.get("spark_master"),
        "spark.conf": params.get("spark_conf"),
    }
    settings = load_settings(params.get("config"), overrides, now_ms=int(time.time() * 1000),
                             need_window=need_window)
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
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Hbase2esError as exc:
            _fail(ctx, str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail(ctx, "interrupted", ExitCode.INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - the one place that maps everything
            code, message = _classify(exc)
            _fail(ctx, message, code)


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
@click.option("--workers", type=click.IntRange(min=1), envvar=_env("workers"),
              help="Worker processes, each with its own HBase and Elasticsearch connection.")
@click.option("--report", type=click.Path(dir_okay=False), envvar=_env("report"),
              help="Write a JSON report of every slice and the totals to this file.")
@click.option("--dead-letter", type=click.Path(dir_okay=False), envvar=_env("dead_letter"),
              help="Append rows that could not be indexed to this NDJSON file.")
@click.option("--max-errors", type=click.IntRange(min=0), envvar=_env("max_errors"),
              help="Failed documents tolerated before the exit code is 1 (default 0).")
@click.option("--quiet", is_flag=True, default=None, envvar=_env("quiet"),
              help="No progress bar: one log line per finished slice.")
@click.option("--ledger", type=click.Path(dir_okay=False), envvar=_env("ledger"),
              help="SQLite file recording every slice of this job (for --resume, --incremental).")
@click.option("--resume", is_flag=True, default=None, envvar=_env("resume"),
              help="Skip slices the ledger has as done.")
@click.option("--incremental", is_flag=True, default=None, envvar=_env("incremental"),
              help="Start at the ledger's watermark: export only what is new (for cron).")
@click.option("--create-index", is_flag=True, default=None, envvar=_env("create_index"),
              help="Create missing indices with [elasticsearch] index_settings and mappings; "
                   "stop before writing when an existing index's mapping conflicts.")
@click.option("--bulk-load", is_flag=True, default=None, envvar=_env("bulk_load"),
              help="No refresh and no replicas while writing; the previous settings are put "
                   "back when the run ends, also after a failure or Ctrl-C.")
@SPLIT_BY_REGION
@click.option("--executor", type=click.Choice(["local", "spark"]), envvar=_env("executor"),
              help="Where slices run: our own worker processes (local, the default) or Spark "
                   "tasks (needs pip install 'hbase2es[spark]').")
@click.option("--spark-master", envvar=_env("spark_master"), metavar="URL",
              help="Spark master for --executor spark: local[N], local[N,MAX_FAILURES], yarn, "
                   "spark://HOST:PORT, k8s://... (default: spark-submit's, else local[*]).")
@click.option("--spark-conf", multiple=True, callback=_spark_conf_pairs,
              envvar=_env("spark_conf"), metavar="KEY=VALUE",
              help="A Spark property for --executor spark, e.g. spark.executor.memory=2g; "
                   "repeat for several.")
def export(**params):
    """Export the rows of a time window from HBase into Elasticsearch."""
    from .run.export import run_export

    settings = build_settings(params)
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
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--sample", type=click.IntRange(min=1), metavar="N",
              help="Also print N documents built from the first non-empty slice.")
@SPLIT_BY_REGION
def plan(as_json: bool, sample: int | None, **params):
    """Show the slices and index names of a window without writing anything."""
    from .hbase.regions import table_regions
    from .run.plan import describe_plan
    from .run.preview import render_plan, sample_documents

    settings = build_settings(params)
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
@click.option("--workers", type=click.IntRange(min=1), envvar=_env("workers"),
              help="Worker processes, each with its own HBase and Elasticsearch connection.")
@click.option("--sample", type=click.IntRange(min=1), metavar="N",
              help="Check a random sample of N rows per slice instead of every row.")
@click.option("--compare-fields", is_flag=True,
              help="Also rebuild each checked row's document and compare it field by field "
                   "with the stored _source (reads whole rows).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--report", type=click.Path(dir_okay=False), envvar=_env("report"),
              help="Write the result as JSON to this file.")
def verify(sample: int | None, compare_fields: bool, as_json: bool, **params):
    """Check that every row of the window has its document in Elasticsearch (exit 1 if not)."""
    from .run.verify import problem_summary, render_verify, run_verify

    settings = build_settings(params)
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
@click.option("--ledger", type=click.Path(dir_okay=False, exists=True), required=True,
              envvar=_env("ledger"), help="The ledger file of a job.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
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
