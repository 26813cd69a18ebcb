"""Getting the indices of a run ready: creation from the config, and bulk-load mode.

Before the first document is sent, an export with ``--create-index`` works out every
index name its slices can produce, checks the indices that already exist against the
configured mappings (a conflict stops the run before anything is written), and creates
the missing ones with ``[elasticsearch] index_settings`` and ``mappings``.

``--bulk-load`` turns refresh off and replicas to 0 on those indices while the run
writes, and puts back the values it read first when the run ends, however it ends;
a restore that fails is reported with the command that does it by hand.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

from . import engine
from ..backoff import Backoff
from ..docaddress import addressing_conflicts, with_addressing_meta
from ..errors import ConfigError, UnavailableError
from ..indexname import IndexTemplate
from ..settings import ElasticsearchSettings, Settings
from ..signals import handling_stop_signals
from ..timewindow import Slice

log = logging.getLogger(__name__)

# Index names per request: a comma-separated list in the URL must stay short.
NAMES_PER_REQUEST = 50
BULK_LOAD_SETTINGS = {"index.refresh_interval": "-1", "index.number_of_replicas": "0"}
DEFAULT_TOTAL_FIELDS_LIMIT = 1000
TOTAL_FIELDS_KEY = "index.mapping.total_fields.limit"
RESTORE_ATTEMPTS = 3
# Waits of about 0.5 s and 1 s between the attempts: the run is ending, a person waits.
RESTORE_BACKOFF = Backoff(base_s=0.5, cap_s=2.0, jitter=0.2)


def index_names(settings: Settings, slices: Iterable[Slice]) -> list[str]:
    """Every index name rows of these slices can go to, in time order."""
    template = IndexTemplate(settings.elasticsearch.index, settings.tzinfo)
    names: dict[str, None] = {}
    try:
        for s in slices:
            names.update(dict.fromkeys(template.names_between(s.start_ms, s.end_ms)))
    except ValueError as exc:
        raise ConfigError(f"elasticsearch.index: {exc}") from None
    return list(names)


def _chunks(names: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(names), NAMES_PER_REQUEST):
        yield names[i:i + NAMES_PER_REQUEST]


# --- mappings ----------------------------------------------------------------------


def _kind(spec: dict) -> str | None:
    if not isinstance(spec, dict):
        return None
    return spec.get("type") or ("object" if "properties" in spec else None)


def mapping_conflicts(existing: dict, wanted: dict, prefix: str = "") -> list[str]:
    """Fields the wanted mappings give a different type than an existing index has.

    A field only one side knows is no conflict: Elasticsearch adds new fields to an
    existing mapping, but never changes the type of a field it has mapped.
    """
    out: list[str] = []
    have_props = existing.get("properties", {}) if isinstance(existing, dict) else {}
    for name, want in (wanted.get("properties") or {}).items():
        have = have_props.get(name)
        if have is None:
            continue
        path = prefix + name
        want_kind, have_kind = _kind(want), _kind(have)
        if want_kind and have_kind and want_kind != have_kind:
            out.append(f"{path} is {have_kind} in the index, {want_kind} in the config")
            continue
        if isinstance(want, dict) and "properties" in want:
            out.extend(mapping_conflicts(have, want, path + "."))
        for sub, sub_want in ((want.get("fields") or {}) if isinstance(want, dict) else {}).items():
            sub_have = (have.get("fields") or {}).get(sub)
            if sub_have is not None and _kind(sub_want) != _kind(sub_have):
                out.append(f"{path}.{sub} is {_kind(sub_have)} in the index, "
                           f"{_kind(sub_want)} in the config")
    return out


def _mapping_paths(mappings: dict, prefix: str = "") -> set[str]:
    """Field paths a mappings body defines, counted as Elasticsearch counts them."""
    out: set[str] = set()
    for name, spec in (mappings.get("properties") or {}).items():
        path = prefix + name
        out.add(path)
        if isinstance(spec, dict):
            out |= _mapping_paths(spec, path + ".")
            out |= {f"{path}.{sub}" for sub in (spec.get("fields") or {})}
    return out


def _document_paths(document: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, value in document.items():
        parts = (prefix + name).split(".")  # "a.b" is object a holding field b
        out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        if isinstance(value, dict):
            out |= _document_paths(value, prefix + name + ".")
    return out


def planned_fields(settings: Settings, documents: Iterable[dict] = ()) -> set[str]:
    """The fields a run creates: system fields, mapped columns, configured mappings, and
    every field of the given documents (unmapped qualifiers seen in a sample)."""
    m = settings.mapping
    names = {m.timestamp_field, *(c.field for c in m.columns)}
    if m.rowkey_field:
        names.add(m.rowkey_field)
    names = _document_paths(dict.fromkeys(names, None))
    names |= _mapping_paths(settings.elasticsearch.mappings)
    for document in documents:
        names |= _document_paths(document)
    return names


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def configured_fields_limit(es: ElasticsearchSettings) -> int:
    """``index.mapping.total_fields.limit`` as [elasticsearch.index_settings] sets it."""
    flat = {k if k.startswith("index.") else "index." + k: v
            for k, v in _flat(es.index_settings).items()}
    value = flat.get(TOTAL_FIELDS_KEY, DEFAULT_TOTAL_FIELDS_LIMIT)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"elasticsearch.index_settings: {TOTAL_FIELDS_KEY} must be a whole "
                          f"number, got {value!r}") from None


def field_count_warning(fields: set[str], limit: int, where: str) -> str | None:
    """The pre-flight warning when a run would map more fields than the index allows."""
    if len(fields) <= limit:
        return None
    return (f"{len(fields)} fields would be mapped but {where} allows "
            f"{TOTAL_FIELDS_KEY} = {limit}: documents adding fields beyond it are rejected; "
            "raise the limit in [elasticsearch.index_settings] or map fewer columns "
            "([mapping] unmapped = \"skip\")")


def warn_field_count(settings: Settings, documents: Iterable[dict] = ()) -> str | None:
    """Log (and return) the field-count warning for indices created from the config."""
    warning = field_count_warning(planned_fields(settings, documents),
                                  configured_fields_limit(settings.elasticsearch),
                                  "[elasticsearch.index_settings]")
    if warning:
        log.warning(warning)
    return warning


# --- index creation ------------------------------------------------------------------


def create_indices(client, settings: Settings, names: list[str]) -> list[str]:
    """Create the missing indices with the configured settings and mappings.

    Existing ones are checked first, all of them, so a conflict stops the run before
    any index is created or any document is sent. Returns the names created.
    """
    es = settings.elasticsearch
    existing = refuse_other_addressing(client, settings, names)
    conflicts = [f"index {name}: {text}" for name, mappings in existing.items()
                 for text in mapping_conflicts(mappings, es.mappings)]
    if conflicts:
        more = f" (and {len(conflicts) - 5} more)" if len(conflicts) > 5 else ""
        raise ConfigError("elasticsearch.mappings conflicts with existing indices, nothing was "
                          f"written: {'; '.join(conflicts[:5])}{more}")
    _warn_existing_limits(client, settings, list(existing))
    created = []
    for name in names:
        if name in existing:
            continue
        try:
            made = engine.create_index(client, name, es.index_settings,
                                       with_addressing_meta(es.mappings, settings))
        except engine.CONNECTION_ERRORS:  # a subclass of the API errors in 7.x: exit 3
            raise
        except engine.API_ERRORS as exc:
            raise ConfigError(f"elasticsearch.index_settings/mappings: Elasticsearch refused to "
                              f"create index {name}: {engine.error_reason(exc)}") from None
        if made:
            created.append(name)
    if created:
        log.info("created %d %s with the configured settings and mappings: %s", len(created),
                 "index" if len(created) == 1 else "indices", _show(created))
        warn_field_count(settings)
    return created


def refuse_other_addressing(client, settings: Settings, names: list[str], *,
                            aliases: bool = True) -> dict[str, dict]:
    """The mappings of the indices among ``names`` that exist; ConfigError (exit 2, nothing
    written) when one records another id scheme or routing in its ``_meta``. ``aliases``
    also looks behind names that are aliases (one request per name that is no index)."""
    existing: dict[str, dict] = {}  # name as the run writes it -> its mappings
    for chunk in _chunks(names):
        found = engine.get_mapping(client, ",".join(chunk))
        for name in chunk:
            if name in found:
                existing[name] = found[name]
            elif aliases and engine.index_exists(client, name):  # an alias: what it points to
                existing[name] = next(iter(engine.get_mapping(client, name).values()), {})
    problems = addressing_conflicts(existing, settings)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConfigError(f"{'; '.join(problems[:3])}{more}: its documents would be stranded; "
                          f"write to a new index")
    return existing


def _warn_existing_limits(client, settings: Settings, names: list[str]) -> None:
    fields = planned_fields(settings)
    for chunk in _chunks(names):
        for name, flat in engine.get_settings(client, ",".join(chunk),
                                                 include_defaults=True).items():
            limit = int(flat.get(TOTAL_FIELDS_KEY, DEFAULT_TOTAL_FIELDS_LIMIT))
            warning = field_count_warning(fields, limit, f"index {name}")
            if warning:
                log.warning(warning)


def _show(names: list[str], limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit
                                       else "")


# --- bulk-load mode --------------------------------------------------------------------


def read_bulk_settings(client, names: list[str]) -> dict[str, dict]:
    """``{concrete index: {setting: value or None}}`` of the settings bulk-load changes.

    None means the index does not set it, so restoring puts the default back.
    """
    saved: dict[str, dict] = {}
    for chunk in _chunks(names):
        for name, flat in engine.get_settings(client, ",".join(chunk)).items():
            saved[name] = {key: flat.get(key) for key in BULK_LOAD_SETTINGS}
    return saved


def _without_userinfo(url: str) -> str:
    """``https://user:secret@host:9200`` -> ``https://host:9200``: the command lands in the
    report and the log, where a password must never appear."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def restore_command(es: ElasticsearchSettings, names: list[str], values: dict) -> str:
    """The curl command that restores ``values`` on ``names`` and refreshes them."""
    host = _without_userinfo(es.hosts[0]).rstrip("/")
    target = ",".join(names)
    curl = ["curl", "-sS"]
    # Secrets stay in the environment: the command names the variables, the shell expands them.
    if es.api_key_env and os.environ.get(es.api_key_env):
        curl.append(f'-H "Authorization: ApiKey ${{{es.api_key_env}}}"')
    elif es.username_env and os.environ.get(es.username_env):
        curl.append(f'-u "${{{es.username_env}}}:${{{es.password_env}}}"')
    if es.ca_certs:
        curl.append(f"--cacert {shlex.quote(es.ca_certs)}")
    if not es.verify_certs:
        curl.append("-k")
    common = " ".join(curl)
    body = json.dumps(values, separators=(",", ":"))
    return (f"{common} -X PUT {shlex.quote(f'{host}/{target}/_settings')} "
            f"-H 'Content-Type: application/json' -d {shlex.quote(body)} && "
            f"{common} -X POST {shlex.quote(f'{host}/{target}/_refresh')}")


