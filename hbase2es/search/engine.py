"""The only module that knows which elasticsearch-py major version is installed.

Users install the client that matches their cluster (7.17 for 7.x, 8.x, 9.x), so the
rest of the code calls these few functions, which use only API those versions share.
"""

from __future__ import annotations

import os
from typing import Any

import elasticsearch
from elasticsearch import Elasticsearch

from ..errors import ConfigError
from ..settings import ElasticsearchSettings

MAJOR = int(elasticsearch.__versionstr__.split(".")[0])

# Whole-request failures worth retrying: the node is down, busy or timing out.
if MAJOR >= 8:
    from elasticsearch import ApiError as _ApiError
    from elasticsearch import ConnectionError as _ConnectionError
    from elasticsearch import ConnectionTimeout as _ConnectionTimeout

    CONNECTION_ERRORS: tuple[type[BaseException], ...] = (_ConnectionError, _ConnectionTimeout)
    API_ERRORS: tuple[type[BaseException], ...] = (_ApiError,)
else:
    from elasticsearch.exceptions import ConnectionError as _ConnectionError
    from elasticsearch.exceptions import ConnectionTimeout as _ConnectionTimeout
    from elasticsearch.exceptions import TransportError as _TransportError

    CONNECTION_ERRORS = (_ConnectionError, _ConnectionTimeout)
    API_ERRORS = (_TransportError,)


def credentials(es: ElasticsearchSettings) -> dict[str, Any]:
    """Read secrets from the environment variables the settings name (never from flags)."""
    api_key = os.environ.get(es.api_key_env) if es.api_key_env else None
    user = os.environ.get(es.username_env) if es.username_env else None
    password = os.environ.get(es.password_env) if es.password_env else None
    if api_key and user:
        raise ConfigError(f"both {es.api_key_env} and {es.username_env} are set: choose one way "
                          "to authenticate to Elasticsearch")
    if user and password is None:
        raise ConfigError(f"{es.username_env} is set but {es.password_env} is not")
    if api_key:
        return {"api_key": api_key}
    if user:
        key = "basic_auth" if MAJOR >= 8 else "http_auth"
        return {key: (user, password)}
    return {}


def make_client(es: ElasticsearchSettings) -> Elasticsearch:
    """A client with TLS verification on unless the settings turn it off."""
    kwargs: dict[str, Any] = dict(credentials(es), verify_certs=es.verify_certs, max_retries=0,
                                  retry_on_timeout=False)
    if es.ca_certs:
        kwargs["ca_certs"] = es.ca_certs
    if not es.verify_certs and MAJOR >= 8:
        kwargs["ssl_show_warn"] = False
    kwargs["request_timeout" if MAJOR >= 8 else "timeout"] = es.request_timeout
    return Elasticsearch(list(es.hosts), **kwargs)


def body(response: Any) -> dict:
    """The JSON body of a response (8.x wraps it in an ApiResponse)."""
    return response.body if hasattr(response, "body") else response


def status_of(exc: BaseException) -> int | None:
    """HTTP status of a failed request, when there was one."""
    meta = getattr(exc, "meta", None)
    if meta is not None and hasattr(meta, "status"):
        return meta.status
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def bulk(client: Elasticsearch, payload: bytes, *, filter_path: str | None = None) -> dict:
    """Send a ready NDJSON body to _bulk and return the parsed response."""
    if MAJOR >= 8:
        return body(client.bulk(operations=payload, filter_path=filter_path))
    return client.bulk(body=payload, filter_path=filter_path)


def info(client: Elasticsearch) -> dict:
    return body(client.info())


def mget(client: Elasticsearch, index: str, ids: list[str], *, source: bool = False) -> dict:
    if MAJOR >= 8:
        return body(client.mget(index=index, ids=ids, source=source))
    return client.mget(index=index, body={"ids": ids}, _source=source)


def find_ids(client: Elasticsearch, pattern: str, ids: list[str], *, size: int) -> dict:
    """The hits (``_index``, ``_id``, ``_version``; no source) of these ids in the indices
    ``pattern`` names; indices that do not exist are no error. Sees refreshed documents."""
    query = {"ids": {"values": ids}}
    kwargs = dict(index=pattern, size=size, version=True, ignore_unavailable=True,
                  allow_no_indices=True, track_total_hits=True,
                  filter_path="hits.total,hits.hits._index,hits.hits._id,hits.hits._version")
    if MAJOR >= 8:
        return body(client.search(query=query, source=False, **kwargs))
    return client.search(body={"query": query, "_source": False}, **kwargs)


