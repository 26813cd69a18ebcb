"""`hbase2es export --executor spark` on a real Spark standalone cluster (issue 19).

The cluster is a master and two workers of 1 core each, from pyspark's own jars
(tools/devservers.py `spark`). HBASE2ES_TEST_SPARK_MASTER names a running one (`make
servers-spark` writes it to .devservers/env); otherwise this module starts one and stops
it afterwards. Unlike ``local[N]``, each executor here is a JVM of its own, started by a
worker with the worker's environment: the project's Python and package, the settings and
the credentials must travel, dead letters must come home, and an executor can die with
slices in flight. The test that kills a worker starts a PRIVATE cluster for itself.

The driver runs in this process (run_cli) where that is enough, and as a real
``python -m hbase2es`` process where its own command line, its signals or its JVM matter.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from faults import load_rows, row_key, wait_for
from helpers import clean_env, count_docs, export_args, put_row, read_index, read_report, \
    require_or_skip, run_cli, table_name, write_config

from hbase2es.errors import ConfigError
from hbase2es.run.ledger import Ledger
from hbase2es.search.deadletter import BATCH_MAX_RECORDS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import devservers  # noqa: E402

T0 = 1_700_000_000_000
RUN_LIMIT_S = 300  # one export on the cluster: a driver JVM, 2 executor JVMs, a busy machine
DRIVER_ENV = {"SPARK_LOCAL_IP": "127.0.0.1"}  # the driver's JVM on loopback only


@dataclass(frozen=True)
class Cluster:
    master: str
    base: Path | None  # its logs and work dirs, when tools/devservers.py started it


@pytest.fixture(scope="module")
def cluster():
    """The shared standalone cluster: HBASE2ES_TEST_SPARK_MASTER, else devservers' (started
    here, and then stopped after the module, when none runs)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        require_or_skip("pyspark is not installed: pip install -e '.[test]'")
    master, state = os.environ.get(devservers.SPARK_ENV), "given"
    if not master:
        try:
            master, state = devservers.ensure_spark()
        except devservers.StartError as exc:  # no Java 17, no pyspark jars, a daemon died
            require_or_skip(f"no Spark standalone cluster: {exc}")
    shared = devservers.shared_spark()
    try:
        yield Cluster(master, shared.base if shared and shared.master == master else None)
    finally:
        _stop_driver_jvm()
        if state == "started":
            devservers.down_spark(quiet=True)


def _stop_driver_jvm() -> None:
    """The in-process runs share one driver JVM (pyspark keeps it per process); the rest
    of the session should not carry it."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None or SparkContext._active_spark_context is not None:
        return
    proc = getattr(gateway, "proc", None)
    gateway.shutdown()
    SparkContext._gateway = SparkContext._jvm = None
    if proc is not None:
        proc.stdin.close()  # the JVM exits at EOF on its stdin
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _on_cluster(master: str, *extra) -> list[str]:
    """The flags of a run on ``master``: the driver on loopback, small executors, and the
    worktree's hbase2es on the executors' path (a fresh clone's editable install is there
    anyway)."""
    conf = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false", "spark.executor.memory": "512m",
            "spark.executorEnv.PYTHONPATH": str(ROOT)}
    flags = ["--executor", "spark", "--spark-master", master]
    for key, value in conf.items():
        flags += ["--spark-conf", f"{key}={value}"]
    return [*flags, *extra]


def _event_log(folder: Path) -> list[str]:
    folder.mkdir(exist_ok=True)
    return ["--spark-conf", "spark.eventLog.enabled=true",
            "--spark-conf", f"spark.eventLog.dir=file://{folder}",
            "--spark-conf", "spark.eventLog.compress=false"]  # plain JSON lines, to read


def _events(folder: Path) -> list[dict]:
    files = sorted(p for p in folder.rglob("events_*") if p.is_file())
    assert files, f"no Spark event log under {folder}"
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line]


def _export(servers, table, index: str, tmp_path: Path, name: str, start: int, end: int,
            *extra, expect_exit=0, env=None) -> dict:
    report = tmp_path / f"{name}.json"
    run_cli(export_args(servers, table_name(table), index, start, end, "1s", "--quiet",
                        "--report", report, *extra), expect_exit=expect_exit,
            env={**DRIVER_ENV, **(env or {})})
    return read_report(report)


def _counts(report: dict) -> list[tuple]:
    return [(s["index"], s["status"], s["rows"], s["indexed"], s["stale"], s["failed"])
            for s in report["slices"]]


# --------------------------------------------------------------------------- processes


class Driver:
    """``python -m hbase2es <args>`` in its own session, with ``env`` added."""

    def __init__(self, args: list, workdir: Path, name: str, env: dict | None = None):
        self.stdout_path, self.stderr_path = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hbase2es", *map(str, args)], stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, env={**clean_env(), **DRIVER_ENV, **(env or {})},
                cwd=workdir, start_new_session=True)
        self.pid = self.proc.pid

    def __enter__(self) -> "Driver":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(60)
        try:
            os.killpg(self.pid, signal.SIGKILL)  # its JVM, left behind by a failed test
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the export still runs after {timeout:.0f}s\n"
                                 f"{self.output()}") from None

    def output(self) -> str:
        return (self.stdout_path.read_text(errors="replace")[-4000:] + "\n"
                + self.stderr_path.read_text(errors="replace")[-8000:])


def _processes() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:  # gone, or not ours to read
        return b""


def _session(pid: int) -> int:
    stat = _read(f"/proc/{pid}/stat").decode(errors="replace")
    return int(stat.rsplit(")", 1)[1].split()[3]) if stat else -1


def _connected_to(pid: int, port: int) -> bool:
    """True when ``pid`` holds an established TCP connection to ``port`` on loopback."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in _read(table).decode().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "01" and int(parts[2].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def _grep(folder: Path, needle: bytes) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle in _read(str(p))]


