"""The command line: a thin layer that builds Settings, runs a task and returns an exit code.

Every error becomes an exit code in one place, ``Hbase2esGroup.invoke``: one line on
stderr, no traceback (``--log-level debug`` shows one).
"""

from __future__ import annotations

import logging
import signal
import sys
import traceback

import click
import orjson
from click.core import ParameterSource

from . import __version__
from .errors import ConfigError, ExitCode, Hbase2esError
from .run.logformat import error_line
from .run.logformat import reset as reset_log_format
from .run.report import setup_logging, summary_table, write_json
from .settings import EXECUTORS, SUMMARIES
from .signals import STOP_SIGNALS
# SETTING_OF is re-exported: the precedence meta-tests read it from here.
from .options import (AS_JSON, INCREMENTAL, LEDGER, LOOKBACK, ONE_PASS,  # noqa: F401
                      REPORT, SETTING_OF, SPLIT_BY_REGION, THRIFT2, WORKERS, build_settings,
                      check_output_dirs, env_name, hbase_address, selection_options, setting_option, spark_conf_pairs,
                      switch_option)

log = logging.getLogger("hbase2es")

class Hbase2esGroup(click.Group):
    """Turns every error into one line on stderr and an exit code."""

    def invoke(self, ctx):
        reset_log_format()  # an error before the settings exist: human, secrets scrubbed
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
    click.echo(error_line(message, int(code)), err=True)  # secrets scrubbed, in the log format
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
@setting_option("run.dead_letter", "--dead-letter", name="dead_letter",
          type=click.Path(dir_okay=False),
          help="Append rows that could not be indexed to this NDJSON file.")
@setting_option("run.max_errors", "--max-errors", name="max_errors", type=click.IntRange(min=0),
          help="Failed documents tolerated before the exit code is 1 (default 0).")
@switch_option("quiet", "No progress bar: one log line per finished slice.")
@LEDGER
@switch_option("resume", "Skip slices the ledger has as done.")
@INCREMENTAL
@LOOKBACK
@switch_option("create_index",
         "Create missing indices with [elasticsearch] index_settings and mappings; "
         "stop before writing when an existing index's mapping conflicts.")
@switch_option("bulk_load",
         "No refresh and no replicas while writing; the previous settings are put "
         "back when the run ends, also after a failure or Ctrl-C.")
@SPLIT_BY_REGION
@ONE_PASS
@THRIFT2
@switch_option("refresh",
         "Refresh the indices written to when the export ends, so its documents are "
         "searchable at once (default: on; --bulk-load refreshes anyway).")
@setting_option("run.executor", "--executor", name="executor", type=click.Choice(EXECUTORS),
          help="Where slices run: our own worker processes (local, the default) or Spark "
               "tasks (needs pip install 'hbase2es[spark]').")
@setting_option("spark.master", "--spark-master", name="spark_master", metavar="URL",
          help="Spark master for --executor spark: local[N], local[N,MAX_FAILURES], yarn, "
               "spark://HOST:PORT, k8s://... (default: spark-submit's, else local[*]).")
@setting_option("spark.conf", "--spark-conf", name="spark_conf", multiple=True,
          callback=spark_conf_pairs, metavar="KEY=VALUE",
          help="A Spark property for --executor spark, e.g. spark.executor.memory=2g; "
               "repeat for several.")
@setting_option("run.max_docs_per_second", "--max-docs-per-second", name="max_docs_per_second",
          metavar="N", help="Documents per second for the whole run, all workers together "
                            "(--executor spark: each task gets its share).")
@setting_option("run.max_bytes_per_second", "--max-bytes-per-second", name="max_bytes_per_second",
          metavar="N", help="Bulk request bytes per second for the whole run, all workers "
                            "together.")
@setting_option("hbase.max_rows_per_second", "--max-rows-per-second", name="max_rows_per_second",
          metavar="N", help="Rows per second the HBase scans of the whole run may return, "
                            "all workers together.")
@switch_option("adaptive", "Fewer concurrent bulks while Elasticsearch answers 429 or slows down, "
                     "more again when it recovers (default: on).")
@setting_option("run.metrics_file", "--metrics-file", name="metrics_file",
          type=click.Path(dir_okay=False), metavar="PATH",
          help="Write the run's metrics in Prometheus text format to this file (for "
               "node_exporter's textfile collector), while running and at the end.")
@setting_option("run.metrics_interval", "--metrics-interval", name="metrics_interval",
          metavar="SECONDS", help="Seconds between metrics file writes while running "
                                  "(default 15).")
@setting_option("run.summary", "--summary", name="summary", type=click.Choice(SUMMARIES),
          help="End-of-run table: short (totals, failed and slowest slices; the default) or "
               "full (every slice).")
