"""Which search engine answered ``GET /``, and whether hbase2es can speak to it (pure).

Every engine names itself on ``GET /``: ``version.number``, ``version.distribution``
(``"opensearch"`` on OpenSearch, absent on Elasticsearch) and ``tagline`` ("You Know,
for Search" on Elasticsearch, "The OpenSearch Project: ..." on OpenSearch). OpenSearch
run with ``compatibility.override_main_response_version`` reports ``7.10.2`` and may
leave ``distribution`` out; its tagline still says OpenSearch.

``judge`` turns what each ``--es`` node answered into the one engine a run speaks to, or
one line naming what answered instead: exit 3 for an engine hbase2es does not support
(Elasticsearch 6, Solr, any other HTTP server), a node that wants credentials it did not
get (naming the variables to set), or no node answering at all; exit 2 when the nodes
are different engines or clusters (a mistake in ``hosts``). Nodes that do not answer
while another does only give a warning: the run fails over to the ones that answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from ..errors import ConfigError, UnavailableError

ELASTICSEARCH, OPENSEARCH = "elasticsearch", "opensearch"
ES_TAGLINE = "You Know, for Search"
# The majors whose wire format hbase2es speaks (search/engine.py lists what it uses).
# OpenSearch 7 is OpenSearch 1.x/2.x answering as 7.10.2 for old clients.
SUPPORTED = {ELASTICSEARCH: (7, 8, 9), OPENSEARCH: (1, 2, 3, 7)}
SUPPORTED_TEXT = "Elasticsearch 7.x-9.x or OpenSearch 1.x-3.x"


@dataclass(frozen=True)
class Engine:
    """The product and version of the engine behind the ``--es`` nodes."""

    product: str  # ELASTICSEARCH or OPENSEARCH
    version: str  # "8.19.0"
    cluster_uuid: str = ""
    cluster_name: str = ""

    @property
    def major(self) -> int:
        return _major(self.version)

    @property
    def is_opensearch(self) -> bool:
        return self.product == OPENSEARCH

    @property
    def label(self) -> str:
        return f"{'OpenSearch' if self.is_opensearch else 'Elasticsearch'} {self.version}"


@dataclass(frozen=True)
class Answer:
    """What one node said to ``GET /``: an HTTP answer, or ``error`` when none came."""

    url: str
    status: int | None = None
    body: bytes = b""
    content_type: str = ""
    server: str = ""  # the Server header: names a web server that is not an engine
    error: str = ""  # "ConnectionError: ..." when the node did not answer
    tls: bool = False  # the error is a failed TLS handshake or certificate check


@dataclass(frozen=True)
class Credentials:
    """Which of the configured credential variables a run has (names, never values)."""

    api_key_env: str
    username_env: str
    password_env: str
    given: str = ""  # the variable(s) that were set: "HBASE2ES_ES_API_KEY", "" for none


class NotAnEngine(Exception):
    """A node answered, but not as an engine hbase2es supports; str() says what it is."""


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else -1


def _what(answer: Answer) -> str:
    """A short description of a non-engine answer: server, content type, start of body."""
    parts = [f"HTTP {answer.status}"]
    if answer.server:
        parts.append(f"Server: {answer.server}")
    if answer.content_type:
        parts.append(answer.content_type.split(";")[0])
    text = answer.body[:80].decode("utf-8", "replace").strip().replace("\n", " ")
    if text:
        parts.append(repr(text))
    return ", ".join(parts)


def identify(answer: Answer) -> Engine:
    """The engine a node's ``GET /`` names; NotAnEngine when it is none we support."""
    if answer.status != 200:
        raise NotAnEngine(f"{answer.url} is not {SUPPORTED_TEXT}: GET / answered "
                          f"{_what(answer)}")
    try:
        data = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        data = None
    version = data.get("version") if isinstance(data, dict) else None
    number = version.get("number") if isinstance(version, dict) else None
    if not isinstance(number, str):
        raise NotAnEngine(f"{answer.url} is not {SUPPORTED_TEXT}: GET / answered "
                          f"{_what(answer)}")
    tagline = str(data.get("tagline", ""))
    distribution = str(version.get("distribution", ""))
    if distribution == OPENSEARCH or "opensearch" in tagline.lower():
        product = OPENSEARCH
    elif not distribution and tagline == ES_TAGLINE:
        product = ELASTICSEARCH
    else:
        said = f"distribution {distribution!r}" if distribution else f"tagline {tagline!r}"
        raise NotAnEngine(f"{answer.url} is not {SUPPORTED_TEXT}: it answered version "
                          f"{number} with {said}")
    engine = Engine(product, number, str(data.get("cluster_uuid", "")),
                    str(data.get("cluster_name", "")))
    if engine.major not in SUPPORTED[product]:
        raise NotAnEngine(f"{answer.url} runs {engine.label}, which hbase2es does not support "
                          f"(it needs {SUPPORTED_TEXT})")
    return engine


