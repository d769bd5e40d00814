"""Black-76 option prices, greeks and implied vol, vectorised over numpy arrays (year = 365 days).

Follows lyra-utils src/math/Black76.sol: discounted prices C = D(F N(d1) - K N(d2)), put from call by parity
floored at 0, caps sigma*sqrt(T) >= 24 => C = F D, P = K D; K = 0 => C = F D; F = 0 => P = K D; T -> 0 or
sigma -> 0 gives the discounted intrinsic value. All inputs broadcast together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

AL = npt.ArrayLike
SECONDS_PER_YEAR = 365.0 * 86_400.0  # lyra-utils Black76.sol SECONDS_PER_YEAR = 365 days
MAX_TOTAL_VOL = 24.0  # lyra-utils Black76.sol MAX_TOTAL_VOL: above it N(d1) -> 1, N(d2) -> 0
_SQRT_2PI = np.sqrt(2.0 * np.pi)


def annualise(seconds: np.ndarray | float) -> np.ndarray:
    """Seconds to a year fraction, 365-day year (lyra-utils Black76.sol annualise)."""
    return np.asarray(seconds, dtype=np.float64) / SECONDS_PER_YEAR


def _arr(x: npt.ArrayLike) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _same_shape(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """np.broadcast_arrays(*arrays), skipped when every array already has the same shape (a margin model's
    per-position columns): the same values either way, without broadcast_arrays' per-call overhead."""
    shape = arrays[0].shape
    if all(a.shape == shape for a in arrays):
        return arrays
    return tuple(np.broadcast_arrays(*arrays))


def _standard_call(log_m: np.ndarray, total_vol: np.ndarray) -> np.ndarray:
    """Call price per unit forward, undiscounted: N(d1) - m N(d2), m = K/F, given ln(m) and sigma*sqrt(T)."""
    safe_tv = np.where(total_vol > 0.0, total_vol, 1.0)
    d1 = (0.5 * safe_tv * safe_tv - log_m) / safe_tv  # Black76.sol _standardCall: d1 = (v^2/2 - ln m)/v
    d2 = d1 - safe_tv
    m = np.exp(log_m)
    c = ndtr(d1) - m * ndtr(d2)
    intrinsic = np.maximum(1.0 - m, 0.0)
    c = np.where(total_vol > 0.0, np.maximum(c, 0.0), intrinsic)
    return np.where(total_vol >= MAX_TOTAL_VOL, 1.0, c)


