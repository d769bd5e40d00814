"""The common base of the option-venue populations: genesis funding, venue rows, and margin defence.

Set-up mints each population's cash (lognormal size, USD), spare wallet and gas ETH to its ledger holder
(genesis) and opens one venue row per account with that cash, so the ledger sees every later movement.
Each block, attentive accounts whose venue health has stayed below their alarm level for
`reaction_delay_blocks` top up cash from their wallet to `restore_multiple` x alarm; those whose wallet
cannot cover it buy back that share of their short options from the market maker at mark (health = target).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import mesa
import numpy as np
from pydantic import Field, model_validator

from defistress.agents.option_book import Legs, instrument_arrays, spot_usd, trade_legs
from defistress.agents.traders import Lognormal, _Strict, draw_attention
from defistress.agents.tx import GWEI, BlockView, Tx
from defistress.protocols.bounds import MAX_ACCOUNTS, MAX_BLOCKS, MAX_GAS, MAX_GWEI, MAX_TOKENS, Float, Int
from defistress.protocols.events import UserAction


class OptionPopulationParams(_Strict):
    """Fields shared by the option populations (behavioural defaults are modelling assumptions)."""

    id: str = Field(min_length=1, description="ledger holder of the population's quote tokens and gas")
    accounts: Int = Field(gt=0, le=MAX_ACCOUNTS, description="number of accounts (1..5,000,000)")
    underlying: str = Field("ETH", min_length=1, description="underlying traded (an oracle of the venue)")
    cash_usd: Lognormal = Field(
        Lognormal(median=50_000.0, sigma=1.2, min=1_000.0, max=50e6),
        description="quote cash per account at the start, USD [assumption]",
    )
    wallet_share: Float = Field(
        0.5, ge=0, le=100, description="spare quote per account, share of its cash [assumption]"
    )
    gas_eth_per_account: Float = Field(
        0.05, ge=0, le=MAX_TOKENS, description="ETH per account for gas, tokens [assumption]"
    )
    attentive_share: Float = Field(
        0.3, ge=0, le=1, description="share of accounts that defend their margin [assumption]"
    )
    alarm_health_low: Float = Field(
        1.2, gt=0, le=100, description="alarm levels uniform on [low, high] (health, unitless) [assumption]"
    )
    alarm_health_high: Float = Field(
        2.0, gt=0, le=100, description="upper end of the alarm levels (health, unitless) [assumption]"
    )
    restore_multiple: Float = Field(
        1.5, ge=1, le=100, description="accounts restore health to this x alarm (unitless) [assumption]"
    )
    reaction_delay_blocks: Int = Field(
        75, ge=0, le=MAX_BLOCKS, description="blocks below alarm before acting (75 = 15 min) [assumption]"
    )
    top_up_gas: Int = Field(
        100_000, gt=0, le=MAX_GAS, description="gas units per account in a batched top-up (as traders)"
    )
    buyback_gas: Int = Field(
        250_000, gt=0, le=MAX_GAS, description="gas units per account in a batched buy-back [assumption]"
    )
    priority_fee_gwei: Float = Field(2.0, ge=0, le=MAX_GWEI, description="tip per gas unit, gwei")
    max_users_per_block: Int = Field(
        400, ge=1, le=MAX_ACCOUNTS, description="attentive accounts that can act in one block [assumption]"
    )

    @model_validator(mode="after")
    def _check_alarm(self):
        if self.alarm_health_high < self.alarm_health_low:
            raise ValueError(
                f"{self.id}: alarm_health_high ({self.alarm_health_high}) must be >= "
                f"alarm_health_low ({self.alarm_health_low})"
            )
        return self


def _price_fn(eth_price, venue) -> Callable[[], float]:
    """USD per ETH now: a callable, an object with `.price`, or the venue's ETH oracle (else 0: gas unpriced)."""
    if callable(eth_price):
        return eth_price
    if eth_price is not None:
        return lambda: float(eth_price.price)
    if "ETH" in venue.surfaces:
        return lambda: spot_usd(venue, "ETH")
    return lambda: 0.0


