"""The measured runs: ceilings (scan_only, bulk_only), peers (naive, seed) and hbase2es.

Each run kind is a function ``kind(spec, watch) -> dict`` executed in a fresh child
process (see bench/run.py): ``spec`` says where the servers, table and index are;
``watch.start()`` marks the end of the untimed setup (a kind that never calls it is
timed from its first line). The returned dict has at least ``docs`` (documents written,
or rows scanned for scan_only).

naive and seed are written the way people write them (happybase + elasticsearch-py
helpers, default settings), not tuned; they build the same fields hbase2es does
(``family:qualifier`` text fields and ``@timestamp``) so every run indexes the same
documents into the same index settings.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from datetime import datetime, timezone

# --------------------------------------------------------------------------- helpers


def _hbase_settings(spec: dict):
    from hbase2es.settings import HBaseSettings

    host, port = spec["hbase"].rsplit(":", 1)
    return HBaseSettings(host=host, port=int(port), table=spec["table"],
                         batch_size=spec["batch_size"])


def _es_settings(spec: dict):
    from hbase2es.settings import ElasticsearchSettings

    return ElasticsearchSettings(hosts=(spec["es"],), index=spec["index"],
                                 bulk_docs=spec["bulk_docs"], bulk_bytes=spec["bulk_bytes"])


def _iso(ms: int) -> str:
    """The @timestamp a hand-written script produces."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()


def _naive_actions(rows, index: str, start_ms: int | None = None):
    """happybase rows (include_timestamp=True) -> helpers.bulk actions, the obvious way."""
    for key, data in rows:
        newest = max(ts for _value, ts in data.values())
        if start_ms is not None and newest < start_ms:
            continue  # older than the slice: Thrift1 cannot filter it on the server
        source = {column.decode(): value.decode() for column, (value, _ts) in data.items()}
        source["@timestamp"] = _iso(newest)
        yield {"_index": index, "_id": key.decode(), "_source": source}


# --------------------------------------------------------------------------- ceilings


def scan_only(spec: dict, watch) -> dict:
    """One full-table scan through hbase2es's own reader, in a process collecting garbage
    as a worker does (at the default the collector alone adds ~8 us per row read): rows
    decoded, then dropped."""
    from hbase2es.hbase import open_reader
    from hbase2es.run.workerjob import collect_garbage_as_a_worker

    collect_garbage_as_a_worker()
    reader = open_reader(_hbase_settings(spec))
    try:
        watch.start()
        rows = cells = 0
        for _key, values, _newest in reader.scan():
            rows += 1
            cells += len(values)
        watch.stop()
    finally:
        reader.close()
    return {"docs": rows, "rows_read": rows, "cells": cells}


def build_payloads(spec: dict, watch=None) -> dict:
    """Write the bulk bodies hbase2es would send for the whole table to spec["payload_file"].

    Built once per dataset (untimed) with hbase2es's own mapping and NDJSON code and
    bounds, so bulk_only sends exactly the bytes the tool sends.
    """
    from hbase2es.search.chunking import Chunker, index_action
    from hbase2es.hbase import open_reader
    from hbase2es.mapping import Mapping, build_document, document_id

    reader = open_reader(_hbase_settings(spec))
    mapping = Mapping()
    chunker = Chunker(spec["bulk_docs"], spec["bulk_bytes"])
    offsets = [0]
    docs = 0
    index = spec["index"]
    with open(spec["payload_file"], "wb") as out:
        def write(chunk):
            out.write(chunk.payload())
            offsets.append(offsets[-1] + chunk.size)

        try:
            for key, values, newest in reader.scan():
                document, _errors = build_document(key, values, newest, mapping)
                full = chunker.add(index_action(index, document_id(key), newest, document), None)
                docs += 1
                if full is not None:
                    write(full)
        finally:
            reader.close()
        rest = chunker.drain()
        if rest is not None:
            write(rest)
    return {"docs": docs, "offsets": offsets}


def _send_share(payloads: list[bytes], es_url: str, ready, done) -> None:
    from hbase2es.search import engine as es_compat
    from hbase2es.search.writer import FILTER_PATH
    from hbase2es.settings import ElasticsearchSettings

    client = es_compat.make_client(ElasticsearchSettings(hosts=(es_url,)))
    es_compat.info(client)  # connection open before the clock starts, as in a warm worker
    ready.wait()
    indexed = failed = 0
    for payload in payloads:
        response = es_compat.bulk(client, payload, filter_path=FILTER_PATH)
        lines = payload.count(b"\n") // 2
        if response.get("errors"):
            bad = sum(1 for item in response["items"]
                      if not 200 <= next(iter(item.values()))["status"] < 300)
            failed += bad
            indexed += lines - bad
        else:
            indexed += lines
    done.put((indexed, failed))


