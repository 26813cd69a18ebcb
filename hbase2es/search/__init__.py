"""The engine side: the client layer, bulk writing, chunking, dead letters, index setup.

``engine`` is the one module that knows which client library (and engine) it talks to;
``chunking`` is pure (NDJSON bodies bounded by documents and bytes).
"""
