"""The liquidators' pair search and previews (`LendingMarket.liquidation_pairs_and_caps`, `preview`,
`max_debt_to_cover`, `cap_and_preview`, `preview_within`) against the versions they replaced (issue 14), kept here
verbatim as the reference: the same floats bit for bit (NaN payloads and signed zeros included) on crafted books
(both close-factor rules, the v3.3 $2,000 thresholds and HF 0.95 edges, flags off, e-mode, zero / NaN / inf balances)
and random ones. The figures themselves are checked by hand in tests/test_lending_pairs.py and
tests/protocols/test_lending_reference.py; this file pins that the faster code computes the same ones."""

from __future__ import annotations

import struct
from typing import cast

import numpy as np
import pytest

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.lending import (
    CLOSE_FACTOR_HF_THRESHOLD,
    DEFAULT_LIQUIDATION_CLOSE_FACTOR,
    MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD,
    AssetParams,
    LendingMarket,
    Preview,
)
from defistress.protocols.lending_accounts import EModeCategory

ETH = AssetParams("ETH", 0.80, 0.825, 0.05, protocol_fee=0.10)
USDC = AssetParams("USDC", 0.77, 0.80, 0.045, emode_category=1, protocol_fee=0.10)
DAI = AssetParams("DAI", 0.75, 0.80, 0.05, emode_category=1, protocol_fee=0.15)
ZERO_LT = AssetParams("ZLT", 0.0, 0.0, 0.10, protocol_fee=0.20)  # counts as no collateral (LT 0)
STABLES = EModeCategory(1, 0.93, 0.95, 0.01, "Stablecoins")
PRICES = {"ETH": 2_000.0, "USDC": 1.0, "DAI": 1.0, "ZLT": 3.0}


# --- the reference: the functions as they were before issue 14's change (verbatim but for `self` -> `m`) -----------
def ref_pairs_and_caps(m: LendingMarket, rows: np.ndarray, budget_usd: np.ndarray | None = None):
    rows = np.atleast_1d(np.asarray(rows))
    r, n_a = rows.size, len(m.assets)
    ci, dj, best = np.full(r, -1), np.full(r, -1), np.full(r, -np.inf)
    if r == 0:
        return ci, dj, best, np.zeros(n_a)
    p = m.prices()
    v = m._account_values()
    if m._emode is None:
        price, bonus, lt = p, m.bonus[None, :], m.lt
    else:
        emode = m.user_emode[rows]
        price = np.empty((r, n_a))
        bonus = np.empty((r, n_a))
        lt = np.empty((r, n_a))
        for c in np.unique(emode):
            t = m._terms(int(c), p)
            mask = emode == c
            price[mask], bonus[mask], lt[mask] = t.price, t.bonus, t.lt
    coll = m._counted_collateral(rows) * m.liq_index * price * (lt > 0)
    debt = m.debt_scaled[rows] * m.borrow_index * price
    hf = v["hf"][rows]
    if m.rule == "aave-v3.0":
        cf = np.where(hf > CLOSE_FACTOR_HF_THRESHOLD, DEFAULT_LIQUIDATION_CLOSE_FACTOR, 1.0)
        cap = np.broadcast_to((debt * cf[:, None])[:, None, :], (r, n_a, n_a))
    else:
        big = (coll[:, :, None] >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD) & (
            debt[:, None, :] >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
        )
        half = np.minimum(debt, DEFAULT_LIQUIDATION_CLOSE_FACTOR * v["debt_usd"][rows][:, None])
        cap = np.where(big & (hf > CLOSE_FACTOR_HF_THRESHOLD)[:, None, None], half[:, None, :], debt[:, None, :])
    cap_max = cap.max(axis=(0, 1))
    repay = cap if budget_usd is None else np.minimum(cap, np.asarray(budget_usd, float)[None, None, :])
    b = bonus[:, :, None]
    seized = np.minimum(repay * b, coll[:, :, None])
    repay = np.where(repay * b > coll[:, :, None], coll[:, :, None] / b, repay)
    fee = (seized - seized / b) * m.fee[None, :, None]
    profit = seized - fee - repay
    ok = (coll[:, :, None] > 0) & (debt[:, None, :] > 0) & (repay > 0)
    profit = np.where(ok, profit, -np.inf).reshape(r, -1)
    k = profit.argmax(axis=1)
    best = profit[np.arange(r), k]
    has = np.isfinite(best)
    ci[has], dj[has] = (k // n_a)[has], (k % n_a)[has]
    return ci, dj, best, cap_max


def ref_max_debt_to_cover(m: LendingMarket, account: int, debt_asset: str, collateral_asset: str | None = None):
    j = m.idx[debt_asset]
    v = m._account_values()
    hf = v["hf"][account]
    reserve_debt = cast(float, m._balance(m.debt_scaled[account, j] * m.borrow_index[j], j))
    if m.rule == "aave-v3.0":
        cf = DEFAULT_LIQUIDATION_CLOSE_FACTOR if hf > CLOSE_FACTOR_HF_THRESHOLD else 1.0
        return cast(float, m._balance(np.multiply(reserve_debt, cf), j))
    p = m._row_terms(account).price
    if collateral_asset is None:
        reserve_coll_usd = v["coll_usd"][account]
    else:
        i = m.idx[collateral_asset]
        reserve_coll_usd = m.coll_scaled[account, i] * m.liq_index[i] * p[i]
    if (
        reserve_coll_usd >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
        and reserve_debt * p[j] >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
        and hf > CLOSE_FACTOR_HF_THRESHOLD
    ):
        return min(reserve_debt, DEFAULT_LIQUIDATION_CLOSE_FACTOR * v["debt_usd"][account] / p[j])
    return reserve_debt


def ref_preview(m: LendingMarket, account: int, collateral_asset: str, debt_asset: str, debt_to_cover: float):
    i, j = m.idx[collateral_asset], m.idx[debt_asset]
    t = m._row_terms(account)
    p, bonus = t.price, t.bonus
    debt = min(debt_to_cover, ref_max_debt_to_cover(m, account, debt_asset, collateral_asset))
    coll_balance = cast(float, m._balance(m.coll_scaled[account, i] * m.liq_index[i], i))
    seized = debt * p[j] / p[i] * bonus[i]
    if seized > coll_balance:
        seized = coll_balance
        debt = coll_balance * p[i] / p[j] / bonus[i]
    fee = (seized - seized / bonus[i]) * m.fee[i]
    return Preview(debt, seized - fee, fee, debt * p[j], (seized - fee) * p[i])


# --- bit-for-bit comparison -------------------------------------------------------------------------------------
def bits(x) -> tuple:
    """A value's type and exact bits (arrays: dtype, shape, bytes; floats: the IEEE double)."""
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.shape, x.tobytes())
    if isinstance(x, Preview):
        return ("preview",) + tuple(bits(getattr(x, f)) for f in Preview.__dataclass_fields__)
    if isinstance(x, tuple):
        return tuple(bits(y) for y in x)
    return (type(x).__name__, struct.pack("<d", float(x)))


