"""What every protocol shares: the run environment it acts in, the revert error, and its public surface.

A protocol is a vectorised state machine (one row per account in numpy arrays). It knows nothing about
who calls it: agents call its methods, which validate, change state, move tokens through the ledger and
return event records. Prices come only from the protocol's oracles (objects with a `price` attribute).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar
from typing import Protocol as TypingProtocol

import numpy as np

from defistress.protocols.events import Event
from defistress.protocols.ledger import Ledger

E = TypeVar("E", bound=Event)


class Revert(Exception):
    """A transaction that fails on-chain: state is unchanged, gas is still paid by the sender."""


class PriceSource(TypingProtocol):
    """Anything with a latest published price in USD per token (oracle agents, fixed feeds)."""

    @property
    def price(self) -> float: ...


@dataclass
class FixedPrice:
    """A constant feed, e.g. a stablecoin priced at 1 USD by the protocol."""

    price: float = 1.0
    id: str = "fixed"


@dataclass
class Clock:
    """Block number and chain time in seconds since the run start."""

    block: int = 0
    block_seconds: float = 12.0

    @property
    def seconds(self) -> float:
        return self.block * self.block_seconds


@dataclass
class Env:
    """What a protocol may touch: the ledger, the event log and the clock."""

    ledger: Ledger = field(default_factory=Ledger)
    clock: Clock = field(default_factory=Clock)
    events: list[Event] = field(default_factory=list)

    def emit(self, event: E) -> E:
        self.events.append(event)
        return event


@dataclass(frozen=True)
class Exposure:
    """One edge of the network derived from protocol state: what a protocol holds, issues or owes."""

    kind: str  # "holds" | "issues" | "owes" | "receivable"
    asset: str
    amount: float  # token units
    counterparty: str = ""


class MarginProtocol(ABC):
    """The public surface shared by lending markets, CDPs, perp DEXes and option venues."""

    id: str
    env: Env

    @abstractmethod
    def health(self) -> np.ndarray:
        """Health of every account at current oracle prices (>= 1 is safe), float64 array."""

    def liquidatable(self) -> np.ndarray:
        """Indices of accounts that may be liquidated now."""
        return np.flatnonzero(self.health() < 1.0)

    @abstractmethod
    def accrue(self, dt_seconds: float) -> None:
        """Advance interest, funding, auction clocks and funds by `dt_seconds`."""

    @abstractmethod
    def exposures(self) -> list[Exposure]:
        """What the protocol holds, issues and owes (for the network graph and contagion metrics)."""

    @abstractmethod
    def metrics(self) -> dict[str, float]:
        """Per-block figures: collateral_usd, debt_usd, bad_debt_usd, accounts_unhealthy, ..."""

    @property
    def n_accounts(self) -> int:
        return len(self.health())

    @property
    def gates(self):
        """Governance switches (protocols.gates.Gates): frozen and paused assets, none at the start."""
        g = self.__dict__.get("_gates")
        if g is None:
            from defistress.protocols.gates import Gates

            g = self._gates = Gates()
        return g

    def require_active(
        self, *assets: str, frozen_error: str = "RESERVE_FROZEN", paused_error: str = "RESERVE_PAUSED"
    ) -> None:
        """Revert unless every asset (none: the market) is neither frozen nor paused (new positions)."""
        g = self.__dict__.get("_gates")
        why = (
            None
            if g is None
            else g.why_not_active(self.id, *assets, frozen_error=frozen_error, paused_error=paused_error)
        )
        if why is not None:
            raise Revert(why)

    def require_unpaused(self, *assets: str, paused_error: str = "RESERVE_PAUSED") -> None:
        """Revert if any asset (none: the market) is paused (any movement)."""
        g = self.__dict__.get("_gates")
        why = None if g is None else g.why_paused(self.id, *assets, paused_error=paused_error)
        if why is not None:
            raise Revert(why)


class ControlledRows:
    """Rows whose liquidation belongs to an external controller (Euler v2 EVC, docs/margin-methods.md §9): the
    venue itself does not liquidate them. Mixed into venues that have `n_accounts`, `id` and `Revert`s."""

    if TYPE_CHECKING:  # provided by the venue this is mixed into
        id: str

        @property
        def n_accounts(self) -> int: ...

    @property
    def controlled(self) -> np.ndarray:
        """(n,) bool, grown lazily with the accounts (new rows are not controlled)."""
        c = self.__dict__.get("_controlled")
        n = self.n_accounts
        if c is None or c.shape[0] != n:
            new = np.zeros(n, dtype=bool)
            if c is not None:
                k = min(n, c.shape[0])
                new[:k] = c[:k]
            self._controlled = c = new
        return c

    def _revert_if_controlled(self, account) -> None:
        a = int(account)
        if 0 <= a < self.n_accounts and self.controlled[a]:
            raise Revert(f"{self.id}: account #{a} is controlled; only its controller may liquidate it")
