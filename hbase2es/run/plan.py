"""The plan of a run: its slices (the window, or what is new since the ledger's
watermark after the done slices a lookback exports again), the tasks they run as, and
the plan as plain data for `plan`.

Pure apart from the ledger it is handed: nothing here contacts a server.
"""

from __future__ import annotations

import logging

from ..errors import ConfigError
from ..hbase import describe_strategy
from ..indexname import IndexTemplate
from ..settings import Settings
from ..timesource import show_bytes, time_source
from ..timewindow import Slice, format_time, split_window
from .onepass import splits_by_region, wants_one_pass
from .pieces import SliceTask, split_by_regions
from .readcost import ASSUMES, read_warning, reads_per_document, slice_estimates

log = logging.getLogger(__name__)


def check_ledger_flags(settings: Settings) -> None:
    """--resume, --incremental and --lookback each need what they stand on; exit 2 if not."""
    run = settings.run
    if run.lookback is not None and not run.incremental:
        raise ConfigError("--lookback (run.lookback) needs --incremental: it exports again "
                          "the done slices just before the ledger's watermark, where only "
                          "an incremental run starts")
    if run.lookback is not None and not run.ledger:
        raise ConfigError("--lookback (run.lookback) needs a ledger: give --ledger FILE or "
                          "[run] ledger; the ledger knows the watermark and the done slices")
    if (run.resume or run.incremental) and not run.ledger:
        flag = "--incremental" if run.incremental else "--resume"
        raise ConfigError(f"{flag} needs a ledger: give --ledger FILE or [run] ledger")


def lookback_slices(done_run: list[tuple[int, int]], lookback_ms: int,
                    end_ms: int) -> list[tuple[int, int]]:
    """The slices of ``done_run`` (the done ones a watermark stands on, in order) that a
    lookback exports again: those ending less than ``lookback_ms`` before the watermark
    (a slice ending exactly that long before holds no time in the lookback), and not
    after the window's end."""
    if not done_run or lookback_ms <= 0:
        return []
    watermark = done_run[-1][1]
    return [(s, e) for s, e in done_run if e > watermark - lookback_ms and e <= end_ms]


def reexported(settings: Settings, ledger=None) -> set[tuple[int, int]]:
    """``(start_ms, end_ms)`` of the done slices this run exports again (--lookback)."""
    if not settings.run.incremental or ledger is None or not settings.lookback_ms:
        return set()
    return set(lookback_slices(ledger.done_run(settings.start_ms), settings.lookback_ms,
                               settings.end_ms))


def plan_run(settings: Settings, ledger=None) -> list[Slice]:
    """The slices of this run: the window; with --incremental, what is new since the
    ledger's watermark, after the done slices --lookback exports again."""
    if not settings.run.incremental:
        return split_window(settings.start_ms, settings.end_ms, settings.slice_ms)
    done = ledger.done_run(settings.start_ms) if ledger is not None else []
    start = done[-1][1] if done else settings.start_ms
    again = lookback_slices(done, settings.lookback_ms, settings.end_ms)
    if again:
        log.info("lookback %s: exporting again %d done slice(s) from %s", settings.run.lookback,
                 len(again), format_time(again[0][0]))
    if start >= settings.end_ms:
        log.info("nothing new: the ledger is done up to %s, the window ends at %s",
                 format_time(start), format_time(settings.end_ms))
        new = []
    else:
        log.info("incremental: exporting [%s, %s)", format_time(start),
                 format_time(settings.end_ms))
        new = [(s.start_ms, s.end_ms)
               for s in split_window(start, settings.end_ms, settings.slice_ms)]
    return [Slice(i, s, e) for i, (s, e) in enumerate([*again, *new])]


def slice_ranges(settings: Settings):
    """``slice -> [(row_start, row_stop)]``: the key ranges a slice's scans read."""
    source = time_source(settings.window)
    return lambda s: [(spec.row_start, spec.row_stop) for spec in source.scans(s)]


def slice_tasks(settings: Settings, slices: list[Slice],
                regions: list[tuple[bytes, bytes]] | None) -> tuple[list, list[int]]:
    """The pool's tasks for ``slices`` and, per task, the position of its slice.

    Without ``regions`` each slice is one task; with them, one SliceTask per region a
    slice's key ranges touch.
    """
    if regions is None:
        return list(slices), list(range(len(slices)))
    return split_by_regions(slices, slice_ranges(settings), regions)


