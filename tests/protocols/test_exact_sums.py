"""Exactly rounded column sums (protocols/exact_sums.py) against an independent reference: the exact sum of the
column's entries in `fractions.Fraction`, rounded by `float(Fraction)` (correctly rounded), with IEEE's NaN and
infinities for non-finite entries, and against `math.fsum` wherever fsum returns (it raises on an intermediate
overflow and on inf + -inf). Bits are compared (signed zeros and all): crafted columns (subnormals, cancellations at
1e308, the overflow threshold and one unit either side, -0.0, +-inf, NaN, empty, one row), both summing paths
(one entry at a time, binned), several passes, and random arrays kept by random row updates."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from defistress.protocols import exact_sums
from defistress.protocols.exact_sums import ExactColumnSums, finite_sums, nonfinite_counts, rounded

TINY = 5e-324  # the smallest subnormal, 2**-1074
MAX = 1.7976931348623157e308  # the largest float, 2**1024 - 2**971
HALF_ULP_MAX = 2.0**970  # half the spacing of floats just below MAX: MAX + this is the tie that rounds to 2**1024


def reference(column: list[float]) -> float:
    """IEEE's exactly rounded sum: NaN for a NaN or both infinities, the infinity held, else the exact rational sum
    correctly rounded (+-inf beyond the float range); +0.0 for an exact zero."""
    if any(math.isnan(x) for x in column) or (math.inf in column and -math.inf in column):
        return math.nan
    if math.inf in column or -math.inf in column:
        return math.inf if math.inf in column else -math.inf
    exact = sum((Fraction(x) for x in column), Fraction(0))
    try:
        return float(exact)
    except OverflowError:
        return math.inf if exact > 0 else -math.inf


def fsum_or_none(column: list[float]) -> float | None:
    try:
        return math.fsum(column)
    except (OverflowError, ValueError):  # an intermediate overflow, or inf + -inf
        return None


def same_float(a: float, b: float) -> bool:
    """The same float bits, any NaN matching any NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return np.float64(a).tobytes() == np.float64(b).tobytes()


def assert_sums(totals: np.ndarray, arr: np.ndarray) -> None:
    assert totals.dtype == np.float64 and totals.shape == (arr.shape[1],)
    for j in range(arr.shape[1]):
        col = arr[:, j].tolist()
        want = reference(col)
        assert same_float(float(totals[j]), want), (j, totals[j], want, col[:8])
        f = fsum_or_none(col)
        if f is not None:
            assert same_float(float(totals[j]), f), (j, totals[j], f)


def summed(arr: np.ndarray) -> np.ndarray:
    s = ExactColumnSums(arr.shape[1])
    s.build(arr)
    return s.totals()


@pytest.fixture(params=["one-by-one", "binned", "binned-in-passes"])
def path(request, monkeypatch):
    """Which summing path every array takes: Python ints entry by entry, the binned numpy path, or the binned path
    in passes of 3 rows (each pass's bins combined in Python ints)."""
    if request.param == "one-by-one":
        monkeypatch.setattr(exact_sums, "_SMALL", 10**9)
    else:
        monkeypatch.setattr(exact_sums, "_SMALL", 0)
    if request.param == "binned-in-passes":
        monkeypatch.setattr(exact_sums, "_CHUNK_ROWS", 3)
    return request.param