@contextmanager
def _signals_deferred():
    """Ctrl-C while settings are being put back must not leave them half restored."""
    def later(signum, frame):
        log.warning("%s: restoring the index settings first", signal.Signals(signum).name)

    with handling_stop_signals(later):
        yield


def restore_bulk_settings(client, es: ElasticsearchSettings,
                          saved: dict[str, dict]) -> list[str]:
    """Put the saved settings back and refresh; return a curl command per failed group."""
    groups: dict[tuple, list[str]] = {}
    for name, values in saved.items():
        groups.setdefault(tuple(values.items()), []).append(name)
    failed = []
    for values, names in groups.items():
        values = dict(values)
        for chunk in _chunks(names):
            error = None
            retry = RESTORE_BACKOFF.budget(attempts=RESTORE_ATTEMPTS - 1)
            while True:
                try:
                    engine.put_settings(client, ",".join(chunk), values)
                    error = None
                    break
                except (*engine.API_ERRORS, *engine.CONNECTION_ERRORS) as exc:
                    error = exc
                    status = engine.status_of(exc)
                    if status is not None and 400 <= status < 429:  # asking again won't help
                        break
                    if not retry.failed():
                        break
                    retry.wait()
            if error is not None:
                command = restore_command(es, chunk, values)
                log.error("could not restore the settings of %s (%s: %s); run by hand: %s",
                          _show(chunk), type(error).__name__, engine.error_reason(error)[:200],
                          command)
                failed.append(command)
                continue
            try:
                engine.refresh(client, ",".join(chunk))
            except (*engine.API_ERRORS, *engine.CONNECTION_ERRORS) as exc:
                log.warning("settings of %s restored, but the refresh failed (%s); documents "
                            "become searchable within the refresh interval", _show(chunk),
                            type(exc).__name__)
    return failed


