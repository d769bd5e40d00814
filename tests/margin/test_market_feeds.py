"""Per-expiry forward curves and rates, per-feed confidences, collateral rows, funding, SVI feeds, contract
parameter names and the exact aggregation mode of the scenario-grid engine, checked by hand."""

import dataclasses
import math

import numpy as np
import pytest

from defistress.protocols.margin import exact as fx
from defistress.protocols.margin.black76 import price
from defistress.protocols.margin.catalog import get_model
from defistress.protocols.margin.forward_curve import ForwardCurve
from defistress.protocols.margin.portfolio import MarketState, Portfolio
from defistress.protocols.margin.presets_derive import DERIVE_PM2_GOLDEN
from defistress.protocols.margin.scenario_params import (
    NONE,
    CollateralParams,
    ContingencyParams,
    ScenarioGrid,
    ScenarioPMParams,
)
from defistress.protocols.margin.scenario_pm import ScenarioPM
from defistress.protocols.margin.surface import SVISlice, SVISurface

DAY = 86_400.0
UP10 = ScenarioGrid.product((0.10,), (NONE,))


def one(*positions, cash=0.0, und="ETH"):
    return Portfolio.from_records(
        [{"name": "a", "cash": cash, "positions": [dict(p, underlying=und) for p in positions]}], underlyings=(und,)
    )


def model(grid=UP10, **kw):
    return ScenarioPM(ScenarioPMParams(name="t", grid=grid, **kw))


# ------------------------------------------------------------------ forward curves and rates
def test_curve_interpolates_forward_and_rate_and_holds_nodes():
    c = ForwardCurve((10 * DAY, 40 * DAY), (2010.0, 2050.0), rate=(0.03, 0.05), forward_confidence=(0.9, 0.7))
    p = c.points([10 * DAY, 25 * DAY, 40 * DAY, 80 * DAY, 0.0])
    np.testing.assert_allclose(p.forward, [2010.0, 2030.0, 2050.0, 2050.0, 2010.0])
    np.testing.assert_allclose(p.rate, [0.03, 0.04, 0.05, 0.05, 0.03])
    np.testing.assert_allclose(p.forward_confidence, [0.9, 0.7, 0.7, 0.7, 0.9])  # between nodes: the lower
    assert np.isnan(p.vol_confidence).all()  # not given: MarketState fills the spot confidence


def test_option_priced_off_the_curve_not_spot_times_carry():
    # F(10 d) = 2010 although S e^{rT} = 2000 e^{0.03 x 10/365}; discounted with the curve's rate 3%
    t = 10 / 365
    mkt = MarketState(
        spot={"ETH": 2000.0},
        vol={"ETH": 0.6},
        forwards={"ETH": ForwardCurve((10 * DAY,), (2010.0,), rate=(0.03,))},
    )
    pf = one({"kind": "call", "strike": 2000.0, "qty": 1.0, "expiry_days": 10})
    d = math.exp(-0.03 * t)
    r = model(discount_option_prices=True).requirements(pf, mkt)
    assert r.equity[0] == pytest.approx(price(2010.0, 2000.0, t, 0.6, True, d), rel=1e-12)
    pnl = model(discount_option_prices=True).scenario_pnl(pf, mkt, "ETH")[0, 0]
    assert pnl == pytest.approx(price(2211.0, 2000.0, t, 0.6, True, d) - price(2010.0, 2000.0, t, 0.6, True, d))
    assert mkt.forward(np.array([0]), np.array([10 * DAY]), ("ETH",))[0] == 2010.0


def test_fixed_part_of_the_forward_does_not_move():
    # 900 s before expiry inside Derive's 1800 s settlement window: F 2000 = 1000 fixed + 1000 variable.
    # vol 0 call K 1900: now 100; +10% -> F' = 1100 + 1000 = 2100 -> 200 (not 300)
    curve = ForwardCurve.with_settlement_window((900.0,), (2000.0,))
    assert curve.fixed == (1000.0,)
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0}, forwards={"ETH": curve})
    pf = one({"kind": "call", "strike": 1900.0, "qty": 1.0, "expiry_s": 900.0})
    assert model().scenario_pnl(pf, mkt, "ETH")[0, 0] == pytest.approx(100.0)
    no_fix = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.0}, forwards={"ETH": ForwardCurve((900.0,), (2000.0,))})
    assert model().scenario_pnl(pf, no_fix, "ETH")[0, 0] == pytest.approx(200.0)


def test_negative_rate_is_floored_for_the_discount_when_asked():
    # rate -50% at 30 d: D = e^{0.5 x 30/365} = 1.0419 unfloored; floored D = 1 (PMRM_2 _initialiseExpiries)
    mkt = MarketState(
        spot={"ETH": 2000.0}, vol={"ETH": 0.0}, forwards={"ETH": ForwardCurve((30 * DAY,), (2000.0,), rate=(-0.5,))}
    )
    pf = one({"kind": "put", "strike": 2100.0, "qty": 1.0, "expiry_days": 30})
    raw = model(discount_option_prices=True).requirements(pf, mkt).equity[0]
    floored = model(discount_option_prices=True, floor_rate_at_zero=True).requirements(pf, mkt).equity[0]
    assert raw == pytest.approx(100.0 * math.exp(0.5 * 30 / 365), rel=1e-12)
    assert floored == pytest.approx(100.0, rel=1e-12)


