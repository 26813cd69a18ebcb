"""The only module that talks HTTP to the search engine: Elasticsearch 7, 8, 9 and
OpenSearch 1, 2, 3, all through one installed package set.

Why elastic-transport and our own endpoints, not a client library:
- elasticsearch-py 7.17 refuses OpenSearch (its product check), 8.x sends
  ``compatible-with=8`` headers that a 7.x server answers with 406, and 9.x does the same
  to 8.x servers. One installed client cannot serve clusters of two majors, which is
  exactly what a 7 -> 8 migration, or one machine exporting to two clusters, needs.
- elasticsearch-py 9 plus opensearch-py would mean two libraries with their own
  exception types and call conventions for the same few requests, and still a
  compatibility-header dance per major.
- hbase2es builds its bulk bodies by hand and needs about fifteen endpoints whose wire
  format has not changed since 7.0: typeless ``/_bulk`` with ``version_type =
  external_gte`` in the action line, bulk items ``{"index": {"status", "error"}}``,
  ``_mget``, ``_search``, ``_refresh``, ``PUT /<index>``, ``_settings``, ``_mapping``,
  and the ``{"error": {"type", "reason", "root_cause"}}`` error body (or a plain string
  for "no handler found").
- elastic-transport is the HTTP layer under elasticsearch-py 8 and 9: a node pool that
  marks failed nodes dead and fails over to the others, connection pooling, TLS with
  certificates verified by default. It has no product check and adds no header of its
  own; we send plain ``application/json`` and ``application/x-ndjson``, which every
  engine accepts. Its 8.x and 9.x lines share the API used here, so any elasticsearch-py
  7.17, 8 or 9 a user pins can sit beside it (7.17 does not use it at all).

What differs by engine is decided from ``GET /`` (``product.py``): preflight asks every
``--es`` node, and each worker's client asks once when it is made. The endpoints below
are the same on every supported engine except the point-in-time ones (``/_pit`` on
Elasticsearch, ``/_search/point_in_time`` on OpenSearch), which read ``client.engine``.

Retries: the transport retries a request on another node only after a connection error
(``max_retries`` = the other nodes), never on a status; busy answers (429/5xx) come back
to the callers, whose backoff (``writer.py``) retries with a deadline. A node that failed
is marked dead by the pool, so the caller's next attempt goes to another node.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import elastic_transport
import orjson
from elastic_transport import NodeConfig, Transport, Urllib3HttpNode

from .. import __version__
from ..errors import ConfigError
from ..settings import ElasticsearchSettings
from .auth import auth_headers, credential_names, credentials  # noqa: F401 - API
from .product import Answer, Engine, engine_of, judge

log = logging.getLogger(__name__)
# The transport logs each failover with a traceback: kept out of any root logging set up
# around hbase2es (Spark's, say). Its NullHandler stops Python's last-resort printing, and
# the writer logs the retries that matter.
logging.getLogger("elastic_transport").propagate = False

JSON, NDJSON = "application/json", "application/x-ndjson"
DEFAULT_PORT = 9200  # for an http URL without one, as Elasticsearch listens
# GET / answers at once on a live node; a node that stays silent this long counts as down
# (instead of holding the start for the full request_timeout).
PROBE_TIMEOUT_S = 10.0


class EngineError(Exception):
    """The engine answered a request with an HTTP error status."""

    def __init__(self, status: int, body: Any = None, *, method: str = "", path: str = ""):
        self.status = status
        self.body = body  # parsed JSON, text, or None
        self.method, self.path = method, path
        super().__init__(f"HTTP {status}" + (f" from {method} {path}" if method else "")
                         + f": {_reason_of(body) or 'no reason given'}"[:500])


# Whole-request failures worth retrying: the node is down, busy or timing out. TlsError
# is a ConnectionError.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (elastic_transport.ConnectionError,
                                                      elastic_transport.ConnectionTimeout)
API_ERRORS: tuple[type[BaseException], ...] = (EngineError,)


class _Bytes:
    """Stands in for the transport's serializers: bodies go out as the bytes we made and
    come back as bytes, whatever their content type (an HTML error page included)."""

    def dumps(self, data: Any, mimetype: str | None = None) -> bytes:
        return data

    def loads(self, data: bytes, mimetype: str | None = None) -> bytes:
        return data


class Client:
    """The ``--es`` nodes of one cluster behind elastic-transport's node pool, and the
    engine they run (detected from ``GET /`` when first needed)."""

    def __init__(self, es: ElasticsearchSettings):
        self.hosts = tuple(dict.fromkeys(es.hosts))  # the pool refuses a node twice
        headers = {"accept": JSON, "user-agent": f"hbase2es/{__version__}",
                   **auth_headers(es)}
        self.nodes = [node_config(url, es, headers) for url in self.hosts]
        self.transport = Transport(self.nodes, node_class=Urllib3HttpNode,
                                   max_retries=len(self.nodes) - 1, retry_on_status=(),
                                   retry_on_timeout=False, meta_header=False)
        self.transport.serializers = _Bytes()
        self.credentials = credential_names(es)
        self.timeout = es.request_timeout
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """What the nodes run; asked with ``GET /`` the first time (UnavailableError when
        it is nothing hbase2es supports)."""
        if self._engine is None:
            status, data, meta = _raw(self, "GET", "/", timeout=PROBE_TIMEOUT_S)
            answer = Answer(self.hosts[0] if len(self.hosts) == 1 else _url_of(meta),
                            status, data, meta.headers.get("content-type", ""),
                            meta.headers.get("server", ""))
            self._engine = engine_of(answer, self.credentials)
        return self._engine

    def close(self) -> None:
        self.transport.close()


def node_config(url: str, es: ElasticsearchSettings, headers: dict) -> NodeConfig:
    """One node's connection settings; a URL without a scheme is http, one without a port
    on http uses 9200 (https: 443)."""
    text = url if "://" in url else f"http://{url}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"elasticsearch.hosts: {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"elasticsearch.hosts: {url!r} is not an http(s)://host:port URL")
    if parts.username or parts.password:
        raise ConfigError(f"elasticsearch.hosts: {url!r} holds credentials; set "
                          f"{es.username_env} and {es.password_env} instead")
    config = NodeConfig(parts.scheme, parts.hostname,
                        port or (443 if parts.scheme == "https" else DEFAULT_PORT),
                        path_prefix=parts.path.rstrip("/"), headers=headers,
                        request_timeout=es.request_timeout, verify_certs=es.verify_certs)
    if es.ca_certs:
        config = replace(config, ca_certs=es.ca_certs)
    if not es.verify_certs:  # the user turned it off on purpose: no warning per request
        config = replace(config, ssl_show_warn=False)
    return config


def make_client(es: ElasticsearchSettings) -> Client:
    """A client for the ``--es`` nodes, TLS verified unless the settings turn it off.

    It asks ``GET /`` at once, so an engine hbase2es cannot speak to fails here; a node
    that does not answer yet is no error (the first request that needs the engine asks
    again, and bulk requests fail over or retry as usual).
    """
    client = Client(es)
    try:
        client.engine
    except CONNECTION_ERRORS:
        pass
    except BaseException:
        client.close()
        raise
    return client


# --- requests ---------------------------------------------------------------------------


def _url_of(meta) -> str:
    node = meta.node
    return f"{node.scheme}://{node.host}:{node.port}{node.path_prefix}"


def _raw(client: Client, method: str, path: str, params: dict | None = None,
         body: bytes | None = None, content_type: str = JSON, timeout: float | None = None):
    """One request through the node pool: (status, body bytes, response meta)."""
    target = path + (f"?{urlencode(params)}" if params else "")
    headers = {"content-type": content_type} if body is not None else None
    # A short probe may go on to the next node after a timeout; other requests (a bulk
    # still running on a slow node) are retried by their callers, with backoff.
    extra = ({"request_timeout": min(timeout, client.timeout), "retry_on_timeout": True}
             if timeout else {})
    response = client.transport.perform_request(method, target, body=body, headers=headers,
                                                **extra)
    return response.meta.status, response.body, response.meta


def _parsed(data: bytes | None) -> Any:
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")


def _flags(params: dict) -> dict:
    """Query parameters as the engines spell them (true/false, not True/False)."""
    return {k: ("true" if v else "false") if isinstance(v, bool) else v
            for k, v in params.items() if v is not None}


def call(client: Client, method: str, path: str, *, params: dict | None = None,
         body: Any = None, ndjson: bool = False, ok: tuple[int, ...] = ()) -> Any:
    """Send one request and return its parsed JSON answer; EngineError for HTTP >= 300
    unless the status is in ``ok``. ``body`` is JSON-encoded unless it is bytes."""
    payload = body if body is None or isinstance(body, bytes) else orjson.dumps(body)
    status, data, _ = _raw(client, method, path, _flags(params or {}), payload,
                           NDJSON if ndjson else JSON)
    parsed = _parsed(data)
    if status >= 300 and status not in ok:
        raise EngineError(status, parsed, method=method, path=path)
    return parsed


def _target(names: str) -> str:
    """An index name, pattern or comma-separated list as a path segment."""
    return "/" + quote(names, safe=",*")


# --- errors -----------------------------------------------------------------------------


def body(response: Any) -> Any:
    """The JSON body of a response (kept for callers written for elasticsearch-py 8)."""
    return response.body if hasattr(response, "body") else response


def status_of(exc: BaseException) -> int | None:
    """HTTP status of a failed request, when there was one (also of elasticsearch-py's
    errors, which tests and scripts may hand in)."""
    for found in (getattr(exc, "status", None), getattr(getattr(exc, "meta", None), "status",
                                                        None), getattr(exc, "status_code", None)):
        if isinstance(found, int):
            return found
    return None


def _error_of(data: Any) -> Any:
    return data.get("error") if isinstance(data, dict) else None


def _reason_of(data: Any) -> str:
    error = _error_of(data)
    if isinstance(error, dict):
        cause = (error.get("root_cause") or [{}])[0]
        return str(cause.get("reason") or error.get("reason") or error.get("type") or "")
    if isinstance(error, str):  # "no handler found for uri [...]"
        return error
    if isinstance(data, str):  # a proxy's text or HTML page
        return data.strip()[:300]
    return ""


def error_type(exc: BaseException) -> str | None:
    """The engine's error type of a failed request (``resource_already_exists_exception``)."""
    error = _error_of(getattr(exc, "body", None))
    return error.get("type") if isinstance(error, dict) else None


