"""`hbase2es init`: read a sample of a table and write a job file for it.

Reads only: the first rows of each region (the sample, whole rows), then keys and cell
times only (``KeyOnlyFilter``) from where each region's sample stopped, within a budget,
to count the rows and find the range of row times. Nothing is written to HBase or
Elasticsearch; the guesses themselves are made by the pure modules ``infer``,
``inferwindow`` and ``jobfile``.
"""

from __future__ import annotations

import logging
import os
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..hbase import open_reader
from ..hbase.regions import region_bounds
from ..inferwindow import PLAUSIBLE_MS, RegionCount, detect_rowkey, estimate_rows
from ..jobfile import JobDraft, draft_job, render_job
from ..settings import ElasticsearchSettings, HBaseSettings, Settings
from ..timecodec import NO_TIME
from ..timesource import CellTimeSource
from .preflight import preflight

log = logging.getLogger(__name__)

# Keys counted after the sample, over all regions, and for how long at most: about ten
# slices' worth, a few seconds over Thrift on a 2-core machine.
COUNT_BUDGET_ROWS = 1_000_000
COUNT_BUDGET_SECONDS = 20.0
KEYS_ONLY = b"KeyOnlyFilter()"  # every cell's timestamp, no values: the newest cell time


@dataclass
class _Region:
    start: bytes
    end: bytes
    rows: list = field(default_factory=list)  # sampled (key, cells, newest cell ms)
    complete: bool = False  # the sample (or the count) reached the region's end
    counted: int = 0
    last_key: bytes = b""


def check_output(path: str, force: bool) -> Path:
    """The job file's path; an existing file needs ``force``, a missing directory fails."""
    target = Path(path)
    if target.exists() and not force:
        raise ConfigError(f"{path} already exists: give --force to write over it")
    if target.is_dir():
        raise ConfigError(f"{path} is a directory")
    if not target.parent.is_dir():
        raise ConfigError(f"directory of {path!r} does not exist")
    return target


def _sample(reader, regions: list[_Region], sample: int) -> None:
    """The first rows of each region, the quota spread evenly over the regions."""
    left = sample
    for i, region in enumerate(regions):
        quota = -(-left // (len(regions) - i))
        if quota <= 0:
            continue
        rows = reader.scan(row_start=region.start, row_stop=region.end)
        try:
            for row in rows:
                region.rows.append(row)
                if len(region.rows) >= quota:
                    break
            else:
                region.complete = True
        finally:
            rows.close()
        region.counted = len(region.rows)
        region.last_key = region.rows[-1][0] if region.rows else b""
        left -= len(region.rows)


class _TimeRange:
    def __init__(self, source) -> None:
        self.source = source
        self.first: int | None = None
        self.last: int | None = None

    def add(self, key: bytes, cells: dict, newest: int) -> None:
        t = self.source.row_time(key, cells, newest)
        if t == NO_TIME or (self.source.name == "rowkey" and not
                            PLAUSIBLE_MS[0] <= t < PLAUSIBLE_MS[1]):
            return
        self.first = t if self.first is None else min(self.first, t)
        self.last = t if self.last is None else max(self.last, t)


def _count(reader, regions: list[_Region], times: _TimeRange) -> None:
    """Count on from each region's sample with keys only, within the budgets."""
    per_region = max(COUNT_BUDGET_ROWS // len(regions), 1)
    deadline = time.monotonic() + COUNT_BUDGET_SECONDS
    for region in regions:
        for key, cells, newest in region.rows:
            times.add(key, cells, newest)
        if region.complete or time.monotonic() > deadline:
            continue
        rows = reader.scan(row_start=region.start, row_stop=region.end, filter=KEYS_ONLY,
                           after=region.last_key or None)
        try:
            for key, cells, newest in rows:
                region.counted += 1
                region.last_key = key
                times.add(key, cells, newest)
                if region.counted >= per_region or (region.counted % 1000 == 0
                                                    and time.monotonic() > deadline):
                    break
            else:
                region.complete = True
        finally:
            rows.close()


def draft_from_table(hbase: HBaseSettings, es_hosts: tuple[str, ...] | None,
                     sample: int) -> JobDraft:
    """Sample the table (and check Elasticsearch, when given) and draft its job."""
    if es_hosts:  # a typo in --es fails now, not at the first export
        preflight(Settings(hbase=hbase, elasticsearch=ElasticsearchSettings(hosts=es_hosts)))
    reader = open_reader(hbase)  # a missing table or server: UnavailableError, exit 3
    try:
        regions = [_Region(start, end) for start, end in region_bounds(reader.regions())]
        regions = regions or [_Region(b"", b"")]
        _sample(reader, regions, sample)
        rows = [row for region in regions for row in region.rows]
        layout = detect_rowkey([(key, newest) for key, _, newest in rows])
        times = _TimeRange(layout.source() if layout else CellTimeSource())
        _count(reader, regions, times)
    finally:
        reader.close()
    counts = [RegionCount(r.start, r.end, r.counted, r.complete,
                          r.rows[0][0] if r.rows else b"", r.last_key) for r in regions]
    time_range = None if times.first is None else (times.first, times.last)
    return draft_job(hbase=(hbase.host, hbase.port), table=hbase.table, es_hosts=es_hosts,
                     workers=os.cpu_count() or 1, rows=[cells for _, cells, _ in rows],
                     regions=len(regions), layout=layout, time_range=time_range,
                     estimate=estimate_rows(counts) if rows else None,
                     now_ms=int(time.time() * 1000))


def write_job(target: Path, text: str) -> None:
    """Write the file whole or not at all (a crash never leaves half a job file)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_init(hbase: HBaseSettings, es_hosts: tuple[str, ...] | None, sample: int,
             output: str, force: bool) -> str:
    """Draft the job of ``hbase.table``, write it to ``output``; return what to print."""
    target = check_output(output, force)
    draft = draft_from_table(hbase, es_hosts, sample)
    config = shlex.quote(output)
    write_job(target, render_job(draft, config))
    source = "rowkey" if draft.layout else "cell"
    rows = f"{draft.sampled_rows:,} sampled rows" if draft.sampled_rows else "no rows (empty table)"
    return "\n".join([
        f"wrote {output}: {len(draft.columns)} columns from {rows}; time source {source}, "
        f"window [{draft.start}, {draft.end}) in {draft.slice} slices",
        "next:",
        f"  hbase2es plan --config {config} --sample 3",
        f"  hbase2es export --config {config}",
    ])
