"""Fault tests on the real servers: kill workers, the run, Elasticsearch and the Thrift
server mid-export, expire scanners, inject per-document 429s, interrupt with Ctrl-C.

Every test ends by counting what Elasticsearch holds after a refresh, in total and per
slice, against the rows it loaded. Runs that must survive a kill run as real processes
(``python -m hbase2es export``); the servers a test kills are PRIVATE ones it started
itself (see tests/faults.py), never the shared dev servers.
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import socket
import sqlite3
import time
import uuid

import happybase
import orjson
import pytest
from faults import (SHARED_HBASE_CONF, ExportProcess, PrivateElasticsearch, PrivateThrift,
                    alive, children, copy_conf, free_es_port, load_rows, row_key, run_process,
                    scanner_timeout_ms, wait_for, worker_pids)
from helpers import (T0, count_docs, es_client, read_report, require_or_skip, run_cli,
                     skip_unless_required, write_config)

from hbase2es.search import engine as es_compat
from hbase2es.settings import load_settings
from hbase2es.run.slicejob import SliceExporter
from hbase2es.timewindow import Slice, format_time

pytestmark = pytest.mark.integration

SLICE_MS = 60_000
SLICES = 30
ROWS = 30_000
START = T0 - T0 % SLICE_MS  # on a minute, so that per-minute histograms line up with slices
ES_REQUEST_TIMEOUT = 60


# --------------------------------------------------------------------------- fixtures


class BigTable:
    """30k rows over 30 one-minute slices, loaded once for the tests that only read it."""

    def __init__(self, name: str, window):
        self.name = name
        self.window = window

    def expected(self, first: int, last: int) -> list[int]:
        return list(self.window.per_slice[first:last])

    def start(self, first: int) -> int:
        return START + first * SLICE_MS


@pytest.fixture(scope="module")
def big(servers):
    conn = happybase.Connection(servers.hbase_host, servers.hbase_port, timeout=60_000)
    name = f"t_reliability_{uuid.uuid4().hex[:8]}"
    try:
        conn.create_table(name, {"cf": {"max_versions": 1}})
        window = load_rows(conn.table(name), ROWS, START, SLICES, SLICE_MS)
    finally:
        conn.close()  # the Thrift server drops connections idle for 60s: one per use
    assert window.total == ROWS and len(set(window.per_slice)) == 1
    try:
        yield BigTable(name, window)
    finally:
        drop_table(servers, name)


@pytest.fixture
def hbase_conf(servers):
    """The shared HBase's conf dir, which private Thrift servers need to find its ZooKeeper."""
    if not (SHARED_HBASE_CONF / "hbase-site.xml").exists():
        require_or_skip(f"no HBase conf dir at {SHARED_HBASE_CONF} for a private Thrift "
                        "server (set HBASE2ES_TEST_HBASE_CONF)")
    return SHARED_HBASE_CONF


def config(tmp_path, *, bulk_docs: int = 200, batch_size: int = 500, retry_seconds: float = 120,
           grace_seconds: float = 30, extra: str = "") -> str:
    """A TOML config: small bulks and scanner batches make a run last several seconds.

    Per slice (one_pass = false): the tests kill workers mid-slice while slices finish one
    by one; one pass would read the window as one task (tests/test_read_strategies.py
    kills a pass).
    """
    return write_config(tmp_path / "job.toml", f"""
[hbase]
batch_size = {batch_size}
[elasticsearch]
bulk_docs = {bulk_docs}
retry_seconds = {retry_seconds}
[run]
grace_seconds = {grace_seconds}
one_pass = false
{extra}
""")


def export_args(cfg: str, hbase: str, table: str, es_url: str, index: str, first: int,
                last: int, *extra) -> list[str]:
    """``export`` of slices [first, last) of the big table's window."""
    return ["export", "--config", cfg, "--hbase", hbase, "--table", table, "--es", es_url,
            "--index", index, "--start", str(START + first * SLICE_MS),
            "--end", str(START + last * SLICE_MS), "--slice", "1m", "--quiet", *extra]


