"""CME SPAN (classic): 16-scenario risk arrays, scan risk per combined commodity, intra-commodity (calendar)
spread charges, short option minimum and inter-commodity spread credits (WPR method), for many accounts.

A combined commodity is one underlying of the Portfolio; its contract months are the distinct expiry_s of
its futures and options. Sources: docs/margin-methods.md 6.1; cmegroup.com/clearing/margins/spread-calc.html;
CME Clearing Advisory Chadv08-303 (extreme move 3 x PSR at 33% coverage).

Risk arrays come from the clearing house when MarketState.span_arrays holds the underlying's published arrays
(span_arrays.py; read from a CME risk-parameter file with span_file.py): scan risk, spreads and credits then
use the published 16 losses and composite deltas. Otherwise Span builds its own arrays with Black-76 from the
commodity's price and vol scan ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from defistress.protocols.margin.black76 import SECONDS_PER_YEAR, greeks, price
from defistress.protocols.margin.portfolio import (
    CALL,
    FUTURE,
    KIND_NAMES,
    PUT,
    MarketState,
    Portfolio,
    add_funding,
    check_supported,
)
from defistress.protocols.margin.registry import register
from defistress.protocols.margin.result import MarginResult

_DAY = 86_400.0
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# SPAN scenario table (docs/margin-methods.md 6.1): price move as a fraction of the scan range, vol direction
SPAN_PRICE_FRACTIONS = (0, 0, 1 / 3, 1 / 3, -1 / 3, -1 / 3, 2 / 3, 2 / 3, -2 / 3, -2 / 3, 1, 1, -1, -1)
SPAN_VOL_SIGNS = (1, -1) * 7


def _check(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name}={value!r}: allowed [{lo}, {hi}]")


@dataclass(frozen=True)
class IntraSpread:
    """Calendar spread tier pair (contract months by expiry_s) and its charge per spread formed (USD)."""

    month_a_s: float
    month_b_s: float
    charge_usd: float

    def __post_init__(self) -> None:
        _check("charge_usd", self.charge_usd, 0.0, np.inf)


@dataclass(frozen=True)
class InterSpread:
    """Inter-commodity spread: `ratio_a` units of a against `ratio_b` of b (opposite deltas), credit rate."""

    und_a: str
    und_b: str
    ratio_a: float
    ratio_b: float
    credit_rate: float

    def __post_init__(self) -> None:
        _check("ratio_a", self.ratio_a, 1e-12, np.inf)
        _check("ratio_b", self.ratio_b, 1e-12, np.inf)
        _check("credit_rate", self.credit_rate, 0.0, 1.0)


@dataclass(frozen=True)
class SpanCommodity:
    """SPAN parameters of one combined commodity. Price scan range in USD per unit of underlying, either
    one value for all months or per month; vol scan range in absolute vol points (0.04 = 4 vol points)."""

    price_scan_usd: float = 0.0  # PSR in USD per unit of underlying ...
    price_scan_frac: float = 0.0  # ... plus this fraction of the contract month's forward
    month_price_scan_usd: tuple[tuple[float, float], ...] = ()  # ((expiry_s, PSR USD), ...)
    vol_scan: float = 0.0
    extreme_multiple: float = 3.0  # CME Chadv08-303 "Extreme Move Value 3"
    extreme_cover: float = 0.33  # CME Chadv08-303 "Extreme Move Coverage 0.33"
    short_option_minimum_usd: float = 0.0  # per short option unit
    intra_spreads: tuple[IntraSpread, ...] = ()
    lookahead_s: float = _DAY  # SPAN look-ahead 1 day, time decay included

    def __post_init__(self) -> None:
        _check("price_scan_usd", self.price_scan_usd, 0.0, np.inf)
        _check("price_scan_frac", self.price_scan_frac, 0.0, 10.0)
        _check("vol_scan", self.vol_scan, 0.0, 10.0)
        _check("extreme_multiple", self.extreme_multiple, 0.0, 100.0)
        _check("extreme_cover", self.extreme_cover, 0.0, 1.0)
        _check("short_option_minimum_usd", self.short_option_minimum_usd, 0.0, np.inf)
        _check("lookahead_s", self.lookahead_s, 0.0, 365 * _DAY)
        for t, v in self.month_price_scan_usd:
            _check(f"month_price_scan_usd[{t}]", v, 0.0, np.inf)

    def psr(self, expiry_s: np.ndarray, forward: np.ndarray) -> np.ndarray:
        """Price scan range in USD per unit, per position."""
        out = self.price_scan_usd + self.price_scan_frac * np.asarray(forward, dtype=np.float64)
        for t, v in self.month_price_scan_usd:
            out[np.asarray(expiry_s) == t] = v
        return out


@dataclass(frozen=True)
class SpanParams:
    """SPAN for several combined commodities; initial = initial_factor x maintenance."""

    commodities: dict[str, SpanCommodity]
    inter_spreads: tuple[InterSpread, ...] = ()  # applied in priority order (first = highest)
    initial_factor: float = 1.1  # CME performance bond: initial 110% of maintenance
    name: str = "cme-span"

    def __post_init__(self) -> None:
        _check("initial_factor", self.initial_factor, 1.0, 10.0)
        for s in self.inter_spreads:
            for u in (s.und_a, s.und_b):
                if u not in self.commodities:
                    raise ValueError(f"inter_spreads underlying {u!r}: allowed {list(self.commodities)}")


def span_scenarios(c: SpanCommodity) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(price fraction of PSR, vol sign, weight) of the 16 SPAN scenarios."""
    frac = np.array(SPAN_PRICE_FRACTIONS + (c.extreme_multiple, -c.extreme_multiple), dtype=np.float64)
    vol = np.array(SPAN_VOL_SIGNS + (0, 0), dtype=np.float64)
    weight = np.array((1.0,) * 14 + (c.extreme_cover, c.extreme_cover))
    return frac, vol, weight


