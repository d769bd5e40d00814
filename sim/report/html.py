"""The run report: PNG figures and one self-contained `report.html` (figures embedded as data URIs, the PNG files
kept beside it), rendered from the Jinja2 template sim/report/templates/report.html.

The page opens with what was run (the parameters per protocol and asset, the liquidating agents, the oracles, the
market and the shock), then the outcome at a glance and the figures, then the details (per protocol, the accounts
still unhealthy at the end and why, contagion, margin regimes), a glossary of every metric shown, and the manifest.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from defistress.sim.report import plots
from defistress.sim.report.formatting import format_param, format_usd, format_value, kind_of, label_of, param_label
from defistress.sim.report.glossary import GLOSSARY, anchor, term
from defistress.sim.report.provenance import provenance_section
from defistress.sim.report.render import data_uri, render
from defistress.sim.report.tables import Cell, Section, Table, cell, text

FIGURE_DPI = 110  # sharp on screen, about 60-120 kB per figure
REPORT_NAME = "report.html"


# --- figures -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FigureSpec:
    """One report figure: file stem, how to draw it on a fresh Figure, its one-sentence caption, its size
    in inches (or a function of the result giving it) and whether the result can show it. The result is a
    `RunResult` (sim.experiments, which the report never imports: it only reads results), hence `Any`."""

    name: str
    title: str
    draw: Callable[[Any, Figure], object]
    caption: Callable[[Any], str]
    figsize: tuple[float, float] | Callable[[Any], tuple[float, float]] = plots.FIGSIZE
    available: Callable[[Any], bool] = lambda r: True


def _on_ax(fn: Callable[..., object]) -> Callable[[Any, Figure], object]:
    return lambda r, fig: fn(r, ax=fig.add_subplot())


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _price_caption(r: Any) -> str:
    m, asset = r.metrics, plots.shocked_asset(r)
    if asset and m.get("shocked_asset") == asset and m.get("exogenous_drawdown") is not None:
        return (
            f"{asset}: the exogenous path fell {_pct(m['exogenous_drawdown'])} at its lowest and the reference "
            f"price, which carries liquidation selling, {_pct(m.get('reference_drawdown'))}; the oracle "
            "follows in steps and the pool tracks through arbitrage."
        )
    return f"{asset}: exogenous path, reference price with liquidation impact, oracle and pool prices."


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("prices", "Shocked asset", _on_ax(plots.plot_price_paths), _price_caption),
    FigureSpec(
        "price_grid",
        "All risky assets",
        lambda r, fig: plots.plot_price_grid(r, fig=fig),
        lambda r: "Every risky asset on its own panel: exogenous (dashed), reference, oracle (steps) and pool prices.",
        figsize=lambda r: plots.grid_figsize(len(plots.risky_symbols(r))),
    ),
    FigureSpec(
        "liquidations",
        "Liquidation intensity",
        _on_ax(plots.plot_liquidations),
        lambda r: (
            f"Liquidations per 10 minutes, stacked by protocol (bars): {r.metrics.get('liquidations', 0):,} in all, "
            f"at most {r.metrics.get('peak_liquidations_per_block', 0)} in one block. The line is the debt they "
            f"repaid, {format_usd(r.metrics.get('liquidation_volume_usd', 0.0))} by the end: watch how soon after "
            "the shock the bars rise and whether they die out before the run ends."
        ),
    ),
    FigureSpec(
        "health",
        "Health factors",
        _on_ax(plots.plot_health),
        lambda r: (
            "Cumulative distribution of account health factors before (dashed) and after (solid) "
            "the run; accounts left of the dotted line at HF = 1 may be liquidated. The section "
            "'Accounts still unhealthy at the end' says why those left of it at the end were not."
        ),
        available=lambda r: any(len(v) for d in (r.health_before, r.health_after) for v in (d or {}).values()),
    ),
    FigureSpec(
        "bad_debt",
        "Bad debt",
        _on_ax(plots.plot_bad_debt),
        lambda r: (
            f"Debt left without collateral behind it, per protocol: "
            f"{format_usd(r.metrics.get('bad_debt_usd', 0.0))} at the end, "
            f"{r.metrics.get('bad_debt_pct', 0.0):.2f}% of initial debt. A step up is a write-off or a fall "
            "the collateral no longer covers; a log axis is used when protocols differ by more than 100x."
        ),
    ),
    FigureSpec(
        "gas",
        "Gas",
        _on_ax(plots.plot_gas),
        lambda r: (
            f"The base fee peaked at {r.metrics.get('peak_base_fee_gwei', 0.0):.0f} gwei; the right axis "
            "shows gas used per block by all transactions and by the simulated agents."
        ),
    ),
    FigureSpec(
        "liquidator_pnl",
        "Liquidator PnL",
        _on_ax(plots.plot_liquidator_pnl),
        lambda r: (
            f"Liquidators' and keepers' gain in ledger value at reference prices: "
            f"{format_usd(r.metrics.get('liquidator_pnl_usd', 0.0))} at the end; a dip while they hold seized "
            "collateral is inventory risk."
        ),
    ),
    FigureSpec(
        "network",
        "Network",
        _on_ax(plots.plot_network),
        lambda r: (
            "The scenario as a typed graph, from agents through protocols and oracles to venues and "
            "assets; protocol nodes are sized by initial debt and filled by bad debt when there is any."
        ),
        figsize=plots.NETWORK_FIGSIZE,
        available=lambda r: r.graph is not None,
    ),
)


def render_figures(result: Any, out_dir: str | Path) -> dict[str, Path]:
    """Draw every available report figure into out_dir as `{name}.png`; returns name -> path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for spec in FIGURES:
        if not spec.available(result):
            continue
        size = spec.figsize(result) if callable(spec.figsize) else spec.figsize
        fig = Figure(figsize=size, layout="constrained")
        spec.draw(result, fig)
        path = out_dir / f"{spec.name}.png"
        fig.savefig(path, dpi=FIGURE_DPI)
        paths[spec.name] = path
    return paths


