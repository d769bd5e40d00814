"""Maker keeper: kicks unsafe vaults, takes Clipper auctions, bids in Flipper auctions, sells the collateral.

One keeper holds one stablecoin balance in the ledger (its `holder`) and may watch several CDPs with
it. Each block it decides from public state (oracle-driven protocol state, auction clocks, the AMM
pool or the reference price of the outside market) and returns transactions; it submits nothing when
the gas price is above its ceiling, which is how Black Thursday's zero bids happened: the keepers
that would have bid stayed out and an auction's only bid was almost nothing. Decisions are
deterministic given state (vaults in order of health, auctions in id order).

Rules (Maker auction-keeper's behaviour reduced to thresholds):
- kick: `bark` an unsafe vault when the incentive (tip + chip·tab) covers gas plus `min_profit_usd`
  (policy "incentive"), always ("always", as flip-era keepers did without any incentive) or never.
- take (Clipper): when auction price·(1 + min_margin) ≤ the price the keeper can sell at, and the
  gain on the slice covers gas plus `min_profit_usd`; then sell the slice (AMM pool or outside).
- redo (Clipper): when an auction needs a reset and the redo incentive covers gas (policy).
- flip: `tend` then `dent` toward its valuation (market·(1 − min_margin)), either jumping to it
  ("value") or bidding the minimum increment ("increment", whose first bid is `flip_opening_bid`:
  unopposed, it wins the lot for almost nothing); `deal` auctions it won; `tick` expired ones.
"""

from __future__ import annotations

from typing import Literal

import mesa
import numpy as np
from pydantic import BaseModel, Field, model_validator

from defistress.agents.tx import GWEI, Actor, BlockView, Tx
from defistress.protocols.amm import ConstantProductPool
from defistress.protocols.bounds import (
    MAX_GAS,
    MAX_GWEI,
    MAX_TOKENS,
    MAX_USD,
    PARAMS_CONFIG,
    Bool,
    Ceiling,
    Float,
    Int,
    check_ceiling,
)
from defistress.protocols.cdp import Cdp

#: relative float tolerance when comparing collateral amounts computed two ways
_RTOL = 1e-12
#: relative slack of the keeper's vectorised screens: a screen may keep an auction the exact rule then rejects, never
#: drop one the exact rule would act on
_SLACK = 1e-9
#: unsafe vaults previewed for kicks at first, most unsafe first; the rest are previewed together if need be
_KICK_SLICE = 16