# --------------------------------------------------------------------------- same documents


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(2 * RUN_LIMIT_S)
def test_an_export_on_the_cluster_gives_the_same_documents_as_the_local_pool(
        cluster, servers, table, es, index, tmp_path):
    window = load_rows(table, 600, T0, slices=6, slice_ms=1000)
    put_row(table, b"bin\xff\x00key", {"cf:n": "binary key"}, T0 + 2500)
    put_row(table, row_key(7), {"cf:n": "updated"}, T0 + 999)  # a newer cell, same slice
    end = window.end_ms

    local = _export(servers, table, f"{index}-local", tmp_path, "local", T0, end,
                    "--workers", "2")
    spark = _export(servers, table, f"{index}-spark", tmp_path, "spark", T0, end,
                    *_on_cluster(cluster.master))

    assert spark["spark"]["master"] == cluster.master
    assert spark["spark"]["application_id"].startswith("app-")  # a standalone application
    assert _counts(spark) == _counts(local)
    assert spark["totals"] == local["totals"] == {"rows": window.total + 1,
                                                  "indexed": window.total + 1, "stale": 0,
                                                  "failed": 0, "deleted": 0}
    local_docs = read_index(es, f"{index}-local")
    spark_docs = read_index(es, f"{index}-spark")
    assert len(spark_docs) == window.total + 1
    assert {i: (h["_source"], h["_version"]) for i, h in spark_docs.items()} == \
        {i: (h["_source"], h["_version"]) for i, h in local_docs.items()}
    assert spark_docs[row_key(7).decode()]["_source"]["cf:n"] == "updated"


