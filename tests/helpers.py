"""Helpers shared by the CLI and export tests: run the CLI in-process, put rows, read ES back."""

from __future__ import annotations

import os
import socket
import traceback
from pathlib import Path

import orjson
from click.testing import CliRunner, Result

from hbase2es.cli import cli

# A fixed, recent instant (2023-11-14T22:13:20Z) on a whole second, so that windows
# written as epoch ms are easy to read in failure messages.
T0 = 1_700_000_000_000


def run_cli(args: list[str], *, expect_exit: int | None = 0, env: dict | None = None) -> Result:
    """Invoke ``hbase2es`` in-process and check its exit code (None: any code).

    Since click 8.2 the result always has ``stdout`` and ``stderr`` apart (``output`` is
    both, interleaved as a terminal shows them); ``mix_stderr`` no longer exists.
    An exception the CLI did not turn into an exit code is re-raised with the output, so
    a failing test shows the real traceback instead of "exit code 1".
    """
    # Settings a developer's shell may hold must not leak into the run under test.
    isolated = {name: None for name in os.environ
                if name.startswith("HBASE2ES_") and not name.startswith("HBASE2ES_TEST_")}
    isolated.update(env or {})
    runner = CliRunner()
    result = runner.invoke(cli, [str(a) for a in args], env=isolated, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        text = "".join(traceback.format_exception(*result.exc_info))
        raise AssertionError(f"hbase2es {' '.join(map(str, args))} raised:\n{text}\n"
                             f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    if expect_exit is not None:
        assert result.exit_code == expect_exit, (
            f"hbase2es {' '.join(map(str, args))}: exit {result.exit_code}, expected "
            f"{expect_exit}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def export_args(servers, table_name: str, index: str, start: int, end: int, slice_: str,
                *extra) -> list[str]:
    """The arguments of an ``export`` over [start, end) epoch ms."""
    return ["export", "--hbase", servers.hbase, "--table", table_name, "--es", servers.es,
            "--index", index, "--start", str(start), "--end", str(end), "--slice", slice_,
            *extra]


def put_row(table, key: bytes | str, cells: dict, ts: int) -> None:
    """Write cells of one row at cell timestamp ``ts`` (epoch ms); str keys/values become UTF-8."""
    def raw(v):
        return v.encode() if isinstance(v, str) else v

    table.put(raw(key), {raw(c): raw(v) for c, v in cells.items()}, timestamp=ts)


def table_name(table) -> str:
    """The name of a happybase Table as the CLI takes it."""
    name = table.name
    return name.decode() if isinstance(name, bytes) else name


def read_index(es, index: str) -> dict[str, dict]:
    """Every document of the indices matching ``index`` after a refresh: _id -> hit."""
    es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    resp = es.search(index=index, query={"match_all": {}}, size=1000, version=True,
                     ignore_unavailable=True, allow_no_indices=True)
    hits = resp["hits"]["hits"]
    out = {hit["_id"]: hit for hit in hits}
    assert len(out) == len(hits), f"duplicate _id across indices {index}: {hits}"
    return out


def count_docs(es, index: str) -> int:
    """Documents in the indices matching ``index`` after a refresh."""
    es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    return int(es.count(index=index, ignore_unavailable=True, allow_no_indices=True)["count"])


def read_report(path: Path) -> dict:
    """The JSON report an export wrote with --report."""
    return orjson.loads(Path(path).read_bytes())


def free_port() -> int:
    """A loopback port nobody listens on (bound to 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path: Path, text: str) -> str:
    """Write a TOML config file and return its path as --config takes it."""
    path.write_text(text, encoding="utf-8")
    return str(path)