def test_bits_tell_apart_signed_zeros_nan_payloads_types_and_dtypes():
    assert bits(0.0) != bits(-0.0)
    assert bits(np.float64(1.0)) != bits(1.0)
    assert bits(np.array([1, 2])) != bits(np.array([1.0, 2.0]))
    assert bits(np.array([np.nan])) != bits(np.array([-np.nan]))
    assert bits(Preview(1.0, 2.0, 3.0, 4.0, 5.0)) != bits(Preview(1.0, 2.0, 3.0, 4.0, 5.5))


# --- books ------------------------------------------------------------------------------------------------------
def market(rule: str, precision: str = "float") -> tuple[LendingMarket, dict[str, FixedPrice]]:
    env = Env()
    oracles = {s: FixedPrice(p, s) for s, p in PRICES.items()}
    m = LendingMarket("lend", [ETH, USDC, DAI, ZERO_LT], oracles, env, rule, [STABLES], None, precision)
    return m, oracles


def set_book(m: LendingMarket, coll: np.ndarray, debt: np.ndarray, flags_off=(), emode_rows=()) -> None:
    """Write balances (token units) straight into the scaled arrays (the pure views are compared, not the ledger)."""
    n = coll.shape[0]
    m.add_accounts(n - m.n_accounts)
    m.coll_scaled[:] = coll / m.liq_index
    m.debt_scaled[:] = debt / m.borrow_index
    for row, k in flags_off:
        m._flags()[row, k] = False
    if len(emode_rows):
        m._emode = np.zeros(n, dtype=np.int64)
        m._emode[list(emode_rows)] = 1
    m._touch()


