"""Extra lines of `make bench`, each on data of its own (issues 6, 10, 9 and 16).

- ``time_sources`` (issue 6): rows whose time is both in the row key (1-byte salt of 4
  buckets + 8-byte big-endian epoch ms + a 4-byte sequence number) and the cell
  timestamp; the same window exported with ``time_source = "cell"`` and ``"rowkey"``.
  Reported: docs/s and rows HBase returned per exported row. Expected: ~(N+1)/2 rows per
  document for the cell source on N slices (Thrift1 has no lower time bound), 1 for
  the row-key source (a slice is a key range).
- ``thrift_apis`` (issue 10): "small changes per slice": base rows written a day before
  the window, then in each of 24 hourly slices one column of a small share (2 %) of the
  rows rewritten with a timestamp inside that hour. The window exported with
  ``[hbase] api = "thrift1"`` and ``"thrift2"``. Reported: docs/s, rows and cells read
  per exported document, and for Thrift2 the row keys its time-ranged scans found.
- ``reconcile_vs_verify`` (issue 16): bench/reconcile_line.py; seconds per 100k
  documents of a ``reconcile`` dry run against ``verify`` on the same exported window.
- ``spark_local`` (issue 9): the main dataset (the one the main runs use, same slices)
  exported with ``run.executor = "spark"`` on ``local[2]`` against the local pool with 2
  workers. Spark's start (JVM + SparkContext) is timed apart from the export.

The first two lines run the slice job the way one pool worker does: one
``SliceExporter`` (its connections opened before the clock starts), the slices in order,
in a fresh child process. That is what gives ``rows_read`` per slice (the run report
does not carry it), and both sides of each comparison are run the same way.

Every run writes into a fresh ``bench_*`` index (the main runs' index settings) and is
checked: documents reported, documents in the index and rows per slice must be exactly
the expected ones, and both sides of a line must write the same documents (a digest of
every ``_id`` and ``_source``); a mismatch is a failure of the benchmark (exit 1).
Tables and indices are named ``bench_x*_<pid>`` and dropped at the end.

Environment: ``BENCH_EXTRAS`` = 1 (default: all lines), 0 (none), or a comma list of
line names; ``BENCH_SCALE``, ``BENCH_REPEAT`` and ``BENCH_SLICES`` as for the main runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.child import run_in_child  # noqa: E402 - needs ROOT on sys.path
from bench.reconcile_line import CHILD_KINDS as RECONCILE_KINDS  # noqa: E402
from bench.reconcile_line import reconcile_vs_verify, table_block  # noqa: E402

LINES = ("time_sources", "thrift_apis", "reconcile_vs_verify", "spark_local")

# time_sources: rows at scale 1.0, slices of the 24 h window, salt buckets.
TS_ROWS = 200_000
TS_SLICES = 8
TS_SALT_BUCKETS = 4
# thrift_apis: rows at scale 1.0, share of the rows changed per hourly slice.
API_ROWS = 100_000
API_SHARE = 0.02
API_HOURS = 24
HOUR_MS = 3_600_000
# Both: columns x value bytes of the generated rows.
COLUMNS = 5
VALUE_BYTES = 40
MIN_ROWS = 2000
SPARK_MASTER = "local[2]"
POOL_WORKERS = 2
FLUSH_ROWS = 100_000  # spark_local's load flushes the table after this many rows
# The three lines together get this much wall time per 0.1 of scale (at least once each).
BUDGET_S_PER_TENTH = 240.0


# --------------------------------------------------------------------------- entry point


def wanted_lines(error_class=ValueError) -> list[str]:
    """The lines BENCH_EXTRAS asks for; a bad value raises error_class with one line."""
    text = os.environ.get("BENCH_EXTRAS", "1").strip() or "1"
    if text == "1":
        return list(LINES)
    if text == "0":
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in LINES:
            raise error_class(f"BENCH_EXTRAS={text!r}: unknown line {name!r}; expected 0, 1 "
                              f"or a comma list of {', '.join(LINES)}")
    return names


def run_all(cfg: dict, env: dict, failures: list[str], deadline: float,
            error_class=ValueError) -> dict:
    """Run the wanted extra lines; return their results for ``latest.json``'s ``extras``.

    A failed check is appended to ``failures`` (the benchmark then exits 1); a bad
    BENCH_EXTRAS raises ``error_class`` (bench/run.py passes its BenchError: exit 2).
    """
    from bench.run import log

    lines = wanted_lines(error_class)
    if not lines:
        log("extras: off (BENCH_EXTRAS=0)")
        return {"skipped": "BENCH_EXTRAS=0"}
    started = time.monotonic()
    budget_end = min(deadline, started + BUDGET_S_PER_TENTH * max(1.0, cfg["scale"] / 0.1))
    out: dict = {}
    for number, name in enumerate(lines):
        share = (budget_end - time.monotonic()) / (len(lines) - number)
        line_deadline = time.monotonic() + max(share, 0.0)
        line_started = time.monotonic()
        try:
            out[name] = LINE_FUNCTIONS[name](cfg, env, failures, line_deadline)
        except Exception as exc:  # noqa: BLE001 - one broken line must not lose the others
            traceback.print_exc()
            failures.append(f"extras/{name}: {type(exc).__name__}: {exc}"[:1000])
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
        out[name]["line_seconds"] = round(time.monotonic() - line_started, 1)
    out["seconds"] = round(time.monotonic() - started, 1)
    text = tables(out)
    print("\n" + text + "\n", flush=True)
    try:
        (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
        (ROOT / "bench" / "results" / "latest-extras.md").write_text(markdown(out) + "\n")
    except OSError as exc:
        log(f"extras: could not write latest-extras.md: {exc}")
    return out


# --------------------------------------------------------------------------- shared helpers


def _scaled(rows: int, scale: float) -> int:
    return max(MIN_ROWS, int(rows * scale))


def _names(tag: str) -> tuple[str, str]:
    """Table and index of a line: bench_x<tag>_<pid> (orphans are found by their pid)."""
    name = f"bench_x{tag}_{os.getpid()}"
    return name, name


def _values(key: bytes) -> dict[bytes, bytes]:
    """COLUMNS printable values of VALUE_BYTES derived from the row key (deterministic)."""
    import base64

    raw = hashlib.shake_128(key).digest(COLUMNS * VALUE_BYTES)
    text = base64.b64encode(raw)
    return {b"cf:c%02d" % c: text[c * VALUE_BYTES:(c + 1) * VALUE_BYTES]
            for c in range(COLUMNS)}


def _write(conn, table: str, rows_by_ts: dict[int, list[tuple[bytes, dict[bytes, bytes]]]]
           ) -> None:
    """Write rows grouped by cell timestamp, one mutateRowsTs per batch, without the WAL."""
    from bench import datasets

    client, name = conn.client, table.encode()
    for ts in sorted(rows_by_ts):
        rows = rows_by_ts[ts]
        for first in range(0, len(rows), datasets.LOAD_ROWS_PER_CALL):
            batch = [datasets.BatchMutation(key, [
                datasets.Mutation(isDelete=False, column=column, value=value, writeToWAL=False)
                for column, value in values.items()])
                for key, values in rows[first:first + datasets.LOAD_ROWS_PER_CALL]]
            client.mutateRowsTs(name, batch, ts, {})


def _flush(conn, table: str) -> None:
    # Thrift1 has no flush call; closing the regions (disable) flushes their memstores.
    conn.disable_table(table)
    conn.enable_table(table)


def _create(env: dict, table: str):
    from bench import datasets

    host, port = env["HBASE2ES_TEST_HBASE"].rsplit(":", 1)
    conn = datasets.connect(host, int(port))
    datasets.drop_table(conn, table)
    conn.create_table(table, {"cf": {"max_versions": 1}})
    return conn


def _drop(env: dict, table: str, index: str) -> None:
    from bench import datasets
    from bench.run import drop_index, log

    try:
        drop_index(env["HBASE2ES_TEST_ES"], index)
    except Exception as exc:  # noqa: BLE001 - cleanup is best effort; orphans go next run
        log(f"extras: could not drop index {index}: {exc}")
    host, port = env["HBASE2ES_TEST_HBASE"].rsplit(":", 1)
    try:
        conn = datasets.connect(host, int(port))
        try:
            datasets.drop_table(conn, table)
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001
        log(f"extras: could not drop table {table}: {exc}")


def _base_overrides(env: dict, table: str, index: str, start_ms: int, end_ms: int,
                    slice_ms: int) -> dict:
    host, port = env["HBASE2ES_TEST_HBASE"].rsplit(":", 1)
    return {
        "hbase.host": host, "hbase.port": int(port), "hbase.table": table,
        "elasticsearch.hosts": [env["HBASE2ES_TEST_ES"]], "elasticsearch.index": index,
        "window.start": str(start_ms), "window.end": str(end_ms), "window.slice": f"{slice_ms}ms",
        "run.workers": 1, "run.quiet": True, "run.log_level": "warning",
    }


def _thrift2_address(env: dict) -> str | None:
    # Whatever BENCH_THRIFT2 says about the main runs: comparing the APIs is this line's job.
    return env.get("HBASE2ES_TEST_HBASE_THRIFT2") or None


def run_child(spec: dict, timeout: float) -> dict:
    """One measured run in a fresh interpreter (``python -m bench.extras --child``)."""
    return run_in_child([sys.executable, "-m", "bench.extras", "--child", json.dumps(spec)],
                        spec["name"], "EXTRAS_RESULT ", timeout)


def index_digest(es: str, index: str) -> tuple[int, str]:
    """(documents, sha-256 over every _id and _source, in _id order) of an index."""
    from bench.run import _http

    _http("POST", f"{es}/{index}/_refresh")
    found = []
    page = _http("POST", f"{es}/{index}/_search?scroll=2m",
                 {"size": 5000, "sort": ["_doc"], "track_total_hits": True})
    scroll = page.get("_scroll_id")
    try:
        while page["hits"]["hits"]:
            for hit in page["hits"]["hits"]:
                source = json.dumps(hit["_source"], sort_keys=True, separators=(",", ":"))
                found.append(f"{hit['_id']}\t{source}")
            page = _http("POST", f"{es}/_search/scroll", {"scroll": "2m", "scroll_id": scroll})
            scroll = page.get("_scroll_id", scroll)
    finally:
        if scroll:
            try:
                _http("DELETE", f"{es}/_search/scroll", {"scroll_id": scroll}, ok404=True)
            except Exception:  # noqa: BLE001 - the scroll expires by itself
                pass
    found.sort()
    digest = hashlib.sha256("\n".join(found).encode()).hexdigest()
    return len(found), digest


def repeat_runs(runs: list[dict], repeat: int, deadline: float, measure, label: str,
                failures: list[str]) -> tuple[dict[str, list[dict]], dict]:
    """Each run ``repeat`` times (order shifted per repeat), medians taken by the caller.

    Once another repeat would pass the deadline no further repeat starts (at least one
    runs). A failed run is recorded and not repeated.
    """
    from bench.run import log

    results: dict[str, list[dict]] = {run["name"]: [] for run in runs}
    errors: dict[str, str] = {}
    info: dict = {"repeats_done": 0}
    for number in range(repeat):
        began = time.monotonic()
        shift = number * len(runs) // repeat
        for run in runs[shift:] + runs[:shift]:
            if run["name"] in errors:
                continue
            try:
                result = measure(run, number)
            except Exception as exc:  # noqa: BLE001 - recorded; the bench exits 1
                errors[run["name"]] = str(exc)[:1000]
                failures.append(f"extras/{label}/{run['name']}: {exc}"[:1000])
                log(f"  {label}/{run['name']:<14} FAILED: {str(exc)[:300]}")
                continue
            results[run["name"]].append(result)
            log(f"  {label}/{run['name']:<14} repeat {number + 1}/{repeat}: "
                f"{result['docs_per_s']:>9,.0f} docs/s  {result['seconds']:6.2f}s")
        info["repeats_done"] = number + 1
        took = time.monotonic() - began
        if number + 1 < repeat and time.monotonic() + took > deadline:
            info["repeats_cut"] = (f"{number + 1} of {repeat} repeats: another ({took:.0f}s) "
                                   "would overrun the extras' time budget")
            log(f"  {label}: stopping after {info['repeats_cut']}")
            break
    if errors:
        info["errors"] = errors
    return results, info


def summarize(repeats: list[dict], keys: tuple[str, ...] = ()) -> dict:
    """Median docs/s (with min and max), median seconds, and the median of each key."""
    rates = [r["docs_per_s"] for r in repeats]
    out = {"docs": repeats[0]["docs"], "docs_per_s": round(statistics.median(rates)),
           "min": round(min(rates)), "max": round(max(rates)),
           "seconds": round(statistics.median(r["seconds"] for r in repeats), 3),
           "repeats": len(repeats)}
    for key in keys:
        values = [r[key] for r in repeats if r.get(key) is not None]
        if values:
            out[key] = round(statistics.median(values), 2)
    return out


def _check(result: dict, expected_docs: int, expected_slices: list[int], es: str,
           index: str) -> None:
    """Exact counts: reported, per slice, and in the index."""
    from bench.run import count_docs

    if result["docs"] != expected_docs:
        raise RuntimeError(f"reported {result['docs']} documents, expected {expected_docs}")
    if result.get("failed") or result.get("stale"):
        raise RuntimeError(f"{result.get('failed')} failed and {result.get('stale')} stale "
                           "documents, expected none")
    if result["slice_rows"] != expected_slices:
        raise RuntimeError(f"rows per slice {result['slice_rows']}, expected {expected_slices}")
    found = count_docs(es, index)
    if found != expected_docs:
        raise RuntimeError(f"index holds {found} documents, expected {expected_docs}")


def _same_documents(digests: dict[str, str], failures: list[str], label: str) -> bool | None:
    """All runs of a line wrote the same documents; a difference is a failure."""
    if len(digests) < 2:
        return None
    if len(set(digests.values())) == 1:
        return True
    failures.append(f"extras/{label}: the runs wrote different documents: {digests}")
    return False


# --------------------------------------------------------------------------- line 1: issue 6


def _ts_rows(rows: int) -> tuple[dict[int, list], list[int]]:
    """Rows by timestamp, and every row's time, for the time_sources table."""
    from bench.datasets import SEED, TIMESTAMPS, timestamp_of_bucket

    rng = random.Random(SEED + 6)
    by_ts: dict[int, list] = {}
    times = []
    for i in range(rows):
        # The main datasets' 1000 instants: every slice boundary of an 8-slice window is
        # one of them, so rows sit exactly on boundaries.
        t = timestamp_of_bucket(rng.randrange(TIMESTAMPS))
        key = bytes([i % TS_SALT_BUCKETS]) + t.to_bytes(8, "big") + i.to_bytes(4, "big")
        by_ts.setdefault(t, []).append((key, _values(key)))
        times.append(t)
    return by_ts, times


