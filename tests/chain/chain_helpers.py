"""What several chain tests share: the session's reserve list and small readers."""

from __future__ import annotations

E18 = 10**18


def session_reserves():
    """Four reserves like Aave v3 Ethereum's first listings (bps); WBTC is an isolation-mode collateral here."""
    from defistress.protocols.evm.aave import RateParams, ReserveParams

    stable = RateParams(optimal_usage_ratio=0.90, variable_rate_slope2=0.60)
    return [
        ReserveParams(
            "WETH", 18, 2000, 8000, 8250, 10500, reserve_factor=1500, supply_cap=1_000_000, borrow_cap=500_000
        ),
        ReserveParams("WBTC", 8, 30000, 7000, 7500, 10650, reserve_factor=2000, debt_ceiling_usd=1_000_000),
        ReserveParams("USDC", 6, 1, 7700, 8000, 10450, emode_category=1, borrowable_in_isolation=True, rates=stable),
        ReserveParams("DAI", 18, 1, 7500, 8000, 10500, emode_category=1, borrowable_in_isolation=True, rates=stable),
    ]


def balances(m, user: str, coll: str, debt: str) -> tuple[int, int]:
    """(aToken balance of `coll`, variable debt of `debt`) of `user`, base units."""
    c = m.chain
    return (
        c.call(m.reserves[coll].a_token.functions.balanceOf(user)),
        c.call(m.reserves[debt].variable_debt.functions.balanceOf(user)),
    )


def populate(aave, n: int, seed: int = 7):
    """Open `n` accounts on the deployed Aave with the batched evm backend: one or several collateral assets and
    debts, some accounts in e-mode, some isolated on WBTC, some collateral switched off, about one in ten already
    below HF 1 (no account both supplies and owes one asset: the chain could not open it below HF 1). Returns the
    market (its mirror is the chain's, checked) and the accounts' addresses."""
    import numpy as np

    from defistress.protocols.evm.aave import default_emodes, model_emodes
    from defistress.protocols.evm.lending_backend import open_book

    prices = {s: aave.price(s) / 1e8 for s in aave.reserves}
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=n, p=[0.7, 0.15, 0.15])  # normal, e-mode, isolated on WBTC
    p = np.array([prices[s] for s in ("WETH", "WBTC", "USDC", "DAI")])
    usd = np.exp(rng.normal(np.log(20_000), 1.0, n)).clip(500, 500_000)
    coll = np.zeros((n, 4))
    enabled = np.zeros((n, 4), dtype=bool)
    debt_share = np.zeros((n, 4))
    normal, em, iso = kind == 0, kind == 1, kind == 2
    # normal: WETH, often USDC too, sometimes DAI switched off; they owe DAI and, if they hold no USDC, USDC too
    share = rng.dirichlet([2.0, 1.0], size=n)
    with_usdc = normal & (rng.random(n) < 0.5)
    coll[normal, 0] = usd[normal] * np.where(with_usdc[normal], share[normal, 0], 1.0)
    coll[with_usdc, 2] = usd[with_usdc] * share[with_usdc, 1]
    dai_off = normal & (rng.random(n) < 0.2)
    coll[dai_off, 3] = usd[dai_off] * 0.1
    debt_share[normal, 3] = 1.0
    both = normal & ~with_usdc
    debt_share[both, 2:] = rng.dirichlet([1.0, 1.0], size=int(both.sum()))
    # e-mode: USDC collateral, DAI debt; isolated: WBTC collateral (small: the ceiling is 1M USD), USDC debt
    coll[em, 2] = usd[em]
    debt_share[em, 3] = 1.0
    coll[iso, 1] = usd[iso] / 10
    debt_share[iso, 2] = 1.0
    enabled = coll > 0
    enabled[dai_off, 3] = False
    lt = np.where(em[:, None], 0.95, np.array([0.825, 0.75, 0.8, 0.8]))
    weighted = (coll * enabled * lt).sum(axis=1)
    hf = np.where(rng.random(n) < 0.1, rng.uniform(0.7, 0.99, n), rng.uniform(1.05, 2.5, n))
    debt = (weighted / hf)[:, None] * debt_share / p
    coll = coll / p
    addresses, m = open_book(
        aave, coll, debt, enabled, np.where(kind == 1, 1, 0), model_emodes(default_emodes()), "seed"
    )
    return m, addresses
