"""Issue 23 items 4 (plan warning), 6-10 and issue 22 item 2, on the real servers.

Stops and kills run `python -m hbase2es` as real processes in their own session
(tests/faults.py); the rest goes through the CLI in-process. Every test here failed on
the code before its fix (commit c176262).
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import happybase
import orjson
import pytest
from faults import ExportProcess, load_rows, wait_for, worker_pids
from helpers import T0, clean_env, put_row, read_report, run_cli, table_name, write_config

pytestmark = pytest.mark.integration

SLICE_MS = 60_000
START = T0 - T0 % SLICE_MS
EMPTY_SLICES = 90  # before the rows: cheap to scan (no cell is older than their end)
FULL_SLICES = 10
ROWS = 20_000
DATA_START = START + EMPTY_SLICES * SLICE_MS
END = DATA_START + FULL_SLICES * SLICE_MS
PIPE_BYTES = 4096  # the smallest pipe Linux allows: a 100-slice summary cannot fit


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def loaded(servers):
    """20k rows in the last 10 of 100 one-minute slices; the first 90 slices are empty."""
    conn = happybase.Connection(servers.hbase_host, servers.hbase_port, timeout=60_000)
    name = f"t_robust_{uuid.uuid4().hex[:8]}"
    try:
        conn.create_table(name, {"cf": {"max_versions": 1}})
        window = load_rows(conn.table(name), ROWS, DATA_START, FULL_SLICES, SLICE_MS)
    finally:
        conn.close()
    assert window.total == ROWS
    try:
        yield name
    finally:
        conn = happybase.Connection(servers.hbase_host, servers.hbase_port, timeout=60_000)
        try:
            conn.delete_table(name, disable=True)
        finally:
            conn.close()


def job_config(tmp_path: Path, extra: str = "") -> str:
    """Small bulks and scanner batches: a slice of 2,000 rows takes a second or more.

    Per slice (one_pass = false): these tests follow slices finishing one by one, and
    two workers each mid-slice; one pass would read the window as one task.
    """
    return write_config(tmp_path / "job.toml", f"""
[hbase]
batch_size = 200
[elasticsearch]
bulk_docs = 100
[run]
grace_seconds = 60
one_pass = false
{extra}
""")


def command(verb: str, cfg: str, servers, table: str, index: str, start: int, end: int,
            *extra) -> list:
    return [verb, "--config", cfg, "--hbase", servers.hbase, "--table", table,
            "--es", servers.es, "--index", index, "--start", start, "--end", end,
            "--slice", "1m", *(["--quiet"] if verb == "export" else []), *extra]


def ledger_statuses(path: Path) -> dict[int, str]:
    """start_ms -> status, read beside a running export (WAL allows it)."""
    if not path.exists():
        return {}
    db = sqlite3.connect(path, timeout=10)
    try:
        return dict(db.execute("SELECT start_ms, status FROM slices"))
    except sqlite3.OperationalError:  # its tables are not there yet
        return {}
    finally:
        db.close()


def wait_done(ledger: Path, run, at_least: int, timeout: float = 120) -> None:
    def check():
        assert run.running(), f"the run ended before the signal was sent\n{run.output()}"
        return sum(s == "done" for s in ledger_statuses(ledger).values()) >= at_least

    wait_for(check, timeout, f"{at_least} done slices in {ledger}", interval=0.1)


def connected_to(pid: int, port: int) -> bool:
    """True when process ``pid`` has an established TCP connection to ``port``: a pool
    worker that has opened its HBase connection is past its start-up."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:  # gone, or an fd closed while listing
        return False
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if fields[3] == "01" and remote_port == port and fields[9] in inodes:
                return True
    return False


