"""Scenario files: built-ins validate, bad input gives errors naming the key path and what is allowed,
`--set` overrides, and bad input never leaves a run folder behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from defistress.scenarios.loader import HISTORIC_DIR, ScenarioError, load
from defistress.scenarios.registry import builtin_names, builtin_path
from defistress.sim.cli.app import app
from defistress.sim.engine.replay import DataFileError
from defistress.sim.experiments.runs import run_scenario

ETH_10MIN = "01b_black_thursday_2020-03-12_ETH_10min.csv"


def errors_of(ref, overrides=None) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load(ref, overrides)
    return info.value.errors


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_validates(name):
    s = load(name).scenario
    assert s.run.name == name
    assert s.n_blocks > 0 and s.protocols and s.agents


def test_there_are_builtins():
    assert {"calm", "eth-crash", "black-thursday-lending"} <= set(builtin_names())


def test_malformed_toml_is_reported_with_its_position(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[run\nname = 'x'\n")
    (err,) = errors_of(f)
    assert err.startswith("malformed TOML") and "line 1" in err


def test_unknown_key_is_named_with_its_full_path(tmp_path):
    text = (
        builtin_path("calm")
        .read_text()
        .replace("liquidation_bonus = 0.05", "liquidation_bonus = 0.05\ncolour = 'red'", 1)
    )
    f = tmp_path / "calm-extra.toml"
    f.write_text(text)
    # the allowed keys are an asset table's documented keys (README "Writing a scenario", scenarios/schema.json)
    allowed = (
        "borrow_cap, borrowable_in_isolation, borrowing_enabled, debt_ceiling_usd, decimals, emode_category, "
        "interest, liquidation_bonus, liquidation_threshold, ltv, protocol_fee, reserve_factor, supply_cap, supply_usd"
    )
    assert errors_of(f) == [f"protocols.lend.assets.ETH.colour: unknown key; allowed: {allowed}"]


def test_unknown_key_from_an_override():
    allowed = "assumed, block_seconds, check_conservation_every, description, duration, name, published, seed, smoke"
    assert errors_of("calm", ["run.speed=3"]) == [f"run.speed: unknown key; allowed: {allowed}"]


def test_unknown_key_inside_a_tagged_union_lists_that_kind_s_keys():
    # an oracle of kind "feed" (the default): its table's keys, not those of the rounds/composite/... kinds
    (err,) = errors_of("black-thursday-maker", ["oracles.0.zz=1"])
    assert err == (
        "oracles.osm-eth.zz: unknown key; allowed: asset, delay, deviation, failure, heartbeat, id, kind, max_age, "
        "price, source"
    )


def test_unknown_top_level_table_lists_the_tables():
    (err,) = errors_of("calm", ["shock={}"])
    assert err.startswith("shock: unknown key; allowed: ") and "shocks" in err.split("allowed: ")[1].split(", ")


def test_out_of_range_value_names_the_key_and_the_bound():
    (err,) = errors_of("calm", ["protocols.lend.assets.ETH.ltv=1.5"])
    assert err.startswith("protocols.lend.assets.ETH.ltv: 1.5 is out of range; allowed: < 1")


def test_liquidation_threshold_must_exceed_ltv():
    (err,) = errors_of("calm", ["protocols.lend.assets.ETH.ltv=0.9"])
    assert err.startswith("protocols.lend.assets.ETH: ")
    assert "liquidation_threshold (0.86) must be greater than ltv (0.9)" in err


def test_unknown_oracle_id_lists_the_known_ones():
    (err,) = errors_of("calm", ['protocols.lend.oracles.ETH="pyth-eth"'])
    assert err == "protocols.lend.oracles.ETH: unknown oracle 'pyth-eth'; allowed: ['chainlink-eth', 'fixed-usdc']"


def test_unknown_asset_lists_the_market_assets():
    (err,) = errors_of("calm", ['oracles.chainlink-eth.asset="DOGE"'])
    assert err == "oracles.chainlink-eth.asset: unknown asset 'DOGE'; allowed: ['ETH', 'USDC']"
    (err,) = errors_of("calm", ['agents.borrowers.debt="DOGE"'])
    assert "agents.borrowers" in err and "'DOGE'" in err and "['ETH', 'USDC']" in err


def test_invalid_choice_lists_the_allowed_values():
    (err,) = errors_of("calm", ['oracles.chainlink-eth.kind="magic"'])
    assert err == "oracles.chainlink-eth.kind: invalid value 'magic'; allowed: 'push', 'delayed' or 'fixed'"


def test_bad_duration_names_the_allowed_forms():
    (err,) = errors_of("calm", ['run.duration="3 fortnights"'])
    assert err.startswith("run.duration: invalid duration") and "'2h'" in err


def test_missing_data_file_names_its_key_and_where_it_looked():
    (err,) = errors_of("black-thursday-lending", ['market.replay.file="no-such-file.csv"'])
    assert err.startswith("market.replay.file: data file 'no-such-file.csv' not found")
    assert str(HISTORIC_DIR) in err


def test_unknown_scenario_name_lists_the_builtins():
    (err,) = errors_of("no-such-scenario")
    assert "built-ins: " in err and "eth-crash" in err


@pytest.fixture
def csv_with_a_hole(tmp_path) -> Path:
    """A copy of the Black Thursday 10-minute ETH file with the 5th candle's close blanked."""
    lines = (HISTORIC_DIR / ETH_10MIN).read_text().splitlines(keepends=True)
    header = next(i for i, line in enumerate(lines) if line.startswith("timestamp_utc"))
    cols = lines[header].strip().split(",")
    row = lines[header + 5].split(",")
    row[cols.index("price_close")] = ""
    lines[header + 5] = ",".join(row)
    f = tmp_path / "eth_with_hole.csv"
    f.write_text("".join(lines))
    return f


