"""Per-expiry forward feed of one underlying: forward (fixed and variable parts), rate and feed confidences.

Real engines read the forward of each expiry from a feed that need not move with spot or follow S*e^{rT}:
Lyra/Derive's forward feed (`IForwardFeed.getForwardPricePortions`: the fixed part is the settlement average
already accrued inside the settlement window and does not move in a shock), Deribit's futures. The rate feed
(`IInterestRateFeed.getInterestRate`) only discounts. Sources: derivexyz/v2-core src/risk-managers/PMRM_2.sol
`_initialiseExpiries`; PMRMLib_2.sol `_getExpiryShockedMTM` (F' = variable * spotShock + fixed).

A curve's nodes are expiries in seconds from now. Between nodes the total forward and the rate are linear in
time and flat outside; the fixed part is 0 away from a node; a confidence between two nodes is the lower one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
SETTLEMENT_WINDOW_S = 1800.0  # Derive: the last 30 minutes before expiry average the settlement price

_NODE_TOL_S = 1e-6  # expiries closer than this to a node take the node's values


def _tuple(values: Any, name: str, n: int, lo: float, hi: float) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if out and len(out) != n:
        raise ValueError(f"{name}: allowed empty or {n} values (one per expiry_s), got {len(out)}")
    for i, v in enumerate(out):
        if not (math.isfinite(v) and lo <= v <= hi):
            raise ValueError(f"{name}[{i}]={v!r}: allowed a number in [{lo}, {hi}]")
    return out


@dataclass(frozen=True)
class CurvePoints:
    """Per-position values read off a ForwardCurve (arrays of the positions' shape)."""

    fixed: FloatArray  # USD fixed part (does not move with spot)
    variable: FloatArray  # USD variable part (moves with the spot shock)
    rate: FloatArray  # annual continuously compounded; NaN where the curve gives none
    forward_confidence: FloatArray  # 0..1; NaN where the curve gives none
    rate_confidence: FloatArray  # 0..1; NaN where the curve gives none
    vol_confidence: FloatArray  # 0..1; NaN where the curve gives none

    @property
    def forward(self) -> FloatArray:
        """USD total forward F = fixed + variable."""
        return self.fixed + self.variable


@dataclass(frozen=True)
class ForwardCurve:
    """Forward feed of one underlying, one node per expiry (seconds to expiry, strictly increasing).

    `forward` is the total USD forward F; `fixed` (default 0) its part that no longer moves with spot (F' =
    (F - fixed) * spot_shock + fixed); `rate` (default: MarketState.rate of the underlying) discounts only;
    `forward_confidence`, `rate_confidence` and `vol_confidence` are the feeds' confidences 0..1 (default: the
    underlying's spot confidence, MarketState.confidence).
    """

    expiry_s: tuple[float, ...]
    forward: tuple[float, ...]
    fixed: tuple[float, ...] = ()
    rate: tuple[float, ...] = ()
    forward_confidence: tuple[float, ...] = ()
    rate_confidence: tuple[float, ...] = ()
    vol_confidence: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        exp = tuple(float(t) for t in self.expiry_s)
        if not exp:
            raise ValueError("expiry_s: allowed at least one expiry (seconds >= 0)")
        if any(not math.isfinite(t) or t < 0 for t in exp):
            raise ValueError(f"expiry_s={exp}: allowed finite seconds >= 0")
        if any(b <= a for a, b in zip(exp, exp[1:])):
            raise ValueError(f"expiry_s={exp}: allowed strictly increasing")
        n = len(exp)
        object.__setattr__(self, "expiry_s", exp)
        fwd = _tuple(self.forward, "forward", n, 0.0, math.inf)
        if len(fwd) != n:
            raise ValueError(f"forward: allowed {n} values (one per expiry_s), got {len(fwd)}")
        object.__setattr__(self, "forward", fwd)
        fixed = _tuple(self.fixed, "fixed", n, 0.0, math.inf)
        for i, (f, x) in enumerate(zip(fwd, fixed)):
            if x > f:
                raise ValueError(f"fixed[{i}]={x}: allowed 0..forward[{i}]={f} USD")
        object.__setattr__(self, "fixed", fixed)
        object.__setattr__(self, "rate", _tuple(self.rate, "rate", n, -10.0, 10.0))
        for name in ("forward_confidence", "rate_confidence", "vol_confidence"):
            object.__setattr__(self, name, _tuple(getattr(self, name), name, n, 0.0, 1.0))

    @classmethod
    def with_settlement_window(
        cls,
        expiry_s: Any,
        forward: Any,
        window_s: float = SETTLEMENT_WINDOW_S,
        **kwargs: Any,
    ) -> ForwardCurve:
        """Curve whose fixed part grows linearly inside the settlement window: fixed = F * max(0, W - T) / W
        (derivexyz/v2-core TestPMRM_2_PortfolioCasesNEW.t.sol `_setFeeds`: F*(1800 - s)/1800 fixed, F*s/1800
        variable when s < 1800 s)."""
        if not window_s > 0:
            raise ValueError(f"window_s={window_s}: allowed > 0 seconds")
        t = np.asarray(expiry_s, dtype=np.float64)
        f = np.asarray(forward, dtype=np.float64)
        fixed = np.where(t < window_s, f * (window_s - t) / window_s, 0.0)
        return cls(tuple(t.tolist()), tuple(f.tolist()), fixed=tuple(fixed.tolist()), **kwargs)

    def points(self, expiry_s: npt.ArrayLike) -> CurvePoints:
        """Values at each expiry (seconds): nodes exactly, linear in time between nodes, flat outside."""
        t = np.asarray(expiry_s, dtype=np.float64)
        nodes = np.asarray(self.expiry_s)
        hi = np.clip(np.searchsorted(nodes, t, side="left"), 0, nodes.size - 1)
        lo = np.clip(hi - 1, 0, nodes.size - 1)
        on_hi = np.abs(nodes[hi] - t) <= _NODE_TOL_S
        on_lo = np.abs(nodes[lo] - t) <= _NODE_TOL_S
        node = np.where(on_hi, hi, lo)
        on = on_hi | on_lo
        span = np.where(nodes[hi] > nodes[lo], nodes[hi] - nodes[lo], 1.0)
        w = np.clip((t - nodes[lo]) / span, 0.0, 1.0)

        def lin(values: tuple[float, ...], default: float) -> FloatArray:
            v = np.asarray(values, dtype=np.float64) if values else np.full(nodes.size, default)
            return np.where(on, v[node], v[lo] * (1.0 - w) + v[hi] * w)

        def low(values: tuple[float, ...]) -> FloatArray:
            v = np.asarray(values, dtype=np.float64) if values else np.full(nodes.size, math.nan)
            return np.where(on, v[node], np.minimum(v[lo], v[hi]))

        total = lin(self.forward, 0.0)
        fixed_nodes = np.asarray(self.fixed, dtype=np.float64) if self.fixed else np.zeros(nodes.size)
        fixed = np.where(on, fixed_nodes[node], 0.0)
        return CurvePoints(
            fixed=fixed,
            variable=total - fixed,
            rate=lin(self.rate, math.nan),
            forward_confidence=low(self.forward_confidence),
            rate_confidence=low(self.rate_confidence),
            vol_confidence=low(self.vol_confidence),
        )
