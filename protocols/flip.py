"""Maker's 2020 English collateral auctions (Flipper), held as arrays over auctions.

Two phases: `tend` raises the stablecoin bid for the fixed lot until the bid equals the tab; then
`dent` lowers the collateral accepted for the fixed bid (the rest goes back to the vault owner). Each
new bid beats the last by the factor `beg`. The auction ends `ttl` seconds after the last bid or `tau`
seconds after the kick; `deal` then gives the lot to the winner. An auction nobody bid on can be
restarted with `tick`. Source: Maker dss src/flip.sol (kick, tick, tend, dent, deal), with the
Liquidations 1.2 `cat.claw` on deal.

Token flows: the lot sits in the escrow holder `holder`. Bids are paid into the escrow and the
previous high bidder is refunded from it; in `dent` the new bidder pays the previous one the same
bid. On `deal` the escrowed bid is burned (it repays the debt) and the lot goes to the winner. A
first bid of almost nothing that nobody beats wins the lot for almost nothing: the "zero bid" of
Black Thursday; the uncovered debt becomes system debt in the host CDP.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from defistress.protocols.base import Env, Revert
from defistress.protocols.bounds import MAX_SECONDS, PARAMS_CONFIG, Float
from defistress.protocols.clip import AuctionHost, grow
from defistress.protocols.events import AuctionBid, AuctionKicked, Generic

#: relative float tolerance when a bid must equal the tab (stablecoin amounts are float64)
_EQ_RTOL = 1e-12


class FlipParams(BaseModel):
    """Flipper parameters; defaults are Maker ETH-A as of 12 March 2020 (Black Thursday).

    Source: the "03/12/2020 MakerDAO Executive Spell" (Etherscan-verified 2020-03-13;
    makerdao/spells-mainnet PR #30): "Existing ttl: 10 minutes", "Existing tau: 3 days" for the
    ETH-A flipper; beg 3 % (dss-deploy ETH-A "beg": "3"; kovan launch spell beg 103/100).
    """

    model_config = PARAMS_CONFIG

    beg: Float = Field(
        1.03, gt=1.0, le=2.0, description="minimum bid increase factor (1.03 = 3 %) [published: ETH-A 2020 3%]"
    )
    ttl: Float = Field(600.0, gt=0, le=MAX_SECONDS, description="bid lifetime, seconds [published: ETH-A 2020 10 min]")
    tau: Float = Field(
        3 * 86400.0,
        gt=0,
        le=MAX_SECONDS,
        description="maximum auction length from kick, seconds [published: ETH-A 2020 3 days]",
    )


class Flipper:
    """English auctions for one collateral; auctions are rows of arrays indexed by auction id."""

    def __init__(
        self,
        params: FlipParams,
        env: Env,
        *,
        holder: str,
        collateral: str,
        stablecoin: str,
        owner: str,
        host: AuctionHost,
        source: str,
    ):
        self.p = params
        self.env = env
        self.holder = holder  # escrow holding lots and the current high bids
        self.collateral = collateral
        self.stablecoin = stablecoin
        self.owner = owner  # receives collateral given back in the dent phase
        self.host = host
        self.source = source
        self.kicks = 0
        self.bid = np.zeros(0)  # current high bid, stablecoin
        self.lot = np.zeros(0)  # collateral for sale, units
        self.guy = np.zeros(0, dtype=object)  # high bidder ("" = none)
        self.tic = np.zeros(0)  # bid expiry, seconds (0 = no bid yet)
        self.end = np.zeros(0)  # auction expiry, seconds
        self.usr = np.zeros(0, dtype=np.int64)
        self.tab = np.zeros(0)  # stablecoin wanted
        self.active = np.zeros(0, dtype=bool)

    # --- views ------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.env.clock.seconds

    def active_ids(self) -> np.ndarray:
        return np.flatnonzero(self.active[: self.kicks])

    def count(self) -> int:
        return int(self.active[: self.kicks].sum())

    def finished(self) -> np.ndarray:
        """Per auction id: may be dealt now (dss flip.sol deal: tic ≠ 0 and (tic < now or end < now))."""
        k, now = self.kicks, self.now()
        tic, end = self.tic[:k], self.end[:k]
        return self.active[:k] & (tic != 0) & ((tic < now) | (end < now))

    def needs_tick(self) -> np.ndarray:
        """Per auction id: expired without any bid, so only `tick` can restart it."""
        k, now = self.kicks, self.now()
        return self.active[:k] & (self.tic[:k] == 0) & (self.end[:k] < now)

    def in_dent(self, auction: int) -> bool:
        """True once the bid covers the tab (the reverse phase)."""
        return _equal(float(self.bid[auction]), float(self.tab[auction]))

    def _running(self, auction: int) -> int:
        if not (0 <= auction < self.kicks and self.active[auction]):
            raise Revert("Flipper/guy-not-set")
        return int(auction)

    def _biddable(self, i: int) -> None:
        now = self.now()
        # Maker dss src/flip.sol tend/dent: require(tic > now || tic == 0) and require(end > now)
        if not (self.tic[i] > now or self.tic[i] == 0):
            raise Revert("Flipper/already-finished-tic")
        if not self.end[i] > now:
            raise Revert("Flipper/already-finished-end")

    # --- actions ------------------------------------------------------------------------------------
    def kick(self, tab: float, lot: float, usr: int, keeper: str) -> AuctionKicked:
        """Start an auction for `lot` collateral (already in escrow) wanting `tab` stablecoin, bid 0."""
        if tab <= 0 or lot <= 0:
            raise Revert("Flipper/null-auction")
        i = self.kicks
        self.kicks += 1
        for name in ("bid", "lot", "guy", "tic", "end", "usr", "tab", "active"):
            setattr(self, name, grow(getattr(self, name), self.kicks))
        self.bid[i], self.lot[i], self.guy[i], self.tic[i] = 0.0, lot, "", 0.0
        self.end[i] = self.now() + self.p.tau  # Maker dss src/flip.sol kick: end = now + tau
        self.usr[i], self.tab[i], self.active[i] = usr, tab, True
        return self.env.emit(
            AuctionKicked(self.env.clock.block, self.source, i, int(usr), float(lot), float(tab), 0.0, keeper, 0.0)
        )

    def tick(self, auction: int) -> Generic:
        """Restart an auction that expired without bids (dss flip.sol tick: end = now + tau)."""
        i = self._running(auction)
        if not self.end[i] < self.now():
            raise Revert("Flipper/not-finished")
        if self.tic[i] != 0:
            raise Revert("Flipper/bid-already-placed")
        self.end[i] = self.now() + self.p.tau
        return self.env.emit(
            Generic(self.env.clock.block, self.source, "auction_tick", {"auction": i, "end": float(self.end[i])})
        )

    def tend(self, auction: int, lot: float, bid: float, who: str) -> AuctionBid:
        """Raise the bid for the whole lot (tend phase); the previous bidder is refunded."""
        i = self._running(auction)
        self._biddable(i)
        old, tab = float(self.bid[i]), float(self.tab[i])
        if not _equal(lot, float(self.lot[i])):
            raise Revert("Flipper/lot-not-matching")
        if bid > tab and not _equal(bid, tab):
            raise Revert("Flipper/higher-than-tab")
        if not bid > old:
            raise Revert("Flipper/bid-not-higher")
        # Maker dss src/flip.sol tend: bid·ONE ≥ beg·bids.bid or bid == tab
        if not (bid >= self.p.beg * old or _equal(bid, tab)):
            raise Revert("Flipper/insufficient-increase")
        if _equal(bid, tab):
            bid = tab
        prev = str(self.guy[i])
        led = self.env.ledger
        pay = bid - old if prev == who else bid
        if led.balance(who, self.stablecoin) < pay:
            raise Revert(f"Flipper/insufficient-stablecoin: {who} has {led.balance(who, self.stablecoin):.6g}")
        led.transfer(self.stablecoin, who, self.holder, pay)
        if prev and prev != who and old > 0:
            led.transfer(self.stablecoin, self.holder, prev, old)
        self.guy[i], self.bid[i] = who, bid
        self.tic[i] = self.now() + self.p.ttl  # Maker dss src/flip.sol tend: tic = now + ttl
        return self.env.emit(
            AuctionBid(self.env.clock.block, self.source, i, who, float(self.lot[i]), float(bid), "tend")
        )

    def dent(self, auction: int, lot: float, bid: float, who: str) -> AuctionBid:
        """Accept less collateral for the full tab (dent phase); the rest goes back to the vault owner."""
        i = self._running(auction)
        self._biddable(i)
        old_lot, cur_bid, tab = float(self.lot[i]), float(self.bid[i]), float(self.tab[i])
        if not _equal(bid, cur_bid):
            raise Revert("Flipper/not-matching-bid")
        if not _equal(bid, tab):
            raise Revert("Flipper/tend-not-finished")
        if not lot < old_lot:
            raise Revert("Flipper/lot-not-lower")
        # Maker dss src/flip.sol dent: beg·lot ≤ bids.lot
        if not self.p.beg * lot <= old_lot * (1 + _EQ_RTOL):
            raise Revert("Flipper/insufficient-decrease")
        if not lot > 0:
            raise Revert("Flipper/lot-not-positive")
        prev = str(self.guy[i])
        led = self.env.ledger
        if prev != who:
            if led.balance(who, self.stablecoin) < cur_bid:
                raise Revert(f"Flipper/insufficient-stablecoin: {who} has {led.balance(who, self.stablecoin):.6g}")
            led.transfer(self.stablecoin, who, prev, cur_bid)  # Maker: vat.move(msg.sender, guy, bid)
        led.transfer(self.collateral, self.holder, self.owner, old_lot - lot)
        self.guy[i], self.lot[i] = who, lot
        self.tic[i] = self.now() + self.p.ttl
        return self.env.emit(AuctionBid(self.env.clock.block, self.source, i, who, float(lot), float(cur_bid), "dent"))

    def deal(self, auction: int) -> Generic:
        """Settle a finished auction: burn the bid against the tab, give the lot to the winner."""
        i = self._running(auction)
        now = self.now()
        if not (self.tic[i] != 0 and (self.tic[i] < now or self.end[i] < now)):
            raise Revert("Flipper/not-finished")
        bid, lot, winner, tab = float(self.bid[i]), float(self.lot[i]), str(self.guy[i]), float(self.tab[i])
        led = self.env.ledger
        led.burn(self.stablecoin, self.holder, bid, f"{self.source}:deal")
        led.transfer(self.collateral, self.holder, winner, lot)
        self.active[i] = False
        self.host.vow_receive(i, bid)
        self.host.dog_digs(tab)  # Maker dss src/flip.sol (Liq 1.2) deal: cat.claw(tab)
        ev = self.env.emit(
            Generic(
                self.env.clock.block,
                self.source,
                "auction_deal",
                {"auction": i, "winner": winner, "lot": lot, "bid": bid},
            )
        )
        self.host.auction_closed(i, winner, lot, bid, tab, max(tab - bid, 0.0))
        return ev


def _equal(a: float, b: float) -> bool:
    return abs(a - b) <= _EQ_RTOL * max(abs(a), abs(b), 1.0)
