"""The builder registries and what every builder shares: genesis supply and funding of holders, and the
lending liquidity an agent population needs.

Each node type of the scenario graph has a builder keyed by its `kind`; protocol and agent kinds register
theirs with `@protocol_builder(kind)` / `@agent_builder(kind)` in their own `build_*` module.
"""

from __future__ import annotations

from collections.abc import Callable

from defistress.agents.vaults import circulating

LENDERS = "lenders"
#: utilisation at which lenders' deposits are sized when the scenario leaves supply_usd at 0
AUTO_SUPPLY_UTILISATION = 0.8

PROTOCOL_BUILDERS: dict[str, Callable] = {}
AGENT_BUILDERS: dict[str, Callable] = {}
#: venue kinds other than the constant-product pool (built by build.build_pool)
VENUE_BUILDERS: dict[str, Callable] = {}
#: oracle kinds built outside build.build_oracle (push, delayed and fixed are built there)
ORACLE_BUILDERS: dict[str, Callable] = {}


def protocol_builder(kind: str):
    def deco(fn):
        PROTOCOL_BUILDERS[kind] = fn
        return fn

    return deco


def venue_builder(kind: str):
    def deco(fn):
        VENUE_BUILDERS[kind] = fn
        return fn

    return deco


def oracle_builder(kind: str):
    def deco(fn):
        ORACLE_BUILDERS[kind] = fn
        return fn

    return deco


def price_reader(model, spec, source: str | None = None) -> Callable[[], float]:
    """Where an oracle reads (`source`, default the spec's): the reference price, a pool's spot price or its
    TWAP (quote units), a replayed feed's value at the current block ('feed:F'), or another oracle's answer
    ('oracle:ID')."""
    source = spec.source if source is None else source
    if source == "reference":
        return lambda: model.market.price(spec.asset)
    how, name = source.split(":", 1)
    if how == "feed":
        return model.feed_reader(name)
    if how == "oracle":
        other = model.oracles[name]
        return lambda: other.price
    pool = model.pools[name]
    invert = pool.p.token1 == spec.asset
    fn = pool.price if how == "pool" else pool.twap
    return (lambda: 1.0 / fn()) if invert else fn


def agent_builder(kind: str):
    def deco(fn):
        AGENT_BUILDERS[kind] = fn
        return fn

    return deco


def liquidity_for(model, protocol_id: str, agent_id: str) -> Callable[[str, float], None]:
    """`ensure(sym, need_tokens)`: the lending market must hold `need` of `sym` to lend to an agent population;
    with supply_usd = 0 the lenders' deposit is sized automatically (utilisation AUTO_SUPPLY_UTILISATION)."""
    market, pspec = model.protocols[protocol_id], model.protocol_specs[protocol_id]
    supply_usd = getattr(pspec, "supply_usd_of", lambda s: pspec.assets[s].supply_usd)  # comet: base_supply_usd

    def ensure(sym: str, need: float) -> None:
        have = model.env.ledger.balance(market.id, sym)
        if supply_usd(sym) == 0 and have < need / AUTO_SUPPLY_UTILISATION:
            amount = need / AUTO_SUPPLY_UTILISATION - have
            model.env.ledger.mint(sym, LENDERS, amount, "genesis_supply")
            market.supply_liquidity(LENDERS, sym, amount)
        elif have < need:
            px = model.market.price(sym)
            raise ValueError(
                f"protocols.{market.id}.assets.{sym}.supply_usd: lenders supply {have * px:,.0f} USD "
                f"but agents.{agent_id} "
                f"borrow {need * px:,.0f} USD; raise supply_usd or set it to 0 to size it automatically"
            )

    return ensure


def supply(model, asset: str, holder: str, amount: float, reason: str) -> None:
    """Genesis tokens for a holder. A token issued by a modelled protocol (a CDP's stablecoin) comes from
    what that protocol's vaults put into circulation; beyond that it is minted as issuance from outside
    the model (reason 'external_issuance'), which the ledger reports separately."""
    issuer = model.issuers.get(asset)
    led = model.env.ledger
    if issuer is not None:
        take = min(amount, led.balance(circulating(issuer), asset))
        if take > 0:
            led.transfer(asset, circulating(issuer), holder, take)
        if amount - take > 0:
            led.mint(asset, holder, amount - take, "external_issuance")
        return
    led.mint(asset, holder, amount, reason)


def fund(model, holder: str, capital_usd: float, assets: list[str], gas_eth: float) -> None:
    """An agent's starting capital, split equally (in USD) across `assets`, plus ETH for gas."""
    for sym in assets:
        supply(model, sym, holder, capital_usd / len(assets) / model.market.price(sym), "genesis_capital")
    model.env.ledger.mint("ETH", holder, gas_eth, "genesis_gas")


#: agent kinds are built in this order: populations that issue or hold tokens come first
AGENT_ORDER = ("vaults", "traders", "borrowers", "multi_venue")
