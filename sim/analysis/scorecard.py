"""Scorecard figures: the vocabulary of scenarios/schema_scorecard.py computed for one run from its event log
and timeseries, per protocol, per collateral asset and in total, the same way for every protocol kind.

A per-asset figure is per collateral asset, except the debt figures (debt liquidated, debt repaid, auction tab),
which are per debt asset: the asset repaid (a CDP's stablecoin).

Events read: `Liquidated` (lending, perps, options portfolio liquidations, crvUSD hard liquidations),
`AuctionKicked` and `AuctionSettled` (CDP flip/clip auctions; options-venue auctions count as auctions).
A CDP liquidation is its kick: the lot is valued at the CDP's oracle price in the kick's block, its debt is
the auction's due (tab / chop, Maker dss dog.sol/cat.sol: tab = due x chop) and what the auction raises
covers the due first (dss vow: the Vow's sin is cut before surplus is booked).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd

from defistress.scenarios.schema_scorecard import METRICS, scorecard_key

#: figures summed over events or protocols (the rest: zero-bid share, lowest oracle price, peak base fee)
_SUMMED = [m for m, d in METRICS.items() if d.combine == "sum"]


def _blank() -> dict[str, float]:
    return {m: 0.0 for m in _SUMMED}


def scorecard_metrics(model: Any, ts: pd.DataFrame, events: pd.DataFrame) -> dict:
    """{"total": {metric: value}, "by_asset": {asset: {...}}, "protocols": {pid: {..., "by_asset": {...}}}}.

    A metric a protocol kind does not have (zero-bid share without auctions) is None, not 0."""
    per: dict[str, dict[str, float]] = {pid: _blank() for pid in model.protocols}
    per_asset: dict[str, dict[str, dict[str, float]]] = {pid: defaultdict(_blank) for pid in model.protocols}
    settled_value: dict[str, dict[str, float]] = {pid: defaultdict(float) for pid in model.protocols}
    has_auctions = {pid: False for pid in model.protocols}
    if len(events):
        _liquidations(events, per, per_asset)
        _auctions(model, ts, events, per, per_asset, settled_value, has_auctions)
    for pid in model.protocols:
        col = f"{pid}_bad_debt_usd"
        per[pid]["bad_debt_usd"] = float(ts[col].iloc[-1]) if col in ts and len(ts) else 0.0
    out_protocols: dict[str, dict] = {}
    for pid in model.protocols:
        row: dict[str, Any] = dict(per[pid])
        row["zero_bid_share"] = _share(
            row["zero_bid_collateral_usd"], sum(settled_value[pid].values()), has_auctions[pid]
        )
        assets: dict[str, dict] = {}
        for asset, vals in per_asset[pid].items():
            a: dict[str, Any] = dict(vals)
            a.pop("bad_debt_usd", None)
            if asset in settled_value[pid] or a["auctions"]:
                a["zero_bid_share"] = _share(a["zero_bid_collateral_usd"], settled_value[pid][asset], True)
            assets[asset] = a
        for asset, low in _lowest_oracle(model, ts, pid).items():
            assets.setdefault(asset, {})["lowest_oracle_price_usd"] = low
        row["by_asset"] = assets
        out_protocols[pid] = row
    total: dict[str, Any] = {m: float(sum(per[p][m] for p in per)) for m in _SUMMED}
    any_auctions = any(has_auctions.values())
    total["zero_bid_share"] = _share(
        total["zero_bid_collateral_usd"], sum(sum(v.values()) for v in settled_value.values()), any_auctions
    )
    total["peak_base_fee_gwei"] = float(ts["base_fee_gwei"].max()) if len(ts) else 0.0
    by_asset: dict[str, dict] = {}
    for row in out_protocols.values():
        for asset, vals in row["by_asset"].items():
            tgt = by_asset.setdefault(asset, {})
            for m, v in vals.items():
                if m in _SUMMED:
                    tgt[m] = tgt.get(m, 0.0) + v
    for asset, tgt in by_asset.items():
        value = sum(settled_value[p].get(asset, 0.0) for p in settled_value)
        if value > 0 or tgt.get("auctions"):
            tgt["zero_bid_share"] = _share(tgt.get("zero_bid_collateral_usd", 0.0), value, True)
    for asset, low in _lowest_oracle(model, ts, None).items():
        by_asset.setdefault(asset, {})["lowest_oracle_price_usd"] = low
    return {"total": total, "by_asset": by_asset, "protocols": out_protocols}


def _share(part: float, whole: float, defined: bool) -> float | None:
    if not defined:
        return None
    return float(part / whole) if whole > 0 else 0.0


#: figures kept per debt asset (the asset repaid); every other per-asset figure is per collateral asset
DEBT_METRICS = ("debt_liquidated_usd", "debt_repaid_usd", "auction_tab_usd")


def _liquidations(events: pd.DataFrame, per: dict, per_asset: dict) -> None:
    liq = events[events["kind"] == "liquidation"]
    for pid, grp in liq.groupby("source", sort=False):
        if pid not in per:
            continue
        repaid = grp["debt_repaid_usd"].astype(float)
        bonus = grp["bonus_usd"].astype(float)
        coll = [(per_asset[pid][str(a)], g.index) for a, g in grp.groupby("collateral_asset", sort=False)]
        debt = [(per_asset[pid][str(a)], g.index) for a, g in grp.groupby("debt_asset", sort=False)]
        for target, rows in [(per[pid], grp.index)] + coll:
            target["liquidation_events"] += len(rows)
            target["collateral_liquidated_sale_usd"] += float(repaid[rows].sum())
            # value taken from the borrower at the oracle: what was repaid plus the bonus (Liquidated.bonus_usd)
            target["collateral_liquidated_oracle_usd"] += float((repaid[rows] + bonus[rows]).sum())
            target["liquidation_bonus_usd"] += float(bonus[rows].sum())
        for target, rows in [(per[pid], grp.index)] + debt:
            target["debt_liquidated_usd"] += float(repaid[rows].sum())
            target["debt_repaid_usd"] += float(repaid[rows].sum())


def _auctions(
    model: Any,
    ts: pd.DataFrame,
    events: pd.DataFrame,
    per: dict,
    per_asset: dict,
    settled_value: dict,
    has_auctions: dict,
) -> None:
    kicks = events[events["kind"] == "auction_kick"]
    settled = events[events["kind"] == "auction_settled"]
    by_block = ts.set_index("block") if len(ts) else ts
    for pid, proto in model.protocols.items():
        spec = model.protocol_specs[pid]
        k = kicks[kicks["source"] == pid]
        s = settled[settled["source"] == pid]
        if spec.kind != "cdp":
            if len(k):
                has_auctions[pid] = True
                per[pid]["auctions"] += len(k)
            continue
        has_auctions[pid] = True
        asset = proto.collateral
        tgt = [per[pid], per_asset[pid][asset]]
        dtgt = [per[pid], per_asset[pid][proto.stablecoin]]
        chop = float(proto.p.chop)
        price = _stable_price(by_block, proto.stablecoin)
        if len(k):
            oracle = by_block[f"oracle_{spec.oracles[asset]}_usd"].reindex(k["block"].to_numpy()).to_numpy()
            lot = k["lot"].to_numpy(dtype=float)
            tab = k["tab"].to_numpy(dtype=float)
            p_stable = price(k["block"].to_numpy())
            for t in tgt:
                t["liquidation_events"] += len(k)
                t["auctions"] += len(k)
                t["collateral_liquidated_oracle_usd"] += float(np.nansum(lot * oracle))
            for t in dtgt:
                t["debt_liquidated_usd"] += float(np.sum(tab / chop * p_stable))
                t["auction_tab_usd"] += float(np.sum(tab * p_stable))
        if len(s):
            raised = s["raised"].to_numpy(dtype=float)
            tab = s["tab"].to_numpy(dtype=float)
            value = s["collateral_value_usd"].to_numpy(dtype=float)
            zero = s["zero_bid"].astype(bool).to_numpy()
            p_stable = price(s["block"].to_numpy())
            settled_value[pid][asset] += float(value.sum())
            for t in tgt:
                t["auctions_settled"] += len(s)
                t["collateral_liquidated_sale_usd"] += float(np.sum(raised * p_stable))
                t["zero_bid_auctions"] += int(zero.sum())
                t["zero_bid_collateral_usd"] += float(value[zero].sum())
            for t in dtgt:
                t["debt_repaid_usd"] += float(np.sum(np.minimum(raised, tab / chop) * p_stable))


def _stable_price(by_block: pd.DataFrame, token: str):
    """USD per stablecoin at given blocks: the market's reference price, or 1 when it is not a market asset."""
    col = f"ref_{token}_usd"

    def at(blocks: np.ndarray) -> np.ndarray:
        if col not in by_block:
            return np.ones(len(blocks))
        return by_block[col].reindex(blocks).fillna(1.0).to_numpy(dtype=float)

    return at


