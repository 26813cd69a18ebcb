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
