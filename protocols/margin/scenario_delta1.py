"""Delta-1 and collateral rows of one underlying for the scenario-grid engine (scenario_pm.py): scenario PnL,
mark-to-market and the notionals the contingencies use, in each account's margin currency.

USD-margined accounts: linear perps/futures/spot PnL = qty * mark * move; an inverse contract of face q (USD)
entered at E is worth q * (mark / E - 1) USD, so its USD PnL is linear too, q * mark / E * move.
Coin-margined accounts (numeraire = the underlying's coin): every row is valued in coin at its own scenario
mark, value_usd / mark'; an inverse contract is worth q * (1/E - 1/mark') coin, so its coin PnL is
q/mark * m/(1+m) for a move m (BitMEX/Deribit inverse contracts: a long loses 19% of its coin notional at
-16%, not 16%); coin held (spot rows) has no coin PnL; USD cash is worth cash / spot' coin.
Collateral rows (Derive PM2 multi-collateral, PMRMLib_2 addPrecomputes/getScenarioPnL): value = qty * price /
stable price; if risk-cancelling its value moves with the spot shock, else it does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from defistress.protocols.margin.exact import conf_factor
from defistress.protocols.margin.portfolio import (
    CALL,
    COLLATERAL,
    FUTURE,
    INVERSE_FUTURE,
    INVERSE_PERP,
    PERP,
    PUT,
    SPOT,
    MarketState,
    Portfolio,
)
from defistress.protocols.margin.scenario_params import ScenarioPMParams

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def bincount(idx: IntArray, w: npt.ArrayLike, n: int) -> FloatArray:
    """Per-account sum of w over positions idx (length n)."""
    if not idx.size:
        return np.zeros(n)
    return np.bincount(idx, weights=np.asarray(w, dtype=np.float64), minlength=n)[:n].astype(np.float64)


def scenario_sum(idx: IntArray, w: FloatArray, n: int) -> FloatArray:
    """(S, n) per-account sums of the (S, k) matrix w over positions idx."""
    out = np.zeros((w.shape[0], n))
    if idx.size:
        np.add.at(out.T, idx, w.T)
    return out


@dataclass
class Delta1Rows:
    """Per-account figures of one underlying's delta-1 and collateral rows (native units unless noted)."""

    pnl: FloatArray  # (S, N) scenario PnL
    mtm: FloatArray  # delta-1 mark-to-market (spot value, unrealised PnL)
    funding: FloatArray  # unsettled funding
    collateral: FloatArray  # collateral value
    d1_units: FloatArray  # sum |qty| of perps and futures in units of the underlying (inverse: face / entry)
    base_units: FloatArray  # sum |qty| of spot rows
    perp_held: BoolArray  # the account holds a perp (its confidence joins the portfolio's)
    coll_mm: FloatArray  # collateral MM haircut, USD
    coll_im: FloatArray  # collateral IM haircut, USD
    coll_conf: FloatArray  # collateral confidence contingency, USD (IM only)
    roll: FloatArray  # Deribit roll shock, USD
    units: FloatArray  # (p,) per position of the underlying: signed units of the underlying (inverse: q / E)
    mark: FloatArray  # (p,) per position: USD mark (0 for options)