@setting_option("run.alias", "--alias", name="alias", metavar="NAME",
          help="After a run with no failed slice (and a passed --verify), point alias NAME "
               "at the run's indices and away from its previous ones, in one atomic request; "
               "the report records the previous ones for 'hbase2es alias --rollback'.")
@switch_option("verify", "Verify the window after the export (as 'hbase2es verify' does); "
                         "a failed verify is exit 1 and leaves --alias untouched.")
@switch_option("allow_duplicates",
         "Let slices the ledger has as done run again into a data stream, which takes no "
         "external version: after a rollover their rows are duplicated.")
def export(**params):
    """Export the rows of a time window from HBase into Elasticsearch."""
    from .run.export import run_export
    from .run.stopping import command_stop

    settings = build_settings(click.get_current_context())
    check_output_dirs(settings)
    if settings.run.executor == "spark":  # missing pyspark: exit 2 before any server is asked
        from .run.spark import require_pyspark

        require_pyspark()
    # One signal handler from before the run until the report is written: a late Ctrl-C
    # or SIGTERM is only logged, it cannot lose the report or turn exit 130 into 143.
    with command_stop() as stop:
        report = run_export(settings, stop)
        if settings.run.report:  # first: a stdout nobody reads must not hold the report back
            write_json(settings.run.report, report.to_dict())
        click.echo(summary_table(report, full=settings.run.summary == "full"))
        if report.exit_code == ExitCode.INTERRUPTED:
            click.echo("hbase2es: interrupted; running slices were finished or stopped",
                       err=True)
    sys.exit(int(report.exit_code))


@cli.command()
@selection_options
@AS_JSON
# --sample of plan and of verify share a name, not a meaning: documents vs. rows per slice.
@click.option("--sample", type=click.IntRange(min=1), metavar="N",
              help="Also print N documents built from the first non-empty slice, each as "
                   "the bulk request sends it: its action line (_index, _id, version) and "
                   "the document as indented JSON. Values over 200 characters are cut in "
                   "the text (it says so); with --json they are whole.")
@SPLIT_BY_REGION
@ONE_PASS
@THRIFT2
@LEDGER
@INCREMENTAL
@LOOKBACK
def plan(as_json: bool, sample: int | None, **params):
    """Show the slices and index names of a window without writing anything.

    With --incremental, the slices of the next incremental run: the ledger (read, never
    written) gives the watermark and the done slices --lookback exports again.
    """
    from .hbase.regions import table_regions
    from .run.ledger import read_job_ledger
    from .run.plan import check_ledger_flags, describe_plan, plan_warnings
    from .run.preview import render_plan, sample_documents, sample_warnings

    settings = build_settings(click.get_current_context())
    check_ledger_flags(settings)
    # Region pieces need the table's regions. Only an explicit --split-by-region (or
    # [run] split_by_region = true) asks HBase for them, so a plain plan stays offline.
    regions = table_regions(settings.hbase) if settings.run.split_by_region else None
    with read_job_ledger(settings) as ledger:
        data = describe_plan(settings, regions, ledger)
    warnings = plan_warnings(settings)
    if sample:
        data["sample"] = sample_documents(settings, sample)
        documents = [doc["document"] for doc in data["sample"]]
        warnings += sample_warnings(documents)
        from .search.indexsetup import warn_field_count  # fields of the sample vs. the field limit

        warn_field_count(settings, documents)
    for warning in warnings:  # on stderr, and in --json's "warnings"
        log.warning(warning)
    data["warnings"] = warnings
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
@click.option("--repair", is_flag=True,
              help="With --compare-fields: rewrite every differing document from its row, "
                   "with a version that wins now and loses to later changes (also documents "
                   "an export can never fix: a column deleted in HBase, an edit in ES).")
@AS_JSON
@REPORT
def verify(sample: int | None, compare_fields: bool, repair: bool, as_json: bool, **params):
    """Check that every row of the window has its document in Elasticsearch (exit 1 if not)."""
    from .run.stopping import command_stop
    from .run.verify import problem_summary, render_verify, run_verify

    if repair and not compare_fields:
        raise ConfigError("--repair needs --compare-fields: only a compared document is known "
                          "to differ from its row")
    settings = build_settings(click.get_current_context())
    check_output_dirs(settings)
    with command_stop() as stop:  # as in export: signals cannot stop the report being written
        data = run_verify(settings, sample=sample, compare_fields=compare_fields,
                          repair=repair, stop=stop).to_dict()
        summary = problem_summary(data) if data["exit_code"] == ExitCode.FAILED else ""
        _finish_check(settings, data, as_json, render_verify, summary, "checked")


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
@setting_option("run.dead_letter", "--dead-letter", name="dead_letter",
          type=click.Path(dir_okay=False),
          help="Append the documents Elasticsearch refused to delete to this NDJSON file "
               "(stage \"delete\").")
