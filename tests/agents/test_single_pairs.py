"""`single_pairs` (the pair of rows holding one collateral and one debt, issue 14) against the search it stands in
for, `LendingMarket.liquidation_pairs_and_caps`: wherever it answers, the search gives the same pairs bit for bit
(values and dtype) with no budget and with budgets from the smallest subnormal to inf; it answers for every factor
at its bounds and for none one ulp outside them, NaN, inf, zero, -0.0 or negative; not for two collaterals, two debts,
a collateral with liquidation threshold 0, collateral flags or e-mode; and `Liquidator._pairs`, which takes it where
every budget is above zero, gives the pairs the search gives with the liquidator's budget."""

from __future__ import annotations

from types import SimpleNamespace

import mesa
import numpy as np
import pytest

from defistress.agents.liquidator import Liquidator
from defistress.agents.single_pairs import HI, LO, single_pairs
from defistress.agents.tx import BlockView
from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.lending import AssetParams, LendingMarket

ASSETS = [
    AssetParams("ETH", 0.80, 0.825, 0.05, protocol_fee=0.10),
    AssetParams("USDC", 0.77, 0.80, 0.045, protocol_fee=0.10),
    AssetParams("DAI", 0.75, 0.80, 0.05, protocol_fee=0.15),
    AssetParams("ZLT", 0.0, 0.0, 0.10, protocol_fee=0.20),  # counts as no collateral (LT 0)
]
PRICES = {"ETH": 2_000.0, "USDC": 1.0, "DAI": 1.0, "ZLT": 3.0}
RULES = ["aave-v3.0", "aave-v3.3"]
#: budgets (USD per asset) the search is run with: none, the smallest subnormal, small, large, inf
BUDGETS = [None, 5e-324, 1e-3, 1e4, 1e300, np.inf]


def market(rule: str, coll: np.ndarray, debt: np.ndarray) -> tuple[LendingMarket, dict[str, FixedPrice]]:
    """A market of the four assets whose rows hold `coll` and `debt` (tokens, (n, 4)), written in the scaled arrays."""
    oracles = {s: FixedPrice(p, s) for s, p in PRICES.items()}
    m = LendingMarket("lend", ASSETS, oracles, Env(), rule)
    m.add_accounts(coll.shape[0])
    m.coll_scaled[:] = coll
    m.debt_scaled[:] = debt
    m._touch()
    return m, oracles


def searched(m: LendingMarket, rows: np.ndarray, budget) -> tuple[np.ndarray, np.ndarray]:
    b = None if budget is None else np.full(len(m.assets), budget)
    with np.errstate(all="ignore"):
        ci, dj, _, _ = m.liquidation_pairs_and_caps(rows, b)
    return ci, dj


def same_as_search(m: LendingMarket, rows: np.ndarray) -> bool:
    """Whether `single_pairs` answers for `rows`; where it does, the search's pairs with every budget must be its."""
    got = single_pairs(m, rows)
    if got is None:
        return False
    for budget in BUDGETS:
        ci, dj = searched(m, rows, budget)
        assert got[0].dtype == ci.dtype and got[1].dtype == dj.dtype
        assert got[0].tolist() == ci.tolist() and got[1].tolist() == dj.tolist(), budget
    return True


def one_pair_book(rng: np.random.Generator, n: int, mixed: float) -> tuple[np.ndarray, np.ndarray]:
    """`n` rows with one collateral (any asset, LT-0 one included) and one debt, a share `mixed` of them with a second
    collateral or debt; sizes over ten orders of magnitude, health factors either side of 1 and of 0.95."""
    coll, debt = np.zeros((n, 4)), np.zeros((n, 4))
    for r in range(n):
        i, j = rng.integers(0, 4), rng.integers(0, 3)
        usd = float(10 ** rng.uniform(-3, 7))
        coll[r, i] = usd / PRICES[ASSETS[i].symbol]
        debt[r, j] = usd * rng.uniform(0.5, 1.1) / PRICES[ASSETS[j].symbol]
        if rng.random() < mixed:
            k = rng.integers(0, 4)
            (coll if rng.random() < 0.5 else debt)[r, k] += usd / PRICES[ASSETS[k].symbol]
    return coll, debt


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_where_it_answers_the_search_gives_its_pairs_with_any_budget(rule: str, seed: int):
    rng = np.random.default_rng(seed)
    m, oracles = market(rule, *one_pair_book(rng, 60, 0.1))
    answered = declined = 0
    for _ in range(120):
        oracles["ETH"].price = float(rng.uniform(500.0, 3_000.0))
        m._touch()
        size = int(rng.integers(1, 7))
        rows = rng.choice(60, size, replace=bool(rng.random() < 0.2))
        if same_as_search(m, rows):
            answered += 1
        else:
            declined += 1
    assert answered > 20 and declined > 20, (answered, declined)


def test_it_declines_rows_with_two_collaterals_two_debts_or_a_threshold_of_zero():
    coll = np.array([[1.0, 10.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 100.0], [1.0, 0, 0, 0]])
    debt = np.array([[0, 1_000.0, 0, 0], [0, 500.0, 500.0, 0], [0, 100.0, 0, 0], [0, 1_000.0, 0, 0]])
    m, _ = market("aave-v3.3", coll, debt)
    for r in range(3):
        assert single_pairs(m, np.array([r])) is None
    assert same_as_search(m, np.array([3]))
    assert single_pairs(m, np.array([3, 0])) is None  # one row that does not qualify: the whole call declines
    assert single_pairs(m, np.array([], dtype=np.int64)) is None


