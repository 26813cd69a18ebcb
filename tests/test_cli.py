"""The command line through click's CliRunner: usage errors, precedence, and `plan`.

Tests without a server mark are meant to fail before any server is contacted: they point
--hbase and --es at ports nobody listens on, so reaching a server would show up as exit 3.
"""

from __future__ import annotations

import click
import orjson
import pytest
from helpers import T0, count_docs, free_port, put_row, run_cli, table_name, write_config

from hbase2es import __version__

DAY = 86_400_000


@pytest.fixture(scope="module")
def nowhere() -> list[str]:
    """--hbase/--es flags that would fail with exit 3 if anything tried to connect."""
    return ["--hbase", f"127.0.0.1:{free_port()}", "--es", f"http://127.0.0.1:{free_port()}"]


def _export(nowhere, *extra) -> list[str]:
    return ["export", *nowhere, "--table", "t", "--index", "i", "--start", str(T0),
            "--end", str(T0 + 10_000), "--slice", "1s", *extra]


def _one_line_error(result, *needles: str) -> str:
    """The error is one line on stderr, with no traceback, naming what is wrong."""
    err = result.stderr
    assert "Traceback" not in result.output
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("hbase2es: error: ")
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


# --------------------------------------------------------------------------- exit 2


@pytest.mark.parametrize("toml,needles", [
    ("[window]\nslise = \"1h\"\n", ["unknown key window.slise", "job.toml"]),
    ("[windows]\nslice = \"1h\"\n", ["unknown section [windows]"]),
    ("[run]\nworkers = \"two\"\n", ["run.workers", "'two'"]),
    ("[hbase]\ntransport = \"carrier-pigeon\"\n", ["hbase.transport"]),
    ("[mapping.columns]\n\"cf:n\" = { field = \"n\", type = \"lng\" }\n",
     ["mapping.columns.\"cf:n\"", "'lng'"]),
    ("[mapping]\ncolumns = [\"cf:n\"]\n", ["[mapping.columns] must be a table"]),
    ("[[broken", ["not valid TOML"]),
])
def test_bad_config_file_exits_2_naming_the_key(tmp_path, nowhere, toml, needles):
    config = write_config(tmp_path / "job.toml", toml)
    result = run_cli(_export(nowhere, "--config", config), expect_exit=2)
    _one_line_error(result, *needles)


@pytest.mark.parametrize("flags,needles", [
    (["--start", "last tuesday"], ["window", "'last tuesday'"]),
    (["--end", "2023-13-45"], ["window", "'2023-13-45'"]),
    (["--slice", "10 parsecs"], ["invalid duration '10 parsecs'"]),
    (["--slice", "0s"], ["duration"]),
    (["--tz", "Mars/Olympus_Mons"], ["unknown time zone 'Mars/Olympus_Mons'"]),
    (["--start", str(T0 + 10_000), "--end", str(T0)], ["is not before end"]),
    (["--index", "Events-{time:%Y}"], ["elasticsearch.index", "lower case"]),
    (["--index", "events-{time:%Y"], ["elasticsearch.index", "unclosed"]),
    (["--report", "/nonexistent-dir/report.json"], ["run.report", "does not exist"]),
    (["--dead-letter", "/nonexistent-dir/dead.ndjson"], ["run.dead_letter", "does not exist"]),
    (["--ledger", "/nonexistent-dir/job.ledger"], ["run.ledger", "does not exist"]),
    (["--start", "2000-01-01", "--end", "2020-01-01", "--slice", "1ms"],
     ["window", "slices of 1ms"]),
])
def test_bad_flag_value_exits_2_naming_it(nowhere, flags, needles):
    result = run_cli(_export(nowhere, *flags), expect_exit=2)
    _one_line_error(result, *needles)


def test_missing_table_exits_2_saying_how_to_give_it(nowhere):
    args = ["export", *nowhere, "--index", "i", "--start", str(T0), "--end", str(T0 + 1000),
            "--slice", "1s"]
    result = run_cli(args, expect_exit=2)
    _one_line_error(result, "no HBase table", "--table")


def test_missing_window_end_exits_2(nowhere):
    args = ["export", *nowhere, "--table", "t", "--index", "i", "--start", str(T0)]
    result = run_cli(args, expect_exit=2)
    _one_line_error(result, "no window end", "--end")


def test_missing_config_file_exits_2(tmp_path, nowhere):
    result = run_cli(_export(nowhere, "--config", str(tmp_path / "nope.toml")), expect_exit=2)
    _one_line_error(result, "nope.toml does not exist")


