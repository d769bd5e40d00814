"""Rule-based margin: per-position rules summed against shared collateral ("cross") or each position margined
alone ("isolated"), with presets for lending markets (Aave v3, Compound v3) and perp venues (dYdX v4,
Synthetix v3, GMX v2, Hyperliquid). Option venues (Lyra standard, Deribit standard) live in rules_options.py.

Isolated mode runs the cross rules on every position as its own account (no cash, no offsets). A position p
then needs collateral max(req_p - value_p, 0) of its own, so against the account equity (sum of values + cash)
the requirement is sum_p max(req_p, value_p): never below the cross requirement of an unhedged book.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from protocols.margin.portfolio import PERP, SPOT, MarketState, Portfolio
from protocols.margin.registry import register
from protocols.margin.result import MarginResult
from protocols.margin.var import position_values

MODES: tuple[str, ...] = ("cross", "isolated")


def _bc(idx: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(idx, weights=w, minlength=n)[:n] if idx.size else np.zeros(n)


def check_fraction(name: str, value: float, lo: float = 0.0, hi: float = 1.0) -> None:
    """Raise ValueError naming the field unless lo <= value <= hi."""
    if not (np.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name}={value}: allowed {lo} <= {name} <= {hi}")


def explode(pf: Portfolio) -> Portfolio:
    """Every position as its own account with zero cash (for isolated margin)."""
    p = pf.n_positions
    return Portfolio(n_accounts=p, underlyings=pf.underlyings, account=np.arange(p), kind=pf.kind, und=pf.und,
                     qty=pf.qty, strike=pf.strike, expiry_s=pf.expiry_s, entry_price=pf.entry_price,
                     cash=np.zeros(p))


def isolated(cross: Callable[[Portfolio, MarketState], MarginResult], pf: Portfolio, mkt: MarketState,
             name: str) -> MarginResult:
    """Isolated margin from a cross rule: requirement sum_p max(req_p, value_p), equity sum_p value_p + cash."""
    n = pf.n_accounts
    one = cross(explode(pf), mkt)
    mm_p, im_p, v = np.maximum(one.mm, one.equity), np.maximum(one.im, one.equity), one.equity
    drivers = {k: _bc(pf.account, np.asarray(d, dtype=np.float64), n) for k, d in one.drivers.items()
               if np.shape(d) == (pf.n_positions,)}
    drivers["isolation_usd"] = _bc(pf.account, mm_p - one.mm, n)
    return MarginResult(im=_bc(pf.account, im_p, n), mm=_bc(pf.account, mm_p, n),
                        equity=_bc(pf.account, v, n) + pf.cash, drivers=drivers, model=name)


class RuleModel:
    """Base of the rule-based models: subclasses implement `_cross(pf, mkt)`; `params.mode` picks the view."""

    modes: tuple[str, ...] = MODES

    def __init__(self, params, name: str):
        if params.mode not in self.modes:
            raise ValueError(f"mode={params.mode!r}: allowed {list(self.modes)} for {name}")
        self.params = params
        self.name = name

    def requirements(self, pf: Portfolio, mkt: MarketState) -> MarginResult:
        if self.params.mode == "cross":
            return self._cross(pf, mkt)
        return isolated(self._cross, pf, mkt, self.name)

    def _cross(self, pf: Portfolio, mkt: MarketState) -> MarginResult:  # pragma: no cover - abstract
        raise NotImplementedError


def _unsupported(pf: Portfolio, supported: np.ndarray) -> np.ndarray:
    """Count per account of positions the venue cannot hold (left out of equity and requirement)."""
    return np.bincount(pf.account[~supported], minlength=pf.n_accounts)[:pf.n_accounts].astype(np.int64)


# ---------------------------------------------------------------------------------------------- lending
def _asset_table(pf: Portfolio, table: Mapping[str, tuple[float, ...]], col: int) -> np.ndarray:
    """(U,) column `col` of a per-asset parameter table; unlisted assets get 0 (not accepted as collateral)."""
    return np.array([float(table[u][col]) if u in table else 0.0 for u in pf.underlyings])


# Gauntlet's initial Aave v3 Ethereum set (governance.aave.com/t/.../10238/22), LTV / LT as fractions
AAVE_V3_ETHEREUM: dict[str, tuple[float, float]] = {
    "ETH": (0.825, 0.86), "WETH": (0.825, 0.86), "wstETH": (0.72, 0.83), "BTC": (0.72, 0.82),
    "WBTC": (0.72, 0.82), "DAI": (0.765, 0.89), "LINK": (0.695, 0.825), "CRV": (0.55, 0.61),
}


@dataclass(frozen=True)
class AaveParams:
    """Aave v3 LTV (IM) and liquidation threshold (MM) per collateral asset; cash is USDC."""

    mode: str = "cross"
    assets: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(AAVE_V3_ETHEREUM))
    stable_ltv: float = 0.865    # USDC LTV 8650 bps (Gauntlet initial Aave v3 Ethereum set)
    stable_lt: float = 0.885     # USDC LT 8850 bps

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

    def _split(self, pf: Portfolio, mkt: MarketState):
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
        return MarginResult(im=coll - coll_ltv, mm=coll - coll_lt, equity=coll - debt, model=self.name,
                            drivers={"ltv_haircut_usd": coll - coll_ltv, "lt_haircut_usd": coll - coll_lt,
                                     "unsupported_positions": _unsupported(pf, spot)})


# Compound v3 cUSDCv3 mainnet (deployments/mainnet/usdc/configuration.json): borrowCF, liquidateCF, liquidationFactor
COMPOUND_V3_USDC: dict[str, tuple[float, float, float]] = {
    "ETH": (0.825, 0.895, 0.95), "WETH": (0.825, 0.895, 0.95), "BTC": (0.70, 0.77, 0.95),
    "WBTC": (0.70, 0.77, 0.95), "COMP": (0.65, 0.70, 0.93), "UNI": (0.75, 0.81, 0.93), "LINK": (0.79, 0.85, 0.93),
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
        return MarginResult(im=im, mm=mm, equity=_bc(pf.account, coll_p, n) + pf.cash, model=self.name,
                            drivers={"borrow_cf_haircut_usd": im, "liquidate_cf_haircut_usd": mm,
                                     "unsupported_positions": _unsupported(pf, ok)})
