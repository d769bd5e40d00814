"""CME SPAN classic: scan risk, calendar spread charges, short option minimum, WPR inter-commodity credits."""

import numpy as np
import pytest

from defistress.protocols.margin.black76 import price
from defistress.protocols.margin.catalog import get_model
from defistress.protocols.margin.portfolio import MarketState, Portfolio
from defistress.protocols.margin.span import InterSpread, IntraSpread, Span, SpanCommodity, SpanParams, span_scenarios

DAY = 86_400.0
M2, M3, M4 = 60 * DAY, 90 * DAY, 120 * DAY


def fut(und, qty, expiry_s=M2):
    return {"kind": "future", "underlying": und, "qty": qty, "expiry_s": expiry_s}


def accounts(*books, unds=("CORN",)):
    return Portfolio.from_records([{"name": f"a{i}", "positions": b} for i, b in enumerate(books)], underlyings=unds)


def test_sixteen_scenarios_with_extreme_moves():
    frac, vol, weight = span_scenarios(SpanCommodity(price_scan_usd=1.0, extreme_multiple=3.0, extreme_cover=0.33))
    assert frac.size == vol.size == weight.size == 16
    np.testing.assert_allclose(frac[[10, 12, 14, 15]], [1.0, -1.0, 3.0, -3.0])
    np.testing.assert_allclose(weight[14:], [0.33, 0.33])
    assert (vol[:14] != 0).all() and (vol[14:] == 0).all()


def test_cme_calendar_spread_examples():
    # cmegroup.com spread-calc: outrights M2 $500, M3 $500, M4 $750; intra charges 2v3 $200, 2v4 $50, 3v4 $0.
    # +M2-M3: scan |500-500| = 0 + 200 = $200;  +M2-M4: scan |500-750| = 250 + 50 = $300;
    # +M3-M4: 250 + 0 = $250.  (extreme: 3 x 0.33 = 0.99 of the range < 1, never the scan scenario)
    corn = SpanCommodity(
        month_price_scan_usd=((M2, 500.0), (M3, 500.0), (M4, 750.0)),
        intra_spreads=(IntraSpread(M2, M3, 200.0), IntraSpread(M2, M4, 50.0), IntraSpread(M3, M4, 0.0)),
    )
    span = Span(SpanParams(commodities={"CORN": corn}, initial_factor=1.0))
    pf = accounts(
        [fut("CORN", 1, M2), fut("CORN", -1, M3)],
        [fut("CORN", 1, M2), fut("CORN", -1, M4)],
        [fut("CORN", 1, M3), fut("CORN", -1, M4)],
        [fut("CORN", 1, M4)],
    )
    r = span.requirements(pf, MarketState(spot={"CORN": 4.5}, vol={"CORN": 0.2}))
    np.testing.assert_allclose(r.mm, [200.0, 300.0, 250.0, 750.0])
    np.testing.assert_allclose(r.drivers["intra_spread_usd"], [200.0, 50.0, 0.0, 0.0])
    np.testing.assert_allclose(r.drivers["scan_risk_usd"], [0.0, 250.0, 250.0, 750.0])


def test_cme_corn_soybean_inter_commodity_credit():
    # 2 long corn (scan 1750 each) vs 1 short soybean (scan 2500), 2:1 at 55%:
    # outright 2 x 1750 + 2500 = 6000; WPR corn 3500/2 = 1750, soy 2500/1 = 2500; 1 spread:
    # credit 2 x 1750 x 0.55 + 1 x 2500 x 0.55 = 1925 + 1375 = 3300 => $2,700
    params = SpanParams(
        commodities={"CORN": SpanCommodity(price_scan_usd=1750.0), "SOY": SpanCommodity(price_scan_usd=2500.0)},
        inter_spreads=(InterSpread("CORN", "SOY", 2.0, 1.0, 0.55),),
        initial_factor=1.1,
    )
    pf = accounts([fut("CORN", 2.0), fut("SOY", -1.0)], [fut("CORN", 2.0), fut("SOY", 1.0)], unds=("CORN", "SOY"))
    r = Span(params).requirements(pf, MarketState(spot={"CORN": 4.5, "SOY": 11.0}, vol={"CORN": 0.2, "SOY": 0.2}))
    assert r.mm[0] == pytest.approx(2700.0)
    assert r.drivers["inter_credit_usd"][0] == pytest.approx(3300.0)
    assert r.im[0] == pytest.approx(2970.0)  # initial 110% of maintenance
    assert r.mm[1] == pytest.approx(6000.0)  # same-direction deltas: no spread, no credit


