"""The margin regime of multi-venue accounts in a run: the coordinator, its keeper, per-block figures and
the per-run outcomes that `defistress compare` puts side by side.

The coordinator is built whenever a scenario has multi-venue accounts. Under `silo` it only measures (its
rows stay under each venue's own liquidation rules), so both regimes record the same figures: capital
required, margin shortfall, netting credit. Under `portfolio` it controls the rows (Euler EVC style) and
its keeper liquidates across venues.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from defistress.scenarios.schema_pm import MarginSpec

#: timeseries columns written each block (prefix "regime_")
COLUMNS = (
    "equity_usd",
    "im_usd",
    "mm_usd",
    "silo_im_usd",
    "silo_mm_usd",
    "pm_mm_usd",
    "netting_credit_usd",
    "contingency_usd",
    "shortfall_usd",
    "principals_unhealthy",
)


def margin_spec(scenario) -> MarginSpec:
    return scenario.margin if scenario.margin is not None else MarginSpec()


def multi_venue_specs(scenario) -> list:
    return [a for a in scenario.agents if a.kind == "multi_venue"]


def build_coordinator(model):
    """A MarginCoordinator over the venues multi-venue accounts use; None when the scenario has none."""
    pops = multi_venue_specs(model.scenario)
    if not pops:
        return None
    from defistress.protocols.coordinator import MarginCoordinator

    venue_ids: list[str] = []
    for a in pops:
        for vid in (a.lending, a.perps, a.options):
            if vid is not None and vid not in venue_ids:
                venue_ids.append(vid)
    spec = margin_spec(model.scenario)
    return MarginCoordinator(spec.coordinator_params(), {v: model.protocols[v] for v in venue_ids}, model.env)


def build_keeper(model) -> list:
    """The coordinator's liquidator, under the portfolio regime only."""
    if model.coordinator is None or margin_spec(model.scenario).regime != "portfolio":
        return []
    from defistress.agents.coordinator_keeper import CoordinatorKeeper
    from defistress.sim.engine.builders import fund

    spec = margin_spec(model.scenario)
    params = spec.keeper_params()
    fund(model, params.id, spec.keeper_capital_usd, [params.quote], spec.keeper_gas_eth)
    return [CoordinatorKeeper(model, params, model.coordinator, model.eth_price)]


def regime_figures(model) -> dict[str, float]:
    """This block's figures for the enrolled principals, by the rules of the scenario's regime (USD)."""
    coord = model.coordinator
    portfolio = margin_spec(model.scenario).regime == "portfolio"
    pm = _pm_figures(model)
    res = coord.requirements(with_pm=pm)
    if portfolio:
        shortfall = np.maximum(res.mm_usd - res.equity_usd, 0.0)
        im, mm = res.im_usd, res.mm_usd
        unhealthy = res.health < 1.0
    else:  # each venue judges its own row
        shortfall = res.silo_shortfall_usd
        unhealthy = shortfall > 0
        im, mm = res.silo_im_usd, res.silo_mm_usd
    out = {
        "equity_usd": float(res.equity_usd.sum()),
        "im_usd": float(im.sum()),
        "mm_usd": float(mm.sum()),
        "silo_im_usd": float(res.silo_im_usd.sum()),
        "silo_mm_usd": float(res.silo_mm_usd.sum()),
        "pm_mm_usd": float(res.pm_mm_usd.sum()),
        "netting_credit_usd": float(res.credit_usd.sum()),
        "contingency_usd": float(res.contingency_usd.sum()),
        "shortfall_usd": float(shortfall.sum()),
        "principals_unhealthy": int(unhealthy.sum()),
    }
    if not pm:
        out = {k: v for k, v in out.items() if k not in PM_COLUMNS}
    if getattr(model, "regime_start", None) is None:
        model.regime_start = dict(out)  # the first block's figures, portfolio-margin ones included
    return out


#: the figures that value the combined book with the portfolio-margin model (under silo: at the start only,
#: unless `margin.silo_pm_figures = "every_block"`)
PM_COLUMNS = ("pm_mm_usd", "netting_credit_usd", "contingency_usd")


def _pm_figures(model) -> bool:
    """Whether this block's figures value the combined book: always under portfolio (its rules need them), at the
    first block under silo (the summary's capital figures), every block under silo only when asked."""
    return _pm_columns(model) or getattr(model, "regime_start", None) is None


def regime_columns(model) -> dict[str, float]:
    """The block's regime figures as timeseries columns (a source of sim.metrics.Recorder); under silo the
    portfolio-margin columns are written only when `margin.silo_pm_figures = "every_block"`."""
    figs = regime_figures(model)
    if not _pm_columns(model):
        figs = {k: v for k, v in figs.items() if k not in PM_COLUMNS}
    return {f"regime_{k}": v for k, v in figs.items()}


