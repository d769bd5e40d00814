"""Dynamic (volatility-scaled) margin with anti-procyclicality tools, and hybrid margin (the binding one of a
rule-based and a risk-based model).

Dynamic margin scans each underlying by +-z_alpha * sigma * sqrt(h) (full revaluation) where sigma is the
RiskMetrics EWMA vol of its returns, or the market's ATM vol without a history. Anti-procyclicality follows EMIR
RTS 153/2013 art. 28(1): (a) a 25% buffer released in stress, (b) >= 25% weight on stressed observations,
(c) a 10-year look-back floor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from defistress.protocols.margin.portfolio import MarketState, Portfolio, check_supported
from defistress.protocols.margin.registry import build as get_model
from defistress.protocols.margin.registry import register
from defistress.protocols.margin.result import MarginResult
from defistress.protocols.margin.var import (
    DAYS_PER_YEAR,
    RISKMETRICS_LAMBDA,
    atm_vols,
    ewma_vol,
    mark_to_market,
    returns_matrix,
    revalue_pnl,
    z_alpha,
)

APC_MODES: tuple[str, ...] = ("none", "buffer", "stressed_weight", "floor")


@dataclass(frozen=True)
class DynamicParams:
    """Settings of the EWMA-vol-scaled margin and its anti-procyclicality (APC) option."""

    confidence: float = 0.99  # EMIR RTS 153/2013 art. 24: 99% for non-OTC instruments
    horizon_days: float = 2.0  # EMIR RTS 153/2013 art. 26: MPOR >= 2 days
    lam: float = RISKMETRICS_LAMBDA
    apc: str = "buffer"
    apc_buffer: float = 0.25  # EMIR RTS 153/2013 art. 28(1)(a): buffer >= 25% of calculated margin
    stress_weight: float = 0.25  # art. 28(1)(b): >= 25% weight on stressed observations
    floor_years: float = 10.0  # art. 28(1)(c): 10-year look-back floor
    returns: Mapping[str, Sequence[float]] | None = None  # log returns per step and underlying
    step_days: float = 1.0
    stressed_vol: Mapping[str, float] = field(default_factory=dict)  # annualised, used without a history
    floor_vol: Mapping[str, float] = field(default_factory=dict)  # annualised, used without a history
    vol_tenor_days: float = 30.0  # ATM tenor read from the surface without a history (design choice)
    im_factor: float = 1.0  # IM = MM * im_factor (* (1 + buffer) under the buffer APC)

    def __post_init__(self) -> None:
        if self.apc not in APC_MODES:
            raise ValueError(f"apc={self.apc!r}: allowed {list(APC_MODES)}")
        if not 0.5 < self.confidence < 1.0:
            raise ValueError(f"confidence={self.confidence}: allowed 0.5 < confidence < 1")
        for name in ("horizon_days", "step_days", "floor_years", "vol_tenor_days"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)}: allowed > 0")
        for name, lo, hi in (
            ("lam", 0.0, 1.0),
            ("apc_buffer", 0.0, 1.0),
            ("stress_weight", 0.0, 1.0),
            ("im_factor", 1.0, 4.0),
        ):
            v = getattr(self, name)
            if not lo <= v <= hi or (name == "lam" and not 0.0 < v < 1.0):
                raise ValueError(f"{name}={v}: allowed {lo} <= {name} <= {hi}")


def apc_vol(
    sigma_now: float,
    history: np.ndarray | None,
    params: DynamicParams,
    stressed: float | None = None,
    floor: float | None = None,
) -> float:
    """Per-step vol after the APC option: stressed weight blends variances with the largest EWMA vol seen,
    the floor takes the larger of the current vol and the long-run (<= floor_years) stdev."""
    p = params
    if p.apc == "stressed_weight":
        if stressed is None:
            if history is None:
                raise ValueError("stressed_vol: apc 'stressed_weight' needs returns or stressed_vol per underlying")
            stressed = float(ewma_vol(history, p.lam).max())
        return float(np.sqrt((1 - p.stress_weight) * sigma_now**2 + p.stress_weight * stressed**2))
    if p.apc == "floor":
        if floor is None:
            if history is None:
                raise ValueError("floor_vol: apc 'floor' needs returns or floor_vol per underlying")
            n = int(min(history.size, round(p.floor_years * DAYS_PER_YEAR / p.step_days)))
            floor = float(np.std(history[-n:], ddof=1))
        return max(sigma_now, floor)
    return sigma_now


def margin_rate_path(returns: Sequence[float], params: DynamicParams = DynamicParams()) -> np.ndarray:
    """(T,) margin per USD of a linear position after each return: z * sigma_APC * sqrt(h / step), sigma the EWMA
    forecast for the next step. The buffer APC (see `buffered`) absorbs a rise in m until the buffer is used up,
    and rebuilds it when m falls."""
    p = params
    r = np.asarray(returns, dtype=np.float64)
    sig = ewma_vol(r, p.lam)[1:]
    if p.apc == "stressed_weight":
        sig = np.sqrt((1 - p.stress_weight) * sig**2 + p.stress_weight * np.maximum.accumulate(sig) ** 2)
    elif p.apc == "floor":
        n_max = int(round(p.floor_years * DAYS_PER_YEAR / p.step_days))
        sd = np.array([np.std(r[max(0, t + 1 - n_max) : t + 1], ddof=1) if t > 0 else abs(r[0]) for t in range(r.size)])
        sig = np.maximum(sig, sd)
    m = z_alpha(p.confidence) * sig * np.sqrt(p.horizon_days / p.step_days)
    return buffered(m, p.apc_buffer) if p.apc == "buffer" else m


def buffered(rates: Sequence[float], buffer: float) -> np.ndarray:
    """EMIR art. 28(1)(a) buffer on a margin path: B_0 = (1 + b) m_0, B_t = max(m_t, min((1 + b) m_t, B_{t-1}))."""
    m = np.asarray(rates, dtype=np.float64)
    out = np.empty_like(m)
    prev = (1 + buffer) * m[0] if m.size else 0.0
    for t in range(m.size):
        prev = max(m[t], min((1 + buffer) * m[t], prev))
        out[t] = prev
    return out


def procyclicality(rates: Sequence[float], lag: int = 1) -> dict[str, float]:
    """Procyclicality measures of a margin path: peak-to-trough ratio and the largest rise over `lag` steps."""
    m = np.asarray(rates, dtype=np.float64)
    rise = (m[lag:] / m[:-lag]).max() if m.size > lag else 1.0
    return {"peak_to_trough": float(m.max() / m.min()), "max_rise": float(rise)}


class DynamicMargin:
    """MM = sum over underlyings of the worst full-revaluation loss at spot x exp(+-z sigma sqrt(h)) with the
    APC-adjusted vol; IM = MM * im_factor, times (1 + buffer) under the buffer APC."""

    def __init__(self, params: DynamicParams = DynamicParams(), name: str = "dynamic"):
        self.params = params
        self.name = name

    def horizon_vols(self, pf: Portfolio, mkt: MarketState) -> np.ndarray:
        """(U,) stdev of horizon log returns per underlying after the APC option."""
        p, unds = self.params, pf.underlyings
        if p.returns is not None:
            r = returns_matrix(p.returns, unds)
            out = [apc_vol(float(ewma_vol(r[:, j], p.lam)[-1]), r[:, j], p) for j in range(len(unds))]
            return np.asarray(np.asarray(out) * np.sqrt(p.horizon_days / p.step_days), dtype=np.float64)
        step = np.sqrt(1.0 / DAYS_PER_YEAR)  # annual -> per day, then the APC, then the horizon
        now = atm_vols(pf, mkt, p.vol_tenor_days) * step
        out = [
            apc_vol(
                float(now[j]),
                None,
                p,
                p.stressed_vol[u] * step if u in p.stressed_vol else None,
                p.floor_vol[u] * step if u in p.floor_vol else None,
            )
            for j, u in enumerate(unds)
        ]
        return np.asarray(np.asarray(out) * np.sqrt(p.horizon_days), dtype=np.float64)

    def requirements(self, pf: Portfolio, mkt: MarketState) -> MarginResult:
        check_supported(pf, self.name)
        p, n, n_u = self.params, pf.n_accounts, len(pf.underlyings)
        scan = np.zeros(n)
        if n_u and pf.n_positions:
            shock = z_alpha(p.confidence) * self.horizon_vols(pf, mkt)
            scen = np.zeros((2 * n_u, n_u))
            scen[2 * np.arange(n_u), np.arange(n_u)] = shock
            scen[2 * np.arange(n_u) + 1, np.arange(n_u)] = -shock
            pnl = revalue_pnl(pf, mkt, scen).reshape(n_u, 2, n)
            scan = np.maximum(0.0, -pnl.min(axis=1)).sum(axis=0)
        buf = p.apc_buffer if p.apc == "buffer" else 0.0
        im = scan * p.im_factor * (1.0 + buf)
        return MarginResult(
            im=im,
            mm=scan,
            equity=mark_to_market(pf, mkt),
            model=self.name,
            drivers={"scan_usd": scan, "buffer_usd": im - scan},
        )


@dataclass(frozen=True)
class HybridParams:
    """Names (registered presets) and overrides of the rule-based and risk-based legs of a hybrid margin; build
    hybrids through `catalog.get_model`, which imports every preset module first."""

    rule_model: str = "lyra-standard"
    risk_model: str = "var-mc"
    rule_overrides: Mapping[str, Any] = field(default_factory=dict)
    risk_overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.rule_model.startswith("hybrid") or self.risk_model.startswith("hybrid"):
            raise ValueError("rule_model/risk_model: allowed any registered preset except a hybrid")


class HybridMargin:
    """The binding one of two models: the margin excess is min(excess_rule, excess_risk), so with equal equities
    MM = max(MM_rule, MM_risk). Equity is the risk leg's (full MtM)."""

    def __init__(self, params: HybridParams = HybridParams(), name: str = "hybrid"):
        self.params = params
        self.name = name
        self.rule = get_model(params.rule_model, **dict(params.rule_overrides))
        self.risk = get_model(params.risk_model, **dict(params.risk_overrides))

    def requirements(self, pf: Portfolio, mkt: MarketState) -> MarginResult:
        a, b = self.rule.requirements(pf, mkt), self.risk.requirements(pf, mkt)
        eq = b.equity
        mm = eq - np.minimum(a.equity - a.mm, b.equity - b.mm)
        im = eq - np.minimum(a.equity - a.im, b.equity - b.im)
        return MarginResult(
            im=im,
            mm=mm,
            equity=eq,
            model=self.name,
            drivers={
                "rule_mm_usd": a.mm,
                "risk_mm_usd": b.mm,
                "rule_binding": ((a.equity - a.mm) < (b.equity - b.mm)).astype(np.int64),
            },
        )


register("dynamic", lambda **kw: DynamicMargin(DynamicParams(**kw)))
register("hybrid", lambda **kw: HybridMargin(HybridParams(**kw)))