def crafted(rule: str, precision: str = "float") -> LendingMarket:
    """Rows at the v3.3 edges: reserves of exactly 2,000 USD (and a cent either side), HF exactly 0.95 and 1, zero,
    NaN and inf balances, a disabled collateral, rows in e-mode, a collateral with LT 0."""
    m, _ = market(rule, precision)
    e = np.array([1e-2, 1e-2 * 2_000, 1e-2 * 2_000, 0.0])  # a tiny scale for the rows below
    rows_c, rows_d = [], []

    def row(c, d):
        rows_c.append(np.array(c, float))
        rows_d.append(np.array(d, float))

    row([1.0, 0, 0, 0], [0, 2_000.0, 0, 0])  # 2,000 USD of collateral and debt exactly
    row([1.0, 0, 0, 0], [0, 1_999.99, 0, 0])
    row([1.000005, 0, 0, 0], [0, 2_000.01, 0, 0])
    row([0.95, 0, 0, 0], [0, 1_650.0, 0, 0])  # 1,900 · 0.825 / 1,650 = 0.95: HF exactly at the threshold
    row([2.0, 0, 0, 0], [0, 3_300.0, 0, 0])  # HF exactly 1
    row([10.0, 5_000.0, 0, 0], [0, 10_000.0, 9_000.0, 0])  # two debts, two collaterals (USDC below 2,000? no)
    row([10.0, 1_999.0, 0, 0], [0, 0, 16_000.0, 0])  # a USDC reserve below 2,000 USD
    row([0.0, 0, 0, 0], [0, 100.0, 0, 0])  # no collateral
    row([1.0, 0, 0, 0], [0, 0, 0, 0])  # no debt
    row([np.nan, 0, 0, 0], [0, 1_000.0, 0, 0])
    row([1.0, 0, 0, 0], [0, np.nan, 0, 0])
    row([np.inf, 0, 0, 0], [0, 1_000.0, 0, 0])
    row([1.0, 0, 0, 0], [0, np.inf, 0, 0])
    row([1.0, 0, 0, 1_000.0], [0, 1_800.0, 0, 0])  # collateral with LT 0 beside ETH
    row([0, 0, 0, 1_000.0], [0, 1_800.0, 0, 0])  # only LT-0 collateral: no pair
    row([0, 10_000.0, 0, 0], [0, 0, 9_800.0, 0])  # e-mode below
    row([0, 10_000.0, 0, 0], [0, 0, 9_300.0, 0])  # e-mode, HF 9,500 / 9,300 > 0.95
    row([5.0, 4_000.0, 0, 0], [0, 0, 9_000.0, 0])  # USDC disabled below
    row(list(e), [0, 0, 1.0, 0])  # dust
    row([-0.0, 0, 0, 0], [0, 1.0, 0, 0])  # a negative zero balance
    n = len(rows_c)
    set_book(m, np.array(rows_c), np.array(rows_d), flags_off=[(17, 1)], emode_rows=[15, 16])
    assert m.n_accounts == n
    return m


def random_book(rule: str, precision: str, seed: int, special: bool) -> tuple[LendingMarket, dict[str, FixedPrice]]:
    rng = np.random.default_rng(seed)
    m, o = market(rule, precision)
    n, a = 80, 4
    scale = np.array([5.0, 8_000.0, 8_000.0, 2_000.0])
    coll = rng.exponential(1.0, (n, a)) * scale * (rng.random((n, a)) < 0.6)
    debt = rng.exponential(1.0, (n, a)) * scale * 900 * (rng.random((n, a)) < 0.5)
    debt[:, 0] /= 1_000.0  # ETH debt in ETH
    debt[:, 3] = 0.0
    flags = [(int(r), int(k)) for r, k in zip(rng.integers(0, n, 8), rng.integers(0, a, 8))] if special else []
    emode = sorted(set(rng.integers(0, n, 10).tolist())) if special else []
    set_book(m, coll, debt, flags, emode)
    o["ETH"].price = float(rng.uniform(800.0, 2_400.0))
    o["DAI"].price = float(rng.uniform(0.97, 1.03))
    return m, o


RULES = ["aave-v3.0", "aave-v3.3"]


def compare_pairs(m: LendingMarket, rows: np.ndarray, budgets) -> None:
    with np.errstate(all="ignore"):
        for budget in budgets:
            assert bits(m.liquidation_pairs_and_caps(rows, budget)) == bits(ref_pairs_and_caps(m, rows, budget))
            assert bits(m.best_liquidation_pairs(rows, budget)) == bits(ref_pairs_and_caps(m, rows, budget)[:3])


