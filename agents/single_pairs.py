"""The pair `LendingMarket.liquidation_pairs_and_caps` gives rows that hold one collateral and one debt, without its
(rows, A, A) search (issue 14: at 100,000 accounts every ranked row of most blocks holds one of each, and the search,
about 25 array operations on 20 rows, ran once or twice a block).

For such a row the search has one candidate: a pair needs collateral and debt above zero (`coll3 > 0`, `debt3 > 0`),
and a collateral or debt the row does not hold is 0 (or NaN: 0 x inf) there, which is not above zero. Every other
pair's profit is -inf, so `argmax` picks the held pair (i, j) whenever its profit is finite, and the search returns
(i, j) exactly when `ok` holds there and the profit is finite; otherwise (-1, -1).

`single_pairs` answers only where that is certain from bounds: the held balances, the indices, prices and bonus of
every asset and (under v3.3) each row's total debt USD all in [`LO`, `HI`] (a NaN fails), every fee in [-HI, HI], the
held collateral's liquidation threshold above zero, and no collateral flags or e-mode (the reserves' own terms for every
row). Then in the search, with products of at most four such factors staying far from float over- and underflow:
- coll3 = scaled x index x price x 1 and debt3 = scaled x index x price are in [LO^3, HI^3]: above zero, finite;
- the cap (the debt times 0.5 or 1, or under v3.3 the smaller of it and 0.5 x the total debt) is in [LO^3 / 2, HI^3];
- with a budget above zero for the debt asset (checked by the caller: the budget may be anything else, even inf), the
  repayment `min(cap, budget)` is above zero, and finite; the seizure asked `repay x bonus` is finite and at least 0;
  where it exceeds the collateral the repayment becomes coll3 / bonus, above zero; so `ok` holds;
- the seizure (at most coll3), the fee and the repayment (at most the cap, or coll3 / bonus) are finite, so is the
  profit: the search returns (i, j), whatever the budget.
Anything else (a row with two collaterals, a value out of bounds): None, and the caller runs the search."""

from __future__ import annotations

import numpy as np

from defistress.protocols.lending import LendingMarket

#: bounds of every factor `single_pairs` checks: products of four stay in [1e-120, 1e120], far from float limits
LO, HI = 1e-30, 1e30


def _within(x: np.ndarray) -> bool:
    """Every entry in [LO, HI] (a NaN is not)."""
    return bool(x.size) and bool(LO <= x.min()) and bool(x.max() <= HI)


def _per_asset(arrays: tuple[np.ndarray, ...], n_a: int, lo: float) -> bool:
    """Every entry of these (A,) arrays in [lo, HI] (a NaN is not), compared as Python floats (A is a few assets)."""
    return all(a.shape == (n_a,) for a in arrays) and all(lo <= v <= HI for a in arrays for v in a.tolist())


def single_pairs(m: LendingMarket, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(collateral index, debt index) per row of `rows` as `m.liquidation_pairs_and_caps(rows, budget)` returns them
    for any budget (USD per asset) above zero at the debt indices returned, or None where that is not certain."""
    lm = LendingMarket
    if (
        type(m).liquidation_pairs_and_caps is not lm.liquidation_pairs_and_caps
        or type(m).best_liquidation_pairs is not lm.best_liquidation_pairs
        or m._coll_on is not None
        or m._emode is not None
        or rows.ndim != 1
        or rows.size == 0
    ):
        return None
    n_a = len(m.assets)
    if not (_per_asset((m.liq_index, m.borrow_index, m.prices(), m.bonus), n_a, LO) and _per_asset((m.fee,), n_a, -HI)):
        return None
    cs, ds = m.coll_scaled.take(rows, axis=0), m.debt_scaled.take(rows, axis=0)
    held_c, held_d = cs != 0, ds != 0
    if not (bool((held_c.sum(axis=1) == 1).all()) and bool((held_d.sum(axis=1) == 1).all())):
        return None
    ci, dj = held_c.argmax(axis=1), held_d.argmax(axis=1)
    at = np.arange(rows.size)
    lt = m.lt.tolist()
    if not all(lt[i] > 0 for i in set(ci.tolist())):
        return None
    held = [cs[at, ci], ds[at, dj]]
    if m.rule != "aave-v3.0":
        held.append(m._account_values()["debt_usd"].take(rows))
    return (ci, dj) if _within(np.concatenate(held)) else None
