"""Lyra/Derive Standard Manager published portfolio cases (tests/data/derive/standard_manager/
test-cases-portfolio.json, BUSL-1.1, see PROVENANCE.md) as tests of `lyra-standard` with the test parameters.

The harness (derivexyz/v2-core test/risk-managers/unit-tests/StandardManager/TestStandardManager_Portfolio_
Cases.t.sol) asserts the integer part of the contract's margins, `assertEq(mm / 1e18, mm_int)`. The market is
restated from that file and its bases (TestStandardManagerBase.t.sol, TestCaseExpiries.t.sol,
test/config-test.sol getSRMParams):
- ETH spot 2000 and BTC spot 28000 (confidence 1), forwards spot + the TestCaseExpiries additions, no rates
  (the SRM prices with discount 1), perp marks 2001 and 28020 (confidence 1), every option's vol 0.5;
- option parameters getSRMParams (maxSpotReq 0.15, minSpotReq 0.1, mmCall/PutSpotReq 0.075, MMPutMtMReq 0.075,
  unpaired IM/MM 1.2/1.1, mmOffsetScale 1.05); oracle contingency thresholds 0.4 and OCFactor 0.4; perp MM/IM
  0.05/0.065 (setPerpMarginRequirements); base marginFactor 0.8, IMScale 1; de-peg threshold 0.98, factor 1.2;
- the Solidity test functions 20 and 33-42 change feeds first (table below). The mock vol feed keeps ONE vol
  confidence per expiry, the last one set: the harness sets 1 for every unquoted strike it loads, after the
  test function, so an expiry's vol confidence is the test's value only when no other strike of that expiry
  is loaded afterwards (restated per case below).
"""

import json
import math
from pathlib import Path

import pytest

from defistress.protocols.margin.catalog import get_model
from defistress.protocols.margin.forward_curve import ForwardCurve
from defistress.protocols.margin.portfolio import MarketState, Portfolio
from defistress.protocols.margin.surface import QuotedVols

from .lyra_env import BTC_FWD_ADD, DAYS, ETH_FWD_ADD, sec

DATA = Path(__file__).parent.parent / "data" / "derive" / "standard_manager" / "test-cases-portfolio.json"
CASES = json.loads(DATA.read_text())
PARAMS = {
    "max_spot_req": 0.15,
    "min_spot_req": 0.1,
    "mm_call_spot_req": 0.075,
    "mm_put_spot_req": 0.075,
    "mm_put_mtm_req": 0.075,
    "unpaired_im_scale": 1.2,
    "unpaired_mm_scale": 1.1,
    "mm_offset_scale": 1.05,
    "perp_req": {"ETH": (0.05, 0.065), "BTC": (0.05, 0.065)},
    "base_margin": {"ETH": (0.8, 1.0), "BTC": (0.8, 1.0)},
    "perp_threshold": 0.4,
    "option_threshold": 0.4,
    "base_threshold": 0.4,
    "oc_factor": 0.4,
    "depeg_threshold": 0.98,
    "depeg_factor": 1.2,
}
_BELOW_04 = math.nextafter(0.4, 0.0)  # 0.4e18 - 1 wei in the Solidity test: the closest float below 0.4
ENV = {  # per Solidity test function: stable, ETH spot confidence, ETH perp confidence, 20230118 fwd/vol conf
    "test_USDC_depeg": {"stable": 0.1},
    "test_short_call_low_vol_conf": {"vol_conf": 0.1},
    "test_short_call_low_vol_and_fwd_confidence": {"vol_conf": 0.5, "fwd": (2004.75, _BELOW_04)},
    "test_short_call_low_spot_vol_fwd_confidence": {"vol_conf": 0.5, "fwd": (2004.75, 0.4), "spot_conf": 0.2},
    "test_long_call_low_spot_vol_fwd_confidence": {"vol_conf": 0.5, "fwd": (2004.75, 0.4), "spot_conf": 0.2},
    "test_short_options_two_expiries_low_conf_one_expiry": {"vol_conf": 0.3, "fwd": (2004.75, 0.4), "spot_conf": 0.9},
    "test_long_eth_perp_low_perp_confidence": {"perp_conf": 0.1},
    "test_base_asset_low_spot_confidence": {"spot_conf": 0.1},
    "test_long_perp_and_USDC_depeg": {"stable": 0.1},
    # vol conf of 20230118 set to 0.5 and then back to 1 by the harness loading strikes 7400 and 2500
    "test_general_portfolio": {"stable": 0.97, "vol_conf": 1.0, "fwd": (2004.75, _BELOW_04), "spot_conf": 0.2},
}