def test_curve_errors_name_the_field():
    with pytest.raises(ValueError, match=r"expiry_s=.*strictly increasing"):
        ForwardCurve((2.0, 1.0), (1.0, 1.0))
    with pytest.raises(ValueError, match=r"fixed\[0\]=3.0: allowed 0..forward\[0\]=2.0"):
        ForwardCurve((1.0,), (2.0,), fixed=(3.0,))
    with pytest.raises(ValueError, match=r"vol_confidence: allowed empty or 1 values"):
        ForwardCurve((1.0,), (2.0,), vol_confidence=(0.5, 0.5))


# ------------------------------------------------------------------ per-feed confidences and collateral
def test_confidence_contingency_per_bucket_with_its_own_feeds():
    # threshold 0.55, margin 1. Spot conf 0.9, perp 0.5, forward 0.8, rate 0.7, vol 0.6, collateral 0.4.
    # account a (perp held): perps min(0.9, 0.5) = 0.5 -> 0.5 x 2 x 2000 = 2000; expiry min(0.9, 0.5, 0.8, 0.7,
    # 0.6) = 0.5 -> 0.5 x 3 x 2000 = 3000; collateral min(0.4, 0.9) -> 0.6 x 10 x 1500 = 9000. Total 14,000.
    # account b (no perp): expiry min(0.9, 0.8, 0.7, 0.6) = 0.6 >= 0.55 -> 0; collateral 9000.
    mkt = MarketState(
        spot={"ETH": 2000.0},
        vol={"ETH": 0.5},
        confidence={"ETH": 0.9},
        perp_confidence={"ETH": 0.5},
        forwards={
            "ETH": ForwardCurve(
                (30 * DAY,), (2000.0,), forward_confidence=(0.8,), rate_confidence=(0.7,), vol_confidence=(0.6,)
            )
        },
        collateral_price={"wETH": 1500.0},
        collateral_confidence={"wETH": 0.4},
    )
    call = {"kind": "call", "underlying": "ETH", "strike": 2200.0, "qty": 3.0, "expiry_days": 30}
    coll = {"kind": "collateral", "underlying": "ETH", "asset": "wETH", "qty": 10.0}
    pf = Portfolio.from_records(
        [
            {"name": "a", "positions": [{"kind": "perp", "underlying": "ETH", "qty": 2.0}, call, coll]},
            {"name": "b", "positions": [call, coll]},
        ]
    )
    m = model(
        contingency=ContingencyParams(conf_threshold=0.55, conf_margin=1.0), collaterals={"wETH": CollateralParams()}
    )
    r = m.requirements(pf, mkt)
    np.testing.assert_allclose(r.drivers["confidence_usd"], [14_000.0, 9_000.0])
    # one number for every feed (the former single confidence): 0.5 on (2 + 3) x 2000 + collateral 0.5 x 15000
    one_conf = MarketState(
        spot={"ETH": 2000.0}, vol={"ETH": 0.5}, confidence={"ETH": 0.5}, collateral_price={"wETH": 1500.0}
    )
    r1 = m.requirements(pf, one_conf)
    assert r1.drivers["confidence_usd"][0] == pytest.approx(0.5 * 5 * 2000.0 + 0.5 * 15_000.0)


def test_collateral_rows_value_haircuts_and_risk_cancelling():
    # 10 wETH at 1500, stable 0.98: value 15306.12 stable units. Risk-cancelling: +10% -> +1530.61.
    # MM haircut 10% -> 1530.61; IM adds 5% -> 765.31. A stable coin row (not risk-cancelling): no PnL.
    mkt = MarketState(
        spot={"ETH": 2000.0}, vol={"ETH": 0.5}, stable_price=0.98, collateral_price={"wETH": 1500.0, "DAI": 1.0}
    )
    rows = [
        {"kind": "collateral", "asset": "wETH", "qty": 10.0},
        {"kind": "collateral", "asset": "DAI", "qty": 1000.0},
    ]
    cps = {"wETH": CollateralParams(True, 0.10, 0.05), "DAI": CollateralParams(False, 0.02, 0.0)}
    m = model(collaterals=cps)
    pf = one(*rows)
    v = 10 * 1500 / 0.98
    dai = 1000 / 0.98
    assert m.scenario_pnl(pf, mkt, "ETH")[0, 0] == pytest.approx(0.1 * v)
    r = m.requirements(pf, mkt)
    assert r.equity_parts["collateral"][0] == pytest.approx(v + dai)
    assert r.mm[0] == pytest.approx(0.10 * v + 0.02 * dai)
    assert r.im[0] == pytest.approx(0.15 * v + 0.02 * dai)
    with pytest.raises(ValueError, match=r"collateral asset 'DAI': allowed \['wETH'\]"):
        model(collaterals={"wETH": cps["wETH"]}).requirements(pf, mkt)
    with pytest.raises(ValueError, match=r"collateral_price: missing underlying 'DAI'"):
        m.requirements(pf, MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.5}, collateral_price={"wETH": 1.0}))
    with pytest.raises(ValueError, match=r"mm_haircut \+ im_haircut = 1.2: allowed <= 1"):
        CollateralParams(False, 0.7, 0.5)


