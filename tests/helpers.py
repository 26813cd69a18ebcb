"""Helpers shared by the tests: run the CLI in-process, put rows, read ES back, and the
few environment decisions every test file must make the same way (skip or fail when a
server is missing, which HBASE2ES_* variables a run under test may see, free ports, the
Elasticsearch client's timeout keyword).
"""

from __future__ import annotations

import os
import socket
import traceback
from pathlib import Path
from typing import NoReturn

import orjson
import pytest
from click.testing import CliRunner, Result

# A fixed, recent instant (2023-11-14T22:13:20Z) on a whole second, so that windows
# written as epoch ms are easy to read in failure messages.
T0 = 1_700_000_000_000


# --------------------------------------------------------------------------- skip or fail

REQUIRE_SERVERS_VAR = "HBASE2ES_REQUIRE_SERVERS"


def servers_required() -> bool:
    """True when nothing may be skipped for want of a server: HBASE2ES_REQUIRE_SERVERS=1
    (set by .ci/run) or CI=true (what CI systems set, and what .ci/run set before)."""
    flag = os.environ.get(REQUIRE_SERVERS_VAR, "").strip().lower()
    return flag in ("1", "true", "yes") or os.environ.get("CI") == "true"


def require_or_skip(reason: str) -> NoReturn:
    """Skip this test because ``reason`` (a server, pyspark, an HBase conf dir, ...) is
    missing, or fail it when servers_required(): in CI a skip would hide a broken setup."""
    if servers_required():
        pytest.fail(f"{reason} ({REQUIRE_SERVERS_VAR}=1 or CI=true: missing is a failure)",
                    pytrace=False)
    pytest.skip(reason)


def skip_unless_required(reason: str) -> None:
    """Skip a test that would only be slow here (not wrong), unless servers_required():
    then return, and the test runs the slow way, so that CI skips nothing."""
    if not servers_required():
        pytest.skip(reason)


# --------------------------------------------------------------------------- environment


def is_setting_var(name: str) -> bool:
    """An HBASE2ES_* variable a developer's shell may hold that would change a run under
    test; the HBASE2ES_TEST_* server addresses are the harness's own and stay."""
    return name.startswith("HBASE2ES_") and not name.startswith("HBASE2ES_TEST_")


def clean_env() -> dict[str, str]:
    """This process's environment without HBASE2ES_* settings, for CLI subprocesses."""
    return {k: v for k, v in os.environ.items() if not is_setting_var(k)}


def free_port() -> int:
    """A loopback port nobody listens on (bound to 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def client_major() -> int:
    """The major version of the installed elasticsearch-py client (7, 8 or 9)."""
    import elasticsearch

    return int(elasticsearch.__versionstr__.split(".")[0])


def es_client(url: str, timeout: float = 60, **kwargs):
    """An elasticsearch-py client for a test's own checks; the 7.x client calls its
    per-request timeout ``timeout``, 8.x and 9.x call it ``request_timeout``."""
    from elasticsearch import Elasticsearch

    keyword = "request_timeout" if client_major() >= 8 else "timeout"
    return Elasticsearch([url], **{keyword: timeout}, **kwargs)


# --------------------------------------------------------------------------- engines

# The engines `make servers-all` runs, as the keys of HBASE2ES_TEST_ES_<KEY>.
ENGINE_KEYS = ("ES7", "ES8", "ES9", "OS2", "OS3")


def engine_url(key: str) -> str:
    """The address of one engine from the environment or .devservers/env; a skip when it
    is not there (a failure under HBASE2ES_REQUIRE_SERVERS=1 or CI=true)."""
    import devservers  # tools/, put on the path by conftest

    name = f"HBASE2ES_TEST_ES_{key}"
    url = os.environ.get(name) or devservers.read_env().get(name)
    if not url:
        require_or_skip(f"no {name}: run `make servers-all` or set it to http://host:port")
    return url.rstrip("/")


# --------------------------------------------------------------------------- the CLI


def run_cli(args: list[str], *, expect_exit: int | None = 0, env: dict | None = None) -> Result:
    """Invoke ``hbase2es`` in-process and check its exit code (None: any code).

    Since click 8.2 the result always has ``stdout`` and ``stderr`` apart (``output`` is
    both, interleaved as a terminal shows them); ``mix_stderr`` no longer exists.
    An exception the CLI did not turn into an exit code is re-raised with the output, so
    a failing test shows the real traceback instead of "exit code 1".
    """
    from hbase2es.cli import cli  # here: conftest imports this module, the pool tests too

    # Settings a developer's shell may hold must not leak into the run under test.
    isolated = {name: None for name in os.environ if is_setting_var(name)}
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


def write_config(path: Path, text: str) -> str:
    """Write a TOML config file and return its path as --config takes it."""
    path.write_text(text, encoding="utf-8")
    return str(path)


def drop_indices(client, prefix: str) -> None:
    """Delete every index named ``prefix*`` by name (ES 8+ refuses wildcard deletes) with
    hbase2es's own engine layer (``client``: an engine.Client)."""
    from hbase2es.search import engine
    # Not a data stream's backing indices (".ds-..."): the stream goes first, or, where the
    # engine cannot delete one (the dev Elasticsearch 8 and 9), stays until the node stops.
    names = sorted(n for n in engine.get_mapping(client, f"{prefix}*")
                   if not n.startswith(".ds-"))
    if names:
        engine.call(client, "DELETE", "/" + ",".join(names))