def _curve(spot: float, add: dict[str, float], env: dict) -> ForwardCurve:
    dates = sorted(DAYS, key=sec)
    fwd = {d: (spot + a, 1.0) for d, a in add.items()}
    vol = dict.fromkeys(dates, 1.0)
    if "fwd" in env:
        fwd["20230118"] = env["fwd"]
    if "vol_conf" in env:
        vol["20230118"] = env["vol_conf"]
    return ForwardCurve(
        tuple(sec(d) for d in dates),
        tuple(fwd[d][0] for d in dates),
        forward_confidence=tuple(fwd[d][1] for d in dates),
        vol_confidence=tuple(vol[d] for d in dates),
    )


def market(name: str) -> MarketState:
    env = ENV.get(name, {})
    return MarketState(
        spot={"ETH": 2000.0, "BTC": 28000.0},
        vol={"ETH": QuotedVols((), default_vol=0.5), "BTC": QuotedVols((), default_vol=0.5)},
        perp_price={"ETH": 2001.0, "BTC": 28020.0},
        stable_price=env.get("stable", 1.0),
        confidence={"ETH": env.get("spot_conf", 1.0), "BTC": 1.0},
        perp_confidence={"ETH": env.get("perp_conf", 1.0), "BTC": 1.0},
        forwards={"ETH": _curve(2000.0, ETH_FWD_ADD, env), "BTC": _curve(28000.0, BTC_FWD_ADD, {})},
    )


def portfolio(name: str) -> Portfolio:
    c = CASES[name]
    pos = [
        {
            "kind": o["type"],
            "underlying": o["underlying"].upper(),
            "qty": o["amount"] / 1e8,
            "strike": float(o["strike"]),
            "expiry_s": sec(o["expiry"]),
        }
        for o in c["options"]
    ]
    pos += [
        {
            "kind": "perp",
            "underlying": p["underlying"].upper(),
            "qty": p["amount"] / 1e8,
            "entry_price": p["entryPrice"] / 1e8,
        }
        for p in c["perps"]
    ]
    pos += [{"kind": "spot", "underlying": b["underlying"].upper(), "qty": b["amount"] / 1e8} for b in c["bases"]]
    return Portfolio.from_records(
        [{"name": name, "cash": c["cash"] / 1e8, "positions": pos}], underlyings=("ETH", "BTC")
    )


def expected(name: str) -> tuple[int, int]:
    r = CASES[name].get("result", CASES[name].get("results"))
    return r["mm"], r["im"]


def test_bundle_has_42_cases():
    assert len(CASES) == 42


@pytest.mark.parametrize("name", list(CASES))
def test_standard_manager_case(name):
    r = get_model("lyra-standard", **PARAMS).requirements(portfolio(name), market(name))
    got = (math.trunc(r.drivers["native_margin_mm"][0]), math.trunc(r.drivers["native_margin_im"][0]))
    assert got == expected(name)


def test_a_changed_parameter_breaks_the_match():
    r = get_model("lyra-standard", **(PARAMS | {"mm_call_spot_req": 0.08})).requirements(
        portfolio("test_short_call_low_vol_conf"), market("test_short_call_low_vol_conf")
    )
    assert math.trunc(r.drivers["native_margin_mm"][0]) != expected("test_short_call_low_vol_conf")[0]
