"""Unit tests of settings.py: precedence (overrides > TOML > defaults) and validation messages."""

from __future__ import annotations

import pickle
from dataclasses import FrozenInstanceError

import pytest

from hbase2es.errors import ConfigError, ExitCode
from hbase2es.settings import load_settings, parse_bool

NOW = 1_700_000_000_000
REQUIRED = {"hbase.table": "t", "elasticsearch.index": "i", "window.start": "1699990000000",
            "window.end": "1700000000000"}


def _load(toml: str | None = None, tmp_path=None, **overrides):
    path = None
    if toml is not None:
        path = tmp_path / "job.toml"
        path.write_text(toml, encoding="utf-8")
    merged = dict(REQUIRED)
    merged.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_settings(path, merged, now_ms=NOW)


def _error(toml: str | None = None, tmp_path=None, **overrides) -> str:
    with pytest.raises(ConfigError) as info:
        _load(toml, tmp_path, **overrides)
    assert info.value.exit_code == ExitCode.USAGE
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_apply_when_nothing_is_given():
    s = _load()
    assert (s.hbase.host, s.hbase.port, s.hbase.transport, s.hbase.protocol) == (
        "127.0.0.1", 9090, "buffered", "binary")
    assert s.elasticsearch.hosts == ("http://127.0.0.1:9200",)
    assert (s.run.workers, s.run.max_errors, s.run.quiet, s.run.report) == (2, 0, False, None)
    assert (s.window.slice, s.window.tz, s.slice_ms) == ("1h", "UTC", 3_600_000)
    assert (s.start_ms, s.end_ms) == (1_699_990_000_000, 1_700_000_000_000)


def test_toml_beats_defaults_and_overrides_beat_toml(tmp_path):
    toml = """
[hbase]
host = "hb.example"
port = 9999
table = "from_toml"
[elasticsearch]
hosts = ["http://es1:9200", "http://es2:9200"]
index = "idx-toml"
[window]
slice = "15m"
[run]
workers = 7
max_errors = 3
"""
    s = _load(toml, tmp_path, hbase__table="from_flag", run__workers=2)
    assert s.hbase.table == "from_flag"  # override
    assert s.run.workers == 2  # override
    assert (s.hbase.host, s.hbase.port) == ("hb.example", 9999)  # TOML
    assert s.elasticsearch.hosts == ("http://es1:9200", "http://es2:9200")
    assert s.slice_ms == 15 * 60_000 and s.run.max_errors == 3
    assert s.hbase.batch_size == 1000  # default


def test_an_override_of_none_leaves_the_toml_value(tmp_path):
    s = _load("[run]\nworkers = 5\n", tmp_path, run__workers=None)
    assert s.run.workers == 5


def test_override_strings_from_the_environment_are_coerced(tmp_path):
    s = _load(None, tmp_path, run__workers="4", hbase__port="9091",
              elasticsearch__retry_seconds="2.5", elasticsearch__hosts="http://one:9200")
    assert (s.run.workers, s.hbase.port) == (4, 9091)
    assert s.elasticsearch.retry_seconds == 2.5
    assert s.elasticsearch.hosts == ("http://one:9200",)


def test_window_times_come_from_toml_when_not_given(tmp_path):
    path = tmp_path / "w.toml"
    path.write_text('[hbase]\ntable = "t"\n[elasticsearch]\nindex = "i"\n[window]\n'
                    'start = "2023-11-14T00:00:00Z"\nend = "now-1h"\nslice = "1d"\n')
    s = load_settings(path, {}, now_ms=NOW)
    assert s.start_ms == 1_699_920_000_000
    assert s.end_ms == NOW - 3_600_000
    assert s.slice_ms == 86_400_000


def test_tz_applies_to_times_without_offset(tmp_path):
    s = _load(None, tmp_path, window__start="2023-11-14T00:00:00", window__end="2023-11-15",
              window__tz="+02:00")
    assert s.start_ms == 1_699_920_000_000 - 2 * 3_600_000
    assert s.end_ms == 1_700_006_400_000 - 2 * 3_600_000


def test_settings_are_frozen_and_picklable():
    s = _load()
    with pytest.raises(FrozenInstanceError):
        s.run.workers = 3  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(s)) == s


def test_mapping_from_toml(tmp_path):
    s = _load('[mapping]\nrowkey_field = "key"\nunmapped = "skip"\n'
              '[mapping.columns]\n"cf:n" = { field = "n", type = "long" }\n"cf:s" = "string"\n'
              '"cf:j" = { type = "json" }\n', tmp_path)
    cols = {c.column: (c.field, c.type) for c in s.mapping.columns}
    assert cols == {b"cf:n": ("n", "long"), b"cf:s": ("s", "string"), b"cf:j": ("j", "json")}
    assert (s.mapping.rowkey_field, s.mapping.unmapped) == ("key", "skip")


