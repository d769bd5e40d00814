"""The eth-crash lending scenario written the straightforward way: one Mesa agent per borrower account.

This is the baseline that benchmarks/bench_model.py races the vectorised engine against. Each account
is a `mesa.Agent` holding its own collateral and debt floats and computing its own Aave health factor
in `step()`; liquidators are agents that loop over every borrower agent each block; interest accrues
account by account. It reads the same scenario file, draws the same book from the same random stream
and follows the same exogenous price path (`sim.market.Market`, impact of liquidation sales included).

Per block: market -> oracles (deviation / heartbeat) -> borrowers check health and repay ->
liquidators liquidate -> interest accrues per account -> metrics (Mesa DataCollector).

What it leaves out (so its figures are not the engine's): no AMM pools and no arbitrageur (seized
collateral is sold at the reference price less the outside-market fee), no gas market and no block
building (liquidations and repayments act at once: no priority-fee ordering, no block gas limit, no
reverts, no gas costs), no token ledger or conservation checks, no Aave v3.3 dust rule
(MustNotLeaveDust), no batching or per-block cap of repay transactions beyond `max_users_per_block`,
only push and fixed oracles, one lending market, and utilisation for the interest rate is taken from
the previous block's totals.
"""

from __future__ import annotations

import zlib

import mesa
import numpy as np

from defistress.scenarios.loader import load
from defistress.scenarios.schema import BorrowersSpec, LendingSpec, LiquidatorSpec
from defistress.sim.engine.builders import AUTO_SUPPLY_UTILISATION
from defistress.sim.engine.market import SECONDS_PER_YEAR, Market
from defistress.sim.engine.replay import load_replay

# Aave v3.3 LiquidationLogic close factor (same constants as protocols/lending.py)
CLOSE_FACTOR_HF_THRESHOLD = 0.95
DEFAULT_LIQUIDATION_CLOSE_FACTOR = 0.5
MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD = 2000.0  # USD
#: collateral below this many token units counts as gone (bad debt is written off)
DUST_TOKENS = 1e-12


