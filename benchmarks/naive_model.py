"""The engine's own run with the lending book held one account per Python object: the fair baselines.

`bench_model.py` races the vectorised engine against two per-account versions of the same run:

- `MesaAccountModel`: every borrower account is a `mesa.Agent` (the one-Mesa-agent-per-account model);
  the population's per-block look at its accounts is a Mesa `AgentSet.map` over them.
- `PlainAccountModel`: every account is a small `__slots__` object in a Python list (no Mesa, no numpy per
  account: floats and lists of floats).

Both do the engine's work, block for block: the same scenario, seed, book and price path; the AMM pools with
the arbitrageur; oracles; the gas market and block building (priority-fee ordering, the block gas limit, reverts
and gas costs); the token ledger (every movement, conservation checks); the Aave v3.3 close factor, dust rule and
bad-debt write-off; batched repayments; interest from utilisation; the per-block metrics. What differs is only
where an account lives: the engine keeps the book as (accounts x assets) numpy arrays and decides over them with
array operations; here each account holds its own scaled balances (a list of floats per asset) and its own
cached health, and the market, the borrowers and the liquidators loop over the account objects.

What is shared with the engine, unchanged (so the comparison is about the per-account representation):
`StressModel` itself (the block loop and set-up: drawing the book, funding agents, seeding pools, which then is
copied into the account objects), `Market` / `External` (price path, depth, outside sales), `ConstantProductPool`
(the pools' maths), oracles, `GasMarket` and `build_block`, `Ledger`, the `Arbitrageur` (it holds no accounts),
the `Recorder` (per-block figures; it asks the market for `metrics()`), and the liquidator's per-candidate
planning (`Liquidator._plan`, `_sale_value`, `_execute`: a preview, a pool quote, a transaction). Written again
here, per account: the lending market's account values, utilisation totals, metrics, `preview`, `liquidate`,
`repay` (the same formulas as protocols/lending.py, each cited there), the borrowers' alarm bookkeeping and
repayment batches (agents/borrowers.py), and the liquidator's scan (agents/liquidator.py: unhealthy streaks,
largest debts first, the best collateral / debt pair, the profit bound that skips hopeless candidates).

Scope: one Aave-like `lending` market at float precision without e-mode, collateral flags, isolation or an
external controller (eth-crash and its variants); anything else raises NotImplementedError.

Agreement: per-account sums (utilisation totals, metrics) are Python sums in account order where the engine
uses BLAS products, so the interest indexes differ from the engine's in the last bits and a decision sitting
within rounding of a threshold (health factor 1, the minimum profit, the dust rule) can go the other way; one
changed liquidation moves later ones (liquidator capital, pool reserves, the reference price). The liquidation
count and the liquidated USD are therefore compared within a tolerance (`AGREEMENT_*`), not bit for bit; the two
per-account models share every line but the account class, so they agree with each other exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import mesa
import numpy as np

from defistress.agents.borrowers import BorrowerPopulation
from defistress.agents.liquidator import Liquidator as EngineLiquidator
from defistress.agents.tx import GWEI, BlockView, Tx, refill_gas
from defistress.protocols.base import Revert
from defistress.protocols.events import BadDebt, Liquidated, UserAction
from defistress.protocols.ledger import InsufficientBalance
from defistress.protocols.lending import (
    CLOSE_FACTOR_HF_THRESHOLD,
    DEFAULT_LIQUIDATION_CLOSE_FACTOR,
    MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD,
    MIN_LEFTOVER_BASE,
    SECONDS_PER_YEAR,
    LendingMarket,
    Preview,
)
from defistress.scenarios.loader import LoadedScenario, load
from defistress.sim.engine.actors import Actors
from defistress.sim.engine.metrics import Recorder
from defistress.sim.engine.model import StressModel

#: liquidation count: per-account models within this share of the engine's (or 2 liquidations, whichever is more)
AGREEMENT_COUNT_SHARE = 0.01
AGREEMENT_COUNT_ABS = 2
#: liquidated debt, USD: within this share of the engine's
AGREEMENT_USD_SHARE = 0.01
INF = math.inf


# --- accounts -------------------------------------------------------------------------------------------
class AccountState:
    """What one account holds and knows: scaled balances per asset (multiply by the index for tokens), its cached
    USD values at the market's last refresh, and its owner's repayment habits. Mixed into both account classes."""

    __slots__ = ()

    def _init_state(self, row: int, coll: list[float], debt: list[float]) -> None:
        self.row = row
        self.coll = coll  # scaled collateral per asset
        self.debt = debt  # scaled debt per asset
        self.coll_usd = self.debt_usd = self.weighted = 0.0
        self.hf = INF
        self.target_hf = 0.0
        self.attentive = False
        self.alarm = 0.0
        self.wallet = 0.0  # debt-asset tokens set aside for repaying
        self.below_since = -1  # block its health first fell below its alarm, -1: not below

    def refresh(self, cp: Sequence[float], dp: Sequence[float], cplt: Sequence[float]) -> None:
        """USD values at oracle prices (the engine's row: cs @ cp, ds @ dp, cs @ (cp * LT), their ratio)."""
        c = d = w = 0.0
        for k, x in enumerate(self.coll):
            if x:
                c += x * cp[k]
                w += x * cplt[k]
        for k, x in enumerate(self.debt):
            if x:
                d += x * dp[k]
        self.coll_usd, self.debt_usd, self.weighted = c, d, w
        self.hf = w / d if d > 0 else INF

    def alarmed(self, block: int, delay_blocks: int) -> bool:
        """The owner's look at its health this block (agents/borrowers.py): True when it has been below its alarm
        for the reaction delay and still has spare tokens to repay with."""
        if not self.attentive:
            return False
        if self.hf < self.alarm:
            if self.below_since < 0:
                self.below_since = block
            return block - self.below_since >= delay_blocks and self.wallet > 0
        self.below_since = -1
        return False


class PlainAccount(AccountState):
    """An account as a plain Python object."""

    __slots__ = (
        "row",
        "coll",
        "debt",
        "coll_usd",
        "debt_usd",
        "weighted",
        "hf",
        "target_hf",
        "attentive",
        "alarm",
        "wallet",
        "below_since",
    )

    def __init__(self, row: int, coll: list[float], debt: list[float]) -> None:
        self._init_state(row, coll, debt)


class MesaAccount(AccountState, mesa.Agent):
    """An account as a Mesa agent (registered with the model, with its own unique_id)."""

    def __init__(self, model: mesa.Model, row: int, coll: list[float], debt: list[float]) -> None:
        mesa.Agent.__init__(self, model)
        self._init_state(row, coll, debt)


# --- the lending market over account objects ---------------------------------------------------------------
class AccountLendingMarket:
    """protocols/lending.py's LendingMarket (float precision, plain accounts) with the book as account objects."""

    def __init__(self, engine: LendingMarket, accounts: list) -> None:
        if engine.precision != "float" or engine.emodes or engine._coll_on is not None or engine._emode is not None:
            raise NotImplementedError(f"{engine.id}: the per-account model covers float precision, no e-mode/flags")
        if bool(np.any(engine.controlled)) or bool(np.any(engine.debt_ceiling > 0)):
            raise NotImplementedError(f"{engine.id}: the per-account model has no controller or isolation mode")
        self.id, self.env, self.rule = engine.id, engine.env, engine.rule
        self.assets, self.idx, self.oracles = list(engine.assets), dict(engine.idx), engine.oracles
        self.treasury = engine.treasury
        fl = lambda a: [float(x) for x in a]  # noqa: E731
        self.lt, self.ltv, self.bonus, self.fee = fl(engine.lt), fl(engine.ltv), fl(engine.bonus), fl(engine.fee)
        self.reserve_factor = fl(engine.reserve_factor)
        self.rate_params = [fl(x) for x in engine._rate_params]  # base, slope1, slope2, optimal utilisation
        self.liq_index, self.borrow_index = fl(engine.liq_index), fl(engine.borrow_index)
        self.lender_scaled = fl(engine.lender_scaled)
        self.deficit = fl(engine.deficit)
        self.deficit_usd_by_collateral = fl(engine.deficit_usd_by_collateral)
        self.liquidated_debt_usd = float(engine.liquidated_debt_usd)
        self.accounts = accounts
        self._key: tuple | None = None  # (prices, indexes) of the accounts' cached values
        self._totals: tuple[list[float], list[float]] | None = None

    # views ------------------------------------------------------------------------------------------------
    def prices(self) -> list[float]:
        return [float(o.price) for o in self.oracles]

    def _fresh(self) -> list[float]:
        """Oracle prices now; every account's values refreshed first when prices or indexes moved."""
        p = self.prices()
        key = (*p, *self.liq_index, *self.borrow_index)
        if key != self._key:
            cp, dp, cplt = self._factors(p)
            for a in self.accounts:
                a.refresh(cp, dp, cplt)
            self._key = key
        return p

    def _factors(self, p: list[float]) -> tuple[list[float], list[float], list[float]]:
        cp = [li * x for li, x in zip(self.liq_index, p)]  # USD per scaled unit, as the engine's `liq_index * p`
        dp = [bi * x for bi, x in zip(self.borrow_index, p)]
        return cp, dp, [c * lt for c, lt in zip(cp, self.lt)]

    def _touched(self, a) -> None:
        """One account changed: its values now, the totals later."""
        a.refresh(*self._factors(self.prices()))
        self._totals = None

    def health(self) -> np.ndarray:
        """Every account's health factor (for the Recorder's start / end tables)."""
        self._fresh()
        return np.array([a.hf for a in self.accounts])

    def scaled_totals(self) -> tuple[list[float], list[float]]:
        if self._totals is None:
            n_a = len(self.assets)
            c, d = [0.0] * n_a, [0.0] * n_a
            for a in self.accounts:
                for k in range(n_a):
                    c[k] += a.coll[k]
                    d[k] += a.debt[k]
            self._totals = (c, d)
        return self._totals

    # accrual ------------------------------------------------------------------------------------------------
    def accrue(self, dt_seconds: float) -> None:
        """Kinked borrow rate from utilisation; linear index growth per block (LendingMarket.accrue)."""
        cs, ds = self.scaled_totals()
        base, s1, s2, opt = self.rate_params
        f = dt_seconds / SECONDS_PER_YEAR
        for k in range(len(self.assets)):
            debt = ds[k] * self.borrow_index[k]
            supply = (cs[k] + self.lender_scaled[k]) * self.liq_index[k]
            u = min(max(debt / supply, 0.0), 1.0) if supply > 0 else 0.0
            rb = base[k] + s1[k] * u / opt[k] if u <= opt[k] else base[k] + s1[k] + s2[k] * (u - opt[k]) / (1 - opt[k])
            rs = rb * u * (1 - self.reserve_factor[k])
            self.borrow_index[k] = self.borrow_index[k] * (1 + rb * f)
            self.liq_index[k] = self.liq_index[k] * (1 + rs * f)

    # liquidation ----------------------------------------------------------------------------------------------
    def max_debt_to_cover(self, a, j: int, i: int, p: list[float]) -> float:
        reserve_debt = a.debt[j] * self.borrow_index[j]
        if self.rule == "aave-v3.0":
            return reserve_debt * (DEFAULT_LIQUIDATION_CLOSE_FACTOR if a.hf > CLOSE_FACTOR_HF_THRESHOLD else 1.0)
        reserve_coll_usd = a.coll[i] * self.liq_index[i] * p[i]
        if (
            reserve_coll_usd >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
            and reserve_debt * p[j] >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
            and a.hf > CLOSE_FACTOR_HF_THRESHOLD
        ):
            return min(reserve_debt, DEFAULT_LIQUIDATION_CLOSE_FACTOR * a.debt_usd / p[j])
        return reserve_debt

    def preview(self, account: int, collateral_asset: str, debt_asset: str, debt_to_cover: float) -> Preview:
        p = self._fresh()
        a = self.accounts[account]
        i, j = self.idx[collateral_asset], self.idx[debt_asset]
        bonus = self.bonus[i]
        debt = min(debt_to_cover, self.max_debt_to_cover(a, j, i, p))
        coll_balance = a.coll[i] * self.liq_index[i]
        seized = debt * p[j] / p[i] * bonus
        if seized > coll_balance:
            seized = coll_balance
            debt = coll_balance * p[i] / p[j] / bonus
        fee = (seized - seized / bonus) * self.fee[i]
        return Preview(debt, seized - fee, fee, debt * p[j], (seized - fee) * p[i])

    def liquidate(
        self, account: int, collateral_asset: str, debt_asset: str, debt_to_cover: float, liquidator: str
    ) -> Liquidated:
        """Aave liquidationCall on one account object (LendingMarket.liquidate)."""
        p = self._fresh()
        a = self.accounts[account]
        hf = a.hf
        if hf >= 1.0:
            raise Revert("HEALTH_FACTOR_NOT_BELOW_THRESHOLD")
        i, j = self.idx[collateral_asset], self.idx[debt_asset]
        if a.coll[i] <= 0:
            raise Revert("COLLATERAL_CANNOT_BE_LIQUIDATED")
        if a.debt[j] <= 0:
            raise Revert("SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER")
        pv = self.preview(account, collateral_asset, debt_asset, debt_to_cover)
        if self.rule == "aave-v3.3":
            left_debt = (a.debt[j] * self.borrow_index[j] - pv.debt_to_repay) * p[j]
            left_coll = (a.coll[i] * self.liq_index[i] - pv.collateral_seized - pv.protocol_fee) * p[i]
            if (
                left_debt > 1e-9
                and left_coll > 1e-9
                and (left_debt < MIN_LEFTOVER_BASE or left_coll < MIN_LEFTOVER_BASE)
            ):
                raise Revert("MustNotLeaveDust")
        led = self.env.ledger
        try:
            led.transfer(debt_asset, liquidator, self.id, pv.debt_to_repay)
        except InsufficientBalance as exc:
            raise Revert(f"liquidator cannot pay: {exc}") from None
        led.transfer(collateral_asset, self.id, liquidator, pv.collateral_seized)
        led.transfer(collateral_asset, self.id, self.treasury, pv.protocol_fee)
        a.debt[j] = max(a.debt[j] - pv.debt_to_repay / self.borrow_index[j], 0.0)
        a.coll[i] = max(a.coll[i] - (pv.collateral_seized + pv.protocol_fee) / self.liq_index[i], 0.0)
        self._touched(a)
        self.liquidated_debt_usd += pv.debt_usd
        ev = self.env.emit(
            Liquidated(
                self.env.clock.block,
                self.id,
                int(account),
                liquidator,
                debt_asset,
                collateral_asset,
                pv.debt_to_repay,
                pv.collateral_seized,
                pv.protocol_fee,
                pv.debt_usd,
                pv.collateral_usd,
                (pv.collateral_seized + pv.protocol_fee) * p[i] - pv.debt_usd,
                hf,
            )
        )
        if self.rule == "aave-v3.3" and not any(x * li > 1e-12 for x, li in zip(a.coll, self.liq_index)):
            for k, x in enumerate(a.debt):  # Aave v3.3 _burnBadDebt
                if x > 0:
                    amount = x * self.borrow_index[k]
                    self.deficit[k] += amount
                    self.deficit_usd_by_collateral[i] += amount * p[k]
                    a.debt[k] = 0.0
                    self.env.emit(
                        BadDebt(self.env.clock.block, self.id, int(account), self.assets[k], amount, amount * p[k])
                    )
            self._touched(a)
        return ev

    def repay(self, holder: str, accounts: list, asset: str, amounts: list[float]) -> list[float]:
        """Repay debt of several accounts (each capped at what it owes); returns what each repaid."""
        j = self.idx[asset]
        paid = [min(x, a.debt[j] * self.borrow_index[j]) for a, x in zip(accounts, amounts)]
        self.env.ledger.transfer(asset, holder, self.id, sum(paid))
        for a, x in zip(accounts, paid):
            a.debt[j] -= x / self.borrow_index[j]
            self._touched(a)
        return paid

    # reporting ------------------------------------------------------------------------------------------------
    def metrics(self) -> dict[str, float]:
        p = self._fresh()
        coll = debt = short = 0.0
        unhealthy = 0
        for a in self.accounts:
            coll += a.coll_usd
            debt += a.debt_usd
            if a.hf < 1.0:
                unhealthy += 1
            if a.debt_usd > a.coll_usd:
                short += a.debt_usd - a.coll_usd
        deficit_usd = sum(d * x for d, x in zip(self.deficit, p))
        return {
            "collateral_usd": coll,
            "debt_usd": debt,
            "accounts_unhealthy": unhealthy,
            "deficit_usd": deficit_usd,
            "bad_debt_usd": deficit_usd + short,
            "liquidated_debt_usd": self.liquidated_debt_usd,
        }

    def exposures(self) -> list:
        from defistress.protocols.base import Exposure

        cs, ds = self.scaled_totals()
        out = []
        for k, s in enumerate(self.assets):
            if cs[k] > 0:
                out.append(Exposure("holds", s, cs[k] * self.liq_index[k]))
            if ds[k] > 0:
                out.append(Exposure("receivable", s, ds[k] * self.borrow_index[k]))
        return out


# --- agents over account objects ---------------------------------------------------------------------------
class AccountBorrowers(mesa.Agent):
    """agents/borrowers.py's population, deciding account by account: each account looks at its own health."""

    def __init__(self, model: mesa.Model, engine: BorrowerPopulation, market: AccountLendingMarket, looks) -> None:
        super().__init__(model)
        self.spec, self.market, self.holder = engine.spec, market, engine.holder
        self.debt_asset, self.delay_blocks = engine.debt_asset, engine.delay_blocks
        self.accounts = [market.accounts[int(r)] for r in engine.accounts]
        self.looks = looks  # (block) -> accounts ready to repay, in account order
        self.repaid_total = 0.0

    def submit(self, view: BlockView) -> list[Tx]:
        self.market._fresh()
        ready = self.looks(view.block, self.delay_blocks)
        if not ready:
            return []
        ready = ready[: self.spec.max_users_per_block]
        per = self.spec.users_per_tx
        return [
            Tx(
                self.holder,
                partial(self._repay, ready[k : k + per]),
                self.spec.repay_gas * len(ready[k : k + per]),
                self.spec.priority_fee_gwei,
                "repay",
            )
            for k in range(0, len(ready), per)
        ]

    def _repay(self, chunk: list) -> None:
        """Repay enough to restore each account's original health factor, within its wallet."""
        m = self.market
        price = m._fresh()[m.idx[self.debt_asset]]
        keep, amounts = [], []
        for a in chunk:
            wanted = max(a.debt_usd - a.weighted / a.target_hf, 0.0)
            x = min(wanted / price, a.wallet)
            if x > 0:
                keep.append(a)
                amounts.append(x)
        if not keep:
            return
        paid = m.repay(self.holder, keep, self.debt_asset, amounts)
        for a, x in zip(keep, paid):
            a.wallet -= x
            a.below_since = -1
        total = sum(paid)
        self.repaid_total += total
        m.env.emit(UserAction(m.env.clock.block, self.holder, "repay", len(keep), self.debt_asset, total))


class Liquidator(EngineLiquidator):
    """agents/liquidator.py's liquidator scanning account objects one by one (named `Liquidator` so the Recorder
    tracks its PnL); planning and execution per candidate are the engine's."""

    def submit(self, view: BlockView) -> list[Tx]:
        txs: list[Tx] = []
        m = self.markets[0]
        ledger = m.env.ledger
        quote = max(ledger.tokens(), key=lambda t: ledger.balance(self.holder, t) * view.reference.get(t, 0.0))
        refill_gas(ledger, view.external, self.holder, self.spec.gas_budget_eth, quote)
        p = m._fresh()
        # its own first-seen blocks per market and row (the engine's liquidator shares an array record instead)
        seen: dict[int, int] = self.__dict__.setdefault("_seen_by_row", {}).setdefault(m.id, {})
        ready = []
        latency = self.spec.latency_blocks
        for a in m.accounts:
            if a.hf < 1.0:
                first = seen.setdefault(a.row, view.block)
                if view.block - first >= latency:
                    ready.append(a)
            elif a.row in seen:
                del seen[a.row]
        if not ready:
            self.attempts += len(txs)
            return txs
        ready.sort(key=lambda a: -a.debt_usd)
        ready = ready[: self.spec.max_tx_per_block * 4]
        budget = [self.funding.available(ledger, self.holder, s, 0.0) * x for s, x in zip(m.assets, p)]
        gas_usd = self.gas * view.base_fee_gwei * GWEI * self.eth_price()
        committed: dict[str, float] = {}
        for a in ready:
            if len(txs) >= self.spec.max_tx_per_block:
                break
            pair = self._pair(m, a, p, budget)
            if pair is None or self._hopeless_one(m, a, pair, p, view, gas_usd):
                continue
            tx = self._plan(m, a.row, m.assets[pair[0]], m.assets[pair[1]], view, ledger, committed)
            if tx is not None:
                txs.append(tx)
        self.attempts += len(txs)
        return txs

    @staticmethod
    def _pair(m: AccountLendingMarket, a, p: list[float], budget: list[float]) -> tuple[int, int] | None:
        """The (collateral, debt) pair that pays most at oracle prices (LendingMarket.best_liquidation_pairs)."""
        n_a = len(m.assets)
        coll = [a.coll[i] * m.liq_index[i] * p[i] * (m.lt[i] > 0) for i in range(n_a)]
        debt = [a.debt[j] * m.borrow_index[j] * p[j] for j in range(n_a)]
        best, out = -INF, None
        for i in range(n_a):
            if not coll[i] > 0:
                continue
            b = m.bonus[i]
            for j in range(n_a):
                if not debt[j] > 0:
                    continue
                if m.rule == "aave-v3.0":
                    cap = debt[j] * (DEFAULT_LIQUIDATION_CLOSE_FACTOR if a.hf > CLOSE_FACTOR_HF_THRESHOLD else 1.0)
                elif (
                    coll[i] >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
                    and debt[j] >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
                    and a.hf > CLOSE_FACTOR_HF_THRESHOLD
                ):
                    cap = min(debt[j], DEFAULT_LIQUIDATION_CLOSE_FACTOR * a.debt_usd)
                else:
                    cap = debt[j]
                repay = min(cap, budget[j])
                seized = min(repay * b, coll[i])
                if repay * b > coll[i]:
                    repay = coll[i] / b
                if not repay > 0:
                    continue
                profit = seized - (seized - seized / b) * m.fee[i] - repay
                if profit > best:
                    best, out = profit, (i, j)
        return out

    def _hopeless_one(self, m: AccountLendingMarket, a, pair: tuple[int, int], p: list[float], view, gas_usd) -> bool:
        """The engine's profit bound for one candidate (Liquidator._hopeless): True when `_plan` would find no
        liquidation worth the minimum profit."""
        i, j = pair
        coll, debt = m.assets[i], m.assets[j]
        ref = view.reference
        if i == j:
            sale = ref.get(coll, 1.0)
        else:
            pool = self._pool_for(coll, debt)
            if pool is not None:
                r_in, r_out = pool._oriented(coll)
                sale = r_out / r_in * ref.get(debt, 1.0) if r_in > 0 else INF
            else:
                sale = ref.get(coll, 0.0) * (1.0 - getattr(view.external, "fee", 0.0))
        ref_debt = ref.get(debt, 1.0)
        reserve_debt = a.debt[j] * m.borrow_index[j]
        if m.rule == "aave-v3.0":
            cap = reserve_debt * (DEFAULT_LIQUIDATION_CLOSE_FACTOR if a.hf > CLOSE_FACTOR_HF_THRESHOLD else 1.0)
        elif (
            a.coll[i] * m.liq_index[i] * p[i] >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
            and reserve_debt * p[j] >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
            and a.hf > CLOSE_FACTOR_HF_THRESHOLD
        ):
            cap = min(reserve_debt, DEFAULT_LIQUIDATION_CLOSE_FACTOR * a.debt_usd / p[j])
        else:
            cap = reserve_debt
        b = m.bonus[i]
        seized = min(cap * p[j] / p[i] * b, a.coll[i] * m.liq_index[i])
        par = ref_debt * p[i] / (p[j] * b)
        gain = seized * max(sale - par, 0.0)
        bound = gain - gas_usd + 1e-9 * (seized * (abs(sale) + abs(par)) + abs(gas_usd)) + 1e-9
        return bound <= self.spec.min_profit_usd


# --- the models ----------------------------------------------------------------------------------------------
class _PerAccountModel(StressModel):
    """`StressModel` whose lending book, borrowers and liquidators work account object by account object."""

    def __init__(
        self, scenario: Any = "eth-crash", seed: int | None = None, overrides: list[str] | None = None
    ) -> None:
        loaded = scenario if isinstance(scenario, LoadedScenario) else load(scenario, overrides)
        super().__init__(loaded, seed)
        lending = [pid for pid, p in self.protocols.items() if type(p) is LendingMarket]
        if len(lending) != 1 or len(self.protocols) != 1:
            raise NotImplementedError("the per-account models cover one lending market and nothing else")
        engine = self.protocols[lending[0]]
        rows = [
            self.make_account(r, [float(x) for x in engine.coll_scaled[r]], [float(x) for x in engine.debt_scaled[r]])
            for r in range(engine.n_accounts)
        ]
        market = AccountLendingMarket(engine, rows)
        self.protocols[engine.id] = market
        actors = []
        for a in self.actors:
            if isinstance(a, BorrowerPopulation):
                for k, r in enumerate(a.accounts):
                    acc = rows[int(r)]
                    acc.target_hf, acc.attentive = float(a.target_hf[k]), bool(a.attentive[k])
                    acc.alarm, acc.wallet = float(a.alarm[k]), float(a.wallet[k])
                new = AccountBorrowers(self, a, market, self.looks_of(a, rows))
            elif isinstance(a, EngineLiquidator):
                new = Liquidator(self, a.holder, a.spec, [market], a.pools, a.gas, a.eth_price, a.funding)
            else:
                actors.append(a)
                continue
            if isinstance(a, mesa.Agent):
                a.remove()
            actors.append(new)
        self.actors = Actors(actors, random=self.random)
        self.recorder = Recorder(self)

    def make_account(self, row: int, coll: list[float], debt: list[float]):  # pragma: no cover - interface
        raise NotImplementedError

    def looks_of(self, population: BorrowerPopulation, rows: list):  # pragma: no cover - interface
        raise NotImplementedError

    def liquidations(self) -> tuple[int, float]:
        """(number of liquidations, debt repaid in them, USD) so far."""
        evs = [e for e in self.env.events if isinstance(e, Liquidated)]
        return len(evs), sum(e.debt_repaid_usd for e in evs)


class MesaAccountModel(_PerAccountModel):
    """One `mesa.Agent` per account; the owners' per-block look is an `AgentSet.map` over the account agents."""

    kind = "mesa-per-account"

    def make_account(self, row: int, coll: list[float], debt: list[float]) -> MesaAccount:
        return MesaAccount(self, row, coll, debt)

    def looks_of(self, population: BorrowerPopulation, rows: list):
        agents = mesa.agent.AgentSet([rows[int(r)] for r in population.accounts], random=self.random)

        def looks(block: int, delay: int) -> list:
            flags = agents.map("alarmed", block, delay)
            return [a for a, f in zip(agents, flags) if f]

        return looks


class PlainAccountModel(_PerAccountModel):
    """One plain `__slots__` object per account in a Python list."""

    kind = "plain-per-account"

    def make_account(self, row: int, coll: list[float], debt: list[float]) -> PlainAccount:
        return PlainAccount(row, coll, debt)

    def looks_of(self, population: BorrowerPopulation, rows: list):
        mine = [rows[int(r)] for r in population.accounts]
        return lambda block, delay: [a for a in mine if a.alarmed(block, delay)]


def engine_liquidations(model: StressModel) -> tuple[int, float]:
    """(number of liquidations, debt repaid in them, USD) of any model so far, from its events."""
    evs = [e for e in model.env.events if isinstance(e, Liquidated)]
    return len(evs), sum(e.debt_repaid_usd for e in evs)


def agree(engine: tuple[int, float], other: tuple[int, float]) -> bool:
    """Whether a per-account model's (count, USD) lands on the engine's within the stated tolerance."""
    (n0, usd0), (n1, usd1) = engine, other
    count_ok = abs(n1 - n0) <= max(AGREEMENT_COUNT_ABS, AGREEMENT_COUNT_SHARE * n0)
    usd_ok = abs(usd1 - usd0) <= AGREEMENT_USD_SHARE * max(abs(usd0), 1.0)
    return count_ok and usd_ok
