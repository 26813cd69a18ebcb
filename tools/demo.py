"""`make demo`: load a sample table into the local HBase and export it with hbase2es.

The table holds a few thousand events over one day (2026-11-01 UTC) with typed columns:
UTF-8 strings with non-ASCII text, Java big-endian longs and doubles, and JSON.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from pathlib import Path

import happybase

sys.path.insert(0, str(Path(__file__).resolve().parent))
import devservers  # noqa: E402

TABLE = "demo_events"
ROWS = 5000
DAY_START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
CITIES = ["Zürich", "København", "São Paulo", "Kraków", "東京", "Москва", "Reykjavík"]
USERS = ["ana", "björn", "chloé", "dmitrij", "émile", "fatma", "günter", "hiroshi"]


def load(address: str) -> None:
    host, port = address.rsplit(":", 1)
    conn = happybase.Connection(host, int(port), timeout=60000)
    try:
        if TABLE.encode() in conn.tables():
            conn.delete_table(TABLE, disable=True)
        conn.create_table(TABLE, {"cf": {"max_versions": 3}})
        table = conn.table(TABLE)
        rng = random.Random(42)
        # Each row has its own cell timestamp, so one put per row (a batch shares one).
        for i in range(ROWS):
            ts = DAY_START_MS + rng.randrange(86_400_000)
            table.put(f"evt-{i:06d}".encode(), {
                b"cf:user": rng.choice(USERS).encode(),
                b"cf:city": rng.choice(CITIES).encode(),
                b"cf:amount_cents": struct.pack(">q", rng.randrange(-10_000, 1_000_000)),
                b"cf:score": struct.pack(">d", rng.random() * 100),
                b"cf:attrs": json.dumps({"device": rng.choice(["ios", "android", "web"]),
                                         "beta": rng.random() < 0.2}).encode(),
                b"cf:note": "grüße aus der demo".encode(),
            }, timestamp=ts)
    finally:
        conn.close()
    print(f"demo: loaded {ROWS} rows over 2026-11-01 into HBase table {TABLE!r}", flush=True)


def main() -> int:
    env = devservers.up()
    hbase, es = env["HBASE2ES_TEST_HBASE"], env["HBASE2ES_TEST_ES"]
    load(hbase)
    report = devservers.STATE / "demo-report.json"
    cmd = [sys.executable, "-m", "hbase2es", "export", "--config", "configs/demo.toml",
           "--hbase", hbase, "--es", es, "--report", str(report)]
    print("demo: running", " ".join(cmd[2:]), flush=True)
    rc = subprocess.call(cmd, cwd=devservers.ROOT)
    if rc != 0:
        print(f"demo: export exited with {rc}", file=sys.stderr)
        return rc
    print(f"\ndemo: JSON report in {report.relative_to(devservers.ROOT)}")
    print("demo: look at the documents with:")
    print(f"  curl -s '{es}/demo-events-*/_search?size=3&pretty'")
    print("demo: stop the servers with: make servers-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
