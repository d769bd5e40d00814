# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · A real book through the 5 August 2024 crash
#
# An auditor's question: *what would the ETH and BTC fall of 5 August 2024 have done to this book?* Here the
# book is real in the sense that matters: it lives in Aave v3.0.2's own contracts. We start a local Anvil node,
# deploy Aave v3 from its npm artifacts, open a few hundred accounts on it (several collateral assets and debts,
# some in e-mode, some isolated), then **import the book over JSON-RPC** exactly as `defistress import aave-v3`
# would from a mainnet archive node. The imported snapshot is placed in a lending market that takes the
# contracts' reserve parameters, and the bundled hourly ETH and BTC path of 4–6 August 2024 is replayed through
# it, with Chainlink-style oracles, liquidators and AMM pools.
#
# Needs `make chain` (node and npm). The book is small and the block time is one minute so that the notebook
# runs in about a minute; the same code takes any snapshot.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from defistress.protocols.evm.aave import EModeParams, RateParams, ReserveParams, deploy_aave, model_emodes
from defistress.protocols.evm.import_aave import import_aave_v3
from defistress.protocols.evm.lending_backend import open_book
from defistress.protocols.evm.node import AnvilNode
from defistress.protocols.evm.rpc import Chain
from defistress.protocols.evm.snapshot import read_snapshot
from defistress.sim.experiments.runs import run_scenario

N_ACCOUNTS = 400
START = "2024-08-04T00:00:00Z"  # the replay's first candle: ETH 2,903.65, BTC 60,697.99 (Binance opens)

# %% [markdown]
# ## 1 · Aave v3 on a local chain, and a book on it
#
# Reserve parameters like Aave v3 Ethereum's first listings (basis points); USDC and DAI form a stablecoin
# e-mode category; WBTC is an isolation-mode collateral with a 5M USD debt ceiling.

# %%
node = AnvilNode(auto_impersonate=True, gas_limit=1_000_000_000).start()  # 127.0.0.1, a free port
chain = Chain(node.url)
chain.freeze_time()
stable = RateParams(optimal_usage_ratio=0.90, variable_rate_slope2=0.60)
reserves = [
    ReserveParams("WETH", 18, 2903.65, 8000, 8250, 10500, reserve_factor=1500),
    ReserveParams("WBTC", 8, 60697.99, 7000, 7500, 10650, reserve_factor=2000, debt_ceiling_usd=5_000_000),
    ReserveParams("USDC", 6, 1, 7700, 8000, 10450, emode_category=1, borrowable_in_isolation=True, rates=stable),
    ReserveParams("DAI", 18, 1, 7500, 8000, 10500, emode_category=1, borrowable_in_isolation=True, rates=stable),
]
emodes = [EModeParams(1, 9300, 9500, 10100, "Stablecoins")]
aave = deploy_aave(chain, reserves, emodes)
print(f"Aave v3 deployed in {aave.seconds['TOTAL']:.2f} s, {aave.gas['TOTAL']:,} gas; pool {aave.pool.address}")

# %% [markdown]
# The book: most accounts hold WETH (some USDC too) against DAI and USDC debt; one in six is a stablecoin loop in
# e-mode; one in six borrows USDC against isolated WBTC. Health factors are drawn between 1.05 and 3.

