"""What every rule-based margin model shares: the cross/isolated views, the base class, helpers and
registration of a rule preset (its plain and, where both modes exist, `-isolated` name)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from defistress.protocols.margin.portfolio import MarketState, Portfolio, add_funding, check_supported
from defistress.protocols.margin.registry import register
from defistress.protocols.margin.result import MarginResult

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
    return Portfolio(
        n_accounts=p,
        underlyings=pf.underlyings,
        account=np.arange(p),
        kind=pf.kind,
        und=pf.und,
        qty=pf.qty,
        strike=pf.strike,
        expiry_s=pf.expiry_s,
        entry_price=pf.entry_price,
        cash=np.zeros(p),
    )


def isolated(
    cross: Callable[[Portfolio, MarketState], MarginResult], pf: Portfolio, mkt: MarketState, name: str
) -> MarginResult:
    """Isolated margin from a cross rule: requirement sum_p max(req_p, value_p), equity sum_p value_p + cash."""
    n = pf.n_accounts
    one = cross(explode(pf), mkt)
    mm_p, im_p, v = np.maximum(one.mm, one.equity), np.maximum(one.im, one.equity), one.equity
    drivers = {}
    for k, d in one.drivers.items():
        if np.shape(d) == (pf.n_positions,):
            agg = _bc(pf.account, np.asarray(d, dtype=np.float64), n)
            drivers[k] = agg.round().astype(np.int64) if np.asarray(d).dtype.kind in "iub" else agg
    drivers["isolation_usd"] = _bc(pf.account, mm_p - one.mm, n)
    im, mm, equity = _bc(pf.account, im_p, n), _bc(pf.account, mm_p, n), _bc(pf.account, v, n) + pf.cash
    if "native_margin_mm" in drivers:  # keep the convention equity - mm == native result
        drivers["native_margin_mm"], drivers["native_margin_im"] = equity - mm, equity - im
    return MarginResult(im=im, mm=mm, equity=equity, drivers=drivers, model=name)


class RuleModel:
    """Base of the rule-based models: subclasses implement `_cross(pf, mkt)`; `params.mode` picks the view."""

    modes: tuple[str, ...] = MODES

    def __init__(self, params: Any, name: str):
        if params.mode not in self.modes:
            raise ValueError(f"mode={params.mode!r}: allowed {list(self.modes)} for {name}")
        self.params = params
        self.name = name

    def requirements(self, pf: Portfolio, mkt: MarketState) -> MarginResult:
        check_supported(pf, self.name)
        if self.params.mode == "cross":
            return add_funding(self._cross(pf, mkt), pf)
        return add_funding(isolated(self._cross, pf, mkt, self.name), pf)

    def _cross(self, pf: Portfolio, mkt: MarketState) -> MarginResult:  # pragma: no cover - abstract
        raise NotImplementedError


def _unsupported(pf: Portfolio, supported: np.ndarray) -> np.ndarray:
    """Count per account of positions the venue cannot hold (left out of equity and requirement)."""
    return np.bincount(pf.account[~supported], minlength=pf.n_accounts)[: pf.n_accounts].astype(np.int64)


def register_rule(name: str, model_cls: type[RuleModel], params_cls: Callable[..., Any]) -> None:
    """Register `name` and, when the model has both modes, `name-isolated`."""
    register(name, lambda **kw: model_cls(params_cls(**kw), name))
    if "isolated" in model_cls.modes and "cross" in model_cls.modes:
        iso = f"{name}-isolated"
        register(iso, lambda **kw: model_cls(params_cls(**{"mode": "isolated", **kw}), iso))