def statuses(report: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in report["slices"]:
        out[s["status"]] = out.get(s["status"], 0) + 1
    return out


class BlockedStdout:
    """``python -m hbase2es`` whose stdout is a 4 KB pipe that nobody reads until told.

    Its summary table does not fit: the command blocks while printing it, after its run
    has ended. A signal sent then is one that arrives while the summary and the report
    are being written, every time, without guessing at timings.
    """

    def __init__(self, args: list, workdir: Path, name: str):
        self.stderr_path = workdir / f"{name}.stderr"
        read_end, write_end = os.pipe()
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "hbase2es", *map(str, args)],
                                         stdout=write_end, stderr=err, stdin=subprocess.DEVNULL,
                                         env=clean_env(), cwd=workdir, start_new_session=True)
        os.close(write_end)
        self.stdout = os.fdopen(read_end, "rb")
        self.pid = self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_printing(self, timeout: float) -> None:
        """Until the command has begun printing (its run is over) and is blocked on it."""
        ready, _, _ = select.select([self.stdout], [], [], timeout)
        assert ready, f"no output after {timeout:.0f}s\n{self.output()}"
        time.sleep(0.5)  # it fills the pipe at once, then blocks
        assert self.running(), f"the command ended before it blocked\n{self.output()}"

    def finish(self, timeout: float) -> tuple[int, str]:
        """Read what it prints to the end; its exit code and its stdout."""
        out = self.stdout.read()
        return self.proc.wait(timeout), out.decode(errors="replace")

    def output(self) -> str:
        return f"stderr:\n{self.stderr_path.read_text(errors='replace')[-6000:]}"

    def close(self) -> None:
        if self.running():
            self.proc.kill()
        self.proc.wait(30)
        self.stdout.close()
        try:
            os.killpg(self.pid, signal.SIGKILL)  # workers left behind by a failed test
        except (ProcessLookupError, PermissionError):
            pass


