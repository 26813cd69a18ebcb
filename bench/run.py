"""`make bench`: hbase2es against its ceilings and peers on the local real servers.

Environment (all optional):
  BENCH_SCALE     row-count factor, default 1.0 (0.1 for a quick run)
  BENCH_DATASETS  comma list of S, M, W; default M
  BENCH_REPEAT    repeats of every run (medians are reported), default 3
  BENCH_WORKERS   hbase2es worker counts (and bulk_only concurrencies), default 1,2,4
  BENCH_SLICES    time slices the 24 h window is cut into (hbase2es and seed), default 4
  BENCH_REGIONS   regions of the pre-split table (needs the Thrift2 server), default 4;
                  hbase2es_regions_w* export the window as one slice split by region
  BENCH_PROFILE   1 (default) adds the per-stage CPU breakdown and a pyinstrument profile
  BENCH_THRIFT2   0 (default): no hbase2es_thrift2_w* runs on this dataset (the extra
                  thrift_apis line compares the APIs on data made for it); auto: run
                  them when the project and the servers offer Thrift2; 1: require it
  BENCH_POOL_TASKS  tasks of the pool micro-benchmark, default 10000
  BENCH_KEEP      1 keeps the loaded HBase table (bench_keep_*) for the next run to reuse
  BENCH_EXTRAS    1 (default), 0, or a comma list of the comparison lines in bench/extras.py
                  (time sources, Thrift1 vs Thrift2, Spark vs pool)
  BENCH_BUDGET_S  wall-time budget; once the next repeat would not fit, no further repeats
                  start (the JSON says so). Default 840 s per 0.1 of scale (14 min at 0.1)
  BENCH_HISTORY   1 (default) or 0: the history-growth line (bench/history_line.py);
                  BENCH_HISTORY_CONFIG a TOML file replacing its cron configuration
  BENCH_DEVSERVERS  the folder `make servers` wrote (env, pids.json), default .devservers

Every run executes in a fresh child process (this file with --child), so its CPU time
(children included) and peak RSS are its own. Between runs the index is deleted and
created again with the same settings (1 shard, 0 replicas, refresh off), and after each
run the exact document count is checked: a wrong count makes the benchmark exit 1.

Writes bench/results/latest.json (+ a dated copy), latest.png and prints a table.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: `bench` and `hbase2es` importable

from bench.report import DEFAULT_HOURLY_RUN, DEFAULT_RUN  # noqa: E402 - needs ROOT on sys.path

RESULTS = ROOT / "bench" / "results"
# What `make servers` wrote (env, pids.json); another checkout's when the bench runs from a
# worktree against servers started elsewhere.
DEVSERVERS = Path(os.environ.get("BENCH_DEVSERVERS") or ROOT / ".devservers")

# Same for every run that writes: only what differs between the runs is measured.
INDEX_BODY = {
    "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"},
    "mappings": {
        # Row values are opaque text: keyword (no analysis), as most HBase exports map them.
        "dynamic_templates": [{"strings": {"match_mapping_type": "string",
                                           "mapping": {"type": "keyword", "ignore_above": 512}}}],
        "properties": {"@timestamp": {"type": "date"}},
    },
}
DEFAULT_INDEX_BODY = {"mappings": INDEX_BODY["mappings"]}  # ES defaults: refresh 1s
BREAKDOWN_ROWS = 20_000  # enough for stable per-document figures
DEFAULT_SLICES = 4  # the "plain 4-slice run" of default_vs_naive, whatever BENCH_SLICES says
TAIL_S = 90.0  # pool micro-benchmark, profile and cleanup after the repeats


class BenchError(Exception):
    """A bad BENCH_* value or a missing server: one line, exit 2."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- configuration


def _env_number(name: str, default, kind, minimum):
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        what = "whole number" if kind is int else "number"
        raise BenchError(f"{name}={text!r} is not a {what}") from None
    if value < minimum:
        raise BenchError(f"{name}={text!r} must be at least {minimum}")
    return value


