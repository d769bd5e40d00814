"""Implied-vol surfaces: flat, SVI raw per expiry (lyra-utils SVI.sol rules), sticky-strike grid, and a shift.

Every surface has `.vol(strike USD, expiry_s seconds, forward USD) -> ndarray` (annualised vol) and
`.shifted(level_mult, skew_steepen)`, which an options venue uses to lift and steepen its surface in a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from defistress.protocols.margin.black76 import SECONDS_PER_YEAR
from defistress.protocols.margin.market import VolSurfaceLike

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _f64(x: npt.ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


class _Shiftable:
    def vol(self, strike: npt.ArrayLike, expiry_s: npt.ArrayLike, forward: npt.ArrayLike) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - every surface defines it

    def shifted(self, level_mult: float = 1.0, skew_steepen: float = 0.0) -> ShiftedSurface:
        """A new surface: vol' = level_mult * vol * max(0, 1 - skew_steepen * ln(K/F))."""
        return ShiftedSurface(base=self, level_mult=level_mult, skew_steepen=skew_steepen)


@dataclass(frozen=True)
class FlatVol(_Shiftable):
    """One annualised vol for every strike and expiry."""

    sigma: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma={self.sigma}: allowed finite >= 0 (annualised vol)")

    def vol(self, strike: npt.ArrayLike, expiry_s: npt.ArrayLike, forward: npt.ArrayLike) -> np.ndarray:
        shape = np.broadcast_shapes(np.shape(strike), np.shape(expiry_s), np.shape(forward))
        return np.full(shape, float(self.sigma))


@dataclass(frozen=True)
class ShiftedSurface(_Shiftable):
    """A base surface lifted by `level_mult` and steepened: downside strikes (K < F) rise more when
    skew_steepen > 0. Multiplier floored at 0 so vol never turns negative."""

    base: VolSurfaceLike
    level_mult: float = 1.0
    skew_steepen: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.level_mult) and self.level_mult >= 0):
            raise ValueError(f"level_mult={self.level_mult}: allowed finite >= 0")
        if not np.isfinite(self.skew_steepen):
            raise ValueError(f"skew_steepen={self.skew_steepen}: allowed a finite number")

    def vol(self, strike: npt.ArrayLike, expiry_s: npt.ArrayLike, forward: npt.ArrayLike) -> np.ndarray:
        k, f = np.broadcast_arrays(_f64(strike), _f64(forward))
        ok = (k > 0) & (f > 0)
        logm = np.where(ok, np.log(np.where(ok, k, 1.0) / np.where(ok, f, 1.0)), 0.0)
        mult = np.maximum(0.0, 1.0 - self.skew_steepen * logm)
        return np.asarray(self.level_mult * mult * self.base.vol(_f64(strike), _f64(expiry_s), _f64(forward)))


@dataclass(frozen=True)
class SVIRules:
    """Guards from lyra-utils SVI.sol / docs/margin-methods.md 7.2: k clamped to +-k_clamp_sd*sqrt(a + b*sigma),
    total variance w capped at w_cap, w < 0 rejected."""

    k_clamp_sd: float = 4.0  # docs/margin-methods.md 7.2: k = clamp(ln(K/F), +-4 sqrt(a + b sigma))
    w_cap: float = 144.0  # docs/margin-methods.md 7.2: w capped at 144 (older SVI.sol: MAX_TOTAL_VAR = 25)

    def __post_init__(self) -> None:
        if not self.k_clamp_sd > 0:
            raise ValueError(f"k_clamp_sd={self.k_clamp_sd}: allowed > 0")
        if not self.w_cap > 0:
            raise ValueError(f"w_cap={self.w_cap}: allowed > 0")


@dataclass(frozen=True)
class SVISlice:
    """Raw SVI parameters of one expiry: w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2)).

    A vol feed publishes its own `tau_years` (vol = sqrt(w / tau)) and `forward` (k = ln(K / forward)) with the
    parameters (lyra-utils SVI.sol getVol(strike, a, b, rho, m, sigma, forwardPrice, tau)); when given they
    replace expiry_s / 365 days and the pricing forward at this slice (derivexyz/v2-core MockFeeds/LyraVolFeed).
    """

    expiry_s: float
    a: float
    b: float
    rho: float
    m: float
    sigma: float
    tau_years: float | None = None
    forward: float | None = None

    def __post_init__(self) -> None:
        if self.tau_years is not None and not (np.isfinite(self.tau_years) and self.tau_years > 0):
            raise ValueError(f"tau_years={self.tau_years}: allowed None or > 0 years")
        if self.forward is not None and not (np.isfinite(self.forward) and self.forward > 0):
            raise ValueError(f"forward={self.forward}: allowed None or > 0 USD")
        if not (self.expiry_s > 0 or (self.expiry_s == 0 and self.tau_years is not None)):
            raise ValueError(f"expiry_s={self.expiry_s}: allowed > 0 seconds (0 only with tau_years)")
        if self.b < 0:
            raise ValueError(f"b={self.b}: allowed >= 0")
        if not -1.0 < self.rho < 1.0:
            raise ValueError(f"rho={self.rho}: allowed (-1, 1)")
        if not self.sigma > 0:
            raise ValueError(f"sigma={self.sigma}: allowed > 0")