@contextmanager
def bulk_load(client, settings: Settings, names: list[str], report=None):
    """Refresh off and no replicas on the existing ``names`` while the body runs.

    The previous values are read before anything changes and put back in ``finally``:
    after a normal end, a failure or Ctrl-C. ``report.bulk_load`` records what happened.
    """
    es = settings.elasticsearch
    saved = read_bulk_settings(client, names)
    absent = [n for n in names if n not in saved and not engine.index_exists(client, n)]
    if absent:
        # --create-index cannot help a data stream: its template makes it on the first write.
        hint = ("a data stream takes the settings of its index template" if settings.data_stream
                else "add --create-index to have them in bulk-load mode too")
        log.warning("--bulk-load: %s not exist yet, so Elasticsearch will create them with its "
                    "default settings (refresh and replicas on); %s: %s",
                    "does" if len(absent) == 1 else "do", hint, _show(absent))
    record = {"indices": sorted(saved), "previous": saved}
    if report is not None:
        report.bulk_load = record
    try:
        for chunk in _chunks(sorted(saved)):
            engine.put_settings(client, ",".join(chunk), BULK_LOAD_SETTINGS)
        if saved:
            log.info("bulk load: refresh_interval -1 and number_of_replicas 0 on %s until the "
                     "run ends", _show(sorted(saved)))
        yield saved
    finally:
        with _signals_deferred():
            failed = restore_bulk_settings(client, es, saved)
        record["restored"] = not failed
        if failed and report is not None:
            report.bulk_load_restore_failed = failed