class KeeperParams(BaseModel):
    """Keeper behaviour and costs. Gas units are order-of-magnitude estimates [INFERRED] of the mainnet
    calls (Dog.bark with Clipper.kick, Clipper.take without callback, Flipper tend/dent/deal, a Uniswap
    v2 swap); calibrate them per scenario."""

    model_config = PARAMS_CONFIG

    gas_bark: Int = Field(450_000, gt=0, le=MAX_GAS, description="gas units of a bark/bite [INFERRED]")
    gas_take: Int = Field(250_000, gt=0, le=MAX_GAS, description="gas units of a Clipper take [INFERRED]")
    gas_redo: Int = Field(150_000, gt=0, le=MAX_GAS, description="gas units of a Clipper redo [INFERRED]")
    gas_tend: Int = Field(120_000, gt=0, le=MAX_GAS, description="gas units of a Flipper tend [INFERRED]")
    gas_dent: Int = Field(120_000, gt=0, le=MAX_GAS, description="gas units of a Flipper dent [INFERRED]")
    gas_deal: Int = Field(90_000, gt=0, le=MAX_GAS, description="gas units of a Flipper deal [INFERRED]")
    gas_tick: Int = Field(50_000, gt=0, le=MAX_GAS, description="gas units of a Flipper tick [INFERRED]")
    gas_swap: Int = Field(
        120_000, gt=0, le=MAX_GAS, description="gas units of an AMM swap (Uniswap v2 ~100-150k) [INFERRED]"
    )
    priority_fee_gwei: Float = Field(
        2.0, ge=0, le=MAX_GWEI, description="tip per gas unit the keeper pays, gwei [ASSUMED]"
    )
    # [ASSUMED] keeper gas ceiling; Black Thursday's 10-minute mean gas peaked near 225 gwei
    # (historic/README.md), far above the ceilings keepers ran with that day
    max_gas_price_gwei: Float = Field(
        100.0, gt=0, le=MAX_GWEI, description="no transaction above base + priority fee, gwei [ASSUMED]"
    )
    gas_budget_eth: Ceiling = Field(
        float("inf"),
        ge=0,
        json_schema_extra={"maximum": MAX_TOKENS},
        description="total gas the keeper will spend, ETH (default: no limit)",
    )
    latency_blocks: Int = Field(
        0, ge=0, le=10_000, description="blocks an opportunity must persist before acting [ASSUMED]"
    )
    min_profit_usd: Float = Field(
        0.0, ge=0, le=MAX_USD, description="minimum expected profit after gas per action, USD [ASSUMED]"
    )
    min_margin: Float = Field(
        0.02, ge=0, lt=1, description="take/bid only at ≥ this discount to the sale price, fraction [ASSUMED]"
    )
    kick_policy: Literal["incentive", "always", "never"] = Field(
        "incentive", description="bark/bite: when the keeper's reward pays its gas, always, or never"
    )
    redo_policy: Literal["incentive", "always", "never"] = Field(
        "incentive", description="redo a stale Clipper auction: when it pays, always, or never"
    )
    flip_strategy: Literal["value", "increment"] = Field(
        "value", description="Flipper bids: up to the collateral's value, or the minimum increment over the last bid"
    )
    flip_opening_bid: Float = Field(
        1e-6, gt=0, le=MAX_USD, description="first tend of the increment strategy, stablecoin"
    )
    max_actions_per_block: Int = Field(
        10, ge=1, le=10_000, description="transactions one keeper sends per block [ASSUMED]"
    )
    sell_collateral: Bool = Field(True, description="sell collateral won, in the same transaction")

    @model_validator(mode="after")
    def _budget(self):
        check_ceiling("gas_budget_eth", self.gas_budget_eth, MAX_TOKENS, "ETH")
        return self

    gas_token: str = Field("ETH", min_length=1, description="token gas is paid in (priced from view.reference)")