# --------------------------------------------------------------------------- credentials


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(RUN_LIMIT_S + 60)
def test_credentials_reach_the_executors_and_no_log_or_command_line(
        cluster, servers, table, es, index, tmp_path):
    """The API key only in the driver's environment (forwarded), a password also given as
    --spark-conf spark.executorEnv.*: both reach the executors' Python workers, neither is
    in Spark's event log, any log, the report, or a command line Spark started.

    Elasticsearch here has no security, so it ignores the credentials; what the test
    proves is that a slice on an executor can read them and nothing else can."""
    window = load_rows(table, 200, T0, slices=4, slice_ms=1000)
    api_key, password = f"key-{uuid.uuid4().hex}", f"pw-{uuid.uuid4().hex}"
    events = tmp_path / "events"
    report = tmp_path / "report.json"
    args = [*export_args(servers, table_name(table), index, T0, window.end_ms, "1s"),
            "--quiet", "--report", report, *_on_cluster(cluster.master), *_event_log(events),
            "--spark-conf", f"spark.executorEnv.HBASE2ES_ES_PASSWORD={password}"]
    seen_on_executors: set[int] = set()
    on_command_lines: set[str] = set()

    def look() -> bool:
        """Executor Python workers (not in the driver's session) holding both secrets."""
        for pid in _processes():
            cmd = _read(f"/proc/{pid}/cmdline")
            if pid != driver.pid and (api_key.encode() in cmd or password.encode() in cmd):
                on_command_lines.add(cmd.replace(b"\0", b" ").decode(errors="replace")[:300])
            if b"pyspark.daemon" in cmd and _session(pid) != driver.pid:
                environ = _read(f"/proc/{pid}/environ").split(b"\0")
                if (f"HBASE2ES_ES_API_KEY={api_key}".encode() in environ
                        and f"HBASE2ES_ES_PASSWORD={password}".encode() in environ):
                    seen_on_executors.add(pid)
        return driver.proc.poll() is not None

    with Driver(args, tmp_path, "export", env={"HBASE2ES_ES_API_KEY": api_key}) as driver:
        wait_for(look, RUN_LIMIT_S, "the export to end", interval=0.2)
        assert driver.wait(10) == 0, driver.output()

    assert seen_on_executors, "no executor Python worker had the credentials"
    assert not on_command_lines, on_command_lines
    assert read_report(report)["totals"]["indexed"] == window.total
    assert count_docs(es, index) == window.total
    for secret in (api_key, password):
        assert secret not in driver.output()
        assert secret.encode() not in report.read_bytes()
        assert not _grep(events, secret.encode()), f"{secret} in the event log"
        if cluster.base is not None:  # master, worker and executor logs
            assert not _grep(cluster.base, secret.encode()), f"{secret} in the cluster's logs"
    # Spark did log both properties, with their values redacted.
    properties = next(dict(e["Spark Properties"]) for e in _events(events)
                      if e["Event"] == "SparkListenerEnvironmentUpdate")
    assert properties["spark.executorEnv.HBASE2ES_ES_API_KEY"] == "*********(redacted)"
    assert properties["spark.executorEnv.HBASE2ES_ES_PASSWORD"] == "*********(redacted)"


# --------------------------------------------------------------------------- dead letters


DEAD_LETTER_CONFIG = """
[mapping.columns]
"cf:n" = { field = "n", type = "long" }
"""


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(RUN_LIMIT_S)
def test_dead_letters_from_executors_end_up_in_the_users_file(
        cluster, servers, table, es, index, tmp_path):
    """Slice 0 has more dead letters than a task brings back (BATCH_MAX_RECORDS): the
    first ones reach the user's file, the rest stay on the executor, named in the report."""
    over = 5
    bad = {0: BATCH_MAX_RECORDS + over, 1: 2, 2: 3, 3: 0}
    good = 3
    expected_bad = set()
    for s, n in bad.items():
        with table.batch(timestamp=T0 + s * 1000 + 10, batch_size=2000) as batch:
            for j in range(n):
                key = f"bad-{s}-{j:05d}".encode()
                batch.put(key, {b"cf:n": b"not-a-long"})
                expected_bad.add(key.decode())
            for j in range(good):
                batch.put(f"good-{s}-{j}".encode(), {b"cf:n": struct.pack(">q", j)})
    config = write_config(tmp_path / "job.toml", DEAD_LETTER_CONFIG)
    dead = tmp_path / "dead.ndjson"

    report = _export(servers, table, index, tmp_path, "dead", T0, T0 + 4000, "--config", config,
                     "--dead-letter", dead, "--max-errors", "100000",
                     *_on_cluster(cluster.master))

    total_bad = sum(bad.values())
    assert [s["failed"] for s in report["slices"]] == [bad[s] for s in range(4)]
    assert report["totals"]["indexed"] == 4 * good
    assert count_docs(es, index) == 4 * good
    home = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert len(home) == total_bad - over
    assert sum(1 for r in home if r["row_key"].startswith("bad-0-")) == BATCH_MAX_RECORDS
    summary = report["spark"]["dead_letters"]
    assert summary["file"] == str(dead) and summary["records"] == total_bad - over
    [left] = summary["left_on_executors"]
    assert left["records"] == over and left["start"] == report["slices"][0]["start"]
    assert left["host"] and Path(left["path"]).parent == tmp_path  # beside the user's file
    away = [orjson.loads(line) for line in Path(left["path"]).read_bytes().splitlines()]
    assert len(away) == over
    keys = [r["row_key"] for r in home + away]
    assert len(keys) == len(set(keys)) and set(keys) == expected_bad
    assert {(r["stage"], r["error_type"]) for r in home + away} == {("decode", "DecodeError")}


# --------------------------------------------------------------------------- Ctrl-C


