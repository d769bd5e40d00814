"""Builders for Compound v2 and v3 (Comet), Compound's anchored oracle, Comet's absorbers and collateral
buyers, and the capital source (own capital, flash loans or both) of liquidators and buyers."""

from __future__ import annotations

from defistress.agents.comet_agents import CollateralBuyer, CometAbsorber
from defistress.agents.funding import CAPITAL, Funding
from defistress.agents.oracles_anchored import AnchoredOracle
from defistress.protocols.comet import Comet, CometAsset, CometParams, CometRates
from defistress.protocols.compound_v2 import CompoundV2, ComptrollerParams, CTokenMarket, JumpRateModel
from defistress.protocols.flash_loan import FlashLender
from defistress.sim.engine import network
from defistress.sim.engine.builders import (
    LENDERS,
    agent_builder,
    fund,
    oracle_builder,
    price_reader,
    protocol_builder,
)


@protocol_builder("compound-v2")
def build_compound_v2(model, spec) -> CompoundV2:
    markets = [
        CTokenMarket(
            sym,
            m.collateral_factor,
            m.reserve_factor,
            m.initial_exchange_rate,
            JumpRateModel(
                m.interest.base_rate_per_year,
                m.interest.multiplier_per_year,
                m.interest.jump_multiplier_per_year,
                m.interest.kink,
            ),
            m.liquidation_incentive,
        )
        for sym, m in spec.assets.items()
    ]
    oracles = {sym: model.oracles[oid] for sym, oid in spec.oracles.items()}
    params = ComptrollerParams(spec.close_factor, spec.liquidation_incentive, spec.protocol_seize_share)
    proto = CompoundV2(spec.id, markets, oracles, model.env, params)
    for sym, m in spec.assets.items():
        if m.supply_usd > 0:
            amount = m.supply_usd / model.market.price(sym)
            model.env.ledger.mint(sym, LENDERS, amount, "genesis_supply")
            proto.supply_liquidity(LENDERS, sym, amount)
    return proto


@protocol_builder("comet")
def build_comet(model, spec) -> Comet:
    assets = tuple(
        CometAsset(
            sym,
            a.borrow_collateral_factor,
            a.liquidate_collateral_factor,
            a.liquidation_factor,
            float("inf") if a.supply_cap is None else a.supply_cap,
        )
        for sym, a in spec.collateral.items()
    )
    params = CometParams(
        spec.base,
        assets,
        CometRates(**spec.rates.model_dump()),
        spec.store_front_price_factor,
        spec.target_reserves,
        spec.base_borrow_min,
    )
    oracles = {sym: model.oracles[oid] for sym, oid in spec.oracles.items()}
    comet = Comet(spec.id, params, oracles, model.env)
    price = model.market.price(spec.base)
    if spec.base_supply_usd > 0:
        model.env.ledger.mint(spec.base, LENDERS, spec.base_supply_usd / price, "genesis_supply")
        comet.supply_liquidity(LENDERS, spec.base, spec.base_supply_usd / price)
    if spec.reserves_usd > 0:  # tokens the protocol owns beyond what it owes (Comet.getReserves)
        model.env.ledger.mint(spec.base, comet.id, spec.reserves_usd / price, "genesis_reserves")
    return comet


@oracle_builder("anchored")
def build_anchored_oracle(model, spec) -> AnchoredOracle:
    return AnchoredOracle(
        model,
        spec.id,
        spec.asset,
        price_reader(model, spec),
        price_reader(model, spec, spec.anchor),
        lambda: model.market.price(spec.asset),
        spec.anchor_tolerance,
        spec.anchor_period,
        spec.deviation,
        spec.heartbeat,
        [(p.at, p.multiplier) for p in spec.reporter_schedule],
    )


def funding_for(model, spec) -> Funding:
    """An agent's capital source; flash lenders are shared by name across the run (one fee per lender)."""
    if spec.funding == "capital":
        return CAPITAL
    lenders = model.__dict__.setdefault("flash_lenders", {})
    lender = lenders.get(spec.flash_lender)
    if lender is None:
        lender = lenders[spec.flash_lender] = FlashLender(spec.flash_lender, spec.flash_fee, model.env)
    elif lender.fee != spec.flash_fee:
        raise ValueError(
            f"agents.{spec.id}.flash_fee: flash lender {spec.flash_lender!r} already lends at {lender.fee}, "
            f"not {spec.flash_fee}; give this agent another flash_lender name"
        )
    return Funding(spec.funding, lender)


def _comets(model, spec) -> list[Comet]:
    targets = [t.split(":", 1)[1] for t in network.agent_targets(spec, model.scenario)]
    return [model.protocols[p] for p in targets if isinstance(model.protocols[p], Comet)]


@agent_builder("absorber")
def build_absorbers(model, spec) -> list:
    comets = _comets(model, spec)
    out = []
    for k in range(spec.count):
        holder = spec.id if spec.count == 1 else f"{spec.id}-{k}"
        model.env.ledger.mint("ETH", holder, spec.gas_budget_eth, "genesis_gas")
        out.append(CometAbsorber(model, holder, spec, comets, model.eth_price))
    return out


@agent_builder("collateral_buyer")
def build_collateral_buyers(model, spec) -> list:
    comets = _comets(model, spec)
    pools = [
        model.pools[v.split(":", 1)[1]]
        for c in comets
        for v in network.venues_of(model.graph, network.node("protocol", c.id))
    ]
    bases = sorted({c.base for c in comets})
    funding = funding_for(model, spec)
    out = []
    for k in range(spec.count):
        holder = spec.id if spec.count == 1 else f"{spec.id}-{k}"
        fund(model, holder, spec.capital_usd, bases, spec.gas_budget_eth)
        out.append(CollateralBuyer(model, holder, spec, comets, pools, model.eth_price, funding))
    return out
