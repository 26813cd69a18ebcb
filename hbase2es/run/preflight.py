"""Fail in seconds, before any worker starts, when a server or the table is missing."""

from __future__ import annotations

from ..errors import ConfigError, UnavailableError
from ..hbase import open_reader
from ..hbase.rowcheck import has_family
from ..search import engine
from ..settings import Settings


def preflight(settings: Settings) -> None:
    """Open the table once and ask Elasticsearch who it is; raise UnavailableError if not.

    A ``[mapping] delete_when`` column in a family the table does not have is exit 2: no
    row could ever match it, so every soft-deleted row would stay in the index.
    """
    reader = open_reader(settings.hbase)  # raises UnavailableError naming what is wrong
    try:
        rule = settings.delete_when
        if rule is not None and not has_family(reader, rule.family):
            raise ConfigError(f"mapping.delete_when: table {settings.hbase.table!r} has no "
                              f"column family {rule.family.decode(errors='replace')!r} (column "
                              f"{rule.column.decode(errors='replace')!r})")
    finally:
        reader.close()
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