def test_long_option_risk_never_exceeds_its_premium_and_equity_holds_its_value():
    c = SpanCommodity(price_scan_frac=0.15, vol_scan=0.1)
    pf = accounts(
        [{"kind": "call", "underlying": "ETH", "strike": 2200.0, "qty": 3.0, "expiry_days": 30}], unds=("ETH",)
    )
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.6})
    r = Span(SpanParams(commodities={"ETH": c}, initial_factor=1.0)).requirements(pf, mkt)
    premium = 3 * float(price(2000.0, 2200.0, 30 / 365, 0.6, True))
    assert r.equity[0] == pytest.approx(premium)
    assert 0 < r.mm[0] <= premium


def test_scan_risk_of_short_call_hand_checked_scenario():
    # short 1 call K 2000, vol 0.5, 30 d; PSR 300 USD, VSR 0.1: scenario 11 (+1 x PSR, vol up):
    # loss = C(F=2300, vol 0.6, T=29/365) - C(F=2000, vol 0.5, T=30/365)
    c = SpanCommodity(price_scan_usd=300.0, vol_scan=0.1, extreme_multiple=2.0, extreme_cover=0.35)
    pf = accounts(
        [{"kind": "call", "underlying": "ETH", "strike": 2000.0, "qty": -1.0, "expiry_days": 30}], unds=("ETH",)
    )
    span = Span(SpanParams(commodities={"ETH": c}, initial_factor=1.0))
    loss, values, delta = span.risk_arrays(pf, MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.5}), np.arange(1), c)
    expect = float(price(2300.0, 2000.0, 29 / 365, 0.6, True) - price(2000.0, 2000.0, 30 / 365, 0.5, True))
    assert loss[10, 0] == pytest.approx(expect)
    # extreme +2 x PSR at 35%: 0.35 x (C(2600, 0.5, 29 d) - C(2000, 0.5, 30 d))
    ext = 0.35 * float(price(2600.0, 2000.0, 29 / 365, 0.5, True) - price(2000.0, 2000.0, 30 / 365, 0.5, True))
    assert loss[14, 0] == pytest.approx(ext)


def test_short_option_minimum_binds_for_far_otm_shorts():
    # short 5 far OTM calls: scan risk tiny; SOM 40 USD per short option => 200
    c = SpanCommodity(price_scan_frac=0.05, vol_scan=0.02, short_option_minimum_usd=40.0)
    pf = accounts(
        [{"kind": "call", "underlying": "ETH", "strike": 6000.0, "qty": -5.0, "expiry_days": 7}], unds=("ETH",)
    )
    r = Span(SpanParams(commodities={"ETH": c}, initial_factor=1.0)).requirements(
        pf, MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.5})
    )
    assert r.drivers["scan_risk_usd"][0] < 200.0
    assert r.mm[0] == pytest.approx(200.0)


def test_registered_preset_and_validation():
    m = get_model("cme-span")
    pf = accounts([{"kind": "spot", "underlying": "ETH", "qty": 1.0}], unds=("ETH",))
    r = m.requirements(pf, MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.5}))
    assert r.mm[0] == pytest.approx(0.10 * 2000.0)  # PSR 10% of price on a delta-1 long
    with pytest.raises(ValueError, match="extreme_cover"):
        SpanCommodity(price_scan_usd=1.0, extreme_cover=1.5)
    with pytest.raises(ValueError, match="underlying"):
        SpanParams(commodities={"A": SpanCommodity(1.0)}, inter_spreads=(InterSpread("A", "B", 1, 1, 0.5),))
    with pytest.raises(ValueError, match="commodities"):
        Span(SpanParams(commodities={"A": SpanCommodity(1.0)})).requirements(
            pf, MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.5})
        )