def _pm_columns(model) -> bool:
    """Whether the portfolio-margin figures are timeseries columns (every block)."""
    spec = margin_spec(model.scenario)
    return spec.regime == "portfolio" or spec.silo_pm_figures == "every_block"


def principals_flat(model) -> int:
    """Principals with no risk position or debt left on any venue (end state)."""
    coord = model.coordinator
    flat = np.ones(len(coord.principals), dtype=bool)
    for vid, ad in coord.adaptors.items():
        flat &= np.array([r < 0 or ad.is_flat(int(r)) for r in coord.rows[vid]], dtype=bool)
    return int(flat.sum())


def principal_rows(model) -> dict[str, set[int]]:
    coord = getattr(model, "coordinator", None)
    if coord is None:
        return {}
    return {vid: set(int(r) for r in rows) for vid, rows in coord.rows.items()}


def margin_outcomes(model, ts: pd.DataFrame, events: pd.DataFrame, per_protocol: dict) -> dict | None:
    """Per-run outcomes of the regime: capital, shortfall, liquidations by venue and their order, bad debt."""
    if getattr(model, "coordinator", None) is None or "regime_im_usd" not in ts:
        return None
    spec = margin_spec(model.scenario)
    first = ts.iloc[0]
    rows = principal_rows(model)
    liq = events[events["kind"] == "liquidation"] if len(events) else events
    bad = events[events["kind"] == "bad_debt"] if len(events) else events
    by_venue: dict[str, dict[str, Any]] = {}
    first_block: dict[str, int] = {}
    for vid, rs in rows.items():
        mine = liq[(liq["source"] == vid) & liq["account"].isin(rs)] if len(liq) else liq
        written = bad[(bad["source"] == vid) & bad["account"].isin(rs)] if len(bad) else bad
        by_venue[vid] = {
            "liquidations": int(len(mine)),
            "liquidation_volume_usd": float(mine["debt_repaid_usd"].sum()) if len(mine) else 0.0,
            "liquidators": sorted(set(mine["liquidator"])) if len(mine) else [],
            "written_off_usd": float(written["amount_usd"].sum()) if len(written) else 0.0,
            "unbacked_end_usd": unbacked_usd(model, vid),
            "venue_bad_debt_usd": float(per_protocol.get(vid, {}).get("bad_debt_usd", 0.0)),
        }
        if len(mine):
            first_block[vid] = int(mine["block"].min())
    order = sorted(first_block, key=lambda v: (first_block[v], v))
    silo_im0, im0 = float(first["regime_silo_im_usd"]), float(first["regime_im_usd"])
    return {
        "regime": spec.regime,
        "principals": int(len(next(iter(rows.values()))) if rows else 0),
        "capital_posted_usd": float(first["regime_equity_usd"]),
        "capital_required_usd": im0,
        "capital_required_silo_usd": silo_im0,
        "capital_efficiency": silo_im0 / im0 if im0 > 0 else None,
        "netting_credit_start_usd": float(
            first["regime_netting_credit_usd"]
            if "regime_netting_credit_usd" in ts
            else model.regime_start["netting_credit_usd"]
        ),
        "margin_shortfall_max_usd": float(ts["regime_shortfall_usd"].max()),
        "margin_shortfall_end_usd": float(ts["regime_shortfall_usd"].iloc[-1]),
        "principals_unhealthy_max": int(ts["regime_principals_unhealthy"].max()),
        "principals_flat_end": principals_flat(model),
        "equity_end_usd": float(ts["regime_equity_usd"].iloc[-1]),
        "principal_pnl_usd": float(ts["regime_equity_usd"].iloc[-1] - first["regime_equity_usd"]),
        "liquidations": int(sum(v["liquidations"] for v in by_venue.values())),
        "liquidation_volume_usd": float(sum(v["liquidation_volume_usd"] for v in by_venue.values())),
        "liquidation_order": order,
        "first_liquidation_block": first_block,
        "by_venue": by_venue,
        "written_off_usd": float(sum(v["written_off_usd"] for v in by_venue.values())),
        "unbacked_end_usd": float(sum(v["unbacked_end_usd"] for v in by_venue.values())),
        "venue_bad_debt_usd": float(sum(v["venue_bad_debt_usd"] for v in by_venue.values())),
    }


def unbacked_usd(model, venue_id: str) -> float:
    """Negative equity of the principals' rows on one venue at the end (USD): debt the venue carries that only
    the principals' positions on other venues back (under silo it is what liquidation failed to recover)."""
    coord = model.coordinator
    r = coord.rows[venue_id]
    r = r[r >= 0]
    return float(np.maximum(-coord.adaptors[venue_id].equity_usd(r), 0.0).sum()) if r.size else 0.0
