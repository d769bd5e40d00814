"""Figures of one run: matplotlib object-oriented functions `plot_x(data, ax=None) -> Axes`.

`data` is a RunResult or its per-block timeseries DataFrame (the health and network figures take
their own inputs too: see their docstrings). No pyplot: given no `ax`, a function makes its own
`matplotlib.figure.Figure`; nothing calls `show()`. Columns are found by prefix and suffix, never by
protocol id, so new protocol kinds need no change here. The time axis is in hours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

import networkx as nx
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from defistress.sim.report.formatting import format_usd, format_usd_millions

# Okabe & Ito (2008), "Color Universal Design": eight colours told apart under common colour-vision deficiencies
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
#: cycling order for series without a role colour (yellow last: weak on white)
PALETTE = tuple(
    OKABE_ITO[c]
    for c in ("blue", "vermillion", "bluish_green", "orange", "reddish_purple", "sky_blue", "black", "yellow")
)
#: sequential map for bad debt: lightness rises monotonically, so it reads in grey and under CVD
BAD_DEBT_CMAP = "YlOrRd"
#: the bad-debt colour scale tops out at no less than this % of initial debt, so small losses look small
BAD_DEBT_SCALE_MIN_PCT = 1.0
#: y-axis room above the highest value, as a factor
HEADROOM = 1.12
PRICE_COLORS = {
    "reference": OKABE_ITO["blue"],
    "exogenous": OKABE_ITO["black"],
    "oracle": OKABE_ITO["orange"],
    "pool": OKABE_ITO["bluish_green"],
}
NODE_COLORS = {
    "agent": OKABE_ITO["reddish_purple"],
    "protocol": OKABE_ITO["vermillion"],
    "oracle": OKABE_ITO["orange"],
    "venue": OKABE_ITO["bluish_green"],
    "asset": OKABE_ITO["sky_blue"],
}
#: graph layers left to right: who acts, what is acted on, where prices come from, what is traded
NODE_LAYERS = ("agent", "protocol", "oracle", "venue", "asset")
#: edge type (sim.network.EDGE_TYPES) -> (colour, line style)
EDGE_STYLES = {
    "collateral_of": (OKABE_ITO["blue"], "solid"),
    "lends": (OKABE_ITO["sky_blue"], "solid"),
    "issues": (OKABE_ITO["sky_blue"], "dashed"),
    "priced_by": (OKABE_ITO["orange"], "dotted"),
    "sources": (OKABE_ITO["orange"], "dashed"),
    "liquidates_into": (OKABE_ITO["vermillion"], "dashdot"),
    "trades": (OKABE_ITO["bluish_green"], "solid"),
    "acts_on": (OKABE_ITO["reddish_purple"], "dotted"),
    "shared_capital": (OKABE_ITO["black"], "dashed"),
    "exposure": (OKABE_ITO["vermillion"], "solid"),
    "coordinated": (OKABE_ITO["reddish_purple"], "solid"),
}
FIGSIZE = (8.0, 4.0)  # inches: one figure per report row
NETWORK_FIGSIZE = (9.0, 5.5)
PROTOCOL_NODE_SIZE = (500.0, 2500.0)  # points², smallest and largest protocol (by initial debt)
NODE_SIZE = 300.0
GRID_COLUMNS = 2  # small multiples per row
GRID_ROW_HEIGHT = 3.2  # inches per row of small multiples
#: a price series is matched to the asset whose median reference price is within this factor of its own
PRICE_MATCH_FACTOR = 2.0
#: an asset whose reference price stays within this fraction of $1 is treated as a stablecoin
STABLE_BAND = 0.05
#: the health-factor axis ends at this quantile of all accounts (the tail of very safe accounts is long)
HEALTH_XMAX_QUANTILE = 0.99
#: labelled health factors on the log axis (plain numbers read better than powers of ten here)
HEALTH_TICKS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)
SECONDS_PER_HOUR = 3600.0
#: window of the liquidation-intensity figure, seconds (ten minutes: a rate a reader compares across runs)
RATE_WINDOW_S = 600.0
#: end values across protocols spanning more than this factor get a log (symlog) money axis
LOG_RANGE = 100.0


# --- inputs --------------------------------------------------------------------------------------
def _timeseries(data) -> pd.DataFrame:
    ts = getattr(data, "timeseries", data)
    if not isinstance(ts, pd.DataFrame):
        raise TypeError(f"expected a RunResult or a timeseries DataFrame, got {type(data).__name__}")
    return ts


def _new_ax(ax: Axes | None, figsize=FIGSIZE) -> Axes:
    if ax is not None:
        return ax
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def hours(ts: pd.DataFrame) -> np.ndarray:
    """Simulated time of each block in hours (block number if the table has no time column)."""
    if "time_s" in ts:
        return ts["time_s"].to_numpy(dtype=float) / SECONDS_PER_HOUR
    return ts["block"].to_numpy(dtype=float)


def _time_axis(ax: Axes, ts: pd.DataFrame) -> None:
    ax.set_xlabel("time (h)" if "time_s" in ts else "block")
    ax.grid(True, alpha=0.3)


def _columns(ts: pd.DataFrame, prefix: str, suffix: str) -> dict[str, str]:
    """{middle part: column} for columns named prefix + middle + suffix."""
    pat = re.compile(rf"^{re.escape(prefix)}(.+){re.escape(suffix)}$")
    return {m.group(1): c for c in ts.columns if (m := pat.match(str(c)))}


def symbols(ts: pd.DataFrame) -> list[str]:
    """Market assets, from the `ref_{SYM}_usd` columns."""
    return list(_columns(ts, "ref_", "_usd"))


def protocol_ids(data) -> list[str]:
    """Protocols of a run: the metrics' keys when given a RunResult, else every id with both
    `{pid}_liquidations` and `{pid}_liquidation_volume_usd` columns (sim.metrics writes both)."""
    ts = _timeseries(data)
    per = (getattr(data, "metrics", None) or {}).get("protocols")
    if per:
        return [p for p in per if f"{p}_liquidations" in ts]
    vol = _columns(ts, "", "_liquidation_volume_usd")
    return [p for p in vol if f"{p}_liquidations" in ts]


def risky_symbols(data) -> list[str]:
    """Assets that are not stablecoins (the graph's `stable` flag if known, else price near $1)."""
    ts = _timeseries(data)
    g = getattr(data, "graph", None)
    out = []
    for s in symbols(ts):
        node = f"asset:{s}"
        if g is not None and node in g and "stable" in g.nodes[node]:
            stable = bool(g.nodes[node]["stable"])
        else:
            stable = bool(np.all(np.abs(ts[f"ref_{s}_usd"].to_numpy(dtype=float) - 1.0) < STABLE_BAND))
        if not stable:
            out.append(s)
    return out


def _drawdown(x: np.ndarray) -> float:
    return float(max(0.0, 1.0 - np.min(x) / x[0])) if len(x) and x[0] > 0 else 0.0


def shocked_asset(data) -> str | None:
    """The asset the run is about: the metrics' `shocked_asset`, else the largest exogenous fall."""
    ts = _timeseries(data)
    main = (getattr(data, "metrics", None) or {}).get("shocked_asset")
    if main and f"ref_{main}_usd" in ts:
        return main
    risky = risky_symbols(data) or symbols(ts)
    if not risky:
        return None

    def fall(s: str) -> float:
        col = f"exog_{s}_usd" if f"exog_{s}_usd" in ts else f"ref_{s}_usd"
        return _drawdown(ts[col].to_numpy(dtype=float))

    return max(risky, key=fall)


def _graph_candidates(g, node: str) -> list[str] | None:
    """Assets an oracle or venue node may price, read from the graph (None if unknown)."""
    if g is None or node not in g:
        return None
    out = set()
    for _, v, k in g.out_edges(node, keys=True):
        if k == "trades" and v.startswith("asset:"):
            out.add(v.split(":", 1)[1])
        elif k == "sources":
            out |= {v.split(":", 1)[1]} if v.startswith("asset:") else set(_graph_candidates(g, v) or [])
    return sorted(out)


def price_columns(data, asset: str) -> list[tuple[str, str, str]]:
    """(role, label, column) of every price series of one asset: exogenous, reference, oracles, pools.

    An oracle or pool is matched to the asset (among those the graph links it to, if known) whose
    median reference price is nearest its own, within PRICE_MATCH_FACTOR.
    """
    ts = _timeseries(data)
    g = getattr(data, "graph", None)
    out = [
        (r, r, f"{p}_{asset}_usd") for r, p in (("exogenous", "exog"), ("reference", "ref")) if f"{p}_{asset}_usd" in ts
    ]
    ref = {s: float(np.nanmedian(ts[f"ref_{s}_usd"])) for s in symbols(ts)}
    for role, prefix, suffix, kind in (("oracle", "oracle_", "_usd", "oracle"), ("pool", "pool_", "_price", "venue")):
        for name, col in _columns(ts, prefix, suffix).items():
            cands = _graph_candidates(g, f"{kind}:{name}") or list(ref)
            level = float(np.nanmedian(ts[col]))
            dist = {s: abs(np.log(level / ref[s])) for s in cands if s in ref and ref[s] > 0 and level > 0}
            if dist and min(dist.values()) < np.log(PRICE_MATCH_FACTOR) and min(dist, key=lambda s: dist[s]) == asset:
                out.append((role, f"{role} {name}", col))
    return out


# --- formatting ----------------------------------------------------------------------------------
def money_axis(ax: Axes, values: list[float] | None = None) -> None:
    """A USD axis in $M; a symmetric log scale when the `values` shown (e.g. end values of several protocols) span
    more than LOG_RANGE, so a small protocol's line is not flattened against a large one's."""
    nz = [abs(v) for v in (values or []) if v]
    if len(nz) > 1 and max(nz) / min(nz) > LOG_RANGE:
        ax.set_yscale("symlog", linthresh=max(min(nz) / 2, 1.0))
    ax.yaxis.set_major_formatter(FuncFormatter(format_usd_millions))


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=11)