class Span:
    """CME SPAN classic over all accounts at once."""

    def __init__(self, params: SpanParams):
        self.params = params
        self.name = params.name

    def risk_arrays(
        self, pf: Portfolio, mkt: MarketState, sel: IntArray, c: SpanCommodity
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(16, p) losses per position (positive = loss, qty-weighted), option values, composite deltas: the
        clearing house's published arrays when MarketState.span_arrays has the underlying, else built here."""
        u = int(pf.und[sel[0]])
        if pf.underlyings[u] in mkt.span_arrays:
            return self.published_arrays(pf, mkt, sel)
        spot, rate, _, _ = mkt.scalars(pf.underlyings[u])
        kind, qty, k, ts = pf.kind[sel], pf.qty[sel], pf.strike[sel], pf.expiry_s[sel]
        fwd = mkt.forward(np.full(sel.size, u), ts, pf.underlyings)
        frac, vsign, weight = span_scenarios(c)
        move = frac[:, None] * c.psr(ts, fwd)[None, :]  # USD price move per scenario
        opt = (kind == CALL) | (kind == PUT)
        loss = -(move * weight[:, None]) * np.where(opt, 0.0, qty)[None, :]  # delta-1: PnL = qty * move
        values = np.zeros(sel.size)
        delta = np.where(opt, 0.0, qty)
        if opt.any():
            o = np.flatnonzero(opt)
            sig = mkt.vols(pf.underlyings, np.full(o.size, u), k[o], ts[o], fwd[o])
            t_now, t_next = ts[o] / SECONDS_PER_YEAR, np.maximum(ts[o] - c.lookahead_s, 0.0) / SECONDS_PER_YEAR
            is_call = kind[o] == CALL
            v0 = price(fwd[o], k[o], t_now, sig, is_call, np.exp(-rate * t_now))
            f_s = np.maximum(fwd[o][None, :] + move[:, o], 0.0)
            sig_s = np.maximum(sig[None, :] + vsign[:, None] * c.vol_scan, 0.0)
            v_s = price(f_s, k[o], t_next, sig_s, is_call, np.exp(-rate * t_next))
            loss[:, o] = -(v_s - v0[None, :]) * weight[:, None] * qty[o][None, :]
            values[o] = qty[o] * v0
            delta[o] = qty[o] * greeks(fwd[o], k[o], t_now, sig, is_call).delta
        return loss, values, delta

    @staticmethod
    def published_arrays(pf: Portfolio, mkt: MarketState, sel: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Losses, option values and composite deltas from the published arrays of the positions' underlying:
        loss = qty / contract_size x array (values already include the extreme moves' cover fraction);
        delta = qty x composite delta (futures-equivalents in units of the underlying); option value = qty x
        the published settlement price, or Black-76 where the array has none."""
        u = int(pf.und[sel[0]])
        name = pf.underlyings[u]
        pub = mkt.span_arrays[name]
        kind, qty = pf.kind[sel], pf.qty[sel]
        names = np.array([KIND_NAMES[k] for k in kind], dtype=object)
        bad = ~np.isin(kind, (FUTURE, CALL, PUT))
        if bad.any():
            raise ValueError(
                f"span_arrays[{name!r}]: published arrays cover kinds ['future', 'call', 'put']; got "
                f"{sorted(set(names[bad]))} (position {int(sel[np.flatnonzero(bad)[0]])})"
            )
        idx = pub.match(names, pf.expiry_s[sel], pf.strike[sel])
        if (idx < 0).any():
            j = int(np.flatnonzero(idx < 0)[0])
            raise ValueError(
                f"span_arrays[{name!r}]: no published array for position {int(sel[j])} ({names[j]}, "
                f"expiry_s={pf.expiry_s[sel][j]:g}, strike={pf.strike[sel][j]:g}); published: "
                f"{[(a.kind, a.expiry_s, a.strike) for a in pub.arrays]}"
            )
        tab = pub.table()
        contracts = qty / tab["contract_size"][idx]
        loss = tab["losses"][idx].T * contracts[None, :]
        delta = qty * tab["composite_delta"][idx]
        opt = (kind == CALL) | (kind == PUT)
        px = tab["price"][idx]
        values = np.zeros(sel.size)
        need = opt & np.isnan(px)
        if need.any():
            o = np.flatnonzero(need)
            spot, rate, _, _ = mkt.scalars(name)
            ts, k = pf.expiry_s[sel][o], pf.strike[sel][o]
            fwd = mkt.forward(np.full(o.size, u), ts, pf.underlyings)
            sig = mkt.vols(pf.underlyings, np.full(o.size, u), k, ts, fwd)
            t = ts / SECONDS_PER_YEAR
            px[o] = price(fwd, k, t, sig, kind[o] == CALL, np.exp(-rate * t))
        values[opt] = qty[opt] * px[opt]
        return loss, values, delta

    def requirements(self, pf: Portfolio, mkt: MarketState) -> MarginResult:
        check_supported(pf, self.name)
        n = pf.n_accounts
        equity = pf.cash.astype(np.float64).copy()
        mm = np.zeros(n)
        drv = {
            k: np.zeros(n) for k in ("scan_risk_usd", "intra_spread_usd", "inter_credit_usd", "short_option_min_usd")
        }
        per: dict[str, dict[str, np.ndarray]] = {}
        for u, name in enumerate(pf.underlyings):
            sel = np.flatnonzero(pf.und == u)
            if sel.size == 0:
                continue
            if name not in self.params.commodities and name not in mkt.span_arrays:
                raise ValueError(
                    f"underlying {name!r}: allowed {list(self.params.commodities)} (SpanParams.commodities) or an "
                    "underlying with published arrays (MarketState.span_arrays)"
                )
            c = self.params.commodities.get(name, SpanCommodity())
            loss, values, delta = self.risk_arrays(pf, mkt, sel, c)
            acct = pf.account[sel]
            acc_loss = np.stack([np.bincount(acct, weights=row, minlength=n) for row in loss])  # (16, N)
            scan_idx = acc_loss.argmax(axis=0)
            scan = np.maximum(acc_loss.max(axis=0), 0.0)
            paired = np.where(scan_idx < 14, scan_idx ^ 1, scan_idx)  # same price move, opposite vol
            cols = np.arange(n)
            time_risk = (acc_loss[0] + acc_loss[1]) / 2.0  # docs/margin-methods.md 6.1 WPR method
            price_risk = (acc_loss[scan_idx, cols] + acc_loss[paired, cols]) / 2.0 - time_risk
            comp_delta = np.bincount(acct, weights=delta, minlength=n)
            intra = self._intra(acct, pf.expiry_s[sel], delta, c, n)
            kind, qty = pf.kind[sel], pf.qty[sel]
            shorts = np.bincount(
                acct, weights=np.where(((kind == CALL) | (kind == PUT)) & (qty < 0), -qty, 0.0), minlength=n
            )
            upnl = np.where(
                kind == FUTURE,
                qty
                * (
                    self._fwd(mkt, pf, u, sel)
                    - np.where(pf.entry_price[sel] > 0, pf.entry_price[sel], self._fwd(mkt, pf, u, sel))
                ),
                0.0,
            )
            equity += np.bincount(acct, weights=values + upnl, minlength=n)
            wpr = np.where(
                np.abs(comp_delta) > 0,
                np.maximum(price_risk, 0.0) / np.where(comp_delta != 0, np.abs(comp_delta), 1.0),
                0.0,
            )
            per[name] = {
                "scan": scan,
                "intra": intra,
                "som": shorts * c.short_option_minimum_usd,
                "wpr": wpr,
                "delta": comp_delta,
                "credit": np.zeros(n),
            }
        for s in self.params.inter_spreads:  # priority order
            if s.und_a not in per or s.und_b not in per:
                continue
            a, b = per[s.und_a], per[s.und_b]
            opposite = a["delta"] * b["delta"] < 0
            spreads = np.where(
                opposite, np.minimum(np.abs(a["delta"]) / s.ratio_a, np.abs(b["delta"]) / s.ratio_b), 0.0
            )
            a["credit"] += spreads * s.ratio_a * a["wpr"] * s.credit_rate
            b["credit"] += spreads * s.ratio_b * b["wpr"] * s.credit_rate
            a["delta"] = a["delta"] - np.sign(a["delta"]) * spreads * s.ratio_a
            b["delta"] = b["delta"] - np.sign(b["delta"]) * spreads * s.ratio_b
        for r in per.values():
            mm += np.maximum(r["scan"] + r["intra"] - r["credit"], r["som"])
            drv["scan_risk_usd"] += r["scan"]
            drv["intra_spread_usd"] += r["intra"]
            drv["inter_credit_usd"] += r["credit"]
            drv["short_option_min_usd"] += r["som"]
        im = mm * self.params.initial_factor
        drivers: dict[str, npt.NDArray[np.generic]] = dict(drv)
        return add_funding(MarginResult(im=im, mm=mm, equity=equity, drivers=drivers, model=self.name), pf)

    @staticmethod
    def _fwd(mkt: MarketState, pf: Portfolio, u: int, sel: IntArray) -> FloatArray:
        """USD forward per position: the underlying's forward curve, else S e^{rT}."""
        return mkt.forward(np.full(sel.size, u), pf.expiry_s[sel], pf.underlyings)

    @staticmethod
    def _intra(acct: np.ndarray, expiry_s: np.ndarray, delta: np.ndarray, c: SpanCommodity, n: int) -> np.ndarray:
        """Calendar spread charge: spreads formed tier by tier in the given order from opposite deltas."""
        charge = np.zeros(n)
        if not c.intra_spreads:
            return charge
        months = sorted({t for s in c.intra_spreads for t in (s.month_a_s, s.month_b_s)})
        d = {t: np.bincount(acct, weights=np.where(expiry_s == t, delta, 0.0), minlength=n) for t in months}
        for s in c.intra_spreads:
            da, db = d[s.month_a_s], d[s.month_b_s]
            formed = np.minimum(np.maximum(da, 0), np.maximum(-db, 0)) + np.minimum(
                np.maximum(-da, 0), np.maximum(db, 0)
            )
            d[s.month_a_s] = da - np.sign(da) * formed
            d[s.month_b_s] = db - np.sign(db) * formed
            charge += formed * s.charge_usd
        return charge


# Preset: ILLUSTRATIVE CME-style parameters for crypto (not a CME parameter file: those are per product and
# change daily; pass your own SpanParams). PSR ~ 3 daily sd at 60%/65% vol (0.6*sqrt(1/365)*3 = 9.4%).
CME_SPAN_DEFAULT = SpanParams(
    commodities={
        "BTC": SpanCommodity(price_scan_frac=0.09, vol_scan=0.04),
        "ETH": SpanCommodity(price_scan_frac=0.10, vol_scan=0.04),
    },
    inter_spreads=(InterSpread("BTC", "ETH", 1.0, 20.0, 0.5),),
)  # 1 BTC : 20 ETH delta, credit rate 50%
register("cme-span", lambda **kw: Span(SpanParams(**{**CME_SPAN_DEFAULT.__dict__, **kw})))
