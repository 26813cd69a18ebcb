"""A strict parser of Prometheus' text exposition format (version 0.0.4), for the tests.

prometheus_client is not a dependency of the project, so the tests read the metrics file
with this instead. It refuses what node_exporter's textfile collector would refuse, and
a few things the conventions forbid: a sample before its TYPE, a TYPE given twice, the
samples of one metric split apart, a series given twice, a counter without ``_total``.
"""

from __future__ import annotations

import math
import re

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class ParseError(ValueError):
    pass


def _value(text: str, where: str) -> float:
    if text in ("NaN", "+Inf", "-Inf"):
        return {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}[text]
    if not re.fullmatch(r"[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)", text):
        raise ParseError(f"{where}: bad value {text!r}")
    return float(text)


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def _labels(text: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = LABEL.match(text, position)
        if not match:
            raise ParseError(f"{where}: bad labels {text!r}")
        name, value = match.group(1), _unescape(match.group(2))
        if name in out:
            raise ParseError(f"{where}: label {name} twice")
        out[name] = value
        position = match.end()
        if position < len(text):
            if text[position] != ",":
                raise ParseError(f"{where}: expected ',' in {text!r}")
            position += 1
    return out


def parse(text: str) -> tuple[dict[str, str], dict[tuple[str, frozenset], float]]:
    """(metric -> type, (metric, labels) -> value); ParseError on anything out of place."""
    if not text.endswith("\n"):
        raise ParseError("the last line has no newline")
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: dict[tuple[str, frozenset], float] = {}
    finished: set[str] = set()
    current = None
    for number, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {number}"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.fullmatch(name):
                    raise ParseError(f"{where}: bad metric name {name!r}")
                if parts[1] == "TYPE":
                    if name in types or len(parts) != 4 or parts[3] not in TYPES:
                        raise ParseError(f"{where}: bad or repeated TYPE {line!r}")
                    types[name] = parts[3]
                else:
                    if name in helps:
                        raise ParseError(f"{where}: repeated HELP for {name}")
                    helps.add(name)
            continue
        if not line.strip():
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?", line)
        if not match:
            raise ParseError(f"{where}: not a sample {line!r}")
        name, labels = match.group(1), _labels(match.group(2) or "", where)
        if name not in types:
            raise ParseError(f"{where}: sample of {name} before its TYPE")
        if types[name] == "counter" and not name.endswith("_total"):
            raise ParseError(f"{where}: counter {name} does not end in _total")
        if name != current:
            if name in finished:
                raise ParseError(f"{where}: samples of {name} are not together")
            if current is not None:
                finished.add(current)
            current = name
        key = (name, frozenset(labels.items()))
        if key in samples:
            raise ParseError(f"{where}: series {name}{labels} twice")
        samples[key] = _value(match.group(3), where)
    return types, samples


def value(samples: dict, name: str, **labels) -> float:
    """The value of the one series of ``name`` whose labels include ``labels``."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    if len(found) != 1:
        raise KeyError(f"{len(found)} series of {name} with {labels}")
    return found[0]