# --- figures -------------------------------------------------------------------------------------
def plot_price_paths(data, asset: str | None = None, ax: Axes | None = None, legend: bool = True) -> Axes:
    """One asset's exogenous path, reference price (with liquidation impact), oracle and pool prices."""
    ax = _new_ax(ax)
    ts = _timeseries(data)
    asset = asset or shocked_asset(data)
    x = hours(ts)
    if asset is None:
        _note(ax, "no price series")
        return ax
    styles = ("-", "--", "-.", ":")
    seen: dict[str, int] = {}
    for role, label, col in price_columns(data, asset):
        i = seen[role] = seen.get(role, -1) + 1
        kw: dict[str, Any] = {"color": PRICE_COLORS[role], "label": label}
        if role == "exogenous":
            ax.plot(x, ts[col], lw=1.0, ls="--", **kw)
        elif role == "reference":
            ax.plot(x, ts[col], lw=1.8, **kw)
        elif role == "oracle":
            ax.step(x, ts[col], where="post", lw=1.2, ls=styles[i % len(styles)], **kw)
        else:
            ax.plot(x, ts[col], lw=1.0, alpha=0.85, ls=styles[i % len(styles)], **kw)
    ax.set_title(f"{asset} price")
    ax.set_ylabel("USD")
    _time_axis(ax, ts)
    if legend:
        ax.legend(fontsize=8, loc="best")
    return ax