@pytest.mark.parametrize("flags,needle", [
    (["--workers", "0"], "--workers"),
    (["--workers", "two"], "--workers"),
    (["--max-errors", "-1"], "--max-errors"),
    (["--log-level", "loud"], "--log-level"),
    (["--hbase", "no-port-here"], "--hbase"),
    (["--no-such-flag"], "--no-such-flag"),
])
def test_click_usage_errors_exit_2_naming_the_flag(nowhere, flags, needle):
    result = run_cli(_export(nowhere, *flags), expect_exit=2)
    assert needle in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("env,needles", [
    ({"HBASE2ES_WORKERS": "many"}, ["HBASE2ES_WORKERS", "--workers", "'many'"]),
    ({"HBASE2ES_LOG_LEVEL": "loud"}, ["HBASE2ES_LOG_LEVEL", "--log-level", "'loud'"]),
    ({"HBASE2ES_HBASE": "no-port"}, ["HBASE2ES_HBASE", "HOST:PORT"]),
    ({"HBASE2ES_QUIET": "maybe"}, ["HBASE2ES_QUIET", "--quiet/--no-quiet", "yes/no"]),
])
def test_bad_env_value_exits_2_with_one_line_naming_the_variable_and_flag(nowhere, env, needles):
    # A usage screen would point at a flag the user never typed. No --hbase flag here, or
    # it would beat HBASE2ES_HBASE; parsing stops before any server would be asked.
    args = [a for a in _export(nowhere) if a != "--hbase" and a != nowhere[1]]
    _one_line_error(run_cli(args, expect_exit=2, env=env), *needles)


def test_the_allowed_choices_of_the_flags_are_the_settings_ones():
    from hbase2es.cli import SETTING_OF, cli
    from hbase2es.settings import CHOICES

    checked = 0
    for command in cli.commands.values():
        for param in command.params:
            if isinstance(param.type, click.Choice):
                key = SETTING_OF[param.name]
                assert tuple(param.type.choices) == CHOICES[key], key
                checked += 1
    assert checked >= 2  # --log-level on every selection, --executor on export


def test_errors_that_reach_the_top_are_classified_by_what_failed():
    from hbase2es.search import engine as es_compat
    from hbase2es.cli import _classify
    from hbase2es.errors import ExitCode

    code, message = _classify(FileNotFoundError(2, "No such file or directory", "/x/r.json"))
    assert code == ExitCode.USAGE and "/x/r.json" in message
    assert _classify(PermissionError(13, "Permission denied", "/r.json"))[0] == ExitCode.USAGE
    assert _classify(ConnectionRefusedError(111, "Connection refused"))[0] == ExitCode.UNAVAILABLE
    refused = es_compat.CONNECTION_ERRORS[0]("refused")
    assert _classify(refused)[0] == ExitCode.UNAVAILABLE
    code, message = _classify(RuntimeError("boom"))
    assert code == ExitCode.FAILED and "RuntimeError: boom" in message


# --------------------------------------------------------------------------- precedence


def _plan_json(args: list[str], env: dict | None = None) -> dict:
    result = run_cli(["plan", "--json", *args], env=env)
    return orjson.loads(result.stdout)


def test_precedence_flag_over_env_over_toml_over_default(tmp_path):
    config = write_config(tmp_path / "job.toml", f"""
[hbase]
table = "table_from_toml"
[elasticsearch]
index = "index-from-toml"
[window]
start = "{T0}"
end = "{T0 + 4 * 3_600_000}"
slice = "2h"
""")
    base = ["--config", config]
    # TOML over the default slice of 1h.
    plan = _plan_json(base)
    assert (plan["table"], plan["index"], len(plan["slices"])) == (
        "table_from_toml", "index-from-toml", 2)
    # Env over TOML.
    env = {"HBASE2ES_TABLE": "table_from_env", "HBASE2ES_SLICE": "1h"}
    plan = _plan_json(base, env)
    assert (plan["table"], plan["index"], len(plan["slices"])) == (
        "table_from_env", "index-from-toml", 4)
    # Flag over env.
    plan = _plan_json([*base, "--table", "table_from_flag", "--slice", "4h"], env)
    assert (plan["table"], len(plan["slices"])) == ("table_from_flag", 1)


def test_config_file_can_come_from_the_environment(tmp_path):
    config = write_config(tmp_path / "env.toml",
                          f'[hbase]\ntable = "t_env_cfg"\n[elasticsearch]\nindex = "i"\n'
                          f'[window]\nstart = "{T0}"\nend = "{T0 + 1000}"\nslice = "1s"\n')
    plan = _plan_json([], env={"HBASE2ES_CONFIG": config})
    assert plan["table"] == "t_env_cfg" and len(plan["slices"]) == 1


# --------------------------------------------------------------------------- plan