@pytest.mark.parametrize("toml,needle", [
    ("[window]\nfoo = 1\n", "unknown key window.foo"),
    ("[windoww]\nstart = 1\n", "unknown section [windoww]"),
    ("[run]\nworkers = \"two\"\n", "run.workers must be a whole number, got 'two'"),
    ("[run]\nworkers = 2.5\n", "run.workers must be a whole number"),
    ("[run]\nworkers = 0\n", "run.workers must be greater than 0"),
    ("[run]\nmax_errors = -1\n", "run.max_errors must be 0 or more"),
    ("[run]\nquiet = \"yes\"\n", "run.quiet must be true or false"),
    ("[hbase]\nport = true\n", "hbase.port must be a whole number"),
    ("[hbase]\ntransport = \"websocket\"\n",
     "hbase.transport must be one of buffered, framed, http"),
    ("[hbase]\nprotocol = \"json\"\n", "hbase.protocol must be one of binary, compact"),
    ("[hbase]\ntable = 5\n", "hbase.table must be a string"),
    ("[elasticsearch]\nhosts = []\n", "elasticsearch.hosts must be a non-empty list"),
    ("[elasticsearch]\nhosts = 5\n", "elasticsearch.hosts must be a non-empty list"),
    ("[elasticsearch]\nrequest_timeout = \"soon\"\n",
     "elasticsearch.request_timeout must be a number"),
    ("hbase = 3\n", "[hbase] must be a table"),
    ("[mapping]\nfoo = 1\n", "unknown key mapping.foo"),
    ("[mapping]\nid = \"uuid\"\n", "mapping.id must be \"rowkey\""),
    ("[mapping]\non_decode_error = \"explode\"\n", "on_decode_error"),
    ("[mapping]\ncolumns = 5\n", "[mapping.columns] must be a table"),
    ("[mapping.columns]\n\"cf:n\" = { field = \"n\", type = \"lng\" }\n",
     "mapping.columns.\"cf:n\": mapping: column cf:n has unknown type 'lng'"),
    ("[mapping.columns]\n\"nocolon\" = \"long\"\n", "mapping.columns.\"nocolon\""),
    ("[mapping.columns]\n\"cf:a\" = { field = 5 }\n", "mapping.columns.\"cf:a\""),
    ("[mapping.columns]\n\"cf:a\" = { name = \"x\" }\n", "mapping.columns.\"cf:a\" must be"),
    ("[mapping]\nrowkey_field = \"@timestamp\"\n",
     "mapping.rowkey_field and mapping.timestamp_field"),
    ("[mapping.columns]\n\"cf:a\" = { field = \"@timestamp\" }\n",
     "mapping.columns.\"cf:a\".field and mapping.timestamp_field are both"),
    ("not toml [[", "is not valid TOML"),
])
def test_bad_toml_names_the_key_and_the_file(tmp_path, toml, needle):
    message = _error(toml, tmp_path)
    assert needle in message
    if "TOML" not in needle:
        assert "job.toml" in message


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does-not-exist.toml does not exist"):
        load_settings(tmp_path / "does-not-exist.toml", dict(REQUIRED), now_ms=NOW)


@pytest.mark.parametrize("overrides,needle", [
    ({"window__start": "yesterdayish"}, "invalid time 'yesterdayish'"),
    ({"window__end": "1000"}, "epoch seconds"),
    ({"window__slice": "5 parsecs"}, "invalid duration '5 parsecs'"),
    ({"window__tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"window__start": "1700000000000", "window__end": "1700000000000"}, "is not before end"),
    ({"hbase__table": ""}, "no HBase table: give --table"),
    ({"elasticsearch__index": ""}, "no Elasticsearch index: give --index"),
    ({"elasticsearch__index": "Events"}, "elasticsearch.index: index template 'Events'"),
    ({"elasticsearch__index": "e-{time:%Y"}, "elasticsearch.index: index template"),
    ({"elasticsearch__index": "e-{day}"}, "unknown placeholder"),
    ({"run__log_level": "loud"}, "run.log_level must be one of"),
    ({"window__start": "2000-01-01", "window__end": "2020-01-01", "window__slice": "1ms"},
     "would need more than 1000000 slices of 1ms"),
])
def test_bad_values_from_flags_name_what_is_wrong(overrides, needle):
    message = _error(**overrides)
    assert needle in message


def test_missing_window_is_an_error_only_when_a_window_is_needed():
    partial = {"hbase.table": "t", "elasticsearch.index": "i", "window.start": "now-1h"}
    with pytest.raises(ConfigError, match="no window end: give --end"):
        load_settings(None, partial, now_ms=NOW)
    s = load_settings(None, partial, now_ms=NOW, need_window=False)
    assert s.hbase.table == "t" and (s.start_ms, s.end_ms) == (0, 0)


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("1", True), ("yes", True), ("on", True), (" On ", True), ("TRUE", True),
    ("false", False), ("0", False), ("no", False), ("off", False), ("Off", False), ("NO", False),
])
def test_boolean_words_from_the_environment(text, expected):
    assert parse_bool(text) is expected


