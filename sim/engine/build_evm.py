"""The `evm` backend of a lending market: Aave v3.0.2 deployed with the scenario's reserves on a local Anvil node (a
private node started for the run and stopped at its end, or a loopback node the scenario names), and the market that
sends every action to it (protocols/evm/lending_backend.py)."""

from __future__ import annotations

import weakref

from defistress.protocols.lending import AssetParams
from defistress.protocols.lending_accounts import EModeCategory

#: block gas limit of the node: room for a whole genesis batch of supplies in one block
NODE_BLOCK_GAS_LIMIT = 1_000_000_000


def evm_lending_market(
    model, spec, assets: list[AssetParams], oracles: dict, emodes: list[EModeCategory], emode_oracles: dict
):
    from defistress.protocols.evm.aave import EModeParams, RateParams, ReserveParams, bps, deploy_aave
    from defistress.protocols.evm.lending_backend import EvmLendingMarket
    from defistress.protocols.evm.node import AnvilNode
    from defistress.protocols.evm.rpc import Chain

    if emode_oracles:
        raise ValueError(f"protocols.{spec.id}.emodes: e-mode price sources are not supported by the evm backend")
    node = None
    if spec.evm.rpc is None:
        node = AnvilNode(gas_limit=NODE_BLOCK_GAS_LIMIT).start()
        weakref.finalize(model, node.stop)  # also when the run fails before its end
        model.hooks["run_end"].append(lambda m: node.stop())
        url = node.url
    else:
        url = spec.evm.rpc
    chain = Chain(url)
    chain.rpc.call("anvil_autoImpersonateAccount", [True])
    chain.rpc.call("anvil_setBlockGasLimit", [hex(NODE_BLOCK_GAS_LIMIT)])
    chain.freeze_time()
    reserves = [
        ReserveParams(
            a.symbol,
            int(a.decimals),
            float(oracles[a.symbol].price),
            bps(a.ltv),
            bps(a.liquidation_threshold),
            bps(1.0 + a.liquidation_bonus),
            protocol_fee=bps(a.protocol_fee),
            reserve_factor=bps(a.reserve_factor),
            supply_cap=int(a.supply_cap),
            borrow_cap=int(a.borrow_cap),
            borrowing_enabled=a.borrowing_enabled,
            emode_category=a.emode_category,
            debt_ceiling_usd=a.debt_ceiling,
            borrowable_in_isolation=a.borrowable_in_isolation,
            rates=RateParams(
                optimal_usage_ratio=a.optimal_utilisation,
                base_variable_borrow_rate=a.base_rate,
                variable_rate_slope1=a.slope1,
                variable_rate_slope2=a.slope2,
            ),
        )
        for a in assets
    ]
    categories = [
        EModeParams(
            e.id, bps(e.ltv), bps(e.liquidation_threshold), bps(1.0 + e.liquidation_bonus), e.label or str(e.id)
        )
        for e in emodes
    ]
    aave = deploy_aave(chain, reserves, categories, market_id=f"defistress-{spec.id}")
    market = EvmLendingMarket(spec.id, assets, oracles, model.env, aave, emodes, spec.evm.check_every)
    model.hooks["run_end"].insert(0, lambda m: market.check())  # the mirror equals the chain at the end
    return market
