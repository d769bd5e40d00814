"""Inverse (coin-settled) contracts and coin-margined accounts in the scenario-grid engine, by hand."""

import math

import numpy as np
import pytest

from defistress.protocols.margin.black76 import price
from defistress.protocols.margin.catalog import get_model
from defistress.protocols.margin.portfolio import MarketState, Portfolio
from defistress.protocols.margin.scenario_params import NONE, ScenarioGrid, ScenarioPMParams
from defistress.protocols.margin.scenario_pm import ScenarioPM

S = 20_000.0
MKT = MarketState(spot={"BTC": S}, vol={"BTC": 0.5})
GRID = ScenarioGrid.product((-0.16, 0.16), (NONE,))  # Deribit BTC price range +-16%
MODEL = ScenarioPM(ScenarioPMParams(name="pm16", grid=GRID))


def accounts(*recs):
    return Portfolio.from_records(list(recs), underlyings=("BTC",))


def perp(q, kind="inverse_perp", **kw):
    return {"kind": kind, "underlying": "BTC", "qty": q, **kw}


def test_long_inverse_perp_in_coin_loses_19_percent_at_minus_16():
    # face q = 10,000 USD at S = 20,000: 0.5 BTC of notional. Coin PnL = q/S * m/(1+m):
    # -16%: 0.5 x (-0.16/0.84) = -0.0952381 BTC (19.05% of the coin notional, not 16%); +16%: +0.0689655 BTC
    pf = accounts(
        {
            "name": "coin",
            "margin_currency": "BTC",
            "positions": [perp(10_000.0), {"kind": "spot", "underlying": "BTC", "qty": 1.0}],
        },
        {"name": "usd", "cash": 20_000.0, "positions": [perp(10_000.0)]},
    )
    pnl = MODEL.scenario_pnl(pf, MKT, "BTC")
    np.testing.assert_allclose(pnl[:, 0], [0.5 * -0.16 / 0.84, 0.5 * 0.16 / 1.16], rtol=1e-12)
    np.testing.assert_allclose(pnl[:, 1], [-1600.0, 1600.0], rtol=1e-12)  # USD-margined: linear, 16% of 10,000
    r = MODEL.requirements(pf, MKT)
    assert r.currency == ("BTC", "USD")
    assert r.drivers["native_mm"][0] == pytest.approx(0.5 * 0.16 / 0.84, rel=1e-12)
    assert r.mm[0] == pytest.approx(S * 0.5 * 0.16 / 0.84, rel=1e-12)  # 1904.76 USD, not 1600
    assert r.mm[1] == pytest.approx(1600.0, rel=1e-12)
    assert r.drivers["native_equity"][0] == pytest.approx(1.0) and r.equity[0] == pytest.approx(S)
    assert r.drivers["native_margin_mm"][0] == pytest.approx(1.0 - 0.5 * 0.16 / 0.84, rel=1e-12)


def test_short_inverse_perp_in_coin_is_not_overstated():
    # short 0.5 BTC of face: worst +16%: -0.5 x 0.16/1.16 = -0.0689655 BTC (13.8%), linear would say 0.08 BTC
    pf = accounts({"name": "coin", "margin_currency": "BTC", "positions": [perp(-10_000.0)]})
    r = MODEL.requirements(pf, MKT)
    assert r.drivers["native_mm"][0] == pytest.approx(0.5 * 0.16 / 1.16, rel=1e-12)
    assert r.drivers["native_mm"][0] < 0.5 * 0.16


def test_inverse_future_entry_price_marks_coin_and_usd_equity():
    # inverse future face 30,000 entered at 25,000, forward F = S (rate 0) = 20,000:
    # coin value q (1/E - 1/F) = 30,000 (1/25,000 - 1/20,000) = -0.3 BTC; USD value q (F/E - 1) = -6,000
    fut = perp(30_000.0, "inverse_future", expiry_days=30, entry_price=25_000.0)
    pf = accounts({"name": "coin", "margin_currency": "BTC", "positions": [fut]}, {"name": "usd", "positions": [fut]})
    r = MODEL.requirements(pf, MKT)
    assert r.drivers["native_equity"][0] == pytest.approx(-0.3, rel=1e-12)
    assert r.equity[1] == pytest.approx(-6000.0, rel=1e-12)
    # coin PnL at -16%: q (1/F - 1/(0.84 F)) = 30,000/20,000 x (1 - 1/0.84) = -0.2857143 BTC
    assert MODEL.scenario_pnl(pf, MKT, "BTC")[0, 0] == pytest.approx(1.5 * (1 - 1 / 0.84), rel=1e-12)
    # USD: linear in the forward with exposure q F / E = 24,000 USD per unit move: -3,840 at -16%
    assert MODEL.scenario_pnl(pf, MKT, "BTC")[0, 1] == pytest.approx(-0.16 * 30_000.0 * 20_000.0 / 25_000.0)