@pytest.mark.parametrize("text", ["", "t", "n", "maybe", "2", "truee"])
def test_other_words_are_not_booleans_and_the_message_says_which_are(text):
    with pytest.raises(ValueError, match="true/false, 1/0, yes/no or on/off") as info:
        parse_bool(text)
    assert repr(text) in str(info.value)


def test_a_false_override_beats_a_true_in_the_file(tmp_path):
    # The CLI hands in an explicit False; it must not be taken for "not given".
    s = _load("[run]\nresume = true\nquiet = true\n", tmp_path, run__resume=False,
              run__quiet=None)
    assert (s.run.resume, s.run.quiet) == (False, True)


# --------------------------------------------------------------------------- run.lookback


@pytest.mark.parametrize("text,ms", [("30s", 30_000), ("10m", 600_000), ("1h30m", 5_400_000),
                                     ("500ms", 500)])
def test_a_lookback_is_a_duration_in_ms(tmp_path, text, ms):
    from_file = _load(f"[run]\nlookback = \"{text}\"\n", tmp_path)
    assert (from_file.run.lookback, from_file.lookback_ms) == (text, ms)
    assert _load(run__lookback=text).lookback_ms == ms


def test_no_lookback_is_zero_ms():
    s = _load()
    assert (s.run.lookback, s.lookback_ms) == (None, 0)


@pytest.mark.parametrize("text,needle", [
    ("0s", "must be greater than zero"), ("0", "expected a number with a unit"),
    ("-30s", "must be greater than 0, got '-30s'"), ("- 5m", "must be greater than 0"),
    ("soon", "invalid duration 'soon'"), ("30", "expected a number with a unit"),
])
def test_a_zero_negative_or_unreadable_lookback_is_one_line_naming_the_key(tmp_path, text,
                                                                          needle):
    for message in (_error(run__lookback=text),
                    _error(f"[run]\nlookback = \"{text}\"\n", tmp_path)):
        assert "run.lookback" in message and needle in message, message
    assert "job.toml" in message  # the file it came from


def test_a_lookback_that_is_not_text_names_the_key(tmp_path):
    assert "run.lookback must be a string" in _error("[run]\nlookback = 30\n", tmp_path)


# --- fields two parts of the mapping would write (issue 23, item 2) ----------------------


@pytest.mark.parametrize("toml,keys", [
    ("[mapping.columns]\n\"cf:a\" = { field = \"cf:other\" }\n",
     ("mapping.columns.\"cf:a\".field", "mapping.unmapped", "cf:other")),
    ("[mapping]\nrowkey_field = \"cf:key\"\n",
     ("mapping.rowkey_field", "mapping.unmapped", "cf:key")),
    ("[mapping]\ntimestamp_field = \"meta:time\"\n",
     ("mapping.timestamp_field", "mapping.unmapped", "meta:time")),
    ("[mapping.columns]\n\"cf:a\" = { field = \"@timestamp\" }\n",
     ("mapping.columns.\"cf:a\".field", "mapping.timestamp_field")),
    ("[mapping]\nrowkey_field = \"id\"\n[mapping.columns]\n\"cf:a\" = { field = \"id\" }\n",
     ("mapping.columns.\"cf:a\".field", "mapping.rowkey_field")),
    ("[mapping.columns]\n\"cf:a\" = { field = \"x\" }\n\"cf:b\" = { field = \"x\" }\n",
     ("mapping.columns.\"cf:a\".field", "mapping.columns.\"cf:b\".field")),
    ("[mapping]\nrowkey_field = \"@timestamp\"\n",
     ("mapping.rowkey_field", "mapping.timestamp_field")),
])
def test_a_field_written_twice_is_refused_naming_both_keys(tmp_path, toml, keys):
    message = _error(toml, tmp_path)
    assert "job.toml" in message
    for key in keys:
        assert key in message


def test_a_colon_field_is_fine_when_no_unmapped_column_can_have_it(tmp_path):
    skip = _load("[mapping]\nunmapped = \"skip\"\nrowkey_field = \"cf:key\"\n"
                 "[mapping.columns]\n\"cf:a\" = { field = \"cf:other\" }\n", tmp_path)
    assert skip.mapping.rowkey_field == "cf:key"
    mapped = _load("[mapping.columns]\n\"cf:a\" = { field = \"cf:other\" }\n"
                   "\"cf:other\" = { field = \"other\" }\n", tmp_path)
    assert [c.field for c in mapped.mapping.columns] == ["cf:other", "other"]
