"""Per-run summary metrics, named as the industry names them (docs/architecture.md metric vocabulary).

Computed from the timeseries, the event log and end state; never from agents' private state.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: below a 5% exogenous drawdown, amplification is noise rather than a cascade: reported as None
MIN_DRAWDOWN_FOR_AMPLIFICATION = 0.05
#: one name per metric: a protocol's end-of-run figure (timeseries column `{pid}_{key}`) that repeats a summary
#: metric is not copied as `end_{key}`; key -> the summary's name for it (glossary: sim/report/glossary.py)
SAME_AS = {
    "bad_debt_usd": "bad_debt_usd",
    "accounts_unhealthy": "accounts_unhealthy_end",
    "liquidations": "liquidations",
    "liquidation_volume_usd": "liquidation_volume_usd",
    "liquidated_debt_usd": "liquidation_volume_usd",
    "auctions_settled": "auctions_settled",
    "zero_bid_auctions": "zero_bid_auctions",
}
#: end-of-run figures whose summary name says what they are (timeseries column -> summary key)
RENAMED = {"deficit_usd": "bad_debt_written_off_usd"}


def protocol_metrics(ts: pd.DataFrame, events: pd.DataFrame, pid: str, block_seconds: float) -> dict:
    """Bad debt, liquidations and timing for one protocol."""
    # what the protocol stands to lose: debt for lenders and CDPs, open interest for a perp DEX
    base = next((c for c in (f"{pid}_debt_usd", f"{pid}_open_interest_long_usd") if c in ts), None)
    debt0 = float(ts[base].iloc[0]) if base else 0.0
    bad = float(ts[f"{pid}_bad_debt_usd"].iloc[-1]) if f"{pid}_bad_debt_usd" in ts else 0.0
    n_liq = ts[f"{pid}_liquidations"]
    vol = float(ts[f"{pid}_liquidation_volume_usd"].sum())
    first = ts.loc[n_liq > 0, "block"]
    liq = events[(events["kind"] == "liquidation") & (events["source"] == pid)] if len(events) else events
    leakage = float(liq["bonus_usd"].sum()) if len(liq) else 0.0
    extra = {}
    if len(events) and "zero_bid" in events:
        settled = events[(events["kind"] == "auction_settled") & (events["source"] == pid)]
        if len(settled):
            value = settled["collateral_value_usd"].astype(float)
            zero = settled["zero_bid"].astype(bool)
            extra = {
                "auctions_settled": int(len(settled)),
                "zero_bid_auctions": int(zero.sum()),
                "zero_bid_collateral_usd": float(value[zero].sum()),
                "zero_bid_share": float(value[zero].sum() / value.sum()) if value.sum() > 0 else 0.0,
                "auction_shortfall_usd": float(settled["shortfall"].astype(float).sum()),
            }
    final = {k[len(pid) + 1 :]: float(ts[k].iloc[-1]) for k in ts.columns if k.startswith(f"{pid}_") and len(ts)}
    out = {
        "initial_debt_usd": debt0,
        "bad_debt_usd": bad,
        "bad_debt_pct": 100.0 * bad / debt0 if debt0 > 0 else 0.0,
        "liquidations": int(n_liq.sum()),
        "liquidation_volume_usd": vol,
        "debt_liquidated_pct": 100.0 * vol / debt0 if debt0 > 0 else 0.0,
        "peak_liquidations_per_block": int(n_liq.max()) if len(n_liq) else 0,
        "first_liquidation_s": float(first.iloc[0] * block_seconds) if len(first) else None,
        "liquidator_value_leakage_usd": leakage,
        "accounts_unhealthy_end": int(ts[f"{pid}_accounts_unhealthy"].iloc[-1])
        if f"{pid}_accounts_unhealthy" in ts
        else 0,
        **extra,
    }
    for k, v in final.items():  # the protocol's own end-of-run figures, each under one name
        if SAME_AS.get(k) in out or k in ("liquidations", "liquidation_volume_usd"):
            continue
        out[RENAMED.get(k, f"end_{k}")] = v
    return out


def drawdown(series: pd.Series) -> float:
    """Largest fall from the start value, as a fraction (0.38 = a 38% fall)."""
    x = series.to_numpy(dtype=float)
    return float(max(0.0, 1.0 - np.min(x) / x[0])) if len(x) else 0.0


def cascade_amplification(ts: pd.DataFrame, symbols: list[str]) -> dict[str, float | None]:
    """Per asset: drawdown of the reference price (with liquidation impact) over the exogenous drawdown."""
    out = {}
    for s in symbols:
        dd_exog = drawdown(ts[f"exog_{s}_usd"])
        dd_ref = drawdown(ts[f"ref_{s}_usd"])
        out[s] = dd_ref / dd_exog if dd_exog > MIN_DRAWDOWN_FOR_AMPLIFICATION else None
    return out


def max_oracle_error(ts: pd.DataFrame, oracle_assets: dict[str, str]) -> float:
    """Largest |oracle − reference| / reference over all oracles and blocks."""
    worst = 0.0
    for oid, sym in oracle_assets.items():
        ref = ts[f"ref_{sym}_usd"].to_numpy()
        worst = max(worst, float(np.max(np.abs(ts[f"oracle_{oid}_usd"].to_numpy() / ref - 1.0))))
    return worst


def liquidation_slippage_usd(ts: pd.DataFrame, events: pd.DataFrame, liquidators: list[str]) -> float:
    """What liquidators' sales of seized collateral lost to pool price impact and fees, at reference prices."""
    if not len(events) or "trader" not in events:
        return 0.0
    sw = events[(events["kind"] == "swap") & events["trader"].isin(liquidators)]
    if sw.empty:
        return 0.0
    ref = ts.set_index("block")
    pos = ref.index.get_indexer(pd.Index(sw["block"].to_numpy()))
    if (pos < 0).any():
        raise KeyError(f"swap in block {int(sw['block'].to_numpy()[pos < 0][0])} has no timeseries row")

    def ref_usd(tokens: pd.Series) -> np.ndarray:  # reference price at each swap's block, USD per token
        out = np.empty(len(tokens))
        tok = tokens.to_numpy()
        for t in pd.unique(tok):
            at = tok == t
            out[at] = ref[f"ref_{t}_usd"].to_numpy()[pos[at]]
        return out

    legs = sw["amount_in"].to_numpy(dtype=float) * ref_usd(sw["token_in"]) - sw["amount_out"].to_numpy(
        dtype=float
    ) * ref_usd(sw["token_out"])
    total = 0.0
    for x in legs.tolist():  # summed in event order, as before (same float rounding)
        total += x
    return float(total)