# --------------------------------------------------------------------------- item 6: stops


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_quick_ctrl_c_exit_130_and_still_write_the_report(servers, loaded, index, tmp_path):
    ledger, report = tmp_path / "job.db", tmp_path / "report.json"
    args = command("export", job_config(tmp_path), servers, loaded, index, DATA_START, END,
                   "--workers", "2", "--ledger", ledger, "--report", report)
    with ExportProcess(args, tmp_path, "forced") as run:
        wait_done(ledger, run, 2)
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole group
        time.sleep(0.2)
        os.killpg(run.pid, signal.SIGINT)
        rc = run.wait(60)
    assert rc == 130, run.output()
    assert report.exists(), f"no report after a forced stop\n{run.output()}"
    data = read_report(report)
    counts = statuses(data)
    assert data["interrupted"] is True and data["exit_code"] == 130
    assert counts.get("done", 0) >= 2 and counts.get("cancelled", 0) >= 1, counts
    assert counts.get("pending", 0) >= 1 and "running" not in counts, counts
    assert sum(counts.values()) == FULL_SLICES
    # A cancelled slice is not done in the ledger: --resume runs it again.
    in_ledger = ledger_statuses(ledger)
    for s in data["slices"]:
        if s["status"] == "cancelled":
            assert in_ledger[DATA_START + s["index"] * SLICE_MS] == "pending", in_ledger


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_late_second_sigterm_while_the_summary_is_printed_still_exits_130_with_a_report(
        servers, loaded, index, tmp_path):
    ledger, report = tmp_path / "job.db", tmp_path / "report.json"
    # --summary full: the whole table, too big for the pipe (the short one would fit).
    args = command("export", job_config(tmp_path), servers, loaded, index, START, END,
                   "--workers", "2", "--ledger", ledger, "--report", report,
                   "--summary", "full")
    run = BlockedStdout(args, tmp_path, "late")
    try:
        wait_done(ledger, run, EMPTY_SLICES + 1)
        os.kill(run.pid, signal.SIGTERM)  # graceful: running slices finish
        run.wait_printing(120)
        os.kill(run.pid, signal.SIGTERM)  # the late second one
        rc, out = run.finish(60)
    finally:
        run.close()
    assert rc == 130, f"exit {rc}\n{run.output()}"
    assert "came after the run had ended; its report is complete" in run.output()
    assert f"total ({EMPTY_SLICES + FULL_SLICES} slices)" in out  # the summary is whole
    data = read_report(report)
    counts = statuses(data)
    assert data["interrupted"] is True and data["exit_code"] == 130
    assert counts.get("done", 0) > EMPTY_SLICES and counts.get("pending", 0) >= 1, counts
    assert "running" not in counts and "cancelled" not in counts, counts  # nothing forced


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_verify_forced_stop_exits_130_and_writes_the_report(servers, loaded, index, tmp_path):
    report = tmp_path / "verify.json"
    # --compare-fields reads whole rows: each slice takes a while.
    args = command("verify", job_config(tmp_path), servers, loaded, index, DATA_START, END,
                   "--workers", "2", "--compare-fields", "--report", report)
    with ExportProcess(args, tmp_path, "verify") as run:
        def workers_verifying():
            assert run.running(), run.output()
            pids = worker_pids(run.pid)
            return len(pids) == 2 and all(connected_to(p, servers.hbase_port) for p in pids)

        wait_for(workers_verifying, 60, "two verify workers connected to HBase")
        time.sleep(0.5)
        os.killpg(run.pid, signal.SIGINT)
        time.sleep(0.2)
        os.killpg(run.pid, signal.SIGINT)
        rc = run.wait(60)
    assert rc == 130, run.output()
    assert report.exists(), f"no verify report after a forced stop\n{run.output()}"
    data = read_report(report)
    counts = statuses(data)
    assert data["interrupted"] is True and data["exit_code"] == 130
    # Cut short: some slice is not done. Those in flight at the forced stop are cancelled
    # (on a loaded machine the running ones may all have ended between the two signals);
    # none is left "running".
    assert counts.get("cancelled", 0) + counts.get("pending", 0) >= 1, counts
    assert "running" not in counts, counts


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_verify_signal_while_its_table_is_printed_cannot_kill_it(servers, loaded, index,
                                                                 tmp_path):
    report = tmp_path / "verify.json"
    # The empty slices only: the run is quick, and its table (100 lines) fills the pipe.
    args = command("verify", job_config(tmp_path), servers, loaded, index, START - SLICE_MS *
                   10, DATA_START, "--workers", "2", "--report", report)
    run = BlockedStdout(args, tmp_path, "verify-late")
    try:
        run.wait_printing(120)
        os.kill(run.pid, signal.SIGTERM)
        rc, out = run.finish(60)
    finally:
        run.close()
    # The run was over and complete: the signal changes nothing, it only cannot kill it.
    assert rc == 0, f"exit {rc}\n{run.output()}"
    assert "OK: all 0 checked rows" in out
    assert read_report(report)["exit_code"] == 0


# --------------------------------------------------------------------------- item 7: wrong API


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("hbase2es: error: "), lines
    return lines[0]


def test_thrift1_api_pointed_at_a_thrift2_server_says_so_and_names_the_setting(
        servers, thrift2_address, table, index):
    result = run_cli(["export", "--hbase", thrift2_address, "--table", table_name(table),
                      "--es", servers.es, "--index", index, "--start", T0, "--end", T0 + 60_000,
                      "--slice", "1m"], expect_exit=3)
    line = one_error_line(result)
    assert "Thrift2 server" in line and 'api = "thrift2"' in line, line
    assert "transport" not in line and "-f" not in line, line  # not a transport mismatch
    assert "b\"" not in line and "b'" not in line, line  # the server's words, not a bytes repr


def test_thrift2_api_pointed_at_a_thrift1_server_says_so_and_names_the_setting(
        servers, table, index, tmp_path):
    cfg = write_config(tmp_path / "t2.toml", '[hbase]\napi = "thrift2"\n')
    result = run_cli(["export", "--config", cfg, "--hbase", servers.hbase, "--table",
                      table_name(table), "--es", servers.es, "--index", index, "--start", T0,
                      "--end", T0 + 60_000, "--slice", "1m"], expect_exit=3)
    line = one_error_line(result)
    assert "Thrift1 server" in line and 'api = "thrift1"' in line, line


