"""An implied-vol surface coupled to realised volatility: it lifts and steepens when the underlying crashes.

Modelling assumption (not a published methodology): options venues quote from market makers whose implied
vols react to realised moves. We model that reaction deterministically: an EWMA of squared log returns gives
the realised vol; its excess over the base ATM vol lifts the ATM level (most at the short end, decaying with
expiry) and steepens the put skew. The smile is parametric in x = ln(K/F)/sqrt(T):
    sigma(K, T) = ATM(T) - skew_now * x + curvature * x^2, clipped to [min_vol, max_vol].
In calm markets (realised vol at or below the base) the surface is exactly the base surface.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, Field

from defistress.protocols.bounds import PARAMS_CONFIG, Float
from defistress.protocols.margin.black76 import SECONDS_PER_YEAR

SECONDS_PER_DAY = 86_400.0


class VolSurfaceParams(BaseModel):
    """Base smile and coupling knobs; defaults are assumptions for an ETH-like underlying."""

    model_config = PARAMS_CONFIG

    # ETH 30-day ATM implied vol has mostly traded 0.5-0.8 (Deribit DVOL-style level); assumption
    atm_vol: Float = Field(0.65, gt=0, le=5, description="base annualised ATM vol (1/sqrt(year)) [assumption]")
    skew: Float = Field(
        0.15, ge=0, le=5, description="vol points per unit of ln(K/F)/sqrt(T); puts richer [assumption]"
    )
    curvature: Float = Field(0.1, ge=0, le=5, description="vol points per unit of (ln(K/F)/sqrt(T))^2 [assumption]")
    term_decay_days: Float = Field(
        30.0, gt=0, le=3650, description="e-folding expiry of the ATM lift, days [assumption]"
    )
    rv_half_life_s: Float = Field(
        3600.0, gt=0, le=1e8, description="half-life of the realised-variance EWMA, seconds [assumption]"
    )
    level_coupling: Float = Field(
        0.8, ge=0, le=10, description="ATM lift per unit of (realised - base) vol (unitless) [assumption]"
    )
    skew_coupling: Float = Field(
        1.0, ge=0, le=100, description="skew x (1 + this x relative excess realised vol) [assumption]"
    )
    min_vol: Float = Field(0.05, gt=0, le=5, description="floor of any quoted vol (annualised) [assumption]")
    max_vol: Float = Field(5.0, gt=0, le=50, description="cap of any quoted vol (annualised) [assumption]")
    min_expiry_days: Float = Field(1.0, gt=0, le=365, description="T floor in the moneyness scaling, days [assumption]")

    def model_post_init(self, __context) -> None:
        if self.min_vol >= self.max_vol:
            raise ValueError(f"min_vol={self.min_vol}: allowed < max_vol={self.max_vol}")


class CoupledVolSurface:
    """Deterministic vol surface for one underlying; `update` once per block from the venue's oracle price."""

    def __init__(self, params: VolSurfaceParams, spot0_usd: float):
        if not (math.isfinite(spot0_usd) and spot0_usd > 0):
            raise ValueError(f"spot0_usd={spot0_usd}: allowed finite > 0 USD")
        self.params = params
        self.last_price = float(spot0_usd)
        self.variance = params.atm_vol**2  # annualised realised variance, starts at the base level

    @property
    def realised_vol(self) -> float:
        """EWMA realised vol, annualised."""
        return math.sqrt(self.variance)

    @property
    def excess_vol(self) -> float:
        """Realised vol above the base ATM vol (0 in calm markets)."""
        return max(self.realised_vol - self.params.atm_vol, 0.0)

    @property
    def atm_vol(self) -> float:
        """Current short-dated (T -> 0) ATM vol."""
        return float(self._clip(self.params.atm_vol + self.params.level_coupling * self.excess_vol))

    @property
    def skew_now(self) -> float:
        """Current skew: base skew steepened by the relative excess of realised vol."""
        p = self.params
        return p.skew * (1.0 + p.skew_coupling * self.excess_vol / p.atm_vol)

    def update(self, price_usd: float, dt_seconds: float) -> None:
        """Fold one observation into the realised-variance EWMA (RiskMetrics-style, decay by half-life)."""
        price_usd = float(price_usd)
        if dt_seconds <= 0 or not (math.isfinite(price_usd) and price_usd > 0):
            return
        r = math.log(price_usd / self.last_price)
        sample = r * r / dt_seconds * SECONDS_PER_YEAR  # annualised variance of this interval
        alpha = 1.0 - 0.5 ** (dt_seconds / self.params.rv_half_life_s)
        self.variance = (1.0 - alpha) * self.variance + alpha * sample
        self.last_price = price_usd

    def atm(self, expiry_s) -> np.ndarray:
        """ATM vol per expiry (s): the lift decays as exp(-T / term_decay_days)."""
        p = self.params
        t_days = np.maximum(np.asarray(expiry_s, dtype=np.float64), 0.0) / SECONDS_PER_DAY
        return p.atm_vol + p.level_coupling * self.excess_vol * np.exp(-t_days / p.term_decay_days)

    def vol(self, strike, expiry_s, forward) -> np.ndarray:
        """Annualised implied vol per (strike USD, expiry seconds from now, forward USD); VolSurfaceLike."""
        p = self.params
        k, t, f = np.broadcast_arrays(
            np.asarray(strike, dtype=np.float64),
            np.asarray(expiry_s, dtype=np.float64),
            np.asarray(forward, dtype=np.float64),
        )
        t_years = np.maximum(t, p.min_expiry_days * SECONDS_PER_DAY) / SECONDS_PER_YEAR
        ok = (k > 0) & (f > 0)
        x = np.where(ok, np.log(np.where(ok, k, 1.0) / np.where(ok, f, 1.0)), 0.0) / np.sqrt(t_years)
        return self._clip(self.atm(t) - self.skew_now * x + p.curvature * x * x)

    def _clip(self, v):
        return np.clip(v, self.params.min_vol, self.params.max_vol)