CRAFTED = {
    "empty": [],
    "one": [1.5],
    "one-subnormal": [TINY],
    "subnormals": [TINY, 3 * TINY, -TINY, 2.2250738585072014e-308, -2.225073858507201e-308],
    "cancel-1e308": [1e308, 1e308, -1e308],  # fsum: intermediate overflow; the exact sum is 1e308
    "cancel-to-one": [1e308, 1.0, -1e308],
    "cancel-to-zero": [1e308, -1e308, 0.1, -0.1],
    "neg-zero": [-0.0, -0.0],
    "neg-zero-one": [-0.0],
    "mixed-zero": [-0.0, 0.0],
    "neg-zero-and-tiny": [-0.0, -TINY],
    "overflow-tie": [MAX, HALF_ULP_MAX],  # exactly 2**1024 - 2**970: ties to even, 2**1024, infinite
    "below-overflow-tie": [MAX, HALF_ULP_MAX, -TINY],  # one unit below the tie: MAX
    "above-overflow-tie": [MAX, HALF_ULP_MAX, TINY],
    "neg-overflow": [-MAX, -MAX],
    "overflow-back-in-range": [MAX, MAX, -MAX],
    "inf": [1.0, math.inf],
    "neg-inf": [-math.inf, 2.0, -math.inf],
    "both-inf": [math.inf, -math.inf],
    "nan": [1.0, math.nan],
    "nan-and-inf": [math.nan, math.inf],
    "rounding-tie": [1.0, 2.0**-53],  # ties to even: 1.0
    "rounding-tie-plus-tiny": [1.0, 2.0**-53, TINY],  # above the tie: the next float
    "many-small": [0.1] * 10,
    "mixed-scales": [1e16, 1.0, -1e16, 3e-300, 1e-310],
    "zeros-then-values": [0.0] * 7 + [1.5, -0.0, 2.5],  # in passes of 3 rows: two passes of zeros first
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_crafted_column_sums_to_the_exactly_rounded_value(path, name):
    col = CRAFTED[name]
    arr = np.array(col, dtype=np.float64).reshape(len(col), 1)
    assert_sums(summed(arr), arr)


def test_crafted_columns_side_by_side_and_their_signs():
    width = max(len(c) for c in CRAFTED.values())
    names = sorted(CRAFTED)
    arr = np.zeros((width, len(names)))
    for j, name in enumerate(names):
        arr[: len(CRAFTED[name]), j] = CRAFTED[name]
    totals = summed(arr)
    assert_sums(totals, arr)
    got = dict(zip(names, totals.tolist()))
    # the figures that matter, spelled out: an exact zero is +0.0, the tie overflows, one unit under it does not
    assert math.copysign(1.0, got["neg-zero"]) == 1.0 and got["neg-zero"] == 0.0
    assert got["overflow-tie"] == math.inf and got["above-overflow-tie"] == math.inf
    assert got["below-overflow-tie"] == MAX
    assert got["neg-overflow"] == -math.inf and got["overflow-back-in-range"] == MAX
    assert got["cancel-1e308"] == 1e308 and got["cancel-to-one"] == 1.0
    assert got["rounding-tie"] == 1.0 and got["rounding-tie-plus-tiny"] == math.nextafter(1.0, 2.0)
    assert math.isnan(got["both-inf"]) and math.isnan(got["nan-and-inf"]) and got["neg-inf"] == -math.inf


def test_an_empty_book_sums_to_positive_zeros(path):
    for a in (1, 3):
        totals = summed(np.zeros((0, a)))
        assert totals.shape == (a,) and np.signbit(totals).sum() == 0 and not totals.any()


def test_both_paths_give_the_same_exact_integers_and_flags():
    rng = np.random.default_rng(7)
    for _ in range(40):
        r, a = int(rng.integers(1, 20)), int(rng.integers(1, 4))
        arr = random_array(rng, r, a)
        small, fin_small = exact_sums._small_sums(arr)
        fin = np.isfinite(arr)
        assert fin_small == bool(fin.all())
        assert small == exact_sums._binned_sums(np.where(fin, arr, 0.0))
        # the integers are the exact sums: 2**-1074 units
        for j in range(a):
            exact = sum((Fraction(x) for x in arr[:, j].tolist() if math.isfinite(x)), Fraction(0))
            assert Fraction(small[j], 2**1074) == exact


def test_finite_sums_take_the_binned_path_above_the_small_size_and_flag_non_finite_entries():
    rng = np.random.default_rng(8)
    arr = random_array(rng, 60, 3, special=0.0)  # 180 entries: the binned path
    sums, finite = finite_sums(arr)
    assert finite and sums == exact_sums._small_sums(arr)[0]
    arr[5, 1] = math.nan
    sums2, finite2 = finite_sums(arr)
    assert not finite2 and sums2 == exact_sums._small_sums(arr)[0]
    assert arr.size > exact_sums._SMALL
    assert finite_sums(np.array([[1, 2], [3, 4]]))[0] == [4 << 1074, 6 << 1074]  # integers are summed as floats
    ints = np.arange(300).reshape(150, 2)  # the binned path too (it reads a float64's bits)
    assert finite_sums(ints) == ([22350 << 1074, 22500 << 1074], True)


def test_non_finite_counts_and_their_rounding():
    arr = np.array([[math.inf, math.nan, 1.0], [-math.inf, math.inf, -math.inf], [math.inf, 0.0, 2.0]])
    assert nonfinite_counts(arr).tolist() == [[2, 1, 0], [1, 0, 1], [0, 1, 0]]
    assert nonfinite_counts(np.zeros((0, 2))).tolist() == [[0, 0], [0, 0], [0, 0]]
    assert math.isnan(rounded(0, 1, 1, 0)) and math.isnan(rounded(5, 0, 0, 1)) and math.isnan(rounded(0, 2, 0, 3))
    assert rounded(-(1 << 2000), 1, 0, 0) == math.inf and rounded(1 << 2000, 0, 3, 0) == -math.inf
    assert rounded(3 << 1073, 0, 0, 0) == 1.5 and rounded(1, 0, 0, 0) == TINY and rounded(-1, 0, 0, 0) == -TINY
    assert rounded(1 << 2200, 0, 0, 0) == math.inf and rounded(-(1 << 2200), 0, 0, 0) == -math.inf


def random_array(rng: np.random.Generator, r: int, a: int, special: float = 0.05) -> np.ndarray:
    """Entries over the whole float range (subnormals to near overflow, both signs), some zeros and -0.0, and with
    probability `special` each a NaN or an infinity."""
    scale = np.exp2(rng.integers(-1080, 1000, (r, a)).astype(float))
    arr = rng.standard_normal((r, a)) * scale
    kind = rng.random((r, a))
    arr[kind < 0.1] = 0.0
    arr[(kind >= 0.1) & (kind < 0.15)] = -0.0
    odd = rng.random((r, a)) < special
    arr[odd] = rng.choice([math.inf, -math.inf, math.nan], size=int(odd.sum()))
    return arr


def book_like(rng: np.random.Generator, r: int, a: int) -> np.ndarray:
    """Balances as a book holds them: non-negative, a few orders of magnitude, many zeros."""
    arr = rng.lognormal(3.0, 2.0, (r, a))
    arr[rng.random((r, a)) < 0.5] = 0.0
    return arr


@pytest.mark.parametrize("seed", range(6))
def test_random_arrays_kept_through_random_row_updates(path, seed):
    rng = np.random.default_rng(seed)
    n, a = int(rng.integers(1, 60)), int(rng.integers(1, 5))
    special = 0.0 if seed % 2 else 0.05
    arr = random_array(rng, n, a, special) if seed < 3 else book_like(rng, n, a)
    kept = ExactColumnSums(a)
    kept.build(arr)
    assert_sums(kept.totals(), arr)
    for _ in range(25):
        rows = np.unique(rng.integers(0, n, int(rng.integers(0, n + 1))))
        new = random_array(rng, rows.size, a, special) if seed < 3 else book_like(rng, rows.size, a)
        kept.update(new, arr[rows])
        arr[rows] = new
        assert_sums(kept.totals(), arr)
        fresh = summed(arr)
        assert fresh.tobytes() == kept.totals().tobytes() or (np.isnan(fresh) == np.isnan(kept.totals())).all()
        assert kept.units == finite_sums(arr)[0]
        assert kept.counts.tolist() == nonfinite_counts(arr).tolist()


def test_an_update_that_removes_the_non_finite_entries_gives_a_finite_total_again(path):
    arr = np.array([[1.0, math.nan], [math.inf, 2.0], [-math.inf, 3.0]])
    kept = ExactColumnSums(2)
    kept.build(arr)
    assert math.isnan(kept.totals()[0]) and math.isnan(kept.totals()[1])  # inf + -inf, and a NaN
    steps = [([1, 0], [[4.0, 5.0], [6.0, -math.inf]]), ([2], [[0.0, 1.0]]), ([0], [[1.0, 1.0]])]
    seen = []
    for rows, values in steps:
        new = np.array(values)
        kept.update(new, arr[rows])
        arr[rows] = new
        assert_sums(kept.totals(), arr)
        seen.append(kept.totals().tolist())
    assert seen == [[-math.inf, -math.inf], [10.0, -math.inf], [5.0, 7.0]]
    assert kept.counts.tolist() == [[0, 0], [0, 0], [0, 0]]


def test_a_new_keeper_holds_zero_totals_and_takes_rows_from_nothing(path):
    kept = ExactColumnSums(3)
    assert kept.totals().tobytes() == np.zeros(3).tobytes() and kept.counts.tolist() == [[0] * 3] * 3
    rows = np.array([[1.5, -math.inf, 0.0], [2.0**-1074, 1.0, math.nan]])
    kept.update(rows, np.zeros_like(rows))
    assert_sums(kept.totals(), rows)
    assert kept.counts.tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 1]] and kept.units == [3 << 1073 | 1, 1 << 1074, 0]
    assert ExactColumnSums(0).totals().shape == (0,)