# --- tables --------------------------------------------------------------------------------------
#: metrics of the "at a glance" table, in order (labels and definitions: sim/report/glossary.py)
HEADLINE = (
    "bad_debt_usd",
    "bad_debt_pct",
    "liquidations",
    "liquidation_volume_usd",
    "debt_liquidated_pct",
    "peak_liquidations_per_block",
    "liquidator_value_leakage_usd",
    "liquidation_slippage_usd",
    "liquidator_pnl_usd",
    "max_oracle_error",
    "exogenous_drawdown",
    "cascade_amplification",
    "peak_base_fee_gwei",
    "txs_reverted",
    "txs_dropped",
    "conservation_ok",
)
#: per-protocol metrics that are not figures of one protocol's outcome (shown elsewhere or too long for a cell)
PROTOCOL_SKIP = ("soft_liquidation_loss_by_borrower_usd",)


def _metric_label(key: str) -> Cell:
    t = term(key)
    return text(t.label, title=t.definition, href=f"#{anchor(key)}" if t.definition else "")


def headline_rows(metrics: dict) -> list[list[str]]:
    """(label, value) text of the headline metrics present in `metrics`."""
    return [[c.text for c in row] for row in headline_table(metrics).rows]


def headline_table(metrics: dict) -> Table:
    rows = []
    for key in HEADLINE:
        if key not in metrics:
            continue
        t = term(key)
        label = _metric_label(key)
        if key == "exogenous_drawdown" and metrics.get("shocked_asset"):
            label = Cell(f"{t.label} ({metrics['shocked_asset']})", label.title, label.cls, label.href)
        rows.append(
            [label, cell(metrics[key], t.kind, "warn" if key == "conservation_ok" and not metrics[key] else "")]
        )
    return Table(
        ["metric", "value"],
        rows,
        caption="The run's outcome summed over protocols. Money is in $k / $M (the exact figure on hover); each "
        "metric links to its definition in the glossary.",
    )


def protocol_rows(metrics: dict) -> tuple[list[str], list[list[str]]]:
    """One row per metric, one column per protocol (keys are the union over protocols, first seen first)."""
    t = protocol_table(metrics)
    return t.header, [[c.text for c in r] for r in t.rows]


