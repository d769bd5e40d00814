"""The crvUSD Controller of one market: loans against collateral deposited in a LLAMMA, their health, hard
liquidation below zero health, interest from the monetary policy, and the soft-liquidation losses borrowers
take when the AMM trades their bands.

Source: curve-stablecoin contracts/Controller.vy (December 2023): `_debt` (debt = initial_debt · rate_mul /
loan rate_mul), `_health` (health = x_down · (1 − liquidation_discount) / debt − 1, plus, with `full`, the
value above the top band (p_o − p_oracle_up(n1)) · collateral / debt when out of soft liquidation),
`get_y_effective` / `_calculate_debt_n1` / `_create_loan` (loan_discount), `_liquidate` (withdraw the
position from the AMM; its stablecoin repays first, the liquidator pays the rest and takes the collateral),
`_save_rate`. Health here is MarginProtocol's scale: `health()` = 1 + the contract's health, so < 1 is
liquidatable; `crvusd_health()` gives the contract's signed value.

Tokens: collateral and AMM stablecoin live with the AMM holder "<id>:amm"; the stablecoin is minted to a
borrower when it borrows and burned when debt is repaid (the controller's own crvUSD reserve is not a
circulating token). Soft-liquidation loss of a borrower: on every AMM trade, −(Δx + Δy · p_o) of its share
of the bands touched, valued at the oracle price the trade used (USD, with the stablecoin at 1); summed over
borrowers it is what arbitrageurs gained from the AMM at oracle prices, fees they paid included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from defistress.protocols.base import Env, Exposure, MarginProtocol, Revert
from defistress.protocols.crvusd_policy import annual
from defistress.protocols.events import Liquidated
from defistress.protocols.llamma import MAX_TICKS, Llamma

#: Controller.vy MIN_TICKS: fewest bands a loan may use
MIN_TICKS = 4


@dataclass(frozen=True)
class ControllerParams:
    """loan_discount (bounds borrowing), liquidation_discount (bounds health), both fractions (0.09 and 0.06 in
    the January 2024 books); debt_ceiling in stablecoin (inf: none)."""

    loan_discount: float = 0.09
    liquidation_discount: float = 0.06
    debt_ceiling: float = math.inf

    def __post_init__(self) -> None:
        if not 0.0 < self.liquidation_discount < self.loan_discount < 1.0:
            raise ValueError(
                "controller: need 0 < liquidation_discount < loan_discount < 1 (Controller.vy "
                f"set_borrowing_discounts), got {self.liquidation_discount}, {self.loan_discount}"
            )


class CrvUsdController(MarginProtocol):
    """Loans of one crvUSD market, vectorised over borrowers; `amm` holds their bands."""

    def __init__(self, pid: str, params: ControllerParams, amm: Llamma, env: Env, rate_source: Callable | None = None):
        self.id = pid
        self.params = params
        self.amm = amm
        self.env = env
        self.stablecoin = amm.p.stablecoin
        self.collateral = amm.p.collateral
        #: () -> rate per second for this market (the monetary policy); None keeps the AMM's rate
        self.rate_source = rate_source
        self.owners: list[str] = []
        self.initial_debt = np.zeros(0)
        self.loan_rate_mul = np.ones(0)
        self.liq_discount = np.zeros(0)
        self.loss_usd = np.zeros(0)  # soft-liquidation loss per borrower, USD
        self.minted = 0.0
        self.redeemed = 0.0
        self.n_hard = 0
        self.liquidated_debt = 0.0
        self.liquidation_bonus_usd = 0.0
        amm.trade_listeners.append(self._on_amm_trade)

    # --- loans -------------------------------------------------------------------------------------
    def _new_rows(self, owners: list[str]) -> np.ndarray:
        rows = self.amm.add_users(len(owners))
        self.owners.extend(owners)
        n = len(owners)
        self.initial_debt = np.concatenate([self.initial_debt, np.zeros(n)])
        self.loan_rate_mul = np.concatenate([self.loan_rate_mul, np.ones(n)])
        self.liq_discount = np.concatenate([self.liq_discount, np.zeros(n)])
        self.loss_usd = np.concatenate([self.loss_usd, np.zeros(n)])
        return rows

    def debt(self) -> np.ndarray:
        """Debt of every loan now (Controller.vy `_debt`), stablecoin; 0 for closed loans."""
        return self.initial_debt * self.amm.get_rate_mul() / self.loan_rate_mul

    def total_debt(self) -> float:
        return float(self.debt().sum())

    @property
    def open(self) -> np.ndarray:
        return self.initial_debt > 0

    def get_y_effective(self, collateral: float, n: int, discount: float) -> float:
        """Collateral that supports debt at p_oracle_up(n1), discounted (Controller.vy `get_y_effective`):
        y / N / sqrt(A/(A−1)) · (1 − discount) · Σ_k ((A−1)/A)^k."""
        amm = self.amm
        d = collateral * (1.0 - discount) / (amm.sqrt_band_ratio * n)
        return d * sum(amm.ratio**k for k in range(n))

    def calculate_debt_n1(self, collateral: float, debt: float, n: int) -> int:
        """Top band of a new loan (Controller.vy `_calculate_debt_n1`): the band whose oracle price makes the
        discounted collateral worth the debt; reverts when the debt is too high."""
        if debt <= 0:
            raise Revert(f"{self.id}: no loan (debt must be > 0)")
        amm = self.amm
        n0 = amm.active_band
        ratio = self.get_y_effective(collateral, n, self.params.loan_discount) * float(amm.p_oracle_up(n0)) / debt
        if ratio <= 0:
            raise Revert(f"{self.id}: amount too low")
        n1 = math.floor(math.log(ratio) / math.log(amm.p.A / (amm.p.A - 1.0)))
        n1 = min(n1, 1024 - n) + n0
        if float(amm.p_oracle_up(n1)) >= amm.price_oracle():
            raise Revert(f"{self.id}: debt too high for {collateral:.6g} {self.collateral} in {n} bands")
        return n1

    def create_loan(self, owner: str, collateral: float, debt: float, n: int) -> int:
        """Open a loan (Controller.vy `_create_loan`): collateral from `owner` into bands n1..n1+N−1,
        stablecoin minted to `owner`. Returns the loan's row."""
        if not MIN_TICKS <= n <= MAX_TICKS:
            raise Revert(f"{self.id}: need {MIN_TICKS}..{MAX_TICKS} bands, got {n}")
        if self.total_debt() + debt > self.params.debt_ceiling:
            raise Revert(f"{self.id}: debt ceiling {self.params.debt_ceiling:.6g} reached")
        n1 = self.calculate_debt_n1(collateral, debt, n)
        led = self.env.ledger
        if led.balance(owner, self.collateral) < collateral * (1 - 1e-12):
            raise Revert(f"{self.id}: {owner} holds less than {collateral:.6g} {self.collateral}")
        row = int(self._new_rows([owner])[0])
        self.amm.deposit_range(row, collateral, n1, n1 + n - 1)
        led.transfer(self.collateral, owner, self.amm.holder, collateral)
        led.mint(self.stablecoin, owner, debt, "borrow")
        self.initial_debt[row] = debt
        self.loan_rate_mul[row] = self.amm.get_rate_mul()
        self.liq_discount[row] = self.params.liquidation_discount
        self.minted += debt
        self._save_rate()
        return row

    # --- health ------------------------------------------------------------------------------------
    def crvusd_health(self, full: bool = False, discount: np.ndarray | None = None) -> np.ndarray:
        """Controller.vy `_health` of every loan (NaN for closed loans): > 0 safe, < 0 liquidatable."""
        debt = self.debt()
        ld = self.liq_discount if discount is None else discount
        with np.errstate(divide="ignore", invalid="ignore"):
            h = self.amm.get_x_down() * (1.0 - ld) / debt - 1.0
            if full:
                amm = self.amm
                n1 = amm.n1
                p = amm.price_oracle()
                p_up = amm.p_oracle_up(n1)
                _, y = amm.get_sum_xy()
                h = h + np.where((n1 > amm.active_band) & (p > p_up), (p - p_up) * y / debt, 0.0)
        return np.where(self.open, h, np.nan)

    def health(self) -> np.ndarray:
        """MarginProtocol scale: 1 + the contract's health (full=False, as the controller reports it)."""
        return 1.0 + self.crvusd_health()

    def liquidatable(self) -> np.ndarray:
        """Loans whose full health at their liquidation discount is below 0 (Controller.vy `_liquidate` check)."""
        h = self.crvusd_health(full=True)
        return np.flatnonzero(self.open & (h < 0))

    def in_soft_liquidation(self) -> np.ndarray:
        """Loans whose bands hold stablecoin now (the AMM has sold part of their collateral)."""
        x, _ = self.amm.get_sum_xy()
        return self.open & (x > 0)

    # --- hard liquidation --------------------------------------------------------------------------
    def liquidate(self, liquidator: str, account: int, min_x: float = 0.0) -> Liquidated:
        """Close a loan with full health below 0 (Controller.vy `liquidate`, frac = 1): the position leaves the
        AMM, its stablecoin repays the debt first, the liquidator pays the rest and takes the collateral."""
        a = int(account)
        if not (0 <= a < len(self.owners)) or not self.open[a]:
            raise Revert(f"{self.id}: loan #{a} does not exist")
        debt = float(self.debt()[a])
        h = float(self.crvusd_health(full=True)[a])
        if not h < 0:
            raise Revert(f"{self.id}: loan #{a} not enough rekt (health {h:.4g})")
        amm, led = self.amm, self.env.ledger
        x_now = float(amm.get_sum_xy(np.array([a]))[0][0])
        if x_now < min_x:
            raise Revert(f"{self.id}: slippage: {x_now:.6g} stablecoin below {min_x:.6g}")
        if debt - x_now > 0 and led.balance(liquidator, self.stablecoin) < (debt - x_now) * (1 - 1e-12):
            raise Revert(f"{self.id}: {liquidator} cannot pay {debt - x_now:.6g} {self.stablecoin}")
        x, y = amm.withdraw(a, 1.0)
        to_repay = max(debt - x, 0.0)
        burn_from_amm = min(x, debt)
        if burn_from_amm > 0:
            led.burn(self.stablecoin, amm.holder, burn_from_amm, "liquidation_repay")
        if to_repay > 0:
            led.burn(self.stablecoin, liquidator, to_repay, "liquidation_repay")
        if x > debt:
            led.transfer(self.stablecoin, amm.holder, liquidator, x - debt)
        if y > 0:
            led.transfer(self.collateral, amm.holder, liquidator, y)
        p_o = amm.price_oracle()
        self.initial_debt[a] = 0.0
        self.redeemed += debt
        self.n_hard += 1
        self.liquidated_debt += debt
        bonus = x + y * p_o - debt
        self.liquidation_bonus_usd += bonus
        self._save_rate()
        return self.env.emit(
            Liquidated(
                self.env.clock.block,
                self.id,
                a,
                liquidator,
                self.stablecoin,
                self.collateral,
                debt,
                y,
                0.0,
                debt,
                y * p_o + x,
                bonus,
                h + 1.0,
            )
        )

    # --- accounting --------------------------------------------------------------------------------
    def _on_amm_trade(self, pos: np.ndarray, d_x: np.ndarray, d_y: np.ndarray, p_o: float) -> None:
        """Each borrower's share of the bands a trade changed, valued at the trade's oracle price."""
        frac, upos, _ = self.amm.user_fractions()
        if frac.size == 0:
            return
        dv = np.zeros(len(self.amm.x))
        dv[pos] = d_x + d_y * p_o
        self.loss_usd -= (frac * dv[upos]).sum(axis=1)

    def _save_rate(self) -> None:
        """Controller.vy `_save_rate`: ask the monetary policy and set the AMM's rate."""
        if self.rate_source is not None:
            self.amm.set_rate(float(self.rate_source()))

    def accrue(self, dt_seconds: float) -> None:
        """Interest accrues through the AMM's rate multiplier (it reads the clock); the policy rate is refreshed
        once per block, as any controller action would."""
        self._save_rate()

    def shortfall(self) -> np.ndarray:
        """Per loan: debt not covered by its stablecoin and collateral at the oracle price (stablecoin)."""
        x, y = self.amm.get_sum_xy()
        return np.where(self.open, np.maximum(self.debt() - x - y * self.amm.price_oracle(), 0.0), 0.0)

    def metrics(self) -> dict[str, float]:
        amm = self.amm
        p_o = amm.price_oracle()
        x, y = amm.get_sum_xy()
        debt = self.debt()
        h = self.crvusd_health()
        opened = self.open
        return {
            "collateral_usd": float((x + y * p_o)[opened].sum()),
            "collateral_tokens": float(y[opened].sum()),
            "stablecoin_in_bands": float(x[opened].sum()),
            "debt_usd": float(debt.sum()),
            "bad_debt_usd": float(self.shortfall().sum()),
            "accounts_unhealthy": int(np.sum(opened & (h < 0))),
            "accounts_in_soft_liquidation": int(np.sum(self.in_soft_liquidation())),
            "loans_open": int(opened.sum()),
            "soft_liquidation_loss_usd": float(self.loss_usd.sum()),
            "hard_liquidations": self.n_hard,
            "liquidated_debt_usd": self.liquidated_debt,
            "oracle_price": p_o,
            "amm_price": amm.get_p(),
            "active_band": amm.active_band,
            "rate_annual": annual(amm.rate),
        }

    def exposures(self) -> list[Exposure]:
        x, y = self.amm.get_sum_xy()
        out = [
            Exposure("holds", self.collateral, float(y.sum())),
            Exposure("issues", self.stablecoin, self.total_debt()),
        ]
        if self.total_debt() > 0:
            out.append(Exposure("receivable", self.stablecoin, self.total_debt()))
        return out

    def losses_by_borrower(self) -> dict[str, float]:
        """Soft-liquidation loss of every borrower that took one, USD (by owner address)."""
        return {o: float(v) for o, v in zip(self.owners, self.loss_usd) if v != 0.0}
