"""Alias cut-over for migrations: load into fresh indices, then swing an alias to them.

``--alias NAME``: after a run with no failed slice (and, with ``--verify``, once verify
has passed) NAME is pointed at every index the run's window maps to and away from what it
pointed at before, in one ``_aliases`` request, which the engine applies whole or not at
all: a reader of NAME finds the old indices or the new ones, never none. The report
records the previous targets, so ``hbase2es alias --rollback --report run.json`` puts
them back. A run that fails leaves the alias as it was, and says so.
"""

from __future__ import annotations

import logging

from ..errors import ConfigError, ExitCode, Hbase2esError, UnavailableError
from ..search import engine, targets
from ..search.indexsetup import NAMES_PER_REQUEST, index_names
from ..settings import Settings
from .report import RunReport
from .stopping import StopRequest

log = logging.getLogger(__name__)


def check_alias(settings: Settings, client: engine.Client, names: list[str]) -> None:
    """Preflight: the alias name must not be one of the run's indices nor any existing
    index or data stream (an alias can never take a name an index has)."""
    alias = settings.run.alias
    if not alias:
        return
    if alias in names:
        raise ConfigError(f"run.alias: {alias!r} is also an index the run writes to")
    if not targets.alias_targets(client, alias) and engine.index_exists(client, alias):
        raise ConfigError(f"run.alias: {alias!r} is an existing index (or data stream), not an "
                          "alias; an alias cannot take its name")


def verify_then_cut_over(settings: Settings, report: RunReport,
                         stop: StopRequest | None) -> None:
    """``--verify`` (when the export succeeded), then the cut-over (when both did)."""
    if settings.run.verify and report.exit_code == ExitCode.OK and not report.interrupted:
        report.verify = _verified(settings, stop)
        if report.verify["exit_code"] != ExitCode.OK:
            report.exit_code = ExitCode(report.verify["exit_code"])
    if settings.run.alias:
        cut_over(settings, report)


def _verified(settings: Settings, stop: StopRequest | None) -> dict:
    """The report's ``verify`` section. A verify that cannot run (a server gone since the
    export) is its exit code and error there: the export's report must still be written."""
    from .verify import run_verify  # only runs that ask for it pay for the import

    try:
        checked = run_verify(settings, stop=stop).to_dict()
    except (Hbase2esError, *engine.CONNECTION_ERRORS, OSError) as exc:
        code = exc.exit_code if isinstance(exc, Hbase2esError) else ExitCode.UNAVAILABLE
        log.error("--verify could not run: %s", exc)
        return {"exit_code": int(code), "error": str(exc)[:500]}
    return {"exit_code": checked["exit_code"], "totals": checked["totals"]}


def cut_over(settings: Settings, report: RunReport) -> None:
    """Point ``run.alias`` at the run's indices, recording the previous ones in the report."""
    alias = settings.run.alias
    record: dict = {"name": alias, "cut_over": False}
    report.alias = record
    if report.exit_code != ExitCode.OK or report.interrupted:
        why = "verify failed" if report.verify and report.verify["exit_code"] else \
            f"the run ended with exit {int(report.exit_code)}"
        record["reason"] = f"{why}; the alias was left as it was"
        _left(record)
        return
    client = engine.make_client(settings.elasticsearch)
    try:
        wanted = _existing(client, index_names(settings, [e.slice for e in report.slices]))
        previous = targets.alias_targets(client, alias)
        record.update(previous=previous, current=wanted)
        if not wanted:
            record["reason"] = "no index of the run's window exists; the alias was left as it was"
            _left(record)
            return
        targets.swap_alias(client, alias, add=[n for n in wanted if n not in previous],
                           remove=[n for n in previous if n not in wanted])
    except (*engine.API_ERRORS, *engine.CONNECTION_ERRORS) as exc:
        record["error"] = f"{type(exc).__name__}: {engine.error_reason(exc)}"[:500]
        record["reason"] = "the cut-over request failed; the alias was left as it was"
        report.exit_code = ExitCode.FAILED
        _left(record, logging.ERROR)
        return
    finally:
        client.close()
    record["cut_over"] = True
    log.info("alias %s now points at %s (before: %s)", alias, ", ".join(wanted[:5]),
             ", ".join(previous[:5]) or "nothing", extra={"event": "alias_cut_over",
                                                          "alias": record})


def _left(record: dict, level: int = logging.WARNING) -> None:
    """The log line of a run that did not cut over (JSON: event alias_not_cut_over)."""
    log.log(level, "alias %s: not cut over, %s%s", record["name"], record["reason"],
            f" ({record['error']})" if record.get("error") else "",
            extra={"event": "alias_not_cut_over", "alias": record})


def _existing(client: engine.Client, names: list[str]) -> list[str]:
    """The concrete indices of ``names`` that exist (a window's later indices may not)."""
    found: set[str] = set()
    for i in range(0, len(names), NAMES_PER_REQUEST):
        found |= set(engine.get_settings(client, ",".join(names[i:i + NAMES_PER_REQUEST])))
    return sorted(found)


def rollback(settings: Settings, run_report: dict) -> dict:
    """Point the alias of a report's cut-over back at what it pointed at before.

    Refused (nothing changed) when the alias no longer points where that run left it:
    someone moved it since, and putting the old targets back would undo their change.
    """
    record = run_report.get("alias") or {}
    if not record.get("cut_over"):
        raise ConfigError("--report: the report records no alias cut-over to roll back"
                          + (f" ({record['reason']})" if record.get("reason") else ""))
    alias, previous, current = record["name"], record["previous"], record["current"]
    client = engine.make_client(settings.elasticsearch)
    try:
        now = targets.alias_targets(client, alias)
        if sorted(now) != sorted(current):
            raise ConfigError(f"alias {alias}: points at {', '.join(now) or 'nothing'} now, not "
                              f"at {', '.join(current)} as the run left it; nothing was changed")
        targets.swap_alias(client, alias, add=[n for n in previous if n not in now],
                           remove=[n for n in now if n not in previous])
    except engine.API_ERRORS as exc:
        raise UnavailableError(f"alias {alias}: the engine refused the rollback: "
                               f"{engine.error_reason(exc)[:300]}") from None
    finally:
        client.close()
    log.info("alias %s points at %s again", alias, ", ".join(previous) or "nothing")
    return {"name": alias, "restored": previous, "removed": current}
