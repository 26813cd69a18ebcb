"""How log lines look: human text, or one JSON object per line for log shippers.

Both formats go through ``scrub``: the password of a ``user:password@`` URL and the values
of the secret environment variables the settings name (API key, password) are replaced
by ``***`` before anything is written, in the parent and in the workers alike.

JSON lines carry ``time`` (UTC, ISO-8601), ``level``, ``event`` (``message`` for plain
log lines), ``message``, and, when the line is about one, ``slice`` (index, start, end),
``status``, ``counts``, ``seconds`` and ``error``; a worker's lines add ``worker`` (its PID).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import time

import orjson

from ..settings import ElasticsearchSettings

# Everything between "://" and "@" in a URL: user and password.
_URL_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")
# Fields a log call may pass with extra={...}, copied into the JSON object.
FIELDS = ("slice", "status", "counts", "seconds", "error", "exit_code", "alias")
MIN_SECRET_LEN = 4  # shorter values would turn ordinary words into ***

_secrets: tuple[str, ...] = ()
_format = "human"


def secrets_of(es: ElasticsearchSettings) -> tuple[str, ...]:
    """The secret values this process must never print: what the variables named by
    ``api_key_env`` and ``password_env`` hold (and the API key as the client encodes it)."""
    found = []
    for name in (es.api_key_env, es.password_env):
        value = os.environ.get(name) if name else None
        if value and len(value) >= MIN_SECRET_LEN:
            found += [value, base64.b64encode(value.encode()).decode()]
    return tuple(found)


def scrub(text: str) -> str:
    """``text`` without URL credentials and without the known secret values."""
    text = _URL_USERINFO.sub("***@", text)
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


def _scrubbed(value):
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return value


class HumanFormatter(logging.Formatter):
    """``2024-01-01T00:00:00 INFO message``, secrets scrubbed."""

    def __init__(self, worker: bool = False):
        mark = " [worker %(process)d]" if worker else ""
        super().__init__(f"%(asctime)s %(levelname)s{mark} %(message)s", "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record; strings scrubbed before they are encoded."""

    def __init__(self, worker: bool = False):
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": _utc(record.created), "level": record.levelname.lower(),
               "event": getattr(record, "event", "message"), "message": record.getMessage()}
        for name in FIELDS:
            if getattr(record, name, None) is not None:
                out[name] = getattr(record, name)
        if record.exc_info and "error" not in out:
            out["error"] = self.formatException(record.exc_info)
        if self.worker:
            out["worker"] = record.process
        return orjson.dumps(_scrubbed(out), default=str).decode()


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + \
        f".{int(created % 1 * 1000):03d}Z"


def configure(handler: logging.Handler, level: str, log_format: str = "human", *,
              secrets: tuple[str, ...] = (), worker: bool = False) -> None:
    """Send the ``hbase2es`` loggers to ``handler`` in ``log_format``.

    The libraries underneath (elasticsearch, urllib3) keep Python's default in both
    formats: what they would say, the lines of ours say once, with less noise.
    """
    global _secrets, _format
    _secrets = tuple(sorted(set(secrets), key=len, reverse=True))  # longest first
    _format = log_format
    handler.setFormatter(JsonFormatter(worker) if log_format == "json" else HumanFormatter(worker))
    ours = logging.getLogger("hbase2es")
    ours.handlers[:] = [handler]
    ours.setLevel(level.upper())
    ours.propagate = False


def reset() -> None:
    """Human format, and the secrets of the default variables: before any settings exist."""
    global _secrets, _format
    _format = "human"
    _secrets = secrets_of(ElasticsearchSettings())


def current_format() -> str:
    """The log format configured in this process ("human" until configure runs)."""
    return _format


def error_line(message: str, exit_code: int) -> str:
    """The one line a failed command prints on stderr, in the configured format."""
    message = scrub(message)
    if _format == "json":
        return orjson.dumps({"time": _utc(time.time()), "level": "error", "event": "failed",
                             "message": message, "error": message,
                             "exit_code": exit_code}).decode()
    return f"hbase2es: error: {message}"
