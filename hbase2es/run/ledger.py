"""The ledger: a durable record of every slice of a job, in SQLite (WAL mode).

Only the parent process writes it, one short transaction per event, so a run killed
at any moment leaves a ledger that is true: a slice is ``done`` only after all its
documents were acknowledged by Elasticsearch; anything else (``running`` from a
killed run, ``failed``, ``pending``) is run again by ``--resume``. Re-running a slice
is safe because writes are idempotent (row-key ``_id``, external versions).

A kernel lock (``flock``) on ``<ledger>.lock`` keeps two runs off one ledger; the
kernel drops it when its holder dies, so a killed run never blocks the next one.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import orjson

from ..docaddress import id_scheme, routing_template
from ..errors import ConfigError, ExitCode, Hbase2esError
from .pieces import Checkpoint

SCHEMA = """
CREATE TABLE IF NOT EXISTS job (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS slices (
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    rows INTEGER NOT NULL DEFAULT 0,
    indexed INTEGER NOT NULL DEFAULT 0,
    stale INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_row_key BLOB,
    error TEXT,
    checkpoint TEXT,
    started_at REAL,
    finished_at REAL,
    PRIMARY KEY (start_ms, end_ms)
);
"""

STATUSES = ("pending", "running", "done", "failed")
LEDGER_TABLES = {"job", "slices"}
# Columns added after the first release, with their SQL type: older ledgers get them.
ADDED_COLUMNS = {"checkpoint": "TEXT"}


class LedgerLocked(Hbase2esError):
    exit_code = ExitCode.LOCKED


@dataclass(frozen=True)
class LedgerSlice:
    start_ms: int
    end_ms: int
    status: str
    rows: int
    indexed: int
    stale: int
    failed: int
    attempts: int
    last_row_key: bytes | None
    error: str | None


def job_definition(settings) -> dict:
    """What determines the documents a job writes; a ledger belongs to exactly one."""
    window = dataclasses.asdict(settings.window)
    for key in ("start", "end", "slice"):  # the same job may be cut and extended freely
        window.pop(key, None)
    mapping = settings.mapping
    definition = {
        "table": settings.hbase.table,
        "index": settings.elasticsearch.index,
        "window": window,
        "mapping": {
            "columns": [[c.column.decode("utf-8", "backslashreplace"), c.field, c.type]
                        for c in mapping.columns],
            "unmapped": mapping.unmapped, "rowkey_field": mapping.rowkey_field,
            "timestamp_field": mapping.timestamp_field,
            "on_decode_error": mapping.on_decode_error,
        },
    }
    # Another id scheme, routing or delete rule would write the same rows as other
    # documents and strand the ones written so far. Only when set, so older ledgers keep
    # matching.
    rule = settings.delete_when
    if rule is not None:
        definition["delete_when"] = [rule.column.decode("utf-8", "backslashreplace"),
                                     None if rule.equals is None else rule.equals.hex(),
                                     rule.tombstone]
    if mapping.id_template is not None:
        definition["id"] = id_scheme(mapping)
    routing = routing_template(settings.elasticsearch.routing)
    if routing is not None:
        definition["routing"] = routing
    return definition


def job_identity(definition: dict) -> str:
    """A stable fingerprint of what determines a job's output."""
    return hashlib.sha256(orjson.dumps(definition, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


class Ledger:
    def __init__(self, path: str, *, readonly: bool = False):
        """Open (and create) a job's ledger and take its run lock; ``readonly`` does neither,
        so `status` can look at a ledger while a run holds it."""
        self.path = path
        self._lock_fd = -1
        if not readonly:
            self._take_lock()
        try:
            if readonly:
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30,
                                          isolation_level=None)
                self.db.execute("SELECT 1 FROM slices LIMIT 1")  # a ledger, not any SQLite file
                return
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._refuse_foreign_database()
            self.db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives a killed process; only a power cut may lose the last commit.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            self._add_missing_columns()
        except sqlite3.Error as exc:
            self.close()
            raise ConfigError(f"cannot open ledger {path}: {exc}") from None
        except ConfigError:
            self.close()
            raise

    def _refuse_foreign_database(self) -> None:
        """A SQLite file with tables of its own is somebody else's database: never add ours."""
        tables = {name for (name,) in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and not LEDGER_TABLES <= tables:
            shown = ", ".join(sorted(tables)[:5])
            raise ConfigError(f"--ledger {self.path} is a SQLite database but not a ledger "
                              f"(it has tables {shown}); give a new file or a ledger")

    def _add_missing_columns(self) -> None:
        have = {row[1] for row in self.db.execute("PRAGMA table_info(slices)")}
        for name, kind in ADDED_COLUMNS.items():
            if name not in have:
                self.db.execute(f"ALTER TABLE slices ADD COLUMN {name} {kind}")

    # ------------------------------------------------------------------ lock

    def _take_lock(self) -> None:
        lock_path = self.path + ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LedgerLocked(f"ledger {self.path} is in use by another run (PID {holder}); "
                               "try again when it has finished") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
            self.db = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = -1

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ job

    def bind_job(self, definition: dict) -> None:
        """Record the job this ledger belongs to, or refuse a ledger of another job."""
        if self.check_job(definition):
            return
        with self.db:
            self.db.execute("INSERT INTO job VALUES ('identity', ?)", (job_identity(definition),))
            self.db.execute("INSERT INTO job VALUES ('definition', ?)",
                            (orjson.dumps(definition).decode(),))

    def check_job(self, definition: dict) -> bool:
        """True if this ledger belongs to the job, False if to none yet; another job's
        ledger is refused. Writes nothing, so it also serves a read-only ledger."""
        identity = job_identity(definition)
        row = self.db.execute("SELECT value FROM job WHERE key = 'identity'").fetchone()
        if row is None:
            return False
        if row[0] != identity:
            old = self.definition()
            changed = sorted(k for k in set(old) | set(definition) if old.get(k) != definition.get(k))
            raise ConfigError(f"ledger {self.path} belongs to another job (differs in: "
                              f"{', '.join(changed) or 'definition'}); use another --ledger file")
        return True

    def record_lookback(self, lookback: str | None) -> None:
        """Remember the lookback of this --incremental run, for `status` to show."""
        self.db.execute("INSERT INTO job VALUES ('lookback', ?) ON CONFLICT (key) DO UPDATE "
                        "SET value = excluded.value", (lookback or "",))

    def lookback(self) -> str | None:
        """The last --incremental run's lookback: a duration, "" for none, None if unknown
        (no incremental run recorded one)."""
        row = self.db.execute("SELECT value FROM job WHERE key = 'lookback'").fetchone()
        return None if row is None else row[0]

    def definition(self) -> dict:
        row = self.db.execute("SELECT value FROM job WHERE key = 'definition'").fetchone()
        return orjson.loads(row[0]) if row else {}

    # ------------------------------------------------------------------ slices

    def slices(self) -> list[LedgerSlice]:
        rows = self.db.execute(
            "SELECT start_ms, end_ms, status, rows, indexed, stale, failed, attempts, "
            "last_row_key, error FROM slices ORDER BY start_ms, end_ms").fetchall()
        return [LedgerSlice(*r) for r in rows]

    def done(self) -> set[tuple[int, int]]:
        return {(s, e) for s, e in self.db.execute(
            "SELECT start_ms, end_ms FROM slices WHERE status = 'done'")}

    def mark_pending(self, start_ms: int, end_ms: int) -> None:
        self.db.execute("INSERT OR IGNORE INTO slices (start_ms, end_ms, status) "
                        "VALUES (?, ?, 'pending')", (start_ms, end_ms))

    def mark_running(self, start_ms: int, end_ms: int) -> None:
        self.db.execute(
            "INSERT INTO slices (start_ms, end_ms, status, attempts, started_at) "
            "VALUES (?, ?, 'running', 1, ?) ON CONFLICT (start_ms, end_ms) DO UPDATE SET "
            "status = 'running', attempts = attempts + 1, started_at = excluded.started_at, "
            "error = NULL", (start_ms, end_ms, time.time()))

    def mark_progress(self, start_ms: int, end_ms: int, checkpoint: Checkpoint) -> None:
        """Every row of the slice up to ``checkpoint.last_key`` is settled, with these counts."""
        counts = {k: getattr(checkpoint, k)
                  for k in ("rows", "indexed", "stale", "failed", "skipped_fields")}
        self.db.execute("UPDATE slices SET last_row_key = ?, checkpoint = ? "
                        "WHERE start_ms = ? AND end_ms = ?",
                        (checkpoint.last_key, orjson.dumps(counts).decode(), start_ms, end_ms))

    def checkpoints(self) -> dict[tuple[int, int], Checkpoint]:
        """Where each slice that is not done got to, for ``--resume`` to start after."""
        out = {}
        for start, end, key, counts in self.db.execute(
                "SELECT start_ms, end_ms, last_row_key, checkpoint FROM slices "
                "WHERE status != 'done' AND last_row_key IS NOT NULL AND checkpoint IS NOT NULL"):
            out[(start, end)] = Checkpoint(bytes(key), **orjson.loads(counts))
        return out

    def mark_finished(self, start_ms: int, end_ms: int, status: str, *, rows: int = 0,
                      indexed: int = 0, stale: int = 0, failed: int = 0,
                      error: str | None = None) -> None:
        assert status in STATUSES
        self.db.execute(
            "INSERT INTO slices (start_ms, end_ms, status, rows, indexed, stale, failed, error, "
            "finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (start_ms, end_ms) DO "
            "UPDATE SET status = excluded.status, rows = excluded.rows, "
            "indexed = excluded.indexed, stale = excluded.stale, failed = excluded.failed, "
            "error = excluded.error, finished_at = excluded.finished_at, "
            # A done slice has no resume point; any other keeps its checkpoint.
            "last_row_key = CASE WHEN excluded.status = 'done' THEN NULL ELSE last_row_key END, "
            "checkpoint = CASE WHEN excluded.status = 'done' THEN NULL ELSE checkpoint END",
            (start_ms, end_ms, status, rows, indexed, stale, failed, error, time.time()))

    def mark_reexported(self, start_ms: int, end_ms: int, *, rows: int, indexed: int,
                        stale: int, failed: int) -> None:
        """A done slice exported again (--lookback): its new counts replace the old ones,
        so the ledger's totals stay those of each slice's latest export."""
        self.db.execute("UPDATE slices SET rows = ?, indexed = ?, stale = ?, failed = ?, "
                        "error = NULL, finished_at = ? WHERE start_ms = ? AND end_ms = ? "
                        "AND status = 'done'",
                        (rows, indexed, stale, failed, time.time(), start_ms, end_ms))

    def note_reexport_failed(self, start_ms: int, end_ms: int, error: str) -> None:
        """A re-export that did not finish leaves the slice done (its counted documents are
        in the index) with the reason, so the watermark does not fall back."""
        self.db.execute("UPDATE slices SET error = ? WHERE start_ms = ? AND end_ms = ? "
                        "AND status = 'done'", (f"re-export: {error}", start_ms, end_ms))

    def done_run(self, origin_ms: int) -> list[tuple[int, int]]:
        """The contiguous run of done slices that starts at ``origin_ms``, in order."""
        return contiguous_run(self.done(), origin_ms)

    def watermark(self, origin_ms: int) -> int:
        """End of the contiguous run of done slices that starts at ``origin_ms``."""
        run = self.done_run(origin_ms)
        return run[-1][1] if run else origin_ms

    def summary(self) -> dict:
        counts = {status: 0 for status in STATUSES}
        for status, n in self.db.execute("SELECT status, count(*) FROM slices GROUP BY status"):
            counts[status] = n
        return counts


def contiguous_run(done, origin_ms: int) -> list[tuple[int, int]]:
    """From ``origin_ms``, each done ``(start, end)`` that starts where the previous ended
    (the longest, where two start at one time): the slices a watermark stands on."""
    ends_by_start: dict[int, int] = {}
    for start, end in done:
        if start >= origin_ms:
            ends_by_start[start] = max(end, ends_by_start.get(start, end))
    run, mark = [], origin_ms
    while mark in ends_by_start:
        run.append((mark, ends_by_start[mark]))
        mark = ends_by_start[mark]
    return run


@contextmanager
def read_job_ledger(settings) -> Iterator[Ledger | None]:
    """The job's ledger for `plan --incremental`: read-only and unlocked (a run may hold
    it), refused if it is another job's; None when there is no ledger file yet."""
    path = settings.run.ledger
    if not settings.run.incremental or not path or not os.path.exists(path):
        yield None
        return
    with Ledger(path, readonly=True) as ledger:
        ledger.check_job(job_definition(settings))
        yield ledger