def summarize(model, ts: pd.DataFrame, events: pd.DataFrame, unhealthy: pd.DataFrame | None = None) -> dict:
    """The per-run metrics dict (without the manifest). `unhealthy`: the table of accounts still unhealthy at the
    end with their causes (sim.analysis.unhealthy.unhealthy_accounts), computed here when not given."""
    bs = model.scenario.run.block_seconds
    per = {pid: protocol_metrics(ts, events, pid, bs) for pid in model.protocols}
    risky = [a.symbol for a in model.scenario.market.assets if not a.is_stable]
    amp = cascade_amplification(ts, risky)
    dd = {s: drawdown(ts[f"exog_{s}_usd"]) for s in risky}
    main = max(dd, key=lambda s: dd[s]) if dd else None
    liquidators = model.recorder.liquidators
    errors = model.env.ledger.conservation_errors()
    out = {
        "scenario": model.scenario.run.name,
        "seed": model.seed,
        "blocks": int(len(ts)),
        "bad_debt_usd": sum(p["bad_debt_usd"] for p in per.values()),
        "bad_debt_pct": _pct(
            sum(p["bad_debt_usd"] for p in per.values()), sum(p["initial_debt_usd"] for p in per.values())
        ),
        "liquidations": sum(p["liquidations"] for p in per.values()),
        "liquidation_volume_usd": sum(p["liquidation_volume_usd"] for p in per.values()),
        "debt_liquidated_pct": _pct(
            sum(p["liquidation_volume_usd"] for p in per.values()), sum(p["initial_debt_usd"] for p in per.values())
        ),
        "peak_liquidations_per_block": max((p["peak_liquidations_per_block"] for p in per.values()), default=0),
        "liquidator_value_leakage_usd": sum(p["liquidator_value_leakage_usd"] for p in per.values()),
        "liquidation_slippage_usd": liquidation_slippage_usd(ts, events, liquidators),
        "liquidator_pnl_usd": float(ts["liquidator_pnl_usd"].iloc[-1]) if len(ts) else 0.0,
        "max_oracle_error": max_oracle_error(
            ts, {oid: o.asset for oid, o in model.oracles.items() if getattr(o, "denomination", "USD") == "USD"}
        ),
        "shocked_asset": main,
        "exogenous_drawdown": dd.get(main) if main else None,
        "reference_drawdown": drawdown(ts[f"ref_{main}_usd"]) if main else None,
        "cascade_amplification": amp.get(main) if main else None,
        "cascade_amplification_by_asset": amp,
        "peak_base_fee_gwei": float(ts["base_fee_gwei"].max()) if len(ts) else 0.0,
        "txs_reverted": int(ts["txs_reverted"].sum()) if len(ts) else 0,
        "txs_dropped": int(ts["txs_dropped"].sum()) if len(ts) else 0,
        "conservation_ok": not errors,
        "conservation_errors": {k: float(v) for k, v in errors.items()},
        "protocols": per,
    }
    soft = soft_liquidation(model, per)
    if soft is not None:
        out["soft_liquidation_loss_usd"] = soft
    from defistress.sim.analysis.unhealthy import cause_counts, unhealthy_accounts

    out["unhealthy_end"] = cause_counts(unhealthy if unhealthy is not None else unhealthy_accounts(model))
    from defistress.sim.engine.reference_view import solvency_views

    # health and bad debt at reference prices beside the oracles' view: insolvency a stale oracle hides
    out["mark_to_reference"] = solvency_views(model)
    out["contagion"] = contagion(model, ts, per, main)
    from defistress.sim.engine.regime import margin_outcomes

    margin = margin_outcomes(model, ts, events, per)
    if margin is not None:
        out["margin"] = margin
    from defistress.sim.analysis.scorecard import scorecard_metrics

    out["scorecard_metrics"] = scorecard_metrics(model, ts, events)
    out["scorecard"] = scorecard(out["scorecard_metrics"], model.scenario.run.published)
    return out