def config() -> dict:
    scale = _env_number("BENCH_SCALE", 1.0, float, 0.0001)
    names = [n.strip().upper() for n in os.environ.get("BENCH_DATASETS", "M").split(",")
             if n.strip()]
    for name in names:
        if name not in ("S", "M", "W"):
            raise BenchError(f"BENCH_DATASETS: unknown dataset {name!r}; expected S, M or W")
    workers_text = os.environ.get("BENCH_WORKERS", "1,2,4")
    try:
        workers = sorted({int(w) for w in workers_text.split(",") if w.strip()})
    except ValueError:
        raise BenchError(f"BENCH_WORKERS={workers_text!r} must be numbers like 1,2,4") from None
    if not workers or workers[0] < 1:
        raise BenchError(f"BENCH_WORKERS={workers_text!r} must be numbers of at least 1")
    thrift2 = os.environ.get("BENCH_THRIFT2", "0").strip().lower() or "0"
    if thrift2 not in ("auto", "0", "1"):
        raise BenchError(f"BENCH_THRIFT2={thrift2!r} must be auto, 0 or 1")
    flags = {}
    for name, default in (("BENCH_KEEP", "0"), ("BENCH_PROFILE", "1"), ("BENCH_HISTORY", "1")):
        text = os.environ.get(name, default).strip() or default
        if text not in ("0", "1"):
            raise BenchError(f"{name}={text!r} must be 0 or 1")
        flags[name] = text == "1"
    return {
        "scale": scale, "datasets": names or ["M"], "workers": workers,
        "repeat": _env_number("BENCH_REPEAT", 3, int, 1),
        "slices": _env_number("BENCH_SLICES", 4, int, 1),
        "regions": _env_number("BENCH_REGIONS", 4, int, 1),
        "pool_tasks": _env_number("BENCH_POOL_TASKS", 10000, int, 100),
        "budget_s": _env_number("BENCH_BUDGET_S", 840.0 * max(1.0, scale / 0.1), float, 1.0),
        "thrift2": thrift2, "keep": flags["BENCH_KEEP"], "profile": flags["BENCH_PROFILE"],
        "history": flags["BENCH_HISTORY"],
    }


