"""Maker Liquidations 2.0 Clipper: Dutch auctions of liquidated collateral, held as arrays over auctions.

The price starts at `top = feed·buf` and falls along an Abacus curve; anyone may `take` collateral at
the current price, paying stablecoin that is burned (it repays the liquidated debt). An auction needs
a `redo` (new top, new clock, keeper incentive again) once it is older than `tail` or its price fell
below `cusp·top`. Partial takes must leave at least `chost = dust·chop` of tab. Collateral left when
the tab is covered returns to the vault owner. Source: Maker dss src/clip.sol (kick, redo, take,
status, upchost).

Token flows: the liquidated lot sits in the Clipper's escrow holder (`holder`); `take` burns the
payment from the taker and sends the slice to the taker; leftovers go to `owner`. Vow accounting
(proceeds, incentives, end of auction) is delegated to the `AuctionHost` (the CDP).
"""

from __future__ import annotations

from typing import Protocol as TypingProtocol

import numpy as np
from pydantic import BaseModel, Field

from defistress.protocols.abaci import Abacus, StairstepExponentialDecrease
from defistress.protocols.base import Env, PriceSource, Revert
from defistress.protocols.bounds import MAX_SECONDS, MAX_USD, PARAMS_CONFIG, Float
from defistress.protocols.events import AuctionBid, AuctionKicked, Generic
from defistress.protocols.ledger import ABS_DUST, InsufficientBalance

#: relative float tolerance for "tab ≤ chost" (a cut-back take leaves tab = chost up to rounding)
_RTOL = 1e-12


class ClipParams(BaseModel):
    """Clipper parameters; defaults are Maker's ETH-A Liquidations 2.0 proposal.

    Source: forum.makerdao.com/t/eth-and-wbtc-vaults-liquidations-2-0-parameters/7628 (same set as
    YFI-A /7502 and LINK-A /7180): cut 0.99, step 90 s, buf 1.30, cusp 0.40, tail 140 min,
    chip 0.1 %, tip 0.
    """

    model_config = PARAMS_CONFIG

    buf: Float = Field(
        1.30, gt=0, le=10, description="starting price = oracle price × buf (unitless) [published: ETH-A 1.30]"
    )
    tail: Float = Field(
        140 * 60.0,
        gt=0,
        le=MAX_SECONDS,
        description="seconds before an auction needs a reset [published: ETH-A 140 min]",
    )
    cusp: Float = Field(
        0.40, ge=0, lt=1, description="price/top below which an auction needs a reset [published: ETH-A 0.40]"
    )
    chip: Float = Field(0.001, ge=0, lt=1, description="keeper reward as a fraction of tab [published: ETH-A 0.1%]")
    tip: Float = Field(0.0, ge=0, le=MAX_USD, description="flat keeper reward, stablecoin units [published: ETH-A 0]")
    calc: Abacus = Field(
        StairstepExponentialDecrease(), description="price curve [published: ETH-A stairstep, cut 0.99, step 90 s]"
    )


class AuctionHost(TypingProtocol):
    """What an auction module needs from its CDP: the Vow and Dog/Cat bookkeeping."""

    def vow_suck(self, keeper: str, amount: float) -> None:
        """Mint `amount` stablecoin to `keeper`, adding the same to system debt (dss vat.suck)."""

    def vow_receive(self, auction: int, amount: float) -> None:
        """Record `amount` stablecoin of auction proceeds (already burned) against the auction's debt."""

    def dog_digs(self, amount: float) -> None:
        """Release `amount` of tab from the liquidation limit (dss dog.digs / cat.claw)."""

    def auction_closed(
        self, auction: int, winner: str, lot_sold: float, raised: float, tab: float, tab_left: float
    ) -> None:
        """The auction ended: realise any uncovered debt and emit the settlement event."""


def grow(arr: np.ndarray, n: int) -> np.ndarray:
    """`arr` with capacity for at least `n` rows (doubling), new rows zero / empty."""
    if len(arr) >= n:
        return arr
    new = np.zeros(max(n, 2 * len(arr), 16), dtype=arr.dtype)
    if arr.dtype == object:
        new[:] = ""
    new[: len(arr)] = arr
    return new


