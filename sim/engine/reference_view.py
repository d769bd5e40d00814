"""Mark to reference: each protocol's solvency at the reference (off-chain) prices beside its oracle's view.

Protocols see only their oracles, so a stale or frozen oracle can hide insolvency: a market whose oracle still
shows the pre-crash price reports no unhealthy account and no bad debt while its collateral has lost most of
its value. `solvency_views(model)` evaluates every protocol twice at the end of the run, once at its oracles'
prices and once with every oracle set to its asset's reference price (then restored; protocols' caches are
keyed on prices, so nothing is left changed), with one definition of bad debt for both:

    bad debt = debt already written off + debt not covered by collateral at those prices

per kind (the same figures the protocols report each block): lending `bad_debt_usd` (Aave deficit +
insolvent debt); CDP `bad_debt_usd` (Vow's woe) + `undercollateralised_debt_usd` (vaults and running
auctions short of collateral); perps `bad_debt_usd` (written-off deficit + negative equity); options
`bad_debt_usd` (socialised) + `debt_usd` (negative equity). Unhealthy accounts are `accounts_unhealthy`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

#: protocol kind -> the metrics summed into "bad debt" (written off + uncovered at the prices used)
BAD_DEBT_PARTS = {
    "lending": ("bad_debt_usd",),
    "cdp": ("bad_debt_usd", "undercollateralised_debt_usd"),
    "perps": ("bad_debt_usd",),
    "options": ("bad_debt_usd", "debt_usd"),
}


@contextlib.contextmanager
def at_reference_prices(model) -> Iterator[None]:
    """Every oracle of the model publishes its asset's current reference price until the block exits."""
    assets = {o.id: o.asset for o in model.scenario.oracles}
    saved = {oid: o.price for oid, o in model.oracles.items()}
    try:
        for oid, o in model.oracles.items():
            o.price = float(model.market.price(assets[oid]))
        yield
    finally:
        for oid, o in model.oracles.items():
            o.price = saved[oid]


def solvency(model) -> dict[str, dict[str, float]]:
    """Per protocol at the prices protocols currently see: {"bad_debt_usd", "accounts_unhealthy"}."""
    out = {}
    for pid, proto in model.protocols.items():
        kind = model.protocol_specs[pid].kind
        m = proto.metrics()
        out[pid] = {
            "bad_debt_usd": float(sum(m.get(k, 0.0) for k in BAD_DEBT_PARTS.get(kind, ("bad_debt_usd",)))),
            "accounts_unhealthy": int(m.get("accounts_unhealthy", 0)),
        }
    return out


def solvency_views(model) -> dict:
    """The oracle view and the reference view of every protocol, and their totals."""
    oracle = solvency(model)
    with at_reference_prices(model):
        reference = solvency(model)
    after = solvency(model)
    for pid, v in oracle.items():  # restoring the oracles must restore every figure (up to cache rounding)
        w = after[pid]
        if w["accounts_unhealthy"] != v["accounts_unhealthy"] or not math.isclose(
            w["bad_debt_usd"], v["bad_debt_usd"], rel_tol=1e-9, abs_tol=1e-6
        ):
            raise RuntimeError(f"mark to reference: {pid}'s oracle view changed after restoring prices: {v} -> {w}")
    return {
        "bad_debt_usd": sum(v["bad_debt_usd"] for v in reference.values()),
        "accounts_unhealthy": sum(v["accounts_unhealthy"] for v in reference.values()),
        "oracle_bad_debt_usd": sum(v["bad_debt_usd"] for v in oracle.values()),
        "oracle_accounts_unhealthy": sum(v["accounts_unhealthy"] for v in oracle.values()),
        "protocols": {
            pid: {
                "bad_debt_usd": reference[pid]["bad_debt_usd"],
                "accounts_unhealthy": reference[pid]["accounts_unhealthy"],
                "oracle_bad_debt_usd": oracle[pid]["bad_debt_usd"],
                "oracle_accounts_unhealthy": oracle[pid]["accounts_unhealthy"],
            }
            for pid in model.protocols
        },
    }
