"""Fail in seconds, before any worker starts, when a server or the table is missing."""

from __future__ import annotations

import logging

from ..hbase import open_reader
from ..search import engine
from ..search.product import Engine
from ..settings import Settings

log = logging.getLogger(__name__)


def preflight(settings: Settings) -> Engine:
    """Open the table once and ask every Elasticsearch node who it is; raise
    UnavailableError (exit 3) naming what is missing or what answered instead of a
    supported engine. Nodes that do not answer while another does get a warning."""
    open_reader(settings.hbase).close()  # raises UnavailableError naming what is wrong
    found = engine.check_nodes(settings.elasticsearch)
    log.info("search engine: %s, cluster %r", found.label, found.cluster_name)
    return found
