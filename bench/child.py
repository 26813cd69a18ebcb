"""Measured runs in a fresh interpreter, so each run's CPU and memory are its own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_in_child(argv: list[str], name: str, marker: str, timeout: float) -> dict:
    """Run ``argv``; its last stdout line starting with ``marker`` is the JSON result."""
    proc = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=timeout, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(marker)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{name}: child exited {proc.returncode}: "
                           f"{proc.stdout.strip()[-500:]}")
    result = json.loads(lines[-1][len(marker):])
    if "error" in result:
        raise RuntimeError(f"{name}: {result['error']}")
    return result


def child_main(kinds: dict, spec: dict, marker: str, *, start_watch: bool) -> int:
    """The child side: run ``kinds[spec["kind"]]`` under a stopwatch, print one result line.

    ``start_watch=False`` leaves starting the stopwatch to the run itself (after its own
    set-up, which is not measured).
    """
    import sys
    import traceback

    from bench.report import server_pids
    from bench.run import DEVSERVERS, Stopwatch

    watch = Stopwatch(server_pids(DEVSERVERS))
    try:
        if start_watch:
            watch.start()
        out = kinds[spec["kind"]](spec, watch)
        watch.stop()
        out.update(watch.result())
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        traceback.print_exc(file=sys.stderr)
        out = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
    print(marker + json.dumps(out), flush=True)
    return 0
