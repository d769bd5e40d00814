"""Assembly of the model's parts from the scenario graph: venues, oracles, and the lending market with its
borrowers, liquidators and arbitrageur; importing it registers every protocol and agent kind (builders.py).
"""

from __future__ import annotations

from defistress.agents.arbitrageur import Arbitrageur
from defistress.agents.borrowers import BorrowerPopulation
from defistress.agents.liquidator import Liquidator
from defistress.agents.oracles import DelayedOracle, FixedOracle, Oracle, PushOracle
from defistress.protocols.amm import ConstantProductPool, PoolParams
from defistress.protocols.compound_v2 import CompoundV2
from defistress.protocols.lending import AssetParams, LendingMarket
from defistress.sim.engine import (  # noqa: F401  (build_* register kinds)
    build_cdp,
    build_compound,
    build_curve,
    build_options,
    build_oracles,
    build_perps,
    network,
)
from defistress.sim.engine.builders import (  # noqa: F401
    AGENT_BUILDERS,
    AGENT_ORDER,
    LENDERS,
    ORACLE_BUILDERS,
    PROTOCOL_BUILDERS,
    VENUE_BUILDERS,
    agent_builder,
    fund,
    liquidity_for,
    price_reader,
    protocol_builder,
    supply,
)


# --- venues and oracles ------------------------------------------------------------------------------
def build_pool(model, spec) -> ConstantProductPool:
    """A pool holding half its USD depth in each token at reference prices (other venue kinds: their builder)."""
    if spec.kind in VENUE_BUILDERS:
        return VENUE_BUILDERS[spec.kind](model, spec)
    pool = ConstantProductPool(PoolParams(spec.id, spec.pair[0], spec.pair[1], spec.fee), model.env)
    half = spec.depth_usd / 2
    pool.seed(half / model.market.price(spec.pair[0]), half / model.market.price(spec.pair[1]))
    return pool


def build_oracle(model, spec):
    if spec.kind in ORACLE_BUILDERS:  # anchored views (build_compound); rounds, composites, fallbacks (build_oracles)
        return ORACLE_BUILDERS[spec.kind](model, spec)
    reference = lambda: model.market.price(spec.asset)
    if spec.kind == "fixed":
        return FixedOracle(model, spec.id, spec.asset, spec.price, reference)
    read = price_reader(model, spec)
    o: Oracle
    if spec.kind == "delayed":
        o = DelayedOracle(model, spec.id, spec.asset, read, reference, spec.delay, spec.failure, model.epoch)
    else:
        o = PushOracle(model, spec.id, spec.asset, read, reference, spec.deviation, spec.heartbeat, spec.failure)
    return build_oracles.configured(model, spec, o)


# --- protocols -------------------------------------------------------------------------------------
@protocol_builder("lending")
def build_lending(model, spec) -> LendingMarket:
    assets = [
        AssetParams(
            sym,
            a.ltv,
            a.liquidation_threshold,
            a.liquidation_bonus,
            a.protocol_fee,
            a.reserve_factor,
            a.interest.base,
            a.interest.slope1,
            a.interest.slope2,
            a.interest.optimal_utilisation,
        )
        for sym, a in spec.assets.items()
    ]
    oracles = {sym: model.oracles[oid] for sym, oid in spec.oracles.items()}
    market = LendingMarket(spec.id, assets, oracles, model.env, spec.close_factor_rule)
    for sym, a in spec.assets.items():
        if a.supply_usd > 0:
            amount = a.supply_usd / model.market.price(sym)
            model.env.ledger.mint(sym, LENDERS, amount, "genesis_supply")
            market.supply_liquidity(LENDERS, sym, amount)
    return market


# --- agents ----------------------------------------------------------------------------------------
@agent_builder("borrowers")
def build_borrowers(model, spec) -> list:
    market = model.protocols[spec.protocol]
    ensure_liquidity = liquidity_for(model, spec.protocol, spec.id)
    rng = model.stream(f"agent:{spec.id}")
    fund_collateral = lambda asset, holder, amount: supply(model, asset, holder, amount, "genesis_collateral")  # noqa: E731
    return [
        BorrowerPopulation(
            model, spec, market, rng, model.scenario.run.block_seconds, ensure_liquidity, fund_collateral
        )
    ]


@agent_builder("liquidator")
def build_liquidators(model, spec) -> list:
    targets = [t.split(":", 1)[1] for t in network.agent_targets(spec, model.scenario)]
    markets = [model.protocols[p] for p in targets if isinstance(model.protocols[p], (LendingMarket, CompoundV2))]
    dexes = [p for p in targets if model.protocol_specs[p].kind == "perps"]
    option_venues = [p for p in targets if model.protocol_specs[p].kind == "options"]
    pools = [
        model.pools[v.split(":", 1)[1]]
        for p in targets
        for v in network.venues_of(model.graph, network.node("protocol", p))
    ]
    debt_assets = sorted(
        {a for p in targets for a in network.lent_assets(model.protocol_specs[p], model.scenario)}
    ) or [model.quote_asset]
    out: list = []  # liquidator agents of every kind the targets need
    for k in range(spec.count):
        holder = spec.id if spec.count == 1 else f"{spec.id}-{k}"
        fund(model, holder, spec.capital_usd, debt_assets, spec.gas_budget_eth)
        if markets:
            out.append(
                Liquidator(
                    model,
                    holder,
                    spec,
                    markets,
                    pools,
                    model.scenario.gas.liquidation_gas,
                    model.eth_price,
                    build_compound.funding_for(model, spec),
                )
            )
        for pid in dexes:  # the same holder's capital also margins its accounts on each perp DEX
            from defistress.sim.engine.build_perps import perp_liquidator

            out.append(perp_liquidator(model, holder, spec, pid, share=1.0 / len(targets)))
        for pid in option_venues:  # and its rows on each options venue
            from defistress.sim.engine.build_options import option_liquidator

            out.append(option_liquidator(model, holder, spec, pid, share=1.0 / len(targets)))
    return out


@agent_builder("arbitrageur")
def build_arbitrageur(model, spec) -> list:
    pools = [model.pools[v] for v in spec.venues]
    tokens = sorted({t for p in pools for t in (p.p.token0, p.p.token1)})
    fund(model, spec.id, spec.capital_usd, tokens, spec.gas_budget_eth)
    return [Arbitrageur(model, spec, pools, model.scenario.gas.swap_gas, model.eth_price)]
