"""Contagion metrics computed on the scenario graph after a run.

- DebtRank (Battiston, Puliga, Kaushik, Tasca, Caldarelli 2012, "DebtRank: Too Central to Fail?",
  Sci. Rep. 2:541): distress h in [0, 1] spreads along impact weights W[i, j] = min(1, exposure of j to
  i / capital of j); each node passes on its distress once (states undistressed -> distressed ->
  inactive). Systemic loss R = Σ h_T·v − Σ h_1·v with v the relative economic value of each node.
  The paper uses a node's relative equity loss as the fall in value of the claims on it; where the market
  prices those claims (a CDP's stablecoin held as collateral elsewhere), the fall it observed is the better
  measure: a node passes on max(h_i, devaluation_i), the largest fraction its issued token fell below its peg
  (`liability_devaluation`). So a lending market holding a CDP's stablecoin is distressed by the stablecoin's
  depeg (collateral value lost) even when the CDP itself writes nothing off.
- cascade depth: hops from the shocked asset to each protocol that took losses, along the edges that
  carry losses (collateral, issuance, oracle sourcing, liquidation venues, shared capital).
- protocols breached (bad debt > 0), first-liquidation time per protocol, loss attribution by edge type.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

#: edges along which a loss can travel, with the direction it travels in
CARRIERS = {
    "collateral_of": "forward",  # asset falls -> protocol holding it as collateral suffers
    "issues": "forward",  # protocol in trouble -> the asset it issues depegs
    "lends": "forward",  # protocol -> asset it lends (receivable at risk)
    "sources": "reverse",  # asset/venue moves -> oracle reading it moves
    "priced_by": "reverse",  # oracle moves -> protocol reading it acts
    "liquidates_into": "forward",  # protocol's liquidations sell into the venue
    "trades": "both",  # venue price <-> asset price (arbitrage)
    "shared_capital": "forward",  # one protocol's liquidations tie up capital another needs
    "coordinated": "forward",  # cross-venue margin: one venue's shortfall is settled from another
    "pegs": "both",  # a peg keeper's pool depegs -> its stablecoin; a keeper's deposits move the pool
}


def debtrank(
    impact: np.ndarray,
    value: np.ndarray,
    h0: np.ndarray,
    max_rounds: int = 1000,
    devaluation: np.ndarray | None = None,
) -> tuple[float, np.ndarray]:
    """DebtRank with impact matrix `impact[i, j]` (distress of i passed to j), relative values `value`
    (summing to 1) and initial distress `h0`. `devaluation[i]` in [0, 1]: the fraction of value the claims on i
    lost in the market (its stablecoin's depeg); a node passes on max(h_i, devaluation_i) and starts distressed
    when either is positive. Returns (R, final distress)."""
    h = np.clip(np.asarray(h0, float), 0.0, 1.0)
    w = np.clip(np.asarray(impact, float), 0.0, 1.0)
    d = np.zeros_like(h) if devaluation is None else np.clip(np.asarray(devaluation, float), 0.0, 1.0)
    state = np.where((h > 0) | (d > 0), 1, 0)  # 0 undistressed, 1 distressed, 2 inactive
    for _ in range(max_rounds):
        distressed = state == 1
        if not distressed.any():
            break
        h_new = np.minimum(1.0, h + (np.maximum(h, d) * distressed) @ w)
        new_state = state.copy()
        new_state[distressed] = 2
        new_state[(state == 0) & (h_new > 0)] = 1
        h, state = h_new, new_state
    return float(h @ value - np.clip(h0, 0, 1) @ value), h


def exposure_impact(
    g: nx.MultiDiGraph, exposure_usd: dict[tuple[str, str], float], capital_usd: dict[str, float]
) -> tuple[list[str], np.ndarray]:
    """Impact matrix over protocol nodes: W[i, j] = min(1, exposure of j to i / capital of j)."""
    names = sorted(capital_usd)
    idx = {p: k for k, p in enumerate(names)}
    w = np.zeros((len(names), len(names)))
    for (holder, issuer), usd in exposure_usd.items():
        if holder in idx and issuer in idx and holder != issuer:
            cap = capital_usd[holder]
            w[idx[issuer], idx[holder]] = 1.0 if cap <= 0 else min(1.0, usd / cap)
    return names, w


def carrier_graph(g: nx.MultiDiGraph) -> nx.DiGraph:
    """A plain digraph of the edges that carry losses, each in the direction losses travel."""
    d: nx.DiGraph = nx.DiGraph()
    d.add_nodes_from(g.nodes(data=True))
    for u, v, k in g.edges(keys=True):
        how = CARRIERS.get(k)
        if how in ("forward", "both"):
            d.add_edge(u, v, type=k)
        if how in ("reverse", "both"):
            d.add_edge(v, u, type=k)
    return d


def cascade_depths(g: nx.MultiDiGraph, shocked_asset: str, losers: list[str]) -> dict[str, int | None]:
    """Hops from the shocked asset to each protocol that took losses (None if not reachable)."""
    d = carrier_graph(g)
    src = f"asset:{shocked_asset}"
    if src not in d:
        return {p: None for p in losers}
    lengths = nx.single_source_shortest_path_length(d, src)
    return {p: lengths.get(f"protocol:{p}") for p in losers}


def attribute_losses(
    g: nx.MultiDiGraph, losses_by_asset: dict[str, dict[str, float]], shocked_asset: str
) -> dict[str, float]:
    """Bad debt (USD) by the edge type that brought it: a protocol's loss on collateral X is
    'collateral_of' when X is the shocked asset, 'issues' when X is issued by another protocol in the
    network (a stablecoin or receipt token), 'priced_by' when X's oracle reads a venue, else 'market'."""
    out: dict[str, float] = {}
    issuers = {v.split(":", 1)[1] for u, v, k in g.edges(keys=True) if k == "issues"}
    for by_asset in losses_by_asset.values():
        for asset, usd in by_asset.items():
            if usd <= 0:
                continue
            if asset == shocked_asset:
                kind = "collateral_of"
            elif asset in issuers:
                kind = "issues"
            else:
                kind = "market"
            out[kind] = out.get(kind, 0.0) + float(usd)
    return out


def liability_devaluation(issued: dict[str, list[str]], trough_over_peg: dict[str, float]) -> dict[str, float]:
    """Per issuer: the largest fraction any token it issues fell below its peg (0 when none fell):
    `issued[pid]` its tokens, `trough_over_peg[token]` the token's lowest reference price over its peg."""
    return {
        p: max((max(0.0, 1.0 - trough_over_peg.get(t, 1.0)) for t in toks), default=0.0) for p, toks in issued.items()
    }


def contagion_metrics(
    g: nx.MultiDiGraph,
    per_protocol: dict[str, dict],
    shocked_asset: str | None,
    exposure_usd: dict[tuple[str, str], float],
    capital_usd: dict[str, float],
    losses_by_asset: dict[str, dict[str, float]],
    devaluation: dict[str, float] | None = None,
) -> dict:
    """The contagion block of summary.json. `exposure_usd[(holder, issuer)]`: what the holder held of the
    issuer's token at the start, USD; `devaluation[issuer]`: see `liability_devaluation`."""
    breached = sorted(p for p, m in per_protocol.items() if m.get("bad_debt_usd", 0.0) > 0)
    losers = sorted(
        p for p, m in per_protocol.items() if m.get("bad_debt_usd", 0.0) > 0 or m.get("liquidations", 0) > 0
    )
    depths = cascade_depths(g, shocked_asset, losers) if shocked_asset else {}
    names, w = exposure_impact(g, exposure_usd, capital_usd)
    total_value = sum(max(per_protocol.get(p, {}).get("initial_debt_usd", 0.0), 0.0) for p in names)
    value = np.array([max(per_protocol.get(p, {}).get("initial_debt_usd", 0.0), 0.0) for p in names])
    value = value / total_value if total_value > 0 else np.full(len(names), 1.0 / max(len(names), 1))
    h0 = np.array(
        [
            min(1.0, per_protocol.get(p, {}).get("bad_debt_usd", 0.0) / capital_usd[p])
            if capital_usd[p] > 0
            else float(per_protocol.get(p, {}).get("bad_debt_usd", 0.0) > 0)
            for p in names
        ]
    )
    dev = np.array([(devaluation or {}).get(p, 0.0) for p in names])
    r, h = debtrank(w, value, h0, devaluation=dev) if len(names) else (0.0, np.array([]))
    reachable = [v for v in depths.values() if v is not None]
    lost = {
        f"{a}->{b}": usd * (devaluation or {}).get(b, 0.0)
        for (a, b), usd in exposure_usd.items()
        if a in capital_usd and b in capital_usd
    }
    return {
        "protocols_breached": breached,
        "n_protocols_breached": len(breached),
        "first_liquidation_s": {p: m.get("first_liquidation_s") for p, m in per_protocol.items()},
        "cascade_depth_by_protocol": depths,
        "cascade_depth": max(reachable) if reachable else 0,
        "debtrank": r,
        "distress_initial": dict(zip(names, h0.tolist())),
        "liability_devaluation": dict(zip(names, dev.tolist())),
        "distress_final": dict(zip(names, h.tolist())),
        "impact_weights": {f"{names[i]}->{names[j]}": float(w[i, j]) for i, j in zip(*np.nonzero(w))},
        "collateral_value_lost_usd": lost,
        "loss_attribution_usd": attribute_losses(g, losses_by_asset, shocked_asset) if shocked_asset else {},
    }
