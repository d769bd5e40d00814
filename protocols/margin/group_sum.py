"""Row-wise sums over groups of columns, bit-identical to one `np.bincount(idx, weights=row)` per row.

`GroupSums()(idx, w, n)` returns the (R, n) array whose row r is `np.bincount(idx, weights=w[r], minlength=n)`.
bincount starts every bin at 0.0 and adds its members in column order; so does a 0/1 sparse matrix (n x k, one
1.0 per column, column indices sorted within each row) times w.T in scipy's CSR kernel (`csr_matvecs`: per output
row, y += 1.0 * x for each stored column in order; 1.0 * x is exact, so a fused multiply-add gives the same bits).
The matrix depends only on the grouping, so it is kept for the groupings a caller repeats (a margin model values
the same book structure every block): one kernel call over the nonzeros instead of building an (R x k) flat index
and bincounting R x n bins every time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class GroupSums:
    """Callable (idx, w, n) -> (R, n) group sums; keeps the sparse matrices of the last `kept` groupings. Arrays
    of fewer than `sparse_min` elements are summed by one bincount over the flattened rows (bin (r, g) adds its
    members in column order too), which is cheaper for a few rows than the sparse product's fixed cost."""

    def __init__(self, kept: int = 8, sparse_min: int = 4096) -> None:
        if kept < 1:
            raise ValueError(f"kept={kept}: allowed >= 1 groupings")
        self.kept = kept
        self.sparse_min = sparse_min  # (rows x columns) from which the sparse product is used, else one bincount
        self._mats: dict[tuple[int, bytes], Any] = {}

    def matrix(self, idx: IntArray, n: int) -> Any:
        """The (n, k) CSR 0/1 matrix of grouping `idx` (k,) into n bins (cached by n and idx's bytes)."""
        key = (n, idx.tobytes())
        hit = self._mats.get(key)
        if hit is not None:
            return hit
        from scipy.sparse import csr_matrix  # lazy: scipy.sparse is not needed to import the package

        k = idx.size
        mat = csr_matrix((np.ones(k), (idx, np.arange(k, dtype=np.int64))), shape=(n, k))
        mat.sort_indices()  # members of a bin in column order, as bincount adds them
        if len(self._mats) >= self.kept:
            del self._mats[next(iter(self._mats))]
        self._mats[key] = mat
        return mat

    def __call__(self, idx: npt.ArrayLike, w: npt.ArrayLike, n: int) -> FloatArray:
        """(R, n) sums of each row of w (R, k) over the groups idx (k,) of 0..n-1 (USD or any unit of w)."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        w = np.asarray(w, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != idx.size:
            raise ValueError(f"w.shape={w.shape}: allowed (rows, {idx.size}) (one column per group index)")
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"idx: allowed group indices 0..{n - 1}, got {idx.min()}..{idx.max()}")
        if w.size < self.sparse_min:  # a small book: one bincount costs less than the sparse product's set-up
            flat = (np.arange(w.shape[0], dtype=np.int64)[:, None] * n + idx[None, :]).ravel()
            small = np.asarray(np.bincount(flat, weights=w.ravel(), minlength=w.shape[0] * n), dtype=np.float64)
            return small.reshape(w.shape[0], n)  # weighted: already float64, so no copy
        sums: FloatArray = self.matrix(idx, n) @ w.T  # (n, R), C order: returned as its (R, n) transpose (a view)
        return sums.T
