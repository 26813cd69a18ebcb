"""``hbase2es verify``: prove that Elasticsearch holds a document for every row of a window.

The parent side: the slices run on the worker pool (``run.verifyjob`` is what each worker
does), and their counts become the report, the table and the exit code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import ExitCode
from ..settings import Settings
from ..timewindow import split_window
from .checkrun import render_check_table, run_check_slices
from .outcomes import CheckEntry, CheckReport
from .stopping import StopRequest
from .verifyjob import (MAX_EXAMPLES, VerifyOptions, close_verifier,
                        open_verifier, verify_slice)

TOTALS = ("rows", "checked", "present", "missing", "older", "deleted", "undeleted", "compared",
          "differing", "ahead", "copies", "repaired", "repair_conflicts", "repair_failed")


VerifyEntry = CheckEntry


@dataclass
class VerifyReport(CheckReport):
    TOTALS = TOTALS
    MAX_EXAMPLES = MAX_EXAMPLES

    def result_dict(self, result) -> dict:
        out = {"missing_keys": result.missing_keys, "older_keys": result.older_keys,
               "undeleted_keys": result.undeleted_keys, "copy_keys": result.copy_keys,
               "seconds": result.seconds}
        if self.options.compare_fields:
            out.update(differences=result.differences, ahead_keys=result.ahead_keys)
        return out

    def to_dict(self) -> dict:
        return {**self.window_dict(),
                "mode": "all rows" if self.options.sample is None else "sample",
                "sample": self.options.sample, "compare_fields": self.options.compare_fields,
                "repair": self.options.repair, "slices": self.slice_dicts(),
                "totals": self.totals(),
                "missing_examples": self.examples("missing_keys"),
                "older_examples": self.examples("older_keys"),
                "undeleted_examples": self.examples("undeleted_keys"),
                "copy_examples": list(dict.fromkeys(self.examples("copy_keys"))),
                "ahead_examples": self.examples("ahead_keys"),
                "difference_examples": self.examples("differences"),
                **self.end_dict()}


def exit_code(report: VerifyReport) -> ExitCode:
    if report.interrupted:
        return ExitCode.INTERRUPTED
    t = report.totals()
    # With --repair, a differing document rewritten (or overtaken by a newer write) is
    # settled; only a repair that failed still fails the run.
    unsettled = t["repair_failed"] if report.options.repair else t["differing"] + t["ahead"]
    if any(e.status != "done" for e in report.slices) or t["missing"] or t["older"] \
            or t["undeleted"] or unsettled or t["copies"]:
        return ExitCode.FAILED
    return ExitCode.OK


def run_verify(settings: Settings, *, sample: int | None = None, compare_fields: bool = False,
               repair: bool = False, stop: StopRequest | None = None) -> VerifyReport:
    """Check every slice of the window on the worker pool; the report carries the exit code.

    ``repair`` (with ``compare_fields``) rewrites the documents that differ from their rows.
    ``stop`` as for ``run_export``: the command's, so its handlers outlive this call.
    """
    if repair and not compare_fields:
        raise ValueError("repair needs compare_fields")
    started = time.monotonic()
    options = VerifyOptions(sample=sample, compare_fields=compare_fields, repair=repair)
    slices = split_window(settings.start_ms, settings.end_ms, settings.slice_ms)
    report = VerifyReport(settings.hbase.table, settings.elasticsearch.index, settings.start_ms,
                          settings.end_ms, options, [VerifyEntry(s) for s in slices])
    run_check_slices(settings, slices, report, job=verify_slice, opener=open_verifier,
                     closer=close_verifier, initargs=(settings, options), desc="verify",
                     counted="rows", stop=stop)
    report.seconds = time.monotonic() - started
    report.exit_code = exit_code(report)
    return report


def render_verify(data: dict) -> str:
    """The table printed at the end of ``verify`` (from ``VerifyReport.to_dict()``)."""
    compare = data["compare_fields"]
    mode = ("every row checked" if data["sample"] is None else
            f"SAMPLE: up to {data['sample']} random rows per slice checked, not every row")
    lines = [f"verify {data['table']} -> {data['index']}, window [{data['window']['start']}, "
             f"{data['window']['end']}), {len(data['slices'])} slices; {mode}"
             + ("; fields compared" if compare else "")]
    names = ["rows", "checked", "present", "missing", "older"]
    if data["totals"]["deleted"] or data["totals"]["undeleted"]:  # [mapping] delete_when
        names += ["deleted", "undeleted"]
    if compare:
        names += ["compared", "differing", "ahead"]
    if data.get("repair"):
        names += ["repaired"]
    lines.extend(render_check_table(data, names))
    lines.extend(_problem_lines(data))
    t = data["totals"]
    if data["exit_code"] == 0 and not (t["differing"] or t["ahead"]):
        live = t["checked"] - t["deleted"]
        lines.append(f"OK: all {live} checked rows have their document"
                     + (" with the same fields" if compare else "")
                     + (f"; the {t['deleted']} rows marked deleted are deleted"
                        if t["deleted"] else ""))
    return "\n".join(lines)


def _problem_lines(data: dict) -> list[str]:
    t = data["totals"]
    lines = []
    if t["missing"]:
        lines.append(f"MISSING: {t['missing']} documents, e.g. "
                     f"{', '.join(data['missing_examples'])}")
    if t["older"]:
        lines.append(f"OLDER: {t['older']} documents hold an older state of their row than "
                     f"HBase, e.g. {', '.join(data['older_examples'])}")
    if t["undeleted"]:
        lines.append(f"NOT DELETED: {t['undeleted']} rows marked deleted ([mapping] delete_when) "
                     f"still have their live document; exporting the window again deletes "
                     f"them, e.g. {', '.join(data['undeleted_examples'])}")
    if t["copies"]:
        lines.append(f"COPIES: {t['copies']} documents are older copies of a row in another "
                     f"index of the template, e.g. {', '.join(data['copy_examples'])}")
    lines.extend(_field_lines(data))
    return lines


def _documents(count: int, verb: str = "") -> str:
    """'1 document is' / '2 documents are' (verb "is"), or just the noun."""
    text = f"{count} document" + ("" if count == 1 else "s")
    if verb:
        text += " " + (verb if count == 1 else {"is": "are", "differs": "differ"}[verb])
    return text


def _field_lines(data: dict) -> list[str]:
    """What --compare-fields found, and what --repair did about it."""
    t, repair = data["totals"], data.get("repair")
    lines = []
    if t["differing"]:
        fix = "" if repair else "; exporting the window again rewrites such documents"
        lines.append(f"DIFFERENT: {_documents(t['differing'], 'differs')} from the row{fix}")
    if t["ahead"]:
        fix = "" if repair else "; verify --compare-fields --repair rewrites such documents"
        lines.append(f"AHEAD: {_documents(t['ahead'], 'is')} newer than the row (a column or "
                     f"cell deleted in HBase, or an edit in Elasticsearch), so every export "
                     f"of it is refused as stale{fix}, e.g. {', '.join(data['ahead_examples'])}")
    if t["differing"] or t["ahead"]:
        lines.append("differing fields, e.g.:")
        for d in data["difference_examples"]:
            lines.append(f"  {d['id']}  {d['field']}: expected {d['expected']}, "
                         f"actual {d['actual']}")
    if repair:
        lines.append(f"REPAIRED: {_documents(t['repaired'])} rewritten from HBase; "
                     f"{t['repair_conflicts']} refused because a newer version arrived "
                     f"meanwhile; {t['repair_failed']} failed (see the dead letters)")
    return lines


def problem_summary(data: dict) -> str:
    """One or more lines for stderr when ``--json`` owns stdout."""
    return "\n".join(_problem_lines(data))
