"""The scenario schema's contract (issue 15 items 5-7, 13, 14, 17 and 18's run names; issue 16's descriptions):
numbers are strict (a boolean is not a number), finite and below a declared physical ceiling; times lie
inside the run; accounts start solvent; every property of the published JSON Schema has a description and
every numeric property both bounds; scenarios/schema.json is the schema the code publishes.

Each refused input is one of the reproductions of issue 15, on the built-in eth-crash or calm scenario."""

from __future__ import annotations

import json

import pytest

from defistress.protocols.bounds import MAX_USD
from defistress.scenarios.loader import SCHEMA_FILE, ScenarioError, json_schema, load, schema_text


def errors_of(ref, overrides) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load(ref, overrides)
    return info.value.errors


# --- item 7: booleans are not numbers ------------------------------------------------------------------
@pytest.mark.parametrize(
    "item, key",
    [
        ("agents.borrowers.accounts=true", "agents.borrowers.accounts"),
        ("market.assets.ETH.volatility=true", "market.assets.ETH.volatility"),
        ("agents.borrowers.collateral.ETH=true", "agents.borrowers.collateral.ETH"),
        ("agents.liquidator.private_orderflow=1", "agents.liquidator.private_orderflow"),
        ("protocols.lend.assets.ETH.ltv=false", "protocols.lend.assets.ETH.ltv"),
    ],
)
def test_a_boolean_is_not_a_number_and_a_number_is_not_a_boolean(item, key):
    (err,) = errors_of("eth-crash", [item])
    assert err.startswith(f"{key}: must be ")


def test_a_count_is_a_whole_number():
    (err,) = errors_of("eth-crash", ["agents.borrowers.accounts=1.5"])
    assert err == "agents.borrowers.accounts: must be a whole number (no decimal point) (got 1.5)"


# --- items 5, 6, 13, 17: non-finite and absurd numbers are refused with the key named -----------------
@pytest.mark.parametrize(
    "item, key",
    [
        ("market.assets.ETH.price=inf", "market.assets.ETH.price"),
        ("market.assets.ETH.price=nan", "market.assets.ETH.price"),
        ("market.assets.USDC.peg=inf", "market.assets.USDC.peg"),
        ("shocks.0.at=nan", "shocks.0.at"),
        ("shocks.1.until=inf", "shocks.1.until"),
        ("agents.borrowers.reaction_delay=inf", "agents.borrowers.reaction_delay"),
        ("agents.liquidator.capital_usd=inf", "agents.liquidator.capital_usd"),
        ("gas.base_fee_gwei=-inf", "gas.base_fee_gwei"),
        ("protocols.lend.assets.ETH.interest.slope2=nan", "protocols.lend.assets.ETH.interest.slope2"),
    ],
)
def test_non_finite_numbers_are_refused_with_their_key(item, key):
    (err,) = errors_of("eth-crash", [item])
    assert err.startswith(f"{key}: ") and "not a finite number" in err


@pytest.mark.parametrize(
    "item, key, bound",
    [
        ("market.assets.ETH.price=1e308", "market.assets.ETH.price", "<= 1e+15"),
        ("agents.liquidator.capital_usd=1e308", "agents.liquidator.capital_usd", "<= 1e+15"),
        ("gas.base_fee_gwei=1e308", "gas.base_fee_gwei", "<= 1e+06"),
        ("market.assets.USDC.peg=1e308", "market.assets.USDC.peg", "<= 1e+15"),
        ("venues.uni-eth-usdc.depth_usd=1e16", "venues.uni-eth-usdc.depth_usd", "<= 1e+15"),
        ("market.assets.ETH.price=1e-300", "market.assets.ETH.price", ">= 1e-09"),
    ],
)
def test_numbers_above_their_physical_ceiling_are_refused_with_the_bound(item, key, bound):
    (err,) = errors_of("eth-crash", [item])
    assert err.startswith(f"{key}: ") and f"allowed: {bound}" in err


def test_the_usd_ceiling_itself_is_accepted():
    s = load("eth-crash", [f"agents.liquidator.capital_usd={MAX_USD}"]).scenario
    assert s.agents[1].capital_usd == MAX_USD


def test_a_huge_time_names_its_key_and_the_ten_year_bound():
    (err,) = errors_of("eth-crash", ["shocks.1.until=1e308"])
    assert err.startswith("shocks.1.until: a duration must be within 0..315360000 seconds")


def test_nested_protocol_params_are_finite_and_bounded_too():
    (err,) = errors_of("defi-contagion", ["protocols.maker.params.dust=1e300"])
    assert err.startswith("protocols.maker.params.dust: 1e+300 is out of range; allowed: <= 1e+15")
    (err,) = errors_of("defi-contagion", ["protocols.maker.params.line=inf"])
    assert err.startswith("protocols.maker.params.line: inf is not a finite number")
    (err,) = errors_of("defi-contagion", ["protocols.maker.params.line=1e16"])
    assert err.startswith("protocols.maker.params.line: 1e+16 is out of range; allowed 0..1e+15 stablecoin")
    (err,) = errors_of("defi-contagion", ["agents.traders.params.accounts=true"])
    assert err == "agents.traders.params.accounts: must be a whole number, not a boolean (got True)"
    (err,) = errors_of("inter-protocol-pm", ["protocols.options.params.vol.atm_vol=true"])
    assert err == "protocols.options.params.vol.atm_vol: must be a number, not a boolean (got True)"


