"""Generic scenario-grid portfolio margin (SPAN-like), vectorised over all positions, accounts and scenarios.

For each underlying: PnL_s = damp_s * sum[V(shocked) - V(now)] over positions by full Black-76 revaluation,
worst = min(min_s PnL_s, basis floor, 0); then factors and contingencies (docs/margin-methods.md section 0):
    risk = -worst + roll [+ static if static_inside_factor];  risk = max(risk, floor charge)
    MM = mm_factor * risk [+ static_mm];  IM = im_factor_eff * risk [+ static_mm + static_im] + confidence
which reproduces Lyra PMRM v1, Derive PM2, Deribit PM, Paradex and OKX PM with the presets in presets_pm.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from defistress.protocols.margin.black76 import SECONDS_PER_YEAR, ForwardShockPricer, greeks
from defistress.protocols.margin.portfolio import CALL, FUTURE, PERP, PUT, SPOT, MarketState, Portfolio
from defistress.protocols.margin.result import MarginResult
from defistress.protocols.margin.scenario_params import ABS, DOWN, LINEAR, NONE, UP, ScenarioGrid, ScenarioPMParams  # noqa: F401


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense group ids for int64 keys: (unique keys, inverse)."""
    if keys.size == 0:
        return keys, keys
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv


def _bc(idx: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(idx, weights=w, minlength=n)[:n] if idx.size else np.zeros(n)


@dataclass
class _UnderlyingRisk:
    """Per-account figures of one underlying (arrays of shape (N,) unless noted)."""

    pnl: np.ndarray  # (S, N) scenario PnL USD
    basis: np.ndarray  # basis floor-scenario PnL (<= 0) USD
    mtm: np.ndarray  # mark-to-market of the underlying's positions USD
    naked_mm: np.ndarray
    naked_im: np.ndarray
    delta1_mm: np.ndarray
    delta1_im: np.ndarray
    confidence: np.ndarray
    roll: np.ndarray
    floor: np.ndarray


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
        spot, rate, perp_px, conf = mkt.scalars(unds[u])
        stable = float(mkt.stable_price)
        grid, c = prm.grid, prm.contingency
        acct, kind, qty = pf.account[sel], pf.kind[sel], pf.qty[sel]
        t_s = pf.expiry_s[sel]
        t_y = t_s / SECONDS_PER_YEAR
        fwd = spot * np.exp(rate * t_y)
        spot_mult = np.asarray(grid.spot)
        damp = np.asarray(grid.dampening)
        vdir = np.asarray(grid.vol)
        tail = np.asarray(grid.tail)
        n_s = spot_mult.size

        # delta-1 exposures (USD per unit of relative move) and marks
        is_perp, is_fut, is_spot = kind == PERP, kind == FUTURE, kind == SPOT
        mark = np.where(is_perp, perp_px, np.where(is_fut, fwd, spot / stable))  # PMRMLib: base value / stable
        entry = pf.entry_price[sel]
        d1_mask = is_perp | is_fut | is_spot
        expo = _bc(acct[d1_mask], qty[d1_mask] * mark[d1_mask], n)
        upnl = np.where(is_spot, qty * mark, qty * (mark - np.where(entry > 0, entry, mark)))  # entry 0 => at mark
        mtm = _bc(acct[d1_mask], upnl[d1_mask], n)
        move = spot_mult - 1.0
        d1_move = move
        if prm.extended_price_range is not None:  # Deribit: delta-1 extended vector = PnL at +-price_range
            r = prm.extended_price_range
            d1_move = np.where(tail, np.clip(move, -r, r), move)
        pnl = (d1_move * damp)[:, None] * expo[None, :]

        # options, grouped per (account, expiry)
        opt = np.flatnonzero((kind == CALL) | (kind == PUT))
        basis = np.zeros(n)
        naked = np.zeros(n)
        net_opts = np.zeros(n)
        if opt.size:
            o_acct, o_q, o_k, o_t, o_ts, o_f = acct[opt], qty[opt], pf.strike[sel][opt], t_y[opt], t_s[opt], fwd[opt]
            o_call = kind[opt] == CALL
            sigma = mkt.vols(unds, np.full(opt.size, u), o_k, o_ts, o_f)
            disc = np.exp(-rate * o_t) if prm.discount_option_prices else np.ones(opt.size)  # PMRMLib_2: discount
            e_uniq, e_code = _group(o_ts)
            g_keys, grp = _group(o_acct * max(e_uniq.size, 1) + e_code)
            n_g = g_keys.size
            g_acct = g_keys // max(e_uniq.size, 1)
            g_t = e_uniq[g_keys % max(e_uniq.size, 1)] / SECONDS_PER_YEAR
            disc_g = np.exp(-rate * g_t) if prm.discount_option_prices else np.ones(n_g)
            pos_disc, neg_disc = prm.discount.factors(g_t, rate, disc_g)
            pricer = ForwardShockPricer(o_f, o_k, o_t, o_call, o_q, disc)
            mtm_g = _bc(grp, pricer.values(1.0, sigma, "none"), n_g)
            mtm += _bc(g_acct, mtm_g, n)
            up_m, down_m = prm.vol_shock.multipliers(o_ts)
            vols = {NONE: sigma, UP: np.maximum(prm.vol_shock.min_vol_up, sigma * up_m), DOWN: sigma * down_m}
            if prm.skew is not None and ((vdir == LINEAR) | (vdir == ABS)).any():
                logk = np.log(np.where(o_k > 0, o_k, 1.0) / o_f)  # PMRMLib_2 _getExpirySkewedShockedMTM: k = ln(K/F)
                vols[LINEAR] = sigma * prm.skew.multiplier(logk, o_t, linear=True)
                vols[ABS] = sigma * prm.skew.multiplier(np.abs(logk), o_t, linear=False)
            for s in range(n_s):
                d = int(vdir[s])
                m = 1.0 if d in (LINEAR, ABS) else float(spot_mult[s])  # skew scenarios keep spot unchanged
                gv = _bc(grp, pricer.values(m, vols[d], d), n_g)
                gp = (np.where(gv >= 0, gv * pos_disc, gv * neg_disc) - mtm_g) * damp[s]
                if d in (LINEAR, ABS):
                    gp = -np.abs(gp)  # PMRMLib_2: worst of the rotation and its mirror per expiry
                pnl[s] += _bc(g_acct, gp, n)
            if c.basis_enabled:  # PMRMLib basis contingency, one value per expiry
                up = _bc(grp, pricer.values(c.basis_up, sigma, NONE), n_g) - mtm_g
                dn = _bc(grp, pricer.values(c.basis_down, sigma, NONE), n_g) - mtm_g
                basis = _bc(g_acct, np.minimum(np.minimum(up, dn), 0.0) * (c.basis_add + c.basis_mult * g_t), n)
            # naked shorts per strike per expiry, calls and puts pooled (PMRMLib _getOptionContingency)
            k_uniq, k_code = _group(o_k)
            sk_keys, sk = _group(grp * max(k_uniq.size, 1) + k_code)
            net = _bc(sk, o_q, sk_keys.size)
            naked = _bc(g_acct[sk_keys // max(k_uniq.size, 1)], np.maximum(-net, 0.0), n)
            net_opts = _bc(o_acct, np.abs(o_q), n)
        if prm.extended_factor != 1.0 or prm.extended_dampener_usd > 0.0:
            pnl = self._extended(pnl, tail, move, prm)

        # contingencies (USD per account)
        d1_abs = _bc(acct[is_perp | is_fut], np.abs(qty[is_perp | is_fut]), n)
        base_abs = _bc(acct[is_spot], np.abs(qty[is_spot]), n)
        notional_base = base_abs * spot / stable
        conf_amt = (d1_abs + base_abs + net_opts) * spot
        confidence = ((1.0 - conf) * c.conf_margin * conf_amt) if conf < c.conf_threshold else np.zeros(n)
        roll_w = np.maximum(c.roll_min_move, c.roll_annual_move * np.where(is_fut, t_y, 0.0))  # Deribit roll_shock
        roll_mask = (is_perp | is_fut | is_spot) if c.roll_includes_spot else (is_perp | is_fut)
        roll = _bc(acct[roll_mask], (np.abs(qty) * mark * roll_w)[roll_mask], n)
        floor = self._floor(pf, sel, acct, kind, qty, fwd, t_y, mkt, u, spot, rate, n, prm)
        return _UnderlyingRisk(
            pnl=pnl,
            basis=basis,
            mtm=mtm,
            naked_mm=naked * spot * c.option_pct_mm,
            naked_im=naked * spot * c.option_pct_im,
            delta1_mm=d1_abs * spot * c.perp_pct_mm + notional_base * c.base_pct_mm,
            delta1_im=d1_abs * spot * c.perp_pct_im + notional_base * c.base_pct_im,
            confidence=confidence,
            roll=roll,
            floor=floor,
        )

    @staticmethod
    def _extended(pnl, tail, move, prm: ScenarioPMParams) -> np.ndarray:
        """Deribit extended table: count extended_factor of tail PnL, then move losses toward 0 by
        min((|move|/price_range - 1) * extended_dampener, |PnL|) [3P oreome replicator, unverified]."""
        out = pnl.copy()
        out[tail] *= prm.extended_factor
        if prm.extended_dampener_usd > 0.0 and prm.extended_price_range:
            adj = np.maximum(np.abs(move) / prm.extended_price_range - 1.0, 0.0) * prm.extended_dampener_usd
            adj = np.where(tail, adj, 0.0)[:, None]
            out = np.where(out < 0, np.minimum(out + adj, 0.0), out)
        return out

    @staticmethod
    def _floor(pf, sel, acct, kind, qty, fwd, t_y, mkt, u, spot, rate, n, prm: ScenarioPMParams) -> np.ndarray:
        """Floor charges: Paradex min delta, OKX MR7 minimum charge with size multiplier tiers."""
        c = prm.contingency
        out = np.zeros(n)
        if c.min_delta_net_pct > 0 or c.min_delta_hedged_pct > 0:
            opt = (kind == CALL) | (kind == PUT)
            dlt = qty.astype(np.float64).copy()  # delta-1: one unit of underlying each
            if opt.any():
                k, ts = pf.strike[sel][opt], pf.expiry_s[sel][opt]
                sig = mkt.vols(pf.underlyings, np.full(int(opt.sum()), u), k, ts, fwd[opt])
                g = greeks(fwd[opt], k, t_y[opt], sig, kind[opt] == CALL, np.exp(-rate * t_y[opt]))
                dlt[opt] = qty[opt] * g.delta * fwd[opt] / spot  # spot delta = dV/dF * F/S
            longs, shorts = _bc(acct, np.maximum(dlt, 0), n), _bc(acct, np.maximum(-dlt, 0), n)
            out = (
                c.min_delta_net_pct * np.abs(longs - shorts) + c.min_delta_hedged_pct * np.minimum(longs, shorts)
            ) * spot
        if c.min_charge_delta1_rate > 0 or c.min_charge_option_rate > 0:
            d1 = (kind == PERP) | (kind == FUTURE)
            rate_w = np.where(
                d1, c.min_charge_delta1_rate, np.where((kind == CALL) | (kind == PUT), c.min_charge_option_rate, 0.0)
            )
            raw = _bc(acct, np.abs(qty) * spot * rate_w, n)
            out = np.maximum(out, raw * c.min_charge_multiplier(raw))
        return out

    # ------------------------------------------------------------------ all underlyings
    def requirements(self, pf: Portfolio, mkt: MarketState) -> MarginResult:
        """IM, MM, equity and drivers for every account of `pf` at market state `mkt`."""
        n = pf.n_accounts
        zeros = lambda: np.zeros(n)  # noqa: E731
        mm, im, equity = zeros(), zeros(), pf.cash.astype(np.float64).copy()
        drv = {
            k: zeros()
            for k in (
                "worst_loss_usd",
                "basis_usd",
                "naked_short_usd",
                "naked_short_im_usd",
                "perp_base_usd",
                "perp_base_im_usd",
                "confidence_usd",
                "roll_usd",
                "floor_charge_usd",
            )
        }
        worst_idx = np.full(n, -1, dtype=np.int64)
        best_loss = zeros()
        present = [u for u in range(len(pf.underlyings)) if (pf.und == u).any()]
        risks = {u: self._underlying(pf, mkt, u, self.params_for(pf.underlyings[u])) for u in present}
        offset = self.params.cross_underlying == "offset" and len(present) > 1
        if offset:
            sizes = {risks[u].pnl.shape[0] for u in present}
            if len(sizes) != 1:
                raise ValueError(f"cross_underlying='offset' needs equal scenario counts per underlying, got {sizes}")
            p = self.params
            pu = {u: self.params_for(pf.underlyings[u]) for u in present}  # Deribit pnl_offset per currency
            agg = sum(
                np.minimum(risks[u].pnl, 0)
                + np.minimum(pu[u].gains_offset * np.maximum(risks[u].pnl, 0), pu[u].max_offsetable_pnl)
                for u in present
            )
            merged = _UnderlyingRisk(
                agg,
                *[
                    sum(getattr(risks[u], f) for u in present)
                    for f in (
                        "basis",
                        "mtm",
                        "naked_mm",
                        "naked_im",
                        "delta1_mm",
                        "delta1_im",
                        "confidence",
                        "roll",
                        "floor",
                    )
                ],
            )
            groups = [(merged, p)]
        else:
            groups = [(risks[u], self.params_for(pf.underlyings[u])) for u in present]
        for r, prm in groups:
            s_min = r.pnl.min(axis=0) if r.pnl.size else zeros()
            s_arg = r.pnl.argmin(axis=0) if r.pnl.size else np.zeros(n, dtype=np.int64)
            worst = np.minimum(np.minimum(s_min, r.basis), 0.0)
            loss = -worst
            idx = np.where(r.basis < s_min, r.pnl.shape[0], s_arg)  # index S = the basis floor scenario
            take = loss > best_loss
            worst_idx, best_loss = np.where(take, idx, worst_idx), np.where(take, loss, best_loss)
            static_mm = r.naked_mm + r.delta1_mm
            static_im = r.naked_im + r.delta1_im
            risk = loss + r.roll + (static_mm if prm.static_inside_factor else 0.0)
            risk = np.maximum(risk, r.floor)
            f_im = prm.im_factor_for(mkt.stable_price)
            outside_mm = 0.0 if prm.static_inside_factor else static_mm
            mm += prm.mm_factor * risk + outside_mm
            im += f_im * risk + outside_mm + static_im + r.confidence
            equity += r.mtm
            for k, v in (
                ("worst_loss_usd", loss),
                ("basis_usd", -r.basis),
                ("naked_short_usd", r.naked_mm),
                ("naked_short_im_usd", r.naked_im),
                ("perp_base_usd", r.delta1_mm),
                ("perp_base_im_usd", r.delta1_im),
                ("confidence_usd", r.confidence),
                ("roll_usd", r.roll),
                ("floor_charge_usd", r.floor),
            ):
                drv[k] += v
        drv["worst_scenario"] = worst_idx
        drv["contingency_static_mm_usd"] = drv["naked_short_usd"] + drv["perp_base_usd"]
        drv["native_margin_mm"] = equity - mm
        drv["native_margin_im"] = equity - im
        return MarginResult(im=im, mm=mm, equity=equity, drivers=drv, model=self.name)

    def scenario_pnl(self, pf: Portfolio, mkt: MarketState, underlying: str) -> np.ndarray:
        """(S, N) USD scenario PnL of one underlying's positions (the risk array, for reports and tests)."""
        u = pf.underlyings.index(underlying)
        return self._underlying(pf, mkt, u, self.params_for(underlying)).pnl
