"""Value-at-Risk and Expected Shortfall of margin portfolios, per account, with confidence and horizon as inputs.

Methods: historical simulation (HS), filtered HS (EWMA vol rescaling, RiskMetrics lambda 0.94), parametric
delta-normal and delta-gamma (Cornish-Fisher), and Monte Carlo with a correlation matrix (Cholesky, seeded
numpy Generator). HS, FHS and MC revalue every position in full (options by Black-76). Losses are positive USD.
Analytic anchors: docs/margin-methods.md section 8 (VaR = z sigma sqrt(h), ES = sigma phi(z)/(1-alpha) sqrt(h)).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse

from defistress.protocols.margin.black76 import SECONDS_PER_YEAR, call_put, greeks
from defistress.protocols.margin.portfolio import (
    CALL,
    FUTURE,
    PERP,
    SPOT,
    MarketState,
    Portfolio,
    check_supported,
    is_option,
)
from defistress.protocols.margin.result import MarginResult

RISKMETRICS_LAMBDA = 0.94  # RiskMetrics Technical Document (J.P. Morgan 1996): daily decay factor
DAYS_PER_YEAR = 365.0  # crypto venues trade every day; Black76.sol year = 365 days
SECONDS_PER_DAY = 86_400.0


# ---------------------------------------------------------------------------------------------- valuation
def _check_confidence(confidence: float) -> None:
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence={confidence}: allowed 0.5 < confidence < 1")


def position_values(
    pf: Portfolio, mkt: MarketState, spot_mult: np.ndarray | None = None, dt_s: float = 0.0
) -> np.ndarray:
    """USD value of every position (P,), or (S, P) under spot multipliers `spot_mult` (S, U) after `dt_s` seconds.

    Spot: qty*S/stable (PMRMLib base value); perp: qty*(mark - entry), mark moving with spot; future:
    qty*(F - entry); option: qty*Black-76 with D = exp(-rT). Entry price 0 means opened at today's mark.
    Forwards and rates per expiry come from MarketState (its forward curves, else S e^{rT}); after dt_s the
    forward rolls down to F e^{-r dt}, both moving with the spot multiplier.
    """
    unds = pf.underlyings
    s0, perp0 = mkt.spot_array(unds), mkt.perp_array(unds)
    single = spot_mult is None
    mult = np.ones((1, len(unds))) if single else np.atleast_2d(np.asarray(spot_mult, dtype=np.float64))
    u, k, q = pf.und, pf.kind, pf.qty
    pts = mkt.curve_points(unds, u, pf.expiry_s)
    s_now, r = s0[u], pts.rate
    t0_y = pf.expiry_s / SECONDS_PER_YEAR
    t_y = np.maximum(pf.expiry_s - dt_s, 0.0) / SECONDS_PER_YEAR
    m = mult[:, u]  # (S, P)
    f0 = pts.forward
    f_t = f0 * np.exp(-r * (t0_y - t_y))  # the forward dt_s later (S e^{r(T - dt)} without a curve)
    entry = pf.entry_price
    out = np.zeros(m.shape)
    sp = k == SPOT
    out[:, sp] = q[sp] * s_now[sp] * m[:, sp] / mkt.stable_price
    pp = k == PERP
    mark0 = perp0[u][pp]
    out[:, pp] = q[pp] * (mark0 * m[:, pp] - np.where(entry[pp] > 0, entry[pp], mark0))
    fu = k == FUTURE
    out[:, fu] = q[fu] * (f_t[fu] * m[:, fu] - np.where(entry[fu] > 0, entry[fu], f0[fu]))
    op = is_option(k)
    if op.any():
        f = f_t[op] * m[:, op]
        kk, ts = np.broadcast_to(pf.strike[op], f.shape), np.broadcast_to(pf.expiry_s[op], f.shape)
        uu = np.broadcast_to(u[op], f.shape)
        sig = mkt.vols(unds, uu.ravel(), kk.ravel(), ts.ravel(), f.ravel()).reshape(f.shape)
        c, p = call_put(f, kk, t_y[op], sig, np.exp(-r[op] * t_y[op]))
        out[:, op] = q[op] * np.where(k[op] == CALL, c, p)
    return out[0] if single else out


def account_sum(pf: Portfolio, values: np.ndarray) -> np.ndarray:
    """Sum position values (P,) or (S, P) into accounts: (N,) or (S, N)."""
    n, p = pf.n_accounts, pf.n_positions
    agg = sparse.csr_matrix((np.ones(p), (np.arange(p), pf.account)), shape=(p, n))
    v = np.asarray(values, dtype=np.float64)
    return np.asarray((agg.T @ np.atleast_2d(v).T).T).reshape(v.shape[:-1] + (n,))


def mark_to_market(pf: Portfolio, mkt: MarketState) -> np.ndarray:
    """(N,) USD account equity: full MtM of all positions plus cash and unsettled funding."""
    return account_sum(pf, position_values(pf, mkt) + pf.funding) + pf.cash


def revalue_pnl(pf: Portfolio, mkt: MarketState, log_returns: np.ndarray, dt_s: float = 0.0) -> np.ndarray:
    """(S, N) USD PnL of every account under scenario log returns (S, U) of the underlyings, full revaluation."""
    now = position_values(pf, mkt)
    shocked = position_values(pf, mkt, np.exp(np.asarray(log_returns, dtype=np.float64)), dt_s)
    return account_sum(pf, shocked - now[None, :])


def position_greeks(pf: Portfolio, mkt: MarketState) -> dict[str, np.ndarray]:
    """Per position (P,): dollar delta dV/dS*S, dollar gamma d2V/dS2*S^2 (USD), vega dV/dsigma (USD per 1.00
    vol), implied vol and days to expiry. Black-76 greeks are in the forward: dV/dS*S = dV/dF*F."""
    unds = pf.underlyings
    s0, perp0 = mkt.spot_array(unds), mkt.perp_array(unds)
    u, k, q = pf.und, pf.kind, pf.qty
    t_y = pf.expiry_s / SECONDS_PER_YEAR
    pts = mkt.curve_points(unds, u, pf.expiry_s)
    f, rate = pts.forward, pts.rate
    delta = np.where(
        k == SPOT, q * s0[u] / mkt.stable_price, np.where(k == PERP, q * perp0[u], np.where(k == FUTURE, q * f, 0.0))
    )
    gamma, vega, sig = np.zeros(q.shape), np.zeros(q.shape), np.zeros(q.shape)
    op = is_option(k)
    if op.any():
        sig[op] = mkt.vols(unds, u[op], pf.strike[op], pf.expiry_s[op], f[op])
        g = greeks(f[op], pf.strike[op], t_y[op], sig[op], k[op] == CALL, np.exp(-rate[op] * t_y[op]))
        delta[op] = q[op] * g.delta * f[op]
        gamma[op] = q[op] * g.gamma * f[op] ** 2
        vega[op] = q[op] * g.vega
    return {
        "delta_usd": delta,
        "gamma_usd": gamma,
        "vega_usd": vega,
        "sigma": sig,
        "dte_days": pf.expiry_s / SECONDS_PER_DAY,
    }


def per_account_underlying(pf: Portfolio, values: np.ndarray) -> np.ndarray:
    """(N, U) sums of a per-position quantity by account and underlying."""
    n_u = len(pf.underlyings)
    flat = np.bincount(pf.account * n_u + pf.und, weights=values, minlength=pf.n_accounts * n_u)
    return flat.reshape(pf.n_accounts, n_u)


# ---------------------------------------------------------------------------------------------- risk measures
def z_alpha(confidence: float) -> float:
    """Standard normal quantile z_alpha (section 8: 2.326348 at 0.99)."""
    _check_confidence(confidence)
    from scipy.stats import norm  # imported on use: scipy.stats costs ~0.9 s to import

    return float(norm.ppf(confidence))


def es_over_sigma(confidence: float) -> float:
    """Normal ES per unit sigma: phi(z_alpha)/(1 - alpha) (section 8: 2.665214 at 0.99)."""
    from scipy.stats import norm

    return float(norm.pdf(z_alpha(confidence)) / (1.0 - confidence))


def normal_var_es(sigma: npt.ArrayLike, confidence: float, horizon: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Parametric normal VaR = z sigma sqrt(h), ES = sigma phi(z)/(1-alpha) sqrt(h) (zero mean)."""
    s = np.asarray(sigma, dtype=np.float64) * np.sqrt(horizon)
    return z_alpha(confidence) * s, es_over_sigma(confidence) * s