def soft_liquidation(model, per: dict) -> float | None:
    """Losses borrowers took from soft liquidation (LLAMMA markets), per borrower and in total, USD; None when
    no protocol has soft liquidation. Adds them to each such protocol's figures in `per`."""
    total = None
    for pid, proto in model.protocols.items():
        if not hasattr(proto, "losses_by_borrower"):
            continue
        losses = proto.losses_by_borrower()
        per[pid]["soft_liquidation_loss_usd"] = float(sum(losses.values()))
        per[pid]["borrowers_with_soft_liquidation_loss"] = int(sum(1 for v in losses.values() if v > 0))
        per[pid]["soft_liquidation_loss_by_borrower_usd"] = dict(sorted(losses.items(), key=lambda kv: -kv[1]))
        total = (total or 0.0) + per[pid]["soft_liquidation_loss_usd"]
    return total


def contagion(model, ts: pd.DataFrame, per: dict, shocked: str | None) -> dict:
    """Contagion metrics on the scenario graph (sim.contagion) from the run's state and figures.

    DebtRank's impact weights use the exposures at the start (what a protocol held of another's token, at the
    reference prices then): the weights the shock meets, before liquidations move them."""
    from defistress.sim.analysis.contagion import contagion_metrics, liability_devaluation

    exposure = _cross_exposures(model, model.recorder.exposures_before, model.recorder.prices_before)
    exposure_end = _cross_exposures(model, {pid: p.exposures() for pid, p in model.protocols.items()})
    capital: dict[str, float] = {}
    losses: dict[str, dict[str, float]] = {}
    for pid, proto in model.protocols.items():
        first = ts.iloc[0]
        if f"{pid}_insurance_fund_usd" in ts:
            capital[pid] = float(first[f"{pid}_insurance_fund_usd"])
        else:
            capital[pid] = float(first.get(f"{pid}_collateral_usd", 0.0) - first.get(f"{pid}_debt_usd", 0.0))
        bad = per[pid]["bad_debt_usd"]
        if hasattr(proto, "losses_by_collateral"):
            losses[pid] = proto.losses_by_collateral()
        elif bad > 0:
            losses[pid] = _split_by_exposure(proto, ts, pid, bad)
    spec = model.scenario.market
    trough = {a.symbol: float(ts[f"ref_{a.symbol}_usd"].min()) / a.peg for a in spec.assets if a.peg and len(ts)}
    issued: dict[str, list[str]] = {}
    for asset, issuer in model.issuers.items():
        issued.setdefault(issuer, []).append(asset)
    out = contagion_metrics(model.graph, per, shocked, exposure, capital, losses, liability_devaluation(issued, trough))
    out["exposure_start_usd"] = {f"{a}->{b}": v for (a, b), v in exposure.items()}
    out["exposure_usd"] = {f"{a}->{b}": v for (a, b), v in exposure_end.items()}
    out["capital_usd"] = capital
    stables = [a.symbol for a in spec.assets if a.is_stable]
    out["peg_deviation_max"] = {s: float(np.max(np.abs(ts[f"ref_{s}_usd"] / spec.asset(s).peg - 1))) for s in stables}
    for pid in model.protocols:
        if f"{pid}_insurance_drawdown_usd" in ts:
            out.setdefault("insurance_drawdown_usd", {})[pid] = float(ts[f"{pid}_insurance_drawdown_usd"].max())
            out.setdefault("adl_count", {})[pid] = int(ts[f"{pid}_adl_count"].iloc[-1])
    return out


