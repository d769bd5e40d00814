"""Where a liquidator's or collateral buyer's payment comes from: its own capital, a flash loan, or both.

- capital: the agent pays from its ledger balance and cannot pay more than it holds.
- flash-loan: every payment is borrowed in the same transaction from a `FlashLender` and repaid with its
  fee from the sale of what the transaction bought or seized; no capital limit, only gas and profitability.
- both: own capital first, the shortfall flash-borrowed.
Before a flash-funded transaction changes any state it checks, at execution prices, that what it will
receive repays the loan and fee; otherwise it reverts as a whole (a flash-loan transaction is atomic).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from defistress.protocols.base import Revert
from defistress.protocols.flash_loan import FlashLender

Mode = Literal["capital", "flash-loan", "both"]


@dataclass(frozen=True)
class Funding:
    """A capital source; `lender` is required unless `mode` is "capital"."""

    mode: Mode = "capital"
    lender: FlashLender | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("capital", "flash-loan", "both"):
            raise ValueError(f"funding must be 'capital', 'flash-loan' or 'both', got {self.mode!r}")
        if self.mode != "capital" and self.lender is None:
            raise ValueError(f"funding {self.mode!r} needs a flash lender")

    def available(self, ledger, holder: str, token: str, committed: float) -> float:
        """Most the agent can pay now in `token` (token units): its free balance, or unlimited with flash loans."""
        if self.mode == "capital":
            return ledger.balance(holder, token) - committed
        return math.inf

    def flash_amount(self, ledger, holder: str, token: str, need: float, committed: float) -> float:
        """Tokens to flash-borrow for a payment of `need` when `committed` of the balance is already promised."""
        if self.mode == "capital":
            return 0.0
        if self.mode == "flash-loan":
            return float(need)
        free = max(ledger.balance(holder, token) - committed, 0.0)
        return max(float(need) - free, 0.0)

    def fee(self, flash: float) -> float:
        """Flash-loan fee on `flash` tokens (token units)."""
        return self.lender.fee_on(flash) if (self.lender is not None and flash > 0) else 0.0

    def execute(
        self,
        ledger,
        holder: str,
        token: str,
        flash: float,
        body: Callable[[], object],
        quote: Callable[[], tuple[float, float]],
    ) -> object:
        """Run `body` with `flash` tokens borrowed. `quote()` returns (tokens the body pays, tokens it receives)
        at execution prices; if the holder would end short of loan + fee, revert before anything moves."""
        if flash <= 0 or self.lender is None:
            return body()
        pays, receives = quote()
        end = ledger.balance(holder, token) + flash - pays + receives
        owed = flash + self.fee(flash)
        if end < owed:
            raise Revert(f"flash loan of {flash:.6g} {token} would not be repaid ({end:.6g} < {owed:.6g})")
        return self.lender.loan(holder, token, flash, body)


#: the default: pay from one's own balance
CAPITAL = Funding()
