"""The `defistress` command line: list, validate, run and schema, through typer's test runner."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from typer.testing import CliRunner

from defistress.scenarios.registry import builtin_names
from defistress.sim.cli.app import app

runner = CliRunner()
QUICK = ["--set", 'run.duration="2h"', "--set", "agents.borrowers.accounts=1000"]


def test_list_shows_every_builtin_with_its_description():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for name in builtin_names():
        assert name in result.stdout
    assert "No shock, low volatility" in result.stdout


def test_validate_ok_prints_a_one_line_summary():
    result = runner.invoke(app, ["validate", "eth-crash"])
    assert result.exit_code == 0
    line = result.stdout.strip()
    assert line.startswith("ok eth-crash: 1 protocol(s), ") and line.endswith(" 7,200 blocks of 12 s")  # 24h / 12 s


def test_validate_checks_overrides_too():
    at_30m = sum([["--set", f"shocks.{i}.at=30m"] for i in range(3)], [])
    result = runner.invoke(app, ["validate", "eth-crash", "--set", 'run.duration="1h"', *at_30m])
    assert result.exit_code == 0 and "300 blocks" in result.stdout


def test_validate_error_exits_2_and_lists_every_error_with_its_key_path(tmp_path):
    result = runner.invoke(
        app, ["validate", "calm", "--set", "protocols.lend.assets.ETH.ltv=1.5", "--set", "run.block_seconds=-1"]
    )
    assert result.exit_code == 2
    assert "2 error(s)" in result.stderr
    assert "- run.block_seconds: -1 is out of range; allowed: >= 0.1" in result.stderr
    assert "- protocols.lend.assets.ETH.ltv: 1.5 is out of range; allowed: < 1" in result.stderr
    assert result.stdout == ""


def test_validate_of_a_file_that_does_not_exist_fails(tmp_path):
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "no such scenario file" in result.stderr


def test_run_writes_the_run_folder(tmp_path):
    out = tmp_path / "calm-run"
    result = runner.invoke(app, ["run", "calm", "--quiet", "--no-report", "--out", str(out), *QUICK])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n"  # --quiet: no table, no progress, only the run folder's path
    assert {"summary.json", "timeseries.parquet", "events.parquet"} <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"] == "calm" and summary["blocks"] == 600 and summary["liquidations"] == 0
    assert summary["conservation_ok"] is True
    assert pq.read_table(out / "timeseries.parquet").num_rows == 600


def test_run_prints_a_summary_table_unless_quiet(tmp_path):
    result = runner.invoke(app, ["run", "calm", "--no-report", "--seed", "3", "--out", str(tmp_path / "r"), *QUICK])
    assert result.exit_code == 0, result.output
    assert "calm (seed 3)" in result.stdout and "ledger conserved" in result.stdout
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["seed"] == 3


def test_run_with_report_writes_report_html(tmp_path):
    out = tmp_path / "calm-report"
    result = runner.invoke(app, ["run", "calm", "--quiet", "--out", str(out), *QUICK])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file()


def test_run_of_an_unknown_scenario_exits_2_with_the_builtins_listed(tmp_path):
    result = runner.invoke(app, ["run", "eth-crsh", "--quiet", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "unknown scenario 'eth-crsh'" in result.stderr and "eth-crash" in result.stderr
    assert not (tmp_path / "x").exists()


def test_schema_prints_the_json_schema():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert {"run", "market", "protocols", "agents", "gas"} <= set(schema["properties"])
    assert "LendingAssetSpec" in schema["$defs"]


def test_schema_can_be_written_to_a_file(tmp_path):
    f = tmp_path / "schema.json"
    result = runner.invoke(app, ["schema", "--out", str(f)])
    assert result.exit_code == 0
    assert json.loads(f.read_text())["title"] == "Scenario"
