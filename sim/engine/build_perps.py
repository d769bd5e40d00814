"""Builders for the perp DEX, its trader population and its liquidators."""

from __future__ import annotations

from defistress.agents.perp_liquidator import PerpLiquidator, PerpLiquidatorParams
from defistress.agents.traders import TraderPopulation
from defistress.protocols.perps import PerpDex
from defistress.sim.engine.builders import agent_builder, protocol_builder


@protocol_builder("perps")
def build_perps(model, spec) -> PerpDex:
    oracles = {a: model.oracles[o] for a, o in spec.oracles.items()}
    return PerpDex(spec.dex_params(), oracles, model.env, spec.id, spec.quote)


@agent_builder("traders")
def build_traders(model, spec) -> list:
    dex = model.protocols[spec.protocol]
    return [TraderPopulation(model, spec.trader_params(), dex, model.stream(f"agent:{spec.id}"))]


def perp_liquidator(model, holder: str, spec, dex_id: str, share: float) -> PerpLiquidator:
    """A liquidator's agent on one DEX: it deposits `share` of its stablecoin capital there."""
    dex = model.protocols[dex_id]
    capital = model.env.ledger.balance(holder, dex.quote) * share
    params = PerpLiquidatorParams(
        id=holder,
        capital_usd=capital,
        gas=model.scenario.gas.liquidation_gas,
        latency_blocks=spec.latency_blocks,
        max_tx_per_block=spec.max_tx_per_block,
        min_profit_usd=spec.min_profit_usd,
        profit_share_to_gas=spec.profit_share_to_gas,
        max_priority_fee_gwei=spec.max_priority_fee_gwei,
    )
    return PerpLiquidator(model, params, dex, model.eth_price)
