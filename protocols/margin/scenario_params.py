"""Parameters of the scenario-grid portfolio margin engine (scenario_pm.py): grid, vol and skew shocks,
static discount, contingencies and factors. Frozen dataclasses; errors name the field and allowed range.
Defaults are neutral (no shock, no contingency); the published values live in presets_pm.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# vol-shock directions (derivexyz v2-core IPMRM_2.VolShockDirection: None, Up, Down, Linear, Abs)
NONE, UP, DOWN, LINEAR, ABS = 0, 1, 2, 3, 4
_DAY = 86_400.0


def _check(name: str, value: float, lo: float = -math.inf, hi: float = math.inf) -> None:
    if not (isinstance(value, (int, float)) and lo <= value <= hi) or math.isnan(value):
        raise ValueError(f"{name}={value!r}: allowed [{lo}, {hi}]")


@dataclass(frozen=True)
class ScenarioGrid:
    """Scenarios as parallel tuples: spot multiplier (1.0 = unchanged), vol direction, dampening weight,
    and whether the scenario is a tail (extended) one."""

    spot: tuple[float, ...]
    vol: tuple[int, ...]
    dampening: tuple[float, ...]
    tail: tuple[bool, ...]

    def __post_init__(self) -> None:
        n = len(self.spot)
        for name in ("vol", "dampening", "tail"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name}: allowed the same length as spot ({n}), got {len(getattr(self, name))}")
        if n == 0:
            raise ValueError("spot: allowed at least one scenario")
        for i, (s, v, d) in enumerate(zip(self.spot, self.vol, self.dampening)):
            _check(f"spot[{i}]", float(s), 1e-9, 1e6)
            if v not in (NONE, UP, DOWN, LINEAR, ABS):
                raise ValueError(f"vol[{i}]={v!r}: allowed NONE=0, UP=1, DOWN=2, LINEAR=3, ABS=4")
            _check(f"dampening[{i}]", float(d), 0.0, 1e6)

    @property
    def size(self) -> int:
        return len(self.spot)

    @property
    def moves(self) -> FloatArray:
        """Relative spot moves m - 1, from the multipliers' decimal text (0.85 -> -0.15, not the float
        -0.15000000000000002): the contracts hold 1e18 decimals, so 1 - 0.85 is exact there."""
        return np.array(self._moves, dtype=np.float64)  # a fresh array per call: callers may write to it

    @cached_property
    def _moves(self) -> tuple[float, ...]:
        """The moves, computed once per grid (the decimal conversion costs 0.2 ms, twice per margin call)."""
        return tuple(float(Decimal(repr(float(s))) - 1) for s in self.spot)

    def __add__(self, other: ScenarioGrid) -> ScenarioGrid:
        return ScenarioGrid(
            self.spot + other.spot, self.vol + other.vol, self.dampening + other.dampening, self.tail + other.tail
        )

    @classmethod
    def product(
        cls, moves: Iterable[float], vols: Iterable[int], dampening: float = 1.0, tail: bool = False
    ) -> ScenarioGrid:
        """Every relative spot move (e.g. -0.15) with every vol direction."""
        pairs = [(1.0 + float(m), int(v)) for m in moves for v in vols]
        return cls(
            tuple(p[0] for p in pairs),
            tuple(p[1] for p in pairs),
            (float(dampening),) * len(pairs),
            (bool(tail),) * len(pairs),
        )

    @classmethod
    def tails(
        cls,
        moves: Iterable[float],
        vol: int = UP,
        damp_const: float | None = None,
        dampening: Iterable[float] | None = None,
    ) -> ScenarioGrid:
        """Tail moves with dampening c/|move| (Derive PM2, Paradex) or explicit weights."""
        mv = tuple(float(m) for m in moves)
        damp = (
            tuple(1.0 if damp_const is None else damp_const / abs(m) for m in mv)
            if dampening is None
            else tuple(float(d) for d in dampening)
        )
        return cls(tuple(1.0 + m for m in mv), (vol,) * len(mv), damp, (True,) * len(mv))

    @classmethod
    def skews(cls) -> ScenarioGrid:
        """The two Derive PM2 skew scenarios (spot unchanged)."""
        return cls((1.0, 1.0), (LINEAR, ABS), (1.0, 1.0), (False, False))


@dataclass(frozen=True)
class VolShockParams:
    """sigma' = sigma * (1 +- range * (30d / max(T, dte_floor))^p), p short-term if T <= 30d (or < 30d),
    Up floored at min_vol_up (PMRMLib _addVolShocks; Deribit min_volatility_for_shock_up)."""

    range_up: float = 0.0
    range_down: float = 0.0
    short_term_power: float = 0.3  # PMRMLib / Deribit short_term_vega_power
    long_term_power: float = 0.13  # PMRMLib / Deribit long_term_vega_power
    dte_floor_s: float = _DAY  # PMRMLib dteFloor 1 day
    short_term_inclusive: bool = True  # Lyra: sec <= 30 days; Deribit/Paradex: DTE < 30
    min_vol_up: float = 0.0
    reference_s: float = 30 * _DAY

    def __post_init__(self) -> None:
        _check("range_up", self.range_up, 0.0, 10.0)
        _check("range_down", self.range_down, 0.0, 10.0)
        _check("short_term_power", self.short_term_power, -10.0, 10.0)  # PMRMLib_2 setVolShockParams: <= 10
        _check("long_term_power", self.long_term_power, -10.0, 10.0)
        _check("dte_floor_s", self.dte_floor_s, 0.0, 400 * _DAY)  # PMRMLib_2: dteFloor <= 400 days
        _check("min_vol_up", self.min_vol_up, 0.0, 20.0)
        _check("reference_s", self.reference_s, 1.0, 3650 * _DAY)

    def multipliers(self, expiry_s: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """(up, down) vol multipliers per expiry; down floored at 0 (PMRMLib_2 _addVolShocks)."""
        t = np.asarray(expiry_s, dtype=np.float64)
        short = t <= self.reference_s if self.short_term_inclusive else t < self.reference_s
        p = np.where(short, self.short_term_power, self.long_term_power)
        denom = np.maximum(t, self.dte_floor_s)
        if (denom <= 0).any():
            raise ValueError("dte_floor_s=0 with an option at expiry (expiry_s=0): allowed dte_floor_s > 0 then")
        mult = (self.reference_s / denom) ** p
        return 1.0 + self.range_up * mult, np.maximum(0.0, 1.0 - self.range_down * mult)


@dataclass(frozen=True)
class SkewShockParams:
    """Derive PM2 skew shocks (PMRMLib_2 _getExpirySkewedShockedMTM, _getKStar)."""

    linear_base_cap: float = 0.25
    linear_c_base: float = -0.1
    abs_base_cap: float = 0.25
    abs_c_base: float = -0.1
    min_k_star: float = 0.01
    width_scale: float = 4.0
    vol_param_static: float = 0.6
    vol_param_scale: float = 0.0

    def __post_init__(self) -> None:
        for f in ("linear_base_cap", "abs_base_cap", "width_scale", "vol_param_static", "min_k_star"):
            _check(f, getattr(self, f), 0.0, 10.0)
        for f in ("linear_c_base", "abs_c_base"):
            _check(f, getattr(self, f), -10.0, 10.0)
        _check("vol_param_scale", self.vol_param_scale, -20.0, 20.0)

    def multiplier(self, k: np.ndarray, t_years: np.ndarray, linear: bool) -> np.ndarray:
        """max(0, 1 + clamp(k * multCap / kStar, -multCap, multCap)) per option (k = ln(K/F), |k| for Abs)."""
        sq = np.sqrt(np.maximum(np.asarray(t_years, dtype=np.float64), 0.0))
        cap = (self.linear_c_base if linear else self.abs_c_base) * sq + (
            self.linear_base_cap if linear else self.abs_base_cap
        )
        vol_param = self.vol_param_static + sq * self.vol_param_scale
        k_star = np.maximum(self.min_k_star, sq * self.width_scale * vol_param)
        raw = k * cap / k_star
        m = 1.0 + np.where(k >= 0, np.minimum(cap, raw), np.maximum(-cap, raw))
        return np.maximum(m, 0.0)


@dataclass(frozen=True)
class StaticDiscountParams:
    """Haircut of shocked expiry values. Positive values * long_base*exp(-T(r*long_mult + long_add));
    negative values (two-sided, PM2) * min(1/D, short_base/exp(-T(r*short_mult + short_add))).
    short_base None = one-sided (PMRM v1: only positive expiry values are discounted)."""

    long_base: float = 1.0
    long_rate_mult: float = 0.0
    long_rate_add: float = 0.0
    short_base: float | None = None
    short_rate_mult: float = 0.0
    short_rate_add: float = 0.0
    floor_rate_at_zero: bool = False  # PMRMLib _addStaticDiscount caps the rate at 0

    def __post_init__(self) -> None:
        _check("long_base", self.long_base, 0.0, 4.0)
        if self.short_base is not None:
            _check("short_base", self.short_base, 0.0, 4.0)
        for f in ("long_rate_mult", "long_rate_add", "short_rate_mult", "short_rate_add"):
            _check(f, getattr(self, f), 0.0, 10.0)

    def factors(
        self, t_years: npt.ArrayLike, rate: npt.ArrayLike, discount: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray]:
        """(positive, negative) factors per expiry; `rate` one per expiry or one for all."""
        t = np.asarray(t_years, dtype=np.float64)
        r = np.asarray(rate, dtype=np.float64)
        r = np.maximum(r, 0.0) if self.floor_rate_at_zero else r
        pos = self.long_base * np.exp(-t * (r * self.long_rate_mult + self.long_rate_add))
        if self.short_base is None:
            return pos, np.ones_like(pos)
        neg = self.short_base / np.exp(-t * (r * self.short_rate_mult + self.short_rate_add))
        return pos, np.minimum(1.0 / np.asarray(discount, dtype=np.float64), neg)  # PMRMLib_2 min(1/D, neg)


@dataclass(frozen=True)
class ContingencyParams:
    """Add-ons in USD. *_pct per unit of spot notional; naked shorts netted per strike per expiry (calls and
    puts pooled); basis = per-expiry forward shock floor scenario; roll = Deribit roll_shock / OKX MR4;
    min_delta = Paradex floor; min_charge = OKX MR7 floor with size tiers ((upper_usd, multiplier), ...)."""

    option_pct_mm: float = 0.0
    option_pct_im: float = 0.0
    perp_pct_mm: float = 0.0
    perp_pct_im: float = 0.0
    base_pct_mm: float = 0.0
    base_pct_im: float = 0.0
    conf_threshold: float = 0.0  # contingency only when confidence < threshold
    conf_margin: float = 0.0
    peg_threshold: float = 0.0  # IM factor += (threshold - stable) * peg_factor when stable < threshold
    peg_factor: float = 0.0
    basis_up: float = 1.0
    basis_down: float = 1.0
    basis_add: float = 0.0
    basis_mult: float = 0.0
    roll_annual_move: float = 0.0
    roll_min_move: float = 0.0
    roll_includes_spot: bool = False
    min_delta_net_pct: float = 0.0
    min_delta_hedged_pct: float = 0.0
    min_charge_delta1_rate: float = 0.0
    min_charge_option_rate: float = 0.0
    min_charge_tiers: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        for f in (
            "option_pct_mm",
            "option_pct_im",
            "perp_pct_mm",
            "perp_pct_im",
            "base_pct_mm",
            "base_pct_im",
            "conf_threshold",
            "roll_annual_move",
            "roll_min_move",
            "min_delta_net_pct",
            "min_delta_hedged_pct",
            "min_charge_delta1_rate",
            "min_charge_option_rate",
        ):
            _check(f, getattr(self, f), 0.0, 3.0)
        _check("conf_margin", self.conf_margin, 0.0, 20.0)
        _check("peg_threshold", self.peg_threshold, 0.0, 100.0)
        _check("peg_factor", self.peg_factor, 0.0, 20.0)
        _check("basis_up", self.basis_up, 1.0, 3.0)
        _check("basis_down", self.basis_down, 1e-9, 1.0)
        _check("basis_add", self.basis_add, 0.0, 20.0)
        _check("basis_mult", self.basis_mult, 0.0, 20.0)
        uppers = [t[0] for t in self.min_charge_tiers]
        if any(b <= a for a, b in zip(uppers, uppers[1:])) or any(m < 0 for _, m in self.min_charge_tiers):
            raise ValueError(
                f"min_charge_tiers={self.min_charge_tiers}: allowed increasing upper bounds, multipliers >= 0"
            )

    @property
    def basis_enabled(self) -> bool:
        return (self.basis_up != 1.0 or self.basis_down != 1.0) and (self.basis_add > 0 or self.basis_mult > 0)

    def min_charge_multiplier(self, raw_usd: np.ndarray) -> np.ndarray:
        """Tier multiplier of the raw minimum charge (tier upper bounds inclusive; above the last: its multiplier)."""
        if not self.min_charge_tiers:
            return np.ones_like(raw_usd)
        uppers = np.array([t[0] for t in self.min_charge_tiers])
        mults = np.array([t[1] for t in self.min_charge_tiers])
        return mults[np.clip(np.searchsorted(uppers, raw_usd, side="left"), 0, mults.size - 1)]


@dataclass(frozen=True)
class CollateralParams:
    """One collateral asset's parameters (derivexyz/v2-core IPMRMLib_2.CollateralParameters): risk_cancelling
    (its value moves with the market's spot shock), and haircuts as fractions of its value: MM contingency +=
    value * mm_haircut, IM contingency += value * im_haircut on top (PMRMLib_2 addPrecomputes)."""

    risk_cancelling: bool = False
    mm_haircut: float = 0.0
    im_haircut: float = 0.0

    def __post_init__(self) -> None:
        _check("mm_haircut", self.mm_haircut, 0.0, 1.0)
        _check("im_haircut", self.im_haircut, 0.0, 1.0)
        if self.mm_haircut + self.im_haircut > 1.0:  # PMRMLib_2 setCollateralParameters
            raise ValueError(
                f"mm_haircut + im_haircut = {self.mm_haircut + self.im_haircut}: allowed <= 1 "
                "(PMRMLib_2 setCollateralParameters)"
            )


@dataclass(frozen=True)
class ScenarioPMParams:
    """Everything one scenario-grid PM methodology needs; see presets_pm.py for the published sets."""

    name: str
    grid: ScenarioGrid
    vol_shock: VolShockParams = field(default_factory=VolShockParams)
    skew: SkewShockParams | None = None
    discount: StaticDiscountParams = field(default_factory=StaticDiscountParams)
    contingency: ContingencyParams = field(default_factory=ContingencyParams)
    mm_factor: float = 1.0
    im_factor: float = 1.0
    static_inside_factor: bool = False  # PMRM v1: static contingency is scaled by the IM factor
    discount_option_prices: bool = False  # PM2 prices options with D = exp(-rT); v1 uses D = 1
    gains_offset: float = 1.0  # Deribit pnl_offset (cross-underlying credit of gains)
    max_offsetable_pnl: float = math.inf  # Deribit max_offsetable_pnl (USD)
    cross_underlying: str = "separate"  # "separate": sum per-underlying margins; "offset": aligned scenarios
    extended_factor: float = 1.0  # Deribit extended_table_factor
    extended_dampener_usd: float = 0.0  # Deribit extended_dampener (USD)
    extended_price_range: float | None = None  # Deribit price_range: delta-1 tail PnL capped at +-range
    collaterals: dict[str, CollateralParams] = field(default_factory=dict)  # per collateral asset name
    default_collateral: CollateralParams | None = None  # for assets not in `collaterals`; None: they raise
    floor_rate_at_zero: bool = False  # PMRM_2 _initialiseExpiries: rate = max(rate, 0) for D and static factors
    exact: bool = False  # final aggregation in 1e18 fixed point with Solidity truncation (exact.py)

    def __post_init__(self) -> None:
        _check("mm_factor", self.mm_factor, 0.0, 10.0)
        _check("im_factor", self.im_factor, 0.0, 10.0)
        _check("gains_offset", self.gains_offset, 0.0, 1.0)
        _check("max_offsetable_pnl", self.max_offsetable_pnl, 0.0, math.inf)
        _check("extended_factor", self.extended_factor, 0.0, 1.0)
        _check("extended_dampener_usd", self.extended_dampener_usd, 0.0, math.inf)
        if self.extended_price_range is not None:
            _check("extended_price_range", self.extended_price_range, 1e-9, 10.0)
        if self.cross_underlying not in ("separate", "offset"):
            raise ValueError(f"cross_underlying={self.cross_underlying!r}: allowed 'separate' or 'offset'")
        if self.skew is None and any(v in (LINEAR, ABS) for v in self.grid.vol):
            raise ValueError("skew: allowed None only when grid has no LINEAR/ABS scenarios")
        for i, (s, v) in enumerate(zip(self.grid.spot, self.grid.vol)):
            if v in (LINEAR, ABS) and s != 1.0:  # PMRM_2 setScenarios: skew scenarios keep spot unchanged
                raise ValueError(
                    f"grid.spot[{i}]={s}: allowed 1.0 for a LINEAR/ABS skew scenario (PMRM_2 setScenarios)"
                )
        for name, cp in self.collaterals.items():
            if not isinstance(cp, CollateralParams):
                raise ValueError(f"collaterals[{name!r}]: allowed a CollateralParams, got {type(cp).__name__}")

    def collateral_params(self, asset: str) -> CollateralParams:
        """Parameters of a collateral asset; unknown assets raise unless a default is set."""
        if asset in self.collaterals:
            return self.collaterals[asset]
        if self.default_collateral is not None:
            return self.default_collateral
        raise ValueError(
            f"collateral asset {asset!r}: allowed {sorted(self.collaterals)} (params.collaterals of {self.name!r})"
        )

    def im_factor_for(self, stable_price: float) -> float:
        """IM factor with the stablecoin de-peg add-on (PMRMLib _getMargin pegLossFactor)."""
        c = self.contingency
        peg = max(c.peg_threshold - stable_price, 0.0) * c.peg_factor
        return self.im_factor + peg
