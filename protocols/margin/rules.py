"""Rule-based margin: per-position rules summed against shared collateral ("cross") or each position margined
alone ("isolated"), with presets for lending markets (Aave v3, Compound v3) and perp venues (dYdX v4,
Synthetix v3, GMX v2, Hyperliquid). Option venues (Lyra standard, Deribit standard) live in rules_options.py.

Isolated mode runs the cross rules on every position as its own account (no cash, no offsets). A position p
then needs collateral max(req_p - value_p, 0) of its own, so against the account equity (sum of values + cash)
the requirement is sum_p max(req_p, value_p): never below the cross requirement of an unhedged book.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from defistress.protocols.margin.portfolio import PERP, SPOT, MarketState, Portfolio
from defistress.protocols.margin.result import MarginResult
from defistress.protocols.margin.rule_base import (  # noqa: F401
    MODES,
    RuleModel,
    _bc,
    _unsupported,
    check_fraction,
    explode,
    isolated,
    register_rule,
)
from defistress.protocols.margin.var import position_values


# ---------------------------------------------------------------------------------------------- lending
def _asset_table(pf: Portfolio, table: Mapping[str, tuple[float, ...]], col: int) -> np.ndarray:
    """(U,) column `col` of a per-asset parameter table; unlisted assets get 0 (not accepted as collateral)."""
    return np.array([float(table[u][col]) if u in table else 0.0 for u in pf.underlyings])


# Gauntlet's initial Aave v3 Ethereum set (governance.aave.com/t/.../10238/22), LTV / LT as fractions
AAVE_V3_ETHEREUM: dict[str, tuple[float, float]] = {
    "ETH": (0.825, 0.86),
    "WETH": (0.825, 0.86),
    "wstETH": (0.72, 0.83),
    "BTC": (0.72, 0.82),
    "WBTC": (0.72, 0.82),
    "DAI": (0.765, 0.89),
    "LINK": (0.695, 0.825),
    "CRV": (0.55, 0.61),
}


@dataclass(frozen=True)
class AaveParams:
    """Aave v3 LTV (IM) and liquidation threshold (MM) per collateral asset; cash is USDC."""

    mode: str = "cross"
    assets: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(AAVE_V3_ETHEREUM))
    stable_ltv: float = 0.865  # USDC LTV 8650 bps (Gauntlet initial Aave v3 Ethereum set)
    stable_lt: float = 0.885  # USDC LT 8850 bps

    def __post_init__(self) -> None:
        for a, (ltv, lt) in self.assets.items():
            check_fraction(f"assets[{a!r}].ltv", ltv)
            check_fraction(f"assets[{a!r}].lt", lt, ltv, 1.0)
        check_fraction("stable_ltv", self.stable_ltv)
        check_fraction("stable_lt", self.stable_lt, self.stable_ltv, 1.0)


class AaveV3(RuleModel):
    """Aave v3 health factor as margin (GenericLogic.calculateUserAccountData): collateral are positive spot and
    cash, debt are negative spot (borrowed assets) and negative cash. MM = sum coll*(1-LT), IM = sum coll*(1-LTV),
    so equity >= MM iff HF = sum coll*LT / debt >= 1 and equity >= IM iff debt <= sum coll*LTV."""

    modes = ("cross",)

    def _split(self, pf: Portfolio, mkt: MarketState) -> tuple[np.ndarray, ...]:
        spot = pf.kind == SPOT
        val = np.where(spot, position_values(pf, mkt), 0.0)
        coll_p, debt_p = np.maximum(val, 0.0), np.maximum(-val, 0.0)
        ltv, lt = _asset_table(pf, self.params.assets, 0)[pf.und], _asset_table(pf, self.params.assets, 1)[pf.und]
        n, cash = pf.n_accounts, pf.cash
        coll = _bc(pf.account, coll_p, n) + np.maximum(cash, 0.0)
        debt = _bc(pf.account, debt_p, n) + np.maximum(-cash, 0.0)
        coll_lt = _bc(pf.account, coll_p * lt, n) + np.maximum(cash, 0.0) * self.params.stable_lt
        coll_ltv = _bc(pf.account, coll_p * ltv, n) + np.maximum(cash, 0.0) * self.params.stable_ltv
        return spot, coll, debt, coll_lt, coll_ltv

    def health_factor(self, pf: Portfolio, mkt: MarketState) -> np.ndarray:
        """(N,) HF = sum coll*LT / debt; inf without debt (GenericLogic.calculateUserAccountData)."""
        _, _, debt, coll_lt, _ = self._split(pf, mkt)
        return np.where(debt > 0, coll_lt / np.where(debt > 0, debt, 1.0), np.inf)

    def _cross(self, pf: Portfolio, mkt: MarketState) -> MarginResult:
        spot, coll, debt, coll_lt, coll_ltv = self._split(pf, mkt)
        return MarginResult(
            im=coll - coll_ltv,
            mm=coll - coll_lt,
            equity=coll - debt,
            model=self.name,
            drivers={
                "ltv_haircut_usd": coll - coll_ltv,
                "lt_haircut_usd": coll - coll_lt,
                "unsupported_positions": _unsupported(pf, spot),
            },
        )


# Compound v3 cUSDCv3 mainnet (deployments/mainnet/usdc/configuration.json): borrowCF, liquidateCF, liquidationFactor
COMPOUND_V3_USDC: dict[str, tuple[float, float, float]] = {
    "ETH": (0.825, 0.895, 0.95),
    "WETH": (0.825, 0.895, 0.95),
    "BTC": (0.70, 0.77, 0.95),
    "WBTC": (0.70, 0.77, 0.95),
    "COMP": (0.65, 0.70, 0.93),
    "UNI": (0.75, 0.81, 0.93),
    "LINK": (0.79, 0.85, 0.93),
}


@dataclass(frozen=True)
class CompoundParams:
    """Compound v3 (Comet) collateral factors per asset; cash is the signed base (USDC) balance."""

    mode: str = "cross"
    assets: Mapping[str, tuple[float, float, float]] = field(default_factory=lambda: dict(COMPOUND_V3_USDC))

    def __post_init__(self) -> None:
        for a, (bcf, lcf, lf) in self.assets.items():
            check_fraction(f"assets[{a!r}].borrow_cf", bcf)
            check_fraction(f"assets[{a!r}].liquidate_cf", lcf, bcf, 1.0)
            check_fraction(f"assets[{a!r}].liquidation_factor", lf)


class CompoundV3(RuleModel):
    """Comet isBorrowCollateralized / isLiquidatable: -debt + sum coll*CF >= 0. IM uses borrowCollateralFactor,
    MM liquidateCollateralFactor; negative spot (borrowing a collateral asset) is not possible in Comet."""

    modes = ("cross",)

    def _cross(self, pf: Portfolio, mkt: MarketState) -> MarginResult:
        n = pf.n_accounts
        ok = (pf.kind == SPOT) & (pf.qty >= 0)
        coll_p = np.where(ok, position_values(pf, mkt), 0.0)
        bcf = _asset_table(pf, self.params.assets, 0)[pf.und]
        lcf = _asset_table(pf, self.params.assets, 1)[pf.und]
        im, mm = _bc(pf.account, coll_p * (1 - bcf), n), _bc(pf.account, coll_p * (1 - lcf), n)
        return MarginResult(
            im=im,
            mm=mm,
            equity=_bc(pf.account, coll_p, n) + pf.cash,
            model=self.name,
            drivers={
                "borrow_cf_haircut_usd": im,
                "liquidate_cf_haircut_usd": mm,
                "unsupported_positions": _unsupported(pf, ok),
            },
        )


# ---------------------------------------------------------------------------------------------- perp venues
class PerpVenue(RuleModel):
    """A perp venue: perps net per (account, underlying) in cross mode; equity = cash + unrealised PnL.
    Subclasses give `_rates(size, notional, und) -> (im, mm, drivers)` per net position (USD)."""

    def _rates(
        self, size: np.ndarray, notional: np.ndarray, und: np.ndarray, pf: Portfolio
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _cross(self, pf: Portfolio, mkt: MarketState) -> MarginResult:
        n, n_u = pf.n_accounts, len(pf.underlyings)
        sel = pf.kind == PERP
        upnl = np.where(sel, position_values(pf, mkt), 0.0)
        keys, inv = np.unique(pf.account[sel] * n_u + pf.und[sel], return_inverse=True)
        size = np.abs(_bc(inv, pf.qty[sel], keys.size))
        acct, und = keys // max(n_u, 1), keys % max(n_u, 1)
        notional = size * mkt.perp_array(pf.underlyings)[und] if keys.size else np.zeros(0)
        im, mm, extra = self._rates(size, notional, und, pf)
        live = size > 0
        drivers = {k: _bc(acct, np.where(live, v, 0.0), n) for k, v in extra.items()}
        drivers["unsupported_positions"] = _unsupported(pf, sel)
        return MarginResult(
            im=_bc(acct, np.where(live, im, 0.0), n),
            mm=_bc(acct, np.where(live, mm, 0.0), n),
            equity=_bc(pf.account, upnl, n) + pf.cash,
            drivers=drivers,
            model=self.name,
        )


@dataclass(frozen=True)
class DydxTier:
    """dYdX v4 liquidity tier (protocol/x/perpetuals/types/liquidity_tier.go): base IMF, maintenance fraction,
    open-interest caps (USD) of the OIMF ramp; upper cap 0 disables the ramp."""

    imf: float
    maintenance_fraction: float
    lower_cap_usd: float = 0.0
    upper_cap_usd: float = 0.0

    def __post_init__(self) -> None:
        check_fraction("imf", self.imf)
        check_fraction("maintenance_fraction", self.maintenance_fraction)
        if not 0.0 <= self.lower_cap_usd <= max(self.upper_cap_usd, self.lower_cap_usd):
            raise ValueError(f"lower_cap_usd={self.lower_cap_usd}: allowed 0 <= lower_cap_usd <= upper_cap_usd")
        if self.upper_cap_usd and self.upper_cap_usd <= self.lower_cap_usd:
            raise ValueError(f"upper_cap_usd={self.upper_cap_usd}: allowed 0 (off) or > lower_cap_usd")


# dYdX v4 genesis tiers (protocol/testing/genesis.sh)
DYDX_TIERS: dict[str, DydxTier] = {
    "large-cap": DydxTier(0.02, 0.6),
    "small-cap": DydxTier(0.10, 0.5, 20e6, 50e6),
    "long-tail": DydxTier(0.20, 0.5, 5e6, 10e6),
    "safety": DydxTier(1.0, 0.2),
    "isolated": DydxTier(0.05, 0.6, 0.5e6, 1e6),
    "mid-cap": DydxTier(0.05, 0.6, 40e6, 100e6),
    "fx": DydxTier(0.01, 0.5, 0.5e6, 1e6),
}


@dataclass(frozen=True)
class DydxParams:
    """dYdX v4 margin: tier per market, market open interest (USD) for the OIMF ramp (optional)."""

    mode: str = "cross"
    tiers: Mapping[str, str] = field(default_factory=lambda: {"BTC": "large-cap", "ETH": "large-cap"})  # genesis
    default_tier: str = "small-cap"  # design choice for markets not listed
    open_interest_usd: Mapping[str, float] = field(default_factory=dict)
    oimf: bool = True  # apply open-interest IMF scaling (lib.go GetInitialMarginQuoteQuantums)
    tier_table: Mapping[str, DydxTier] = field(default_factory=lambda: dict(DYDX_TIERS))

    def __post_init__(self) -> None:
        for u, t in {**self.tiers, "default_tier": self.default_tier}.items():
            if t not in self.tier_table:
                raise ValueError(f"tiers[{u!r}]={t!r}: allowed {sorted(self.tier_table)}")
        for u, oi in self.open_interest_usd.items():
            if not oi >= 0:
                raise ValueError(f"open_interest_usd[{u!r}]={oi}: allowed >= 0")


class DydxV4(PerpVenue):
    """IM = notional * IMF_eff with IMF_eff = min(IMF + clip((OI - lower)/(upper - lower), 0, inf)*(1 - IMF), 1);
    MM = notional * IMF * maintenanceFraction, from the base IMF (liquidity_tier.go, lib.go)."""

    def tier(self, underlying: str) -> DydxTier:
        tier: DydxTier = self.params.tier_table[self.params.tiers.get(underlying, self.params.default_tier)]
        return tier

    def imf_effective(self, underlying: str) -> float:
        t, p = self.tier(underlying), self.params
        if not p.oimf or t.upper_cap_usd == 0.0:
            return t.imf
        oi = float(p.open_interest_usd.get(underlying, 0.0))
        ramp = max(0.0, (oi - t.lower_cap_usd) / (t.upper_cap_usd - t.lower_cap_usd))
        return min(t.imf + ramp * (1.0 - t.imf), 1.0)

    def _rates(
        self, size: np.ndarray, notional: np.ndarray, und: np.ndarray, pf: Portfolio
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        imf = np.array([self.imf_effective(u) for u in pf.underlyings])[und]
        base = np.array([self.tier(u).imf for u in pf.underlyings])[und]
        mmf = np.array([self.tier(u).imf * self.tier(u).maintenance_fraction for u in pf.underlyings])[und]
        return (
            notional * imf,
            notional * mmf,
            {"maintenance_usd": notional * mmf, "oimf_addon_usd": notional * (imf - base)},
        )


@dataclass(frozen=True)
class SynthetixParams:
    """Synthetix v3 perps market settings (PerpsMarketConfiguration.sol); defaults from the integration test
    config (test/integration/Liquidation/Liquidation.margin.test.ts)."""

    mode: str = "cross"
    skew_scale: float = 100.0  # units of the underlying
    skew_scales: Mapping[str, float] = field(default_factory=dict)  # per-underlying override
    initial_margin_ratio: float = 2.0
    minimum_initial_margin_ratio: float = 0.01
    maintenance_margin_scalar: float = 0.5
    minimum_position_margin_usd: float = 0.0

    def __post_init__(self) -> None:
        for name, v in (
            ("skew_scale", self.skew_scale),
            *((f"skew_scales[{u!r}]", s) for u, s in self.skew_scales.items()),
        ):
            if not v > 0:
                raise ValueError(f"{name}={v}: allowed > 0")
        check_fraction("minimum_initial_margin_ratio", self.minimum_initial_margin_ratio)
        check_fraction("maintenance_margin_scalar", self.maintenance_margin_scalar)
        for name in ("initial_margin_ratio", "minimum_position_margin_usd"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)}: allowed >= 0")


class SynthetixV3(PerpVenue):
    """IMR = |size|/skewScale * initialMarginRatio + minimumInitialMarginRatio, MMR = IMR * scalar;
    IM = notional*IMR + minimumPositionMargin, MM = notional*MMR + minimumPositionMargin."""

    def _rates(
        self, size: np.ndarray, notional: np.ndarray, und: np.ndarray, pf: Portfolio
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        p = self.params
        skew = np.array([p.skew_scales.get(u, p.skew_scale) for u in pf.underlyings])[und]
        imr = size / skew * p.initial_margin_ratio + p.minimum_initial_margin_ratio
        mmr = imr * p.maintenance_margin_scalar
        mpm = np.full(size.shape, p.minimum_position_margin_usd)
        return (
            notional * imr + mpm,
            notional * mmr + mpm,
            {"maintenance_usd": notional * mmr, "minimum_position_margin_usd": mpm},
        )


@dataclass(frozen=True)
class GmxParams:
    """GMX v2 collateral floors (config/markets.ts, config/general.ts); positions are isolated."""

    mode: str = "isolated"
    min_collateral_factor: float = 0.01  # markets.ts minCollateralFactor 1%
    min_collateral_factor_for_liquidation: float = 0.01  # markets.ts minCollateralFactorForLiquidation 1%
    min_collateral_usd: float = 1.0  # general.ts minCollateralUsd $1
    closing_fee_factor: float = 0.0  # set to the market's position fee factor to charge it
    oi_multiplier: float = 0.0  # minCollateralFactorForOpenInterestMultiplier (per USD OI)
    open_interest_usd: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("min_collateral_factor", "min_collateral_factor_for_liquidation", "closing_fee_factor"):
            check_fraction(name, getattr(self, name))
        for name in ("min_collateral_usd", "oi_multiplier"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)}: allowed >= 0")


class GmxV2(PerpVenue):
    """PositionUtils.isPositionLiquidatable: remaining collateral < max(size*minCollateralFactor, minCollateralUsd)
    (+ closing fees); IM uses minCollateralFactor raised to OI * multiplier (MarketUtils OI floor)."""

    modes = ("isolated",)

    def _rates(
        self, size: np.ndarray, notional: np.ndarray, und: np.ndarray, pf: Portfolio
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        p = self.params
        oi = np.array([float(p.open_interest_usd.get(u, 0.0)) for u in pf.underlyings])[und]
        fee = notional * p.closing_fee_factor
        im = np.maximum(notional * np.maximum(p.min_collateral_factor, oi * p.oi_multiplier), p.min_collateral_usd)
        mm = np.maximum(notional * p.min_collateral_factor_for_liquidation, p.min_collateral_usd)
        return im + fee, mm + fee, {"maintenance_usd": mm, "closing_fee_usd": fee}


@dataclass(frozen=True)
class HyperliquidParams:
    """Hyperliquid standard margin: max leverage per asset (docs: BTC 40x, ETH 25x); user leverage sets IM."""

    mode: str = "cross"
    max_leverage: Mapping[str, float] = field(default_factory=lambda: {"BTC": 40.0, "ETH": 25.0})
    default_max_leverage: float = 3.0  # lowest tier in the docs' table (3x -> MM 16.7%): conservative default
    leverage: Mapping[str, float] = field(default_factory=dict)  # chosen leverage, default the maximum

    def __post_init__(self) -> None:
        for u, lev in {**self.max_leverage, "default_max_leverage": self.default_max_leverage}.items():
            if not lev >= 1:
                raise ValueError(f"max_leverage[{u!r}]={lev}: allowed >= 1")
        for u, lev in self.leverage.items():
            cap = self.max_leverage.get(u, self.default_max_leverage)
            if not 1 <= lev <= cap:
                raise ValueError(f"leverage[{u!r}]={lev}: allowed 1 <= leverage <= {cap}")


class Hyperliquid(PerpVenue):
    """MM = notional / (2 * maxLeverage); IM = notional / leverage (Hyperliquid docs, margining)."""

    def _rates(
        self, size: np.ndarray, notional: np.ndarray, und: np.ndarray, pf: Portfolio
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        p = self.params
        max_lev = np.array([p.max_leverage.get(u, p.default_max_leverage) for u in pf.underlyings])[und]
        lev = np.array([p.leverage.get(u, p.max_leverage.get(u, p.default_max_leverage)) for u in pf.underlyings])[und]
        mm = notional / (2.0 * max_lev)
        return notional / lev, mm, {"maintenance_usd": mm}


# ---------------------------------------------------------------------------------------------- presets
RULE_PRESETS: dict[str, tuple[type, type]] = {
    "aave-v3": (AaveV3, AaveParams),
    "compound-v3": (CompoundV3, CompoundParams),
    "dydx-v4": (DydxV4, DydxParams),
    "synthetix-v3": (SynthetixV3, SynthetixParams),
    "gmx-v2": (GmxV2, GmxParams),
    "hyperliquid": (Hyperliquid, HyperliquidParams),
}


for _name, (_cls, _params) in RULE_PRESETS.items():
    register_rule(_name, _cls, _params)