def bulk_only(spec: dict, watch) -> dict:
    """The prebuilt bodies, sent by ``workers`` processes each with its own client."""
    offsets = spec["offsets"]
    with open(spec["payload_file"], "rb") as f:  # body by body: the file is read once
        payloads = [f.read(b - a) for a, b in zip(offsets, offsets[1:])]
    n = spec["workers"]
    ctx = multiprocessing.get_context("fork")  # the bodies are inherited, not pickled
    ready = ctx.Barrier(n + 1)
    done = ctx.Queue()
    procs = [ctx.Process(target=_send_share, args=(payloads[i::n], spec["es"], ready, done))
             for i in range(n)]
    for p in procs:
        p.start()
    ready.wait(timeout=120)
    watch.start()
    results = [done.get(timeout=spec["timeout"]) for _ in procs]
    for p in procs:
        p.join()  # reaped inside the timed part, so their CPU counts
    watch.stop()
    for p in procs:
        if p.exitcode != 0:
            raise RuntimeError(f"bulk_only sender exited with {p.exitcode}")
    return {"docs": sum(r[0] for r in results), "failed": sum(r[1] for r in results)}


# --------------------------------------------------------------------------- peers


def naive(spec: dict, watch) -> dict:
    """One process: happybase scan -> elasticsearch.helpers.bulk with its defaults."""
    import happybase
    from elasticsearch import Elasticsearch, helpers

    watch.start()
    host, port = spec["hbase"].rsplit(":", 1)
    connection = happybase.Connection(host, int(port))
    es = Elasticsearch([spec["es"]])
    table = connection.table(spec["table"])
    ok, _errors = helpers.bulk(es, _naive_actions(table.scan(include_timestamp=True),
                                                  spec["index"]))
    connection.close()
    watch.stop()
    return {"docs": ok, "rows_read": spec["rows"]}


def _seed_task(task: tuple) -> int:
    import happybase
    from elasticsearch import Elasticsearch, helpers

    hbase, table_name, es_url, index, start_ms, end_ms = task
    host, port = hbase.rsplit(":", 1)
    connection = happybase.Connection(host, int(port))
    es = Elasticsearch([es_url])
    table = connection.table(table_name)
    rows = table.scan(timestamp=end_ms, include_timestamp=True)
    ok, _errors = helpers.bulk(es, _naive_actions(rows, index, start_ms))
    connection.close()
    return ok


def seed(spec: dict, watch) -> dict:
    """multiprocessing.Pool.map over the time slices; each task opens its own connections."""
    tasks = [(spec["hbase"], spec["table"], spec["es"], spec["index"], s, e)
             for s, e in spec["slices"]]
    watch.start()
    with multiprocessing.Pool() as pool:  # one process per core, as the seed script had it
        counts = pool.map(_seed_task, tasks)
        pool.close()
        pool.join()
    watch.stop()
    return {"docs": sum(counts), "rows_read": spec["rows_read_sliced"],
            "processes": os.cpu_count()}


# --------------------------------------------------------------------------- hbase2es


def hbase2es_settings(spec: dict, workers: int | None):
    """The run's settings; ``spec["default_config"]`` keeps every setting at its default
    but where the servers, table, index and window are (and ``spec["overrides"]``)."""
    from hbase2es.settings import load_settings

    host, port = spec["hbase"].rsplit(":", 1)
    overrides = {
        "hbase.host": host, "hbase.port": int(port), "hbase.table": spec["table"],
        "elasticsearch.hosts": [spec["es"]], "elasticsearch.index": spec["index"],
        "window.start": str(spec["start_ms"]), "window.end": str(spec["end_ms"]),
        "run.quiet": True, "run.log_level": "warning",
    }
    if not spec.get("default_config"):
        overrides.update({
            "hbase.batch_size": spec["batch_size"], "elasticsearch.bulk_docs": spec["bulk_docs"],
            "elasticsearch.bulk_bytes": spec["bulk_bytes"], "window.slice": spec["slice"],
            "run.workers": workers})
    overrides.update(spec.get("overrides", {}))
    return load_settings(None, overrides, now_ms=int(time.time() * 1000))


def hbase2es(spec: dict, watch) -> dict:
    """hbase2es.export.run_export, in this process, as the CLI runs it."""
    from hbase2es.run.export import run_export
    from hbase2es.run.report import setup_logging

    from bench.extras import strategies

    settings = hbase2es_settings(spec, spec.get("workers"))
    setup_logging("warning")
    watch.start()
    report = run_export(settings)
    watch.stop()
    totals = report.totals()
    if int(report.exit_code) != 0:
        bad = [s.to_dict() for s in report.slices if s.status != "done"][:3]
        raise RuntimeError(f"hbase2es exited with {int(report.exit_code)}: {bad}")
    # Rows read as the run's report counts them (read amplification, whatever the
    # strategy); the count the bench works out for Thrift1 time slices stays beside it.
    return {"docs": totals["indexed"], "rows": totals["rows"], "stale": totals["stale"],
            "failed": totals["failed"], "rows_read": sum(s.rows_read for s in report.slices),
            "rows_read_expected_thrift1": spec["rows_read_sliced"],
            "slices": len(report.slices), "workers": settings.run.workers,
            "strategies": strategies(report)}


