"""Per-row margin cache of `protocols.options.OptionsVenue`: each row's requirement is recomputed only when the row
(its cash, positions or spot collateral) or the market (chain time, prices, vol surfaces, instruments, model,
params) changed since it was last computed.

A scenario-grid model (protocols/margin/scenario_pm.py) values each account on its own: every sum is a bincount
over that account's positions, in the same order whichever other accounts are in the batch, so a row computed in
a small batch is bit-identical to the same row computed with the whole book. Rows are compared bit for bit with
the state they were computed from (so a state change that forgot to say which rows it moved is still caught),
the market by `MarketKey`. Models not known to be separable per account, and the offset of gains across
underlyings (Deribit `pnl_offset`, which depends on the underlyings present in the batch), fall back to
recomputing every row whenever any row changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from defistress.protocols.margin.scenario_pm import ScenarioPM

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class MarketKey:
    """The market a margin was computed in: objects compared by identity, values (bytes, floats) by equality."""

    objects: tuple[Any, ...]
    values: tuple[Any, ...]
    prices: FloatArray  # USD per underlying, the oracle prices the key was taken at (not compared: in `values`)

    def same(self, other: MarketKey | None) -> bool:
        return (
            other is not None
            and len(self.objects) == len(other.objects)
            and all(a is b for a, b in zip(self.objects, other.objects))
            and self.values == other.values
        )


def row_separable(model: object, n_underlyings: int) -> bool:
    """True when the model's requirement of an account does not depend on the other accounts of the batch."""
    if not isinstance(model, ScenarioPM):
        return False
    offset = model.params.cross_underlying == "offset"
    return n_underlyings <= 1 or not offset


def _bits(a: np.ndarray) -> np.ndarray:
    """The array's float64 bit patterns (so -0.0 != 0.0 and NaN == the same NaN)."""
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


def _moved_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows (ascending, repeated once per differing column) where two (N, K) arrays differ in any bit: found on
    the flat comparison, which numpy scans many times faster than a per-row `any`."""
    cols = a.shape[1]
    if cols == 0:
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(np.ravel(_bits(a) != _bits(b))) // cols


def _copy_into(kept: np.ndarray, a: np.ndarray) -> np.ndarray:
    """A copy of `a`, written into `kept` when that has its shape and dtype: the whole book's state is copied after
    every whole-book batch (twice a block), and a fresh array of a large book costs the allocator's fresh pages;
    the kept arrays are this cache's own (never handed out), so overwriting them changes no result."""
    if kept.shape != a.shape or kept.dtype != a.dtype:
        return a.copy()
    np.copyto(kept, a)
    return kept


