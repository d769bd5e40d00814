"""Why `eth-crash` with a million accounts liquidates so little: the largest unhealthy positions a liquidator looks
at, and what liquidating each would pay (README, Performance and Limits).

Run: python benchmarks/scale_stall.py [--accounts 1000000] [--blocks 640] [--top 25] [--out PATH]
     -> prints one line per row, writes benchmarks/results/scale_stall.json.

After `--blocks` blocks of `eth-crash` (seed 1; the crash starts at block 600), the unhealthy accounts ranked by
debt as the liquidators rank them (largest first; they look at the first 4 x max_tx_per_block = 20). Per row: its
debt and health factor, the (collateral, debt) pair that pays most at oracle prices
(`LendingMarket.liquidation_pairs_and_caps`), the close-factor cap (`max_debt_to_cover`), the preview of repaying
min(cap, the first liquidator's capital in the debt asset), the USD the seized collateral fetches in the
constant-product pool (`ConstantProductPool.quote`) and the gross profit before gas (sale - repayment, USD).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SCENARIO = "eth-crash"
SEED = 1


def stall_rows(accounts: int, blocks: int, top: int) -> dict:
    from defistress.protocols.lending import LendingMarket
    from defistress.scenarios.loader import load
    from defistress.sim.engine.model import StressModel

    model = StressModel(load(SCENARIO, [f"agents.borrowers.accounts={accounts}", f"run.duration={blocks * 12}"]), SEED)
    for _ in range(blocks):
        model.step()
    m = next(p for p in model.protocols.values() if isinstance(p, LendingMarket))
    liq = next(a for a in model.agents if type(a).__name__ == "Liquidator")
    ledger = m.env.ledger
    hf = m.health()
    unhealthy = np.flatnonzero(hf < 1.0)
    _, debt_usd = m.account_usd()
    ranked = unhealthy[np.argsort(-debt_usd[unhealthy], kind="stable")][:top]
    ci, dj, _, _ = m.liquidation_pairs_and_caps(ranked)
    prices = dict(zip(m.assets, m.prices().tolist()))
    rows = []
    for rank, (a, i, j) in enumerate(zip(ranked.tolist(), ci.tolist(), dj.tolist()), start=1):
        coll, debt = m.assets[i], m.assets[j]
        cap = m.max_debt_to_cover(a, debt, coll)
        capital = ledger.balance(liq.holder, debt)
        pv = m.preview(a, coll, debt, min(cap, capital))
        pool = next(p for p in model.pools.values() if {p.p.token0, p.p.token1} == {coll, debt})
        sale_usd = pool.quote(coll, pv.collateral_seized) * prices[debt]
        repay_usd = pv.debt_to_repay * prices[debt]
        rows.append(
            {
                "rank": rank,
                "account": a,
                "debt_usd": round(float(debt_usd[a]), 2),
                "health_factor": round(float(hf[a]), 4),
                "pair": f"{coll}->{debt}",
                "cap_usd": round(cap * prices[debt], 2),
                "repay_usd": round(repay_usd, 2),
                "seized_usd_at_oracle": round(pv.collateral_seized * prices[coll], 2),
                "sale_usd": round(sale_usd, 2),
                "gross_profit_usd": round(sale_usd - repay_usd, 2),
            }
        )
    pools = {
        pid: {tok: round(amt, 2) for tok, amt in zip((p.p.token0, p.p.token1), p.reserves())}
        for pid, p in model.pools.items()
    }
    liquidations = sum(1 for e in model.env.events if type(e).__name__ == "Liquidated")
    return {
        "scenario": SCENARIO,
        "seed": SEED,
        "accounts": accounts,
        "blocks": blocks,
        "unhealthy": int(unhealthy.size),
        "liquidations_so_far": liquidations,
        "looked_at_per_liquidator": 4 * liq.spec.max_tx_per_block,
        "pool_reserves": pools,
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--blocks", type=int, default=640, help="blocks of 12 s to run first (the crash starts at 600)")
    ap.add_argument("--top", type=int, default=25, help="rows to list, largest debt first")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "scale_stall.json")
    args = ap.parse_args()
    res = stall_rows(args.accounts, args.blocks, args.top) | {"date": dt.date.today().isoformat()}
    print(
        f"{res['accounts']:,} accounts after {res['blocks']} blocks: {res['unhealthy']:,} unhealthy, "
        f"{res['liquidations_so_far']} liquidations; a liquidator looks at the first {res['looked_at_per_liquidator']}"
    )
    for r in res["rows"]:
        print(
            f"{r['rank']:>3} debt ${r['debt_usd'] / 1e6:6.2f}M  HF {r['health_factor']:.3f}  {r['pair']:<10} "
            f"repay ${r['repay_usd'] / 1e6:6.3f}M  sale ${r['sale_usd'] / 1e6:6.3f}M  "
            f"gross ${r['gross_profit_usd'] / 1e3:8.1f}k"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
