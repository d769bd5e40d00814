"""The market state margin models read: per-underlying spot, vol, rate, perp mark and feed confidences,
per-expiry forward curves, collateral prices and published SPAN risk arrays.

Every feed beyond spot and vol is optional and defaults to the simplest reading (forward S*e^{rT}, one rate per
underlying, every feed's confidence equal to the spot confidence), so a state built from spot and vol alone
gives the same figures as before the per-feed fields existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from typing import Protocol as TypingProtocol

import numpy as np
import numpy.typing as npt

from defistress.protocols.margin.forward_curve import CurvePoints, ForwardCurve
from defistress.protocols.margin.span_arrays import PublishedRiskArrays

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
SECONDS_PER_DAY = 86_400.0
SECONDS_PER_YEAR = 365.0 * SECONDS_PER_DAY  # Lyra/Derive Black76.sol and Deribit use a 365-day year


class VolSurfaceLike(TypingProtocol):
    """Anything that returns an annualised implied vol per (strike USD, expiry seconds, forward USD)."""

    def vol(self, strike: FloatArray, expiry_s: FloatArray, forward: FloatArray) -> FloatArray: ...


def _check_table(name: str, table: dict[str, float], lo: float, hi: float, unit: str) -> None:
    for k, v in table.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
            raise ValueError(f"{name}[{k!r}]={v!r}: allowed a number in [{lo}, {hi}] {unit}".rstrip())


@dataclass
class MarketState:
    """Market inputs for margin.

    spot: USD per unit; vol: annualised vol (float) or a VolSurfaceLike per underlying; rate: annual continuously
    compounded per underlying (default 0); perp_price: USD perp mark (default spot); stable_price: USD per
    stablecoin; confidence: the SPOT feed's oracle confidence 0..1 per underlying (default 1), also the default
    of every other feed of that underlying; perp_confidence: the perp feed's (default `confidence`); forwards:
    per-expiry ForwardCurve per underlying (forward, fixed part, rate and forward/rate/vol confidences; default
    F = S*e^{rT}); collateral_price: USD per unit of each collateral asset (kind "collateral" positions);
    collateral_confidence: its feed's confidence (default 1); span_arrays: published SPAN risk arrays per
    underlying (used by `Span` instead of its own Black-76 arrays).
    """

    spot: dict[str, float]
    vol: dict[str, Any]
    rate: dict[str, float] = field(default_factory=dict)
    perp_price: dict[str, float] = field(default_factory=dict)
    stable_price: float = 1.0
    confidence: dict[str, float] = field(default_factory=dict)
    perp_confidence: dict[str, float] = field(default_factory=dict)
    forwards: dict[str, ForwardCurve] = field(default_factory=dict)
    collateral_price: dict[str, float] = field(default_factory=dict)
    collateral_confidence: dict[str, float] = field(default_factory=dict)
    span_arrays: dict[str, PublishedRiskArrays] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for u, s in self.spot.items():
            if not (np.isfinite(s) and s >= 0):
                raise ValueError(f"spot[{u!r}]={s}: allowed finite >= 0 USD")
        _check_table("confidence", self.confidence, 0.0, 1.0, "")
        _check_table("perp_confidence", self.perp_confidence, 0.0, 1.0, "")
        _check_table("collateral_confidence", self.collateral_confidence, 0.0, 1.0, "")
        _check_table("collateral_price", self.collateral_price, 0.0, math.inf, "USD")
        if not (np.isfinite(self.stable_price) and self.stable_price >= 0):
            raise ValueError(f"stable_price={self.stable_price}: allowed finite >= 0 USD")
        for u, c in self.forwards.items():
            if not isinstance(c, ForwardCurve):
                raise ValueError(f"forwards[{u!r}]: allowed a ForwardCurve, got {type(c).__name__}")
        for u, a in self.span_arrays.items():
            if not isinstance(a, PublishedRiskArrays):
                raise ValueError(f"span_arrays[{u!r}]: allowed a PublishedRiskArrays, got {type(a).__name__}")

    def _per_und(self, underlyings: tuple[str, ...], table: dict[str, float], default: Any, name: str) -> FloatArray:
        out = np.empty(len(underlyings), dtype=np.float64)
        for i, u in enumerate(underlyings):
            if u in table:
                out[i] = float(table[u])
            elif default is None:
                raise ValueError(f"{name}: missing underlying {u!r}; allowed keys {list(table)}")
            else:
                out[i] = float(default[u] if isinstance(default, dict) else default)
        return out

    def scalars(self, underlying: str) -> tuple[float, float, float, float]:
        """(spot USD, rate, perp mark USD, spot confidence) of one underlying; only spot is required."""
        if underlying not in self.spot:
            raise ValueError(f"spot: missing underlying {underlying!r}; allowed keys {list(self.spot)}")
        s = float(self.spot[underlying])
        return (
            s,
            float(self.rate.get(underlying, 0.0)),
            float(self.perp_price.get(underlying, s)),
            float(self.confidence.get(underlying, 1.0)),
        )

    def spot_array(self, underlyings: tuple[str, ...]) -> FloatArray:
        """(U,) USD spot per underlying, in the portfolio's underlying order."""
        return self._per_und(underlyings, self.spot, None, "spot")

    def rate_array(self, underlyings: tuple[str, ...]) -> FloatArray:
        return self._per_und(underlyings, self.rate, 0.0, "rate")

    def perp_array(self, underlyings: tuple[str, ...]) -> FloatArray:
        return self._per_und(underlyings, self.perp_price, self.spot, "perp_price")

    def confidence_array(self, underlyings: tuple[str, ...]) -> FloatArray:
        """(U,) spot-feed confidence per underlying."""
        return self._per_und(underlyings, self.confidence, 1.0, "confidence")

    def perp_confidence_array(self, underlyings: tuple[str, ...]) -> FloatArray:
        """(U,) perp-feed confidence per underlying (default: the spot confidence)."""
        return self._per_und(
            underlyings,
            self.perp_confidence,
            dict(zip(underlyings, self.confidence_array(underlyings))),
            "perp_confidence",
        )

    def curve_points(
        self, underlyings: tuple[str, ...], und_idx: npt.ArrayLike, expiry_s: npt.ArrayLike
    ) -> CurvePoints:
        """Forward parts, rate and forward/rate/vol confidences per position, from each underlying's
        ForwardCurve or, without one, F = S*e^{rT} (fixed part 0), the flat rate and the spot confidence."""
        u_idx = np.asarray(und_idx, dtype=np.int64)
        t = np.asarray(expiry_s, dtype=np.float64)
        present = np.flatnonzero(np.bincount(u_idx, minlength=len(underlyings))) if u_idx.size else u_idx
        used = tuple(underlyings[i] for i in present)  # only the underlyings asked for need a spot
        lut = np.zeros(len(underlyings), dtype=np.int64)
        lut[present] = np.arange(present.size)
        dense = lut[u_idx]
        spot = self.spot_array(used)[dense] if u_idx.size else np.zeros(0)
        rate = self.rate_array(used)[dense] if u_idx.size else np.zeros(0)
        conf = self.confidence_array(used)[dense] if u_idx.size else np.zeros(0)
        fixed = np.zeros(t.shape)
        var = spot * np.exp(rate * t / SECONDS_PER_YEAR)
        r_out, fc, rc, vc = rate.copy(), conf.copy(), conf.copy(), conf.copy()
        for i, u in enumerate(underlyings):
            curve = self.forwards.get(u)
            m = u_idx == i
            if curve is None or not m.any():
                continue
            p = curve.points(t[m])
            fixed[m], var[m] = p.fixed, p.variable
            r_out[m] = np.where(np.isnan(p.rate), rate[m], p.rate)
            fc[m] = np.where(np.isnan(p.forward_confidence), conf[m], p.forward_confidence)
            rc[m] = np.where(np.isnan(p.rate_confidence), conf[m], p.rate_confidence)
            vc[m] = np.where(np.isnan(p.vol_confidence), conf[m], p.vol_confidence)
        return CurvePoints(
            fixed=fixed, variable=var, rate=r_out, forward_confidence=fc, rate_confidence=rc, vol_confidence=vc
        )

    def forward(
        self, und_idx_array: npt.ArrayLike, expiry_s: npt.ArrayLike, underlyings: tuple[str, ...] | None = None
    ) -> FloatArray:
        """USD forward per position: the underlying's ForwardCurve, else F = S * exp(r * T) (T in 365-day years).
        Without `underlyings`, the spot dict's key order is the underlying index order."""
        unds = tuple(self.spot) if underlyings is None else tuple(underlyings)
        return self.curve_points(unds, und_idx_array, expiry_s).forward

    def collateral_arrays(self, assets: tuple[str, ...]) -> tuple[FloatArray, FloatArray]:
        """(A,) USD price and (A,) feed confidence per collateral asset; a missing price raises."""
        price = self._per_und(assets, self.collateral_price, None, "collateral_price")
        return price, self._per_und(assets, self.collateral_confidence, 1.0, "collateral_confidence")

    def vol_confidences(
        self, underlyings: tuple[str, ...], und_idx: IntArray, strike: FloatArray, expiry_s: FloatArray
    ) -> FloatArray:
        """Per-option vol-feed confidence from surfaces that quote one (a `confidence(strike, expiry_s)` method,
        e.g. QuotedVols), else 1 (the curve's vol_confidence and the spot confidence still apply)."""
        out = np.ones(np.shape(strike), dtype=np.float64)
        for i, u in enumerate(underlyings):
            m = und_idx == i
            v = self.vol.get(u)
            conf = getattr(v, "confidence", None)
            if m.any() and conf is not None:
                out[m] = conf(strike[m], expiry_s[m])
        return out

    def vols(
        self,
        underlyings: tuple[str, ...],
        und_idx: IntArray,
        strike: FloatArray,
        expiry_s: FloatArray,
        forward: FloatArray,
    ) -> FloatArray:
        """Annualised implied vol per position, from a flat number or a surface per underlying."""
        out = np.zeros(np.shape(strike), dtype=np.float64)
        for i, u in enumerate(underlyings):
            m = und_idx == i
            if not m.any():
                continue
            if u not in self.vol:
                raise ValueError(f"vol: missing underlying {u!r}; allowed keys {list(self.vol)}")
            v = self.vol[u]
            if hasattr(v, "vol"):
                out[m] = v.vol(strike[m], expiry_s[m], forward[m])
            else:
                out[m] = float(v)
        return out
