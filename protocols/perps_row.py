"""One account's equity and maintenance requirement on a one-market perp DEX, in Python floats.

`PerpDex._row_values` prices a few accounts with numpy (a gather of each array, a matrix product, row sums); for
one account in one market those dozen array calls cost far more than the arithmetic. This is the same arithmetic
on floats, in the same order, with each length-one product and row sum written as numpy evaluates it: a sum
starts from +0.0 (so 0.0 + x, which turns -0.0 into +0.0 and leaves every other value as it is). Formulas: dYdX
TNC = collateral + Σ size·price − Σ entry notional + funding owed, TMMR = Σ |size|·price·MMF
(protocol/x/perpetuals/types/liquidity_tier.go, x/subaccounts).
"""

from __future__ import annotations


def one_row_values(
    collateral_usd: float,
    size: float,
    entry_notional_usd: float,
    funding_snapshot_usd: float,
    funding_index_usd: float,
    price_usd: float,
    mmf: float,
) -> tuple[float, float]:
    """(equity USD, maintenance requirement USD) of one account in one market.

    `size` is in underlying units (signed), the funding snapshot and index in USD per unit, the price in USD per
    unit, `mmf` the maintenance margin fraction. Equal bits to `PerpDex._row_values` on that row for finite
    inputs (the DEX keeps non-finite ones in the array code: `PerpDex._fill_few` says why).
    """
    upnl = 0.0 + size * price_usd  # size @ price: one product, summed from +0.0
    entry = 0.0 + entry_notional_usd  # entry_notional.sum(axis=1) over one market
    funding = 0.0 + (funding_snapshot_usd - funding_index_usd) * size  # (snapshot − index)·size summed
    equity = collateral_usd + upnl - entry + funding
    mmr = 0.0 + abs(size) * (price_usd * mmf)  # |size| @ (price·mmf)
    return equity, mmr
