"""`PerpDex._check_accounts` checks one int64 index as a Python int: the same rows (a new array), the same
reverts, as the array code kept here as the reference, for every kind of input."""

from __future__ import annotations

import numpy as np
import pytest

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams


def ref_check(n: int, accounts, unique: bool = False):
    """The array code before the one-index path: the rows, or None where it reverts."""
    rows = np.atleast_1d(np.asarray(accounts)).astype(np.int64).ravel()
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        return None
    if unique and np.unique(rows).size != rows.size:
        return None
    return rows


def dex_of(n: int) -> PerpDex:
    env = Env()
    dex = PerpDex(
        PerpDexParams(markets=[PerpMarketParams(asset="ETH")], insurance_fund_usd=0.0),
        {"ETH": FixedPrice(2000.0)},
        env,
    )
    if n:
        env.ledger.mint("USDC", "pop", 1e6, "test")
        dex.open_accounts("pop", [100.0] * n, [[1.0], [-1.0]] * (n // 2), [[2000.0]] * n)
    return dex


INPUTS = [
    np.array([0]),
    np.array([3]),
    np.array([4]),  # n: out of range
    np.array([-1]),
    np.array([-5]),
    np.array([2], dtype=np.int32),
    np.array([2], dtype=np.uint64),
    np.array([[1]]),
    np.array([1, 1]),
    np.array([0, 3]),
    np.zeros(0, dtype=np.int64),
    2,
    [1],
    np.int64(3),
    np.array([2.0]),
]


@pytest.mark.parametrize("n", [0, 4])
@pytest.mark.parametrize("unique", [False, True])
@pytest.mark.parametrize("accounts", INPUTS, ids=repr)
def test_check_accounts_matches_the_array_code(n, unique, accounts):
    dex = dex_of(n)
    want = ref_check(n, accounts, unique)
    if want is None:
        with pytest.raises(Revert, match="out of range|distinct"):
            dex._check_accounts(accounts, unique)
        return
    got = dex._check_accounts(accounts, unique)
    assert got.dtype == np.int64 and got.shape == want.shape and np.array_equal(got, want)
    if isinstance(accounts, np.ndarray):
        assert not np.shares_memory(got, accounts)  # a new array: the caller's is never handed back


def test_the_one_index_path_returns_a_copy_the_caller_may_change():
    dex = dex_of(4)
    given = np.array([2])
    rows = dex._check_accounts(given)
    rows[0] = 0
    assert given[0] == 2