@dataclass(frozen=True)
class SVISurface(_Shiftable):
    """SVI raw slices; between expiries total variance is linear in time at fixed k, outside them the
    nearest slice's vol is held flat."""

    slices: tuple[SVISlice, ...]
    rules: SVIRules = field(default_factory=SVIRules)

    def __post_init__(self) -> None:
        if not self.slices:
            raise ValueError("slices: allowed a non-empty tuple of SVISlice")
        exps = [s.expiry_s for s in self.slices]
        if any(b <= a for a, b in zip(exps, exps[1:])):
            raise ValueError(f"slices expiry_s={exps}: allowed strictly increasing")
        object.__setattr__(self, "slices", tuple(self.slices))

    def _params(self) -> dict[str, FloatArray]:
        out = {n: np.array([getattr(s, n) for s in self.slices]) for n in ("expiry_s", "a", "b", "rho", "m", "sigma")}
        out["tau"] = np.array(
            [s.expiry_s / SECONDS_PER_YEAR if s.tau_years is None else s.tau_years for s in self.slices]
        )
        out["forward"] = np.array([np.nan if s.forward is None else s.forward for s in self.slices])
        return out

    def _total_var(self, i: IntArray, strike: FloatArray, fwd: FloatArray, p: dict[str, FloatArray]) -> FloatArray:
        """Total variance of slice i at each strike, k = ln(K / F) with the slice's own forward if it has one."""
        f_i = np.where(np.isnan(p["forward"][i]), fwd, p["forward"][i])
        ok = strike > 0
        k = np.log(np.where(ok, strike, 1.0) / f_i)
        a, b, rho, m, sig = p["a"][i], p["b"][i], p["rho"][i], p["m"][i], p["sigma"][i]
        lim = self.rules.k_clamp_sd * np.sqrt(np.maximum(a + b * sig, 0.0))  # SVI k clamp
        kc = np.clip(k, -lim, lim)
        w = a + b * (rho * (kc - m) + np.sqrt((kc - m) ** 2 + sig**2))
        if (w < 0).any():
            raise ValueError(
                "SVI total variance w < 0: parameters a, b, rho, m, sigma give negative variance "
                "(SVI.sol reverts SVI_InvalidParameters)"
            )
        return np.minimum(w, self.rules.w_cap)

    def vol(self, strike: npt.ArrayLike, expiry_s: npt.ArrayLike, forward: npt.ArrayLike) -> np.ndarray:
        k_, t_, f_ = np.broadcast_arrays(_f64(strike), _f64(expiry_s), _f64(forward))
        if (f_ <= 0).any():
            raise ValueError("forward: allowed > 0 USD (SVI.sol SVI_NoForwardPrice)")
        p = self._params()
        exps = p["expiry_s"]
        ok = k_ > 0
        hi = np.clip(np.searchsorted(exps, t_, side="left"), 0, exps.size - 1)
        lo = np.clip(hi - 1, 0, exps.size - 1)
        w_lo, w_hi = self._total_var(lo, k_, f_, p), self._total_var(hi, k_, f_, p)  # total variance (years)
        t_lo, t_hi = exps[lo], exps[hi]
        inside = (t_ > t_lo) & (t_ < t_hi)
        x = np.where(inside, (t_ - t_lo) / np.where(t_hi > t_lo, t_hi - t_lo, 1.0), 0.0)
        w_t = w_lo + x * (w_hi - w_lo)  # linear in time at fixed k
        var_inside = w_t / (np.where(inside, t_, 1.0) / SECONDS_PER_YEAR)
        var_lo, var_hi = w_lo / p["tau"][lo], w_hi / p["tau"][hi]  # SVI.sol: vol = sqrt(w / tau)
        var = np.where(inside, var_inside, np.where(t_ <= t_lo, var_lo, var_hi))
        out = np.sqrt(np.maximum(var, 0.0))
        return np.where(ok, out, 0.0)  # SVI.sol: strike 0 -> vol 0


