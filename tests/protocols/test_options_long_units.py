"""The venue's long units per instrument (protocols/options.py `_long_units`, read by `metrics` every block) against
the dense expression it replaced, bit for bit: signed zeros, NaN, infinities, empty books and random sparse and
dense books (issue 14)."""

import numpy as np
import pytest

from defistress.protocols.options import _long_units


def reference(qty: np.ndarray) -> np.ndarray:
    """The code `_long_units` replaced in OptionsVenue.metrics."""
    return np.maximum(qty, 0.0).sum(axis=0)


def assert_same(qty: np.ndarray) -> None:
    got, want = _long_units(qty), reference(qty)
    assert got.dtype == want.dtype == np.float64 and got.shape == want.shape
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64)), (got, want)


@pytest.mark.parametrize("shape", [(0, 0), (0, 3), (4, 0), (1, 1), (1, 5), (6, 1)])
def test_empty_and_one_row_or_column_books(shape):
    assert_same(np.zeros(shape))
    assert_same(np.full(shape, -0.0))
    assert_same(np.full(shape, 2.5))


def test_signed_zeros_nan_and_infinities():
    nan_a = np.frombuffer(np.uint64(0x7FF8_0000_0000_0ABC).tobytes(), dtype=np.float64)[0]  # NaN payloads
    nan_b = np.frombuffer(np.uint64(0xFFF8_0000_0000_0DEF).tobytes(), dtype=np.float64)[0]
    qty = np.array(
        [
            [-0.0, 0.0, 1.0, np.inf, -np.inf, nan_a, 5e-324],
            [-0.0, -1.0, -0.0, 1.0, -1.0, 2.0, 5e-324],
            [0.0, 3.0, np.nan, np.inf, 7.0, nan_b, -5e-324],
            [-2.0, -0.0, 1e308, -np.inf, 1e308, 1.0, 1e-300],
        ]
    )
    assert_same(qty)
    assert_same(qty[::-1].copy())
    assert_same(-qty)


@pytest.mark.parametrize("seed", range(8))
def test_random_sparse_and_dense_books(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 400)), int(rng.integers(1, 90))
    for density in (0.005, 0.05, 0.5, 1.0):
        qty = np.zeros((n, k))
        m = rng.random((n, k)) < density
        qty[m] = rng.normal(0.0, 10.0 ** rng.uniform(-3, 6, int(m.sum())))
        assert_same(qty)
    qty = rng.normal(size=(1204, 79)) * (rng.random((1204, 79)) < 0.02)  # the size of inter-protocol-pm's book
    assert_same(qty)
