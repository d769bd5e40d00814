"""Liquidation and controller entry points of `protocols.options.OptionsVenue` (bound there as methods).

Auction mode follows Derive's DutchAuction (derivexyz/v2-core src/liquidation/DutchAuction.sol, docs/margin-methods.md
1.7): `start_auction` charges the start fee to the security module; a solvent auction sells a share of the whole
account (positions, spot and cash) at MtM x discount, at most the share that restores buffer margin to 0; when the
solvent auction runs out (or MtM <= 0) it turns insolvent and the security module pays bidders to take the account;
what the module cannot pay is socialised over positive cash balances (Derive CashAsset.socializeLoss) and counted as
bad debt. Partial mode closes a fixed share at mark with a penalty. Controller entry points (Euler EVC style) are
privileged calls for a margin coordinator: they skip health checks and are not guarded here.
Modelling choice (not in Derive's contract): a bidder or liquidator row must stay at or above initial margin.
"""

from __future__ import annotations

import numpy as np

from defistress.protocols import options_auction as da
from defistress.protocols.base import Revert
from defistress.protocols.events import AuctionKicked, BadDebt, Generic, Liquidated

DUST_USD = 1e-9
REL_TOL = 1e-9  # a bid of exactly f_max leaves BM = 0 up to float rounding: treat |BM| <= tol x mm as restored


def _restored(margin_usd: float, mm_usd: float) -> bool:
    """Derive ends an auction when its target margin is > 0; here >= 0 up to float rounding."""
    return margin_usd >= -REL_TOL * max(mm_usd, 1.0)


def _ongoing(v, a: int) -> bool:
    return bool(np.isfinite(v.auction_start[a]))


def _row(v, a: int) -> tuple[float, float, float]:
    """(equity, mm, im) of one row, USD."""
    return v.row_margin(a)


def _target(v, account: int) -> int:
    a = int(v._rows(None, [account])[0])
    if v.controlled[a]:
        raise Revert(f"{v.id}: row {a} is controlled (liquidated by its controller only)")
    if v.mm_row is not None and a == v.mm_row:
        raise Revert(f"{v.id}: row {a} is the market maker")
    return a


def _liq_row(v, liquidator: str, liquidator_row: int, a: int) -> int:
    lr = int(v._rows(liquidator, [liquidator_row])[0])
    if lr == a:
        raise Revert(f"{v.id}: liquidator row equals the liquidated row")
    return lr


def _fraction(fraction: float) -> float:
    f = float(fraction)
    if not 0.0 < f <= 1.0:
        raise Revert(f"fraction={fraction}: allowed 0 < fraction <= 1")
    return f


def _gross_value(v, a: int) -> float:
    """Σ |qty x mark| (perps at spot notional) + spot x price of one row, USD."""
    return float(np.abs(v.qty[a]) @ np.abs(v.mark_prices()) + v.spot[a] @ v.prices())


def _move(v, a: int, to: int, f: float, pay_usd: float, with_cash: bool) -> tuple:
    """Share f of row a's positions and spot (and cash) to row `to`, which pays `pay_usd` to a; returns an undo."""
    undo = (a, to, v.cash[[a, to]].copy(), v.qty[[a, to]].copy(), v.spot[[a, to]].copy())
    dq, ds = v.qty[a] * f, v.spot[a] * f
    v.qty[a] -= dq
    v.qty[to] += dq
    v.spot[a] -= ds
    v.spot[to] += ds
    if with_cash:
        dc = v.cash[a] * f
        v.cash[a] -= dc
        v.cash[to] += dc
    v.cash[a] += pay_usd
    v.cash[to] -= pay_usd
    v._touch()
    return undo


def _undo(v, undo: tuple) -> None:
    a, to, c, q, s = undo
    v.cash[[a, to]], v.qty[[a, to]], v.spot[[a, to]] = c, q, s
    v._touch()


def _check_liquidator(v, lr: int, undo: tuple) -> None:
    if v.mm_row is not None and lr == v.mm_row:
        return
    eq, _, im = _row(v, lr)
    if eq < im - DUST_USD:
        _undo(v, undo)
        raise Revert(f"{v.id}: liquidator row {lr} would end below initial margin ({eq:.2f} < {im:.2f})")


def _socialise(v, loss: float, exclude: int | None = None) -> float:
    """Haircut positive cash balances pro rata by `loss` USD (Derive CashAsset.socializeLoss); returns absorbed."""
    pos = np.maximum(v.cash, 0.0)
    if exclude is not None:
        pos[exclude] = 0.0
    total = float(pos.sum())
    absorbed = min(loss, total)
    if absorbed > 0:
        v.cash -= pos * (absorbed / total)
        v._touch()
    return absorbed