def compare_previews(m: LendingMarket, rows, amounts=(np.inf, 0.0, 1.0, 700.0, 1e-9)) -> None:
    with np.errstate(all="ignore"):
        for a in rows:
            a = int(a)
            for d in m.assets:
                assert bits(m.max_debt_to_cover(a, d)) == bits(ref_max_debt_to_cover(m, a, d))
                for c in m.assets:
                    cap = ref_max_debt_to_cover(m, a, d, c)
                    assert bits(m.max_debt_to_cover(a, d, c)) == bits(cap)
                    for amount in (*amounts, cap, cap * 0.5):
                        want = ref_preview(m, a, c, d, amount)
                        assert bits(m.preview(a, c, d, amount)) == bits(want)
                        assert bits(m.cap_and_preview(a, c, d, amount)) == bits((cap, want))
                        assert bits(m.preview_within(a, c, d, amount, cap)) == bits(want)


BUDGETS = [None, np.array([1e12, 1e12, 1e12, 1e12]), np.array([1_000.0, 500.0, 0.0, 1e9]), np.full(4, np.nan)]


@pytest.mark.parametrize("precision", ["float", "aave-v3"])
@pytest.mark.parametrize("rule", RULES)
def test_crafted_books_give_the_reference_pairs_caps_and_previews(rule, precision):
    m = crafted(rule, precision)
    rows = np.arange(m.n_accounts)
    compare_pairs(m, rows, BUDGETS)
    compare_pairs(m, rows[::-1][:5], BUDGETS)  # a subset, in another order
    compare_pairs(m, np.array([3]), BUDGETS)  # one row
    compare_pairs(m, np.array(4), [None])  # a 0-d row
    compare_previews(m, rows)


@pytest.mark.parametrize("rule", RULES)
def test_no_rows_give_the_reference_empty_pairs(rule):
    m = crafted(rule)
    out = m.liquidation_pairs_and_caps(np.array([], dtype=np.int64))
    assert bits(out) == bits(ref_pairs_and_caps(m, np.array([], dtype=np.int64)))
    assert bits(m.best_liquidation_pairs(np.array([], dtype=np.int64))) == bits(out[:3])


@pytest.mark.parametrize("special", [False, True])
@pytest.mark.parametrize("precision", ["float", "aave-v3"])
@pytest.mark.parametrize("rule", RULES)
def test_random_books_give_the_reference_pairs_caps_and_previews(rule, precision, special):
    for seed in range(3):
        m, _ = random_book(rule, precision, seed, special)
        rows = np.arange(m.n_accounts)
        rng = np.random.default_rng(seed + 100)
        budgets = [None, rng.uniform(0.0, 50_000.0, 4), np.array([np.inf, 0.0, 5_000.0, np.inf])]
        compare_pairs(m, rows, budgets)
        compare_pairs(m, rng.permutation(rows)[:17], budgets)
        compare_previews(m, rows[:: 7 if seed else 3])


def test_a_subclass_cap_is_the_one_preview_uses():
    """A market class with its own `max_debt_to_cover` keeps it in `preview` and `cap_and_preview`."""

    class Capped(LendingMarket):
        def max_debt_to_cover(self, account: int, debt_asset: str, collateral_asset: str | None = None) -> float:
            return 100.0 if (account, debt_asset, collateral_asset) == (0, "USDC", "ETH") else 7.0

    env = Env()
    m = Capped("lend", [ETH, USDC], {s: FixedPrice(PRICES[s], s) for s in ("ETH", "USDC")}, env, "aave-v3.0", [STABLES])
    set_book(m, np.array([[10.0, 0.0]]), np.array([[0.0, 15_000.0]]))
    m.oracles[0].price = 1_800.0
    # repay 100 USDC of a 7,500 cap: 105 USD of ETH seized, 0.5 of it the fee: (105 - 0.5) / 1,800 ETH to the liquidator
    cap, pv = m.cap_and_preview(0, "ETH", "USDC", np.inf)
    assert cap == 100.0 and pv.debt_to_repay == 100.0
    assert pv.collateral_seized == pytest.approx(104.5 / 1_800.0, rel=1e-12)
    assert m.preview(0, "ETH", "USDC", np.inf).debt_to_repay == 100.0


def test_v30_cap_does_not_read_the_collateral_named_and_v33_refuses_an_unknown_one():
    """Under v3.0 the cap is the reserve debt times the close factor whatever collateral is named (as before);
    v3.3 reads the named reserve, so an unknown name is an error."""
    m = crafted("aave-v3.0")
    # row 5: 10,000 USDC of debt, HF = (20,000 · 0.825 + 5,000 · 0.80) / 19,000 = 1.08 > 0.95: half, 5,000 USDC
    assert m.max_debt_to_cover(5, "USDC", "NOPE") == m.max_debt_to_cover(5, "USDC") == 5_000.0
    with pytest.raises(KeyError):
        crafted("aave-v3.3").max_debt_to_cover(5, "USDC", "NOPE")
