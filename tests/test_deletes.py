"""hbase2es.deletes without a server: the delete_when rule, the bulk lines, the counting."""

from __future__ import annotations

import orjson
import pytest

from hbase2es.deletes import (DeleteRule, DeleteTally, dead_letter_parts, delete_if_unchanged,
                              item_kinds, parse_delete_when, settle_deletes, soft_delete_action)
from hbase2es.search.chunking import index_action


def lines(item: bytes) -> list[dict]:
    return [orjson.loads(line) for line in item.splitlines()]


def test_equals_matches_the_exact_value_and_present_any_value():
    equals = parse_delete_when({"column": "d:deleted", "equals": "1"})
    assert equals == DeleteRule(b"d:deleted", b"1", False)
    assert equals.matches({b"d:deleted": b"1", b"cf:a": b"x"})
    assert not equals.matches({b"d:deleted": b"10"})
    assert not equals.matches({b"d:deleted": b""})
    assert not equals.matches({b"cf:a": b"1"})
    present = parse_delete_when({"column": "d:deleted", "present": True, "tombstone": True})
    assert present.matches({b"d:deleted": b""}) and not present.matches({b"d:other": b"1"})
    assert present.tombstone and present.family == b"d"
    assert parse_delete_when({"column": "d:x", "equals": "hex:00ff"}).equals == b"\x00\xff"


@pytest.mark.parametrize("raw,needle", [
    ({"column": "d:x", "equals": 1}, "equals must be text"),
    ({"column": "d:x", "equals": b"1"}, "equals must be text"),
    ({"column": "d:x", "present": False}, "present must be true"),
    ({"column": "d:x", "present": "yes"}, "present must be true"),
    ({"column": "d:x"}, "exactly one of"),
    ({"column": "d:x", "equals": "1", "present": True}, "exactly one of"),
    ({"column": ":x", "equals": "1"}, "family:qualifier"),
    ({"column": 5, "equals": "1"}, "family:qualifier"),
    ({"equals": "1"}, "family:qualifier"),
    ({"column": "d:x", "equals": "1", "tombstone": "yes"}, "tombstone must be true or false"),
    ({"column": "d:x", "equals": "hex:zz"}, "hex digits"),
    ({"column": "d:x", "equals": "1", "extra": 1}, "unknown key 'extra'"),
    (["d:x"], "must be a table"),
])
def test_bad_rules_say_what_is_wrong(raw, needle):
    with pytest.raises(ValueError, match=needle):
        parse_delete_when(raw)


def test_a_soft_delete_outranks_every_state_at_the_row_time():
    rule = DeleteRule(b"d:deleted", b"1")
    item = soft_delete_action(rule, "events", "row1", 1_000, "@timestamp")
    assert lines(item) == [{"delete": {"_index": "events", "_id": "row1", "version": 1_001,
                                       "version_type": "external_gte"}}]
    tombstone = soft_delete_action(DeleteRule(b"d:deleted", b"1", True), "events", "row1",
                                   1_000, "ts")
    assert lines(tombstone) == [
        {"index": {"_index": "events", "_id": "row1", "version": 1_001,
                   "version_type": "external_gte"}},
        {"@deleted": True, "ts": "1970-01-01T00:00:01.000Z"}]


def test_an_orphan_delete_names_the_listed_revision():
    assert lines(delete_if_unchanged("i", "b64:AA==", 7, 2)) == [
        {"delete": {"_index": "i", "_id": "b64:AA==", "if_seq_no": 7, "if_primary_term": 2}}]


def _body(*items: bytes) -> bytes:
    return b"".join(items)


def test_deletes_and_tombstones_that_landed_are_counted_and_404_is_done():
    rule, tomb = DeleteRule(b"d:x", b"1"), DeleteRule(b"d:x", b"1", True)
    payload = _body(index_action("i", "a", 5, {"v": 1}),
                    soft_delete_action(rule, "i", "b", 5, "@timestamp"),
                    soft_delete_action(tomb, "i", "c", 5, "@timestamp"),
                    soft_delete_action(rule, "i", "d", 5, "@timestamp"),
                    soft_delete_action(rule, "i", "e", 5, "@timestamp"),
                    index_action("i", "f", 5, {"@deleted": False}))
    assert item_kinds(payload) == ["index", "delete", "tombstone", "delete", "delete", "index"]
    response = {"errors": True, "items": [
        {"index": {"status": 201}}, {"delete": {"status": 200}}, {"index": {"status": 200}},
        {"delete": {"status": 404}}, {"delete": {"status": 409}}, {"index": {"status": 201}}]}
    assert settle_deletes(payload, response) == 3
    # The writer then counts the 404 as done, not failed; the 409 stays stale.
    assert response["items"][3]["delete"]["status"] == 200
    assert response["items"][4]["delete"]["status"] == 409

    calls = []
    tally = DeleteTally(lambda body: calls.append(body) or response)
    tally(payload)
    tally(payload)
    assert tally.deleted == 6 and calls == [payload, payload]


def test_a_refused_delete_is_dead_lettered_with_its_action():
    rule = DeleteRule(b"d:x", b"1")
    stage, document = dead_letter_parts(soft_delete_action(rule, "i", "b", 5, "@timestamp"))
    assert stage == "delete" and document["delete"]["_id"] == "b"
    tomb = soft_delete_action(DeleteRule(b"d:x", b"1", True), "i", "c", 5, "@timestamp")
    assert dead_letter_parts(tomb) == ("delete", tomb)
    live = index_action("i", "a", 5, {"v": 1})
    assert dead_letter_parts(live) == ("index", live)


def test_the_delete_rule_is_part_of_the_job_a_ledger_belongs_to(tmp_path):
    """Slices done under one rule wrote other documents than another rule would: a ledger
    refuses the changed rule, and a job without a rule keeps the identity it had."""
    from hbase2es.errors import ConfigError
    from hbase2es.run.ledger import Ledger, job_definition
    from hbase2es.settings import load_settings

    def settings(rule: str | None):
        path = tmp_path / "job.toml"
        path.write_text('[hbase]\ntable = "t"\n[elasticsearch]\nindex = "i"\n'
                        + (f"[mapping]\ndelete_when = {rule}\n" if rule else ""))
        return load_settings(path, now_ms=0, need_window=False)

    assert "delete_when" not in job_definition(settings(None))
    with Ledger(str(tmp_path / "job.db")) as ledger:
        ledger.bind_job(job_definition(settings('{ column = "d:x", equals = "1" }')))
        assert ledger.check_job(job_definition(settings('{ column = "d:x", equals = "1" }')))
        for other in ('{ column = "d:x", equals = "2" }', '{ column = "d:x", present = true }',
                      '{ column = "d:x", equals = "1", tombstone = true }', None):
            with pytest.raises(ConfigError, match="differs in: delete_when"):
                ledger.check_job(job_definition(settings(other)))