class OptionPopulation(mesa.Agent):
    """Accounts (venue rows) of one population; every decision is an array operation over them."""

    # the short strip of the populations that sell one (`option_writers.sell_strip`: writers, delta hedgers)
    legs: Legs
    qty_sold: np.ndarray  # contracts sold per leg
    premium_usd: float  # premium received (short books) or paid (protection buyers), USD

    def __init__(
        self, model: mesa.Model, params: OptionPopulationParams, venue, rng: np.random.Generator, eth_price=None
    ):
        super().__init__(model)
        if params.underlying not in venue.surfaces:
            raise ValueError(
                f"{params.id}.underlying: {params.underlying!r} is not an underlying of {venue.id}; "
                f"allowed {list(venue.surfaces)}"
            )
        self.params = params
        self.venue = venue
        self.holder = params.id
        self.eth_price = _price_fn(eth_price, venue)
        n = params.accounts
        cash = params.cash_usd.draw(rng, n)
        self.wallet = cash * params.wallet_share
        led = venue.env.ledger
        led.mint(venue.params.quote, self.holder, float(cash.sum() + self.wallet.sum()), "genesis_cash")
        if params.gas_eth_per_account > 0:
            led.mint("ETH", self.holder, params.gas_eth_per_account * n, "genesis_gas")
        self.rows = np.asarray(venue.open_accounts(self.holder, cash), dtype=np.int64)
        self.initial_cash = cash
        self.attentive, self.alarm, self.target_health, self.below_since = draw_attention(params, rng, n)
        self.topped_up_usd = 0.0
        self.bought_back_usd = 0.0

    @property
    def spot(self) -> float:
        return spot_usd(self.venue, self.params.underlying)

    def health(self) -> np.ndarray:
        return self.venue.health()[self.rows]

    def equity(self) -> np.ndarray:
        return self.venue.equity()[self.rows]

    def option_value_usd(self) -> np.ndarray:
        """Signed mark value (USD) of each account's options (long > 0)."""
        ins = instrument_arrays(self.venue)
        qty = np.asarray(self.venue.qty)[self.rows]
        opt = np.isin(ins["kind"][: qty.shape[1]], ("call", "put"))
        return qty[:, opt] @ self.venue.mark_prices()[opt]

    # --- margin defence -----------------------------------------------------------------------------------
    def defence_txs(self, view: BlockView) -> list[Tx]:
        """One batched top-up Tx and one batched buy-back Tx for attentive accounts past their delay."""
        if not self.attentive.any():
            return []
        h = self.health()
        alarmed = self.attentive & (h < self.alarm)
        self.below_since[~alarmed] = -1
        self.below_since[alarmed & (self.below_since < 0)] = view.block
        ready = np.flatnonzero(alarmed & (view.block - self.below_since >= self.params.reaction_delay_blocks))
        ready = ready[: self.params.max_users_per_block]
        if ready.size == 0:
            return []
        eq, need = self._need(ready)
        top = ready[self.wallet[ready] > 0]
        cut = ready[(self.wallet[ready] < need) & (eq > 0)]
        pr, txs = self.params, []
        if top.size:
            txs.append(
                Tx(
                    self.holder,
                    partial(self._top_up, top),
                    pr.top_up_gas * top.size,
                    pr.priority_fee_gwei,
                    f"top_up:{self.venue.id}",
                )
            )
        if cut.size:
            txs.append(
                Tx(
                    self.holder,
                    partial(self._buy_back, cut),
                    pr.buyback_gas * cut.size,
                    pr.priority_fee_gwei,
                    f"buy_back:{self.venue.id}",
                )
            )
        return txs

    def _need(self, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Equity and the cash that restores target health: target x MM - equity (USD, >= 0)."""
        rows = self.rows[local]
        eq = self.venue.equity()[rows]
        mm = self.venue.margin().mm[rows]
        return eq, np.maximum(self.target_health[local] * mm - eq, 0.0)

    def _top_up(self, local: np.ndarray) -> None:
        """Deposit from each wallet what restores target health (as much as the wallet holds)."""
        _, need = self._need(local)
        amounts = np.minimum(need, self.wallet[local])
        keep = amounts > 0
        if not keep.any():
            return
        self.venue.deposit(self.holder, self.rows[local[keep]], amounts[keep])
        total = float(amounts[keep].sum())
        self.wallet[local[keep]] -= amounts[keep]
        self.topped_up_usd += total
        self.below_since[local[keep & (amounts >= need)]] = -1
        env = self.venue.env
        env.emit(UserAction(env.clock.block, self.holder, "top_up", int(keep.sum()), self.venue.params.quote, total))

    def _buy_back(self, local: np.ndarray) -> None:
        """Buy back share 1 - equity / (target x MM) of every short option at mark (Deribit-style reduce)."""
        eq, need = self._need(local)
        mm = self.venue.margin().mm[self.rows[local]]
        keep = (need > 0) & (eq > 0) & (mm > 0)
        if not keep.any():
            return
        local = local[keep]
        cut = 1.0 - np.clip(eq[keep] / (self.target_health[local] * mm[keep]), 0.0, 1.0)
        rows = self.rows[local]
        ins = instrument_arrays(self.venue)
        qty = np.asarray(self.venue.qty)[rows]
        opt = np.isin(ins["kind"][: qty.shape[1]], ("call", "put"))
        r, i = np.nonzero((qty < 0) & opt[None, :])
        traded = trade_legs(self.venue, self.holder, rows[r], i, -qty[r, i] * cut[r])  # reducing: no IM check
        self.bought_back_usd += traded
        self.below_since[local] = -1
        env = self.venue.env
        env.emit(
            UserAction(
                env.clock.block, self.holder, "buy_back", int(np.unique(r).size), self.venue.params.quote, traded
            )
        )

    def gas_usd(self, gas: int, view: BlockView) -> float:
        """USD cost of `gas` units at the block's base fee plus this population's tip."""
        return gas * (view.base_fee_gwei + self.params.priority_fee_gwei) * GWEI * self.eth_price()