# --- item 6 and 13: times and durations inside the run ----------------------------------------------
def test_a_shock_after_the_end_of_the_run_is_refused():
    (err,) = errors_of("eth-crash", ["run.duration=1h", "shocks.0.at=30m", "shocks.1.at=30m", "shocks.2.at=90m"])
    assert err == "shocks.2.at: 5400 s is after the end of the run (run.duration = 3600 s)"


def test_a_run_shorter_than_one_block_is_refused():
    (err,) = errors_of("eth-crash", ["run.duration=5s", "shocks.0.at=0", "shocks.1.at=0", "shocks.2.at=0"])
    assert err == "run.duration: 5 s must hold at least one block of run.block_seconds (12 s)"


def test_blocks_longer_than_the_run_are_refused():
    errs = errors_of("calm", ["run.block_seconds=3600", "run.duration=30m"])
    assert errs == ["run.duration: 1800 s must hold at least one block of run.block_seconds (3600 s)"]


def test_an_oracle_failure_after_the_end_of_the_run_is_refused():
    (err,) = errors_of("calm", ['oracles.chainlink-eth.failure={mode="stale", at="13h"}'])
    assert err == "oracles.chainlink-eth.failure.at: 46800 s is after the end of the run (run.duration = 43200 s)"


# --- item 14: validate catches what run would refuse -------------------------------------------------
@pytest.mark.parametrize("low", ["0.5", "0", "-1"])
def test_borrowers_that_would_start_insolvent_are_refused(low):
    (err,) = errors_of("eth-crash", [f"agents.borrowers.health_factor.min={low}"])
    assert err.startswith("agents.borrowers.health_factor: draws can reach") and ">= 1" in err


def test_a_lognormal_health_factor_without_a_floor_is_refused():
    (err,) = errors_of("eth-crash", ['agents.borrowers.health_factor={distribution="lognormal", median=1.6}'])
    assert err.startswith("agents.borrowers.health_factor: draws can reach 0;")


# --- item 18: run names are slugs ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../escaped", "a/b", ".hidden", "", "x" * 101, "spaced name"])
def test_run_names_are_slugs(name):
    (err,) = errors_of("calm", [f"run.name={json.dumps(name)}"])
    assert err.startswith("run.name: ")


# --- issue 12: overrides as a dict ------------------------------------------------------------------
def test_overrides_as_a_dict_and_as_strings_give_the_same_scenario():
    a = load("eth-crash", {"agents.borrowers.accounts": 500, "run.duration": "2h", "shocks.0.at": "30m"})
    b = load("eth-crash", ["agents.borrowers.accounts=500", 'run.duration="2h"', 'shocks.0.at="30m"'])
    assert a.scenario == b.scenario and a.hash == b.hash
    assert a.overrides == ("agents.borrowers.accounts=500", 'run.duration="2h"', 'shocks.0.at="30m"')
    assert load(a, {"agents.liquidator.count": 2}).overrides == (*a.overrides, "agents.liquidator.count=2")


def test_dict_overrides_are_checked_like_strings():
    (err,) = errors_of("eth-crash", {"agents.borrowers.accounts": True})
    assert err.startswith("agents.borrowers.accounts: must be a whole number, not a boolean")
    (err,) = errors_of("eth-crash", {"market.assets.ETH.price": float("nan")})
    assert err.startswith("market.assets.ETH.price: nan is not a finite number")


# --- issue 16: the published schema ------------------------------------------------------------------
def _numeric_branches(prop: dict) -> list[dict]:
    out = []
    stack = [prop]
    while stack:
        p = stack.pop()
        if not isinstance(p, dict):
            continue
        if p.get("type") in ("number", "integer"):
            out.append(p)
        for k in ("anyOf", "oneOf", "allOf", "prefixItems"):
            stack.extend(p.get(k, []))
        for k in ("items", "additionalProperties"):
            if isinstance(p.get(k), dict):
                stack.append(p[k])
    return out


def _properties(node, where="") -> list[tuple[str, dict]]:
    out = []
    if isinstance(node, dict):
        for k, v in (node.get("properties") or {}).items():
            out.append((f"{where}.{k}", v))
        for k, v in node.items():
            out += _properties(v, f"{where}/{k}" if k != "properties" else where)
    elif isinstance(node, list):
        for v in node:
            out += _properties(v, where)
    return out


def test_every_property_of_the_schema_has_a_description():
    props = _properties(json_schema())
    assert len(props) > 400  # the scenario tables and the embedded protocol and agent parameter models
    assert [k for k, v in props if not v.get("description")] == []


def test_every_numeric_property_has_a_lower_and_an_upper_bound():
    unbounded = []
    for key, prop in _properties(json_schema()):
        for branch in _numeric_branches(prop):
            if not ({"minimum", "exclusiveMinimum"} & set(branch) and {"maximum", "exclusiveMaximum"} & set(branch)):
                unbounded.append(key)
    assert unbounded == []


def test_the_embedded_parameter_models_are_published():
    defs = json_schema()["$defs"]
    cdp = defs["CdpSpec"]["properties"]["params"]
    assert "required" not in cdp and cdp["properties"]["chop"]["maximum"] == 2.0
    assert {"ClipParams", "FlipParams", "PerpMarketParams", "VolSurfaceParams", "StripParams"} <= set(defs)
    assert len(defs["OptionPopulationSpec"]["properties"]["params"]["anyOf"]) == 3


def test_scenarios_schema_json_is_the_schema_the_code_publishes():
    assert SCHEMA_FILE.read_text() == schema_text(), "regenerate: defistress schema --out scenarios/schema.json"
    json.loads(SCHEMA_FILE.read_text())  # strict JSON: no Infinity or NaN