# %%
rng = np.random.default_rng(5)
n = N_ACCOUNTS
p = np.array([r.price_usd for r in reserves])
kind = rng.choice(3, size=n, p=[4 / 6, 1 / 6, 1 / 6])  # 0 WETH-backed, 1 e-mode stables, 2 isolated WBTC
size = np.exp(rng.normal(np.log(25_000), 1.1, n)).clip(1_000, 2_000_000)
coll, debt_share = np.zeros((n, 4)), np.zeros((n, 4))
with_usdc = (kind == 0) & (rng.random(n) < 0.4)
coll[kind == 0, 0] = size[kind == 0] * np.where(with_usdc[kind == 0], 0.7, 1.0)
coll[with_usdc, 2] = size[with_usdc] * 0.3
debt_share[kind == 0, 3] = 1.0
plain = (kind == 0) & ~with_usdc
debt_share[plain, 2:] = rng.dirichlet([1, 1], int(plain.sum()))
coll[kind == 1, 2], debt_share[kind == 1, 3] = size[kind == 1], 1.0
coll[kind == 2, 1], debt_share[kind == 2, 2] = size[kind == 2] / 4, 1.0
lt = np.where(kind[:, None] == 1, 0.95, np.array([0.825, 0.75, 0.80, 0.80]))
hf0 = rng.uniform(1.05, 3.0, n)
debt = ((coll * lt).sum(axis=1) / hf0)[:, None] * debt_share / p
addresses, opened = open_book(aave, coll / p, debt, coll > 0, np.where(kind == 1, 1, 0), model_emodes(emodes))
print(f"{len(addresses)} accounts opened in {opened.stats['transactions']:,} transactions")

# %% [markdown]
# ## 2 · Import the book over JSON-RPC
#
# The same function `defistress import aave-v3 --rpc URL --pool ADDRESS --block N --out book.parquet` runs: it
# reads the reserves' configuration, finds the users in the Pool's `Supply` and `Borrow` events, reads every
# position at the block with batched calls and writes the snapshot with its manifest.

# %%
work = Path(tempfile.mkdtemp(prefix="defistress-book-"))
manifest = import_aave_v3(node.url, aave.pool.address, work / "book.parquet")
snap = read_snapshot(work / "book.parquet")
print(
    f"chain {manifest['chain_id']}, block {manifest['block_number']}, {manifest['accounts']} accounts, "
    f"{manifest['rows']} positions, sha256 {manifest['sha256'][:16]}…"
)
pd.DataFrame(manifest["reserves"])[
    ["symbol", "ltv", "liquidation_threshold", "liquidation_bonus", "debt_ceiling", "emode_category", "price_base"]
]

# %%
snap.frame[snap.frame["account"].isin(addresses[:3])][
    ["account", "asset", "collateral", "debt", "used_as_collateral", "emode", "health_factor"]
]

# %% [markdown]
# ## 3 · Stress it with 4–6 August 2024
#
# The scenario replays the bundled Binance hourly closes of ETH and BTC (`10_aug5_crash_2024-08_ETH_BTC_1h.csv`)
# from 4 August, 00:00 UTC, for 48 hours, with one-minute blocks. Chainlink-style push oracles (0.5% deviation,
# one-hour heartbeat) price WETH and WBTC; USDC and DAI are fixed at 1 USD. The lending market lists the four
# assets and takes every reserve parameter and the e-mode category from the snapshot (the scenario sets none),
# with the contract's own rounding (`precision = "aave-v3"`) and the v3.0 close factor of the deployed bytecode.
# Three liquidators sell what they seize into two pools that an arbitrageur keeps in line with the market.


