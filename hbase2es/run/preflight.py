"""Fail in seconds, before any worker starts, when a server or the table is missing."""

from __future__ import annotations

import logging

from ..errors import ConfigError
from ..hbase import open_reader
from ..hbase.rowcheck import has_family
from ..search import engine
from ..search.indexsetup import check_pipeline
from ..search.product import Engine
from ..settings import Settings

log = logging.getLogger(__name__)


def preflight(settings: Settings) -> Engine:
    """Open the table once and ask every Elasticsearch node who it is; raise
    UnavailableError (exit 3) naming what is missing or what answered instead of a
    supported engine. Nodes that do not answer while another does get a warning.

    A ``[mapping] delete_when`` column in a family the table does not have is exit 2: no
    row could ever match it, so every soft-deleted row would stay in the index. A missing
    ``elasticsearch.pipeline`` is exit 3.
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
    found = engine.check_nodes(settings.elasticsearch)
    check_pipeline(settings.elasticsearch)
    log.info("search engine: %s, cluster %r", found.label, found.cluster_name)
    return found
