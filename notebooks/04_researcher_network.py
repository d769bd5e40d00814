# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · A researcher's network: contagion as one link is added
#
# The built-in `defi-contagion` scenario wires three protocols into one network: an Aave-v3-like lending
# market, a Maker-style CDP (which issues DAI) and a dYdX-like perp DEX. They share ETH collateral, one
# Chainlink-style ETH oracle, an ETH/USDC pool and a set of liquidators. ETH falls 15% at once an hour in, then
# drifts a further 30% over four hours.
#
# The question: how much does **one more link** change contagion? The link is the lending market accepting the
# CDP's DAI as collateral (30% of each borrower's collateral). Without it, the CDP's trouble (DAI slipping
# below its peg while keepers sell seized ETH for DAI) cannot reach the lending market through the balance
# sheet; with it, every cent DAI loses is collateral value the lending market loses.
#
# We run the network twice on the same seed, with and without that link, and compare the contagion block of
# the summary: DebtRank (Battiston et al. 2012, *DebtRank: Too Central to Fail?*, Sci. Rep. 2:541) over the
# exposure edges, with the issuer's depeg passed to the holders of its token; the collateral value lost along
# each edge; the cascade depth; and each protocol's bad debt.
#
# To keep the notebook quick, every population is cut to 600 accounts and the run to 4 hours (the shock's
# first three hours). Drop `SMALL` for the full scenario (`defistress run defi-contagion`).

# %%
import matplotlib.pyplot as plt
import pandas as pd

from defistress.sim.engine import network
from defistress.sim.experiments.runs import run_scenario
from defistress.sim.report import plots

SCENARIO = "defi-contagion"
SEED = 1
SMALL = [
    'run.duration="4h"',
    "agents.vaults.accounts=600",
    "agents.borrowers.accounts=600",
    "agents.traders.params.accounts=600",
]
pd.options.display.float_format = "{:,.4g}".format
LINK = {
    "without the link": ["agents.borrowers.collateral={ETH=1.0}"],  # lending borrowers post ETH only
    "with the link": [],  # the scenario as shipped: ETH 70%, DAI 30%
}

# %%
runs = {name: run_scenario(SCENARIO, seed=SEED, overrides=SMALL + extra) for name, extra in LINK.items()}

# %% [markdown]
# ## The network
#
# The graph the run built (`result.graph`, a networkx MultiDiGraph): protocols, assets, oracles, venues and
# agents, joined by typed edges (the edge's key is its type). The link adds two edges: DAI becomes
# `collateral_of` the lending market, and the graph derives an `exposure` edge between the lending market and
# DAI's issuer, the CDP. Count the edges of each type in the two networks:

# %%
edge_counts = (
    pd.DataFrame(
        {
            name: pd.Series([d.get("key", k) for _, _, k, d in r.graph.edges(keys=True, data=True)]).value_counts()
            for name, r in runs.items()
        }
    )
    .fillna(0)
    .astype(int)
)
edge_counts["added"] = edge_counts["with the link"] - edge_counts["without the link"]
edge_counts

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 6))
for ax, (name, r) in zip(axes, runs.items()):
    plots.plot_network(r, ax=ax)
    ax.set_title(name)
fig.tight_layout()
plt.show()

# %%
print("protocols:", network.protocols(runs["with the link"].graph))
print("issuers:", [(u, v) for u, v, _ in network.edges_of(runs["with the link"].graph, "issues")])

# %% [markdown]
# ## Contagion with and without the link
#
# `impact_weights` are DebtRank's W[i, j]: the share of j's capital that j holds of i's liability (capped at 1).
# `liability_devaluation` is the largest fall of an issuer's token below its peg; DebtRank starts each issuer
# with that distress, so a depeg reaches every holder in proportion to its exposure. `collateral_value_lost_usd`
# is exposure x devaluation along each edge.

# %%
rows = {}
for name, r in runs.items():
    c = r.metrics["contagion"]
    rows[name] = {
        "DebtRank": c["debtrank"],
        "cascade depth (hops)": c["cascade_depth"],
        "protocols breached": ", ".join(c["protocols_breached"]) or "none",
        "impact weights": c["impact_weights"] or "none",
        "collateral value lost (USD)": sum(c["collateral_value_lost_usd"].values()),
        "DAI below peg at worst (maker)": c["liability_devaluation"].get("maker", 0.0),
        "distress of lend at the end": c["distress_final"].get("lend", 0.0),
    }
contagion = pd.DataFrame(rows)
contagion

# %%
per_protocol = pd.concat(
    {
        name: pd.DataFrame(r.metrics["protocols"]).T[["bad_debt_usd", "liquidations"]].astype(float)
        for name, r in runs.items()
    },
    axis=1,
)
per_protocol

# %% [markdown]
# ## What to read
#
# Without the link, no protocol holds another's liability: the impact matrix is empty and DebtRank is zero,
# whatever the CDP's stablecoin does; the three protocols are tied only by their common ETH exposure (shared
# oracle, pool and liquidators: the cascade depth counts those hops). With the link, the lending market holds
# DAI worth a large share of its capital (the `maker->lend` weight), DAI's slip below its peg becomes
# collateral value the lending market lost, and DebtRank becomes positive. The bad debt itself need not
# rise: with less ETH in the collateral the lending book has less to lose to the ETH fall; DebtRank measures
# the systemic channel, not the total loss. At this reduced size the numbers are small; the full scenario
# (`defistress run defi-contagion`) and `defistress graph` show the same contrast at scale.

# %%
with_link, without = runs["with the link"].metrics["contagion"], runs["without the link"].metrics["contagion"]
assert without["impact_weights"] == {} and without["debtrank"] == 0.0
assert with_link["impact_weights"].get("maker->lend", 0.0) > 0 and with_link["debtrank"] > without["debtrank"]
print(f"DebtRank {without['debtrank']:.4f} -> {with_link['debtrank']:.4f} when lend accepts DAI as collateral")
