"""Rule-based margin presets: hand-checked cases from docs/margin-methods.md and the venues' sources, and the
isolated-versus-cross property."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defistress.protocols.margin.black76 import call_put
from defistress.protocols.margin.catalog import get_model, list_models
from defistress.protocols.margin.portfolio import MarketState, Portfolio
from defistress.protocols.margin.rules import AaveParams, AaveV3, DydxParams, DydxV4, GmxParams, HyperliquidParams

ETH = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.6})
T30 = 30 / 365


def book(*positions, cash=0.0):
    return Portfolio.from_records([{"name": "a", "cash": cash, "positions": list(positions)}])


def perp(qty, und="ETH", entry=0.0):
    return {"kind": "perp", "underlying": und, "qty": qty, "entry_price": entry}


def spot(qty, und="ETH"):
    return {"kind": "spot", "underlying": und, "qty": qty}


def opt(kind, strike, qty, days=30, und="ETH"):
    return {"kind": kind, "underlying": und, "strike": strike, "expiry_days": days, "qty": qty}


def test_presets_are_registered_with_isolated_variants():
    names = set(list_models())
    for n in (
        "aave-v3",
        "compound-v3",
        "dydx-v4",
        "synthetix-v3",
        "gmx-v2",
        "hyperliquid",
        "lyra-standard",
        "deribit-standard",
        "dydx-v4-isolated",
        "hyperliquid-isolated",
        "lyra-standard-isolated",
        "greeks",
        "var-hs",
        "var-mc",
        "dynamic",
        "hybrid",
    ):
        assert n in names


# ---------------------------------------------------------------- dYdX v4
def test_dydx_small_cap_oimf_at_35m_open_interest_raises_imf_to_055_and_keeps_mmf_5pct():
    # margin-methods 4.6: IMF_eff = 0.10 + (35M - 20M)/(50M - 20M) * (1 - 0.10) = 0.10 + 0.5 * 0.9 = 0.55
    m = DydxV4(DydxParams(tiers={"SOL": "small-cap"}, open_interest_usd={"SOL": 35e6}), "dydx-v4")
    assert m.imf_effective("SOL") == pytest.approx(0.55)
    mkt = MarketState(spot={"SOL": 100.0}, vol={"SOL": 0.8})
    r = m.requirements(book(perp(200.0, "SOL")), mkt)  # notional 200 * 100 = 20,000 USD
    assert r.im[0] == pytest.approx(20_000 * 0.55)  # 11,000
    assert r.mm[0] == pytest.approx(20_000 * 0.10 * 0.5)  # MMF = base IMF * MF = 5% -> 1,000


def test_dydx_oimf_off_and_large_cap_and_capped_at_one():
    off = DydxV4(DydxParams(tiers={"SOL": "small-cap"}, open_interest_usd={"SOL": 35e6}, oimf=False), "x")
    assert off.imf_effective("SOL") == pytest.approx(0.10)
    big = DydxV4(DydxParams(tiers={"SOL": "long-tail"}, open_interest_usd={"SOL": 1e9}), "x")
    assert big.imf_effective("SOL") == 1.0
    r = get_model("dydx-v4").requirements(book(perp(-1.0)), ETH)  # ETH large-cap: IMF 2%, MMF 2% * 60% = 1.2%
    assert (r.im[0], r.mm[0]) == pytest.approx((40.0, 24.0))


def test_dydx_unknown_tier_names_the_field_and_allowed_values():
    with pytest.raises(ValueError, match=r"tiers\['SOL'\].*allowed"):
        DydxParams(tiers={"SOL": "mega-cap"})


# ---------------------------------------------------------------- Synthetix v3
def test_synthetix_test_config_size_2_at_30k_gives_im_3000_mm_1500():
    # IMR = 2/100 * 2 + 0.01 = 0.05; MMR = 0.05 * 0.5 = 0.025; notional 60,000 -> IM 3,000, MM 1,500
    mkt = MarketState(spot={"BTC": 30_000.0}, vol={"BTC": 0.5})
    r = get_model("synthetix-v3").requirements(book(perp(2.0, "BTC")), mkt)
    assert (r.im[0], r.mm[0]) == pytest.approx((3000.0, 1500.0))


# ---------------------------------------------------------------- Hyperliquid
@pytest.mark.parametrize("max_lev, rate", [(40, 0.0125), (25, 0.02), (20, 0.025), (10, 0.05), (3, 1 / 6)])
def test_hyperliquid_maintenance_rate_is_half_the_inverse_max_leverage(max_lev, rate):
    m = get_model("hyperliquid", max_leverage={"ETH": float(max_lev)})
    r = m.requirements(book(perp(5.0)), ETH)  # notional 10,000 USD
    assert r.mm[0] == pytest.approx(10_000 * rate)
    assert r.im[0] == pytest.approx(10_000 / max_lev)


def test_hyperliquid_chosen_leverage_sets_im_and_is_validated():
    r = get_model("hyperliquid", leverage={"ETH": 10.0}).requirements(book(perp(5.0)), ETH)
    assert r.im[0] == pytest.approx(1000.0) and r.mm[0] == pytest.approx(200.0)
    with pytest.raises(ValueError, match=r"leverage\['ETH'\]"):
        HyperliquidParams(leverage={"ETH": 50.0})


# ---------------------------------------------------------------- GMX v2
def test_gmx_min_collateral_floor_and_isolated_only():
    m = get_model("gmx-v2")
    r = m.requirements(book(perp(5.0), perp(0.0001)), ETH)  # notionals 10,000 and 0.2 USD
    # max(10,000 * 1%, $1) + max(0.2 * 1%, $1) = 100 + 1
    assert r.mm[0] == pytest.approx(101.0)
    with pytest.raises(ValueError, match="mode='cross'.*allowed"):
        get_model("gmx-v2", mode="cross")
    with pytest.raises(ValueError, match="closing_fee_factor"):
        GmxParams(closing_fee_factor=2.0)


# ---------------------------------------------------------------- Aave v3
def test_aave_health_factor_cases():
    aave = AaveV3(AaveParams(), "aave-v3")
    pf = Portfolio.from_records(
        [
            {"name": "eth-usdc-loan", "cash": -12_000.0, "positions": [spot(10.0)]},
            {"name": "at-threshold", "cash": -17_200.0, "positions": [spot(10.0)]},
            {"name": "btc-for-eth", "cash": 0.0, "positions": [spot(2.0, "BTC"), spot(-30.0)]},
            {"name": "usdc-for-eth", "cash": 10_000.0, "positions": [spot(-4.0)]},
            {"name": "no-debt", "cash": 0.0, "positions": [spot(1.0)]},
        ]
    )
    mkt = MarketState(spot={"ETH": 2000.0, "BTC": 60_000.0}, vol={"ETH": 0.6, "BTC": 0.5})
    hf = aave.health_factor(pf, mkt)
    # 20,000 * 0.86 / 12,000 = 1.43333; 20,000 * 0.86 / 17,200 = 1; 120,000 * 0.82 / 60,000 = 1.64;
    # 10,000 (USDC LT 0.885) / 8,000 = 1.10625; no debt -> inf
    assert hf[:4] == pytest.approx([17_200 / 12_000, 1.0, 1.64, 1.10625])
    assert np.isinf(hf[4])
    r = aave.requirements(pf, mkt)
    assert r.mm[0] == pytest.approx(20_000 * (1 - 0.86)) and r.im[0] == pytest.approx(20_000 * (1 - 0.825))
    assert r.equity[0] == pytest.approx(8000.0)
    assert r.equity[1] == pytest.approx(r.mm[1])  # HF = 1 is exactly the maintenance boundary
    assert ((r.equity >= r.mm) == (hf >= 1.0 - 1e-12)).all()


def test_aave_leaves_out_derivatives_and_rejects_isolated_mode():
    r = get_model("aave-v3").requirements(book(perp(1.0), opt("put", 1800, -1.0), cash=1000.0), ETH)
    assert r.drivers["unsupported_positions"][0] == 2
    assert r.equity[0] == pytest.approx(1000.0) and r.mm[0] == pytest.approx(1000 * (1 - 0.885))
    with pytest.raises(ValueError, match=r"mode='isolated'.*allowed \['cross'\]"):
        get_model("aave-v3", mode="isolated")
    with pytest.raises(ValueError, match=r"assets\['ETH'\].lt"):
        AaveParams(assets={"ETH": (0.9, 0.8)})


# ---------------------------------------------------------------- Compound v3
def test_compound_borrow_and_liquidation_boundaries():
    # 10 WETH at 2,000: borrow limit 20,000 * 0.825 = 16,500; liquidatable above 20,000 * 0.895 = 17,900
    pf = Portfolio.from_records(
        [
            {"name": "at-borrow-limit", "cash": -16_500.0, "positions": [spot(10.0)]},
            {"name": "at-liquidation", "cash": -17_900.0, "positions": [spot(10.0)]},
            {"name": "short-eth", "cash": 5000.0, "positions": [spot(-1.0)]},
        ]
    )
    r = get_model("compound-v3").requirements(pf, ETH)
    assert r.equity[0] == pytest.approx(r.im[0]) and r.im[0] == pytest.approx(3500.0)
    assert r.equity[1] == pytest.approx(r.mm[1]) and r.mm[1] == pytest.approx(2100.0)
    assert r.drivers["unsupported_positions"][2] == 1


# ---------------------------------------------------------------- Lyra / Derive standard manager
def _prices(strikes):
    return call_put(2000.0, np.asarray(strikes, dtype=float), T30, 0.6, 1.0)  # SRM prices with discount 1


def test_lyra_short_call_mm_is_9pct_of_spot_and_im_13pct_floor():
    # MM native = MtM + 0.09 * 2000 * (-1); mm = equity - native = 180 whatever the mark.
    # IM: OTM% = (2200 - 2000)/2000 = 0.10; 0.15 - 0.10 = 0.05 < 0.13 -> 0.13 * 2000 = 260
    r = get_model("lyra-standard").requirements(book(opt("call", 2200, -1.0), cash=1000.0), ETH)
    assert (r.mm[0], r.im[0]) == pytest.approx((180.0, 260.0))
    assert r.equity[0] - r.mm[0] == pytest.approx(r.drivers["native_margin_mm"][0])


def test_lyra_short_put_otm_and_deep_itm():
    m = get_model("lyra-standard")
    r = m.requirements(book(opt("put", 1800, -1.0)), ETH)
    # MM = max(0.09 * 2000, 0.09 * P) = 180; IM = max(260, 1.05 * (P + 180) - P) = 260 with P ~ 54
    assert (r.mm[0], r.im[0]) == pytest.approx((180.0, 260.0))
    # K = 5000, one second to expiry: P = 3000 (intrinsic). MM = max(180, 0.09 * 3000 = 270) = 270;
    # IM native = min(-0.15*2000 - 3000, 1.05 * (-3270)) = -3433.5 -> im = -3000 + 3433.5 = 433.5
    deep = book({"kind": "put", "underlying": "ETH", "strike": 5000.0, "expiry_s": 1.0, "qty": -1.0})
    r = m.requirements(deep, ETH)
    assert r.mm[0] == pytest.approx(270.0, abs=1e-6) and r.im[0] == pytest.approx(433.5, abs=1e-6)


def test_lyra_put_spread_uses_expiry_max_loss():
    # short 1800 put, long 1600 put: max loss over {0, 1600, 1800} = -200 beats isolated -(P1800 + 180)
    _, (p1600, p1800) = _prices([1600, 1800])
    r = get_model("lyra-standard").requirements(book(opt("put", 1800, -1.0), opt("put", 1600, 1.0)), ETH)
    assert r.mm[0] == pytest.approx(200.0 - p1800 + p1600)
    assert r.drivers["max_loss_expiries"][0] == 1


def test_lyra_unpaired_short_calls_scale_the_forward():
    # 2 short 2200 calls + 1 long 2400 call: max loss at 2400 = -400, net calls -1 -> -400 - 1.1 * 2000 = -2600;
    # isolated = 2 * (-C2200 - 180) is better -> mm = equity - native = (C2400 - 2 C2200) + 2 C2200 + 360
    (c2400,), _ = _prices([2400])
    r = get_model("lyra-standard").requirements(book(opt("call", 2200, -2.0), opt("call", 2400, 1.0)), ETH)
    assert r.mm[0] == pytest.approx(360.0 + c2400)


def test_lyra_perp_and_base_collateral():
    r = get_model("lyra-standard").requirements(book(perp(1.0)), ETH)
    assert (r.mm[0], r.im[0]) == pytest.approx((130.0, 200.0))  # 6.5% / 10% of 2000
    r = get_model("lyra-standard").requirements(book(spot(1.0)), ETH)
    # base credit 0.8 * 2000 = 1600 (MM), 0.8 * 0.9375 * 2000 = 1500 (IM)
    assert (r.mm[0], r.im[0]) == pytest.approx((400.0, 500.0))


def test_lyra_oracle_and_depeg_contingencies_add_to_im_only():
    low_conf = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.6}, confidence={"ETH": 0.5})
    m = get_model("lyra-standard")
    r = m.requirements(book(perp(1.0)), low_conf)
    assert r.mm[0] == pytest.approx(130.0)
    assert r.im[0] == pytest.approx(200.0 + (1 - 0.5) * 1.0 * 2000 * 1)  # + 1000
    r = m.requirements(book(opt("put", 1800, -1.0)), low_conf)
    assert r.im[0] == pytest.approx(260.0 + 1000.0)
    depeg = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.6}, stable_price=0.97)
    r = m.requirements(book(perp(1.0), opt("put", 1800, -1.0)), depeg)
    # (0.99 - 0.97) * 2 * 2000 * (1 perp + 1 short option) = 160 on IM
    assert r.drivers["depeg_usd"][0] == pytest.approx(160.0)
    assert r.im[0] == pytest.approx(200.0 + 260.0 + 160.0)
    assert r.mm[0] == pytest.approx(130.0 + 180.0)


# ---------------------------------------------------------------- Deribit standard
def test_deribit_standard_short_options_and_btc_future_size_step():
    m = get_model("deribit-standard")
    (c2200,), (p1800,) = call_put(2000.0, [2200.0], T30, 0.6, 1.0)[0], call_put(2000.0, [1800.0], T30, 0.6, 1.0)[1]
    r = m.requirements(
        Portfolio.from_records(
            [
                {"name": "c", "positions": [opt("call", 2200, -1.0)]},
                {"name": "p", "positions": [opt("put", 1800, -1.0)]},
            ]
        ),
        ETH,
    )
    # call: IM = max(0.15 - 0.10, 0.10) * 2000 + mark = 200 + C, MM = 0.075 * 2000 + C = 150 + C
    assert (r.im[0], r.mm[0]) == pytest.approx((200 + c2200, 150 + c2200))
    # put: IM = max(200 + P, MM = max(150, 0.075 P) + P) = 200 + P
    assert (r.im[1], r.mm[1]) == pytest.approx((200 + p1800, 150 + p1800))
    btc = MarketState(spot={"BTC": 60_000.0}, vol={"BTC": 0.5})
    r = m.requirements(book(perp(50.0, "BTC")), btc)
    # 50 BTC: IM 2% + 0.5% * 50/100 = 2.25%, MM 1.5% + 0.25% = 1.75% of 3,000,000
    assert (r.im[0], r.mm[0]) == pytest.approx((67_500.0, 52_500.0))


# ---------------------------------------------------------------- isolated versus cross
BOTH_MODES = ("dydx-v4", "synthetix-v3", "hyperliquid", "lyra-standard", "deribit-standard")


def test_isolated_mode_loses_the_offset_of_a_hedged_book():
    pf = book(spot(1.0), perp(-1.0))
    cross = get_model("lyra-standard").requirements(pf, ETH)
    iso = get_model("lyra-standard-isolated").requirements(pf, ETH)
    assert cross.mm[0] == pytest.approx(400.0 + 130.0)
    assert iso.mm[0] == pytest.approx(2000.0 + 130.0)  # the spot backs nothing in isolation
    assert iso.equity[0] == pytest.approx(cross.equity[0])
    assert iso.drivers["isolation_usd"][0] == pytest.approx(1600.0)


position = st.tuples(
    st.sampled_from(["spot", "perp", "call", "put"]),
    st.floats(-5, 5).filter(lambda q: abs(q) > 1e-3),
    st.floats(0.6, 1.4),
    st.integers(1, 90),
    st.floats(0.8, 1.2),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(position, min_size=1, max_size=3), st.floats(-1000, 5000))
def test_unhedged_book_requirement_is_never_lower_isolated_than_cross(legs, cash):
    unds = ("ETH", "BTC", "SOL")[: len(legs)]  # one position per underlying: nothing offsets
    spots = {"ETH": 2000.0, "BTC": 60_000.0, "SOL": 150.0}
    recs = []
    for (kind, q, k_mult, days, entry_mult), u in zip(legs, unds):
        p = {"kind": kind, "underlying": u, "qty": abs(q) if kind == "spot" else q}
        if kind in ("call", "put"):
            p.update(strike=spots[u] * k_mult, expiry_days=days)
        if kind == "perp":
            p["entry_price"] = spots[u] * entry_mult
        recs.append(p)
    pf = Portfolio.from_records([{"name": "a", "cash": cash, "positions": recs}], underlyings=unds)
    mkt = MarketState(spot={u: spots[u] for u in unds}, vol={u: 0.7 for u in unds})
    for name in BOTH_MODES:
        cross = get_model(name).requirements(pf, mkt)
        iso = get_model(f"{name}-isolated").requirements(pf, mkt)
        assert iso.mm[0] >= cross.mm[0] - 1e-6 * max(1.0, abs(cross.mm[0])), name
        assert iso.im[0] >= cross.im[0] - 1e-6 * max(1.0, abs(cross.im[0])), name
        assert iso.equity[0] == pytest.approx(cross.equity[0]), name
        assert cross.mm[0] >= -1e-6 and cross.im[0] >= cross.mm[0] - 1e-6, name
