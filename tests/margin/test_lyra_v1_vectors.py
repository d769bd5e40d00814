"""Lyra PMRM v1 published portfolio cases (tests/data/derive/pmrm_v1/test-cases-portfolio-pm.json, BUSL-1.1,
see PROVENANCE.md) as tests of `lyra-pmrm-v1-test` in exact mode.

The harness (derivexyz/v2-core test/risk-managers/unit-tests/PMRM/TestPMRM_ProtfolioCases.t.sol) asserts the
integer part of the contract's margin, `assertEq(mm / 1e18, mm_int)` (Solidity division truncates toward zero).
The market is not in the JSON; it is restated here from that file and its bases (PMRMTestBase.sol,
TestCaseExpiries.t.sol, test/config-test.sol):
- expiries: block.timestamp + N days + 8 hours, N = 3, 10, 17, 57, 215, 222, 229, 238 for 20230104 .. 20230825;
- spot 2000 (confidence 1); forwards 2000 + 0.91345, 2.83305, 4.7545, 15.7696, 59.87416, 61.85933, 63.8284,
  66.3744 (confidence 1, no fixed part); rates 0.02 (confidence 1); perp mark 2001 (confidence 1); stable 1;
- every option's vol 0.5 (confidence 1) unless the test function sets it; scenarios: config-test.sol
  getDefaultScenarios (21); parameters: config-test.sol getPMRMParams with rateAddScale 0.12, confMargin 0.4,
  basePercent = perpPercent = 0.025 (the harness's setUp);
- amounts, entry prices and cash are 1e8 fixed point in the JSON (the harness multiplies them by 1e10);
- tests 39-44 change feeds before running (the per-case table below, from the Solidity test functions).
"""

import json
from pathlib import Path

import pytest

from defistress.protocols.margin import exact as fx
from defistress.protocols.margin.catalog import get_model
from defistress.protocols.margin.forward_curve import ForwardCurve
from defistress.protocols.margin.portfolio import MarketState, Portfolio
from defistress.protocols.margin.surface import QuotedVols

from .lyra_env import DAYS, ETH_FWD_ADD, sec

DATA = Path(__file__).parent.parent / "data" / "derive" / "pmrm_v1" / "test-cases-portfolio-pm.json"
CASES = json.loads(DATA.read_text())
OVERRIDES = {  # rateAddScale, confMargin, basePercent, perpPercent by their contract names
    "rateAddScale": 0.12,
    "confMargin": 0.4,
    "basePercent": 0.025,
    "perpPercent": 0.025,
}
# Solidity test functions 39-44 (TestPMRM_ProtfolioCases.t.sol): feed changes before the case runs
ENV = {
    "test_depeg_contingency_pm": {"stable": 0.2},
    "test_oracle_cont_long_call_pm": {
        "spot_conf": 0.1,
        "vols": {("20230118", 1700): (0.5, 0.3)},
        "fwd": {"20230118": (2004.75, 0.4)},
    },
    "test_oracle_cont_short_call_pm": {
        "spot_conf": 0.1,
        "vols": {("20230118", 1700): (0.5, 0.1)},
        "fwd": {"20230118": (2004.75, 0.4)},
    },
    "test_oracle_cont_base_asset_pm": {
        "spot_conf": 0.1,
        "vols": {("20230118", 1700): (0.01, 0.1)},
        "fwd": {"20230118": (2004.75, 0.02)},
    },
    "test_oracle_cont_long_perp_asset_pm": {
        "spot_conf": 0.3,
        "vols": {("20230118", 1700): (0.5, 0.1)},
        "fwd": {"20230118": (2004.75, 0.02)},
        "perp": (2001.0, 0.1),
    },
    "test_general_portfolio_pm": {
        "spot": 2004.0,
        "spot_conf": 0.3,
        "vols": {("20230118", 1700): (0.15, 0.1), ("20230118", 2100): (1.01, 0.1), ("20230118", 1000): (0.33, 0.1)},
        "fwd": {"20230227": (2014.7545, 0.2)},
        "perp": (2017.0, 0.3),
    },
}


def market(name: str) -> MarketState:
    env = ENV.get(name, {})
    fwd = {d: (2000.0 + a, 1.0) for d, a in ETH_FWD_ADD.items()} | env.get("fwd", {})
    dates = sorted(DAYS, key=sec)
    curve = ForwardCurve(
        tuple(sec(d) for d in dates),
        tuple(fwd[d][0] for d in dates),
        rate=(0.02,) * len(dates),
        forward_confidence=tuple(fwd[d][1] for d in dates),
        rate_confidence=(1.0,) * len(dates),
        vol_confidence=(1.0,) * len(dates),
    )
    vols = QuotedVols(
        tuple((sec(d), float(k), v, c) for (d, k), (v, c) in env.get("vols", {}).items()),
        default_vol=0.5,
        default_confidence=1.0,
    )
    perp_px, perp_conf = env.get("perp", (2001.0, 1.0))
    return MarketState(
        spot={"ETH": env.get("spot", 2000.0)},
        vol={"ETH": vols},
        perp_price={"ETH": perp_px},
        stable_price=env.get("stable", 1.0),
        confidence={"ETH": env.get("spot_conf", 1.0)},
        perp_confidence={"ETH": perp_conf},
        forwards={"ETH": curve},
    )


def portfolio(name: str) -> Portfolio:
    c = CASES[name]
    pos = [
        {
            "kind": o["type"],
            "underlying": "ETH",
            "qty": o["amount"] / 1e8,
            "strike": float(o["strike"]),
            "expiry_s": sec(o["expiry"]),
        }
        for o in c["options"]
    ]
    pos += [
        {"kind": "perp", "underlying": "ETH", "qty": p["amount"] / 1e8, "entry_price": p["entryPrice"] / 1e8}
        for p in c["perps"]
    ]
    pos += [{"kind": "spot", "underlying": "ETH", "qty": b["amount"] / 1e8} for b in c["bases"]]
    return Portfolio.from_records([{"name": name, "cash": c["cash"] / 1e8, "positions": pos}], underlyings=("ETH",))


def run(name: str, exact: bool = True):
    model = get_model("lyra-pmrm-v1-test", exact=exact, **OVERRIDES)
    return model.requirements(portfolio(name), market(name))


def test_bundle_has_44_cases():
    assert len(CASES) == 44


@pytest.mark.parametrize("name", list(CASES))
def test_pmrm_v1_case(name):
    res = run(name)
    mm = fx.sdiv_wad(res.exact["native_margin_mm"][0])
    im = fx.sdiv_wad(res.exact["native_margin_im"][0])
    assert (mm, im) == (CASES[name]["results"]["mm"], CASES[name]["results"]["im"])


def test_the_integer_checks_can_fail():
    # a 1% different perpPercent moves the long-base case's MM off 1650: the comparison is not vacuous
    res = get_model("lyra-pmrm-v1-test", exact=True, **(OVERRIDES | {"basePercent": 0.035})).requirements(
        portfolio("test_long_base_pm"), market("test_long_base_pm")
    )
    assert fx.sdiv_wad(res.exact["native_margin_mm"][0]) == 1630
