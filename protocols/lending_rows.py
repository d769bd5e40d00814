"""Row-sparse products of a lending book: balance x per-unit price for every account without a BLAS matrix-vector
product, when each account holds at most one asset on a side.

A matrix-vector product `scaled @ vec` ((n, A) @ (A,)) sums A products per row in an order (and with fused
multiply-adds) that the BLAS kernel chooses. When every row has at most one nonzero entry, no entry is -0.0, every
entry is finite and every entry of `vec` is finite and positive, that sum is exact whatever the order: the one nonzero
product plus +0.0 terms is that product, and a row of +0.0 entries sums to +0.0. The elementwise products over the
columns that hold anything then give the same bits as the kernel, at a fraction of its cost on a book of a few assets
(OpenBLAS's gemv is several times slower than a column multiply on (n, 3) arrays). Entries are required to be
non-negative as well: a negative product that underflows would round to -0.0 alone but to +0.0 or -0.0 in the
kernel, depending on whether a fused multiply-add met it.

`RowSparsity` keeps whether a scaled array has that shape, checked whole once and then on the rows a change touched.
"""

from __future__ import annotations

import math
from typing import cast

import numpy as np


def _rows_clean(block: np.ndarray) -> tuple[bool, np.ndarray]:
    """Whether every row of `block` ((r, A)) has at most one nonzero entry and every entry is finite and has its sign
    bit clear (no negative number, no -0.0); and which columns hold a nonzero entry ((A,) bool)."""
    if block.size == 0:
        return True, np.zeros(block.shape[1], dtype=bool)
    if not np.isfinite(block).all():
        return False, np.zeros(block.shape[1], dtype=bool)
    nz = block != 0
    cols = nz.any(axis=0)
    if np.signbit(block).any() or (np.count_nonzero(nz, axis=1) > 1).any():
        return False, cols
    return True, cols


def _witness_after(w: int | None, rows: np.ndarray, written: np.ndarray, n: int) -> int | None:
    """A column's holder after `written` ((r,), its new entries) went to `rows` (indices into its n entries, negative
    ones from the end): a row (0 <= row < n) with a nonzero entry, or -1 for none, or None for unknown. A nonzero entry
    written is a holder; only zeros written leave a column that held none empty, and a holder not among the rows a
    holder; a holder overwritten by zero is lost (unknown)."""
    nz = np.flatnonzero(written)
    if nz.size:
        return int(rows[nz[0]]) % n
    if w is None or w < 0 or not (rows % n == w).any():
        return w
    return None


def row_nonzero(row: list[float]) -> int | None:
    """Where one account's balances (A Python floats) hold their one nonzero entry, -1 when every entry is +0.0, None
    when the row is not clean as `_rows_clean` asks (a second nonzero entry, a negative, non-finite or -0.0 one). With
    every entry of a vector finite and positive, `row @ vec` of a clean row is then that entry's product x * v (+0.0
    for none), which the kernel's sum of it and +0.0 terms gives in any order, fused or not (the module docstring)."""
    at = -1
    for j, x in enumerate(row):
        if x == 0.0:
            if math.copysign(1.0, x) < 0.0:  # -0.0
                return None
        elif at >= 0 or not 0.0 < x < math.inf:
            return None
        else:
            at = j
    return at


def _witness_in(w: int | None, rows: list[int], written: list[float], n: int) -> int | None:
    """`_witness_after` of rows and entries given as Python lists (a few of them): the same holder."""
    for i, x in zip(rows, written):
        if x != 0.0:
            return i % n
    if w is None or w < 0 or all(i % n != w for i in rows):
        return w
    return None


#: at most this many pending row indices are checked and copied one by one in Python (`RowSparsity._check_few`)
_FEW_ROWS = 16

#: rows remembered for a lazy check before the whole array is checked again instead
_MAX_PENDING = 64