def protocol_table(metrics: dict) -> Table:
    per = metrics.get("protocols") or {}
    keys = [k for k in dict.fromkeys(k for p in per.values() for k in p) if k not in PROTOCOL_SKIP]
    rows = [[_metric_label(k), *[cell(per[p].get(k), term(k).kind) for p in per]] for k in keys]
    return Table(
        ["metric", *per],
        rows,
        caption="Each protocol's figures side by side (one column per protocol; 'n/a' where a metric does not apply "
        "to its kind). Figures 'at the end' are the protocol's own state when the run stops.",
    )


def manifest_rows(manifest: dict) -> list[list[str]]:
    rows = []
    for k, v in manifest.items():
        if k == "data_sha256" and isinstance(v, dict):
            rows += [[f"data sha256: {f}", h] for f, h in v.items()] or [["data sha256", "(no data files)"]]
        else:
            rows.append([k, format_value(v, "plain") if not isinstance(v, str) else v])
    return rows


def scenario_description(result: Any) -> str:
    """The scenario's `run.description`: from the manifest if it holds one, else read from its TOML file."""
    for d in (result.manifest, result.metrics):
        if d.get("description"):
            return str(d["description"])
    src = Path(str(result.manifest.get("scenario_source", "")))
    if src.suffix == ".toml" and src.is_file():
        try:
            return str(tomllib.loads(src.read_text()).get("run", {}).get("description", ""))
        except (tomllib.TOMLDecodeError, OSError):
            return ""
    return ""


def scorecard_rows(metrics: dict) -> list[list[str]]:
    """Simulated vs published outcomes (replays of historic events), one row per published figure."""
    rows = []
    for r in metrics.get("scorecard") or []:
        kind = kind_of(r["metric"])
        ratio = "n/a" if r.get("ratio") is None else f"{r['ratio']:.2f}x"
        scope = " / ".join(x for x in (r.get("protocol"), r.get("asset")) if x)
        published = format_value(r["published"], kind)
        if r.get("low") is not None and r.get("high") is not None and r["low"] != r["high"]:
            published += f" ({format_value(r['low'], kind)} to {format_value(r['high'], kind)})"
        rows.append(
            [
                label_of(r["metric"]) + (f" [{scope}]" if scope else ""),
                format_value(r.get("simulated"), kind),
                published,
                ratio,
                r["source"],
            ]
        )
    return rows


def contagion_rows(metrics: dict) -> list[list[str]]:
    """The contagion block of summary.json as label/value rows."""
    c = metrics.get("contagion") or {}
    if not c:
        return []
    rows = [
        ["protocols breached", ", ".join(c.get("protocols_breached", [])) or "none"],
        ["cascade depth (hops from the shocked asset)", str(c.get("cascade_depth", 0))],
        ["DebtRank (systemic loss on exposure edges)", f"{c.get('debtrank', 0.0):.4f}"],
    ]
    for pid, t in (c.get("first_liquidation_s") or {}).items():
        rows.append([f"first liquidation: {pid}", "none" if t is None else f"{t / 3600:.2f} h"])
    for pid, d in (c.get("cascade_depth_by_protocol") or {}).items():
        rows.append([f"cascade depth: {pid}", "unreachable" if d is None else str(d)])
    for edge, usd in (c.get("loss_attribution_usd") or {}).items():
        rows.append([f"loss via {edge}", format_value(usd, "usd")])
    for link, usd in (c.get("exposure_usd") or {}).items():
        rows.append([f"exposure {link} at the end", format_value(usd, "usd")])
    for sym, dev in (c.get("peg_deviation_max") or {}).items():
        rows.append([f"max peg deviation: {sym}", f"{100 * dev:.2f}%"])
    for pid, usd in (c.get("insurance_drawdown_usd") or {}).items():
        rows.append([f"insurance fund drawdown: {pid}", format_value(usd, "usd")])
    for pid, n in (c.get("adl_count") or {}).items():
        rows.append([f"auto-deleveraging events: {pid}", str(n)])
    return rows


def margin_rows(metrics: dict) -> list[list[str]]:
    """The margin-regime block of summary.json (runs with multi-venue accounts) as label/value rows."""
    mg = metrics.get("margin") or {}
    rows = [[label_of(k), format_value(v, kind_of(k))] for k, v in mg.items() if not isinstance(v, (dict, list))]
    if mg:
        rows.append(["Liquidation order across venues", " > ".join(mg.get("liquidation_order", [])) or "none"])
    for vid, v in (mg.get("by_venue") or {}).items():
        rows.append(
            [
                f"{vid}: liquidations / written off / unbacked at the end",
                f"{v['liquidations']:,} / {format_value(v['written_off_usd'], 'usd')} / "
                f"{format_value(v['unbacked_end_usd'], 'usd')}",
            ]
        )
    return rows