def test_plan_lists_slices_and_index_names():
    start = 1_699_999_200_000  # 2023-11-14T22:00:00Z
    args = ["plan", "--table", "t", "--index", "ev-{time:%Y.%m.%d}", "--start", str(start),
            "--end", str(start + 4 * 3_600_000), "--slice", "1h"]
    result = run_cli(args)
    out = result.stdout
    assert "in 4 slices" in out
    assert "[2023-11-14T22:00:00.000Z, 2023-11-14T23:00:00.000Z)  -> ev-2023.11.14" in out
    assert "[2023-11-15T01:00:00.000Z, 2023-11-15T02:00:00.000Z)  -> ev-2023.11.15" in out

    data = orjson.loads(run_cli([*args, "--json"]).stdout)
    assert isinstance(data["slices"], list) and len(data["slices"]) == 4
    assert [s["indices"] for s in data["slices"]] == [
        ["ev-2023.11.14"], ["ev-2023.11.14"], ["ev-2023.11.15"], ["ev-2023.11.15"]]
    assert data["slices"][0]["start"] == "2023-11-14T22:00:00.000Z"
    assert data["slices"][-1]["end"] == "2023-11-15T02:00:00.000Z"
    # With --tz +02:00 the first two hours are already the 15th.
    data = orjson.loads(run_cli([*args, "--json", "--tz", "+02:00"]).stdout)
    assert [s["indices"] for s in data["slices"]] == [["ev-2023.11.15"]] * 4


def test_plan_of_a_slice_that_crosses_midnight_names_both_indices():
    start = 1_699_999_200_000  # 22:00Z
    data = _plan_json(["--table", "t", "--index", "ev-{time:%Y.%m.%d}", "--start", str(start),
                       "--end", str(start + 4 * 3_600_000), "--slice", "4h"])
    assert data["slices"][0]["indices"] == ["ev-2023.11.14", "ev-2023.11.15"]


@pytest.mark.integration
def test_plan_sample_prints_decoded_documents_and_writes_nothing(servers, table, es, index,
                                                                 tmp_path):
    import struct

    # The first slice is empty; the second holds three rows.
    for i in range(3):
        put_row(table, f"row{i}", {"cf:n": struct.pack(">q", 40 + i), "cf:s": "héllo"},
                T0 + 1500 + i)
    config = write_config(tmp_path / "m.toml",
                          '[mapping.columns]\n"cf:n" = { field = "n", type = "long" }\n')
    args = ["plan", "--hbase", servers.hbase, "--es", servers.es, "--table", table_name(table),
            "--index", index, "--start", str(T0), "--end", str(T0 + 3000), "--slice", "1s",
            "--config", config, "--sample", "2"]
    data = orjson.loads(run_cli([*args, "--json"]).stdout)
    sample = data["sample"]
    assert [d["_id"] for d in sample] == ["row0", "row1"]
    assert [d["document"]["n"] for d in sample] == [40, 41]
    assert sample[0]["document"]["cf:s"] == "héllo"
    assert sample[0]["version"] == T0 + 1500
    assert sample[0]["document"]["@timestamp"] == "2023-11-14T22:13:21.500Z"
    assert sample[0]["_index"] == index

    text = run_cli(args).stdout
    assert text.count("sample ") == 2 and f"sample {index}/row0" in text
    assert not es.indices.exists(index=index)
    assert count_docs(es, f"{index}*") == 0


def test_version_and_help():
    assert __version__ in run_cli(["--version"]).stdout
    out = run_cli(["export", "--help"]).stdout
    for flag in ("--hbase", "--table", "--es", "--index", "--start", "--end", "--slice", "--tz",
                 "--workers", "--report", "--quiet", "--dead-letter", "--max-errors", "--config",
                 "--no-quiet", "--no-resume", "--no-incremental", "--no-create-index",
                 "--no-bulk-load", "--no-split-by-region"):
        assert flag in out


def test_every_command_has_a_docstring_and_every_option_has_help():
    # What users see in --help is the contract: no command or option may be unexplained.
    from hbase2es.cli import cli

    assert cli.commands, "no commands registered"
    for name, command in cli.commands.items():
        assert (command.help or "").strip(), f"command {name} has no docstring"
        for param in command.params:
            if isinstance(param, click.Option):
                assert (param.help or "").strip(), f"{name} {param.opts} has no help text"


def test_status_refuses_a_file_that_is_not_a_ledger_and_leaves_it_unchanged(tmp_path):
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    before = other.read_bytes()
    result = run_cli(["status", "--ledger", str(other)], expect_exit=2)
    assert "cannot open ledger" in result.stderr
    assert other.read_bytes() == before