def error_reason(exc: BaseException) -> str:
    """The reason the engine gave for a failed request, or the exception text."""
    return _reason_of(getattr(exc, "body", None)) or str(exc)


# --- endpoints --------------------------------------------------------------------------


def info(client: Client) -> dict:
    """``GET /``: name, cluster and version of the node that answered."""
    return call(client, "GET", "/")


def bulk(client: Client, payload: bytes, *, filter_path: str | None = None) -> dict:
    """Send a ready NDJSON body to ``_bulk`` and return the parsed response."""
    return call(client, "POST", "/_bulk", params={"filter_path": filter_path}, body=payload,
                ndjson=True)


def mget(client: Client, index: str, ids: list[str], *, source: bool = False,
         routings: list[str | None] | None = None) -> dict:
    """``{"docs": [...]}`` for these ids of one index, each with ``found`` and ``_version``;
    ``routings`` (one per id) finds documents written with a routing."""
    body = ({"ids": ids} if routings is None else
            {"docs": [{"_id": i, "routing": r} for i, r in zip(ids, routings)]})
    return call(client, "POST", f"{_target(index)}/_mget", params={"_source": source},
                body=body)



def find_ids(client: Client, pattern: str, ids: list[str], *, size: int) -> dict:
    """The hits (``_index``, ``_id``, ``_version``; no source) of these ids in the indices
    ``pattern`` names; indices that do not exist are no error. Sees refreshed documents."""
    return call(client, "POST", f"{_target(pattern)}/_search",
                params={"ignore_unavailable": True, "allow_no_indices": True,
                        "filter_path": "hits.total,hits.hits._index,hits.hits._id,"
                                       "hits.hits._version,hits.hits._routing"},
                body={"query": {"ids": {"values": ids}}, "size": size, "version": True,
                      "_source": False, "track_total_hits": True})


