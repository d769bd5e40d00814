"""Backtesting margin models and VaR forecasts: exceedances, Kupiec POF, Christoffersen independence and
conditional coverage, and the Basel traffic light (docs/margin-methods.md section 8).

An exceedance at step t is a realised loss larger than the requirement forecast before it. For a margin model
the forecast is its maintenance requirement on a reference position (one perp or spot unit, opened at the
current price), rebuilt every step from the information available then (prices, EWMA vol, a rolling window).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import xlogy
from scipy.stats import binom, chi2

from defistress.protocols.margin.compare import build_model
from defistress.protocols.margin.portfolio import MarketState, Portfolio
from defistress.protocols.margin.var import DAYS_PER_YEAR, ewma_vol

GREEN_CDF = 0.95  # BCBS 1996 traffic light: green while P(X <= x) < 95%
YELLOW_CDF = 0.9999  # yellow while P(X <= x) < 99.99%, red above
BASE_MULTIPLIER = 3.0  # BCBS 1996 multiplication factor
PLUS_FACTORS = (0.40, 0.50, 0.65, 0.75, 0.85)  # BCBS 1996 yellow zone, 5..9 exceptions at 250 obs / 99%
RED_PLUS_FACTOR = 1.0


def kupiec_pof(exceedances: int, n: int, confidence: float) -> tuple[float, float]:
    """Kupiec (1995) proportion-of-failures LR = -2 ln[(1-p)^(n-x) p^x] + 2 ln[(1-x/n)^(n-x) (x/n)^x] ~ chi2(1);
    returns (LR, p-value). p = 1 - confidence."""
    if n <= 0 or not 0 <= exceedances <= n:
        raise ValueError(f"exceedances={exceedances}, n={n}: allowed 0 <= exceedances <= n, n > 0")
    p, x = 1.0 - confidence, float(exceedances)
    rate = x / n
    raw = -2.0 * (xlogy(n - x, 1 - p) + xlogy(x, p)) + 2.0 * (xlogy(n - x, 1 - rate) + xlogy(x, rate))
    lr = max(float(raw), 0.0)
    return lr, float(chi2.sf(lr, 1))


def transition_counts(hits: np.ndarray) -> tuple[int, int, int, int]:
    """(n00, n01, n10, n11): counts of consecutive (previous, current) exceedance pairs."""
    h = np.asarray(hits, dtype=bool)
    prev, cur = h[:-1], h[1:]
    return (int((~prev & ~cur).sum()), int((~prev & cur).sum()), int((prev & ~cur).sum()), int((prev & cur).sum()))


def christoffersen(hits: np.ndarray) -> tuple[float, float, tuple[int, int, int, int]]:
    """Christoffersen (1998) independence LR_ind = -2[ln L(pi) - ln L(pi0, pi1)] ~ chi2(1), pi0 = n01/(n00+n01),
    pi1 = n11/(n10+n11), pi = (n01+n11)/(all pairs); returns (LR, p-value, counts)."""
    n00, n01, n10, n11 = counts = transition_counts(hits)
    total = n00 + n01 + n10 + n11
    if total == 0:
        return 0.0, 1.0, counts
    pi = (n01 + n11) / total
    pi0 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi1 = n11 / (n10 + n11) if n10 + n11 else 0.0
    ll_null = xlogy(n00 + n10, 1 - pi) + xlogy(n01 + n11, pi)
    ll_alt = xlogy(n00, 1 - pi0) + xlogy(n01, pi0) + xlogy(n10, 1 - pi1) + xlogy(n11, pi1)
    lr = max(float(-2.0 * (ll_null - ll_alt)), 0.0)
    return lr, float(chi2.sf(lr, 1)), counts


@dataclass(frozen=True)
class TrafficLight:
    """Basel traffic-light zone from the binomial CDF of the exception count, with plus factor and multiplier."""

    zone: str
    exceedances: int
    n: int
    cumulative_probability: float
    green_max: int
    yellow_max: int
    plus_factor: float

    @property
    def multiplier(self) -> float:
        return BASE_MULTIPLIER + self.plus_factor


def traffic_light(exceedances: int, n: int, confidence: float = 0.99) -> TrafficLight:
    """Zones by scipy.stats.binom(n, 1-confidence).cdf: green < 95%, yellow < 99.99%, red otherwise. Plus
    factors follow BCBS's 250-observation table by position inside the yellow zone (an extension for n != 250)."""
    dist = binom(n, 1.0 - confidence)
    xs = np.arange(n + 1)
    cdf = dist.cdf(xs)
    green_max = int(xs[cdf < GREEN_CDF].max()) if (cdf < GREEN_CDF).any() else -1
    yellow_max = int(xs[cdf < YELLOW_CDF].max()) if (cdf < YELLOW_CDF).any() else green_max
    if exceedances <= green_max:
        zone, plus = "green", 0.0
    elif exceedances <= yellow_max:
        zone, plus = "yellow", PLUS_FACTORS[min(exceedances - green_max - 1, len(PLUS_FACTORS) - 1)]
    else:
        zone, plus = "red", RED_PLUS_FACTOR
    return TrafficLight(zone, int(exceedances), int(n), float(dist.cdf(exceedances)), green_max, yellow_max, plus)