def _perturbed(rule: str, what: str, value: float) -> tuple[LendingMarket, np.ndarray]:
    """A one-row book (1 ETH against 1,500 USDC: liquidatable) with one factor set to `value`."""
    m, oracles = market(rule, np.array([[1.0, 0, 0, 0]]), np.array([[0, 1_500.0, 0, 0]]))
    if what == "collateral":
        m.coll_scaled[0, 0] = value
    elif what == "debt":
        m.debt_scaled[0, 1] = value
    elif what in ("price ETH", "price USDC", "price DAI"):
        oracles[what.split()[1]].price = value
    else:  # a per-asset array: liq_index, borrow_index, bonus, fee of asset 0, 1 or 2
        name, k = what.rsplit(" ", 1)
        getattr(m, name)[int(k)] = value
    m._touch()
    return m, np.array([0])


FACTORS = [
    "collateral",
    "debt",
    "price ETH",
    "price USDC",
    "price DAI",  # an asset the row does not hold: checked too (0 x inf would be NaN)
    "liq_index 0",
    "borrow_index 1",
    "liq_index 2",
    "bonus 0",
]
INSIDE = [LO, HI, 1.0, 0.5, 3.0]
OUTSIDE = [np.nextafter(LO, 0.0), np.nextafter(HI, np.inf), 0.0, -0.0, -1.0, np.nan, np.inf, -np.inf, 1e-200, 1e200]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("what", FACTORS)
def test_it_answers_at_its_bounds_and_declines_one_ulp_outside(rule: str, what: str):
    debt_side = what in ("price USDC", "borrow_index 1")
    for value in INSIDE:
        m, rows = _perturbed(rule, what, value)
        if rule == "aave-v3.3" and debt_side and value == HI:  # the row's total debt, 1,500 x HI USD, is above HI
            assert single_pairs(m, rows) is None
        else:
            assert same_as_search(m, rows), (what, value)
    for value in OUTSIDE:
        m, rows = _perturbed(rule, what, value)
        assert single_pairs(m, rows) is None, (what, value)


@pytest.mark.parametrize("rule", RULES)
def test_the_fee_may_be_any_finite_number_within_the_bound(rule: str):
    for value in (0.0, -0.0, 1.0, -HI, HI, 0.999):
        m, rows = _perturbed(rule, "fee 0", value)
        assert same_as_search(m, rows), value
    for value in (np.nan, np.inf, -np.inf, np.nextafter(HI, np.inf)):
        m, rows = _perturbed(rule, "fee 0", value)
        assert single_pairs(m, rows) is None, value


def test_v33_total_debt_out_of_bounds_declines():
    m, rows = _perturbed("aave-v3.3", "debt", 1e-40)  # total debt 1e-40 USD: below LO
    assert single_pairs(m, rows) is None
    m, rows = _perturbed("aave-v3.0", "debt", 1e-40)  # scaled debt below LO declines under v3.0 too
    assert single_pairs(m, rows) is None


def test_collateral_flags_and_emode_decline():
    m, _ = market("aave-v3.3", np.array([[1.0, 0, 0, 0], [0, 100.0, 0, 0]]), np.array([[0, 1_500.0, 0, 0], [0] * 4]))
    assert same_as_search(m, np.array([0]))
    m.set_collateral(np.array([1]), "USDC", False)  # a collateral flag off on another row: the account model
    assert m._coll_on is not None and single_pairs(m, np.array([0])) is None
    m, _ = market("aave-v3.3", np.array([[1.0, 0, 0, 0]]), np.array([[0, 1_500.0, 0, 0]]))
    m._emode = np.zeros(1, dtype=np.int64)
    assert single_pairs(m, np.array([0])) is None


def reference_pairs(m: LendingMarket, rows: np.ndarray, avail: list[float]) -> tuple[list[int], list[int]]:
    """`Liquidator._pairs` before `single_pairs`: the pairs of no budget where the budget covers every cap, else the
    search with the budget."""
    ci, dj, _, cap_max = m.liquidation_pairs_and_caps(rows)
    if not all(a * q >= c for a, q, c in zip(avail, m.prices().tolist(), cap_max.tolist())):
        ci, dj, _ = m.best_liquidation_pairs(rows, np.array(avail) * m.prices())
    return ci.tolist(), dj.tolist()


@pytest.mark.parametrize("rule", RULES)
def test_the_liquidators_pairs_are_the_searched_ones_with_budgets_zero_small_or_inf(rule: str):
    rng = np.random.default_rng(11)
    m, oracles = market(rule, *one_pair_book(rng, 40, 0.1))
    taken = 0
    for block in range(60):
        oracles["ETH"].price = float(rng.uniform(500.0, 3_000.0))
        m._touch()
        rows = np.sort(rng.choice(40, int(rng.integers(1, 12)), replace=False))
        view = BlockView(block, 12.0 * block, 20.0, dict(PRICES))
        for k in range(3):  # the block's liquidators share what they can through the view
            avail = {s: float(rng.choice([0.0, 5e-324, 1.0, 1e5, np.inf])) for s in m.assets}
            funding = SimpleNamespace(mode="capital", lender=None, available=lambda ledger, h, s, c, a=avail: a[s])
            spec = SimpleNamespace(latency_blocks=0, max_tx_per_block=3, min_profit_usd=1.0)
            liq = Liquidator(mesa.Model(rng=0), f"bot-{k}", spec, [m], [], 500_000, lambda: 2_000.0, funding)
            with np.errstate(all="ignore"):
                got = liq._pairs(m, rows, None, view)
                want = reference_pairs(m, rows, [avail[s] for s in m.assets])
            assert (got[0].tolist(), got[1].tolist()) == want, (block, k)
            taken += single_pairs(m, rows) is not None and all(avail[m.assets[j]] > 0 for j in got[1].tolist())
    assert taken > 10, taken