@dataclass(frozen=True)
class GridSurface(_Shiftable):
    """Sticky-strike vol table: bilinear in (strike or log-moneyness, expiry), flat outside the nodes."""

    x_nodes: tuple[float, ...]  # strikes USD (axis="strike") or ln(K/F) (axis="log_moneyness")
    expiry_nodes_s: tuple[float, ...]  # seconds
    vols: tuple[tuple[float, ...], ...]  # [expiry][x] annualised vols
    axis: str = "strike"

    def __post_init__(self) -> None:
        x, t, v = _f64(self.x_nodes), _f64(self.expiry_nodes_s), _f64(self.vols)
        if self.axis not in ("strike", "log_moneyness"):
            raise ValueError(f"axis={self.axis!r}: allowed 'strike' or 'log_moneyness'")
        if x.ndim != 1 or x.size < 1 or (np.diff(x) <= 0).any():
            raise ValueError("x_nodes: allowed a strictly increasing non-empty sequence")
        if t.ndim != 1 or t.size < 1 or (np.diff(t) <= 0).any():
            raise ValueError("expiry_nodes_s: allowed a strictly increasing non-empty sequence")
        if v.shape != (t.size, x.size):
            raise ValueError(f"vols.shape={v.shape}: allowed ({t.size}, {x.size}) = (expiries, x_nodes)")
        if not (np.isfinite(v).all() and (v >= 0).all()):
            raise ValueError("vols: allowed finite >= 0")

    @staticmethod
    def _locate(nodes: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hi = np.clip(np.searchsorted(nodes, q, side="right"), 1, max(nodes.size - 1, 1))
        lo = hi - 1
        if nodes.size == 1:
            z = np.zeros(q.shape, dtype=np.int64)
            return z, z, np.zeros(q.shape)
        w = np.clip((q - nodes[lo]) / (nodes[hi] - nodes[lo]), 0.0, 1.0)
        return lo, hi, w

    def vol(self, strike: npt.ArrayLike, expiry_s: npt.ArrayLike, forward: npt.ArrayLike) -> np.ndarray:
        k_, t_, f_ = np.broadcast_arrays(_f64(strike), _f64(expiry_s), _f64(forward))
        if self.axis == "strike":
            q = k_
        else:
            ok = (k_ > 0) & (f_ > 0)
            q = np.where(ok, np.log(np.where(ok, k_, 1.0) / np.where(ok, f_, 1.0)), 0.0)
        x, t, v = _f64(self.x_nodes), _f64(self.expiry_nodes_s), _f64(self.vols)
        xl, xh, wx = self._locate(x, q)
        tl, th, wt = self._locate(t, t_)
        top = v[tl, xl] * (1 - wx) + v[tl, xh] * wx
        bot = v[th, xl] * (1 - wx) + v[th, xh] * wx
        return np.asarray(top * (1 - wt) + bot * wt, dtype=np.float64)


@dataclass(frozen=True)
class QuotedVols(_Shiftable):
    """Vols quoted per option (an oracle's per-strike feed, Lyra/Derive IVolFeed.getVol(strike, expiry)), each
    with its feed confidence: quotes = ((expiry_s, strike USD, vol, confidence), ...). Unquoted options take
    `default_vol` (with confidence `default_confidence`), or raise when it is None."""

    quotes: tuple[tuple[float, float, float, float], ...]
    default_vol: float | None = None
    default_confidence: float = 1.0

    def __post_init__(self) -> None:
        q = tuple(tuple(float(x) for x in row) for row in self.quotes)
        for i, row in enumerate(q):
            if len(row) != 4:
                raise ValueError(f"quotes[{i}]: allowed (expiry_s, strike, vol, confidence), got {len(row)} values")
            t, k, v, c = row
            if not (t >= 0 and k > 0 and np.isfinite(v) and v >= 0 and 0.0 <= c <= 1.0):
                raise ValueError(f"quotes[{i}]={row}: allowed expiry_s >= 0, strike > 0, vol >= 0, confidence 0..1")
        object.__setattr__(self, "quotes", q)
        if self.default_vol is not None and not (np.isfinite(self.default_vol) and self.default_vol >= 0):
            raise ValueError(f"default_vol={self.default_vol}: allowed None or finite >= 0")
        if not 0.0 <= self.default_confidence <= 1.0:
            raise ValueError(f"default_confidence={self.default_confidence}: allowed 0..1")

    def _lookup(self, strike: npt.ArrayLike, expiry_s: npt.ArrayLike, col: int, default: float | None) -> FloatArray:
        k_, t_ = np.broadcast_arrays(_f64(strike), _f64(expiry_s))
        out = np.full(k_.shape, np.nan if default is None else float(default))
        if self.quotes:
            q = np.array(self.quotes)
            hit = (np.abs(q[None, :, 0] - t_.reshape(-1, 1)) <= 1e-6) & (
                np.abs(q[None, :, 1] - k_.reshape(-1, 1)) <= 1e-9 * q[None, :, 1]
            )
            found = hit.any(axis=1)
            flat = out.reshape(-1)
            flat[found] = q[hit.argmax(axis=1)[found], col]
        if np.isnan(out).any():
            j = int(np.flatnonzero(np.isnan(out.reshape(-1)))[0])
            raise ValueError(
                f"QuotedVols: no quote for strike={k_.reshape(-1)[j]:g}, expiry_s={t_.reshape(-1)[j]:g} and no "
                "default_vol; allowed the quoted (expiry_s, strike) pairs"
            )
        return out

    def vol(self, strike: npt.ArrayLike, expiry_s: npt.ArrayLike, forward: npt.ArrayLike) -> FloatArray:
        return self._lookup(strike, expiry_s, 2, self.default_vol)

    def confidence(self, strike: npt.ArrayLike, expiry_s: npt.ArrayLike) -> FloatArray:
        """Per-option vol-feed confidence 0..1."""
        return self._lookup(strike, expiry_s, 3, self.default_confidence if self.default_vol is not None else None)