def var_es_from_pnl(pnl: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Empirical VaR (the alpha-quantile of loss = -PnL, linear interpolation) and ES (mean loss at or beyond
    VaR) along axis 0 of a (S,) or (S, N) scenario PnL array."""
    _check_confidence(confidence)
    loss = -np.asarray(pnl, dtype=np.float64)
    var = np.quantile(loss, confidence, axis=0)
    tail = loss >= var - 1e-12 * np.maximum(1.0, np.abs(var))
    es = np.where(tail, loss, 0.0).sum(axis=0) / np.maximum(tail.sum(axis=0), 1)
    return var, es


def ewma_vol(returns: np.ndarray, lam: float = RISKMETRICS_LAMBDA, init_var: float | None = None) -> np.ndarray:
    """RiskMetrics EWMA vol forecasts: sigma2[t] = lam sigma2[t-1] + (1-lam) r[t-1]^2; returns T+1 values,
    sigma[t] being the forecast for r[t] made before it (sigma[T] is for the next step). Seeded with the
    sample variance of the series unless `init_var` is given."""
    if not 0.0 < lam < 1.0:
        raise ValueError(f"lam={lam}: allowed 0 < lam < 1")
    r = np.asarray(returns, dtype=np.float64)
    var = np.empty(r.shape[0] + 1)
    var[0] = float(np.mean(r * r)) if init_var is None else float(init_var)
    for t in range(r.shape[0]):
        var[t + 1] = lam * var[t] + (1.0 - lam) * r[t] * r[t]
    return np.sqrt(var)


def filtered_returns(returns: np.ndarray, lam: float = RISKMETRICS_LAMBDA) -> np.ndarray:
    """Filtered HS (Hull-White 1998): r_t * sigma_now / sigma_t per column of a (T, U) return matrix."""
    r = np.atleast_2d(np.asarray(returns, dtype=np.float64).T).T
    out = np.empty_like(r)
    for j in range(r.shape[1]):
        sig = ewma_vol(r[:, j], lam)
        safe = np.where(sig[:-1] > 0, sig[:-1], 1.0)
        out[:, j] = np.where(sig[:-1] > 0, r[:, j] * sig[-1] / safe, 0.0)
    return out


def cholesky_scenarios(vols: np.ndarray, corr: np.ndarray, n_sims: int, rng: np.random.Generator) -> np.ndarray:
    """(n_sims, U) zero-mean normal log returns with stdevs `vols` and correlation `corr` (Cholesky)."""
    vols = np.asarray(vols, dtype=np.float64)
    corr = np.asarray(corr, dtype=np.float64)
    if corr.shape != (vols.size, vols.size):
        raise ValueError(f"corr.shape={corr.shape}: allowed ({vols.size}, {vols.size})")
    try:
        chol = np.linalg.cholesky(corr)
    except np.linalg.LinAlgError as e:
        raise ValueError("corr: allowed a symmetric positive-definite correlation matrix") from e
    z = rng.standard_normal((n_sims, vols.size))
    return np.asarray((z @ chol.T) * vols[None, :], dtype=np.float64)


def delta_normal(delta_usd: np.ndarray, cov: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Delta-normal VaR/ES per account: sigma_p = sqrt(d' Cov d) on (N, U) dollar deltas, Cov of the horizon."""
    sig = np.sqrt(np.maximum(np.einsum("nu,uv,nv->n", delta_usd, cov, delta_usd), 0.0))
    return normal_var_es(sig, confidence)


def delta_gamma_cornish_fisher(
    delta_usd: np.ndarray, gamma_usd: np.ndarray, cov: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """Delta-gamma VaR/ES per account with the Cornish-Fisher expansion of PnL = d'r + r'Gr/2, r ~ N(0, Cov).

    Cumulants of the quadratic form (Mina-Ulmer 1999): k1 = tr(A)/2, k2 = d'Cd + tr(A^2)/2,
    k3 = 3 d'CGCd + tr(A^3), k4 = 12 d'C(GC)^2 d + 3 tr(A^4), A = G C (G diagonal: no cross-gammas).
    ES integrates the Cornish-Fisher quantile over the tail in closed form (truncated normal moments).
    """
    _check_confidence(confidence)
    a = gamma_usd[:, :, None] * cov[None, :, :]  # (N, U, U) = G C
    a2, cd = a @ a, delta_usd @ cov  # cd: (N, U) = C d

    def tr(m: np.ndarray) -> np.ndarray:
        return np.asarray(np.trace(m, axis1=1, axis2=2))

    k1 = 0.5 * tr(a)
    k2 = np.einsum("nu,nu->n", delta_usd, cd) + 0.5 * tr(a2)
    gcd = gamma_usd * cd  # G C d
    k3 = 3.0 * np.einsum("nu,nu->n", cd, gcd) + tr(a2 @ a)
    k4 = 12.0 * np.einsum("nu,nu->n", gcd, gcd @ cov) + 3.0 * tr(a2 @ a2)
    sd = np.sqrt(np.maximum(k2, 0.0))
    safe = np.where(sd > 0, sd, 1.0)
    skew, kurt = np.where(sd > 0, k3 / safe**3, 0.0), np.where(sd > 0, k4 / safe**4, 0.0)

    # Cornish-Fisher PnL quantile mu + sd * w(z), w a cubic in z: w = a0 + a1 z + a2 z^2 + a3 z^3
    a0, a1 = -skew / 6, 1 - kurt / 8 + 5 * skew**2 / 36
    a2, a3 = skew / 6, kurt / 24 - skew**2 / 18
    from scipy.stats import norm

    c = norm.ppf(1.0 - confidence)
    var = -(k1 + sd * (a0 + a1 * c + a2 * c**2 + a3 * c**3))
    # ES = -E[PnL; z <= c]/(1-alpha) with the truncated normal moments int_{-inf}^c z^k phi(z) dz, k = 0..3
    pdf, cdf = norm.pdf(c), norm.cdf(c)
    m0, m1, m2, m3 = cdf, -pdf, cdf - c * pdf, -(c**2 + 2) * pdf
    es = -(k1 * m0 + sd * (a0 * m0 + a1 * m1 + a2 * m2 + a3 * m3)) / (1.0 - confidence)
    return var, es


def correlation_matrix(underlyings: Sequence[str], pairs: Mapping[str, float] | None, default: float) -> np.ndarray:
    """(U, U) correlation from pairwise entries keyed "ETH/BTC" (either order), `default` elsewhere."""
    n = len(underlyings)
    c = np.full((n, n), float(default))
    np.fill_diagonal(c, 1.0)
    idx = {u: i for i, u in enumerate(underlyings)}
    for key, rho in (pairs or {}).items():
        parts = key.split("/")
        if len(parts) != 2 or not -1.0 <= float(rho) <= 1.0:
            raise ValueError(f"correlation[{key!r}]={rho}: allowed keys 'A/B' and values in [-1, 1]")
        a, b = parts
        if a in idx and b in idx:
            c[idx[a], idx[b]] = c[idx[b], idx[a]] = float(rho)
    return c


@dataclass(frozen=True)
class VaRResult:
    """Per-account VaR and ES (USD, positive = loss) at `confidence` over `horizon_days`."""

    var: np.ndarray
    es: np.ndarray
    confidence: float
    horizon_days: float
    method: str


# ---------------------------------------------------------------------------------------------- margin model
VAR_METHODS: tuple[str, ...] = ("hs", "fhs", "normal", "cornish-fisher", "mc")


@dataclass(frozen=True)
class VaRParams:
    """Settings of a VaR/ES margin model: MM = VaR, IM = ES (>= VaR) at `confidence` over `horizon_days`."""

    method: str = "hs"
    confidence: float = 0.99  # EMIR RTS 153/2013 art. 24: 99% for instruments other than OTC derivatives
    horizon_days: float = 2.0  # EMIR RTS 153/2013 art. 26: MPOR >= 2 days; OCC STANS two-day horizon
    returns: Mapping[str, Sequence[float]] | None = None  # log returns per step and underlying (HS/FHS need them)
    step_days: float = 1.0  # length of one return step, days (1/24 for hourly data)
    lam: float = RISKMETRICS_LAMBDA
    correlation: Mapping[str, float] | None = None  # {"ETH/BTC": rho} when vols come from the market
    default_correlation: float = 0.0  # design choice (no source): pairs not listed are uncorrelated
    n_sims: int = 10_000
    seed: int = 0
    vol_tenor_days: float = 30.0  # ATM tenor read from a vol surface for MC/parametric vols (design choice)
    decay_options: bool = True  # revalue options at T - horizon (time decay inside the horizon)

    def __post_init__(self) -> None:
        if self.method not in VAR_METHODS:
            raise ValueError(f"method={self.method!r}: allowed {list(VAR_METHODS)}")
        _check_confidence(self.confidence)
        for name in ("horizon_days", "step_days", "vol_tenor_days"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)}: allowed > 0")
        if not 0.0 < self.lam < 1.0:
            raise ValueError(f"lam={self.lam}: allowed 0 < lam < 1")
        if not -1.0 <= self.default_correlation <= 1.0:
            raise ValueError(f"default_correlation={self.default_correlation}: allowed [-1, 1]")
        if self.n_sims < 100:
            raise ValueError(f"n_sims={self.n_sims}: allowed >= 100")


def returns_matrix(returns: Mapping[str, Sequence[float]], underlyings: Sequence[str]) -> np.ndarray:
    """(T, U) log returns aligned on the portfolio's underlyings; lengths must agree."""
    missing = [u for u in underlyings if u not in returns]
    if missing:
        raise ValueError(f"returns: missing underlyings {missing}; allowed keys {list(returns)}")
    cols = [np.asarray(returns[u], dtype=np.float64) for u in underlyings]
    lengths = {c.size for c in cols}
    if len(lengths) > 1:
        raise ValueError(f"returns: allowed equal lengths per underlying, got {sorted(lengths)}")
    if cols and (cols[0].size < 2 or not all(np.isfinite(c).all() for c in cols)):
        raise ValueError("returns: allowed >= 2 finite values per underlying")
    return np.column_stack(cols) if cols else np.zeros((0, 0))


def atm_vols(pf: Portfolio, mkt: MarketState, tenor_days: float) -> np.ndarray:
    """(U,) annualised ATM vols (strike = forward) at `tenor_days` from the market's surfaces."""
    n_u = len(pf.underlyings)
    s = mkt.spot_array(pf.underlyings)
    t = np.full(n_u, tenor_days * SECONDS_PER_DAY)
    return mkt.vols(pf.underlyings, np.arange(n_u), s, t, s)


class VaRMargin:
    """VaR/ES margin: MM = VaR, IM = max(ES, VaR) of the account's PnL (USD), equity = full MtM + cash."""

    def __init__(self, params: VaRParams = VaRParams(), name: str | None = None):
        self.params = params
        self.name = name or f"var-{params.method}"

    def _scale(self) -> float:
        return self.params.horizon_days / self.params.step_days

    def horizon_cov(self, pf: Portfolio, mkt: MarketState) -> np.ndarray:
        """(U, U) covariance of horizon log returns: from the return history, else market vols x correlation."""
        p = self.params
        if p.returns is not None:
            r = returns_matrix(p.returns, pf.underlyings)
            return np.atleast_2d(np.cov(r.T, ddof=1)) * self._scale()
        vol = atm_vols(pf, mkt, p.vol_tenor_days) * np.sqrt(p.horizon_days / DAYS_PER_YEAR)
        corr = correlation_matrix(pf.underlyings, p.correlation, p.default_correlation)
        return corr * np.outer(vol, vol)

    def risk(self, pf: Portfolio, mkt: MarketState) -> VaRResult:
        """Per-account VaR and ES by the configured method."""
        p = self.params
        dt = p.horizon_days * SECONDS_PER_DAY if p.decay_options else 0.0
        if pf.n_accounts == 0 or not pf.underlyings:
            z = np.zeros(pf.n_accounts)
            return VaRResult(z, z, p.confidence, p.horizon_days, p.method)
        if p.method in ("hs", "fhs"):
            if p.returns is None:
                raise ValueError(
                    f"returns: method {p.method!r} needs a return history (mapping underlying -> log returns)"
                )
            r = returns_matrix(p.returns, pf.underlyings)
            scen = (filtered_returns(r, p.lam) if p.method == "fhs" else r) * np.sqrt(self._scale())
            var, es = var_es_from_pnl(revalue_pnl(pf, mkt, scen, dt), p.confidence)
        elif p.method == "mc":
            cov = self.horizon_cov(pf, mkt)
            sd = np.sqrt(np.diag(cov))
            corr = cov / np.outer(np.where(sd > 0, sd, 1.0), np.where(sd > 0, sd, 1.0))
            np.fill_diagonal(corr, 1.0)
            scen = cholesky_scenarios(sd, corr, p.n_sims, np.random.default_rng(p.seed))
            var, es = var_es_from_pnl(revalue_pnl(pf, mkt, scen, dt), p.confidence)
        else:
            g = position_greeks(pf, mkt)
            d = per_account_underlying(pf, g["delta_usd"])
            cov = self.horizon_cov(pf, mkt)
            if p.method == "normal":
                var, es = delta_normal(d, cov, p.confidence)
            else:
                var, es = delta_gamma_cornish_fisher(d, per_account_underlying(pf, g["gamma_usd"]), cov, p.confidence)
        return VaRResult(
            np.asarray(var, dtype=np.float64), np.asarray(es, dtype=np.float64), p.confidence, p.horizon_days, p.method
        )

    def requirements(self, pf: Portfolio, mkt: MarketState) -> MarginResult:
        check_supported(pf, self.name)
        res = self.risk(pf, mkt)
        mm = np.maximum(res.var, 0.0)
        return MarginResult(
            im=np.maximum(res.es, mm),
            mm=mm,
            equity=mark_to_market(pf, mkt),
            drivers={"var_usd": res.var, "es_usd": res.es},
            model=self.name,
        )


def _register() -> None:
    from defistress.protocols.margin.registry import register

    for preset, method in (
        ("var-hs", "hs"),
        ("var-fhs", "fhs"),
        ("var-normal", "normal"),
        ("var-cf", "cornish-fisher"),
        ("var-mc", "mc"),
    ):
        register(preset, lambda _m=method, _n=preset, **kw: VaRMargin(VaRParams(**{"method": _m, **kw}), _n))


_register()