# --------------------------------------------------------------------------- item 8: retries


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_killed_worker_logs_which_slice_runs_again_and_why(servers, loaded, index, tmp_path):
    ledger, report = tmp_path / "job.db", tmp_path / "report.json"
    args = command("export", job_config(tmp_path), servers, loaded, index, DATA_START, END,
                   "--workers", "2", "--ledger", ledger, "--report", report)
    with ExportProcess(args, tmp_path, "killed-worker") as run:
        wait_done(ledger, run, 1)
        wait_for(lambda: sum(s == "running" for s in ledger_statuses(ledger).values()) == 2,
                 60, "two running slices", interval=0.05)
        victim = worker_pids(run.pid)[0]
        os.kill(victim, signal.SIGKILL)
        rc = run.wait(180)
    assert rc == 0, run.output()
    retried = [s for s in read_report(report)["slices"] if s["attempts"] > 1]
    assert len(retried) == 1, read_report(report)["slices"]
    slice_text = f"[{retried[0]['start']}, {retried[0]['end']})"
    lines = [line for line in run.stderr.splitlines() if "running it again" in line]
    assert len(lines) == 1, run.output()
    assert " WARNING " in lines[0] and slice_text in lines[0], lines[0]
    assert f"worker {victim} died with signal 9 (SIGKILL)" in lines[0], lines[0]
    assert "(attempt 2 of 3)" in lines[0], lines[0]


# --------------------------------------------------------------------------- item 10: ledgers


def foreign_database(path: Path) -> bytes:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO customers VALUES (1, 'ada')")
    return path.read_bytes()


def test_export_refuses_a_ledger_that_is_another_sqlite_database(servers, table, index,
                                                                 tmp_path):
    put_row(table, "r1", {"cf:a": "x"}, T0 + 1)
    other = tmp_path / "crm.db"
    before = foreign_database(other)
    result = run_cli(["export", "--hbase", servers.hbase, "--table", table_name(table),
                      "--es", servers.es, "--index", index, "--start", T0,
                      "--end", T0 + 60_000, "--slice", "1m", "--ledger", other], expect_exit=2)
    line = one_error_line(result)
    assert str(other) in line and "not a ledger" in line and "customers" in line, line
    assert other.read_bytes() == before
    with sqlite3.connect(other) as db:
        assert [n for (n,) in db.execute("SELECT name FROM sqlite_master")] == ["customers"]


def test_status_refuses_another_sqlite_database_and_a_file_that_is_no_database(tmp_path):
    other = tmp_path / "crm.db"
    before = foreign_database(other)
    line = one_error_line(run_cli(["status", "--ledger", other], expect_exit=2))
    assert str(other) in line, line
    assert other.read_bytes() == before
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    line = one_error_line(run_cli(["status", "--ledger", text, "--json"], expect_exit=2))
    assert str(text) in line and "not a database" in line, line


# --------------------------------------------------------------------------- plan --sample


def plan_args(servers, table, index: str, *extra) -> list:
    return ["plan", "--hbase", servers.hbase, "--es", servers.es, "--table", table_name(table),
            "--index", index, "--start", T0, "--end", T0 + 60_000, "--slice", "1m", *extra]