def check_pipeline(es: ElasticsearchSettings) -> None:
    """``elasticsearch.pipeline`` must exist and have a node to run it: else every bulk
    would be refused. UnavailableError (exit 3) before anything is written."""
    if not es.pipeline:
        return
    client = engine.make_client(es)
    try:
        problem = _pipeline_problem(client, es.pipeline)
    finally:
        client.close()
    if problem is not None:
        raise UnavailableError(f"elasticsearch.pipeline: {problem}")


def _pipeline_problem(client, name: str) -> str | None:
    try:
        engine.call(client, "GET", f"/_ingest/pipeline/{quote(name, safe='')}")
    except engine.EngineError as exc:
        if exc.status != 404:
            raise
        return (f"the ingest pipeline {name!r} does not exist (GET _ingest/pipeline answered "
                f"404); create it first")
    try:
        found = engine.call(client, "GET", "/_nodes/ingest:true",
                            params={"filter_path": "_nodes.total"})
    except engine.EngineError as exc:
        if exc.status in (401, 403):  # the credentials may not list nodes: bulks will tell
            return None
        raise
    if int((found or {}).get("_nodes", {}).get("total", 0)) == 0:
        return (f"no node of the cluster has the ingest role, so no document can go through "
                f"pipeline {name!r} (every bulk would answer 500)")
    return None


@contextmanager
def prepared_indices(settings: Settings, slices: list[Slice], report=None):
    """What an export does around its pool: create indices and/or enter bulk-load mode."""
    run = settings.run
    if not slices:
        yield
        return
    names = index_names(settings, slices)
    client = engine.make_client(settings.elasticsearch)
    try:
        if run.create_index:
            create_indices(client, settings, names)
        else:  # one request per 100 names; what aliases point to is not looked up
            refuse_other_addressing(client, settings, names, aliases=False)
        if run.bulk_load:
            with bulk_load(client, settings, names, report):
                yield
        else:
            yield
    finally:
        client.close()