class Keeper(mesa.Agent, Actor):
    """A keeper watching one or more CDPs with one stablecoin balance (its ledger holder)."""

    def __init__(
        self,
        model: mesa.Model,
        holder: str,
        cdps: list[Cdp],
        params: KeeperParams | None = None,
        pool: ConstantProductPool | None = None,
        rng: np.random.Generator | None = None,
    ):
        super().__init__(model)
        if not cdps:
            raise ValueError(f"keeper {holder}: give at least one CDP to watch")
        self.holder = holder
        self.cdps = list(cdps)
        self.p = params or KeeperParams()
        self.pool = pool
        self.strategy_rng = rng  # reserved for randomised strategies; decisions are deterministic
        self.gas_spent_eth = 0.0  # estimated gas of submitted transactions
        self._seen: dict[tuple, int] = {}  # opportunity -> first block seen (latency)
        self._external = None
        if pool is not None:
            for cdp in self.cdps:
                pair = {pool.p.token0, pool.p.token1}
                if pair == {cdp.collateral, cdp.stablecoin}:
                    break
            else:
                raise ValueError(
                    f"keeper {holder}: pool {pool.id} ({pool.p.token0}/{pool.p.token1}) pairs no "
                    "watched CDP's collateral with its stablecoin"
                )

    # --- the decision ---------------------------------------------------------------------------------
    def submit(self, view: BlockView) -> list[Tx]:
        """Transactions for this block (possibly none)."""
        self._external = view.external
        gas_price = view.base_fee_gwei + self.p.priority_fee_gwei
        seen_now: set[tuple] = set()
        if gas_price > self.p.max_gas_price_gwei:
            self._forget(seen_now)
            return []
        ctx = _Ctx(
            view=view, gas_price_gwei=gas_price, eth_usd=self._gas_token_usd(view), cash={}, txs=[], seen=seen_now
        )
        if self._all_spent_out(ctx):  # every scan below would pass over everything: nothing to queue
            self._forget(seen_now)
            return []
        for cdp in self.cdps:
            ctx.cash.setdefault(cdp.stablecoin, cdp.env.ledger.balance(self.holder, cdp.stablecoin))
        for cdp in self.cdps:
            if cdp.mechanism == "clip":
                self._clip_auctions(cdp, ctx)
            else:
                self._flip_auctions(cdp, ctx)
        for cdp in self.cdps:
            self._kicks(cdp, ctx)
        self._forget(seen_now)
        return ctx.txs

    def _forget(self, seen_now: set[tuple]) -> None:
        self._seen = {k: b for k, b in self._seen.items() if k in seen_now}

    def _ready(self, key: tuple, ctx: _Ctx) -> bool:
        """Latency: act on an opportunity only once it has been visible for `latency_blocks` blocks."""
        ctx.seen.add(key)
        first = self._seen.setdefault(key, ctx.view.block)
        return ctx.view.block - first >= self.p.latency_blocks

    def _room(self, ctx: _Ctx) -> bool:
        return len(ctx.txs) < self.p.max_actions_per_block

    def _gas_usd(self, gas: int, ctx: _Ctx) -> float:
        return gas * ctx.gas_price_gwei * GWEI * ctx.eth_usd

    def _gas_token_usd(self, view: BlockView) -> float:
        if self.p.gas_token in view.reference:
            return float(view.reference[self.p.gas_token])
        for cdp in self.cdps:
            if cdp.collateral == self.p.gas_token:
                return cdp.price()
        raise KeyError(f"keeper {self.holder}: no price for gas token {self.p.gas_token!r} in view.reference")

    def _spent_out(self, gas: int, ctx: _Ctx) -> bool:
        """True when `_add` would refuse every action of `gas` units for the rest of this `submit` (the budget only
        shrinks within it) and the keeper has no latency, so scanning for such actions can change nothing: with
        `latency_blocks` 0 `_ready` always says yes, and the sightings it records decide nothing."""
        return (
            self.p.latency_blocks == 0 and self.gas_spent_eth + gas * ctx.gas_price_gwei * GWEI > self.p.gas_budget_eth
        )

    def _all_spent_out(self, ctx: _Ctx) -> bool:
        """True when, on Clippers only, the budget refuses a take (with its swap), a redo and a kick alike
        (`_spent_out`): `_redo_screen`, `_take_screen` and `_kicks` then each return before acting, so `submit`
        queues nothing (Flippers' scans do not consult `_spent_out`: never skipped)."""
        return all(
            cdp.mechanism == "clip"
            and self._spent_out(self.p.gas_take + self._swap_gas(cdp), ctx)
            and self._spent_out(self.p.gas_redo, ctx)
            and self._spent_out(self.p.gas_bark, ctx)
            for cdp in self.cdps
        )

    def _add(self, ctx: _Ctx, action, gas: int, label: str) -> bool:
        """Queue a transaction if the gas budget allows."""
        cost_eth = gas * ctx.gas_price_gwei * GWEI
        if self.gas_spent_eth + cost_eth > self.p.gas_budget_eth:
            return False
        self.gas_spent_eth += cost_eth
        ctx.txs.append(Tx(self.holder, action, gas, self.p.priority_fee_gwei, label))
        return True

    # --- valuation ------------------------------------------------------------------------------------
    def sale_value(self, cdp: Cdp, amount: float, ctx: _Ctx | None = None) -> float:
        """Stablecoin the keeper expects for selling `amount` collateral now (pool quote or reference)."""
        if amount <= 0:
            return 0.0
        if (pool := self._pool_for(cdp)) is not None:
            return float(pool.quote(cdp.collateral, amount))
        ref = ctx.view.reference if ctx is not None else {}
        p_col = float(ref.get(cdp.collateral, cdp.price()))
        p_stable = float(ref.get(cdp.stablecoin, 1.0))
        fee = float(getattr(self._external, "fee", 0.0)) if self._external is not None else 0.0
        return amount * p_col / p_stable * (1.0 - fee)

    def _pool_for(self, cdp: Cdp) -> ConstantProductPool | None:
        if self.pool is not None and {self.pool.p.token0, self.pool.p.token1} == {cdp.collateral, cdp.stablecoin}:
            return self.pool
        return None

    def _sell(self, cdp: Cdp, amount: float) -> None:
        """Sell collateral just won, inside the same transaction (pool if it fits, else the outside market)."""
        if not self.p.sell_collateral or amount <= 0:
            return
        pool = self._pool_for(cdp)
        if pool is not None:
            pool.swap(self.holder, cdp.collateral, amount)
        elif self._external is not None:
            self._external.sell(self.holder, cdp.collateral, amount, cdp.stablecoin)

    def _swap_gas(self, cdp: Cdp) -> int:
        if self.p.sell_collateral and (self._pool_for(cdp) is not None or self._external is not None):
            return self.p.gas_swap
        return 0

    # --- kicks ----------------------------------------------------------------------------------------
    def _kicks(self, cdp: Cdp, ctx: _Ctx) -> None:
        if self.p.kick_policy == "never" or self._spent_out(self.p.gas_bark, ctx):
            return
        room = _kick_room(cdp)
        if room <= 0:  # no room left: every bark would revert (Dog hole/Hole, Cat box)
            return
        # what the order and the previews' ok, tab and coin depend on (dss dog.sol bark: vault, rate, spot, Dirt, gates)
        state = (cdp.ink.tobytes(), cdp.art.tobytes(), cdp.rate, cdp.price(), cdp.p, cdp.dirt)
        memo = _shared(ctx.view, "unsafe", cdp, (*state, cdp.gates.is_paused(cdp.collateral)))
        if "order" not in memo:
            unsafe = cdp.liquidatable()
            memo["order"] = unsafe[np.argsort(cdp.health()[unsafe], kind="stable")]  # most unsafe first
        unsafe = memo["order"]
        if len(unsafe) == 0:
            return
        gas_usd = self._gas_usd(self.p.gas_bark, ctx)
        if self.p.kick_policy == "incentive":
            unsafe = unsafe[self._may_pay(cdp, unsafe, gas_usd)]
        used = 0.0
        # the vaults in order, previewed a slice at a time (the first few, then the rest): `preview_bark` judges
        # each vault alone, and the walk usually stops within the first few (the limit's room or the actions per
        # block run out)
        start, size = 0, _KICK_SLICE
        while start < unsafe.size:
            part = unsafe[start : start + size]
            start, size = start + size, unsafe.size
            key = ("preview", part.tobytes())
            if key not in memo:
                memo[key] = cdp.preview_bark(part)
            pv = memo[key]  # read only
            worth = pv["ok"] & ((self.p.kick_policy == "always") | (pv["coin"] - gas_usd >= self.p.min_profit_usd))
            for k in np.flatnonzero(worth):
                if not self._room(ctx):
                    return
                if used > 0 and used + pv["tab"][k] > room:
                    return
                vault = int(part[k])
                if not self._ready((cdp.id, "kick", vault), ctx):
                    continue
                if self._add(ctx, _bind(cdp.bark, vault, self.holder), self.p.gas_bark, f"bark {cdp.id}#{vault}"):
                    used += float(pv["tab"][k])

    def _may_pay(self, cdp: Cdp, vaults: np.ndarray, gas_usd: float) -> np.ndarray:
        """Mask over `vaults`: False where the kick incentive certainly cannot cover gas plus `min_profit_usd`.

        A bark takes dart <= art, so its tab = dart·rate·chop is at most art·rate·chop (the same products in the
        same order as `Cdp.preview_bark`, and rounding is monotone), and its incentive tip + tab·chip at most the
        same with art (dss dog.sol bark, clip.sol kick); no incentive outside a Clipper with tip or chip."""
        cp = cdp.p.clip
        if cdp.mechanism == "clip" and (cp.tip > 0 or cp.chip > 0):
            coin = cp.tip + cdp.art[vaults] * cdp.rate * cdp.p.chop * cp.chip
        else:
            coin = np.zeros(vaults.size)
        floor = self.p.min_profit_usd
        return coin - gas_usd >= floor - _SLACK * (np.abs(coin) + gas_usd + abs(floor) + 1.0)

    # --- Clipper ----------------------------------------------------------------------------------------
    def _clip_auctions(self, cdp: Cdp, ctx: _Ctx) -> None:
        """Redo or take running auctions in id order. A vectorised screen over the auctions drops those the scalar
        rules (`_maybe_redo`, `_maybe_take`) would certainly pass over, with no side effect; the scalar rules then
        decide the rest. A queued take spends cash, which changes every later take's slice: the screen is
        redone over the auctions after it."""
        clip = cdp.clipper
        memo = _shared(
            ctx.view,
            "status",
            cdp,
            (clip.now(), clip.kicks, clip.active.tobytes(), clip.tic.tobytes(), clip.top.tobytes(), clip.p),
        )
        if "status" not in memo:
            memo["status"] = clip.status()
        needs, price = memo["status"]  # read only
        ids = clip.active_ids()
        redo = np.zeros(needs.size, dtype=bool)  # auctions needing a reset that `_maybe_redo` may act on
        redo[self._redo_screen(cdp, ids[needs[ids]], ctx)] = True
        start = 0
        while start < ids.size:
            rest = ids[start:]
            act = needs[rest] & redo[rest]
            act |= ~needs[rest] & self._take_screen(cdp, rest, price, ctx)
            for i in rest[act]:
                if not self._room(ctx):
                    return
                i = int(i)
                if needs[i]:
                    self._maybe_redo(cdp, i, ctx)
                    continue
                cash = ctx.cash[cdp.stablecoin]
                self._maybe_take(cdp, i, float(price[i]), ctx)
                if ctx.cash[cdp.stablecoin] != cash:  # a take was queued: re-screen the later auctions
                    start = int(np.searchsorted(ids, i, side="right"))
                    break
            else:
                return

    def _redo_screen(self, cdp: Cdp, ids: np.ndarray, ctx: _Ctx) -> np.ndarray:
        """The auctions of `ids` (needing a reset) that `_maybe_redo` may act on: all but those whose incentive
        certainly does not pay for the gas (a conservative vectorised form of `Clipper.redo_incentive`)."""
        if self.p.redo_policy == "never" or self._spent_out(self.p.gas_redo, ctx):
            return ids[:0]
        if self.p.redo_policy == "always" or ids.size == 0:
            return ids
        clip = cdp.clipper
        tab, lot = clip.tab[ids], clip.lot[ids]
        paid = clip.p.tip > 0 or clip.p.chip > 0
        # Maker dss src/clip.sol redo: coin = tip + tab·chip when tab ≥ chost and lot·feed ≥ chost, else 0
        coin = np.where(
            (tab >= clip.chost) & (lot * clip.feed_price() >= clip.chost), clip.p.tip + tab * clip.p.chip, 0
        )
        coin = coin if paid else np.zeros(ids.size)
        floor = self.p.min_profit_usd + self._gas_usd(self.p.gas_redo, ctx)
        certainly_not = coin < floor - _SLACK * (np.abs(coin) + abs(floor) + 1.0)  # NaN: not certain
        return ids[~certainly_not]

    def _take_screen(self, cdp: Cdp, ids: np.ndarray, price: np.ndarray, ctx: _Ctx) -> np.ndarray:
        """Mask over `ids`: False where `_maybe_take` at the current cash certainly returns without acting (the same
        arithmetic over arrays, compared with a small slack so a rounding difference can only keep an auction)."""
        cash = ctx.cash[cdp.stablecoin]
        px = price[ids]
        if not cash > 0 or self._spent_out(self.p.gas_take + self._swap_gas(cdp), ctx):
            return np.zeros(ids.size, dtype=bool)
        clip = cdp.clipper
        lot, tab = clip.lot[ids], clip.tab[ids]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            amount = np.minimum(lot, cash / px)
            owe = np.minimum(amount * px, tab)  # dss clip.sol take: owe capped at tab
            amount = owe / px
            value = self._sale_values(cdp, amount, ctx)
            unit = np.where(amount > 0, value / amount, 0.0)
            gas_usd = self._gas_usd(self.p.gas_take + self._swap_gas(cdp), ctx)
            dear = px * (1.0 + self.p.min_margin) > unit * (1.0 + _SLACK) + _SLACK
            profit = value - owe - gas_usd
            poor = profit < self.p.min_profit_usd - _SLACK * (np.abs(value) + np.abs(owe) + gas_usd + 1.0)
        return ~((px <= 0) | dear | poor)

    def _sale_values(self, cdp: Cdp, amount: np.ndarray, ctx: _Ctx) -> np.ndarray:
        """`sale_value` of each amount (stablecoin), as arrays: the pool's constant-product quote or the reference."""
        if (pool := self._pool_for(cdp)) is not None:
            r0, r1 = pool.reserves()
            r_in, r_out = (r0, r1) if cdp.collateral == pool.p.token0 else (r1, r0)
            a = amount * (1.0 - pool.p.fee)  # Uniswap v2 getAmountOut (protocols/amm.py quote)
            value = a * r_out / (r_in + a)
        else:
            ref = ctx.view.reference
            p_col = float(ref.get(cdp.collateral, cdp.price()))
            p_stable = float(ref.get(cdp.stablecoin, 1.0))
            fee = float(getattr(self._external, "fee", 0.0)) if self._external is not None else 0.0
            value = amount * p_col / p_stable * (1.0 - fee)
        return np.where(amount > 0, value, 0.0)

    def _maybe_redo(self, cdp: Cdp, i: int, ctx: _Ctx) -> None:
        if self.p.redo_policy == "never":
            return
        coin = cdp.clipper.redo_incentive(i)
        if self.p.redo_policy == "incentive" and coin - self._gas_usd(self.p.gas_redo, ctx) < self.p.min_profit_usd:
            return
        if self._ready((cdp.id, "redo", i), ctx):
            self._add(ctx, _bind(cdp.clipper.redo, i, self.holder), self.p.gas_redo, f"redo {cdp.id}:{i}")

    def _maybe_take(self, cdp: Cdp, i: int, price: float, ctx: _Ctx) -> None:
        clip = cdp.clipper
        cash = ctx.cash[cdp.stablecoin]
        lot, tab = float(clip.lot[i]), float(clip.tab[i])
        if price <= 0 or cash <= 0:
            return
        amount = min(lot, cash / price)
        owe = min(amount * price, tab)  # dss clip.sol take: owe capped at tab
        amount = owe / price
        value = self.sale_value(cdp, amount, ctx)
        unit = value / amount if amount > 0 else 0.0
        gas = self.p.gas_take + self._swap_gas(cdp)
        if not price * (1.0 + self.p.min_margin) <= unit:
            return
        if value - owe - self._gas_usd(gas, ctx) < self.p.min_profit_usd:
            return
        if not self._ready((cdp.id, "take", i), ctx):
            return

        def action(cdp=cdp, i=i, amount=amount, price=price):
            ev = cdp.clipper.take(i, amount, price, self.holder)
            self._sell(cdp, ev.lot)
            return ev

        if self._add(ctx, action, gas, f"take {cdp.id}:{i}"):
            ctx.cash[cdp.stablecoin] = cash - owe

    # --- Flipper ----------------------------------------------------------------------------------------
    def _flip_auctions(self, cdp: Cdp, ctx: _Ctx) -> None:
        flip = cdp.flipper
        finished, expired = flip.finished(), flip.needs_tick()
        for i in flip.active_ids():
            if not self._room(ctx):
                return
            i = int(i)
            mine = flip.guy[i] == self.holder
            if finished[i]:
                if mine and self._ready((cdp.id, "deal", i), ctx):
                    self._add(
                        ctx, self._deal_action(cdp, i), self.p.gas_deal + self._swap_gas(cdp), f"deal {cdp.id}:{i}"
                    )
                continue
            if mine:
                continue
            bid = self._flip_bid(cdp, i, ctx)
            if bid is None or not self._ready((cdp.id, "flip", i), ctx):
                continue
            if expired[i]:
                self._add(ctx, _bind(flip.tick, i), self.p.gas_tick, f"tick {cdp.id}:{i}")
                continue
            phase, lot, amount, pay = bid
            fn = flip.tend if phase == "tend" else flip.dent
            gas = self.p.gas_tend if phase == "tend" else self.p.gas_dent
            if self._add(ctx, _bind(fn, i, lot, amount, self.holder), gas, f"{phase} {cdp.id}:{i}"):
                ctx.cash[cdp.stablecoin] -= pay

    def _flip_bid(self, cdp: Cdp, i: int, ctx: _Ctx) -> tuple[str, float, float, float] | None:
        """(phase, lot, bid, stablecoin needed) of the bid the keeper would place, or None."""
        flip = cdp.flipper
        beg = flip.p.beg
        lot, bid, tab = float(flip.lot[i]), float(flip.bid[i]), float(flip.tab[i])
        cash = ctx.cash[cdp.stablecoin]
        later_gas = self.p.gas_deal + self._swap_gas(cdp)
        unit = self.sale_value(cdp, lot, ctx) / lot if lot > 0 else 0.0
        reserve = unit * (1.0 - self.p.min_margin)  # most the keeper pays per collateral unit
        if not flip.in_dent(i):
            if self.p.flip_strategy == "value":
                target = min(tab, lot * reserve)
            else:
                target = min(tab, self.p.flip_opening_bid if bid == 0 else bid * beg)
                if target > lot * reserve:
                    return None
            # Maker dss src/flip.sol tend: bid > bids.bid and (bid ≥ beg·bids.bid or bid == tab)
            if not (target > bid and (target >= beg * bid or target == tab)):
                return None
            gain = self.sale_value(cdp, lot, ctx) - target
            gas = self.p.gas_tend + later_gas
            pay = target
            new_lot = lot
        else:
            if reserve <= 0:
                return None
            floor_lot = tab / reserve  # smallest lot the keeper accepts for tab
            new_lot = floor_lot if self.p.flip_strategy == "value" else lot / beg
            # Maker dss src/flip.sol dent: lot < bids.lot and beg·lot ≤ bids.lot
            if not (new_lot >= floor_lot * (1 - _RTOL) and beg * new_lot <= lot):
                return None
            target = tab
            gain = self.sale_value(cdp, new_lot, ctx) - tab
            gas = self.p.gas_dent + later_gas
            pay = tab
        if pay > cash or gain - self._gas_usd(gas, ctx) < self.p.min_profit_usd:
            return None
        return ("tend" if not flip.in_dent(i) else "dent", new_lot, target, pay)

    def _deal_action(self, cdp: Cdp, i: int):
        def action(cdp=cdp, i=i):
            lot = float(cdp.flipper.lot[i])
            ev = cdp.flipper.deal(i)
            self._sell(cdp, lot)
            return ev

        return action


