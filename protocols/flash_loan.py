"""Flash loans: tokens lent and repaid with a fee inside one transaction.

A `FlashLender` is a ledger holder (e.g. "flash:aave-v3") that lends without a capital limit: it mints the
loan into its own balance, transfers it to the borrower, runs the borrower's body, takes the loan plus the
fee back and burns the loan (mint reason "flash_loan", burn reason "flash_loan_repaid"); the fee stays
with the lender. Within a transaction the mint and the burn cancel, so the token's supply is unchanged
and the ledger's conservation check holds. A transaction cannot end with the loan outstanding: if the
body reverts, the untouched loan is returned and burned; if the borrower cannot repay, `FlashLoanOutstanding`
is raised, an invariant breach that stops the run rather than a revert (callers check repayment before
they change state, as a real flash-loan transaction would revert as a whole).

Fees (fractions of the amount): Aave v3 FLASHLOAN_PREMIUM_TOTAL 0.05% (5 bps), Aave v2 0.09%, Balancer
Vault 0 (ProtocolFeesCollector flash-loan fee unset on Ethereum); a Uniswap v3 flash pays the pool fee.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from defistress.protocols.base import Env, Revert
from defistress.protocols.ledger import InsufficientBalance

T = TypeVar("T")

#: flash-loan fees by provider, fractions of the amount borrowed
FLASH_FEES = {"aave-v3": 0.0005, "aave-v2": 0.0009, "balancer": 0.0}

#: relative tolerance on the repayment (float64 token units)
REPAY_TOL = 1e-12


class FlashLoanOutstanding(AssertionError):
    """A flash loan not repaid by the end of its transaction: an invariant breach, never a revert."""


@dataclass
class FlashLender:
    """Lends any amount within one call of `loan`; `fee` is a fraction of the amount (0.0005 = 5 bps)."""

    name: str
    fee: float
    env: Env
    loans: int = 0
    fees_earned: dict[str, float] = field(default_factory=dict)
    outstanding: float = 0.0  # token units lent and not yet repaid (0 outside a transaction)

    def __post_init__(self) -> None:
        if not 0.0 <= self.fee < 0.1:
            raise ValueError(f"flash-loan fee must be in [0, 0.1), got {self.fee}")

    @property
    def holder(self) -> str:
        """The lender's ledger holder."""
        return f"flash:{self.name}"

    def fee_on(self, amount: float) -> float:
        """Fee for borrowing `amount` (token units)."""
        return float(amount) * self.fee

    def loan(self, borrower: str, token: str, amount: float, body: Callable[[], T]) -> T:
        """Lend `amount` of `token` to `borrower`, run `body`, take back amount + fee; returns what body returns."""
        amount = float(amount)
        if amount <= 0:
            return body()
        led = self.env.ledger
        led.mint(token, self.holder, amount, "flash_loan")
        led.transfer(token, self.holder, borrower, amount)
        self.outstanding += amount
        try:
            result = body()
        except (Revert, InsufficientBalance):
            self._settle(borrower, token, amount, 0.0)  # the transaction reverts: the loan goes back untouched
            raise
        self._settle(borrower, token, amount, self.fee_on(amount))
        self.loans += 1
        return result

    def _settle(self, borrower: str, token: str, amount: float, fee: float) -> None:
        led = self.env.ledger
        owed = amount + fee
        have = led.balance(borrower, token)
        if have < owed * (1 - REPAY_TOL):
            raise FlashLoanOutstanding(
                f"{self.holder}: {borrower} holds {have:.12g} {token} but owes {owed:.12g} "
                "at the end of the transaction"
            )
        led.transfer(token, borrower, self.holder, min(owed, have))
        led.burn(token, self.holder, amount, "flash_loan_repaid")
        self.outstanding -= amount
        if fee > 0:
            self.fees_earned[token] = self.fees_earned.get(token, 0.0) + fee
