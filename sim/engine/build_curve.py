"""Builders for Curve: stableswap venues, crvUSD markets from real books (LLAMMA + controller + monetary
policy), peg keepers, and the LLAMMA arbitrageur, liquidator and peg-keeper caller."""

from __future__ import annotations

from defistress.agents.llamma_arbitrageur import LlammaArbitrageur
from defistress.agents.llamma_liquidator import LlammaLiquidator
from defistress.agents.peg_keeper_caller import PegKeeperCaller
from defistress.agents.vaults import circulating
from defistress.protocols.base import FixedPrice
from defistress.protocols.crvusd_book import BookError, CrvUsdBook, market_from_book, read_book
from defistress.protocols.crvusd_controller import CrvUsdController
from defistress.protocols.crvusd_policy import policy_rate
from defistress.protocols.peg_keeper import AggregateStablePrice, PegKeeper, PegKeeperParams
from defistress.protocols.stableswap import StableSwapParams, StableSwapPool
from defistress.scenarios.books import book_path
from defistress.sim.engine import network
from defistress.sim.engine.builders import agent_builder, fund, protocol_builder, venue_builder


def read_spec_book(model, book: str, where: str) -> CrvUsdBook:
    """A book by bundled name or by path (relative to the scenario file), read once per model."""
    cache = model.__dict__.setdefault("_crvusd_books", {})
    if book not in cache:
        path = book_path(book) or model.loaded.base_dir / book
        if not path.is_file():
            raise ValueError(f"{where}: book file {str(path)!r} not found")
        try:
            cache[book] = read_book(path)
        except BookError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return cache[book]


def _book_pool(model, book: str, coins: list[str], where: str):
    b = read_spec_book(model, book, where)
    for pool in b.pools:
        if set(pool.coins) == set(coins):
            return pool
    raise ValueError(
        f"{where}: book {book!r} has no pool of {sorted(coins)}; it has {[list(p.coins) for p in b.pools]}"
    )


def _pk_debt_ceiling(model, spec) -> tuple[float, float]:
    """A peg keeper's debt and ceiling: given, or from the book's keeper of the pool with the same coins."""
    debt, ceiling = spec.debt, spec.ceiling
    if spec.book is not None and (debt is None or ceiling is None):
        where = f"protocols.{spec.id}.book"
        venue = next(v for v in model.scenario.venues if v.id == spec.pool)
        pool = _book_pool(model, spec.book, list(venue.pair), where)
        pk = next((k for k in read_spec_book(model, spec.book, where).peg_keepers if k.pool == pool.address), None)
        if pk is None:
            raise ValueError(f"{where}: no peg keeper of pool {pool.name} in book {spec.book!r}")
        debt = pk.debt if debt is None else debt
        ceiling = pk.ceiling if ceiling is None else ceiling
    return float(debt), float(ceiling)


# --- venues ------------------------------------------------------------------------------------------------
@venue_builder("stableswap")
def build_stableswap(model, spec) -> StableSwapPool:
    where = f"venues.{spec.id}"
    A, fee, balances = spec.A, spec.fee, spec.balances
    if spec.book is not None:
        pool = _book_pool(model, spec.book, spec.coins, f"{where}.book")
        A = pool.A if A is None else A
        fee = pool.fee if fee is None else fee
        if balances is None:
            balances = [pool.balances[pool.coins.index(c)] for c in spec.coins]
    pool = StableSwapPool(
        StableSwapParams(spec.id, tuple(spec.coins), A, fee, ma_exp_time_s=spec.ma_exp_time), model.env
    )
    keepers = [p for p in model.scenario.protocols if p.kind == "peg_keeper" and p.pool == spec.id]
    holders = {f"{spec.id}:lps": sum(balances)}
    for pk in keepers:
        if pk.stablecoin not in spec.coins or len(spec.coins) != 2:
            raise ValueError(
                f"protocols.{pk.id}.pool: {spec.id!r} must be a two-coin stableswap venue holding {pk.stablecoin}"
            )
        debt = _pk_debt_ceiling(model, pk)[0]
        holders[pk.id] = debt
        holders[f"{spec.id}:lps"] -= debt
    if holders[f"{spec.id}:lps"] <= 0:
        raise ValueError(f"{where}: peg keepers' debt exceeds the pool's balances")
    pool.seed(list(balances), holders, "genesis_liquidity")
    return pool