class RowMarginCache:
    """IM, MM and 1-D drivers per row (USD) with the state each row was computed from."""

    def __init__(self) -> None:
        self.key: MarketKey | None = None
        self.version = -1  # venue state version of the last bit-for-bit comparison
        self.ok = np.zeros(0, dtype=bool)  # the row's cached figures are current
        self.cash = np.zeros(0)
        self.qty = np.zeros((0, 0))
        self.spot = np.zeros((0, 0))
        self.im = np.zeros(0)
        self.mm = np.zeros(0)
        self.drivers: dict[str, np.ndarray] = {}
        self.model_name = ""
        self.rows_computed = 0  # rows sent to the margin model so far (a count for tests and benchmarks)
        self.batches = 0  # calls of the margin model so far

    def invalidate(self) -> None:
        """Forget every row (the next refresh recomputes the whole book)."""
        self.key = None

    def _reset(self, n: int, n_i: int, n_u: int) -> None:
        """No row current. The state arrays are kept when their shapes still fit: a row's state is read only
        while the row is current, and the next batch (of every row) writes them all."""
        self.ok = np.zeros(n, dtype=bool)
        if self.cash.shape != (n,) or self.qty.shape != (n, n_i) or self.spot.shape != (n, n_u):
            self.cash, self.qty, self.spot = np.zeros(n), np.zeros((n, n_i)), np.zeros((n, n_u))
        self.im, self.mm, self.drivers = np.zeros(n), np.zeros(n), {}

    def _grow(self, n: int) -> None:
        k = n - self.ok.size
        self.ok = np.concatenate([self.ok, np.zeros(k, dtype=bool)])
        self.cash = np.concatenate([self.cash, np.zeros(k)])
        self.qty = np.vstack([self.qty, np.zeros((k, self.qty.shape[1]))])
        self.spot = np.vstack([self.spot, np.zeros((k, self.spot.shape[1]))])
        self.im = np.concatenate([self.im, np.zeros(k)])
        self.mm = np.concatenate([self.mm, np.zeros(k)])
        self.drivers = {name: np.concatenate([d, np.zeros(k, dtype=d.dtype)]) for name, d in self.drivers.items()}

    def _stale_rows(self, venue) -> np.ndarray:
        """Valid rows whose cash, positions or spot differ (bit for bit) from the state they were computed at."""
        moved = _bits(venue.cash) != _bits(self.cash)
        moved[_moved_rows(venue.qty, self.qty)] = True
        moved[_moved_rows(venue.spot, self.spot)] = True
        return moved & self.ok

    def refresh(self, venue, key: MarketKey, version: int) -> tuple[FloatArray, FloatArray, dict[str, np.ndarray]]:
        """(IM, MM, drivers) of every row now; recomputes only rows that are stale. Returned arrays are never
        written to afterwards (a later refresh writes into copies)."""
        self._sync(venue, key, version)
        self._compute_stale(venue)
        return self.im, self.mm, self.drivers

    def refresh_rows(
        self, venue, key: MarketKey, version: int, rows: np.ndarray
    ) -> tuple[FloatArray, FloatArray, dict[str, np.ndarray]] | None:
        """(IM, MM, drivers) of `rows` (indexed, new arrays) when every one of them is current without a batch of
        the model, else None after recomputing every stale row (the caller then reads the whole book). A row's
        figures do not depend on the other rows of the batch only for a separable model: for the others any
        stale row recomputes the book, as `refresh` does."""
        self._sync(venue, key, version)
        if rows.size and self.ok[rows].all() and row_separable(venue.model, len(venue.underlyings)):
            return self.im[rows], self.mm[rows], {k: d[rows] for k, d in self.drivers.items()}
        self._compute_stale(venue)
        return None

    def row_current(self, venue, key: MarketKey, version: int, row: int) -> bool:
        """Whether `self.im[row]` and `self.mm[row]` are the row's figures now without a batch of the model (what
        `refresh_rows` returns for the one row when it returns figures); forgets moved rows first, as it does."""
        self._sync(venue, key, version)
        return bool(self.ok[row]) and row_separable(venue.model, len(venue.underlyings))

    def _sync(self, venue, key: MarketKey, version: int) -> None:
        """Forget rows whose market or state moved since they were computed (no model call)."""
        n, n_i, n_u = venue.n_accounts, venue.qty.shape[1], venue.spot.shape[1]
        if not key.same(self.key) or self.qty.shape[1:] != (n_i,) or self.spot.shape[1:] != (n_u,) or n < self.ok.size:
            self._reset(n, n_i, n_u)
        elif n > self.ok.size:
            self._grow(n)
        self.key = key
        if version != self.version:
            if self.ok.any():  # else nothing to compare (and nothing moved that is not already to compute)
                self.ok &= ~self._stale_rows(venue)
            self.version = version

    def _compute_stale(self, venue) -> None:
        n = venue.n_accounts
        need = np.flatnonzero(~self.ok)
        if need.size:
            if need.size < n and not row_separable(venue.model, len(venue.underlyings)):
                need = np.arange(n)
            self._compute(venue, need)

    def _compute(self, venue, need: np.ndarray) -> None:
        n = venue.n_accounts
        full = need.size == n  # every row, in order (need is sorted and unique): the venue's arrays as they are
        cash, qty, spot = (
            (venue.cash, venue.qty, venue.spot) if full else (venue.cash[need], venue.qty[need], venue.spot[need])
        )
        res = venue.model.requirements(venue._build(cash, qty, spot, self.key), venue.market_state())
        self.rows_computed += int(need.size)
        self.batches += 1
        per_row = {k: np.asarray(d) for k, d in res.drivers.items() if np.ndim(d) == 1 and np.shape(d)[0] == need.size}
        if not full and set(per_row) != set(self.drivers):  # a driver the cache does not hold for every row
            self._compute(venue, np.arange(n))
            return
        im, mm = (np.array(res.im, dtype=np.float64), np.array(res.mm, dtype=np.float64))
        if full:
            self.im, self.mm = im, mm
            self.drivers = {k: d.copy() for k, d in per_row.items()}
        else:  # copy on write: results handed out earlier keep their values
            self.im, self.mm = self.im.copy(), self.mm.copy()
            self.im[need], self.mm[need] = im, mm
            drivers = {}
            for k, d in per_row.items():
                arr = self.drivers[k]
                if arr.dtype != d.dtype:
                    arr = arr.astype(np.result_type(arr.dtype, d.dtype))
                else:
                    arr = arr.copy()
                arr[need] = d
                drivers[k] = arr
            self.drivers = drivers
        self.model_name = str(res.model)
        if full:  # the venue's own arrays: copies (a later in-place change of the venue must show as a move)
            self.cash, self.qty, self.spot = (
                _copy_into(self.cash, cash),
                _copy_into(self.qty, qty),
                _copy_into(self.spot, spot),
            )
        else:
            self.cash[need], self.qty[need], self.spot[need] = cash, qty, spot
        self.ok[need] = True