def test_nan_in_a_price_file_names_the_file_column_and_row(csv_with_a_hole):
    overrides = [f'market.replay.file="{csv_with_a_hole}"', 'run.duration="1h"', "agents.borrowers.accounts=100"]
    load("black-thursday-lending", overrides)  # the file exists: the scenario itself is valid
    with pytest.raises(DataFileError) as info:
        run_scenario("black-thursday-lending", overrides=overrides)
    msg = str(info.value)
    assert msg.startswith("market.replay.symbols.ETH: ")  # the key that names the file
    assert str(csv_with_a_hole) in msg and "'price_close'" in msg and "data row 5" in msg
    assert "2020-03-12T00:40:00Z" in msg


def test_set_overrides_by_index_and_by_id():
    s = load(
        "eth-crash",
        [
            "shocks.0.jump=-0.2",
            "agents.liquidator.capital_usd=1e6",
            "market.assets.ETH.price=1500.0",
            "protocols.lend.assets.ETH.ltv=0.8",
            'oracles.1.heartbeat="2h"',
            'run.duration="3h"',
        ],
    ).scenario
    assert s.shocks[0].jump == -0.2
    assert next(a for a in s.agents if a.id == "liquidator").capital_usd == 1e6
    assert s.market.asset("ETH").price == 1500.0
    assert s.protocols[0].assets["ETH"].ltv == 0.8
    assert s.oracles[1].id == "chainlink-btc" and s.oracles[1].heartbeat == 7200.0
    assert s.run.duration == 10_800.0


def test_override_of_a_missing_list_item_lists_what_exists():
    (err,) = errors_of("eth-crash", ["shocks.7.jump=-0.2"])
    assert "no list item '7'" in err and "0..2" in err
    (err,) = errors_of("eth-crash", ["agents.whale.capital_usd=1"])
    assert "no list item 'whale'" in err and "liquidator" in err


def test_override_without_equals_sign_is_an_error():
    (err,) = errors_of("calm", ["run.duration"])
    assert "expected key.path=value" in err


def test_overrides_change_the_scenario_hash():
    assert load("calm").hash != load("calm", ["run.seed=2"]).hash
    assert load("calm").hash == load("calm").hash


@pytest.mark.parametrize(
    "bad",
    [
        ["--set", "protocols.lend.assets.ETH.ltv=1.5"],
        ["--set", 'market.replay.file="missing.csv"'],
        ["--set", "run.colour=1"],
    ],
)
def test_bad_input_leaves_no_run_folder(tmp_path, bad):
    out = tmp_path / "x"
    result = CliRunner().invoke(
        app, ["run", "black-thursday-lending", "--quiet", "--no-report", "--out", str(out), *bad]
    )
    assert result.exit_code != 0
    assert "error" in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir()]  # no temporary folder left either


def test_data_error_during_a_run_leaves_no_run_folder(tmp_path, csv_with_a_hole):
    out = tmp_path / "x"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "black-thursday-lending",
            "--quiet",
            "--no-report",
            "--out",
            str(out),
            "--set",
            f'market.replay.file="{csv_with_a_hole}"',
        ],
    )
    assert result.exit_code == 2
    assert re.search(r"'price_close'.*data row 5", result.output.replace("\n", " "))
    assert not out.exists()
