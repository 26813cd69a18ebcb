"""`hbase2es status`: what a job's ledger says, without contacting any server."""

from __future__ import annotations

from .ledger import Ledger
from ..timewindow import format_time


def ledger_status(path: str) -> dict:
    # Reading needs no lock: a running export may hold it, and WAL lets us read beside it.
    with Ledger(path, readonly=True) as ledger:
        slices = ledger.slices()
        definition = ledger.definition()
        counts = ledger.summary()
        # The earliest slice recorded is where the job's contiguous done run starts.
        watermark = ledger.watermark(slices[0].start_ms) if slices else None
    return {
        "ledger": path,
        "job": definition,
        "counts": counts,
        "watermark": format_time(watermark) if watermark is not None else None,
        "totals": {k: sum(getattr(s, k) for s in slices if s.status == "done")
                   for k in ("rows", "indexed", "stale", "failed")},
        "slices": [{"start": format_time(s.start_ms), "end": format_time(s.end_ms),
                    "status": s.status, "rows": s.rows, "indexed": s.indexed,
                    "stale": s.stale, "failed": s.failed, "attempts": s.attempts,
                    "error": s.error} for s in slices],
    }


def render_status(data: dict) -> str:
    c = data["counts"]
    job = data["job"]
    lines = [f"ledger {data['ledger']}: table {job.get('table')} -> index {job.get('index')}",
             f"slices: {c['done']} done, {c['failed']} failed, {c['running']} running "
             f"(or interrupted), {c['pending']} pending",
             f"watermark: {data['watermark'] or 'none (nothing done yet)'}",
             f"documents indexed by done slices: {data['totals']['indexed']}"]
    for s in data["slices"]:
        if s["status"] != "done":
            line = f"  {s['status']:<8} [{s['start']}, {s['end']}) attempts={s['attempts']}"
            if s["error"]:
                line += f" {s['error'][:200]}"
            lines.append(line)
    return "\n".join(lines)