def stable_price(model, stablecoin: str, oracle_id: str | None = None):
    """USD per stablecoin for the policy and peg keepers: a named oracle, else the aggregated stableswap
    pools that hold it (AggregateStablePrice2), else 1."""
    if oracle_id is not None:
        return model.oracles[oracle_id]
    pools = [p for p in model.pools.values() if isinstance(p, StableSwapPool) and stablecoin in p.p.coins]
    return AggregateStablePrice(pools, stablecoin) if pools else FixedPrice(1.0)


# --- protocols ---------------------------------------------------------------------------------------------
@protocol_builder("llamma")
def build_llamma(model, spec) -> CrvUsdController:
    where = f"protocols.{spec.id}"
    book = read_spec_book(model, spec.book, f"{where}.book")
    if spec.price_oracle is not None and spec.price_oracle not in model.oracles:
        raise ValueError(
            f"{where}.price_oracle: unknown oracle {spec.price_oracle!r}; allowed: {sorted(model.oracles)}"
        )
    price = stable_price(model, spec.stablecoin, spec.price_oracle)
    rate_source = None
    if spec.rate == "policy":

        def rate_source() -> float:
            ctrls = [p for p in model.protocols.values() if isinstance(p, CrvUsdController)]
            keepers = [p for p in model.protocols.values() if isinstance(p, PegKeeper)]
            return policy_rate(
                book.policy,
                float(price.price),
                sum(k.debt for k in keepers),
                sum(c.total_debt() for c in ctrls) + spec.policy_other_debt,
            )

    return market_from_book(
        book,
        spec.id,
        model.env,
        model.oracles[spec.oracles[spec.collateral]],
        collateral=spec.collateral,
        stablecoin=spec.stablecoin,
        fee=spec.fee,
        loan_discount=spec.loan_discount,
        liquidation_discount=spec.liquidation_discount,
        rate_source=rate_source,
        wallet=circulating(spec.id),
    )


@protocol_builder("peg_keeper")
def build_peg_keeper(model, spec) -> PegKeeper:
    pool = model.pools.get(spec.pool)
    if not isinstance(pool, StableSwapPool):
        swaps = sorted(v for v, p in model.pools.items() if isinstance(p, StableSwapPool))
        raise ValueError(f"protocols.{spec.id}.pool: {spec.pool!r} is not a stableswap venue; allowed: {swaps}")
    debt, ceiling = _pk_debt_ceiling(model, spec)
    pk = PegKeeper(
        PegKeeperParams(spec.id, spec.stablecoin, ceiling, spec.caller_share),
        pool,
        stable_price(model, spec.stablecoin),
        model.env,
        debt,
    )
    pk.fund()
    return pk


# --- agents ------------------------------------------------------------------------------------------------
def _served(model, spec, kind: str, cls) -> list:
    targets = [t.split(":", 1)[1] for t in network.agent_targets(spec, model.scenario)]
    bad = [t for t in targets if not isinstance(model.protocols.get(t), cls)]
    if bad:
        allowed = sorted(p for p, q in model.protocols.items() if isinstance(q, cls))
        raise ValueError(f"agents.{spec.id}.shared_with: {bad} are not {kind} protocols; allowed: {allowed}")
    return [model.protocols[t] for t in targets]


@agent_builder("llamma_arbitrageur")
def build_llamma_arbitrageur(model, spec) -> list:
    markets = _served(model, spec, "llamma", CrvUsdController)
    stables = sorted({m.stablecoin for m in markets})
    colls = sorted({m.collateral for m in markets})
    if markets:  # half the capital in the stablecoin, half spread over the collaterals
        fund(model, spec.id, spec.capital_usd / 2, stables, spec.gas_budget_eth)
        fund(model, spec.id, spec.capital_usd / 2, colls, 0.0)
    return [LlammaArbitrageur(model, spec, markets, model.scenario.gas.swap_gas, model.eth_price)]


@agent_builder("llamma_liquidator")
def build_llamma_liquidator(model, spec) -> list:
    markets = _served(model, spec, "llamma", CrvUsdController)
    stables = sorted({m.stablecoin for m in markets}) or [model.quote_asset]
    fund(model, spec.id, spec.capital_usd, stables, spec.gas_budget_eth)
    return [LlammaLiquidator(model, spec.id, spec, markets, model.scenario.gas.liquidation_gas, model.eth_price)]


@agent_builder("peg_keeper_caller")
def build_peg_keeper_caller(model, spec) -> list:
    keepers = _served(model, spec, "peg_keeper", PegKeeper)
    model.env.ledger.mint("ETH", spec.id, spec.gas_budget_eth, "genesis_gas")
    return [PegKeeperCaller(model, spec, keepers, model.scenario.gas.swap_gas)]
