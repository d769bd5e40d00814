"""The pin of today's single-collateral / single-debt lending results (written before Aave's fuller account model
was added): a fixed sequence of market operations and a short eth-crash run, reduced to SHA-256 digests.

`python tests/lending_pin.py` rewrites tests/data/lending_pin.json; tests/test_lending_pin.py checks that the code
still gives the same digests bit for bit. Regenerate only for a deliberate change of results, and say so.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

# isort: off
import defistress  # noqa: F401  (first: its kernel pin acts before numpy loads, so a rewrite has the tests' bits)

# isort: on
import numpy as np

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.lending import AssetParams, LendingMarket

PIN_FILE = Path(__file__).parent / "data" / "lending_pin.json"
ASSETS = [
    AssetParams("ETH", ltv=0.825, liquidation_threshold=0.86, liquidation_bonus=0.05, protocol_fee=0.10),
    AssetParams("BTC", ltv=0.72, liquidation_threshold=0.82, liquidation_bonus=0.05, protocol_fee=0.10),
    AssetParams("USDC", ltv=0.865, liquidation_threshold=0.885, liquidation_bonus=0.048, slope2=0.8),
    AssetParams("DAI", ltv=0.765, liquidation_threshold=0.89, liquidation_bonus=0.043, base_rate=0.01),
]
PRICES = {"ETH": 2_000.0, "BTC": 60_000.0, "USDC": 1.0, "DAI": 1.0}
RUN_OVERRIDES = ['run.duration="5h"', "agents.borrowers.accounts=1500"]


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str(p.dtype).encode() + str(p.shape).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()[:24]


def market_sequence(rule: str) -> list[str]:
    """Digests of every observable after each step of a seeded sequence of operations on one market."""
    env = Env()
    oracles = {s: FixedPrice(p, f"o-{s}") for s, p in PRICES.items()}
    m = LendingMarket("lend", ASSETS, oracles, env, rule)
    led = env.ledger
    for s in ("USDC", "DAI"):
        led.mint(s, "lenders", 5e8, "genesis")
        m.supply_liquidity("lenders", s, 5e8)
        led.mint(s, "liq", 5e8, "genesis")
    rng = np.random.default_rng(7)
    n = 400
    acc = m.add_accounts(n)
    coll = np.where(rng.random(n) < 0.7, 0, 1)  # ETH or BTC
    debt = np.where(rng.random(n) < 0.6, 2, 3)  # USDC or DAI
    size = np.exp(rng.normal(np.log(20_000), 1.2, n))
    hf = np.clip(np.exp(rng.normal(np.log(1.5), 0.25, n)), 1.02, 6)
    for j in (0, 1):
        s = m.assets[j]
        rows = acc[coll == j]
        amounts = size[coll == j] / PRICES[s]
        led.mint(s, "pop", float(amounts.sum()), "genesis")
        m.supply("pop", rows, s, amounts)
    lt = m.lt[coll]
    for j in (2, 3):
        rows = acc[debt == j]
        m.seed_borrow("pop", rows, m.assets[j], (size * lt / hf)[debt == j])
    out = [_digest(m.coll_scaled, m.debt_scaled, m.health(), *m.account_usd())]
    extra = acc[hf > 2.5][:20]
    try:
        m.borrow("pop", extra, "USDC", size[extra] * 0.05)
    except Revert as exc:
        out.append(str(exc))
    for _step in range(30):
        for s, vol in (("ETH", 0.05), ("BTC", 0.04)):
            oracles[s].price *= float(np.exp(rng.normal(-0.012, vol)))
        oracles["DAI"].price = float(1.0 + rng.normal(0, 0.002))
        m.accrue(12.0 * 50)
        h = m.health()
        events = []
        for a in m.liquidatable()[:12]:
            a = int(a)
            c, d = m.assets[int(coll[a])], m.assets[int(debt[a])]
            cap = m.max_debt_to_cover(a, d, c)
            pv = m.preview(a, c, d, 1e12)
            try:
                ev = m.liquidate(a, c, d, float(rng.choice([1e12, cap * 0.5, 10.0])), "liq")
                events.append(ev)
            except Revert as exc:
                events.append(str(exc))
            events.append((cap, pv))
        rep = acc[(h > 1.0) & (h < 1.1)][:15]
        if rep.size:
            d = m.assets[int(debt[rep[0]])]
            same = rep[debt[rep] == debt[rep[0]]]
            led.mint(d, "pop", 1e7, "top-up")
            events.append(m.repay("pop", same, d, np.full(same.size, 500.0)))
        out.append(
            _digest(
                m.coll_scaled,
                m.debt_scaled,
                h,
                m.weighted_collateral_usd(),
                *m.account_usd(),
                m.utilisation(),
                m.borrow_rate(),
                m.liq_index,
                m.borrow_index,
                m.deficit,
                sorted(m.metrics().items()),
                events,
            )
        )
    bad = [int(a) for a in np.flatnonzero(m.coll_scaled.sum(axis=1) == 0)]
    out.append(_digest([m.write_off(a) for a in bad], sorted(m.losses_by_collateral().items()), m.exposures()))
    led.mint("USDC", "ctl", 1e8, "genesis")
    led.mint("DAI", "ctl", 1e8, "genesis")
    closes = [m.controller_close(int(a), 0.5, "ctl", penalty=0.03) for a in acc[:5]]
    moved = [m.settle_out(int(a), 100.0, "out") for a in acc[5:10]]
    moved += [m.settle_in(int(a), 100.0, "ctl") for a in acc[10:15]]
    out.append(_digest(closes, moved, m.coll_scaled, m.debt_scaled, m.health()))
    led.check_conservation()
    return out


def run_digests() -> dict[str, str]:
    """A reduced eth-crash run: the liquidation events, health before and after, and the per-block table."""
    from defistress.sim.experiments.runs import run_scenario

    r = run_scenario("eth-crash", seed=3, overrides=RUN_OVERRIDES)
    liq = r.events[r.events["kind"] == "liquidation"].reset_index(drop=True)
    cols = [c for c in liq.columns if liq[c].notna().any()]
    return {
        "liquidations": _digest(liq[cols].to_csv(index=False, float_format="%r")),
        "health_before": _digest(r.health_before["lend"]),
        "health_after": _digest(r.health_after["lend"]),
        "timeseries": _digest(r.timeseries.to_csv(index=False, float_format="%r")),
        "bad_debt_usd": repr(r.metrics["bad_debt_usd"]),
        "liquidations_count": repr(r.metrics["liquidations"]),
    }


def compute() -> dict:
    return {
        "market_sequence": {rule: market_sequence(rule) for rule in ("aave-v3.3", "aave-v3.0")},
        "eth_crash": run_digests(),
    }


if __name__ == "__main__":  # pragma: no cover
    PIN_FILE.parent.mkdir(parents=True, exist_ok=True)
    PIN_FILE.write_text(json.dumps(compute(), indent=1) + "\n")
    print(f"wrote {PIN_FILE}", file=sys.stderr)