@dataclass(frozen=True)
class BacktestResult:
    """Coverage tests of one forecast series; `frame` holds timestamp, loss, forecast and exceedance per step."""

    model: str
    confidence: float
    n: int
    exceedances: int
    expected: float
    kupiec_lr: float
    kupiec_p: float
    christoffersen_lr: float
    christoffersen_p: float
    conditional_coverage_lr: float
    conditional_coverage_p: float
    transitions: tuple[int, int, int, int]
    traffic_light: TrafficLight
    frame: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the per-step frame)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("frame",)}
        d["traffic_light"] = {**dataclasses.asdict(self.traffic_light), "multiplier": self.traffic_light.multiplier}
        d["transitions"] = dict(zip(("n00", "n01", "n10", "n11"), self.transitions))
        d["exceedance_rate"] = self.exceedances / self.n if self.n else 0.0
        return d


def backtest(
    losses: npt.ArrayLike,
    forecasts: npt.ArrayLike,
    confidence: float = 0.99,
    index: Any = None,
    model: str = "",
) -> BacktestResult:
    """Compare realised losses (USD, positive = loss) with the forecasts made before them."""
    loss, fc = np.asarray(losses, dtype=np.float64), np.asarray(forecasts, dtype=np.float64)
    if loss.shape != fc.shape or loss.ndim != 1 or loss.size == 0:
        raise ValueError(f"losses/forecasts: allowed equal non-empty 1-D shapes, got {loss.shape} and {fc.shape}")
    if not (np.isfinite(loss).all() and np.isfinite(fc).all()):
        raise ValueError("losses/forecasts: allowed finite values")
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence={confidence}: allowed 0.5 < confidence < 1")
    hits = loss > fc
    n, x = int(loss.size), int(hits.sum())
    lr_pof, p_pof = kupiec_pof(x, n, confidence)
    lr_ind, p_ind, counts = christoffersen(hits)
    lr_cc = lr_pof + lr_ind
    frame = pd.DataFrame(
        {
            "timestamp": index if index is not None else np.arange(n),
            "loss_usd": loss,
            "forecast_usd": fc,
            "exceedance": hits,
        }
    )
    return BacktestResult(
        model,
        confidence,
        n,
        x,
        n * (1.0 - confidence),
        lr_pof,
        p_pof,
        lr_ind,
        p_ind,
        lr_cc,
        float(chi2.sf(lr_cc, 2)),
        counts,
        traffic_light(x, n, confidence),
        frame,
    )


def backtest_model(
    prices: pd.Series,
    model: str,
    confidence: float = 0.99,
    window: int = 250,
    qty: float = 1.0,
    kind: str = "perp",
    underlying: str = "ETH",
    lam: float = 0.94,
) -> BacktestResult:
    """Backtest preset `model` on a price path (index = timestamps): at every step after `window` it margins
    `qty` units of a `kind` ("perp" or "spot") position opened at the current price, with the market's vol set
    to the annualised EWMA vol of the window; the loss is -qty * (next price - price)."""
    px = np.asarray(prices, dtype=np.float64)
    if kind not in ("perp", "spot"):
        raise ValueError(f"kind={kind!r}: allowed ['perp', 'spot']")
    if window < 2 or px.size < window + 2:
        raise ValueError(f"window={window}: allowed 2 <= window <= {px.size - 2} for a path of {px.size} prices")
    if not (np.isfinite(px).all() and (px > 0).all()):
        raise ValueError("prices: allowed finite values > 0")
    idx = pd.DatetimeIndex(prices.index) if isinstance(prices.index, pd.DatetimeIndex) else None
    step_days = float(np.median((idx[1:] - idx[:-1]).total_seconds())) / 86_400.0 if idx is not None else 1.0
    rets = np.diff(np.log(px))
    pf = Portfolio.from_records(
        [{"name": "reference", "cash": 0.0, "positions": [{"kind": kind, "underlying": underlying, "qty": qty}]}]
    )
    base = {"confidence": confidence, "horizon_days": step_days, "step_days": step_days, "lam": lam}
    steps = range(window, px.size - 1)
    forecasts = np.empty(len(steps))
    for j, t in enumerate(steps):
        win = rets[t - window : t]
        sigma = float(ewma_vol(win, lam)[-1]) * np.sqrt(DAYS_PER_YEAR / step_days)
        mkt = MarketState(spot={underlying: px[t]}, vol={underlying: sigma})
        m = build_model(model, {**base, "returns": {underlying: win}})
        forecasts[j] = float(m.requirements(pf, mkt).mm[0])
    losses = -qty * (px[window + 1 :] - px[window:-1])
    index = idx[window + 1 :] if idx is not None else np.arange(window + 1, px.size)
    return backtest(losses, forecasts, confidence, index, model)
