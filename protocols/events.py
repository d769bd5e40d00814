"""Event records returned by protocol and agent actions; the run's event log is built from them.

Every event has the block it happened in, a `kind`, and the `source` that emitted it (a protocol,
oracle or agent id). Typed subclasses add their fields; `row()` flattens an event for the Parquet log.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    block: int
    source: str

    kind = "event"

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind
        return d


@dataclass(frozen=True, slots=True)
class Liquidated(Event):
    """A liquidation call that succeeded (lending market, perp DEX or an auction-free CDP path)."""

    account: int
    liquidator: str
    debt_asset: str
    collateral_asset: str
    debt_repaid: float  # debt-asset units
    collateral_seized: float  # collateral units, incl. bonus, excl. protocol fee
    protocol_fee: float  # collateral units to the treasury
    debt_repaid_usd: float
    collateral_seized_usd: float
    bonus_usd: float  # value the borrower lost to the liquidator beyond the debt repaid
    health_before: float
    kind = "liquidation"


@dataclass(frozen=True, slots=True)
class BadDebt(Event):
    """Debt written off because the account has no collateral left (Aave v3.3 deficit, CDP system debt)."""

    account: int
    asset: str
    amount: float
    amount_usd: float
    kind = "bad_debt"


@dataclass(frozen=True, slots=True)
class OracleUpdated(Event):
    asset: str
    price: float
    reference_price: float
    reason: str  # deviation | heartbeat | delayed | floor
    kind = "oracle_update"


@dataclass(frozen=True, slots=True)
class Reverted(Event):
    """A transaction that was included but failed; it still paid gas."""

    sender: str
    action: str
    reason: str
    gas_paid_eth: float
    kind = "revert"


@dataclass(frozen=True, slots=True)
class Swapped(Event):
    trader: str
    token_in: str
    amount_in: float
    token_out: str
    amount_out: float
    price_impact: float  # fractional move of the pool price caused by this swap
    kind = "swap"


@dataclass(frozen=True, slots=True)
class UserAction(Event):
    """A batch of population actions (top-ups, repayments) in one block."""

    action: str
    accounts: int
    asset: str
    amount: float
    kind = "user_action"


@dataclass(frozen=True, slots=True)
class AuctionKicked(Event):
    auction: int
    account: int
    lot: float  # collateral units
    tab: float  # debt units owed to the protocol (incl. penalty)
    start_price: float
    keeper: str
    incentive: float  # stablecoin paid to the kicker
    kind = "auction_kick"


@dataclass(frozen=True, slots=True)
class AuctionBid(Event):
    auction: int
    bidder: str
    lot: float
    bid: float  # stablecoin
    phase: str  # tend | dent | take
    kind = "auction_bid"


@dataclass(frozen=True, slots=True)
class AuctionSettled(Event):
    auction: int
    winner: str
    lot_sold: float
    raised: float  # stablecoin
    tab: float
    shortfall: float  # stablecoin of tab not covered
    collateral_value_usd: float
    zero_bid: bool
    kind = "auction_settled"


@dataclass(frozen=True, slots=True)
class Deleveraged(Event):
    """Auto-deleveraging: a profitable position closed against a bankrupt one."""

    account: int
    market: str
    size: float
    price: float
    kind = "adl"


@dataclass(frozen=True, slots=True)
class Generic(Event):
    """Any other protocol event; `detail` carries its fields."""

    name: str
    detail: dict = field(default_factory=dict)
    kind = "generic"

    def row(self) -> dict[str, Any]:
        d = {"block": self.block, "source": self.source, "kind": self.name}
        d.update(self.detail)
        return d
