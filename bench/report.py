"""Benchmark results: CPU sampling of processes, medians, ratios, JSON, table and chart."""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
from pathlib import Path

MIB = 1024 * 1024

# Targets from PERF.md and issue 15: (key, comparison, bound). Reported, never asserted.
TARGETS = {
    "r_bulk": (">=", 0.9),
    "r_serial": (">=", 0.9),
    "vs_naive": (">=", 2.0),
    "vs_seed": (">=", 1.3),
    "scaling": (None, None),  # no target: on 2 cores shared with the servers it is informative
    "us_per_doc": ("<=", 20.0),
    "rss_mib_per_worker": ("<=", 80.0),
    "pool_vs_mp_pool": (">=", 1.0),
    # Issue 15: what the default (or README-recommended) configuration costs.
    "read_amp_default": ("<=", 1.1),
    "history_growth": ("<=", 1.5),
    "default_vs_naive": (">=", 2.0),
}
RATIO_KEYS = tuple(TARGETS)

# Where latest.json holds what explains a ratio, so a missed target points at its cause.
EXPLAINED_BY = {
    "r_bulk": "datasets.<name>.runs (cpu_share of each run)",
    "r_serial": "datasets.<name>.runs.scan_only and bulk_only",
    "vs_naive": "datasets.<name>.runs (read/doc and CPU us/doc)",
    "vs_seed": "datasets.<name>.runs (read/doc and CPU us/doc)",
    "us_per_doc": "datasets.<name>.breakdown (CPU us/doc by stage, profile file)",
    "rss_mib_per_worker": "datasets.<name>.runs (worker_rss_mib)",
    "pool_vs_mp_pool": "datasets.<name>.pool",
    "read_amp_default": "datasets.<name>.runs.hbase2es_default_1h (rows_read_per_doc, "
                        "strategies)",
    "history_growth": "history.runs (seconds and rows read per document per history)",
    "default_vs_naive": "datasets.<name>.runs.hbase2es_default and naive (read/doc, "
                        "CPU us/doc)",
}
# The runs of issue 15's ratios (bench/run.py plans them).
DEFAULT_RUN = "hbase2es_default"  # default config, the 24 h window in 4 slices
DEFAULT_HOURLY_RUN = "hbase2es_default_1h"  # default config, 24 hourly slices


# --------------------------------------------------------------------------- CPU sampling


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man proc).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set of a process since it was exec'd (VmHWM), in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class RssSampler(threading.Thread):
    """Peak RSS of this process's children (workers), sampled every ``every`` seconds.

    Workers are reaped before the run ends, so their VmHWM is read while they live; growth
    in a worker's last ``every`` seconds can be missed.
    """

    def __init__(self, every: float = 0.1):
        super().__init__(daemon=True, name="rss-sampler")
        self.every = every
        self.peaks: dict[int, int] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every):
            self.sample()

    def sample(self) -> None:
        me = os.getpid()
        try:
            threads = os.listdir(f"/proc/{me}/task")
        except OSError:
            return
        for tid in threads:
            try:
                with open(f"/proc/{me}/task/{tid}/children") as f:
                    kids = [int(pid) for pid in f.read().split()]
            except OSError:
                continue
            for kid in kids:
                peak = vm_hwm_kib(kid)
                if peak and peak > self.peaks.get(kid, 0):
                    self.peaks[kid] = peak

    def close(self) -> None:
        self.sample()
        self._done.set()


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, summed over all cores."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    return (total - idle) / tick, total / tick


def server_pids(devservers: Path) -> dict[str, int]:
    """The server processes `make servers` started (name -> pid), from its pids.json."""
    try:
        pids = json.loads((devservers / "pids.json").read_text())
    except (OSError, ValueError):
        return {}
    return {name: pid for name, pid in pids.items() if process_cpu_seconds(pid) is not None}