def _text_table(header: list[str], rows: list[list[str]], caption: str = "", cls: str = "") -> Table:
    """Rows of ready text (numbers already formatted) as a Table; cells that look numeric are right-aligned."""

    def c(s: str) -> Cell:
        numeric = bool(s) and (s[0].isdigit() or s[0] in "$-−") and not s.startswith("--")
        return Cell(s, "", "num" if numeric else "")

    return Table(header, [[Cell(r[0]), *[c(x) for x in r[1:]]] for r in rows], caption, cls=cls)


# --- the setup: parameters, agents, oracles, market, shock ------------------------------------------
SHOCK_LABELS = {
    "at_h": "from (h)",
    "until_h": "until (h)",
    "jump": "jump",
    "drift_to": "drift over the window",
    "volatility_multiplier": "volatility ×",
    "gas_demand_multiplier": "gas demand ×",
    "depeg_to": "depeg to (USD)",
    "correlation": "correlation",
}


def scenario_of(result: Any) -> Any | None:
    """The validated scenario of a run (after overrides): the result's own, else loaded again from the manifest's
    source and overrides; None when neither is available."""
    loaded = getattr(result, "loaded", None)
    if loaded is not None:
        return loaded.scenario
    src = result.manifest.get("scenario_source")
    if not src:
        return None
    try:
        from defistress.scenarios.loader import load

        return load(str(src), list(result.manifest.get("overrides") or [])).scenario
    except Exception:  # a moved or edited scenario file: the report shows no setup rather than failing
        return None


#: columns above which a table of one row per item is shown transposed (one column per item)
MAX_COLUMNS = 6


def _dict_table(
    rows: list[dict],
    first: str,
    caption: str,
    labels: dict[str, str] | None = None,
    descriptions: dict[str, str] | None = None,
) -> Table:
    """One row per dict (`first` labels it), one column per key; transposed when wider than MAX_COLUMNS.
    `descriptions` decide how a column's numbers read (format_param: 'fraction' -> %)."""
    cols = list(dict.fromkeys(k for r in rows for k in r if k != first))
    header = [first.replace("_", " "), *[(labels or {}).get(c) or param_label(c) for c in cols]]
    d = descriptions or {}
    body = [[text(r.get(first, "")), *[_param_cell(r.get(c), d.get(c, "")) for c in cols]] for r in rows]
    t = Table(header, body, caption)
    return t.transpose() if len(cols) > MAX_COLUMNS else t