def time_sources(cfg: dict, env: dict, failures: list[str], deadline: float) -> dict:
    """Issue 6: the cell and row-key time sources on the same rows."""
    from bench.datasets import WINDOW_MS, WINDOW_START_MS
    from bench.run import INDEX_BODY, log, reset_index

    es = env["HBASE2ES_TEST_ES"]
    rows = _scaled(TS_ROWS, cfg["scale"])
    table, index = _names("ts")
    slice_ms = WINDOW_MS // TS_SLICES
    start, end = WINDOW_START_MS, WINDOW_START_MS + WINDOW_MS
    slices = [(s, s + slice_ms) for s in range(start, end, slice_ms)]
    by_ts, times = _ts_rows(rows)
    expected_slices = [sum(1 for t in times if s <= t < e) for s, e in slices]
    expected_read = {"cell": sum(sum(1 for t in times if t < e) for _s, e in slices),
                     "rowkey": rows}
    out = {"dataset": {"rows": rows, "columns": COLUMNS, "value_bytes": VALUE_BYTES,
                       "row_key": f"1-byte salt ({TS_SALT_BUCKETS} buckets) + 8-byte "
                                  "big-endian epoch ms + 4-byte sequence number",
                       "cell_timestamp": "the time in the key", "scale": cfg["scale"]},
           "slices": TS_SLICES, "slice_ms": slice_ms, "rows_per_slice": expected_slices,
           "measured_as": "one SliceExporter (one pool worker), slices in order, Thrift1"}
    config = tempfile.NamedTemporaryFile("w", suffix=".toml", prefix="bench_x_", delete=False)
    with config:
        # [window.rowkey] is a sub-table: it comes from a TOML file, not from overrides.
        config.write('[window.rowkey]\nencoding = "epoch_ms_be"\n'
                     f"salt_buckets = {TS_SALT_BUCKETS}\nsalt_format = \"byte\"\n")
    try:
        log(f"extras/time_sources: loading {rows} rows into {table}")
        began = time.monotonic()
        conn = _create(env, table)
        try:
            _write(conn, table, by_ts)
            _flush(conn, table)
        finally:
            conn.close()
        out["load_seconds"] = round(time.monotonic() - began, 1)
        base = _base_overrides(env, table, index, start, end, slice_ms)
        runs = [{"name": source, "kind": "slices", "config": config.name,
                 "overrides": {**base, "window.time_source": source}, "slices": slices}
                for source in ("cell", "rowkey")]
        digests: dict[str, str] = {}

        def measure(run: dict, number: int) -> dict:
            reset_index(es, index, INDEX_BODY)
            raw = run_child(run, timeout=120 + rows / 100)
            _check(raw, rows, expected_slices, es, index)
            if number == 0:
                digests[run["name"]] = index_digest(es, index)[1]
            return _per_doc(raw, COLUMNS)

        results, info = repeat_runs(runs, cfg["repeat"], deadline, measure, "time_sources",
                                    failures)
        out.update(info)
        out["runs"] = {name: {**summarize(r, PER_DOC_KEYS),
                              "expected_rows_read_per_doc": round(expected_read[name] / rows, 2)}
                       for name, r in results.items() if r}
        out["same_documents"] = _same_documents(digests, failures, "time_sources")
        cell, rowkey = out["runs"].get("cell"), out["runs"].get("rowkey")
        if cell and rowkey:
            out["rowkey_vs_cell_docs_per_s"] = round(rowkey["docs_per_s"] / cell["docs_per_s"], 2)
    finally:
        os.unlink(config.name)
        _drop(env, table, index)
    return out