def refresh(client: Elasticsearch, index: str, *, ignore_unavailable: bool = False) -> None:
    """Make what was written to ``index`` (a comma-separated list) searchable now."""
    if ignore_unavailable:  # names a run may not have written to after all
        client.indices.refresh(index=index, ignore_unavailable=True)
    else:
        client.indices.refresh(index=index)


def error_type(exc: BaseException) -> str | None:
    """Elasticsearch's error type of a failed request (``resource_already_exists_exception``)."""
    for name in ("body", "info"):  # 8.x+ keeps the parsed body in .body, 7.x in .info
        data = getattr(exc, name, None)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            return data["error"].get("type")
    return None


def error_reason(exc: BaseException) -> str:
    """The reason Elasticsearch gave for a failed request, or the exception text."""
    for name in ("body", "info"):
        data = getattr(exc, name, None)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            error = data["error"]
            cause = (error.get("root_cause") or [{}])[0]
            return str(cause.get("reason") or error.get("reason") or error.get("type"))
    return str(exc)


def index_exists(client: Elasticsearch, name: str) -> bool:
    return bool(client.indices.exists(index=name))


def create_index(client: Elasticsearch, name: str, settings: dict, mappings: dict) -> bool:
    """Create an index; False when it already exists (created meanwhile by someone else)."""
    try:
        # 7.17 takes settings/mappings as parameters too (its body= is deprecated).
        client.indices.create(index=name, settings=settings or None, mappings=mappings or None)
    except API_ERRORS as exc:
        if error_type(exc) == "resource_already_exists_exception":
            return False
        raise
    return True


def get_settings(client: Elasticsearch, names: str, *, include_defaults: bool = False) -> dict:
    """``{index: {"index.x.y": value}}`` in flat form; indices that do not exist are left out."""
    response = body(client.indices.get_settings(index=names, flat_settings=True,
                                                include_defaults=include_defaults,
                                                ignore_unavailable=True))
    out = {}
    for name, data in response.items():
        flat = dict(data.get("defaults", {}))
        flat.update(data.get("settings", {}))
        out[name] = flat
    return out


def put_settings(client: Elasticsearch, names: str, settings: dict) -> None:
    """Update dynamic settings of a comma-separated list of indices (None resets a setting)."""
    if MAJOR >= 8:
        client.indices.put_settings(index=names, settings=settings)
    else:
        client.indices.put_settings(index=names, body=settings)


def get_mapping(client: Elasticsearch, names: str) -> dict:
    """``{index: mappings}`` (typeless); indices that do not exist are left out."""
    response = body(client.indices.get_mapping(index=names, ignore_unavailable=True))
    return {name: data.get("mappings", {}) for name, data in response.items()}


# --- listing the documents of a time range (reconcile) ---------------------------------


def search(client: Elasticsearch, index: str | None, request: dict, *,
           scroll: str | None = None) -> dict:
    """One search request with a full body (query, sort, size, search_after, pit ...)."""
    params: dict[str, Any] = dict(request)
    if scroll:
        params["scroll"] = scroll
    if index is not None:  # a search inside a point-in-time names no index
        params.update(index=index, ignore_unavailable=True, allow_no_indices=True)
    if MAJOR >= 8 and "_source" in params:
        params["source"] = params.pop("_source")
    return body(client.search(**params))


def scroll(client: Elasticsearch, scroll_id: str, keep_alive: str) -> dict:
    """The next page of a scroll."""
    return body(client.scroll(scroll_id=scroll_id, scroll=keep_alive))


def clear_scroll(client: Elasticsearch, scroll_id: str) -> None:
    """Free a scroll's search context now instead of when it times out."""
    try:
        client.clear_scroll(scroll_id=scroll_id)
    except (*API_ERRORS, *CONNECTION_ERRORS):
        pass  # it expires by itself after its keep-alive


def open_point_in_time(client: Elasticsearch, index: str, keep_alive: str) -> str | None:
    """A point-in-time over ``index``, or None when the engine has none (ES 7.10 without
    x-pack, OpenSearch's own API): the caller then lists another way."""
    try:
        response = body(client.open_point_in_time(index=index, keep_alive=keep_alive,
                                                     ignore_unavailable=True))
    except API_ERRORS as exc:
        if status_of(exc) in (400, 404, 405):
            return None
        raise
    except (AttributeError, TypeError):  # a client without the API
        return None
    return response.get("id")


def close_point_in_time(client: Elasticsearch, pit_id: str) -> None:
    try:
        if MAJOR >= 8:
            client.close_point_in_time(id=pit_id)
        else:
            client.close_point_in_time(body={"id": pit_id})
    except (*API_ERRORS, *CONNECTION_ERRORS):
        pass  # it expires by itself after its keep-alive
