"""The scenario-grid engine's option valuation per distinct series (scenario_pm._option_series, _unit_values) and its
present-underlyings count, bit for bit against the code they replaced: `ReferencePM` keeps the position-by-position
`_underlying` (every position's vol, discount and vol-shock multipliers; ForwardShockPricer over the positions) and
the np.unique-based `_risks` as they were, and every requirement figure must match it to the last bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from defistress.protocols.margin.black76 import SECONDS_PER_YEAR, ForwardShockPricer
from defistress.protocols.margin.exact import conf_factor
from defistress.protocols.margin.forward_curve import ForwardCurve
from defistress.protocols.margin.portfolio import CALL, PUT, USD, MarketState, Portfolio
from defistress.protocols.margin.presets_pm import PRESETS
from defistress.protocols.margin.scenario_delta1 import bincount as _bc
from defistress.protocols.margin.scenario_delta1 import delta1_rows
from defistress.protocols.margin.scenario_params import ABS, DOWN, LINEAR, NONE, UP, ScenarioPMParams
from defistress.protocols.margin.scenario_pm import (
    ScenarioPM,
    _grid_sum,
    _option_groups,
    _option_series,
    _refuse_worthless_coin,
    _UnderlyingRisk,
    _unit_values,
)
from defistress.protocols.vol import CoupledVolSurface, VolSurfaceParams

FloatArray = npt.NDArray[np.float64]


class ReferencePM(ScenarioPM):
    """ScenarioPM with the position-by-position `_underlying` and the np.unique `_risks` it had before."""

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
            sigma = mkt.vols(unds, np.full(opt.size, u, dtype=np.int64), o_k, o_ts, o_f)
            disc = np.exp(-o_r * o_t) if prm.discount_option_prices else np.ones(opt.size)  # PMRMLib_2 discount
            og = _option_groups(self._groups, o_acct, o_ts, o_k)
            grp, g_acct, first = og.grp, og.g_acct, og.first
            n_g = g_acct.size
            g_t, g_rate, g_disc = o_t[first], o_r[first], disc[first]
            g_var, g_fix = o_f[first] - o_fix[first], o_fix[first]
            pos_disc, neg_disc = prm.discount.factors(g_t, g_rate, g_disc)
            pricer = ForwardShockPricer(o_f, o_k, o_t, o_call, o_q, disc, fixed=o_fix)
            g_coin = coin_acct[g_acct]

            def native(gv: FloatArray, m: FloatArray) -> FloatArray:
                """Group values in the account's currency: coin = USD / (F' * D) (Deribit: BS(F) / F); F' > 0 for
                every coin group (_refuse_worthless_coin); a USD-only book is returned as it is."""
                if not g_coin.any():
                    return gv
                return np.divide(gv, (g_var * m + g_fix) * g_disc, out=gv, where=g_coin)

            up_m, down_m = prm.vol_shock.multipliers(o_ts)
            vols = {NONE: sigma, UP: np.maximum(prm.vol_shock.min_vol_up, sigma * up_m), DOWN: sigma * down_m}
            skew = (vdir == LINEAR) | (vdir == ABS)
            if prm.skew is not None and skew.any():
                logk = np.log(np.where(o_k > 0, o_k, 1.0) / o_f)  # PMRMLib_2 _getExpirySkewedShockedMTM: k = ln(K/F)
                vols[LINEAR] = sigma * prm.skew.multiplier(logk, o_t, linear=True)
                vols[ABS] = sigma * prm.skew.multiplier(np.abs(logk), o_t, linear=False)
            # every scenario in one (rows x options) array: now, the grid (skew scenarios keep spot unchanged), and
            # the basis contingency's two forward shocks at today's vol
            mult = np.concatenate(([1.0], np.where(skew, 1.0, spot_mult), [c.basis_up, c.basis_down]))
            keys = (NONE, *vdir.tolist(), NONE, NONE)
            gv = native(_grid_sum(grp, pricer.values_grid(mult, vols, keys), n_g), mult[:, None])
            mtm_g, gv_s = gv[0], gv[1 : n_s + 1]
            opt_mtm = _bc(g_acct, mtm_g, n)
            gp = (np.where(gv_s >= 0, gv_s * pos_disc, gv_s * neg_disc) - mtm_g) * damp[:, None]
            gp[skew] = -np.abs(gp[skew])  # PMRMLib_2: worst of the rotation and its mirror per expiry
            pnl += _grid_sum(g_acct, gp, n)
            if c.basis_enabled:  # PMRMLib basis contingency, one value per expiry
                up, dn = gv[n_s + 1] - mtm_g, gv[n_s + 2] - mtm_g
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

    def _risks(self, pf: Portfolio, mkt: MarketState) -> list[tuple[_UnderlyingRisk, ScenarioPMParams]]:
        present = sorted({int(u) for u in np.unique(pf.und)} | {int(u) for u in np.unique(pf.numeraire) if u != USD})
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


DAY_S = 86_400.0
EXPIRIES_S = (0.0, 3 * DAY_S, 7 * DAY_S + 1.5, 30 * DAY_S, 91 * DAY_S)  # seconds from now; 0 = at expiry
STRIKES_USD = (0.0, 1500.0, 1900.0, 2000.0, 2100.0, 2600.0)


def _book(rng: np.random.Generator, n_acct: int, n_opt: int, n_series: int, coin: bool = False) -> Portfolio:
    """`n_opt` options over `n_series` series (expiry, strike, call/put) of ETH, spread over `n_acct` accounts, a perp
    and a future per fifth account, a BTC perp in account 0; qty with +-0.0 and ties; a third of the accounts margined
    in ETH when `coin` (they hold ETH only)."""
    series = [(t, k, c) for t in EXPIRIES_S for k in STRIKES_USD for c in (CALL, PUT)]
    pick = rng.permutation(len(series))[:n_series]
    s = [series[i] for i in pick[rng.integers(0, n_series, n_opt)]]
    qty = np.round(rng.normal(0.0, 3.0, n_opt), 1)
    qty[::7] = -0.0
    acct = np.sort(rng.integers(0, n_acct, n_opt))
    d1 = np.arange(1, n_acct, 5)
    account = np.concatenate([acct, d1, d1, [0]])
    kind = np.concatenate([[c for _, _, c in s], np.full(d1.size, 1), np.full(d1.size, 2), [1]])
    und = np.concatenate([np.zeros(n_opt + 2 * d1.size, dtype=np.int64), [1]])
    strike = np.concatenate([[k for _, k, _ in s], np.zeros(2 * d1.size + 1)])
    expiry = np.concatenate([[t for t, _, _ in s], np.zeros(d1.size), np.full(d1.size, 30 * DAY_S), [0.0]])
    numeraire = np.full(n_acct, USD, dtype=np.int64)
    if coin:
        numeraire[1::3] = 0
    return Portfolio(
        n_accounts=n_acct,
        underlyings=("ETH", "BTC"),
        account=account,
        kind=kind,
        und=und,
        qty=np.concatenate([qty, rng.normal(0.0, 2.0, 2 * d1.size), [0.5]]),
        strike=strike,
        expiry_s=expiry,
        entry_price=np.concatenate([np.zeros(n_opt), np.full(2 * d1.size, 1950.0), [60_000.0]]),
        cash=np.full(n_acct, 5_000.0),
        numeraire=numeraire,
    )


def _surface() -> CoupledVolSurface:
    """A vol surface after a crash (realised vol above its base: lifted, steeper skew)."""
    surf = CoupledVolSurface(VolSurfaceParams(), 2000.0)
    surf.update(1700.0, 12.0)
    return surf


MARKETS = {
    "flat": MarketState(spot={"ETH": 2000.0, "BTC": 60_000.0}, vol={"ETH": 0.6, "BTC": 0.5}, rate={"ETH": 0.05}),
    "surface": MarketState(spot={"ETH": 1700.0, "BTC": 60_000.0}, vol={"ETH": _surface(), "BTC": 0.5}),
    "curve": MarketState(
        spot={"ETH": 2000.0, "BTC": 60_000.0},
        vol={"ETH": 0.7, "BTC": 0.5},
        forwards={
            "ETH": ForwardCurve(EXPIRIES_S, (2000.0, 2001.0, 2003.0, 2010.0, 2030.0), (0.0, 500.0, 0.0, 0.0, 0.0))
        },
    ),
    "capped": MarketState(spot={"ETH": 2000.0, "BTC": 60_000.0}, vol={"ETH": 40.0, "BTC": 0.5}),  # sigma sqrt(T) >= 24
}
BOOKS = {  # (accounts, options, series): repeated series, every option its own series, a small book
    "repeated": (120, 400, 9),
    "distinct": (40, 70, 60),
    "small": (5, 12, 3),
}


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _assert_same_result(new: Any, ref: Any) -> None:
    for f in ("im", "mm", "equity"):
        assert _same(getattr(new, f), getattr(ref, f)), f
    assert set(new.drivers) == set(ref.drivers) and set(new.equity_parts) == set(ref.equity_parts)
    for k, v in ref.drivers.items():
        assert _same(new.drivers[k], v), k
    for k, v in ref.equity_parts.items():
        assert _same(new.equity_parts[k], v), k


def _params() -> dict[str, ScenarioPMParams]:
    from dataclasses import replace

    from defistress.protocols.margin.scenario_params import StaticDiscountParams

    out = dict(PRESETS)
    base = PRESETS["lyra-pmrm-v1"]
    # unit long factor with a short factor != 1, and the other way round (the haircut by sign must still apply)
    out["long-1-short-1.5"] = replace(base, discount=StaticDiscountParams(long_base=1.0, short_base=1.5))
    out["long-0.9-one-sided"] = replace(base, discount=StaticDiscountParams(long_base=0.9))
    return out


PARAMS = _params()


@pytest.mark.parametrize("market", sorted(MARKETS))
@pytest.mark.parametrize("shape", sorted(BOOKS))
@pytest.mark.parametrize("preset", sorted(PARAMS))
def test_series_valuation_matches_the_position_by_position_reference(preset: str, shape: str, market: str) -> None:
    rng = np.random.default_rng(abs(hash((preset, shape, market))) % 2**32)
    n_acct, n_opt, n_series = BOOKS[shape]
    coin = preset.startswith("deribit")
    pf = _book(rng, n_acct, n_opt, n_series, coin=coin)
    mkt = MARKETS[market]
    prm = PARAMS[preset]
    new, ref = ScenarioPM(prm), ReferencePM(prm)
    for _ in range(2):  # the second valuation of the same book reads the kept unit values
        _assert_same_result(new.requirements(pf, mkt), ref.requirements(pf, mkt))
    # the same book a block later (every expiry 12 s nearer) and with new quantities: new inputs, new values
    later = Portfolio(**{**pf.__dict__, "expiry_s": np.maximum(pf.expiry_s - 12.0, 0.0), "qty": pf.qty * 1.5})
    _assert_same_result(new.requirements(later, mkt), ref.requirements(later, mkt))


def test_option_series_maps_each_option_to_a_member_of_its_series() -> None:
    rng = np.random.default_rng(7)
    ts = rng.choice([0.0, 86_400.0, -0.0 + 3600.0], 200)
    k = rng.choice([0.0, 1000.0, 1000.0000000000002], 200)
    call = rng.random(200) < 0.5
    ser, first = _option_series(ts, k, call)
    assert first.size <= 100 and ser.shape == (200,)
    for a in (ts, k, call):
        assert _same(a[first][ser], a)  # every option equals its series' representative
    reps = set(zip(ts[first].tolist(), k[first].tolist(), call[first].tolist()))
    assert len(reps) == first.size  # and the representatives are distinct
    # below 64 options, or with more than half the options distinct: every option is its own series
    for n in (0, 1, 63):
        ser, first = _option_series(ts[:n], k[:n], call[:n])
        assert _same(ser, np.arange(n)) and _same(first, np.arange(n))
    ts_u = np.arange(200.0)
    ser, first = _option_series(ts_u, k, call)
    assert _same(ser, np.arange(200)) and _same(first, np.arange(200))
    at_min = np.repeat(np.arange(8.0), 8)  # 64 options (the minimum) in 8 series: priced per series
    ser, first = _option_series(at_min, np.ones(64), np.ones(64, dtype=bool))
    assert first.size == 8 and _same(at_min[first][ser], at_min)
    half = np.repeat(np.arange(50.0), 2)  # exactly half distinct: priced per series
    ser, first = _option_series(half, np.ones(100), np.ones(100, dtype=bool))
    assert first.size == 50 and _same(half[first][ser], half)


def _series_cols(n: int, sigma: float) -> np.ndarray:
    t = np.linspace(1.0, 30.0, n) * DAY_S
    cols = [np.full(n, 2000.0), np.linspace(1500.0, 2500.0, n), t / SECONDS_PER_YEAR, t, np.ones(n), np.zeros(n)]
    return np.stack([*cols, (np.arange(n) % 2).astype(np.float64), np.full(n, sigma)], axis=1)


def test_unit_values_are_one_unit_of_each_series_and_kept_by_exact_inputs() -> None:
    prm = PRESETS["derive-pm2"]
    mult = np.array([1.0, 0.9, 1.1, 1.0])
    keys = (NONE, UP, DOWN, LINEAR)
    series = _series_cols(6, 0.6)
    cache: dict[tuple[Any, ...], tuple[ScenarioPMParams, np.ndarray]] = {}
    out = _unit_values(cache, prm, series, mult, keys, True)
    f, k, t, ts, disc, fixed, call, sigma = (np.ascontiguousarray(c) for c in series.T)
    up, down = prm.vol_shock.multipliers(ts)
    assert prm.skew is not None
    logk = np.log(k / f)
    vols = {
        NONE: sigma,
        UP: np.maximum(prm.vol_shock.min_vol_up, sigma * up),
        DOWN: sigma * down,
        LINEAR: sigma * prm.skew.multiplier(logk, t, linear=True),
        ABS: sigma * prm.skew.multiplier(np.abs(logk), t, linear=False),
    }
    pricer = ForwardShockPricer(f, k, t, call == 1.0, np.ones(6), disc, fixed=fixed, dedupe=False)
    assert _same(out, pricer.values_grid(mult, vols, keys))
    assert not out.flags.writeable  # shared between valuations
    assert _unit_values(cache, prm, series.copy(), mult.copy(), keys, True) is out  # equal bytes: kept
    # no skew rows: the skew keys are not priced with a skew
    flat = _unit_values(cache, prm, series, mult[:3], keys[:3], False)
    assert _same(flat, pricer.values_grid(mult[:3], vols, keys[:3]))
    # one bit of one vol, or other params with the same id, give new values
    bumped = series.copy()
    bumped[2, 7] = np.nextafter(bumped[2, 7], 1.0)
    assert _unit_values(cache, prm, bumped, mult, keys, True) is not out
    bumped[2, 7] = 0.9
    assert not _same(_unit_values(cache, prm, bumped, mult, keys, True), out)
    other = PRESETS["lyra-pmrm-v1"]
    key = (id(other), series.tobytes(), mult[:3].tobytes(), keys[:3], False)
    cache[key] = (prm, flat)  # an entry left by params that had other's id
    fresh = _unit_values(cache, other, series, mult[:3], keys[:3], False)
    assert fresh is not flat and cache[key][0] is other
    for i in range(8):  # at most _UNITS_KEPT entries
        _unit_values(cache, prm, _series_cols(6, 0.3 + i / 10), mult, keys, True)
    assert len(cache) == 4


def test_risks_cover_held_and_margining_underlyings_in_order() -> None:
    rng = np.random.default_rng(3)
    pf = _book(rng, 30, 80, 6, coin=True)
    # account 29 margined in BTC, holding nothing (a coin-margined account holds its own underlying only)
    fields = ("account", "kind", "und", "qty", "strike", "expiry_s", "entry_price", "asset", "funding")
    keep = pf.account != 29
    numeraire = np.where(np.arange(30) == 29, 1, pf.numeraire)
    btc_coin = Portfolio(**{**pf.__dict__, **{f: getattr(pf, f)[keep] for f in fields}, "numeraire": numeraire})
    eth_only = Portfolio(**{**pf.__dict__, **{f: getattr(pf, f)[pf.und == 0] for f in fields}})
    mkt = MARKETS["flat"]
    for book in (pf, btc_coin, eth_only):
        for prm in (PRESETS["deribit-pm-btc"], PRESETS["lyra-pmrm-v1"]):
            new, ref = ScenarioPM(prm).requirements(book, mkt), ReferencePM(prm).requirements(book, mkt)
            _assert_same_result(new, ref)


def _reference_extended(pnl: np.ndarray, tail: np.ndarray, move: np.ndarray, prm: ScenarioPMParams) -> np.ndarray:
    """ScenarioPM._extended as it was: on a copy of pnl."""
    out = pnl.copy()
    rows = out[tail] * prm.extended_factor
    if prm.extended_dampener_usd > 0.0 and prm.extended_price_range:
        adj = np.maximum(np.abs(move[tail]) / prm.extended_price_range - 1.0, 0.0) * prm.extended_dampener_usd
        rows = np.where(rows < 0, np.minimum(rows + adj[:, None], 0.0), rows)
    out[tail] = rows
    return out


def test_extended_rows_are_written_in_place_with_the_bits_of_the_copy() -> None:
    rng = np.random.default_rng(5)
    for name in ("deribit-pm-eth", "deribit-pm-btc"):
        prm = PARAMS[name]
        grid = prm.grid
        tail, move = np.asarray(grid.tail), grid.moves
        pnl = rng.normal(0.0, 1e5, (tail.size, 9))
        pnl[:, 0] = -0.0
        pnl[:, 1] = 0.0
        pnl[:, 2] = -np.inf
        pnl[:, 3] = np.nan
        pnl[:, 4] = -1e-300
        want = _reference_extended(pnl, tail, move, prm)
        before = pnl.copy()
        got = ScenarioPM._extended(pnl, tail, move, prm)
        assert got is pnl and got.tobytes() == want.tobytes(), name
        assert before[~tail].tobytes() == got[~tail].tobytes()  # rows outside the tail stay as they were
        assert tail.any() and not np.array_equal(before[tail], got[tail], equal_nan=True)


@pytest.mark.parametrize(("long_base", "short_base"), [(2.0, None), (1.0, 1.5), (1.0, 2.0)])
def test_exact_haircut_factors_other_than_one_still_apply_by_sign(long_base: float, short_base: float | None) -> None:
    """The by-sign haircut is skipped only when both factors are exactly 1: a factor of exactly 2 (long), or short
    factors all above 1 (a year at a 500% rate: 1/D ~ 148 > short_base) must still scale the values of their sign."""
    from dataclasses import replace

    from defistress.protocols.margin.scenario_params import StaticDiscountParams

    prm = replace(
        PRESETS["lyra-pmrm-v1"],
        discount=StaticDiscountParams(long_base=long_base, short_base=short_base),
        discount_option_prices=True,
    )
    year_s = 365 * DAY_S
    pf = Portfolio(
        n_accounts=2,
        underlyings=("ETH",),
        account=np.array([0, 1]),
        kind=np.array([CALL, PUT]),
        und=np.zeros(2, dtype=np.int64),
        qty=np.array([2.0, -3.0]),
        strike=np.array([2000.0, 2100.0]),
        expiry_s=np.array([year_s, year_s]),
        entry_price=np.zeros(2),
        cash=np.full(2, 1e6),
    )
    mkt = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.6}, rate={"ETH": 5.0})
    _assert_same_result(ScenarioPM(prm).requirements(pf, mkt), ReferencePM(prm).requirements(pf, mkt))
