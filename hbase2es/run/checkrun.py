"""How a check command (verify, reconcile) runs its slices on the pool and renders them.

Both checks do the same around their own per-slice job: preflight inside the command's
stop, a progress bar fed by the workers' progress events, one report entry per outcome, a
forced stop that keeps what was checked, and the same per-slice table. Export differs (a
ledger, region pieces, retries), so it is not forced into this shape.
"""

from __future__ import annotations

from typing import Callable

from tqdm import tqdm

from ..pool import Progress as ProgressEvent, Started
from ..settings import Settings
from ..timewindow import Slice
from .executors import pool_outcomes
from .outcomes import CheckReport, stderr_is_tty
from .preflight import preflight
from .report import render_table
from .stopping import StopRequest, stop_on_signals


def run_check_slices(settings: Settings, slices: list[Slice], report: CheckReport, *,
                     job: Callable, opener: Callable, closer: Callable, initargs: tuple,
                     desc: str, counted: str, stop: StopRequest | None = None) -> None:
    """Run ``job`` on the pool for every slice, recording each outcome in ``report``.

    ``counted`` is the progress payload key the bar shows ("rows", "checked"); ``stop`` the
    command's (run.stopping.command_stop), so its handlers outlive this call."""
    bar = tqdm(total=len(slices), unit="slice", dynamic_ncols=True, desc=desc,
               disable=settings.run.quiet or not stderr_is_tty())
    seen = 0

    def on_event(event) -> None:
        nonlocal seen
        if isinstance(event, ProgressEvent):
            seen += event.payload.get(counted, 0)
            bar.set_postfix_str(f"{seen} {counted}", refresh=True)
        elif isinstance(event, Started):
            report.slices[event.index].status = "running"

    try:
        with stop_on_signals(report, stop=stop) as stop, stop.running():
            if not report.interrupted:  # a signal before the run: no slice starts
                preflight(settings)
                for outcome in pool_outcomes(settings, job, slices, on_event, stop,
                                             initializer=opener, initargs=initargs,
                                             finalizer=closer):
                    report.slices[outcome.index].record(outcome)
                    bar.update(1)
    except KeyboardInterrupt:  # forced stop: report what was checked so far
        report.interrupted = True
    finally:
        bar.close()
    report.cancel_running()


def render_check_table(data: dict, names: list[str]) -> list[str]:
    """The per-slice table of a check's report dict (columns ``names``), and one line per
    slice that ended with an error."""
    rows = [(f"{s['start']} .. {s['end']}", s["status"], *(str(s[n]) for n in names),
             f"{s.get('seconds', 0.0):.1f}") for s in data["slices"]]
    t = data["totals"]
    total = (f"total ({len(data['slices'])} slices)", "", *(str(t[n]) for n in names),
             f"{data['seconds']:.1f}")
    lines = [render_table(("slice", "status", *names, "seconds"), rows, total)]
    for s in data["slices"]:
        if s.get("error"):
            lines.append(f"slice {s['start']} .. {s['end']} {s['status']}: {s['error']}")
    return lines
