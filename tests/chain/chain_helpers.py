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
