"""A MakerDAO-style CDP (one collateral type, "ilk") with Liquidations 2.0 (Dog + Clipper) or the
2020 Cat + Flipper English auctions, a stability fee and a Vow that tracks surplus and system debt.

How tokens move (every move goes through the ledger; holders are strings):

- Collateral is never minted or burned here. `open_vaults` and `deposit` move it from the population
  holder (the vault owners' wallet) to the CDP holder `id`, which holds all locked collateral
  (Σ ink). A liquidation (`bark`, or `bite` in the Cat era) moves the seized lot from `id` to the
  auction escrow `"{id}:clip"` / `"{id}:flip"`. From the escrow it goes to takers / winning bidders,
  and whatever the auction does not need returns to the population holder.
- The stablecoin is minted by this CDP in exactly two places: to the population holder when vaults
  draw debt (`open_vaults`), and to a keeper as its liquidation incentive (`vat.suck`: the same
  amount is added to system debt). It is burned in exactly three places: `repay` (from the
  population holder), `Clipper.take` (from the taker) and `Flipper.deal` (the escrowed winning bid).
  Flip bids wait in the escrow until `deal`; outbid bidders are refunded from it.

What is a claim, not a token: the vaults' debt Σ art·rate; the stability fee (the rate accumulator
grows, so debt grows with no token minted); the Vow's `surplus` (fee income, liquidation penalties
collected and the initial surplus buffer: income the system is owed or has already netted against
burned stablecoin, kept as a figure because Maker's internal vat.dai of the Vow is not an ERC-20
balance); and system debt (`sin` of running auctions, `woe` once an auction has ended short or an
incentive was paid). Fees become stablecoin only when users repay or auctions raise it. Surplus
absorbs system debt first (dss vow.heal); what is left is bad debt that a debt auction (flop) would
recapitalise. The books balance at all times:

    stablecoin issued − burned + surplus = Σ art·rate + woe + Σ sin of running auctions + surplus_buffer

(`accounting_gap()` returns the difference; it stays at float rounding).

Sources: Maker dss src/vat.sol (frob safety ink·spot ≥ art·rate, dust, line/Line, grab, suck, heal),
src/spot.sol (spot = price/par/mat), src/jug.sol (drip: rate ·= duty^dt), src/dog.sol (bark),
src/cat.sol (bite, MCD launch and Liquidations 1.2 versions), src/vow.sol (fess, heal).
This model has one ilk per CDP, so the Dog's global `Hole` and `Dirt` apply to this ilk alone.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from defistress.protocols.abaci import StairstepExponentialDecrease
from defistress.protocols.base import Env, Exposure, MarginProtocol, PriceSource, Revert
from defistress.protocols.bounds import MAX_TOKENS, MAX_USD, PARAMS_CONFIG, Ceiling, Float, check_ceiling
from defistress.protocols.clip import ClipParams, Clipper, grow
from defistress.protocols.events import AuctionKicked, AuctionSettled, BadDebt, UserAction
from defistress.protocols.flip import FlipParams, Flipper
from defistress.protocols.ledger import ABS_DUST, InsufficientBalance

SECONDS_PER_YEAR = 365.0 * 86400.0  # dss jug duty is quoted per second; spells use 365-day years
PAR = 1.0  # dss spot.sol par: USD per stablecoin the CDP targets
#: a winning bid below this many stablecoin units counts as a "zero bid" (White Rabbit, "Black Thursday
#: for MakerDAO: $8.32 million was liquidated for 0 DAI": winning bids of 0 DAI; under 1 DAI on lots
#: worth thousands is zero in effect)
ZERO_BID_MAX = 1.0
INF = float("inf")
#: relative float tolerance of the vat.frob safety check on freshly opened vaults
_SAFE_RTOL = 1e-12


class CdpParams(BaseModel):
    """One ilk's risk parameters (stablecoin amounts in stablecoin units, times in seconds).

    Defaults are Maker ETH-A under Liquidations 2.0 (see MAKER_LIQ2_ETH_A for sources); the flip-era
    ETH-A of March 2020 is MAKER_2020_ETH_A.
    """

    model_config = PARAMS_CONFIG

    collateral: str = Field("ETH", min_length=1, description="collateral token symbol")
    stablecoin: str = Field("DAI", min_length=1, description="stablecoin symbol minted by the CDP")
    liquidation_ratio: Float = Field(
        1.5, ge=1.0, le=10.0, description="mat: collateral value / debt floor (unitless) [published: ETH-A 150%]"
    )
    stability_fee_per_year: Float = Field(
        0.0, ge=0.0, le=10.0, description="jug duty as an annual rate (1/year) [published: ETH-A 2020 8%]"
    )
    chop: Float = Field(
        1.13, ge=1.0, le=2.0, description="liquidation penalty factor (1.13 = 13 %) [published: ETH-A 13%]"
    )
    # +inf (the default) means no ceiling; a given finite ceiling is at most MAX_USD (protocols/bounds.py)
    line: Ceiling = Field(
        INF,
        ge=0,
        json_schema_extra={"maximum": MAX_USD},
        description="ilk debt ceiling, stablecoin (default: none) [published: ETH-A 2020 150M DAI]",
    )
    Line: Ceiling = Field(
        INF,
        ge=0,
        json_schema_extra={"maximum": MAX_USD},
        description="global debt ceiling, stablecoin (default: none) [published: 2020 183M DAI]",
    )
    dust: Float = Field(
        10_000.0, ge=0, le=MAX_USD, description="minimum vault debt, stablecoin [published: ETH-A 10,000 DAI]"
    )
    hole: Float = Field(
        30e6, gt=0, le=MAX_USD, description="Dog: max tab of running auctions for this ilk, stablecoin [published: 30M]"
    )
    Hole: Float = Field(
        100e6, gt=0, le=MAX_USD, description="Dog: max tab of all running auctions, stablecoin [published: 100M]"
    )
    dunk: Float | None = Field(None, gt=0, le=MAX_USD, description="Cat v2 (Liq 1.2): max tab per bite, stablecoin")
    box: Float | None = Field(
        None, gt=0, le=MAX_USD, description="Cat v2 (Liq 1.2): max tab of running auctions, stablecoin"
    )
    lump: Float | None = Field(
        None,
        gt=0,
        le=MAX_TOKENS,
        description="Cat v1 (MCD launch): max collateral per bite, tokens [published: ETH-A 2020 50 ETH]",
    )
    surplus_buffer: Float = Field(0.0, ge=0, le=MAX_USD, description="initial Vow surplus, stablecoin [scenario input]")
    mechanism: Literal["clip", "flip"] = Field("clip", description="Liquidations 2.0 (clip) or 2020 (flip)")
    clip: ClipParams = Field(ClipParams(), description="Clipper (Liquidations 2.0) parameters")
    flip: FlipParams = Field(FlipParams(), description="Flipper (2020 English auction) parameters")

    @model_validator(mode="after")
    def _ceilings(self):
        check_ceiling("line", self.line, MAX_USD, "stablecoin")
        check_ceiling("Line", self.Line, MAX_USD, "stablecoin")
        return self

    @model_validator(mode="after")
    def _cat_limits(self):
        if self.mechanism == "flip":
            v2 = self.dunk is not None or self.box is not None
            if self.lump is not None and v2:
                raise ValueError("flip mechanism: give either 'lump' (Cat v1) or 'dunk' and 'box' (Cat v2), not both")
            if self.lump is None and (self.dunk is None or self.box is None):
                raise ValueError(
                    "flip mechanism needs Cat limits: 'lump' (Cat v1, collateral units, "
                    "> 0) or both 'dunk' and 'box' (Cat v2, stablecoin, > 0)"
                )
        return self

    @property
    def cat_version(self) -> int:
        return 1 if self.lump is not None else 2


#: Maker ETH-A on Black Thursday (12 March 2020): Cat v1 + Flipper. Sources: "03/12/2020 MakerDAO
#: Executive Spell" (Etherscan-verified 2020-03-13) existing values: ETH-A SF 8 %, ETH-A line 150m,
#: Line 183m, flip ttl 10 min, tau 3 days, lump 50 ETH; mat 150 %, chop 13 %, dust 20 DAI, beg 3 % from
#: the MCD launch configuration (dss-deploy-scripts; kovan launch spell "dust 20, chop 113/100,
#: beg 103/100"). The Vow surplus on the day is a scenario input (surplus_buffer 0 here).
MAKER_2020_ETH_A = CdpParams(
    collateral="ETH",
    stablecoin="DAI",
    liquidation_ratio=1.5,
    stability_fee_per_year=0.08,
    chop=1.13,
    line=150e6,
    Line=183e6,
    dust=20.0,
    lump=50.0,
    mechanism="flip",
    flip=FlipParams(beg=1.03, ttl=600.0, tau=3 * 86400.0),
)

#: Maker ETH-A under Liquidations 2.0. Sources: forum.makerdao.com/t/eth-and-wbtc-vaults-liquidations-
#: 2-0-parameters/7628 (cut 0.99, step 90 s, buf 1.30, cusp 0.40, tail 140 min, chip 0.1 %, tip 0,
#: chop 13 %, Hole 100m); ilk.hole 30m (spells-mainnet: "from 30 Million DAI to 40 Million DAI",
#: poll QmfGk3Dm); dust 10,000 DAI (raised "from 10,000 DAI to 15,000 DAI", poll QmUYLPcr); mat 150 %.
MAKER_LIQ2_ETH_A = CdpParams(
    collateral="ETH",
    stablecoin="DAI",
    liquidation_ratio=1.5,
    chop=1.13,
    dust=10_000.0,
    hole=30e6,
    Hole=100e6,
    mechanism="clip",
    clip=ClipParams(
        buf=1.30,
        tail=140 * 60.0,
        cusp=0.40,
        chip=0.001,
        tip=0.0,
        calc=StairstepExponentialDecrease(cut=0.99, step=90.0),
    ),
)


class Cdp(MarginProtocol):
    """Vaults as arrays (ink collateral units, art normalised debt) sharing one rate accumulator."""

    def __init__(self, params: CdpParams, oracle: PriceSource, env: Env, id: str, *, population: str = "population"):
        self.p = params
        self.oracle = oracle
        self.env = env
        self.id = id
        self.population = population
        self.collateral = params.collateral
        self.stablecoin = params.stablecoin
        self.ink = np.zeros(0)
        self.art = np.zeros(0)
        self.rate = 1.0
        self.surplus = float(params.surplus_buffer)
        self.woe = 0.0  # system debt not tied to a running auction (after heal)
        self.dirt = 0.0  # Dog dirt (= Dirt, one ilk) or Cat v2 litter
        self.sin = np.zeros(0)  # per auction: debt (due) not yet covered by proceeds
        self.issued = 0.0  # stablecoin minted by this CDP
        self.redeemed = 0.0  # stablecoin burned by this CDP
        self.liquidated_debt = 0.0  # Σ due sent to auction
        self.incentives_paid = 0.0
        self.zero_bids = 0
        self.settled = 0
        self._health_key: tuple | None = None  # `_vault_key` of `_health_memo`
        self._health_memo = np.zeros(0)
        self._sums_key: tuple | None = None  # `_vault_key` of `_sums_memo`
        self._sums_memo: tuple = ()
        if params.mechanism == "clip":
            # dss clip.sol upchost: chost = dust·chop
            self.auctions: Clipper | Flipper = Clipper(
                params.clip,
                env,
                oracle,
                holder=f"{id}:clip",
                collateral=self.collateral,
                stablecoin=self.stablecoin,
                owner=population,
                chost=params.dust * params.chop,
                host=self,
                source=id,
            )
        else:
            self.auctions = Flipper(
                params.flip,
                env,
                holder=f"{id}:flip",
                collateral=self.collateral,
                stablecoin=self.stablecoin,
                owner=population,
                host=self,
                source=id,
            )

    # --- views ------------------------------------------------------------------------------------
    @property
    def mechanism(self) -> str:
        return self.p.mechanism

    @property
    def clipper(self) -> Clipper:
        if not isinstance(self.auctions, Clipper):
            raise AttributeError(f"{self.id} liquidates with flip auctions, not a Clipper")
        return self.auctions

    @property
    def flipper(self) -> Flipper:
        if not isinstance(self.auctions, Flipper):
            raise AttributeError(f"{self.id} liquidates with clip auctions, not a Flipper")
        return self.auctions

    @property
    def n_accounts(self) -> int:
        return len(self.ink)

    def price(self) -> float:
        """Oracle price of the collateral, USD per unit."""
        return float(self.oracle.price)

    @property
    def spot(self) -> float:
        """Collateral price with the safety margin, stablecoin per unit (dss spot.sol: price/par/mat)."""
        return self.price() / PAR / self.p.liquidation_ratio

    def debt(self) -> np.ndarray:
        """Debt per vault, stablecoin units (art·rate)."""
        return self.art * self.rate

    def total_debt(self) -> float:
        return float(self.art.sum() * self.rate)

    def _vault_key(self, price: float) -> tuple:
        """Everything the per-vault figures read, as bytes: ink, art (with their dtypes), and (rate, oracle price
        USD per unit, liquidation ratio) as float64 bits (bits, not `==`, so -0.0 and 0.0 differ). Equal keys,
        equal figures: most blocks leave the vaults and the oracle as they were, so `health` and `metrics` reuse
        them."""
        scal = np.array([self.rate, price, self.p.liquidation_ratio], dtype=float)
        return (self.ink.dtype.str, self.ink.tobytes(), self.art.dtype.str, self.art.tobytes(), scal.tobytes())

    def health(self) -> np.ndarray:
        """ink·spot / (art·rate) per vault (≥ 1 safe, dss vat.frob); inf with no debt. A fresh array each call,
        computed once per vault state and oracle price (`_vault_key`)."""
        price = self.price()
        key = self._vault_key(price)
        if key != self._health_key:
            debt = self.art * self.rate
            spot = price / PAR / self.p.liquidation_ratio  # `spot`
            with np.errstate(divide="ignore", invalid="ignore"):
                self._health_memo = np.where(debt > 0, self.ink * spot / debt, np.inf)
            self._health_key = key
        return self._health_memo.copy()

    def liquidatable(self) -> np.ndarray:
        """Vaults that are unsafe: ink·spot < art·rate (dss dog.sol bark 'Dog/not-unsafe')."""
        return np.flatnonzero(self.ink * self.spot < self.art * self.rate)

    def stablecoin_outstanding(self) -> float:
        """Stablecoin minted minus burned by this CDP (token units)."""
        return self.issued - self.redeemed

    def accounting_gap(self) -> float:
        """Left minus right of the balance identity in the module docstring (≈ 0)."""
        k = self.auctions.kicks
        running = float(self.sin[:k][self.auctions.active[:k]].sum())
        return (
            self.stablecoin_outstanding()
            + self.surplus
            - (self.total_debt() + self.woe + running + self.p.surplus_buffer)
        )

    # --- users (vectorised over vaults) -----------------------------------------------------------
    def open_vaults(self, ink: np.ndarray, debt: np.ndarray) -> np.ndarray:
        """Open vaults in a batch: lock `ink` collateral from the population, mint `debt` stablecoin to it.

        Reverts (nothing changed) if any vault would be unsafe or dusty, or a debt ceiling would be
        exceeded (dss vat.frob: 'Vat/not-safe', 'Vat/dust', 'Vat/ceiling-exceeded').
        """
        ink = np.atleast_1d(np.asarray(ink, dtype=float))
        debt = np.atleast_1d(np.asarray(debt, dtype=float))
        if ink.shape != debt.shape:
            raise ValueError(f"{self.id}: ink and debt must have the same shape, got {ink.shape} and {debt.shape}")
        if np.any(ink < 0) or np.any(debt < 0) or not np.all(np.isfinite(ink) & np.isfinite(debt)):
            raise Revert(f"{self.id}: ink and debt must be finite and non-negative")
        if np.any(debt > ink * self.spot * (1 + _SAFE_RTOL)):
            raise Revert("Vat/not-safe")
        if np.any((debt > 0) & (debt < self.p.dust)):
            raise Revert("Vat/dust")
        if float(debt.sum()) > 0:  # a frozen ilk draws no new debt (as a debt ceiling of zero)
            self.require_active(
                self.collateral, frozen_error="Vat/ceiling-exceeded", paused_error="Vat/ceiling-exceeded"
            )
        new_total = self.total_debt() + float(debt.sum())
        if new_total > self.p.line or new_total > self.p.Line:
            raise Revert("Vat/ceiling-exceeded")
        led = self.env.ledger
        try:
            led.transfer(self.collateral, self.population, self.id, float(ink.sum()))
        except InsufficientBalance as exc:
            raise Revert(f"{self.id}: cannot lock collateral: {exc}") from None
        self._mint(self.population, float(debt.sum()), "cdp_draw")
        start = self.n_accounts
        self.ink = np.concatenate([self.ink, ink])
        self.art = np.concatenate([self.art, debt / self.rate])
        return np.arange(start, start + len(ink))

    def deposit(self, account_idx: np.ndarray, amounts: np.ndarray) -> UserAction:
        """Top up collateral of many vaults from the population holder (dss vat.frob dink > 0)."""
        idx, amounts = self._batch(account_idx, amounts)
        total = float(amounts.sum())
        try:
            self.env.ledger.transfer(self.collateral, self.population, self.id, total)
        except InsufficientBalance as exc:
            raise Revert(f"{self.id}: cannot deposit: {exc}") from None
        np.add.at(self.ink, idx, amounts)
        return self.env.emit(UserAction(self.env.clock.block, self.id, "deposit", len(idx), self.collateral, total))

    def repay(self, account_idx: np.ndarray, amounts: np.ndarray) -> np.ndarray:
        """Repay debt of many vaults from the population holder; returns the amounts repaid (burned).

        Each repayment is capped at the vault's debt; one that would leave a dusty vault
        (0 < debt < dust, which dss vat.frob rejects with 'Vat/dust') is cut to leave exactly dust.
        """
        idx, amounts = self._batch(account_idx, amounts)
        owed = self.art[idx] * self.rate
        paid = np.minimum(amounts, owed)
        left = owed - paid
        dusty = (left > ABS_DUST) & (left < self.p.dust)
        paid = np.where(dusty, np.maximum(owed - self.p.dust, 0.0), paid)
        total = float(paid.sum())
        if self.env.ledger.balance(self.population, self.stablecoin) < total - ABS_DUST:
            raise Revert(f"{self.id}: population holds too little {self.stablecoin} to repay {total:.6g}")
        self._burn(self.population, total, "cdp_repay")
        np.subtract.at(self.art, idx, paid / self.rate)
        full = paid >= owed - ABS_DUST
        self.art[idx[full]] = 0.0
        np.maximum(self.art, 0.0, out=self.art)
        self.env.emit(UserAction(self.env.clock.block, self.id, "repay", len(idx), self.stablecoin, total))
        return paid

    def _batch(self, account_idx, amounts) -> tuple[np.ndarray, np.ndarray]:
        idx = np.atleast_1d(np.asarray(account_idx, dtype=np.int64))
        amounts = np.broadcast_to(np.asarray(amounts, dtype=float), idx.shape).astype(float)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n_accounts):
            raise Revert(f"{self.id}: vault index out of range 0..{self.n_accounts - 1}")
        if np.any(amounts < 0) or not np.all(np.isfinite(amounts)):
            raise Revert(f"{self.id}: amounts must be finite and non-negative")
        return idx, amounts

    # --- liquidation --------------------------------------------------------------------------------
    def preview_bark(self, vaults: np.ndarray) -> dict[str, np.ndarray]:
        """What a liquidation of each vault would do now, vectorised, against the current limits.

        Returns arrays: ok (bool), dart (normalised debt taken), dink (collateral seized), due
        (debt, stablecoin), tab (due·chop), coin (keeper incentive, stablecoin), reason (revert
        reason, "" if ok). Each vault is judged alone: two barks in one block share the room.
        """
        v = np.atleast_1d(np.asarray(vaults, dtype=np.int64))
        ink, art, rate = self.ink[v], self.art[v], self.rate
        chop, dust = self.p.chop, self.p.dust
        reason = np.full(len(v), "", dtype=object)

        def flag(mask, msg: str) -> None:
            reason[(reason == "") & mask] = msg

        # governance denied the Dog/Cat on the auction house (FlipperMom; gates.py): no liquidation starts
        flag(np.full(len(v), self.gates.is_paused(self.collateral)), self._paused_error())
        flag(~(ink * self.spot < art * rate), "Dog/not-unsafe" if self.mechanism == "clip" else "Cat/not-unsafe")
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.mechanism == "clip":
                # Maker dss src/dog.sol bark: room = min(Hole − Dirt, hole − dirt); dart = min(art, room/rate/chop)
                room = min(self.p.Hole - self.dirt, self.p.hole - self.dirt)
                flag(np.full(len(v), room <= 0), "Dog/liquidation-limit-hit")
                dart = np.minimum(art, max(room, 0.0) / rate / chop)
                # leftover below dust: liquidate the whole vault; else the partial auction must not be dust
                dart = np.where((art > dart) & ((art - dart) * rate < dust), art, dart)
                flag((art > dart) & (dart * rate < dust), "Dog/dusty-auction-from-partial-liquidation")
                dink = np.minimum(ink, np.where(art > 0, ink * dart / art, 0.0))
                flag(~(dink > 0), "Dog/null-auction")
            elif self.p.cat_version == 1:
                # Maker dss src/cat.sol (MCD launch) bite: lot = min(ink, lump); art = min(art, lot·art/ink)
                assert self.p.lump is not None  # CdpParams' validator: Cat v1 has 'lump'
                dink = np.minimum(ink, self.p.lump)
                dart = np.minimum(art, np.where(ink > 0, dink * art / ink, 0.0))
                flag(~(dink > 0), "Cat/null-auction")
            else:
                # Maker dss src/cat.sol (Liq 1.2) bite: room = box − litter; dart = min(art, min(dunk, room)/rate/chop)
                assert self.p.box is not None and self.p.dunk is not None  # CdpParams' validator: Cat v2 has both
                room = self.p.box - self.dirt
                flag(np.full(len(v), not (self.dirt < self.p.box and room >= dust)), "Cat/liquidation-limit-hit")
                dart = np.minimum(art, min(self.p.dunk, max(room, 0.0)) / rate / chop)
                dink = np.minimum(ink, np.where(art > 0, ink * dart / art, 0.0))
                flag(~((dart > 0) & (dink > 0)), "Cat/null-auction")
        due = dart * rate
        tab = due * chop  # dss dog.sol / cat.sol: tab = due·chop
        coin = np.zeros_like(tab)
        cp = self.p.clip
        if self.mechanism == "clip" and (cp.tip > 0 or cp.chip > 0):
            coin = cp.tip + tab * cp.chip  # dss clip.sol kick: coin = tip + wmul(tab, chip)
        return {
            "ok": reason == "",
            "dart": dart,
            "dink": dink,
            "due": due,
            "tab": tab,
            "coin": coin,
            "reason": reason.astype(str),
        }

    def bark(self, vault: int, keeper: str) -> AuctionKicked:
        """Liquidate an unsafe vault and start its auction; the caller `keeper` gets the incentive.

        Liquidations 2.0 follows dss dog.sol bark (partial liquidation within the hole room, dust
        rule); the flip mechanism follows the Cat's bite of the configured version.
        """
        if not 0 <= vault < self.n_accounts:
            raise Revert(f"{self.id}: no vault #{vault}")
        pv = {k: a[0] for k, a in self.preview_bark(np.array([vault])).items()}
        if not pv["ok"]:
            raise Revert(str(pv["reason"]))
        dart, dink, due, tab = float(pv["dart"]), float(pv["dink"]), float(pv["due"]), float(pv["tab"])
        # dss vat.grab: seize dink collateral and dart debt; due becomes the Vow's sin (vow.fess)
        self.ink[vault] = 0.0 if dink >= self.ink[vault] else self.ink[vault] - dink
        self.art[vault] = 0.0 if dart >= self.art[vault] else self.art[vault] - dart
        self.env.ledger.transfer(self.collateral, self.id, self.auctions.holder, dink)
        if self.mechanism == "clip" or self.p.cat_version == 2:
            self.dirt += tab  # dss dog.sol: Dirt += tab, dirt += tab; cat v2: litter += tab
        self.liquidated_debt += due
        aid = self.auctions.kicks
        self.sin = grow(self.sin, aid + 1)
        self.sin[aid] = due
        return self.auctions.kick(tab, dink, int(vault), keeper)

    def _paused_error(self) -> str:
        """The revert of a liquidation while governance has paused them (dss clip.sol stopped / flip.sol auth)."""
        return "Clipper/stopped-incorrect" if self.mechanism == "clip" else "Flipper/not-authorized"

    def bite(self, vault: int, keeper: str) -> AuctionKicked:
        """Cat-era name of `bark` (dss cat.sol bite)."""
        return self.bark(vault, keeper)

    # --- AuctionHost: the Vow and the Dog/Cat limits --------------------------------------------------
    def vow_suck(self, keeper: str, amount: float) -> None:
        """Mint a keeper incentive; the same amount becomes system debt (dss vat.suck(vow, kpr, coin))."""
        self._mint(keeper, amount, "cdp_keeper_incentive")
        self.woe += amount
        self.incentives_paid += amount
        self._heal()

    def vow_receive(self, auction: int, amount: float) -> None:
        """Auction proceeds (already burned): cover the auction's sin first, the rest is surplus."""
        self.redeemed += amount
        cover = min(amount, float(self.sin[auction]))
        self.sin[auction] -= cover
        self.surplus += amount - cover
        self._heal()

    def dog_digs(self, amount: float) -> None:
        """Release tab from the liquidation limit (dss dog.sol digs, cat.sol claw)."""
        if self.mechanism == "clip" or self.p.cat_version == 2:
            self.dirt = max(self.dirt - amount, 0.0)

    def auction_closed(
        self, auction: int, winner: str, lot_sold: float, raised: float, tab: float, tab_left: float
    ) -> None:
        """Realise the uncovered debt of a finished auction as system debt and report it."""
        uncovered = float(self.sin[auction])
        self.sin[auction] = 0.0
        woe_before = self.woe
        self.woe += uncovered
        self._heal()
        block, price = self.env.clock.block, self.price()
        zero = raised <= ZERO_BID_MAX
        self.zero_bids += int(zero)
        self.settled += 1
        self.env.emit(
            AuctionSettled(
                block,
                self.id,
                int(auction),
                winner,
                float(lot_sold),
                float(raised),
                float(tab),
                float(tab_left),
                float(lot_sold * price),
                bool(zero),
            )
        )
        bad = self.woe - woe_before
        if bad > ABS_DUST:
            self.env.emit(BadDebt(block, self.id, int(self.auctions.usr[auction]), self.stablecoin, bad, bad * PAR))

    def _heal(self) -> None:
        """Net surplus against system debt (dss vow.heal)."""
        h = min(self.surplus, self.woe)
        self.surplus -= h
        self.woe -= h

    def _mint(self, to: str, amount: float, reason: str) -> None:
        if amount > 0:
            self.env.ledger.mint(self.stablecoin, to, amount, reason)
            self.issued += amount

    def _burn(self, frm: str, amount: float, reason: str) -> None:
        if amount > 0:
            self.env.ledger.burn(self.stablecoin, frm, amount, reason)
            self.redeemed += amount

    # --- accrual --------------------------------------------------------------------------------------
    def accrue(self, dt_seconds: float) -> None:
        """Stability fee: rate ·= (1 + fee)^(dt/year) (dss jug.drip with per-second duty); the fee is surplus."""
        if dt_seconds <= 0 or self.p.stability_fee_per_year == 0:
            return
        factor = (1.0 + self.p.stability_fee_per_year) ** (dt_seconds / SECONDS_PER_YEAR)
        fee = float(self.art.sum()) * self.rate * (factor - 1.0)  # dss vat.fold: dai[vow] += Art·drate
        self.rate *= factor
        self.surplus += fee
        self._heal()

    # --- reporting ------------------------------------------------------------------------------------
    def _vault_sums(self, price: float) -> tuple:
        """(Σ ink tokens, Σ debt stablecoin, Σ max(debt − ink·price, 0) USD, count of unsafe vaults), computed once
        per vault state and oracle price (`_vault_key`)."""
        key = self._vault_key(price)
        if key != self._sums_key:
            debt = self.art * self.rate
            vault_short = np.maximum(debt - self.ink * price, 0.0).sum()
            spot = price / PAR / self.p.liquidation_ratio  # `spot`
            unhealthy = int(np.sum(self.ink * spot < self.art * self.rate))
            self._sums_memo = (float(self.ink.sum()), float(debt.sum()), vault_short, unhealthy)
            self._sums_key = key
        return self._sums_memo

    def metrics(self) -> dict[str, float]:
        price = self.price()
        a = self.auctions
        act = a.active[: a.kicks]
        lots = float(a.lot[: a.kicks][act].sum())
        running_sin = self.sin[: a.kicks][act]
        ink_sum, debt_sum, vault_short, unhealthy = self._vault_sums(price)
        auction_short = np.maximum(running_sin - a.lot[: a.kicks][act] * price, 0.0).sum()
        return {
            "collateral_usd": (ink_sum + lots) * price,
            "vault_collateral_usd": ink_sum * price,
            "auction_collateral_usd": lots * price,
            "debt_usd": debt_sum * PAR,
            "bad_debt_usd": self.woe * PAR,
            "surplus_usd": self.surplus * PAR,
            "debt_on_auction_usd": float(running_sin.sum()) * PAR,
            "tab_on_auction_usd": float(a.tab[: a.kicks][act].sum()) * PAR,
            "auctions_active": int(act.sum()),
            "auctions_kicked": int(a.kicks),
            "auctions_settled": self.settled,
            "zero_bid_auctions": self.zero_bids,
            "accounts_unhealthy": unhealthy,
            "undercollateralised_debt_usd": float(vault_short + auction_short) * PAR,
            "liquidated_debt_usd": self.liquidated_debt * PAR,
            "incentives_paid_usd": self.incentives_paid * PAR,
            "stablecoin_outstanding": self.stablecoin_outstanding(),
            "rate": self.rate,
        }

    def exposures(self) -> list[Exposure]:
        a = self.auctions
        held = float(self.ink.sum()) + float(a.lot[: a.kicks][a.active[: a.kicks]].sum())
        out = [
            Exposure("holds", self.collateral, held),
            Exposure("issues", self.stablecoin, self.stablecoin_outstanding()),
        ]
        if self.total_debt() > 0:
            out.append(Exposure("receivable", self.stablecoin, self.total_debt()))
        if self.woe > 0:
            out.append(Exposure("owes", self.stablecoin, self.woe))
        return out