def plot_price_grid(data, fig: Figure | None = None) -> list[Axes]:
    """Small multiples: the price paths of every risky asset, one panel each, sharing the time axis."""
    ts = _timeseries(data)
    assets = risky_symbols(data) or symbols(ts)
    n = max(len(assets), 1)
    ncols = min(n, GRID_COLUMNS)
    nrows = -(-n // ncols)
    fig = fig or Figure(figsize=grid_figsize(n), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, squeeze=False)).ravel().tolist()
    for i, ax in enumerate(axes):
        if i < len(assets):
            plot_price_paths(data, assets[i], ax=ax, legend=(i == 0))
        else:
            ax.set_axis_off()
    if not assets:
        _note(axes[0], "no price series")
    return axes[:n]


def grid_figsize(n_panels: int) -> tuple[float, float]:
    """Figure size (inches) for `plot_price_grid` with n panels."""
    rows = -(-max(n_panels, 1) // GRID_COLUMNS)
    return (FIGSIZE[0], GRID_ROW_HEIGHT * rows + 0.4)


def liquidation_rate(ts: pd.DataFrame, column: str, window_s: float = RATE_WINDOW_S) -> tuple[np.ndarray, np.ndarray]:
    """(window start in hours, sum of `column` per window) over consecutive windows of `window_s` seconds from the
    first block; the last window may be shorter. Without a time column, windows of blocks at 12 s each."""
    t = ts["time_s"].to_numpy(dtype=float) if "time_s" in ts else ts["block"].to_numpy(dtype=float) * 12.0
    if not len(t):
        return np.zeros(0), np.zeros(0)
    k = np.floor((t - t[0]) / window_s).astype(np.int64)
    sums = np.bincount(k, weights=ts[column].to_numpy(dtype=float), minlength=int(k.max()) + 1)
    return (t[0] + np.arange(sums.size) * window_s) / SECONDS_PER_HOUR, sums


def plot_liquidations(data, ax: Axes | None = None, window_s: float = RATE_WINDOW_S) -> Axes:
    """Liquidations per 10 minutes (bars stacked by protocol, one bar per window rather than a wall of per-block
    bars) and the cumulative debt they repaid in $M on a twin axis."""
    ax = _new_ax(ax)
    ts = _timeseries(data)
    x = hours(ts)
    width = window_s / SECONDS_PER_HOUR
    starts = liquidation_rate(ts, "block", window_s)[0] if len(ts) else np.zeros(0)
    bottom = np.zeros(len(starts))
    cum = np.zeros(len(ts))
    handles = []
    for i, pid in enumerate(protocol_ids(data)):
        _, n = liquidation_rate(ts, f"{pid}_liquidations", window_s)
        m = n > 0
        color = PALETTE[i % len(PALETTE)]
        handles.append(
            ax.bar(
                starts[m],
                n[m],
                width=width,
                bottom=bottom[m],
                color=color,
                edgecolor="white",
                linewidth=0.4,
                align="edge",
                label=f"{pid} liquidations",
            )
        )
        bottom += n
        cum += np.cumsum(ts[f"{pid}_liquidation_volume_usd"].to_numpy(dtype=float))
    minutes = window_s / 60.0
    ax.set_ylabel(f"liquidations per {minutes:g} min")
    ax.set_ylim(0, max(1.0, float(bottom.max(initial=0.0))) * HEADROOM)
    ax.set_xlim(x[0] if len(x) else 0, max(x[-1] if len(x) else 1, (starts[-1] + width) if len(starts) else 1))
    tw = ax.twinx()
    (line,) = tw.plot(x, cum, color=OKABE_ITO["black"], lw=1.4, label="cumulative debt repaid (right)")
    tw.set_ylabel("debt repaid by liquidations, cumulative ($M)")
    tw.yaxis.set_major_formatter(FuncFormatter(format_usd_millions))
    tw.set_ylim(0, max(1.0, float(cum.max(initial=0.0))) * HEADROOM)
    if not bottom.any():
        _note(ax, "no liquidations")
    ax.set_title(f"Liquidations per {minutes:g} minutes")
    _time_axis(ax, ts)
    ax.legend(handles=handles + [line], fontsize=8, loc="upper left")
    return ax


def _health_dists(data) -> dict[str, dict[str, np.ndarray]]:
    """{"before"|"after": {pid: finite health factors}} from a RunResult, such a mapping, or the
    long table of sim.runs.health_frame (columns protocol, when, health)."""
    if isinstance(data, pd.DataFrame):
        return {
            w: {
                str(p): g["health"].to_numpy(dtype=float)
                for p, g in data[data["when"] == w].groupby("protocol", sort=False)
            }
            for w in ("before", "after")
        }
    if isinstance(data, Mapping):
        return {w: dict(data.get(w, {})) for w in ("before", "after")}
    return {
        "before": dict(getattr(data, "health_before", {}) or {}),
        "after": dict(getattr(data, "health_after", {}) or {}),
    }


def plot_health(data, ax: Axes | None = None) -> Axes:
    """ECDF of account health factors per protocol, before (dashed) and after (solid), log x, HF = 1 marked.

    `data`: a RunResult, {"before": {pid: array}, "after": {...}}, or the health.parquet table.
    """
    ax = _new_ax(ax)
    dists = _health_dists(data)
    pids = list(dict.fromkeys([*dists["before"], *dists["after"]]))
    lo, hi = [1.0], [1.0]
    for i, pid in enumerate(pids):
        color = PALETTE[i % len(PALETTE)]
        for when, ls in (("before", "--"), ("after", "-")):
            h = np.asarray(dists[when].get(pid, []), dtype=float)
            h = h[np.isfinite(h) & (h > 0)]
            if not len(h):
                continue
            below = float(np.mean(h < 1.0))
            ax.ecdf(h, color=color, ls=ls, lw=1.5, label=f"{pid} {when} (n={len(h):,}, {below:.1%} below 1)")
            lo.append(float(h.min()))
            hi.append(float(np.quantile(h, HEALTH_XMAX_QUANTILE)))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(HEALTH_TICKS))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axvline(1.0, color=OKABE_ITO["black"], ls=":", lw=1.2, label="HF = 1 (liquidatable below)")
    ax.set_xlim(min(lo) * 0.95, max(hi) * 1.05)
    ax.set_ylim(0, 1.02)
    if len(lo) == 1:
        _note(ax, "no health factors")
    ax.set_xlabel("health factor (log scale)")
    ax.set_ylabel("share of accounts with HF ≤ x")
    ax.set_title("Health factors before and after")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_bad_debt(data, ax: Axes | None = None) -> Axes:
    """Bad debt (USD) per protocol over time, labelled with its end value and % of initial debt."""
    ax = _new_ax(ax)
    ts = _timeseries(data)
    x = hours(ts)
    drawn = 0
    end_total = 0.0
    ends: list[float] = []
    for i, pid in enumerate(protocol_ids(data)):
        col = f"{pid}_bad_debt_usd"
        if col not in ts:
            continue
        y = ts[col].to_numpy(dtype=float)
        debt0 = float(ts[f"{pid}_debt_usd"].iloc[0]) if f"{pid}_debt_usd" in ts and len(ts) else 0.0
        pct = f", {100 * y[-1] / debt0:.2f}% of initial debt" if debt0 > 0 and len(y) else ""
        ax.step(
            x,
            y,
            where="post",
            color=PALETTE[i % len(PALETTE)],
            lw=1.8,
            label=f"{pid}: {format_usd(y[-1] if len(y) else 0.0)}{pct}",
        )
        drawn += 1
        end_total += float(y[-1]) if len(y) else 0.0
        ends.append(float(y.max()) if len(y) else 0.0)
    money_axis(ax, ends)
    ax.set_ylabel("bad debt ($M" + (", log scale)" if ax.get_yscale() == "symlog" else ")"))
    ax.set_title("Bad debt")
    _time_axis(ax, ts)
    if not drawn:
        _note(ax, "no protocol reports bad debt")
    else:
        if end_total == 0:
            _note(ax, "no bad debt")
            ax.set_ylim(0, 1)
        ax.legend(fontsize=8, loc="upper left")
    return ax


