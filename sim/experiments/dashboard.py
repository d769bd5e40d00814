"""The live dashboard (`defistress dashboard`): a Mesa SolaraViz app that runs a scenario block by block.

Pick a built-in scenario, move the sliders (shock size, lending bonus and collateral factors, a CDP's liquidation
ratio, accounts, hours), press Reset to build the run, then Step or play: prices with the oracle against the
reference, liquidations per 10 minutes, bad debt and the network fill in as the blocks go. Each slider becomes a
`--set` override of the scenario (`dashboard_overrides`), so what the page runs is what `defistress run` would.

`Dashboard` is the Mesa model SolaraViz steps: it wraps a `StressModel` (whose actors are a Mesa AgentSet, stepped
in the block's deterministic phase order) and advances it `blocks_per_step` blocks per Mesa step. A bad setting
(e.g. a liquidation bonus that breaks `threshold x (1 + bonus) < 1`) leaves the page showing the scenario's keyed
error instead of a run. The charts use matplotlib (Mesa's Altair renderer crashes under pandas 3); the seed box
hands the model a string, coerced here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import mesa
import networkx as nx
import pandas as pd

from defistress.scenarios.loader import ScenarioError, load
from defistress.scenarios.registry import builtin_names
from defistress.sim.engine.model import StressModel

#: environment variables through which `defistress dashboard` passes its arguments to the served page
ENV_SCENARIO = "DEFISTRESS_DASHBOARD_SCENARIO"
ENV_ACCOUNTS = "DEFISTRESS_DASHBOARD_ACCOUNTS"
ENV_HOURS = "DEFISTRESS_DASHBOARD_HOURS"
ENV_BLOCKS_PER_STEP = "DEFISTRESS_DASHBOARD_BLOCKS_PER_STEP"
DEFAULT_SCENARIO = "eth-crash"
#: reduced sizes so that a run in the page takes seconds, not minutes
DEFAULT_ACCOUNTS = 1500
DEFAULT_HOURS = 6.0
DEFAULT_BLOCKS_PER_STEP = 25  # 5 minutes of 12-s blocks per Mesa step
#: a jump or drift scaled past this stays a fall of at most 95% (the schema requires > -1)
MAX_FALL = -0.95


# --- the scenario a page setting runs --------------------------------------------------------------------
@dataclass(frozen=True)
class Knobs:
    """The page's settings: what each slider means for the scenario."""

    shock_scale: float = 1.0  # every scheduled jump, drift and depeg distance x this
    bonus_scale: float = 1.0  # lending liquidation bonus of every asset x this
    collateral_scale: float = 1.0  # lending LTV and liquidation threshold of every asset x this
    cdp_liquidation_ratio: float = 0.0  # a CDP's liquidation ratio (0: the scenario's own)
    accounts: int = DEFAULT_ACCOUNTS  # accounts of every population (borrowers, vaults, traders...)
    hours: float = DEFAULT_HOURS  # run length (0: the scenario's own)


def dashboard_overrides(scenario: Any, k: Knobs) -> list[str]:
    """The `--set` overrides that apply `k` to a validated scenario (only to the parts it has)."""
    out: list[str] = []
    if k.hours > 0:
        out.append(f"run.duration={k.hours * 3600.0:.0f}")
    for a in scenario.agents:
        if hasattr(a, "accounts"):
            out.append(f"agents.{a.id}.accounts={int(k.accounts)}")
        elif isinstance(getattr(a, "params", None), dict) and "accounts" in a.params:
            out.append(f"agents.{a.id}.params.accounts={int(k.accounts)}")
    for i, s in enumerate(scenario.shocks):
        if s.jump is not None and k.shock_scale != 1.0:
            out.append(f"shocks.{i}.jump={max(s.jump * k.shock_scale, MAX_FALL):.6g}")
        if s.drift_to is not None and k.shock_scale != 1.0:
            out.append(f"shocks.{i}.drift_to={max(s.drift_to * k.shock_scale, MAX_FALL):.6g}")
        if s.depeg_to is not None and s.asset is not None and k.shock_scale != 1.0:
            peg = scenario.market.asset(s.asset).peg or 1.0
            out.append(f"shocks.{i}.depeg_to={max(peg - (peg - s.depeg_to) * k.shock_scale, 1e-6):.6g}")
    for p in scenario.protocols:
        if p.kind == "lending":
            for sym, a in p.assets.items():
                if k.bonus_scale != 1.0:
                    out.append(
                        f"protocols.{p.id}.assets.{sym}.liquidation_bonus={a.liquidation_bonus * k.bonus_scale:.6g}"
                    )
                if k.collateral_scale != 1.0:
                    out.append(f"protocols.{p.id}.assets.{sym}.ltv={a.ltv * k.collateral_scale:.6g}")
                    out.append(
                        f"protocols.{p.id}.assets.{sym}.liquidation_threshold="
                        f"{a.liquidation_threshold * k.collateral_scale:.6g}"
                    )
        elif p.kind == "cdp" and k.cdp_liquidation_ratio > 0:
            out.append(f"protocols.{p.id}.params.liquidation_ratio={k.cdp_liquidation_ratio:.6g}")
    return out


