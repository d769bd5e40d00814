"""Protection buyers: accounts that buy OTM puts on the options venue at set-up and optionally roll them.

Each account spends `premium_budget_share` of its cash on puts (strike S(1 - d), expiry drawn from the strip)
bought from the market maker at mark. If `roll`, accounts whose puts have at most `roll_before_days` left sell
them at mark and buy the same number of new puts at the same OTM distance from the current spot and the same
tenor (fewer if cash cannot pay the premium), in one batched Tx. Long puts need no margin, so no defence.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from pydantic import Field, model_validator

from defistress.agents.option_book import (
    SECONDS_PER_DAY,
    StripParams,
    draw_strip,
    instrument_arrays,
    list_legs,
    trade_legs,
)
from defistress.agents.option_population import OptionPopulation, OptionPopulationParams
from defistress.agents.tx import BlockView, Tx
from defistress.protocols.bounds import MAX_GAS, Bool, Float, Int
from defistress.protocols.events import UserAction
from defistress.protocols.margin.portfolio import PUT


class ProtectionBuyersParams(OptionPopulationParams):
    """A population of put buyers (defaults are modelling assumptions, not venue values)."""

    id: str = Field("protection_buyers", min_length=1, description="ledger holder of the population")
    attentive_share: Float = Field(
        0.0, ge=0, le=1, description="share of accounts that defend margin (long puts need none) [assumption]"
    )
    wallet_share: Float = Field(
        0.0, ge=0, le=100, description="spare quote per account, share of its cash [assumption]"
    )
    strip: StripParams = Field(
        StripParams(style_weights={"put": 1.0}, otm_low=0.05, otm_high=0.20, expiry_days={30.0: 0.7, 90.0: 0.3}),
        description="which puts the accounts buy [assumption: monthly and quarterly puts]",
    )
    premium_budget_share: Float = Field(
        0.2, gt=0, le=1, description="share of cash (USD) spent on puts at set-up [assumption]"
    )
    roll: Bool = Field(True, description="roll puts before expiry")
    roll_before_days: Float = Field(
        2.0, ge=0, le=3650, description="roll when this many days or fewer are left [assumption]"
    )
    roll_gas: Int = Field(
        400_000, gt=0, le=MAX_GAS, description="gas units per account in a batched roll (sell + buy) [assumption]"
    )

    @model_validator(mode="after")
    def _puts_only(self):
        if set(self.strip.style_weights) - {"put"} and any(
            v > 0 for k, v in self.strip.style_weights.items() if k != "put"
        ):
            raise ValueError(
                f"{self.id}.strip.style_weights: allowed {{'put': 1.0}} only, got {self.strip.style_weights}"
            )
        return self


class ProtectionBuyers(OptionPopulation):
    """Long put books; `puts[i]` contracts held by account i in instrument `put_instrument[i]`."""

    params: ProtectionBuyersParams

    def __init__(self, model, params: ProtectionBuyersParams, venue, rng: np.random.Generator, eth_price=None):
        super().__init__(model, params, venue, rng, eth_price)
        n = params.accounts
        self.strike_step_usd = params.strip.strike_step_share * self.spot  # the strike grid is fixed at set-up
        legs = draw_strip(venue, params.underlying, params.strip, rng, n, self.spot)
        order = np.argsort(legs.local, kind="stable")
        self.put_instrument = legs.instrument[order]
        self.tenor_s = legs.expiry_t[order] - venue.env.clock.seconds
        self.otm = 1.0 - legs.strike[order] / self.spot
        mark = venue.mark_prices()[self.put_instrument]
        self.puts = np.where(
            mark > 0, params.premium_budget_share * self.initial_cash / np.where(mark > 0, mark, 1.0), 0.0
        )
        self.premium_usd = trade_legs(venue, self.holder, self.rows, self.put_instrument, self.puts)
        self.rolls = 0

    def put_value_usd(self) -> np.ndarray:
        """Mark value of each account's puts (USD)."""
        held = np.asarray(self.venue.qty)[self.rows, self.put_instrument]
        return held * self.venue.mark_prices()[self.put_instrument]

    def submit(self, view: BlockView) -> list[Tx]:
        """One batched roll Tx for accounts whose puts are about to expire."""
        if not self.params.roll:
            return []
        left = instrument_arrays(self.venue)["expiry_t"][self.put_instrument] - view.seconds
        due = np.flatnonzero((left <= self.params.roll_before_days * SECONDS_PER_DAY) & (self.puts > 0))
        due = due[: self.params.max_users_per_block]
        if due.size == 0:
            return []
        return [
            Tx(
                self.holder,
                partial(self._roll, due),
                self.params.roll_gas * due.size,
                self.params.priority_fee_gwei,
                f"roll_puts:{self.venue.id}",
            )
        ]

    def _roll(self, local: np.ndarray) -> None:
        """Sell the old puts at mark (if not yet expired), buy new ones at the same distance and tenor."""
        v = self.venue
        rows = self.rows[local]
        held = np.asarray(v.qty)[rows, self.put_instrument[local]]
        trade_legs(v, self.holder, rows, self.put_instrument[local], -np.maximum(held, 0.0))
        spot = self.spot
        step = self.strike_step_usd
        strike = np.maximum(np.round(spot * (1.0 - self.otm[local]) / step), 1.0) * step
        legs = list_legs(
            v, self.params.underlying, local, np.full(local.size, PUT, np.int8), strike, self.tenor_s[local]
        )
        mark = v.mark_prices()[legs.instrument]
        cash = np.maximum(np.asarray(v.cash)[rows], 0.0)
        qty = np.minimum(self.puts[local], np.where(mark > 0, cash / np.where(mark > 0, mark, 1.0), 0.0))
        trade_legs(v, self.holder, rows, legs.instrument, qty)
        self.put_instrument[local] = legs.instrument
        self.puts[local] = qty
        self.rolls += int(local.size)
        v.env.emit(
            UserAction(
                v.env.clock.block, self.holder, "roll_puts", int(local.size), self.params.underlying, float(qty.sum())
            )
        )
