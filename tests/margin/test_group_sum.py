"""GroupSums: row-wise sums over groups of columns must equal, bit for bit, one np.bincount per row (the order
every margin model summed in before), for the sparse path (big arrays) and the bincount path (small ones), with
the grouping matrix reused across calls; and the figures themselves are the hand-added group totals."""

from __future__ import annotations

import numpy as np
import pytest

from defistress.protocols.margin.group_sum import GroupSums


def per_row(idx: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    """Reference: one bincount per row (bins start at 0.0 and add their members in column order)."""
    return np.stack([np.bincount(idx, weights=row, minlength=n) for row in w])


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


def test_hand_added_group_totals_on_both_paths():
    idx = np.array([2, 0, 2, 2, 1])
    w = np.array([[1.0, 10.0, 0.5, 0.25, -3.0], [0.0, -1.0, 2.0, 4.0, 8.0]])
    want = np.array([[10.0, -3.0, 1.75, 0.0], [-1.0, 8.0, 6.0, 0.0]])  # bin 3 has no member
    for sparse_min in (0, 10**9):  # 0: always the sparse product; huge: always bincount
        got = GroupSums(sparse_min=sparse_min)(idx, w, 4)
        assert got.shape == (2, 4)
        assert np.array_equal(got, want)


@pytest.mark.parametrize("sparse_min", [0, 10**9])
def test_bit_identical_to_one_bincount_per_row(sparse_min: int):
    rng = np.random.default_rng(3)
    sums = GroupSums(sparse_min=sparse_min)
    for _ in range(5):
        k, n, r = 700, 300, 38
        idx = rng.integers(0, n, k)
        # magnitudes over 12 orders: the order of addition shows in the last bits
        w = rng.normal(size=(r, k)) * 10.0 ** rng.integers(-6, 6, size=(r, k))
        w[:, ::17] = -0.0  # a group whose only members are -0.0 sums to +0.0 in bincount
        assert np.array_equal(bits(sums(idx, w, n)), bits(per_row(idx, w, n)))
        wt = np.asfortranarray(w)  # layout of the input does not matter
        assert np.array_equal(bits(sums(idx, wt, n)), bits(per_row(idx, w, n)))


def test_minus_zero_alone_in_a_group_becomes_plus_zero_like_bincount():
    idx = np.zeros(5000, dtype=np.int64)
    idx[0] = 1
    w = np.zeros((1, 5000))
    w[0, 0] = -0.0
    got = GroupSums(sparse_min=0)(idx, w, 2)
    assert np.signbit(got[0, 1]) == np.signbit(np.bincount(idx, weights=w[0])[1]) == False  # noqa: E712


def test_a_reused_matrix_never_serves_another_grouping():
    rng = np.random.default_rng(4)
    sums = GroupSums(kept=2, sparse_min=0)
    groupings = [rng.integers(0, 50, 400) for _ in range(4)]
    w = rng.normal(size=(6, 400))
    for _rep in range(3):  # the third and later calls hit the cache, or were evicted (kept=2) and rebuilt
        for idx in groupings:
            assert np.array_equal(bits(sums(idx, w, 50)), bits(per_row(idx, w, 50)))
    assert len(sums._mats) == 2
    # same bytes, other number of bins: another matrix
    assert sums(groupings[0], w, 60).shape == (6, 60)


def test_empty_inputs_and_bad_input_are_named():
    sums = GroupSums()
    assert np.array_equal(sums(np.zeros(0, dtype=np.int64), np.zeros((3, 0)), 4), np.zeros((3, 4)))
    assert sums(np.array([0, 1]), np.zeros((0, 2)), 2).shape == (0, 2)
    with pytest.raises(ValueError, match="w.shape"):
        sums(np.array([0, 1]), np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="idx: allowed group indices 0..1"):
        sums(np.array([0, 2]), np.zeros((1, 2)), 2)
    with pytest.raises(ValueError, match="idx: allowed"):
        sums(np.array([-1, 0]), np.zeros((1, 2)), 2)
    with pytest.raises(ValueError, match="kept=0"):
        GroupSums(kept=0)


def test_any_shape_and_dtype_of_whole_group_indices():
    """idx may come as a column, a list or whole numbers in floats (flattened and read as int64); w as ints."""
    idx = np.array([2, 0, 2, 1])
    w = np.array([[1.0, 2.0, 4.0, 8.0]])
    want = np.array([[2.0, 8.0, 5.0]])
    for sparse_min in (0, 10**9):
        sums = GroupSums(sparse_min=sparse_min)
        for form in (idx.reshape(-1, 1), idx.tolist(), idx.astype(np.float64), idx.astype(np.int32)):
            assert np.array_equal(sums(form, w, 3), want)
        assert np.array_equal(sums(idx, np.array([[1, 2, 4, 8]]), 3), want)


def test_the_grouping_matrix_is_built_once_per_grouping_and_evicted_oldest_first():
    sums = GroupSums(kept=1, sparse_min=0)
    a, b = np.array([0, 1, 1]), np.array([1, 0, 0])
    m = sums.matrix(a, 2)
    assert sums.matrix(a, 2) is m  # kept
    assert sums.matrix(a.copy(), 2) is m  # found by content, not identity
    assert sums.matrix(b, 2) is not m and sums.matrix(a, 2) is not m  # kept=1: b evicted a
    assert m.toarray().tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    assert np.array_equal(sums(a, np.array([[1.0, 2.0, 3.0]]), 2), [[1.0, 5.0]])


@pytest.mark.parametrize("cols", [3, 5000])  # below and above GroupSums' sparse_min (rows x columns)
def test_the_margin_models_group_sum_equals_bincount_per_row_in_the_products_layout(cols: int):
    """scenario_pm._grid_sum gives the bits of one bincount per row, the operand may be the transpose of a
    (columns x rows) array (as the option grid is), and edge values (-0.0, inf, NaN) pass; above the sparse
    threshold the sums come as the transposed view of the sparse product's (groups x rows) array, which
    `_underlying` reads back in that layout without a transposing copy."""
    from defistress.protocols.margin.scenario_pm import _grid_sum

    rng = np.random.default_rng(cols)
    idx = rng.integers(0, 7, cols)
    w = rng.normal(0, 1e3, (cols, 4)).T  # (4, cols), Fortran order
    w[0, 0], w[1, -1], w[2, cols // 2] = -0.0, np.inf, np.nan
    got = _grid_sum(idx, w, 9)
    assert got.shape == (4, 9)
    assert got.T.flags["C_CONTIGUOUS"] == (cols == 5000)  # the product's own array; the small path is row-major
    assert np.array_equal(bits(got), bits(per_row(idx, w, 9)))
