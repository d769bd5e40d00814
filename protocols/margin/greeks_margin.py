"""Greeks-based margin: per account and underlying, a delta charge, a short-gamma charge and a vega charge with
the (30/DTE)^p vol-shock term structure; MM is their sum, IM = im_factor * MM.

  delta  = |sum dollar delta| * spot_shock
  gamma  = max(0, -sum dollar gamma * spot_shock^2 / 2)          (long gamma is not credited)
  vega   = parallel + decorrelation * (per-expiry - parallel), where per expiry e the vol-up and vol-down losses
           are -sum vega*sigma*range_up*w_e and +sum vega*sigma*range_down*w_e, w_e = (30/max(DTE, floor))^p,
           p = short_power if DTE <= 30 else long_power (docs/margin-methods.md section 0(b), Lyra PMRM volShock).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from defistress.protocols.margin.portfolio import MarketState, Portfolio, check_supported
from defistress.protocols.margin.registry import register
from defistress.protocols.margin.result import MarginResult
from defistress.protocols.margin.var import mark_to_market, per_account_underlying, position_greeks

_TERM_DAYS = 30.0  # vol-shock reference tenor, days (PMRMLib volShock: 30 days / max(sec, dteFloor))


@dataclass(frozen=True)
class GreeksParams:
    """Shock sizes of the Greeks margin; defaults cite their source."""

    spot_shock: float = 0.15  # Lyra PMRM test config spot grid +-15% (test/config-test.sol)
    vol_range_up: float = 0.6  # Lyra PMRM mainnet volRangeUp (scripts/config-mainnet.sol)
    vol_range_down: float = 0.3  # Lyra PMRM mainnet volRangeDown
    short_term_power: float = 0.3  # PMRM shortTermPower
    long_term_power: float = 0.13  # PMRM longTermPower
    dte_floor_days: float = 1.0  # PMRM dteFloor 1 day
    vega_decorrelation: float = 0.25  # Deribit pre-2020 "25% vega-offset contingency across expiries"
    im_factor: float = 1.3  # OKX portfolio margin IMR = 1.3 x MMR

    def __post_init__(self) -> None:
        for name, lo, hi in (
            ("spot_shock", 0.0, 1.0),
            ("vol_range_up", 0.0, 2.0),
            ("vol_range_down", 0.0, 1.0),
            ("short_term_power", 0.0, 0.5),
            ("long_term_power", 0.0, 0.5),
            ("vega_decorrelation", 0.0, 1.0),
            ("im_factor", 1.0, 4.0),
        ):
            v = getattr(self, name)
            if not (np.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"{name}={v}: allowed {lo} <= {name} <= {hi}")
        if not self.dte_floor_days > 0:
            raise ValueError(f"dte_floor_days={self.dte_floor_days}: allowed > 0")


class GreeksMargin:
    """Delta, gamma and vega charges (USD) per account, summed over underlyings (no cross-underlying offset)."""

    def __init__(self, params: GreeksParams = GreeksParams(), name: str = "greeks"):
        self.params = params
        self.name = name

    def vol_weight(self, dte_days: np.ndarray) -> np.ndarray:
        """(30 / max(DTE, floor))^p with p = short power for DTE <= 30 days, else long power."""
        p = self.params
        power = np.where(dte_days <= _TERM_DAYS, p.short_term_power, p.long_term_power)
        return np.asarray((_TERM_DAYS / np.maximum(dte_days, p.dte_floor_days)) ** power, dtype=np.float64)

    def charges(self, pf: Portfolio, mkt: MarketState) -> dict[str, np.ndarray]:
        """(N,) USD delta, gamma and vega charges."""
        p, n = self.params, pf.n_accounts
        g = position_greeks(pf, mkt)
        delta = np.abs(per_account_underlying(pf, g["delta_usd"])).sum(axis=1) * p.spot_shock
        gam = per_account_underlying(pf, g["gamma_usd"])
        gamma = np.maximum(0.0, -0.5 * gam * p.spot_shock**2).sum(axis=1)
        w = self.vol_weight(g["dte_days"]) * g["sigma"] * g["vega_usd"]
        loss_up, loss_down = -w * p.vol_range_up, w * p.vol_range_down
        # per (account, underlying, expiry) bucket
        e_uniq, e_code = np.unique(pf.expiry_s, return_inverse=True)
        n_e, n_u = max(e_uniq.size, 1), max(len(pf.underlyings), 1)
        key = (pf.account * n_u + pf.und) * n_e + e_code.reshape(-1)
        up_b = np.bincount(key, weights=loss_up, minlength=n * n_u * n_e).reshape(n, n_u, n_e)
        dn_b = np.bincount(key, weights=loss_down, minlength=n * n_u * n_e).reshape(n, n_u, n_e)
        parallel = np.maximum(np.maximum(up_b.sum(axis=2), dn_b.sum(axis=2)), 0.0)
        per_expiry = np.maximum(np.maximum(up_b, dn_b), 0.0).sum(axis=2)
        vega = (parallel + p.vega_decorrelation * (per_expiry - parallel)).sum(axis=1)
        return {"delta_usd": delta, "gamma_usd": gamma, "vega_usd": vega}

    def requirements(self, pf: Portfolio, mkt: MarketState) -> MarginResult:
        check_supported(pf, self.name)
        ch = self.charges(pf, mkt)
        mm = ch["delta_usd"] + ch["gamma_usd"] + ch["vega_usd"]
        return MarginResult(
            im=self.params.im_factor * mm, mm=mm, equity=mark_to_market(pf, mkt), drivers=ch, model=self.name
        )


register("greeks", lambda **kw: GreeksMargin(GreeksParams(**kw)))
