"""The common output of every margin model: per-account requirements, equity and what drove them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class MarginResult:
    """Per-account USD requirements (positive amounts) and equity; healthy at maintenance iff equity >= mm."""

    im: np.ndarray  # (N,) USD initial margin requirement
    mm: np.ndarray  # (N,) USD maintenance margin requirement
    equity: np.ndarray  # (N,) USD mark-to-market value incl. cash
    drivers: dict[str, np.ndarray] = field(default_factory=dict)  # named per-account components
    model: str = ""

    def __post_init__(self) -> None:
        self.im = np.asarray(self.im, dtype=np.float64)
        self.mm = np.asarray(self.mm, dtype=np.float64)
        self.equity = np.asarray(self.equity, dtype=np.float64)
        n = self.equity.shape
        for name in ("im", "mm"):
            if getattr(self, name).shape != n:
                raise ValueError(f"{name}.shape={getattr(self, name).shape}: allowed {n} (same as equity)")

    @property
    def margin_excess_mm(self) -> np.ndarray:
        return self.equity - self.mm

    @property
    def margin_excess_im(self) -> np.ndarray:
        return self.equity - self.im

    @property
    def healthy_mm(self) -> np.ndarray:
        return self.equity >= self.mm

    def frame(self, labels: tuple[str, ...] | list[str] | None = None) -> pd.DataFrame:
        """Tidy per-account table: snake_case columns, USD amounts with a _usd suffix."""
        n = self.equity.shape[0]
        df = pd.DataFrame(
            {
                "account": list(labels) if labels else [f"account-{i}" for i in range(n)],
                "model": self.model,
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
                col = k if unitless else f"{k}_usd"
                df[col] = v
        return df