def plot_gas(data, ax: Axes | None = None) -> Axes:
    """Base fee (gwei) per block; gas used per block, all and by simulated agents, on a twin axis."""
    ax = _new_ax(ax)
    ts = _timeseries(data)
    x = hours(ts)
    (fee,) = ax.plot(x, ts["base_fee_gwei"], color=OKABE_ITO["blue"], lw=1.6, label="base fee (left)")
    ax.set_ylabel("base fee (gwei)")
    ax.set_ylim(0, max(1.0, float(ts["base_fee_gwei"].max())) * HEADROOM)
    tw = ax.twinx()
    lines = [fee]
    for col, color, label in (
        ("gas_used", OKABE_ITO["bluish_green"], "gas used per block (right)"),
        ("agent_gas", OKABE_ITO["vermillion"], "of which agents (right)"),
    ):
        if col in ts:
            lines += tw.plot(x, ts[col].to_numpy(dtype=float) / 1e6, color=color, lw=0.7, alpha=0.6, label=label)
    tw.set_ylabel("gas per block (Mgas)")
    tw.set_ylim(0, max(1.0, float(ts["gas_used"].max()) / 1e6 if "gas_used" in ts else 1.0) * HEADROOM)
    ax.set_zorder(tw.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_title("Gas")
    _time_axis(ax, ts)
    ax.legend(handles=lines, fontsize=8, loc="upper left")
    return ax


def plot_liquidator_pnl(data, ax: Axes | None = None) -> Axes:
    """Mark-to-market PnL (USD) of liquidators and keepers together, gains green and losses vermillion."""
    ax = _new_ax(ax)
    ts = _timeseries(data)
    x = hours(ts)
    if "liquidator_pnl_usd" not in ts:
        _note(ax, "no liquidator PnL recorded")
        return ax
    y = ts["liquidator_pnl_usd"].to_numpy(dtype=float)
    ax.plot(x, y, color=OKABE_ITO["black"], lw=1.4, label="liquidator PnL")
    ax.fill_between(x, y, 0, where=y >= 0, color=OKABE_ITO["bluish_green"], alpha=0.3, interpolate=True, label="gain")
    ax.fill_between(x, y, 0, where=y < 0, color=OKABE_ITO["vermillion"], alpha=0.3, interpolate=True, label="loss")
    ax.axhline(0.0, color="0.5", lw=0.8)
    money_axis(ax)
    ax.set_ylabel("PnL at reference prices ($M)")
    ax.set_title("Liquidator PnL")
    _time_axis(ax, ts)
    ax.legend(fontsize=8, loc="upper left")
    return ax


def _protocol_sizes_and_bad_debt(data, nodes: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Initial debt (else collateral) in USD and bad debt in % of initial debt, per protocol node."""
    ts = getattr(data, "timeseries", None)
    per = (getattr(data, "metrics", None) or {}).get("protocols", {})
    size, bad = {}, {}
    for n in nodes:
        pid = n.split(":", 1)[1]
        v = 0.0
        if ts is not None and len(ts):
            for col in (f"{pid}_debt_usd", f"{pid}_collateral_usd"):
                if col in ts and ts[col].iloc[0] > 0:
                    v = float(ts[col].iloc[0])
                    break
        size[n] = v
        bad[n] = float(per.get(pid, {}).get("bad_debt_pct", 0.0) or 0.0)
    return size, bad


def plot_network(data, ax: Axes | None = None) -> Axes:
    """The scenario graph in layers (agents, protocols, oracles, venues, assets), one style per edge type;
    protocol nodes sized by initial debt and, if any has bad debt, coloured by bad debt %.

    `data`: a RunResult (sizes and colours from its timeseries and metrics) or a bare networkx graph.
    """
    ax = _new_ax(ax, NETWORK_FIGSIZE)
    # the scenario graph is a MultiDiGraph (sim.engine.network.build_graph)
    g = cast("nx.MultiDiGraph | None", data if isinstance(data, nx.Graph) else getattr(data, "graph", None))
    if g is None or not len(g):
        _note(ax, "no network graph")
        ax.set_axis_off()
        return ax
    types = {n: d.get("type", "other") for n, d in g.nodes(data=True)}
    layer_of = {t: i for i, t in enumerate(NODE_LAYERS)}
    h: nx.DiGraph = nx.DiGraph()
    for n, t in types.items():
        h.add_node(n, layer=layer_of.get(t, len(NODE_LAYERS)))
    h.add_edges_from((u, v) for u, v in g.edges())
    pos = nx.multipartite_layout(h, subset_key="layer")
    protos = [n for n, t in types.items() if t == "protocol"]
    debt, bad = _protocol_sizes_and_bad_debt(data, protos)
    vmax = max(debt.values(), default=0.0)
    smin, smax = PROTOCOL_NODE_SIZE
    sizes = {
        n: (
            smin + (smax - smin) * np.sqrt(debt[n] / vmax)
            if n in debt and vmax > 0
            else smin
            if n in debt
            else NODE_SIZE
        )
        for n in h
    }
    # edges first (under the nodes); opposite edges on one pair bend to opposite sides (arc3 rad)
    nodelist = list(h)
    present = []
    for key in dict.fromkeys(k for _, _, k in g.edges(keys=True)):
        color, ls = EDGE_STYLES.get(key, (OKABE_ITO["black"], "solid"))
        el = [(u, v) for u, v, k in g.edges(keys=True) if k == key]
        nx.draw_networkx_edges(
            h,
            pos,
            edgelist=el,
            ax=ax,
            edge_color=color,
            style=ls,
            width=1.3,
            alpha=0.85,
            arrows=True,
            arrowstyle="-|>",
            arrowsize=11,
            connectionstyle="arc3,rad=0.12",
            nodelist=nodelist,
            node_size=[sizes[n] for n in nodelist],
            hide_ticks=False,
        )
        present.append(Line2D([], [], color=color, ls=ls, lw=1.5, label=key))
    cmap, norm = colormaps[BAD_DEBT_CMAP], Normalize(0.0, max(max(bad.values(), default=0.0), BAD_DEBT_SCALE_MIN_PCT))
    any_bad = any(v > 0 for v in bad.values())
    node_handles = []
    for t in dict.fromkeys(types.values()):
        nl = [n for n in h if types[n] == t]
        color = NODE_COLORS.get(t, "0.6")
        fc = [cmap(norm(bad[n])) for n in nl] if (t == "protocol" and any_bad) else color
        nx.draw_networkx_nodes(
            h,
            pos,
            nodelist=nl,
            ax=ax,
            node_size=[sizes[n] for n in nl],
            node_color=fc,
            edgecolors=OKABE_ITO["black"],
            linewidths=0.8,
            hide_ticks=False,
        )
        node_handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                ms=9,
                markerfacecolor=color,
                markeredgecolor=OKABE_ITO["black"],
                label=f"{t} (fill: bad debt)" if t == "protocol" and any_bad else t,
            )
        )
    for n in h:  # label just below its node: offset by the node's radius in points
        ax.annotate(
            n.split(":", 1)[-1],
            (float(pos[n][0]), float(pos[n][1])),
            xytext=(0, -np.sqrt(sizes[n]) / 2 - 2),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=8,
        )
    if any_bad:
        cb = ax.figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.6, pad=0.01)
        cb.set_label("protocol bad debt (% of initial debt)")
    ax.legend(
        handles=node_handles + present,
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        title="nodes / edges",
        title_fontsize=8,
        frameon=False,
    )
    ax.set_title(f"Network of {g.graph.get('name', 'the scenario')} (protocol size: initial debt)")
    ax.margins(0.12)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    return ax