def coerce_seed(seed: Any) -> int:
    """The seed box hands the model a string: '7' -> 7; refuses anything but a whole number >= 0."""
    text = str(seed).strip()
    try:
        value = int(float(text)) if text else 0
    except ValueError:
        raise ValueError(f"seed {seed!r}: allowed a whole number >= 0") from None
    if value < 0 or (text and not math.isclose(float(text), value)):
        raise ValueError(f"seed {seed!r}: allowed a whole number >= 0")
    return value


# --- the model the page steps -------------------------------------------------------------------------
class Dashboard(mesa.Model):
    """A run driven from the page: builds the StressModel for the settings and advances it block by block."""

    def __init__(
        self,
        scenario: str = DEFAULT_SCENARIO,
        seed: Any = "1",
        shock_scale: float = 1.0,
        bonus_scale: float = 1.0,
        collateral_scale: float = 1.0,
        cdp_liquidation_ratio: float = 0.0,
        accounts: int = DEFAULT_ACCOUNTS,
        hours: float = DEFAULT_HOURS,
        blocks_per_step: int = DEFAULT_BLOCKS_PER_STEP,
    ):
        super().__init__()
        self.scenario_name = str(scenario)
        self.blocks_per_step = max(int(blocks_per_step), 1)
        self.error = ""
        self.overrides: list[str] = []
        self.sim: StressModel | None = None
        self.running = False
        try:
            self.seed_value = coerce_seed(seed)
            knobs = Knobs(shock_scale, bonus_scale, collateral_scale, cdp_liquidation_ratio, int(accounts), hours)
            base = load(self.scenario_name)
            self.overrides = dashboard_overrides(base.scenario, knobs)
            self.sim = StressModel(load(self.scenario_name, self.overrides), self.seed_value)
            self.running = True
        except (ScenarioError, ValueError) as exc:
            self.error = str(exc)

    @property
    def block(self) -> int:
        return 0 if self.sim is None else int(self.sim.env.clock.block)

    @property
    def n_blocks(self) -> int:
        return 0 if self.sim is None else int(self.sim.n_blocks)

    def step(self) -> None:
        """Advance the run by `blocks_per_step` blocks (fewer at the end); stop when every block has run."""
        if self.sim is None or not self.running:
            self.running = False
            return
        for _ in range(min(self.blocks_per_step, self.sim.n_blocks - self.block)):
            self.sim.step()
        if self.block >= self.sim.n_blocks:
            for h in self.sim.hooks["run_end"]:
                h(self.sim)
            self.running = False

    def live(self) -> LiveView:
        """What the charts draw now: the timeseries so far, per-protocol bad debt and the graph."""
        if self.sim is None or not self.sim.recorder.rows:
            return LiveView(pd.DataFrame(), {}, None if self.sim is None else self.sim.graph)
        ts = self.sim.recorder.frame()
        per = {}
        for pid in self.sim.protocols:
            debt0 = float(ts[f"{pid}_debt_usd"].iloc[0]) if f"{pid}_debt_usd" in ts else 0.0
            bad = float(ts[f"{pid}_bad_debt_usd"].iloc[-1]) if f"{pid}_bad_debt_usd" in ts else 0.0
            per[pid] = {"bad_debt_usd": bad, "bad_debt_pct": 100.0 * bad / debt0 if debt0 > 0 else 0.0}
        return LiveView(ts, {"protocols": per}, self.sim.graph)

    def status(self) -> str:
        """One line: where the run is and what it has done so far (or the error)."""
        if self.error:
            return f"error: {self.error}"
        v = self.live()
        if v.timeseries.empty:
            return f"{self.scenario_name}, seed {self.seed_value}: ready, {self.n_blocks:,} blocks; press Step or play"
        ts = v.timeseries
        liq = int(sum(ts[c].sum() for c in ts.columns if c.endswith("_liquidations")))
        bad = sum(p["bad_debt_usd"] for p in v.metrics["protocols"].values())
        state = "run complete" if not self.running else "running"
        return (
            f"{self.scenario_name}, seed {self.seed_value}: block {self.block:,} of {self.n_blocks:,} "
            f"({float(ts['time_s'].iloc[-1]) / 3600:.2f} h), {liq:,} liquidations, bad debt ${bad:,.0f}; {state}"
        )


@dataclass
class LiveView:
    """A run in progress as the report's plot functions read it (a RunResult's timeseries, metrics, graph)."""

    timeseries: pd.DataFrame
    metrics: dict = field(default_factory=dict)
    graph: nx.MultiDiGraph | None = None