# %%
def scenario(book_file: Path) -> dict:
    assets = ["WETH", "WBTC", "USDC", "DAI"]
    return {
        "run": {"name": "aug5-real-book", "block_seconds": 60, "duration": "48h", "seed": 1},
        "market": {
            "assets": [
                {"symbol": "WETH"},
                {"symbol": "WBTC"},
                {"symbol": "USDC", "peg": 1.0},
                {"symbol": "DAI", "peg": 1.0},
            ],
            "replay": {
                "file": "10_aug5_crash_2024-08_ETH_BTC_1h.csv",
                "symbols": {"WETH": "ETH-USDT", "WBTC": "BTC-USDT"},
                "start": START,
            },
            "depth": {"WETH": {"usd_for_1pct": 20_000_000}, "WBTC": {"usd_for_1pct": 30_000_000}},
        },
        "oracles": [
            {"id": "cl-weth", "asset": "WETH", "deviation": 0.005, "heartbeat": "1h"},
            {"id": "cl-wbtc", "asset": "WBTC", "deviation": 0.005, "heartbeat": "1h"},
            {"id": "usdc", "kind": "fixed", "asset": "USDC", "price": 1.0},
            {"id": "dai", "kind": "fixed", "asset": "DAI", "price": 1.0},
        ],
        "venues": [
            {"id": "uni-weth-usdc", "pair": ["WETH", "USDC"], "depth_usd": 50_000_000},
            {"id": "uni-wbtc-usdc", "pair": ["WBTC", "USDC"], "depth_usd": 30_000_000},
        ],
        "protocols": [
            {
                "id": "lend",
                "kind": "lending",
                "close_factor_rule": "aave-v3.0",
                "precision": "aave-v3",
                "oracles": {"WETH": "cl-weth", "WBTC": "cl-wbtc", "USDC": "usdc", "DAI": "dai"},
                "liquidates_into": ["uni-weth-usdc", "uni-wbtc-usdc"],
                "assets": {a: {} for a in assets},
            }
        ],
        "agents": [
            {"kind": "book", "id": "book", "protocol": "lend", "file": str(book_file)},
            {"kind": "liquidator", "id": "liquidator", "count": 3, "capital_usd": 5_000_000.0},
            {
                "kind": "arbitrageur",
                "id": "arbitrageur",
                "venues": ["uni-weth-usdc", "uni-wbtc-usdc"],
                "capital_usd": 20_000_000.0,
            },
        ],
    }


result = run_scenario(scenario(work / "book.parquet"), seed=1)
m = result.metrics
pd.Series(
    {
        k: m[k]
        for k in (
            "bad_debt_usd",
            "liquidations",
            "liquidation_volume_usd",
            "debt_liquidated_pct",
            "liquidator_value_leakage_usd",
            "reference_drawdown",
            "max_oracle_error",
            "conservation_ok",
        )
    },
    name="aug5 on the imported book",
).to_frame()

# %% [markdown]
# The run's manifest names the snapshot it started from: its hash, chain, block and contracts.

# %%
result.manifest["snapshots"][0]

# %% [markdown]
# ## 4 · What happened
#
# Left: the replayed ETH price and the liquidations per hour. Right: the health factors of the book before and
# after the 48 hours (accounts with debt).

# %%
ts, ev = result.timeseries, result.events
liq = ev[ev["kind"] == "liquidation"]
fig, (ax1, ax3) = plt.subplots(1, 2, figsize=(12, 4))
hours = ts["block"] / 60
ax1.plot(hours, ts["ref_WETH_usd"], color="#0072B2")
ax1.set_xlabel("hours since 4 Aug 2024 00:00 UTC")
ax1.set_ylabel("WETH reference price (USD)", color="#0072B2")
ax2 = ax1.twinx()
per_hour = liq.groupby(liq["block"] // 60).size()
ax2.bar(per_hour.index, per_hour.values, width=0.8, color="#D55E00", alpha=0.6)
ax2.set_ylabel("liquidations per hour", color="#D55E00")
bins = np.linspace(0.5, 3.5, 61)
ax3.hist(np.clip(result.health_before["lend"], 0.5, 3.5), bins=bins, alpha=0.6, label="before", color="#009E73")
ax3.hist(np.clip(result.health_after["lend"], 0.5, 3.5), bins=bins, alpha=0.6, label="after", color="#CC79A7")
ax3.axvline(1.0, color="black", lw=1)
ax3.set_xlabel("health factor (clipped to 0.5–3.5)")
ax3.legend()
fig.tight_layout()

# %%
liq.groupby(["collateral_asset", "debt_asset"])[["debt_repaid_usd", "collateral_seized_usd"]].agg(["count", "sum"])

# %% [markdown]
# The node is ours: stop it (it also stops when the kernel exits).

# %%
chain.close()
node.stop()
