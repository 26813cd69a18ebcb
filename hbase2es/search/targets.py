"""What an index name really is on the cluster: a data stream (or a name an index template
turns into one on the first write), an alias, or a plain index; and the alias calls of a
cut-over (one ``_aliases`` request, atomic on every supported engine).

Data streams exist on Elasticsearch 7.9+ and OpenSearch 1.0+; an engine without them
(Elasticsearch 7 OSS) refuses a template with ``data_stream``, so no name becomes one.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from urllib.parse import quote

from . import engine
from .indexsetup import NAMES_PER_REQUEST


DEFAULT_TIME_FIELD = "@timestamp"


def _time_field(spec: dict | None) -> str:
    """The field a data stream orders by: ``@timestamp`` unless (OpenSearch) it names one.
    ``_resolve`` gives it as a string, templates and ``_data_stream`` as ``{"name": ...}``."""
    named = (spec or {}).get("timestamp_field")
    if isinstance(named, dict):
        named = named.get("name")
    return named or DEFAULT_TIME_FIELD


def existing_streams(client: engine.Client, names: list[str]) -> dict[str, str]:
    """``{data stream: its time field}`` of those ``names`` that exist as data streams."""
    return _resolved(client, names)[0]


def _resolved(client: engine.Client, names: list[str]) -> tuple[dict[str, str], set[str]]:
    """The data streams among ``names`` (with their time fields), and every name that
    exists as anything (index, alias or data stream).

    ``_resolve/index`` is part of every engine since Elasticsearch 7.9 and OpenSearch 1.0,
    also where the ``_data_stream`` endpoints are missing (Elasticsearch without its
    x-pack modules still creates data streams from templates); older engines have no
    data streams at all, and answer ({}, names).
    """
    streams: dict[str, str] = {}
    existing: set[str] = set()
    for i in range(0, len(names), NAMES_PER_REQUEST):
        chunk = ",".join(names[i:i + NAMES_PER_REQUEST])
        try:
            answer = engine.call(client, "GET", f"/_resolve/index/{quote(chunk, safe=',')}",
                                 params={"ignore_unavailable": True}) or {}
        except engine.EngineError as exc:
            if exc.status in (400, 404, 405):
                return {}, set(names)
            raise
        streams.update({ds["name"]: _time_field(ds) for ds in answer.get("data_streams", ())})
        existing |= {entry["name"] for kind in ("indices", "aliases", "data_streams")
                     for entry in answer.get(kind, ())}
    return streams, existing


def index_templates(client: engine.Client) -> list[dict]:
    """The composable index templates (``_index_template``), each ``{name, index_template}``."""
    try:
        answer = engine.call(client, "GET", "/_index_template")
    except engine.EngineError as exc:
        if exc.status in (400, 404, 405):  # before 7.8: no composable templates
            return []
        raise
    return list((answer or {}).get("index_templates", ()))


def template_makes_stream(name: str, templates: list[dict]) -> str | None:
    """The time field of the data stream the template that wins for a new index called
    ``name`` creates; None when it creates a plain index (or no template matches).

    The engines apply the one matching template of the highest priority (they refuse two
    overlapping templates of the same priority), so only that one decides.
    """
    best: tuple[int, dict] | None = None
    for entry in templates:
        body = entry.get("index_template") or {}
        patterns = body.get("index_patterns") or ()
        patterns = [patterns] if isinstance(patterns, str) else patterns
        if not any(fnmatchcase(name, p) for p in patterns):
            continue
        priority = int(body.get("priority") or 0)
        if best is None or priority > best[0]:
            best = (priority, body)
    if best is None or "data_stream" not in best[1]:
        return None
    return _time_field(best[1]["data_stream"])


def stream_names(client: engine.Client, names: list[str]) -> dict[str, str]:
    """``{name: time field}`` of those ``names`` that are data streams, or that a template
    makes one when first written to (an existing index or alias is never one)."""
    streams, existing = _resolved(client, names)
    missing = [n for n in names if n not in existing]
    if missing:
        templates = index_templates(client)
        for name in missing:
            field = template_makes_stream(name, templates)
            if field is not None:
                streams[name] = field
    return {n: streams[n] for n in names if n in streams}


def count_between(client: engine.Client, names: str, field: str, start_ms: int,
                  end_ms: int) -> int:
    """Documents of ``names`` whose ``field`` lies in [start_ms, end_ms); missing names count 0."""
    answer = engine.call(client, "POST", f"/{quote(names, safe=',*')}/_count",
                         params={"ignore_unavailable": True, "allow_no_indices": True},
                         body={"query": {"range": {field: {"gte": start_ms, "lt": end_ms,
                                                           "format": "epoch_millis"}}}})
    return int((answer or {}).get("count", 0))


# --- aliases ------------------------------------------------------------------------------


def alias_targets(client: engine.Client, alias: str) -> list[str]:
    """The indices ``alias`` points at, sorted; [] when no alias has that name."""
    answer = engine.call(client, "GET", f"/_alias/{quote(alias, safe='')}", ok=(404,))
    if not isinstance(answer, dict) or "error" in answer or answer.get("status") == 404:
        return []
    return sorted(name for name, data in answer.items()
                  if alias in ((data or {}).get("aliases") or {}))


def swap_alias(client: engine.Client, alias: str, *, add: list[str], remove: list[str]) -> None:
    """Point ``alias`` at ``add`` and away from ``remove`` in one ``_aliases`` request: the
    engine applies all of its actions or none, so a reader never finds the alias missing.
    A ``remove`` of an index the alias no longer points at fails the whole request, so a
    change someone made meanwhile is never silently overwritten."""
    actions = [{"remove": {"index": name, "alias": alias}} for name in remove]
    if add:
        actions.append({"add": {"indices": add, "alias": alias}})
    if actions:
        engine.call(client, "POST", "/_aliases", body={"actions": actions})