def _record(v, a, liquidator, f, volume_usd, received_usd, bonus, h) -> Liquidated:
    """The Liquidated event of a bid or close, with the venue's volume defined as for perps (notional closed).

    `volume_usd` = f x gross mark value of the row (Σ |qty x mark| + spot value), >= 0: the liquidation
    volume, reported as `debt_repaid` / `debt_repaid_usd` (quote at 1 USD) and summed into the venue's
    liquidation volume. `received_usd` = value of the share the liquidator took over (may be negative for an
    insolvent row), as `collateral_seized_usd`; the liquidator paid `received_usd - bonus` for it (negative:
    the security module paid the liquidator). `collateral_seized` is the share f."""
    volume_usd = max(float(volume_usd), 0.0)
    v.n_liquidations += 1
    v.liquidation_volume_usd += volume_usd
    return v.env.emit(
        Liquidated(
            v.env.clock.block,
            v.id,
            a,
            liquidator,
            v.quote,
            "portfolio",
            volume_usd,
            f,
            0.0,
            volume_usd,
            received_usd,
            bonus,
            h,
        )
    )


# --- auction mode ---------------------------------------------------------------------------------
def _auction_mode(v) -> None:
    if v.params.liquidation != "auction":
        raise Revert(f"{v.id}: liquidation mode is {v.params.liquidation!r}, not 'auction'")


def start_auction(v, account: int, keeper: str = "") -> AuctionKicked:
    """Start a Derive auction on an account below maintenance margin (DutchAuction.sol startAuction)."""
    _auction_mode(v)
    a = _target(v, account)
    if _ongoing(v, a):
        raise Revert(f"{v.id}: auction on row {a} already started")
    eq, mm, _ = _row(v, a)
    if not (mm > 0 and eq < mm):
        raise Revert(f"{v.id}: row {a} is above maintenance margin")
    bm = float(da.buffer_margin(eq, mm, v.schedule.buffer_margin_percentage))
    v.auction_start[a] = v.now
    fee = 0.0
    if eq > 0:
        fee = min(float(da.start_fee(eq, bm, v.schedule)), v.env.ledger.balance(v.id, v.quote))
        v.cash[a] -= fee
        v.env.ledger.transfer(v.quote, v.id, v.security_module, fee)
        v.auction_insolvent[a] = False
    else:
        _to_insolvent(v, a, bm)
    v._touch()
    start = eq * v.schedule.starting_mtm_percentage if eq > 0 else 0.0
    return v.env.emit(AuctionKicked(v.env.clock.block, v.id, a, a, 1.0, mm, start, keeper, fee))


def _to_insolvent(v, a: int, bm: float) -> None:
    v.auction_insolvent[a] = True
    v.auction_ins_start[a] = v.now
    v.auction_lower[a] = abs(min(bm, 0.0))


def _terminate(v, a: int, reason: str) -> None:
    v.auction_start[a] = np.nan
    v.auction_insolvent[a] = False
    v.env.emit(Generic(v.env.clock.block, v.id, "auction_ended", {"account": a, "reason": reason}))


def auction_state(v, account: int) -> da.AuctionState:
    """Phase, discount, bid price and max fraction of an account's auction now (phase 'none' if no auction)."""
    a = int(v._rows(None, [account])[0])
    eq, mm, _ = _row(v, a)
    bm = da.buffer_margin_one(eq, mm, v.schedule.buffer_margin_percentage)
    if not _ongoing(v, a):
        return da.AuctionState(a, "none", 0.0, 0.0, eq, mm, bm, 0.0, 0.0, 0.0)
    s = v.schedule
    elapsed = v.now - float(v.auction_start[a])
    ph = da.phase(elapsed, bool(v.auction_insolvent[a]), s)
    if ph == "insolvent":
        if v.auction_insolvent[a]:
            lower, t_ins = float(v.auction_lower[a]), v.now - float(v.auction_ins_start[a])
        else:  # solvent auction ran out and nobody converted it yet
            lower, t_ins = abs(min(bm, 0.0)), 0.0
        payout = da.insolvent_payout_one(lower, t_ins, s)
        return da.AuctionState(a, ph, elapsed, 0.0, eq, mm, bm, -payout, 1.0, payout)
    d = da.discount_one(elapsed, s)
    return da.AuctionState(a, ph, elapsed, d, eq, mm, bm, eq * d, da.max_fraction_one(eq, bm, d), 0.0)


