"""The scenario's topology as a typed networkx MultiDiGraph; the model is assembled from it.

Nodes are "asset:ETH", "oracle:ID", "venue:ID", "protocol:ID", "agent:ID", each with a `type` and the
spec that declared it. Edge keys are the edge types:
  collateral_of   asset -> protocol       an asset the protocol accepts as collateral
  lends / issues  protocol -> asset       an asset the protocol lends out / mints (CDP stablecoin)
  priced_by       protocol -> oracle      the protocol reads this oracle
  sources         oracle -> asset|venue   where the oracle reads its price
  liquidates_into protocol -> venue       where its liquidators sell
  trades          venue -> asset          the pool's tokens
  acts_on         agent -> protocol|venue an agent's field of action
  shared_capital  protocol -> protocol    one liquidator's or keeper's capital serves both
  exposure        protocol -> protocol    derived: the first takes as collateral what the second issues
  coordinated     protocol -> protocol    a margin coordinator nets accounts across both (portfolio regime)
  pegs            protocol -> venue       a peg keeper adds or removes its stablecoin in that pool
"""

from __future__ import annotations

import networkx as nx

from defistress.scenarios.schema_oracles import sources_of

EDGE_TYPES = (
    "collateral_of",
    "lends",
    "issues",
    "priced_by",
    "sources",
    "liquidates_into",
    "trades",
    "acts_on",
    "shared_capital",
    "exposure",
    "coordinated",
    "pegs",
)