def test_option_of_a_coin_margined_account_is_valued_in_coin():
    # Deribit inverse option: coin value = Black-76(F) / F (D = 1). Long 2 calls K 22,000, 60 d, vol 0.5.
    t = 60 / 365
    pf = accounts(
        {
            "name": "coin",
            "margin_currency": "BTC",
            "positions": [{"kind": "call", "underlying": "BTC", "qty": 2.0, "strike": 22_000.0, "expiry_days": 60}],
        }
    )
    r = MODEL.requirements(pf, MKT)
    c0 = price(S, 22_000.0, t, 0.5, True)
    assert r.equity_parts["options"][0] == pytest.approx(2 * c0 / S, rel=1e-12)
    pnl = MODEL.scenario_pnl(pf, MKT, "BTC")[:, 0]
    expect = [2 * price(S * m, 22_000.0, t, 0.5, True) / (S * m) - 2 * c0 / S for m in (0.84, 1.16)]
    np.testing.assert_allclose(pnl, expect, rtol=1e-10)


def test_coin_margined_cash_moves_in_coin_and_collateral_coin_does_not():
    # 10,000 USD cash held by a BTC-margined account: worth 0.5 BTC; at -16% it is worth 0.5/0.84 BTC (gain),
    # at +16% 0.5/1.16 BTC (loss 0.0689655 BTC). 1 BTC held: no coin PnL.
    pf = accounts(
        {
            "name": "c",
            "margin_currency": "BTC",
            "cash": 10_000.0,
            "positions": [{"kind": "spot", "underlying": "BTC", "qty": 1.0}],
        }
    )
    pnl = MODEL.scenario_pnl(pf, MKT, "BTC")[:, 0]
    np.testing.assert_allclose(pnl, [0.5 / 0.84 - 0.5, 0.5 / 1.16 - 0.5], rtol=1e-12)
    r = MODEL.requirements(pf, MKT)
    assert r.drivers["native_equity"][0] == pytest.approx(1.5)
    assert r.drivers["native_mm"][0] == pytest.approx(0.5 - 0.5 / 1.16, rel=1e-12)


def test_presets_margin_coin_accounts_and_other_models_refuse_them():
    pf = accounts({"name": "coin", "margin_currency": "BTC", "positions": [perp(10_000.0)]})
    r = get_model("deribit-pm-btc").requirements(pf, MKT)
    assert r.currency == ("BTC",) and r.mm[0] > 0
    coin_spot = accounts(
        {"name": "coin", "margin_currency": "BTC", "positions": [{"kind": "spot", "underlying": "BTC", "qty": 1.0}]}
    )
    with pytest.raises(ValueError, match=r"margin_currency='BTC' .*'aave-v3' margins in USD only"):
        get_model("aave-v3").requirements(coin_spot, MKT)
    usd = accounts({"name": "usd", "positions": [perp(10_000.0)]})
    with pytest.raises(ValueError, match=r"kind \['inverse_perp'\]: model 'dydx-v4' supports"):
        get_model("dydx-v4").requirements(usd, MKT)


def test_coin_margined_account_cannot_hold_another_underlying():
    with pytest.raises(ValueError, match=r"numeraire of account 0 \(BTC\).*allowed underlying 'BTC'"):
        Portfolio.from_records(
            [{"name": "c", "margin_currency": "BTC", "positions": [{"kind": "perp", "underlying": "ETH", "qty": 1.0}]}],
            underlyings=("BTC", "ETH"),
        )
    with pytest.raises(ValueError, match=r"margin_currency='SOL' of account 0: allowed 'USD' or \['BTC'\]"):
        Portfolio.from_records([{"name": "c", "margin_currency": "SOL"}], underlyings=("BTC",))


def test_usd_account_inverse_perp_is_linear_in_usd():
    # a USD view of an inverse perp opened at the mark: PnL = q x move (face 10,000: -1,600 at -16%)
    pf = accounts({"name": "u", "positions": [perp(10_000.0)]})
    assert MODEL.requirements(pf, MKT).mm[0] == pytest.approx(1600.0)
    assert math.isclose(MODEL.requirements(pf, MKT).equity[0], 0.0, abs_tol=1e-9)