def stream(seed: int, name: str) -> np.random.Generator:
    """The same per-component generator as sim.model.StressModel.stream (run seed + component name)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(name.encode()),)))


class NaiveOracle(mesa.Agent):
    """A Chainlink-style push oracle (deviation threshold, heartbeat) or a fixed price; USD per token."""

    def __init__(self, model, spec):
        super().__init__(model)
        self.asset = spec.asset
        self.fixed = spec.kind == "fixed"
        if spec.kind not in ("push", "fixed"):
            raise NotImplementedError(f"naive model: oracle kind {spec.kind!r} (only push and fixed)")
        self.deviation = spec.deviation
        self.heartbeat_s = spec.heartbeat
        self.price = float(spec.price) if self.fixed else model.market.price(spec.asset)
        self.updated_at = 0.0

    def step(self) -> None:
        if self.fixed:
            return
        now = self.model.block * self.model.block_seconds
        p = self.model.market.price(self.asset)
        if abs(p / self.price - 1.0) > self.deviation or now - self.updated_at >= self.heartbeat_s:
            self.price = p
            self.updated_at = now


class BorrowerAccount(mesa.Agent):
    """One borrower: collateral and debt in token units, its own health factor, its own repay decision."""

    def __init__(
        self,
        model,
        collateral_asset: str,
        collateral: float,
        debt: float,
        target_hf: float,
        attentive: bool,
        alarm: float,
        wallet: float,
    ):
        super().__init__(model)
        self.collateral_asset = collateral_asset
        self.collateral = collateral  # tokens of collateral_asset
        self.debt = debt  # tokens of the debt asset
        self.target_hf = target_hf
        self.attentive = attentive
        self.alarm = alarm
        self.wallet = wallet  # spare debt-asset tokens for repaying
        self.below_since = -1
        self.hf = self.health_factor()

    def collateral_usd(self) -> float:
        return self.collateral * self.model.oracle_price(self.collateral_asset)

    def debt_usd(self) -> float:
        return self.debt * self.model.oracle_price(self.model.debt_asset)

    def health_factor(self) -> float:
        """Aave health factor: collateral USD x liquidation threshold / debt USD (inf without debt)."""
        debt_usd = self.debt_usd()
        if debt_usd <= 0:
            return float("inf")
        return self.collateral_usd() * self.model.lt[self.collateral_asset] / debt_usd

    def step(self) -> None:
        """Check health; an attentive owner below its alarm for the reaction delay repays to its target."""
        m = self.model
        self.hf = self.health_factor()
        if not self.attentive:
            return
        if self.hf >= self.alarm:
            self.below_since = -1
            return
        if self.below_since < 0:
            self.below_since = m.block
        if (
            m.block - self.below_since >= m.delay_blocks
            and self.wallet > 0
            and m.repays_this_block < m.borrowers_spec.max_users_per_block
        ):
            self.repay_to_target()

    def repay_to_target(self) -> None:
        m = self.model
        p_debt = m.oracle_price(m.debt_asset)
        weighted = self.collateral_usd() * m.lt[self.collateral_asset]
        wanted_usd = max(self.debt_usd() - weighted / self.target_hf, 0.0)
        amount = min(wanted_usd / p_debt, self.wallet, self.debt)
        if amount <= 0:
            return
        self.debt -= amount
        self.wallet -= amount
        self.below_since = -1
        m.repays_this_block += 1
        self.hf = self.health_factor()

    def accrue(self) -> None:
        """Interest for one block on this account alone (linear per block, like Aave's indexes)."""
        self.debt *= self.model.debt_growth
        self.collateral *= self.model.supply_growth[self.collateral_asset]


class NaiveLiquidator(mesa.Agent):
    """Loops over every borrower agent, liquidates the largest ready debts with the Aave close factor."""

    def __init__(self, model, spec):
        super().__init__(model)
        self.spec = spec
        self.cash = spec.capital_usd / model.oracle_price(model.debt_asset)  # debt-asset tokens
        self.seen: dict[int, int] = {}  # unique_id -> block first seen unhealthy
        self.liquidations = 0

    def step(self) -> None:
        m = self.model
        ready = []
        for b in m.borrowers:
            if b.hf < 1.0:
                first = self.seen.setdefault(b.unique_id, m.block)
                if m.block - first >= self.spec.latency_blocks:
                    ready.append(b)
            elif b.unique_id in self.seen:
                del self.seen[b.unique_id]
        ready.sort(key=lambda b: -b.debt_usd())
        done = 0
        for b in ready:
            if done >= self.spec.max_tx_per_block:
                break
            if self.liquidate(b):
                done += 1

    def liquidate(self, b: BorrowerAccount) -> bool:
        """Aave liquidationCall on one account, then sell the seized collateral at the reference price."""
        m = self.model
        b.hf = b.health_factor()  # another liquidator may have been first
        if b.hf >= 1.0 or b.debt <= 0 or b.collateral <= 0:
            return False
        c, d = b.collateral_asset, m.debt_asset
        p_c, p_d = m.oracle_price(c), m.oracle_price(d)
        coll_usd, debt_usd = b.collateral * p_c, b.debt * p_d
        if (
            coll_usd >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
            and debt_usd >= MIN_BASE_MAX_CLOSE_FACTOR_THRESHOLD
            and b.hf > CLOSE_FACTOR_HF_THRESHOLD
        ):
            repay = DEFAULT_LIQUIDATION_CLOSE_FACTOR * b.debt
        else:
            repay = b.debt
        repay = min(repay, self.cash)
        bonus = m.bonus[c]
        seized = repay * p_d / p_c * bonus
        if seized > b.collateral:
            seized = b.collateral
            repay = seized * p_c / p_d / bonus
        fee = (seized - seized / bonus) * m.protocol_fee[c]
        ref_c, ref_d = m.market.price(c), m.market.price(d)
        proceeds = (seized - fee) * ref_c / ref_d * (1.0 - m.external_fee)  # debt-asset tokens
        if (proceeds - repay) * ref_d <= self.spec.min_profit_usd:
            return False
        b.debt -= repay
        b.collateral -= seized
        self.cash += proceeds - repay
        m.market.record_flow(c, (seized - fee) * ref_c)
        m.market.record_flow(d, -proceeds * ref_d)
        m.liquidated_debt_usd += repay * p_d
        m.liquidations += 1
        if b.collateral <= DUST_TOKENS and b.debt > 0:  # Aave v3.3 _burnBadDebt
            m.deficit_usd += b.debt * p_d
            b.debt = 0.0
        b.hf = b.health_factor()
        self.liquidations += 1
        return True


class NaiveLendingModel(mesa.Model):
    """The scenario's one lending market with one Mesa agent per account; `step()` is one block."""

    def __init__(
        self, scenario="eth-crash", seed: int = 1, overrides: list[str] | None = None, n_blocks: int | None = None
    ):
        loaded = load(scenario, overrides)
        s = loaded.scenario
        super().__init__(rng=seed)
        self.block = 0
        self.block_seconds = s.run.block_seconds
        self.n_blocks = s.n_blocks if n_blocks is None else int(n_blocks)
        replay = load_replay(s, loaded.resolve_data)
        self.market = Market(s, stream(seed, "market"), replay, stream(seed, "replay-bridge"))
        self.external_fee = s.market.external_fee

        proto = next(p for p in s.protocols if isinstance(p, LendingSpec))
        spec = next(a for a in s.agents if isinstance(a, BorrowersSpec) and a.protocol == proto.id)
        self.borrowers_spec = spec
        self.debt_asset = spec.debt
        self.lt = {k: a.liquidation_threshold for k, a in proto.assets.items()}
        self.bonus = {k: 1.0 + a.liquidation_bonus for k, a in proto.assets.items()}
        self.protocol_fee = {k: a.protocol_fee for k, a in proto.assets.items()}
        self.asset_params = proto.assets
        self.delay_blocks = int(np.ceil(spec.reaction_delay / self.block_seconds))

        oracle_specs = {o.id: o for o in s.oracles}
        self.oracle_of = {asset: NaiveOracle(self, oracle_specs[oid]) for asset, oid in proto.oracles.items()}
        self.prices = {asset: o.price for asset, o in self.oracle_of.items()}  # USD per token, from oracles
        self._genesis_book(spec, stream(seed, f"agent:{spec.id}"))
        for lspec in (a for a in s.agents if isinstance(a, LiquidatorSpec)):
            for _ in range(lspec.count):
                NaiveLiquidator(self, lspec)

        self.borrowers = self.agents_by_type[BorrowerAccount]
        self.oracles = self.agents_by_type[NaiveOracle]
        self.liquidators = self.agents_by_type[NaiveLiquidator]
        self.deficit_usd = 0.0
        self.liquidated_debt_usd = 0.0
        self.liquidations = 0
        self.repays_this_block = 0
        self.debt_growth = 1.0
        self.supply_growth = {a: 1.0 for a in proto.assets}
        self.datacollector = mesa.DataCollector(
            model_reporters={
                "collateral_usd": "collateral_usd",
                "debt_usd": "debt_usd",
                "accounts_unhealthy": "accounts_unhealthy",
                "bad_debt_usd": "bad_debt_usd",
                "liquidations": "liquidations",
            }
        )
        self._book_totals()

    def oracle_price(self, asset: str) -> float:
        return self.prices[asset]

    def read_oracles(self) -> None:
        """Each oracle decides whether to publish; protocol-side prices are then read from them."""
        self.oracles.do("step")
        self.prices = {asset: o.price for asset, o in self.oracle_of.items()}

    def _genesis_book(self, spec: BorrowersSpec, rng: np.random.Generator) -> None:
        """Draw the book exactly as agents.borrowers.BorrowerPopulation does, one agent per account."""
        n = spec.accounts
        size_usd = spec.size_usd.draw(rng, n)
        names = list(spec.collateral)
        choice = rng.choice(len(names), size=n, p=np.array([spec.collateral[a] for a in names]))
        hf = spec.health_factor.draw(rng, n)
        attentive = rng.random(n) < spec.attentive_share
        alarm = spec.alarm_health_factor.draw(rng, n)
        p_debt = self.oracle_price(spec.debt)
        total_debt = 0.0
        for k in range(n):
            asset = names[choice[k]]
            debt = size_usd[k] * self.lt[asset] / hf[k] / p_debt
            total_debt += debt
            BorrowerAccount(
                self,
                asset,
                size_usd[k] / self.oracle_price(asset),
                debt,
                float(hf[k]),
                bool(attentive[k]),
                float(alarm[k]),
                debt * spec.wallet_share,
            )
        self.lender_supply = {a: p.supply_usd / self.oracle_price(a) for a, p in self.asset_params.items()}
        if self.asset_params[spec.debt].supply_usd == 0:
            self.lender_supply[spec.debt] = total_debt / AUTO_SUPPLY_UTILISATION

    # --- the block -------------------------------------------------------------------------------------
    def step(self) -> None:
        self.market.advance(self.block)
        self.read_oracles()
        self.repays_this_block = 0
        self.borrowers.shuffle_do("step")
        self.liquidators.shuffle_do("step")
        self.accrue()
        self._book_totals()
        self.datacollector.collect(self)
        self.block += 1

    def accrue(self) -> None:
        """Kinked borrow rate from utilisation (last block's totals), then every account accrues."""
        f = self.block_seconds / SECONDS_PER_YEAR
        for a, p in self.asset_params.items():
            supply = self.lender_supply[a] + self.coll_tokens.get(a, 0.0)
            debt = self.debt_tokens if a == self.debt_asset else 0.0
            u = min(debt / supply, 1.0) if supply > 0 else 0.0
            r = p.interest
            opt = r.optimal_utilisation
            rate = r.base + r.slope1 * u / opt if u <= opt else r.base + r.slope1 + r.slope2 * (u - opt) / (1 - opt)
            self.supply_growth[a] = 1.0 + rate * u * (1 - p.reserve_factor) * f
            self.lender_supply[a] *= self.supply_growth[a]
            if a == self.debt_asset:
                self.debt_growth = 1.0 + rate * f
        self.borrowers.do("accrue")

    def _book_totals(self) -> None:
        """One pass over all accounts for the block's figures."""
        coll_usd = debt_usd = insolvent = 0.0
        unhealthy = 0
        coll_tokens: dict[str, float] = {}
        debt_tokens = 0.0
        for b in self.borrowers:
            c, d = b.collateral_usd(), b.debt_usd()
            coll_usd += c
            debt_usd += d
            insolvent += max(d - c, 0.0)
            unhealthy += c * self.lt[b.collateral_asset] < d
            coll_tokens[b.collateral_asset] = coll_tokens.get(b.collateral_asset, 0.0) + b.collateral
            debt_tokens += b.debt
        self.collateral_usd, self.debt_usd = coll_usd, debt_usd
        self.accounts_unhealthy = unhealthy
        self.bad_debt_usd = self.deficit_usd + insolvent
        self.coll_tokens, self.debt_tokens = coll_tokens, debt_tokens

    def run(self) -> None:
        while self.block < self.n_blocks:
            self.step()
