"""An export into data streams: found at preflight, and refused where it cannot keep its word.

A plain index takes each document with the row time as its external version, so running
a slice again rewrites the same documents: exactly once, however often it runs. A data
stream accepts only ``op_type: create`` and no version. The row key still goes as ``_id``,
so the backing index taking writes refuses a second copy (counted stale), but after a
rollover a new backing index takes the writes and knows nothing of the old copies: a
slice run again then duplicates its rows. So a slice the ledger has as done (or, without a
ledger, a window the data stream already holds documents of) is refused unless the user
says ``--allow-duplicates``.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from ..errors import ConfigError
from ..search import engine, targets
from ..settings import Settings
from .report import SliceReport

log = logging.getLogger(__name__)


def with_data_streams(settings: Settings, client: engine.Client, names: list[str],
                      todo: list[SliceReport], done: set[tuple[int, int]]) -> Settings:
    """``settings`` with ``data_stream`` set when the run's index names are data streams
    (or become ones); ConfigError for what a data stream cannot take. ``done``: the
    slices the ledger has as done (empty without a ledger)."""
    streams = targets.stream_names(client, names)
    if not streams:
        return settings
    plain = [n for n in names if n not in streams]
    first = next(iter(streams))
    if plain:
        raise ConfigError(f"elasticsearch.index: {first} is a data stream but {plain[0]} is a "
                          "plain index; one run writes to one kind")
    _check_settings(settings, first, streams[first])
    _check_rerun(settings, client, streams, todo, done)
    log.info("%s %s data stream%s: documents are created (op_type create), without an external "
             "version", ", ".join(list(streams)[:5]), "is a" if len(streams) == 1 else "are",
             "" if len(streams) == 1 else "s")
    return replace(settings, data_stream=True)


def _check_settings(settings: Settings, name: str, time_field: str) -> None:
    run = settings.run
    if settings.mapping.timestamp_field != time_field:
        raise ConfigError(f"mapping.timestamp_field: data stream {name} needs its documents' "
                          f"time in {time_field!r}, the mapping writes it to "
                          f"{settings.mapping.timestamp_field!r}")
    refusals = (
        (settings.delete_when is not None, "mapping.delete_when",
         "a data stream deletes no document by id, so soft-deleted rows cannot leave it"),
        (run.create_index, "run.create_index",
         "its index template creates a data stream on the first write; drop --create-index"),
        (bool(run.alias), "run.alias", "the alias cut-over is for plain indices"),
        (run.verify, "run.verify", "verify reads documents by id, which a data stream does "
                                   "not serve"),
    )
    for refused, key, why in refusals:
        if refused:
            raise ConfigError(f"{key}: {name} is a data stream: {why}")


def _check_rerun(settings: Settings, client: engine.Client, streams: dict[str, str],
                 todo: list[SliceReport], done: set[tuple[int, int]]) -> None:
    if settings.run.allow_duplicates:
        return
    again = [e for e in todo if (e.slice.start_ms, e.slice.end_ms) in done]
    if again:
        raise ConfigError(
            f"run.allow_duplicates: {len(again)} slice(s) the ledger has as done (first "
            f"{again[0].slice}) would be written again into data stream "
            f"{next(iter(streams))}, which takes no external version, so after a rollover "
            "they are duplicated; give --resume to skip them, or --allow-duplicates")
    if settings.run.ledger:  # the ledger knows what ran; a resumed slice goes on after it
        return
    field = next(iter(streams.values()))
    held = targets.count_between(client, ",".join(streams), field, settings.start_ms,
                                 settings.end_ms)
    if held:
        raise ConfigError(
            f"run.allow_duplicates: data stream {next(iter(streams))} already holds {held} "
            "document(s) of this window, and without a ledger nothing tells which rows they "
            "are: running it again may duplicate them; use --ledger, or --allow-duplicates")
