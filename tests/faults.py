"""Fault-injection helpers for the reliability tests.

Loading many rows fast, running ``python -m hbase2es export`` as a real process and
finding its workers, and starting PRIVATE servers that a test may kill. The shared dev
servers named in .devservers/env are never stopped, frozen or reconfigured here: other
tests run against them at the same time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from helpers import clean_env, free_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import devservers  # noqa: E402

# The conf dir of the HBase behind HBASE2ES_TEST_HBASE: private Thrift servers read its
# ZooKeeper address there. `make servers` writes it; another HBase can name its own.
SHARED_HBASE_CONF = Path(os.environ.get("HBASE2ES_TEST_HBASE_CONF",
                                        devservers.STATE / "hbase" / "conf"))
SCANNER_TIMEOUT_KEY = "hbase.client.scanner.timeout.period"
HBASE_DEFAULT_SCANNER_TIMEOUT_MS = 60_000


# --------------------------------------------------------------------------- waiting


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    """Poll ``check()`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class LoadedWindow:
    """Rows loaded over ``[start_ms, end_ms)``; ``per_slice[i]`` rows have times in slice i."""

    start_ms: int
    end_ms: int
    slice_ms: int
    per_slice: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.per_slice)

    def count_between(self, start_ms: int, end_ms: int) -> int:
        """Rows with times in ``[start_ms, end_ms)``; both on slice boundaries."""
        first = (start_ms - self.start_ms) // self.slice_ms
        last = (end_ms - self.start_ms) // self.slice_ms
        return sum(self.per_slice[first:last])


def row_key(i: int) -> bytes:
    return b"row%07d" % i


def load_rows(table, n: int, start_ms: int, slices: int, slice_ms: int,
              stamps_per_slice: int = 10) -> LoadedWindow:
    """Put ``n`` rows whose cell timestamps spread evenly over ``slices`` slices.

    Rows share a few timestamps so that one ``batch(timestamp=ts)`` carries many of them:
    30k rows take a few hundred round trips instead of 30k. The first timestamp of every
    slice is the slice's start, so boundary rows are part of every load.
    """
    step = slice_ms // stamps_per_slice
    stamps = [start_ms + s * slice_ms + k * step for s in range(slices)
              for k in range(stamps_per_slice)]
    rows_by_stamp: dict[int, list[int]] = {}
    for i in range(n):
        rows_by_stamp.setdefault(stamps[i % len(stamps)], []).append(i)
    per_slice: Counter[int] = Counter()
    for ts, rows in rows_by_stamp.items():
        with table.batch(timestamp=ts, batch_size=5000) as batch:
            for i in rows:
                batch.put(row_key(i), {b"cf:n": b"%d" % i, b"cf:g": b"group-%d" % (i % 7)})
        per_slice[(ts - start_ms) // slice_ms] += len(rows)
    return LoadedWindow(start_ms, start_ms + slices * slice_ms, slice_ms,
                        tuple(per_slice[s] for s in range(slices)))


# --------------------------------------------------------------------------- processes


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    return devservers.alive(pid)


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from every thread's /proc children list."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return found


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def worker_pids(pid: int) -> list[int]:
    """The pool workers of an export process: its spawn children, not the resource tracker."""
    return [c for c in children(pid) if "spawn_main" in cmdline(c) and alive(c)]


class ExportProcess:
    """``python -m hbase2es <args>`` in its own session, output captured in files.

    Its own session: a Ctrl-C sent to its process group reaches it and its workers, not
    pytest. Leaving the ``with`` block kills what is left of that group, by its id.
    """

    def __init__(self, args: list[str], workdir: Path, name: str = "export"):
        self.args = [str(a) for a in args]
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "hbase2es", *self.args],
                                         stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         env=clean_env(), cwd=workdir, start_new_session=True)
        self.pid = self.proc.pid

    def __enter__(self) -> "ExportProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.kill_group()

    def kill_group(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        try:
            os.killpg(self.pid, signal.SIGKILL)  # workers left behind by a failed test
        except (ProcessLookupError, PermissionError):
            pass

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"hbase2es {' '.join(self.args)} still running after "
                                 f"{timeout:.0f}s\n{self.output()}") from None

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"stdout:\n{self.stdout[-4000:]}\nstderr:\n{self.stderr[-6000:]}"


def run_process(args: list[str], workdir: Path, name: str, timeout: float) -> ExportProcess:
    """Run ``python -m hbase2es <args>`` to its end; ``.proc.returncode``, ``.stderr``, ..."""
    with ExportProcess(args, workdir, name) as run:
        run.wait(timeout)
    return run


# --------------------------------------------------------------------------- HBase conf


def conf_value(conf_dir: Path, name: str) -> str | None:
    """A property of ``conf_dir/hbase-site.xml``, None when it is not set there."""
    root = ET.parse(conf_dir / "hbase-site.xml").getroot()
    for prop in root.iter("property"):
        if prop.findtext("name") == name:
            return prop.findtext("value")
    return None


def scanner_timeout_ms(conf_dir: Path = SHARED_HBASE_CONF) -> int:
    """The scanner lease the HBase behind ``conf_dir`` runs with."""
    value = conf_value(conf_dir, SCANNER_TIMEOUT_KEY)
    return int(value) if value else HBASE_DEFAULT_SCANNER_TIMEOUT_MS


def copy_conf(dst: Path, overrides: dict[str, str], src: Path = SHARED_HBASE_CONF) -> Path:
    """A copy of an HBase conf dir with some hbase-site.xml properties set (client side)."""
    shutil.copytree(src, dst)
    site = dst / "hbase-site.xml"
    tree = ET.parse(site)
    root = tree.getroot()
    for prop in list(root.iter("property")):
        if prop.findtext("name") in overrides:
            root.remove(prop)
    for name, value in overrides.items():
        prop = ET.SubElement(root, "property")
        ET.SubElement(prop, "name").text = name
        ET.SubElement(prop, "value").text = value
    tree.write(site)
    return dst


# --------------------------------------------------------------------------- private servers


class PrivateThrift:
    """A Thrift1 server of this test's own in front of the shared HBase; it may be killed."""

    def __init__(self, conf_dir: Path, logfile: Path, port: int | None = None):
        self.conf_dir = conf_dir
        self.logfile = logfile
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{devservers.HOST}:{self.port}"

    def start(self, timeout: float = 120) -> None:
        """Start it (on the same port as before) and wait until it serves the table list."""
        self.proc = devservers.start_thrift1(self.conf_dir, self.port, self.logfile)
        devservers.wait_until("private HBase Thrift server",
                              lambda: devservers.hbase_answers(self.address), self.proc,
                              self.logfile, timeout)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, open scanners and connections just vanish."""
        if self.running():
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)


class PrivateElasticsearch:
    """An Elasticsearch node of this test's own (own data dir, port, cluster name)."""

    def __init__(self, base: Path, http_port: int, heap: str = "512m"):
        self.base = base
        self.http_port = http_port
        self.heap = heap
        self.pids: dict[str, int] = {}
        self.url = f"http://{devservers.HOST}:{http_port}"

    @property
    def pid(self) -> int | None:
        return self.pids.get("elasticsearch")

    def start(self, fresh: bool) -> None:
        """Start and wait for yellow; ``fresh=False`` restarts on the data left by a kill."""
        devservers.start_es(self.pids, base=self.base, http_port=self.http_port,
                            heap=self.heap, fresh=fresh)

    def kill(self) -> None:
        pid = self.pid
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not alive(pid), 30, f"Elasticsearch {pid} to die")
        # spawn() left the Popen behind; reap the process so it does not stay a zombie.
        try:
            os.waitpid(pid, 0)
        except (ChildProcessError, TypeError):
            pass


def free_es_port() -> int:
    """A free HTTP port in 9250-9298: the runner refuses ports above 9299."""
    for port in range(9250, 9299):
        if devservers.port_free(port) and devservers.port_free(port - 1):
            return port
    raise RuntimeError("no free port for a private Elasticsearch in 9250-9298")
