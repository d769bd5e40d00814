"""One account's fill in one perp market, in Python floats: `PerpDex._fill` (after `_settle_funding`) on one row.

`PerpDex._fill` changes a few distinct accounts' positions with a dozen numpy calls; liquidations, deleveraging
and the liquidators' unwinds fill two accounts at a time, where those calls cost far more than the arithmetic.
The steps are elementwise, so each row alone in floats gives the same bits when every numpy rule is kept:
`np.sign` (NaN for NaN, zero for either zero), `np.minimum` (NaN wins), `np.where` (picks; no branch raises).
Fill rule: dYdX v4 x/subaccounts UpdateSubaccounts: funding settled into the quote balance first, then the
closed fraction's PnL realised at the fill price; the quote balance is collateral − entry notional.
"""

from __future__ import annotations


def _sign(x: float) -> float:
    """np.sign on a float: -1.0, 0.0 or 1.0, NaN for NaN."""
    if x != x:
        return x
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


def fill_one(
    collateral_usd: float,
    size: float,
    entry_notional_usd: float,
    funding_snapshot_usd: float,
    funding_index_usd: float,
    delta: float,
    price_usd: float,
) -> tuple[float, float, float]:
    """(collateral USD, size, entry notional USD) of one account after settling its funding (owed = size ·
    (snapshot − index), USD) and changing its position by `delta` underlying units at `price_usd` per unit; its
    funding snapshot becomes the index. Equal bits to `_settle_funding` then `_fill` on that row for finite inputs
    (the DEX keeps non-finite ones in the array code: `PerpDex._fill_few` says why)."""
    collateral_usd = collateral_usd + size * (funding_snapshot_usd - funding_index_usd)
    s, e = size, entry_notional_usd
    same = s == 0 or _sign(delta) == _sign(s)
    if same:
        frac = 0.0
    else:
        q = abs(delta) / abs(s)  # s != 0 here (a zero size is `same`)
        frac = q if (q != q or q < 1.0) else 1.0  # np.minimum(q, 1.0): NaN wins
    s_new = s + delta
    flipped = not same and abs(delta) > abs(s)
    collateral_usd = collateral_usd + frac * (s * price_usd - e)  # realised PnL of the closed fraction
    if same:
        entry = e + delta * price_usd
    elif flipped:
        entry = s_new * price_usd
    else:
        entry = e * (1.0 - frac)
    return collateral_usd, s_new, entry