def _cross_exposures(model, exposures: dict, prices: dict | None = None) -> dict[tuple[str, str], float]:
    """(holder, issuer) -> USD: what each protocol holds of a token another protocol of the run issues."""
    prices = model.market.as_dict() if prices is None else prices
    out: dict[tuple[str, str], float] = {}
    for pid, items in exposures.items():
        for e in items:
            issuer = model.issuers.get(e.asset)
            if e.kind == "holds" and issuer is not None and issuer != pid:
                out[(pid, issuer)] = out.get((pid, issuer), 0.0) + e.amount * prices.get(e.asset, 1.0)
    return out


def _split_by_exposure(proto, ts: pd.DataFrame, pid: str, bad: float) -> dict[str, float]:
    """A loss split across the assets a protocol is exposed to: by open interest for a perp DEX, else
    to its collateral assets."""
    cols = {
        c[len(f"{pid}_open_interest_usd_") :]: float(ts[c].iloc[0])
        for c in ts.columns
        if c.startswith(f"{pid}_open_interest_usd_")
    }
    total = sum(cols.values())
    if total > 0:
        return {a: bad * v / total for a, v in cols.items()}
    coll = getattr(proto, "collateral", None)
    return {coll if isinstance(coll, str) else "unknown": bad}


def scorecard(scorecard_metrics: dict, published) -> list[dict]:
    """Simulated vs published figures of one run, each published figure looked up in the scorecard vocabulary
    (sim.analysis.scorecard); `within_range` says whether the run lands in the published range."""
    from defistress.sim.analysis.scorecard import flat_scorecard

    flat = flat_scorecard(scorecard_metrics)
    rows = []
    for p in published:
        sim = flat.get(p.key)
        lo, hi = p.range
        rows.append(
            {
                "key": p.key,
                "metric": p.metric,
                "protocol": p.protocol,
                "asset": p.asset,
                "published": p.value,
                "low": lo,
                "high": hi,
                "simulated": sim,
                "within_range": None if sim is None else bool(lo <= sim <= hi),
                "source": p.source,
                "ratio": (sim / p.value) if (sim is not None and p.value) else None,
            }
        )
    return rows


def _pct(a: float, b: float) -> float:
    return 100.0 * a / b if b > 0 else 0.0