def auction_discount(v, account: int) -> float:
    """Share of MtM a bidder pays now (0 in the insolvent phase); reverts without an auction."""
    if not _ongoing(v, int(account)):
        raise Revert(f"{v.id}: no auction on row {account}")
    return auction_state(v, account).discount


def bid(v, account: int, liquidator: str, liquidator_row: int, fraction: float) -> Liquidated:
    """Buy a share of the auctioned account into `liquidator_row` (DutchAuction.sol bid)."""
    _auction_mode(v)
    a = _target(v, account)
    lr = _liq_row(v, liquidator, liquidator_row, a)
    f = _fraction(fraction)
    if not _ongoing(v, a):
        raise Revert(f"{v.id}: no auction on row {a}")
    st = auction_state(v, a)
    h = st.equity_usd / st.mm_usd if st.mm_usd > 0 else np.inf
    gross = _gross_value(v, a)
    if st.phase == "insolvent":
        if not v.auction_insolvent[a]:
            _to_insolvent(v, a, st.buffer_margin_usd)
            st = auction_state(v, a)
        if _restored(st.equity_usd - st.mm_usd, st.mm_usd):
            raise Revert(f"{v.id}: auction on row {a} should be terminated (above maintenance margin)")
        payout = st.payout_usd * f
        undo = _move(v, a, lr, f, 0.0, with_cash=True)
        v.cash[lr] += payout
        _check_liquidator(v, lr, undo)
        paid = min(payout, v.env.ledger.balance(v.security_module, v.quote))
        v.env.ledger.transfer(v.quote, v.security_module, v.id, paid)
        shortfall = payout - paid
        if shortfall > DUST_USD:
            absorbed = _socialise(v, shortfall)
            v.cash[lr] -= shortfall - absorbed  # what nobody can absorb is not paid out
            v.bad_debt_usd += absorbed
            v.env.emit(BadDebt(v.env.clock.block, v.id, a, v.quote, absorbed, absorbed))
        # the payout is for the account as it is now: what is left of it is worth (1 - f) of it (DutchAuction.sol
        # _bidOnInsolventAuction pays percentOfAccount x the bid price of the current account)
        v.auction_lower[a] *= 1.0 - f
        received, bonus = f * st.equity_usd, f * st.equity_usd + payout
    else:
        if _restored(st.buffer_margin_usd, st.mm_usd):
            raise Revert(f"{v.id}: auction on row {a} should be terminated (buffer margin > 0)")
        if st.bid_price_usd <= 0:
            raise Revert(f"{v.id}: solvent auction on row {a} ended")
        f = min(f, st.max_fraction)
        if f <= 0:
            raise Revert(f"{v.id}: nothing left to buy on row {a}")
        pay = st.bid_price_usd * f  # DutchAuction.sol: cashFromBidder = bid * f
        undo = _move(v, a, lr, f, pay, with_cash=True)
        _check_liquidator(v, lr, undo)
        received, bonus = f * st.equity_usd, f * st.equity_usd - pay
    v._touch()
    ev = _record(v, a, liquidator, f, f * gross, received, bonus, h)
    eq, mm, _ = _row(v, a)
    bm = float(da.buffer_margin(eq, mm, v.schedule.buffer_margin_percentage))
    if _restored(eq - mm if v.auction_insolvent[a] else bm, mm):
        _terminate(v, a, "back_above_margin")
    return ev


def advance_auctions(v) -> None:
    """Per block: solvent auctions that ran out (or whose MtM fell to <= 0) turn insolvent; auctions whose account
    is back above its target (BM > 0 solvent, MM insolvent) end; controlled rows' auctions end."""
    for a in map(int, np.flatnonzero(np.isfinite(v.auction_start))):
        if v.controlled[a]:
            _terminate(v, a, "controlled")
            continue
        st = auction_state(v, a)
        if v.auction_insolvent[a]:
            if _restored(st.equity_usd - st.mm_usd, st.mm_usd):
                _terminate(v, a, "above_maintenance")
        elif _restored(st.buffer_margin_usd, st.mm_usd):
            _terminate(v, a, "buffer_margin_restored")
        elif st.phase == "insolvent" or st.equity_usd <= 0:
            _to_insolvent(v, a, st.buffer_margin_usd)