class Clipper:
    """Dutch auctions for one collateral; auctions are rows of arrays indexed by auction id."""

    def __init__(
        self,
        params: ClipParams,
        env: Env,
        oracle: PriceSource,
        *,
        holder: str,
        collateral: str,
        stablecoin: str,
        owner: str,
        chost: float,
        host: AuctionHost,
        source: str,
    ):
        self.p = params
        self.env = env
        self.oracle = oracle
        self.holder = holder  # escrow holding auctioned collateral
        self.collateral = collateral
        self.stablecoin = stablecoin
        self.owner = owner  # receives collateral left over once the tab is covered
        self.chost = float(chost)  # dss clip.sol upchost(): dust·chop, stablecoin units
        self.host = host
        self.source = source
        self.kicks = 0
        self.tab = np.zeros(0)  # stablecoin still to raise
        self.lot = np.zeros(0)  # collateral units still for sale
        self.usr = np.zeros(0, dtype=np.int64)  # liquidated vault
        self.tic = np.zeros(0)  # start (or last reset) time, seconds
        self.top = np.zeros(0)  # starting price, stablecoin per collateral unit
        self.active = np.zeros(0, dtype=bool)
        self.tab0 = np.zeros(0)  # tab at kick
        self.raised = np.zeros(0)  # stablecoin paid by takers so far
        self.sold = np.zeros(0)  # collateral units bought by takers so far

    # --- views ------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.env.clock.seconds

    def feed_price(self) -> float:
        """Oracle price (dss clip.sol getFeedPrice with par = 1)."""
        return float(self.oracle.price)

    def active_ids(self) -> np.ndarray:
        """Ids of running auctions (dss clip.sol list())."""
        return np.flatnonzero(self.active[: self.kicks])

    def count(self) -> int:
        return int(self.active[: self.kicks].sum())

    def status(self) -> tuple[np.ndarray, np.ndarray]:
        """(needs_redo, price) for every auction id; not-running auctions report (False, 0)."""
        k = self.kicks
        ids = np.flatnonzero(self.active[:k])  # computed over running auctions only (finished ones stay (False, 0))
        needs, price = np.zeros(k, dtype=bool), np.zeros(k)
        dur = self.now() - self.tic[ids]
        price[ids] = self.p.calc.price(self.top[ids], dur)
        with np.errstate(divide="ignore", invalid="ignore"):
            # Maker dss src/clip.sol status(): done = now − tic > tail || price/top < cusp
            needs[ids] = (dur > self.p.tail) | (price[ids] / self.top[ids] < self.p.cusp)
        return needs, price

    def get_status(self, auction: int) -> tuple[bool, float, float, float]:
        """(needs_redo, price, lot, tab) of one auction (dss clip.sol getStatus)."""
        i = self._running(auction)
        needs, price = self._status_one(i)
        return needs, price, float(self.lot[i]), float(self.tab[i])

    def _status_one(self, i: int) -> tuple[bool, float]:
        dur = self.now() - self.tic[i]
        price = float(self.p.calc.price(float(self.top[i]), dur))
        # Maker dss src/clip.sol status()
        done = dur > self.p.tail or price / self.top[i] < self.p.cusp
        return bool(done), price

    def _running(self, auction: int) -> int:
        if not (0 <= auction < self.kicks and self.active[auction]):
            raise Revert("Clipper/not-running-auction")
        return int(auction)

    def incentive(self, tab: float) -> float:
        """Keeper reward for a kick or redo, stablecoin (dss clip.sol kick: coin = tip + tab·chip)."""
        if self.p.tip > 0 or self.p.chip > 0:
            return self.p.tip + tab * self.p.chip
        return 0.0

    def redo_incentive(self, auction: int) -> float:
        """Reward a redo would pay now: zero unless tab ≥ chost and lot·feed ≥ chost (dss clip.sol redo)."""
        i = int(auction)
        feed = self.feed_price()
        if self.tab[i] >= self.chost and self.lot[i] * feed >= self.chost:
            return self.incentive(float(self.tab[i]))
        return 0.0

    # --- actions ------------------------------------------------------------------------------------
    def kick(self, tab: float, lot: float, usr: int, keeper: str) -> AuctionKicked:
        """Start an auction for `lot` collateral (already in escrow) to raise `tab`; pays the kick incentive."""
        if tab <= 0:
            raise Revert("Clipper/zero-tab")
        if lot <= 0:
            raise Revert("Clipper/zero-lot")
        top = self.feed_price() * self.p.buf  # Maker dss src/clip.sol kick: top = val·buf/par
        if top <= 0:
            raise Revert("Clipper/zero-top-price")
        i = self.kicks
        self.kicks += 1
        for name in ("tab", "lot", "usr", "tic", "top", "active", "tab0", "raised", "sold"):
            setattr(self, name, grow(getattr(self, name), self.kicks))
        self.tab[i], self.lot[i], self.usr[i] = tab, lot, usr
        self.tic[i], self.top[i], self.active[i] = self.now(), top, True
        self.tab0[i], self.raised[i], self.sold[i] = tab, 0.0, 0.0
        coin = self.incentive(tab)
        if coin > 0:
            self.host.vow_suck(keeper, coin)  # Maker dss src/clip.sol kick: vat.suck(vow, kpr, coin)
        return self.env.emit(
            AuctionKicked(
                self.env.clock.block, self.source, i, int(usr), float(lot), float(tab), float(top), keeper, float(coin)
            )
        )

    def redo(self, auction: int, keeper: str) -> Generic:
        """Reset an auction that needs it: new top from the oracle, new clock, incentive if not dusty."""
        i = self._running(auction)
        needs, _ = self._status_one(i)
        if not needs:
            raise Revert("Clipper/cannot-reset")
        feed = self.feed_price()
        top = feed * self.p.buf  # Maker dss src/clip.sol redo: top = feedPrice·buf
        if top <= 0:
            raise Revert("Clipper/zero-top-price")
        coin = self.redo_incentive(i)
        self.tic[i], self.top[i] = self.now(), top
        if coin > 0:
            self.host.vow_suck(keeper, coin)
        return self.env.emit(
            Generic(
                self.env.clock.block,
                self.source,
                "auction_redo",
                {
                    "auction": i,
                    "top": top,
                    "tab": float(self.tab[i]),
                    "lot": float(self.lot[i]),
                    "keeper": keeper,
                    "incentive": coin,
                },
            )
        )

    def take(self, auction: int, max_collateral: float, max_price: float, who: str) -> AuctionBid:
        """Buy up to `max_collateral` at the current price if it is ≤ `max_price`; `who` pays and receives.

        Maker dss src/clip.sol take(): slice = min(lot, amt), owe = slice·price; capped at tab; a
        partial take leaving less than chost of tab is cut back to leave exactly chost, and reverts
        if tab ≤ chost (the rest must be bought whole).
        """
        i = self._running(auction)
        needs, price = self._status_one(i)
        if needs:
            raise Revert("Clipper/needs-reset")
        if max_price < price:
            raise Revert("Clipper/too-expensive")
        if not max_collateral > 0:
            raise Revert("Clipper/zero-amount")
        lot, tab = float(self.lot[i]), float(self.tab[i])
        slice_ = min(lot, float(max_collateral))
        owe = slice_ * price
        if owe > tab:
            owe = tab
            slice_ = min(owe / price, lot)
        elif owe < tab and slice_ < lot:
            if tab - owe < self.chost:
                if not tab > self.chost * (1 + _RTOL):
                    raise Revert("Clipper/no-partial-purchase")
                owe = tab - self.chost
                slice_ = owe / price
        led = self.env.ledger
        try:
            led.burn(self.stablecoin, who, owe, f"{self.source}:take")
        except InsufficientBalance as exc:
            raise Revert(f"Clipper/insufficient-stablecoin: {exc}") from None
        led.transfer(self.collateral, self.holder, who, slice_)
        tab_left = tab - owe
        lot_left = max(lot - slice_, 0.0)
        if tab_left <= ABS_DUST:
            tab_left = 0.0
        if lot_left <= ABS_DUST:
            lot_left = 0.0
        self.tab[i], self.lot[i] = tab_left, lot_left
        self.raised[i] += owe
        self.sold[i] += slice_
        self.host.vow_receive(i, owe)
        # Maker dss src/clip.sol take: dog.digs(lot == 0 ? tab + owe : owe)
        self.host.dog_digs(tab_left + owe if lot_left == 0.0 else owe)
        ev = self.env.emit(AuctionBid(self.env.clock.block, self.source, i, who, float(slice_), float(owe), "take"))
        if lot_left == 0.0:
            self._close(i, who)
        elif tab_left == 0.0:
            led.transfer(self.collateral, self.holder, self.owner, lot_left)
            self._close(i, who)
        return ev

    def _close(self, i: int, winner: str) -> None:
        self.active[i] = False
        self.host.auction_closed(
            i, winner, float(self.sold[i]), float(self.raised[i]), float(self.tab0[i]), float(self.tab[i])
        )
        self.lot[i] = 0.0
