"""Exactly rounded column sums of an (n, A) float64 array, kept up to date from the rows that changed.

A float sum's bits depend on the order of its additions (a BLAS product `ones @ scaled` picks the order by kernel), so
a total kept by adding and subtracting changed rows would drift from a full recomputation. The exact sum of the
entries does not depend on order: every finite float64 is an integer multiple of 2**-1074, so the exact sum is a
Python int in those units, and its correctly rounded float (what `math.fsum` returns for finite inputs, Shewchuk
1997, CPython mathmodule.c) is the same bits however the entries arrived. `ExactColumnSums` keeps that int per
column: a full build, then `update(new_rows, old_rows)` adds the exact sums of the new values and subtracts those of
the old ones.

Non-finite entries are counted per column instead (+inf, -inf, NaN) and give the IEEE result: NaN if the column holds
a NaN or both infinities, else the infinity it holds. An exact sum beyond the float range rounds to +-inf (where
`math.fsum` raises OverflowError, even for some finite results it meets on the way). An exact zero is +0.0, an
all-(-0.0) column included, as `math.fsum` returns it on Python 3.11.
"""

from __future__ import annotations

import numpy as np

UNIT_BITS = 1074  # every finite float64 is an integer multiple of 2**-UNIT_BITS (the smallest subnormal)
_ONE = 1 << UNIT_BITS  # 1.0 in units of 2**-1074
_HALF_BITS = 26  # integer mantissas (< 2**53) are split into two halves of at most 27 bits for exact float bin sums
_FRACTION = (1 << 52) - 1  # the fraction field of a float64's bits
_LOW_MASK = (1 << _HALF_BITS) - 1
#: rows per bin-sum pass: each bin then sums at most this many halves (< 2**27 each), an integer below 2**53 (exact)
_CHUNK_ROWS = 1 << 26
#: at most this many entries are summed one by one in Python ints (as_integer_ratio): cheaper than the numpy passes
_SMALL = 128


def _small_sums(block: np.ndarray) -> tuple[list[int], bool]:
    """(exact sums of the finite entries of `block` ((r, A)) by column, units of 2**-1074; whether every entry is
    finite), one entry at a time (`_list_sums`)."""
    return _list_sums(block.tolist(), block.shape[1])


def _list_sums(rows: list[list[float]], columns: int) -> tuple[list[int], bool]:
    """(exact sums of the finite entries of `rows` (r lists of `columns` Python floats) by column, units of 2**-1074;
    whether every entry is finite): x = num / 2**k exactly (`float.as_integer_ratio`), num * 2**(1074 - k) units."""
    out = [0] * columns
    finite = True
    for row in rows:
        for j, x in enumerate(row):
            if not x:  # +-0.0 (most of a book's entries): nothing to add
                continue
            if x - x == 0.0:  # finite (inf - inf and NaN - NaN are NaN)
                num, den = x.as_integer_ratio()
                out[j] += num << (UNIT_BITS + 1 - den.bit_length())
            else:
                finite = False
    return out, finite


def _binned_sums(block: np.ndarray) -> list[int]:
    """Exact sums of `block` ((r, A), every entry finite) by column, units of 2**-1074, vectorised on the IEEE 754
    fields: a normal x with biased exponent E (1 ... 2046) and fraction f is (2**52 + f) * 2**(E - 1) units, a
    subnormal or zero is f units. Each signed integer mantissa (below 2**53) is split into a high part (below 2**27)
    and a low one (below 2**26); their float sums per (column, shift) are exact integers (at most 2**26 parts per
    pass: below 2**53), combined in Python ints."""
    r, a = block.shape
    out = [0] * a
    for start in range(0, r, _CHUNK_ROWS):
        bits = block[start : start + _CHUNK_ROWS].view(np.int64)
        expo = (bits >> 52) & 0x7FF
        mant = (bits & _FRACTION) | ((expo > 0).astype(np.int64) << 52)
        shift = np.maximum(expo - 1, 0)
        np.negative(mant, out=mant, where=bits < 0)
        held = shift[mant != 0]
        if held.size == 0:
            continue
        # the shifts of the nonzero entries only (zeros, which add nothing, are put among them): few bins for a book
        low, high = int(held.min()), int(held.max())
        np.clip(shift, low, high, out=shift)
        bins = high - low + 1
        idx = (shift + (np.arange(a) * bins - low)).ravel()
        his = np.bincount(idx, weights=(mant >> _HALF_BITS).ravel())
        los = np.bincount(idx, weights=(mant & _LOW_MASK).ravel())
        at = np.flatnonzero((his != 0) | (los != 0))
        for k, h, lw in zip(at.tolist(), his[at].tolist(), los[at].tolist()):
            j, s = divmod(k, bins)
            out[j] += ((int(h) << _HALF_BITS) + int(lw)) << (s + low)
    return out