def test_perp_funding_is_equity_not_risk():
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.5})
    base = one({"kind": "perp", "qty": -1.0})
    funded = one({"kind": "perp", "qty": -1.0, "funding": 123.0})
    a, b = model().requirements(base, mkt), model().requirements(funded, mkt)
    assert b.equity[0] - a.equity[0] == pytest.approx(123.0)
    assert b.mm[0] == a.mm[0] == pytest.approx(200.0)


def test_svi_slice_uses_the_feeds_own_forward_and_tau():
    # vol = sqrt(w(ln(K / F_svi)) / tau_svi), not the pricing forward nor expiry / 365 d
    a, b, rho, m, sig = 0.002, 0.04, -0.3, -0.02, 0.06
    k = math.log(2100.0 / 1950.0)
    w = a + b * (rho * (k - m) + math.sqrt((k - m) ** 2 + sig**2))
    surf = SVISurface((SVISlice(20 * DAY, a, b, rho, m, sig, tau_years=0.06, forward=1950.0),))
    assert surf.vol(np.array([2100.0]), np.array([20 * DAY]), np.array([2000.0]))[0] == pytest.approx(
        math.sqrt(w / 0.06), rel=1e-14
    )


# ------------------------------------------------------------------ contract names and native figure
def test_contract_parameter_names_are_aliases():
    # docs/margin-methods.md 1.5: the Lyra unit-test overrides by their contract names give MM 1650, IM 1545
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.5}, rate={"ETH": 0.02}, perp_price={"ETH": 2001.0})
    pf = one({"kind": "spot", "qty": 1.0})
    r = get_model(
        "lyra-pmrm-v1-test", rateAddScale=0.12, confMargin=0.4, basePercent=0.025, perpPercent=0.025
    ).requirements(pf, mkt)
    assert r.native_margin()[0] == pytest.approx(1650.0) and r.native_margin(initial=True)[0] == pytest.approx(1545.0)
    pm2 = get_model("derive-pm2", mmFactor=0.5, volRangeDown=0.275, dteFloor=0.0).params
    assert (pm2.mm_factor, pm2.vol_shock.range_down, pm2.vol_shock.dte_floor_s) == (0.5, 0.275, 0.0)
    assert get_model("deribit-pm-eth", pnl_offset=0.4).params.gains_offset == 0.4
    assert (
        get_model("lyra-pmrm-v1", **{"discount.floor_rate_at_zero": False}).params.discount.floor_rate_at_zero is False
    )
    with pytest.raises(ValueError, match=r"override 'MMperpPercent': allowed \[.*'MMPerpPercent'"):
        get_model("derive-pm2", MMperpPercent=0.1)


# ------------------------------------------------------------------ exact mode
def test_exact_mode_lands_on_the_integer_the_contract_gives():
    # short 9 perps at 20, spot x1.5: loss 90; mm_factor 0.7: float 0.7 * 90 = 62.99999999999999 truncates to 62,
    # 1e18 fixed point gives 0.7e18 * 90e18 / 1e18 = 63e18 exactly (the harness compares mm / 1e18)
    grid = ScenarioGrid((1.5,), (NONE,), (1.0,), (False,))
    pf = one({"kind": "perp", "qty": -9.0}, cash=100.0)
    mkt = MarketState(spot={"ETH": 20.0}, vol={"ETH": 0.5})
    f = model(grid=grid, mm_factor=0.7).requirements(pf, mkt)
    e = model(grid=grid, mm_factor=0.7, exact=True).requirements(pf, mkt)
    assert int(f.mm[0]) == 62 and fx.sdiv_wad(e.exact["mm"][0]) == 63
    assert e.exact["mm"][0] == 63 * 10**18 and e.exact["native_margin_mm"][0] == 37 * 10**18
    assert e.mm[0] == 63.0


def test_exact_helpers_truncate_toward_zero():
    assert fx.mul(-3 * 10**18 // 2, 10**18 // 3) == -499999999999999999  # -1.5 x 0.333.. truncated toward 0
    assert fx.wei(-0.1) == -100000000000000005  # the float's exact value, truncated
    assert fx.wei_param(0.1) == 10**17
    assert fx.sdiv_wad(-925 * 10**18 - 1) == -925


def test_golden_preset_keeps_working_with_dataclass_replace():
    # the derive-pm2-golden params are plain frozen dataclasses: a changed field shows in the model
    p = dataclasses.replace(DERIVE_PM2_GOLDEN, mm_factor=1.0)
    assert ScenarioPM(p).params.mm_factor == 1.0