def _lowest_oracle(model: Any, ts: pd.DataFrame, pid: str | None) -> dict[str, float]:
    """Lowest published price per asset: over every oracle of the run, or over the oracles protocol `pid` reads."""
    if not len(ts):
        return {}
    oracles = {oid: o.asset for oid, o in model.oracles.items()}
    if pid is not None:
        wanted = set(model.protocol_specs[pid].oracles.values())
        oracles = {oid: a for oid, a in oracles.items() if oid in wanted}
    out: dict[str, float] = {}
    for oid, asset in oracles.items():
        col = f"oracle_{oid}_usd"
        if col in ts:
            low = float(ts[col].min())
            out[asset] = min(out.get(asset, low), low)
    return out


def flat_scorecard(sm: dict) -> dict[str, float | None]:
    """Every figure of `scorecard_metrics` under its flat key (schema_scorecard.scorecard_key)."""
    out: dict[str, float | None] = {}
    for m, v in sm.get("total", {}).items():
        out[scorecard_key(m)] = v
    for asset, vals in sm.get("by_asset", {}).items():
        for m, v in vals.items():
            out[scorecard_key(m, None, asset)] = v
    for pid, row in sm.get("protocols", {}).items():
        for m, v in row.items():
            if m != "by_asset":
                out[scorecard_key(m, pid)] = v
        for asset, vals in row.get("by_asset", {}).items():
            for m, v in vals.items():
                out[scorecard_key(m, pid, asset)] = v
    return out


def lookup(sm: dict, metric: str, protocol: str | None = None, asset: str | None = None) -> float | None:
    """One figure of `scorecard_metrics` (None when the run has no such figure)."""
    return flat_scorecard(sm).get(scorecard_key(metric, protocol, asset))