@setting_option("run.max_errors", "--max-errors", name="max_errors", type=click.IntRange(min=0),
          help="Refused deletes tolerated before the exit code is 1 (default 0).")
@setting_option("run.ledger", "--ledger", name="ledger", type=click.Path(dir_okay=False),
          help="The job's ledger: held for the run, so reconcile and export of one job never "
               "overlap (exit 75 while the other runs).")
@switch_option("quiet", "No progress bar.")
@AS_JSON
def reconcile(apply: bool, sample: int | None, as_json: bool, **params):
    """Find the documents of the window whose row is gone from HBase (exit 1 if any);
    with --apply, delete them."""
    from .run.reconcile import problem_summary, render_reconcile, run_reconcile
    from .run.stopping import command_stop

    settings = build_settings(click.get_current_context())
    check_output_dirs(settings)
    with command_stop() as stop:
        data = run_reconcile(settings, apply=apply, sample=sample, stop=stop).to_dict()
        _finish_check(settings, data, as_json, render_reconcile, problem_summary(data),
                      "reconciled")


def _finish_check(settings, data: dict, as_json: bool, render, summary: str,
                  done: str) -> None:
    """What verify and reconcile print and write at the end, and their exit."""
    if settings.run.report:
        write_json(settings.run.report, data)
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        if summary:  # stdout is the JSON's: the problem goes to stderr in one line
            click.echo(f"hbase2es: {summary}", err=True)
    else:
        click.echo(render(data))
    if data["interrupted"]:
        click.echo(f"hbase2es: interrupted; the result covers the slices {done} so far",
                   err=True)
    sys.exit(int(data["exit_code"]))


@cli.command()
# Not the export's --ledger: status reads an existing file and sets no Settings key.
@click.option("--ledger", type=click.Path(dir_okay=False, exists=True), required=True,
              envvar=env_name("ledger"), help="The ledger file of a job.")
@AS_JSON
def status(ledger: str, as_json: bool):
    """Show what a job's ledger holds: done, failed and pending slices, the watermark and
    the lookback of the last incremental run."""
    from .run.status import ledger_status, render_status

    data = ledger_status(ledger)
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() if as_json
               else render_status(data))


@cli.command("alias")
@click.option("--config", "config", type=click.Path(dir_okay=False), envvar=env_name("config"),
              help="TOML config file naming the cluster ([elasticsearch] hosts).")
@setting_option("elasticsearch.hosts", "--es", name="es_hosts", envvar=env_name("es"),
                multiple=True, metavar="URL", help="Elasticsearch URL; repeat for several nodes.")
@click.option("--report", "run_report", required=True, type=click.Path(dir_okay=False, exists=True),
              help="The JSON report of the export whose cut-over to undo.")
@click.option("--rollback", is_flag=True, required=True,
              help="Point the alias back at the indices it pointed at before that export.")
def alias_command(run_report: str, rollback: bool, **params):
    """Undo the alias cut-over of an export (--alias), from its JSON report."""
    from .run.cutover import rollback as roll_back
    from .run.report import read_json

    settings = build_settings(click.get_current_context(), need_window=False, need_job=False)
    done = roll_back(settings, read_json(run_report))
    click.echo(f"alias {done['name']}: points at {', '.join(done['restored']) or 'nothing'} "
               f"again (was {', '.join(done['removed'])})")


@cli.command()
@click.option("--hbase", "hbase", required=True, callback=hbase_address, metavar="HOST:PORT",
              envvar=env_name("hbase"), help="HBase Thrift1 server.")
@click.option("--table", required=True, envvar=env_name("table"), help="HBase table to sample.")
@click.option("--es", "es_hosts", multiple=True, metavar="URL", envvar=env_name("es"),
              help="Elasticsearch URL (repeat for several nodes); also writes the mappings "
                   "for --create-index.")
@click.option("--sample", type=click.IntRange(min=1), default=1_000, show_default=True,
              metavar="N", help="Rows to sample, spread over the table's regions.")
@click.option("-o", "--output", default="job.toml", show_default=True,
              type=click.Path(dir_okay=False), help="The job file to write.")
@click.option("--force", is_flag=True, help="Write over an existing job file.")
def init(hbase, table: str, es_hosts: tuple[str, ...], sample: int, output: str, force: bool):
    """Sample a table and write a commented job file (columns, types, window) for export."""
    from .run.init import run_init
    from .settings import HBaseSettings

    setup_logging("warning")
    host, port = hbase
    click.echo(run_init(HBaseSettings(host=host, port=port, table=table), es_hosts or None,
                        sample, output, force))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="hbase2es")
    finally:
        # The command is over, its report written: a Ctrl-C or SIGTERM while the process
        # exits must not turn the exit code into the signal's (130 into 143, or -2).
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


__all__ = ["cli", "main", "ConfigError", "SETTING_OF"]
