"""The ``reconcile_vs_verify`` line of `make bench` (issue 16), registered in bench/extras.py.

The same exported window checked both ways, each on the pool with 2 workers, in a fresh
child process: ``verify`` (a key-only HBase scan per slice, then ``mget`` of the documents)
and a ``reconcile`` dry run (the slice's documents listed from Elasticsearch, then their
rows looked up in HBase in batches). Reported: seconds per 100,000 documents of each, and
``reconcile_vs_verify`` = reconcile's / verify's (above 1: reconcile is slower).

Rows: 100,000 at scale 1.0 (10,000 at the usual 0.1), 5 columns x 40 B, one cell time
each from the main datasets' 1,000 instants over the 24 h window, cut into 4 slices. The
export that fills the index is not timed; after it, both checks must find every document
and no problem (a miss fails the benchmark).
"""

from __future__ import annotations

import time

RC_ROWS = 100_000
RC_SLICES = 4
RC_WORKERS = 2
PER_100K = 100_000


def _rows(rows: int) -> dict[int, list]:
    """Rows by cell timestamp: ``r000000042`` -> 5 values, a timestamp from the 1,000."""
    import random

    from bench.datasets import SEED, TIMESTAMPS, timestamp_of_bucket
    from bench.extras import _values

    rng = random.Random(SEED + 16)
    by_ts: dict[int, list] = {}
    for i in range(rows):
        key = b"r%09d" % i
        by_ts.setdefault(timestamp_of_bucket(rng.randrange(TIMESTAMPS)), []).append(
            (key, _values(key)))
    return by_ts


def reconcile_vs_verify(cfg: dict, env: dict, failures: list[str], deadline: float) -> dict:
    """Issue 16: a reconcile dry run against verify, on the same exported window."""
    from bench.datasets import WINDOW_MS, WINDOW_START_MS
    from bench.extras import (_base_overrides, _check, _create, _drop, _flush, _names,
                              _scaled, _write, repeat_runs, run_child, summarize)
    from bench.run import INDEX_BODY, log, reset_index

    es = env["HBASE2ES_TEST_ES"]
    rows = _scaled(RC_ROWS, cfg["scale"])
    table, index = _names("rc")
    slice_ms = WINDOW_MS // RC_SLICES
    start, end = WINDOW_START_MS, WINDOW_START_MS + WINDOW_MS
    by_ts = _rows(rows)
    expected_slices = [sum(len(v) for t, v in by_ts.items() if s <= t < s + slice_ms)
                       for s in range(start, end, slice_ms)]
    out = {"dataset": {"rows": rows, "scale": cfg["scale"]}, "slices": RC_SLICES,
           "workers": RC_WORKERS, "measured_as": "verify and reconcile (dry run) as the CLI "
                                                 "runs them, each in a fresh process"}
    try:
        log(f"extras/reconcile_vs_verify: loading {rows} rows into {table}, then exporting")
        conn = _create(env, table)
        try:
            _write(conn, table, by_ts)
            _flush(conn, table)
        finally:
            conn.close()
        base = {**_base_overrides(env, table, index, start, end, slice_ms),
                "run.workers": RC_WORKERS}
        reset_index(es, index, INDEX_BODY)
        exported = run_child({"name": "export", "kind": "export", "overrides": base},
                             timeout=240 + rows / 200)
        _check(exported, rows, expected_slices, es, index)  # also refreshes the index

        def measure(run: dict, number: int) -> dict:
            raw = run_child(run, timeout=240 + rows / 100)
            if raw["docs"] != rows or raw["problems"] or raw["exit_code"]:
                raise RuntimeError(f"{run['name']} checked {raw['docs']} of {rows} documents, "
                                   f"{raw['problems']} problems, exit {raw['exit_code']}")
            return {"docs": raw["docs"], "seconds": raw["seconds"],
                    "docs_per_s": raw["docs"] / raw["seconds"],
                    "seconds_per_100k": raw["seconds"] * PER_100K / raw["docs"]}

        runs = [{"name": name, "kind": name, "overrides": base} for name in ("verify", "reconcile")]
        results, info = repeat_runs(runs, cfg["repeat"], deadline, measure,
                                    "reconcile_vs_verify", failures)
        out.update(info)
        out["runs"] = {name: summarize(r, ("seconds_per_100k",)) for name, r in results.items()
                       if r}
        verify, reconcile = out["runs"].get("verify"), out["runs"].get("reconcile")
        if verify and reconcile:
            out["reconcile_vs_verify"] = round(reconcile["seconds_per_100k"]
                                               / verify["seconds_per_100k"], 2)
    finally:
        _drop(env, table, index)
    return out


def _settings(spec: dict):
    from hbase2es.run.report import setup_logging
    from hbase2es.settings import load_settings

    setup_logging("warning")
    return load_settings(None, spec["overrides"], now_ms=int(time.time() * 1000))


def child_verify(spec: dict, watch) -> dict:
    """``hbase2es verify`` of the window, as the CLI runs it."""
    from hbase2es.run.verify import run_verify

    settings = _settings(spec)
    watch.start()
    report = run_verify(settings)
    watch.stop()
    t = report.totals()
    return {"docs": t["checked"], "problems": t["missing"] + t["older"],
            "exit_code": int(report.exit_code)}


def child_reconcile(spec: dict, watch) -> dict:
    """``hbase2es reconcile`` (dry run) of the window, as the CLI runs it."""
    from hbase2es.run.reconcile import run_reconcile

    settings = _settings(spec)
    watch.start()
    report = run_reconcile(settings)
    watch.stop()
    t = report.totals()
    return {"docs": t["checked"], "problems": t["orphans"] + t["foreign"],
            "exit_code": int(report.exit_code)}


CHILD_KINDS = {"verify": child_verify, "reconcile": child_reconcile}


def table_block(out: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for bench/extras.py's tables, when the line ran."""
    line = out.get("reconcile_vs_verify", {})
    if not line.get("runs"):
        return []
    title = (f"reconcile vs verify (issue 16): {line['dataset']['rows']:,} exported rows, "
             f"{line['slices']} slices, {line['workers']} workers; reconcile as a dry run; "
             f"ratio {line.get('reconcile_vs_verify', '-')}")
    head = ["check", "docs", "docs/s", "min", "max", "seconds", "s per 100k docs"]
    rows = [[name, f"{r['docs']:,}", f"{r['docs_per_s']:,}", f"{r['min']:,}", f"{r['max']:,}",
             f"{r['seconds']:.2f}", f"{r.get('seconds_per_100k', 0):.2f}"]
            for name, r in line["runs"].items()]
    return [(title, head, rows)]