def servers() -> dict[str, str]:
    """Addresses of the local servers: the environment, else what `make servers` wrote."""
    env = {}
    try:
        for line in (DEVSERVERS / "env").read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                env[key.strip()] = value.strip()
    except OSError:
        pass
    for key in ("HBASE2ES_TEST_HBASE", "HBASE2ES_TEST_ES", "HBASE2ES_TEST_HBASE_THRIFT2"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    if not env.get("HBASE2ES_TEST_HBASE") or not env.get("HBASE2ES_TEST_ES"):
        raise BenchError("no servers: run `make servers` (or set HBASE2ES_TEST_HBASE and "
                         "HBASE2ES_TEST_ES)")
    return env


# --------------------------------------------------------------------------- Elasticsearch


def _http(method: str, url: str, body: dict | None = None, ok404: bool = False) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        if ok404 and exc.code == 404:
            return {}
        raise RuntimeError(f"{method} {url}: HTTP {exc.code} {exc.read()[:300]!r}") from None


def reset_index(es: str, index: str, body: dict) -> None:
    _http("DELETE", f"{es}/{index}", ok404=True)
    _http("PUT", f"{es}/{index}?wait_for_active_shards=1", body)


def drop_index(es: str, index: str) -> None:
    _http("DELETE", f"{es}/{index}", ok404=True)


def count_docs(es: str, index: str) -> int:
    _http("POST", f"{es}/{index}/_refresh")
    return int(_http("GET", f"{es}/{index}/_count")["count"])


def orphan_cleanup(es: str, hbase_host: str, hbase_port: int) -> None:
    """Drop bench_* tables and indices left by benchmark processes that no longer exist."""
    from bench import datasets

    def dead(name: str) -> bool:
        tail = name.rsplit("_", 1)[-1]
        return tail.isdigit() and not os.path.exists(f"/proc/{tail}")

    try:
        for index in _http("GET", f"{es}/_cat/indices/bench_*?format=json&h=index", ok404=True) \
                or []:
            if dead(index["index"]):
                drop_index(es, index["index"])
    except Exception as exc:  # noqa: BLE001 - best effort
        log(f"could not list old bench indices: {exc}")
    conn = datasets.connect(hbase_host, hbase_port)
    try:
        for name in conn.tables():
            name = name.decode()
            if name.startswith("bench_") and dead(name):
                datasets.drop_table(conn, name)
    finally:
        conn.close()


# --------------------------------------------------------------------------- child runs


def run_child(spec: dict, timeout: float) -> dict:
    """Run one measured run in a fresh interpreter; its last stdout line is the result."""
    from bench.child import run_in_child

    return run_in_child([sys.executable, str(Path(__file__).resolve()), "--child",
                         json.dumps(spec)], spec["name"], "BENCH_RESULT ", timeout)


class Stopwatch:
    """The timed part of a child run: wall time, CPU (own and reaped children), servers' CPU."""

    def __init__(self, pids: dict[str, int]):
        from bench.report import CpuSampler, RssSampler

        self.sampler = CpuSampler(pids)
        self.rss = RssSampler()
        self.rss.start()
        self.stopped = False

    @staticmethod
    def _usage():
        import resource

        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.perf_counter(), own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime

    def start(self) -> None:
        self.sampler.start()
        self._start = self._usage()

    def stop(self) -> None:
        if not self.stopped:
            self._stop = self._usage()
            self.sampler.stop()
            self.stopped = True

    def result(self) -> dict:
        from bench.report import vm_hwm_kib

        self.rss.close()
        (w0, c0, k0), (w1, c1, k1) = self._start, self._stop
        # VmHWM, not ru_maxrss: Linux carries a process's ru_maxrss over fork and exec, so a
        # child would report at least what its parent had when it was started.
        return {
            "seconds": w1 - w0, "cpu_self_s": c1 - c0, "cpu_children_s": k1 - k0,
            "maxrss_self_kib": vm_hwm_kib(os.getpid()) or 0,
            "maxrss_children_kib": max(self.rss.peaks.values(), default=0),
            "servers_cpu_s": self.sampler.seconds,
        }


def child_main(spec: dict) -> int:
    from bench.baselines import KINDS
    from bench.child import child_main as run_kind

    return run_kind(KINDS, spec, "BENCH_RESULT ", start_watch=True)


# --------------------------------------------------------------------------- one dataset


def measured(name: str, raw: dict, workers: int | None) -> dict:
    """Per-repeat numbers derived from a child's raw result."""
    seconds, docs = raw["seconds"], raw["docs"]
    cpu = raw["cpu_self_s"] + raw["cpu_children_s"]
    share = {"tool": round(100 * cpu / seconds, 1)}
    for key, value in raw["servers_cpu_s"].items():
        if key != "machine_total":
            share[key] = round(100 * value / seconds, 1)
    out = {
        "docs": docs, "seconds": round(seconds, 3), "docs_per_s": docs / seconds,
        "cpu_us_per_doc": round(cpu * 1e6 / docs, 2) if docs else None,
        "peak_rss_mib": round(max(raw["maxrss_self_kib"], raw["maxrss_children_kib"]) / 1024, 1),
        "rows_read_per_doc": round(raw["rows_read"] / docs, 2)
        if raw.get("rows_read") and docs else None,
        "cpu_share": share,
    }
    if name.startswith("hbase2es"):
        # The workers are the only children of the run's process: their peak is the max.
        out["worker_rss_mib"] = round(raw["maxrss_children_kib"] / 1024, 1)
        out["parent_rss_mib"] = round(raw["maxrss_self_kib"] / 1024, 1)
        out["parent_cpu_us_per_doc"] = round(raw["cpu_self_s"] * 1e6 / docs, 2) if docs else None
    if workers is not None:
        out["workers"] = workers
    for key in ("slices", "strategies"):
        if raw.get(key) is not None:
            out[key] = raw[key]
    if name.startswith(DEFAULT_RUN):
        out["workers"] = raw.get("workers")
    return out


def thrift2_variant(cfg: dict, env: dict) -> dict | None:
    """Overrides for an hbase2es run over Thrift2, when the project and servers offer it."""
    if cfg["thrift2"] == "0":
        return None
    import importlib.util

    from hbase2es.settings import HBaseSettings

    address = env.get("HBASE2ES_TEST_HBASE_THRIFT2")
    has_api = "api" in {f.name for f in fields(HBaseSettings)}
    has_reader = importlib.util.find_spec("hbase2es.hbase.thrift2") is not None
    if not (address and has_api and has_reader):
        if cfg["thrift2"] == "1":
            raise BenchError("BENCH_THRIFT2=1 but Thrift2 is not available (needs [hbase] api, "
                             "hbase2es.hbase.thrift2 and HBASE2ES_TEST_HBASE_THRIFT2)")
        return None
    host, port = address.rsplit(":", 1)
    return {"hbase.api": "thrift2", "hbase.host": host, "hbase.port": int(port)}


def region_split_key() -> str | None:
    """The settings key of region splitting (issue 6), once the project has one."""
    from hbase2es import settings as s

    for section, cls in s.SECTIONS.items():
        if "split_by_region" in {f.name for f in fields(cls)}:
            return f"{section}.split_by_region"
    return None


def bulk_load_key() -> str | None:
    """The settings key of bulk-load mode (issue 7), once the project has one."""
    from hbase2es import settings as s

    for section, cls in s.SECTIONS.items():
        if "bulk_load" in {f.name for f in fields(cls)}:
            return f"{section}.bulk_load"
    return None


def plan_runs(cfg: dict, env: dict, regions: int) -> list[dict]:
    """The runs of one repeat, in order: ceilings, peers, hbase2es variants."""
    runs = [{"name": "scan_only", "kind": "scan_only"}]
    runs += [{"name": f"bulk_only_w{n}", "kind": "bulk_only", "workers": n}
             for n in cfg["workers"]]
    runs += [{"name": "naive", "kind": "naive"}, {"name": "seed", "kind": "seed"}]
    runs += [{"name": f"hbase2es_w{n}", "kind": "hbase2es", "workers": n}
             for n in cfg["workers"]]
    from bench.datasets import WINDOW_MS

    # Issue 15: what a newcomer gets, every setting at its default: the window in 4 slices
    # (default_vs_naive), and in the default 1 h slices (read_amp_default: 24 of them).
    runs += [{"name": DEFAULT_RUN, "kind": "hbase2es", "default_config": True,
              "overrides": {"window.slice": f"{WINDOW_MS // DEFAULT_SLICES}ms"}},
             {"name": DEFAULT_HOURLY_RUN, "kind": "hbase2es", "default_config": True}]
    if regions > 1 and region_split_key():
        # The whole window as one slice, one task per region: every row is read once even
        # over Thrift1, and the workers still share the work.
        runs += [{"name": f"hbase2es_regions_w{n}", "kind": "hbase2es", "workers": n,
                  "overrides": {"window.slice": f"{WINDOW_MS}ms",
                                region_split_key(): True},
                  "one_slice": True} for n in cfg["workers"]]
    thrift2 = thrift2_variant(cfg, env)
    if thrift2:
        runs += [{"name": f"hbase2es_thrift2_w{n}", "kind": "hbase2es", "workers": n,
                  "overrides": thrift2, "thrift2": True} for n in cfg["workers"]]
    key = bulk_load_key()
    if key:
        n = min(max(cfg["workers"]), os.cpu_count() or 2)
        runs += [{"name": f"hbase2es_w{n}_es_defaults", "kind": "hbase2es", "workers": n,
                  "index_body": DEFAULT_INDEX_BODY},
                 {"name": f"hbase2es_w{n}_bulk_load", "kind": "hbase2es", "workers": n,
                  "index_body": DEFAULT_INDEX_BODY, "overrides": {key: True}}]
    return runs


def window_slices(slice_text: str | None) -> list[tuple[int, int]]:
    """The bench window cut as an export with this slice setting (None: the default) cuts it."""
    from bench.datasets import WINDOW_MS, WINDOW_START_MS
    from hbase2es.sections import WindowSettings
    from hbase2es.timewindow import parse_duration

    slice_ms = parse_duration(slice_text or WindowSettings().slice)
    end_ms = WINDOW_START_MS + WINDOW_MS
    return [(s, min(s + slice_ms, end_ms)) for s in range(WINDOW_START_MS, end_ms, slice_ms)]


def bench_dataset(cfg: dict, env: dict, name: str, failures: list[str], deadline: float,
                  history: dict | None = None) -> dict:
    from bench import datasets
    from bench.pool_bench import measure
    from bench.report import ratios, server_pids, summarize, targets
    from hbase2es.settings import ElasticsearchSettings, HBaseSettings

    ds = datasets.dataset(name, cfg["scale"])
    hbase, es = env["HBASE2ES_TEST_HBASE"], env["HBASE2ES_TEST_ES"]
    host, port = hbase.rsplit(":", 1)
    thrift2 = env.get("HBASE2ES_TEST_HBASE_THRIFT2")  # only Thrift2 can pre-split a table
    regions_wanted = cfg["regions"] if thrift2 else 1
    table = datasets.table_name(ds, cfg["keep"], regions_wanted)
    index = f"bench_{ds.tag}_{os.getpid()}"
    marker = f"{table}_ready"
    slice_ms = -(-datasets.WINDOW_MS // cfg["slices"])
    start_ms, end_ms = datasets.WINDOW_START_MS, datasets.WINDOW_START_MS + datasets.WINDOW_MS
    slices = [(s, min(s + slice_ms, end_ms)) for s in range(start_ms, end_ms, slice_ms)]
    defaults_es, defaults_hbase = ElasticsearchSettings(), HBaseSettings()
    payload_file = Path(f"/tmp/bench_payload_{os.getpid()}_{ds.tag}.ndjson")
    base = {
        "hbase": hbase, "es": es, "table": table, "index": index, "rows": ds.rows,
        "batch_size": defaults_hbase.batch_size, "bulk_docs": defaults_es.bulk_docs,
        "bulk_bytes": defaults_es.bulk_bytes, "start_ms": start_ms, "end_ms": end_ms,
        "slice": f"{slice_ms}ms", "slices": slices,
        "rows_read_sliced": datasets.rows_read_by_slices(ds, slices),
        "payload_file": str(payload_file), "timeout": 120 + ds.rows / 200,
        "breakdown_rows": min(ds.rows, BREAKDOWN_ROWS),
    }
    out = {"dataset": ds.describe(), "table": table, "index": index,
           "slices": len(slices), "slice_ms": slice_ms,
           "rows_per_slice": datasets.rows_by_slice(ds, slices),
           "settings": {"bulk_docs": base["bulk_docs"], "bulk_bytes": base["bulk_bytes"],
                        "scan_batch_size": base["batch_size"]}}
    hbase_pid = server_pids(DEVSERVERS).get("hbase-master")
    conn = datasets.connect(host, int(port))
    try:
        reuse = cfg["keep"] and datasets.table_exists(conn, table) \
            and datasets.table_exists(conn, marker)
    finally:
        conn.close()
    try:
        if reuse:
            log(f"{name}: reusing loaded table {table} ({ds.rows} rows)")
            out["load"] = {"reused": True}
        else:
            log(f"{name}: loading {ds.rows} rows x {ds.columns} columns x {ds.value_bytes} B "
                f"into {table}")
            out["load"] = datasets.load(ds, host, int(port), table, regions=regions_wanted,
                                        thrift2=thrift2, log=log)
            log(f"{name}: loaded in {out['load']['load_seconds']}s "
                f"({out['load']['load_rows_per_s']} rows/s); major compaction")
            out["load"].update(datasets.compact_and_settle(host, int(port), table, hbase_pid,
                                                           cap_s=60 + ds.rows / 5000))
            if cfg["keep"]:
                conn = datasets.connect(host, int(port))
                try:
                    datasets.drop_table(conn, marker)
                    conn.create_table(marker, {"cf": {}})
                finally:
                    conn.close()
        out["regions"] = datasets.regions(host, int(port), table)

        log(f"{name}: building the bulk bodies for bulk_only (untimed)")
        built = run_child({**base, "name": "build_payloads", "kind": "build_payloads"},
                          timeout=base["timeout"])
        base["offsets"] = built["offsets"]
        if built["docs"] != ds.rows:
            failures.append(f"{name}: table holds {built['docs']} rows, expected {ds.rows}")

        plan = plan_runs(cfg, env, out["regions"])
        per_run: dict[str, list[dict]] = {run["name"]: [] for run in plan}
        errors: dict[str, str] = {}
        out["repeats_done"] = 0
        for repeat in range(cfg["repeat"]):
            repeat_started = time.monotonic()
            # Each repeat starts at another place in the plan, so that a slow spell of the
            # shared machine does not always fall on the same runs.
            shift = repeat * len(plan) // cfg["repeat"]
            for run in plan[shift:] + plan[:shift]:
                if run["name"] in errors:
                    continue
                spec = {**base, **run}
                if run.get("thrift2"):
                    spec["rows_read_sliced"] = None  # not known from outside the server
                elif run.get("one_slice"):
                    spec["rows_read_sliced"] = ds.rows
                elif run.get("default_config"):
                    spec["rows_read_sliced"] = datasets.rows_read_by_slices(
                        ds, window_slices(run.get("overrides", {}).get("window.slice")))
                reset_index(es, index, run.get("index_body", INDEX_BODY))
                try:
                    raw = run_child(spec, timeout=base["timeout"])
                    result = measured(run["name"], raw, run.get("workers"))
                    check_count(run, raw, es, index, ds.rows)
                except Exception as exc:  # noqa: BLE001 - recorded; the bench exits 1
                    errors[run["name"]] = str(exc)[:1000]
                    failures.append(f"{name}/{run['name']}: {exc}"[:1000])
                    log(f"  {run['name']:<24} FAILED: {str(exc)[:300]}")
                    continue
                per_run[run["name"]].append(result)
                log(f"  {run['name']:<24} repeat {repeat + 1}/{cfg['repeat']}: "
                    f"{result['docs_per_s']:>9,.0f} docs/s  {result['seconds']:6.2f}s  "
                    f"CPU {result['cpu_us_per_doc']} us/doc")
            out["repeats_done"] = repeat + 1
            took = time.monotonic() - repeat_started
            if repeat + 1 < cfg["repeat"] and time.monotonic() + took + TAIL_S > deadline:
                out["repeats_cut"] = (f"{repeat + 1} of {cfg['repeat']} repeats: another "
                                      f"({took:.0f}s) would overrun BENCH_BUDGET_S")
                log(f"{name}: stopping after {out['repeats_cut']}")
                break
        runs = {run: summarize(results) for run, results in per_run.items() if results}
        bulk = [n for n in runs if n.startswith("bulk_only_w")]
        if bulk:
            best = max(bulk, key=lambda n: runs[n]["docs_per_s"])
            runs["bulk_only"] = {**runs[best], "best_of": best}
        out["runs"] = runs
        out["errors"] = errors

        log(f"{name}: pool micro-benchmark ({cfg['pool_tasks']} no-op tasks, 2 processes)")
        pool = measure(cfg["pool_tasks"], processes=2, repeat=max(3, out["repeats_done"]))
        out["pool"] = {k: round(v, 3) for k, v in pool.items()}

        if cfg["profile"]:
            out["breakdown"] = profile_runs(base, es, index, out["rows_per_slice"][-1], name,
                                            failures)
        values, notes = ratios(runs, pool, history)
        out["ratios"] = values
        out["ratio_notes"] = notes
        out["targets"] = targets(values, name)
    finally:
        drop_index(es, index)
        payload_file.unlink(missing_ok=True)
        if not cfg["keep"]:
            conn = datasets.connect(host, int(port))
            try:
                datasets.drop_table(conn, table)
            finally:
                conn.close()
    return out


def check_count(run: dict, raw: dict, es: str, index: str, expected: int) -> None:
    """The exact number of documents, from the run itself and (if it wrote) from the index."""
    if raw["docs"] != expected:
        raise RuntimeError(f"reported {raw['docs']} documents, expected {expected}")
    if run["kind"] != "scan_only":
        found = count_docs(es, index)
        if found != expected:
            raise RuntimeError(f"index holds {found} documents, expected {expected}")


def profile_runs(base: dict, es: str, index: str, last_slice_rows: int, name: str,
                 failures: list[str]) -> dict:
    """Per-stage CPU of the hot path, and a pyinstrument profile of SliceExporter.run."""
    out = {}
    expected = {"breakdown": base["breakdown_rows"], "profile": last_slice_rows}
    for kind in ("breakdown", "profile"):
        reset_index(es, index, INDEX_BODY)
        spec = {**base, "name": kind, "kind": kind,
                "profile_file": str(RESULTS / f"profile-{name.lower()}.txt")}
        try:
            raw = run_child(spec, timeout=base["timeout"])
            if raw.get("docs") is not None:
                check_count({"kind": kind}, raw, es, index, expected[kind])
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{name}/{kind}: {exc}"[:1000])
            log(f"  {kind} FAILED: {str(exc)[:300]}")
            continue
        if kind == "breakdown":
            out["cpu_us_per_doc"] = raw["us_per_doc"]
            out["wall_us_per_doc"] = raw["wall_us_per_doc"]
            out["bytes_per_doc"] = raw["bytes_per_doc"]
            log(f"  breakdown (client CPU us/doc): {raw['us_per_doc']}")
        else:
            out["profile_file"] = raw.get("profile_file") or raw.get("skipped")
            if raw.get("docs"):
                out["profile_last_slice"] = {
                    "docs": raw["docs"], "rows_read": raw.get("rows_read"),
                    "cpu_us_per_doc": round((raw["cpu_self_s"] + raw["cpu_children_s"]) * 1e6
                                            / raw["docs"], 2)}
            log(f"  profile written to {out['profile_file']}")
    return out


# --------------------------------------------------------------------------- main


def run_history(cfg: dict, env: dict, failures: list[str], deadline: float, line) -> dict:
    """The history-growth line (``line`` = bench.history_line), unless BENCH_HISTORY=0.

    It gets a share of the budget like one more dataset; a broken line is a failure of
    the benchmark, not the end of it.
    """
    import traceback

    if not cfg["history"]:
        log("history: off (BENCH_HISTORY=0)")
        return {"skipped": "BENCH_HISTORY=0"}
    began = time.monotonic()
    share = (deadline - began) / (len(cfg["datasets"]) + 1)
    try:
        out = line.history_growth(cfg, env, failures, began + share)
    except Exception as exc:  # noqa: BLE001 - recorded; the bench exits 1
        traceback.print_exc()
        failures.append(f"history: {type(exc).__name__}: {exc}"[:1000])
        out = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
    out["line_seconds"] = round(time.monotonic() - began, 1)
    return out


def main() -> int:
    from bench import history_line
    from bench.report import (RATIO_KEYS, chart, machine, markdown_table, ratio_lines,
                              ratio_markdown, server_pids, table, write_json)

    started = time.monotonic()
    try:
        cfg = config()
        env = servers()
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    host, port = env["HBASE2ES_TEST_HBASE"].rsplit(":", 1)
    pids = server_pids(DEVSERVERS)
    log(f"config {cfg}; servers HBase {env['HBASE2ES_TEST_HBASE']}, ES {env['HBASE2ES_TEST_ES']}; "
        f"server pids {pids}")
    orphan_cleanup(env["HBASE2ES_TEST_ES"], host, int(port))
    failures: list[str] = []
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
               "config": cfg, "server_pids": pids, "datasets": {}}
    deadline = started + cfg["budget_s"]
    try:
        # bench/extras.py (issues 6, 9, 10) first: a bad BENCH_EXTRAS fails at once, and
        # the datasets below share what is left of the budget.
        from bench import extras
        results["extras"] = extras.run_all(cfg, env, failures, deadline, BenchError)
        results["history"] = run_history(cfg, env, failures, deadline, history_line)
        for number, name in enumerate(cfg["datasets"]):
            # Each dataset gets an equal share of what is left of the budget.
            share = (deadline - time.monotonic()) / (len(cfg["datasets"]) - number)
            results["datasets"][name] = bench_dataset(cfg, env, name, failures,
                                                      time.monotonic() + share,
                                                      results["history"])
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    primary = "M" if "M" in results["datasets"] else cfg["datasets"][0]
    main_result = results["datasets"][primary]
    results["primary_dataset"] = primary
    results["runs"] = main_result.get("runs", {})
    results["ratios"] = main_result.get("ratios", {k: None for k in RATIO_KEYS})
    results["failures"] = failures
    cut = {n: d["repeats_cut"] for n, d in results["datasets"].items() if d.get("repeats_cut")}
    if cut:
        results["repeats_cut"] = cut
    results["seconds"] = round(time.monotonic() - started, 1)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "latest.json", results)
    write_json(RESULTS / f"{stamp}.json", results)
    for name, data in results["datasets"].items():
        ds = data["dataset"]
        title = (f"hbase2es bench: dataset {name} ({ds['rows']:,} rows x {ds['columns']} cols x "
                 f"{ds['value_bytes']} B, scale {ds['scale']:g}), {results['machine']['cores']} "
                 f"cores, {results['machine'].get('memory_gib')} GiB")
        if data.get("runs"):
            suffix = "" if name == primary else f"-{name.lower()}"
            if chart(RESULTS / f"latest{suffix}.png", data["runs"], title, results["history"]):
                (RESULTS / f"{stamp}{suffix}.png").write_bytes(
                    (RESULTS / f"latest{suffix}.png").read_bytes())
        print()
        print(title)
        print(table(data.get("runs", {})))
        print("\n" + history_line.table_text(results["history"]))
        print("\nratios:")
        print(ratio_lines(data.get("ratios", {}), data.get("targets", {})))
        if data.get("breakdown", {}).get("cpu_us_per_doc"):
            print(f"client CPU per document by stage (us): {data['breakdown']['cpu_us_per_doc']}")
        (RESULTS / f"latest{'' if name == primary else '-' + name.lower()}.md").write_text(
            title + "\n\n" + markdown_table(data.get("runs", {})) + "\n\n"
            + ratio_markdown(data.get("ratios", {}), data.get("targets", {})) + "\n")
    print(f"\nresults: {RESULTS / 'latest.json'} ({results['seconds']:.0f}s)")
    if failures:
        print("\nbench: FAILED checks:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(child_main(json.loads(sys.argv[2])))
    sys.exit(main())