def finite_sums(block: np.ndarray) -> tuple[list[int], bool]:
    """(exact sums of the finite entries of a float64 array `block` ((r, A)) by column, units of 2**-1074; whether
    every entry is finite)."""
    block = np.asarray(block, dtype=np.float64)
    if block.size <= _SMALL:
        return _small_sums(block)
    fin = np.isfinite(block)
    if fin.all():
        return _binned_sums(block), True
    return _binned_sums(np.where(fin, block, 0.0)), False


def nonfinite_counts(block: np.ndarray) -> np.ndarray:
    """Counts (3, A) of +inf, -inf and NaN entries of `block` ((r, A)) by column."""
    return np.array(
        [
            np.count_nonzero(block == np.inf, axis=0),
            np.count_nonzero(block == -np.inf, axis=0),
            np.count_nonzero(np.isnan(block), axis=0),
        ]
    )


def rounded(units: int, pos_inf: int, neg_inf: int, nan: int) -> float:
    """The float of a column from its exact finite sum (units of 2**-1074) and its non-finite counts: IEEE's NaN or
    infinity if it holds any, else the exact sum correctly rounded (int / int is, in CPython), +-inf beyond range."""
    if nan or (pos_inf and neg_inf):
        return float("nan")
    if pos_inf or neg_inf:
        return float("inf") if pos_inf else float("-inf")
    try:
        return units / _ONE
    except OverflowError:
        return float("inf") if units > 0 else float("-inf")


class ExactColumnSums:
    """Exactly rounded per-column sums of an (n, A) float64 array, kept from changed rows (see the module docstring):
    `build(arr)` sums it whole, `update(new, old)` adds the rows' new values and takes off the old ones, `totals()`
    is the correctly rounded total by column (NaN / +-inf by IEEE rules where non-finite entries are held)."""

    def __init__(self, columns: int):
        self.units = [0] * columns  # exact sum of the finite entries by column, units of 2**-1074
        self.counts = nonfinite_counts(np.zeros((0, columns)))  # +inf, -inf, NaN entries by column (3, A)

    def build(self, arr: np.ndarray) -> None:
        """Sum `arr` ((n, A) float64) whole, replacing the state."""
        self.units = finite_sums(arr)[0]
        self.counts = nonfinite_counts(arr)

    def update(self, new: np.ndarray, old: np.ndarray) -> None:
        """Rows changed from `old` to `new` (both (r, A) float64, the same rows): add the new values, take off the old
        ones (one pass over both: negation is exact, so the sum of `new` and `-old` is the difference)."""
        delta, finite = finite_sums(np.concatenate((new, -old)))
        self.units = [u + d for u, d in zip(self.units, delta)]
        if not finite:
            self.counts = self.counts + nonfinite_counts(new) - nonfinite_counts(old)

    def update_lists(self, new: list[list[float]], old: list[list[float]]) -> None:
        """`update` of a few rows given as lists of Python floats (r lists of A values each, the same rows' new and
        old values): the same exact state, without the numpy calls (`update`'s fixed cost is several times a handful of
        rows' own). Negation of a float is exact in Python as in numpy."""
        a = len(self.units)
        delta, finite = _list_sums(new + [[-x for x in row] for row in old], a)
        self.units = [u + d for u, d in zip(self.units, delta)]
        if not finite:  # a non-finite entry: at least one row, so both lists make (r, A) arrays
            self.counts = self.counts + nonfinite_counts(np.array(new)) - nonfinite_counts(np.array(old))

    def totals(self) -> np.ndarray:
        """The correctly rounded sum by column, (A,) float64."""
        c = self.counts.tolist()
        return np.array([rounded(u, p, m, q) for u, p, m, q in zip(self.units, c[0], c[1], c[2])], float)