def auth_problem(answer: Answer, creds: Credentials) -> str | None:
    """The line to print when a node refused ``GET /`` for want of (good) credentials."""
    if answer.status not in (401, 403):
        return None
    if not creds.given:
        return (f"{answer.url} requires authentication (HTTP {answer.status}) and none was "
                f"given: set {creds.api_key_env}, or {creds.username_env} and "
                f"{creds.password_env}")
    if answer.status == 401:
        return (f"{answer.url} refused the credentials from {creds.given} (HTTP 401): "
                "check their value")
    return (f"{answer.url} refused GET / to the credentials from {creds.given} (HTTP 403): "
            "grant them the cluster privilege 'monitor' (Elasticsearch) or "
            "'cluster:monitor/main' (OpenSearch)")


def engine_of(answer: Answer, creds: Credentials) -> Engine:
    """The engine of one node that answered; UnavailableError naming what is wrong."""
    problem = auth_problem(answer, creds)
    if problem:
        raise UnavailableError(problem)
    try:
        return identify(answer)
    except NotAnEngine as exc:
        raise UnavailableError(str(exc)) from None


def _unreachable(answer: Answer) -> str:
    if answer.tls:
        return (f"{answer.url} (TLS failed: {answer.error[:200]}; for a private CA set "
                "[elasticsearch] ca_certs)")
    return f"{answer.url} ({answer.error[:200]})"


def judge(answers: list[Answer], creds: Credentials) -> tuple[Engine, list[str]]:
    """The engine all answering nodes run, and one warning per node that did not answer.

    Raises UnavailableError (exit 3) when no node answers, when a node answers as
    something unsupported or wants credentials, and ConfigError (exit 2) when nodes
    disagree on the engine or cluster.
    """
    found: list[tuple[Answer, Engine]] = []
    silent = [a for a in answers if a.status is None]
    for answer in answers:
        if answer.status is not None:
            found.append((answer, engine_of(answer, creds)))
    if not found:
        raise UnavailableError("cannot reach Elasticsearch at "
                               + ", ".join(_unreachable(a) for a in silent))
    first_answer, first = found[0]
    for answer, other in found[1:]:
        if other.product != first.product or (
                other.cluster_uuid != first.cluster_uuid
                and "_na_" not in (other.cluster_uuid, first.cluster_uuid)):
            raise ConfigError(
                f"elasticsearch.hosts: {first_answer.url} ({first.label}, cluster "
                f"{first.cluster_name!r}) and {answer.url} ({other.label}, cluster "
                f"{other.cluster_name!r}) are not one cluster: list the nodes of one cluster")
    # A rolling upgrade mixes majors in one cluster: speak to the oldest.
    engine = min((e for _, e in found), key=lambda e: e.major)
    answering = "the node that answers" if len(found) == 1 else f"the {len(found)} that answer"
    warnings = [f"Elasticsearch node {_unreachable(a)} does not answer; going on with "
                f"{answering} ({engine.label})" for a in silent]
    return engine, warnings
