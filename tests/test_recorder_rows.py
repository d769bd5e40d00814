"""The recorder's per-block rows (issue 14: column names formatted once, prices read with `tolist()`, no
liquidation tally on a block without events) against the row as first written, kept here as the reference: on
runs with liquidations, CDP auction kicks and an oracle whose unit changes mid-run, every block's row must have the same
columns in the same order with values of the same type, equal bit for bit."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest

from defistress.protocols.events import AuctionKicked, Liquidated
from defistress.scenarios.loader import load
from defistress.sim.engine.model import StressModel


def reference_row(rec, events: list) -> dict:
    """`Recorder.record`'s row as first written (less the streak count and the extra sources, which it shares)."""
    m = rec.model
    st = m.block_stats
    row = {
        "block": m.env.clock.block,
        "time_s": m.env.clock.seconds,
        "base_fee_gwei": m.gas.base_fee_gwei,
        "gas_limit": m.gas.limit,
        "gas_used": st.gas_used,
        "agent_gas": st.agent_gas,
        "txs_included": st.included,
        "txs_reverted": st.reverted,
        "txs_dropped": st.dropped,
    }
    for sym, p, x in zip(m.market.symbols, m.market.prices, m.market.exogenous[min(m.env.clock.block, m.n_blocks - 1)]):
        row[f"ref_{sym}_usd"] = float(p)
        row[f"exog_{sym}_usd"] = float(x)
    for oid, o in m.oracles.items():
        row[f"oracle_{oid}_{getattr(o, 'denomination', 'USD').lower()}"] = float(o.price)
    for vid, pool in m.pools.items():
        row[f"pool_{vid}_price"] = float(pool.price())
    liq_n: dict[str, int] = defaultdict(int)
    liq_usd: dict[str, float] = defaultdict(float)
    for ev in events:
        if isinstance(ev, Liquidated):
            liq_n[ev.source] += 1
            liq_usd[ev.source] += ev.debt_repaid_usd
        elif isinstance(ev, AuctionKicked) and ev.source in rec.kick_liquidates:
            liq_n[ev.source] += 1
            liq_usd[ev.source] += ev.tab * rec.kick_liquidates[ev.source]()
    for pid, proto in m.protocols.items():
        for k, v in proto.metrics().items():
            row[f"{pid}_{k}"] = float(v)
        row[f"{pid}_liquidations"] = liq_n.get(pid, 0)
        row[f"{pid}_liquidation_volume_usd"] = liq_usd.get(pid, 0.0)
    start = rec.start_value
    row["liquidator_pnl_usd"] = sum(v - start[h] for h, v in zip(rec.liquidators, rec._values(rec.liquidators)))
    return row


def same(a: object, b: object) -> bool:
    """Equal with the same type; NaN equals NaN (a float bit for bit: equal and of the same sign)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1.0, a) == math.copysign(1.0, b))
    return a == b


@pytest.mark.parametrize(
    ("scenario", "overrides"),
    [
        ("eth-crash", ['run.duration="3h"', "agents.borrowers.accounts=600"]),  # liquidations from 2 h
        ("black-thursday-maker", ["run.block_seconds=300", "agents.vaults.accounts=300"]),  # auction kicks
    ],
)
def test_every_row_is_the_reference_row(scenario: str, overrides: list[str]) -> None:
    model = StressModel(load(scenario, overrides), 1)
    rec = model.recorder
    record = rec.record
    seen = {"liquidated": 0, "kicked": 0, "ratio": 0, "rows": 0}

    def checked(events: list) -> None:
        if model.env.clock.block == 100:  # a ratio feed's unit (stETH/ETH) from now on: a column of its own
            next(iter(model.oracles.values())).denomination = "ETH"
        expected = reference_row(rec, events)
        record(events)
        got = dict(rec.rows[-1])
        for k in rec.rows[-1].keys() - expected.keys():  # the extra sources' columns (e.g. regime), shared code
            got.pop(k)
        assert list(got) == list(expected)
        bad = {k: (expected[k], got[k]) for k in expected if not same(expected[k], got[k])}
        assert not bad, f"block {model.env.clock.block}: {bad}"
        seen["liquidated"] += sum(isinstance(e, Liquidated) for e in events)
        seen["kicked"] += sum(isinstance(e, AuctionKicked) for e in events)
        seen["ratio"] += any(k.startswith("oracle_") and not k.endswith("_usd") for k in got)
        seen["rows"] += 1

    rec.record = checked
    model.run()
    assert seen["rows"] == model.n_blocks
    # each case exercises what it was chosen for (else it could not fail for it)
    if scenario == "eth-crash":
        assert seen["liquidated"] > 0
    if scenario == "black-thursday-maker":
        assert seen["kicked"] > 0
    assert seen["ratio"] == model.n_blocks - 100