def sample_blocks(text: str) -> list[tuple[str, str, str]]:
    """``(title, action line, document JSON)`` of each sample in plan's text output."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("sample ")]
    blocks = []
    for n, i in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        body = lines[i + 2:end]
        assert "}" in body, f"no indented JSON document after {lines[i]!r}"
        closing = body.index("}")  # the document's last line: indented JSON ends with "}"
        blocks.append((lines[i], lines[i + 1], "\n".join(body[:closing + 1])))
    return blocks


def test_plan_sample_prints_each_document_as_indented_json_as_it_is_sent(servers, table, index):
    import struct

    put_row(table, "order-1", {"cf:city": "Zürich", "cf:n": struct.pack(">q", 7)}, T0 + 1500)
    put_row(table, "order-2", {"cf:city": "Lyon", "cf:n": struct.pack(">q", 8)}, T0 + 2500)
    args = plan_args(servers, table, index, "--sample", "2")
    full = orjson.loads(run_cli([*args, "--json"]).stdout)["sample"]
    blocks = sample_blocks(run_cli(args).stdout)
    assert len(blocks) == 2
    for (title, action, body), doc in zip(blocks, full):
        assert title == f"sample {index}/{doc['_id']} (version {doc['version']}):"
        assert orjson.loads(action) == {"index": {
            "_index": index, "_id": doc["_id"], "version": doc["version"],
            "version_type": "external_gte"}}
        assert body.startswith("{\n  \""), body  # indented JSON, not a Python dict repr
        assert orjson.loads(body) == doc["document"]
        assert list(orjson.loads(body)) == list(doc["document"])  # in the order sent
    assert orjson.loads(blocks[0][2])["cf:city"] == "Zürich"


def test_plan_sample_cuts_long_values_and_says_so_while_json_keeps_them(servers, table, index):
    big = "x" * 6_000_000  # two of them: a 12 MB row (one cell may not exceed 10 MB)
    put_row(table, "huge", {"cf:a": big, "cf:b": big, "cf:c": "short"}, T0 + 1)
    args = plan_args(servers, table, index, "--sample", "1")
    text = run_cli(args).stdout
    assert max(len(line) for line in text.splitlines()) < 1_000, "a value was not cut"
    document = orjson.loads(sample_blocks(text)[0][2])
    assert document["cf:a"] == "x" * 200 + "… (6,000,000 chars, truncated)"
    assert document["cf:c"] == "short"
    assert "2 values longer than 200 characters cut above; plan --json shows them whole" in text
    whole = orjson.loads(run_cli([*args, "--json"]).stdout)["sample"][0]["document"]
    assert whole["cf:a"] == big and whole["cf:b"] == big


def test_dotted_qualifier_next_to_its_prefix_is_warned_by_plan_and_dead_lettered_by_es(
        servers, table, index, tmp_path):
    put_row(table, "r1", {"cf:a": "plain", "cf:a.b": "nested", "cf:ok": "1"}, T0 + 1)
    result = run_cli(plan_args(servers, table, index, "--sample", "1"))
    warnings = [line for line in result.stderr.splitlines() if "cannot both be" in line]
    assert len(warnings) == 1 and "fields cf:a and cf:a.b cannot both be in one index" \
        in warnings[0], result.stderr
    data = orjson.loads(run_cli(plan_args(servers, table, index, "--sample", "1",
                                          "--json")).stdout)
    assert any("cf:a and cf:a.b" in w for w in data["warnings"])

    # What the warning says is what Elasticsearch does with the row.
    dead = tmp_path / "dead.ndjson"
    run_cli(["export", *plan_args(servers, table, index)[1:], "--dead-letter", dead,
             "--max-errors", "1", "--quiet"])
    records = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert len(records) == 1 and records[0]["stage"] == "index", records
    assert "cf:a" in records[0]["reason"], records


def test_plan_warns_when_rows_can_move_between_indices(servers, table, index, tmp_path):
    put_row(table, "r1", {"cf:a": "x", "cf:t": str(T0 + 5)}, T0 + 1)
    moving = "rows can move between indices"

    def warned(index_name: str, config: str = "") -> list[str]:
        cfg = write_config(tmp_path / "w.toml", config)
        result = run_cli([*plan_args(servers, table, index_name, "--sample", "1"),
                          "--config", cfg])
        return [line for line in result.stderr.splitlines() if moving in line]

    timed = index + "-{time:%Y.%m.%d}"
    lines = warned(timed)
    assert len(lines) == 1 and "cell time" in lines[0] and repr(timed) in lines[0], lines
    column = '[window]\ntime_source = "column"\n[window.column]\ncolumn = "cf:t"\n' \
             'encoding = "epoch_ms_text"\n'
    assert len(warned(timed, column)) == 1
    assert warned(index) == []  # one fixed index: nowhere to move to
    rowkey = '[window]\ntime_source = "rowkey"\n[window.rowkey]\nencoding = "epoch_ms_text"\n'
    assert warned(timed, rowkey) == []  # a row key's time never changes