# --------------------------------------------------------------------------- profile


def breakdown(spec: dict, watch) -> dict:
    """Client CPU per document of each stage of the hot path.

    decode (Thrift scan -> row dict), row -> document, serialize (NDJSON action lines),
    HTTP (bulk requests and their responses, client side only), over the first
    ``spec["breakdown_rows"]`` rows of the window. The rows stream through the stages one
    scanner batch at a time, as in a worker, so few objects are alive at once; each stage
    of each batch is timed with process_time.
    """
    import itertools

    from hbase2es.search import engine as es_compat
    from hbase2es.search.chunking import index_action
    from hbase2es.search.writer import BulkWriter
    from hbase2es.hbase import open_reader
    from hbase2es.mapping import Mapping, build_document, document_id
    from hbase2es.run.workerjob import collect_garbage_as_a_worker

    collect_garbage_as_a_worker()
    clock = time.process_time
    reader = open_reader(_hbase_settings(spec))
    client = es_compat.make_client(_es_settings(spec))
    writer = BulkWriter(client, max_docs=spec["bulk_docs"], max_bytes=spec["bulk_bytes"])
    mapping = Mapping()
    index = spec["index"]
    batch = spec["batch_size"]
    spent = dict.fromkeys(("decode", "row_to_doc", "serialize", "http"), 0.0)
    waited = dict.fromkeys(("scan", "http"), 0.0)
    n = size = 0
    watch.start()
    scan = reader.scan(timestamp=spec["end_ms"])
    while n < spec["breakdown_rows"]:
        t0, w0 = clock(), time.perf_counter()
        rows = list(itertools.islice(scan, min(batch, spec["breakdown_rows"] - n)))
        t1, w1 = clock(), time.perf_counter()
        if not rows:
            break
        docs = [(key, newest, build_document(key, values, newest, mapping)[0])
                for key, values, newest in rows]
        t2 = clock()
        items = [index_action(index, document_id(key), newest, doc) for key, newest, doc in docs]
        t3, w3 = clock(), time.perf_counter()
        for item in items:
            writer.add(item, None)
        t4, w4 = clock(), time.perf_counter()
        n += len(items)
        size += sum(map(len, items))
        for stage, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            spent[stage] += seconds
        waited["scan"] += w1 - w0
        waited["http"] += w4 - w3
    scan.close()
    reader.close()
    t3, w3 = clock(), time.perf_counter()
    writer.flush()
    spent["http"] += clock() - t3
    waited["http"] += time.perf_counter() - w3
    watch.stop()
    per = 1e6 / n
    us = {stage: round(seconds * per, 2) for stage, seconds in spent.items()}
    us["total"] = round(sum(spent.values()) * per, 2)
    return {
        "docs": writer.counts.indexed,
        "us_per_doc": us,
        "wall_us_per_doc": {stage: round(seconds * per, 2) for stage, seconds in waited.items()},
        "bytes_per_doc": round(size / n, 1),
    }


def profile(spec: dict, watch) -> dict:
    """SliceExporter.run of the last slice in this process, under pyinstrument.

    The last slice is the one a worker spends longest on with Thrift1: it reads every row
    of the window and exports those of its slice only.
    """
    from hbase2es.run.slicejob import SliceExporter
    from hbase2es.run.workerjob import collect_garbage_as_a_worker
    from hbase2es.timewindow import Slice

    try:
        from pyinstrument import Profiler
    except ImportError:
        return {"docs": None, "skipped": "pyinstrument is not installed (pip install '.[bench]')"}
    collect_garbage_as_a_worker()
    settings = hbase2es_settings(spec, 1)
    exporter = SliceExporter(settings)
    profiler = Profiler(interval=0.0005)
    try:
        watch.start()
        profiler.start()
        start_ms, end_ms = spec["slices"][-1]
        result = exporter.run(Slice(len(spec["slices"]) - 1, start_ms, end_ms))
        profiler.stop()
        watch.stop()
    finally:
        exporter.close()
    os.makedirs(os.path.dirname(spec["profile_file"]), exist_ok=True)
    with open(spec["profile_file"], "w") as f:
        f.write(profiler.output_text(unicode=False, color=False, show_all=False))
    return {"docs": result.indexed, "rows_read": result.rows_read,
            "profile_file": spec["profile_file"]}


KINDS = {
    "build_payloads": build_payloads,
    "scan_only": scan_only,
    "bulk_only": bulk_only,
    "naive": naive,
    "seed": seed,
    "hbase2es": hbase2es,
    "breakdown": breakdown,
    "profile": profile,
}
