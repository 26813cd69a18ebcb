"""Flag > environment > TOML file > default, for every key the command line can set.

Most tests parse real arguments and a real environment with the export command's own click
context and hand it to ``build_settings``, the function every command uses; nothing runs.
They need no server. The end-to-end ones go through CliRunner and must stop before any
server is asked, or else (--hbase points at a port nobody listens on) they exit 3.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields

import click
import pytest
from helpers import T0, free_port, run_cli, write_config

from hbase2es.cli import SETTING_OF, build_settings, cli
from hbase2es.settings import BOOLEAN_WORDS, SECTIONS, Settings

# Every boolean setting the command line can set, as the user types it.
SWITCHES = ["quiet", "resume", "incremental", "create_index", "bulk_load", "split_by_region",
            "refresh", "adaptive", "one_pass", "verify", "allow_duplicates"]
FALSE_WORDS = ["false", "0", "no", "off", "OFF", "False"]
TRUE_WORDS = ["true", "1", "yes", "on", "YES", "True"]

BASE = {"hbase": {"table": "t"}, "elasticsearch": {"index": "i"},
        "window": {"start": str(T0), "end": str(T0 + 10_000), "slice": "1s"}}


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # a TOML basic string or a number


def _config(tmp_path, key: str | None = None, value=None) -> str:
    """The base job file, with ``key`` (section.name) set to ``value`` when given."""
    tables = {section: dict(values) for section, values in BASE.items()}
    if key is not None:
        section, _, name = key.partition(".")
        tables.setdefault(section, {})[name] = value
    text = "".join(f"[{section}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())
                   for section, values in tables.items())
    return write_config(tmp_path / "job.toml", text)


def _settings(monkeypatch, args: list, env: dict | None = None) -> Settings:
    """Settings of ``hbase2es export ARGS`` in environment ``env`` (and no other HBASE2ES_*)."""
    for name in list(os.environ):
        if name.startswith("HBASE2ES_") and not name.startswith("HBASE2ES_TEST_"):
            monkeypatch.delenv(name)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    command = cli.commands["export"]
    with command.make_context("export", [str(a) for a in args]) as ctx:
        return build_settings(ctx)


def _value(settings: Settings, key: str):
    section, _, name = key.rpartition(".")
    return getattr(getattr(settings, section), name)


def _env_name(flag: str) -> str:
    return "HBASE2ES_" + flag.removeprefix("--").replace("-", "_").upper()


# --------------------------------------------------------------------------- the switches


def test_every_boolean_setting_of_the_command_line_is_a_yes_no_pair():
    # A plain --x flag cannot say no, so a `true` in the file could never be turned off.
    seen = set()
    for command in cli.commands.values():
        for param in command.params:
            key = SETTING_OF.get(param.name)
            if not isinstance(key, str):
                continue
            section, _, name = key.partition(".")
            kind = next(f.type for f in fields(SECTIONS[section]) if f.name == name)
            if "bool" not in kind:
                continue
            flag = "--" + param.name.replace("_", "-")
            assert isinstance(param, click.Option) and param.is_flag
            assert (param.opts, param.secondary_opts) == ([flag], [f"--no-{flag[2:]}"]), key
            assert param.envvar == _env_name(flag), key
            assert param.default is None, f"{key}: a click default would hide the file"
            seen.add(param.name)
    assert seen == set(SWITCHES)


@pytest.mark.parametrize("name", SWITCHES)
def test_a_switch_given_nowhere_is_the_default(monkeypatch, tmp_path, name):
    settings = _settings(monkeypatch, ["--config", _config(tmp_path)])
    default = next(f.default for f in fields(SECTIONS["run"]) if f.name == name)
    assert _value(settings, f"run.{name}") is default


@pytest.mark.parametrize("name", SWITCHES)
@pytest.mark.parametrize("in_file", [True, False])
def test_the_file_beats_the_default_either_way(monkeypatch, tmp_path, name, in_file):
    config = _config(tmp_path, f"run.{name}", in_file)
    assert _value(_settings(monkeypatch, ["--config", config]), f"run.{name}") is in_file


@pytest.mark.parametrize("name", SWITCHES)
def test_the_flag_beats_the_file_either_way(monkeypatch, tmp_path, name):
    flag = "--" + name.replace("_", "-")
    no_flag = f"--no-{flag[2:]}"
    on_in_file = _config(tmp_path, f"run.{name}", True)
    assert _value(_settings(monkeypatch, ["--config", on_in_file, no_flag]),
                  f"run.{name}") is False
    off_in_file = _config(tmp_path, f"run.{name}", False)
    assert _value(_settings(monkeypatch, ["--config", off_in_file, flag]), f"run.{name}") is True


@pytest.mark.parametrize("name", SWITCHES)
@pytest.mark.parametrize("no,yes", list(zip(FALSE_WORDS, TRUE_WORDS)))
def test_the_environment_beats_the_file_either_way(monkeypatch, tmp_path, name, no, yes):
    env = _env_name("--" + name)
    on_in_file = _config(tmp_path, f"run.{name}", True)
    assert _value(_settings(monkeypatch, ["--config", on_in_file], {env: no}),
                  f"run.{name}") is False
    off_in_file = _config(tmp_path, f"run.{name}", False)
    assert _value(_settings(monkeypatch, ["--config", off_in_file], {env: yes}),
                  f"run.{name}") is True


@pytest.mark.parametrize("name", SWITCHES)
def test_the_flag_beats_the_environment_either_way(monkeypatch, tmp_path, name):
    flag = "--" + name.replace("_", "-")
    env = _env_name(flag)
    config = _config(tmp_path)
    assert _value(_settings(monkeypatch, ["--config", config, flag], {env: "false"}),
                  f"run.{name}") is True
    assert _value(_settings(monkeypatch, ["--config", config, f"--no-{flag[2:]}"],
                            {env: "true"}), f"run.{name}") is False


def test_the_boolean_words_are_the_documented_ones():
    assert {w for w, v in BOOLEAN_WORDS.items() if v} == {"true", "1", "yes", "on"}
    assert {w for w, v in BOOLEAN_WORDS.items() if not v} == {"false", "0", "no", "off"}


@pytest.mark.parametrize("name", SWITCHES)
@pytest.mark.parametrize("word", ["maybe", "t", "nope", "2"])
def test_a_bad_boolean_in_the_environment_is_one_line_naming_the_variable(tmp_path, name, word):
    env = _env_name("--" + name)
    args = ["export", "--config", _config(tmp_path), "--hbase", f"127.0.0.1:{free_port()}",
            "--es", f"http://127.0.0.1:{free_port()}"]
    result = run_cli(args, expect_exit=2, env={env: word})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"hbase2es: error: {env} ") and repr(word) in lines[0]
    assert "Traceback" not in result.output


def test_no_split_by_region_keeps_a_plan_offline_despite_the_file(tmp_path):
    # With split_by_region = true, plan asks HBase for the table's regions: exit 3 here.
    config = _config(tmp_path, "run.split_by_region", True)
    args = ["plan", "--config", config, "--hbase", f"127.0.0.1:{free_port()}", "--json"]
    env = "HBASE2ES_SPLIT_BY_REGION"
    run_cli(args, expect_exit=3)
    run_cli([*args, "--no-split-by-region"], expect_exit=0)
    run_cli(args, expect_exit=0, env={env: "off"})
    run_cli([*args, "--split-by-region"], expect_exit=3, env={env: "off"})


# --------------------------------------------------------------------------- every other key

# flag, settings key, value in the file, text in the environment, text of the flag, and what
# Settings holds with the file, then with the file and the env, then with all three.
KEYS = [
    ("--hbase", "hbase.host", "h1", "h2:9002", "h3:9003", ("h1", "h2", "h3")),
    ("--hbase", "hbase.port", 9001, "h2:9002", "h3:9003", (9001, 9002, 9003)),
    ("--table", "hbase.table", "t_file", "t_env", "t_flag", ("t_file", "t_env", "t_flag")),
    ("--es", "elasticsearch.hosts", ["http://file:9200"], "http://env:9200", "http://flag:9200",
     (("http://file:9200",), ("http://env:9200",), ("http://flag:9200",))),
    ("--index", "elasticsearch.index", "i-file", "i-env", "i-flag", ("i-file", "i-env", "i-flag")),
    ("--start", "window.start", str(T0 + 1), str(T0 + 2), str(T0 + 3),
     (str(T0 + 1), str(T0 + 2), str(T0 + 3))),
    ("--end", "window.end", str(T0 + 11_000), str(T0 + 12_000), str(T0 + 13_000),
     (str(T0 + 11_000), str(T0 + 12_000), str(T0 + 13_000))),
    ("--slice", "window.slice", "2s", "3s", "4s", ("2s", "3s", "4s")),
    ("--tz", "window.tz", "+01:00", "+02:00", "+03:00", ("+01:00", "+02:00", "+03:00")),
    ("--log-level", "run.log_level", "warning", "error", "debug", ("warning", "error", "debug")),
    ("--workers", "run.workers", 3, "4", "5", (3, 4, 5)),
    ("--report", "run.report", "file.json", "env.json", "flag.json",
     ("file.json", "env.json", "flag.json")),
    ("--dead-letter", "run.dead_letter", "f.ndjson", "e.ndjson", "g.ndjson",
     ("f.ndjson", "e.ndjson", "g.ndjson")),
    # An explicit 0 from the environment is a value, not "not given".
    ("--max-errors", "run.max_errors", 1, "0", "2", (1, 0, 2)),
    ("--ledger", "run.ledger", "f.db", "e.db", "g.db", ("f.db", "e.db", "g.db")),
    ("--lookback", "run.lookback", "10s", "20m", "30s", ("10s", "20m", "30s")),
    ("--executor", "run.executor", "spark", "local", "spark", ("spark", "local", "spark")),
    ("--spark-master", "spark.master", "local[1]", "local[2]", "local[3]",
     ("local[1]", "local[2]", "local[3]")),
    ("--spark-conf", "spark.conf", {"spark.a": "1"}, "spark.a=2", "spark.a=3",
     ({"spark.a": "1"}, {"spark.a": "2"}, {"spark.a": "3"})),
    ("--max-docs-per-second", "run.max_docs_per_second", 100, "200", "300.5",
     (100.0, 200.0, 300.5)),
    ("--max-bytes-per-second", "run.max_bytes_per_second", 1_000_000, "2000000", "3000000",
     (1e6, 2e6, 3e6)),
    ("--max-rows-per-second", "hbase.max_rows_per_second", 10, "20", "30", (10.0, 20.0, 30.0)),
    ("--thrift2", "hbase.thrift2", "h1:9091", "h2:9092", "h3:9093",
     ("h1:9091", "h2:9092", "h3:9093")),
    ("--metrics-file", "run.metrics_file", "f.prom", "e.prom", "g.prom",
     ("f.prom", "e.prom", "g.prom")),
    ("--metrics-interval", "run.metrics_interval", 5, "2.5", "60", (5.0, 2.5, 60.0)),
    ("--log-format", "run.log_format", "json", "human", "json", ("json", "human", "json")),
    ("--summary", "run.summary", "full", "short", "full", ("full", "short", "full")),
    ("--alias", "run.alias", "a-file", "a-env", "a-flag", ("a-file", "a-env", "a-flag")),
]


def test_every_key_of_the_command_line_has_a_precedence_case():
    keys = {k for key in SETTING_OF.values() for k in ((key,) if isinstance(key, str) else key)}
    assert keys == {case[1] for case in KEYS} | {f"run.{name}" for name in SWITCHES}


@pytest.mark.parametrize("flag,key,in_file,in_env,on_flag,expected", KEYS,
                         ids=[case[1] for case in KEYS])
def test_flag_beats_env_beats_file_beats_default(monkeypatch, tmp_path, flag, key, in_file,
                                                 in_env, on_flag, expected):
    env = _env_name(flag)
    if key.split(".")[1] not in BASE.get(key.split(".")[0], {}):
        assert _value(_settings(monkeypatch, ["--config", _config(tmp_path)]), key) == \
            _value(Settings(), key)
    config = ["--config", _config(tmp_path, key, in_file)]
    assert _value(_settings(monkeypatch, config), key) == expected[0]
    assert _value(_settings(monkeypatch, config, {env: in_env}), key) == expected[1]
    assert _value(_settings(monkeypatch, [*config, flag, on_flag], {env: in_env}), key) == \
        expected[2]
