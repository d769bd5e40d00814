"""Builders for the options venue, its populations and liquidators, and the multi-venue accounts."""

from __future__ import annotations

import importlib

from defistress.agents.multi_venue import MultiVenuePopulation
from defistress.protocols.options import OptionsVenue
from defistress.scenarios.schema_pm import OPTION_POPULATIONS
from defistress.sim.engine.builders import agent_builder, liquidity_for, protocol_builder, supply

SECONDS_PER_DAY = 86_400.0


@protocol_builder("options")
def build_options(model, spec) -> OptionsVenue:
    """The venue (it funds its own security module from params.security_module_usd), its listed series (calls
    and puts at every moneyness x expiry, and a perp per underlying) and its market-maker account."""
    oracles = {a: model.oracles[o] for a, o in spec.oracles.items()}
    venue = OptionsVenue(spec.venue_params(), oracles, model.env, spec.id)
    for u, o in oracles.items():
        p0 = float(o.price)
        venue.list_instrument(u, "perp")
        for days in spec.listings.expiry_days:
            for m in spec.listings.moneyness:
                for kind in ("put", "call"):
                    venue.list_instrument(u, kind, strike_usd=m * p0, expiry_s=days * SECONDS_PER_DAY)
    mm = f"{spec.id}:mm"
    supply(model, spec.quote, mm, spec.market_maker_usd, "genesis_capital")
    venue.set_market_maker(int(venue.open_accounts(mm, [spec.market_maker_usd])[0]))
    return venue


def _population_class(kind: str):
    mod, params_cls = OPTION_POPULATIONS[kind]
    return getattr(importlib.import_module(mod), params_cls.removesuffix("Params"))


def build_option_population(model, spec) -> list:
    venue = model.protocols[spec.protocol]
    cls = _population_class(spec.kind)
    return [cls(model, spec.population_params(), venue, model.stream(f"agent:{spec.id}"), model.eth_price)]


for _kind in OPTION_POPULATIONS:
    agent_builder(_kind)(build_option_population)


def option_liquidator(model, holder: str, spec, venue_id: str, share: float):
    """A liquidator's agent on one options venue: it deposits `share` of its stablecoin capital there."""
    from defistress.agents.option_liquidator import OptionLiquidator, OptionLiquidatorParams

    venue = model.protocols[venue_id]
    capital = model.env.ledger.balance(holder, venue.quote) * share
    params = OptionLiquidatorParams(
        id=holder,
        capital_usd=capital,
        gas=model.scenario.gas.liquidation_gas,
        latency_blocks=spec.latency_blocks,
        max_tx_per_block=spec.max_tx_per_block,
        min_profit_usd=spec.min_profit_usd,
        profit_share_to_gas=spec.profit_share_to_gas,
        max_priority_fee_gwei=spec.max_priority_fee_gwei,
    )
    return OptionLiquidator(model, params, venue, model.eth_price)


@agent_builder("multi_venue")
def build_multi_venue(model, spec) -> list:
    """Principals with a row on each venue, enrolled with the margin coordinator."""
    from defistress.sim.engine.regime import margin_spec

    lending = model.protocols[spec.lending]
    ensure_liquidity = liquidity_for(model, spec.lending, spec.id)

    def fund(asset: str, holder: str, amount: float) -> None:
        supply(model, asset, holder, amount, "genesis_capital")

    return [
        MultiVenuePopulation(
            model,
            spec,
            lending,
            model.protocols[spec.perps],
            model.protocols[spec.options] if spec.options else None,
            model.stream(f"agent:{spec.id}"),
            margin_spec(model.scenario).regime,
            model.coordinator,
            ensure_liquidity,
            fund,
        )
    ]