PER_DOC_KEYS = ("rows_read_per_doc", "keys_scanned_per_doc", "cells_read_per_doc",
                "cpu_us_per_doc")


def _per_doc(raw: dict, columns: int) -> dict:
    """Rates and per-document figures of one slice-job run."""
    docs, seconds = raw["docs"], raw["seconds"]
    keys = raw.get("keys_scanned")
    cells = raw["rows_read"] * columns + (keys or 0)  # a key-only scan returns 1 cell a row
    return {"docs": docs, "seconds": round(seconds, 3), "docs_per_s": docs / seconds,
            "rows_read": raw["rows_read"], "rows_read_per_doc": raw["rows_read"] / docs,
            "keys_scanned_per_doc": keys / docs if keys is not None else None,
            "cells_read_per_doc": cells / docs,
            "cpu_us_per_doc": (raw["cpu_self_s"] + raw["cpu_children_s"]) * 1e6 / docs}


# --------------------------------------------------------------------------- line 2: issue 10


def _api_rows(rows: int) -> tuple[dict[int, list], dict[int, list], list[int], int]:
    """Base rows (a day before the window), the hourly changes, per-hour counts, base time."""
    from bench.datasets import SEED, WINDOW_START_MS

    base_ts = WINDOW_START_MS - 24 * HOUR_MS
    keys = [b"row%09d" % i for i in range(rows)]
    base = {base_ts: [(key, _values(key)) for key in keys]}
    per_hour = max(1, round(rows * API_SHARE))
    rng = random.Random(SEED + 10)
    changed = rng.sample(range(rows), per_hour * API_HOURS)  # each row changes at most once
    changes: dict[int, list] = {}
    for hour in range(API_HOURS):
        column = b"cf:c%02d" % (hour % COLUMNS)
        for n, i in enumerate(changed[hour * per_hour:(hour + 1) * per_hour]):
            # Whole minutes (few distinct timestamps, so few write calls); the first change
            # of every hour sits exactly on the slice boundary.
            ts = WINDOW_START_MS + hour * HOUR_MS + (0 if n == 0 else rng.randrange(60) * 60_000)
            value = (b"changed-h%02d-" % hour + keys[i]).ljust(VALUE_BYTES, b".")
            changes.setdefault(ts, []).append((keys[i], {column: value}))
    return base, changes, [per_hour] * API_HOURS, base_ts


