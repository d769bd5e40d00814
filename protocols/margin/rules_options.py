"""Rule-based option margin: Lyra/Derive Standard Manager (SRM) and Deribit standard (per-position) margin.

Both report the shared convention: equity = MtM + cash, requirements are positive USD, healthy iff equity >= mm.
The SRM's native signed result (margin = cash + sum of negative per-market margins) is kept in
drivers["native_margin_mm"/"native_margin_im"] and mm = equity - native_margin_mm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from defistress.protocols.margin.black76 import SECONDS_PER_YEAR, call_put
from defistress.protocols.margin.exact import conf_factor
from defistress.protocols.margin.portfolio import CALL, FUTURE, PERP, SPOT, MarketState, Portfolio, is_option
from defistress.protocols.margin.result import MarginResult
from defistress.protocols.margin.rule_base import RuleModel, _bc, _unsupported, check_fraction, register_rule
from defistress.protocols.margin.var import position_values


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv.reshape(-1)


def max_loss_per_group(
    grp: np.ndarray, strike: np.ndarray, qty: np.ndarray, is_call: np.ndarray, n_groups: int
) -> np.ndarray:
    """StandardManager._calcMaxLoss: min(0, min over settlement prices {0} U {strikes of the group} of the
    group's payoff), one value per group (USD, <= 0). Pairs every option with every strike of its group."""
    order = np.argsort(grp, kind="stable")
    gs = grp[order]
    size = np.bincount(grp, minlength=n_groups)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    rep = size[gs]
    p_idx = np.repeat(order, rep)  # the option being paid out
    offs = np.arange(rep.sum()) - np.repeat(np.cumsum(rep) - rep, rep)
    j_idx = order[start[np.repeat(gs, rep)] + offs]  # the strike used as settlement price
    price = strike[j_idx]
    diff = price - strike[p_idx]
    pay = np.where(is_call[p_idx], np.maximum(diff, 0.0), np.maximum(-diff, 0.0)) * qty[p_idx]
    at_strike = np.bincount(j_idx, weights=pay, minlength=grp.size)  # group payoff at price K_j
    at_zero = np.bincount(grp, weights=np.where(is_call, 0.0, strike) * qty, minlength=n_groups)
    worst = np.minimum(at_zero, 0.0)
    np.minimum.at(worst, grp, np.minimum(at_strike, 0.0))
    return worst


@dataclass(frozen=True)
class LyraStandardParams:
    """Derive Standard Manager parameters; defaults from v2-core scripts/config-mainnet.sol getSRMParams and
    getSRMDepegParams (ETH/BTC markets)."""

    mode: str = "cross"
    max_spot_req: float = 0.15
    min_spot_req: float = 0.13
    mm_call_spot_req: float = 0.09
    mm_put_spot_req: float = 0.09
    mm_put_mtm_req: float = 0.09
    unpaired_im_scale: float = 1.2
    unpaired_mm_scale: float = 1.1
    mm_offset_scale: float = 1.05
    perp_req: Mapping[str, tuple[float, float]] = field(  # (mmPerpReq, imPerpReq) per market
        default_factory=lambda: {"SOL": (0.1, 0.2), "DOGE": (0.1, 0.2)}
    )
    default_perp_mm: float = 0.065
    default_perp_im: float = 0.10
    base_margin: Mapping[str, tuple[float, float]] = field(  # (marginFactor, IMScale) per base asset
        default_factory=lambda: {
            "ETH": (0.8, 0.9375),
            "BTC": (0.75, 0.93),
            "WSTETH": (0.8, 0.9375),
            "USDT": (0.98, 0.98),
            "LBTC": (0.75, 0.93),
        }
    )
    perp_threshold: float = 0.55
    option_threshold: float = 0.55
    base_threshold: float = 0.55
    oc_factor: float = 1.0
    depeg_threshold: float = 0.99
    depeg_factor: float = 2.0

    def __post_init__(self) -> None:
        for name in (
            "max_spot_req",
            "min_spot_req",
            "mm_call_spot_req",
            "mm_put_spot_req",
            "mm_put_mtm_req",
            "default_perp_mm",
            "default_perp_im",
            "perp_threshold",
            "option_threshold",
            "base_threshold",
            "depeg_threshold",
        ):
            check_fraction(name, getattr(self, name))
        for name in ("unpaired_im_scale", "unpaired_mm_scale", "mm_offset_scale", "oc_factor", "depeg_factor"):
            check_fraction(name, getattr(self, name), 0.0, 10.0)
        for u, (mm, im) in self.perp_req.items():
            check_fraction(f"perp_req[{u!r}].mm", mm)
            check_fraction(f"perp_req[{u!r}].im", im)
        for u, (mf, ims) in self.base_margin.items():
            check_fraction(f"base_margin[{u!r}].margin_factor", mf)
            check_fraction(f"base_margin[{u!r}].im_scale", ims)


class LyraStandard(RuleModel):
    """Derive Standard Manager (src/risk-managers/StandardManager.sol): isolated short-option margins summed per
    expiry and floored at the expiry's max loss (plus unpaired short calls x forward x scale), perps charged on
    notional, wrapped base credited at marginFactor; IM adds oracle-confidence (perps min(perp, spot), options per
    expiry min(spot, forward, vol), base spot) and stable de-peg contingencies. Long options add value to MtM
    but no margin credit. Futures and short base are not supported. With the unit-test parameters
    (config-test.sol getSRMParams and the harness's setUp) it reproduces the 42 published Standard Manager
    portfolio cases (integer MM/IM): tests/margin/test_lyra_srm_vectors.py."""

    def _cross(self, pf: Portfolio, mkt: MarketState) -> MarginResult:
        p, n, unds = self.params, pf.n_accounts, pf.underlyings
        n_u = max(len(unds), 1)
        s_u, perp_u, conf_u = mkt.spot_array(unds), mkt.perp_array(unds), mkt.confidence_array(unds)
        perp_conf_u = mkt.perp_confidence_array(unds)
        s, conf = s_u[pf.und], conf_u[pf.und]
        value = position_values(pf, mkt)
        opt, perp = is_option(pf.kind), pf.kind == PERP
        base = (pf.kind == SPOT) & (pf.qty > 0)
        nat_mm, nat_im = pf.cash.copy(), pf.cash.copy()
        d_opt, d_oc, d_dep = np.zeros(n), np.zeros(n), np.zeros(n)
        n_maxloss = np.zeros(n, dtype=np.int64)
        shorts_ua = np.zeros(n * n_u)  # sum(|short options| + |perps|) per (account, underlying)
        mtm = np.zeros(pf.n_positions)
        if opt.any():
            i = np.flatnonzero(opt)
            q, k, call, si = pf.qty[i], pf.strike[i], pf.kind[i] == CALL, s[i]
            fwd = mkt.forward(pf.und[i], pf.expiry_s[i], unds)
            sig = mkt.vols(unds, pf.und[i], k, pf.expiry_s[i], fwd)
            c, pu = call_put(fwd, k, pf.expiry_s[i] / SECONDS_PER_YEAR, sig, 1.0)  # SRM prices with discount 1
            m = q * np.where(call, c, pu)
            mtm[i] = m
            short = q < 0
            # _getIsolatedMarginForPut / ForCall (native, negative numbers)
            put_mm = np.minimum(p.mm_put_spot_req * si * q, p.mm_put_mtm_req * m) + m
            call_mm = m + p.mm_call_spot_req * si * q
            otm = np.where(call, np.maximum(k - si, 0.0), np.maximum(si - k, 0.0)) / si
            mult = (
                np.where(
                    (p.max_spot_req > otm) & (p.max_spot_req - otm > p.min_spot_req),
                    p.max_spot_req - otm,
                    p.min_spot_req,
                )
                * si
            )
            call_im = mult * q + m
            put_im = np.minimum(mult * q + m, put_mm * p.mm_offset_scale)
            iso_mm = np.where(short, np.where(call, call_mm, put_mm), 0.0)
            iso_im = np.where(short, np.where(call, call_im, put_im), 0.0)
            e_uniq, e_code = _group(pf.expiry_s[i])
            g_keys, grp = _group((pf.account[i] * n_u + pf.und[i]) * max(e_uniq.size, 1) + e_code)
            n_g = g_keys.size
            g_acct = g_keys // max(e_uniq.size, 1) // n_u
            f_g = np.zeros(n_g)
            f_g[grp] = fwd
            loss = max_loss_per_group(grp, k, q, call, n_g)
            net_calls = _bc(grp, np.where(call, q, 0.0), n_g)
            unpaired = np.where(net_calls < 0, f_g * net_calls, 0.0)
            exp_mm = np.maximum(_bc(grp, iso_mm, n_g), loss + p.unpaired_mm_scale * unpaired)
            exp_im = np.maximum(_bc(grp, iso_im, n_g), loss + p.unpaired_im_scale * unpaired)
            short_g = _bc(grp, np.where(short, -q, 0.0), n_g)
            s_g = np.zeros(n_g)
            s_g[grp] = si
            # StandardManager _getNetOptionMarginAndMtM: min(spot, forward, the expiry's vol) confidence per expiry
            pts = mkt.curve_points(unds, pf.und[i], pf.expiry_s[i])
            vol_c = mkt.vol_confidences(unds, pf.und[i], k, pf.expiry_s[i])
            o_c = np.minimum(np.minimum(conf[i], pts.forward_confidence), np.minimum(pts.vol_confidence, vol_c))
            c_g = np.ones(n_g)
            np.minimum.at(c_g, grp, o_c)
            oc_g = np.where(c_g < p.option_threshold, conf_factor(c_g, p.oc_factor) * s_g * short_g, 0.0)
            nat_mm += _bc(g_acct, exp_mm, n)
            nat_im += _bc(g_acct, exp_im - oc_g, n)
            d_opt += _bc(g_acct, _bc(grp, m, n_g) - exp_mm, n)
            d_oc += _bc(g_acct, oc_g, n)
            n_maxloss += np.bincount(
                g_acct[loss + p.unpaired_mm_scale * unpaired > _bc(grp, iso_mm, n_g)], minlength=n
            )[:n]
            np.add.at(shorts_ua, pf.account[i] * n_u + pf.und[i], np.where(short, -q, 0.0))
        # perps: one net position per market (_getNetPerpMargin) plus unrealised PnL
        keys, inv = _group(pf.account[perp] * n_u + pf.und[perp])
        size = np.abs(_bc(inv, pf.qty[perp], keys.size))
        pu_idx, pa = keys % n_u, keys // n_u
        req = np.array([p.perp_req.get(u, (p.default_perp_mm, p.default_perp_im)) for u in unds]).reshape(-1, 2)
        notional = size * perp_u[pu_idx]
        pmm, pim = notional * req[pu_idx, 0], notional * req[pu_idx, 1]
        c_p = np.minimum(conf_u[pu_idx], perp_conf_u[pu_idx])  # _getNetPerpMargin: min(perp, spot) confidence
        oc_p = np.where(c_p < p.perp_threshold, conf_factor(c_p, p.oc_factor) * s_u[pu_idx] * size, 0.0)
        upnl = _bc(pf.account[perp], value[perp], n)
        nat_mm += upnl - _bc(pa, pmm, n)
        nat_im += upnl - _bc(pa, pim + oc_p, n)
        d_oc += _bc(pa, oc_p, n)
        np.add.at(shorts_ua, keys, size)
        # wrapped base: + notional * marginFactor (* IMScale for IM), value at spot / stable (_getBaseMarginAndMtM)
        bm = np.array([p.base_margin.get(u, (0.0, 0.0)) for u in unds]).reshape(-1, 2)
        b_not = np.where(base, pf.qty * s, 0.0)
        b_oc = np.where(base & (conf < p.base_threshold), conf_factor(conf, p.oc_factor) * b_not, 0.0)
        b_mm = b_not * bm[pf.und, 0]
        nat_mm += _bc(pf.account, b_mm, n)
        nat_im += _bc(pf.account, b_mm * bm[pf.und, 1] - b_oc, n)
        d_oc += _bc(pf.account, b_oc, n)
        # stable de-peg (_getDepegMultiplier), IM only: (threshold - stable) * factor * spot * sum(shorts + perps)
        if mkt.stable_price < p.depeg_threshold:
            dep = (p.depeg_threshold - mkt.stable_price) * p.depeg_factor * shorts_ua.reshape(n, n_u) * s_u[None, :]
            d_dep = dep.sum(axis=1)
            nat_im -= d_dep
        equity = pf.cash + _bc(
            pf.account, np.where(opt, mtm, 0.0) + np.where(perp, value, 0.0) + np.where(base, value, 0.0), n
        )
        drivers = {
            "options_usd": d_opt,
            "perp_usd": _bc(pa, pmm, n),
            "base_haircut_usd": _bc(pf.account, np.where(base, value, 0.0) - b_mm, n),
            "oracle_contingency_usd": d_oc,
            "depeg_usd": d_dep,
            "max_loss_expiries": n_maxloss,
            "native_margin_mm": nat_mm,
            "native_margin_im": nat_im,
            "unsupported_positions": _unsupported(pf, opt | perp | base),
        }
        return MarginResult(im=equity - nat_im, mm=equity - nat_mm, equity=equity, drivers=drivers, model=self.name)


@dataclass(frozen=True)
class DeribitStandardParams:
    """Deribit standard (per-position) margin in USD terms. Options: Deribit standard option margin as quoted by
    doc.tslab.pro "Deribit Margin Requirements Calculation" and docs.aevo.xyz standard margin [3P]. Futures/perps:
    historical Deribit futures spec (test.deribit.com/pages/docs/futures): IM 2.0%, MM 1.5%, +0.5% per 100 BTC."""

    mode: str = "cross"
    im_otm_base: float = 0.15
    im_floor: float = 0.10
    mm_call: float = 0.075
    mm_put: float = 0.075
    mm_put_mark: float = 0.075
    fut_im: float = 0.02
    fut_mm: float = 0.015
    fut_size_step: float = 0.005
    size_unit: Mapping[str, float] = field(default_factory=lambda: {"BTC": 100.0})  # coins per size step

    def __post_init__(self) -> None:
        for name in (
            "im_otm_base",
            "im_floor",
            "mm_call",
            "mm_put",
            "mm_put_mark",
            "fut_im",
            "fut_mm",
            "fut_size_step",
        ):
            check_fraction(name, getattr(self, name))
        for u, v in self.size_unit.items():
            if not v > 0:
                raise ValueError(f"size_unit[{u!r}]={v}: allowed > 0 coins")


class DeribitStandard(RuleModel):
    """Short call: IM = max(0.15 - OTM/S, 0.1) S + mark, MM = 0.075 S + mark; short put: MM = max(0.075 S,
    0.075 mark) + mark, IM = max(max(0.15 - OTM/S, 0.1) S + mark, MM) (per unit, USD); longs: premium only.
    Futures/perps: notional x (base + step x size/unit), netted per instrument in cross mode; long spot is
    collateral at full value (the account is margined in the coin)."""

    def _cross(self, pf: Portfolio, mkt: MarketState) -> MarginResult:
        p, n, unds = self.params, pf.n_accounts, pf.underlyings
        n_u = max(len(unds), 1)
        s = mkt.spot_array(unds)[pf.und]
        value = position_values(pf, mkt)
        opt, d1 = is_option(pf.kind), (pf.kind == PERP) | (pf.kind == FUTURE)
        spot = (pf.kind == SPOT) & (pf.qty > 0)
        q_abs, call = np.abs(pf.qty), pf.kind == CALL
        mark = np.where(opt, np.abs(value) / np.where(q_abs > 0, q_abs, 1.0), 0.0)  # USD per unit
        short = opt & (pf.qty < 0)
        otm = np.where(call, np.maximum(pf.strike - s, 0.0), np.maximum(s - pf.strike, 0.0))
        im_rate = np.maximum(p.im_otm_base - otm / s, p.im_floor) * s + mark
        mm_opt = np.where(call, p.mm_call * s, np.maximum(p.mm_put * s, p.mm_put_mark * mark)) + mark
        im_opt = np.where(call, im_rate, np.maximum(im_rate, mm_opt))
        o_im = _bc(pf.account, np.where(short, im_opt * q_abs, 0.0), n)
        o_mm = _bc(pf.account, np.where(short, mm_opt * q_abs, 0.0), n)
        # delta-1: net per instrument (account, underlying, kind, expiry)
        e_uniq, e_code = _group(pf.expiry_s[d1])
        keys, inv = _group(((pf.account[d1] * n_u + pf.und[d1]) * 3 + pf.kind[d1]) * max(e_uniq.size, 1) + e_code)
        size = np.abs(_bc(inv, pf.qty[d1], keys.size))
        k_acct = keys // max(e_uniq.size, 1) // 3 // n_u
        k_und = keys // max(e_uniq.size, 1) // 3 % n_u
        unit = np.array([p.size_unit.get(u, np.inf) for u in unds])[k_und]
        px = np.zeros(keys.size)
        px[inv] = np.where(
            pf.kind[d1] == PERP, mkt.perp_array(unds)[pf.und[d1]], mkt.forward(pf.und[d1], pf.expiry_s[d1], unds)
        )
        step = p.fut_size_step * size / unit
        f_im = _bc(k_acct, size * px * (p.fut_im + step), n)
        f_mm = _bc(k_acct, size * px * (p.fut_mm + step), n)
        supported = opt | d1 | spot
        equity = pf.cash + _bc(pf.account, np.where(supported, value, 0.0), n)
        return MarginResult(
            im=o_im + f_im,
            mm=o_mm + f_mm,
            equity=equity,
            model=self.name,
            drivers={
                "short_options_usd": o_mm,
                "futures_usd": f_mm,
                "unsupported_positions": _unsupported(pf, supported),
            },
        )


register_rule("lyra-standard", LyraStandard, LyraStandardParams)
register_rule("deribit-standard", DeribitStandard, DeribitStandardParams)
