"""`hbase2es status`: what a job's ledger says, without contacting any server."""

from __future__ import annotations

from ..timewindow import TimeError, format_time, parse_duration
from .ledger import Ledger


def ledger_status(path: str) -> dict:
    # Reading needs no lock: a running export may hold it, and WAL lets us read beside it.
    with Ledger(path, readonly=True) as ledger:
        slices = ledger.slices()
        definition = ledger.definition()
        counts = ledger.summary()
        # The earliest slice recorded is where the job's contiguous done run starts.
        watermark = ledger.watermark(slices[0].start_ms) if slices else None
        lookback = ledger.lookback()
    return {
        "ledger": path,
        "job": definition,
        "counts": counts,
        "watermark": format_time(watermark) if watermark is not None else None,
        "lookback": _lookback(lookback, watermark),
        "totals": {k: sum(getattr(s, k) for s in slices if s.status == "done")
                   for k in ("rows", "indexed", "stale", "failed")},
        "slices": [{"start": format_time(s.start_ms), "end": format_time(s.end_ms),
                    "status": s.status, "rows": s.rows, "indexed": s.indexed,
                    "stale": s.stale, "failed": s.failed, "attempts": s.attempts,
                    "error": s.error} for s in slices],
    }


def _lookback(recorded: str | None, watermark: int | None) -> dict | None:
    """The lookback of the last --incremental run (None: no such run recorded one), and
    from where the next run exports done slices again, if the watermark stays."""
    if recorded is None:
        return None
    try:
        ms = parse_duration(recorded) if recorded else 0
    except TimeError:  # written by another version: show it, compute nothing
        ms = 0
    again_after = format_time(watermark - ms) if ms and watermark is not None else None
    return {"duration": recorded or None, "reexports_slices_ending_after": again_after}


def render_status(data: dict) -> str:
    c = data["counts"]
    job = data["job"]
    lines = [f"ledger {data['ledger']}: table {job.get('table')} -> index {job.get('index')}",
             f"slices: {c['done']} done, {c['failed']} failed, {c['running']} running "
             f"(or interrupted), {c['pending']} pending",
             f"watermark: {data['watermark'] or 'none (nothing done yet)'}",
             _lookback_line(data.get("lookback")),
             f"documents indexed by done slices: {data['totals']['indexed']}"]
    for s in data["slices"]:
        if s["status"] != "done" or s["error"]:  # a done one with an error: its re-export
            line = f"  {s['status']:<8} [{s['start']}, {s['end']}) attempts={s['attempts']}"
            if s["error"]:
                line += f" {s['error'][:200]}"
            lines.append(line)
    return "\n".join(lines)


def _lookback_line(lookback: dict | None) -> str:
    if lookback is None:
        return "lookback: unknown (no --incremental run has recorded one)"
    if lookback["duration"] is None:
        return ("lookback: none (last --incremental run): a row written later than the "
                "watermark with an older time is not exported")
    line = f"lookback: {lookback['duration']} (last --incremental run)"
    if lookback["reexports_slices_ending_after"]:
        line += (f": the next run exports again the done slices ending after "
                 f"{lookback['reexports_slices_ending_after']}")
    return line