def refresh(client: Client, index: str, *, ignore_unavailable: bool = False) -> None:
    """Make what was written to ``index`` (a comma-separated list) searchable now."""
    call(client, "POST", f"{_target(index)}/_refresh",
         params={"ignore_unavailable": True} if ignore_unavailable else None)


def index_exists(client: Client, name: str) -> bool:
    """Whether an index or alias of this name exists."""
    status, _, _ = _raw(client, "HEAD", _target(name))
    if status not in (200, 404):
        raise EngineError(status, None, method="HEAD", path=_target(name))
    return status == 200


def create_index(client: Client, name: str, settings: dict, mappings: dict) -> bool:
    """Create an index; False when it already exists (created meanwhile by someone else)."""
    request = {key: value for key, value in (("settings", settings), ("mappings", mappings))
               if value}
    try:
        call(client, "PUT", _target(name), body=request)
    except EngineError as exc:
        if error_type(exc) == "resource_already_exists_exception":
            return False
        raise
    return True


def get_settings(client: Client, names: str, *, include_defaults: bool = False) -> dict:
    """``{index: {"index.x.y": value}}`` in flat form; indices that do not exist are left out."""
    response = call(client, "GET", f"{_target(names)}/_settings",
                    params={"flat_settings": True, "include_defaults": include_defaults,
                            "ignore_unavailable": True}) or {}
    out = {}
    for name, data in response.items():
        flat = dict(data.get("defaults", {}))
        flat.update(data.get("settings", {}))
        out[name] = flat
    return out