def per_slice_in_es(es, index: str, first: int, last: int) -> list[int]:
    """Documents in ``index`` per one-minute slice of [first, last), after a refresh."""
    es.indices.refresh(index=index)
    lo, hi = START + first * SLICE_MS, START + last * SLICE_MS
    resp = es.search(index=index, size=0, query={"match_all": {}}, aggs={"per_slice": {
        "date_histogram": {"field": "@timestamp", "fixed_interval": f"{SLICE_MS}ms",
                           "min_doc_count": 0, "extended_bounds": {"min": lo, "max": hi - 1}}}})
    counts = {b["key"]: b["doc_count"] for b in resp["aggregations"]["per_slice"]["buckets"]}
    outside = {k: n for k, n in counts.items() if not lo <= k < hi and n}
    assert not outside, f"documents outside the window: {outside}"
    return [counts.get(START + i * SLICE_MS, 0) for i in range(first, last)]


def report_by_start(report: dict) -> dict[str, dict]:
    return {s["start"]: s for s in report["slices"]}


def assert_report_exact(report: dict, big: BigTable, first: int, last: int,
                        skipped: set[str] = frozenset()) -> None:
    """Every slice of the report: skipped where expected, otherwise done with exact counts."""
    by_start = report_by_start(report)
    assert len(by_start) == last - first
    for i, expected in zip(range(first, last), big.expected(first, last)):
        entry = by_start[format_time(big.start(i))]
        if entry["start"] in skipped:
            assert entry["status"] == "skipped", entry
        else:
            assert (entry["status"], entry["rows"], entry["indexed"], entry["failed"]) == \
                   ("done", expected, expected, 0), entry


def ledger_statuses(path) -> dict[int, str]:
    """start_ms -> status, read beside a running export (WAL allows it); {} before it exists."""
    if not os.path.exists(path):
        return {}
    db = sqlite3.connect(path, timeout=10)
    try:
        return dict(db.execute("SELECT start_ms, status FROM slices"))
    except sqlite3.OperationalError:  # the run has not created its tables yet
        return {}
    finally:
        db.close()


def status_json(ledger) -> dict:
    result = run_cli(["status", "--ledger", str(ledger), "--json"])
    return orjson.loads(result.stdout)


def wait_until_done(ledger, run: ExportProcess, at_least: int, timeout: float = 120) -> None:
    """Wait for ``at_least`` done slices; fail if the run ends first (the fault came too late)."""
    def check():
        assert run.running(), f"the export ended before the fault was injected\n{run.output()}"
        return sum(s == "done" for s in ledger_statuses(ledger).values()) >= at_least

    wait_for(check, timeout, f"{at_least} done slices in {ledger}", interval=0.2)


def wait_until_indexed(es, index: str, run: ExportProcess, at_least: int,
                       timeout: float = 120) -> int:
    def check():
        assert run.running(), f"the export ended before the fault was injected\n{run.output()}"
        try:
            n = count_docs(es, index)
        except Exception as exc:  # noqa: BLE001 - the client's error class depends on its version
            # Just after the export creates the index its shard may not have started yet:
            # a count then answers 503 "all shards failed". Not yet, rather than a failure.
            status = getattr(exc, "status_code", None) or getattr(getattr(exc, "meta", None),
                                                                  "status", None)
            if status != 503:
                raise
            return 0
        return n if n >= at_least else 0

    return wait_for(check, timeout, f"{at_least} documents in {index}", interval=0.3)