def call_put(forward: AL, strike: AL, t_years: AL, sigma: AL, discount: AL = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Discounted Black-76 (call, put) prices in the forward's units (USD)."""
    f, k, t, s, d = np.broadcast_arrays(_arr(forward), _arr(strike), _arr(t_years), _arr(sigma), _arr(discount))
    total_vol = s * np.sqrt(np.maximum(t, 0.0))
    pos = (f > 0.0) & (k > 0.0)
    safe_f = np.where(pos, f, 1.0)
    safe_k = np.where(pos, k, 1.0)
    log_m = np.log(safe_k / safe_f)
    std_call = _standard_call(log_m, total_vol)
    m = safe_k / safe_f
    std_put = np.maximum(std_call + m - 1.0, 0.0)  # Black76.sol _standardPutFromCall
    fd, kd = f * d, k * d
    call = np.minimum(std_call * fd, fd)  # cap at F D as in Black76.sol prices()
    put = np.minimum(std_put * fd, kd)  # cap at K D
    call = np.where(k <= 0.0, fd, np.where(f <= 0.0, 0.0, call))
    put = np.where(k <= 0.0, 0.0, np.where(f <= 0.0, kd, put))
    return call, put


def price(forward: AL, strike: AL, t_years: AL, sigma: AL, is_call: AL, discount: AL = 1.0) -> np.ndarray:
    """Discounted Black-76 price; `is_call` is a boolean array (True call, False put)."""
    c, p = call_put(forward, strike, t_years, sigma, discount)
    return np.where(np.asarray(is_call, dtype=bool), c, p)


@dataclass(frozen=True)
class Greeks:
    """Black-76 sensitivities per option: delta and gamma w.r.t. the forward, vega per 1.00 of vol,
    theta per year of calendar time (value change as time passes, usually negative)."""

    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray


def _d1_parts(forward: AL, strike: AL, t_years: AL, sigma: AL) -> tuple[np.ndarray, ...]:
    f, k, t, s = np.broadcast_arrays(_arr(forward), _arr(strike), _arr(t_years), _arr(sigma))
    sqrt_t = np.sqrt(np.maximum(t, 0.0))
    tv = s * sqrt_t
    live = (tv > 0.0) & (tv < MAX_TOTAL_VOL) & (f > 0.0) & (k > 0.0)
    safe_tv = np.where(live, tv, 1.0)
    d1 = np.where(live, (np.log(np.where(live, f / np.where(k > 0, k, 1.0), 1.0)) + 0.5 * safe_tv**2) / safe_tv, 0.0)
    return f, k, t, s, sqrt_t, tv, live, safe_tv, d1


def greeks(forward: AL, strike: AL, t_years: AL, sigma: AL, is_call: AL, discount: AL = 1.0, rate: AL = 0.0) -> Greeks:
    """Black-76 greeks; `rate` (annual, continuous) enters theta through the discount factor D = exp(-rT)."""
    f, k, t, s, sqrt_t, tv, live, safe_tv, d1 = _d1_parts(forward, strike, t_years, sigma)
    call = np.broadcast_to(np.asarray(is_call, dtype=bool), f.shape)
    d = np.broadcast_to(_arr(discount), f.shape)
    pdf = np.exp(-0.5 * d1 * d1) / _SQRT_2PI
    n1 = ndtr(d1)
    # outside the live region the option is at intrinsic (or capped): delta is the intrinsic step
    itm_call = (f > k).astype(np.float64)
    cap = tv >= MAX_TOTAL_VOL
    n1_eff = np.where(live, n1, np.where(cap | (k <= 0.0), 1.0, np.where(f <= 0.0, 0.0, itm_call)))
    delta = d * np.where(call, n1_eff, n1_eff - 1.0)  # dV/dF, Black-76
    gamma = np.where(live, d * pdf / (np.where(f > 0, f, 1.0) * safe_tv), 0.0)
    vega = np.where(live, d * f * pdf * sqrt_t, 0.0)  # dV/dsigma
    value = price(f, k, t, s, call, d)
    decay = np.where(live, -d * f * pdf * s / (2.0 * np.where(sqrt_t > 0, sqrt_t, 1.0)), 0.0)
    theta = decay + _arr(rate) * value  # dV/dt = -dV/dT, D = exp(-rT)
    return Greeks(delta=delta, gamma=gamma, vega=vega, theta=theta)


def delta(forward: AL, strike: AL, t_years: AL, sigma: AL, is_call: AL, discount: AL = 1.0) -> np.ndarray:
    """dV/dF, Black-76: `greeks(...).delta` by the same operations, without the other greeks and the price (a
    coordinator asks for the deltas of a whole options book every valuation)."""
    f, k, t, s, sqrt_t, tv, live, safe_tv, d1 = _d1_parts(forward, strike, t_years, sigma)
    call = np.broadcast_to(np.asarray(is_call, dtype=bool), f.shape)
    d = np.broadcast_to(_arr(discount), f.shape)
    n1 = ndtr(d1)
    itm_call = (f > k).astype(np.float64)
    cap = tv >= MAX_TOTAL_VOL
    n1_eff = np.where(live, n1, np.where(cap | (k <= 0.0), 1.0, np.where(f <= 0.0, 0.0, itm_call)))
    out: np.ndarray = d * np.where(call, n1_eff, n1_eff - 1.0)
    return out


def gamma(forward: AL, strike: AL, t_years: AL, sigma: AL, discount: AL = 1.0) -> np.ndarray:
    return greeks(forward, strike, t_years, sigma, True, discount).gamma


def vega(forward: AL, strike: AL, t_years: AL, sigma: AL, discount: AL = 1.0) -> np.ndarray:
    return greeks(forward, strike, t_years, sigma, True, discount).vega


def theta(
    forward: AL, strike: AL, t_years: AL, sigma: AL, is_call: AL, discount: AL = 1.0, rate: AL = 0.0
) -> np.ndarray:
    return greeks(forward, strike, t_years, sigma, is_call, discount, rate).theta


@dataclass(frozen=True)
class IVSolverParams:
    """Implied-vol search settings: bracket [vol_min, vol_max] (annualised) and tolerances."""

    vol_min: float = 1e-6
    vol_max: float = 10.0
    newton_steps: int = 8
    tol: float = 1e-10

    def __post_init__(self) -> None:
        if not 0.0 < self.vol_min < self.vol_max:
            raise ValueError(f"vol_min={self.vol_min}, vol_max={self.vol_max}: allowed 0 < vol_min < vol_max")
        if self.newton_steps < 0:
            raise ValueError(f"newton_steps={self.newton_steps}: allowed >= 0")
        if self.tol <= 0:
            raise ValueError(f"tol={self.tol}: allowed > 0")


def implied_vol(
    option_price: AL,
    forward: AL,
    strike: AL,
    t_years: AL,
    is_call: AL,
    discount: AL = 1.0,
    params: IVSolverParams = IVSolverParams(),
) -> np.ndarray:
    """Annualised implied vol per option: vectorised Newton steps, then scipy brentq where Newton failed.

    Prices outside the no-arbitrage band (below intrinsic or above the cap) give NaN.
    """
    v, f, k, t, call, d = np.broadcast_arrays(
        _arr(option_price), _arr(forward), _arr(strike), _arr(t_years), np.asarray(is_call, dtype=bool), _arr(discount)
    )
    lo_p = price(f, k, t, params.vol_min, call, d)
    hi_p = price(f, k, t, params.vol_max, call, d)
    ok = (v >= lo_p - params.tol) & (v <= hi_p + params.tol) & (t > 0) & (f > 0) & (k > 0)
    out = np.full(v.shape, np.nan)
    # Brenner-Subrahmanyam start: sigma ~ sqrt(2 pi / T) * V / (D F), clipped to the bracket
    sig = np.clip(np.sqrt(2.0 * np.pi / np.where(t > 0, t, 1.0)) * v / np.where(f * d > 0, f * d, 1.0), 0.05, 3.0)
    for _ in range(params.newton_steps):
        g = greeks(f, k, t, sig, call, d)
        err = price(f, k, t, sig, call, d) - v
        step = np.where(g.vega > 1e-12, err / np.where(g.vega > 1e-12, g.vega, 1.0), 0.0)
        sig = np.clip(sig - step, params.vol_min, params.vol_max)
    good = ok & (np.abs(price(f, k, t, sig, call, d) - v) <= params.tol * np.maximum(1.0, np.abs(v)))
    out[good] = sig[good]
    from scipy.optimize import brentq  # imported here: scipy.optimize costs ~0.8 s, most runs never get here

    for i in np.flatnonzero(ok & ~good):
        fi, ki, ti, ci, di, vi = f.flat[i], k.flat[i], t.flat[i], call.flat[i], d.flat[i], v.flat[i]

        def err_fn(s: float) -> float:
            return float(price(fi, ki, ti, s, ci, di)) - float(vi)

        a, b = err_fn(params.vol_min), err_fn(params.vol_max)
        if a >= 0:
            out.flat[i] = params.vol_min
        elif b <= 0:
            out.flat[i] = params.vol_max
        else:
            out.flat[i] = brentq(err_fn, params.vol_min, params.vol_max, xtol=1e-14, rtol=1e-12, maxiter=200)
    return out


class ForwardShockPricer:
    """Signed values (qty * price) of a fixed option book repriced at forward F' = (F - fixed) * m + fixed.

    `fixed` is the part of each forward that does not move with the shock (Derive's settlement average inside
    the settlement window, PMRMLib_2 `_getExpiryShockedMTM`: forward = variable * spotShock + fixed); 0 gives
    F * m. Scenario engines call `values(m, sigma, key)` once per scenario: ln(F/K) and sqrt(T) are computed
    once, the per-vol terms once per `key` (one per vol-shock direction), so a scenario costs two ndtr calls.
    """

    def __init__(
        self,
        forward: npt.ArrayLike,
        strike: npt.ArrayLike,
        t_years: npt.ArrayLike,
        is_call: npt.ArrayLike,
        qty: npt.ArrayLike,
        discount: npt.ArrayLike = 1.0,
        fixed: npt.ArrayLike = 0.0,
        dedupe: bool = True,
    ) -> None:
        self.f, self.k, self.t, self.qty, self.d, fixed_b = _same_shape(
            _arr(forward), _arr(strike), _arr(t_years), _arr(qty), _arr(discount), _arr(fixed)
        )
        self.fixed_idx = np.flatnonzero(fixed_b != 0.0)  # repriced at (F - fixed) m + fixed by the general path
        self.fixed = fixed_b[self.fixed_idx]
        call_b = np.asarray(is_call, dtype=bool)
        self.is_call = call_b if call_b.shape == self.f.shape else np.broadcast_to(call_b, self.f.shape)
        self._cache: dict[Any, tuple[np.ndarray, ...]] = {}
        self._unit: ForwardShockPricer | None = None  # one unit of each distinct option, when the book repeats them
        self._prepared = False
        if dedupe and self.f.size >= _DEDUPE_MIN:
            self._dedupe(fixed_b)
        if self._unit is None:
            self._prepare()

    def _prepare(self) -> None:
        """Per-position terms of the general path (ln(F/K), sqrt(T), F*D, K*D): computed once, and only when it runs
        (a deduplicated book prices its series through `_unit` and needs them only if a vol differs within a
        series)."""
        if self._prepared:
            return
        ok = (self.f > 0.0) & (self.k > 0.0)
        self._ok = ok
        self.lnfk = np.where(ok, np.log(np.where(ok, self.f, 1.0) / np.where(ok, self.k, 1.0)), 0.0)
        self.sqrt_t = np.sqrt(np.maximum(self.t, 0.0))
        self.fd, self.kd = self.f * self.d, self.k * self.d
        self._prepared = True

    def _dedupe(self, fixed_b: np.ndarray) -> None:
        """Price each distinct option (same forward, strike, expiry, discount, fixed part, call/put: bit for bit)
        once per scenario and scale by each position's qty: positions of one series in many accounts cost one
        Black-76 evaluation. Every price is elementwise, so the values are bit-identical to pricing every position
        (qty x price, the same product in the same order)."""
        cols = np.ascontiguousarray(
            np.stack([self.f, self.k, self.t, self.d, fixed_b, self.is_call.astype(np.float64)], axis=1)
        )
        first, inv = series_map(cols)
        if first.size > self.f.size // 2:
            return
        self._first, self._inv = first, inv
        self._unit = ForwardShockPricer(
            self.f[first],
            self.k[first],
            self.t[first],
            self.is_call[first],
            np.ones(first.size),  # one unit of each series (as a column: no broadcast needed)
            self.d[first],
            fixed_b[first],
            dedupe=False,
        )

    def _vol_terms(self, sigma: AL, key: Any) -> tuple[np.ndarray, ...]:
        if key is not None and key in self._cache:
            return self._cache[key]
        tv = np.broadcast_to(_arr(sigma), self.f.shape) * self.sqrt_t
        regular = self._ok & (tv > 0.0) & (tv < MAX_TOTAL_VOL)
        inv = np.where(regular, 1.0 / np.where(regular, tv, 1.0), 0.0)
        odd = np.flatnonzero(~regular)
        out = (tv, inv, 0.5 * tv, odd, np.broadcast_to(_arr(sigma), self.f.shape)[odd])
        if key is not None:
            self._cache[key] = out
        return out

    def _all_vol_terms(self, vols: Mapping[Any, AL], uniq: list[Any]) -> list[tuple[np.ndarray, ...]]:
        """`_vol_terms` of every key in `uniq`: keys none of which is cached yet get their terms from one (K, P) pass
        (the same elementwise operations on each row, so the same bits as one key at a time), then cached."""
        if any(k is None or k in self._cache for k in uniq):
            return [self._vol_terms(vols[k], k) for k in uniq]
        sig = np.stack([np.broadcast_to(_arr(vols[k]), self.f.shape) for k in uniq])
        tv = sig * self.sqrt_t
        regular = self._ok & (tv > 0.0) & (tv < MAX_TOTAL_VOL)
        inv = np.where(regular, 1.0 / np.where(regular, tv, 1.0), 0.0)
        half = 0.5 * tv
        out = []
        for j, k in enumerate(uniq):
            odd = np.flatnonzero(~regular[j])
            self._cache[k] = (tv[j], inv[j], half[j], odd, sig[j][odd])
            out.append(self._cache[k])
        return out

    def values(self, fwd_mult: float, sigma: AL, key: Any = None) -> np.ndarray:
        """qty * discounted price at forward F * fwd_mult (scalar) and vol `sigma` (per option)."""
        row: np.ndarray = self.values_grid(np.array([fwd_mult], dtype=np.float64), {key: sigma}, (key,))[0]
        return row

    def values_grid(self, fwd_mult: npt.ArrayLike, vols: Mapping[Any, AL], keys: Sequence[Any]) -> np.ndarray:
        """(S, P) values of S scenarios at once: row s is qty * discounted price at forward F * fwd_mult[s] and vol
        vols[keys[s]] (per option; the vol terms cached per key). The arithmetic is elementwise and the same as one
        scenario at a time, so each row is bit-identical to pricing that scenario alone."""
        mult = np.asarray(fwd_mult, dtype=np.float64).reshape(-1)
        uniq = list(dict.fromkeys(keys))  # distinct vol keys, first-seen order
        row = np.array([uniq.index(k) for k in keys], dtype=np.int64)  # scenario -> its vol key
        if self._unit is not None:
            sig = [np.broadcast_to(_arr(vols[k]), self.f.shape) for k in uniq]
            sig_u = [v[self._first] for v in sig]
            if all(np.array_equal(u[self._inv], v) for u, v in zip(sig_u, sig)):  # one vol per distinct option
                unit = self._unit.values_grid(mult, dict(zip(uniq, sig_u)), keys)
                # (P, S) rows gathered from the (series, S) transpose, scaled by each position's qty (the same
                # products as gathering columns), returned as its (S, P) transpose: a group sum over positions
                # (GroupSums: a sparse product with the (P, S) operand) then reads it without a transposing copy
                priced: np.ndarray = np.ascontiguousarray(unit.T)[self._inv]
                priced *= self.qty[:, None]
                return priced.T
        self._prepare()
        terms = self._all_vol_terms(vols, uniq)
        tv, inv, half = (np.stack([t[j] for t in terms]) for j in range(3))  # (K, P) per vol key
        m = mult[:, None]
        n = self.f.size
        out = np.empty((mult.size, n))
        parallel = out.size >= _PARALLEL_MIN  # ndtr releases the GIL: two threads share the blocks (2-core target)
        width = max(1, min(_BLOCK // mult.size, -(-n // 2) if parallel else n))  # columns per block: bounded temps
        blocks = [slice(a, a + width) for a in range(0, n, width)]
        if parallel and len(blocks) > 1:
            list(_pool().map(lambda sl: self._chunk(m, tv, inv, half, row, out, sl), blocks))
        else:
            for sl in blocks:
                self._chunk(m, tv, inv, half, row, out, sl)
        for j, (*_, odd, sig_odd) in enumerate(terms):  # caps and limits (T=0, sigma=0, K=0, F=0, sigma*sqrt(T) >= 24)
            r = np.flatnonzero(row == j)
            if odd.size and r.size:
                c, p = call_put(self.f[odd] * m[r], self.k[odd], self.t[odd], sig_odd, self.d[odd])
                out[np.ix_(r, odd)] = self.qty[odd] * np.where(self.is_call[odd], c, p)
        if self.fixed_idx.size:  # forwards with a fixed part: F' = (F - fixed) m + fixed
            i = self.fixed_idx
            f_shocked = (self.f[i] - self.fixed) * m + self.fixed
            sig_i = np.stack([np.broadcast_to(_arr(vols[k]), self.f.shape)[i] for k in uniq])[row]
            c, p = call_put(f_shocked, self.k[i], self.t[i], sig_i, self.d[i])
            out[:, i] = self.qty[i] * np.where(self.is_call[i], c, p)
        return out

    def _chunk(
        self,
        m: np.ndarray,
        tv: np.ndarray,
        inv: np.ndarray,
        half: np.ndarray,
        row: np.ndarray,
        out: np.ndarray,
        sl: slice,
    ) -> None:
        """Columns `sl` of the (S, P) values: m (S, 1) multipliers, tv/inv/half (K, P) vol terms, row (S,) keys."""
        d1 = self.lnfk[sl] + np.log(m)
        d1 *= inv[row, sl]
        d1 += half[row, sl]
        d2 = d1 - tv[row, sl]
        n1 = ndtr(d1, out=d1)
        n2 = ndtr(d2, out=d2)
        fd, kd = self.fd[sl], self.kd[sl]
        n1 *= fd
        n1 *= m
        n2 *= kd
        n1 -= n2
        call = np.maximum(n1, 0.0, out=n1)  # D (F' N(d1) - K N(d2)), floored at 0
        put = np.multiply(fd, -m, out=n2)
        put += kd
        put += call
        np.maximum(put, 0.0, out=put)  # put by parity, floored at 0 (Black76.sol)
        np.copyto(put, call, where=self.is_call[sl])
        np.multiply(put, self.qty[sl], out=out[:, sl])


def series_map(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, inv) of the distinct rows of `cols` (P, 6) float64, bit for bit: row p equals row first[inv[p]].

    A margin model prices the same book every block with new forwards but the same pattern of equal rows, so the
    last map found for a book of this many rows is tried first and kept if every row matches its representative
    bit for bit and the representatives are distinct (the same partition np.unique finds, from a gather, a compare
    and a sort of the few representatives instead of a sort of every row); else np.unique finds the map afresh.
    Pricing is elementwise, so which representative a row maps to (or how the distinct rows are ordered) never
    changes a value."""
    bits = cols.view(np.int64)
    row_t = np.dtype((np.void, cols.dtype.itemsize * cols.shape[1]))
    hint = _SERIES_MAPS.get(cols.shape[0])
    if (
        hint is not None
        and np.array_equal(bits[hint[0]][hint[1]], bits)  # every row equals its representative
        and np.unique(cols[hint[0]].view(row_t)).size == hint[0].size  # and no two representatives are equal
    ):
        return hint
    rows = cols.view(row_t).ravel()
    _, first, inv = np.unique(rows, return_index=True, return_inverse=True)
    out = (first, inv.reshape(-1))
    if len(_SERIES_MAPS) >= _SERIES_MAPS_KEPT and cols.shape[0] not in _SERIES_MAPS:
        del _SERIES_MAPS[next(iter(_SERIES_MAPS))]
    _SERIES_MAPS[cols.shape[0]] = out
    return out


_SERIES_MAPS: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # rows -> (first, inv) of the last book that size
_SERIES_MAPS_KEPT = 8
_PARALLEL_MIN = 50_000  # (scenarios x options) elements above which values_grid() splits the work over two threads
_BLOCK = 1 << 16  # (scenarios x options) elements per block of values_grid(): each temporary <= 512 KiB
_DEDUPE_MIN = 64  # options per book from which ForwardShockPricer looks for repeated series
_POOL: ThreadPoolExecutor | None = None
_POOL_PID = -1


def _pool() -> ThreadPoolExecutor:
    """Two-thread pool, recreated after a fork (a forked child has no worker threads)."""
    global _POOL, _POOL_PID
    import os

    if _POOL is None or _POOL_PID != os.getpid():
        _POOL, _POOL_PID = ThreadPoolExecutor(max_workers=2, thread_name_prefix="b76"), os.getpid()
    return _POOL