def put_settings(client: Client, names: str, settings: dict) -> None:
    """Update dynamic settings of a comma-separated list of indices (None resets a setting)."""
    call(client, "PUT", f"{_target(names)}/_settings", body=settings)


def get_mapping(client: Client, names: str) -> dict:
    """``{index: mappings}`` (typeless); indices that do not exist are left out."""
    response = call(client, "GET", f"{_target(names)}/_mapping",
                    params={"ignore_unavailable": True}) or {}
    return {name: data.get("mappings", {}) for name, data in response.items()}


# --- listing documents: search, scroll, point in time (reconcile) ---------------------


def search(client: Client, index: str | None, request: dict, *,
           scroll: str | None = None) -> dict:
    """One search with a full body (query, sort, size, search_after, pit ...); ``index``
    None for a search inside a point-in-time, which names no index."""
    params: dict[str, Any] = {"scroll": scroll}
    if index is None:
        return call(client, "POST", "/_search", params=params, body=request)
    params.update(ignore_unavailable=True, allow_no_indices=True)
    return call(client, "POST", f"{_target(index)}/_search", params=params, body=request)


def scroll(client: Client, scroll_id: str, keep_alive: str) -> dict:
    """The next page of a scroll."""
    return call(client, "POST", "/_search/scroll",
                body={"scroll_id": scroll_id, "scroll": keep_alive})


def clear_scroll(client: Client, scroll_id: str) -> None:
    """Free a scroll's search context now instead of when it times out."""
    try:
        call(client, "DELETE", "/_search/scroll", body={"scroll_id": [scroll_id]}, ok=(404,))
    except (*API_ERRORS, *CONNECTION_ERRORS):
        pass  # it expires by itself after its keep-alive


def open_point_in_time(client: Client, index: str, keep_alive: str) -> str | None:
    """A point-in-time over ``index``, or None when the engine has none (Elasticsearch
    7.10 without x-pack, OpenSearch before 2.4): the caller then lists another way.
    Elasticsearch calls it ``/_pit``, OpenSearch ``/_search/point_in_time``."""
    opensearch = client.engine.is_opensearch
    path = "/_search/point_in_time" if opensearch else "/_pit"
    try:
        response = call(client, "POST", f"{_target(index)}{path}",
                        params={"keep_alive": keep_alive, "ignore_unavailable": True})
    except EngineError as exc:
        if exc.status in (400, 404, 405):
            return None
        raise
    return response.get("pit_id" if opensearch else "id")


def close_point_in_time(client: Client, pit_id: str) -> None:
    """Free a point-in-time now instead of when its keep-alive ends."""
    try:
        if client.engine.is_opensearch:
            call(client, "DELETE", "/_search/point_in_time", body={"pit_id": [pit_id]})
        else:
            call(client, "DELETE", "/_pit", body={"id": pit_id})
    except (*API_ERRORS, *CONNECTION_ERRORS):
        pass  # it expires by itself after its keep-alive


# --- preflight --------------------------------------------------------------------------


def _cause(exc: BaseException) -> str:
    """The root of a transport error without urllib3's connection-pool preamble:
    "Failed to establish a new connection: [Errno 111] Connection refused"."""
    errors = getattr(exc, "errors", ())
    text = str(errors[0]) if errors else str(exc)
    return text.rsplit("): ", 1)[-1] if "): " in text else text


def _ask(node, url: str, timeout: float) -> Answer:
    try:
        response = node.perform_request("GET", "/", request_timeout=timeout)
    except CONNECTION_ERRORS as exc:
        return Answer(url, error=f"{type(exc).__name__}: {_cause(exc)}",
                      tls=isinstance(exc, elastic_transport.TlsError))
    headers = response.meta.headers
    return Answer(url, response.meta.status, response.body or b"",
                  headers.get("content-type", ""), headers.get("server", ""))


def check_nodes(es: ElasticsearchSettings) -> Engine:
    """Ask every ``--es`` node ``GET /``; the engine they run, with one warning per node
    that does not answer. UnavailableError / ConfigError say what is wrong otherwise."""
    client = Client(es)
    try:
        nodes = {node.config: node for node in client.transport.node_pool.all()}
        timeout = min(PROBE_TIMEOUT_S, es.request_timeout)
        answers = [_ask(nodes[config], url, timeout)
                   for url, config in zip(client.hosts, client.nodes)]
    finally:
        client.close()
    engine, warnings = judge(answers, credential_names(es))
    for warning in warnings:
        log.warning(warning)
    return engine