SLOW_SLICES_CONFIG = """
[hbase]
batch_size = 20
[elasticsearch]
bulk_docs = 50
"""


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(2 * RUN_LIMIT_S)
def test_ctrl_c_on_the_driver_exits_130_and_resume_finishes(
        cluster, servers, table, es, index, tmp_path):
    """The 1st Ctrl-C lets the slices handed to Spark finish and starts no others."""
    slices = 12
    window = load_rows(table, slices * 300, T0, slices=slices, slice_ms=1000)
    config = write_config(tmp_path / "job.toml", SLOW_SLICES_CONFIG)
    ledger = tmp_path / "job.ledger"
    report = tmp_path / "first.json"
    args = [*export_args(servers, table_name(table), index, T0, window.end_ms, "1s"),
            "--config", config, "--quiet", "--ledger", ledger, "--report", report,
            *_on_cluster(cluster.master)]

    def done() -> int:
        if not ledger.exists():
            return 0
        try:
            book = Ledger(str(ledger), readonly=True)
        except ConfigError:  # the file is there, the driver has not made its tables yet
            return 0
        with book:
            return sum(1 for s in book.slices() if s.status == "done")

    with Driver(args, tmp_path, "first") as driver:
        wait_for(lambda: done() or driver.proc.poll() is not None, RUN_LIMIT_S,
                 "a first slice done", interval=0.2)
        os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        assert driver.wait(RUN_LIMIT_S) == 130, driver.output()

    first = read_report(report)
    statuses = [s["status"] for s in first["slices"]]
    assert first["interrupted"] is True
    assert "done" in statuses and "pending" in statuses, statuses
    assert set(statuses) == {"done", "pending"}, statuses  # none cancelled, none failed
    finished = statuses.count("done")

    resumed = _export(servers, table, index, tmp_path, "resumed", T0, window.end_ms,
                      "--config", config, "--ledger", ledger, "--resume",
                      *_on_cluster(cluster.master))
    assert [s["status"] for s in resumed["slices"]] == \
        ["skipped" if s == "done" else "done" for s in statuses]
    assert resumed["totals"]["rows"] + sum(s["rows"] for s in first["slices"]) == window.total
    assert count_docs(es, index) == window.total
    with Ledger(str(ledger), readonly=True) as book:
        assert [s.status for s in book.slices()] == ["done"] * slices
    assert finished < slices


# --------------------------------------------------------------------------- a lost worker


@pytest.fixture
def private_cluster(tmp_path):
    """A master and 2 workers of this test's own, which it may kill."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        require_or_skip("pyspark is not installed: pip install -e '.[test]'")
    try:
        own = devservers.launch_spark(tmp_path / "spark")
    except devservers.StartError as exc:
        require_or_skip(f"no Spark standalone cluster: {exc}")
    try:
        yield own
    finally:
        own.stop()
        wait_for(lambda: not devservers.session_members(set(own.pids.values())), 30,
                 "the private cluster's processes to end")


def _executor_id(worker: int) -> str | None:
    """The executor id of the executor JVM a worker started (its --executor-id)."""
    for pid in devservers.session_members({worker}):
        args = _read(f"/proc/{pid}/cmdline").split(b"\0")
        if b"--executor-id" in args:
            return args[args.index(b"--executor-id") + 1].decode()
    return None


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(RUN_LIMIT_S + 120)
def test_a_worker_killed_mid_run_has_its_slices_rerun_on_the_other_worker(
        private_cluster, servers, table, es, index, tmp_path):
    slices = 8
    window = load_rows(table, slices * 1500, T0, slices=slices, slice_ms=1000)
    config = write_config(tmp_path / "job.toml", SLOW_SLICES_CONFIG)
    events = tmp_path / "events"
    report = tmp_path / "report.json"
    victim = private_cluster.worker_pid(2)
    thrift_port = servers.hbase_port
    args = [*export_args(servers, table_name(table), index, T0, window.end_ms, "1s"),
            "--config", config, "--quiet", "--report", report,
            *_on_cluster(private_cluster.master), *_event_log(events)]

    def victim_in_a_slice() -> bool:
        """A Python worker of the victim's executor is reading HBase: a slice in flight."""
        return any(_connected_to(pid, thrift_port)
                   for pid in devservers.session_members({victim}))

    with Driver(args, tmp_path, "export") as driver:
        wait_for(lambda: victim_in_a_slice() or driver.proc.poll() is not None,
                 RUN_LIMIT_S, "a slice running on worker 2", interval=0.05)
        lost = _executor_id(victim)
        os.kill(victim, signal.SIGKILL)
        assert driver.wait(RUN_LIMIT_S) == 0, driver.output()

    assert lost is not None
    result = read_report(report)
    assert [s["status"] for s in result["slices"]] == ["done"] * slices
    assert [s["rows"] for s in result["slices"]] == list(window.per_slice)
    assert result["totals"] == {"rows": window.total, "indexed": window.total, "stale": 0,
                                "failed": 0, "deleted": 0}
    assert count_docs(es, index) == window.total
    # Spark's own record: the tasks in flight on the lost executor failed with it and ran
    # again, and succeeded, on the other one.
    ends = [e for e in _events(events) if e["Event"] == "SparkListenerTaskEnd"]
    lost_tasks = {e["Task Info"]["Partition ID"] for e in ends
                  if e["Task Info"]["Executor ID"] == lost
                  and e["Task End Reason"]["Reason"] == "ExecutorLostFailure"}
    assert lost_tasks, f"no task of executor {lost} was lost: {ends}"
    rerun = {e["Task Info"]["Partition ID"]: e["Task Info"]["Executor ID"] for e in ends
             if e["Task End Reason"]["Reason"] == "Success"}
    assert all(rerun[p] != lost for p in lost_tasks)
    assert all(result["slices"][p]["attempts"] == 2 for p in lost_tasks)