def _param_cell(v: Any, description: str = "") -> Cell:
    if v is None:
        return Cell("–", "", "muted")
    shown = format_param(v, description)
    raw = format_param(v)
    return Cell(shown, raw if raw != shown else "", "num" if _is_num(v) else "")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def setup_section(result: Any) -> Section:
    """What was run: per protocol its parameters (one row per asset or market, then protocol-wide settings), the
    liquidating agents, the oracles, the market and the scheduled shock, and the `--set` overrides."""
    from defistress.sim.report.parameters import (
        agent_rows,
        market_rows,
        oracle_rows,
        parameter_tables,
        shock_rows,
    )

    sec = Section("setup", "What was run: parameters and shock")
    s = scenario_of(result)
    overrides = list(result.manifest.get("overrides") or [])
    if s is None:
        sec.intro = "The scenario is not available to this report (its source file moved): see the manifest."
        return sec
    sec.intro = (
        "The parameters each protocol ran with (presets resolved, overrides applied), one row per asset or market; "
        "hover a column for its definition and source. "
        + (f"Overrides: {'; '.join(overrides)}." if overrides else "No overrides: the scenario file as written.")
    )
    for t in parameter_tables(s):
        if t.rows:
            assets = list(t.rows)
            body = [
                [
                    text(param_label(c), title=t.descriptions.get(c, "")),
                    *[_param_cell(t.rows[a].get(c), t.descriptions.get(c, "")) for a in assets],
                ]
                for c in t.columns
            ]
            sec.tables.append(
                Table(["parameter", *assets], body, f"{t.protocol} ({t.kind}): parameters per asset or market")
            )
        if t.settings:
            body = [
                [text(param_label(k), title=t.descriptions.get(k, "")), _param_cell(v, t.descriptions.get(k, ""))]
                for k, v in t.settings.items()
            ]
            sec.tables.append(Table(["setting", "value"], body, f"{t.protocol} ({t.kind}): protocol-wide settings"))
    agents = agent_rows(s)
    if agents:
        sec.tables.append(
            _dict_table(
                agents,
                "id",
                "Liquidators and keepers: who may liquidate, with what capital, how fast and for how little profit",
            )
        )
    sec.tables.append(
        _dict_table(
            oracle_rows(s), "id", "Oracles: where each protocol's prices come from and how often they publish (seconds)"
        )
    )
    sec.tables.append(
        _dict_table(
            market_rows(s),
            "asset",
            "Market: start price or peg, annual volatility and drift, depth (net USD sold to move the price 1%)",
        )
    )
    shocks = shock_rows(s)
    if shocks:
        rows = []
        for r in shocks:
            row: dict[str, Any] = {"asset": r.get("asset", "(gas)"), "at_h": r["at"] / plots.SECONDS_PER_HOUR}
            row["until_h"] = r["until"] / plots.SECONDS_PER_HOUR if "until" in r else None
            row.update({k: v for k, v in r.items() if k not in ("asset", "at", "until")})
            rows.append(row)
        sec.tables.append(
            _dict_table(
                rows,
                "asset",
                "The shock: each scheduled move (times in hours from the start; jump and drift are total returns; "
                "'(gas)' is extra demand for block space)",
                SHOCK_LABELS,
                {"jump": "fraction", "drift_to": "fraction"},
            )
        )
    else:
        sec.tables.append(
            Table(
                ["shock"],
                [[text("no scheduled shock: the market path (replayed or simulated) is the stress")]],
                "The shock",
            )
        )
    return sec


def reference_rows(metrics: dict) -> list[list[str]]:
    """Per protocol and in total: bad debt and unhealthy accounts at the oracles' prices and at reference prices
    (sim/engine/reference_view.py), so insolvency hidden by a stale oracle shows."""
    ref = metrics.get("mark_to_reference") or {}
    rows = []
    for pid, v in (ref.get("protocols") or {}).items():
        rows.append(
            [
                pid,
                format_value(v["oracle_bad_debt_usd"], "usd"),
                format_value(v["bad_debt_usd"], "usd"),
                format_value(v["oracle_accounts_unhealthy"], "int"),
                format_value(v["accounts_unhealthy"], "int"),
            ]
        )
    if len(rows) > 1:
        rows.append(
            [
                "all",
                format_value(ref["oracle_bad_debt_usd"], "usd"),
                format_value(ref["bad_debt_usd"], "usd"),
                format_value(ref["oracle_accounts_unhealthy"], "int"),
                format_value(ref["accounts_unhealthy"], "int"),
            ]
        )
    return rows


REFERENCE_NOTE = (
    "Protocols see only their oracles. At the end of the run, each protocol is valued twice with one definition "
    "of bad debt (written off plus debt not covered by collateral): at its oracles' prices and at the reference "
    "(market) prices. A gap means an oracle lags the market: a stale or frozen oracle hides insolvency."
)


# --- accounts still unhealthy -------------------------------------------------------------------------
#: worst unhealthy accounts listed per protocol (by debt)
WORST_ACCOUNTS = 10