class CpuSampler:
    """CPU used by the servers and by the whole machine between start() and stop()."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.seconds: dict[str, float] = {}

    def start(self) -> None:
        self._servers = {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine = machine_cpu_seconds()

    def stop(self) -> None:
        for name, pid in self.pids.items():
            before, after = self._servers.get(name), process_cpu_seconds(pid)
            if before is not None and after is not None:
                self.seconds[name] = round(after - before, 3)
        busy, total = machine_cpu_seconds()
        self.seconds["machine_busy"] = round(busy - self._machine[0], 3)
        self.seconds["machine_total"] = round(total - self._machine[1], 3)


def machine() -> dict:
    """Cores, memory, CPU model and load: what the numbers came from."""
    info = {"cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release()}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["loadavg_at_start"] = list(os.getloadavg())
    return info


# --------------------------------------------------------------------------- summaries


def summarize(repeats: list[dict]) -> dict:
    """One run's entry in ``runs``: median/min/max docs/s over its repeats, and the rest."""
    rates = [r["docs_per_s"] for r in repeats]
    middle = sorted(repeats, key=lambda r: r["docs_per_s"])[len(repeats) // 2]
    out = {
        "docs_per_s": round(statistics.median(rates)),
        "min": round(min(rates)),
        "max": round(max(rates)),
        "seconds": round(statistics.median(r["seconds"] for r in repeats), 3),
        "peak_rss_mib": round(max(r["peak_rss_mib"] for r in repeats), 1),
        "docs": repeats[0]["docs"],
        "repeats": len(repeats),
    }
    for key in ("cpu_us_per_doc", "parent_cpu_us_per_doc", "worker_rss_mib", "rows_read_per_doc"):
        values = [r[key] for r in repeats if r.get(key) is not None]
        if values:
            out[key] = round(statistics.median(values), 2) if key != "worker_rss_mib" \
                else round(max(values), 1)
    for key in ("workers", "slices", "strategies"):
        if key in repeats[0]:
            out[key] = repeats[0][key]
    # Share of one core used during the run by each process group (the median repeat's).
    if middle.get("cpu_share"):
        out["cpu_share"] = middle["cpu_share"]
    return out


# Runs on an index with other settings: compared with each other, not with the ceilings.
VARIANT_SUFFIXES = ("_es_defaults", "_bulk_load")


def _best(runs: dict, prefix: str) -> tuple[str | None, dict | None]:
    named = [(name, run) for name, run in runs.items()
             if name.startswith(prefix) and not name.endswith(VARIANT_SUFFIXES)]
    if not named:
        return None, None
    return max(named, key=lambda item: item[1]["docs_per_s"])


def ratios(runs: dict, pool: dict | None, history: dict | None = None) -> tuple[dict, dict]:
    """The ratios of issues 8 and 15 (exactly RATIO_KEYS) and notes on what each was
    computed from; ``history`` is the history-growth line's result (bench/history_line.py).

    The issue 8 ratios compare the ``hbase2es_w*`` style runs; the default-config runs
    (named ``hbase2es_default*``) are left out of "best hbase2es", so adding them changes
    no existing ratio's meaning.
    """
    best_name, best = _best({n: r for n, r in runs.items()
                             if not n.startswith(DEFAULT_RUN)}, "hbase2es")
    bulk = runs.get("bulk_only")
    scan = runs.get("scan_only")

    def rate(run):
        return run["docs_per_s"] if run and run["docs_per_s"] else None

    def div(a, b):
        return round(a / b, 3) if a is not None and b else None

    t = rate(best)
    serial = None
    if rate(scan) and rate(bulk):
        serial = 1 / (1 / rate(scan) + 1 / rate(bulk))
    w1, w2 = runs.get("hbase2es_w1"), runs.get("hbase2es_w2")
    worker_rss = [run.get("worker_rss_mib") for name, run in runs.items()
                  if name.startswith("hbase2es") and run.get("worker_rss_mib")]
    out = {
        "r_bulk": div(t, rate(bulk)),
        "r_serial": div(t, serial),
        "vs_naive": div(t, rate(runs.get("naive"))),
        "vs_seed": div(t, rate(runs.get("seed"))),
        "scaling": div(rate(w2), rate(w1)),
        "us_per_doc": best.get("cpu_us_per_doc") if best else None,
        "rss_mib_per_worker": max(worker_rss) if worker_rss else None,
        "pool_vs_mp_pool": round(pool["pool_vs_mp_pool"], 3) if pool else None,
        "read_amp_default": (runs.get(DEFAULT_HOURLY_RUN) or {}).get("rows_read_per_doc"),
        "history_growth": (history or {}).get("history_growth"),
        "default_vs_naive": div(rate(runs.get(DEFAULT_RUN)), rate(runs.get("naive"))),
    }
    assert tuple(out) == RATIO_KEYS
    notes = {"best_hbase2es": best_name, "bulk_only_is": bulk.get("best_of") if bulk else None,
             "serial_docs_per_s": round(serial) if serial else None}
    return out, notes


def targets(values: dict, dataset: str = "M") -> dict:
    """Each ratio against its target: {key: {"target": ">= 0.7", "value", "met", "status"}}.

    ``status`` is "met", "missed" or "not measured"; a missed one also says where in
    latest.json the numbers that explain it are (``explained_by``).
    """
    out = {}
    for key, (op, bound) in TARGETS.items():
        value = values.get(key)
        if op is None:
            continue
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        out[key] = {"target": f"{op} {bound:g}", "value": value, "met": met,
                    "status": "not measured" if met is None else "met" if met else "missed"}
        if met is False:
            out[key]["explained_by"] = EXPLAINED_BY[key].replace("<name>", dataset)
    return out


# --------------------------------------------------------------------------- output


COLUMNS = [
    ("run", "{}", 18), ("docs/s", "{:,}", 9), ("min", "{:,}", 9), ("max", "{:,}", 9),
    ("seconds", "{:.2f}", 8), ("CPU us/doc", "{:.1f}", 10), ("RSS MiB", "{:.0f}", 7),
    ("read/doc", "{:.2f}", 8), ("tool%", "{:.0f}", 5), ("hbase%", "{:.0f}", 6),
    ("thrift%", "{:.0f}", 7), ("es%", "{:.0f}", 4), ("busy%", "{:.0f}", 5),
]


def table(runs: dict) -> str:
    """Plain-text table of the runs; the CPU columns are % of one core during the run."""
    lines = ["  ".join(name.rjust(width) if i else name.ljust(width)
                       for i, (name, _fmt, width) in enumerate(COLUMNS))]
    for name, run in runs.items():
        share = run.get("cpu_share", {})
        thrift = share.get("hbase-thrift2", 0) if "thrift2" in name else share.get("hbase-thrift")
        values = [name, run["docs_per_s"], run["min"], run["max"], run["seconds"],
                  run.get("cpu_us_per_doc"), run.get("worker_rss_mib") or run["peak_rss_mib"],
                  run.get("rows_read_per_doc"), share.get("tool"), share.get("hbase-master"),
                  thrift, share.get("elasticsearch"), share.get("machine_busy")]
        cells = []
        for i, ((_col, fmt, width), value) in enumerate(zip(COLUMNS, values)):
            text = "-" if value is None else fmt.format(value)
            cells.append(text.ljust(width) if i == 0 else text.rjust(width))
        lines.append("  ".join(cells))
    return "\n".join(lines)


def markdown_table(runs: dict) -> str:
    """The same table in Markdown, for the README."""
    head = [c[0] for c in COLUMNS]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for line in table(runs).splitlines()[1:]:
        rows.append("| " + " | ".join(line.split()) + " |")
    return "\n".join(rows)


def ratio_lines(values: dict, checks: dict) -> str:
    lines = []
    for key in RATIO_KEYS:
        value = values.get(key)
        check = checks.get(key)
        verdict = ""
        if check is not None and check["met"] is not None:
            verdict = "  ok" if check["met"] else f"  MISSED (see {check['explained_by']})"
        target = f"  (target {check['target']})" if check else ""
        shown = "-" if value is None else f"{value:g}"
        lines.append(f"  {key:20s} {shown:>10}{target}{verdict}")
    return "\n".join(lines)


def ratio_markdown(values: dict, checks: dict) -> str:
    """The ratios as the README's table: a missed target says so, and where its cause is."""
    rows = ["| ratio | measured | target | |", "|---|---|---|---|"]
    for key in RATIO_KEYS:
        value, check = values.get(key), checks.get(key)
        shown = "-" if value is None else f"{value:g}"
        if check is None:
            rows.append(f"| {key} | {shown} | - | |")
            continue
        status = check["status"]
        if status == "missed":
            status = f"missed: see {check['explained_by']}"
        rows.append(f"| {key} | {shown} | {check['target']} | {status} |")
    return "\n".join(rows)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def history_points(history: dict | None) -> dict[str, list[tuple[float, float]]]:
    """The history-growth line's series: label -> [(history multiple, seconds)], sorted."""
    series = (history or {}).get("series") or {}
    return {label: sorted((float(x), float(y)) for x, y in points)
            for label, points in series.items() if points}


def chart(path: Path, runs: dict, title: str, history: dict | None = None) -> bool:
    """Bar chart of docs/s per run (min-max whiskers), docs/s against workers and, when the
    history-growth line ran, seconds to export one hour against the table's older history."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = [n for n in runs if n != "bulk_only"]
    growth = history_points(history)
    widths = [3, 2, 2] if growth else [3, 2]
    fig, axes = plt.subplots(1, len(widths), figsize=(13 + 4 * (len(widths) - 2), 5),
                             gridspec_kw={"width_ratios": widths})
    bars, lines = axes[0], axes[1]
    medians = [runs[n]["docs_per_s"] for n in names]
    low = [runs[n]["docs_per_s"] - runs[n]["min"] for n in names]
    high = [runs[n]["max"] - runs[n]["docs_per_s"] for n in names]
    colors = ["#2b7bba" if n.startswith("hbase2es") else
              "#999999" if n.startswith(("scan_only", "bulk_only")) else "#e08a2c" for n in names]
    bars.bar(range(len(names)), medians, yerr=[low, high], color=colors, capsize=3)
    bars.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    bars.set_ylabel("documents / s (median, min-max)")
    bars.set_title("per run (grey: ceilings, orange: peers, blue: hbase2es)", fontsize=9)
    for prefix, label, style in (("hbase2es_w", "hbase2es", "o-"),
                                 ("hbase2es_regions_w", "hbase2es, 1 slice by region", "D-"),
                                 ("hbase2es_thrift2_w", "hbase2es thrift2", "s-"),
                                 ("bulk_only_w", "bulk_only", "^--")):
        points = sorted((runs[n]["workers"], runs[n]["docs_per_s"]) for n in runs
                        if n.startswith(prefix) and n[len(prefix):].isdigit())
        if points:
            lines.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
    for (name, style), x in zip((("scan_only", ":"), ("naive", "-."), ("seed", "--")),
                                (1.0, 1.9, 2.8)):  # labels apart when the lines are close
        if name in runs:
            lines.axhline(runs[name]["docs_per_s"], linestyle=style, color="grey", linewidth=1)
            lines.text(x, runs[name]["docs_per_s"], name, fontsize=7, va="bottom")
    lines.set_xlabel("worker processes")
    lines.set_ylabel("documents / s")
    lines.set_xticks([1, 2, 4])
    lines.set_ylim(bottom=0)
    lines.legend(fontsize=8)
    lines.set_title("scaling with workers", fontsize=9)
    if growth:
        _history_panel(axes[2], growth, history)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _history_panel(ax, growth: dict, history: dict) -> None:
    for (label, points), style in zip(growth.items(), ("o-", "s--", "^:", "D-.")):
        ax.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
    multiples = sorted({p[0] for points in growth.values() for p in points})
    ax.set_xticks(multiples, [f"{m:g}" for m in multiples])
    ax.set_xlabel("days of older history in the table")
    ax.set_ylabel("seconds to export the 1 h window")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ratio = history.get("history_growth")
    shown = "-" if ratio is None else f"{ratio:g}"
    ax.set_title(f"history growth (cron config: {shown}, target <= 1.5)", fontsize=9)
