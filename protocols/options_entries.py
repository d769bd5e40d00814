"""The non-zero entries of an options venue's position book (protocols/options.py): `qty[n, i]` (units of
instrument i) and `spot[n, u]` (tokens of underlying u) are mostly zeros (a few positions per account), and every
margin portfolio, the venue's long units and the rows' portfolios a margin coordinator asks for are built from
their non-zero entries.

A scan of the whole book is the cost: the venue finds the entries once per state and market (kept with the market
key and state version they were found at, `OptionsVenue._entries`) and the batches of that state read them. The
entries of some rows are the whole book's entries of those rows: for rows in ascending order, `np.nonzero(qty[rows])`
lists them in the same (row, column) order with the rows renumbered, so they are taken from the whole book's list
instead of a gather and a scan of those rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.intp]


def flat_nonzero(a: np.ndarray) -> IntArray:
    """Flat (row-major) indices of a 2-D float array's non-zero entries (NaN counts as non-zero, -0.0 as zero),
    found on the boolean `a != 0`: numpy scans a boolean array many times faster than a float one."""
    return np.flatnonzero(np.ravel(a) != 0)


@dataclass(frozen=True, eq=False)
class BookEntries:
    """Non-zero entries of a (N, I) qty book and a (N, U) spot book, each in row-major order."""

    qty_flat: IntArray  # flat (row-major) index of each qty entry in the book it was found in, ascending
    qty_rows: IntArray  # account row of each qty entry
    qty_cols: IntArray  # instrument of each qty entry
    spot_flat: IntArray  # flat (row-major) index of each spot entry in the book it was found in, ascending
    spot_rows: IntArray  # account row of each spot entry
    spot_cols: IntArray  # underlying of each spot entry

    def values(self, qty: np.ndarray, spot: np.ndarray) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The entries' qty and spot values in the books they were found in (`qty[rows, cols]` and
        `spot[rows, cols]` of those books, read by flat index)."""
        return np.ravel(qty)[self.qty_flat], np.ravel(spot)[self.spot_flat]


def entries_of(a: np.ndarray) -> tuple[IntArray, IntArray, IntArray]:
    """(flat indices, rows, columns) of a 2-D float array's non-zero entries, row-major: `np.nonzero`'s rows and
    columns from one divmod (the same quotients and remainders as `//` and `%`)."""
    flat = flat_nonzero(a)
    cols = a.shape[1]
    if cols == 0:
        return flat, flat, flat
    rows, col = np.divmod(flat, cols)
    return flat, rows, col


def book_entries(qty: np.ndarray, spot: np.ndarray) -> BookEntries:
    """The non-zero entries of `qty` and `spot` (2-D float arrays with the same rows)."""
    return BookEntries(*entries_of(qty), *entries_of(spot))


def rows_entries(whole: BookEntries, rows: IntArray, n: int) -> BookEntries | None:
    """The entries of `qty[rows]` and `spot[rows]` (rows renumbered 0..len(rows)-1) from the whole book's entries
    `whole` of n rows, when `rows` is strictly ascending within 0..n-1; None otherwise (the caller scans the
    gathered rows). The flat indices stay indices into the whole book (where the values are read)."""
    if rows.size and (rows[0] < 0 or rows[-1] >= n or not bool(np.all(rows[1:] > rows[:-1]))):
        return None
    new = np.full(n, -1, dtype=np.intp)
    new[rows] = np.arange(rows.size, dtype=np.intp)
    q_new, s_new = new[whole.qty_rows], new[whole.spot_rows]
    q_keep, s_keep = np.flatnonzero(q_new >= 0), np.flatnonzero(s_new >= 0)
    return BookEntries(
        whole.qty_flat[q_keep],
        q_new[q_keep],
        whole.qty_cols[q_keep],
        whole.spot_flat[s_keep],
        s_new[s_keep],
        whole.spot_cols[s_keep],
    )
