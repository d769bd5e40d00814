"""`Liquidator._pairs` searching with its own budget first (issue 14: one pair search where the budget binds, instead of
the shared search without a budget and then its own) against the pairs as first chosen: those of no budget where the
budget covers every row's close-factor cap (the largest per debt asset, `cap_max`), else `best_liquidation_pairs` with
the budget; with budgets below, at and above the caps, zero and infinite, as the first or a later liquidator of the
block (the shared search already kept or not)."""

from __future__ import annotations

from types import SimpleNamespace

import mesa
import numpy as np
import pytest
from test_liquidator_fast_paths import PRICES, _spec, _world

from defistress.agents.liquidator import Liquidator
from defistress.agents.tx import BlockView


def reference_pairs(m, rows: np.ndarray, avail: list[float]) -> tuple[list[int], list[int]]:
    ci, dj, _, cap_max = m.liquidation_pairs_and_caps(rows)
    if not all(a * q >= c for a, q, c in zip(avail, m.prices().tolist(), cap_max.tolist())):
        ci, dj, _ = m.best_liquidation_pairs(rows, np.array(avail) * m.prices())
    return ci.tolist(), dj.tolist()


def _liquidator(m, pools, holder: str, avail: dict[str, float]) -> Liquidator:
    funding = SimpleNamespace(mode="capital", lender=None, available=lambda ledger, h, s, c: avail[s])
    return Liquidator(mesa.Model(rng=0), holder, _spec(40.0), [m], pools, 500_000, lambda: PRICES["ETH"] * 0.8, funding)


@pytest.mark.parametrize("rule", ["aave-v3.0", "aave-v3.3"])
def test_the_pairs_are_the_first_pairs_whatever_the_budget(rule: str):
    rng = np.random.default_rng(3)
    seen = {"covered": 0, "binds": 0, "the budget changes the pairs": 0}
    for seed in range(5):
        env, m, pools, _ = _world(seed, rule, 5e6, "capital")
        rows = np.flatnonzero(m.health() < 1.0)
        free_ci, free_dj, _, cap_max = m.liquidation_pairs_and_caps(rows)
        p = m.prices()
        ref = {s: q * (0.8 if s in ("ETH", "BTC") else 1.0) for s, q in PRICES.items()}
        for case in range(30):
            view = BlockView(1, 12.0, 20.0, ref)
            budgets = []
            for _k in range(3):  # the block's three liquidators, in turn
                scale = rng.choice([0.0, 0.3, 0.999999, 1.0, 1.000001, 3.0, np.inf], size=len(m.assets))
                avail = {
                    s: float(c / q * f) if np.isfinite(f) else np.inf for s, c, q, f in zip(m.assets, cap_max, p, scale)
                }
                budgets.append(avail)
            for k, avail in enumerate(budgets):
                liq = _liquidator(m, pools, f"bot-{k}", avail)
                got = liq._pairs(m, rows, env.ledger, view)
                a = [avail[s] for s in m.assets]
                want = reference_pairs(m, rows, a)
                assert (got[0].tolist(), got[1].tolist()) == want, (seed, case, k)
                covered = all(x * q >= c for x, q, c in zip(a, p.tolist(), cap_max.tolist()))
                seen["covered" if covered else "binds"] += 1
                seen["the budget changes the pairs"] += want != (free_ci.tolist(), free_dj.tolist())
    assert min(seen.values()) >= 50, seen