# --- partial mode and controller entry points -----------------------------------------------------
def _close_at_mark(v, a: int, lr: int, f: float, penalty_rate: float, liquidator: str, check: bool) -> Liquidated:
    eq, mm, _ = _row(v, a)
    h = eq / mm if mm > 0 else np.inf
    pay = f * float(v.qty[a] @ v.unit_values() + v.spot[a] @ v.prices())  # positions and spot at mark
    closed = f * _gross_value(v, a)
    penalty = min(penalty_rate * closed, max(eq, 0.0))
    undo = _move(v, a, lr, f, pay, with_cash=False)
    v.cash[a] -= penalty
    v.cash[lr] += penalty
    if check:
        _check_liquidator(v, lr, undo)
    return _record(v, a, liquidator, f, closed, pay, penalty, h)


def liquidate_partial(v, account: int, liquidator: str, liquidator_row: int) -> Liquidated:
    """Close `partial_fraction` of every position and spot at mark into the liquidator's row, which receives
    `partial_penalty` x |mark value closed| from the account's cash (capped at its positive equity)."""
    if v.params.liquidation != "partial":
        raise Revert(f"{v.id}: liquidation mode is {v.params.liquidation!r}, not 'partial'")
    a = _target(v, account)
    lr = _liq_row(v, liquidator, liquidator_row, a)
    eq, mm, _ = _row(v, a)
    if not (mm > 0 and eq < mm):
        raise Revert(f"{v.id}: row {a} is above maintenance margin")
    return _close_at_mark(v, a, lr, v.params.partial_fraction, v.params.partial_penalty, liquidator, True)


def set_controlled(v, rows, flag: bool = True) -> None:
    """Mark rows as controlled by a margin coordinator: the venue itself no longer liquidates them."""
    rows = v._rows(None, rows)
    v.controlled[rows] = bool(flag)
    v._touch()


def controller_close(
    v, account: int, fraction: float, liquidator: str, liquidator_row: int, penalty: float
) -> Liquidated:
    """Controller close: `fraction` of every position and spot to the liquidator's row at mark, no health check;
    the liquidator receives `penalty` x |mark value closed| from the account's cash (capped at positive equity)."""
    a = int(v._rows(None, [account])[0])
    lr = _liq_row(v, liquidator, liquidator_row, a)
    f = _fraction(fraction)
    if not (np.isfinite(penalty) and penalty >= 0):
        raise Revert(f"penalty={penalty}: allowed finite >= 0")
    return _close_at_mark(v, a, lr, f, float(penalty), liquidator, False)


def settle_out(v, account: int, amount_usd: float, to_holder: str) -> float:
    """Move up to the row's positive cash to a ledger holder; returns USD moved."""
    a = int(v._rows(None, [account])[0])
    moved = min(max(float(amount_usd), 0.0), max(float(v.cash[a]), 0.0))
    if moved > 0:
        v.cash[a] -= moved
        v.net_deposits[a] -= moved
        v.env.ledger.transfer(v.quote, v.id, to_holder, moved)
        v._touch()
    return moved


def settle_in(v, account: int, amount_usd: float, from_holder: str) -> None:
    """Quote from a ledger holder into the row's cash (e.g. to cover negative cash)."""
    a = int(v._rows(None, [account])[0])
    amt = float(amount_usd)
    if not (np.isfinite(amt) and amt >= 0):
        raise Revert(f"amount_usd={amount_usd}: allowed finite >= 0")
    v._pull(from_holder, v.quote, amt)
    v.cash[a] += amt
    v.net_deposits[a] += amt
    v._touch()


def write_off(v, account: int) -> float:
    """Cover the row's deficit (negative equity, up to its negative cash): security module first, the rest is
    socialised over positive cash balances and counted as bad debt; returns the bad debt USD."""
    a = int(v._rows(None, [account])[0])
    deficit = min(max(-float(v.cash[a]), 0.0), max(-float(v.equity()[a]), 0.0))
    if deficit <= DUST_USD:
        return 0.0
    paid = min(deficit, v.env.ledger.balance(v.security_module, v.quote))
    if paid > 0:
        v.env.ledger.transfer(v.quote, v.security_module, v.id, paid)
        v.cash[a] += paid
    absorbed = _socialise(v, deficit - paid, exclude=a)
    v.cash[a] += absorbed
    v._touch()
    if absorbed > DUST_USD:
        v.bad_debt_usd += absorbed
        v.env.emit(BadDebt(v.env.clock.block, v.id, a, v.quote, absorbed, absorbed))
    return absorbed
