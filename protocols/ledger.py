"""The one ledger of token balances by holder: every token movement in a run goes through it.

Holders and tokens are plain strings ("lend", "liquidator-0", "uni-eth-usdc", "ETH"). Nothing is
created or destroyed except by `mint` and `burn`, which are recorded with a reason, so that after a
run each token's total held equals minted minus burned (`check_conservation`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

#: relative tolerance (float64 token units) for balance checks and conservation
REL_TOL = 1e-9
#: absolute dust (token units) below which a shortfall is treated as rounding
ABS_DUST = 1e-9


class InsufficientBalance(ValueError):
    """A transfer or burn asked for more than the holder has."""


@dataclass
class Ledger:
    """`balances[token][holder]` in token units, with mint and burn totals per token."""

    balances: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(float)))
    minted: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    burned: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    mint_reasons: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    burn_reasons: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    n_transfers: int = 0

    def balance(self, holder: str, token: str) -> float:
        """Balance of `holder` in `token` (token units)."""
        return self.balances[token].get(holder, 0.0)

    def holders(self, token: str) -> dict[str, float]:
        """Every holder's balance of `token` (a copy)."""
        return dict(self.balances[token])

    def mint(self, token: str, to: str, amount: float, reason: str) -> None:
        """Create `amount` of `token` in `to`'s balance (genesis supply, CDP debt issuance, external inflow)."""
        amount = _checked_amount(amount, token)
        self.balances[token][to] += amount
        self.minted[token] += amount
        self.mint_reasons[(token, reason)] += amount

    def burn(self, token: str, frm: str, amount: float, reason: str) -> None:
        """Destroy `amount` of `token` from `frm` (EIP-1559 base fee, CDP repayment, external outflow)."""
        amount = self._debit(token, frm, _checked_amount(amount, token))
        self.burned[token] += amount
        self.burn_reasons[(token, reason)] += amount

    def transfer(self, token: str, frm: str, to: str, amount: float) -> None:
        """Move `amount` of `token` from `frm` to `to`; raises InsufficientBalance and changes nothing if short.
        Within rounding dust of the sender's balance, the balance itself moves: the receiver is credited
        exactly what the sender is debited, so a transfer never creates or destroys a token."""
        amount = _checked_amount(amount, token)
        if amount == 0.0 or frm == to:
            return
        moved = self._debit(token, frm, amount)
        self.balances[token][to] += moved
        self.n_transfers += 1

    def _debit(self, token: str, frm: str, amount: float) -> float:
        """Take `amount` from `frm`, or its whole balance when short by rounding dust only; returns what was taken."""
        book = self.balances[token]
        have = book.get(frm, 0.0)
        if have < amount:
            if amount - have > max(ABS_DUST, REL_TOL * amount):
                raise InsufficientBalance(f"{frm} holds {have:.12g} {token}, cannot send {amount:.12g}")
            amount = have  # rounding dust: clear the balance exactly
        book[frm] = have - amount
        return amount

    def total(self, token: str) -> float:
        """Sum of all holders' balances of `token`."""
        return float(sum(self.balances[token].values()))

    def tokens(self) -> list[str]:
        return sorted(set(self.balances) | set(self.minted) | set(self.burned))

    def conservation_errors(self) -> dict[str, float]:
        """Tokens whose total differs from minted − burned beyond tolerance, with the difference."""
        errors = {}
        for token in self.tokens():
            expected = self.minted[token] - self.burned[token]
            diff = self.total(token) - expected
            if not abs(diff) <= max(1e-6, REL_TOL * max(self.minted[token], 1.0)):  # NaN is an error too
                errors[token] = diff
        negatives = {
            f"{token}:{holder}": bal
            for token, book in self.balances.items()
            for holder, bal in book.items()
            if bal < -ABS_DUST
        }
        errors.update(negatives)
        return errors

    def check_conservation(self) -> None:
        """Raise AssertionError naming every token whose supply is not minted − burned."""
        errors = self.conservation_errors()
        if errors:
            raise AssertionError(f"ledger not conserved: {errors}")

    def snapshot(self) -> dict[str, dict[str, float]]:
        """A plain-dict copy of all balances (for reports and tests)."""
        return {t: dict(b) for t, b in self.balances.items()}


def _checked_amount(amount: float, token: str) -> float:
    amount = float(amount)
    if not 0.0 <= amount < math.inf:  # also catches NaN
        raise ValueError(f"amount of {token} must be a finite non-negative number, got {amount!r}")
    return amount
