"""`Liquidator._pair_figures` (issue 14: a book of one pair per row takes `_all_hopeless`'s verdict as it is) against
its gather as first written, kept here as the reference: on the crafted books of test_liquidator_fast_paths (one or two
collaterals and debts per account) and on books of one collateral and one debt per account (as the eth-crash
borrowers hold), for every funding mode and both close-factor rules, the verdict `_hopeless` gets has the same skips,
caps and screened rows, bit for bit, and says the same for any capital (`covered_by`, `funded_by`)."""

from __future__ import annotations

import mesa
import numpy as np
import pytest
from conftest import track_env
from test_liquidator_fast_paths import PRICES, _drop_pools_and_bots, _spec, _world

from defistress.agents.liquidator import _MEMO, Liquidator, _one_pair_each, _Screened
from defistress.agents.tx import BlockView
from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.lending import AssetParams, LendingMarket


def reference_pair_figures(memo, liq, m, ready, coll_idx, debt_idx, view):
    """`_pair_figures` as first written: the pairs given looked up among every pair `_all_hopeless` screened."""
    got = memo.get(("pair-figures", ready.tobytes(), *liq._screen_inputs(m, view)))
    if got is None:
        return None
    r, ci, dj, every = got
    n_a = len(m.assets)
    where = np.full(ready.size * n_a * n_a, -1)
    where[(r * n_a + ci) * n_a + dj] = np.arange(r.size)
    has = coll_idx >= 0
    k = np.flatnonzero(has)
    at = where[(k * n_a + coll_idx[has]) * n_a + debt_idx[has]]
    if (at < 0).any():
        return None
    out, cover, plain = np.zeros(ready.size, dtype=bool), np.full(ready.size, np.inf), np.zeros(ready.size, bool)
    out[has], cover[has], plain[has] = every.skip[at], every.cover[at], every.plain[at]
    return out, cover, plain


def _one_pair_world(seed: int, rule: str, capital_usd: float, funding: str):
    """20 accounts, each with one collateral (ETH or BTC) and one debt (USDC or DAI), $100 to $3M of debt, health
    about 0.8 to 1.0 after a 20% drop; pools for every pair and three liquidators as in test_liquidator_fast_paths."""
    rng = np.random.default_rng(seed)
    env = track_env(Env())
    led = env.ledger
    oracles = {s: FixedPrice(p, s) for s, p in PRICES.items()}
    params = [
        AssetParams("ETH", 0.80, 0.85, 0.05, 0.10),
        AssetParams("BTC", 0.75, 0.80, 0.08, 0.10),
        AssetParams("USDC", 0.85, 0.90, 0.045, 0.10),
        AssetParams("DAI", 0.80, 0.85, 0.06, 0.10),
    ]
    m = LendingMarket("lend", params, oracles, env, rule)
    for s in ("USDC", "DAI"):
        led.mint(s, "lenders", 1e8, "genesis")
        m.supply_liquidity("lenders", s, 1e8)
    for a in m.add_accounts(20):
        coll, debt = str(rng.choice(["ETH", "BTC"])), str(rng.choice(["USDC", "DAI"]))
        debt_usd = float(np.exp(rng.uniform(np.log(100.0), np.log(3e6))))
        amount = debt_usd * rng.uniform(0.8, 1.0) / 0.8 / 0.80 / PRICES[coll]
        led.mint(coll, "pop", amount, "genesis")
        m.supply("pop", [a], coll, [amount])
        m.seed_borrow("pop", [a], debt, [debt_usd])
    return (env, m, *_drop_pools_and_bots(env, oracles, capital_usd, funding, eth_capital=False))


def _verdicts(s: _Screened, avails: list[list[float]]) -> list[tuple[bool, bool]]:
    return [(s.covered_by(a), s.funded_by(a)) for a in avails]


@pytest.mark.parametrize("funding", ["capital", "flash-loan", "both"])
@pytest.mark.parametrize("rule", ["aave-v3.0", "aave-v3.3"])
def test_the_verdict_hopeless_gets_is_the_gathered_one(rule: str, funding: str):
    rng = np.random.default_rng(3)
    seen = {"taken as it is": 0, "gathered": 0}
    for seed in range(8):
        one_pair = seed % 2 == 0
        capital = float(rng.choice([2e3, 5e6]))
        if one_pair:
            env, m, pools, bots = _one_pair_world(seed, rule, capital, funding)
        else:
            env, m, pools, bots = _world(seed, rule, capital, funding)
        liq = Liquidator(mesa.Model(rng=0), bots[0][0], _spec(float(rng.choice([0.0, 40.0]))), [m], pools, 500_000,
                         lambda: PRICES["ETH"] * 0.8, bots[0][1])  # fmt: skip
        ref = {s: p * (0.8 if s in ("ETH", "BTC") else 1.0) for s, p in PRICES.items()}
        view = BlockView(1, 12.0, float(rng.choice([2.0, 60.0])), ref)
        top = np.flatnonzero(m.health() < 1.0)
        assert top.size >= 3
        liq._all_hopeless(m, top, view, env.ledger)
        memo = view.extra[_MEMO]
        coll_idx, debt_idx = liq._pairs(m, top, env.ledger, view)
        avails = [[float(v) for v in rng.choice([0.0, 1e3, 1e5, 1e9, np.inf], size=len(m.assets))] for _ in range(12)]
        for case in range(3):
            c, d = coll_idx.copy(), debt_idx.copy()
            if case == 1:  # a row without a pair
                c[0] = d[0] = -1
            if case == 2:  # a pair of a row that is not the one screened for it
                d[-1] = (d[-1] + 1) % len(m.assets)
            got = liq._pair_figures(memo, m, top, c, d, view)
            want = reference_pair_figures(memo, liq, m, top, c, d, view)
            if want is None:
                assert got is None
                continue
            assert got is not None
            for g, w in zip((got.skip, got.cover, got.plain), want):
                assert g.dtype == w.dtype and g.tobytes() == w.tobytes()
            assert _verdicts(got, avails) == _verdicts(_Screened(*want, d), avails)
            every = memo[("pair-figures", top.tobytes(), *liq._screen_inputs(m, view))][3]
            seen["taken as it is" if got is every else "gathered"] += 1
            if got is every:
                assert one_pair and case == 0
    assert min(seen.values()) > 0, seen


def test_one_pair_each_needs_every_row_its_own_screened_pair():
    r, ci, dj = np.arange(4), np.array([0, 1, 0, 1]), np.array([2, 3, 3, 2])
    assert _one_pair_each(r, ci, dj, ci.copy(), dj.copy())
    assert not _one_pair_each(r, ci, dj, np.array([0, 1, 0, -1]), dj)  # a row without a pair
    assert not _one_pair_each(r, ci, dj, ci, np.array([2, 3, 3, 3]))  # another debt
    assert not _one_pair_each(r, ci, dj, np.array([1, 1, 0, 1]), dj)  # another collateral
    assert not _one_pair_each(np.array([0, 0, 2, 3]), ci, dj, ci, dj)  # row 0 twice, row 1 not at all
    assert not _one_pair_each(r[:3], ci[:3], dj[:3], ci, dj)  # fewer pairs than rows
    assert not _one_pair_each(np.arange(5), np.append(ci, 0), np.append(dj, 2), ci, dj)  # more pairs than rows
