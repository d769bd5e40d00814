"""Whether a refresh may keep a side's values (`LendingMarket._same_products`): on a large book the answer comes from
the row-sparse columns kept by `RowSparsity` (`known_clean`, `holds`) instead of the scaled total and a strided column
read. The reference below is the previous implementation (the total, then the column itself): both must give the same
answer on crafted books (cancelling balances, -0.0, NaN, two assets on a row, an emptied asset) and random histories,
at the lowered gate (the new path) and at the default one (small books: the reference path)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from defistress.protocols import lending as lending_module
from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.lending import AssetParams, LendingMarket
from defistress.protocols.lending_rows import RowSparsity

ASSETS = [
    AssetParams("ETH", 0.80, 0.825, 0.05),
    AssetParams("BTC", 0.70, 0.75, 0.065),
    AssetParams("USDC", 0.75, 0.78, 0.045),
    AssetParams("ISO", 0.50, 0.60, 0.10),
]
PRICES = {"ETH": 2_000.0, "BTC": 60_000.0, "USDC": 1.0, "ISO": 10.0}


def reference_same_products(m: LendingMarket, side: str, *pairs: tuple[np.ndarray, np.ndarray]) -> bool:
    """The previous `_same_products`: moved entries finite and positive, then each moved asset's scaled total and
    column (no cache of the columns' emptiness: the same answer, read afresh)."""
    moved = []
    for new, old in pairs:
        for j, (a, b) in enumerate(zip(new.tolist(), old.tolist())):
            if a == b and math.copysign(1.0, a) == math.copysign(1.0, b):
                continue
            if not (0.0 < a < math.inf and 0.0 < b < math.inf):
                return False
            moved.append(j)
    if not moved:
        return True
    arr = m.coll_scaled if side == "coll" else m.debt_scaled
    total = (np.ones(arr.shape[0]) @ arr).tolist()
    if any(total[j] != 0 for j in moved):
        return False
    return all(not arr[:, j].any() for j in moved)


@pytest.fixture(params=["lowered", "default"])
def gate(request, monkeypatch):
    """The gate. Lowered: every book takes the row-sparse answer when its array is clean; default: these small books
    take the total-and-column path."""
    if request.param == "lowered":
        monkeypatch.setattr(lending_module, "_ROWS_MIN_ACCOUNTS", 0)
    return request.param


def book(n: int, seed: int) -> tuple[LendingMarket, np.random.Generator]:
    """n accounts with ETH or BTC collateral (one each) and USDC debt on most; nobody holds or owes ISO."""
    rng = np.random.default_rng(seed)
    env = Env()
    oracles = {s: FixedPrice(v, s) for s, v in PRICES.items()}
    m = LendingMarket("lend", ASSETS, oracles, env, "aave-v3.3")
    env.ledger.mint("USDC", "lenders", 1e12, "genesis")
    m.supply_liquidity("lenders", "USDC", 1e12)
    rows = m.add_accounts(n)
    pick = rng.integers(0, 2, n)
    for j, s in enumerate(("ETH", "BTC")):
        r = rows[pick == j]
        tokens = rng.uniform(1, 50, r.size)
        env.ledger.mint(s, "users", float(tokens.sum()), "genesis")
        m.supply("users", r, s, tokens)
    owing = rows[rng.random(n) < 0.8]
    m.borrow("users", owing, "USDC", np.full(owing.size, 100.0))
    return m, rng


V = np.array([2_000.0, 60_000.0, 1.0, 10.0])


def move(j: int, to: float = 11.0) -> np.ndarray:
    out = V.copy()
    out[j] = to
    return out


def agree(m: LendingMarket, side: str, *pairs: tuple[np.ndarray, np.ndarray]) -> bool:
    got = m._same_products(side, *pairs)
    assert got == reference_same_products(m, side, *pairs), (side, pairs)
    return got


def test_unheld_assets_moving_keep_a_side_and_held_ones_do_not(gate):
    m, _ = book(60, 1)
    assert agree(m, "coll", (V, V.copy()))  # nothing moved
    assert agree(m, "coll", (move(3), V)) and agree(m, "debt", (move(3), V))  # ISO: nobody's
    assert agree(m, "coll", (move(2), V)) and not agree(m, "debt", (move(2), V))  # USDC: owed, not held
    assert not agree(m, "coll", (move(0), V)) and agree(m, "debt", (move(0), V))  # ETH: held, not owed
    assert not agree(m, "coll", (V, V), (move(1), V))  # BTC on the second pair
    for bad in (np.nan, np.inf, 0.0, -0.0, -11.0):
        assert not agree(m, "coll", (move(3, bad), V)) and not agree(m, "coll", (V, move(3, bad)))


def test_an_emptied_column_reads_as_unheld_though_its_copy_is_kept(gate):
    m, _ = book(40, 2)
    btc = np.flatnonzero(m.coll_scaled[:, 1] > 0)
    assert not agree(m, "coll", (move(1), V))
    m.coll_scaled[btc, 1] = 0.0  # every BTC balance withdrawn, reported row by row
    m._touch_rows, m._touch_kept = btc, "debt"
    m._touch()
    assert agree(m, "coll", (move(1), V))
    if gate == "lowered":
        assert 1 in m._rows("coll").cols  # the column's copy stays (all zeros): read, not taken as held
    m.coll_scaled[btc[:1], 1] = 3.0  # one account supplies BTC again
    m._touch_rows, m._touch_kept = btc[:1], "debt"
    m._touch()
    assert not agree(m, "coll", (move(1), V))


def test_a_column_that_becomes_held_through_a_reported_row_is_seen(gate):
    m, _ = book(40, 3)
    assert agree(m, "coll", (move(3), V))  # ISO: the column has no copy yet
    a = int(np.flatnonzero(m.coll_scaled[:, 0] > 0)[0])
    m.coll_scaled[a] = 0.0
    m.coll_scaled[a, 3] = 2.0  # the row moves from ETH to ISO (still one asset)
    m._touch_rows, m._touch_kept = np.array([a]), "debt"
    m._touch()
    assert not agree(m, "coll", (move(3), V))
    if gate == "lowered":
        assert m._rows("coll").clean and 3 in m._rows("coll").cols


@pytest.mark.parametrize(
    "write",
    [
        lambda arr, a, b: (arr.__setitem__((a, 3), 1.0), arr.__setitem__((b, 3), -1.0)),  # cancelling: total 0
        lambda arr, a, b: arr.__setitem__((a, 3), -0.0),  # a -0.0 balance: no holder, but not clean
        lambda arr, a, b: arr.__setitem__((a, 3), 5.0),  # a second asset on a row: not clean, held
        lambda arr, a, b: arr.__setitem__((a, 3), np.nan),  # NaN: a nonzero total
        lambda arr, a, b: arr.__setitem__((a, 3), -1e-300),  # negative: not clean, held
    ],
)
def test_unclean_arrays_take_the_total_and_the_column(gate, write):
    m, _ = book(30, 4)
    write(m.coll_scaled, 0, 1)
    m._touch_rows, m._touch_kept = np.array([0, 1]), "debt"
    m._touch()
    agree(m, "coll", (move(3), V))
    if gate == "lowered":
        assert m._rows("coll").known_clean(m.coll_scaled) is False
    assert agree(m, "debt", (move(3), V))  # the debt side is untouched and still clean


def test_a_change_the_array_was_not_told_of_in_rows_is_checked_whole():
    m, _ = book(30, 5)
    rs = m._rows("coll")
    assert rs.known_clean(m.coll_scaled) and not rs.holds(3)
    m.coll_scaled[5, 3] = 1.0
    m.coll_scaled[5, :3] = 0.0
    m._touch_kept = "debt"
    m._touch()  # no rows given: any row may have changed
    assert rs.known_clean(m.coll_scaled) and rs.holds(3)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_histories_give_the_reference_answer(gate, seed):
    m, rng = book(80, seed)
    for _ in range(120):
        rows = rng.choice(m.n_accounts, int(rng.integers(1, 4)), replace=False)
        side_arr = m.coll_scaled if rng.random() < 0.6 else m.debt_scaled
        kind = rng.random()
        if kind < 0.4:
            side_arr[rows] = 0.0  # emptied rows
        elif kind < 0.8:  # one asset per row, maybe another
            side_arr[rows] = 0.0
            side_arr[rows, rng.integers(0, 4, rows.size)] = rng.lognormal(0, 2, rows.size)
        elif kind < 0.9:
            side_arr[rows, rng.integers(0, 4, rows.size)] = rng.choice([-1.0, -0.0, np.nan, 2.0], rows.size)
        else:
            side_arr[rows, 3] = 0.0  # ISO emptied on these rows
        m._touch_kept = "debt" if side_arr is m.coll_scaled else "coll"
        if rng.random() < 0.9:
            m._touch_rows = rows
        m._touch()
        for side in ("coll", "debt"):
            j = int(rng.integers(0, 4))
            to = float(rng.choice([11.0, 0.5, V[j], np.inf]))
            agree(m, side, (move(j, to), V))
            agree(m, side, (V, V), (move(j, to), V))


def test_holds_by_hand():
    arr = np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    rs = RowSparsity()
    assert rs.known_clean(arr)
    assert [rs.holds(j) for j in range(3)] == [False, True, False]
    arr[0, 1] = 0.0
    rs.touched(np.array([0]))
    assert rs.known_clean(arr) and not rs.holds(1)  # the copy was updated at the row reported
    arr[2, 1] = -1.0
    rs.touched(np.array([2]))
    assert not rs.known_clean(arr)


def test_whether_a_kept_column_holds_is_kept_while_the_rows_written_say_so():
    arr = np.zeros((6, 3))
    arr[:3, 0] = 1.0
    arr[3, 1] = 2.0
    rs = RowSparsity()
    assert rs.known_clean(arr) and rs.holds(0) and rs.holds(1) and not rs.holds(2)
    arr[3, 1] = 0.0  # BTC's only holder leaves: the column is read again, and holds nothing
    rs.touched(np.array([3]))
    assert rs.known_clean(arr) and not rs.holds(1)
    arr[4, 0] = 0.0  # zeros written to a column known empty ... and to one that holds
    rs.touched(np.array([4]))
    assert rs.known_clean(arr) and not rs.holds(1) and rs.holds(0)
    arr[5, 1] = 3.0  # a nonzero written to a column known empty
    rs.touched(np.array([5]))
    assert rs.known_clean(arr) and rs.holds(1)
    arr[[0, 1, 2], 0] = 0.0  # every ETH holder leaves, over two reports
    rs.touched(np.array([0, 1]))
    rs.touched(np.array([2]))
    assert rs.known_clean(arr) and not rs.holds(0)
    arr[2, 0], arr[5, 1] = 4.0, 0.0  # one row takes ETH again, in the same report as a row leaving BTC
    rs.touched(np.array([2, 5]))
    assert rs.known_clean(arr) and rs.holds(0) and not rs.holds(1)
    arr[1, 2] = 1.0  # a new column: held
    rs.touched(np.array([1]))
    assert rs.known_clean(arr) and rs.holds(2)
    rs.touched(None)  # a check of the whole array forgets every answer
    assert rs.held == {} and rs.known_clean(arr) and rs.holds(0) and rs.holds(2) and not rs.holds(1)


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_random_reports_give_the_columns_own_answer(seed):
    rng = np.random.default_rng(seed)
    arr = np.zeros((30, 4))
    arr[np.arange(30), rng.integers(0, 4, 30)] = rng.random(30) * (rng.random(30) < 0.3)
    rs = RowSparsity()
    for _ in range(200):
        rows = rng.choice(30, int(rng.integers(1, 4)), replace=False)
        arr[rows] = 0.0
        keep = rng.random(rows.size) < 0.3
        arr[rows[keep], rng.integers(0, 4, keep.sum())] = 1.0
        reported = np.concatenate([rows, rows[:1]])  # a row reported twice, as two changes to it would
        if rng.random() < 0.5:
            reported = reported - 30  # the same rows counted from the end (negative indices)
        rs.touched(reported if rng.random() < 0.95 else None)
        assert rs.known_clean(arr)
        for j in rng.permutation(4)[: int(rng.integers(0, 5))].tolist():
            assert rs.holds(j) == bool(arr[:, j].any())


def test_the_holder_kept_is_a_row_that_holds_and_is_dropped_when_its_entry_is_cleared():
    arr = np.zeros((5, 2))
    arr[[1, 3], 0] = [2.0, 5.0]
    rs = RowSparsity()
    assert rs.known_clean(arr) and rs.holds(0)
    assert rs.held[0] == 3  # the largest entry's row
    arr[1, 0] = 0.0  # another holder leaves: the one kept still holds
    rs.touched(np.array([1]))
    assert rs.known_clean(arr) and rs.held[0] == 3 and rs.holds(0)
    arr[3, 0] = 0.0  # the kept holder leaves, reported from the end: unknown, then read (nobody)
    rs.touched(np.array([-2]))
    assert rs.known_clean(arr) and 0 not in rs.held and not rs.holds(0) and rs.held[0] == -1
    arr[4, 0] = 1.0  # a new holder, reported from the end: kept as its row from the start
    rs.touched(np.array([-1]))
    assert rs.known_clean(arr) and rs.held[0] == 4 and rs.holds(0)
    arr[4, 0] = 0.0
    arr[4, 1] = 1.0  # the holder moves to the other column, reported twice
    rs.touched(np.array([4, -1]))
    assert rs.known_clean(arr) and not rs.holds(0) and rs.holds(1) and rs.held[1] == 4


def test_zeros_written_to_an_empty_column_keep_it_empty_without_a_read():
    arr = np.zeros((4, 2))
    arr[0, 1] = 1.0
    rs = RowSparsity()
    assert rs.known_clean(arr) and rs.holds(1)
    arr[0, 1] = 0.0
    rs.touched(np.array([0]))
    assert rs.known_clean(arr) and not rs.holds(1) and rs.held[1] == -1
    rs.cols[1][2] = 9.0  # a write to the copy only: not read again while zeros are reported
    rs.touched(np.array([3]))
    assert rs.known_clean(arr) and not rs.holds(1)


def test_a_holder_in_row_zero_and_a_holder_cleared_among_other_rows():
    arr = np.zeros((4, 2))
    arr[0, 0] = 3.0
    rs = RowSparsity()
    assert rs.known_clean(arr) and rs.holds(0) and rs.held[0] == 0  # row 0 is a holder, not "none"
    arr[2, 0] = 0.0  # zeros written elsewhere: row 0 still holds
    rs.touched(np.array([2]))
    assert rs.known_clean(arr) and rs.held[0] == 0 and rs.holds(0)
    arr[1, 0] = 1.0
    rs.touched(np.array([1]))
    assert rs.known_clean(arr) and rs.held[0] == 1  # the row written with a nonzero entry is the holder now
    arr[[3, 1], 0] = 0.0  # the holder cleared, reported after another row
    rs.touched(np.array([3, 1]))
    assert rs.known_clean(arr) and 0 not in rs.held and rs.holds(0) and rs.held[0] == 0
    arr[[1, 2], 0] = [0.0, 5.0]  # two rows written, the second one nonzero: it is the holder
    rs.touched(np.array([1, 2]))
    assert rs.known_clean(arr) and rs.held[0] == 2
    arr[[1, 3], 1] = [2.0, 4.0]  # a new column through two rows: the first nonzero one is its holder
    rs.touched(np.array([1, 3]))
    assert rs.known_clean(arr) and rs.held[1] == 1 and rs.holds(1)


def test_a_book_at_the_default_gate_asks_the_kept_columns_not_the_total():
    m, _ = book(lending_module._ROWS_MIN_ACCOUNTS, 8)  # exactly at the gate
    m._touch()  # every cached total dropped, the row-sparse state to be checked whole
    assert m._same_products("coll", (move(3), V)) and not m._same_products("coll", (move(0), V))
    assert m._coll_total is None  # no product over the book for the total
    assert m._rows("coll").clean is True and m._rows("coll").pending == []