def delta1_rows(
    pf: Portfolio,
    mkt: MarketState,
    u: int,
    sel: IntArray,
    prm: ScenarioPMParams,
    fwd: FloatArray,
    fwd_fixed: FloatArray,
    d1_move: FloatArray,
) -> Delta1Rows:
    """Delta-1 (spot, perp, future, inverse perp/future) and collateral rows of underlying u (positions sel)."""
    n, grid, c = pf.n_accounts, prm.grid, prm.contingency
    spot, _, perp_px, spot_conf = mkt.scalars(pf.underlyings[u])
    stable = float(mkt.stable_price)
    all_kind = pf.kind[sel]
    # SPOT, PERP, FUTURE, INVERSE_PERP, INVERSE_FUTURE: every kind code but the options' and COLLATERAL (Portfolio
    # validates the codes), by comparisons rather than np.isin (a sort)
    rows = np.flatnonzero((all_kind != CALL) & (all_kind != PUT) & (all_kind != COLLATERAL))
    pos = sel[rows]  # the delta-1 rows only (an options book skips all of this)
    acct, kind, qty = pf.account[pos], pf.kind[pos], pf.qty[pos]
    fwd, fwd_fixed = fwd[rows], fwd_fixed[rows]
    coin_pos = (pf.numeraire == u)[acct]
    move = grid.moves
    damp = np.asarray(grid.dampening)
    n_s = move.size

    is_spot, is_perp, is_fut = kind == SPOT, kind == PERP, kind == FUTURE
    is_iperp, is_ifut = kind == INVERSE_PERP, kind == INVERSE_FUTURE
    inverse = is_iperp | is_ifut
    perps, futs = is_perp | is_iperp, is_fut | is_ifut
    d1 = is_spot | perps | futs
    var_mark = np.where(perps, perp_px, np.where(futs, fwd - fwd_fixed, spot / stable))  # PMRMLib: base / stable
    fix_mark = np.where(futs, fwd_fixed, 0.0)
    mark = np.where(d1, var_mark + fix_mark, 0.0)
    entry = np.where(pf.entry_price[pos] > 0, pf.entry_price[pos], mark)  # entry 0 => opened at the mark
    inv_e = np.where(entry > 0, entry, 1.0)  # inverse contracts divide by the entry price
    units = np.where(inverse, qty / inv_e, np.where(d1, qty, 0.0))  # coin-equivalent units

    def value_usd(m_price: FloatArray) -> FloatArray:
        return np.where(
            is_spot, qty * m_price, np.where(inverse, qty * (m_price / inv_e - 1.0), qty * (m_price - entry))
        )

    val0 = np.where(d1, value_usd(mark), 0.0)
    usd_rows = np.flatnonzero(d1 & ~coin_pos)
    expo = bincount(acct[usd_rows], (np.where(inverse, qty / inv_e, qty) * var_mark)[usd_rows], n)
    pnl = (d1_move * damp)[:, None] * expo[None, :]
    mtm = bincount(acct[usd_rows], val0[usd_rows], n)

    coin_rows = np.flatnonzero(d1 & coin_pos)
    if coin_rows.size:  # every coin row at its own scenario mark, value / mark
        m_s = 1.0 + d1_move
        j = coin_rows
        shocked = var_mark[j][None, :] * m_s[:, None] + fix_mark[j][None, :]  # (S, k)
        ref_s = np.where(is_spot[j][None, :], spot * m_s[:, None], shocked)
        ref_0 = np.where(is_spot[j], spot, mark[j])
        val_s = np.where(
            is_spot[j][None, :],
            qty[j] * shocked,
            np.where(inverse[j][None, :], qty[j] * (shocked / inv_e[j] - 1.0), qty[j] * (shocked - entry[j])),
        )
        coin0 = val0[j] / ref_0
        pnl += scenario_sum(acct[j], (val_s / ref_s - coin0[None, :]) * damp[:, None], n)
        mtm += bincount(acct[j], coin0, n)

    all_acct = pf.account[sel]
    all_coin = (pf.numeraire == u)[all_acct]
    f_sel = pf.funding[sel]
    funding = np.zeros(n)
    if f_sel.any():
        funding = bincount(all_acct, f_sel * np.where(all_coin, 1.0 / spot if spot > 0 else 0.0, 1.0), n)

    # collateral rows (PMRMLib_2): value = qty * price / stable; risk-cancelling ones move with the spot shock
    co = np.flatnonzero(all_kind == COLLATERAL)
    collateral, coll_mm, coll_im, coll_conf = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
    if co.size:
        price, conf = mkt.collateral_arrays(pf.assets)
        a = pf.asset[sel][co]
        cps = [prm.collateral_params(name) for name in pf.assets]
        rc = np.array([cp.risk_cancelling for cp in cps], dtype=bool)[a]
        mm_h = np.array([cp.mm_haircut for cp in cps])[a]
        im_h = np.array([cp.im_haircut for cp in cps])[a]
        value = pf.qty[sel][co] * price[a] / stable
        co_acct, co_coin = all_acct[co], all_coin[co]
        native = np.where(co_coin, value / spot if spot > 0 else 0.0, value)
        collateral = bincount(co_acct, native, n)
        usd_rc = rc & ~co_coin
        pnl += (move * damp)[:, None] * bincount(co_acct[usd_rc], value[usd_rc], n)[None, :]
        coin_fixed = ~rc & co_coin  # coin accounts: a fixed-USD collateral's coin value falls as the coin rises
        if coin_fixed.any():
            w = value[coin_fixed][None, :] * (1.0 / (spot * (1.0 + move))[:, None] - 1.0 / spot)
            pnl += scenario_sum(co_acct[coin_fixed], w * damp[:, None], n)
        coll_mm = bincount(co_acct, value * mm_h, n)
        coll_im = bincount(co_acct, value * im_h, n)
        c_min = np.minimum(conf[a], spot_conf)  # PMRM_2 _arrangeAssets: min(collateral, spot) confidence
        low = c_min < c.conf_threshold
        if low.any():
            coll_conf = bincount(co_acct[low], conf_factor(c_min[low], c.conf_margin) * value[low], n)

    perp_held = bincount(acct[perps], np.abs(qty[perps]), n) > 0
    d1_units = bincount(acct[perps | futs], np.abs(units[perps | futs]), n)
    base_units = bincount(acct[is_spot], np.abs(qty[is_spot]), n)
    t_y = pf.expiry_s[pos] / (365.0 * 86_400.0)
    roll_w = np.maximum(c.roll_min_move, c.roll_annual_move * np.where(futs, t_y, 0.0))  # Deribit roll_shock
    roll_mask = d1 if c.roll_includes_spot else (perps | futs)
    roll = bincount(acct[roll_mask], (np.abs(units) * mark * roll_w)[roll_mask], n)
    if n_s == 0:  # pragma: no cover - ScenarioGrid has at least one scenario
        raise ValueError("grid: allowed at least one scenario")
    units_all, mark_all = np.zeros(sel.size), np.zeros(sel.size)
    units_all[rows], mark_all[rows] = units, mark
    return Delta1Rows(
        pnl=pnl,
        mtm=mtm,
        funding=funding,
        collateral=collateral,
        d1_units=d1_units,
        base_units=base_units,
        perp_held=perp_held,
        coll_mm=coll_mm,
        coll_im=coll_im,
        coll_conf=coll_conf,
        roll=roll,
        units=units_all,
        mark=mark_all,
    )
