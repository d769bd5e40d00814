"""Builders for the CDP, its vault population and its keepers."""

from __future__ import annotations

from defistress.agents.keeper import Keeper
from defistress.agents.vaults import VaultPopulation
from defistress.protocols.cdp import Cdp
from defistress.sim.engine import network
from defistress.sim.engine.builders import agent_builder, fund, protocol_builder, supply


@protocol_builder("cdp")
def build_cdp(model, spec) -> Cdp:
    params = spec.cdp_params()
    owners = [a.id for a in model.scenario.agents if a.kind == "vaults" and a.protocol == spec.id]
    oracle = model.oracles[spec.oracles[params.collateral]]
    return Cdp(params, oracle, model.env, spec.id, population=owners[0] if owners else f"{spec.id}:owners")


@agent_builder("vaults")
def build_vaults(model, spec) -> list:
    cdp = model.protocols[spec.protocol]
    return [
        VaultPopulation(
            model,
            spec,
            cdp,
            model.stream(f"agent:{spec.id}"),
            model.scenario.run.block_seconds,
            lambda asset, holder, amount: supply(model, asset, holder, amount, "genesis_collateral"),
        )
    ]


@agent_builder("keeper")
def build_keepers(model, spec) -> list:
    targets = [t.split(":", 1)[1] for t in network.agent_targets(spec, model.scenario)]
    cdps = [model.protocols[p] for p in targets]
    if not cdps:
        raise ValueError(f"agents.{spec.id}: no cdp to watch (add a cdp protocol or set shared_with)")
    stable = sorted({c.stablecoin for c in cdps})
    venues = [v.split(":", 1)[1] for p in targets for v in network.venues_of(model.graph, network.node("protocol", p))]
    pool = next(
        (
            model.pools[v]
            for v in venues
            if {model.pools[v].p.token0, model.pools[v].p.token1} in [{c.collateral, c.stablecoin} for c in cdps]
        ),
        None,
    )
    params = spec.keeper_params()
    out = []
    for k in range(spec.count):
        holder = spec.id if spec.count == 1 else f"{spec.id}-{k}"
        fund(model, holder, spec.capital_usd, stable, spec.gas_budget_eth)
        out.append(Keeper(model, holder, cdps, params, pool, model.stream(f"agent:{holder}")))
    return out