def thrift_apis(cfg: dict, env: dict, failures: list[str], deadline: float) -> dict:
    """Issue 10: Thrift1 against Thrift2 on hourly slices that each change 2 % of the rows."""
    from bench.datasets import WINDOW_START_MS
    from bench.run import INDEX_BODY, log, reset_index

    es = env["HBASE2ES_TEST_ES"]
    rows = _scaled(API_ROWS, cfg["scale"])
    table, index = _names("api")
    start, end = WINDOW_START_MS, WINDOW_START_MS + API_HOURS * HOUR_MS
    slices = [(s, s + HOUR_MS) for s in range(start, end, HOUR_MS)]
    base, changes, expected_slices, base_ts = _api_rows(rows)
    docs = sum(expected_slices)
    out = {"dataset": {"rows": rows, "columns": COLUMNS, "value_bytes": VALUE_BYTES,
                       "changed_per_slice": expected_slices[0], "share_per_slice": API_SHARE,
                       "base_written_at": base_ts, "scale": cfg["scale"],
                       "store_files": "base flushed, then the changes flushed (no compaction)"},
           "slices": len(slices), "slice_ms": HOUR_MS, "documents": docs,
           "measured_as": "one SliceExporter (one pool worker), slices in order, cell time"}
    thrift2 = _thrift2_address(env)
    try:
        log(f"extras/thrift_apis: loading {rows} base rows and {docs} changes into {table}")
        began = time.monotonic()
        conn = _create(env, table)
        try:
            _write(conn, table, base)
            _flush(conn, table)
            _write(conn, table, changes)
            _flush(conn, table)
        finally:
            conn.close()
        out["load_seconds"] = round(time.monotonic() - began, 1)
        base_overrides = _base_overrides(env, table, index, start, end, HOUR_MS)
        runs = [{"name": "thrift1", "kind": "slices", "overrides": base_overrides,
                 "slices": slices}]
        if thrift2:
            host, port = thrift2.rsplit(":", 1)
            runs.append({"name": "thrift2", "kind": "slices", "slices": slices,
                         "overrides": {**base_overrides, "hbase.api": "thrift2",
                                       "hbase.host": host, "hbase.port": int(port)}})
        else:
            out["thrift2_skipped"] = ("no Thrift2 server: HBASE2ES_TEST_HBASE_THRIFT2 is not set "
                                      "(`make servers` starts one)")
            if cfg.get("thrift2") == "1":
                failures.append(f"extras/thrift_apis: BENCH_THRIFT2=1 but {out['thrift2_skipped']}")
            log(f"extras/thrift_apis: thrift2 skipped: {out['thrift2_skipped']}")
        digests: dict[str, str] = {}

        def measure(run: dict, number: int) -> dict:
            reset_index(es, index, INDEX_BODY)
            raw = run_child(run, timeout=120 + rows * API_HOURS / 2000)
            _check(raw, docs, expected_slices, es, index)
            if number == 0:
                digests[run["name"]] = index_digest(es, index)[1]
            return _per_doc(raw, COLUMNS)

        results, info = repeat_runs(runs, cfg["repeat"], deadline, measure, "thrift_apis",
                                    failures)
        out.update(info)
        out["runs"] = {name: summarize(r, PER_DOC_KEYS) for name, r in results.items() if r}
        out["same_documents"] = _same_documents(digests, failures, "thrift_apis")
        one, two = out["runs"].get("thrift1"), out["runs"].get("thrift2")
        if one and two:
            out["thrift2_vs_thrift1_docs_per_s"] = round(two["docs_per_s"] / one["docs_per_s"], 2)
    finally:
        _drop(env, table, index)
    return out