def test_a_growing_book_summed_again_whole(path):
    rng = np.random.default_rng(11)
    arr = book_like(rng, 5, 3)
    kept = ExactColumnSums(3)
    for _ in range(4):
        arr = np.vstack([arr, book_like(rng, int(rng.integers(1, 40)), 3)])
        kept.build(arr)
        assert_sums(kept.totals(), arr)


def test_a_large_book_matches_fsum_bit_for_bit():
    rng = np.random.default_rng(12)
    arr = book_like(rng, 20_000, 4)
    kept = ExactColumnSums(4)
    kept.build(arr)
    assert kept.totals().tolist() == [math.fsum(arr[:, j].tolist()) for j in range(4)]
    rows = rng.choice(20_000, 500, replace=False)
    new = book_like(rng, 500, 4)
    kept.update(new, arr[rows])
    arr[rows] = new
    assert kept.totals().tolist() == [math.fsum(arr[:, j].tolist()) for j in range(4)]


@pytest.mark.parametrize("units", [1 << 26, (1 << 26) + 1, 1, (1 << 27) - 1])
def test_a_binned_subnormal_whose_high_half_sums_to_one_is_kept(units: int):
    """A bin whose high-half sum is exactly 1 and low-half sum 0 (one subnormal of 2**26 units, 2**-1048) is summed
    like any other: the binned path keeps every bin with a nonzero part, not one whose high part is not 1."""
    value = units * TINY
    arr = np.zeros((200, 2))  # 400 entries: the binned path
    arr[7, 0] = value
    arr[9, 1] = -value
    sums, finite = finite_sums(arr)
    assert finite and sums == [units, -units]
    assert_sums(summed(arr), arr)


