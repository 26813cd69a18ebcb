"""search/product.py: which engine answered GET /, and the one line when it is none we
support. Pure: the answers are the bodies real engines send (tests/test_sinks.py checks
the real ones end to end)."""

from __future__ import annotations

import json

import pytest

from hbase2es.errors import ConfigError, UnavailableError
from hbase2es.search.product import Answer, Credentials, identify, judge, NotAnEngine

NONE = Credentials("HBASE2ES_ES_API_KEY", "HBASE2ES_ES_USERNAME", "HBASE2ES_ES_PASSWORD")


def es(number: str, uuid: str = "c1", **version) -> bytes:
    return json.dumps({"cluster_name": "x", "cluster_uuid": uuid,
                       "version": {"number": number, **version},
                       "tagline": "You Know, for Search"}).encode()


def opensearch(number: str, uuid: str = "c1", distribution: bool = True) -> bytes:
    version = {"number": number, **({"distribution": "opensearch"} if distribution else {})}
    return json.dumps({"cluster_name": "o", "cluster_uuid": uuid, "version": version,
                       "tagline": "The OpenSearch Project: https://opensearch.org/"}).encode()


def ok(url: str, body: bytes) -> Answer:
    return Answer(url, 200, body, "application/json")


@pytest.mark.parametrize("body, label", [
    (es("7.10.2", build_flavor="default"), "Elasticsearch 7.10.2"),
    (es("8.19.0"), "Elasticsearch 8.19.0"),
    (es("9.2.0"), "Elasticsearch 9.2.0"),
    (opensearch("2.19.1"), "OpenSearch 2.19.1"),
    (opensearch("3.0.0"), "OpenSearch 3.0.0"),
    # OpenSearch answering as 7.10.2 for old clients (override_main_response_version).
    (opensearch("7.10.2", distribution=False), "OpenSearch 7.10.2"),
])
def test_the_engines_hbase2es_speaks_are_recognised(body, label):
    assert identify(ok("http://n:9200", body)).label == label


@pytest.mark.parametrize("answer, words", [
    (ok("http://n:1", es("6.8.23")), "runs Elasticsearch 6.8.23, which hbase2es does not"),
    (ok("http://n:1", es("10.0.0")), "runs Elasticsearch 10.0.0"),
    (ok("http://n:1", opensearch("4.0.0")), "runs OpenSearch 4.0.0"),
    (ok("http://n:1", json.dumps({"version": {"number": "1.0", "distribution": "easy"},
                                  "tagline": "t"}).encode()), "distribution 'easy'"),
    (ok("http://n:1", json.dumps({"version": {"number": "8.1.0"}, "tagline": "Hi"}).encode()),
     "tagline 'Hi'"),
    (Answer("http://n:1", 302, b"", "text/html", "Jetty(9.4)"), "HTTP 302, Server: Jetty(9.4)"),
    (Answer("http://n:1", 200, b"<html>solr</html>", "text/html"), "'<html>solr</html>'"),
])
def test_anything_else_is_named_as_what_answered(answer, words):
    with pytest.raises(NotAnEngine) as info:
        identify(answer)
    assert words in str(info.value) and "http://n:1" in str(info.value)


def test_a_node_that_does_not_answer_is_a_warning_while_another_answers():
    dead = Answer("http://a:9200", error="ConnectionError: refused")
    engine, warnings = judge([dead, ok("http://b:9200", es("8.19.0"))], NONE)
    assert engine.label == "Elasticsearch 8.19.0"
    assert warnings == ["Elasticsearch node http://a:9200 (ConnectionError: refused) does not "
                        "answer; going on with the node that answers (Elasticsearch 8.19.0)"]
    with pytest.raises(UnavailableError, match="cannot reach Elasticsearch at http://a:9200"):
        judge([dead], NONE)


def test_a_rolling_upgrade_speaks_to_the_oldest_major_and_two_clusters_are_refused():
    mixed = [ok("http://a:1", es("8.19.0")), ok("http://b:1", es("7.17.9"))]
    assert judge(mixed, NONE)[0].version == "7.17.9"
    with pytest.raises(ConfigError, match="are not one cluster"):
        judge([ok("http://a:1", es("8.19.0", uuid="u1")),
               ok("http://b:1", es("8.19.0", uuid="u2"))], NONE)
    with pytest.raises(ConfigError, match="OpenSearch 2.19.1"):
        judge([ok("http://a:1", es("8.19.0")), ok("http://b:1", opensearch("2.19.1"))], NONE)


def test_credentials_missing_refused_or_short_of_a_privilege_say_what_to_do():
    denied = Answer("http://a:1", 401, b'{"error":{"type":"security_exception"}}')
    with pytest.raises(UnavailableError, match="set HBASE2ES_ES_API_KEY, or "
                       "HBASE2ES_ES_USERNAME and HBASE2ES_ES_PASSWORD"):
        judge([denied], NONE)
    given = Credentials("K", "U", "P", given="U/P")
    with pytest.raises(UnavailableError, match="refused the credentials from U/P"):
        judge([denied], given)
    forbidden = Answer("http://a:1", 403, b"{}")
    with pytest.raises(UnavailableError, match="privilege 'monitor'"):
        judge([forbidden], given)


def test_a_failed_tls_check_points_at_ca_certs():
    bad = Answer("https://a:1", error="TlsError: certificate verify failed", tls=True)
    with pytest.raises(UnavailableError, match="TLS failed: .* set \\[elasticsearch\\] ca_certs"):
        judge([bad], NONE)
