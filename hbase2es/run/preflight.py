"""Fail in seconds, before any worker starts, when a server or the table is missing."""

from __future__ import annotations

from ..errors import UnavailableError
from ..hbase import open_reader
from ..search import engine
from ..settings import Settings


def preflight(settings: Settings) -> None:
    """Open the table once and ask Elasticsearch who it is; raise UnavailableError if not."""
    open_reader(settings.hbase).close()  # raises UnavailableError naming what is wrong
    client = engine.make_client(settings.elasticsearch)
    try:
        engine.info(client)
    except engine.CONNECTION_ERRORS as exc:
        hosts = ", ".join(settings.elasticsearch.hosts)
        raise UnavailableError(f"cannot reach Elasticsearch at {hosts}: "
                               f"{type(exc).__name__}") from None
    except engine.API_ERRORS as exc:
        status = engine.status_of(exc)
        raise UnavailableError(f"Elasticsearch refused the connection check (HTTP {status}): "
                               "check the credentials named in [elasticsearch]") from None
    finally:
        client.close()
