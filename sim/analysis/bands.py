"""Bands of an outcome over seeds x design samples, whether a published figure lies in them, and how much of
the outcome's variance each uncertain input explains.

- band: the (low, high) quantiles (default 5% and 95%) and the median of every run's value (numpy.quantile,
  linear interpolation); runs where the figure is undefined (None/NaN) are left out and counted.
- inside: the published range [low, high] (a single figure is its own range) meets the band.
- sensitivity: first-order indices S1 (the share of the variance of the seed-averaged outcome explained by
  each input alone) from a Latin-hypercube sample with SALib's RBD-FAST estimator (Tarantola et al. 2006,
  Plischke 2010), which works on any LHS sample without a dedicated Saltelli design; and the share of the
  outcome's variance left within design points, i.e. due to the seed (law of total variance).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: fewest design samples RBD-FAST is run on (it needs well above 2 x M harmonics; M = 10 by default)
MIN_SAMPLES_FOR_SENSITIVITY = 25


@dataclass(frozen=True)
class Band:
    """Quantiles of an outcome over runs; `n` runs had the figure, `missing` did not."""

    low: float | None
    median: float | None
    high: float | None
    n: int
    missing: int
    q_low: float
    q_high: float

    def as_dict(self) -> dict:
        return {
            "low": self.low,
            "median": self.median,
            "high": self.high,
            "n": self.n,
            "missing": self.missing,
            "q_low": self.q_low,
            "q_high": self.q_high,
        }


def band(values, q_low: float = 0.05, q_high: float = 0.95) -> Band:
    """The q_low and q_high quantiles and the median of the finite values (None when none is finite)."""
    if not 0.0 <= q_low < q_high <= 1.0:
        raise ValueError(f"quantiles: need 0 <= low < high <= 1, got {q_low}, {q_high}")
    x = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(x)
    if not ok.any():
        return Band(None, None, None, 0, int(len(x)), q_low, q_high)
    lo, med, hi = np.quantile(x[ok], [q_low, 0.5, q_high])
    return Band(float(lo), float(med), float(hi), int(ok.sum()), int((~ok).sum()), q_low, q_high)


def inside(b: Band, published: tuple[float, float]) -> bool | None:
    """Whether the published range meets the band (None when the band is undefined)."""
    if b.low is None or b.high is None:
        return None
    lo, hi = published
    return bool(lo <= b.high and hi >= b.low)


def seed_share(samples: np.ndarray, y: np.ndarray) -> float | None:
    """Share of the variance of y within design samples (the seed's part): E[Var(y | sample)] / Var(y)."""
    samples = np.asarray(samples)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(y)
    samples, y = samples[ok], y[ok]
    total = float(np.var(y))
    if len(y) < 2 or total <= 0 or pd.Series(samples).value_counts().max() < 2:
        return None  # no variance, or one run per sample: the seed's part cannot be told apart
    within = pd.Series(y).groupby(samples).transform(lambda g: g - g.mean()).to_numpy()
    return float(np.mean(within**2) / total)


def harmonics(n: int) -> int:
    """RBD-FAST's number of harmonics M for n samples: 4 on small designs (more harmonics on few samples add
    noise that inflates the indices: at n = 26, M = 10 gives Ishigami indices summing to 1.09 instead of 0.72),
    growing to SALib's default 10 from n = 120."""
    return int(min(10, max(4, n // 12)))


def sensitivity(
    x: np.ndarray, y: np.ndarray, names: list[str], seed: int = 0, with_conf: bool = False
) -> dict[str, float | None]:
    """First-order indices S1 of y on the columns of x (one row per design sample), by SALib RBD-FAST with
    `harmonics(n)`; with `with_conf`, also "<name>:conf", the half-width of SALib's 95% bootstrap interval.

    Returns None for every input when there are fewer than MIN_SAMPLES_FOR_SENSITIVITY finite samples or y
    does not vary."""
    from SALib.analyze import rbd_fast

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(y)
    none: dict[str, float | None] = {n: None for n in names}
    if with_conf:
        none.update({f"{n}:conf": None for n in names})
    if not names or ok.sum() < MIN_SAMPLES_FOR_SENSITIVITY or float(np.var(y[ok])) <= 0:
        return none
    x, y = x[ok], y[ok]
    bounds = [[float(c.min()), float(c.max()) if c.max() > c.min() else float(c.min()) + 1.0] for c in x.T]
    problem = {"num_vars": len(names), "names": list(names), "bounds": bounds}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = rbd_fast.analyze(problem, x, y, M=harmonics(len(y)), seed=seed)
    out: dict[str, float | None] = {
        n: (None if not np.isfinite(v) else float(max(v, 0.0))) for n, v in zip(names, res["S1"])
    }
    if with_conf:
        out.update({f"{n}:conf": (None if not np.isfinite(c) else float(c)) for n, c in zip(names, res["S1_conf"])})
    return out
