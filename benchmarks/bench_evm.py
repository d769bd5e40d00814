"""The chain in the loop, measured: how much slower a block is on the `evm` lending backend than on the model, and
the differential checks run at a larger size than the tests (cases and largest deviations, for the README).

Run: python benchmarks/bench_evm.py [--accounts 300] [--duration 4h] [--cases 150]
     (needs `make chain`) -> prints the figures, writes benchmarks/results/evm.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def machine_info() -> dict:
    from importlib.metadata import version

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "web3": version("web3"),
        "defistress": version("defistress"),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def backends(accounts: int, duration: str, seed: int = 2) -> dict:
    """eth-crash on the model and on the evm backend: wall time per block and whether the outcomes agree."""
    from defistress.scenarios.loader import load
    from defistress.sim.engine.model import StressModel
    from defistress.sim.experiments.runs import events_frame

    overrides = [
        f'run.duration="{duration}"',
        f"agents.borrowers.accounts={accounts}",
        'protocols.lend.close_factor_rule="aave-v3.0"',
        'protocols.lend.precision="aave-v3"',
    ]
    out, runs = {}, {}
    for name, extra in (("model", []), ("evm", ['protocols.lend.backend="evm"'])):
        t0 = time.perf_counter()
        model = StressModel(load("eth-crash", [*overrides, *extra]), seed=seed)
        t1 = time.perf_counter()
        model.run()
        t2 = time.perf_counter()
        ev = events_frame(model.env.events)
        liq = ev[ev["kind"] == "liquidation"]
        m = model.protocols["lend"]
        runs[name] = (liq, m)
        out[name] = {
            "setup_s": round(t1 - t0, 2),
            "run_s": round(t2 - t1, 2),
            "blocks": model.n_blocks,
            "ms_per_block": round(1000 * (t2 - t1) / model.n_blocks, 3),
            "liquidations": int(len(liq)),
            "bad_debt_usd": round(float(m.metrics()["bad_debt_usd"]), 2),
            **({"transactions": m.stats["transactions"]} if name == "evm" else {}),
        }
    (la, ma), (lb, mb) = runs["model"], runs["evm"]
    keys = ["block", "account", "collateral_asset", "debt_asset"]
    same = la[keys].values.tolist() == lb[keys].values.tolist()
    rel = (
        float(np.max(np.abs(lb["debt_repaid"].values - la["debt_repaid"].values) / la["debt_repaid"].values))
        if same and len(la)
        else None
    )
    ha, hb = ma.health(), mb.health()
    fin = np.isfinite(ha) & (ha > 0)
    out["slowdown_per_block"] = round(out["evm"]["ms_per_block"] / out["model"]["ms_per_block"], 1)
    out["same_liquidations"] = same
    out["largest_relative_difference_debt_repaid"] = rel
    out["largest_relative_difference_final_hf"] = float(np.max(np.abs(hb[fin] - ha[fin]) / ha[fin]))
    return out


def differential(cases: int, seed: int = 1) -> dict:
    """Random books, liquidations and swaps compared with the bytecode (protocols/evm/differential.py)."""
    from defistress.protocols.evm.aave import EModeParams, RateParams, ReserveParams, deploy_aave
    from defistress.protocols.evm.differential import AccountBook, Deviations, LendingDifferential, compare_swaps
    from defistress.protocols.evm.node import AnvilNode
    from defistress.protocols.evm.rpc import Chain, Checkpoint
    from defistress.protocols.evm.uniswap_v2 import deploy_mintable_erc20, deploy_uniswap_v2

    stable = RateParams(optimal_usage_ratio=0.90, variable_rate_slope2=0.60)
    reserves = [
        ReserveParams("WETH", 18, 2000, 8000, 8250, 10500, reserve_factor=1500),
        ReserveParams("WBTC", 8, 30000, 7000, 7500, 10650, reserve_factor=2000, protocol_fee=2000),
        ReserveParams("USDC", 6, 1, 7700, 8000, 10450, emode_category=1, rates=stable),
        ReserveParams("DAI", 18, 1, 7500, 8000, 10500, emode_category=1, protocol_fee=500, rates=stable),
    ]
    emodes = [EModeParams(1, 9300, 9500, 10100, "Stablecoins", price_usd=1.0)]
    prices0 = {"WETH": 2000.0, "WBTC": 30000.0, "USDC": 1.0, "DAI": 1.0}
    lt = {r.symbol: r.liquidation_threshold / 1e4 for r in reserves}
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    with AnvilNode(auto_impersonate=True) as node:
        chain = Chain(node.url)
        chain.freeze_time()
        aave = deploy_aave(chain, reserves, emodes)
        for sym, amount in (("WETH", 5_000), ("WBTC", 500), ("USDC", 50_000_000), ("DAI", 50_000_000)):
            aave.supply(sym, chain.accounts[8], aave.reserves[sym].units(amount))
        a, b = deploy_mintable_erc20(chain, "TKA", 18), deploy_mintable_erc20(chain, "TKB", 6)
        pair = deploy_uniswap_v2(chain).create_pair(a, b, 1_000 * 10**18, 2_000_000 * 10**6)
        d = LendingDifferential(aave, reserves, emodes)
        cp = Checkpoint(chain)
        symbols = list(prices0)
        for _ in range(cases):
            cp.restore()
            d.reset()
            shock = {
                "WETH": rng.uniform(0.35, 1.3),
                "WBTC": rng.uniform(0.35, 1.3),
                "USDC": rng.uniform(0.95, 1.05),
                "DAI": rng.uniform(0.9, 1.1),
            }
            prices = {s: round(prices0[s] * shock[s], 8) for s in symbols}
            books = []
            for _k in range(rng.integers(1, 4)):
                held = list(rng.choice(symbols, rng.integers(1, 5), replace=False))
                emode = int(rng.random() < 0.3)
                coll = {
                    s: round(float(rng.uniform(0.05, 1.0) * {"WETH": 60, "WBTC": 4, "USDC": 2e5, "DAI": 2e5}[s]), 6)
                    for s in held
                }
                off = tuple(s for s in held[1:] if rng.random() < 0.25)
                owed = list(rng.choice(["USDC", "DAI"] if emode else symbols, rng.integers(0, 3), replace=False))
                value = sum(coll[s] * prices[s] * lt[s] for s in held if s not in off) / rng.uniform(0.5, 1.6)
                shares = rng.dirichlet(np.ones(len(owed))) if owed else []
                books.append(
                    AccountBook(coll, {s: round(value * w / prices[s], 6) for s, w in zip(owed, shares)}, off, emode)
                )
            addrs = d.open(books, prices0, emode_price=1.0)
            days = 0
            if rng.random() < 0.5:
                days = int(rng.choice([1, 90, 365]))
                chain.advance_time(days * 86400, mine=True)
            d.last_case = {"books": books, "prices": prices, "days": days, "actions": []}
            d.set_prices(prices, round(rng.uniform(0.97, 1.03), 8))
            exact, floaty = d.model(addrs, "aave-v3"), d.model(addrs, "float")
            d.compare_accounts(addrs, exact, floaty)
            for _k in range(rng.integers(1, 7)):
                row = int(rng.integers(len(addrs)))
                held = [s for s in symbols if exact.collateral()[row, exact.idx[s]] > 0] or symbols
                owed = [s for s in symbols if exact.debt()[row, exact.idx[s]] > 0] or symbols
                coll, debt = (
                    (rng.choice(symbols), rng.choice(symbols))
                    if rng.random() < 0.25
                    else (rng.choice(held), rng.choice(owed))
                )
                reserve_debt = exact.debt()[row, exact.idx[debt]]
                frac = None if rng.random() < 0.4 or reserve_debt == 0 else reserve_debt * rng.uniform(0.01, 1.6)
                d.last_case["actions"].append((row, str(coll), str(debt), frac))
                d.liquidate_both(addrs[row], row, str(coll), str(debt), frac, exact, floaty)
            d.compare_accounts(addrs, exact, floaty)
        amm = Deviations()
        for _ in range(cases):
            cp.restore()
            for tok in (pair.token0, pair.token1):
                extra = int(rng.integers(0, 10**9)) * 10 ** chain.call(tok.functions.decimals())
                if extra:
                    chain.transact(tok.functions.mint(pair.address, extra), chain.accounts[7])
            chain.transact(pair.pair.functions.sync(), chain.accounts[7])
            r = pair.reserves()
            swaps = [
                (int(s), max(int(rng.uniform(1e-9, 0.5) * r[int(s)]), 1))
                for s in rng.integers(0, 2, rng.integers(1, 6))
            ]
            compare_swaps(pair, chain.accounts[7], swaps, amm)
        oracle = oracle_rounds(chain, rng)
        chain.close()
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "random_cases": cases,  # random books (1-3 accounts each), then as many random pools with 1-5 swaps each
        "lending": d.dev.as_dict(),
        "amm": amm.as_dict(),
        "oracle": oracle,
    }


def oracle_rounds(chain, rng, blocks: int = 2_000) -> dict:
    """A push-oracle agent (0.5% deviation, 1 h heartbeat) writing to a RoundFeed over a random path: after every
    block, latestRoundData against what the agent published."""
    import mesa

    from defistress.agents.oracles import PushOracle
    from defistress.protocols.evm.artifacts import load_artifact
    from defistress.protocols.evm.feeds import FeedWriter

    writer = chain.accounts[0]
    feed = chain.deploy(load_artifact("RoundFeed"), 8, "ETH / USD", 1, 0, sender=writer)
    start = chain.timestamp() + 1
    path = 2000.0 * np.exp(np.cumsum(rng.normal(0, 0.004, blocks)))
    k = {"i": 0}
    agent = PushOracle(mesa.Model(rng=1), "o", "ETH", lambda: path[k["i"]], lambda: path[k["i"]], 0.005, 3600.0)
    fw = FeedWriter(chain, feed, writer, start)
    agent.listeners.append(fw)
    fw(agent.price, 0.0)
    latest = chain.codec(feed, "latestRoundData")
    mismatches, rounds = 0, 1
    for i in range(1, blocks):
        k["i"] = i
        if agent.update(i, 12.0 * i) is not None:
            rounds += 1
        _, answer, _, updated, _ = chain.call(latest.prepared())
        mismatches += (answer, updated) != (fw.answer(agent.price), start + int(round(agent.updated_at)))
    return {"blocks": blocks, "rounds": rounds, "mismatches": mismatches}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accounts", type=int, default=300)
    ap.add_argument("--duration", default="4h")
    ap.add_argument("--cases", type=int, default=150)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "evm.json")
    args = ap.parse_args(argv)
    result = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"), "machine": machine_info()}
    result["backends"] = backends(args.accounts, args.duration)
    result["differential"] = differential(args.cases)
    result["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    b = result["backends"]
    print(f"eth-crash, {args.accounts} accounts, {b['model']['blocks']} blocks:")
    for k in ("model", "evm"):
        print(
            f"  {k:5s}: {b[k]['ms_per_block']:8.2f} ms per block (setup {b[k]['setup_s']} s), "
            f"{b[k]['liquidations']} liquidations, bad debt {b[k]['bad_debt_usd']:,.2f} USD"
        )
    print(f"  evm / model per block: {b['slowdown_per_block']}x; same liquidations: {b['same_liquidations']}")
    print(json.dumps(result["differential"], indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