def unhealthy_section(result: Any) -> Section | None:
    """Accounts below health 1 at the end, per protocol: counts and debt per cause (sim/analysis/unhealthy.py),
    then the largest such accounts with their id, health before and after, and cause."""
    from defistress.sim.analysis.unhealthy import CAUSE_TEXT

    block = result.metrics.get("unhealthy_end") or {}
    if not block:
        return None
    total = sum(v["accounts"] for v in block.values())
    sec = Section(
        "unhealthy",
        "Accounts still unhealthy at the end",
        f"{total:,} account(s) end the run below health 1 at their protocol's oracle prices. Each gets the first "
        "cause that holds, read from the end state, the event log and the liquidators' settings (the same previews "
        "the liquidators run each block), never guessed.",
    )
    for pid, v in block.items():
        rows = [
            [text(c), cell(n, "int"), cell(v["debt_by_cause_usd"].get(c, 0.0), "usd"), text(CAUSE_TEXT.get(c, ""))]
            for c, n in v["causes"].items()
        ]
        rows += [
            [text(f"  {k}"), cell(n, "int"), text(""), text("the protocol's own reason")]
            for k, n in v.get("details", {}).items()
        ]
        sec.tables.append(
            Table(
                ["cause", "accounts", "their debt", "what it means"],
                rows,
                f"{pid}: {v['accounts']:,} unhealthy account(s), {format_usd(v['debt_usd'])} of debt",
            )
        )
    u = getattr(result, "unhealthy", None)
    if u is not None and len(u):
        before = result.health_before or {}
        for pid, g in u.groupby("protocol", sort=False):
            top = g.sort_values("debt_usd", ascending=False).head(WORST_ACCOUNTS)
            hb = before.get(pid)
            rows = [
                [
                    text(f"#{int(r.account)}"),
                    cell(float(hb[int(r.account)]) if hb is not None and int(r.account) < len(hb) else None, "num"),
                    cell(float(r.health), "num"),
                    cell(float(r.debt_usd), "usd"),
                    text(r.cause),
                ]
                for r in top.itertuples()
            ]
            sec.tables.append(
                Table(
                    ["account", "health before", "health at the end", "debt", "cause"],
                    rows,
                    f"{pid}: the largest unhealthy accounts (account = row id in health.parquet, "
                    "which joins before and after)",
                )
            )
    return sec


# --- contagion --------------------------------------------------------------------------------------
DEBTRANK_NOTE = (
    "DebtRank (Battiston, Puliga, Kaushik, Tasca and Caldarelli 2012, 'DebtRank: too central to fail?', Sci. "
    "Rep. 2:541) measures the share of the network's value lost to distress that travels along exposure "
    "edges: protocol j holds protocol i's token (a CDP's stablecoin posted as collateral on a lending "
    "market), with impact weight W = min(1, holding at the start / capital of j). Each protocol starts with "
    "its own loss as distress (bad debt over capital); an issuer also passes on how far its token fell below "
    "its peg, because that is the collateral value its holders lost even when the issuer itself writes "
    "nothing off. Each distressed protocol passes its distress once; DebtRank is the value-weighted distress "
    "added beyond the start (weights: initial debt). It is 0 when no protocol holds another's token or "
    "nothing lost value."
)


def contagion_section(metrics: dict) -> Section | None:
    c = metrics.get("contagion") or {}
    if not c:
        return None
    sec = Section("contagion", "Contagion", DEBTRANK_NOTE)
    sec.tables.append(_text_table(["metric", "value"], contagion_rows(metrics), "How far losses travelled"))
    w = c.get("impact_weights") or {}
    start = c.get("exposure_start_usd") or {}
    lost = c.get("collateral_value_lost_usd") or {}
    dev = c.get("liability_devaluation") or {}
    h0, h1 = c.get("distress_initial") or {}, c.get("distress_final") or {}
    rows = []
    for link, usd in start.items():
        holder, issuer = link.split("->", 1)
        rows.append(
            [
                text(f"{holder} holds {issuer}'s token"),
                cell(usd, "usd"),
                cell(w.get(f"{issuer}->{holder}", 0.0), "num"),
                cell(dev.get(issuer, 0.0), "frac"),
                cell(lost.get(link, 0.0), "usd"),
                cell(h1.get(holder, 0.0) - h0.get(holder, 0.0), "num"),
            ]
        )
    if rows:
        sec.tables.append(
            Table(
                [
                    "exposure edge",
                    "holding at the start",
                    "impact weight W",
                    "issuer's token fell (peak)",
                    "collateral value lost",
                    "distress added to the holder",
                ],
                rows,
                "The exposure edges DebtRank walks: how much each holder had, how hard a unit of the issuer's distress "
                "hits it, and what it lost",
            )
        )
    else:
        sec.tables.append(
            Table(
                ["exposure edge"],
                [
                    [
                        text(
                            "none: no protocol of this run holds a token another "
                            "issues, so DebtRank is 0 by construction"
                        )
                    ]
                ],
            )
        )
    return sec