# --------------------------------------------------------------------------- 1. worker kills


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_workers_killed_mid_slice_every_row_is_exported_exactly_once(
        servers, big, es, index, tmp_path):
    ledger, report = tmp_path / "job.db", tmp_path / "report.json"
    args = export_args(config(tmp_path), servers.hbase, big.name, servers.es, index, 0, SLICES,
                       "--workers", "2", "--ledger", ledger, "--report", report)
    killed = []
    with ExportProcess(args, tmp_path) as run:
        originals = wait_for(lambda: len(worker_pids(run.pid)) == 2 and worker_pids(run.pid),
                             60, "two workers")
        # Both workers are mid-slice when the ledger shows two slices running.
        wait_for(lambda: (not run.running()) or
                 sum(s == "running" for s in ledger_statuses(ledger).values()) == 2,
                 60, "two running slices", interval=0.05)
        wait_until_indexed(es, index, run, ROWS // 10)
        os.kill(originals[0], signal.SIGKILL)
        killed.append(originals[0])
        wait_for(lambda: not alive(originals[0]), 10, "the first victim to die")
        assert run.running(), run.output()

        # The other original worker has been busy all along: it is mid-slice too.
        wait_until_indexed(es, index, run, ROWS * 4 // 10)
        assert originals[1] in worker_pids(run.pid)
        os.kill(originals[1], signal.SIGKILL)
        killed.append(originals[1])
        wait_for(lambda: not alive(originals[1]), 10, "the second victim to die")
        assert run.running(), run.output()
        replacements = wait_for(lambda: len(worker_pids(run.pid)) == 2 and worker_pids(run.pid),
                                60, "replacement workers")
        assert not set(replacements) & set(killed)
        rc = run.wait(180)

    assert rc == 0, run.output()
    data = read_report(report)
    assert_report_exact(data, big, 0, SLICES)
    # Each kill cost the slice its victim was running one attempt; nothing else was retried.
    assert sum(s["attempts"] - 1 for s in data["slices"]) == 2, data["slices"]
    assert per_slice_in_es(es, index, 0, SLICES) == big.expected(0, SLICES)
    assert count_docs(es, index) == ROWS


# --------------------------------------------------------------------------- 2. parent kill


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_run_killed_with_sigkill_leaves_no_workers_and_resume_completes_exactly(
        servers, big, es, index, tmp_path):
    first, last = 0, 20
    ledger, report = tmp_path / "job.db", tmp_path / "report.json"
    args = export_args(config(tmp_path), servers.hbase, big.name, servers.es, index, first, last,
                       "--workers", "2", "--ledger", ledger)
    with ExportProcess(args, tmp_path, "killed") as run:
        wait_until_done(ledger, run, 4)
        workers = worker_pids(run.pid)
        family = children(run.pid)  # the workers and multiprocessing's resource tracker
        assert len(workers) == 2 and set(workers) <= set(family)
        os.kill(run.pid, signal.SIGKILL)
        run.proc.wait(10)
        killed_at = time.monotonic()
        wait_for(lambda: not any(alive(p) for p in family), 10, f"children {family} to exit")
        assert time.monotonic() - killed_at < 5, "orphaned workers outlived their parent by 5s+"

    before = status_json(ledger)
    done_before = {s["start"] for s in before["slices"] if s["status"] == "done"}
    assert 4 <= len(done_before) < last - first, before["counts"]

    resumed = ExportProcess(args + ["--resume", "--report", report], tmp_path, "resume")
    with resumed:
        rc = resumed.wait(180)
    assert rc == 0, resumed.output()
    data = read_report(report)
    assert {s["start"] for s in data["slices"] if s["status"] == "skipped"} == done_before
    assert_report_exact(data, big, first, last, skipped=done_before)

    after = status_json(ledger)
    assert after["counts"] == {"pending": 0, "running": 0, "done": last - first, "failed": 0}
    assert [s["indexed"] for s in after["slices"]] == big.expected(first, last)
    assert after["watermark"] == format_time(big.start(last))
    text = run_cli(["status", "--ledger", str(ledger)]).stdout
    assert f"{last - first} done, 0 failed, 0 running (or interrupted), 0 pending" in text
    assert per_slice_in_es(es, index, first, last) == big.expected(first, last)


# --------------------------------------------------------------------------- 3. run lock


@pytest.mark.timeout(180)
def test_second_run_on_a_held_ledger_exits_75_and_a_killed_holder_does_not_block(
        servers, big, es, index, tmp_path):
    first, last = 0, 8
    ledger = tmp_path / "job.db"
    cfg = config(tmp_path)
    args = ["--workers", "2", "--ledger", ledger]
    # The holder's Elasticsearch accepts connections and never answers: the holder takes the
    # lock, then hangs in its connection check for as long as this test needs it to.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent_es = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with ExportProcess(export_args(cfg, servers.hbase, big.name, silent_es, index, first,
                                       last, *args), tmp_path, "holder") as holder:
            wait_for(lambda: ledger_statuses(ledger), 60, "the holder to take the ledger")
            started = time.monotonic()
            second = run_process(export_args(cfg, servers.hbase, big.name, servers.es, index,
                                             first, last, *args), tmp_path, "second", 60)
            took = time.monotonic() - started
            assert holder.running(), "the holder ended before the second run tried the lock"
            assert second.proc.returncode == 75, second.output()
            assert f"PID {holder.pid}" in second.stderr, second.stderr
            assert took < 20, f"the second run took {took:.1f}s to give up"
            os.kill(holder.pid, signal.SIGKILL)
            holder.proc.wait(10)

    # The killed holder's PID is still written in the lock file; the kernel lock is gone.
    assert str(holder.pid) in (tmp_path / "job.db.lock").read_text()
    third = run_process(export_args(cfg, servers.hbase, big.name, servers.es, index, first, last,
                                    *args, "--resume"), tmp_path, "after-kill", 120)
    assert third.proc.returncode == 0, third.output()
    assert per_slice_in_es(es, index, first, last) == big.expected(first, last)