class _Ctx:
    """Scratch state of one `submit` call."""

    def __init__(self, view: BlockView, gas_price_gwei: float, eth_usd: float, cash: dict, txs: list, seen: set):
        self.view, self.gas_price_gwei, self.eth_usd = view, gas_price_gwei, eth_usd
        self.cash, self.txs, self.seen = cash, txs, seen


def _shared(view: BlockView, what: str, cdp: Cdp, state: tuple) -> dict:
    """What the keepers of a block read from one CDP, shared through `view.extra` and kept while the state it
    depends on (`state`) is unchanged: the keepers of a block decide on the same state."""
    memo = view.extra.setdefault(f"keeper-{what}:{id(cdp)}", {})
    if memo.get("state") != state:
        memo.clear()
        memo["state"] = state
    return memo


def _bind(fn, *args):
    def action():
        return fn(*args)

    return action


def _kick_room(cdp: Cdp) -> float:
    """Tab the liquidation limit still admits (Dog hole/Hole, Cat v2 box; Cat v1 has none)."""
    if cdp.mechanism == "clip":
        return min(cdp.p.Hole, cdp.p.hole) - cdp.dirt
    if cdp.p.cat_version == 2:
        assert cdp.p.box is not None  # CdpParams' validator: Cat v2 has 'box'
        return cdp.p.box - cdp.dirt
    return float("inf")
