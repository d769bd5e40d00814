"""`Liquidator._screen` (issue 14: every screened row without gathers, each price gathered once, one error state)
against the screen as it was first written, kept here line for line as the reference: on the crafted books of
test_liquidator_fast_paths (both close-factor rules, every funding mode, capital that binds or not, an account under
the account model, rows without a pair) both give the same skips, caps, screened rows and figures, bit for bit."""

from __future__ import annotations

import mesa
import numpy as np
import pytest
from test_liquidator_fast_paths import PRICES, _spec, _world

from defistress.agents.liquidator import GWEI, Liquidator
from defistress.agents.tx import BlockView
from defistress.protocols.lending import (
    CLOSE_FACTOR_HF_THRESHOLD,
    DEFAULT_LIQUIDATION_CLOSE_FACTOR,
    MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD,
)


def reference_screen(liq, m, ready, coll_idx, debt_idx, view, ledger, avail_by_asset, figures=None):
    """The first `Liquidator._screen`, line for line."""
    out, cover = np.zeros(ready.size, dtype=bool), np.full(ready.size, np.inf)
    screened = coll_idx >= 0
    if m._coll_on is not None or m._emode is not None:
        screened &= ~np.isin(ready, m._special_rows(ready))
    if not screened.any():
        return out, cover, screened
    plain = screened
    ready, ci, dj = ready[plain], coll_idx[plain], debt_idx[plain]
    p, ref = m.prices(), view.reference
    reserve_debt = m.debt_scaled[ready, dj] * m.borrow_index[dj]
    hf = m.health()[ready]
    if m.rule == "aave-v3.0":
        cap = reserve_debt * np.where(hf > CLOSE_FACTOR_HF_THRESHOLD, DEFAULT_LIQUIDATION_CLOSE_FACTOR, 1.0)
    else:
        reserve_coll_usd = m.coll_scaled[ready, ci] * m.liq_index[ci] * p[ci]
        half = (
            (reserve_coll_usd >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD)
            & (reserve_debt * p[dj] >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD)
            & (hf > CLOSE_FACTOR_HF_THRESHOLD)
        )
        _, debt_total_usd = m.account_usd()
        with np.errstate(divide="ignore", invalid="ignore"):
            halved = np.minimum(reserve_debt, DEFAULT_LIQUIDATION_CLOSE_FACTOR * debt_total_usd[ready] / p[dj])
        cap = np.where(half, halved, reserve_debt)
    avail = np.asarray(avail_by_asset, dtype=float)[dj]
    bonus = m.bonus[ci]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        repay = np.minimum(avail, cap)
        balance = m.coll_scaled[ready, ci] * m.liq_index[ci]
        seized = repay * p[dj] / p[ci] * bonus
        over = seized > balance
        seized = np.where(over, balance, seized)
        repay = np.where(over, balance * p[ci] / p[dj] / bonus, repay)
        seized = seized - (seized - seized / bonus) * m.fee[ci]
        if liq.funding.mode == "capital":
            flash_fee = np.zeros(repay.size)
        else:
            flash_fee = np.array(
                [
                    liq.funding.fee(liq.funding.flash_amount(ledger, liq.holder, m.assets[j], r, 0.0))
                    for j, r in zip(dj, repay.tolist())
                ]
            )
        proceeds = liq._sale_values(m, ci, dj, seized, view)
        ref_debt = np.array([ref.get(a, 1.0) for a in m.assets])[dj]
        cost = (repay + flash_fee) * ref_debt
    gas_usd = liq.gas * view.base_fee_gwei * GWEI * liq.eth_price()
    gross = proceeds - cost - gas_usd
    slack = 1e-9 * (np.abs(proceeds) + np.abs(cost) + abs(gas_usd)) + 1e-9
    out[plain] = (gross + slack <= liq.spec.min_profit_usd) | (avail <= 0)
    cover[plain] = cap
    if figures is not None:
        figures.update(proceeds=proceeds, cost=cost, hf_high=hf > CLOSE_FACTOR_HF_THRESHOLD, rows=ready)
        if m.rule != "aave-v3.0":
            figures.update(coll_usd=reserve_coll_usd, debt_usd=reserve_debt * p[dj])
    return out, cover, plain


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("funding", ["capital", "flash-loan", "both"])
@pytest.mark.parametrize("rule", ["aave-v3.0", "aave-v3.3"])
def test_the_screen_is_the_first_screen_bit_for_bit(rule: str, funding: str):
    rng = np.random.default_rng(7)
    compared = {"all screened": 0, "some not": 0, "skips": 0, "plans": 0}
    for seed in range(6):
        special = 3 if seed % 3 == 2 else None  # an account with a collateral flag off: under the account model
        env, m, pools, bots = _world(seed, rule, float(rng.choice([2e3, 5e6])), funding, special)
        model = mesa.Model(rng=0)
        liq = Liquidator(model, bots[0][0], _spec(float(rng.choice([5.0, 40.0, 400.0]))), [m], pools, 500_000,
                         lambda: PRICES["ETH"] * 0.8, bots[0][1])  # fmt: skip
        ref = {s: p * (0.8 if s in ("ETH", "BTC") else 1.0) for s, p in PRICES.items()}
        view = BlockView(1, 12.0, float(rng.choice([2.0, 60.0])), ref)
        top = np.flatnonzero(m.health() < 1.0)
        held = (m.coll_scaled[top] != 0)[:, :, None] & (m.debt_scaled[top] != 0)[:, None, :]
        r, ci, dj = np.nonzero(held)
        rows = top[r]
        for case in range(8):
            c, d = ci.copy(), dj.copy()
            if case % 2:  # some rows without a pair
                gone = rng.random(c.size) < 0.3
                c[gone], d[gone] = -1, -1
            avail = [env.ledger.balance(liq.holder, s) * float(rng.choice([0.0, 0.01, 1.0])) for s in m.assets]
            if case == 0:
                avail = [np.inf] * len(m.assets)
            f_new: dict = {}
            f_ref: dict = {}
            got = liq._screen(m, rows, c, d, view, env.ledger, np.array(avail), f_new)
            want = reference_screen(liq, m, rows, c, d, view, env.ledger, np.array(avail), f_ref)
            for g, w in zip(got, want):
                assert _same(g, w)
            assert f_new.keys() == f_ref.keys()
            for k in f_ref:
                assert _same(np.asarray(f_new[k]), np.asarray(f_ref[k])), k
            compared["all screened" if bool(got[2].all()) else "some not"] += 1
            compared["skips"] += int(got[0].sum())
            compared["plans"] += int((got[2] & ~got[0]).sum())
    assert min(compared.values()) > 0, compared