class RowSparsity:
    """Whether a scaled (n, A) array has at most one nonzero entry per row, all finite and non-negative (no -0.0)
    (None: unknown, to check whole), and a contiguous copy of each column that may hold a nonzero entry (a column of a
    row-major (n, A) array is strided: multiplying it reads the whole array, as the kernel does). `touched` after every
    change to the array (with the rows it changed, or None when any row may have); the changed rows are checked and
    copied at the next `products`."""

    __slots__ = ("clean", "cols", "held", "pending", "tmp")

    def __init__(self) -> None:
        self.clean: bool | None = None
        self.cols: dict[int, np.ndarray] = {}  # column -> its values, (n,) contiguous
        self.held: dict[int, int] = {}  # kept column -> a row with a nonzero entry, or -1: none (where known)
        self.pending: list[np.ndarray] = []
        self.tmp = np.zeros(0)  # scratch row of `products`

    def touched(self, rows: np.ndarray | None) -> None:
        """The array changed at `rows` (indices), or anywhere (None)."""
        if rows is None or len(self.pending) >= _MAX_PENDING:
            self.clean, self.pending, self.cols, self.held = None, [], {}, {}
        elif self.clean:
            self.pending.append(rows)
        # unclean stays unclean until a change anywhere (None): its rows are not followed

    def _check(self, arr: np.ndarray) -> None:
        n = arr.shape[0]
        if self.clean and any(c.shape != (n,) for c in self.cols.values()):
            self.clean = None  # the array was replaced under us (more rows): check it whole
        if self.clean is None:
            ok, active = _rows_clean(arr)
            self.clean = ok
            self.cols = {j: np.ascontiguousarray(arr[:, j]) for j in np.flatnonzero(active).tolist()} if ok else {}
            self.held = {}
        elif not self.pending:
            pass  # nothing reported since the last look (most calls): `_check_few` of no rows changes nothing
        elif self.clean and sum(r.size for r in self.pending) <= _FEW_ROWS:
            self._check_few(arr, n)
        elif self.clean:
            rows = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
            block = arr[rows]
            ok, active = _rows_clean(block)
            self.clean = ok
            if not ok:
                self.cols, self.held = {}, {}
            else:
                for j, c in self.cols.items():
                    c[rows] = block[:, j]
                    w = _witness_after(self.held.get(j), rows, block[:, j], n)
                    if w is None:
                        self.held.pop(j, None)
                    else:
                        self.held[j] = w
                for j in np.flatnonzero(active).tolist():
                    if j not in self.cols:
                        self.cols[j] = np.ascontiguousarray(arr[:, j])
                        self.held[j] = cast(int, _witness_after(None, rows, block[:, j], n))
        self.pending = []

    def _check_few(self, arr: np.ndarray, n: int) -> None:
        """`_check` of a handful of pending rows, row by row in Python floats (its numpy calls' fixed cost is most of a
        few rows' check): the same verdict (`row_nonzero` is `_rows_clean` of one row), column copies and holders."""
        idx = [i for r in self.pending for i in r.tolist()]  # as given: negative and repeated indices included
        vals = [arr[i].tolist() for i in idx]
        ats = [row_nonzero(v) for v in vals]
        if None in ats:
            self.clean, self.cols, self.held = False, {}, {}
            return
        for j, c in self.cols.items():
            col = [v[j] for v in vals]
            for i, x in zip(idx, col):
                c[i] = x
            w = _witness_in(self.held.get(j), idx, col, n)
            if w is None:
                self.held.pop(j, None)
            else:
                self.held[j] = w
        for j in sorted({a for a in cast("list[int]", ats) if a >= 0} - self.cols.keys()):
            self.cols[j] = np.ascontiguousarray(arr[:, j])
            self.held[j] = cast(int, _witness_in(None, idx, [v[j] for v in vals], n))

    def known_clean(self, arr: np.ndarray) -> bool:
        """Whether `arr` is row-sparse, finite and non-negative, its nonzero columns all kept: then `holds` answers for
        it (the rows reported since the last look are checked and copied first, as `products` would)."""
        self._check(arr)
        return bool(self.clean)

    def holds(self, j: int) -> bool:
        """Whether column `j` of a `known_clean` array has a nonzero entry: a column without a kept copy has none (the
        copies cover every column that ever held one), a kept one is searched for a holder once, and the holder (or
        its absence) kept while the rows written since leave it (see `_witness_after`)."""
        c = self.cols.get(j)
        if c is None:
            return False
        w = self.held.get(j)
        if w is None:  # a clean column is >= 0: its largest entry is nonzero unless every entry is +0.0
            k = int(np.argmax(c))
            w = self.held[j] = k if c[k] != 0 else -1
        return w >= 0

    def products(self, arr: np.ndarray, vec: np.ndarray, out: np.ndarray | None = None) -> np.ndarray | None:
        """`arr @ vec` with the kernel's bits when the array is row-sparse and `vec` finite and positive (elementwise
        products over the active columns), else None (the caller takes the matrix-vector product). `out`: an (n,)
        array to write into (else a new one)."""
        self._check(arr)
        if not self.clean or vec.shape != (arr.shape[1],):
            return None
        v = vec.tolist()
        if not all(0.0 < x < math.inf for x in v):
            return None
        n = arr.shape[0]
        res = np.empty(n) if out is None else out
        cols = sorted(self.cols)
        if not cols:
            res.fill(0.0)
            return res
        np.multiply(self.cols[cols[0]], v[cols[0]], out=res)
        if len(cols) > 1:
            tmp = self.tmp if self.tmp.shape == (n,) else np.empty(n)
            self.tmp = tmp  # kept: a new (n,) row per call costs its page faults on a large book
            for j in cols[1:]:
                np.multiply(self.cols[j], v[j], out=tmp)
                np.add(res, tmp, out=res)
        return res