# --------------------------------------------------------------------------- line 3: issue 9


def spark_local(cfg: dict, env: dict, failures: list[str], deadline: float) -> dict:
    """Issue 9: the Spark executor on local[2] against the local pool with 2 workers."""
    import importlib.util

    from bench import datasets
    from bench.report import server_pids
    from bench.run import DEVSERVERS, INDEX_BODY, log, reset_index

    if importlib.util.find_spec("pyspark") is None:
        note = "pyspark is not importable (pip install 'hbase2es[spark]'): spark_local skipped"
        log(f"extras/spark_local: {note}")
        return {"skipped": note}
    es = env["HBASE2ES_TEST_ES"]
    host, port = env["HBASE2ES_TEST_HBASE"].rsplit(":", 1)
    name = "M" if "M" in cfg["datasets"] else cfg["datasets"][0]
    ds = datasets.dataset(name, cfg["scale"])
    table, index = _names("spark")
    slice_ms = -(-datasets.WINDOW_MS // cfg["slices"])
    start, end = datasets.WINDOW_START_MS, datasets.WINDOW_START_MS + datasets.WINDOW_MS
    slices = [(s, min(s + slice_ms, end)) for s in range(start, end, slice_ms)]
    expected_slices = datasets.rows_by_slice(ds, slices)
    thrift2 = _thrift2_address(env)
    regions = cfg["regions"] if thrift2 else 1
    out = {"dataset": ds.describe(), "slices": len(slices), "slice_ms": slice_ms,
           "spark_master": SPARK_MASTER, "pool_workers": POOL_WORKERS}
    try:
        log(f"extras/spark_local: loading dataset {name} ({ds.rows} rows) into {table}")
        out["load"] = load_flushed(ds, env, table, regions, thrift2)
        out["load"].update(datasets.compact_and_settle(
            host, int(port), table, server_pids(DEVSERVERS).get("hbase-master"),
            cap_s=60 + ds.rows / 5000))
        base = _base_overrides(env, table, index, start, end, slice_ms)
        runs = [{"name": "spark_local", "kind": "export",
                 "overrides": {**base, "run.executor": "spark", "spark.master": SPARK_MASTER}},
                {"name": f"pool_w{POOL_WORKERS}", "kind": "export",
                 "overrides": {**base, "run.workers": POOL_WORKERS}}]

        digests: dict[str, str] = {}

        def measure(run: dict, number: int) -> dict:
            reset_index(es, index, INDEX_BODY)
            raw = run_child(run, timeout=240 + ds.rows / 200)
            _check(raw, ds.rows, expected_slices, es, index)
            if number == 0:
                digests[run["name"]] = index_digest(es, index)[1]
            docs, seconds = raw["docs"], raw["seconds"]
            result = {"docs": docs, "seconds": round(seconds, 3), "docs_per_s": docs / seconds}
            if raw.get("start_seconds") is not None:
                cold = seconds + raw["start_seconds"]
                result.update(start_seconds=round(raw["start_seconds"], 3),
                              cold_seconds=round(cold, 3), cold_docs_per_s=docs / cold)
            return result

        results, info = repeat_runs(runs, cfg["repeat"], deadline, measure, "spark_local",
                                    failures)
        out.update(info)
        out["runs"] = {name: summarize(r, ("start_seconds", "cold_seconds", "cold_docs_per_s"))
                       for name, r in results.items() if r}
        out["same_documents"] = _same_documents(digests, failures, "spark_local")
        spark, pool = out["runs"].get("spark_local"), out["runs"].get(f"pool_w{POOL_WORKERS}")
        if spark and pool:
            out["spark_vs_pool_docs_per_s"] = round(spark["docs_per_s"] / pool["docs_per_s"], 2)
            if spark.get("cold_docs_per_s"):
                out["spark_cold_vs_pool_docs_per_s"] = round(
                    spark["cold_docs_per_s"] / pool["docs_per_s"], 2)
    finally:
        _drop(env, table, index)
    return out


def load_flushed(ds, env: dict, table: str, regions: int, thrift2: str | None) -> dict:
    """The rows of a main dataset (as datasets.load writes them), flushed every FLUSH_ROWS.

    The standalone HBase shares one heap between memstores, block cache and ZooKeeper;
    half a million rows written without the WAL in one go, after the earlier lines had
    filled the block cache, ran a 1 GiB heap out of memory (OutOfMemoryError, the server
    died). Flushing as we go keeps the memstores small whatever the heap; the table ends
    with the same rows, regions and timestamps.
    """
    from bench import datasets

    host, port = env["HBASE2ES_TEST_HBASE"].rsplit(":", 1)
    conn = datasets.connect(host, int(port))
    try:
        datasets.drop_table(conn, table)
        if regions > 1 and thrift2:
            datasets.create_presplit(thrift2, table, datasets.split_keys(ds, regions))
            presplit = f"{regions} regions, created through Thrift2 createTable"
        else:
            conn.create_table(table, {"cf": {"max_versions": 1}})
            presplit = "one region"
        began = time.monotonic()
        by_bucket: list[list[int]] = [[] for _ in range(datasets.TIMESTAMPS)]
        for i, bucket in enumerate(datasets.buckets(ds)):
            by_bucket[bucket].append(i)
        unflushed = flushes = 0
        for bucket, rows in enumerate(by_bucket):
            ts = datasets.timestamp_of_bucket(bucket)
            _write(conn, table, {ts: [(datasets.row_key(i), datasets.row_values(ds, i))
                                      for i in rows]})
            unflushed += len(rows)
            if unflushed >= FLUSH_ROWS:
                _flush(conn, table)
                unflushed, flushes = 0, flushes + 1
        _flush(conn, table)
        seconds = time.monotonic() - began
        return {"load_seconds": round(seconds, 2), "load_rows_per_s": round(ds.rows / seconds),
                "flushes": flushes + 1, "presplit": presplit}
    finally:
        conn.close()


LINE_FUNCTIONS = {"time_sources": time_sources, "thrift_apis": thrift_apis,
                  "reconcile_vs_verify": reconcile_vs_verify,
                  "spark_local": spark_local}


# --------------------------------------------------------------------------- child runs


def child_slices(spec: dict, watch) -> dict:
    """The slices in order through one SliceExporter, as one pool worker runs them."""
    from hbase2es.run.report import setup_logging
    from hbase2es.settings import load_settings
    from hbase2es.run.slicejob import SliceExporter
    from hbase2es.timewindow import Slice

    setup_logging("warning")
    settings = load_settings(spec.get("config"), spec["overrides"],
                             now_ms=int(time.time() * 1000))
    exporter = SliceExporter(settings)  # a worker's connections, opened before the clock
    try:
        watch.start()
        results = [exporter.run(Slice(i, s, e)) for i, (s, e) in enumerate(spec["slices"])]
        watch.stop()
        keys = getattr(exporter.reader, "keys_scanned", None)
    finally:
        exporter.close()
    return {"docs": sum(r.indexed for r in results), "failed": sum(r.failed for r in results),
            "stale": sum(r.stale for r in results), "slice_rows": [r.rows for r in results],
            "rows_read": sum(r.rows_read for r in results), "keys_scanned": keys}


def child_export(spec: dict, watch) -> dict:
    """hbase2es.export.run_export as the CLI runs it; Spark's start is timed apart."""
    from contextlib import nullcontext

    from hbase2es.run.export import run_export
    from hbase2es.run.report import setup_logging
    from hbase2es.settings import load_settings

    setup_logging("warning")
    settings = load_settings(spec.get("config"), spec["overrides"],
                             now_ms=int(time.time() * 1000))
    context, start_seconds = nullcontext(), None
    if settings.run.executor == "spark":
        from hbase2es.run import spark as spark_executor

        # run_export reuses a running SparkContext: started here, the JVM's start-up is
        # measured on its own and the export's time is the slices' time.
        began = time.perf_counter()
        context = spark_executor._spark_context(settings)
        context.__enter__()
        start_seconds = time.perf_counter() - began
    try:
        watch.start()
        report = run_export(settings)
        watch.stop()
    finally:
        if start_seconds is not None:
            context.__exit__(None, None, None)
    if int(report.exit_code) != 0:
        bad = [s.to_dict() for s in report.slices if s.status != "done"][:3]
        raise RuntimeError(f"hbase2es exited with {int(report.exit_code)}: {bad}")
    totals = report.totals()
    return {"docs": totals["indexed"], "failed": totals["failed"], "stale": totals["stale"],
            "slice_rows": [s.rows for s in report.slices], "start_seconds": start_seconds,
            "rows_read": sum(s.rows_read for s in report.slices),
            "slice_seconds": sum(s.seconds for s in report.slices),
            "strategies": strategies(report)}


def strategies(report) -> list[str]:
    """The read strategies the run's slices report (issue 15), when the report has them."""
    found = {entry.get("strategy") for entry in report.to_dict()["slices"]}
    return sorted(str(s) for s in found if s)


CHILD_KINDS = {"slices": child_slices, "export": child_export, **RECONCILE_KINDS}


def child_main(spec: dict) -> int:
    from bench.child import child_main as run_kind

    return run_kind(CHILD_KINDS, spec, "EXTRAS_RESULT ", start_watch=False)


# --------------------------------------------------------------------------- output


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _rows(out: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each line that ran."""
    blocks = []
    ts = out.get("time_sources", {})
    if ts.get("runs"):
        d = ts["dataset"]
        title = (f"time sources (issue 6): {d['rows']:,} rows, {ts['slices']} slices, same rows "
                 f"with time in the key and in the cell; one worker, Thrift1")
        head = ["time_source", "docs", "docs/s", "min", "max", "seconds", "rows read/doc",
                "expected", "CPU us/doc"]
        rows = [[name, f"{r['docs']:,}", f"{r['docs_per_s']:,}", f"{r['min']:,}",
                 f"{r['max']:,}", f"{r['seconds']:.2f}", _fmt(r.get("rows_read_per_doc"), ".2f"),
                 _fmt(r.get("expected_rows_read_per_doc"), ".2f"),
                 _fmt(r.get("cpu_us_per_doc"), ".1f")] for name, r in ts["runs"].items()]
        blocks.append((title, head, rows))
    api = out.get("thrift_apis", {})
    if api.get("runs"):
        d = api["dataset"]
        title = (f"Thrift1 vs Thrift2 (issue 10): {d['rows']:,} rows, {api['slices']} hourly "
                 f"slices each changing {d['changed_per_slice']:,} rows "
                 f"({d['share_per_slice']:.0%}); one worker, cell time")
        head = ["api", "docs", "docs/s", "min", "max", "seconds", "rows read/doc",
                "keys scanned/doc", "cells read/doc", "CPU us/doc"]
        rows = [[name, f"{r['docs']:,}", f"{r['docs_per_s']:,}", f"{r['min']:,}",
                 f"{r['max']:,}", f"{r['seconds']:.2f}", _fmt(r.get("rows_read_per_doc"), ".2f"),
                 _fmt(r.get("keys_scanned_per_doc"), ".2f"),
                 _fmt(r.get("cells_read_per_doc"), ".2f"), _fmt(r.get("cpu_us_per_doc"), ".1f")]
                for name, r in api["runs"].items()]
        blocks.append((title, head, rows))
    sp = out.get("spark_local", {})
    if sp.get("runs"):
        d = sp["dataset"]
        title = (f"Spark {sp['spark_master']} vs local pool (issue 9): dataset {d['name']} "
                 f"({d['rows']:,} rows x {d['columns']} cols x {d['value_bytes']} B), "
                 f"{sp['slices']} slices")
        head = ["executor", "docs", "docs/s", "min", "max", "seconds", "start s",
                "docs/s incl. start"]
        rows = [[name, f"{r['docs']:,}", f"{r['docs_per_s']:,}", f"{r['min']:,}",
                 f"{r['max']:,}", f"{r['seconds']:.2f}", _fmt(r.get("start_seconds"), ".2f"),
                 _fmt(round(r["cold_docs_per_s"]) if r.get("cold_docs_per_s") else None, ",")]
                for name, r in sp["runs"].items()]
        blocks.append((title, head, rows))
    blocks += table_block(out)
    return blocks


def _notes(out: dict) -> list[str]:
    notes = []
    for name in LINES:
        line = out.get(name, {})
        for key in ("skipped", "error", "thrift2_skipped", "repeats_cut"):
            if line.get(key):
                notes.append(f"{name}: {key}: {line[key]}")
        if line.get("same_documents") is not None:
            notes.append(f"{name}: same documents from every run: {line['same_documents']}")
    return notes


def tables(out: dict) -> str:
    """Plain-text tables of the extra lines, with their notes."""
    parts = []
    for title, head, rows in _rows(out):
        widths = [max(len(x) for x in column) for column in zip(head, *rows)]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(row, widths))) for row in [head, *rows]]
        parts.append(title + "\n" + "\n".join(lines))
    parts += _notes(out)
    return "\n\n".join(parts) if parts else "extras: nothing ran"


def markdown(out: dict) -> str:
    """The same tables in Markdown, for the README."""
    parts = []
    for title, head, rows in _rows(out):
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        parts.append(f"{title}\n\n" + "\n".join(lines))
    notes = _notes(out)
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes))
    return "\n\n".join(parts)


def main() -> int:
    """Only the extra lines, without the main runs (``python -m bench.extras``)."""
    from bench.report import write_json
    from bench.run import BenchError, config, servers

    try:
        cfg = config()
        env = servers()
        failures: list[str] = []
        out = run_all(cfg, env, failures, time.monotonic() + 3600 * 24, BenchError)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    path = ROOT / "bench" / "results" / "extras-only.json"
    write_json(path, {"config": cfg, "extras": out, "failures": failures})
    print(f"results: {path}")
    for failure in failures:
        print(f"  FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(child_main(json.loads(sys.argv[2])))
    sys.exit(main())