# --- the page -------------------------------------------------------------------------------------------
def model_params(
    scenario: str = DEFAULT_SCENARIO,
    accounts: int = DEFAULT_ACCOUNTS,
    hours: float = DEFAULT_HOURS,
    blocks_per_step: int = DEFAULT_BLOCKS_PER_STEP,
) -> dict[str, dict[str, Any]]:
    """SolaraViz's user parameters: the scenario menu, the seed box and the sliders."""
    names = builtin_names()
    return {
        "scenario": {
            "type": "Select",
            "value": scenario,
            "values": sorted(set(names) | {scenario}),
            "label": "scenario",
        },
        "seed": {"type": "InputText", "value": "1", "label": "seed"},
        "shock_scale": {
            "type": "SliderFloat",
            "value": 1.0,
            "min": 0.0,
            "max": 2.0,
            "step": 0.1,
            "label": "shock size (x jumps, drifts, depegs)",
        },
        "bonus_scale": {
            "type": "SliderFloat",
            "value": 1.0,
            "min": 0.5,
            "max": 1.5,
            "step": 0.1,
            "label": "lending liquidation bonus (x)",
        },
        "collateral_scale": {
            "type": "SliderFloat",
            "value": 1.0,
            "min": 0.8,
            "max": 1.05,
            "step": 0.01,
            "label": "lending LTV and threshold (x)",
        },
        "cdp_liquidation_ratio": {
            "type": "SliderFloat",
            "value": 0.0,
            "min": 0.0,
            "max": 2.5,
            "step": 0.05,
            "label": "CDP liquidation ratio (0: the scenario's)",
        },
        "accounts": {
            "type": "SliderInt",
            "value": int(accounts),
            "min": 100,
            "max": 20_000,
            "step": 100,
            "label": "accounts per population",
        },
        "hours": {
            "type": "SliderFloat",
            "value": float(hours),
            "min": 0.0,
            "max": 48.0,
            "step": 0.5,
            "label": "hours to run (0: the scenario's)",
        },
        "blocks_per_step": {
            "type": "SliderInt",
            "value": int(blocks_per_step),
            "min": 1,
            "max": 300,
            "step": 1,
            "label": "blocks per step",
        },
    }


def _figure(draw, view: LiveView, size: tuple[float, float]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    if view.timeseries.empty:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no blocks yet: press Step or play", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        draw(view, fig)
    return fig


def components() -> list:
    """The page's panels: status, prices, liquidations, bad debt, network (matplotlib, drawn by sim/report)."""
    import solara

    from defistress.sim.report import plots

    def panel(title: str, draw, size=(7.0, 3.6)):
        def Panel(model: Dashboard):
            view = model.live()
            n = len(view.timeseries)
            with solara.Column() as col:
                solara.HTML(tag="b", unsafe_innerHTML=title)
                solara.FigureMatplotlib(_figure(draw, view, size), format="png", dependencies=[model.block, id(model)])
                solara.Text(f"{title}: {n:,} blocks shown", classes=["dashboard-caption"])
            return col

        Panel.__name__ = title.replace(" ", "")
        return Panel

    def Status(model: Dashboard):
        with solara.Column() as col:
            if model.error:
                solara.Error(model.status())
            else:
                solara.Info(model.status())
            if model.overrides:
                solara.Text("Overrides: " + "; ".join(model.overrides))
        return col

    return [
        (Status, 0),
        (panel("Prices", lambda v, fig: plots.plot_price_paths(v, ax=fig.add_subplot())), 0),
        (panel("Liquidations", lambda v, fig: plots.plot_liquidations(v, ax=fig.add_subplot())), 0),
        (panel("Bad debt", lambda v, fig: plots.plot_bad_debt(v, ax=fig.add_subplot())), 0),
        (panel("Network", lambda v, fig: plots.plot_network(v, ax=fig.add_subplot()), plots.NETWORK_FIGSIZE), 0),
    ]


def page(
    scenario: str | None = None,
    accounts: int | None = None,
    hours: float | None = None,
    blocks_per_step: int | None = None,
) -> Any:
    """The SolaraViz element of the dashboard (arguments default to the environment `defistress dashboard` sets)."""
    from mesa.visualization import SolaraViz

    scenario = scenario or os.environ.get(ENV_SCENARIO, DEFAULT_SCENARIO)
    accounts = int(accounts or os.environ.get(ENV_ACCOUNTS, str(DEFAULT_ACCOUNTS)))
    hours = float(hours if hours is not None else os.environ.get(ENV_HOURS, str(DEFAULT_HOURS)))
    blocks_per_step = int(blocks_per_step or os.environ.get(ENV_BLOCKS_PER_STEP, str(DEFAULT_BLOCKS_PER_STEP)))
    params = model_params(scenario, accounts, hours, blocks_per_step)
    model = Dashboard(scenario=scenario, accounts=accounts, hours=hours, blocks_per_step=blocks_per_step)
    return SolaraViz(model, components=components(), model_params=params, name="defistress dashboard")
