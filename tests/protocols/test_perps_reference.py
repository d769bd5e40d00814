"""The perp DEX's liquidation against an independent scalar re-implementation of dYdX v4's rules
(protocol/x/clob/keeper/liquidations.go: GetBankruptcyPriceInQuoteQuantums, GetFillablePrice,
GetLiquidationInsuranceFundDelta, GetLiquidatablePositionSizeDelta; subaccount block limits), on random books,
limits and insurance funds. The reference works on plain floats, one account at a time; it shares no code with
the DEX."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import track_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams

MARKETS = (
    PerpMarketParams(asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5),  # MMF 5%
    PerpMarketParams(asset="BTC", initial_margin_fraction=0.05, maintenance_fraction=0.6),  # MMF 3%
)
MMF = {"ETH": 0.05, "BTC": 0.03}
START = {"ETH": 2_000.0, "BTC": 50_000.0}


def ref_values(coll: float, size: dict, entry: dict, px: dict) -> tuple[float, float]:
    """(TNC, TMMR) of one account, USD: collateral + unrealised PnL; Σ |size|·P·MMF."""
    tnc = coll + sum(size[a] * px[a] - entry[a] for a in size)
    return tnc, sum(abs(size[a]) * px[a] * MMF[a] for a in size)


def ref_preview(pr: PerpDexParams, coll, size, entry, px, a: str, block_notional: float, fund: float, lost: float):
    """(size delta of the account, fill price, fee, payout, adl) of liquidating market `a` (dYdX v4)."""
    tnc, tmmr = ref_values(coll, size, entry, px)
    h = tnc / tmmr
    p, s = px[a], size[a]
    side = 1.0 if s > 0 else -1.0
    notional = abs(s) * p
    max_pos = max(min(pr.min_position_notional_liquidated_usd, notional), notional * pr.max_position_portion_liquidated)
    cap = min(max_pos, pr.max_notional_liquidated_per_block_usd - block_notional)
    q = abs(s) if notional <= cap else cap / p
    pb = p * (1 - side * MMF[a] * h)
    abr = min(max(pr.bankruptcy_adjustment * (1 - h), 0.0), 1.0)
    pf = max(p * (1 - side * abr * pr.spread_to_maintenance_margin_ratio * MMF[a]), 0.0)
    delta = side * q * (pf - pb)
    fee = min(pr.max_liquidation_fee * q * pf, delta) if delta > 0 else 0.0
    payout = max(-delta, 0.0)
    adl = False
    if payout > min(fund, pr.max_insurance_lost_per_block_usd - lost) * (1 + 1e-9) + 1e-9:
        if tnc >= 0:
            pf, payout = pb, 0.0
        else:
            adl, q, pf = True, abs(s), pb
    return -side * q, pf, fee, payout, adl


params = st.fixed_dictionaries(
    {
        "insurance_fund_usd": st.sampled_from([0.0, 300.0, 5_000.0, 1e6]),
        "max_position_portion_liquidated": st.sampled_from([0.1, 0.5, 1.0]),
        "max_notional_liquidated_per_block_usd": st.sampled_from([5_000.0, 100_000.0, 1e12]),
        "max_insurance_lost_per_block_usd": st.sampled_from([50.0, 1_000_000.0]),
        "min_position_notional_liquidated_usd": st.sampled_from([0.0, 1_000.0, 1e6]),
        "max_liquidation_fee": st.sampled_from([0.005, 0.015, 0.1]),
        "bankruptcy_adjustment": st.sampled_from([1.0, 2.0]),
        "spread_to_maintenance_margin_ratio": st.sampled_from([1.0, 1.5]),
    }
)
position = st.tuples(st.floats(-30, 30).filter(lambda x: abs(x) > 0.01), st.floats(-0.6, 0.6))
books = st.lists(
    st.tuples(position, st.floats(0.05, 0.6), st.floats(0.6, 1.4)), min_size=1, max_size=5
)  # ((ETH size, BTC size), margin share of notional, entry price / start)


def open_book(dex, book):
    """Accounts with ETH and BTC positions at `entry` x start and collateral `share` x notional; a vault last."""
    coll, sizes, entries = [], [], []
    for (eth, btc), share, entry in book:
        sizes.append([eth, btc])
        entries.append([START["ETH"] * entry, START["BTC"] * entry])
        coll.append(share * (abs(eth) * START["ETH"] + abs(btc) * START["BTC"]))
    sz, en = np.array(sizes), np.array(sizes) * np.array(entries)
    sz = np.vstack([sz, -sz.sum(axis=0)])
    en = np.vstack([en, -en.sum(axis=0)])
    dex.open_accounts("pop", coll + [1e9], sz, entry_notional=en)
    return len(book)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pr=params, book=books, moves=st.tuples(st.floats(0.6, 1.4), st.floats(0.6, 1.4)), n_calls=st.integers(1, 6))
def test_liquidation_matches_the_reference(pr, book, moves, n_calls):
    env = Env()
    track_env(env)
    orc = {a: FixedPrice(START[a], a) for a in START}
    p = PerpDexParams(markets=list(MARKETS), auto_deleverage=False, **pr)
    dex = PerpDex(p, orc, env)
    env.ledger.mint("USDC", "pop", 2e9, "test")
    env.ledger.mint("USDC", "liq", 1e9, "test")
    n = open_book(dex, book)
    la = int(dex.open_accounts("liq", [5e8], None)[0])
    orc["ETH"].price, orc["BTC"].price = START["ETH"] * moves[0], START["BTC"] * moves[1]
    px = {a: orc[a].price for a in START}
    block_notional = [0.0] * dex.n_accounts
    lost = [0.0] * dex.n_accounts
    done: set[tuple[int, str]] = set()
    fees = payouts = 0.0
    for _call in range(n_calls):
        for a in range(n):
            coll = float(dex.collateral[a])
            size = {m: float(dex.size[a, k]) for k, m in enumerate(START)}
            entry = {m: float(dex.entry_notional[a, k]) for k, m in enumerate(START)}
            tnc, tmmr = ref_values(coll, size, entry, px)
            assert dex.equity()[a] == pytest.approx(tnc, rel=1e-9, abs=1e-6)
            assert dex.maintenance_requirement()[a] == pytest.approx(tmmr, rel=1e-12, abs=1e-12)
            h = tnc / tmmr if tmmr > 0 else math.inf
            if abs(tnc) < 1e-6 * (1 + tmmr) or abs(h - 1) < 1e-9:
                continue  # equity 0 or health 1 to rounding: the DEX's sum order decides the side, not the rule
            if not h < 1.0:
                with pytest.raises(Revert, match="not liquidatable"):
                    dex.preview_liquidation(a)
                continue
            # market: the largest notional not yet liquidated this block
            left = [m for m in sorted(START, key=lambda m: -abs(size[m]) * px[m]) if size[m] and (a, m) not in done]
            if not left or block_notional[a] >= p.max_notional_liquidated_per_block_usd:
                with pytest.raises(Revert):
                    dex.liquidate(a, "liq", liquidator_account=la)
                continue
            m = left[0]
            fund = dex.insurance_fund_usd()
            d, pf, fee, payout, adl = ref_preview(p, coll, size, entry, px, m, block_notional[a], fund, lost[a])
            pv = dex.preview_liquidation(a)
            assert (pv.asset, pv.adl) == (m, adl)
            assert pv.health == pytest.approx(h, rel=1e-9)
            assert (pv.size, pv.fill_price, pv.fee, pv.payout) == pytest.approx(
                (d, pf, fee, payout), rel=1e-9, abs=1e-9
            )
            if adl:
                continue  # deleveraging is checked by the hand-computed cases of test_perps.py
            liq_eq = float(dex.equity()[la])
            try:
                ev = dex.liquidate(a, "liq", liquidator_account=la)
            except Revert as exc:
                assert "below initial margin" in str(exc)  # the liquidator's own margin
                continue
            k = list(START).index(m)
            assert dex.size[a, k] == pytest.approx(size[m] + d, abs=1e-12 * abs(size[m]) + 1e-15)
            # the account sells |d| at pf instead of the oracle, pays the fee and receives the payout
            loss = -d * (px[m] - pf)
            assert dex.equity()[a] == pytest.approx(tnc - loss - fee + payout, rel=1e-9, abs=1e-6)
            assert dex.equity()[la] == pytest.approx(liq_eq + loss, rel=1e-9, abs=1e-6)
            assert ev.protocol_fee == pytest.approx(fee, rel=1e-9, abs=1e-12)
            assert ev.debt_repaid == pytest.approx(abs(d), rel=1e-12)
            fees, payouts = fees + fee, payouts + payout
            assert dex.insurance_fund_usd() == pytest.approx(p.insurance_fund_usd + fees - payouts, rel=1e-9, abs=1e-6)
            done.add((a, m))
            block_notional[a] += abs(d) * px[m]
            lost[a] += payout
        env.clock.block += 1
        done.clear()
        block_notional = [0.0] * dex.n_accounts
        lost = [0.0] * dex.n_accounts
    met = dex.metrics()
    assert met["liquidation_fees_usd"] == pytest.approx(fees, rel=1e-9, abs=1e-9)
    assert met["insurance_paid_usd"] == pytest.approx(payouts, rel=1e-9, abs=1e-9)
    assert dex.accounting_gap_usd() == pytest.approx(0.0, abs=1e-6 * (1 + np.abs(dex.entry_notional).sum()))