def node(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def build_graph(scenario) -> nx.MultiDiGraph:
    """Typed graph of assets, oracles, venues, protocols and agents from a validated scenario."""
    g: nx.MultiDiGraph = nx.MultiDiGraph(name=scenario.run.name)
    for a in scenario.market.assets:
        g.add_node(node("asset", a.symbol), type="asset", spec=a, stable=a.is_stable)
    for v in scenario.venues:
        g.add_node(node("venue", v.id), type="venue", kind=v.kind, spec=v)
        for t in v.pair:
            g.add_edge(node("venue", v.id), node("asset", t), key="trades")
    for o in scenario.oracles:
        g.add_node(node("oracle", o.id), type="oracle", kind=o.kind, spec=o)
        for src in sources_of(o) or ["reference"]:  # a replayed feed prices the oracle's asset
            how, _, name = src.partition(":")
            target = {"pool": "venue", "twap": "venue", "oracle": "oracle"}.get(how)
            g.add_edge(node("oracle", o.id), node(target, name) if target else node("asset", o.asset), key="sources")
    for p in scenario.protocols:
        pn = node("protocol", p.id)
        g.add_node(pn, type="protocol", kind=p.kind, spec=p)
        for asset, oid in p.oracles.items():
            g.add_edge(pn, node("oracle", oid), key="priced_by", asset=asset)
        for vid in getattr(p, "liquidates_into", []):
            g.add_edge(pn, node("venue", vid), key="liquidates_into")
        if getattr(p, "kind", None) == "peg_keeper":
            g.add_edge(pn, node("venue", p.pool), key="pegs")
        for asset in collateral_assets(p, scenario):
            g.add_edge(node("asset", asset), pn, key="collateral_of")
        for asset in lent_assets(p, scenario):
            g.add_edge(pn, node("asset", asset), key="lends")
        for asset in issued_assets(p):
            g.add_edge(pn, node("asset", asset), key="issues")
    for a in scenario.agents:
        an = node("agent", a.id)
        g.add_node(an, type="agent", kind=a.kind, spec=a)
        for target in agent_targets(a, scenario):
            g.add_edge(an, target, key="acts_on")
        served = [t for t in agent_targets(a, scenario) if t.startswith("protocol:")]
        if a.kind in ("liquidator", "keeper", "llamma_liquidator", "collateral_buyer", "absorber") and len(served) > 1:
            for i, p1 in enumerate(served):
                for p2 in served[i + 1 :]:
                    g.add_edge(p1, p2, key="shared_capital", agent=a.id)
                    g.add_edge(p2, p1, key="shared_capital", agent=a.id)
    _derive_exposures(g)
    _coordinated(g, scenario)
    return g


def _coordinated(g: nx.MultiDiGraph, scenario) -> None:
    """Under the portfolio regime, the venues of multi-venue accounts are margined as one: link them both ways."""
    if scenario.margin is None or scenario.margin.regime != "portfolio":
        return
    for a in scenario.agents:
        if a.kind != "multi_venue":
            continue
        venues = [node("protocol", v) for v in (a.lending, a.perps, a.options) if v is not None]
        for i, p1 in enumerate(venues):
            for p2 in venues[i + 1 :]:
                g.add_edge(p1, p2, key="coordinated", agent=a.id)
                g.add_edge(p2, p1, key="coordinated", agent=a.id)


def collateral_assets(p, scenario) -> list[str]:
    """Assets a protocol accepts as collateral (declared by the protocol or used so by its borrowers)."""
    if p.kind in BOOK_KINDS:
        used = {
            a for ag in scenario.agents if getattr(ag, "protocol", None) == p.id for a in getattr(ag, "collateral", {})
        }
        return sorted(used or set(p.assets))
    return list(getattr(p, "collateral_assets", lambda: [])())


def lent_assets(p, scenario) -> list[str]:
    if p.kind in BOOK_KINDS:
        return sorted(
            {ag.debt for ag in scenario.agents if getattr(ag, "protocol", None) == p.id and hasattr(ag, "debt")}
        )
    return list(getattr(p, "lent_assets", lambda: [])())  # comet: its base


def issued_assets(p) -> list[str]:
    return list(getattr(p, "issued_assets", lambda: [])())


def agent_targets(a, scenario) -> list[str]:
    """Graph nodes an agent acts on."""
    if hasattr(a, "protocol"):
        return [node("protocol", a.protocol)]
    if a.kind == "multi_venue":
        return [node("protocol", v) for v in (a.lending, a.perps, a.options) if v is not None]
    if hasattr(a, "shared_with"):
        pids = a.shared_with or [p.id for p in scenario.protocols if _liquidated_by(p, a.kind)]
        return [node("protocol", pid) for pid in pids]
    if hasattr(a, "venues"):
        return [node("venue", v) for v in a.venues]
    return []


#: which protocol kinds each kind of strategic agent serves when it names none
SERVES = {
    "liquidator": ("lending", "perps", "options", "compound-v2"),
    "keeper": ("cdp",),
    "llamma_arbitrageur": ("llamma",),
    "llamma_liquidator": ("llamma",),
    "peg_keeper_caller": ("peg_keeper",),
    "absorber": ("comet",),
    "collateral_buyer": ("comet",),
}
#: protocol kinds whose collateral and lent assets are those its borrower populations use
BOOK_KINDS = ("lending", "compound-v2")


def _liquidated_by(p, agent_kind: str) -> bool:
    return p.kind in SERVES.get(agent_kind, ())


def _derive_exposures(g: nx.MultiDiGraph) -> None:
    """protocol A -> protocol B when A takes as collateral an asset that B issues or lends against."""
    for pa in protocols(g):
        for asset, _, k in g.in_edges(pa, keys=True):
            if k != "collateral_of":
                continue
            for issuer, _, k2 in g.in_edges(asset, keys=True):
                if k2 == "issues" and issuer != pa:
                    g.add_edge(pa, issuer, key="exposure", asset=asset.split(":", 1)[1])


def protocols(g: nx.MultiDiGraph) -> list[str]:
    return [n for n, d in g.nodes(data=True) if d["type"] == "protocol"]


def nodes_of(g: nx.MultiDiGraph, kind: str) -> list[str]:
    return [n for n, d in g.nodes(data=True) if d["type"] == kind]


def edges_of(g: nx.MultiDiGraph, key: str) -> list[tuple[str, str, dict]]:
    return [(u, v, d) for u, v, k, d in g.edges(keys=True, data=True) if k == key]


def venues_of(g: nx.MultiDiGraph, protocol_node: str) -> list[str]:
    return [v for _, v, k in g.out_edges(protocol_node, keys=True) if k == "liquidates_into"]