# --------------------------------------------------------------------------- 4. Elasticsearch


@pytest.fixture
def private_es(tmp_path):
    node = PrivateElasticsearch(tmp_path / "es", free_es_port())
    try:
        node.start(fresh=True)
        yield node
    finally:
        node.kill()


# Long enough for a kill, 5 s and a restart (devservers allows a node 240 s to come up): the
# writers retry every bulk through the outage and no slice fails.
OUTAGE_RETRY_SECONDS = 300


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_elasticsearch_killed_and_restarted_within_retry_seconds_exits_0_with_exact_counts(
        servers, big, private_es, tmp_path):
    first, last = 0, 10
    index = f"reliability-es-{uuid.uuid4().hex[:8]}"
    ledger, report = tmp_path / "job.db", tmp_path / "report.json"
    args = export_args(config(tmp_path, bulk_docs=100, retry_seconds=OUTAGE_RETRY_SECONDS),
                       servers.hbase, big.name, private_es.url, index, first, last,
                       "--workers", "2", "--ledger", ledger, "--report", report)
    es = es_client(private_es.url, timeout=ES_REQUEST_TIMEOUT)
    try:
        with ExportProcess(args, tmp_path, "during-outage") as run:
            wait_until_indexed(es, index, run, big.window.count_between(
                big.start(first), big.start(last)) // 5)
            private_es.kill()
            killed_at = time.monotonic()
            time.sleep(5)  # writers see refused connections and back off
            assert run.running(), run.output()
            private_es.start(fresh=False)  # same port, same data dir
            outage = time.monotonic() - killed_at
            rc = run.wait(200)
        # A bulk in flight at the kill started its deadline a moment before it: keep a margin.
        assert outage < OUTAGE_RETRY_SECONDS - 30, (
            f"the outage lasted {outage:.0f}s, too close to retry_seconds = "
            f"{OUTAGE_RETRY_SECONDS}: this run cannot show what the test is about")
        assert rc == 0, f"outage of {outage:.0f}s < retry_seconds\n{run.output()}"
        assert "bulk request failed" in run.stderr, "the writers never saw the outage"
        data = read_report(report)
        assert data["exit_code"] == 0
        assert_report_exact(data, big, first, last)
        # The writers waited the outage out inside each slice: no slice was retried.
        assert [s["attempts"] for s in data["slices"]] == [1] * (last - first), data["slices"]
        assert status_json(ledger)["counts"] == {
            "pending": 0, "running": 0, "done": last - first, "failed": 0}
        assert per_slice_in_es(es, index, first, last) == big.expected(first, last)
    finally:
        es.close()


# --------------------------------------------------------------------------- 5. Thrift server


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_thrift_server_killed_and_restarted_mid_slice_ends_with_exact_counts(
        servers, big, es, index, hbase_conf, tmp_path):
    thrift = PrivateThrift(hbase_conf, tmp_path / "thrift.log")
    first, last = 0, 12
    report = tmp_path / "report.json"
    try:
        thrift.start()
        args = export_args(config(tmp_path, bulk_docs=150), thrift.address, big.name, servers.es,
                           index, first, last, "--workers", "2", "--report", report)
        with ExportProcess(args, tmp_path) as run:
            wait_until_indexed(es, index, run, big.window.count_between(
                big.start(first), big.start(last)) // 5)
            thrift.kill()
            assert run.running(), run.output()
            thrift.start()  # same port; the scans back off meanwhile
            rc = run.wait(180)
    finally:
        thrift.kill()
    assert rc == 0, run.output()
    assert "HBase Thrift server scan interrupted" in run.stderr, "no scan noticed the restart"
    assert_report_exact(read_report(report), big, first, last)
    assert per_slice_in_es(es, index, first, last) == big.expected(first, last)


# --------------------------------------------------------------------------- 6. scanner lease


class SlowFirstBulk:
    """Wraps es_compat.bulk: the first request waits ``pause`` seconds before it is sent."""

    def __init__(self, pause: float):
        self.pause = pause
        self.calls = 0
        self.real = es_compat.bulk

    def __call__(self, client, payload, **kwargs):
        self.calls += 1
        if self.calls == 1:
            time.sleep(self.pause)
        return self.real(client, payload, **kwargs)


def small_table(servers, rows: int, ts: int) -> str:
    conn = happybase.Connection(servers.hbase_host, servers.hbase_port, timeout=60_000)
    name = f"t_lease_{uuid.uuid4().hex[:8]}"
    conn.create_table(name, {"cf": {"max_versions": 1}})
    with conn.table(name).batch(timestamp=ts, batch_size=1000) as batch:
        for i in range(rows):
            batch.put(row_key(i), {b"cf:n": b"%d" % i})
    conn.close()
    return name


def drop_table(servers, name: str) -> None:
    conn = happybase.Connection(servers.hbase_host, servers.hbase_port, timeout=60_000)
    try:
        conn.delete_table(name, disable=True)
    finally:
        conn.close()


def export_one_slice_slowly(tmp_path, hbase: str, table: str, es_url: str, index: str,
                            pause: float, monkeypatch) -> tuple:
    """Run one slice in this process with a bulk writer that stalls once for ``pause``."""
    cfg = write_config(tmp_path / "lease.toml", f"""
[hbase]
table = "{table}"
host = "{hbase.rsplit(':', 1)[0]}"
port = {hbase.rsplit(':', 1)[1]}
batch_size = 100
[elasticsearch]
hosts = ["{es_url}"]
index = "{index}"
bulk_docs = 100
[window]
start = "{START}"
end = "{START + SLICE_MS}"
slice = "1m"
""")
    settings = load_settings(cfg, now_ms=int(time.time() * 1000))
    slow = SlowFirstBulk(pause)
    monkeypatch.setattr(es_compat, "bulk", slow)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    reader_log = logging.getLogger("hbase2es.hbase.base")
    reader_log.addHandler(handler)
    exporter = SliceExporter(settings)
    try:
        result = exporter.run(Slice(0, START, START + SLICE_MS))
    finally:
        exporter.close()
        reader_log.removeHandler(handler)
    assert slow.calls > 1, "the slice fit in one bulk: nothing ran after the pause"
    return result, [r.getMessage() for r in records]


THRIFT_LEASE_MS = 3000


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_scanner_dropped_by_the_thrift_server_after_its_lease_is_reopened_from_the_last_row(
        servers, es, index, hbase_conf, tmp_path, monkeypatch):
    """HBase 2.6's Thrift1 server forgets a scanner idle for 2 x its
    hbase.client.scanner.timeout.period and answers IllegalArgument("scanner ID is invalid")."""
    rows = 1000
    name = small_table(servers, rows, START + 1)
    conf = copy_conf(tmp_path / "conf", {"hbase.client.scanner.timeout.period":
                                         str(THRIFT_LEASE_MS)}, src=hbase_conf)
    thrift = PrivateThrift(conf, tmp_path / "thrift.log")
    try:
        thrift.start()
        result, warnings = export_one_slice_slowly(
            tmp_path, thrift.address, name, servers.es, index,
            pause=2 * THRIFT_LEASE_MS / 1000 + 2.5, monkeypatch=monkeypatch)
    finally:
        thrift.kill()
        drop_table(servers, name)
    assert "scanner ID is invalid" in (tmp_path / "thrift.log").read_text(errors="replace"), \
        "the Thrift server never dropped the scanner: the pause was too short to test anything"
    reopened = [w for w in warnings if "reopen" in w]
    assert reopened, warnings
    assert (result.rows, result.indexed, result.stale, result.failed) == (rows, rows, 0, 0)
    assert count_docs(es, index) == rows


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_region_server_lease_expiry_is_invisible_to_the_reader(servers, es, index, hbase_conf,
                                                                tmp_path, monkeypatch):
    """The region server's lease (hbase.client.scanner.timeout.period of the shared HBase)
    expires during the pause; the HBase client inside the Thrift server reopens the region
    scanner by itself, so the reader sees no error. A private Thrift server with a long
    client-side lease and socket timeout keeps its own scanner and connection alive."""
    lease_ms = scanner_timeout_ms(hbase_conf)
    if lease_ms > 30_000:  # the pause below outlasts the lease: over a minute
        skip_unless_required(
            f"the shared HBase runs with a {lease_ms / 1000:.0f}s scanner lease; `make servers` "
            "starts it with 20s (HBASE2ES_DEVSERVERS_SCANNER_TIMEOUT_MS)")
    long_ms = str(4 * lease_ms + 60_000)
    conf = copy_conf(tmp_path / "conf", {"hbase.client.scanner.timeout.period": long_ms,
                                         "hbase.thrift.server.socket.read.timeout": long_ms},
                     src=hbase_conf)
    rows = 500
    name = small_table(servers, rows, START + 1)
    thrift = PrivateThrift(conf, tmp_path / "thrift.log")
    try:
        thrift.start()
        result, warnings = export_one_slice_slowly(
            tmp_path, thrift.address, name, servers.es, index, pause=lease_ms / 1000 + 3,
            monkeypatch=monkeypatch)
    finally:
        thrift.kill()
        drop_table(servers, name)
    assert "UnknownScannerException" in (tmp_path / "thrift.log").read_text(errors="replace"), \
        "the region server's lease did not expire: the pause was too short to test anything"
    assert not warnings, warnings
    assert (result.rows, result.indexed, result.failed) == (rows, rows, 0)
    assert count_docs(es, index) == rows


# --------------------------------------------------------------------------- 7. 429 and 400


class Inject429:
    """Wraps es_compat.bulk: some documents get a 429 the first time instead of being sent.

    The rejected items are really left out of the request, so a document lands only if
    the writer sends it again.
    """

    def __init__(self, reject_ids: set[str]):
        self.reject_ids = set(reject_ids)
        self.rejected: list[str] = []
        self.resent: list[str] = []
        self.real = es_compat.bulk

    def __call__(self, client, payload: bytes, **kwargs):
        lines = payload.split(b"\n")
        items = [(lines[i], lines[i + 1]) for i in range(0, len(lines) - 1, 2)]
        keep, fake = [], {}
        for position, (action, source) in enumerate(items):
            doc_id = orjson.loads(action)["index"]["_id"]
            if doc_id in self.reject_ids:
                self.reject_ids.discard(doc_id)
                self.rejected.append(doc_id)
                fake[position] = {"index": {"_id": doc_id, "status": 429, "error": {
                    "type": "es_rejected_execution_exception", "reason": "injected"}}}
            else:
                if doc_id in self.rejected:
                    self.resent.append(doc_id)
                keep.append(action + b"\n" + source + b"\n")
        if not fake:
            return self.real(client, payload, **kwargs)
        sent = self.real(client, b"".join(keep), **kwargs) if keep else {"items": []}
        real_items = iter(sent.get("items", []))
        merged = [fake[p] if p in fake else next(real_items) for p in range(len(items))]
        return {"errors": True, "items": merged}


def typed_table_and_index(servers, es, index: str, good: int) -> tuple[str, str]:
    """A table with ``good`` rows and one whose ``n`` Elasticsearch refuses (mapped long)."""
    es.indices.create(index=index, mappings={"properties": {"n": {"type": "long"}}})
    conn = happybase.Connection(servers.hbase_host, servers.hbase_port, timeout=60_000)
    name = f"t_bad_{uuid.uuid4().hex[:8]}"
    conn.create_table(name, {"cf": {"max_versions": 1}})
    with conn.table(name).batch(timestamp=START + 5, batch_size=1000) as batch:
        for i in range(good):
            batch.put(row_key(i), {b"cf:n": b"%d" % i})
        batch.put(b"bad-row", {b"cf:n": b"not a number"})
    conn.close()
    return name, "bad-row"


MAPPING_TOML = """
[mapping.columns]
"cf:n" = { field = "n", type = "string" }
"""


def check_dead_letter(path, bad_key: str) -> dict:
    lines = path.read_bytes().splitlines()
    assert len(lines) == 1, lines
    record = orjson.loads(lines[0])
    assert base64.b64decode(record["row_key_b64"]) == bad_key.encode()
    assert record["row_key"] == bad_key
    assert record["slice"] == {"start": format_time(START), "end": format_time(START + SLICE_MS)}
    assert record["stage"] == "index"
    assert record["error_type"] == "mapper_parsing_exception"
    assert "n" in record["reason"]
    assert record["document"]["n"] == "not a number"
    return record


@pytest.mark.timeout(120)
def test_per_document_429s_are_resent_until_they_land(servers, es, index, tmp_path, monkeypatch):
    good = 400
    name, bad_key = typed_table_and_index(servers, es, index, good)
    dead = tmp_path / "dead.ndjson"
    cfg = write_config(tmp_path / "job.toml", f"""
[hbase]
table = "{name}"
host = "{servers.hbase_host}"
port = {servers.hbase_port}
[elasticsearch]
hosts = ["{servers.es}"]
index = "{index}"
bulk_docs = 50
[window]
start = "{START}"
end = "{START + SLICE_MS}"
[run]
dead_letter = "{dead}"
{MAPPING_TOML}""")
    settings = load_settings(cfg, now_ms=int(time.time() * 1000))
    reject = {row_key(i).decode() for i in range(0, good, 7)}
    inject = Inject429(reject)
    monkeypatch.setattr(es_compat, "bulk", inject)
    exporter = SliceExporter(settings)
    try:
        result = exporter.run(Slice(0, START, START + SLICE_MS))
    finally:
        exporter.close()
        drop_table(servers, name)

    assert sorted(inject.rejected) == sorted(reject)
    assert sorted(inject.resent) == sorted(reject), "only the rejected documents are resent"
    assert (result.rows, result.indexed, result.failed) == (good + 1, good, 1)
    es.indices.refresh(index=index)
    assert count_docs(es, index) == good
    checker = es_compat.make_client(settings.elasticsearch)
    try:
        found = es_compat.mget(checker, index, sorted(reject))["docs"]
    finally:
        checker.close()
    assert all(d["found"] for d in found)
    check_dead_letter(dead, bad_key)


@pytest.mark.timeout(120)
def test_bad_document_goes_to_the_dead_letter_file_and_max_errors_sets_the_exit_code(
        servers, es, index, tmp_path):
    good = 50
    name, bad_key = typed_table_and_index(servers, es, index, good)
    cfg = write_config(tmp_path / "job.toml", MAPPING_TOML)
    try:
        for budget, code in ((0, 1), (1, 0)):
            dead, report = tmp_path / f"dead{budget}.ndjson", tmp_path / f"report{budget}.json"
            run_cli(["export", "--config", cfg, "--hbase", servers.hbase, "--table", name,
                     "--es", servers.es, "--index", index, "--start", str(START),
                     "--end", str(START + SLICE_MS), "--slice", "1m", "--workers", "1",
                     "--dead-letter", dead, "--max-errors", budget, "--report", report],
                    expect_exit=code)
            check_dead_letter(dead, bad_key)
            totals = read_report(report)["totals"]
            assert (totals["rows"], totals["indexed"], totals["failed"]) == (good + 1, good, 1)
    finally:
        drop_table(servers, name)
    assert count_docs(es, index) == good


# --------------------------------------------------------------------------- 8. incremental


@pytest.mark.timeout(180)
def test_incremental_runs_export_each_row_once_and_start_at_the_watermark(
        servers, big, es, index, tmp_path):
    ledger = tmp_path / "job.db"
    cfg = config(tmp_path, bulk_docs=1000, batch_size=1000)
    for end, name in ((6, "first"), (12, "second")):
        report = tmp_path / f"{name}.json"
        run_cli(export_args(cfg, servers.hbase, big.name, servers.es, index, 0, end,
                            "--workers", "2", "--ledger", ledger, "--incremental",
                            "--report", report))
        data = read_report(report)
        begin = 0 if name == "first" else 6
        assert data["slices"][0]["start"] == format_time(big.start(begin))
        assert_report_exact(data, big, begin, end)
        assert data["totals"]["indexed"] == big.window.count_between(big.start(begin),
                                                                     big.start(end))
        status = status_json(ledger)
        assert status["watermark"] == format_time(big.start(end))
        assert status["counts"]["done"] == end
    assert per_slice_in_es(es, index, 0, 12) == big.expected(0, 12)

    # A third run with the same end finds nothing new.
    report = tmp_path / "third.json"
    run_cli(export_args(cfg, servers.hbase, big.name, servers.es, index, 0, 12,
                        "--ledger", ledger, "--incremental", "--report", report))
    assert read_report(report)["slices"] == []


# --------------------------------------------------------------------------- 9. Ctrl-C


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ctrl_c_exits_130_with_a_true_ledger_and_resume_completes(servers, big, es, index,
                                                                  tmp_path):
    first, last = 0, 20
    ledger, report = tmp_path / "job.db", tmp_path / "report.json"
    args = export_args(config(tmp_path, grace_seconds=60), servers.hbase, big.name, servers.es,
                       index, first, last, "--workers", "2", "--ledger", ledger)
    with ExportProcess(args + ["--report", report], tmp_path, "interrupted") as run:
        wait_until_done(ledger, run, 3)
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        rc = run.wait(90)
    assert rc == 130, run.output()
    data = read_report(report)
    assert data["interrupted"] is True and data["exit_code"] == 130
    done_in_report = {s["start"] for s in data["slices"] if s["status"] == "done"}

    status = status_json(ledger)
    done = {s["start"]: s for s in status["slices"] if s["status"] == "done"}
    assert set(done) == done_in_report
    assert 3 <= len(done) < last - first, status["counts"]
    in_es = per_slice_in_es(es, index, first, last)
    for i, expected in zip(range(first, last), big.expected(first, last)):
        entry = done.get(format_time(big.start(i)))
        if entry is not None:  # done means every document of the slice is in the index
            assert (entry["rows"], entry["indexed"], in_es[i - first]) == (expected,) * 3

    resumed = tmp_path / "resumed.json"
    with ExportProcess(args + ["--report", resumed, "--resume"], tmp_path, "resume") as again:
        rc = again.wait(180)
    assert rc == 0, again.output()
    data = read_report(resumed)
    assert {s["start"] for s in data["slices"] if s["status"] == "skipped"} == set(done)
    assert_report_exact(data, big, first, last, skipped=set(done))
    assert per_slice_in_es(es, index, first, last) == big.expected(first, last)
