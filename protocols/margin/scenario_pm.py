"""Generic scenario-grid portfolio margin (SPAN-like), vectorised over all positions, accounts and scenarios.

For each underlying: PnL_s = damp_s * sum[V(shocked) - V(now)] over positions by full Black-76 revaluation,
worst = min(min_s PnL_s, basis floor, 0); then factors and contingencies (docs/margin-methods.md section 0):
    risk = -worst + roll [+ static if static_inside_factor];  risk = max(risk, floor charge)
    MM = mm_factor * risk [+ static_mm];  IM = im_factor_eff * risk [+ static_mm + static_im] + confidence
which reproduces Lyra PMRM v1, Derive PM2, Deribit PM, Paradex and OKX PM with the presets in presets_pm.py.

Market data per expiry (derivexyz/v2-core PMRM_2 `_initialiseExpiries`): each option is priced off its
expiry's forward (MarketState.forwards, F' = variable * spot shock + fixed) and discounted with its expiry's
rate (floored at 0 when `floor_rate_at_zero`); options of a coin-margined account are valued in coin,
value / (F' * D) (Deribit's inverse options: BS(F)/F). Oracle confidence contingencies are per bucket with
their own feeds (PMRMLib_2 addPrecomputes): perps min(spot, perp); each expiry min(spot, perp if held,
forward, rate, vol) on its gross option count; each collateral min(collateral, spot) on its value.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from defistress.protocols.margin import exact as fx
from defistress.protocols.margin.black76 import SECONDS_PER_YEAR, ForwardShockPricer, greeks, series_map
from defistress.protocols.margin.exact import conf_factor
from defistress.protocols.margin.group_sum import GroupSums
from defistress.protocols.margin.portfolio import (
    CALL,
    FUTURE,
    INVERSE_FUTURE,
    INVERSE_PERP,
    PERP,
    PUT,
    USD,
    MarketState,
    Portfolio,
)
from defistress.protocols.margin.result import MarginResult
from defistress.protocols.margin.scenario_delta1 import bincount as _bc
from defistress.protocols.margin.scenario_delta1 import delta1_rows
from defistress.protocols.margin.scenario_params import (  # noqa: F401
    ABS,
    DOWN,
    LINEAR,
    NONE,
    UP,
    ScenarioGrid,
    ScenarioPMParams,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_DRIVERS = (
    "worst_loss_usd",
    "basis_usd",
    "naked_short_usd",
    "naked_short_im_usd",
    "perp_base_usd",
    "perp_base_im_usd",
    "collateral_haircut_usd",
    "collateral_haircut_im_usd",
    "confidence_usd",
    "roll_usd",
    "floor_charge_usd",
)


def _group(keys: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], IntArray]:
    """Dense group ids for keys (int64 ids, or float64 expiries and strikes): (unique keys, inverse)."""
    if keys.size == 0:
        return keys, keys
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv.reshape(-1)


@dataclass(frozen=True)
class _OptionGroups:
    """Groupings of one underlying's options that depend only on the book's structure (each option's account,
    expiry and strike), not on quantities or the market: reused while the structure stays the same."""

    grp: IntArray  # (P,) option -> its (account, expiry) group
    g_acct: IntArray  # (G,) group -> account
    first: IntArray  # (G,) group -> its first member option (same expiry)
    sk: IntArray  # (P,) option -> its (account, expiry, strike) bucket, calls and puts pooled
    sk_acct: IntArray  # (B,) bucket -> account
    sk_first: IntArray  # (B,) bucket -> its first member option (same expiry and strike)


_GROUPS_KEPT = 4  # books whose groupings a model keeps (the whole book and the small row batches between)


def _option_groups(
    cache: dict[tuple[bytes, bytes, bytes], _OptionGroups], o_acct: IntArray, o_ts: FloatArray, o_k: FloatArray
) -> _OptionGroups:
    """The (account, expiry) groups and (account, expiry, strike) buckets of options (account ids, expiry seconds,
    strikes USD); looked up in `cache` by the arrays' bytes (so equal bits give the same groups), else a kept
    entry that still holds for them (`_groups_hold`), else computed; kept, dropping the oldest beyond
    _GROUPS_KEPT."""
    key = (o_acct.tobytes(), o_ts.tobytes(), o_k.tobytes())
    hit = cache.get(key)
    if hit is not None:
        return hit
    # the same book a block later: expiries are seconds from now, so the bytes moved but the groups may hold
    hit = next((og for og in cache.values() if _groups_hold(og, o_acct, o_ts, o_k)), None)
    if hit is not None:
        out = hit
    else:
        out = _new_option_groups(o_acct, o_ts, o_k)
    if len(cache) >= _GROUPS_KEPT:
        del cache[next(iter(cache))]
    cache[key] = out
    return out


def _new_option_groups(o_acct: IntArray, o_ts: FloatArray, o_k: FloatArray) -> _OptionGroups:
    """The groups and buckets of `_option_groups`, computed: groups ordered by (account, expiry), buckets by
    (group, strike), as np.unique orders their keys."""
    e_uniq, e_code = _group(o_ts)
    n_e = max(e_uniq.size, 1)
    g_keys, grp = _group(o_acct * n_e + e_code)
    first = np.zeros(g_keys.size, dtype=np.int64)
    first[grp[::-1]] = np.arange(o_acct.size)[::-1]  # one member option per group (same expiry)
    k_uniq, k_code = _group(o_k)
    n_k = max(k_uniq.size, 1)
    sk_keys, sk = _group(grp * n_k + k_code)
    g_acct = g_keys // n_e
    sk_first = np.zeros(sk_keys.size, dtype=np.int64)
    sk_first[sk[::-1]] = np.arange(o_acct.size)[::-1]  # one member option per bucket
    return _OptionGroups(grp=grp, g_acct=g_acct, first=first, sk=sk, sk_acct=g_acct[sk_keys // n_k], sk_first=sk_first)


def _groups_hold(og: _OptionGroups, o_acct: IntArray, o_ts: FloatArray, o_k: FloatArray) -> bool:
    """Whether `og` is what `_new_option_groups` computes for these options: every option has its group's account
    and expiry and its bucket's strike, groups strictly ordered by (account, expiry) and buckets by (group,
    strike) (so no two groups or buckets hold equal keys, and np.unique would number them the same)."""
    if og.grp.size != o_acct.size:
        return False
    ga, gt = o_acct[og.first], o_ts[og.first]
    if not (np.array_equal(ga, og.g_acct) and np.array_equal(ga[og.grp], o_acct) and np.array_equal(gt[og.grp], o_ts)):
        return False
    bg, bk = og.grp[og.sk_first], o_k[og.sk_first]
    if not np.array_equal(bk[og.sk], o_k) or not np.array_equal(bg[og.sk], og.grp):
        return False
    da, dt, dg, dk = np.diff(ga), np.diff(gt), np.diff(bg), np.diff(bk)
    return bool(((da > 0) | ((da == 0) & (dt > 0))).all() and ((dg > 0) | ((dg == 0) & (dk > 0))).all())


_SERIES_MIN = 64  # options from which `_option_series` looks for repeated series (as ForwardShockPricer dedupes)


def _option_series(o_ts: FloatArray, o_k: FloatArray, o_call: npt.NDArray[np.bool_]) -> tuple[IntArray, IntArray]:
    """(series, first): each option's distinct series (expiry seconds, strike USD, call/put; bit for bit) and one
    member option per series. Books under _SERIES_MIN options, or with more than half their options distinct, are
    their own series (identity maps): pricing per series only pays where a series repeats."""
    ident = np.arange(o_ts.size)
    if o_ts.size < _SERIES_MIN:
        return ident, ident
    first, inv = series_map(np.stack([o_ts, o_k, o_call.astype(np.float64)], axis=1))
    if first.size > o_ts.size // 2:
        return ident, ident
    return inv, first


_UNITS_KEPT = 4  # series books whose unit values a model keeps (a block values the same book several times)


def _unit_values(
    cache: dict[tuple[Any, ...], tuple[ScenarioPMParams, FloatArray]],
    prm: ScenarioPMParams,
    series: FloatArray,
    mult: FloatArray,
    keys: tuple[int, ...],
    any_skew: bool,
) -> FloatArray:
    """(rows, series) discounted Black-76 values of one unit of each series (columns of `series`: forward USD,
    strike USD, expiry years and seconds, discount, fixed forward part USD, call 1/put 0, vol) at forward
    multipliers `mult` and the vol shock of `keys` per row. Kept in `cache` by the exact bytes of the inputs and
    the params (the same inputs give the same bits), so the valuations of one block price each series once."""
    key = (id(prm), series.tobytes(), mult.tobytes(), keys, any_skew)
    hit = cache.get(key)
    if hit is not None and hit[0] is prm:
        return hit[1]
    f, k, t, ts, disc, fixed, call, sigma = series.T
    up_m, down_m = prm.vol_shock.multipliers(ts)
    vols = {NONE: sigma, UP: np.maximum(prm.vol_shock.min_vol_up, sigma * up_m), DOWN: sigma * down_m}
    if prm.skew is not None and any_skew:
        logk = np.log(np.where(k > 0, k, 1.0) / f)  # PMRMLib_2 _getExpirySkewedShockedMTM: k = ln(K/F)
        vols[LINEAR] = sigma * prm.skew.multiplier(logk, t, linear=True)
        vols[ABS] = sigma * prm.skew.multiplier(np.abs(logk), t, linear=False)
    unit = ForwardShockPricer(f, k, t, call == 1.0, np.ones(f.size), disc, fixed=fixed, dedupe=False)
    out = unit.values_grid(mult, vols, keys)
    out.flags.writeable = False  # shared by every valuation that hits the cache: read only
    if len(cache) >= _UNITS_KEPT:
        del cache[next(iter(cache))]
    cache[key] = (prm, out)
    return out


@dataclass
class _UnderlyingRisk:
    """Per-account figures of one underlying (arrays of shape (N,) unless noted), in each account's margin
    currency (USD, or coin for the accounts margined in this underlying's coin)."""

    pnl: FloatArray  # (S, N) scenario PnL
    basis: FloatArray  # basis floor-scenario PnL (<= 0)
    mtm: FloatArray  # mark-to-market of the underlying's positions
    naked_mm: FloatArray
    naked_im: FloatArray
    delta1_mm: FloatArray
    delta1_im: FloatArray
    coll_mm: FloatArray
    coll_im: FloatArray
    confidence: FloatArray
    roll: FloatArray
    floor: FloatArray
    parts: dict[str, FloatArray]  # equity parts: options, delta1, collateral, funding

    _SUMMED = (
        "basis",
        "mtm",
        "naked_mm",
        "naked_im",
        "delta1_mm",
        "delta1_im",
        "coll_mm",
        "coll_im",
        "confidence",
        "roll",
        "floor",
    )


class ScenarioPM:
    """Scenario-grid portfolio margin model; `per_underlying` overrides params by underlying name."""

    def __init__(
        self,
        params: ScenarioPMParams,
        per_underlying: dict[str, ScenarioPMParams] | None = None,
        name: str | None = None,
    ):
        self.params = params
        self.per_underlying = dict(per_underlying or {})
        self.name = name or params.name
        self._groups: dict[tuple[bytes, bytes, bytes], _OptionGroups] = {}  # _option_groups' recent books
        self._unit: dict[tuple[Any, ...], tuple[ScenarioPMParams, FloatArray]] = {}  # _unit_values' recent series

    def params_for(self, underlying: str) -> ScenarioPMParams:
        return self.per_underlying.get(underlying, self.params)

    def with_grid(self, grid: ScenarioGrid) -> ScenarioPM:
        """Same model with another scenario grid for every underlying (for what-if studies)."""
        return ScenarioPM(
            replace(self.params, grid=grid),
            {u: replace(p, grid=grid) for u, p in self.per_underlying.items()},
            self.name,
        )

    # ------------------------------------------------------------------ one underlying
    def _underlying(self, pf: Portfolio, mkt: MarketState, u: int, prm: ScenarioPMParams) -> _UnderlyingRisk:
        n, unds = pf.n_accounts, pf.underlyings
        sel = np.flatnonzero(pf.und == u)
        spot, _, _, spot_conf = mkt.scalars(unds[u])
        perp_conf = float(mkt.perp_confidence_array((unds[u],))[0])
        grid, c = prm.grid, prm.contingency
        acct, kind, qty = pf.account[sel], pf.kind[sel], pf.qty[sel]
        coin_acct = pf.numeraire == u
        t_s = pf.expiry_s[sel]
        t_y = t_s / SECONDS_PER_YEAR
        pts = mkt.curve_points(unds, np.full(sel.size, u, dtype=np.int64), t_s)
        fwd, fwd_fixed = pts.forward, pts.fixed
        if coin_acct.any():
            _refuse_worthless_coin(unds[u], spot, acct, kind, coin_acct[acct], fwd, t_s)
        rate = np.maximum(pts.rate, 0.0) if prm.floor_rate_at_zero else pts.rate  # PMRM_2: max(rate, 0)
        spot_mult = np.asarray(grid.spot)
        damp = np.asarray(grid.dampening)
        vdir = np.asarray(grid.vol)
        tail = np.asarray(grid.tail)
        n_s = spot_mult.size
        move = grid.moves
        d1_move = move
        if prm.extended_price_range is not None:  # Deribit: delta-1 extended vector = PnL at +-price_range
            r = prm.extended_price_range
            d1_move = np.where(tail, np.clip(move, -r, r), move)

        rows = delta1_rows(pf, mkt, u, sel, prm, fwd, fwd_fixed, d1_move)
        pnl = rows.pnl
        perp_held = rows.perp_held
        c_d1 = np.where(perp_held, min(spot_conf, perp_conf), spot_conf)  # PMRM_2: min(spot, perp if held)
        if coin_acct.any():  # USD cash of a coin-margined account is worth cash / spot' coin
            cash_w = np.where(coin_acct, pf.cash, 0.0)
            pnl = pnl + ((1.0 / (spot * spot_mult) - 1.0 / spot) * damp)[:, None] * cash_w[None, :]

        # options, grouped per (account, expiry)
        opt = np.flatnonzero((kind == CALL) | (kind == PUT))
        basis, naked, opt_mtm, opt_conf = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        if opt.size:
            o_acct, o_q, o_k, o_t, o_ts = acct[opt], qty[opt], pf.strike[sel][opt], t_y[opt], t_s[opt]
            o_f, o_fix, o_r = fwd[opt], fwd_fixed[opt], rate[opt]
            o_call = kind[opt] == CALL
            # market inputs per distinct series (expiry, strike, call/put), gathered to positions: forward, rate and
            # discount are functions of the expiry, the vol surface of (strike, expiry, forward), all elementwise
            ser, first_s = _option_series(o_ts, o_k, o_call)
            s_k, s_ts, s_t, s_f = o_k[first_s], o_ts[first_s], o_t[first_s], o_f[first_s]
            sigma = mkt.vols(unds, np.full(first_s.size, u, dtype=np.int64), s_k, s_ts, s_f)
            s_disc = np.exp(-o_r[first_s] * s_t) if prm.discount_option_prices else np.ones(first_s.size)
            disc = s_disc[ser]  # PMRMLib_2 discount
            og = _option_groups(self._groups, o_acct, o_ts, o_k)
            grp, g_acct, first = og.grp, og.g_acct, og.first
            n_g = g_acct.size
            g_t, g_rate, g_disc = o_t[first], o_r[first], disc[first]
            g_var, g_fix = o_f[first] - o_fix[first], o_fix[first]
            pos_disc, neg_disc = prm.discount.factors(g_t, g_rate, g_disc)
            g_coin = coin_acct[g_acct]

            def native(gv: FloatArray, m: FloatArray) -> FloatArray:
                """(groups, rows) values in the account's currency at forward multipliers m (1, rows): coin = USD /
                (F' * D) (Deribit: BS(F) / F); F' > 0 for every coin group (_refuse_worthless_coin); a USD-only book
                is returned as it is."""
                if not g_coin.any():
                    return gv
                scale = (g_var[:, None] * m + g_fix[:, None]) * g_disc[:, None]
                return np.divide(gv, scale, out=gv, where=g_coin[:, None])

            skew = (vdir == LINEAR) | (vdir == ABS)
            # every scenario in one (rows x options) array: now, the grid (skew scenarios keep spot unchanged), and
            # the basis contingency's two forward shocks at today's vol
            mult = np.concatenate(([1.0], np.where(skew, 1.0, spot_mult), [c.basis_up, c.basis_down]))
            keys = (NONE, *vdir.tolist(), NONE, NONE)
            series = np.stack([s_f, s_k, s_t, s_ts, s_disc, o_fix[first_s], o_call[first_s], sigma], axis=1)
            unit_values = _unit_values(self._unit, prm, series, mult, keys, skew.any())
            # (options, rows) values: each series' unit prices gathered to its positions (rows of the (series, rows)
            # transpose) and scaled by their qty (the products the position-by-position pricer makes)
            priced = unit_values.T[ser]
            priced *= o_q[:, None]
            # group values and scenario PnL kept (groups, rows), the layout the group sum's sparse product makes and
            # reads: no transposing copy on either side (the same elementwise operations, so the same bits)
            gv = native(_grid_sum(grp, priced.T, n_g).T, mult[None, :])
            mtm_g, gv_s = gv[:, 0], gv[:, 1 : n_s + 1]
            opt_mtm = _bc(g_acct, mtm_g, n)
            if (pos_disc == 1.0).all() and (neg_disc == 1.0).all():  # v * 1.0 is v: no haircut to apply by sign
                gp = gv_s - mtm_g[:, None]
            else:
                gp = np.where(gv_s >= 0, gv_s * pos_disc[:, None], gv_s * neg_disc[:, None]) - mtm_g[:, None]
            gp *= damp
            gp[:, skew] = -np.abs(gp[:, skew])  # PMRMLib_2: worst of the rotation and its mirror per expiry
            pnl += _grid_sum(g_acct, gp.T, n)
            if c.basis_enabled:  # PMRMLib basis contingency, one value per expiry
                up, dn = gv[:, n_s + 1] - mtm_g, gv[:, n_s + 2] - mtm_g
                basis = _bc(g_acct, np.minimum(np.minimum(up, dn), 0.0) * (c.basis_add + c.basis_mult * g_t), n)
            # naked shorts per strike per expiry, calls and puts pooled (PMRMLib _getOptionContingency)
            net = _bc(og.sk, o_q, og.sk_acct.size)
            naked = _bc(og.sk_acct, np.maximum(-net, 0.0), n)
            # confidence per expiry: min(spot, perp if held, forward, rate, vol) on the gross option count
            o_conf = np.minimum(
                np.minimum(pts.forward_confidence[opt], pts.rate_confidence[opt]), pts.vol_confidence[opt]
            )
            o_conf = np.minimum(o_conf, mkt.vol_confidences(unds, np.full(opt.size, u, dtype=np.int64), o_k, o_ts))
            g_conf = np.ones(n_g)
            np.minimum.at(g_conf, grp, o_conf)
            g_conf = np.minimum(g_conf, c_d1[g_acct])
            g_gross = _bc(grp, np.abs(o_q), n_g)
            low = g_conf < c.conf_threshold
            if low.any():
                opt_conf = _bc(g_acct[low], conf_factor(g_conf[low], c.conf_margin) * g_gross[low] * spot, n)
        if prm.extended_factor != 1.0 or prm.extended_dampener_usd > 0.0:
            pnl = self._extended(pnl, tail, move, prm)

        # contingencies (USD per account), then in each account's currency
        notional_base = rows.base_units * spot  # PMRMLib addPrecomputes: basePosition * basePercent * spot
        d1_notional = (rows.d1_units + rows.base_units) * spot
        low = c_d1 < c.conf_threshold
        conf_d1 = np.zeros(n)
        if low.any():
            conf_d1[low] = conf_factor(c_d1[low], c.conf_margin) * d1_notional[low]
        floor = self._floor(pf, sel, acct, kind, rows.units, fwd, t_y, mkt, u, spot, rate, n, prm)
        to_native = np.where(coin_acct, 1.0 / spot if spot > 0 else 0.0, 1.0)
        return _UnderlyingRisk(
            pnl=pnl,
            basis=basis,
            mtm=rows.mtm + rows.funding + rows.collateral + opt_mtm,
            naked_mm=naked * spot * c.option_pct_mm * to_native,
            naked_im=naked * spot * c.option_pct_im * to_native,
            delta1_mm=(rows.d1_units * spot * c.perp_pct_mm + notional_base * c.base_pct_mm) * to_native,
            delta1_im=(rows.d1_units * spot * c.perp_pct_im + notional_base * c.base_pct_im) * to_native,
            coll_mm=rows.coll_mm * to_native,
            coll_im=rows.coll_im * to_native,
            confidence=(conf_d1 + opt_conf + rows.coll_conf) * to_native,
            roll=rows.roll * to_native,
            floor=floor * to_native,
            parts={"options": opt_mtm, "delta1": rows.mtm, "collateral": rows.collateral, "funding": rows.funding},
        )

    @staticmethod
    def _extended(pnl: FloatArray, tail: npt.NDArray[np.bool_], move: FloatArray, prm: ScenarioPMParams) -> FloatArray:
        """Deribit extended table: count extended_factor of tail PnL, then move losses toward 0 by
        min((|move|/price_range - 1) * extended_dampener, |PnL|) [3P oreome replicator, unverified]. Writes the tail
        rows of `pnl` in place and returns it (the caller's own (S, N) array: no copy of the rows that stay)."""
        rows = pnl[tail] * prm.extended_factor  # only tail rows change: the other rows' adjustment is 0
        if prm.extended_dampener_usd > 0.0 and prm.extended_price_range:
            adj = np.maximum(np.abs(move[tail]) / prm.extended_price_range - 1.0, 0.0) * prm.extended_dampener_usd
            rows = np.where(rows < 0, np.minimum(rows + adj[:, None], 0.0), rows)
        pnl[tail] = rows
        return pnl

    @staticmethod
    def _floor(
        pf: Portfolio,
        sel: IntArray,
        acct: IntArray,
        kind: npt.NDArray[np.int8],
        units: FloatArray,
        fwd: FloatArray,
        t_y: FloatArray,
        mkt: MarketState,
        u: int,
        spot: float,
        rate: FloatArray,
        n: int,
        prm: ScenarioPMParams,
    ) -> FloatArray:
        """Floor charges (USD): Paradex min delta, OKX MR7 minimum charge with size multiplier tiers."""
        c = prm.contingency
        out = np.zeros(n)
        opt = (kind == CALL) | (kind == PUT)
        qty = np.where(opt, pf.qty[sel], units)  # delta-1 rows in units of the underlying
        if c.min_delta_net_pct > 0 or c.min_delta_hedged_pct > 0:
            dlt = qty.astype(np.float64).copy()  # delta-1: one unit of underlying each
            if opt.any():
                k, ts = pf.strike[sel][opt], pf.expiry_s[sel][opt]
                sig = mkt.vols(pf.underlyings, np.full(int(opt.sum()), u, dtype=np.int64), k, ts, fwd[opt])
                g = greeks(fwd[opt], k, t_y[opt], sig, kind[opt] == CALL, np.exp(-rate[opt] * t_y[opt]))
                dlt[opt] = qty[opt] * g.delta * fwd[opt] / spot  # spot delta = dV/dF * F/S
            longs, shorts = _bc(acct, np.maximum(dlt, 0), n), _bc(acct, np.maximum(-dlt, 0), n)
            out = (
                c.min_delta_net_pct * np.abs(longs - shorts) + c.min_delta_hedged_pct * np.minimum(longs, shorts)
            ) * spot
        if c.min_charge_delta1_rate > 0 or c.min_charge_option_rate > 0:
            d1 = np.isin(kind, (PERP, FUTURE, INVERSE_PERP, INVERSE_FUTURE))
            rate_w = np.where(d1, c.min_charge_delta1_rate, np.where(opt, c.min_charge_option_rate, 0.0))
            raw = _bc(acct, np.abs(qty) * spot * rate_w, n)
            out = np.maximum(out, raw * c.min_charge_multiplier(raw))
        return out

    # ------------------------------------------------------------------ all underlyings
    def _risks(self, pf: Portfolio, mkt: MarketState) -> list[tuple[_UnderlyingRisk, ScenarioPMParams]]:
        # underlyings held or margining an account, ascending (codes validated by Portfolio: und 0..U-1, numeraire
        # USD or 0..U-1), from counts rather than a sort of every position
        n_u = len(pf.underlyings)
        held = np.bincount(pf.und, minlength=n_u) + np.bincount(pf.numeraire[pf.numeraire != USD], minlength=n_u)
        present = np.flatnonzero(held).tolist()
        risks = {u: self._underlying(pf, mkt, u, self.params_for(pf.underlyings[u])) for u in present}
        if not (self.params.cross_underlying == "offset" and len(present) > 1):
            return [(risks[u], self.params_for(pf.underlyings[u])) for u in present]
        sizes = {risks[u].pnl.shape[0] for u in present}
        if len(sizes) != 1:
            raise ValueError(f"cross_underlying='offset' needs equal scenario counts per underlying, got {sizes}")
        pu = {u: self.params_for(pf.underlyings[u]) for u in present}  # Deribit pnl_offset per currency
        agg = sum(
            (
                np.minimum(risks[u].pnl, 0)
                + np.minimum(pu[u].gains_offset * np.maximum(risks[u].pnl, 0), pu[u].max_offsetable_pnl)
                for u in present
            ),
            np.zeros_like(risks[present[0]].pnl),
        )
        summed: dict[str, Any] = {
            f: sum((getattr(risks[u], f) for u in present), np.zeros(pf.n_accounts)) for f in _UnderlyingRisk._SUMMED
        }
        parts = {k: sum((risks[u].parts[k] for u in present), np.zeros(pf.n_accounts)) for k in risks[present[0]].parts}
        return [(_UnderlyingRisk(pnl=agg, parts=parts, **summed), self.params)]

    def requirements(self, pf: Portfolio, mkt: MarketState) -> MarginResult:
        """IM, MM, equity and drivers for every account of `pf` at market state `mkt` (USD; native_* drivers
        and MarginResult.exact in each account's margin currency)."""
        n = pf.n_accounts
        coin = pf.numeraire != USD
        to_usd = np.ones(n)
        for u in np.unique(pf.numeraire[coin]):
            to_usd[pf.numeraire == u] = mkt.scalars(pf.underlyings[int(u)])[0]
        cash_native = np.where(coin, pf.cash / np.where(to_usd > 0, to_usd, 1.0), pf.cash)
        mm, im, equity = np.zeros(n), np.zeros(n), cash_native.astype(np.float64).copy()
        drv = {k: np.zeros(n) for k in _DRIVERS}
        parts: dict[str, FloatArray] = {k: np.zeros(n) for k in ("options", "delta1", "collateral", "funding")}
        parts["cash"] = cash_native.copy()
        worst_idx = np.full(n, -1, dtype=np.int64)
        best_loss = np.zeros(n)
        groups = self._risks(pf, mkt)
        exact = self.params.exact
        if exact:
            w_mm = np.array([0] * n, dtype=object)
            w_im = np.array([0] * n, dtype=object)
        for r, prm in groups:
            s_min = r.pnl.min(axis=0) if r.pnl.size else np.zeros(n)
            s_arg = r.pnl.argmin(axis=0) if r.pnl.size else np.zeros(n, dtype=np.int64)
            worst = np.minimum(np.minimum(s_min, r.basis), 0.0)
            loss = -worst
            idx = np.where(r.basis < s_min, r.pnl.shape[0], s_arg)  # index S = the basis floor scenario
            take = loss > best_loss
            worst_idx, best_loss = np.where(take, idx, worst_idx), np.where(take, loss, best_loss)
            static_mm = r.naked_mm + r.delta1_mm + r.coll_mm
            static_im = r.naked_im + r.delta1_im + r.coll_im
            risk = loss + r.roll + (static_mm if prm.static_inside_factor else 0.0)
            risk = np.maximum(risk, r.floor)
            f_im = prm.im_factor_for(mkt.stable_price)
            outside_mm = np.zeros(n) if prm.static_inside_factor else static_mm
            mm += prm.mm_factor * risk + outside_mm
            im += f_im * risk + outside_mm + static_im + r.confidence
            if exact:
                dm, di = _exact_group(r, prm, float(mkt.stable_price), static_mm, static_im)
                w_mm, w_im = w_mm + dm, w_im + di
            equity += r.mtm
            for k, v in r.parts.items():
                parts[k] = parts.get(k, np.zeros(n)) + v
            for k, v in (
                ("worst_loss_usd", loss),
                ("basis_usd", -r.basis),
                ("naked_short_usd", r.naked_mm),
                ("naked_short_im_usd", r.naked_im),
                ("perp_base_usd", r.delta1_mm),
                ("perp_base_im_usd", r.delta1_im),
                ("collateral_haircut_usd", r.coll_mm),
                ("collateral_haircut_im_usd", r.coll_im),
                ("confidence_usd", r.confidence),
                ("roll_usd", r.roll),
                ("floor_charge_usd", r.floor),
            ):
                drv[k] += v
        for k in _DRIVERS:  # the named USD drivers are USD for every account
            drv[k] = drv[k] * to_usd
        out: dict[str, npt.NDArray[Any]] = dict(drv)
        out["worst_scenario"] = worst_idx
        out["contingency_static_mm_usd"] = drv["naked_short_usd"] + drv["perp_base_usd"] + drv["collateral_haircut_usd"]
        exact_out: dict[str, tuple[int, ...]] = {}
        if exact:
            w_eq = fx.wei_array(equity)
            nat_mm, nat_im = w_eq - w_mm, w_eq - w_im
            exact_out = {
                "im": tuple(int(v) for v in w_im),
                "mm": tuple(int(v) for v in w_mm),
                "equity": tuple(int(v) for v in w_eq),
                "native_margin_mm": tuple(int(v) for v in nat_mm),
                "native_margin_im": tuple(int(v) for v in nat_im),
            }
            mm, im, equity = fx.to_float(w_mm), fx.to_float(w_im), fx.to_float(w_eq)
        out["native_margin_mm"] = equity - mm
        out["native_margin_im"] = equity - im
        out["native_mm"], out["native_im"], out["native_equity"] = mm, im, equity
        currency = tuple(pf.margin_currency(i) for i in range(n)) if coin.any() else ()
        return MarginResult(
            im=im * to_usd,
            mm=mm * to_usd,
            equity=equity * to_usd,
            drivers=out,
            model=self.name,
            equity_parts=parts,
            currency=currency,
            exact=exact_out,
        )

    def scenario_pnl(self, pf: Portfolio, mkt: MarketState, underlying: str) -> FloatArray:
        """(S, N) scenario PnL of one underlying's positions (the risk array, for reports and tests), in each
        account's margin currency (USD unless coin-margined)."""
        u = pf.underlyings.index(underlying)
        return self._underlying(pf, mkt, u, self.params_for(underlying)).pnl


_GROUP_SUMS = GroupSums()  # the groupings' sparse matrices, shared by every model (keyed by the grouping's bytes)


def _grid_sum(idx: IntArray, w: FloatArray, n: int) -> FloatArray:
    """(R, n) sums of each row of w (R, k) over the groups idx (k,): each bin adds its members in the same order as
    a bincount of that row alone (bit-identical; group_sum.GroupSums keeps each book's grouping matrix). Handed on
    as GroupSums gives it, a transposed view of the sparse product's (n, R) array above its size threshold:
    `_underlying` passes w as the transpose of a (k, R) array and reads the sums back in the (n, R) layout, so no
    transposing copy is made on either side."""
    return _GROUP_SUMS(idx, w, n)


def _refuse_worthless_coin(
    name: str,
    spot: float,
    acct: IntArray,
    kind: npt.NDArray[np.int8],
    coin_pos: npt.NDArray[np.bool_],
    fwd: FloatArray,
    t_s: FloatArray,
) -> None:
    """A coin-margined account is valued in its coin (value / price), so it has no finite value where its coin's
    price is <= 0: refuse a spot <= 0, and a forward <= 0 at an option or future it holds. A forward F > 0 stays
    > 0 in every scenario (F' = (F - fixed) * m + fixed with 0 <= fixed <= F, ForwardCurve; grid multipliers m and
    basis multipliers >= 1e-9, ScenarioGrid and ContingencyParams)."""
    rule = f"coin-margined portfolios need {name}'s spot and every scenario forward > 0 (moves > -100%)"
    if not spot > 0:
        raise ValueError(
            f"spot[{name!r}]={spot} USD takes {name} to a price of 0 for coin-margined accounts (numeraire {name}), "
            f"which have no finite value in {name} there: {rule}"
        )
    bad = np.flatnonzero(coin_pos & np.isin(kind, (CALL, PUT, FUTURE, INVERSE_FUTURE)) & ~(fwd > 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"forward of {name} at expiry {t_s[i]:g} s = {fwd[i]} USD (MarketState.forwards[{name!r}]) takes {name} to "
            f"a forward of 0 in every scenario for account {int(acct[i])} (numeraire {name}), which holds an option "
            f"or future of that expiry: {rule}"
        )


def _exact_group(
    r: _UnderlyingRisk, prm: ScenarioPMParams, stable: float, static_mm: FloatArray, static_im: FloatArray
) -> tuple[fx.ObjArray, fx.ObjArray]:
    """(MM, IM) of one group in wei with Solidity truncation (PMRMLib_2 getMarginAndMarkToMarket:
    minSPAN = min(basis, min_s PnL_s); minSPAN * factor truncates toward zero; contingencies subtracted)."""
    n = r.basis.shape[0]
    zero = np.array([0] * n, dtype=object)
    worst = fx.minimum(fx.wei_array(r.basis), zero)
    if r.pnl.size:
        w_pnl = fx.wei_array(r.pnl)
        for s in range(w_pnl.shape[0]):
            worst = fx.minimum(worst, w_pnl[s])
    risk = -worst + fx.wei_array(r.roll) + (fx.wei_array(static_mm) if prm.static_inside_factor else zero)
    risk = fx.maximum(risk, fx.wei_array(r.floor))
    c = prm.contingency
    f_im = fx.wei_param(prm.im_factor)
    if (
        stable < c.peg_threshold
    ):  # PMRMLib_2 _getMarginAndMarkToMarket: imFactor += (threshold - stable) * pegLossFactor
        f_im += fx.mul(fx.wei_param(c.peg_threshold) - fx.wei(stable), fx.wei_param(c.peg_factor))
    outside = zero if prm.static_inside_factor else fx.wei_array(static_mm)
    mm = fx.mul(risk, fx.wei_param(prm.mm_factor)) + outside
    im = fx.mul(risk, f_im) + outside + fx.wei_array(static_im) + fx.wei_array(r.confidence)
    return mm, im
