"""The history-growth line of `make bench` (issue 15): does a cron increment cost the hour
it exports, or the table's whole history?

Two tables hold the same one-hour window of changes; before it, one holds a day of older
history (1x) and the other twenty days of it (20x, the 1x rows and nineteen more days).
The hour is exported with the configuration the README gives a cron increment (Thrift2
beside Thrift1, see ``cron_overrides``) and, for reference, with the default Thrift1
configuration. ``history_growth`` = the cron export's median seconds on the 20x table / on
the 1x table (target <= 1.5: the cost follows the window, not the table).

Data (scale 1.0; ``BENCH_SCALE`` multiplies every count, with a floor):
- history: HG_HISTORY_ROWS rows per day, keys spread over the whole key space (a hash of
  the row number, as salted or hashed keys are), 5 columns x 40 B, cell times on 96
  instants a day; flushed, major-compacted and left to settle, as an old table is;
- the window: HG_WINDOW_ROWS rows inside the hour, three in four new keys and one in four
  a one-column update of a 1x history row (so both tables end with the same documents),
  some exactly on the hour's start; then a few new rows after the hour's end (excluded,
  as rows newer than ``--end now-5m`` are); flushed, not compacted.

Every run is checked like the other lines (documents reported, per slice, in the index),
and all runs must write the same documents (digest of every ``_id`` and ``_source``).

Environment: ``BENCH_HISTORY`` 1 (default) or 0 (skip the line); ``BENCH_HISTORY_CONFIG``
a TOML file whose settings replace the built-in cron configuration. The bench still sets
the table, index, window and ``[hbase] host``/``port`` (the Thrift1 server), so such a file
names a Thrift2 server with ``[hbase] thrift2``, not with ``api``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import fields

HG_HISTORY_ROWS = 50_000  # rows per day of history at scale 1.0
HG_WINDOW_ROWS = 20_000  # rows changed in the exported hour at scale 1.0
HG_MULTIPLES = (1, 20)  # days of history in the two tables
HG_AFTER_SHARE = 0.05  # new rows after the window's end, as a share of the window's rows
HG_MIN_HISTORY, HG_MIN_WINDOW = 2000, 500
INSTANTS_PER_DAY = 96  # distinct history cell times a day (few write calls)
DAY_MS = 24 * 3_600_000
HOUR_MS = 3_600_000
FLUSH_ROWS = 100_000


def sizes(scale: float) -> tuple[int, int]:
    """(history rows per day, window rows) at this scale."""
    return (max(HG_MIN_HISTORY, int(HG_HISTORY_ROWS * scale)),
            max(HG_MIN_WINDOW, int(HG_WINDOW_ROWS * scale)))


def history_key(i: int) -> bytes:
    return hashlib.blake2b(b"h%d" % i, digest_size=6).hexdigest().encode()


def new_key(i: int) -> bytes:
    return hashlib.blake2b(b"n%d" % i, digest_size=6).hexdigest().encode()


def history_rows(per_day: int, days: int, window_start: int) -> dict[int, list]:
    """Rows by cell time: day d (0 = the day before the window) holds rows d*per_day..."""
    from bench.extras import _values

    by_ts: dict[int, list] = {}
    step = DAY_MS // INSTANTS_PER_DAY
    for i in range(per_day * days):
        day, n = divmod(i, per_day)
        ts = window_start - (day + 1) * DAY_MS + (n * INSTANTS_PER_DAY // per_day) * step
        key = history_key(i)
        by_ts.setdefault(ts, []).append((key, _values(key)))
    return by_ts


def window_rows(per_day: int, count: int, window_start: int) -> tuple[dict[int, list], int]:
    """The hour's changes (and the rows after it) by cell time, and the documents expected."""
    import random

    from bench.datasets import SEED
    from bench.extras import VALUE_BYTES, _values

    rng = random.Random(SEED + 15)
    updated = rng.sample(range(per_day), count // 4)  # rows both tables hold
    by_ts: dict[int, list] = {}
    for n in range(count):
        ts = window_start + (0 if n % 50 == 0 else rng.randrange(60) * 60_000)
        if n < len(updated):
            key = history_key(updated[n])
            change = {b"cf:c%02d" % (n % 5): (b"changed-" + key).ljust(VALUE_BYTES, b".")}
        else:
            key = new_key(n)
            change = _values(key)
        by_ts.setdefault(ts, []).append((key, change))
    for n in range(max(1, int(count * HG_AFTER_SHARE))):
        key = new_key(count + n)
        by_ts.setdefault(window_start + HOUR_MS + rng.randrange(10) * 60_000, []).append(
            (key, _values(key)))
    return by_ts, count


def cron_overrides(env: dict, hbase_fields: set[str]) -> tuple[dict, str]:
    """The README's cron-increment configuration, and how it was expressed.

    A ``[hbase] thrift2 = "host:port"`` beside the Thrift1 server once the project has that
    key (the export then picks Thrift2 for cell-time slices itself); before that, what the
    README said then: ``api = "thrift2"`` pointed at the Thrift2 server.
    """
    address = env.get("HBASE2ES_TEST_HBASE_THRIFT2")
    if not address:
        return {}, "no Thrift2 server (HBASE2ES_TEST_HBASE_THRIFT2 is not set)"
    if "thrift2" in hbase_fields:
        return {"hbase.thrift2": address}, f'[hbase] thrift2 = "{address}"'
    host, port = address.rsplit(":", 1)
    return ({"hbase.api": "thrift2", "hbase.host": host, "hbase.port": int(port)},
            f'[hbase] api = "thrift2" at {address}')


def growth(runs: dict, prefix: str) -> float | None:
    """Median seconds on the most history / on the least, for the runs named prefix_<m>x."""
    points = series(runs, prefix)
    if len(points) < 2 or not points[0][1]:
        return None
    return round(points[-1][1] / points[0][1], 3)


def series(runs: dict, prefix: str) -> list[tuple[int, float]]:
    """[(history multiple, median seconds)] of the runs named prefix_<m>x, by multiple."""
    out = []
    for name, run in runs.items():
        tail = name[len(prefix) + 1:] if name.startswith(prefix + "_") else ""
        if tail.endswith("x") and tail[:-1].isdigit() and run.get("seconds") is not None:
            out.append((int(tail[:-1]), run["seconds"]))
    return sorted(out)


def load_table(env: dict, table: str, parts: list[dict[int, list]], *, create: bool) -> None:
    """Write each part (rows by cell time) and flush after it, and every FLUSH_ROWS rows;
    into a new table when ``create`` (an old one of that name is dropped first)."""
    from bench import datasets
    from bench.extras import _create, _flush, _write

    if create:
        conn = _create(env, table)
    else:
        host, port = env["HBASE2ES_TEST_HBASE"].rsplit(":", 1)
        conn = datasets.connect(host, int(port))
    try:
        for part in parts:
            unflushed = 0
            for ts in sorted(part):
                _write(conn, table, {ts: part[ts]})
                unflushed += len(part[ts])
                if unflushed >= FLUSH_ROWS:
                    _flush(conn, table)
                    unflushed = 0
            _flush(conn, table)
    finally:
        conn.close()


def compact(env: dict, tables: list[str], cap_s: float) -> dict:
    """Major-compact the history of every table, then wait (capped) for HBase to settle."""
    import time

    from bench import datasets
    from bench.report import server_pids
    from bench.run import DEVSERVERS

    host, port = env["HBASE2ES_TEST_HBASE"].rsplit(":", 1)
    began = time.monotonic()
    conn = datasets.connect(host, int(port))
    try:
        for table in tables:
            conn.compact_table(table, major=True)
    finally:
        conn.close()
    master = server_pids(DEVSERVERS).get("hbase-master")
    settled = datasets.wait_idle(master, cap_s) if master else False
    return {"compact_wait_seconds": round(time.monotonic() - began, 1), "settled": settled}


def load_tables(env: dict, tables: dict[int, str], per_day: int, changes: dict[int, list],
                start: int) -> dict:
    """Each table's days of history, compacted, then the same hour of changes on top."""
    import time

    from bench.run import log

    began = time.monotonic()
    for m, table in tables.items():
        log(f"history: loading {per_day * m} history rows into {table}, then the hour")
        load_table(env, table, [history_rows(per_day, m, start)], create=True)
    out = compact(env, list(tables.values()), cap_s=15 + per_day * max(tables) / 20000)
    for table in tables.values():
        load_table(env, table, [changes], create=False)
    out["seconds"] = round(time.monotonic() - began, 1)
    return out


def growths(runs: dict, cron_label: str) -> dict:
    """The line's ratios (wall seconds, and the slices' own seconds) and chart series."""
    slice_times = {name: {"seconds": run.get("slice_seconds")} for name, run in runs.items()}
    return {
        "history_growth": growth(runs, "cron"),
        "thrift1_growth": growth(runs, "thrift1"),
        "slice_seconds_growth": {prefix: growth(slice_times, prefix)
                                 for prefix in ("cron", "thrift1")},
        "series": {label: series(runs, prefix) for prefix, label in (
            ("cron", cron_label), ("thrift1", "default config (Thrift1)"))
            if series(runs, prefix)},
    }


def history_growth(cfg: dict, env: dict, failures: list[str], deadline: float) -> dict:
    """Issue 15: seconds to export one hour from tables with 1x and 20x older history."""
    from bench.datasets import WINDOW_START_MS
    from bench.extras import (_base_overrides, _check, _drop, _same_documents, index_digest,
                              repeat_runs, run_child, summarize)
    from bench.run import INDEX_BODY, log, reset_index
    from hbase2es.sections import HBaseSettings

    es = env["HBASE2ES_TEST_ES"]
    per_day, count = sizes(cfg["scale"])
    start, end = WINDOW_START_MS, WINDOW_START_MS + HOUR_MS
    changes, docs = window_rows(per_day, count, start)
    cron, cron_as = cron_overrides(env, {f.name for f in fields(HBaseSettings)})
    config = os.environ.get("BENCH_HISTORY_CONFIG", "").strip() or None
    if config:
        cron, cron_as = {}, f"BENCH_HISTORY_CONFIG={config}"
    tables = {m: f"bench_xhg{m}_{os.getpid()}" for m in HG_MULTIPLES}
    index = f"bench_xhg_{os.getpid()}"
    out = {"dataset": {"history_rows_per_day": per_day, "window_rows": count,
                       "days": list(HG_MULTIPLES), "columns": 5, "scale": cfg["scale"]},
           "window": [start, end], "documents": docs, "cron_config": cron_as,
           "measured_as": "run_export as the CLI runs it, default workers, one 1 h slice"}
    try:
        out["load"] = load_tables(env, tables, per_day, changes, start)
        runs = []
        for m, table in tables.items():
            base = {**_base_overrides(env, table, index, start, end, HOUR_MS)}
            del base["run.workers"]  # the default, as a cron line leaves it
            runs.append({"name": f"thrift1_{m}x", "kind": "export", "overrides": base})
            if cron or config:
                runs.append({"name": f"cron_{m}x", "kind": "export", "config": config,
                             "overrides": {**base, **cron}})
        if not (cron or config):
            out["cron_skipped"] = cron_as
            log(f"history: cron config skipped: {cron_as}")
        digests: dict[str, str] = {}

        def measure(run: dict, number: int) -> dict:
            reset_index(es, index, INDEX_BODY)
            raw = run_child(run, timeout=120 + per_day * max(tables) / 1000)
            _check(raw, docs, [docs], es, index)
            if number == 0:
                digests[run["name"]] = index_digest(es, index)[1]
            return {"docs": raw["docs"], "seconds": round(raw["seconds"], 3),
                    "docs_per_s": raw["docs"] / raw["seconds"],
                    "rows_read_per_doc": raw.get("rows_read", 0) / raw["docs"],
                    # The slice's own time, without the run's start (workers, connections).
                    "slice_seconds": raw.get("slice_seconds"),
                    "cpu_us_per_doc": (raw["cpu_self_s"] + raw["cpu_children_s"]) * 1e6
                    / raw["docs"]}

        # One untimed pass first: the first scan of a new table through a Thrift server
        # (region lookups, the server's connection) took seconds here, on 1x more than 20x.
        out["strategies"] = {}
        for run in runs:
            reset_index(es, index, INDEX_BODY)
            warm = run_child(run, timeout=120 + per_day * max(tables) / 1000)
            out["strategies"][run["name"]] = warm.get("strategies")
        results, info = repeat_runs(runs, cfg["repeat"], deadline, measure, "history", failures)
        out.update(info)
        out["runs"] = {name: summarize(r, ("rows_read_per_doc", "cpu_us_per_doc",
                                           "slice_seconds"))
                       for name, r in results.items() if r}
        out["same_documents"] = _same_documents(digests, failures, "history")
        out.update(growths(out["runs"], "BENCH_HISTORY_CONFIG" if config
                           else "cron config (Thrift2)"))
    finally:
        for table in tables.values():
            _drop(env, table, index)
    return out


def table_text(out: dict) -> str:
    """The line's plain-text table, for the bench's output."""
    if not out.get("runs"):
        return "history growth: " + str(out.get("error") or out.get("skipped") or "no runs")
    d = out["dataset"]
    head = f"{'run':<12} {'history':>8} {'seconds':>8} {'slice s':>8} {'docs/s':>8} " \
           f"{'rows read/doc':>13} {'CPU us/doc':>10}"
    lines = [f"history growth (issue 15): {d['window_rows']:,} rows changed in the 1 h "
             f"window, {d['history_rows_per_day']:,} history rows a day; cron config: "
             f"{out['cron_config']}", head]
    for name, run in out["runs"].items():
        days = name.rsplit("_", 1)[-1]
        read = run.get("rows_read_per_doc")
        sliced = run.get("slice_seconds")
        lines.append(f"{name:<12} {days:>8} {run['seconds']:>8.2f} "
                     f"{'-' if sliced is None else f'{sliced:.2f}':>8} {run['docs_per_s']:>8,} "
                     f"{'-' if read is None else f'{read:.2f}':>13} "
                     f"{run.get('cpu_us_per_doc', 0):>10.1f}")
    lines.append(f"history_growth (cron, 20x / 1x seconds): {out.get('history_growth')}; "
                 f"default Thrift1: {out.get('thrift1_growth')}; slice seconds only: "
                 f"{out.get('slice_seconds_growth')}")
    return "\n".join(lines)
