"""The engine side: the client layer, bulk writing, chunking, dead letters, index setup.

``engine`` is the one module that talks HTTP to the search engine (Elasticsearch 7-9,
OpenSearch 1-3, through elastic-transport); ``product`` (pure) tells from ``GET /`` which
engine answered; ``chunking`` is pure (NDJSON bodies bounded by documents and bytes).
"""