def both_ways(a: int, new: np.ndarray, old: np.ndarray, start: np.ndarray) -> tuple[ExactColumnSums, ExactColumnSums]:
    """Two keepers of `start`, one updated by `update` (arrays, the reference), one by `update_lists` (Python lists)."""
    ref, lists = ExactColumnSums(a), ExactColumnSums(a)
    ref.build(start)
    lists.build(start)
    ref.update(new, old)
    lists.update_lists(new.tolist(), old.tolist())
    return ref, lists


def same_state(ref: ExactColumnSums, lists: ExactColumnSums) -> None:
    assert lists.units == ref.units
    assert lists.counts.tolist() == ref.counts.tolist()
    assert lists.totals().tobytes() == ref.totals().tobytes()


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_rows_as_lists_keep_the_state_of_rows_as_arrays_on_crafted_columns(path, name):
    """`update_lists` against `update`: each crafted column as rows coming in (over zeros), and going out again."""
    col = np.array(CRAFTED[name], dtype=np.float64).reshape(-1, 1)
    new = np.hstack([col, col[::-1], np.zeros_like(col)])  # a column, the same reversed, one of zeros
    zeros = np.zeros_like(new)
    ref, lists = both_ways(3, new, zeros, zeros)
    same_state(ref, lists)
    ref, lists = both_ways(3, zeros, new, new)
    same_state(ref, lists)
    assert lists.units == [0, 0, 0] and lists.counts.tolist() == [[0] * 3] * 3


@pytest.mark.parametrize("seed", range(8))
def test_rows_as_lists_keep_the_state_of_rows_as_arrays_on_random_rows(path, seed):
    rng = np.random.default_rng(100 + seed)
    a = int(rng.integers(1, 5))
    special = 0.0 if seed % 2 else 0.2
    start = random_array(rng, 6, a, special)
    for r in (0, 1, 3, 6):
        new = random_array(rng, r, a, special) if seed < 4 else book_like(rng, r, a)
        ref, lists = both_ways(a, new, start[:r], start)
        same_state(ref, lists)


def test_rows_as_lists_count_non_finite_entries_in_and_out():
    kept = ExactColumnSums(2)
    kept.update_lists([[math.inf, 1.0], [math.nan, -math.inf]], [[0.0, 0.0], [0.0, 0.0]])
    assert kept.counts.tolist() == [[1, 0], [0, 1], [1, 0]] and kept.units == [0, 1 << 1074]
    kept.update_lists([[2.0, -0.0]], [[math.inf, 1.0]])
    assert kept.counts.tolist() == [[0, 0], [0, 1], [1, 0]] and kept.units == [2 << 1074, 0]
    assert math.isnan(kept.totals()[0]) and kept.totals()[1] == -math.inf
    kept.update_lists([], [])
    assert kept.units == [2 << 1074, 0]