# --------------------------------------------------------------------------- no servers


def test_credentials_are_forwarded_unless_given_and_their_names_redacted():
    from hbase2es.run.sparkconf import SPARK_REDACTION_REGEX, credential_conf, split_secrets
    from hbase2es.settings import ElasticsearchSettings, Settings

    settings = Settings(elasticsearch=ElasticsearchSettings(api_key_env="JOB_KEY",
                                                            password_env="JOB_PW"))
    given = {"spark.executorEnv.JOB_PW": "typed", "spark.executor.memory": "1g"}
    environ = {"JOB_KEY": "k1", "JOB_PW": "from-env", "HBASE2ES_ES_USERNAME": "u"}
    added = credential_conf(settings, given, environ)
    # The key from the environment; the password as given; the username's variable is
    # HBASE2ES_ES_USERNAME (the default name), set here, so it travels too.
    assert {k: v for k, v in added.items() if k.startswith("spark.executorEnv.")} == {
        "spark.executorEnv.JOB_KEY": "k1", "spark.executorEnv.HBASE2ES_ES_USERNAME": "u"}
    regex = added["spark.redaction.regex"]
    assert regex.startswith(SPARK_REDACTION_REGEX + "|")
    assert {"JOB_KEY", "JOB_PW", "HBASE2ES_ES_USERNAME"} <= set(regex.split("|"))
    # A user's regex is kept and extended, not replaced.
    own = credential_conf(settings, {"spark.redaction.regex": "(?i)mine"}, {})
    assert own["spark.redaction.regex"].startswith("(?i)mine|")

    public, secrets = split_secrets({**given, **added, "spark.app.token": "t"}, settings)
    assert public == {"spark.executor.memory": "1g", "spark.redaction.regex": regex}
    assert set(secrets) == {"spark.executorEnv.JOB_PW", "spark.executorEnv.JOB_KEY",
                            "spark.executorEnv.HBASE2ES_ES_USERNAME", "spark.app.token"}


def test_a_dead_letter_batch_keeps_up_to_its_cap_and_leaves_the_rest_in_a_file(tmp_path):
    from hbase2es.search.deadletter import DeadLetterBatch, executor_path

    left = tmp_path / "left.ndjson"
    by_count = DeadLetterBatch(str(left), max_records=3, max_bytes=1 << 20)
    for i in range(5):
        by_count.write({"n": i})
    by_count.close()
    returned = by_count.returned()
    assert [orjson.loads(x)["n"] for x in returned.lines] == [0, 1, 2]
    assert (returned.left_records, returned.left_path) == (2, str(left))
    assert [orjson.loads(x)["n"] for x in left.read_bytes().splitlines()] == [3, 4]

    small = DeadLetterBatch(str(tmp_path / "small"), max_records=100, max_bytes=30)
    for i in range(3):
        small.write({"n": i, "pad": "x" * 5})  # 21 bytes a line: the 2nd passes 30
    small.close()
    assert (len(small.returned().lines), small.returned().left_records) == (1, 2)
    assert DeadLetterBatch(str(tmp_path / "none")).returned().left_path == ""

    assert executor_path(str(tmp_path / "dead.ndjson"), "r1", 4, 2) == \
        str(tmp_path / "dead.ndjson.r1-task4-attempt2")
    elsewhere = executor_path("/no/such/dir/dead.ndjson", "r1", 0, 1)
    assert Path(elsewhere).parent.is_dir() and elsewhere.endswith("dead.ndjson.r1-task0-attempt1")
