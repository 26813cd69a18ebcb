"""Index names: a fixed name, or a template over the row time in a zone.

``events-{time:%Y.%m.%d}`` puts each document in the index of its row's day; the names
a slice can produce are listed before the run (``names_between``) so that indices can be
created and checked first.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

from .timewindow import format_time

__all__ = ["IndexTemplate"]

_MAX_INDEX_NAME_BYTES = 255
_MAX_INDEX_NAMES = 100_000
_CACHE_SIZE = 4_096
_EPOCH = datetime(1970, 1, 1)
_ONE_MS = timedelta(milliseconds=1)
_SECOND_MS = 1_000
_MINUTE_MS = 60_000
_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
# Finest time unit each allowed strftime directive shows. Locale-dependent
# directives (%b, %a, %p ...) are left out: they give upper case or spaces.
_DIRECTIVE_UNIT_MS = {
    "Y": _DAY_MS,
    "y": _DAY_MS,
    "G": _DAY_MS,
    "m": _DAY_MS,
    "d": _DAY_MS,
    "j": _DAY_MS,
    "U": _DAY_MS,
    "W": _DAY_MS,
    "V": _DAY_MS,
    "u": _DAY_MS,
    "w": _DAY_MS,
    "H": _HOUR_MS,
    "M": _MINUTE_MS,
    "S": _SECOND_MS,
}
# What each directive can print, for telling the template's own names from other names
# its wildcard matches (%Y prints fewer digits before the year 1000).
_DIRECTIVE_REGEX = {"Y": r"\d{1,4}", "G": r"\d{1,4}", "j": r"\d{3}", "u": r"\d", "w": r"\d"}
_FORBIDDEN_INDEX_CHARS = set('\\/*?"<>| ,#:')


class IndexTemplate:
    """An index name, fixed ("events") or by row time in a zone ("events-{time:%Y.%m.%d}")."""

    def __init__(self, template: str, tz: tzinfo = timezone.utc) -> None:
        self._template = template
        self._tz = tz
        literal, pattern, unit_ms = _parse_template(template)
        self._static_name = literal if pattern is None else None
        self._pattern = pattern
        self._unit_ms = unit_ms
        # A fixed offset needs no zone lookup per row.
        self._fixed_offset_ms = tz.utcoffset(None) // _ONE_MS if isinstance(tz, timezone) else None
        self._names: dict[int, str] = {}
        self._last: tuple[int, str] | None = None
        self._wildcard, self._name_re = _wildcard_and_regex(literal, pattern)
        sample = self._static_name if self._static_name is not None else self._name_for_key(0)
        _check_rendered_name(template, sample)

    @property
    def template(self) -> str:
        """The template text as given."""
        return self._template

    @property
    def tz(self) -> tzinfo:
        """The zone row times are shown in."""
        return self._tz

    @property
    def is_static(self) -> bool:
        """True when every row goes to the same index."""
        return self._static_name is not None

    def __repr__(self) -> str:
        return f"IndexTemplate({self._template!r}, tz={self._tz})"

    def wildcard(self) -> str:
        """An index pattern covering every name the template can produce: ``x-*`` for
        ``x-{time:%Y.%m.%d}``, the name itself for a fixed one. It may match other
        indices too (``x-archive``); ``matches`` tells the template's own apart."""
        return self._wildcard

    def matches(self, name: str) -> bool:
        """True when ``name`` has the form of a name the template produces."""
        return self._name_re.fullmatch(name) is not None

    def render(self, row_time_ms: int) -> str:
        """The index name for a row at row_time_ms."""
        if self._static_name is not None:
            return self._static_name
        offset = self._fixed_offset_ms
        if offset is None:
            offset = self._offset_ms(row_time_ms)
        # Local wall time counted from 1970-01-01 00:00 local, cut to the
        # template's finest unit: equal keys always give equal names.
        key = (row_time_ms + offset) // self._unit_ms
        last = self._last
        if last is not None and last[0] == key:
            return last[1]
        name = self._names.get(key)
        if name is None:
            name = self._remember(key)
        self._last = (key, name)
        return name

    def names_between(self, start_ms: int, end_ms: int) -> list[str]:
        """The distinct index names rows in [start_ms, end_ms) can go to, in time order."""
        if start_ms >= end_ms:
            return []
        if self._static_name is not None:
            return [self._static_name]
        if (end_ms - start_ms) // self._unit_ms > _MAX_INDEX_NAMES:
            raise ValueError(
                f"index template {self._template!r}: {format_time(start_ms)} to "
                f"{format_time(end_ms)} spans more than {_MAX_INDEX_NAMES} index names; "
                "use a shorter range or a coarser template"
            )
        names: dict[str, None] = {}
        moment = start_ms
        while moment < end_ms:
            names[self.render(moment)] = None
            moment = self._next_change(moment)
        return list(names)

    def _next_change(self, moment: int) -> int:
        """The first time after moment whose name may differ: a unit boundary or offset change."""
        offset = self._fixed_offset_ms
        fixed = offset is not None
        if not fixed:
            offset = self._offset_ms(moment)
        key = (moment + offset) // self._unit_ms
        boundary = (key + 1) * self._unit_ms - offset
        # Zones change offset at most once within a day in practice, so equal
        # offsets at both ends mean none changed in between.
        if fixed or self._offset_ms(boundary - 1) == offset:
            return boundary
        return self._offset_change(moment, boundary - 1, offset)

    def _offset_change(self, low: int, high: int, offset: int) -> int:
        """Binary search for the first ms in (low, high] whose offset is not offset."""
        while high - low > 1:
            middle = (low + high) // 2
            if self._offset_ms(middle) == offset:
                low = middle
            else:
                high = middle
        return high

    def _offset_ms(self, moment: int) -> int:
        try:
            local = datetime.fromtimestamp(moment // 1000, self._tz)
        except (OverflowError, OSError, ValueError):
            raise ValueError(
                f"index template {self._template!r}: row time {moment} ms is outside "
                "the years 1 to 9999"
            ) from None
        return local.utcoffset() // _ONE_MS

    def _remember(self, key: int) -> str:
        if len(self._names) >= _CACHE_SIZE:
            # Rows arrive roughly in time order, so old names are rarely needed again.
            self._names.clear()
        name = self._name_for_key(key)
        self._names[key] = name
        return name

    def _name_for_key(self, key: int) -> str:
        try:
            local = _EPOCH + timedelta(milliseconds=key * self._unit_ms)
        except OverflowError:
            raise ValueError(
                f"index template {self._template!r}: row time is outside the years 1 to 9999"
            ) from None
        return local.strftime(self._pattern)


def _wildcard_and_regex(literal: str, pattern: str | None) -> tuple[str, re.Pattern]:
    """The wildcard (each run of time directives becomes ``*``) and the regex of the names
    a template produces, from its strftime pattern."""
    if pattern is None:
        return literal, re.compile(re.escape(literal))
    wildcard: list[str] = []
    regex: list[str] = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        directive = pattern[position + 1 : position + 2] if char == "%" else ""
        if directive and directive != "%":
            if not wildcard or wildcard[-1] != "*":
                wildcard.append("*")
            regex.append(_DIRECTIVE_REGEX.get(directive, r"\d\d"))
            position += 2
            continue
        wildcard.append(char)
        regex.append(re.escape(char))
        position += 2 if directive == "%" else 1
    return "".join(wildcard), re.compile("".join(regex))


def _parse_template(template: str) -> tuple[str, str | None, int]:
    """Split a template into (literal text, strftime pattern or None, finest unit in ms)."""
    if not isinstance(template, str) or not template:
        raise ValueError(f"index template {template!r} is empty")
    literal: list[str] = []
    pattern: list[str] = []
    unit_ms = 0
    position = 0
    while position < len(template):
        char = template[position]
        doubled = template[position : position + 2] in ("{{", "}}")
        if doubled or char not in "{}":
            _check_index_char(template, char)
            literal.append(char)
            pattern.append("%%" if char == "%" else char)
            position += 2 if doubled else 1
        elif char == "}":
            raise ValueError(
                f"index template {template!r}: unmatched '}}' at position {position}; "
                "write '}}' for a literal brace"
            )
        else:
            end = template.find("}", position)
            if end < 0 or "{" in template[position + 1 : end]:
                raise ValueError(
                    f"index template {template!r}: unclosed '{{' at position {position}; "
                    "write '{{' for a literal brace"
                )
            time_format, finest = _parse_placeholder(template, template[position + 1 : end])
            pattern.append(time_format)
            unit_ms = finest if not unit_ms else min(unit_ms, finest)
            position = end + 1
    if not unit_ms:
        return "".join(literal), None, _DAY_MS
    return "".join(literal), "".join(pattern), unit_ms


def _parse_placeholder(template: str, inner: str) -> tuple[str, int]:
    """Check "time:FORMAT" and return (FORMAT, finest unit it shows in ms)."""
    name, colon, time_format = inner.partition(":")
    if name != "time":
        raise ValueError(
            f"index template {template!r}: unknown placeholder {{{inner}}}; only {{time:FORMAT}} "
            "is supported, e.g. {time:%Y.%m.%d}"
        )
    if not colon or not time_format:
        raise ValueError(
            f"index template {template!r}: {{{inner}}} needs a strftime format, "
            "e.g. {time:%Y.%m.%d}"
        )
    finest = 0
    position = 0
    while position < len(time_format):
        char = time_format[position]
        if char != "%":
            _check_index_char(template, char)
            position += 1
            continue
        directive = time_format[position + 1 : position + 2]
        if directive != "%":
            if directive not in _DIRECTIVE_UNIT_MS:
                raise ValueError(
                    f"index template {template!r}: unsupported time directive %{directive}; "
                    "use %Y %y %G %m %d %j %U %W %V %u %w %H %M %S"
                )
            unit_ms = _DIRECTIVE_UNIT_MS[directive]
            finest = unit_ms if not finest else min(finest, unit_ms)
        position += 2
    if not finest:
        raise ValueError(
            f"index template {template!r}: {{{inner}}} has no time directive such as %Y"
        )
    return time_format, finest


def _check_index_char(template: str, char: str) -> None:
    if char in _FORBIDDEN_INDEX_CHARS or char.isspace():
        raise ValueError(
            f"index template {template!r}: {char!r} is not allowed in Elasticsearch index names"
        )
    if char != char.lower():
        raise ValueError(
            f"index template {template!r}: Elasticsearch index names must be lower case, "
            f"found {char!r}"
        )


def _check_rendered_name(template: str, name: str) -> None:
    if not name:
        raise ValueError(f"index template {template!r} gives an empty index name")
    if name in (".", ".."):
        raise ValueError(f"index template {template!r}: {name!r} is not a valid index name")
    if name[0] in "-_+":
        raise ValueError(
            f"index template {template!r}: index names must not start with {name[0]!r}"
        )
    if len(name.encode("utf-8")) > _MAX_INDEX_NAME_BYTES:
        raise ValueError(
            f"index template {template!r}: index names are limited to {_MAX_INDEX_NAME_BYTES} bytes"
        )
