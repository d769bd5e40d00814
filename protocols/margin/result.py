"""The common output of every margin model: per-account requirements, equity and what drove them.

Requirements and equity are in USD for every account (a coin-margined account's figures are its coin figures
times the coin's spot). Documented driver names shared by the models:

- `native_margin_mm`, `native_margin_im`: the engine's own margin figure, equity minus requirement, as Lyra
  and Derive report it (`getMarginAndMarkToMarket`: >= 0 healthy), in the account's margin currency (USD, or
  coin for a coin-margined account);
- `native_mm`, `native_im`, `native_equity`: requirement and equity in the account's margin currency.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]


@dataclass
class MarginResult:
    """Per-account USD requirements (positive amounts) and equity; healthy at maintenance iff equity >= mm.

    equity_parts: per-account equity split (options, collateral, delta1, funding, cash...) in the account's
    margin currency, filled by the scenario-grid engine; currency: each account's margin currency ('USD' or an
    underlying) when not all USD; exact: in exact mode, the figures in 1e18 fixed point (Python ints) in the
    account's margin currency, keys im, mm, equity, native_margin_mm, native_margin_im.
    """

    im: FloatArray  # (N,) USD initial margin requirement
    mm: FloatArray  # (N,) USD maintenance margin requirement
    equity: FloatArray  # (N,) USD mark-to-market value incl. cash
    drivers: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)  # named per-account components
    model: str = ""
    equity_parts: dict[str, FloatArray] = field(default_factory=dict)
    currency: tuple[str, ...] = ()
    exact: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.im = np.asarray(self.im, dtype=np.float64)
        self.mm = np.asarray(self.mm, dtype=np.float64)
        self.equity = np.asarray(self.equity, dtype=np.float64)
        n = self.equity.shape
        for name in ("im", "mm"):
            if getattr(self, name).shape != n:
                raise ValueError(f"{name}.shape={getattr(self, name).shape}: allowed {n} (same as equity)")
        if self.currency and len(self.currency) != n[0]:
            raise ValueError(f"currency: allowed empty or {n[0]} names, got {len(self.currency)}")

    @property
    def margin_excess_mm(self) -> FloatArray:
        return self.equity - self.mm

    @property
    def margin_excess_im(self) -> FloatArray:
        return self.equity - self.im

    @property
    def healthy_mm(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.equity >= self.mm)

    def native_margin(self, initial: bool = False) -> FloatArray:
        """The engine's native margin figure (equity minus requirement, >= 0 healthy) in each account's margin
        currency: drivers['native_margin_im' or 'native_margin_mm'], else USD equity minus requirement."""
        key = "native_margin_im" if initial else "native_margin_mm"
        if key in self.drivers:
            return np.asarray(self.drivers[key], dtype=np.float64)
        return self.margin_excess_im if initial else self.margin_excess_mm

    def frame(self, labels: tuple[str, ...] | list[str] | None = None) -> pd.DataFrame:
        """Tidy per-account table: snake_case columns, USD amounts with a _usd suffix (native_* columns are in
        the account's margin currency, column `currency`)."""
        n = self.equity.shape[0]
        df = pd.DataFrame(
            {
                "account": list(labels) if labels else [f"account-{i}" for i in range(n)],
                "model": self.model,
                "currency": list(self.currency) if self.currency else ["USD"] * n,
                "equity_usd": self.equity,
                "im_usd": self.im,
                "mm_usd": self.mm,
                "excess_im_usd": self.margin_excess_im,
                "excess_mm_usd": self.margin_excess_mm,
            }
        )
        for k, v in self.drivers.items():
            v = np.asarray(v)
            if v.shape == (n,):
                unitless = v.dtype.kind in "iub" or k.endswith(("_usd", "_factor", "_ratio", "_count", "_index"))
                col = k if unitless or k.startswith("native_") else f"{k}_usd"
                df[col] = v
        return df
