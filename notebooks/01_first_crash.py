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
# # 01 · A first crash
#
# The built-in `eth-crash` scenario: ETH falls 15% at once two hours in, then drifts a further 25% over
# four hours with three times its usual volatility. One Aave-v3-like lending market holds ETH and BTC
# collateral against USDC debt; a Chainlink-style push oracle prices it; three liquidators sell what
# they seize into a constant-product ETH/USDC pool; an arbitrageur carries that selling to the outside
# market, where it moves the reference price (square-root impact).
#
# We run it through the Python API, read the per-run metrics, and plot what happened. To keep this
# notebook quick (well under a minute), the book is cut to 5,000 borrowers and the run to 8 hours;
# drop the overrides for the full scenario (`defistress run eth-crash`).

# %%
import matplotlib.pyplot as plt
import pandas as pd

from defistress.scenarios.loader import load
from defistress.sim.experiments.runs import run_scenario
from defistress.sim.report import plots

SCENARIO = "eth-crash"
SEED = 1
OVERRIDES = ['run.duration="8h"', "agents.borrowers.accounts=5000"]

scenario = load(SCENARIO, OVERRIDES).scenario
print(f"{scenario.run.name}: {scenario.run.description}")
print(f"{scenario.n_blocks:,} blocks of {scenario.run.block_seconds:g} s")
for shock in scenario.shocks:
    print("shock:", shock.model_dump(exclude_none=True))

# %%
result = run_scenario(SCENARIO, seed=SEED, overrides=OVERRIDES)

# %% [markdown]
# ## The summary
#
# Bad debt is debt with no collateral behind it at the end (Aave v3.3 burns it into the reserve
# deficit); leakage is the liquidation bonus borrowers paid; cascade amplification is the fall of the
# reference price (with liquidation selling) over the exogenous fall.

# %%
m = result.metrics
headline = [
    "bad_debt_usd",
    "bad_debt_pct",
    "liquidations",
    "liquidation_volume_usd",
    "debt_liquidated_pct",
    "peak_liquidations_per_block",
    "liquidator_value_leakage_usd",
    "liquidator_pnl_usd",
    "exogenous_drawdown",
    "reference_drawdown",
    "cascade_amplification",
    "max_oracle_error",
    "peak_base_fee_gwei",
    "txs_reverted",
    "txs_dropped",
    "conservation_ok",
]
pd.Series({k: m[k] for k in headline}, name=f"{m['scenario']} (seed {m['seed']})").to_frame()

# %%
pd.DataFrame(m["protocols"]).T

# %% [markdown]
# The ledger balances every token: what exists is what was minted minus what was burned.

# %%
assert m["conservation_ok"], m["conservation_errors"]
assert m["liquidations"] > 0
print("manifest:", {k: result.manifest[k] for k in ("scenario_sha256", "seed", "package_version", "blocks")})

# %% [markdown]
# ## What happened
#
# Prices first: the exogenous path, the reference price after liquidation selling, the oracle (which
# moves in steps: deviation threshold and heartbeat) and the pool. Then the liquidations per block and
# their cumulative volume, the health factors before and after, and bad debt over time.

# %%
fig, axes = plt.subplots(2, 2, figsize=(14, 8), layout="constrained")
plots.plot_price_paths(result, "ETH", ax=axes[0, 0])
plots.plot_liquidations(result, ax=axes[0, 1])
plots.plot_health(result, ax=axes[1, 0])
plots.plot_bad_debt(result, ax=axes[1, 1])
plt.show()

# %% [markdown]
# Block space is part of the story: the base fee rises while everyone wants in (EIP-1559), and
# liquidators bid part of their expected profit as a priority fee.

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 4), layout="constrained")
plots.plot_gas(result, ax=axes[0])
plots.plot_liquidator_pnl(result, ax=axes[1])
plt.show()

# %% [markdown]
# ## The event log
#
# Every liquidation, oracle update, swap, revert and bad-debt write-off is a row. The largest
# liquidations:

# %%
liq = result.events[result.events["kind"] == "liquidation"].astype({"account": int})
liq.nlargest(10, "debt_repaid_usd")[
    ["block", "account", "liquidator", "collateral_asset", "debt_repaid_usd", "bonus_usd", "health_before"]
]

# %%
result.events["kind"].value_counts().to_frame("events")

# %% [markdown]
# ## The network
#
# The scenario is a typed graph: collateral, lending, oracle sourcing, liquidation venues and who acts
# on what. Contagion metrics are computed on it.

# %%
fig, ax = plt.subplots(figsize=(10, 6), layout="constrained")
plots.plot_network(result, ax=ax)
plt.show()