def _slice_scans(source, s: Slice, pieces: list | None) -> dict:
    """Key ranges (hex; "" = open end) and filter of a slice's scans, and its region pieces."""
    specs = source.scans(s)
    out: dict = {"ranges": [[spec.row_start.hex(), spec.row_stop.hex()] for spec in specs]}
    filters = {spec.filter for spec in specs if spec.filter}
    if filters:
        out["filter"] = show_bytes(filters.pop()) if len(filters) == 1 \
            else [show_bytes(f) for f in sorted(filters)]
    if pieces is not None:
        out["pieces"] = [[t.row_start.hex(), t.row_stop.hex()] for t in pieces
                         if isinstance(t, SliceTask)]
    return out


def describe_plan(settings: Settings, regions: list[tuple[bytes, bytes]] | None = None,
                  ledger=None) -> dict:
    """The plan as plain data; nothing is contacted (``regions`` come from the caller).

    Each slice shows the key ranges of its scans in hex, the filter string of the column
    source, and with ``regions`` the region pieces it runs as (one task each). With
    --incremental the slices are those of the next run from ``ledger`` (read-only, or
    None when it does not exist yet): the ones --lookback exports again say ``reexport``,
    done ones after a gap say ``skip``.
    """
    template = IndexTemplate(settings.elasticsearch.index, settings.tzinfo)
    source = time_source(settings.window)
    slices = plan_run(settings, ledger)
    pieces: dict[int, list] = {}
    if regions is not None:
        tasks, owners = slice_tasks(settings, slices, regions)
        for task, owner in zip(tasks, owners):
            pieces.setdefault(owner, []).append(task)
    marks = _incremental_marks(settings, ledger, slices)
    estimates = slice_estimates(settings, len(slices))
    out = {
        "table": settings.hbase.table,
        "index": settings.elasticsearch.index,
        "time_source": source.name,
        "api": settings.hbase.api,
        "strategy": describe_strategy(settings.hbase, source, wants_one_pass(settings)),
        "estimate": {"rows_read_per_document": round(reads_per_document(estimates), 2),
                     "assumes": ASSUMES},
        "window": {"start": format_time(settings.start_ms), "end": format_time(settings.end_ms)},
        "split_by_region": splits_by_region(settings, len(slices)),  # what export will do
        "regions": None if regions is None else len(regions),  # known when asked for
        "slices": [{"index": s.index, "start": format_time(s.start_ms),
                    "end": format_time(s.end_ms),
                    "indices": template.names_between(s.start_ms, s.end_ms),
                    **marks.get(i, {}), **estimates[i],
                    **_slice_scans(source, s, pieces.get(i, []) if regions is not None else None)}
                   for i, s in enumerate(slices)],
    }
    if settings.run.incremental:
        watermark = ledger.watermark(settings.start_ms) if ledger is not None \
            else settings.start_ms
        out["incremental"] = {
            "ledger": settings.run.ledger, "ledger_exists": ledger is not None,
            "watermark": format_time(watermark), "lookback": settings.run.lookback,
            "reexported": sum(1 for m in marks.values() if m.get("reexport"))}
    return out


def _incremental_marks(settings: Settings, ledger, slices: list[Slice]) -> dict[int, dict]:
    """Slice position -> what an incremental run does with it besides exporting it new."""
    if not settings.run.incremental or ledger is None:
        return {}
    again, done = reexported(settings, ledger), ledger.done()
    marks = {}
    for i, s in enumerate(slices):
        key = (s.start_ms, s.end_ms)
        if key in again:
            marks[i] = {"reexport": True}
        elif key in done:  # done after a gap below the watermark: export skips it
            marks[i] = {"skip": True}
    return marks


def plan_warnings(settings: Settings) -> list[str]:
    """One line per thing about this job's plan that can surprise its user."""
    template = IndexTemplate(settings.elasticsearch.index, settings.tzinfo)
    source = time_source(settings.window)
    warnings = []
    reads = read_warning(settings, slice_estimates(settings, len(plan_run(settings))))
    if reads is not None:
        warnings.append(reads)
    # A cell or column time changes when the row is updated; a row-key time never does.
    if source.name in ("cell", "column") and not template.is_static:
        warnings.append(
            f"rows can move between indices: an updated row gets a newer {source.name} time, "
            f"so index template {template.template!r} can put its document in a newer index "
            f"than an earlier export did; each bulk then looks for older copies in the other "
            f"indices and deletes them (one refresh and search per bulk); a fixed index name "
            f"or time_source = \"rowkey\" keeps each row in one index at no such cost")
    return warnings
