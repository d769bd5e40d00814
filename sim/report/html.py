"""The run report: PNG figures and one self-contained `report.html` (figures embedded as data URIs,
the PNG files kept beside it) with headline metrics, a per-protocol table and the manifest.
"""

from __future__ import annotations

import base64
import html
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from defistress.sim.report import plots
from defistress.sim.report.provenance import provenance_html

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


def _on_ax(fn):
    return lambda r, fig: fn(r, ax=fig.add_subplot())


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _price_caption(r) -> str:
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
        "Liquidations",
        _on_ax(plots.plot_liquidations),
        lambda r: (
            f"{r.metrics.get('liquidations', 0):,} liquidations, at most "
            f"{r.metrics.get('peak_liquidations_per_block', 0)} in one block (bars), repaying "
            f"{plots.format_usd(r.metrics.get('liquidation_volume_usd', 0.0))} of debt in all (line)."
        ),
    ),
    FigureSpec(
        "health",
        "Health factors",
        _on_ax(plots.plot_health),
        lambda r: (
            "Cumulative distribution of account health factors before (dashed) and after (solid) "
            "the run; accounts left of the dotted line at HF = 1 may be liquidated."
        ),
        available=lambda r: bool(r.health_before or r.health_after),
    ),
    FigureSpec(
        "bad_debt",
        "Bad debt",
        _on_ax(plots.plot_bad_debt),
        lambda r: (
            f"Debt left without collateral behind it, per protocol: "
            f"{plots.format_usd(r.metrics.get('bad_debt_usd', 0.0))} at the end, "
            f"{r.metrics.get('bad_debt_pct', 0.0):.2f}% of initial debt."
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
            f"{plots.format_usd(r.metrics.get('liquidator_pnl_usd', 0.0))} at the end."
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


def render_figures(result, out_dir: str | Path) -> dict[str, Path]:
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
#: (metrics key, label, format kind) of the headline table
HEADLINE = (
    ("bad_debt_usd", "Bad debt", "usd"),
    ("bad_debt_pct", "Bad debt, % of initial debt", "pct"),
    ("liquidations", "Liquidations", "int"),
    ("liquidation_volume_usd", "Liquidation volume (debt repaid)", "usd"),
    ("debt_liquidated_pct", "Debt liquidated, % of initial debt", "pct"),
    ("peak_liquidations_per_block", "Peak liquidations per block", "int"),
    ("liquidator_value_leakage_usd", "Liquidator value leakage (bonus paid by borrowers)", "usd"),
    ("liquidation_slippage_usd", "Liquidation slippage (pool impact and fees)", "usd"),
    ("liquidator_pnl_usd", "Liquidator PnL", "usd"),
    ("max_oracle_error", "Max oracle error", "frac"),
    ("exogenous_drawdown", "Exogenous drawdown of the shocked asset", "frac"),
    ("cascade_amplification", "Cascade amplification (reference / exogenous drawdown)", "x"),
    ("peak_base_fee_gwei", "Peak base fee", "gwei"),
    ("txs_reverted", "Transactions reverted", "int"),
    ("txs_dropped", "Transactions dropped (block full)", "int"),
    ("conservation_ok", "Ledger conservation", "ok"),
)


#: format kind -> number to text
FORMATS: dict[str, Callable[[float], str]] = {
    "usd": lambda v: f"${v:,.0f}",
    "pct": lambda v: f"{v:.2f}%",  # the value is already in %
    "frac": lambda v: f"{100 * v:.2f}%",  # the value is a fraction
    "x": lambda v: f"{v:.3f}×",
    "gwei": lambda v: f"{v:,.1f} gwei",
    "s": lambda v: f"{v:,.0f} s ({v / plots.SECONDS_PER_HOUR:.2f} h)",
    "int": lambda v: f"{int(v):,}",
}


def format_value(v, kind: str) -> str:
    """A metric as text: usd, pct (already in %), frac (0.05 -> 5.00%), x, gwei, s, int, ok, or plain."""
    if v is None:
        return "n/a"
    if kind == "ok":
        return "ok" if v else "VIOLATED"
    if hasattr(v, "item") and not isinstance(v, (list, dict)):  # numpy scalar -> Python scalar
        v = v.item()
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)
    if isinstance(v, str) or not isinstance(v, (int, float)):
        return str(v)
    if kind in FORMATS:
        return FORMATS[kind](v)
    return f"{v:,.6g}" if isinstance(v, float) else f"{v:,}"


def kind_of(key: str) -> str:
    """Format kind from a metric's name (its unit suffix)."""
    for suffix, kind in (("_usd", "usd"), ("_pct", "pct"), ("_gwei", "gwei"), ("_s", "s")):
        if key.endswith(suffix):
            return kind
    return "plain"


def label_of(key: str) -> str:
    """'first_liquidation_s' -> 'First liquidation (s)'."""
    for suffix, unit in (("_usd", "USD"), ("_pct", "%"), ("_gwei", "gwei"), ("_s", "s")):
        if key.endswith(suffix):
            return f"{key[: -len(suffix)].replace('_', ' ').capitalize()} ({unit})"
    return key.replace("_", " ").capitalize()


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    attr = f' class="{e(cls)}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def headline_rows(metrics: dict) -> list[list[str]]:
    rows = []
    for key, label, kind in HEADLINE:
        if key in metrics:
            v = metrics[key]
            if key == "exogenous_drawdown" and metrics.get("shocked_asset"):
                label = f"{label} ({metrics['shocked_asset']})"
            rows.append([label, format_value(v, kind)])
    return rows


def protocol_rows(metrics: dict) -> tuple[list[str], list[list[str]]]:
    """One row per metric, one column per protocol (keys are the union over protocols, first seen first)."""
    per = metrics.get("protocols") or {}
    keys = list(dict.fromkeys(k for p in per.values() for k in p))
    kinds = {k: "int" if k == "liquidations" or k.startswith(("peak_", "accounts_")) else kind_of(k) for k in keys}
    rows = [[label_of(k)] + [format_value(per[p].get(k), kinds[k]) for p in per] for k in keys]
    return ["metric", *per], rows


def manifest_rows(manifest: dict) -> list[list[str]]:
    rows = []
    for k, v in manifest.items():
        if k == "data_sha256" and isinstance(v, dict):
            rows += [[f"data sha256: {f}", h] for f, h in v.items()] or [["data sha256", "(no data files)"]]
        else:
            rows.append([k, format_value(v, "plain") if not isinstance(v, str) else v])
    return rows


def scenario_description(result) -> str:
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
        rows.append([f"exposure {link}", format_value(usd, "usd")])
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


# --- the page ------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;
color:#222}
h1{margin-bottom:.2em} .desc{font-size:1.1em;color:#444;margin-top:0} .meta{color:#666}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}
td:not(:first-child){text-align:right;font-variant-numeric:tabular-nums} th{background:#f3f3f3}
table.manifest td{text-align:left;font-family:ui-monospace,monospace;font-size:.85em;word-break:break-all}
figure{margin:1.5em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;margin-top:.3em} .warn{color:#b00;font-weight:bold}
"""


def _figure_html(spec: FigureSpec, path: Path, result) -> str:
    e = html.escape
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure id="{e(spec.name)}"><img src="data:image/png;base64,{data}" alt="{e(spec.title)}">'
        f"<figcaption><b>{e(spec.title)}.</b> {e(spec.caption(result))} "
        f'<a href="{e(path.name)}">{e(path.name)}</a></figcaption></figure>'
    )


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


def render_html(result, figures: dict[str, Path]) -> str:
    """The report page as one string (figures embedded from the given PNG files)."""
    e = html.escape
    m, man = result.metrics, result.manifest
    name = str(m.get("scenario") or man.get("scenario") or "run")
    blocks = int(m.get("blocks", len(result.timeseries)))
    secs = float(man.get("block_seconds", 0.0)) * blocks
    meta = f"seed {m.get('seed', man.get('seed'))} · {blocks:,} blocks"
    meta += f" · {secs / plots.SECONDS_PER_HOUR:.1f} h simulated" if secs else ""
    warn = (
        ""
        if m.get("conservation_ok", True)
        else (f'<p class="warn">Ledger conservation violated: {e(json.dumps(m.get("conservation_errors", {})))}</p>')
    )
    header, prow = protocol_rows(m)
    specs = {s.name: s for s in FIGURES}
    figs = "".join(_figure_html(specs[n], p, result) for n, p in figures.items() if n in specs)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>defistress run report: {e(name)}</title><style>{CSS}</style></head><body>\n"
        f'<h1>Run report: {e(name)}</h1>\n<p class="desc">{e(scenario_description(result))}</p>\n'
        f'<p class="meta">{e(meta)}</p>{warn}\n'
        f"<h2>Headline</h2>\n{_table(['metric', 'value'], headline_rows(m))}\n"
        f"<h2>Per protocol</h2>\n{_table(header, prow) if prow else '<p>No protocols.</p>'}\n"
        + (
            f"<h2>Compared with what really happened</h2>\n"
            f"{_table(['metric', 'simulated', 'published', 'ratio', 'source'], scorecard_rows(m))}\n"
            if m.get("scorecard")
            else ""
        )
        + (
            f"<h2>Mark to reference</h2>\n<p>{e(REFERENCE_NOTE)}</p>\n"
            + _table(
                [
                    "protocol",
                    "bad debt at oracle prices",
                    "bad debt at reference prices",
                    "unhealthy accounts (oracle)",
                    "unhealthy accounts (reference)",
                ],
                reference_rows(m),
            )
            + "\n"
            if reference_rows(m)
            else ""
        )
        + (f"<h2>Contagion</h2>\n{_table(['metric', 'value'], contagion_rows(m))}\n" if contagion_rows(m) else "")
        + (
            f"<h2>Margin regime of the multi-venue accounts</h2>\n{_table(['metric', 'value'], margin_rows(m))}\n"
            if margin_rows(m)
            else ""
        )
        + provenance_html(man)  # replayed data, gas path, governance actions (sim/report/provenance.py)
        + f"<h2>Figures</h2>\n{figs}\n"
        f"<h2>Manifest</h2>\n{_table(['key', 'value'], manifest_rows(man), 'manifest')}\n"
        "</body></html>\n"
    )


def write_report(result, out_dir: str | Path) -> Path:
    """Write the PNG figures and `report.html` into out_dir; returns the path of the page."""
    out_dir = Path(out_dir)
    figures = render_figures(result, out_dir)
    page = out_dir / REPORT_NAME
    page.write_text(render_html(result, figures), encoding="utf-8")
    return page