# --- the page ------------------------------------------------------------------------------------
def _figure(spec: FigureSpec, path: Path, result: Any) -> dict[str, str]:
    return {
        "name": spec.name,
        "title": spec.title,
        "caption": spec.caption(result),
        "src": data_uri(path),
        "file": path.name,
    }


def glossary_entries(metrics: dict) -> list[dict[str, str]]:
    """The definitions of every metric the page shows (headline, per protocol, contagion), glossary order first."""
    keys = [k for k in HEADLINE if k in metrics]
    keys += [k for p in (metrics.get("protocols") or {}).values() for k in p if k not in PROTOCOL_SKIP]
    if metrics.get("contagion"):
        keys += ["debtrank", "cascade_depth", "collateral_value_lost_usd"]
    seen = list(dict.fromkeys(keys))
    order = {k: i for i, k in enumerate(GLOSSARY)}
    seen.sort(key=lambda k: order.get(k, len(order)))
    return [
        {"key": k, "id": anchor(k), "label": term(k).label, "definition": term(k).definition}
        for k in seen
        if term(k).definition
    ]


def page_context(result: Any, figures: dict[str, Path]) -> dict[str, Any]:
    """Everything report.html shows, as plain data and Tables."""
    m, man = result.metrics, result.manifest
    name = str(m.get("scenario") or man.get("scenario") or "run")
    blocks = int(m.get("blocks", len(result.timeseries)))
    secs = float(man.get("block_seconds", 0.0)) * blocks
    meta = f"seed {m.get('seed', man.get('seed'))} · {blocks:,} blocks"
    meta += f" · {secs / plots.SECONDS_PER_HOUR:.1f} h simulated" if secs else ""
    warnings = []
    if not m.get("conservation_ok", True):
        warnings.append(f"Ledger conservation violated: {json.dumps(m.get('conservation_errors', {}))}")
    specs = {s.name: s for s in FIGURES}
    details: list[Section] = [Section("per-protocol", "Per protocol", tables=[protocol_table(m)])]
    for extra in (unhealthy_section(result),):
        if extra is not None:
            details.append(extra)
    if m.get("scorecard"):
        details.append(
            Section(
                "scorecard",
                "Compared with what really happened",
                tables=[_text_table(["metric", "simulated", "published", "ratio", "source"], scorecard_rows(m))],
            )
        )
    if reference_rows(m):
        details.append(
            Section(
                "mark-to-reference",
                "Mark to reference",
                REFERENCE_NOTE,
                tables=[
                    _text_table(
                        [
                            "protocol",
                            "bad debt at oracle prices",
                            "bad debt at reference prices",
                            "unhealthy accounts (oracle)",
                            "unhealthy accounts (reference)",
                        ],
                        reference_rows(m),
                    )
                ],
            )
        )
    prov = provenance_section(man)  # replayed data, gas path, governance actions (sim/report/provenance.py)
    if prov is not None:
        details.append(prov)
    cont = contagion_section(m)
    if cont is not None:
        details.append(cont)
    if margin_rows(m):
        details.append(
            Section(
                "margin",
                "Margin regime of the multi-venue accounts",
                tables=[_text_table(["metric", "value"], margin_rows(m))],
            )
        )
    return {
        "name": name,
        "description": scenario_description(result),
        "meta": meta,
        "warnings": warnings,
        "setup": setup_section(result),
        "headline": headline_table(m),
        "figures": [_figure(specs[n], p, result) for n, p in figures.items() if n in specs],
        "details": details,
        "glossary": glossary_entries(m),
        "manifest": _text_table(["key", "value"], manifest_rows(man), cls="mono"),
    }


def render_html(result: Any, figures: dict[str, Path]) -> str:
    """The report page as one string (figures embedded from the given PNG files)."""
    return render("report.html", **page_context(result, figures))


def write_report(result: Any, out_dir: str | Path) -> Path:
    """Write the PNG figures and `report.html` into out_dir; returns the path of the page."""
    out_dir = Path(out_dir)
    figures = render_figures(result, out_dir)
    page = out_dir / REPORT_NAME
    page.write_text(render_html(result, figures), encoding="utf-8")
    return page
