"""What a plan will read: per slice, the read strategy and an estimate of rows to read
and to write, and the one-line warning when the chosen path reads more than ~2 rows per
document, naming the setting that fixes it.

Pure: ``plan`` contacts no server, so the estimate is in units of the window, under one
stated assumption: the window's rows are spread evenly over its slices, ``write`` = 1
is one slice's documents, and rows older than the window (history, which only a Thrift1
or column scan reads) are left out: they add to every such read, never to a Thrift2 or
row-key one.
"""

from __future__ import annotations

from .onepass import wants_one_pass

# More rows read per document than this, and plan warns.
WARN_READS_PER_DOC = 2.0
ASSUMES = ("rows spread evenly over the window, one slice's documents = 1; history older "
           "than the window not counted (a Thrift1 or column scan reads it too)")


def read_path(settings) -> str:
    """The short name of how the slices are read (what plan shows per slice)."""
    source, api = settings.window.time_source, settings.hbase.api
    if source == "rowkey":
        return "rowkey ranges"
    thrift2 = api == "thrift2" or (api == "auto" and bool(settings.hbase.thrift2))
    if source == "column":
        return "column filter, whole table"
    if thrift2:
        return "thrift2 [start, end)"
    return "thrift1 one pass" if wants_one_pass(settings) else "thrift1 per slice"


def slice_estimates(settings, n_slices: int) -> list[dict]:
    """Per slice ``{"strategy", "read", "write"}`` (units: one slice's documents)."""
    path = read_path(settings)
    out = []
    for i in range(n_slices):
        if path == "thrift1 per slice":
            read = float(i + 1)  # every row with a cell older than this slice's end
        elif path == "column filter, whole table":
            read = float(n_slices)  # every row of the window, each slice
        else:  # one pass reads each row once; a server-side range reads its own rows
            read = 1.0
        out.append({"strategy": path, "read": read, "write": 1.0})
    return out


def reads_per_document(estimates: list[dict]) -> float:
    if not estimates:
        return 0.0
    return sum(e["read"] for e in estimates) / sum(e["write"] for e in estimates)


def read_warning(settings, estimates: list[dict]) -> str | None:
    """One line when the plan reads more than WARN_READS_PER_DOC rows per document."""
    ratio = reads_per_document(estimates)
    path = estimates[0]["strategy"] if estimates else ""
    if settings.run.incremental and path.startswith("thrift1"):
        # The estimate leaves history out; an increment is where it dominates.
        return ("an incremental run over Thrift1 scans every row older than its end, the "
                "table's whole history, each run: set [hbase] thrift2 = \"host:port\" of a "
                "Thrift2 server (api = \"auto\") to read only the rows that changed")
    if ratio <= WARN_READS_PER_DOC:
        return None
    why = "each slice scans every row older than its end"
    if path == "column filter, whole table":
        why = "each slice scans the whole table"
        fix = ("fewer, longer slices (--slice), or time_source = \"rowkey\" if the key holds "
               "the time")
    elif settings.run.executor != "local":
        fix = ("[hbase] thrift2 = \"host:port\" of a Thrift2 server (api = \"auto\"), since "
               "the Spark executor reads each slice on its own")
    else:
        fix = ("[run] one_pass = true (one scan for all slices), or [hbase] thrift2 = "
               "\"host:port\" of a Thrift2 server (api = \"auto\")")
    return f"this plan reads ~{ratio:.1f} rows per document ({path}: {why}): set {fix}"
